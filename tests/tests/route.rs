//! Real-kernel tests: route hops (`fib:fib_table_lookup`). Each lab routes
//! its own pods; the tests check the table that answered, the device and
//! gateway, and a failed lookup named on the drop.
use netflow_schema::{Hop, Packet, Point, Proto, Verdict};
use netflow_tests::*;

/// The packet's routing decisions in `netns`.
fn routes_in<'a>(p: &'a Packet, netns: &str) -> Vec<&'a Hop> {
    p.hops
        .iter()
        .filter(|h| h.point == Point::Route && h.netns_name.as_deref() == Some(netns))
        .collect()
}

/// Delivered, with a routing decision on the node (exactly one when
/// `oif` is given): `table` answered, through `oif`.
fn answered(r: &Packet, node: &str, table: u32, oif: Option<&str>) {
    assert_eq!(r.verdict, Verdict::Delivered, "{r:#?}");
    let at_node = routes_in(r, node);
    if oif.is_some() {
        assert_eq!(at_node.len(), 1, "one routing decision on the node: {r:#?}");
    }
    let h = *at_node
        .first()
        .unwrap_or_else(|| panic!("the routing decision on the node: {r:#?}"));
    let route = h.route.as_ref();
    assert_eq!(route.map(|r| r.table), Some(table), "{h:#?}");
    if let Some(oif) = oif {
        assert_eq!(route.and_then(|r| r.oif.as_deref()), Some(oif), "{h:#?}");
    }
    assert!(route.and_then(|r| r.error.as_ref()).is_none(), "{h:#?}");
}

/// Dropped after the node's lookup in the main table failed, the hint
/// naming that table.
fn unroutable(r: &Packet, node: &str) {
    assert_eq!(r.verdict, Verdict::Dropped, "{r:#?}");
    let h = *routes_in(r, node)
        .last()
        .unwrap_or_else(|| panic!("the failed lookup on the node: {r:#?}"));
    let route = h.route.as_ref();
    assert_eq!(route.map(|r| r.table), Some(254), "{h:#?}");
    assert_eq!(
        route.and_then(|r| r.error.as_deref()),
        Some("no route to host"),
        "{h:#?}"
    );
    let drop = the_drop(r);
    let hint = &drop.hint;
    assert!(
        hint.contains("no route to") && hint.contains("table 254"),
        "{hint}"
    );
    let c = drop.cause.as_ref();
    assert_eq!(c.map(|c| c.kind.as_str()), Some("no_route"), "{r:#?}");
    assert_eq!(
        c.and_then(|c| c.setting.as_deref()),
        Some("route table 254"),
        "{r:#?}"
    );
    assert_eq!(
        c.and_then(|c| c.value.as_deref()),
        Some("no route to host"),
        "{r:#?}"
    );
}

/// Policy routing: packets from pod a use table 100 on the node; the
/// replies use the main table. Both read healthy.
#[test]
fn policy_routing_shows_the_table_on_the_route_hop() {
    let (lab, node, a, _b, _va, vb) = routed_lab("rtp");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    sh(&format!(
        "ip -n {node} route add {b_ip}/32 dev {vb} table 100 && ip -n {node} rule add from {a_ip} lookup 100 pref 100"
    ));
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmp"]);
    sh_quiet(&format!("ip netns exec {a} ping -c2 -i0.2 -W1 {b_ip}"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmp, &a_ip, &b_ip);
    let replies = flows(&pkts, Proto::Icmp, &b_ip, &a_ip);
    assert!(
        reqs.len() >= 2 && replies.len() >= 2,
        "{}",
        packet_summary(&lines)
    );
    for r in &reqs {
        answered(r, &node, 100, Some(&vb));
    }
    // The replies go by the main table.
    for r in &replies {
        answered(r, &node, 254, None);
    }
}

/// An unreachable route on the node: the lookup's error is a route hop,
/// and the drop's hint names the table that failed.
#[test]
fn a_failed_lookup_is_named_on_the_drop() {
    let (lab, node, a, _b, _va, _vb) = routed_lab("rtu");
    let net = lab.net();
    let a_ip = format!("{net}.0.1");
    let dst = format!("{net}.9.9");
    sh(&format!("ip -n {node} route add unreachable {net}.9.0/24"));
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmp"]);
    sh_quiet(&format!("ip netns exec {a} ping -c2 -i0.2 -W1 {dst}"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmp, &a_ip, &dst);
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
    for r in &reqs {
        unroutable(r, &node);
    }
}

/// IPv6 policy routing: the node's lookups in the tables before the one
/// that answers (local, then table 100) leave no failed hop behind; the
/// answer names table 100 and the device. A route to nowhere is named on
/// the drop.
#[test]
fn ipv6_route_hops_show_the_table_and_the_failed_lookup() {
    let (lab, node, a, b, va, vb) = routed_lab("rt6");
    let [a_ip, b_ip] = with_ipv6(&lab, &node, [(&a, &va), (&b, &vb)]);
    let net6 = lab.net6();
    let nowhere = format!("{net6}:9::9");
    sh(&format!(
        "ip -n {node} -6 route add {b_ip}/128 dev {vb} table 100 && \
         ip -n {node} -6 rule add from {a_ip} lookup 100 pref 100 && \
         ip -n {node} -6 route add unreachable {net6}:9::/64"
    ));
    lab.exec(&a, &format!("ping -6 -c1 -W2 {b_ip}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmpv6"]);
    sh_quiet(&format!("ip netns exec {a} ping -6 -c2 -i0.2 -W1 {b_ip}"));
    sh_quiet(&format!(
        "ip netns exec {a} ping -6 -c2 -i0.2 -W1 {nowhere}"
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmpv6, &a_ip, &b_ip);
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
    for r in &reqs {
        answered(r, &node, 100, Some(&vb));
    }
    // The replies go by the main table.
    let replies = flows(&pkts, Proto::Icmpv6, &b_ip, &a_ip);
    assert!(!replies.is_empty(), "{}", packet_summary(&lines));
    for r in &replies {
        answered(r, &node, 254, None);
    }
    let lost = flows(&pkts, Proto::Icmpv6, &a_ip, &nowhere);
    assert!(lost.len() >= 2, "{}", packet_summary(&lines));
    for r in &lost {
        unroutable(r, &node);
    }
}
