//! Real-kernel tests: each builds its own namespace lab, runs `netflow`,
//! sends real traffic and checks what netflow saw. Each lab reserves an
//! address block of its own (`Lab::net`), so tests run in parallel.
//!
//! Netfilter hops: filtering drops, DNAT/SNAT and their reverse, rp_filter.
use netflow_schema::{NatKind, Point, Proto, Stage, Verdict};
use netflow_tests::*;

/// A FORWARD drop rule on the node: the packet's timeline ends with the drop,
/// reason NETFILTER_DROP, after the hops it reached.
#[test]
fn forward_drop_is_attributed_to_netfilter() {
    let (lab, node, a, _b, va, _vb) = routed_lab("fw");
    let net = lab.net();
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    // A table of our own inside the node namespace: deleted with it.
    sh(&format!(
        "ip netns exec {node} nft 'add table ip nftest; add chain ip nftest forward_chain {{ type filter hook forward priority 0; }}; add rule ip nftest forward_chain ip daddr {net}.0.2 icmp type echo-request drop'"
    ));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmp", "--nf-netns", &node]);
    sh_quiet(&format!("ip netns exec {a} ping -c2 -i0.2 -W1 {net}.0.2"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
    );
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
    for r in &reqs {
        assert_eq!(r.verdict, Verdict::Dropped, "{r:#?}");
        assert_eq!(packet_reason(r), "NETFILTER_DROP", "{r:#?}");
        let drop = the_drop(r);
        assert_eq!(
            drop.hook.as_deref(),
            Some("forward"),
            "seen before FORWARD filtering, never after: {r:#?}"
        );
        assert!(drop.hint.contains("firewall rule"), "{r:#?}");
        assert!(drop.location.contains('+'), "symbolized location: {r:#?}");
        let hops = hop_list(r);
        assert!(
            in_order(
                &hops,
                &[
                    ("tx", "eth0", &a, "egress"),
                    ("rx", &va, &node, "ingress"),
                    ("kfree_skb", &va, &node, "")
                ]
            ),
            "{hops:#?}"
        );
        assert_eq!(
            hops.last().unwrap().0,
            "kfree_skb",
            "the drop is the last hop: {hops:#?}"
        );
        assert!(
            !hops.iter().any(|h| h.1 == "eth0" && h.0 == "rx"),
            "never reached the receiver: {hops:#?}"
        );
    }
}

/// A Service VIP DNATed by nftables in the node's PREROUTING (kube-proxy
/// style): the connection's packets show the DNAT hop with the VIP and the
/// backend, and the replies the reverse translation at POSTROUTING.
#[test]
fn service_vip_dnat_and_reverse_translation() {
    let (lab, node, a, b, va, vb) = routed_lab("sv");
    let net = lab.net();
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority -100; }}; add rule ip svc pre ip daddr 10.96.0.10 tcp dport 80 dnat to {net}.0.2:8080'"
    ));
    let _server = tcp_server(&b, &format!("{net}.0.2"), 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    tcp_client(&a, "10.96.0.10", 80);
    let lines = t.stop_lines();
    let pkts = packets(&lines);

    let to_vip: Vec<_> = pkts
        .iter()
        .filter(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.dst.to_string() == "10.96.0.10" && f.dport == Some(80))
        })
        .collect();
    assert!(
        to_vip.len() >= 2,
        "SYN and data towards the VIP: {}",
        packet_summary(&lines)
    );
    for p in &to_vip {
        let hops = &p.hops;
        let h = one_nat_hop(p);
        assert_eq!(h.point, Point::Nf, "{h:#?}");
        assert_eq!(h.hook.as_deref(), Some("prerouting"), "{h:#?}");
        assert_eq!(h.stage, Some(Stage::Late), "{h:#?}");
        assert_eq!(h.netns_name.as_deref(), Some(node.as_str()), "{h:#?}");
        let n = hop_nat(h);
        assert_eq!(n.kind, NatKind::Dnat, "{h:#?}");
        assert_eq!(n.from, "10.96.0.10:80", "{h:#?}");
        assert_eq!(n.to, format!("{net}.0.2:8080"), "{h:#?}");
        let path = hop_list(p);
        assert!(
            in_order(
                &path,
                &[
                    ("tx", "eth0", &a, "egress"),
                    ("rx", &va, &node, "ingress"),
                    ("nf", &va, &node, ""),
                    ("tx", &vb, &node, "egress"),
                    ("rx", "eth0", &b, "ingress")
                ]
            ),
            "{path:#?}"
        );
        // After the DNAT every hop carries the backend address.
        let last = hops.iter().rev().find(|h| h.point == Point::Rx).unwrap();
        assert_eq!(
            last.dst.map(|a| a.to_string()),
            Some(format!("{net}.0.2")),
            "{last:#?}"
        );
        assert_eq!(last.dport, Some(8080), "{last:#?}");
        // The SYN and the data reach the server's socket (pure ACKs TCP may
        // free without saying so).
        let flags = first_flags(p).unwrap_or_else(|| panic!("no TCP flags: {p:#?}"));
        if flags.contains('S') || flags.contains('P') {
            assert_eq!(p.verdict, Verdict::Delivered, "{p:#?}");
        }
    }
    let replies: Vec<_> = pkts
        .iter()
        .filter(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.src.to_string() == format!("{net}.0.2") && f.sport == Some(8080))
        })
        .collect();
    assert!(!replies.is_empty(), "{}", packet_summary(&lines));
    for p in &replies {
        let nat = one_nat_hop(p);
        assert_eq!(nat.hook.as_deref(), Some("postrouting"), "{nat:#?}");
        let n = hop_nat(nat);
        assert_eq!(n.from, format!("{net}.0.2:8080"), "{nat:#?}");
        assert_eq!(n.to, "10.96.0.10:80", "{nat:#?}");
    }
}

/// Strict reverse-path filtering on the node drops a packet with a source
/// that does not route back through its arrival device: IP_RPFILTER + hint.
#[test]
fn rp_filter_drop() {
    let (lab, node, a, _b, va, _vb) = routed_lab("rp");
    let net = lab.net();
    sh(&format!("ip -n {a} addr add 10.99.77.7/32 dev eth0"));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.conf.all.rp_filter=1"
    ));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.conf.{va}.rp_filter=1"
    ));
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    let t = Tracer::start(&["--host", "10.99.77.7"]);
    sh_quiet(&format!(
        "ip netns exec {a} ping -c2 -i0.2 -W1 -I 10.99.77.7 {net}.0.2"
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let spoofed = flows(&pkts, Proto::Icmp, "10.99.77.7", &format!("{net}.0.2"));
    assert!(spoofed.len() >= 2, "{}", packet_summary(&lines));
    for p in &spoofed {
        assert_eq!(packet_reason(p), "IP_RPFILTER", "{p:#?}");
        assert!(the_drop(p).hint.contains("rp_filter"), "{p:#?}");
        assert!(in_order(
            &hop_list(p),
            &[("rx", &va, &node, "ingress"), ("kfree_skb", &va, &node, "")]
        ));
    }
}

/// Pods leaving the node are masqueraded (SNAT) towards an "external"
/// network: the SNAT hop at POSTROUTING and the reply's reverse translation.
#[test]
fn masquerade_to_external_network() {
    let (mut lab, node, a, _b, _va, _vb) = routed_lab("mq");
    let net = lab.net();
    let under = lab.underlay();
    let ext = lab.netns("x");
    sh(&format!(
        "ip link add up9 netns {node} type veth peer name eth0 netns {ext}"
    ));
    sh(&format!(
        "ip -n {node} addr add {under}.1/24 dev up9 && ip -n {node} link set up9 up"
    ));
    sh(&format!(
        "ip -n {ext} addr add {under}.2/24 dev eth0 && ip -n {ext} link set eth0 up"
    ));
    sh(&format!(
        "ip netns exec {node} nft 'add table ip mq; add chain ip mq post {{ type nat hook postrouting priority 100; }}; add rule ip mq post ip saddr {net}.0.0/24 oifname up9 masquerade'"
    ));
    lab.exec(&a, &format!("ping -c1 -W2 {under}.2"));
    let t = Tracer::start(&["--netns", &a, "--proto", "icmp", "--nf-netns", &node]);
    lab.exec(&a, &format!("ping -c2 -i0.2 -W2 {under}.2"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let out = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.0.1"),
        &format!("{under}.2"),
    );
    assert!(out.len() >= 2, "{}", packet_summary(&lines));
    for p in &out {
        let nat = one_nat_hop(p);
        assert_eq!(nat.hook.as_deref(), Some("postrouting"), "{nat:#?}");
        let n = hop_nat(nat);
        assert_eq!(n.kind, NatKind::Snat, "{nat:#?}");
        assert_eq!(n.from, format!("{net}.0.1"), "{nat:#?}");
        assert_eq!(n.to, format!("{under}.1"), "{nat:#?}");
        assert!(in_order(
            &hop_list(p),
            &[
                ("tx", "up9", &node, "egress"),
                ("rx", "eth0", &ext, "ingress")
            ]
        ));
    }
    // Replies come back to the node's address and are un-NATed to the pod.
    let back = flows(
        &pkts,
        Proto::Icmp,
        &format!("{under}.2"),
        &format!("{under}.1"),
    );
    assert!(
        back.len() >= 2,
        "replies selected after translation: {}",
        packet_summary(&lines)
    );
    for p in &back {
        let nat = one_nat_hop(p);
        assert_eq!(nat.hook.as_deref(), Some("prerouting"), "{nat:#?}");
        let n = hop_nat(nat);
        assert_eq!(n.kind, NatKind::Dnat, "{nat:#?}");
        assert_eq!(n.to, format!("{net}.0.1"), "{nat:#?}");
        assert!(in_order(&hop_list(p), &[("rx", "eth0", &a, "ingress")]));
    }
}

/// A Service VIP DNATed by iptables in the pod's own OUTPUT chain (sidecar
/// style): the DNAT hop at OUTPUT in the pod's namespace, and the reply's
/// reverse translation at INPUT.
#[test]
fn output_dnat_with_iptables_in_the_pod() {
    let mut lab = Lab::new("od");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    sh(&format!("ip -n {a} route add 10.96.3.0/24 dev eth0"));
    sh(&format!(
        "ip netns exec {a} iptables -t nat -A OUTPUT -d 10.96.3.10 -p tcp --dport 80 -j DNAT --to-destination {net}.0.2:8080"
    ));
    let _server = tcp_server(&b, &format!("{net}.0.2"), 8080);

    let t = Tracer::start(&["--pod", &a, "--proto", "tcp"]);
    tcp_client(&a, "10.96.3.10", 80);
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.dst.to_string() == "10.96.3.10")
                && first_flags(p) == Some("S")
        })
        .unwrap_or_else(|| panic!("{}", packet_summary(&lines)));
    let nat = one_nat_hop(syn);
    assert_eq!(nat.hook.as_deref(), Some("output"), "{nat:#?}");
    assert_eq!(nat.netns_name.as_deref(), Some(a.as_str()), "{nat:#?}");
    assert_eq!(hop_nat(nat).to, format!("{net}.0.2:8080"), "{nat:#?}");
    assert!(in_order(
        &hop_list(syn),
        &[("tx", "eth0", &a, "egress"), ("rx", "eth0", &b, "ingress")]
    ));
    let synack = pkts
        .iter()
        .find(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.src.to_string() == format!("{net}.0.2"))
                && first_flags(p) == Some("S.")
        })
        .unwrap_or_else(|| panic!("{}", packet_summary(&lines)));
    let nat = one_nat_hop(synack);
    assert_eq!(nat.hook.as_deref(), Some("input"), "{nat:#?}");
    assert_eq!(hop_nat(nat).to, "10.96.3.10:80", "{nat:#?}");
}

/// A Service whose backend shares the client's bridge (docker/flannel style
/// with `bridge-nf-call-iptables`): the SYN is DNATed at the node's
/// PREROUTING, and the backend's reply, bridged straight back, passes
/// netfilter through br_netfilter, where the reverse translation shows.
#[test]
fn bridged_backend_dnat_with_bridge_nf_call_iptables() {
    let (lab, node, a, b) = bridged_lab("bn");
    let net = lab.net();
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority -100; }}; add rule ip svc pre ip daddr 10.96.4.10 tcp dport 80 dnat to {net}.0.2:8080'"
    ));
    let _server = tcp_server(&b, &format!("{net}.0.2"), 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--pod", &a, "--proto", "tcp", "--nf-netns", &node]);
    // Works only if the bridged reply is un-DNATed: the client checks the answer.
    tcp_client(&a, "10.96.4.10", 80);
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.dst.to_string() == "10.96.4.10")
                && first_flags(p) == Some("S")
        })
        .unwrap_or_else(|| panic!("{}", packet_summary(&lines)));
    let nat = one_nat_hop(syn);
    assert_eq!(
        (nat.hook.as_deref(), nat.netns_name.as_deref()),
        (Some("prerouting"), Some(node.as_str())),
        "{nat:#?}"
    );
    assert_eq!(hop_nat(nat).to, format!("{net}.0.2:8080"), "{nat:#?}");
    assert!(in_order(
        &hop_list(syn),
        &[("tx", "eth0", &a, "egress"), ("rx", "eth0", &b, "ingress")]
    ));
    let synack = pkts
        .iter()
        .find(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.src.to_string() == format!("{net}.0.2"))
                && first_flags(p) == Some("S.")
        })
        .unwrap_or_else(|| {
            panic!(
                "the reply, selected after translation: {}",
                packet_summary(&lines)
            )
        });
    let nat = one_nat_hop(synack);
    let n = hop_nat(nat);
    assert_eq!(n.from, format!("{net}.0.2:8080"), "{nat:#?}");
    assert_eq!(n.to, "10.96.4.10:80", "{nat:#?}");
    let vb = format!("v{b}");
    assert!(
        in_order(
            &hop_list(synack),
            &[
                ("tx", "eth0", &b, "egress"),
                ("rx", &vb, &node, "ingress"),
                ("rx", "eth0", &a, "ingress")
            ]
        ),
        "bridged straight back: {:#?}",
        hop_list(synack)
    );
}
