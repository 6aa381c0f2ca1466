//! Guardrails (the default): a bulk transfer is traced in part and counted
//! in full, every drop and every SYN of a flood is reported, and
//! `--every-packet` lifts them. Counts are checked against nftables
//! counters on the same packets, also when two CPUs count one connection at
//! once (the kernel's counters in CONNS are shared by every CPU; each add is
//! atomic).
use netflow_schema::{Connection, Line, Outcome, Packet, Verdict};
use netflow_tests::*;

fn the_connection(lines: &[Line], dport: u16) -> &Connection {
    let c: Vec<_> = connections(lines)
        .into_iter()
        .filter(|c| c.flow.dport == Some(dport))
        .collect();
    assert_eq!(c.len(), 1, "{c:#?}");
    c[0]
}

fn dport(p: &Packet) -> Option<u16> {
    p.flow.as_ref().and_then(|f| f.dport)
}

fn sport(p: &Packet) -> Option<u16> {
    p.flow.as_ref().and_then(|f| f.sport)
}

/// A bulk TCP transfer: a few packets traced, all counted exactly (the
/// counts equal nftables' counters of the same packets), outcome ok.
#[test]
fn bulk_transfer_is_sampled_and_counted_exactly() {
    let mut lab = Lab::new("gbulk");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    let _server = byte_sink(&b, &format!("{net}.0.2"), 7300);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    output_counter(&a, "tcp dport 7300");
    output_counter(&b, "tcp sport 7300");

    let t = Tracer::start(&["--netns", &a]);
    send_bytes(&a, &format!("{net}.0.2"), 7300, 20_000_000);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = t.stop_lines();
    let c = the_connection(&lines, 7300);
    assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
    let (fwd, rev) = (&c.fwd, &c.rev);
    assert_eq!(fwd.packets, counter_packets(&a), "{c:#?}");
    assert_eq!(rev.packets, counter_packets(&b), "{c:#?}");
    let sampled = fwd.sampled + rev.sampled;
    let traced = packets(&lines)
        .iter()
        .filter(|p| dport(p) == Some(7300) || sport(p) == Some(7300))
        .count() as u64;
    assert!(
        sampled > 0 && traced < sampled,
        "traced {traced}, counted {sampled}: {c:#?}"
    );
    assert_eq!(traced + sampled, fwd.packets + rev.packets, "{c:#?}");
    // SYN and FINs are always traced.
    let flags: Vec<&str> = packets(&lines)
        .into_iter()
        .filter_map(first_flags)
        .collect();
    assert!(flags.contains(&"S") && flags.contains(&"S."), "{flags:?}");
    assert!(
        flags.iter().filter(|f| f.contains('F')).count() >= 2,
        "{flags:?}"
    );
    assert_eq!(stats(&lines).sampled, sampled);

    // --every-packet: nothing only counted.
    let t = Tracer::start(&["--netns", &a, "--every-packet"]);
    send_bytes(&a, &format!("{net}.0.2"), 7300, 2_000_000);
    let lines = t.stop_lines();
    let c = the_connection(&lines, 7300);
    assert_eq!(c.fwd.sampled, 0, "{c:#?}");
    assert_eq!(stats(&lines).sampled, 0);
}

/// A flood: every dropped datagram of a busy flow is reported, and every
/// SYN of a burst of connections, while the bulk is only counted.
#[test]
fn every_drop_and_every_syn_of_a_flood_is_reported() {
    let mut lab = Lab::new("gflood");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    let _server = tcp_server(&b, &format!("{net}.0.2"), 7400);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    sh(&format!(
        "ip netns exec {b} nft 'add table ip f; add chain ip f in {{ type filter hook input priority 0; }}; add rule ip f in udp dport 7401 counter drop'"
    ));
    let t = Tracer::start(&["--netns", &a]);
    // 3000 datagrams of one flow, all dropped by the receiver's firewall.
    lab.exec(
        &a,
        format!("python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(3000): s.sendto(b'x'*100,('{net}.0.2',7401))\"").as_str(),
    );
    // 300 connections as fast as they come.
    lab.exec(
        &a,
        format!("python3 -c \"import socket\nfor i in range(300):\n s=socket.create_connection(('{net}.0.2',7400),timeout=3); s.sendall(b'hi'); s.recv(10); s.close()\"").as_str(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = t.stop_lines();
    let out = sh(&format!("ip netns exec {b} nft list table ip f"));
    let dropped_by_rule: u64 = out
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(dropped_by_rule, 3000, "{out}");
    let pkts = packets(&lines);
    let drops = pkts
        .iter()
        .filter(|p| dport(p) == Some(7401) && p.verdict == Verdict::Dropped)
        .count();
    assert_eq!(drops, 3000, "every drop reported");
    let c = the_connection(&lines, 7401);
    assert_eq!(c.outcome, Outcome::RequestLost, "{c:#?}");
    assert_eq!(c.fwd.dropped, 3000, "{c:#?}");
    let syns = pkts
        .iter()
        .filter(|p| dport(p) == Some(7400) && first_flags(p) == Some("S"))
        .count();
    assert_eq!(syns, 300, "every SYN reported");
    let conns: Vec<_> = connections(&lines)
        .into_iter()
        .filter(|c| c.flow.dport == Some(7400))
        .collect();
    assert_eq!(conns.len(), 300);
    assert!(conns.iter().all(|c| c.outcome == Outcome::Ok), "{conns:#?}");
    assert_eq!(stats(&lines).lost, 0);
}

/// Datagrams from `n` new sockets (a new flow each), as fast as Python
/// sends but at most `per_sec` a second: a fast machine does not finish the
/// flood before a test has watched it.
fn flow_flood(ns: &str, dst: &str, port: u16, n: u32, per_sec: u32) -> Background {
    Background::spawn(&format!(
        "ip netns exec {ns} python3 -c \"import socket,time\nt=time.time()\nfor i in range({n}):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(b'x',('{dst}',{port})); s.close()\n if i%1000==999: time.sleep(max(0,t+i/{per_sec}-time.time()))\""
    ))
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// A flood of 150k new flows through the live dashboard in tmux (with
/// `extra` arguments): the screen keeps updating, `q` quits at once.
/// Returns its peak RSS (MB) and whether the status bar said it was
/// evicting.
fn dashboard_flood(tag: &str, extra: &str) -> (u64, bool) {
    let mut lab = Lab::new(tag);
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    let _sink = udp_server(&b, &format!("{net}.0.2"), 7500, false);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    let name = format!("nf{tag}{}", std::process::id());
    let t = Tmux::start(
        &name,
        &format!(
            "{} dashboard --netns {a} --proto udp {extra}; echo EXITED=$?; sleep 30",
            netflow_bin().display()
        ),
    );
    // Attached once the status bar lists the probes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while t.screen().contains("probes 0/0") || !t.screen().contains("sorted by") {
        assert!(std::time::Instant::now() < deadline, "{}", t.screen());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pane: u32 = sh(&format!("tmux list-panes -t {name} -F '#{{pane_pid}}'"))
        .trim()
        .parse()
        .expect("tmux pane pid");
    let pid: u32 = sh(&format!("pgrep -P {pane} -x netflow"))
        .trim()
        .parse()
        .expect("the dashboard's pid");
    // 150k flows over at least 10 s (the 100k in 10 s, and more).
    let _flood = flow_flood(&a, &format!("{net}.0.2"), 7500, 150_000, 15_000);
    // The packet count on the status bar keeps moving while the flood runs.
    let shown_packets = |s: &str| -> u64 {
        s.split(" packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // The first packets may take seconds to show when the other tests of
    // this binary hold both cores (the flood's python starting, the
    // dashboard's first frame): wait for them, then watch the count move.
    let started = std::time::Instant::now();
    while shown_packets(&t.screen()) == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no packet of the flood shown in 20 s\n{}",
            t.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    println!("first packets shown after {:?}", started.elapsed());
    let mut seen = Vec::new();
    let mut peak = 0;
    let mut evicting = false;
    for _ in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(700));
        let screen = t.screen();
        seen.push(shown_packets(&screen));
        evicting |= screen.contains("evicting: ");
        peak = peak.max(rss_mb(pid));
    }
    assert!(
        seen.windows(2).filter(|w| w[1] > w[0]).count() >= 3,
        "the screen kept updating: {seen:?}\n{}",
        t.screen()
    );
    println!("dashboard {extra:?}: peak RSS {peak} MB, evicting said: {evicting}");
    let quit = std::time::Instant::now();
    t.keys("q");
    let s = t.wait_for("EXITED=", 10);
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(quit.elapsed().as_secs() < 5);
    (peak, evicting)
}

/// The default budget: bounded, not small (10k flows with their
/// histograms, an inbox of up to 10k packets and the correlator's open
/// packets and connections; the same binary peaks between ~255 and ~285
/// MB here from run to run).
#[test]
fn dashboard_under_a_flood_of_new_flows() {
    let (peak, _) = dashboard_flood("gdash", "");
    assert!(peak < 400, "dashboard RSS {peak} MB");
}

/// A small budget (`--memory 32M`): the flood's connections outgrow what
/// it allows, the status bar says it is evicting, and the dashboard stays
/// under the 300 MB.
#[test]
fn dashboard_within_a_small_budget_says_it_evicts() {
    let (peak, evicting) = dashboard_flood("gdsm", "--memory 32M");
    assert!(evicting, "the status bar said nothing of evicting");
    assert!(peak < 300, "dashboard RSS {peak} MB within --memory 32M");
}

/// Ctrl-C while a flood is being traced: the tracer ends within seconds
/// (what it has no time left to print is counted in its summary).
#[test]
fn ctrl_c_under_a_flood_stops_quickly() {
    use std::io::BufRead;
    let mut lab = Lab::new("gstop");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    let _sink = udp_server(&b, &format!("{net}.0.2"), 7600, false);
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    // Its output goes nowhere: this is about stopping, not printing.
    let mut child = std::process::Command::new(netflow_bin())
        .args(["trace", "--json", "--every-packet", "--netns", &a])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Ctrl-C to stop") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "netflow exited early"
        );
    }
    let _flood = flow_flood(&a, &format!("{net}.0.2"), 7600, 1_000_000, 1_000_000);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let start = std::time::Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed().as_secs() > 20 {
            let _ = child.kill();
            panic!("netflow did not stop within 20s of SIGINT under a flood");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let took = start.elapsed();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(status.success(), "{rest}");
    assert!(took.as_secs_f64() < 4.0, "stopped after {took:?}: {rest}");
    assert!(rest.contains(" events, "), "the summary is printed: {rest}");
}

/// Requests per CPU in the two-CPU test.
const N: u32 = 20_000;

/// Python that runs `body` in two processes sharing one UDP socket `s`
/// (made by `setup`), pinned to CPUs 0 and 1 (processes, not threads:
/// they send at the same time, no interpreter lock between them), and
/// waits for both.
fn on_two_cpus(setup: &str, body: &str) -> String {
    format!(
        "import os, socket\n{setup}\ndef run(cpu):\n    os.sched_setaffinity(0, {{cpu}})\n{body}\nif os.fork() == 0:\n    run(1)\n    os._exit(0)\nrun(0)\nos.wait()\n"
    )
}

#[test]
fn one_connection_counted_on_two_cpus_at_once_is_exact() {
    require_root();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs to count on at once ({cpus} here)"
    );
    let mut lab = Lab::new("cpus");
    let net = lab.net();
    let (a, b) = lab.pair("a", "b");
    let (ip_a, ip_b) = (format!("{net}.0.1"), format!("{net}.0.2"));
    lab.exec(&a, &format!("ping -c1 -W2 {ip_b}"));
    output_counter(&a, "udp dport 7400");
    output_counter(&b, "udp sport 7400");
    // An echo server answering from both CPUs at once, on one socket.
    let server = on_two_cpus(
        &format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)\ns.setsockopt(socket.IPPROTO_IP, 10, 0)\ns.bind(('{ip_b}', 7400))"
        ),
        "    while True:\n        d, peer = s.recvfrom(100)\n        s.sendto(d, peer)",
    );
    let script = std::env::temp_dir().join(format!("netflow-cpus-{}.py", std::process::id()));
    std::fs::write(&script, server).unwrap();
    let _server = Background::spawn(&format!("ip netns exec {b} python3 {}", script.display()));
    std::thread::sleep(std::time::Duration::from_millis(500));

    let t = Tracer::start(&["--netns", &a]);
    // One connection (one socket, one source port), sent from both CPUs.
    // Without DF (IP_MTU_DISCOVER = IP_PMTUDISC_DONT) each packet's IP ID
    // comes from the kernel's atomic generator: two processes on one
    // socket never send two packets alike (with DF, the socket's own
    // counter, which two CPUs can bump to the same value: two identical
    // packets that no one can tell apart).
    // A third process takes the answers as they come, until they stop:
    // none is dropped (a drop is reported, not only counted, and this
    // test is about counting).
    let client = on_two_cpus(
        &format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)\ns.setsockopt(socket.IPPROTO_IP, 10, 0)\ns.bind(('{ip_a}', 47400))\ns.connect(('{ip_b}', 7400))\nreader = os.fork()\nif reader == 0:\n    s.settimeout(2)\n    try:\n        while True: s.recv(100)\n    except socket.timeout:\n        os._exit(0)"
        ),
        &format!("    for i in range({N}):\n        s.send(b'x' * 32)"),
    ) + "os.waitpid(reader, 0)\n";
    let client_script = script.with_extension("client.py");
    std::fs::write(&client_script, client).unwrap();
    lab.exec(&a, &format!("python3 {}", client_script.display()));
    // The server works through its queue: until it has answered the last
    // request, then it stops, and so does the trace.
    let mut answered = counter_packets(&b);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = counter_packets(&b);
        if now == answered {
            break;
        }
        answered = now;
    }
    drop(_server);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let lines = t.stop_lines();
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&client_script);

    let stats = stats(&lines);
    assert_eq!(stats.lost, 0, "{stats:#?}");
    let c = the_connection(&lines, 7400);
    let (sent, answered) = (counter_packets(&a), counter_packets(&b));
    assert_eq!(sent, 2 * N as u64, "the client sent them all");
    assert!(answered > 0, "the server answered");
    // Most were only counted (the guardrails), from both directions and
    // both CPUs at once: every one of them is in the counts.
    assert!(c.fwd.sampled + c.rev.sampled > sent / 2, "{c:#?}");
    assert_eq!(c.rev.dropped, 0, "no answer was dropped: {c:#?}");
    assert_eq!(c.fwd.packets, sent, "requests: {c:#?}");
    assert_eq!(c.rev.packets, answered, "answers: {c:#?} {stats:#?}");
}
