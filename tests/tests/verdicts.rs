//! Real-kernel tests of verdicts and connection outcomes: healthy traffic
//! reads healthy (every packet delivered or forwarded, every connection
//! ok), and each way a connection goes wrong is named for the right
//! connection, with where and why.
//! Each lab has its own addresses (`Lab::net`).
use netflow_schema::{NatKind, Outcome, Point, Proto};
use netflow_tests::*;

/// Three calls to a Service VIP DNAT'd on the node (kube-proxy style): every
/// packet — handshake ACK at the listener, SYN-ACK at the connecting socket,
/// FINs, last ACKs — is delivered or forwarded, and each call is one `ok`
/// connection across the NAT, counted both ways.
#[test]
fn service_calls_read_healthy() {
    let (lab, node, a, b, _va, _vb) = routed_lab("vsvc");
    let net = lab.net();
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority -100; }}; add rule ip svc pre ip daddr 10.96.230.10 tcp dport 80 dnat to {net}.0.2:8080'"
    ));
    let _server = tcp_server(&b, &format!("{net}.0.2"), 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--netns", &a, "--nf-netns", &node]);
    for _ in 0..3 {
        tcp_client(&a, "10.96.230.10", 80);
    }
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    let calls = conns_to(
        &lines,
        Proto::Tcp,
        &format!("{net}.0.1"),
        "10.96.230.10",
        80,
    );
    assert_eq!(
        calls.len(),
        3,
        "one connection per call: {:#?}",
        connections(&lines)
    );
    assert_connections_ok(&calls);
    for c in &calls {
        assert_eq!(nat_kind(c), Some(NatKind::Dnat), "{c:#?}");
        assert_eq!(
            nat_to(c),
            Some(format!("{net}.0.2:8080").as_str()),
            "{c:#?}"
        );
        // SYN, ACK, data, FIN, ACK at least one way; SYN-ACK, data, FIN the other.
        assert!(c.fwd.packets >= 4, "{c:#?}");
        assert!(c.rev.packets >= 3, "{c:#?}");
    }
    // The server's side of the handshake shows the socket hop.
    let syn_acks: Vec<_> = packets(&lines)
        .into_iter()
        .filter(|p| first_flags(p) == Some("S."))
        .collect();
    assert!(!syn_acks.is_empty());
    for p in syn_acks {
        let last = p.hops.last().unwrap();
        assert_eq!(last.point, Point::Socket, "{p:#?}");
        assert_eq!(last.netns_name.as_deref(), Some(a.as_str()), "{p:#?}");
    }
}

/// A DNS-style call to a Service VIP over UDP (as pods ask CoreDNS):
/// DNAT'd on the node to the backend, the answer translated back. Both
/// packets of each exchange read healthy, and each exchange is one `ok`
/// connection across the NAT.
#[test]
fn udp_service_calls_read_healthy() {
    let (lab, node, a, b, _va, _vb) = routed_lab("vudps");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    let vip = format!("10.96.{}.53", net.trim_start_matches("10."));
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; add chain ip svc pre {{ type nat hook prerouting priority -100; }}; add rule ip svc pre ip daddr {vip} udp dport 53 dnat to {b_ip}:5353'"
    ));
    let _dns = udp_server(&b, &b_ip, 5353, true);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "udp", "--nf-netns", &node]);
    assert_eq!(
        udp_client(&a, &vip, 53, 3, 2.0),
        3,
        "every answer came back"
    );
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    let calls = conns_to(&lines, Proto::Udp, &a_ip, &vip, 53);
    // A new socket (and source port) per question, as resolvers do.
    assert_eq!(calls.len(), 3, "{:#?}", connections(&lines));
    assert_connections_ok(&calls);
    for c in &calls {
        assert_eq!(nat_kind(c), Some(NatKind::Dnat), "{c:#?}");
        assert_eq!(nat_to(c), Some(format!("{b_ip}:5353").as_str()), "{c:#?}");
        assert_eq!(c.fwd.delivered, 1, "{c:#?}");
        assert_eq!(c.rev.delivered, 1, "{c:#?}");
    }
}

/// kube-proxy's IPVS mode: the Service VIP on a dummy device of the node,
/// IPVS (masquerading) picks the backend at INPUT and sends the packet on
/// from there (the netfilter hook never returns it); the reply is
/// translated back at FORWARD. Every packet reads healthy and each call is
/// one `ok` connection across the translation. IPVS is a module: this
/// host's kernel has none (said on stdout), the kernel matrix runs it.
#[test]
fn ipvs_service_calls_read_healthy() {
    if !sh_ok("modprobe ip_vs") {
        println!("no IPVS on this kernel (modprobe ip_vs failed): run by the kernel matrix");
        return;
    }
    let (lab, node, a, b, _va, _vb) = routed_lab("vipvs");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    let vip = format!("10.96.{}.20", net.trim_start_matches("10."));
    sh(&format!(
        "ip -n {node} link add kube-ipvs0 type dummy && ip -n {node} addr add {vip}/32 dev kube-ipvs0 && \
         ip netns exec {node} ipvsadm -A -t {vip}:80 -s rr && \
         ip netns exec {node} ipvsadm -a -t {vip}:80 -r {b_ip}:8080 -m"
    ));
    let _server = tcp_server(&b, &b_ip, 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    for _ in 0..2 {
        tcp_client(&a, &vip, 80);
    }
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    let calls = conns_to(&lines, Proto::Tcp, &a_ip, &vip, 80);
    assert_eq!(
        calls.len(),
        2,
        "one connection per call: {:#?}",
        connections(&lines)
    );
    assert_connections_ok(&calls);
    for c in &calls {
        assert_eq!(nat_kind(c), Some(NatKind::Dnat), "{c:#?}");
        assert_eq!(nat_to(c), Some(format!("{b_ip}:8080").as_str()), "{c:#?}");
    }
}

/// Pod to pod across two VXLAN "nodes": TCP and ping read healthy.
#[test]
fn pod_to_pod_over_vxlan_reads_healthy() {
    let v = vxlan_nodes("vvx");
    let net = v.lab.net();
    let _server = tcp_server(&v.p2, &format!("{net}.2.2"), 7000);
    v.lab.exec(&v.p1, &format!("ping -c1 -W2 {net}.2.2"));

    let t = Tracer::start(&["--pod", &v.p1]);
    tcp_client(&v.p1, &format!("{net}.2.2"), 7000);
    tcp_client(&v.p1, &format!("{net}.2.2"), 7000);
    v.lab.exec(&v.p1, &format!("ping -c2 -i0.2 -W2 {net}.2.2"));
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    let tcp = conns_to(
        &lines,
        Proto::Tcp,
        &format!("{net}.1.2"),
        &format!("{net}.2.2"),
        7000,
    );
    assert_eq!(tcp.len(), 2, "{:#?}", connections(&lines));
    assert_connections_ok(&tcp);
    let ping = conns_to(
        &lines,
        Proto::Icmp,
        &format!("{net}.1.2"),
        &format!("{net}.2.2"),
        0,
    );
    assert_eq!(
        ping.len(),
        1,
        "one ping run is one connection: {:#?}",
        connections(&lines)
    );
    assert_connections_ok(&ping);
    assert_eq!(ping[0].fwd.delivered, 2, "{:#?}", ping[0]);
    assert_eq!(ping[0].rev.delivered, 2, "{:#?}", ping[0]);
}

/// UDP request/response and ping, over IPv4 and IPv6, between two pods.
#[test]
fn udp_and_ping_ipv4_ipv6_read_healthy() {
    let mut lab = Lab::new("vudp");
    let (net, net6) = (lab.net(), lab.net6());
    let (a, b) = lab.pair("a", "b");
    for (ns, host) in [(&a, 1), (&b, 2)] {
        sh(&format!(
            "ip -n {ns} addr add {net6}::{host}/64 dev eth0 nodad"
        ));
    }
    let _s4 = udp_server(&b, &format!("{net}.0.2"), 5300, true);
    let _s6 = udp_server(&b, &format!("{net6}::2"), 5301, true);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    lab.exec(&a, &format!("ping -6 -c1 -W2 {net6}::2"));

    let t = Tracer::start(&["--netns", &a]);
    assert_eq!(udp_client(&a, &format!("{net}.0.2"), 5300, 2, 2.0), 2);
    assert_eq!(udp_client(&a, &format!("{net6}::2"), 5301, 2, 2.0), 2);
    lab.exec(&a, &format!("ping -c2 -i0.2 -W2 {net}.0.2"));
    lab.exec(&a, &format!("ping -6 -c2 -i0.2 -W2 {net6}::2"));
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    for (proto, src, dst, port, n) in [
        (
            Proto::Udp,
            &format!("{net}.0.1"),
            &format!("{net}.0.2"),
            5300,
            2,
        ),
        (
            Proto::Udp,
            &format!("{net6}::1"),
            &format!("{net6}::2"),
            5301,
            2,
        ),
        (
            Proto::Icmp,
            &format!("{net}.0.1"),
            &format!("{net}.0.2"),
            0,
            1,
        ),
        (
            Proto::Icmpv6,
            &format!("{net6}::1"),
            &format!("{net6}::2"),
            0,
            1,
        ),
    ] {
        let c = conns_to(&lines, proto, src, dst, port);
        assert_eq!(c.len(), n, "{proto:?} {dst}: {:#?}", connections(&lines));
        assert_connections_ok(&c);
    }
}

/// A FORWARD drop of the request on the node: `request_lost`, at FORWARD,
/// with the firewall hint — and the healthy connection next to it is ok.
#[test]
fn forward_drop_is_request_lost() {
    let (lab, node, a, b, _va, _vb) = routed_lab("vrql");
    let net = lab.net();
    let _bad = tcp_server(&b, &format!("{net}.0.2"), 9090);
    let _good = tcp_server(&b, &format!("{net}.0.2"), 9091);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    sh(&format!(
        "ip netns exec {node} nft 'add table ip pol; add chain ip pol forward_chain {{ type filter hook forward priority 0; }}; add rule ip pol forward_chain tcp dport 9090 drop'"
    ));
    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{net}.0.2',9090),timeout=1.5)\""
    ));
    tcp_client(&a, &format!("{net}.0.2"), 9091);
    let lines = t.stop_lines();
    let lost = conns_to(
        &lines,
        Proto::Tcp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
        9090,
    );
    assert_eq!(lost.len(), 1, "{:#?}", connections(&lines));
    let c = lost[0];
    assert_eq!(c.outcome, Outcome::RequestLost, "{c:#?}");
    assert_eq!(c.hook.as_deref(), Some("forward"), "{c:#?}");
    assert_eq!(conn_reason(c), "NETFILTER_DROP", "{c:#?}");
    assert_eq!(where_netns(c), Some(node.as_str()), "{c:#?}");
    assert!(
        c.hint.as_deref().is_some_and(|h| h.contains("firewall")),
        "{c:#?}"
    );
    assert!(c.fwd.dropped >= 1, "{c:#?}");
    assert_eq!(c.rev.packets, 0, "{c:#?}");
    let ok = conns_to(
        &lines,
        Proto::Tcp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
        9091,
    );
    assert_eq!(ok.len(), 1, "{:#?}", connections(&lines));
    assert_connections_ok(&ok);
}

/// A UDP server that reads and never answers: `no_reply`, where its socket
/// took the request; a server that answers, next to it, is ok.
#[test]
fn silent_udp_server_is_no_reply() {
    let mut lab = Lab::new("vnor");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    let _silent = udp_server(&b, &format!("{net}.0.2"), 5400, false);
    let _echo = udp_server(&b, &format!("{net}.0.2"), 5401, true);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    let t = Tracer::start(&["--netns", &a, "--proto", "udp"]);
    assert_eq!(udp_client(&a, &format!("{net}.0.2"), 5400, 1, 0.5), 0);
    assert_eq!(udp_client(&a, &format!("{net}.0.2"), 5401, 1, 2.0), 1);
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    let c = conns_to(
        &lines,
        Proto::Udp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
        5400,
    );
    assert_eq!(c.len(), 1, "{:#?}", connections(&lines));
    assert_eq!(c[0].outcome, Outcome::NoReply, "{:#?}", c[0]);
    assert_eq!(
        c[0].at.as_ref().map(|h| h.point),
        Some(Point::Socket),
        "{:#?}",
        c[0]
    );
    assert_eq!(where_netns(c[0]), Some(b.as_str()), "{:#?}", c[0]);
    assert!(
        c[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("application")),
        "{:#?}",
        c[0]
    );
    assert_connections_ok(&conns_to(
        &lines,
        Proto::Udp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
        5401,
    ));
}

/// A rule on the node that drops only the answers: `reply_lost`, at FORWARD.
#[test]
fn dropped_answers_are_reply_lost() {
    let (lab, node, a, b, _va, _vb) = routed_lab("vrpl");
    let net = lab.net();
    let _echo = udp_server(&b, &format!("{net}.0.2"), 5500, true);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    sh(&format!(
        "ip netns exec {node} nft 'add table ip pol; add chain ip pol forward_chain {{ type filter hook forward priority 0; }}; add rule ip pol forward_chain udp sport 5500 drop'"
    ));
    let t = Tracer::start(&["--netns", &a, "--proto", "udp", "--nf-netns", &node]);
    assert_eq!(udp_client(&a, &format!("{net}.0.2"), 5500, 1, 0.5), 0);
    let lines = t.stop_lines();
    let c = conns_to(
        &lines,
        Proto::Udp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
        5500,
    );
    assert_eq!(c.len(), 1, "{:#?}", connections(&lines));
    let c = c[0];
    assert_eq!(c.outcome, Outcome::ReplyLost, "{c:#?}");
    assert_eq!(c.hook.as_deref(), Some("forward"), "{c:#?}");
    assert_eq!(conn_reason(c), "NETFILTER_DROP", "{c:#?}");
    assert_eq!(c.fwd.delivered, 1, "the request arrived: {c:#?}");
    assert_eq!(c.rev.dropped, 1, "{c:#?}");
}

/// Closed ports: TCP answered with a RST and UDP with ICMP port unreachable
/// are `refused`, where the request ended (NO_SOCKET in the server's netns).
#[test]
fn closed_ports_are_refused() {
    let mut lab = Lab::new("vref");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    let t = Tracer::start(&["--netns", &a]);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{net}.0.2',9999),timeout=1)\""
    ));
    assert_eq!(udp_client(&a, &format!("{net}.0.2"), 9998, 1, 0.5), 0);
    let lines = t.stop_lines();
    for (proto, port) in [(Proto::Tcp, 9999), (Proto::Udp, 9998)] {
        let c = conns_to(
            &lines,
            proto,
            &format!("{net}.0.1"),
            &format!("{net}.0.2"),
            port,
        );
        assert_eq!(c.len(), 1, "{proto:?}: {:#?}", connections(&lines));
        let c = c[0];
        assert_eq!(c.outcome, Outcome::Refused, "{c:#?}");
        assert_eq!(conn_reason(c), "NO_SOCKET", "{c:#?}");
        assert_eq!(where_netns(c), Some(b.as_str()), "{c:#?}");
        assert!(
            c.hint.as_deref().is_some_and(|h| h.contains("listens")),
            "{c:#?}"
        );
    }
}

/// A ring buffer too small on purpose: events are lost, and the connections
/// they belonged to say `incomplete` — never a wrong outcome.
#[test]
fn lost_events_make_connections_incomplete() {
    let mut lab = Lab::new("vinc");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    let _echo = udp_server(&b, &format!("{net}.0.2"), 5700, true);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    let t = Tracer::start(&["--netns", &a, "--proto", "udp", "--ring-size", "4K"]);
    // Bursts faster than a 4 KiB ring drains.
    assert!(udp_client(&a, &format!("{net}.0.2"), 5700, 300, 1.0) > 0);
    let lines = t.stop_lines();
    let st = stats(&lines);
    assert!(st.lost > 0, "the ring overflowed: {st:#?}");
    let conns = conns_to(
        &lines,
        Proto::Udp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
        5700,
    );
    assert!(!conns.is_empty());
    let mut incomplete = 0;
    for c in &conns {
        match c.outcome {
            Outcome::Ok => {}
            Outcome::Incomplete => incomplete += 1,
            other => panic!("with events lost, {other} is a guess: {c:#?}"),
        }
    }
    assert!(incomplete > 0, "{conns:#?}");
}

/// Two pods on a bridge in the host namespace: TCP, UDP and ping read
/// healthy (the bridge hops are forwarded, the sockets take every packet).
#[test]
fn bridged_pods_read_healthy() {
    let mut lab = Lab::new("vbr");
    let net = lab.net();
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    let br = lab.name("br");
    sh(&format!(
        "ip link add {br} type bridge && ip link set {br} up"
    ));
    lab.host_link(&br);
    let (va, vb) = (lab.name("va"), lab.name("vb"));
    lab.pod(&a, &va, &format!("{net}.0.1/24"));
    lab.pod(&b, &vb, &format!("{net}.0.2/24"));
    sh(&format!(
        "ip link set {va} master {br} && ip link set {vb} master {br}"
    ));
    let _tcp = tcp_server(&b, &format!("{net}.0.2"), 7100);
    let _udp = udp_server(&b, &format!("{net}.0.2"), 7101, true);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--netns", &a]);
    tcp_client(&a, &format!("{net}.0.2"), 7100);
    assert_eq!(udp_client(&a, &format!("{net}.0.2"), 7101, 1, 2.0), 1);
    lab.exec(&a, &format!("ping -c2 -i0.2 -W2 {net}.0.2"));
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    for (proto, port) in [(Proto::Tcp, 7100), (Proto::Udp, 7101), (Proto::Icmp, 0)] {
        let c = conns_to(
            &lines,
            proto,
            &format!("{net}.0.1"),
            &format!("{net}.0.2"),
            port,
        );
        assert_eq!(c.len(), 1, "{proto:?}: {:#?}", connections(&lines));
        assert_connections_ok(&c);
    }
}

/// Hairpin: a pod on a bridge calls a Service whose only endpoint is
/// itself (kube-proxy with a bridge CNI in hairpin mode). The bridge's
/// netfilter DNATs the VIP to the pod and masquerades it to the bridge's
/// address (else the pod would see its own address as the source), the
/// bridge sends it back out the port it came in by, and the answers take
/// the same way back. Every packet reads healthy; each call is one `ok`
/// connection across both translations.
#[test]
fn hairpin_service_call_to_itself_reads_healthy() {
    let mut lab = Lab::new("vhp");
    let net = lab.net();
    let node = lab.netns("n");
    let a = lab.netns("a");
    let a_ip = format!("{net}.0.1");
    let vip = format!("10.96.{}.30", net.trim_start_matches("10."));
    sh(&format!(
        "ip -n {node} link add br0 type bridge && ip -n {node} link set br0 up && \
         ip -n {node} addr add {net}.0.254/24 dev br0 && \
         ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1 && \
         ip netns exec {node} sysctl -qw net.bridge.bridge-nf-call-iptables=1 && \
         ip link add eth0 netns {a} type veth peer name va netns {node} && \
         ip -n {node} link set va master br0 && ip -n {node} link set va type bridge_slave hairpin on && \
         ip -n {node} link set va up && \
         ip -n {a} addr add {a_ip}/24 dev eth0 && ip -n {a} link set eth0 up && \
         ip -n {a} route add default via {net}.0.254"
    ));
    sh(&format!(
        "ip netns exec {node} nft 'add table ip svc; \
         add chain ip svc pre {{ type nat hook prerouting priority -100; }}; \
         add rule ip svc pre ip daddr {vip} tcp dport 80 dnat to {a_ip}:8080; \
         add chain ip svc post {{ type nat hook postrouting priority 100; }}; \
         add rule ip svc post ip saddr {a_ip} ip daddr {a_ip} masquerade'"
    ));
    let _server = tcp_server(&a, &a_ip, 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.254"));

    let t = Tracer::start(&["--pod", &a, "--proto", "tcp", "--nf-netns", &node]);
    for _ in 0..2 {
        tcp_client(&a, &vip, 80);
    }
    let lines = t.stop_lines();
    assert_packets_healthy(&lines);
    let calls = conns_to(&lines, Proto::Tcp, &a_ip, &vip, 80);
    assert_eq!(
        calls.len(),
        2,
        "one connection per call: {:#?}",
        connections(&lines)
    );
    assert_connections_ok(&calls);
    for c in &calls {
        assert_eq!(nat_kind(c), Some(NatKind::Dnat), "{c:#?}");
        assert_eq!(nat_to(c), Some(format!("{a_ip}:8080").as_str()), "{c:#?}");
    }
    // The SYN went out of the pod, into the bridge port, back out of the
    // same port and into the pod's socket, translated both ways on the way.
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| {
            p.flow.as_ref().is_some_and(|f| f.dst.to_string() == vip) && first_flags(p) == Some("S")
        })
        .unwrap_or_else(|| panic!("{pkts:#?}"));
    assert!(
        in_order(
            &hop_list(syn),
            &[
                ("tx", "eth0", &a, "egress"),
                ("rx", "va", &node, "ingress"),
                ("tx", "va", &node, "egress"),
                ("rx", "eth0", &a, "ingress"),
                ("socket", "eth0", &a, ""),
            ]
        ),
        "{syn:#?}"
    );
    let kinds: Vec<NatKind> = nat_hops(syn)
        .iter()
        .filter_map(|h| h.nat.as_ref().map(|n| n.kind))
        .collect();
    assert_eq!(kinds, [NatKind::Dnat, NatKind::Snat], "{syn:#?}");
}
