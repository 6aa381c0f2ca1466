//! Real-kernel tests: kube-router's NetworkPolicy layout, written as its
//! own code writes it (`network_policy_controller.go`, `pod.go`,
//! `policy.go`; ipset matches written as addresses here): a pod's firewall
//! chain runs the packet through each policy that selects the pod ("run
//! through nw policy NAME"), a policy marks what it accepts, and an
//! unmarked packet is logged and rejected ("rule to REJECT traffic
//! destined for POD name:... namespace: ..."). A call the policy does not
//! allow names the pod and the policy, reads `refused` with the ICMP seen;
//! the call it allows, through the same chains, names nothing. Once loaded
//! through iptables-nft (nftables tracing names the rules) and once
//! through iptables-legacy (the counters name them).
use netflow_schema::{Outcome, Proto, Verdict};
use netflow_tests::*;

/// kube-router's filter table for pod `db` (namespace `default`, `b_ip`),
/// selected by policy `allow-from-pc`, which allows `a_ip` to port 8080.
fn kube_router_rules(a_ip: &str, b_ip: &str) -> String {
    format!(
        r#"*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-POD-FW-MZCD3GGQAJJBW5KC - [0:0]
:KUBE-NWPLCY-LBB6YCHM4IRXG5N2 - [0:0]
-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD
-A KUBE-ROUTER-FORWARD -d {b_ip}/32 -m comment --comment "rule to jump traffic destined to POD name:db namespace: default to chain KUBE-POD-FW-MZCD3GGQAJJBW5KC" -j KUBE-POD-FW-MZCD3GGQAJJBW5KC
-A KUBE-ROUTER-FORWARD -m comment --comment "rule to explicitly ACCEPT traffic that comply to network policies" -m mark --mark 0x20000/0x20000 -j ACCEPT
-A KUBE-POD-FW-MZCD3GGQAJJBW5KC -m comment --comment "rule for stateful firewall for pod" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-POD-FW-MZCD3GGQAJJBW5KC -m comment --comment "rule to drop invalid state for pod" -m conntrack --ctstate INVALID -j DROP
-A KUBE-POD-FW-MZCD3GGQAJJBW5KC -d {b_ip}/32 -m comment --comment "run through nw policy allow-from-pc" -j KUBE-NWPLCY-LBB6YCHM4IRXG5N2
-A KUBE-POD-FW-MZCD3GGQAJJBW5KC -m comment --comment "rule to log dropped traffic POD name:db namespace: default" -m mark ! --mark 0x10000/0x10000 -m limit --limit 10/min --limit-burst 10 -j NFLOG --nflog-group 100
-A KUBE-POD-FW-MZCD3GGQAJJBW5KC -m comment --comment "rule to REJECT traffic destined for POD name:db namespace: default" -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-POD-FW-MZCD3GGQAJJBW5KC -j MARK --set-xmark 0x0/0x10000
-A KUBE-POD-FW-MZCD3GGQAJJBW5KC -m comment --comment "set mark to ACCEPT traffic that comply to network policies" -j MARK --set-xmark 0x20000/0x20000
-A KUBE-NWPLCY-LBB6YCHM4IRXG5N2 -s {a_ip}/32 -d {b_ip}/32 -p tcp -m comment --comment "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-from-pc namespace default" -m tcp --dport 8080 -j MARK --set-xmark 0x10000/0x10000
-A KUBE-NWPLCY-LBB6YCHM4IRXG5N2 -s {a_ip}/32 -d {b_ip}/32 -p tcp -m comment --comment "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-from-pc namespace default" -m tcp --dport 8080 -m mark --mark 0x10000/0x10000 -j RETURN
COMMIT
"#
    )
}

fn restore(tool: &str, ns: &str, rules: &str) {
    let file = std::env::temp_dir().join(format!("netflow-kube-router-{ns}.txt"));
    std::fs::write(&file, rules).unwrap();
    let loaded = std::process::Command::new("ip")
        .args(["netns", "exec", ns, tool, "-w"])
        .stdin(std::fs::File::open(&file).unwrap())
        .status();
    let _ = std::fs::remove_file(&file);
    assert!(loaded.is_ok_and(|s| s.success()), "{tool} {rules}");
}

/// `tool` loads the rules; `named`: the rules can be named on this kernel.
fn reject_names_the_pod_and_its_policy(tag: &str, tool: &str, named: bool) {
    let (lab, node, a, b, _va, _vb) = routed_lab(tag);
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    let _s1 = tcp_server(&b, &b_ip, 8080);
    let _s2 = tcp_server(&b, &b_ip, 5432);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    restore(tool, &node, &kube_router_rules(&a_ip, &b_ip));

    // Not `--proto tcp`: the ICMP error that answers the call is part of it.
    let args = ["--netns", a.as_str(), "--nf-netns", node.as_str()];
    let t = Tracer::start(&args);
    tcp_client(&a, &b_ip, 8080);
    let refused = sh(&format!(
        "ip netns exec {a} python3 -c \"import socket\ntry: socket.create_connection(('{b_ip}',5432),timeout=2)\nexcept ConnectionRefusedError: print('refused')\nexcept OSError as e: print('not refused:', e)\""
    ));
    tcp_client(&a, &b_ip, 8080);
    let lines = t.stop_lines();
    assert!(
        refused.contains("refused"),
        "the client is refused: {refused}"
    );

    // The allowed twin: through the same chains, nothing named.
    let conns = connections(&lines);
    let ok: Vec<_> = conns
        .iter()
        .filter(|c| c.flow.dport == Some(8080))
        .collect();
    assert!(ok.len() >= 2, "{conns:#?}");
    for c in ok {
        assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
        assert!(
            c.rule.is_none() && c.k8s.is_none() && c.cause.is_none(),
            "{c:#?}"
        );
    }
    let pkts = packets(&lines);
    for p in flows(&pkts, Proto::Tcp, &a_ip, &b_ip)
        .into_iter()
        .filter(|p| p.flow.as_ref().and_then(|f| f.dport) == Some(8080))
    {
        assert!(p.drop.is_none(), "{p:#?}");
    }

    // The call to 5432: refused, the ICMP seen, the pod and its policy.
    let call = conns
        .iter()
        .find(|c| c.flow.dport == Some(5432))
        .unwrap_or_else(|| panic!("{conns:#?}"));
    assert_eq!(call.outcome, Outcome::Refused, "{call:#?}");
    let syn = flows(&pkts, Proto::Tcp, &a_ip, &b_ip)
        .into_iter()
        .find(|p| {
            p.flow.as_ref().and_then(|f| f.dport) == Some(5432) && p.verdict == Verdict::Dropped
        })
        .unwrap_or_else(|| panic!("the rejected SYN: {}", packet_summary(&lines)));
    let d = the_drop(syn);
    assert_eq!(d.hook.as_deref(), Some("forward"), "{syn:#?}");
    assert!(
        pkts.iter().any(|p| p
            .flow
            .as_ref()
            .is_some_and(|f| f.proto == Proto::Icmp && f.dst.to_string() == a_ip)),
        "the ICMP port unreachable sent back: {}",
        packet_summary(&lines)
    );
    assert!(
        !d.hint.contains("no NetworkPolicy"),
        "one selects it: {}",
        d.hint
    );
    if !named {
        assert!(d.rule.is_none(), "no rule seen, none blamed: {syn:#?}");
        return;
    }
    let rule = d
        .rule
        .as_ref()
        .unwrap_or_else(|| panic!("no rule: {syn:#?}"));
    assert_eq!(rule.chain, "KUBE-POD-FW-MZCD3GGQAJJBW5KC", "{syn:#?}");
    let k = d.k8s.as_ref().unwrap_or_else(|| panic!("no pod: {syn:#?}"));
    assert_eq!(
        (k.kind.as_str(), k.namespace.as_str(), k.name.as_str()),
        ("Pod", "default", "db"),
        "{syn:#?}"
    );
    let policies = d
        .policies
        .as_ref()
        .unwrap_or_else(|| panic!("no policies: {syn:#?}"));
    assert_eq!(policies.len(), 1, "{syn:#?}");
    assert_eq!(
        (policies[0].kind.as_str(), policies[0].name.as_str()),
        ("NetworkPolicy", "allow-from-pc"),
        "{syn:#?}"
    );
    assert!(
        d.hint.contains("selected by NetworkPolicy allow-from-pc")
            && d.hint.contains(&format!("{a_ip} -> :5432")),
        "{}",
        d.hint
    );
    assert!(
        call.hint
            .as_deref()
            .is_some_and(|h| h.contains("allow-from-pc")),
        "{call:#?}"
    );
}

/// Through iptables-nft: nftables tracing names the rules (5.12 on).
#[test]
fn kube_router_reject_names_the_pod_and_its_policy() {
    reject_names_the_pod_and_its_policy("krn", "iptables-restore", kernel_has_owned_tables());
}

/// Through iptables-legacy: the rules' counters name them, on any kernel.
#[test]
fn kube_router_legacy_reject_names_the_pod_and_its_policy() {
    reject_names_the_pod_and_its_policy("krl", "iptables-legacy-restore", true);
}
