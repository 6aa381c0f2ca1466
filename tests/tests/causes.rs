//! Real-kernel tests: the cause behind a failure, named from the node's
//! settings and state. Each lab runs twice in the same topology: with the
//! setting right (every packet delivered, no drop, no cause anywhere), then
//! with it wrong (the drop, its cause with the setting and its value, and a
//! hint that says so, on the packet and on its connection).
use netflow_schema::{Cause, Connection, Line, Outcome, Packet, Proto, Verdict};
use netflow_tests::*;

/// The healthy run: nothing dropped or lost, no packet or connection names
/// a cause, every connection `ok`.
fn healthy(lines: &[Line]) {
    let pkts = packets(lines);
    assert!(!pkts.is_empty(), "no packets traced");
    let s = stats(lines);
    assert_eq!(s.dropped, 0, "{}", packet_summary(lines));
    assert_eq!(s.unknown, 0, "{}", packet_summary(lines));
    for p in &pkts {
        assert!(p.drop.is_none(), "{p:#?}");
    }
    let conns = connections(lines);
    assert!(
        !conns.is_empty(),
        "no connections: {}",
        packet_summary(lines)
    );
    for c in conns {
        assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
        assert!(c.cause.is_none(), "{c:#?}");
    }
}

/// The drop's cause: its kind, setting and value, and the hint naming
/// them; the same cause on the connection.
fn caused<'a>(p: &'a Packet, kind: &str, setting: &str, value: &str) -> &'a Cause {
    assert_eq!(p.verdict, Verdict::Dropped, "{p:#?}");
    let drop = the_drop(p);
    let c = drop
        .cause
        .as_ref()
        .unwrap_or_else(|| panic!("no cause: {p:#?}"));
    assert_eq!(c.kind, kind, "{p:#?}");
    assert_eq!(c.setting.as_deref(), Some(setting), "{p:#?}");
    assert_eq!(c.value.as_deref(), Some(value), "{p:#?}");
    let hint = &drop.hint;
    assert!(
        hint.contains(&format!("{setting} = {value}")),
        "the hint names the setting and its value: {hint}"
    );
    c
}

/// The connection of `src -> dst` names the same cause.
fn connection_caused<'a>(lines: &'a [Line], dst: &str, kind: &str) -> &'a Connection {
    let c = connections(lines)
        .into_iter()
        .find(|c| c.flow.dst.to_string() == dst)
        .unwrap_or_else(|| {
            panic!(
                "a connection to {dst}: {:#?}\n{}",
                connections(lines),
                packet_summary(lines)
            )
        });
    assert_ne!(c.outcome, Outcome::Ok, "{c:#?}");
    assert_eq!(
        c.cause.as_ref().map(|c| c.kind.as_str()),
        Some(kind),
        "{c:#?}"
    );
    c
}

/// Forwarding off on the node: the pod's packets die after the route was
/// found (IP_INADDRERRORS); the cause is `net.ipv4.ip_forward = 0`, not a
/// missing route.
#[test]
fn forwarding_off_names_ip_forward() {
    let (lab, node, a, _b, va, vb) = routed_lab("fwo");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmp"]);
    lab.exec(&a, &format!("ping -c2 -i0.2 -W2 {b_ip}"));
    healthy(&t.stop_lines());

    // Neighbours stay resolved (proxy ARP stops with forwarding, and an
    // emulated kernel is slow enough for the entry to expire): only
    // forwarding changes.
    let mac = sh(&format!("ip -n {node} -o link show {va}"));
    let mac = mac
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("{va}'s address: {mac}"))
        .to_string();
    sh(&format!(
        "ip -n {a} neigh replace 169.254.1.1 lladdr {mac} dev eth0 nud permanent"
    ));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.ip_forward=0"
    ));
    let t = Tracer::start(&["--netns", &a, "--proto", "icmp"]);
    sh_quiet(&format!("ip netns exec {a} ping -c2 -i0.2 -W1 {b_ip}"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmp, &a_ip, &b_ip);
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
    for r in &reqs {
        let c = caused(r, "forwarding_disabled", "net.ipv4.ip_forward", "0");
        assert_eq!(c.netns_name.as_deref(), Some(node.as_str()), "{r:#?}");
        assert_eq!(c.dev.as_deref(), Some(va.as_str()), "{r:#?}");
        let hint = &the_drop(r).hint;
        assert!(!hint.contains("no route"), "{hint}");
        assert!(hint.contains(&vb), "the route it had: {hint}");
    }
    let c = connection_caused(&lines, &b_ip, "forwarding_disabled");
    assert_eq!(c.outcome, Outcome::RequestLost, "{c:#?}");
}

/// IPv6 forwarding off (`net.ipv6.conf.all.forwarding = 0`): the same
/// cause with the IPv6 setting; with it on, the same pings read healthy.
#[test]
fn ipv6_forwarding_off_names_the_ipv6_setting() {
    let (lab, node, a, b, va, vb) = routed_lab("fw6");
    let [a6, b6] = with_ipv6(&lab, &node, [(&a, &va), (&b, &vb)]);
    lab.exec(&a, &format!("ping -6 -c1 -W2 {b6}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmpv6", "--host", &b6]);
    lab.exec(&a, &format!("ping -6 -c2 -i0.2 -W2 {b6}"));
    healthy(&t.stop_lines());

    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv6.conf.all.forwarding=0"
    ));
    let t = Tracer::start(&["--netns", &a, "--proto", "icmpv6", "--host", &b6]);
    sh_quiet(&format!("ip netns exec {a} ping -6 -c2 -i0.2 -W1 {b6}"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs: Vec<&Packet> = flows(&pkts, Proto::Icmpv6, &a6, &b6)
        .into_iter()
        .filter(|p| p.verdict == Verdict::Dropped)
        .collect();
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
    for r in &reqs {
        let c = caused(
            r,
            "forwarding_disabled",
            "net.ipv6.conf.all.forwarding",
            "0",
        );
        assert_eq!(c.netns_name.as_deref(), Some(node.as_str()), "{r:#?}");
    }
}

/// A routed pod (Calico style: default route via 169.254.1.1) whose host
/// veth does not answer ARP for the gateway: the request is held in the
/// neighbour queue for seconds, then freed (NEIGH_FAILED) — one timeline,
/// dropped, naming the gateway, the veth and its proxy_arp.
#[test]
fn unanswered_gateway_names_proxy_arp() {
    let (mut lab, node, a, _b, va, _vb) = routed_lab("gwa");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    // A decoy: another veth pair with the same two ifindexes in two other
    // namespaces (ifindexes repeat across namespaces): the gateway's veth is
    // found by the namespace id the kernel gives its peer, not by index.
    let ifindex = |ns: &str, dev: &str| {
        sh(&format!("ip -n {ns} -o link show dev {dev}"))
            .split(':')
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let (pod_idx, veth_idx) = (ifindex(&a, "eth0"), ifindex(&node, &va));
    let (d1, d2) = (lab.netns("d1"), lab.netns("d2"));
    sh(&format!(
        "ip -n {d1} link add dcy index {veth_idx} type veth peer name dcy index {pod_idx} netns {d2}"
    ));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmp"]);
    lab.exec(&a, &format!("ping -c2 -i0.2 -W2 {b_ip}"));
    healthy(&t.stop_lines());

    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.conf.{va}.proxy_arp=0"
    ));
    sh(&format!("ip -n {a} neigh flush dev eth0"));
    let t = Tracer::start(&["--netns", &a, "--proto", "icmp"]);
    sh_quiet(&format!("ip netns exec {a} ping -c1 -W1 {b_ip}"));
    // ARP asks three times a second apart before the kernel gives up.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmp, &a_ip, &b_ip);
    assert_eq!(
        reqs.len(),
        1,
        "one request, one timeline: {}",
        packet_summary(&lines)
    );
    let r = reqs[0];
    assert_eq!(packet_reason(r), "NEIGH_FAILED", "{r:#?}");
    let key = format!("net.ipv4.conf.{va}.proxy_arp");
    let c = caused(r, "gateway_unanswered", &key, "0");
    assert_eq!(c.addr.as_deref(), Some("169.254.1.1"), "{r:#?}");
    assert_eq!(c.dev.as_deref(), Some(va.as_str()), "{r:#?}");
    assert!(the_drop(r).hint.contains("169.254.1.1"), "{r:#?}");
    let s = stats(&lines);
    assert_eq!(s.unknown, 0, "{}", packet_summary(&lines));
    connection_caused(&lines, &b_ip, "gateway_unanswered");
}

/// Strict reverse-path filtering from `conf.all` (the kernel uses the
/// higher of `all` and the device's): a pod answering from an address the
/// node routes elsewhere is dropped, the cause names `conf.all.rp_filter`.
/// With reverse-path filtering off the same packets go through.
#[test]
fn strict_rp_filter_names_the_setting_in_force() {
    let (lab, node, a, _b, va, _vb) = routed_lab("rpf");
    let net = lab.net();
    let b_ip = format!("{net}.0.2");
    let spoofed = "10.99.78.7";
    sh(&format!("ip -n {a} addr add {spoofed}/32 dev eth0"));
    let set = |all: u8, dev: u8| {
        sh(&format!(
            "ip netns exec {node} sysctl -qw net.ipv4.conf.all.rp_filter={all} net.ipv4.conf.{va}.rp_filter={dev}"
        ))
    };
    set(0, 0);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let t = Tracer::start(&["--host", spoofed, "--proto", "icmp"]);
    sh_quiet(&format!(
        "ip netns exec {a} ping -c2 -i0.2 -W1 -I {spoofed} {b_ip}"
    ));
    let lines = t.stop_lines();
    // Off: the requests reach the pod (its replies go out by the node's
    // default route, nowhere); none is dropped, no cause.
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmp, spoofed, &b_ip);
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
    for r in &reqs {
        assert_eq!(r.verdict, Verdict::Delivered, "{r:#?}");
        assert!(r.drop.is_none(), "{r:#?}");
    }

    set(1, 0);
    let t = Tracer::start(&["--host", spoofed, "--proto", "icmp"]);
    sh_quiet(&format!(
        "ip netns exec {a} ping -c2 -i0.2 -W1 -I {spoofed} {b_ip}"
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, Proto::Icmp, spoofed, &b_ip);
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
    for r in &reqs {
        assert_eq!(packet_reason(r), "IP_RPFILTER", "{r:#?}");
        let c = caused(r, "rp_filter", "net.ipv4.conf.all.rp_filter", "1");
        assert_eq!(c.netns_name.as_deref(), Some(node.as_str()), "{r:#?}");
        assert_eq!(c.dev.as_deref(), Some(va.as_str()), "{r:#?}");
    }
}

/// Bridged pods calling a Service whose endpoint is on the same bridge:
/// with `bridge-nf-call-iptables = 0` the backend's reply goes back over
/// the bridge without conntrack, so the client gets it from the pod's
/// address, not the Service's, and resets it. The cause names the
/// setting, the bridge and the Service address — never "nothing listens".
#[test]
fn bridged_reply_without_netfilter_names_bridge_nf_call_iptables() {
    let (lab, node, a, b) = bridged_lab("bnf");
    let net = lab.net();
    let vip = "10.96.5.10";
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority -100; }}; add rule ip svc pre ip daddr {vip} tcp dport 80 dnat to {net}.0.2:8080'"
    ));
    let _server = tcp_server(&b, &format!("{net}.0.2"), 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--pod", &a, "--proto", "tcp", "--nf-netns", &node]);
    tcp_client(&a, vip, 80);
    healthy(&t.stop_lines());

    sh(&format!(
        "ip netns exec {node} sysctl -qw net.bridge.bridge-nf-call-iptables=0"
    ));
    let t = Tracer::start(&["--pod", &a, "--proto", "tcp", "--nf-netns", &node]);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{vip}',80),timeout=1)\""
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let b_ip = format!("{net}.0.2");
    let synack = pkts
        .iter()
        .find(|p| {
            p.flow.as_ref().is_some_and(|f| f.src.to_string() == b_ip)
                && p.verdict == Verdict::Dropped
        })
        .unwrap_or_else(|| panic!("the untranslated reply: {}", packet_summary(&lines)));
    assert_eq!(packet_reason(synack), "NO_SOCKET", "{synack:#?}");
    let c = caused(
        synack,
        "reply_not_translated",
        "net.bridge.bridge-nf-call-iptables",
        "0",
    );
    assert_eq!(c.dev.as_deref(), Some("br0"), "{synack:#?}");
    assert_eq!(c.netns_name.as_deref(), Some(node.as_str()), "{synack:#?}");
    assert_eq!(
        c.addr.as_deref(),
        Some(format!("{vip}:80").as_str()),
        "{synack:#?}"
    );
    let hint = &the_drop(synack).hint;
    assert!(!hint.contains("listens"), "the port answered: {hint}");
    let conn = connection_caused(&lines, vip, "reply_not_translated");
    assert!(
        conn.hint.as_deref().is_some_and(|h| !h.contains("listens")),
        "{conn:#?}"
    );
}

/// The node's FORWARD chain with policy DROP (as Docker sets it) and no
/// rule accepting pod traffic: rule tracing sees the policy, not a rule,
/// drop it; the cause is the chain's policy. With policy ACCEPT the same
/// calls read healthy.
#[test]
fn forward_policy_drop_names_the_chain_policy() {
    let (lab, node, a, b, _va, _vb) = routed_lab("fpd");
    let net = lab.net();
    let b_ip = format!("{net}.0.2");
    sh(&format!("ip netns exec {node} iptables -P FORWARD ACCEPT"));
    let _server = tcp_server(&b, &b_ip, 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let args = [
        "--netns",
        a.as_str(),
        "--proto",
        "tcp",
        "--nf-netns",
        node.as_str(),
    ];

    let t = Tracer::start(&args);
    tcp_client(&a, &b_ip, 8080);
    healthy(&t.stop_lines());

    sh(&format!("ip netns exec {node} iptables -P FORWARD DROP"));
    let t = Tracer::start(&args);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{b_ip}',8080),timeout=1)\""
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let syn = flows(&pkts, Proto::Tcp, &format!("{net}.0.1"), &b_ip)
        .into_iter()
        .find(|p| p.verdict == Verdict::Dropped)
        .unwrap_or_else(|| panic!("the dropped SYN: {}", packet_summary(&lines)));
    assert_eq!(
        syn.drop.as_ref().and_then(|d| d.hook.as_deref()),
        Some("forward"),
        "{syn:#?}"
    );
    let hint = &the_drop(syn).hint;
    assert!(
        !hint.contains("a firewall rule dropped"),
        "no rule dropped it: {hint}"
    );
    if !kernel_has_owned_tables() {
        // No rule tracing before 5.12: the hook, and no rule blamed.
        assert!(hint.contains("a chain's policy"), "{hint}");
        assert!(
            syn.drop.as_ref().and_then(|d| d.cause.as_ref()).is_none(),
            "{syn:#?}"
        );
        return;
    }
    let c = caused(
        syn,
        "chain_policy",
        "policy of chain FORWARD in table ip filter",
        "drop",
    );
    assert_eq!(c.netns_name.as_deref(), Some(node.as_str()), "{syn:#?}");
    assert!(
        syn.drop
            .as_ref()
            .and_then(|d| d.rule.as_ref())
            .and_then(|r| r.handle)
            .is_none(),
        "{syn:#?}"
    );
    connection_caused(&lines, &b_ip, "chain_policy");
}
