//! Real-kernel tests: traffic from outside the node. A client behind the
//! node's uplink calls a NodePort (DNAT to a pod, masquerade towards it);
//! the tracer selects the pod. The call is followed from the uplink's
//! receive, named by the client's tuple, with every translation and hook.
use netflow_schema::{Connection, Hop, Line, Nat, NatKind, Outcome, Packet, Point, Verdict};
use netflow_tests::*;

/// A routed pod lab with an "external" namespace on an uplink of the node
/// (`192.168.N.2` -> node `192.168.N.1`) and a NodePort 30080 to pod b:8080
/// (masqueraded, as kube-proxy does for externalTrafficPolicy Cluster).
struct NodePortLab {
    lab: Lab,
    node: String,
    b: String,
    ext: String,
    uplink: String,
    node_ip: String,
    ext_ip: String,
    b_ip: String,
}

fn nodeport_lab(tag: &str) -> NodePortLab {
    let (mut lab, node, _a, b, _va, _vb) = routed_lab(tag);
    let ext = lab.netns("x");
    let uplink = lab.name("ux");
    let u = lab.underlay();
    let (node_ip, ext_ip) = (format!("{u}.1"), format!("{u}.2"));
    sh(&format!(
        "ip link add {uplink} netns {node} type veth peer name eth0 netns {ext}"
    ));
    sh(&format!(
        "ip -n {node} addr add {node_ip}/24 dev {uplink} && ip -n {node} link set {uplink} up"
    ));
    sh(&format!(
        "ip -n {ext} addr add {ext_ip}/24 dev eth0 && ip -n {ext} link set eth0 up"
    ));
    let b_ip = format!("{}.0.2", lab.net());
    sh(&format!(
        "ip netns exec {node} nft 'add table ip kp; \
         add chain ip kp pre {{ type nat hook prerouting priority -100; }}; \
         add rule ip kp pre ip daddr {node_ip} tcp dport 30080 dnat to {b_ip}:8080; \
         add chain ip kp post {{ type nat hook postrouting priority 100; }}; \
         add rule ip kp post ip daddr {b_ip} tcp dport 8080 ct status dnat masquerade'"
    ));
    NodePortLab {
        lab,
        node,
        b,
        ext,
        uplink,
        node_ip,
        ext_ip,
        b_ip,
    }
}

/// A NodePort `port` in kube-proxy's own iptables layout (KUBE-SERVICES ->
/// KUBE-NODEPORTS -> KUBE-EXT -> KUBE-SVC -> KUBE-SEP) for Service
/// default/web:http with pod b:8080 as its endpoint; the lab's nft chain
/// masquerades it.
fn kube_proxy_nodeport(l: &NodePortLab, port: u16) {
    let ipt = |args: &str| sh(&format!("ip netns exec {} iptables -t nat {args}", l.node));
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-EXT-WEB",
        "KUBE-SVC-WEB",
        "KUBE-SEP-WEB",
        "KUBE-MARK-MASQ",
    ] {
        ipt(&format!("-N {c}"));
    }
    ipt("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
    ipt("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS");
    ipt(&format!("-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web:http\" -m tcp --dport {port} -j KUBE-EXT-WEB"));
    ipt("-A KUBE-EXT-WEB -m comment --comment \"masquerade traffic for default/web:http external destinations\" -j KUBE-MARK-MASQ");
    ipt("-A KUBE-EXT-WEB -j KUBE-SVC-WEB");
    ipt("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000");
    ipt(&format!(
        "-A KUBE-SVC-WEB -m comment --comment \"default/web:http -> {}:8080\" -j KUBE-SEP-WEB",
        l.b_ip
    ));
    ipt(&format!(
        "-A KUBE-SEP-WEB -s {}/32 -m comment --comment \"default/web:http\" -j KUBE-MARK-MASQ",
        l.b_ip
    ));
    ipt(&format!("-A KUBE-SEP-WEB -p tcp -m comment --comment \"default/web:http\" -m tcp -j DNAT --to-destination {}:8080", l.b_ip));
}

/// The NodePort's translation (on a packet's hop or a connection) names
/// the Service, how the call reached it and the rule, from kube-proxy's rules.
fn names_the_nodeport_service(nat: &Nat) {
    assert_eq!(nat.kind, NatKind::Dnat, "{nat:#?}");
    assert_eq!(nat.via.as_deref(), Some("NodePort"), "{nat:#?}");
    assert_eq!(nat.service.as_deref(), Some("default/web:http"), "{nat:#?}");
    let rule = nat.rule.as_ref();
    assert_eq!(
        rule.map(|r| r.chain.as_str()),
        Some("KUBE-SEP-WEB"),
        "{nat:#?}"
    );
    assert!(
        rule.and_then(|r| r.rule.as_deref())
            .unwrap_or("")
            .contains("--to-destination"),
        "{nat:#?}"
    );
}

/// A connection's first translation (panics without one).
fn first_translation(c: &Connection) -> &Nat {
    c.translations
        .first()
        .unwrap_or_else(|| panic!("no translations: {c:#?}"))
}

/// The translation of one kind among a packet's hops.
fn nat_hop_of(p: &Packet, kind: NatKind) -> Option<&Hop> {
    nat_hops(p)
        .into_iter()
        .find(|h| h.nat.as_ref().map(|n| n.kind) == Some(kind))
}

/// The client's SYN to the NodePort: named by the client's tuple, first
/// seen on the uplink.
fn client_syn<'a>(l: &NodePortLab, lines: &'a [Line]) -> &'a Packet {
    client_syn_to(l, lines, &l.node_ip, 30080)
}

/// The client's SYN to `dst:port`: named by the client's tuple, first seen
/// on the uplink, translated at PREROUTING to pod b.
fn client_syn_to<'a>(l: &NodePortLab, lines: &'a [Line], dst: &str, port: u16) -> &'a Packet {
    let pkts = packets(lines);
    let syn = pkts
        .iter()
        .copied()
        .find(|p| {
            p.flow
                .as_ref()
                .is_some_and(|f| f.src.to_string() == l.ext_ip)
                && first_flags(p) == Some("S")
        })
        .unwrap_or_else(|| panic!("the client's SYN: {}", packet_summary(lines)));
    let flow = syn.flow.as_ref().unwrap();
    assert_eq!(flow.dst.to_string(), dst, "{syn:#?}");
    assert_eq!(flow.dport, Some(port), "{syn:#?}");
    let first = syn
        .hops
        .first()
        .unwrap_or_else(|| panic!("no hops: {syn:#?}"));
    assert_eq!(
        (first.point, first.ifname.as_str()),
        (Point::Rx, l.uplink.as_str()),
        "followed from the uplink: {syn:#?}"
    );
    assert_eq!(first.dport, Some(port), "{syn:#?}");
    let dnat =
        nat_hop_of(syn, NatKind::Dnat).unwrap_or_else(|| panic!("the NodePort's DNAT: {syn:#?}"));
    assert_eq!(dnat.hook.as_deref(), Some("prerouting"), "{dnat:#?}");
    let n = hop_nat(dnat);
    assert_eq!(n.from, format!("{dst}:{port}"), "{dnat:#?}");
    assert_eq!(n.to, format!("{}:8080", l.b_ip), "{dnat:#?}");
    syn
}

/// The connection to the NodePort, named as the client sees it.
fn client_connection<'a>(l: &NodePortLab, lines: &'a [Line]) -> &'a Connection {
    client_connection_to(l, lines, &l.node_ip, 30080)
}

fn client_connection_to<'a>(
    l: &NodePortLab,
    lines: &'a [Line],
    dst: &str,
    port: u16,
) -> &'a Connection {
    let c = connections(lines)
        .into_iter()
        .find(|c| c.flow.src.to_string() == l.ext_ip && c.flow.dport == Some(port))
        .unwrap_or_else(|| {
            panic!(
                "the client's connection: {:#?}\n{}",
                connections(lines),
                packet_summary(lines)
            )
        });
    assert_eq!(c.flow.dst.to_string(), dst, "{c:#?}");
    c
}

/// A healthy call from outside to `dst:port`, translated to pod b:8080.
fn healthy_call(l: &NodePortLab, dst: &str, port: u16) -> Vec<Line> {
    let t = Tracer::start(&["--netns", &l.b, "--proto", "tcp", "--nf-netns", &l.node]);
    tcp_client(&l.ext, dst, port);
    let lines = t.stop_lines();
    let syn = client_syn_to(l, &lines, dst, port);
    assert_eq!(syn.verdict, Verdict::Delivered, "{syn:#?}");
    let s = stats(&lines);
    assert_eq!(s.dropped, 0, "{}", packet_summary(&lines));
    assert_eq!(s.unknown, 0, "{}", packet_summary(&lines));
    let c = client_connection_to(l, &lines, dst, port);
    assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
    lines
}

#[test]
fn nodeport_call_is_followed_from_the_uplink() {
    let l = nodeport_lab("npo");
    let _server = tcp_server(&l.b, &l.b_ip, 8080);
    l.lab.exec(&l.ext, &format!("ping -c1 -W2 {}", l.node_ip));
    let t = Tracer::start(&["--netns", &l.b, "--proto", "tcp", "--nf-netns", &l.node]);
    tcp_client(&l.ext, &l.node_ip, 30080);
    let lines = t.stop_lines();
    let syn = client_syn(&l, &lines);
    assert_eq!(syn.verdict, Verdict::Delivered, "{syn:#?}");
    let snat = nat_hop_of(syn, NatKind::Snat).unwrap_or_else(|| panic!("the masquerade: {syn:#?}"));
    assert_eq!(snat.hook.as_deref(), Some("postrouting"), "{snat:#?}");
    assert!(in_order(
        &hop_list(syn),
        &[
            ("rx", &l.uplink, &l.node, "ingress"),
            ("nf", &l.uplink, &l.node, ""),
            ("rx", "eth0", &l.b, "ingress"),
        ]
    ));
    let s = stats(&lines);
    assert_eq!(s.dropped, 0, "{}", packet_summary(&lines));
    assert_eq!(s.unknown, 0, "{}", packet_summary(&lines));
    let c = client_connection(&l, &lines);
    assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
    // Every translation: the NodePort's DNAT, then the masquerade.
    let kinds: Vec<NatKind> = c.translations.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [NatKind::Dnat, NatKind::Snat], "{c:#?}");
    // The translating rule, read from the ruleset (tracing starts after it).
    let rule = c.translations.first().and_then(|n| n.rule.as_ref());
    assert_eq!(
        (
            rule.map(|r| r.table.as_str()),
            rule.map(|r| r.chain.as_str())
        ),
        (Some("kp"), Some("pre")),
        "{c:#?}"
    );
    assert!(
        c.translations
            .first()
            .and_then(|n| n.via.as_ref())
            .is_none(),
        "no kube-proxy rule says how: {c:#?}"
    );
}

/// A NodePort in kube-proxy's layout, dropped at FORWARD by a firewall rule:
/// the drop names the hook and the rule, the translation names the Service
/// and the NodePort. The same call without the firewall reads healthy, with
/// the same names.
#[test]
fn nodeport_call_dropped_at_forward_names_hook_and_rule() {
    let l = nodeport_lab("npd");
    let _server = tcp_server(&l.b, &l.b_ip, 8080);
    kube_proxy_nodeport(&l, 30082);
    l.lab.exec(&l.ext, &format!("ping -c1 -W2 {}", l.node_ip));
    let lines = healthy_call(&l, &l.node_ip, 30082);
    let syn = client_syn_to(&l, &lines, &l.node_ip, 30082);
    let dnat = nat_hop_of(syn, NatKind::Dnat).unwrap();
    names_the_nodeport_service(hop_nat(dnat));
    let c = client_connection_to(&l, &lines, &l.node_ip, 30082);
    names_the_nodeport_service(first_translation(c));

    sh(&format!(
        "ip netns exec {} nft 'add table ip fw; add chain ip fw filterfwd {{ type filter hook forward priority 0; }}; add rule ip fw filterfwd ip daddr {} tcp dport 8080 drop'",
        l.node, l.b_ip
    ));
    l.lab.exec(&l.ext, &format!("ping -c1 -W2 {}", l.node_ip));
    let t = Tracer::start(&["--netns", &l.b, "--proto", "tcp", "--nf-netns", &l.node]);
    sh_quiet(&format!(
        "ip netns exec {} python3 -c \"import socket; socket.create_connection(('{}',30082),timeout=1)\"",
        l.ext, l.node_ip
    ));
    let lines = t.stop_lines();
    let syn = client_syn_to(&l, &lines, &l.node_ip, 30082);
    assert_eq!(syn.verdict, Verdict::Dropped, "{syn:#?}");
    assert_eq!(
        syn.drop.as_ref().and_then(|d| d.hook.as_deref()),
        Some("forward"),
        "{syn:#?}"
    );
    assert_eq!(packet_reason(syn), "NETFILTER_DROP", "{syn:#?}");
    if kernel_has_owned_tables() {
        let rule = syn.drop.as_ref().and_then(|d| d.rule.as_ref());
        assert_eq!(
            rule.map(|r| r.chain.as_str()),
            Some("filterfwd"),
            "the rule that dropped it: {syn:#?}"
        );
        assert_eq!(rule.map(|r| r.table.as_str()), Some("fw"), "{syn:#?}");
    }
    let c = client_connection_to(&l, &lines, &l.node_ip, 30082);
    assert_eq!(c.outcome, Outcome::RequestLost, "{c:#?}");
    assert_eq!(c.hook.as_deref(), Some("forward"), "{c:#?}");
    names_the_nodeport_service(first_translation(c));
}

/// externalTrafficPolicy: Local on a node without a local endpoint:
/// kube-proxy's own rule (`KUBE-EXTERNAL-SERVICES`, "has no local
/// endpoints") drops the call at INPUT. Traced by the node's address and
/// the port (no pod is involved): the drop names the Service and the policy.
#[test]
fn local_traffic_policy_without_local_endpoint_names_service_and_policy() {
    let l = nodeport_lab("npl");
    let ipt = |args: &str| sh(&format!("ip netns exec {} iptables {args}", l.node));
    ipt("-t filter -N KUBE-EXTERNAL-SERVICES");
    ipt("-t filter -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES");
    ipt("-t filter -A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/web:http has no local endpoints\" -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30081 -j DROP");
    l.lab.exec(&l.ext, &format!("ping -c1 -W2 {}", l.node_ip));
    let t = Tracer::start(&[
        "--host",
        &l.node_ip,
        "--port",
        "30081",
        "--nf-netns",
        &l.node,
    ]);
    sh_quiet(&format!(
        "ip netns exec {} python3 -c \"import socket; socket.create_connection(('{}',30081),timeout=1)\"",
        l.ext, l.node_ip
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| {
            p.flow.as_ref().and_then(|f| f.dport) == Some(30081) && p.verdict == Verdict::Dropped
        })
        .unwrap_or_else(|| panic!("the dropped call: {}", packet_summary(&lines)));
    assert_eq!(
        syn.flow.as_ref().map(|f| f.src.to_string()),
        Some(l.ext_ip.clone()),
        "{syn:#?}"
    );
    assert_eq!(
        syn.drop.as_ref().and_then(|d| d.hook.as_deref()),
        Some("input"),
        "{syn:#?}"
    );
    if !kernel_has_owned_tables() {
        return;
    }
    let d = the_drop(syn);
    assert_eq!(
        d.k8s.as_ref().map(|k| k.kind.as_str()),
        Some("Service"),
        "{d:#?}"
    );
    assert_eq!(
        d.k8s.as_ref().map(|k| k.name.as_str()),
        Some("web"),
        "{d:#?}"
    );
    let hint = &d.hint;
    assert!(
        hint.contains("externalTrafficPolicy: Local") && hint.contains("default/web"),
        "{hint}"
    );
    let c = connections(&lines)
        .into_iter()
        .find(|c| c.flow.dport == Some(30081))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(c.outcome, Outcome::RequestLost, "{c:#?}");
}

/// A hostPort (the CNI portmap plugin's chains: CNI-HOSTPORT-DNAT, a
/// CNI-DN-* chain per pod) and an external IP routed to the node: both are
/// one connection named by the client's tuple, followed from the uplink
/// with its translation.
#[test]
fn hostport_and_external_ip_calls_are_followed_from_the_uplink() {
    let l = nodeport_lab("nph");
    let _server = tcp_server(&l.b, &l.b_ip, 8080);
    let ipt = |args: &str| sh(&format!("ip netns exec {} iptables -t nat {args}", l.node));
    ipt("-N CNI-HOSTPORT-DNAT");
    ipt("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT");
    ipt("-N CNI-DN-5e1f2a3b4c5d6e7f8a9b0");
    ipt("-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"cbr0\\\" id: \\\"0123abcd\\\"\" -m multiport --dports 8081 -j CNI-DN-5e1f2a3b4c5d6e7f8a9b0");
    ipt(&format!(
        "-A CNI-DN-5e1f2a3b4c5d6e7f8a9b0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination {}:8080",
        l.b_ip
    ));
    let ext_ip_svc = "203.0.113.10";
    sh(&format!(
        "ip netns exec {} nft 'add rule ip kp pre ip daddr {ext_ip_svc} tcp dport 80 dnat to {}:8080'",
        l.node, l.b_ip
    ));
    sh(&format!(
        "ip -n {} route add {ext_ip_svc}/32 via {}",
        l.ext, l.node_ip
    ));
    l.lab.exec(&l.ext, &format!("ping -c1 -W2 {}", l.node_ip));

    let lines = healthy_call(&l, &l.node_ip, 8081);
    let c = client_connection_to(&l, &lines, &l.node_ip, 8081);
    let nat = first_translation(c);
    assert_eq!(nat.via.as_deref(), Some("hostPort"), "{c:#?}");
    assert_eq!(
        nat.rule.as_ref().map(|r| r.chain.as_str()),
        Some("CNI-DN-5e1f2a3b4c5d6e7f8a9b0"),
        "{c:#?}"
    );
    healthy_call(&l, ext_ip_svc, 80);
}
