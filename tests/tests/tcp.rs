//! Real-kernel tests: each builds its own namespace lab, runs `netflow`,
//! sends real traffic and checks what netflow saw. Each lab reserves an
//! address block of its own (`Lab::net`), so tests run in parallel.
//!
//! TCP: closed ports and resets, retransmissions.
use netflow_schema::{Record, TcpEvent, Verdict};
use netflow_tests::*;

/// A SYN to a closed port: dropped with NO_SOCKET and a hint, the kernel's
/// RST in reply shows as a hop of that SYN, and the RST itself is followed back.
#[test]
fn closed_port_no_socket_and_reset() {
    let mut lab = Lab::new("cp");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));

    let t = Tracer::start(&["--netns", &a, "--proto", "tcp"]);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{net}.0.2', 9), timeout=2)\""
    ));
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let syn = pkts
        .iter()
        .find(|p| p.flow.as_ref().and_then(|f| f.dport) == Some(9) && first_flags(p) == Some("S"))
        .unwrap_or_else(|| panic!("the SYN: {pkts:#?}"));
    assert_eq!(syn.verdict, Verdict::Dropped, "{syn:#?}");
    assert_eq!(packet_reason(syn), "NO_SOCKET", "{syn:#?}");
    assert!(
        syn.drop
            .as_ref()
            .is_some_and(|d| d.hint.contains("nothing listens")),
        "{syn:#?}"
    );
    let hops = hop_list(syn);
    let mut path = vec![
        ("tx", "eth0", a.as_str(), "egress"),
        ("rx", "eth0", b.as_str(), "ingress"),
    ];
    if kernel_traces_socketless_resets() {
        path.push(("tcp_reset", "eth0", &b, ""));
    }
    path.push(("kfree_skb", "eth0", &b, ""));
    assert!(in_order(&hops, &path), "{hops:#?}");
    let rst = pkts
        .iter()
        .find(|p| {
            p.flow.as_ref().and_then(|f| f.sport) == Some(9)
                && first_flags(p).unwrap_or("").contains('R')
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
    let (lab, node, a, _b, _va, _vb) = routed_lab("rx");
    let net = lab.net();
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    sh(&format!(
        "ip netns exec {node} nft 'add table ip fw; add chain ip fw forward_chain {{ type filter hook forward priority 0; }}; add rule ip fw forward_chain tcp dport 80 drop'"
    ));
    let t = Tracer::start(&["--netns", &a, "--proto", "tcp", "--nf-netns", &node]);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{net}.0.2', 80), timeout=2.5)\""
    ));
    let lines = t.stop_lines();
    let notes: Vec<_> = lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Tcp(n) if n.event == TcpEvent::Retransmit => Some(n),
            _ => None,
        })
        .collect();
    assert!(!notes.is_empty(), "{lines:#?}");
    for n in &notes {
        assert_eq!(n.state, "SYN_SENT", "{n:#?}");
        assert_eq!(n.flow.dst.to_string(), format!("{net}.0.2"), "{n:#?}");
        assert_eq!(n.flow.dport, Some(80), "{n:#?}");
        assert_eq!(n.netns_name.as_deref(), Some(a.as_str()), "{n:#?}");
    }
    assert_eq!(
        notes.last().unwrap().count as usize,
        notes.len(),
        "{notes:#?}"
    );
    let syns: Vec<_> = packets(&lines)
        .into_iter()
        .filter(|p| p.flow.as_ref().and_then(|f| f.dport) == Some(80))
        .collect();
    assert!(
        syns.len() > notes.len(),
        "the first SYN and each retransmission: {syns:#?}"
    );
    assert!(
        syns.iter().all(|p| packet_reason(p) == "NETFILTER_DROP"
            && p.drop.as_ref().and_then(|d| d.hook.as_deref()) == Some("forward")),
        "{syns:#?}"
    );
}
