//! Real-kernel test: a full conntrack table named from conntrack's own
//! statistics. Alone in its binary: `nf_conntrack_max` is one value for
//! every namespace of the node, lowered here for a moment and restored.
use netflow_schema::{Outcome, Proto, Verdict};
use netflow_tests::*;

/// A node whose conntrack holds as many established connections as
/// `nf_conntrack_max` allows: a new call's SYN dies at PREROUTING in the
/// node, named `conntrack_full` with `nf_conntrack_max` and its value.
/// Before the table fills, the same call through the same node is healthy
/// and names nothing.
#[test]
fn full_conntrack_table_names_nf_conntrack_max() {
    let (mut lab, node, a, b, _va, _vb) = routed_lab("ctf");
    let net = lab.net();
    let (a_ip, b_ip) = (format!("{net}.0.1"), format!("{net}.0.2"));
    // Conntrack on in the node (a rule that needs it).
    sh(&format!(
        "ip netns exec {node} iptables -A FORWARD -m conntrack --ctstate INVALID -j DROP"
    ));
    let _server = tcp_server(&b, &b_ip, 8080);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));
    let args = [
        "--netns",
        a.as_str(),
        "--proto",
        "tcp",
        "--nf-netns",
        node.as_str(),
    ];

    let t = Tracer::start(&args);
    tcp_client(&a, &b_ip, 8080);
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    assert!(!pkts.is_empty(), "{}", packet_summary(&lines));
    for p in &pkts {
        assert!(p.drop.is_none(), "{p:#?}");
    }
    for c in connections(&lines) {
        assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
        assert!(c.cause.is_none(), "{c:#?}");
    }

    // Fill it: connections held open (assured: never evicted to make
    // room), then the max lowered to what the node holds. The host's own
    // namespace keeps room (its count is below the max).
    let max_file = "/proc/sys/net/netfilter/nf_conntrack_max";
    let was = std::fs::read_to_string(max_file)
        .unwrap()
        .trim()
        .to_string();
    lab.on_drop(format!("sysctl -qw net.netfilter.nf_conntrack_max={was}"));
    let host: u64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .map(|c| c.trim().parse().unwrap_or(0))
        .unwrap_or(0);
    let hold = 24 + host;
    // A listener that never accepts: the kernel completes the handshakes.
    let _listener = Background::spawn(&format!(
        "ip netns exec {b} python3 -c \"import socket,time\ns=socket.socket()\ns.bind(('{b_ip}',7000))\ns.listen(1024)\ntime.sleep(300)\""
    ));
    let ready = format!("/tmp/netflow-ctf-{net}");
    let _ = std::fs::remove_file(&ready);
    let holder = Background::spawn(&format!(
        "ip netns exec {a} python3 -c \"import socket,time\nfor _ in range(50):\n  try: socket.create_connection(('{b_ip}',7000),timeout=1).close(); break\n  except OSError: time.sleep(0.1)\nss=[socket.create_connection(('{b_ip}',7000),timeout=3) for _ in range({hold})]\nopen('{ready}','w').write('ok')\ntime.sleep(300)\""
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::path::Path::new(&ready).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the held connections never opened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&ready);
    let count: u64 = sh(&format!(
        "ip netns exec {node} cat /proc/sys/net/netfilter/nf_conntrack_count"
    ))
    .trim()
    .parse()
    .unwrap();
    assert!(count >= hold, "the node holds {count} entries");
    sh(&format!(
        "sysctl -qw net.netfilter.nf_conntrack_max={count}"
    ));

    let t = Tracer::start(&args);
    sh_quiet(&format!(
        "ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{b_ip}',8080),timeout=1)\""
    ));
    let lines = t.stop_lines();
    sh(&format!("sysctl -qw net.netfilter.nf_conntrack_max={was}"));
    drop(holder);
    let pkts = packets(&lines);
    let syn = flows(&pkts, Proto::Tcp, &a_ip, &b_ip)
        .into_iter()
        .find(|p| p.verdict == Verdict::Dropped)
        .unwrap_or_else(|| panic!("the dropped SYN: {}", packet_summary(&lines)));
    let d = the_drop(syn);
    assert_eq!(d.hook.as_deref(), Some("prerouting"), "{syn:#?}");
    assert!(d.rule.is_none(), "no rule dropped it: {syn:#?}");
    let c = d
        .cause
        .as_ref()
        .unwrap_or_else(|| panic!("no cause: {syn:#?}"));
    assert_eq!(c.kind, "conntrack_full", "{syn:#?}");
    assert_eq!(
        c.setting.as_deref(),
        Some("net.netfilter.nf_conntrack_max"),
        "{syn:#?}"
    );
    assert_eq!(
        c.value.as_deref(),
        Some(count.to_string().as_str()),
        "{syn:#?}"
    );
    assert_eq!(c.netns_name.as_deref(), Some(node.as_str()), "{syn:#?}");
    assert!(
        d.hint
            .contains(&format!("net.netfilter.nf_conntrack_max = {count}")),
        "{}",
        d.hint
    );
    let conn = connections(&lines)
        .into_iter()
        .find(|c| c.flow.dport == Some(8080) && c.outcome != Outcome::Ok)
        .unwrap_or_else(|| panic!("{:#?}", connections(&lines)));
    assert_eq!(
        conn.cause.as_ref().map(|c| c.kind.as_str()),
        Some("conntrack_full"),
        "{conn:#?}"
    );
}
