//! ICMP errors the node sends because of a selected packet join that
//! packet's timeline: a packet too big for a VXLAN device's MTU shows the
//! "fragmentation needed" the node sent, with the device and its MTU, and
//! the drop's hint names them. Packets that fit show no ICMP error.
use netflow_schema::{Hop, Icmp, Packet, Point, Proto, Verdict};
use netflow_tests::*;

fn icmp_hops(p: &Packet) -> Vec<&Hop> {
    p.hops
        .iter()
        .filter(|h| h.point == Point::IcmpError)
        .collect()
}

/// The requests that fit (no hop longer than `limit` bytes), delivered with
/// no ICMP error, and the one that did not.
fn the_big_one<'a>(reqs: &[&'a Packet], limit: u32, fitting: usize) -> &'a Packet {
    let too_big = |p: &&Packet| p.hops.iter().any(|h| h.len > limit);
    let (big, small): (Vec<&Packet>, Vec<&Packet>) = reqs.iter().copied().partition(too_big);
    assert_eq!(small.len(), fitting, "{reqs:#?}");
    for p in &small {
        assert_eq!(p.verdict, Verdict::Delivered, "{p:#?}");
        assert!(icmp_hops(p).is_empty(), "{p:#?}");
    }
    assert_eq!(big.len(), 1, "{reqs:#?}");
    big[0]
}

/// The ICMP error of an `icmp_error` hop (panics without one).
fn the_icmp(h: &Hop) -> &Icmp {
    h.icmp.as_ref().unwrap_or_else(|| panic!("no icmp: {h:#?}"))
}

#[test]
fn too_big_for_the_tunnel_shows_fragmentation_needed() {
    let VxlanNodes { lab, n1, p1, .. } = vxlan_nodes("mtu");
    let net = lab.net();
    sh(&format!("ip -n {n1} link set vx0 mtu 1400"));
    lab.exec(&p1, &format!("ping -c1 -W2 {net}.2.2"));

    let t = Tracer::start(&["--netns", &p1, "--proto", "icmp"]);
    // What netflow said at start about the ICMP probe.
    let probe = t
        .stderr_text
        .lines()
        // tp_btf/icmp_send, else fentry/__icmp_send or kprobe/__icmp_send.
        .find(|l| l.contains("icmp_send"))
        .unwrap_or_else(|| panic!("no icmp_send probe line:\n{}", t.stderr_text))
        .to_string();
    let probe_on = probe.contains("probe on ");
    // Fits: 1300 bytes of payload. Too big, may not be fragmented: 1400.
    lab.exec(&p1, &format!("ping -c2 -i0.2 -W2 -M do -s 1300 {net}.2.2"));
    sh_quiet(&format!(
        "ip netns exec {p1} ping -c1 -W1 -M do -s 1400 {net}.2.2"
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.1.2"),
        &format!("{net}.2.2"),
    );

    // 1328 bytes of IP (1392 on the underlay, with VXLAN and Ethernet)
    // against 1428: the big one is the one with a hop over 1400 bytes
    // (hop lengths include the Ethernet header at transmit points, and
    // which hop comes first differs by kernel). The healthy ones are
    // delivered with no ICMP error.
    let p = the_big_one(&reqs, 1400, 2);
    // The ones that fit name no cause.
    for r in reqs.iter().filter(|r| r.verdict == Verdict::Delivered) {
        assert!(r.drop.is_none(), "{r:#?}");
    }

    // The big one: dropped on the node at ip_forward, the ICMP error on its timeline.
    assert_eq!(p.verdict, Verdict::Dropped, "{p:#?}");
    let drop = the_drop(p);
    assert!(drop.location.starts_with("ip_forward"), "{drop:#?}");
    if probe_on {
        let icmp = icmp_hops(p);
        assert_eq!(icmp.len(), 1, "{p:#?}");
        let h = icmp[0];
        assert_eq!(h.ifname, "vx0", "{h:#?}");
        assert_eq!(h.netns_name.as_deref(), Some(n1.as_str()), "{h:#?}");
        let e = the_icmp(h);
        assert_eq!(e.icmp_type, 3, "{h:#?}");
        assert_eq!(e.code, 4, "{h:#?}");
        assert_eq!(e.mtu, Some(1400), "{h:#?}");
        assert_eq!(e.what, "fragmentation needed", "{h:#?}");
        assert_eq!(drop_reason(drop), "PKT_TOO_BIG", "{drop:#?}");
        let hint = &drop.hint;
        assert!(hint.contains("MTU 1400 of vx0"), "{hint}");
        // The cause: the route's device and its MTU.
        let cause = drop.cause.as_ref();
        assert_eq!(cause.map(|c| c.kind.as_str()), Some("mtu"), "{drop:#?}");
        assert_eq!(
            cause.and_then(|c| c.dev.as_deref()),
            Some("vx0"),
            "{drop:#?}"
        );
        assert_eq!(
            cause.and_then(|c| c.value.as_deref()),
            Some("1400"),
            "{drop:#?}"
        );
    } else {
        // Kernels without the tracepoint say so at start; the drop reads as before.
        assert!(
            probe.contains("probe off") && probe.contains("no ICMP errors on timelines"),
            "{probe}"
        );
        assert!(icmp_hops(p).is_empty());
    }
}

/// IPv6: a packet too big for the node's route to the pod (no router
/// fragments IPv6) shows the ICMPv6 "packet too big" the node sent, with
/// the device and its MTU; packets that fit show none. No kernel has an
/// ICMPv6 tracepoint: kernels without fentry and kprobes say so at start.
#[test]
fn ipv6_too_big_shows_packet_too_big() {
    let (lab, node, a, b, va, vb) = routed_lab("mt6");
    let [a_ip, b_ip] = with_ipv6(&lab, &node, [(&a, &va), (&b, &vb)]);
    sh(&format!("ip -n {node} link set {vb} mtu 1300"));
    lab.exec(&a, &format!("ping -6 -c1 -W2 {b_ip}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmpv6"]);
    let probe = t
        .stderr_text
        .lines()
        .find(|l| l.contains("icmp6_send"))
        .unwrap_or_else(|| panic!("no icmp6_send probe line:\n{}", t.stderr_text))
        .to_string();
    let probe_on = probe.contains("probe on ");
    // Fits (1048 bytes of IPv6), then too big (1448 > 1300).
    lab.exec(&a, &format!("ping -6 -c2 -i0.2 -W2 -s 1000 {b_ip}"));
    sh_quiet(&format!(
        "ip netns exec {a} ping -6 -c1 -W1 -M do -s 1400 {b_ip}"
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmpv6, &a_ip, &b_ip);
    let p = the_big_one(&reqs, 1300, 2);
    assert_eq!(p.verdict, Verdict::Dropped, "{p:#?}");
    let drop = the_drop(p);
    assert!(drop.location.starts_with("ip6_forward"), "{drop:#?}");
    if probe_on {
        let icmp = icmp_hops(p);
        assert_eq!(icmp.len(), 1, "{p:#?}");
        let h = icmp[0];
        assert_eq!(h.ifname, vb, "{h:#?}");
        assert_eq!(h.netns_name.as_deref(), Some(node.as_str()), "{h:#?}");
        let e = the_icmp(h);
        assert_eq!(e.icmp_type, 2, "{h:#?}");
        assert_eq!(e.mtu, Some(1300), "{h:#?}");
        assert_eq!(e.what, "packet too big", "{h:#?}");
        assert_eq!(drop_reason(drop), "PKT_TOO_BIG", "{drop:#?}");
        let hint = &drop.hint;
        assert!(
            hint.contains(&format!("MTU 1300 of {vb}")) && hint.contains("ICMPv6 packet too big"),
            "{hint}"
        );
    } else {
        assert!(
            probe.contains("probe off") && probe.contains("no ICMPv6 errors on timelines"),
            "{probe}"
        );
        assert!(icmp_hops(p).is_empty());
    }
}
