//! `netflow agent --probes per-hop` (every packet followed across the
//! node, as `trace` does; the default events mode is tested in
//! `agent_events.rs`) on a node, scraped by a real Prometheus (Debian's
//! `prometheus`, started here on loopback): a policy drop and a healthy
//! Service call in a lab, then Prometheus's HTTP API is asked what it
//! scraped. The agent's stdout carries the drop and the bad connection as
//! JSON lines (nothing of the healthy call), and SIGTERM ends it quickly.
use std::time::{Duration, Instant};

use netflow_schema::{Connection, Outcome, Packet, Verdict};
use netflow_tests::*;
use serde_json::Value;

/// A directory of the test's own, removed however the test ends.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("netflow-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prometheus on loopback scraping `target` every second; gone on drop.
struct Prometheus {
    _bg: Background,
    _dir: TempDir,
    port: u16,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = TempDir::new("prom");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: netflow\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let bg = Background::spawn(&format!(
            "prometheus --config.file={} --storage.tsdb.path={} --web.listen-address=127.0.0.1:{port} --log.level=warn",
            config.display(),
            dir.path().join("data").display()
        ));
        let p = Prometheus {
            _bg: bg,
            _dir: dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&format!("http://127.0.0.1:{port}/-/ready")).is_none() {
            assert!(Instant::now() < deadline, "prometheus not ready in 30s");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// An instant query's samples: (labels, value).
    fn query(&self, q: &str) -> Vec<(Value, f64)> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            urlencode(q)
        );
        let Some(body) = http_get(&url) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let value = s["value"][1]
                            .as_str()
                            .and_then(|x| x.parse().ok())
                            .unwrap_or(f64::NAN);
                        (s["metric"].clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait (up to `secs`) until the query has a sample of at least `min`.
    fn wait_for(&self, q: &str, min: f64, secs: u64) -> Vec<(Value, f64)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.query(q);
            if r.iter().any(|(_, v)| *v >= min) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{q}: no sample >= {min} within {secs}s (last: {r:?})"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_drops_and_connection_outcomes() {
    let (lab, node, a, b, _va, _vb) = routed_lab("agt");
    let b_ip = format!("{}.0.2", lab.net());
    let vip = format!("10.96.{}.10", lab.net().trim_start_matches("10."));
    sh(&format!(
        "ip netns exec {node} iptables -A FORWARD -d {b_ip} -p tcp --dport 5432 -j DROP && \
         ip netns exec {node} iptables -t nat -A PREROUTING -d {vip} -p tcp --dport 80 -j DNAT --to-destination {b_ip}:8080"
    ));
    let _web = tcp_server(&b, &b_ip, 8080);
    let _db = tcp_server(&b, &b_ip, 5432);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));

    let port = free_port();
    let agent = Tracer::agent(&[
        "--probes",
        "per-hop",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--nf-netns",
        &node,
    ]);
    let health = http_get(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(health.as_deref().map(str::trim), Some("ok"));
    let prom = Prometheus::start(&format!("127.0.0.1:{port}"));

    tcp_client(&a, &vip, 80);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{b_ip}',5432),timeout=2.5)\""
    ));

    prom.wait_for(r#"up{job="netflow"}"#, 1.0, 30);
    // Pod a (a named network namespace stands in for a pod) sent both.
    let drops = prom.wait_for(
        &format!(r#"netflow_drops_total{{pod="{a}",reason="NETFILTER_DROP",hook="forward"}}"#),
        1.0,
        30,
    );
    // No Kubernetes namespace: Prometheus keeps no empty label.
    assert!(drops[0].0.get("namespace").is_none(), "{drops:?}");
    // The dropped SYN was sent again (after ~1 s) by pod a's socket.
    prom.wait_for(
        &format!(r#"netflow_tcp_retransmits_total{{pod="{a}"}}"#),
        1.0,
        30,
    );
    assert!(
        prom.query(&format!(r#"netflow_tcp_retransmits_total{{pod="{b}"}}"#))
            .is_empty(),
        "pod b sent nothing again"
    );
    prom.wait_for(
        &format!(r#"netflow_connections_total{{pod="{a}",outcome="ok"}}"#),
        1.0,
        30,
    );
    // The dropped connection ends once idle (10 s after its last SYN).
    prom.wait_for(
        &format!(r#"netflow_connections_total{{pod="{a}",outcome="request_lost"}}"#),
        1.0,
        40,
    );
    // Packets of both pods, by direction; the healthy call dropped nothing.
    prom.wait_for(
        &format!(r#"netflow_packets_total{{pod="{a}",direction="egress"}}"#),
        1.0,
        10,
    );
    prom.wait_for(
        &format!(r#"netflow_packets_total{{pod="{b}",direction="ingress"}}"#),
        1.0,
        10,
    );
    for (labels, _) in prom.query(&format!(r#"netflow_drops_total{{pod=~"{a}|{b}"}}"#)) {
        assert_eq!(labels["reason"], "NETFILTER_DROP", "{labels}");
    }
    prom.wait_for("netflow_node_transit_seconds_count", 1.0, 10);
    prom.wait_for("netflow_build_info", 1.0, 10);
    prom.wait_for("process_resident_memory_bytes", 1.0, 10);
    assert!(!prom.query("netflow_lost_events_total").is_empty());

    // A pod that starts while the agent runs is picked up: its packets
    // carry its name within a listing or two.
    let (mut lab, node) = (lab, node);
    let late = lab.netns("c");
    let vc = lab.name("vc");
    let c_ip = format!("{}.0.3", lab.net());
    sh(&format!(
        "ip link add eth0 netns {late} type veth peer name {vc} netns {node} && \
         ip -n {late} addr add {c_ip}/32 dev eth0 && ip -n {late} link set eth0 up && \
         ip -n {late} route add 169.254.1.1 dev eth0 scope link && \
         ip -n {late} route add default via 169.254.1.1 dev eth0 && \
         ip -n {node} link set {vc} up && \
         ip netns exec {node} sysctl -qw net.ipv4.conf.{vc}.proxy_arp=1 && \
         ip -n {node} route add {c_ip}/32 dev {vc}"
    ));
    sh_quiet(&format!("ip netns exec {late} ping -c12 -i0.5 -W1 {b_ip}"));
    prom.wait_for(
        &format!(r#"netflow_packets_total{{pod="{late}",direction="egress"}}"#),
        1.0,
        20,
    );
    // The late pod's own firewall: netfilter links follow pods that start
    // later (kernels with BPF netfilter links; fentry or kprobes on
    // nf_hook_slow see every namespace anyway), so its drop names the hook.
    sh(&format!(
        "ip netns exec {late} nft 'add table ip podfw; add chain ip podfw in {{ type filter hook input priority 0; }}; add rule ip podfw in tcp dport 7777 drop'"
    ));
    let input_drops =
        format!(r#"netflow_drops_total{{pod="{a}",reason="NETFILTER_DROP",hook="input"}}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.query(&input_drops).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no drop at INPUT in the late pod: {:?}",
            prom.query("netflow_drops_total")
        );
        sh_quiet(&format!(
            "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{c_ip}',7777),timeout=0.5)\""
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    // Where the kernel has netfilter links, the agent adds them only in
    // pods with rules of their own: the late pod once its firewall came;
    // pods a and b, which have none, run no hook at all and get none.
    let mut agent = agent;
    let said = agent.stderr_so_far().to_string();
    if said.contains("netfilter (5 hooks") {
        assert!(
            said.contains(&format!("netfilter links in netns {late}")),
            "{said}"
        );
        for pod in [&a, &b] {
            assert!(
                !said.contains(&format!("netfilter links in netns {pod}\n")),
                "{said}"
            );
        }
    }
    // A second netflow on the same node traces as usual beside the agent.
    let t = Tracer::start(&["--netns", &a, "--proto", "tcp"]);
    tcp_client(&a, &vip, 80);
    let traced = t.stop_lines();
    let syn = packets(&traced)
        .into_iter()
        .find(|p| p.flow.as_ref().is_some_and(|f| f.dst.to_string() == vip))
        .unwrap_or_else(|| panic!("the trace beside the agent: {}", packet_summary(&traced)));
    assert_eq!(syn.verdict, Verdict::Delivered, "{syn:#?}");
    // A pod that went away: its series are retired (Prometheus sees them
    // go stale at the next scrape).
    sh(&format!("ip netns del {late}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !prom
        .query(&format!(r#"netflow_packets_total{{pod="{late}"}}"#))
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the series of pod {late} outlived it"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let (lines, took) = agent.terminate_lines();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM: exited after {took:?}"
    );
    // stdout: the drop and the connection that did not end well, not the
    // healthy call.
    let dport = |p: &Packet| p.flow.as_ref().and_then(|f| f.dport);
    let dropped: Vec<&Packet> = packets(&lines)
        .into_iter()
        .filter(|p| dport(p) == Some(5432))
        .collect();
    assert!(!dropped.is_empty(), "{lines:#?}");
    assert!(
        dropped.iter().all(|p| p.verdict == Verdict::Dropped),
        "{dropped:#?}"
    );
    assert!(
        packets(&lines).iter().any(|p| dport(p) == Some(7777)
            && p.drop.as_ref().and_then(|d| d.hook.as_deref()) == Some("input")),
        "the late pod's drop at INPUT on stdout: {lines:#?}"
    );
    assert!(
        connections(&lines)
            .iter()
            .any(|c| c.flow.dport == Some(5432) && c.outcome == Outcome::RequestLost),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .filter_map(line_flow)
            .any(|f| f.dst.to_string() == vip || f.sport == Some(8080) || f.dport == Some(8080)),
        "the healthy call is not on stdout: {lines:#?}"
    );
}

/// The agent counts a pod's TCP data where its sockets are, and follows
/// none of it across the node: a bulk transfer through a Service VIP (DNAT
/// on the node) reads `ok` with exactly the packets nftables counted at
/// each end, all but the handshake and the FINs only counted.
#[test]
fn the_agent_counts_tcp_data_at_its_sockets() {
    let (lab, node, a, b, _va, _vb) = routed_lab("agc");
    let b_ip = format!("{}.0.2", lab.net());
    let vip = format!("10.96.{}.11", lab.net().trim_start_matches("10."));
    sh(&format!(
        "ip netns exec {node} iptables -t nat -A PREROUTING -d {vip} -p tcp --dport 80 -j DNAT --to-destination {b_ip}:7300"
    ));
    let _sink = byte_sink(&b, &b_ip, 7300);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    output_counter(&a, &format!("ip daddr {vip} tcp dport 80"));
    output_counter(&b, "tcp sport 7300");
    let port = free_port();
    let agent = Tracer::agent(&[
        "--probes",
        "per-hop",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--nf-netns",
        &node,
        "--log-connections",
        "all",
    ]);
    let mut agent = agent;
    let said = agent.stderr_so_far().to_string();
    // It says which probes are on: both socket programs count.
    for probe in ["cgroup_skb/ingress", "cgroup_skb/egress"] {
        assert!(said.contains(&format!("on  {probe}")), "{said}");
    }
    send_bytes(&a, &vip, 80, 20_000_000);
    std::thread::sleep(Duration::from_millis(500));
    let lines = agent.stop_lines();
    let c: Vec<&Connection> = connections(&lines)
        .into_iter()
        .filter(|c| c.flow.dst.to_string() == vip && c.flow.dport == Some(80))
        .collect();
    assert_eq!(c.len(), 1, "{c:#?}");
    let c = c[0];
    assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
    let (fwd, rev) = (&c.fwd, &c.rev);
    let (sent, answered) = (counter_packets(&a), counter_packets(&b));
    assert!(sent > 100, "{sent} packets for 20 MB");
    assert_eq!(fwd.packets, sent, "{c:#?}");
    assert_eq!(rev.packets, answered, "{c:#?}");
    // The run's count of only-counted packets has them (the node's other
    // traffic may add to it).
    let counted = fwd.sampled + rev.sampled;
    assert!(
        stats(&lines).sampled >= counted,
        "{counted} counted: {:#?}",
        stats(&lines)
    );
    // Nothing of the healthy transfer was reported packet by packet but
    // the drops the kernel made (a segment TCP had already, say).
    for p in packets(&lines) {
        assert_eq!(p.verdict, Verdict::Dropped, "{p:#?}");
    }
    // Followed hop by hop: the SYN, the SYN-ACK and the FINs at most, and
    // the drops (each one's report is its only event).
    for d in [fwd, rev] {
        let followed = d.packets - d.sampled - d.dropped;
        assert!((1..=3).contains(&followed), "{followed} followed: {c:#?}");
    }
}

/// DNS in the agent's metrics, scraped by a real Prometheus: responses by
/// code and by the pod that asked, their latency, and a query nobody
/// answered (a `--dns-port` server that never replies).
#[test]
fn dns_responses_and_unanswered_queries_are_scraped() {
    let (lab, _node, a, b, _va, _vb) = routed_lab("agd");
    let b_ip = format!("{}.0.2", lab.net());
    let _dns = dnsmasq(
        &b,
        &b_ip,
        &[("web.default.svc.cluster.local", "10.96.0.20")],
    );
    let _silent = silent_udp(&b, &b_ip, 5353);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let port = free_port();
    let agent = Tracer::agent(&[
        "--probes",
        "per-hop",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--dns-port",
        "5353",
    ]);
    let prom = Prometheus::start(&format!("127.0.0.1:{port}"));
    assert!(dig(&a, &format!("@{b_ip} web.default.svc.cluster.local A")).contains("10.96.0.20"));
    assert!(dig(&a, &format!("@{b_ip} missing.default.svc.cluster.local A")).contains("NXDOMAIN"));
    dig(&a, &format!("@{b_ip} -p 5353 silent.test A"));
    // Each lookup is counted once its connection ends (idle 10 s).
    for rcode in ["NOERROR", "NXDOMAIN"] {
        prom.wait_for(
            &format!(r#"netflow_dns_responses_total{{pod="{a}",rcode="{rcode}"}}"#),
            1.0,
            40,
        );
    }
    prom.wait_for(
        &format!(r#"netflow_dns_unanswered_total{{pod="{a}"}}"#),
        1.0,
        40,
    );
    prom.wait_for("netflow_dns_latency_seconds_count", 2.0, 20);
    // Bounded labels: never a query name.
    for (labels, _) in prom.query("netflow_dns_responses_total") {
        assert!(!labels.to_string().contains("cluster.local"), "{labels}");
    }
    // The server's pod asked nothing.
    assert!(prom
        .query(&format!(r#"netflow_dns_responses_total{{pod="{b}"}}"#))
        .is_empty());
    // The failed lookup is in the log as its own outcome.
    let lines = agent.stop_lines();
    let missing: Vec<&Connection> = connections(&lines)
        .into_iter()
        .filter(|c| {
            c.dns.as_ref().and_then(|d| d.qname.as_deref())
                == Some("missing.default.svc.cluster.local")
        })
        .collect();
    assert_eq!(missing.len(), 1, "{lines:#?}");
    assert_eq!(missing[0].outcome, Outcome::DnsError, "{:#?}", missing[0]);
}

/// A device's counters as `ip -s link` reads them: (rx packets, rx bytes,
/// tx packets, tx bytes).
fn device_counters(ns: &str, dev: &str) -> (u64, u64, u64, u64) {
    let j: Value = serde_json::from_str(&sh(&format!("ip -n {ns} -s -j link show {dev}"))).unwrap();
    let s = &j[0]["stats64"];
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{j}"));
    (
        n(&s["rx"]["packets"]),
        n(&s["rx"]["bytes"]),
        n(&s["tx"]["packets"]),
        n(&s["tx"]["bytes"]),
    )
}

/// Per-pod packets and bytes from the counters of the pod's own device,
/// read by the agent with no program on the packets' path: after a ping
/// and a TCP transfer, each direction equals what `ip -s link` says of the
/// pod's eth0 (ingress what it received, egress what it sent); a pod that
/// sent nothing since has a series that does not move.
#[test]
fn per_pod_device_counts_equal_the_devices_counters() {
    let (lab, _node, a, b, _va, _vb) = routed_lab("agv");
    let b_ip = format!("{}.0.2", lab.net());
    let _sink = byte_sink(&b, &b_ip, 7301);
    let port = free_port();
    let agent = Tracer::agent(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    lab.exec(&a, &format!("ping -c5 -i0.2 -W2 {b_ip}"));
    send_bytes(&a, &b_ip, 7301, 2_000_000);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http_get(&url).unwrap_or_default();
        let mut all_equal = true;
        let mut said = Vec::new();
        for pod in [&a, &b] {
            let (rxp, rxb, txp, txb) = device_counters(pod, "eth0");
            let series = |name: &str, dir: &str| {
                sample(
                    &text,
                    &format!(
                        r#"netflow_pod_device_{name}_total{{namespace="",pod="{pod}",direction="{dir}"}}"#
                    ),
                )
            };
            let got = (
                series("packets", "ingress"),
                series("bytes", "ingress"),
                series("packets", "egress"),
                series("bytes", "egress"),
            );
            let want = (Some(rxp), Some(rxb), Some(txp), Some(txb));
            all_equal &= got == want;
            said.push(format!("{pod}: device {want:?}, agent {got:?}"));
            if pod == &a {
                assert!(
                    txp >= 5 && txb > 2_000_000,
                    "a sent the pings and the bytes: {txp} {txb}"
                );
            }
        }
        if all_equal {
            break;
        }
        assert!(Instant::now() < deadline, "{}\n{text}", said.join("\n"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = agent.stop_lines();
}
