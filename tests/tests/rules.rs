//! Real-kernel tests: rule names by nftables tracing. Each lab writes its
//! rules the way kube-proxy and kube-router write them (iptables-restore
//! files with their chain layout and comments, here through iptables-nft;
//! and kube-proxy's nftables mode), sends real traffic and checks that
//! netflow names the rule and the Kubernetes object, and that it leaves the
//! ruleset exactly as it found it.
use netflow_tests::*;
use serde_json::Value;

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
fn first_to<'a>(pkts: &[&'a Value], dst: &str, dport: u16) -> &'a Value {
    pkts.iter()
        .find(|p| p["flow"]["dst"] == dst && p["flow"]["dport"] == dport)
        .unwrap_or_else(|| panic!("no packet to {dst}:{dport}: {pkts:#?}"))
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
    let lines = t.stop();
    let pkts = packets(&lines);

    // The healthy Service call: delivered, its DNAT names the Service, the
    // endpoint and the rule that chose it; nothing dropped.
    let syn = first_to(&pkts, "10.96.0.10", 80);
    assert_eq!(syn["verdict"], "delivered", "{syn:#}");
    let nat = one_nat_hop(syn);
    assert_eq!(nat["nat"]["kind"], "dnat");
    assert_eq!(nat["nat"]["to"], format!("{b_ip}:8080"));
    assert_eq!(nat["nat"]["service"], "default/web:http", "{nat:#}");
    assert_eq!(nat["nat"]["k8s"]["kind"], "Service");
    let rule = &nat["nat"]["rule"];
    assert_eq!(rule["table"], "nat", "{rule:#}");
    assert_eq!(rule["chain"], "KUBE-SEP-6DHMNBWU2XGPHOOR");
    assert_eq!(rule["comment"], "default/web:http");
    assert!(rule["handle"].as_u64().is_some(), "{rule:#}");
    let text = rule["rule"].as_str().unwrap();
    assert!(
        text.starts_with("-A KUBE-SEP-6DHMNBWU2XGPHOOR") && text.contains("DNAT"),
        "{text}"
    );
    for p in pkts.iter().filter(|p| p["flow"]["dst"] == "10.96.0.10") {
        assert_ne!(
            p["verdict"], "dropped",
            "the healthy call has no drop: {p:#}"
        );
    }

    // A Service without endpoints: rejected, the Service named, the hint says why.
    let empty = first_to(&pkts, "10.96.0.11", 80);
    assert_eq!(empty["verdict"], "dropped", "{empty:#}");
    let d = &empty["drop"];
    assert_eq!(d["rule"]["chain"], "KUBE-SERVICES", "{d:#}");
    assert_eq!(d["rule"]["table"], "filter");
    assert_eq!(d["rule"]["comment"], "default/empty:http has no endpoints");
    assert_eq!(d["rule"]["verdict"], "drop");
    assert_eq!(d["k8s"]["kind"], "Service");
    assert_eq!(d["k8s"]["namespace"], "default");
    assert_eq!(d["k8s"]["name"], "empty");
    assert_eq!(d["k8s"]["port"], "http");
    assert!(
        d["hint"].as_str().unwrap().contains("no ready endpoints"),
        "{d:#}"
    );
    // The connection says the same.
    let conn = connections(&lines)
        .into_iter()
        .find(|c| c["flow"]["dst"] == "10.96.0.11")
        .expect("the connection to the Service without endpoints");
    assert_eq!(conn["k8s"]["name"], "empty", "{conn:#}");
    assert!(
        conn["hint"]
            .as_str()
            .unwrap()
            .contains("no ready endpoints"),
        "{conn:#}"
    );

    // Port 9090 of the pod: kube-router's default deny, naming the pod.
    let denied = first_to(&pkts, &b_ip, 9090);
    assert_eq!(denied["verdict"], "dropped");
    let d = &denied["drop"];
    assert_eq!(d["rule"]["chain"], "KUBE-POD-FW-4ZNDWSQZ5DU6FRFT", "{d:#}");
    assert_eq!(d["k8s"]["kind"], "Pod");
    assert_eq!(d["k8s"]["name"], "web-1");
    assert!(
        d["rule"]["rule"].as_str().unwrap().contains("REJECT"),
        "{d:#}"
    );

    // Port 5432: a policy's DROP, naming the policy, its chain and handle.
    let db = first_to(&pkts, &b_ip, 5432);
    assert_eq!(db["verdict"], "dropped");
    let d = &db["drop"];
    assert_eq!(d["rule"]["chain"], "KUBE-NWPLCY-CZCMKWKBT5BFWM3L", "{d:#}");
    assert!(d["rule"]["handle"].as_u64().is_some());
    assert_eq!(d["k8s"]["kind"], "NetworkPolicy");
    assert_eq!(d["k8s"]["name"], "deny-db");
    assert_eq!(d["k8s"]["namespace"], "default");
    assert!(
        d["hint"]
            .as_str()
            .unwrap()
            .contains("NetworkPolicy default/deny-db"),
        "{d:#}"
    );

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
    let lines = t.stop();
    let pkts = packets(&lines);
    let d = first_to(&pkts, b_ip, 9090);
    assert_eq!(d["verdict"], "dropped", "{d:#}");
    assert!(d["drop"].get("rule").is_none(), "{d:#}");
    assert!(
        d["drop"]["hint"]
            .as_str()
            .unwrap()
            .contains("firewall rule"),
        "{d:#}"
    );
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
    let lines = t.stop();
    let pkts = packets(&lines);
    // No endpoints: the map element kube-proxy wrote names the Service.
    let empty = first_to(&pkts, "10.96.0.11", 80);
    assert_eq!(empty["verdict"], "dropped", "{empty:#}");
    let d = &empty["drop"];
    assert_eq!(d["rule"]["chain"], "reject-chain", "{d:#}");
    assert_eq!(d["k8s"]["name"], "empty", "{d:#}");
    assert_eq!(d["k8s"]["no_endpoints"], true, "{d:#}");
    assert!(
        d["hint"].as_str().unwrap().contains("no ready endpoints"),
        "{d:#}"
    );
    let syn = first_to(&pkts, "10.96.0.10", 80);
    assert_eq!(syn["verdict"], "delivered", "{syn:#}");
    let nat = one_nat_hop(syn);
    assert_eq!(nat["nat"]["service"], "default/web:http", "{nat:#}");
    let rule = &nat["nat"]["rule"];
    assert_eq!(rule["family"], "ip");
    assert_eq!(rule["table"], "kube-proxy");
    assert_eq!(rule["chain"], ep.as_str());
    assert!(
        rule["rule"].as_str().unwrap().contains("dnat to"),
        "{rule:#}"
    );
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
    let lines = t.stop();
    assert_eq!(during, before);
    // The drop is still reported, without a rule.
    let pkts = packets(&lines);
    let d = first_to(&pkts, &format!("{net}.0.2"), 9090);
    assert_eq!(d["verdict"], "dropped");
    assert!(d["drop"].get("rule").is_none(), "{d:#}");
    assert_eq!(
        sh(&format!("ip netns exec {node} nft -s list ruleset")),
        before
    );
}
