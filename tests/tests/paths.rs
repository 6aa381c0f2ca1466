//! Real-kernel tests: each builds its own namespace lab, runs `netflow`,
//! sends real traffic and checks what netflow saw. Each lab reserves an
//! address block of its own (`Lab::net`), so tests run in parallel.
//!
//! Packet paths across devices and namespaces: bridge, routed, VXLAN, IP-in-IP, pods.
use netflow_schema::{EncapKind, Proto, Verdict};
use netflow_tests::*;

/// Two pods on a Linux bridge in the host namespace (docker/flannel style),
/// selected by the sender's netns: each echo request is one timeline through
/// the sender's eth0, its host veth (a bridge port), the receiver's host veth
/// and the receiver's eth0, in that order; the replies are followed back too.
#[test]
fn bridge_ping_selected_by_sender_netns() {
    let mut lab = Lab::new("br");
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
    // Resolve ARP and let the bridge learn, so the traced pings are unicast.
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--netns", &a]);
    lab.exec(&a, &format!("ping -c3 -i0.2 -W2 {net}.0.2"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);

    let reqs = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
    );
    assert!(
        reqs.len() >= 3,
        "expected 3 echo requests, got {}: {}",
        reqs.len(),
        packet_summary(&lines)
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
        assert_eq!(r.verdict, Verdict::Delivered, "{r:#?}");
        let bridged: Vec<_> = r
            .hops
            .iter()
            .filter(|h| h.ifname == va || h.ifname == vb)
            .collect();
        assert!(
            bridged
                .iter()
                .all(|h| h.master.as_deref() == Some(br.as_str())),
            "veth hops name the bridge: {bridged:#?}"
        );
        // Timestamps increase along the path.
        let ts: Vec<u64> = r.hops.iter().map(|h| h.ts_ns).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    }
    let reps = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.0.2"),
        &format!("{net}.0.1"),
    );
    assert!(
        reps.len() >= 3,
        "replies are selected by the netns address: {}",
        packet_summary(&lines)
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
    assert_eq!(stats(&lines).lost, 0);
}

#[test]
fn routed_pods_with_proxy_arp() {
    let (lab, node, a, b, va, vb) = routed_lab("rt");
    let net = lab.net();
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--netns", &b]);
    lab.exec(&a, &format!("ping -c3 -i0.2 -W2 {net}.0.2"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
    );
    assert!(
        reqs.len() >= 3,
        "requests into the selected netns are followed from their start: {}",
        packet_summary(&lines)
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
        assert_eq!(r.verdict, Verdict::Delivered, "{r:#?}");
    }
}

/// Two "nodes" joined by VXLAN over a veth underlay. Selected by the inner
/// destination only (the kernel matches inside the tunnel): one timeline
/// before and after encapsulation, the outer header and VNI on the underlay hops.
#[test]
fn vxlan_inner_and_outer_headers_in_one_timeline() {
    let mut lab = Lab::new("vx");
    let net = lab.net();
    let under = lab.underlay();
    let (n1, n2) = (lab.netns("n1"), lab.netns("n2"));
    let (u1, u2) = (lab.name("u1"), lab.name("u2"));
    sh(&format!(
        "ip link add {u1} netns {n1} type veth peer name {u2} netns {n2}"
    ));
    sh(&format!(
        "ip -n {n1} addr add {under}.1/24 dev {u1} && ip -n {n1} link set {u1} up"
    ));
    sh(&format!(
        "ip -n {n2} addr add {under}.2/24 dev {u2} && ip -n {n2} link set {u2} up"
    ));
    for (n, u, local, remote, inner) in [
        (
            &n1,
            &u1,
            &format!("{under}.1"),
            &format!("{under}.2"),
            &format!("{net}.0.1/24"),
        ),
        (
            &n2,
            &u2,
            &format!("{under}.2"),
            &format!("{under}.1"),
            &format!("{net}.0.2/24"),
        ),
    ] {
        sh(&format!(
            "ip -n {n} link add vx0 type vxlan id 42 local {local} remote {remote} dstport 4789 dev {u}"
        ));
        sh(&format!(
            "ip -n {n} addr add {inner} dev vx0 && ip -n {n} link set vx0 up"
        ));
    }
    lab.exec(&n1, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--host", &format!("{net}.0.2"), "--proto", "icmp"]);
    lab.exec(&n1, &format!("ping -c3 -i0.2 -W2 {net}.0.2"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.0.1"),
        &format!("{net}.0.2"),
    );
    assert!(reqs.len() >= 3, "{}", packet_summary(&lines));
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
        for h in &r.hops {
            // Every hop shows the inner tuple.
            assert_eq!(
                h.src.map(|a| a.to_string()),
                Some(format!("{net}.0.1")),
                "{h:#?}"
            );
            assert_eq!(
                h.dst.map(|a| a.to_string()),
                Some(format!("{net}.0.2")),
                "{h:#?}"
            );
            let on_underlay = h.ifname == u1 || h.ifname == u2;
            let e = h.encap.as_ref();
            if on_underlay {
                assert_eq!(e.map(|e| e.kind), Some(EncapKind::Vxlan), "{h:#?}");
                assert_eq!(e.and_then(|e| e.vni), Some(42), "{h:#?}");
                assert_eq!(
                    e.map(|e| e.outer_src.to_string()),
                    Some(format!("{under}.1")),
                    "{h:#?}"
                );
                assert_eq!(
                    e.map(|e| e.outer_dst.to_string()),
                    Some(format!("{under}.2")),
                    "{h:#?}"
                );
            } else if h.ifname == "vx0" {
                assert!(e.is_none(), "{h:#?}");
            }
        }
        assert_eq!(r.verdict, Verdict::Delivered, "{r:#?}");
    }
}

/// IP-in-IP packets (protocol 4, as on Calico's tunl0) sent from a raw socket
/// over a veth. Selected by the inner destination; the inner UDP tuple is
/// decoded and the outer addresses shown.
#[test]
fn ipip_inner_tuple_decoded() {
    let mut lab = Lab::new("ip");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--host", &format!("{net}.55.2")]);
    let py = r#"
import socket, struct
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
payload = b'netflow-ipip'
udp = struct.pack('!HHHH', 1234, 5678, 8 + len(payload), 0) + payload
hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 77, 0, 64, 17, 0,
                  socket.inet_aton('INNER.1'), socket.inet_aton('INNER.2'))
hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
for _ in range(3):
    s.sendto(hdr + udp, ('OUTER', 0))
"#
    .replace("INNER", &format!("{net}.55"))
    .replace("OUTER", &format!("{net}.0.2"));
    sh(&format!(
        "ip netns exec {a} python3 -c \"{}\"",
        py.replace('"', "\\\"")
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let inner = flows(
        &pkts,
        Proto::Udp,
        &format!("{net}.55.1"),
        &format!("{net}.55.2"),
    );
    assert!(inner.len() >= 3, "{}", packet_summary(&lines));
    for p in &inner {
        assert_eq!(p.flow.as_ref().and_then(|f| f.sport), Some(1234), "{p:#?}");
        assert_eq!(p.flow.as_ref().and_then(|f| f.dport), Some(5678), "{p:#?}");
        let hops = hop_list(p);
        assert!(
            in_order(
                &hops,
                &[("tx", "eth0", &a, "egress"), ("rx", "eth0", &b, "ingress")]
            ),
            "{hops:#?}"
        );
        for h in &p.hops {
            let e = h.encap.as_ref();
            assert_eq!(e.map(|e| e.kind), Some(EncapKind::Ipip), "{h:#?}");
            assert_eq!(
                e.map(|e| e.outer_src.to_string()),
                Some(format!("{net}.0.1")),
                "{h:#?}"
            );
            assert_eq!(
                e.map(|e| e.outer_dst.to_string()),
                Some(format!("{net}.0.2")),
                "{h:#?}"
            );
        }
    }
}

/// Two "nodes" joined by VXLAN, a routed pod behind each (flannel/calico
/// style): selected by the sender pod, one timeline from the pod, through
/// its node, the tunnel (outer header on the underlay), the other node, to
/// the other pod.
#[test]
fn cross_node_pod_to_pod_over_vxlan() {
    let VxlanNodes {
        lab,
        n1,
        n2,
        p1,
        p2,
        u1,
        u2,
    } = vxlan_nodes("xn");
    let net = lab.net();
    let under = lab.underlay();
    lab.exec(&p1, &format!("ping -c1 -W2 {net}.2.2"));

    let t = Tracer::start(&["--pod", &p1, "--proto", "icmp"]);
    lab.exec(&p1, &format!("ping -c2 -i0.2 -W2 {net}.2.2"));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let reqs = flows(
        &pkts,
        Proto::Icmp,
        &format!("{net}.1.2"),
        &format!("{net}.2.2"),
    );
    assert!(reqs.len() >= 2, "{}", packet_summary(&lines));
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
        let on_underlay: Vec<_> = r
            .hops
            .iter()
            .filter(|h| h.ifname == u1 || h.ifname == u2)
            .collect();
        assert!(
            on_underlay
                .iter()
                .all(|h| h.encap.as_ref().is_some_and(|e| {
                    e.kind == EncapKind::Vxlan
                        && e.vni == Some(7)
                        && e.outer_src.to_string() == format!("{under}.1")
                })),
            "{on_underlay:#?}"
        );
        assert_eq!(r.verdict, Verdict::Delivered, "{r:#?}");
    }
    // The replies come back the same way, selected by the pod's address.
    assert!(
        flows(
            &pkts,
            Proto::Icmp,
            &format!("{net}.2.2"),
            &format!("{net}.1.2")
        )
        .len()
            >= 2,
        "{}",
        packet_summary(&lines)
    );
}

/// Off Kubernetes a named network namespace is a pod: `--pod NAME` selects
/// its packets (also by `--pod-ip`), and an unknown pod gets the closest names.
#[test]
fn pod_by_name_and_ip_from_named_netns() {
    let mut lab = Lab::new("pd");
    let net = lab.net();
    let (a, b) = lab.pair("web", "db");
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    for sel in [["--pod", a.as_str()], ["--pod-ip", &format!("{net}.0.2")]] {
        let t = Tracer::start(&[sel[0], sel[1], "--proto", "icmp"]);
        lab.exec(&a, &format!("ping -c2 -i0.2 -W2 {net}.0.2"));
        let lines = t.stop_lines();
        let pkts = packets(&lines);
        let reqs = flows(
            &pkts,
            Proto::Icmp,
            &format!("{net}.0.1"),
            &format!("{net}.0.2"),
        );
        assert!(reqs.len() >= 2, "{sel:?}: {}", packet_summary(&lines));
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
