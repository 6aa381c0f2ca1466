//! The correlator on synthetic events: one packet across devices, drops,
//! copies joined by fingerprint, reuse of an skb.
use etherparse::PacketBuilder;
use netflow_common::{event_flags, Point};

use super::*;
use crate::decode::What;

pub(crate) fn icmp(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16, ip_id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .icmpv4_echo_request(id, seq)
        .write(&mut out, b"payload")
        .unwrap();
    // etherparse's builder sets no IP ID: patch it in.
    out[4..6].copy_from_slice(&ip_id.to_be_bytes());
    out
}

pub(crate) fn ev(ts: u64, skb: u64, point: Point, ifname: &str, data: &[u8]) -> Event {
    crate::decode::RawEvent {
        ts_ns: ts,
        skb,
        point,
        netns: 1,
        ifindex: 2,
        ifname: ifname.into(),
        len: data.len() as u32,
        mark: 0,
        reason: if point == Point::Drop { 5 } else { 0 },
        location: 0xffff_ffff_8100_0000,
        fp: 0,
        l3_proto: 0x0800,
        hook: 0,
        pf: 0,
        flags: 0,
        data: data.to_vec(),
    }
    .typed(&crate::decode::packet::DEFAULT_VXLAN_PORTS)
    .unwrap()
}

#[test]
fn one_skb_across_devices_is_one_delivered_timeline() {
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(30, 0xa, Point::Rx, "veth-b", &p));
    c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
    c.push(ev(20, 0xa, Point::Tx, "veth-a", &p));
    c.push(ev(40, 0xa, Point::Consume, "", &[]));
    assert!(c.expire(41).is_empty(), "held for the grace period");
    let out = c.expire(40 + 20_000_000);
    assert_eq!(out.len(), 1);
    let names: Vec<&str> = out[0].hops.iter().map(|h| h.ifname.as_str()).collect();
    assert_eq!(names, ["eth0", "veth-a", "veth-b"], "ordered by time");
    assert_eq!(out[0].verdict, Verdict::Delivered);
    assert_eq!(c.open_count(), 0);
}

#[test]
fn drop_ends_the_timeline_with_reason() {
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
    c.push(ev(20, 0xa, Point::Drop, "veth-a", &p));
    let out = c.flush();
    assert_eq!(out[0].verdict, Verdict::Dropped);
    assert_eq!(out[0].drop.unwrap().reason, 5);
    assert_eq!(out[0].hops.last().unwrap().point, Point::Drop);
}

#[test]
fn a_drop_after_an_early_hop_is_that_hook_only_if_freed_in_netfilter() {
    // Freed by the hook (NF_DROP): the hook dropped it.
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
    let mut early = ev(15, 0xa, Point::NfEarly, "veth-a", &p);
    early.what = What::Hop { hook: 2, pf: 0 };
    c.push(early.clone());
    c.push(ev(20, 0xa, Point::Drop, "veth-a", &p));
    let out = c.flush();
    assert_eq!(out[0].drop_hook, Some((2, 0)));
    // Stolen inside the hook (br_netfilter) and freed later by the stack.
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
    c.push(early);
    let mut drop = ev(20, 0xa, Point::Drop, "veth-a", &p);
    drop.flags = event_flags::OUTSIDE_HOOK;
    c.push(drop);
    let out = c.flush();
    assert_eq!(out[0].drop_hook, None);
    assert_eq!(out[0].verdict, Verdict::Dropped);
}

#[test]
fn copy_into_new_skb_joins_by_fingerprint_even_after_nat() {
    let before = icmp([10, 0, 0, 1], [10, 96, 0, 10], 7, 3, 555);
    let after = icmp([10, 0, 0, 1], [10, 244, 1, 7], 7, 3, 555);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "veth-a", &before));
    c.push(ev(20, 0xa, Point::Consume, "", &[]));
    c.push(ev(25, 0xb, Point::Tx, "veth-b", &after));
    let out = c.flush();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].hops.len(), 2);
    assert_eq!(out[0].verdict, Verdict::Forwarded);
}

#[test]
fn different_packets_stay_apart_and_reused_skb_starts_fresh() {
    let req = icmp([10, 0, 0, 1], [10, 0, 0, 2], 7, 3, 555);
    let rep = icmp([10, 0, 0, 2], [10, 0, 0, 1], 7, 3, 900);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "veth-a", &req));
    c.push(ev(20, 0xb, Point::Tx, "veth-b", &rep));
    // The skb of the request is freed and its memory reused much later.
    c.push(ev(30, 0xa, Point::Consume, "", &[]));
    c.push(ev(5_000_000_000, 0xa, Point::Rx, "veth-c", &rep));
    let out = c.flush();
    assert_eq!(out.len(), 3);
}

#[test]
fn identical_packets_after_a_drop_are_separate() {
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 77);
    let mut c = Correlator::new(Config::default());
    for (i, skb) in [0xa, 0xb, 0xc].into_iter().enumerate() {
        let t = i as u64 * 100;
        c.push(ev(t, skb, Point::Tx, "eth0", &p));
        c.push(ev(t + 10, skb, Point::Drop, "eth0", &p));
    }
    let out = c.flush();
    assert_eq!(out.len(), 3);
    assert!(out
        .iter()
        .all(|t| t.hops.len() == 2 && t.verdict == Verdict::Dropped));
}

#[test]
fn reused_skb_with_another_packet_starts_a_new_timeline() {
    let a = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let b = icmp([10, 0, 0, 3], [10, 0, 0, 4], 9, 9, 200);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Tx, "eth0", &a));
    c.push(ev(20, 0xa, Point::Rx, "veth", &a));
    // Freed without a tracepoint; the same memory now holds another packet.
    c.push(ev(30, 0xa, Point::Tx, "eth1", &b));
    c.push(ev(40, 0xa, Point::Deliver, "", &[]));
    let mut out = c.flush();
    out.sort_by_key(|t| t.id);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0].hops.len(), 2);
    assert_eq!(out[1].hops.len(), 1);
    assert_eq!(out[1].verdict, Verdict::Delivered);
    assert_eq!(out[0].verdict, Verdict::Unknown);
}

#[test]
fn socket_delivery_ends_the_timeline_and_a_later_free_is_after() {
    let p = icmp([10, 0, 0, 2], [10, 0, 0, 1], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
    c.push(ev(20, 0xa, Point::Rx, "eth0", &p));
    c.push(ev(30, 0xa, Point::Socket, "eth0", &[]));
    let mut purge = ev(40, 0xa, Point::Drop, "eth0", &p);
    purge.flags = event_flags::AFTER_DELIVERY;
    c.push(purge);
    let out = c.expire(40 + 20_000_000);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].verdict, Verdict::Delivered);
    assert!(out[0].drop.is_none());
    assert_eq!(out[0].after.unwrap().reason, 5);
    assert_eq!(out[0].hops.last().unwrap().point, Point::Socket);
    // Long after: counted, never a new dropped packet.
    let mut late = ev(5_000_000_000, 0xa, Point::Drop, "eth0", &p);
    late.flags = event_flags::AFTER_DELIVERY;
    c.push(late);
    assert!(c.flush().is_empty());
    assert_eq!(c.take_late_after(), 1);
}

#[test]
fn a_followed_packet_freed_from_a_closing_socket_is_never_dropped() {
    // A FIN followed to its receiver, with no socket hop (a run without
    // socket-delivery evidence), then freed from the closing socket's
    // queue: unknown, the free kept as after.
    let p = icmp([10, 0, 0, 2], [10, 0, 0, 1], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
    c.push(ev(20, 0xa, Point::Rx, "eth0", &p));
    let mut purge = ev(30, 0xa, Point::Drop, "", &p);
    purge.flags = event_flags::SOCKET_PURGE;
    c.push(purge);
    let out = c.flush();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].verdict, Verdict::Unknown);
    assert!(out[0].drop.is_none() && out[0].after.is_some_and(|a| a.purged));
    // The same free on its way without the flag (a drop where it was
    // received, QUEUE_PURGE unknown to the daemon) still reads dropped.
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
    c.push(ev(20, 0xa, Point::Rx, "eth0", &p));
    c.push(ev(30, 0xa, Point::Drop, "eth0", &p));
    assert_eq!(c.flush()[0].verdict, Verdict::Dropped);
}

#[test]
fn a_copy_delivered_to_a_raw_socket_makes_the_packet_delivered() {
    let p = icmp([10, 0, 0, 2], [10, 0, 0, 1], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "eth0", &p));
    // The clone (another skb, its bytes carried) reaches the raw socket;
    // the original is then freed: no ping socket.
    c.push(ev(20, 0xb, Point::Socket, "eth0", &p));
    c.push(ev(30, 0xa, Point::Drop, "eth0", &p));
    let out = c.flush();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].verdict, Verdict::Delivered);
    assert!(out[0].drop.is_none() && out[0].after.is_some());
}

#[test]
fn a_copy_in_the_skb_of_a_packet_just_delivered_is_its_own_packets() {
    // A TCP segment delivered in skb 0xa and freed without an event; a
    // moment later the raw socket's clone of an echo reply (the reply is
    // skb 0xb) is made in the same memory.
    let mut seg = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .tcp(7000, 40000, 1000, 100)
        .ack(5)
        .write(&mut seg, b"x")
        .unwrap();
    seg[4..6].copy_from_slice(&7u16.to_be_bytes());
    let mut reply = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .icmpv4_echo_reply(1, 1)
        .write(&mut reply, b"payload")
        .unwrap();
    reply[4..6].copy_from_slice(&9u16.to_be_bytes());
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "eth0", &seg));
    c.push(ev(20, 0xa, Point::Socket, "eth0", &[]));
    c.push(ev(1_000, 0xb, Point::Rx, "eth0", &reply));
    c.push(ev(1_010, 0xa, Point::Socket, "eth0", &reply));
    c.push(ev(1_020, 0xb, Point::Drop, "eth0", &reply));
    let mut out = c.flush();
    out.sort_by_key(|t| t.hops[0].ts_ns);
    assert_eq!(out.len(), 2, "{out:#?}");
    let points = |t: &Timeline| t.hops.iter().map(|h| h.point).collect::<Vec<_>>();
    assert_eq!(points(&out[0]), [Point::Rx, Point::Socket], "{out:#?}");
    assert_eq!(out[1].verdict, Verdict::Delivered, "{out:#?}");
    assert!(out[1].drop.is_none(), "{out:#?}");
}

#[test]
fn group_packets_nobody_took_are_unclaimed() {
    let p = icmp([10, 0, 0, 2], [224, 0, 0, 251], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "eth0", &p));
    c.push(ev(20, 0xa, Point::Drop, "eth0", &p));
    let out = c.flush();
    assert_eq!(out[0].verdict, Verdict::Unclaimed);
    assert!(out[0].drop.is_none() && out[0].after.is_some());
}

#[test]
fn lost_events_mark_open_timelines_incomplete() {
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
    c.mark_incomplete();
    let out = c.flush();
    assert!(out[0].incomplete);
}

#[test]
fn idle_timeline_expires_as_forwarded_or_unknown() {
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "eth0", &p));
    assert!(c.expire(500_000_000).is_empty());
    let out = c.expire(2_000_000_000);
    assert_eq!(out[0].verdict, Verdict::Unknown);
}

#[test]
fn an_echo_reply_in_a_new_skb_does_not_join_its_request() {
    // IPv6: no IP ID, and the reply carries the request's id and seq (and
    // the same fingerprint): the ICMP type tells them apart.
    let echo = |request: bool| {
        let mut out = Vec::new();
        let b = PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64);
        let b = if request {
            b.icmpv6_echo_request(7, 9)
        } else {
            b.icmpv6_echo_reply(7, 9)
        };
        b.write(&mut out, b"ping").unwrap();
        out
    };
    let mut c = Correlator::new(Config::default());
    // (The helper's ethertype says IPv4; the fingerprint goes by the IP version.)
    c.push(ev(10, 0xa, Point::Tx, "eth0", &echo(true)));
    c.push(ev(20, 0xa, Point::Consume, "", &[]));
    c.push(ev(25, 0xb, Point::Tx, "eth0", &echo(false)));
    let out = c.flush();
    assert_eq!(out.len(), 2, "{out:#?}");
}

fn rule_ev(ts: u64, data: &[u8], hit: crate::decode::rule::RuleHit) -> Event {
    let cx = crate::decode::rule::TraceContext {
        ts_ns: ts,
        netns: 1,
        ifindex: 2,
        ifname: "veth-a",
        mark: 0,
        l3_proto: 0x0800,
        // A trace carries the network header and the first transport bytes.
        headers: &data[..28],
    };
    let bytes = crate::decode::encode(&hit.to_raw(&cx));
    Event::decode(&bytes, &crate::decode::packet::DEFAULT_VXLAN_PORTS).unwrap()
}

fn drop_hit() -> crate::decode::rule::RuleHit {
    use crate::decode::rule::{verdict, Action, RuleHit, TraceKind};
    RuleHit {
        kind: TraceKind::Rule,
        family: 2,
        table: "filter".into(),
        chain: "KUBE-SERVICES".into(),
        handle: 12,
        verdict: verdict::DROP,
        target: String::new(),
        rule: "-A KUBE-SERVICES -d 10.96.0.11/32 -j REJECT".into(),
        comment: "default/empty:http has no endpoints".into(),
        element: String::new(),
        target_comment: String::new(),
        action: Action::Reject,
    }
}

#[test]
fn a_rule_trace_names_the_drop_whichever_comes_first() {
    for rule_first in [false, true] {
        let p = icmp([10, 0, 0, 1], [10, 96, 0, 11], 1, 1, 100);
        let other = icmp([10, 0, 0, 1], [10, 96, 0, 11], 1, 2, 101);
        let mut c = Correlator::new(Config {
            rule_hold_ns: 100_000_000,
            ..Config::default()
        });
        if rule_first {
            c.push(rule_ev(5, &p, drop_hit()));
        }
        c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
        c.push(ev(12, 0xb, Point::Rx, "veth-a", &other));
        c.push(ev(20, 0xa, Point::Drop, "", &p));
        if !rule_first {
            c.push(rule_ev(30_000_000, &p, drop_hit()));
        }
        // Held for rule traces longer than the grace period.
        assert!(c.expire(20 + 50_000_000).is_empty());
        let out = c.expire(20 + 100_000_000);
        let dropped = out.iter().find(|t| t.drop.is_some()).expect("the drop");
        let m = dropped.drop_rule.as_ref().expect("its rule");
        assert_eq!(m.hit.handle, 12);
        assert!(m.k8s.as_ref().unwrap().no_endpoints);
        // The other packet of the flow met no rule: it names none.
        let c2 = c.flush();
        assert!(c2
            .iter()
            .chain(out.iter())
            .filter(|t| t.drop.is_none())
            .all(|t| t.rules.is_empty()));
        assert_eq!(c.unjoined_rules(), 0);
    }
}

#[test]
fn a_rule_trace_of_no_packet_is_counted_not_kept() {
    let p = icmp([10, 0, 0, 1], [10, 96, 0, 11], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(rule_ev(5, &p, drop_hit()));
    assert!(c.expire(5 + 2_000_000_000).is_empty());
    assert_eq!(c.unjoined_rules(), 1);
}

#[test]
fn a_packet_held_after_postrouting_stays_one_timeline_until_its_drop() {
    // Sent by a pod, last seen at its POSTROUTING, then 3 s in the
    // neighbour queue and freed: one dropped timeline, never `unknown`.
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    let mut post = ev(10, 0xa, Point::NfLate, "eth0", &p);
    post.what = What::Hop { hook: 4, pf: 2 };
    c.push(post);
    let s = 1_000_000_000;
    assert!(c.expire(10 + 2 * s).is_empty(), "held past the idle time");
    let mut icmp_err = ev(10 + 3 * s, 0xa, Point::IcmpSend, "eth0", &p);
    icmp_err.what = What::Hop { hook: 0, pf: 0 };
    c.push(icmp_err);
    c.push(ev(10 + 3 * s + 5, 0xa, Point::Drop, "eth0", &p));
    let out = c.expire(10 + 4 * s);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].verdict, Verdict::Dropped);
    assert_eq!(out[0].hops.len(), 3);
    // Not held: a packet last seen at a device expires after the idle time.
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xb, Point::Rx, "eth0", &p));
    let out = c.expire(10 + 2 * s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].verdict, Verdict::Unknown);
}

#[test]
fn a_receive_reported_after_the_hop_that_selected_it_comes_first() {
    // A NodePort call: the late PREROUTING hop (translated) is reported,
    // then the receive kept from before the DNAT; header-only hops after
    // them take the translated headers.
    let before = icmp([192, 168, 1, 2], [192, 168, 1, 1], 7, 1, 300);
    let after = icmp([192, 168, 1, 2], [10, 0, 0, 2], 7, 1, 300);
    let mut c = Correlator::new(Config::default());
    let mut late = ev(20, 0xc, Point::NfLate, "up0", &after);
    late.what = What::Hop { hook: 0, pf: 2 };
    c.push(late);
    c.push(ev(10, 0xc, Point::Rx, "up0", &before));
    let mut fwd = ev(30, 0xc, Point::NfEarly, "up0", &[]);
    fwd.what = What::Hop { hook: 2, pf: 2 };
    c.push(fwd);
    c.push(ev(40, 0xc, Point::Tx, "veth-b", &[]));
    let out = c.flush();
    assert_eq!(out.len(), 1, "{out:#?}");
    let tl = &out[0];
    assert_eq!(tl.hops[0].point, Point::Rx);
    assert_eq!(tl.tuple().unwrap().dst.to_string(), "192.168.1.1");
    let nat = tl.hops[1].nat.expect("the DNAT at PREROUTING");
    assert_eq!(nat.kind, NatKind::Dnat);
    for h in &tl.hops[2..] {
        let t = h.packet.as_ref().unwrap().tuple;
        assert_eq!(t.dst.to_string(), "10.0.0.2", "translated headers: {h:?}");
        assert!(h.nat.is_none(), "{h:?}");
    }
}

/// A burst of packets open at once is bounded: beyond the cap those due
/// soonest (ended, waiting only for late copies) are completed early and
/// counted; the rest keep waiting, and nothing is lost.
#[test]
fn open_timelines_are_bounded_under_a_burst() {
    let cfg = Config::default();
    let max_open = cfg.max_open;
    let mut c = Correlator::new(cfg);
    let n = max_open as u64 + 5000;
    for i in 0..n {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, i as u16, 100);
        c.push(ev(10 + i, 0x1000 + i, Point::Rx, "veth-a", &p));
        // The first 10k were delivered: due at the end of the grace period.
        if i < 10_000 {
            c.push(ev(11 + i, 0x1000 + i, Point::Consume, "", &[]));
        }
    }
    let out = c.expire(n + 20);
    assert!(c.open_count() <= max_open, "{}", c.open_count());
    assert_eq!(out.len() as u64 + c.open_count() as u64, n);
    assert_eq!(c.evicted(), out.len() as u64);
    assert!(
        out.iter().all(|t| t.consumed_at.is_some()),
        "the ended ones go first"
    );
    // Later, the others complete at their own deadline; none is lost.
    let rest = c.expire(n + 2_000_000_000);
    assert_eq!(out.len() + rest.len(), n as usize);
    // A healthy trickle is never evicted.
    let mut c = Correlator::new(Config::default());
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
    c.push(ev(20, 0xa, Point::Consume, "", &[]));
    assert_eq!(c.expire(20 + 20_000_000).len(), 1);
    assert_eq!(c.evicted(), 0);
}

/// Evicted before their fate was known (a burst beyond the budget's cap,
/// none of them ended yet): each reads `incomplete`, never a verdict.
#[test]
fn evicted_open_timelines_read_incomplete() {
    let cfg = Config {
        max_open: 1024,
        ..Config::default()
    };
    let mut c = Correlator::new(cfg);
    for i in 0..2000u64 {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, i as u16, 100);
        c.push(ev(10 + i, 0x1000 + i, Point::Rx, "veth-a", &p));
    }
    let out = c.expire(2020);
    assert!(
        !out.is_empty() && c.open_count() <= 1024,
        "{}",
        c.open_count()
    );
    assert_eq!(c.evicted(), out.len() as u64);
    for t in &out {
        assert_eq!(t.verdict, Verdict::Unknown, "{t:?}");
        assert!(t.incomplete, "an evicted timeline is incomplete: {t:?}");
    }
}

/// The events mode's DNS: a query seen where its socket sent it (nothing
/// followed it on) and the answer read where a socket took it, come from
/// off the node (no timeline open for it): two timelines, forwarded and
/// delivered, each with its message. A socket event for a packet no
/// timeline holds, without the DNS flag (loopback), still starts none.
#[test]
fn dns_read_at_the_sockets_makes_timelines_of_its_own() {
    use crate::decode::dns::tests::{query, response};
    let udp = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, m: &[u8]| {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, m)
            .unwrap();
        out
    };
    let q = udp(
        [10, 0, 0, 1],
        [10, 9, 0, 9],
        40000,
        53,
        &query(7, "web.svc"),
    );
    let r = udp(
        [10, 9, 0, 9],
        [10, 0, 0, 1],
        53,
        40000,
        &response(7, "web.svc", 3, &[]),
    );
    let mut c = Correlator::new(Config::default());
    let mut sent = ev(10, 0xa, Point::SockSend, "eth0", &q);
    sent.flags = event_flags::SOCKET_READ;
    c.push(sent);
    let mut took = ev(1_000, 0xb, Point::Socket, "eth0", &r);
    took.flags = event_flags::SOCKET_READ;
    c.push(took);
    c.push(ev(1_100, 0xc, Point::Socket, "lo", &r));
    let out = c.flush();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0].verdict, Verdict::Forwarded, "{out:#?}");
    assert!(out[0].dns.as_ref().is_some_and(|m| !m.response));
    assert_eq!(out[1].verdict, Verdict::Delivered, "{out:#?}");
    assert!(out[1]
        .dns
        .as_ref()
        .is_some_and(|m| m.response && m.rcode == 3));
}

/// The events mode follows a datagram from its socket and has no program
/// where it ends (consumed on its way out, say): its skb is soon another
/// packet's, and that packet's free is not the datagram's drop.
#[test]
fn a_free_of_a_reused_skb_is_not_the_old_packets_drop() {
    let mut q = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 7401)
        .write(&mut q, b"q")
        .unwrap();
    let other = icmp([10, 0, 0, 3], [10, 0, 0, 4], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    let mut sent = ev(10, 0xa, Point::SockSend, "eth0", &q);
    sent.flags = event_flags::SOCKET_READ;
    sent.fp = Some(17 << 48 | 0x1234 << 32 | 1);
    c.push(sent);
    let mut freed = ev(500, 0xa, Point::Drop, "up1", &other);
    freed.fp = Some(1 << 48 | 0x9876 << 32 | 2);
    c.push(freed);
    let out = c.flush();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0].verdict, Verdict::Forwarded, "{out:#?}");
    assert_eq!(out[0].hops.len(), 1, "{out:#?}");
    assert_eq!(out[1].verdict, Verdict::Dropped, "{out:#?}");
    // The same packet's free (same fingerprint) is its drop.
    let mut c = Correlator::new(Config::default());
    let mut sent = ev(10, 0xa, Point::SockSend, "eth0", &q);
    sent.flags = event_flags::SOCKET_READ;
    sent.fp = Some(17 << 48 | 0x1234 << 32 | 1);
    c.push(sent);
    let mut freed = ev(500, 0xa, Point::Drop, "veth-b", &q);
    freed.fp = Some(17 << 48 | 0x1234 << 32 | 1);
    c.push(freed);
    let out = c.flush();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].verdict, Verdict::Dropped, "{out:#?}");
}
