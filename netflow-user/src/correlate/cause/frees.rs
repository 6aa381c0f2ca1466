//! Which frees are drops on a packet's path: a packet freed from a closing
//! socket's queue had arrived, ICMPv6 and TCP FINs the kernel processed
//! were taken, a free outside netfilter's code is no hook's verdict. Decided
//! once, as each free is decoded, for live runs and replays alike.
use netflow_common::{event_flags, Point};

use crate::decode::{names::Names, packet::Proto, Event};

/// On kernels without drop reasons, the reason a drop most likely had, from
/// the kernel function that freed the packet (`sym+0xoff`).
pub fn reason_from_location(location: &str) -> Option<&'static str> {
    let func = location.split('+').next().unwrap_or(location);
    Some(match func {
        "nf_hook_slow" => "NETFILTER_DROP",
        "tcp_v4_rcv" | "tcp_v6_rcv" | "__udp4_lib_rcv" | "__udp6_lib_rcv" | "ping_rcv" => {
            "NO_SOCKET"
        }
        "ip_rcv_finish"
        | "ip_rcv_finish_core"
        | "ip_rcv_finish_core.constprop.0"
        | "fib_validate_source" => "IP_RPFILTER",
        "ip_forward" | "ip6_forward" => "IP_INNOROUTES",
        "ip_error" => "IP_INADDRERRORS",
        "neigh_invalidate" | "__neigh_event_send" | "neigh_destroy" => "NEIGH_FAILED",
        "__dev_queue_xmit" | "__qdisc_run" | "pfifo_fast_enqueue" | "qdisc_drop" => "QDISC_DROP",
        "ip_local_deliver_finish" | "ip_protocol_deliver_rcu" => "IP_NOPROTO",
        "skb_queue_purge" | "__skb_queue_purge" => "QUEUE_PURGE",
        _ => return None,
    })
}

/// A drop's reason by the kernel's name, or where the kernel gives none,
/// the one its location most likely means.
pub fn effective_reason(names: &Names, reason: u32, location: &str) -> String {
    let r = names.reason(reason);
    if r == crate::decode::names::UNAVAILABLE {
        if let Some(l) = reason_from_location(location) {
            return l.to_string();
        }
    }
    r
}

/// Settle what a free is, before the correlator sees it: `open` says
/// whether its packet is being followed. A free of a packet that had
/// arrived gets `AFTER_DELIVERY` (`SOCKET_PURGE` when it is followed); one
/// the kernel processed becomes a
/// consume; one outside netfilter's code is marked `OUTSIDE_HOOK`.
pub fn settle(ev: &mut Event, names: &Names, reason: u32, at: &str, open: bool) {
    if ev.point != Point::Drop {
        return;
    }
    if !open
        && ev.flags & event_flags::AFTER_DELIVERY == 0
        && dropped_by_its_tcp_socket(ev, names, reason)
    {
        // Seen at its free alone (the events mode, loopback): a segment
        // its TCP socket discarded had passed the socket's filter, where
        // a followed packet is known taken; so it had arrived.
        ev.flags |= event_flags::AFTER_DELIVERY;
    } else if purged_from_a_socket(names, reason, at) {
        // Freed from a socket's queue when it closed: never seen on its way
        // (loopback is not followed), it had arrived; followed, it had
        // reached a socket (the socket hop says which), or it is the
        // sender's copy. Either way not a drop on its path.
        ev.flags |= if open {
            event_flags::SOCKET_PURGE
        } else {
            event_flags::AFTER_DELIVERY
        };
    } else if kernel_processed_icmpv6(ev, names, reason, at)
        || kernel_processed_tcp_fin(ev, names, reason, at)
        || processed_by_tcp_state_machine(ev, names, reason, at)
    {
        ev.point = Point::Consume;
    } else if is_symbol(at) && !in_netfilter(at) && names.reason(reason) != "NETFILTER_DROP" {
        ev.flags |= event_flags::OUTSIDE_HOOK;
    }
}

/// A TCP segment discarded by the socket that took it: the reasons TCP
/// gives after the socket's filter (an old or out-of-window sequence, a
/// full receive queue ...), not those of its checks before (checksum,
/// MD5/AO signatures, minimum TTL) nor a missing socket.
fn dropped_by_its_tcp_socket(ev: &Event, names: &Names, reason: u32) -> bool {
    let reason = names.reason(reason);
    let before_filter = ["TCP_CSUM", "TCP_MINTTL"];
    let tcp = ev
        .packet
        .as_ref()
        .is_some_and(|p| p.tuple.proto == Proto::Tcp);
    tcp && ((reason.starts_with("TCP_")
        && !before_filter.contains(&reason.as_str())
        && !reason.starts_with("TCP_MD5")
        && !reason.starts_with("TCP_AO"))
        || reason == "SOCKET_BACKLOG"
        || reason == "SOCKET_RCVBUFF")
}

/// `QUEUE_PURGE`, or before drop reasons (5.17) the functions that purge
/// a closing socket's queues.
fn purged_from_a_socket(names: &Names, reason: u32, at: &str) -> bool {
    names.reason(reason) == "QUEUE_PURGE"
        || reason_from_location(at) == Some("QUEUE_PURGE")
        || at.starts_with("sk_stream_kill_queues")
}

/// Kernels before 6.2 free the ICMPv6 messages they have processed (echo
/// requests they answered, neighbour discovery) with `kfree_skb` and no
/// reason, in icmpv6_rcv: that is the kernel taking them, not a drop.
fn kernel_processed_icmpv6(ev: &Event, names: &Names, reason: u32, location: &str) -> bool {
    let reason = names.reason(reason);
    if reason != crate::decode::names::UNAVAILABLE && reason != "NOT_SPECIFIED" {
        return false;
    }
    if !location.starts_with("icmpv6_rcv") {
        return false;
    }
    ev.packet
        .as_ref()
        .is_some_and(|p| p.tuple.proto == Proto::Icmpv6)
}

/// A segment that reaches its connection's TIME_WAIT socket (the local
/// side closed first and its socket is gone): a FIN, answered with an ACK
/// by that socket, or a late ACK of the closing exchange, taken by it; then
/// freed by `tcp_v4_rcv`/`tcp_v6_rcv` with `kfree_skb` and no reason (6.1
/// and others: every other discard there has its reason): the connection
/// closing as it should, not a drop. A SYN is not: one that a TIME_WAIT
/// socket refuses is a connection that did not open.
///
/// Before drop reasons (5.10) the same free has no reason at all, and a
/// segment no socket takes is freed at the same place: there only a FIN is
/// taken as the kernel's (a FIN sent again that reaches TIME_WAIT, seen in a
/// healthy exchange under emulation); a late ACK stays a drop.
fn kernel_processed_tcp_fin(ev: &Event, names: &Names, reason: u32, location: &str) -> bool {
    let flags = ev.packet.as_ref().and_then(|p| p.tcp_flags.as_deref());
    let at_tcp_rcv = location.starts_with("tcp_v4_rcv") || location.starts_with("tcp_v6_rcv");
    match names.reason(reason).as_str() {
        "NOT_SPECIFIED" => {
            at_tcp_rcv
                && flags.is_some_and(|f| f.contains('F') || (f.contains('.') && !f.contains('S')))
        }
        crate::decode::names::UNAVAILABLE => {
            at_tcp_rcv && flags.is_some_and(|f| f.contains('F') && !f.contains('S'))
        }
        _ => false,
    }
}

/// A segment a closing connection's socket processed and did not queue (an
/// ACK of the closing exchange in FIN_WAIT or CLOSING): `tcp_rcv_state_process`
/// frees it with `kfree_skb` and no reason (every discard there has its
/// reason: TCP_CLOSE, TCP_FLAGS, INVALID_SEQUENCE ...). Seen where the socket
/// delivery is not watched (the agent's events mode); where it is, the
/// packet was already taken. A SYN stays a drop.
fn processed_by_tcp_state_machine(ev: &Event, names: &Names, reason: u32, location: &str) -> bool {
    ev.flags & event_flags::AFTER_DELIVERY == 0
        && names.reason(reason) == "NOT_SPECIFIED"
        && location.starts_with("tcp_rcv_state_process")
        && ev
            .packet
            .as_ref()
            .and_then(|p| p.tcp_flags.as_deref())
            .is_some_and(|f| !f.contains('S'))
}

/// A location in netfilter's code (the hook loop, nftables, x_tables,
/// conntrack, NAT): where a hook's verdict frees a packet.
fn in_netfilter(location: &str) -> bool {
    [
        "nf_",
        "nft_",
        "ipt_",
        "ip6t_",
        "ebt_",
        "xt_",
        "ipv4_conntrack",
        "ipv6_conntrack",
    ]
    .iter()
    .any(|p| location.starts_with(p))
}

/// A location that names a kernel function (`sym+0xoff`), not a bare
/// address (no symbols readable, or a recording without them).
fn is_symbol(location: &str) -> bool {
    !location.is_empty() && !location.starts_with("0x")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(flags: &str) -> Event {
        let mut b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(45102, 7000, 1, 64240)
            .ack(1);
        if flags.contains('F') {
            b = b.fin();
        }
        if flags.contains('S') {
            b = b.syn();
        }
        let mut data = Vec::new();
        b.write(&mut data, &[]).unwrap();
        crate::correlate::tests::ev(10, 0xa, Point::Drop, "eth0", &data)
    }

    #[test]
    fn a_time_wait_socket_takes_fins_and_late_acks_not_syns() {
        let mut names = Names::default();
        names.reasons.insert(2, "NOT_SPECIFIED".into());
        for (flags, at, consumed) in [
            ("F", "tcp_v4_rcv+0x81", true),
            (".", "tcp_v4_rcv+0x81", true),
            (".", "tcp_v6_rcv+0x90", true),
            ("S", "tcp_v4_rcv+0x81", false),
            // Elsewhere, the same free is a drop on the path.
            (".", "ip_rcv_core+0x1c", false),
        ] {
            let mut ev = tcp(flags);
            settle(&mut ev, &names, 2, at, true);
            assert_eq!(ev.point == Point::Consume, consumed, "{flags} at {at}");
        }
        // A kernel without drop reasons: a FIN there is TIME_WAIT's, a late
        // ACK or a SYN is not known to be.
        for (flags, consumed) in [("F", true), (".", false), ("S", false)] {
            let mut ev = tcp(flags);
            settle(
                &mut ev,
                &names,
                netflow_common::REASON_UNAVAILABLE,
                "tcp_v4_rcv+0x62",
                true,
            );
            assert_eq!(
                ev.point == Point::Consume,
                consumed,
                "{flags} without reasons"
            );
        }
        // An ACK a closing socket's state machine processed: taken; a SYN
        // there is not.
        for (flags, consumed) in [(".", true), ("F", true), ("S", false)] {
            let mut ev = tcp(flags);
            settle(&mut ev, &names, 2, "tcp_rcv_state_process+0x1c6", false);
            assert_eq!(ev.point == Point::Consume, consumed, "{flags}");
        }
        // A segment its socket discarded (an old sequence), seen at its
        // free alone: it had arrived; a checksum error had not.
        names.reasons.insert(4, "TCP_OLD_SEQUENCE".into());
        names.reasons.insert(5, "TCP_CSUM".into());
        for (reason, after) in [(4, true), (5, false)] {
            let mut ev = tcp(".");
            settle(
                &mut ev,
                &names,
                reason,
                "tcp_validate_incoming+0x16b",
                false,
            );
            assert_eq!(
                ev.flags & event_flags::AFTER_DELIVERY != 0,
                after,
                "{reason}"
            );
        }
        // With its reason (a real discard), never.
        names.reasons.insert(3, "NO_SOCKET".into());
        let mut ev = tcp(".");
        settle(&mut ev, &names, 3, "tcp_v4_rcv+0x81", true);
        assert_eq!(ev.point, Point::Drop);
    }
}
