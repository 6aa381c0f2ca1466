//! Real-kernel tests: a drop by a legacy x_tables rule (iptables-legacy,
//! which nftables tracing cannot see) named from the node's own counters.
//! Each lab runs a dropped flow beside a healthy twin that passes the same
//! chains: the dropped one names its rule (or its chain's policy), the
//! healthy one names nothing.
use netflow_schema::{Line, Outcome, Packet, Proto, Verdict};
use netflow_tests::*;

fn legacy(ns: &str, rule: &str) {
    sh(&format!("ip netns exec {ns} iptables-legacy -w {rule}"));
}

/// The trace of one healthy call to `b_ip:8080` and one refused or
/// dropped call to `b_ip:{port}`, side by side.
fn calls(a: &str, node: &str, b_ip: &str, port: u16) -> Vec<Line> {
    let args = ["--netns", a, "--proto", "tcp", "--nf-netns", node];
    let t = Tracer::start(&args);
    tcp_client(a, b_ip, 8080);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{b_ip}',{port}),timeout=1)\""
    ));
    tcp_client(a, b_ip, 8080);
    t.stop_lines()
}

/// The healthy twin: every packet to 8080 and back delivered, its
/// connections `ok`, nothing named.
fn twin_healthy(lines: &[Line], a_ip: &str, b_ip: &str) {
    let pkts = packets(lines);
    let twin: Vec<&Packet> = flows(&pkts, Proto::Tcp, a_ip, b_ip)
        .into_iter()
        .filter(|p| p.flow.as_ref().and_then(|f| f.dport) == Some(8080))
        .collect();
    assert!(!twin.is_empty(), "{}", packet_summary(lines));
    for p in twin {
        assert_ne!(p.verdict, Verdict::Dropped, "{p:#?}");
        assert!(p.drop.is_none(), "{p:#?}");
    }
    let ok: Vec<_> = connections(lines)
        .into_iter()
        .filter(|c| c.flow.dport == Some(8080))
        .collect();
    assert!(ok.len() >= 2, "{:#?}", connections(lines));
    for c in ok {
        assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
        assert!(c.cause.is_none() && c.rule.is_none(), "{c:#?}");
    }
}

/// The dropped SYN to `port`.
fn dropped<'a>(
    pkts: &[&'a Packet],
    a_ip: &str,
    b_ip: &str,
    port: u16,
    lines: &[Line],
) -> &'a Packet {
    flows(pkts, Proto::Tcp, a_ip, b_ip)
        .into_iter()
        .find(|p| {
            p.flow.as_ref().and_then(|f| f.dport) == Some(port) && p.verdict == Verdict::Dropped
        })
        .unwrap_or_else(|| panic!("the dropped SYN to {port}: {}", packet_summary(lines)))
}

/// A kube-proxy-style DROP rule in a chain the FORWARD chain jumps to
/// (`KUBE-EXTERNAL-SERVICES`, "ns/name:port has no local endpoints"):
/// the dropped call names that rule, its Service and "legacy iptables";
/// the healthy call through the same jump names nothing.
#[test]
fn legacy_drop_rule_is_named_with_its_service() {
    let (lab, node, a, b, _va, _vb) = routed_lab("lgr");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    let _s1 = tcp_server(&b, &b_ip, 8080);
    let _s2 = tcp_server(&b, &b_ip, 5432);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    legacy(&node, "-N KUBE-EXTERNAL-SERVICES");
    legacy(
        &node,
        "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    );
    legacy(
        &node,
        &format!("-A KUBE-EXTERNAL-SERVICES -d {b_ip}/32 -p tcp -m comment --comment \"default/db:pg has no local endpoints\" -m tcp --dport 5432 -j DROP"),
    );

    let lines = calls(&a, &node, &b_ip, 5432);
    twin_healthy(&lines, &a_ip, &b_ip);
    let pkts = packets(&lines);
    let syn = dropped(&pkts, &a_ip, &b_ip, 5432, &lines);
    let d = the_drop(syn);
    assert_eq!(d.hook.as_deref(), Some("forward"), "{syn:#?}");
    let rule = d
        .rule
        .as_ref()
        .unwrap_or_else(|| panic!("no rule: {syn:#?}"));
    assert_eq!(rule.chain, "KUBE-EXTERNAL-SERVICES", "{syn:#?}");
    assert_eq!(rule.table, "filter", "{syn:#?}");
    assert!(
        rule.rule
            .as_deref()
            .is_some_and(|r| r.contains("--dport 5432") && r.ends_with("-j DROP")),
        "{syn:#?}"
    );
    let k = d
        .k8s
        .as_ref()
        .unwrap_or_else(|| panic!("no Service: {syn:#?}"));
    assert_eq!(
        (k.kind.as_str(), k.namespace.as_str(), k.name.as_str()),
        ("Service", "default", "db"),
        "{syn:#?}"
    );
    assert!(d.hint.contains("legacy iptables"), "{}", d.hint);
    assert!(d.hint.contains("default/db"), "{}", d.hint);
    let c = connections(&lines)
        .into_iter()
        .find(|c| c.flow.dport == Some(5432))
        .unwrap_or_else(|| panic!("{:#?}", connections(&lines)));
    assert_ne!(c.outcome, Outcome::Ok, "{c:#?}");
    assert_eq!(
        c.rule.as_ref().map(|r| r.chain.as_str()),
        Some("KUBE-EXTERNAL-SERVICES"),
        "{c:#?}"
    );
}

/// A legacy FORWARD policy of DROP, with a rule that accepts port 8080
/// and the replies: the call to 9090 names the chain's policy (legacy),
/// no rule; the call to 8080 passes the same chain and names nothing.
#[test]
fn legacy_chain_policy_drop_is_named() {
    let (lab, node, a, b, _va, _vb) = routed_lab("lgp");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    let _s1 = tcp_server(&b, &b_ip, 8080);
    let _s2 = tcp_server(&b, &b_ip, 9090);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    legacy(
        &node,
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    );
    legacy(&node, "-A FORWARD -p tcp -m tcp --dport 8080 -j ACCEPT");
    legacy(&node, "-A FORWARD -p icmp -j ACCEPT");
    legacy(&node, "-P FORWARD DROP");

    let lines = calls(&a, &node, &b_ip, 9090);
    twin_healthy(&lines, &a_ip, &b_ip);
    let pkts = packets(&lines);
    let syn = dropped(&pkts, &a_ip, &b_ip, 9090, &lines);
    let d = the_drop(syn);
    assert!(d.rule.is_none(), "no rule dropped it: {syn:#?}");
    let c = d
        .cause
        .as_ref()
        .unwrap_or_else(|| panic!("no cause: {syn:#?}"));
    assert_eq!(c.kind, "chain_policy", "{syn:#?}");
    let setting = "policy of chain FORWARD in legacy iptables table filter";
    assert_eq!(c.setting.as_deref(), Some(setting), "{syn:#?}");
    assert_eq!(c.value.as_deref(), Some("drop"), "{syn:#?}");
    assert!(d.hint.contains(&format!("{setting} = drop")), "{}", d.hint);
    assert_eq!(c.netns_name.as_deref(), Some(node.as_str()), "{syn:#?}");
}
