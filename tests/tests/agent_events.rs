//! `netflow agent` in its default events mode (`--probes events`): no
//! program on a healthy packet's path.
//! Connections come from their sockets' state changes (counted in the
//! kernel per pod), a failed connect is a JSON line with the socket's
//! error, drops come from the free; the healthy calls beside them say
//! nothing but their counts.
use std::time::{Duration, Instant};

use netflow_schema::{Line, Outcome, Record, TcpEvent, TcpNote, Verdict};
use netflow_tests::*;

/// One agent of this file at a time: each follows every failure of the
/// node, the other test's included, and the counts and the followed
/// flows asserted here are the node's.
static ONE_AGENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn connect_failures(lines: &[Line]) -> Vec<&TcpNote> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Tcp(n) if n.event == TcpEvent::ConnectFailed => Some(n),
            _ => None,
        })
        .collect()
}

/// Wait until the agent on `port` serves each series with its value.
fn wait_for_samples(port: u16, want: &[(String, u64)], secs: u64) {
    if let Err(e) = samples_within(port, want, secs) {
        panic!("{e}");
    }
}

/// The same, saying what it got instead when it does not within `secs`.
fn samples_within(port: u16, want: &[(String, u64)], secs: u64) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = http_get(&url).unwrap_or_default();
        let got: Vec<Option<u64>> = want.iter().map(|(s, _)| sample(&text, s)).collect();
        if want.iter().zip(&got).all(|((_, n), g)| *g == Some(*n)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("want {want:#?}\ngot {got:?}\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A connect from `ns` that may fail: the application gives up after
/// `secs` (and closes the socket).
fn try_connect(ns: &str, addr: &str, port: u16, secs: f32) {
    sh(&format!(
        "ip netns exec {ns} python3 -c 'import socket
s = socket.socket()
s.settimeout({secs})
try:
    s.connect((\"{addr}\", {port}))
except OSError as e:
    print(e)
s.close()'"
    ));
}

/// Three healthy calls, one refused (nothing listens) and one unanswered
/// (the server's firewall drops its SYNs; the client gives up): the two
/// failures are JSON lines with their errors and count as `refused` and
/// `unanswered` connections of the client's pod, the healthy calls count
/// as connected and accepted (and closed) with no line; the drops of the
/// failed calls' SYNs are reported, none of the healthy ones.
#[test]
fn the_events_mode_reports_failed_connects_from_their_sockets() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, _node, a, b, _va, _vb) = routed_lab("age");
    let b_ip = format!("{}.0.2", lab.net());
    let _sink = byte_sink(&b, &b_ip, 7302);
    sh(&format!(
        "ip netns exec {b} iptables -A INPUT -p tcp --dport 7304 -j DROP"
    ));
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let port = free_port();
    let mut agent = Tracer::agent(&[
        // The events mode is the agent's default.
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    let said = agent.stderr_so_far().to_string();
    assert!(said.contains("on  tp_btf/inet_sock_set_state"), "{said}");
    assert!(said.contains("on  on demand"), "{said}");
    for per_packet in ["tp_btf/netif_receive_skb", "tp_btf/net_dev_queue"] {
        assert!(!said.contains(&format!("on  {per_packet}")), "{said}");
    }
    // DNS, UDP and ICMP echo conversations alone: by fentry on the
    // datagram paths, else at the sockets (where the cgroup programs look
    // at every packet's ports and return).
    let dns: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("conversations' first"))
        .collect();
    let fentry = dns
        .iter()
        .filter(|l| l.contains("on  fentry/") || l.contains("on  fexit/"))
        .count();
    let sockets = dns.iter().filter(|l| l.contains("on  cgroup_skb/")).count();
    // fentry works here (ICMPv6 errors are read by it): DNS is read by it.
    let want = if said.contains("on  fentry/icmp6_send") {
        (7, 0)
    } else {
        (0, 2)
    };
    assert_eq!((fentry, sockets), want, "{said}");
    for l in said.lines().filter(|l| l.contains("cgroup_skb/")) {
        assert!(l.contains("DNS datagrams"), "{l}");
    }
    for _ in 0..3 {
        send_bytes(&a, &b_ip, 7302, 10_000);
    }
    try_connect(&a, &b_ip, 7303, 1.5);
    try_connect(&a, &b_ip, 7304, 1.5);

    let want = [
        (
            format!(
                r#"netflow_tcp_socket_events_total{{event="connected",namespace="",pod="{a}"}}"#
            ),
            3,
        ),
        (
            format!(
                r#"netflow_tcp_socket_events_total{{event="connect_failed",namespace="",pod="{a}"}}"#
            ),
            2,
        ),
        (
            format!(
                r#"netflow_tcp_socket_events_total{{event="accepted",namespace="",pod="{b}"}}"#
            ),
            3,
        ),
        (
            format!(r#"netflow_tcp_socket_events_total{{event="closed",namespace="",pod="{b}"}}"#),
            3,
        ),
        (
            format!(r#"netflow_connections_total{{outcome="refused",namespace="",pod="{a}"}}"#),
            1,
        ),
        (
            format!(r#"netflow_connections_total{{outcome="unanswered",namespace="",pod="{a}"}}"#),
            1,
        ),
    ];
    wait_for_samples(port, &want, 20);
    let lines = agent.stop_lines();
    // Of this lab's pod a (the agent sees every pod of the node).
    let failed: Vec<&TcpNote> = connect_failures(&lines)
        .into_iter()
        .filter(|n| n.netns_name.as_deref() == Some(a.as_str()))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    let by_port = |p: u16| {
        failed
            .iter()
            .find(|n| n.flow.dport == Some(p))
            .unwrap_or_else(|| panic!("no failed connect to :{p}: {failed:#?}"))
    };
    let refused = by_port(7303);
    assert_eq!(
        refused.error.as_deref(),
        Some("ECONNREFUSED"),
        "{refused:#?}"
    );
    assert_eq!(refused.state, "SYN_SENT", "{refused:#?}");
    assert_eq!(
        refused.netns_name.as_deref(),
        Some(a.as_str()),
        "{refused:#?}"
    );
    assert_eq!(refused.flow.src.to_string(), format!("{}.0.1", lab.net()));
    assert_ne!(refused.flow.sport, Some(0), "{refused:#?}");
    let unanswered = by_port(7304);
    assert_eq!(unanswered.error.as_deref(), Some("none"), "{unanswered:#?}");
    // Connections come from the sockets: no line made of packets but DNS
    // lookups' (the node's own, if any failed meanwhile).
    assert!(
        connections(&lines).iter().all(|c| c.dns.is_some()),
        "{lines:#?}"
    );
    let pkts = packets(&lines);
    let dropped_to = |p: u16| {
        pkts.iter()
            .filter(|k| {
                k.verdict == Verdict::Dropped && k.flow.as_ref().and_then(|f| f.dport) == Some(p)
            })
            .count()
    };
    assert!(dropped_to(7304) >= 1, "{}", packet_summary(&lines));
    assert!(dropped_to(7303) >= 1, "{}", packet_summary(&lines));
    assert_eq!(dropped_to(7302), 0, "{}", packet_summary(&lines));
}

/// A policy drop in the node's FORWARD chain: its first SYN is reported
/// from the free alone (no program was on its path); that drop has the
/// flow followed, so the SYN the client sends again a second later is
/// traced hop by hop (and by nftables tracing of that flow alone) and its
/// drop names the hook and the rule. The healthy call beside
/// it is never followed and says nothing; the programs are detached again
/// once the window is over.
#[test]
fn a_dropped_flow_is_followed_so_its_retry_names_hook_and_rule() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, node, a, b, _va, _vb) = routed_lab("agf");
    let b_ip = format!("{}.0.2", lab.net());
    let _sink = byte_sink(&b, &b_ip, 7305);
    sh(&format!(
        "ip netns exec {node} iptables -A FORWARD -d {b_ip} -p tcp --dport 7306 -j DROP"
    ));
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let port = free_port();
    let mut agent = Tracer::agent(&[
        "--probes",
        "events",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    let said = agent.stderr_so_far().to_string();
    assert!(said.contains("on  on demand"), "{said}");
    send_bytes(&a, &b_ip, 7305, 10_000);
    // SYNs at 0 and ~1 s (and ~3 s): the client gives up at 2.5 s.
    try_connect(&a, &b_ip, 7306, 2.5);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let followed = (0..20)
        .find_map(|_| {
            let n = sample(
                &http_get(&url).unwrap_or_default(),
                "netflow_followed_flows_total",
            );
            if n.is_none_or(|n| n == 0) {
                std::thread::sleep(Duration::from_millis(500));
            }
            n.filter(|n| *n > 0)
        })
        .expect("a followed flow in the metrics");
    assert!(followed >= 1, "{followed}");
    // The window (5 s) ends: nothing attached on the path any more, and
    // the nftables table that traced the followed flow is gone.
    std::thread::sleep(Duration::from_secs(4));
    let tables = sh(&format!("ip netns exec {node} nft list tables"));
    assert!(!tables.contains("netflow-"), "{tables}");
    let lines = agent.stop_lines();
    let pkts = packets(&lines);
    let to = |p: u16| -> Vec<&netflow_schema::Packet> {
        pkts.iter()
            .copied()
            .filter(|k| k.flow.as_ref().and_then(|f| f.dport) == Some(p))
            .collect()
    };
    assert!(to(7305).is_empty(), "{}", packet_summary(&lines));
    let dropped = to(7306);
    assert!(dropped.len() >= 2, "{}", packet_summary(&lines));
    assert!(dropped.iter().all(|p| p.verdict == Verdict::Dropped));
    // The first: the free alone. A retry: its whole way to the drop.
    assert_eq!(dropped[0].hops.len(), 1, "{}", packet_line(dropped[0]));
    let retries: Vec<_> = dropped.iter().filter(|p| p.hops.len() > 1).collect();
    assert!(
        !retries.is_empty(),
        "no retry traced hop by hop: {}",
        packet_summary(&lines)
    );
    for retry in &retries {
        let hook = retry.drop.as_ref().and_then(|d| d.hook.as_deref());
        assert_eq!(hook, Some("forward"), "{}", packet_line(retry));
    }
    // Its rule, by nftables tracing of the followed flows alone (owned
    // tables: 5.12+; before, no rule tracing at all, and the agent said so).
    let rule = retries
        .iter()
        .find_map(|p| p.drop.as_ref().and_then(|d| d.rule.as_ref()));
    if !kernel_has_owned_tables() {
        assert!(rule.is_none(), "{}", packet_summary(&lines));
        return;
    }
    let rule = rule.unwrap_or_else(|| panic!("no rule: {}", packet_summary(&lines)));
    let text = rule.rule.as_deref().unwrap_or_default();
    assert!(
        text.contains("--dport 7306") && text.contains("-j DROP"),
        "{rule:?}"
    );
    assert_eq!(rule.chain, "FORWARD", "{rule:?}");
    assert!(
        retries[0]
            .hops
            .iter()
            .any(|h| h.netns_name.as_deref() == Some(a.as_str())),
        "seen leaving pod a: {}",
        packet_line(retries[0])
    );
}

/// DNS in the events mode, read where sockets send and take it (no
/// program on any other packet's path): a lookup answered, one answered
/// from off the node (the answer never passed a socket of the node before
/// the client's), one answered NXDOMAIN and one nobody answers (a
/// `--dns-port` server that never replies) count by response code and as
/// unanswered for the client's pod, with their latency; the failures are
/// JSON lines with their query names, the healthy lookups are none.
#[test]
fn the_events_mode_reads_dns_at_the_sockets() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, _node, a, b, _va, _vb) = routed_lab("agn");
    let b_ip = format!("{}.0.2", lab.net());
    let _dns = dnsmasq(
        &b,
        &b_ip,
        &[("web.default.svc.cluster.local", "10.96.0.20")],
    );
    let _silent = silent_udp(&b, &b_ip, 5353);
    let _remote = dns_answering_from_off_node(&b, &b_ip, 5354);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    lab.exec(&b, &format!("ping -c1 -W2 {}.0.1", lab.net()));
    let port = free_port();
    let agent = Tracer::agent(&[
        "--probes",
        "events",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--dns-port",
        "5353",
        "--dns-port",
        "5354",
    ]);
    assert!(dig(&a, &format!("@{b_ip} web.default.svc.cluster.local A")).contains("10.96.0.20"));
    assert!(dig(&a, &format!("@{b_ip} missing.default.svc.cluster.local A")).contains("NXDOMAIN"));
    dig(&a, &format!("@{b_ip} -p 5353 silent.test A"));
    let remote = dig(&a, &format!("@{b_ip} -p 5354 remote.test A"));
    assert!(remote.contains("status: NOERROR"), "{remote}");
    // Each lookup is counted once its connection ends (idle 10 s).
    let series = |name: &str, extra: &str| format!(r#"{name}{{{extra}namespace="",pod="{a}"}}"#);
    wait_for_samples(
        port,
        &[
            (
                series("netflow_dns_responses_total", r#"rcode="NOERROR","#),
                2,
            ),
            (
                series("netflow_dns_responses_total", r#"rcode="NXDOMAIN","#),
                1,
            ),
            (series("netflow_dns_unanswered_total", ""), 1),
        ],
        40,
    );
    let text = http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap_or_default();
    assert!(
        sample(&text, "netflow_dns_latency_seconds_count").is_some_and(|n| n >= 3),
        "{text}"
    );
    // The server's pod asked nothing.
    let asked_by_b = text.lines().any(|l| {
        l.starts_with("netflow_dns_responses_total") && l.contains(&format!(r#"pod="{b}""#))
    });
    assert!(!asked_by_b, "{text}");
    let lines = agent.stop_lines();
    let of_a: Vec<&netflow_schema::Connection> = connections(&lines)
        .into_iter()
        .filter(|c| c.flow.src.to_string() == format!("{}.0.1", lab.net()))
        .collect();
    let by_name = |q: &str| {
        of_a.iter()
            .copied()
            .filter(|c| c.dns.as_ref().and_then(|d| d.qname.as_deref()) == Some(q))
            .collect::<Vec<_>>()
    };
    let missing = by_name("missing.default.svc.cluster.local");
    assert_eq!(missing.len(), 1, "{of_a:#?}");
    assert_eq!(missing[0].outcome, Outcome::DnsError, "{:#?}", missing[0]);
    let silent = by_name("silent.test");
    assert_eq!(silent.len(), 1, "{of_a:#?}");
    assert_eq!(silent[0].outcome, Outcome::NoReply, "{:#?}", silent[0]);
    // The healthy lookups: counted, no line.
    assert!(
        by_name("web.default.svc.cluster.local").is_empty(),
        "{of_a:#?}"
    );
    assert!(by_name("remote.test").is_empty(), "{of_a:#?}");
}

/// UDP in the events mode, read where sockets send and take it: the first
/// datagram each way of each conversation is reported, the rest only
/// looked up. Three calls a server answers count as `ok` connections of
/// the client's pod with no line; two a server takes and never answers
/// are `no_reply` lines (where the request arrived: the server's socket);
/// one to a port nobody listens on is `refused` (the node's ICMP port
/// unreachable). The server's pod counts none of them again.
#[test]
fn the_events_mode_reads_udp_conversations_at_the_sockets() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, _node, a, b, _va, _vb) = routed_lab("agu");
    let b_ip = format!("{}.0.2", lab.net());
    let _echo = udp_server(&b, &b_ip, 7401, true);
    let _silent = udp_server(&b, &b_ip, 7402, false);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let port = free_port();
    let agent = Tracer::agent(&[
        "--probes",
        "events",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(udp_client(&a, &b_ip, 7401, 3, 2.0), 3);
    assert_eq!(udp_client(&a, &b_ip, 7402, 2, 0.5), 0);
    assert_eq!(udp_client(&a, &b_ip, 7403, 1, 0.5), 0);
    // Each is counted once its connection ends (idle 10 s).
    let series = |outcome: &str, pod: &str| {
        format!(r#"netflow_connections_total{{outcome="{outcome}",namespace="",pod="{pod}"}}"#)
    };
    wait_for_samples(
        port,
        &[
            (series("ok", &a), 3),
            (series("no_reply", &a), 2),
            (series("refused", &a), 1),
        ],
        40,
    );
    let text = http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap_or_default();
    let of_b = text.lines().any(|l| {
        l.starts_with("netflow_connections_total") && l.contains(&format!(r#"pod="{b}""#))
    });
    assert!(!of_b, "{text}");
    let lines = agent.stop_lines();
    let to = |dport: u16| {
        connections(&lines)
            .into_iter()
            .filter(|c| c.flow.dport == Some(dport) && c.flow.dst.to_string() == b_ip)
            .collect::<Vec<_>>()
    };
    assert!(to(7401).is_empty(), "{lines:#?}");
    let silent = to(7402);
    assert_eq!(silent.len(), 2, "{lines:#?}");
    for c in silent {
        assert_eq!(c.outcome, Outcome::NoReply, "{c:#?}");
    }
    let closed = to(7403);
    assert_eq!(closed.len(), 1, "{lines:#?}");
    assert_eq!(closed[0].outcome, Outcome::Refused, "{:#?}", closed[0]);
}

/// ICMP echo in the events mode, read where sockets send and take it:
/// ping runs as root in a pod, so a raw socket takes a copy of each reply
/// and the original finds no ping socket (freed as a drop on 5.10, 6.1
/// and 6.12); that free is no drop. A ping the peer answers (IPv4, IPv6)
/// is an `ok` connection of the client's pod with no line and no drop;
/// one the peer ignores (`icmp_echo_ignore_all`) is a `no_reply` line.
#[test]
fn the_events_mode_reads_icmp_echo_at_the_sockets() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, node, a, b, va, vb) = routed_lab("agp");
    let (a_ip, b_ip) = (format!("{}.0.1", lab.net()), format!("{}.0.2", lab.net()));
    let [_a6, b6] = with_ipv6(&lab, &node, [(&a, &va), (&b, &vb)]);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    lab.exec(&a, &format!("ping -6 -c1 -W2 {b6}"));
    let port = free_port();
    let mut agent = Tracer::agent(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let said = agent.stderr_so_far().to_string();
    assert!(
        said.lines()
            .any(|l| l.contains("ICMP echo") && l.contains("on  ")),
        "{said}"
    );
    let answered = lab.exec(&a, &format!("ping -c3 -i0.3 -W2 {b_ip}"));
    assert!(answered.contains("3 received"), "{answered}");
    let answered = lab.exec(&a, &format!("ping -6 -c3 -i0.3 -W2 {b6}"));
    assert!(answered.contains("3 received"), "{answered}");
    sh(&format!(
        "ip netns exec {b} sysctl -qw net.ipv4.icmp_echo_ignore_all=1"
    ));
    let ignored = sh(&format!(
        "ip netns exec {a} ping -c2 -i0.3 -W1 {b_ip} || true"
    ));
    assert!(ignored.contains("0 received"), "{ignored}");
    let series = |outcome: &str| {
        format!(r#"netflow_connections_total{{outcome="{outcome}",namespace="",pod="{a}"}}"#)
    };
    // Each is counted once its connection ends (idle 10 s).
    let counted = samples_within(port, &[(series("ok"), 2), (series("no_reply"), 1)], 40);
    let said = agent.stderr_so_far().to_string();
    let lines = agent.stop_lines();
    assert!(counted.is_ok(), "{counted:?}\n{said}\n{lines:#?}");
    let pings: Vec<&netflow_schema::Connection> = connections(&lines)
        .into_iter()
        .filter(|c| [&b_ip, &b6].contains(&&c.flow.dst.to_string()))
        .collect();
    assert_eq!(pings.len(), 1, "{pings:#?}");
    assert_eq!(pings[0].outcome, Outcome::NoReply, "{:#?}", pings[0]);
    assert_eq!(pings[0].flow.src.to_string(), a_ip, "{:#?}", pings[0]);
    let dropped: Vec<_> = packets(&lines)
        .into_iter()
        .filter(|k| {
            k.verdict == Verdict::Dropped
                && k.flow.as_ref().is_some_and(|f| {
                    let ends = [f.src.to_string(), f.dst.to_string()];
                    ends.contains(&b_ip) || ends.contains(&b6)
                })
        })
        .collect();
    assert!(dropped.is_empty(), "{}", packet_summary(&lines));
}

/// DNS over IPv6 in the events mode (where fentry works, an IPv6 datagram
/// is sent by `ip6_send_skb`, a program of its own): an answered lookup
/// and an NXDOMAIN count for the client's pod; the failure is a line, the
/// healthy lookup none.
#[test]
fn the_events_mode_reads_dns_over_ipv6() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, node, a, b, va, vb) = routed_lab("ag6");
    let [a6, b6] = with_ipv6(&lab, &node, [(&a, &va), (&b, &vb)]);
    let _dns = dnsmasq(&b, &b6, &[("web6.default.svc.cluster.local", "10.96.0.21")]);
    lab.exec(&a, &format!("ping -6 -c1 -W2 {b6}"));
    let port = free_port();
    let agent = Tracer::agent(&[
        "--probes",
        "events",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(dig(&a, &format!("@{b6} web6.default.svc.cluster.local A")).contains("10.96.0.21"));
    assert!(dig(&a, &format!("@{b6} missing6.default.svc.cluster.local A")).contains("NXDOMAIN"));
    let series = |rcode: &str| {
        format!(r#"netflow_dns_responses_total{{rcode="{rcode}",namespace="",pod="{a}"}}"#)
    };
    wait_for_samples(port, &[(series("NOERROR"), 1), (series("NXDOMAIN"), 1)], 40);
    let lines = agent.stop_lines();
    let of_a: Vec<&netflow_schema::Connection> = connections(&lines)
        .into_iter()
        .filter(|c| c.flow.src.to_string() == a6)
        .collect();
    let named = |q: &str| {
        of_a.iter()
            .copied()
            .filter(|c| c.dns.as_ref().and_then(|d| d.qname.as_deref()) == Some(q))
            .collect::<Vec<_>>()
    };
    let missing = named("missing6.default.svc.cluster.local");
    assert_eq!(missing.len(), 1, "{of_a:#?}");
    assert_eq!(missing[0].outcome, Outcome::DnsError, "{:#?}", missing[0]);
    assert!(
        named("web6.default.svc.cluster.local").is_empty(),
        "{of_a:#?}"
    );
}

/// The sampling knob: with `--sample-flows 1` a healthy TCP connection is
/// followed in full for its window, as a failed one is (without the knob
/// none is: the policy-drop test's healthy twin), so its data is counted
/// hop by hop (the per-pod packets and transit times of followed flows).
#[test]
fn sampled_healthy_connections_are_followed_in_full() {
    let _one = ONE_AGENT.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, _node, a, b, _va, _vb) = routed_lab("ags");
    let b_ip = format!("{}.0.2", lab.net());
    let _sink = byte_sink(&b, &b_ip, 7308);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let port = free_port();
    let _agent = Tracer::agent(&[
        "--probes",
        "events",
        "--sample-flows",
        "1",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    // Its data a moment after the connect: the follow is in place by then.
    sh(&format!(
        "ip netns exec {a} python3 -c 'import socket, time
s = socket.create_connection((\"{b_ip}\", 7308))
time.sleep(1)
s.sendall(b\"x\" * 20000)
time.sleep(0.5)
s.close()'"
    ));
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http_get(&url).unwrap_or_default();
        let followed = sample(&text, "netflow_followed_flows_total").unwrap_or(0);
        // Pod a's data, hop by hop (no other packet of pod a is followed).
        let sent = sample(
            &text,
            &format!(r#"netflow_packets_total{{namespace="",pod="{a}",direction="egress"}}"#),
        )
        .unwrap_or(0);
        if followed >= 1 && sent >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
