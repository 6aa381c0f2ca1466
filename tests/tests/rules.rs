//! Real-kernel tests: rule names by nftables tracing. Each lab writes its
//! rules the way kube-proxy and kube-router write them (iptables-restore
//! files with their chain layout and comments, here through iptables-nft;
//! and kube-proxy's nftables mode), sends real traffic and checks that
//! netflow names the rule and the Kubernetes object, and that it leaves the
//! ruleset exactly as it found it.
use netflow_schema::{Drop, K8sRef, NatKind, Packet, Rule, Verdict};
use netflow_tests::*;

/// kube-proxy (iptables mode) and kube-router rules for pod b (`web-1` in
/// namespace `default`, `B`): Service default/web:http (10.96.0.10:80 →
/// B:8080), Service default/empty:http without endpoints (10.96.0.11:80),
/// a policy that lets only port 8080 reach the pod, and a policy chain that
/// drops port 5432 by name.
fn kube_proxy_iptables(b_ip: &str) -> String {
    format!(
        r#"*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-QMWWTXBG7KFJQKLO - [0:0]
:KUBE-SEP-6DHMNBWU2XGPHOOR - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-QMWWTXBG7KFJQKLO
-A KUBE-SVC-QMWWTXBG7KFJQKLO -m comment --comment "default/web:http -> {b_ip}:8080" -j KUBE-SEP-6DHMNBWU2XGPHOOR
-A KUBE-SEP-6DHMNBWU2XGPHOOR -s {b_ip}/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-6DHMNBWU2XGPHOOR -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination {b_ip}:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-POD-FW-4ZNDWSQZ5DU6FRFT - [0:0]
:KUBE-NWPLCY-CZCMKWKBT5BFWM3L - [0:0]
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m comment --comment "default/empty:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-ROUTER-FORWARD -d {b_ip}/32 -m comment --comment "rule to jump traffic destined to POD name:web-1 namespace: default to chain KUBE-POD-FW-4ZNDWSQZ5DU6FRFT" -j KUBE-POD-FW-4ZNDWSQZ5DU6FRFT
-A KUBE-POD-FW-4ZNDWSQZ5DU6FRFT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-POD-FW-4ZNDWSQZ5DU6FRFT -p tcp -m tcp --dport 5432 -m comment --comment "run through nw policy deny-db" -j KUBE-NWPLCY-CZCMKWKBT5BFWM3L
-A KUBE-POD-FW-4ZNDWSQZ5DU6FRFT -p tcp -m tcp --dport 8080 -m comment --comment "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-web namespace default" -j ACCEPT
-A KUBE-POD-FW-4ZNDWSQZ5DU6FRFT -m comment --comment "rule to REJECT traffic destined for POD name:web-1 namespace: default" -j REJECT --reject-with icmp-port-unreachable
-A KUBE-NWPLCY-CZCMKWKBT5BFWM3L -p tcp -m tcp --dport 5432 -m comment --comment "rule to DROP traffic from source pods to dest pods selected by policy name deny-db namespace default" -j DROP
COMMIT
"#
    )
}

fn iptables_restore(ns: &str, rules: &str) {
    let file = std::env::temp_dir().join(format!("netflow-rules-{ns}.txt"));
    std::fs::write(&file, rules).unwrap();
    let loaded = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "iptables-restore"])
        .stdin(std::fs::File::open(&file).unwrap())
        .status();
    let _ = std::fs::remove_file(&file);
    assert!(
        loaded.is_ok_and(|s| s.success()),
        "iptables-restore {rules}"
    );
}

fn connect_fails(ns: &str, addr: &str, port: u16) {
    sh_quiet(&format!(
        "ip netns exec {ns} python3 -c \"import socket; socket.create_connection(('{addr}',{port}),timeout=1)\""
    ));
}

/// The first packet of the flow to `dst:dport` (as sent).
fn first_to<'a>(pkts: &[&'a Packet], dst: &str, dport: u16) -> &'a Packet {
    pkts.iter()
        .copied()
        .find(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.dst.to_string() == dst && f.dport == Some(dport))
        })
        .unwrap_or_else(|| {
            let all: Vec<String> = pkts.iter().map(|p| packet_line(p)).collect();
            panic!("no packet to {dst}:{dport}:\n{}", all.join("\n"))
        })
}

/// Whether a packet goes to `dst` (its flow as sent).
fn to_dst(p: &Packet, dst: &str) -> bool {
    p.flow.as_ref().is_some_and(|f| f.dst.to_string() == dst)
}

/// Whether a packet goes to port `dport`.
fn to_port(p: &Packet, dport: u16) -> bool {
    p.flow.as_ref().and_then(|f| f.dport) == Some(dport)
}

/// The rule that dropped it (panics without one).
fn drop_rule(d: &Drop) -> &Rule {
    d.rule.as_ref().unwrap_or_else(|| panic!("no rule: {d:#?}"))
}

/// The Kubernetes object of the rule that dropped it (panics without one).
fn drop_k8s(d: &Drop) -> &K8sRef {
    d.k8s.as_ref().unwrap_or_else(|| panic!("no k8s: {d:#?}"))
}

/// A rule's text, as iptables-save or nft prints it (panics without one).
fn rule_text(r: &Rule) -> &str {
    r.rule
        .as_deref()
        .unwrap_or_else(|| panic!("no rule text: {r:#?}"))
}

#[test]
fn kube_proxy_iptables_rules_name_the_service_and_the_policy() {
    let (lab, node, a, b, _va, _vb) = routed_lab("kpi");
    let net = lab.net();
    let b_ip = format!("{net}.0.2");
    // Neighbours resolved before the pod's firewall rejects pings.
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    iptables_restore(&node, &kube_proxy_iptables(&b_ip));
    let _web = tcp_server(&b, &b_ip, 8080);
    let _db = tcp_server(&b, &b_ip, 5432);

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    if !kernel_has_owned_tables() {
        return old_kernel_keeps_todays_drops(t, &a, &b_ip);
    }
    let table = format!("netflow-{}", t.pid());
    assert!(
        sh(&format!("ip netns exec {node} nft list tables"))
            .contains(&format!("table inet {table}")),
        "netflow's trace table is in the node's namespace while it runs"
    );
    tcp_client(&a, "10.96.0.10", 80);
    connect_fails(&a, "10.96.0.11", 80);
    connect_fails(&a, &b_ip, 9090);
    connect_fails(&a, &b_ip, 5432);
    let lines = t.stop_lines();
    let pkts = packets(&lines);

    // The healthy Service call: delivered, its DNAT names the Service, the
    // endpoint and the rule that chose it; nothing dropped.
    let syn = first_to(&pkts, "10.96.0.10", 80);
    assert_eq!(syn.verdict, Verdict::Delivered, "{syn:#?}");
    let nat = one_nat_hop(syn);
    let n = hop_nat(nat);
    assert_eq!(n.kind, NatKind::Dnat, "{nat:#?}");
    assert_eq!(n.to, format!("{b_ip}:8080"), "{nat:#?}");
    assert_eq!(n.service.as_deref(), Some("default/web:http"), "{nat:#?}");
    assert_eq!(
        n.k8s.as_ref().map(|k| k.kind.as_str()),
        Some("Service"),
        "{nat:#?}"
    );
    let rule = n
        .rule
        .as_ref()
        .unwrap_or_else(|| panic!("no rule: {nat:#?}"));
    assert_eq!(rule.table, "nat", "{rule:#?}");
    assert_eq!(rule.chain, "KUBE-SEP-6DHMNBWU2XGPHOOR", "{rule:#?}");
    assert_eq!(
        rule.comment.as_deref(),
        Some("default/web:http"),
        "{rule:#?}"
    );
    assert!(rule.handle.is_some(), "{rule:#?}");
    let text = rule_text(rule);
    assert!(
        text.starts_with("-A KUBE-SEP-6DHMNBWU2XGPHOOR") && text.contains("DNAT"),
        "{text}"
    );
    for p in pkts.iter().filter(|p| to_dst(p, "10.96.0.10")) {
        assert_ne!(
            p.verdict,
            Verdict::Dropped,
            "the healthy call has no drop: {p:#?}"
        );
    }

    // A Service without endpoints: rejected, the Service named, the hint says why.
    let empty = first_to(&pkts, "10.96.0.11", 80);
    assert_eq!(empty.verdict, Verdict::Dropped, "{empty:#?}");
    let d = the_drop(empty);
    let rule = drop_rule(d);
    assert_eq!(rule.chain, "KUBE-SERVICES", "{d:#?}");
    assert_eq!(rule.table, "filter", "{d:#?}");
    assert_eq!(
        rule.comment.as_deref(),
        Some("default/empty:http has no endpoints"),
        "{d:#?}"
    );
    assert_eq!(rule.verdict, "drop", "{d:#?}");
    let k8s = drop_k8s(d);
    assert_eq!(k8s.kind, "Service", "{d:#?}");
    assert_eq!(k8s.namespace, "default", "{d:#?}");
    assert_eq!(k8s.name, "empty", "{d:#?}");
    assert_eq!(k8s.port.as_deref(), Some("http"), "{d:#?}");
    assert!(d.hint.contains("no ready endpoints"), "{d:#?}");
    // The connection says the same.
    let conn = connections(&lines)
        .into_iter()
        .find(|c| c.flow.dst.to_string() == "10.96.0.11")
        .expect("the connection to the Service without endpoints");
    assert_eq!(
        conn.k8s.as_ref().map(|k| k.name.as_str()),
        Some("empty"),
        "{conn:#?}"
    );
    assert!(
        conn.hint
            .as_deref()
            .is_some_and(|h| h.contains("no ready endpoints")),
        "{conn:#?}"
    );

    // Port 9090 of the pod: kube-router's default deny, naming the pod.
    let denied = first_to(&pkts, &b_ip, 9090);
    assert_eq!(denied.verdict, Verdict::Dropped, "{denied:#?}");
    let d = the_drop(denied);
    assert_eq!(drop_rule(d).chain, "KUBE-POD-FW-4ZNDWSQZ5DU6FRFT", "{d:#?}");
    assert_eq!(drop_k8s(d).kind, "Pod", "{d:#?}");
    assert_eq!(drop_k8s(d).name, "web-1", "{d:#?}");
    assert!(rule_text(drop_rule(d)).contains("REJECT"), "{d:#?}");

    // Port 5432: a policy's DROP, naming the policy, its chain and handle.
    let db = first_to(&pkts, &b_ip, 5432);
    assert_eq!(db.verdict, Verdict::Dropped, "{db:#?}");
    let d = the_drop(db);
    assert_eq!(drop_rule(d).chain, "KUBE-NWPLCY-CZCMKWKBT5BFWM3L", "{d:#?}");
    assert!(drop_rule(d).handle.is_some(), "{d:#?}");
    let k8s = drop_k8s(d);
    assert_eq!(k8s.kind, "NetworkPolicy", "{d:#?}");
    assert_eq!(k8s.name, "deny-db", "{d:#?}");
    assert_eq!(k8s.namespace, "default", "{d:#?}");
    assert!(d.hint.contains("NetworkPolicy default/deny-db"), "{d:#?}");

    assert!(
        !sh(&format!("ip netns exec {node} nft list tables")).contains(&table),
        "the trace table is gone after exit"
    );
}

/// Before Linux 5.12 (no owned tables): said at start, the ruleset left
/// alone, drops reported as before (no rule).
fn old_kernel_keeps_todays_drops(t: Tracer, a: &str, b_ip: &str) {
    assert!(
        t.stderr_text
            .contains("no rule names: owned nftables tables need Linux 5.12"),
        "{}",
        t.stderr_text
    );
    connect_fails(a, b_ip, 9090);
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let d = first_to(&pkts, b_ip, 9090);
    assert_eq!(d.verdict, Verdict::Dropped, "{d:#?}");
    assert!(
        d.drop.as_ref().and_then(|d| d.rule.as_ref()).is_none(),
        "{d:#?}"
    );
    assert!(the_drop(d).hint.contains("firewall rule"), "{d:#?}");
}

/// kube-proxy's nftables mode: the DNAT names the Service from its
/// `service-`/`endpoint-` chains.
#[test]
fn kube_proxy_nftables_mode_names_the_service() {
    let (lab, node, a, b, _va, _vb) = routed_lab("kpn");
    let net = lab.net();
    let b_ip = format!("{net}.0.2");
    let ep = format!("endpoint-5OJB2KTY-default/web/tcp/http__{b_ip}/8080");
    let svc = "service-ULMVA6XW-default/web/tcp/http";
    let ruleset = format!(
        r#"table ip kube-proxy {{
    chain {ep} {{
        meta l4proto tcp dnat to {b_ip}:8080
    }}
    chain {svc} {{
        numgen random mod 1 vmap {{ 0 : goto {ep} }}
    }}
    chain services {{
        ip daddr . meta l4proto . th dport vmap {{ 10.96.0.10 . tcp . 80 : goto {svc} }}
    }}
    chain nat-prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        jump services
    }}
    map no-endpoint-services {{
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = {{ 10.96.0.11 . tcp . 80 comment "default/empty:http" : goto reject-chain }}
    }}
    chain reject-chain {{
        reject
    }}
    chain service-endpoints-check {{
        ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    }}
    chain filter-forward {{
        type filter hook forward priority -110; policy accept;
        ct state new jump service-endpoints-check
    }}
}}
"#,
    );
    let file = std::env::temp_dir().join(format!("netflow-kpn-{node}.nft"));
    std::fs::write(&file, &ruleset).unwrap();
    let loaded = std::process::Command::new("ip")
        .args(["netns", "exec", &node, "nft", "-f"])
        .arg(&file)
        .status();
    let _ = std::fs::remove_file(&file);
    assert!(loaded.is_ok_and(|s| s.success()), "nft -f {ruleset}");
    let _web = tcp_server(&b, &b_ip, 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    tcp_client(&a, "10.96.0.10", 80);
    connect_fails(&a, "10.96.0.11", 80);
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    // No endpoints: the map element kube-proxy wrote names the Service.
    let empty = first_to(&pkts, "10.96.0.11", 80);
    assert_eq!(empty.verdict, Verdict::Dropped, "{empty:#?}");
    let d = the_drop(empty);
    assert_eq!(drop_rule(d).chain, "reject-chain", "{d:#?}");
    assert_eq!(drop_k8s(d).name, "empty", "{d:#?}");
    assert!(drop_k8s(d).no_endpoints, "{d:#?}");
    assert!(d.hint.contains("no ready endpoints"), "{d:#?}");
    let syn = first_to(&pkts, "10.96.0.10", 80);
    assert_eq!(syn.verdict, Verdict::Delivered, "{syn:#?}");
    let nat = one_nat_hop(syn);
    let n = hop_nat(nat);
    assert_eq!(n.service.as_deref(), Some("default/web:http"), "{nat:#?}");
    let rule = n
        .rule
        .as_ref()
        .unwrap_or_else(|| panic!("no rule: {nat:#?}"));
    assert_eq!(rule.family, "ip", "{rule:#?}");
    assert_eq!(rule.table, "kube-proxy", "{rule:#?}");
    assert_eq!(rule.chain, ep, "{rule:#?}");
    assert!(rule_text(rule).contains("dnat to"), "{rule:#?}");
}

/// SIGKILL: the kernel deletes netflow's owned table with its socket.
#[test]
fn sigkill_leaves_no_trace_table() {
    let (lab, node, a, _b, _va, _vb) = routed_lab("kpk");
    let before = sh(&format!("ip netns exec {node} nft -s list ruleset"));
    let mut t = Tracer::start(&["--netns", &a, "--nf-netns", &node]);
    let table = format!("netflow-{}", t.pid());
    let during = sh(&format!("ip netns exec {node} nft -s list ruleset"));
    if kernel_has_owned_tables() {
        assert!(during.contains(&table), "{during}");
        assert!(during.contains("nftrace set 1"), "{during}");
    } else {
        // No owned tables: netflow adds nothing that could outlive it.
        assert_eq!(during, before, "{}", t.stderr_text);
    }
    t.sigkill();
    let mut after = String::new();
    for _ in 0..50 {
        after = sh(&format!("ip netns exec {node} nft -s list ruleset"));
        if after == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(after, before, "the node's ruleset is as it was");
    assert!(
        !sh("nft list tables").contains(&table),
        "nor is it left in netflow's own namespace"
    );
    drop(lab);
}

/// `--no-rule-trace`: the ruleset is byte-identical while netflow runs.
#[test]
fn no_rule_trace_leaves_the_ruleset_untouched() {
    let (lab, node, a, _b, _va, _vb) = routed_lab("kpu");
    let net = lab.net();
    iptables_restore(&node, &kube_proxy_iptables(&format!("{net}.0.2")));
    let before = sh(&format!("ip netns exec {node} nft -s list ruleset"));
    let t = Tracer::start(&["--netns", &a, "--nf-netns", &node, "--no-rule-trace"]);
    connect_fails(&a, &format!("{net}.0.2"), 9090);
    let during = sh(&format!("ip netns exec {node} nft -s list ruleset"));
    let lines = t.stop_lines();
    assert_eq!(during, before);
    // The drop is still reported, without a rule.
    let pkts = packets(&lines);
    let d = first_to(&pkts, &format!("{net}.0.2"), 9090);
    assert_eq!(d.verdict, Verdict::Dropped, "{d:#?}");
    assert!(
        d.drop.as_ref().and_then(|d| d.rule.as_ref()).is_none(),
        "{d:#?}"
    );
    assert_eq!(
        sh(&format!("ip netns exec {node} nft -s list ruleset")),
        before
    );
}

/// Calico's iptables dataplane (felix 3.30's layout, chain names and rule
/// comments) for pod b behind `vb`: Kubernetes NetworkPolicies
/// default/allow-web (TCP 8080) and default/deny-db (no rules), and a Calico
/// NetworkPolicy default/deny-ssh that denies TCP 22 by itself. Policy
/// chains have hashed names; only their first rule says whose they are.
fn calico_iptables(vb: &str) -> String {
    let (web, db, ssh) = (
        "cali-pi-_Vm_1cJRadOrYgBn0juc",
        "cali-pi-_I2T4fqhV2d2-cq-fT2M",
        "cali-pi-_ccrEY90o7NpSLqAr-9a",
    );
    format!(
        r#"*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:cali-FORWARD - [0:0]
:cali-from-wl-dispatch - [0:0]
:cali-fw-{vb} - [0:0]
:{db} - [0:0]
:{web} - [0:0]
:{ssh} - [0:0]
:cali-pri-kns.default - [0:0]
:cali-pri-ksa.default.default - [0:0]
:cali-pro-kns.default - [0:0]
:cali-pro-ksa.default.default - [0:0]
:cali-to-wl-dispatch - [0:0]
:cali-tw-{vb} - [0:0]
-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD
-A FORWARD -m comment --comment "cali:S93hcgKJrXEqnTfs" -m comment --comment "Policy explicitly accepted packet." -m mark --mark 0x10000/0x10000 -j ACCEPT
-A FORWARD -m comment --comment "cali:mp77cMpurHhyjLrM" -j MARK --set-xmark 0x10000/0x10000
-A cali-FORWARD -m comment --comment "cali:W_vvds1Nw3n9QE2f" -j MARK --set-xmark 0x0/0x1a0000
-A cali-FORWARD -i {vb} -m comment --comment "cali:tAzwBLPaV-j53OOZ" -j cali-from-wl-dispatch
-A cali-FORWARD -o {vb} -m comment --comment "cali:4Z0Pf0byo05NFe-P" -j cali-to-wl-dispatch
-A cali-from-wl-dispatch -i {vb} -m comment --comment "cali:BvclViMh5p4PB4lE" -g cali-fw-{vb}
-A cali-from-wl-dispatch -m comment --comment "cali:T4wc1wivt0_tlJL5" -m comment --comment "Unknown interface" -j DROP
-A cali-to-wl-dispatch -o {vb} -m comment --comment "cali:FifdfFbIRE-FBgHe" -g cali-tw-{vb}
-A cali-to-wl-dispatch -m comment --comment "cali:5OEcq8bpIrv0v5Pd" -m comment --comment "Unknown interface" -j DROP
-A cali-tw-{vb} -m comment --comment "cali:yjbWxjIO7U6xj1b7" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A cali-tw-{vb} -m comment --comment "cali:Xkd4eX3xETeWKR8o" -m conntrack --ctstate INVALID -j DROP
-A cali-tw-{vb} -m comment --comment "cali:gGXAAp-2mvJHXSM4" -j MARK --set-xmark 0x0/0x30000
-A cali-tw-{vb} -m comment --comment "cali:tgbAq61mN7BD6xJs" -m comment --comment "Start of tier default" -j MARK --set-xmark 0x0/0x20000
-A cali-tw-{vb} -m comment --comment "cali:0dGjK4vcm2hMwXy_" -m mark --mark 0x0/0x20000 -j {ssh}
-A cali-tw-{vb} -m comment --comment "cali:Ly2XoBD2nO5GcNfX" -m comment --comment "Return if policy accepted" -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-tw-{vb} -m comment --comment "cali:SdOKI7NE1vPfQVPA" -m mark --mark 0x0/0x20000 -j {web}
-A cali-tw-{vb} -m comment --comment "cali:OfPs6AeWD_8P3DKs" -m comment --comment "Return if policy accepted" -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-tw-{vb} -m comment --comment "cali:k7JfS1bF0aYlq6nC" -m mark --mark 0x0/0x20000 -j {db}
-A cali-tw-{vb} -m comment --comment "cali:B5qzXr0lQ8kwVYtM" -m comment --comment "Return if policy accepted" -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-tw-{vb} -m comment --comment "cali:Qm_vuHtvdaKerXN6" -m comment --comment "End of tier default. Drop if no policies passed packet" -m mark --mark 0x0/0x20000 -j DROP
-A cali-tw-{vb} -m comment --comment "cali:PjB4OD49IEnwARuW" -j cali-pri-kns.default
-A cali-tw-{vb} -m comment --comment "cali:cfXfBaibQ4SmjWsO" -m comment --comment "Return if profile accepted" -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-tw-{vb} -m comment --comment "cali:wDnrefnDOk2y2WEK" -j cali-pri-ksa.default.default
-A cali-tw-{vb} -m comment --comment "cali:UyDuiLWh-5Qg3TeE" -m comment --comment "Return if profile accepted" -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-tw-{vb} -m comment --comment "cali:2CAhOFnKvWGI-C77" -m comment --comment "Drop if no profiles matched" -j DROP
-A cali-fw-{vb} -m comment --comment "cali:f89lcpQhFJHk3qpy" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A cali-fw-{vb} -m comment --comment "cali:ktm9EUsNPPlYxgc0" -m conntrack --ctstate INVALID -j DROP
-A cali-fw-{vb} -m comment --comment "cali:U0zmtwNN_vNtMYET" -j MARK --set-xmark 0x0/0x30000
-A cali-fw-{vb} -m comment --comment "cali:ktZ9hyu6v05enCHN" -j cali-pro-kns.default
-A cali-fw-{vb} -m comment --comment "cali:JKBrnl4B9mbUXCkV" -m comment --comment "Return if profile accepted" -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-fw-{vb} -m comment --comment "cali:tQpGkt4EGsNgPltv" -m comment --comment "Drop if no profiles matched" -j DROP
-A {ssh} -p tcp -m comment --comment "cali:nB7wPq0yNlE1rW3s" -m comment --comment "Policy default/default.deny-ssh ingress" -m multiport --dports 22 -j DROP
-A {web} -p tcp -m comment --comment "cali:Z1m8n2TqR7vK0aLc" -m comment --comment "Policy default/knp.default.allow-web ingress" -m multiport --dports 8080 -j MARK --set-xmark 0x10000/0x10000
-A {web} -m comment --comment "cali:hX3oP9dQe5wS2uYb" -m mark --mark 0x10000/0x10000 -j RETURN
-A {db} -m comment --comment "cali:q6VcRL0gx-CI1iw6" -m comment --comment "Policy default/knp.default.deny-db ingress"
-A cali-pri-kns.default -m comment --comment "cali:WMSw8BmYOknRHfsz" -m comment --comment "Profile kns.default ingress" -j MARK --set-xmark 0x10000/0x10000
-A cali-pri-ksa.default.default -m comment --comment "cali:PrckJA84jX_kGp99" -m comment --comment "Profile ksa.default.default ingress"
-A cali-pro-kns.default -m comment --comment "cali:Vr81boRqq4V77Sg8" -m comment --comment "Profile kns.default egress" -j MARK --set-xmark 0x10000/0x10000
-A cali-pro-ksa.default.default -m comment --comment "cali:bUZzZcietq9v5Ybq" -m comment --comment "Profile ksa.default.default egress"
COMMIT
"#
    )
}

/// Calico: a packet no policy accepted names the policies that judged it
/// (their chains' names are hashes); a Calico policy's own deny names that
/// policy; the allowed port is delivered with no drop.
#[test]
fn calico_policy_chains_name_the_network_policy() {
    let (lab, node, a, b, _va, vb) = routed_lab("cal");
    let b_ip = format!("{}.0.2", lab.net());
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    iptables_restore(&node, &calico_iptables(&vb));
    let _web = tcp_server(&b, &b_ip, 8080);
    let _db = tcp_server(&b, &b_ip, 5432);
    let _ssh = tcp_server(&b, &b_ip, 22);

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    if !kernel_has_owned_tables() {
        return old_kernel_keeps_todays_drops(t, &a, &b_ip);
    }
    tcp_client(&a, &b_ip, 8080);
    connect_fails(&a, &b_ip, 5432);
    connect_fails(&a, &b_ip, 22);
    let lines = t.stop_lines();
    let pkts = packets(&lines);

    // Allowed by default/allow-web: delivered, nothing dropped.
    for p in pkts.iter().filter(|p| to_port(p, 8080)) {
        assert_eq!(p.verdict, Verdict::Delivered, "{p:#?}");
    }
    assert!(
        pkts.iter().any(|p| to_port(p, 8080)),
        "the allowed connection was seen"
    );

    // Port 5432: no policy accepted it; both policies that judged it named.
    let db = first_to(&pkts, &b_ip, 5432);
    assert_eq!(db.verdict, Verdict::Dropped, "{db:#?}");
    let d = the_drop(db);
    assert_eq!(drop_rule(d).chain, format!("cali-tw-{vb}"), "{d:#?}");
    assert_eq!(
        drop_rule(d).comment.as_deref(),
        Some("End of tier default. Drop if no policies passed packet"),
        "{d:#?}"
    );
    let k8s = drop_k8s(d);
    assert_eq!(k8s.kind, "NetworkPolicy", "{d:#?}");
    assert_eq!(k8s.namespace, "default", "{d:#?}");
    assert_eq!(k8s.name, "deny-db", "{d:#?}");
    let judged: Vec<&str> = d
        .policies
        .as_ref()
        .unwrap_or_else(|| panic!("the policies that judged it: {d:#?}"))
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(judged, ["deny-ssh", "allow-web", "deny-db"], "{d:#?}");
    let hint = &d.hint;
    assert!(
        hint.contains("NetworkPolicy default/allow-web")
            && hint.contains("NetworkPolicy default/deny-db")
            && hint.contains("kubectl describe networkpolicy -n default deny-db"),
        "{hint}"
    );

    // Port 22: Calico's own policy denies it by a rule of its chain.
    let ssh = first_to(&pkts, &b_ip, 22);
    assert_eq!(ssh.verdict, Verdict::Dropped, "{ssh:#?}");
    let d = the_drop(ssh);
    assert_eq!(drop_rule(d).chain, "cali-pi-_ccrEY90o7NpSLqAr-9a", "{d:#?}");
    assert!(drop_rule(d).handle.is_some(), "{d:#?}");
    assert!(
        rule_text(drop_rule(d)).contains("--dports 22 -j DROP"),
        "the iptables-save line: {d:#?}"
    );
    assert_eq!(drop_k8s(d).kind, "CalicoNetworkPolicy", "{d:#?}");
    assert_eq!(drop_k8s(d).name, "deny-ssh", "{d:#?}");
    assert!(
        d.hint
            .contains("CalicoNetworkPolicy default/deny-ssh dropped it"),
        "{d:#?}"
    );
    assert!(d.policies.is_none(), "{d:#?}");
}
