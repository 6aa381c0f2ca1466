//! Real-kernel tests: each builds its own namespace lab, runs
//! `netflow trace --json`, sends real traffic and checks what netflow saw.
//! Subnets are distinct per test so the tests can run in parallel.
use netflow_tests::*;

/// Two pods on a Linux bridge in the host namespace (docker/flannel style),
/// selected by the sender's netns: each echo request is one timeline through
/// the sender's eth0, its host veth (a bridge port), the receiver's host veth
/// and the receiver's eth0, in that order; the replies are followed back too.
#[test]
fn bridge_ping_selected_by_sender_netns() {
    let mut lab = Lab::new("br");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    let br = lab.name("br");
    sh(&format!(
        "ip link add {br} type bridge && ip link set {br} up"
    ));
    lab.host_link(&br);
    let (va, vb) = (lab.name("va"), lab.name("vb"));
    lab.pod(&a, &va, "10.201.0.1/24");
    lab.pod(&b, &vb, "10.201.0.2/24");
    sh(&format!(
        "ip link set {va} master {br} && ip link set {vb} master {br}"
    ));
    // Resolve ARP and let the bridge learn, so the traced pings are unicast.
    lab.exec(&a, "ping -c1 -W2 10.201.0.2");

    let t = Tracer::start(&["--netns", &a]);
    lab.exec(&a, "ping -c3 -i0.2 -W2 10.201.0.2");
    let lines = t.stop();
    let pkts = packets(&lines);

    let reqs = flows(&pkts, "icmp", "10.201.0.1", "10.201.0.2");
    assert!(
        reqs.len() >= 3,
        "expected 3 echo requests, got {}: {pkts:#?}",
        reqs.len()
    );
    for r in &reqs {
        let hops = hop_list(r);
        assert!(
            in_order(
                &hops,
                &[
                    ("tx", "eth0", &a, "egress"),
                    ("rx", &va, "host", "ingress"),
                    ("tx", &vb, "host", "egress"),
                    ("rx", "eth0", &b, "ingress"),
                ]
            ),
            "request path: {hops:#?}"
        );
        assert_eq!(r["verdict"], "delivered", "{r:#}");
        let bridged: Vec<_> = r["hops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["ifname"] == va.as_str() || h["ifname"] == vb.as_str())
            .collect();
        assert!(
            bridged.iter().all(|h| h["master"] == br.as_str()),
            "veth hops name the bridge: {bridged:#?}"
        );
        // Timestamps increase along the path.
        let ts: Vec<u64> = r["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["ts_ns"].as_u64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    }
    let reps = flows(&pkts, "icmp", "10.201.0.2", "10.201.0.1");
    assert!(
        reps.len() >= 3,
        "replies are selected by the netns address: {pkts:#?}"
    );
    for r in &reps {
        let hops = hop_list(r);
        assert!(
            in_order(
                &hops,
                &[
                    ("tx", "eth0", &b, "egress"),
                    ("rx", &vb, "host", "ingress"),
                    ("tx", &va, "host", "egress"),
                    ("rx", "eth0", &a, "ingress"),
                ]
            ),
            "reply path: {hops:#?}"
        );
    }
    assert_eq!(stats(&lines)["lost"], 0);
}

/// Routed pods behind a node (calico style: /32 routes, proxy ARP,
/// 169.254.1.1 as the pods' gateway); the node is its own namespace.
fn routed_lab(tag: &str, subnet: &str) -> (Lab, String, String, String, String, String) {
    let mut lab = Lab::new(tag);
    let node = lab.netns("n");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    let (va, vb) = (lab.name("va"), lab.name("vb"));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1"
    ));
    // The node's default route (proxy ARP answers for targets it can route).
    sh(&format!(
        "ip -n {node} link add up0 type veth peer name up1 && ip -n {node} link set up0 up && ip -n {node} link set up1 up && ip -n {node} route add default dev up0"
    ));
    for (pod, veth, ip) in [
        (&a, &va, format!("{subnet}.1")),
        (&b, &vb, format!("{subnet}.2")),
    ] {
        sh(&format!(
            "ip link add eth0 netns {pod} type veth peer name {veth} netns {node}"
        ));
        sh(&format!(
            "ip -n {pod} addr add {ip}/32 dev eth0 && ip -n {pod} link set eth0 up"
        ));
        sh(&format!(
            "ip -n {pod} route add 169.254.1.1 dev eth0 scope link && ip -n {pod} route add default via 169.254.1.1 dev eth0"
        ));
        sh(&format!("ip -n {node} link set {veth} up"));
        sh(&format!(
            "ip netns exec {node} sysctl -qw net.ipv4.conf.{veth}.proxy_arp=1"
        ));
        sh(&format!("ip -n {node} route add {ip}/32 dev {veth}"));
    }
    (lab, node, a, b, va, vb)
}

#[test]
fn routed_pods_with_proxy_arp() {
    let (lab, node, a, b, va, vb) = routed_lab("rt", "10.202.0");
    lab.exec(&a, "ping -c1 -W2 10.202.0.2");

    let t = Tracer::start(&["--netns", &b]);
    lab.exec(&a, "ping -c3 -i0.2 -W2 10.202.0.2");
    let lines = t.stop();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, "icmp", "10.202.0.1", "10.202.0.2");
    assert!(
        reqs.len() >= 3,
        "requests into the selected netns are followed from their start: {pkts:#?}"
    );
    for r in &reqs {
        let hops = hop_list(r);
        assert!(
            in_order(
                &hops,
                &[
                    ("tx", "eth0", &a, "egress"),
                    ("rx", &va, &node, "ingress"),
                    ("tx", &vb, &node, "egress"),
                    ("rx", "eth0", &b, "ingress"),
                ]
            ),
            "routed path: {hops:#?}"
        );
        assert_eq!(r["verdict"], "delivered");
    }
}

/// A FORWARD drop rule on the node: the packet's timeline ends with the drop,
/// reason NETFILTER_DROP, after the hops it reached.
#[test]
fn forward_drop_is_attributed_to_netfilter() {
    let (lab, node, a, _b, va, _vb) = routed_lab("fw", "10.203.0");
    lab.exec(&a, "ping -c1 -W2 10.203.0.2");
    // A table of our own inside the node namespace: deleted with it.
    sh(&format!(
        "ip netns exec {node} nft 'add table ip nftest; add chain ip nftest forward_chain {{ type filter hook forward priority 0; }}; add rule ip nftest forward_chain ip daddr 10.203.0.2 icmp type echo-request drop'"
    ));

    let t = Tracer::start(&["--netns", &a, "--proto", "icmp", "--nf-netns", &node]);
    sh_quiet(&format!("ip netns exec {a} ping -c2 -i0.2 -W1 10.203.0.2"));
    let lines = t.stop();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, "icmp", "10.203.0.1", "10.203.0.2");
    assert!(reqs.len() >= 2, "{pkts:#?}");
    for r in &reqs {
        assert_eq!(r["verdict"], "dropped", "{r:#}");
        assert_eq!(r["drop"]["reason"], "NETFILTER_DROP", "{r:#}");
        assert_eq!(
            r["drop"]["hook"], "forward",
            "seen before FORWARD filtering, never after: {r:#}"
        );
        assert!(
            r["drop"]["hint"]
                .as_str()
                .unwrap()
                .contains("firewall rule"),
            "{r:#}"
        );
        assert!(
            r["drop"]["location"].as_str().unwrap().contains('+'),
            "symbolized location: {r:#}"
        );
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

/// Two "nodes" joined by VXLAN over a veth underlay. Selected by the inner
/// destination only (the kernel matches inside the tunnel): one timeline
/// before and after encapsulation, the outer header and VNI on the underlay hops.
#[test]
fn vxlan_inner_and_outer_headers_in_one_timeline() {
    let mut lab = Lab::new("vx");
    let (n1, n2) = (lab.netns("n1"), lab.netns("n2"));
    let (u1, u2) = (lab.name("u1"), lab.name("u2"));
    sh(&format!(
        "ip link add {u1} netns {n1} type veth peer name {u2} netns {n2}"
    ));
    sh(&format!(
        "ip -n {n1} addr add 192.168.204.1/24 dev {u1} && ip -n {n1} link set {u1} up"
    ));
    sh(&format!(
        "ip -n {n2} addr add 192.168.204.2/24 dev {u2} && ip -n {n2} link set {u2} up"
    ));
    for (n, u, local, remote, inner) in [
        (&n1, &u1, "192.168.204.1", "192.168.204.2", "10.204.0.1/24"),
        (&n2, &u2, "192.168.204.2", "192.168.204.1", "10.204.0.2/24"),
    ] {
        sh(&format!(
            "ip -n {n} link add vx0 type vxlan id 42 local {local} remote {remote} dstport 4789 dev {u}"
        ));
        sh(&format!(
            "ip -n {n} addr add {inner} dev vx0 && ip -n {n} link set vx0 up"
        ));
    }
    lab.exec(&n1, "ping -c1 -W2 10.204.0.2");

    let t = Tracer::start(&["--host", "10.204.0.2", "--proto", "icmp"]);
    lab.exec(&n1, "ping -c3 -i0.2 -W2 10.204.0.2");
    let lines = t.stop();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, "icmp", "10.204.0.1", "10.204.0.2");
    assert!(reqs.len() >= 3, "{pkts:#?}");
    for r in &reqs {
        let hops = hop_list(r);
        assert!(
            in_order(
                &hops,
                &[
                    ("tx", "vx0", &n1, "egress"),
                    ("tx", &u1, &n1, "egress"),
                    ("rx", &u2, &n2, "ingress"),
                    ("rx", "vx0", &n2, "ingress")
                ]
            ),
            "{hops:#?}"
        );
        for h in r["hops"].as_array().unwrap() {
            // Every hop shows the inner tuple.
            assert_eq!(h["src"], "10.204.0.1", "{h:#}");
            assert_eq!(h["dst"], "10.204.0.2", "{h:#}");
            let on_underlay = h["ifname"] == u1.as_str() || h["ifname"] == u2.as_str();
            if on_underlay {
                assert_eq!(h["encap"]["kind"], "vxlan", "{h:#}");
                assert_eq!(h["encap"]["vni"], 42);
                assert_eq!(h["encap"]["outer_src"], "192.168.204.1");
                assert_eq!(h["encap"]["outer_dst"], "192.168.204.2");
            } else if h["ifname"] == "vx0" {
                assert!(h["encap"].is_null(), "{h:#}");
            }
        }
        assert_eq!(r["verdict"], "delivered");
    }
}

/// IP-in-IP packets (protocol 4, as on Calico's tunl0) sent from a raw socket
/// over a veth. Selected by the inner destination; the inner UDP tuple is
/// decoded and the outer addresses shown.
#[test]
fn ipip_inner_tuple_decoded() {
    let mut lab = Lab::new("ip");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    sh(&format!(
        "ip link add eth0 netns {a} type veth peer name eth0 netns {b}"
    ));
    sh(&format!(
        "ip -n {a} addr add 10.205.0.1/24 dev eth0 && ip -n {a} link set eth0 up"
    ));
    sh(&format!(
        "ip -n {b} addr add 10.205.0.2/24 dev eth0 && ip -n {b} link set eth0 up"
    ));
    lab.exec(&a, "ping -c1 -W2 10.205.0.2");

    let t = Tracer::start(&["--host", "10.55.0.2"]);
    let py = r#"
import socket, struct
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
payload = b'netflow-ipip'
udp = struct.pack('!HHHH', 1234, 5678, 8 + len(payload), 0) + payload
hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 77, 0, 64, 17, 0,
                  socket.inet_aton('10.55.0.1'), socket.inet_aton('10.55.0.2'))
hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
for _ in range(3):
    s.sendto(hdr + udp, ('10.205.0.2', 0))
"#;
    sh(&format!(
        "ip netns exec {a} python3 -c \"{}\"",
        py.replace('"', "\\\"")
    ));
    let lines = t.stop();
    let pkts = packets(&lines);
    let inner = flows(&pkts, "udp", "10.55.0.1", "10.55.0.2");
    assert!(inner.len() >= 3, "{pkts:#?}");
    for p in &inner {
        assert_eq!(p["flow"]["sport"], 1234);
        assert_eq!(p["flow"]["dport"], 5678);
        let hops = hop_list(p);
        assert!(
            in_order(
                &hops,
                &[("tx", "eth0", &a, "egress"), ("rx", "eth0", &b, "ingress")]
            ),
            "{hops:#?}"
        );
        for h in p["hops"].as_array().unwrap() {
            assert_eq!(h["encap"]["kind"], "ipip", "{h:#}");
            assert_eq!(h["encap"]["outer_src"], "10.205.0.1");
            assert_eq!(h["encap"]["outer_dst"], "10.205.0.2");
        }
    }
}

/// A tracer killed with SIGKILL leaves no program or link behind.
#[test]
fn sigkill_leaves_nothing_attached() {
    let mut lab = Lab::new("kl");
    let a = lab.netns("a");
    let mut t = Tracer::start(&["--netns", &a]);
    let progs = bpf_link_prog_ids(t.pid());
    assert!(
        progs.len() >= 4,
        "netflow holds its probes as links: {progs:?}"
    );
    assert!(progs.iter().all(|id| bpf_prog_exists(*id)));
    t.sigkill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<_> = progs.iter().filter(|id| bpf_prog_exists(**id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "programs still loaded 10s after SIGKILL: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(lab);
}

/// tc programs (TCX) on a chosen host veth: hops at the tc points beside the
/// device tracepoints. Two tracers attached to the same device both see every
/// packet and traffic flows: our programs pass packets on to whatever else is
/// attached (a CNI's own tc programs keep deciding).
#[test]
fn tc_hops_coexist_with_other_tc_programs() {
    let mut lab = Lab::new("tc");
    let a = lab.netns("a");
    let va = lab.name("va");
    lab.pod(&a, &va, "10.206.0.1/24");
    sh(&format!("ip addr add 10.206.0.254/24 dev {va}"));
    lab.exec(&a, "ping -c1 -W2 10.206.0.254");

    let first = Tracer::start(&["--tc", "--iface", &va, "--netns", &a]);
    let second = Tracer::start(&["--tc", "--iface", &va, "--proto", "icmp"]);
    lab.exec(&a, "ping -c3 -i0.2 -W2 10.206.0.254");
    for (who, lines) in [("first", first.stop()), ("second", second.stop())] {
        let pkts = packets(&lines);
        let reqs = flows(&pkts, "icmp", "10.206.0.1", "10.206.0.254");
        assert!(reqs.len() >= 3, "{who} tracer: {pkts:#?}");
        for r in &reqs {
            let hops = hop_list(r);
            assert!(
                in_order(
                    &hops,
                    &[
                        ("rx", &va, "host", "ingress"),
                        ("tc", &va, "host", "ingress")
                    ]
                ),
                "{who}: {hops:#?}"
            );
            // --iface limits where we look: nothing from the pod side.
            assert!(hops.iter().all(|h| h.1 == va), "{who}: {hops:#?}");
        }
        let reps = flows(&pkts, "icmp", "10.206.0.254", "10.206.0.1");
        assert!(reps.len() >= 3, "{who}: {pkts:#?}");
        for r in &reps {
            let hops = hop_list(r);
            assert!(
                hops.iter().any(|h| h.0 == "tc" && h.3 == "egress"),
                "{who}: {hops:#?}"
            );
        }
    }
}

/// A Service VIP DNATed by nftables in the node's PREROUTING (kube-proxy
/// style): the connection's packets show the DNAT hop with the VIP and the
/// backend, and the replies the reverse translation at POSTROUTING.
#[test]
fn service_vip_dnat_and_reverse_translation() {
    let (lab, node, a, b, va, vb) = routed_lab("sv", "10.207.0");
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority -100; }}; add rule ip svc pre ip daddr 10.96.0.10 tcp dport 80 dnat to 10.207.0.2:8080'"
    ));
    let _server = tcp_server(&b, "10.207.0.2", 8080);
    lab.exec(&a, "ping -c1 -W2 10.207.0.2");

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    tcp_client(&a, "10.96.0.10", 80);
    let lines = t.stop();
    let pkts = packets(&lines);

    let to_vip: Vec<_> = pkts
        .iter()
        .filter(|p| p["flow"]["dst"] == "10.96.0.10" && p["flow"]["dport"] == 80)
        .collect();
    assert!(to_vip.len() >= 2, "SYN and data towards the VIP: {pkts:#?}");
    for p in &to_vip {
        let hops = p["hops"].as_array().unwrap();
        let nat: Vec<_> = hops.iter().filter(|h| !h["nat"].is_null()).collect();
        assert_eq!(nat.len(), 1, "exactly one translation: {p:#}");
        let h = nat[0];
        assert_eq!(h["point"], "nf");
        assert_eq!(h["hook"], "prerouting");
        assert_eq!(h["stage"], "late");
        assert_eq!(h["netns_name"], node.as_str());
        assert_eq!(h["nat"]["kind"], "dnat");
        assert_eq!(h["nat"]["from"], "10.96.0.10:80");
        assert_eq!(h["nat"]["to"], "10.207.0.2:8080");
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
        let last = hops.iter().rev().find(|h| h["point"] == "rx").unwrap();
        assert_eq!(last["dst"], "10.207.0.2");
        assert_eq!(last["dport"], 8080);
        // The SYN and the data reach the server's socket (pure ACKs TCP may
        // free without saying so).
        let flags = hops[0]["tcp_flags"].as_str().unwrap();
        if flags.contains('S') || flags.contains('P') {
            assert_eq!(p["verdict"], "delivered", "{p:#}");
        }
    }
    let replies: Vec<_> = pkts
        .iter()
        .filter(|p| p["flow"]["src"] == "10.207.0.2" && p["flow"]["sport"] == 8080)
        .collect();
    assert!(!replies.is_empty(), "{pkts:#?}");
    for p in &replies {
        let nat: Vec<_> = p["hops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| !h["nat"].is_null())
            .collect();
        assert_eq!(nat.len(), 1, "{p:#}");
        assert_eq!(nat[0]["hook"], "postrouting");
        assert_eq!(nat[0]["nat"]["from"], "10.207.0.2:8080");
        assert_eq!(nat[0]["nat"]["to"], "10.96.0.10:80");
    }
}

/// A SYN to a closed port: dropped with NO_SOCKET and a hint, the kernel's
/// RST in reply shows as a hop of that SYN, and the RST itself is followed back.
#[test]
fn closed_port_no_socket_and_reset() {
    let mut lab = Lab::new("cp");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    sh(&format!(
        "ip link add eth0 netns {a} type veth peer name eth0 netns {b}"
    ));
    sh(&format!(
        "ip -n {a} addr add 10.208.0.1/24 dev eth0 && ip -n {a} link set eth0 up"
    ));
    sh(&format!(
        "ip -n {b} addr add 10.208.0.2/24 dev eth0 && ip -n {b} link set eth0 up"
    ));
    lab.exec(&a, "ping -c1 -W2 10.208.0.2");

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp"]);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('10.208.0.2', 9), timeout=2)\""
    ));
    let lines = t.stop();
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| p["flow"]["dport"] == 9 && p["hops"][0]["tcp_flags"] == "S")
        .unwrap_or_else(|| panic!("the SYN: {pkts:#?}"));
    assert_eq!(syn["verdict"], "dropped", "{syn:#}");
    assert_eq!(syn["drop"]["reason"], "NO_SOCKET", "{syn:#}");
    assert!(
        syn["drop"]["hint"]
            .as_str()
            .unwrap()
            .contains("nothing listens"),
        "{syn:#}"
    );
    let hops = hop_list(syn);
    assert!(
        in_order(
            &hops,
            &[
                ("tx", "eth0", &a, "egress"),
                ("rx", "eth0", &b, "ingress"),
                ("tcp_reset", "eth0", &b, "")
            ]
        ),
        "{hops:#?}"
    );
    let rst = pkts
        .iter()
        .find(|p| {
            p["flow"]["sport"] == 9
                && p["hops"][0]["tcp_flags"]
                    .as_str()
                    .unwrap_or("")
                    .contains('R')
        })
        .unwrap_or_else(|| panic!("the RST back: {pkts:#?}"));
    assert!(in_order(
        &hop_list(rst),
        &[("tx", "eth0", &b, "egress"), ("rx", "eth0", &a, "ingress")]
    ));
}

/// A SYN dropped by a firewall is retransmitted: the flow gets a note
/// "retransmit, SYN_SENT" with a count, besides the dropped SYN timelines.
#[test]
fn syn_retransmissions_are_noted() {
    let (lab, node, a, _b, _va, _vb) = routed_lab("rx", "10.209.0");
    lab.exec(&a, "ping -c1 -W2 10.209.0.2");
    sh(&format!(
        "ip netns exec {node} nft 'add table ip fw; add chain ip fw forward_chain {{ type filter hook forward priority 0; }}; add rule ip fw forward_chain tcp dport 80 drop'"
    ));
    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('10.209.0.2', 80), timeout=2.5)\""
    ));
    let lines = t.stop();
    let notes: Vec<_> = lines
        .iter()
        .filter(|v| v["kind"] == "tcp" && v["event"] == "retransmit")
        .collect();
    assert!(!notes.is_empty(), "{lines:#?}");
    for n in &notes {
        assert_eq!(n["state"], "SYN_SENT", "{n:#}");
        assert_eq!(n["flow"]["dst"], "10.209.0.2");
        assert_eq!(n["flow"]["dport"], 80);
        assert_eq!(n["netns_name"], a.as_str());
    }
    assert_eq!(notes.last().unwrap()["count"], notes.len() as u64);
    let syns: Vec<_> = packets(&lines)
        .into_iter()
        .filter(|p| p["flow"]["dport"] == 80)
        .collect();
    assert!(
        syns.len() > notes.len(),
        "the first SYN and each retransmission: {syns:#?}"
    );
    assert!(syns
        .iter()
        .all(|p| p["drop"]["reason"] == "NETFILTER_DROP" && p["drop"]["hook"] == "forward"));
}

/// Strict reverse-path filtering on the node drops a packet with a source
/// that does not route back through its arrival device: IP_RPFILTER + hint.
#[test]
fn rp_filter_drop() {
    let (lab, node, a, _b, va, _vb) = routed_lab("rp", "10.210.1");
    sh(&format!("ip -n {a} addr add 10.99.77.7/32 dev eth0"));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.conf.all.rp_filter=1"
    ));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.conf.{va}.rp_filter=1"
    ));
    lab.exec(&a, "ping -c1 -W2 10.210.1.2");
    let t = Tracer::start(&["--host", "10.99.77.7"]);
    sh_quiet(&format!(
        "ip netns exec {a} ping -c2 -i0.2 -W1 -I 10.99.77.7 10.210.1.2"
    ));
    let lines = t.stop();
    let pkts = packets(&lines);
    let spoofed = flows(&pkts, "icmp", "10.99.77.7", "10.210.1.2");
    assert!(spoofed.len() >= 2, "{pkts:#?}");
    for p in &spoofed {
        assert_eq!(p["drop"]["reason"], "IP_RPFILTER", "{p:#}");
        assert!(p["drop"]["hint"].as_str().unwrap().contains("rp_filter"));
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
    let (mut lab, node, a, _b, _va, _vb) = routed_lab("mq", "10.211.1");
    let ext = lab.netns("x");
    sh(&format!(
        "ip link add up9 netns {node} type veth peer name eth0 netns {ext}"
    ));
    sh(&format!(
        "ip -n {node} addr add 192.168.211.1/24 dev up9 && ip -n {node} link set up9 up"
    ));
    sh(&format!(
        "ip -n {ext} addr add 192.168.211.2/24 dev eth0 && ip -n {ext} link set eth0 up"
    ));
    sh(&format!(
        "ip netns exec {node} nft 'add table ip mq; add chain ip mq post {{ type nat hook postrouting priority 100; }}; add rule ip mq post ip saddr 10.211.1.0/24 oifname up9 masquerade'"
    ));
    lab.exec(&a, "ping -c1 -W2 192.168.211.2");
    let t = Tracer::start(&["--netns", &a, "--proto", "icmp", "--nf-netns", &node]);
    lab.exec(&a, "ping -c2 -i0.2 -W2 192.168.211.2");
    let lines = t.stop();
    let pkts = packets(&lines);
    let out = flows(&pkts, "icmp", "10.211.1.1", "192.168.211.2");
    assert!(out.len() >= 2, "{pkts:#?}");
    for p in &out {
        let nat: Vec<_> = p["hops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| !h["nat"].is_null())
            .collect();
        assert_eq!(nat.len(), 1, "{p:#}");
        assert_eq!(nat[0]["hook"], "postrouting");
        assert_eq!(nat[0]["nat"]["kind"], "snat");
        assert_eq!(nat[0]["nat"]["from"], "10.211.1.1");
        assert_eq!(nat[0]["nat"]["to"], "192.168.211.1");
        assert!(in_order(
            &hop_list(p),
            &[
                ("tx", "up9", &node, "egress"),
                ("rx", "eth0", &ext, "ingress")
            ]
        ));
    }
    // Replies come back to the node's address and are un-NATed to the pod.
    let back = flows(&pkts, "icmp", "192.168.211.2", "192.168.211.1");
    assert!(
        back.len() >= 2,
        "replies selected after translation: {pkts:#?}"
    );
    for p in &back {
        let nat: Vec<_> = p["hops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| !h["nat"].is_null())
            .collect();
        assert_eq!(nat.len(), 1, "{p:#}");
        assert_eq!(nat[0]["hook"], "prerouting");
        assert_eq!(nat[0]["nat"]["kind"], "dnat");
        assert_eq!(nat[0]["nat"]["to"], "10.211.1.1");
        assert!(in_order(&hop_list(p), &[("rx", "eth0", &a, "ingress")]));
    }
}

/// Off Kubernetes a named network namespace is a pod: `--pod NAME` selects
/// its packets (also by `--pod-ip`), and an unknown pod gets the closest names.
#[test]
fn pod_by_name_and_ip_from_named_netns() {
    let mut lab = Lab::new("pd");
    let (a, b) = (lab.netns("web"), lab.netns("db"));
    sh(&format!(
        "ip link add eth0 netns {a} type veth peer name eth0 netns {b}"
    ));
    sh(&format!(
        "ip -n {a} addr add 10.212.0.1/24 dev eth0 && ip -n {a} link set eth0 up"
    ));
    sh(&format!(
        "ip -n {b} addr add 10.212.0.2/24 dev eth0 && ip -n {b} link set eth0 up"
    ));
    lab.exec(&a, "ping -c1 -W2 10.212.0.2");

    for sel in [["--pod", a.as_str()], ["--pod-ip", "10.212.0.2"]] {
        let t = Tracer::start(&[sel[0], sel[1], "--proto", "icmp"]);
        lab.exec(&a, "ping -c2 -i0.2 -W2 10.212.0.2");
        let lines = t.stop();
        let pkts = packets(&lines);
        let reqs = flows(&pkts, "icmp", "10.212.0.1", "10.212.0.2");
        assert!(reqs.len() >= 2, "{sel:?}: {pkts:#?}");
        assert!(in_order(
            &hop_list(reqs[0]),
            &[("tx", "eth0", &a, "egress"), ("rx", "eth0", &b, "ingress")]
        ));
    }

    let out = std::process::Command::new(netflow_bin())
        .args(["trace", "--pod", &format!("{a}x"), "--duration", "1s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pod {a}x not found")), "{err}");
    assert!(err.contains(&a), "closest names include {a}: {err}");
}

/// Two "nodes" joined by VXLAN, a routed pod behind each (flannel/calico
/// style): selected by the sender pod, one timeline from the pod, through
/// its node, the tunnel (outer header on the underlay), the other node, to
/// the other pod.
#[test]
fn cross_node_pod_to_pod_over_vxlan() {
    let mut lab = Lab::new("xn");
    let (n1, n2) = (lab.netns("n1"), lab.netns("n2"));
    let (p1, p2) = (lab.netns("p1"), lab.netns("p2"));
    let (u1, u2) = (lab.name("u1"), lab.name("u2"));
    sh(&format!(
        "ip link add {u1} netns {n1} type veth peer name {u2} netns {n2}"
    ));
    for (n, u, local, remote, over, pod, pod_ip, other_pods, other_over) in [
        (
            &n1,
            &u1,
            "192.168.218.1",
            "192.168.218.2",
            "10.218.0.1",
            &p1,
            "10.218.1.2",
            "10.218.2.0/24",
            "10.218.0.2",
        ),
        (
            &n2,
            &u2,
            "192.168.218.2",
            "192.168.218.1",
            "10.218.0.2",
            &p2,
            "10.218.2.2",
            "10.218.1.0/24",
            "10.218.0.1",
        ),
    ] {
        sh(&format!(
            "ip -n {n} addr add {local}/24 dev {u} && ip -n {n} link set {u} up"
        ));
        sh(&format!(
            "ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1"
        ));
        // A default route, so proxy ARP answers for the pods' gateway.
        sh(&format!(
            "ip -n {n} link add up0 type veth peer name up1 && ip -n {n} link set up0 up && ip -n {n} link set up1 up && ip -n {n} route add default dev up0"
        ));
        sh(&format!("ip -n {n} link add vx0 type vxlan id 7 local {local} remote {remote} dstport 8472 dev {u}"));
        sh(&format!(
            "ip -n {n} addr add {over}/24 dev vx0 && ip -n {n} link set vx0 up"
        ));
        sh(&format!(
            "ip -n {n} route add {other_pods} via {other_over} dev vx0"
        ));
        let veth = format!("v{pod}");
        sh(&format!(
            "ip link add eth0 netns {pod} type veth peer name {veth} netns {n}"
        ));
        sh(&format!(
            "ip -n {pod} addr add {pod_ip}/32 dev eth0 && ip -n {pod} link set eth0 up"
        ));
        sh(&format!("ip -n {pod} route add 169.254.1.1 dev eth0 scope link && ip -n {pod} route add default via 169.254.1.1 dev eth0"));
        sh(&format!(
            "ip -n {n} link set {veth} up && ip -n {n} route add {pod_ip}/32 dev {veth}"
        ));
        sh(&format!(
            "ip netns exec {n} sysctl -qw net.ipv4.conf.{veth}.proxy_arp=1"
        ));
    }
    lab.exec(&p1, "ping -c1 -W2 10.218.2.2");

    let t = Tracer::start(&["--pod", &p1, "--proto", "icmp"]);
    lab.exec(&p1, "ping -c2 -i0.2 -W2 10.218.2.2");
    let lines = t.stop();
    let pkts = packets(&lines);
    let reqs = flows(&pkts, "icmp", "10.218.1.2", "10.218.2.2");
    assert!(reqs.len() >= 2, "{pkts:#?}");
    let (v1, v2) = (format!("v{p1}"), format!("v{p2}"));
    for r in &reqs {
        let hops = hop_list(r);
        assert!(
            in_order(
                &hops,
                &[
                    ("tx", "eth0", &p1, "egress"),
                    ("rx", &v1, &n1, "ingress"),
                    ("tx", "vx0", &n1, "egress"),
                    ("tx", &u1, &n1, "egress"),
                    ("rx", &u2, &n2, "ingress"),
                    ("rx", "vx0", &n2, "ingress"),
                    ("tx", &v2, &n2, "egress"),
                    ("rx", "eth0", &p2, "ingress"),
                ]
            ),
            "{hops:#?}"
        );
        let under: Vec<_> = r["hops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["ifname"] == u1.as_str() || h["ifname"] == u2.as_str())
            .collect();
        assert!(
            under.iter().all(|h| h["encap"]["kind"] == "vxlan"
                && h["encap"]["vni"] == 7
                && h["encap"]["outer_src"] == "192.168.218.1"),
            "{under:#?}"
        );
        assert_eq!(r["verdict"], "delivered");
    }
    // The replies come back the same way, selected by the pod's address.
    assert!(
        flows(&pkts, "icmp", "10.218.2.2", "10.218.1.2").len() >= 2,
        "{pkts:#?}"
    );
}

/// A Service VIP DNATed by iptables in the pod's own OUTPUT chain (sidecar
/// style): the DNAT hop at OUTPUT in the pod's namespace, and the reply's
/// reverse translation at INPUT.
#[test]
fn output_dnat_with_iptables_in_the_pod() {
    let mut lab = Lab::new("od");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    sh(&format!(
        "ip link add eth0 netns {a} type veth peer name eth0 netns {b}"
    ));
    sh(&format!(
        "ip -n {a} addr add 10.219.0.1/24 dev eth0 && ip -n {a} link set eth0 up"
    ));
    sh(&format!(
        "ip -n {b} addr add 10.219.0.2/24 dev eth0 && ip -n {b} link set eth0 up"
    ));
    sh(&format!("ip -n {a} route add 10.96.3.0/24 dev eth0"));
    sh(&format!(
        "ip netns exec {a} iptables -t nat -A OUTPUT -d 10.96.3.10 -p tcp --dport 80 -j DNAT --to-destination 10.219.0.2:8080"
    ));
    let _server = tcp_server(&b, "10.219.0.2", 8080);

    let t = Tracer::start(&["--pod", &a, "--proto", "tcp"]);
    tcp_client(&a, "10.96.3.10", 80);
    let lines = t.stop();
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| p["flow"]["dst"] == "10.96.3.10" && p["hops"][0]["tcp_flags"] == "S")
        .unwrap_or_else(|| panic!("{pkts:#?}"));
    let nat: Vec<_> = syn["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["nat"].is_null())
        .collect();
    assert_eq!(nat.len(), 1, "{syn:#}");
    assert_eq!(nat[0]["hook"], "output");
    assert_eq!(nat[0]["netns_name"], a.as_str());
    assert_eq!(nat[0]["nat"]["to"], "10.219.0.2:8080");
    assert!(in_order(
        &hop_list(syn),
        &[("tx", "eth0", &a, "egress"), ("rx", "eth0", &b, "ingress")]
    ));
    let synack = pkts
        .iter()
        .find(|p| p["flow"]["src"] == "10.219.0.2" && p["hops"][0]["tcp_flags"] == "S.")
        .unwrap_or_else(|| panic!("{pkts:#?}"));
    let nat: Vec<_> = synack["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["nat"].is_null())
        .collect();
    assert_eq!(nat.len(), 1, "{synack:#}");
    assert_eq!(nat[0]["hook"], "input");
    assert_eq!(nat[0]["nat"]["to"], "10.96.3.10:80");
}

/// A Service whose backend shares the client's bridge (docker/flannel style
/// with `bridge-nf-call-iptables`): the SYN is DNATed at the node's
/// PREROUTING, and the backend's reply, bridged straight back, passes
/// netfilter through br_netfilter, where the reverse translation shows.
#[test]
fn bridged_backend_dnat_with_bridge_nf_call_iptables() {
    let mut lab = Lab::new("bn");
    let node = lab.netns("n");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    sh(&format!(
        "ip -n {node} link add br0 type bridge && ip -n {node} link set br0 up"
    ));
    sh(&format!("ip -n {node} addr add 10.220.0.254/24 dev br0"));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1"
    ));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.bridge.bridge-nf-call-iptables=1"
    ));
    for (pod, ip) in [(&a, "10.220.0.1"), (&b, "10.220.0.2")] {
        let veth = format!("v{pod}");
        sh(&format!(
            "ip link add eth0 netns {pod} type veth peer name {veth} netns {node}"
        ));
        sh(&format!(
            "ip -n {node} link set {veth} master br0 && ip -n {node} link set {veth} up"
        ));
        sh(&format!(
            "ip -n {pod} addr add {ip}/24 dev eth0 && ip -n {pod} link set eth0 up"
        ));
        sh(&format!("ip -n {pod} route add default via 10.220.0.254"));
    }
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority -100; }}; add rule ip svc pre ip daddr 10.96.4.10 tcp dport 80 dnat to 10.220.0.2:8080'"
    ));
    let _server = tcp_server(&b, "10.220.0.2", 8080);
    lab.exec(&a, "ping -c1 -W2 10.220.0.2");

    let t = Tracer::start(&["--pod", &a, "--proto", "tcp", "--nf-netns", &node]);
    // Works only if the bridged reply is un-DNATed: the client checks the answer.
    tcp_client(&a, "10.96.4.10", 80);
    let lines = t.stop();
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| p["flow"]["dst"] == "10.96.4.10" && p["hops"][0]["tcp_flags"] == "S")
        .unwrap_or_else(|| panic!("{pkts:#?}"));
    let nat: Vec<_> = syn["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["nat"].is_null())
        .collect();
    assert_eq!(nat.len(), 1, "{syn:#}");
    assert_eq!(
        (nat[0]["hook"].as_str(), nat[0]["netns_name"].as_str()),
        (Some("prerouting"), Some(node.as_str()))
    );
    assert_eq!(nat[0]["nat"]["to"], "10.220.0.2:8080");
    assert!(in_order(
        &hop_list(syn),
        &[("tx", "eth0", &a, "egress"), ("rx", "eth0", &b, "ingress")]
    ));
    let synack = pkts
        .iter()
        .find(|p| p["flow"]["src"] == "10.220.0.2" && p["hops"][0]["tcp_flags"] == "S.")
        .unwrap_or_else(|| panic!("the reply, selected after translation: {pkts:#?}"));
    let nat: Vec<_> = synack["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["nat"].is_null())
        .collect();
    assert_eq!(nat.len(), 1, "{synack:#}");
    assert_eq!(nat[0]["nat"]["from"], "10.220.0.2:8080");
    assert_eq!(nat[0]["nat"]["to"], "10.96.4.10:80");
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
