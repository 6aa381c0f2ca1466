//! Record, replay and export: a live run recorded with `--write` replays to
//! the same JSON without root; pcapng opens in tshark with one packet per
//! hop; bad files are refused with a clear error.
use std::process::Command;

use netflow_schema::{Line, Proto, Record};
use netflow_tests::*;

/// A replay's lines as the live run wrote them: its start record also
/// names the recording (and says nothing else the live one did not).
fn as_live(replayed: &[Line], recording: &str) -> Vec<Line> {
    let mut lines = replayed.to_vec();
    match &mut lines[0].record {
        Record::Start(start) => {
            assert_eq!(start.recording.as_deref(), Some(recording), "{start:#?}");
            start.recording = None;
        }
        other => panic!("the first line is not the start: {other:#?}"),
    }
    lines
}

#[test]
fn recording_replays_to_the_live_json_and_exports_pcapng() {
    let mut lab = Lab::new("rc");
    let net = lab.net();
    let (a, _b) = lab.pair("a", "b");
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.2"));
    let dir = std::env::temp_dir().join(format!("netflow-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Readable by the unprivileged replay below.
    sh(&format!("chmod 755 {}", dir.display()));
    let rec = dir.join("run.nflw");
    let rec_s = rec.to_str().unwrap();

    let t = Tracer::start(&["--pod", &a, "--write", rec_s]);
    lab.exec(&a, &format!("ping -c3 -i0.2 -W2 {net}.0.2"));
    sh_quiet(&format!("ip netns exec {a} python3 -c \"import socket; socket.create_connection(('{net}.0.2', 9), timeout=1)\""));
    let live = t.stop_lines();
    sh(&format!("chmod 644 {rec_s}"));
    let live_pkts = packets(&live);
    assert!(live_pkts.len() >= 6, "{}", packet_summary(&live));

    // Replay as nobody: same packets, same order, same stats.
    let out = unprivileged(&["replay", rec_s, "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let replayed = parse_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        as_live(&replayed, rec_s),
        live,
        "replay reproduces the live run exactly"
    );
    assert!(err.contains("replayed"), "{err}");

    // The build without the kernel side reads the live build's recording
    // the same way, as nobody.
    let offline = offline_bin();
    let out = unprivileged_bin(&offline, &["replay", rec_s, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline_replayed = parse_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        as_live(&offline_replayed, rec_s),
        live,
        "the offline build replays it exactly"
    );
    let live_pcap = unprivileged(&["export", rec_s, "--pcapng", "-"]).stdout;
    let offline_pcap = unprivileged_bin(&offline, &["export", rec_s, "--pcapng", "-"]);
    assert!(offline_pcap.status.success());
    assert!(!live_pcap.is_empty());
    assert_eq!(
        offline_pcap.stdout, live_pcap,
        "same pcapng from both builds"
    );
    let out = unprivileged_bin(&offline, &["trace"]);
    assert!(
        !out.status.success(),
        "the offline build has no trace command"
    );

    // Filters apply to replay as to trace.
    let out = unprivileged(&["replay", rec_s, "--json", "--proto", "tcp"]);
    let tcp = parse_lines(&String::from_utf8_lossy(&out.stdout));
    let tcp_pkts = packets(&tcp);
    assert!(
        !tcp_pkts.is_empty()
            && tcp_pkts
                .iter()
                .all(|p| p.flow.as_ref().is_some_and(|f| f.proto == Proto::Tcp)),
        "{}",
        packet_summary(&tcp)
    );
    assert!(tcp_pkts.len() < live_pkts.len());

    // pcapng: one packet per hop that carries bytes, interfaces named after devices.
    let pcap = dir.join("run.pcapng");
    let out = unprivileged(&["export", rec_s, "--pcapng", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&pcap, &out.stdout).unwrap();
    let hops_with_bytes: usize = live_pkts
        .iter()
        .map(|p| p.hops.iter().filter(|h| h.src.is_some()).count())
        .sum();
    let fields = sh(&format!(
        "tshark -r {} -T fields -e frame.interface_description -e ip.src -e frame.comment 2>/dev/null",
        pcap.display()
    ));
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(
        lines.len(),
        hops_with_bytes,
        "one pcapng packet per hop: {fields}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("eth0 in netns {a}")) && l.contains(&format!("{net}.0.1"))),
        "{fields}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("verdict dropped, drop NO_SOCKET")),
        "{fields}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_recordings_are_refused_clearly() {
    let dir = std::env::temp_dir().join(format!("netflow-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |f: &std::path::Path| {
        let out = Command::new(netflow_bin())
            .args(["replay", f.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    };
    let not_ours = dir.join("x.txt");
    std::fs::write(&not_ours, "hello").unwrap();
    let (code, _, err) = run(&not_ours);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not a netflow recording"), "{err}");

    let mut future = b"NFLOWREC".to_vec();
    future.extend_from_slice(&[7, 0, 0, 0]);
    let f = dir.join("future.nflw");
    std::fs::write(&f, &future).unwrap();
    let (code, _, err) = run(&f);
    assert_eq!(code, Some(1));
    assert!(err.contains("newer netflow"), "{err}");

    // A real recording with events, then cut, then corrupted.
    let rec = dir.join("ok.nflw");
    write_sample(&rec);
    let (code, out, err) = run(&rec);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("10.9.0.1 -> 10.9.0.2"), "{out}");
    let full = std::fs::read(&rec).unwrap();
    let cut = dir.join("cut.nflw");
    std::fs::write(&cut, &full[..full.len() - 12]).unwrap();
    let (code, _, err) = run(&cut);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cut short"), "{err}");
    let mut bad = full.clone();
    for b in bad.iter_mut().skip(40).step_by(7) {
        *b ^= 0x5a;
    }
    let corrupt = dir.join("corrupt.nflw");
    std::fs::write(&corrupt, &bad).unwrap();
    let (code, _, err) = run(&corrupt);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("corrupted") || err.contains("cut short"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small recording made with the library: two hops of one ICMP packet.
fn write_sample(path: &std::path::Path) {
    use netflow::{
        decode::{encode, RawEvent},
        record::*,
    };
    let meta = Meta {
        netflow_version: "test".into(),
        kernel: "test".into(),
        hostname: "test".into(),
        realtime_offset_ns: 0,
        summary: "sample".into(),
        probes: vec![],
        idle_ns: 1_000_000_000,
        vxlan_ports: vec![4789],
        rule_hold_ns: 0,
        dns_ports: vec![],
        started_ns: 0,
        probe_list: vec![],
    };
    let mut w = Writer::create(path, &meta).unwrap();
    let mut pkt = vec![
        0x45, 0, 0, 28, 0, 7, 0, 0, 64, 1, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
    ];
    pkt.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    for (ts, point, dev) in [
        (10, netflow_common::Point::Tx, "eth0"),
        (20, netflow_common::Point::Rx, "veth0"),
    ] {
        let ev = RawEvent {
            ts_ns: ts,
            skb: 0xabc,
            point,
            netns: 1,
            ifindex: 2,
            ifname: dev.into(),
            len: pkt.len() as u32,
            mark: 0,
            reason: 0,
            location: 0,
            fp: 0,
            l3_proto: 0x0800,
            hook: 0,
            pf: 0,
            flags: 0,
            data: pkt.clone(),
        };
        w.event(&encode(&ev)).unwrap();
    }
    w.tick(5_000_000_000).unwrap();
    w.end(&End {
        events: 2,
        lost: 0,
        sampled: 0,
        ended_ns: 0,
    })
    .unwrap();
}

/// Recordings and exports hold packet payload: written with mode 0600, never
/// through a symlink, never over a file someone else owns.
#[test]
fn recording_paths_are_private_and_never_followed() {
    let dir = std::env::temp_dir().join(format!("netflow-priv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/outcomes.nflw");
    let target = dir.join("precious");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    // export through a symlink: refused, the target untouched.
    let out = Command::new(netflow_bin())
        .args(["export", fixture.to_str().unwrap(), "--json"])
        .arg(&link)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

    // trace --write through a symlink: refused before anything is traced.
    let out = Command::new(netflow_bin())
        .args(["trace", "--duration", "1s", "--write"])
        .arg(&link)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

    // A file of another user is not overwritten; a new file is 0600.
    let theirs = dir.join("theirs.json");
    std::fs::write(&theirs, "theirs").unwrap();
    sh(&format!("chown 65534 {}", theirs.display()));
    let out = Command::new(netflow_bin())
        .args(["export", fixture.to_str().unwrap(), "--json"])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
    let mine = dir.join("mine.json");
    let out = Command::new(netflow_bin())
        .args(["export", fixture.to_str().unwrap(), "--json"])
        .arg(&mine)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&mine).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&mine)
        .unwrap()
        .contains("\"kind\":\"connection\""));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The kernel programs and the daemon share one fingerprint definition
/// (`netflow_common::parse::fingerprint`): for every event the kernel
/// fingerprinted, the daemon computes the same value from the same bytes —
/// ICMP, TCP and UDP, inside VXLAN and out.
#[test]
fn kernel_and_daemon_compute_the_same_fingerprints() {
    use netflow::{
        decode::{packet::fingerprint, RawEvent},
        record::{Reader, Record},
    };
    let VxlanNodes { lab, p1, .. } = vxlan_nodes("fp");
    let net = lab.net();
    lab.exec(&p1, &format!("ping -c1 -W2 {net}.2.2"));
    let dir = std::env::temp_dir().join(format!("netflow-fp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("fp.nflw");
    let t = Tracer::start(&["--netns", &p1, "--write", rec.to_str().unwrap()]);
    lab.exec(&p1, &format!("ping -c3 -i0.2 -W2 {net}.2.2"));
    sh_quiet(&format!("ip netns exec {p1} python3 -c \"import socket; socket.create_connection(('{net}.2.2', 9), timeout=1)\""));
    sh_quiet(&format!("ip netns exec {p1} python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x'*40, ('{net}.2.2', 5353))\""));
    t.stop_lines();

    let mut r = Reader::open(&rec).unwrap();
    let (mut vxlan_ports, mut compared, mut encapsulated) = (vec![], 0, 0);
    let mut protos = std::collections::BTreeSet::new();
    while let Some(rec) = r.next_record().unwrap() {
        match rec {
            Record::Meta(m) => vxlan_ports = m.vxlan_ports,
            Record::Event(bytes) => {
                let ev = RawEvent::try_from(bytes.as_slice()).unwrap();
                if ev.fp == 0 || ev.data.is_empty() {
                    continue;
                }
                let daemon = fingerprint(&ev.data, ev.l3_proto, &vxlan_ports);
                assert_eq!(
                    ev.fp, daemon,
                    "kernel {:#x} daemon {daemon:#x} at {:?} {}: {:02x?}",
                    ev.fp, ev.point, ev.ifname, ev.data
                );
                compared += 1;
                protos.insert((ev.fp >> 48) & 0xff);
                // Outer UDP to the VXLAN port: the fingerprint is the inner packet's.
                if ev.data.len() > 23 && ev.data[9] == 17 && (ev.fp >> 48) & 0xff != 17 {
                    encapsulated += 1;
                }
            }
            _ => {}
        }
    }
    assert!(compared >= 20, "only {compared} fingerprinted events");
    assert!(encapsulated >= 3, "{encapsulated} VXLAN events");
    for proto in [1, 6, 17] {
        assert!(protos.contains(&proto), "no protocol {proto}: {protos:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
