//! Bad input and missing privileges end with one clear line and exit code 1,
//! never a panic or a debug dump.
use std::process::Command;

use netflow_tests::{netflow_bin, require_root};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(netflow_bin())
        .args(args)
        .output()
        .expect("run netflow");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "netflow panicked: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn unknown_netns_lists_the_known_ones() {
    require_root();
    let (code, err) = run(&["trace", "--netns", "no-such-netns-xyz", "--duration", "1s"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("network namespace \"no-such-netns-xyz\" not found"),
        "{err}"
    );
    assert!(err.contains("known namespaces"), "{err}");
}

#[test]
fn unknown_interface_lists_candidates() {
    require_root();
    let (code, err) = run(&["trace", "--iface", "nosuchdev0", "--duration", "1s"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("interface \"nosuchdev0\" not found"), "{err}");
    assert!(err.contains("lo"), "candidates listed: {err}");
}

#[test]
fn bad_values_are_refused_before_loading_anything() {
    let (code, err) = run(&["trace", "--host", "10.0.0.999"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid --host"), "{err}");
    let (code, err) = run(&["trace", "--duration", "soon"]);
    assert_eq!(code, 2, "clap usage error: {err}");
    assert!(err.contains("invalid duration"), "{err}");
    let (code, err) = run(&["trace", "--port", "70000"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn without_privileges_it_says_which_are_missing() {
    require_root();
    // Drop to an unprivileged user for this one run.
    let out = netflow_tests::unprivileged(&["trace", "--duration", "1s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`netflow trace` needs root"), "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    assert!(err.contains("netflow replay FILE"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Each command in its own words; the offline ones need nothing.
    for (cmd, words) in [
        ("dashboard", "netflow dashboard --replay FILE"),
        ("agent", "trace every pod"),
        ("demo", "build its lab"),
        ("check", "check the kernel programs"),
    ] {
        let out = netflow_tests::unprivileged(&[cmd]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!("`netflow {cmd}` needs root")),
            "{cmd}: {err}"
        );
        assert!(err.contains(words), "{cmd}: {err}");
        assert!(
            !err.contains("metrics on"),
            "{cmd} started nothing first: {err}"
        );
    }
    let fixture = fixture("service-and-drop.nflw");
    for args in [
        vec!["replay", fixture.as_str()],
        vec!["trace", "-r", fixture.as_str()],
        vec!["export", fixture.as_str(), "--json", "-"],
    ] {
        let out = netflow_tests::unprivileged(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `| head -1` under pipefail: the reader going away is no error (exit 0,
/// nothing on stderr but the summary), for text, JSON, the schema and a
/// pcapng on stdout.
#[test]
fn a_closed_pipe_ends_quietly() {
    let bin = netflow_bin();
    let f = fixture("service-and-drop.nflw");
    for args in [
        format!("replay {f}"),
        format!("replay {f} --json"),
        format!("trace -r {f}"),
        format!("export {f} --pcapng -"),
        "schema".to_string(),
    ] {
        let out = Command::new("bash")
            .args([
                "-c",
                &format!(
                    "set -o pipefail; {} {args} | head -c 100 >/dev/null",
                    bin.display()
                ),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args}: {err}");
        assert!(
            !err.contains("Broken pipe") && !err.contains("error"),
            "{args}: {err}"
        );
    }
}

/// A live trace piped to `head`: when head has its line, netflow stops as
/// on Ctrl-C (its recording written whole) and exits 0 under pipefail.
#[test]
fn a_live_trace_stops_when_its_reader_goes_away() {
    require_root();
    let dir = std::env::temp_dir().join(format!("netflow-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("p.nflw");
    let mut t = Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; {} trace -i lo --proto icmp --json -w {} 2>{} | head -n 2 >/dev/null",
                netflow_bin().display(),
                rec.display(),
                dir.join("err").display()
            ),
        ])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while t.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "netflow went on after head left"
        );
        let _ = Command::new("ping")
            .args(["-c", "1", "-W", "1", "127.0.0.1"])
            .output();
    }
    let err = std::fs::read_to_string(dir.join("err")).unwrap();
    assert!(t.wait().unwrap().success(), "{err}");
    // (The probe lines may say "errors": ICMP errors on timelines.)
    assert!(
        !err.contains("Broken pipe") && !err.contains("netflow: error"),
        "{err}"
    );
    assert!(err.contains("netflow: "), "the summary line: {err}");
    let replayed = Command::new(netflow_bin())
        .arg("replay")
        .arg(&rec)
        .output()
        .unwrap();
    let rerr = String::from_utf8_lossy(&replayed.stderr);
    assert!(
        replayed.status.success() && !rerr.contains("cut short"),
        "{rerr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// tcpdump's letters: -r reads a recording (the same as replay), -i is
/// --iface, -c stops after N packets, -w records; the help says a
/// recording is not a pcap.
#[test]
fn tcpdump_letters_do_what_tcpdump_users_expect() {
    let f = fixture("service-and-drop.nflw");
    let replay = Command::new(netflow_bin())
        .args(["replay", &f, "--json"])
        .output()
        .unwrap();
    let read = Command::new(netflow_bin())
        .args(["trace", "-r", &f, "--json"])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(!replay.stdout.is_empty());
    assert_eq!(read.stdout, replay.stdout, "trace -r is replay");
    let help = Command::new(netflow_bin())
        .args(["trace", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for letter in ["-i, --iface", "-c, --count", "-w, --write", "-r, --read"] {
        assert!(help.contains(letter), "{letter}: {help}");
    }
    assert!(
        help.contains("not a pcap") && help.contains("--pcapng"),
        "{help}"
    );
}

#[test]
fn count_stops_after_n_packets() {
    require_root();
    let dir = std::env::temp_dir().join(format!("netflow-count-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rec = dir.join("c.nflw");
    // Files, not pipes: nobody reads them until it exits.
    let (out_path, err_path) = (dir.join("out"), dir.join("err"));
    let mut t = std::process::Command::new(netflow_bin())
        .args([
            "trace", "-i", "lo", "--proto", "icmp", "-c", "2", "--json", "-w",
        ])
        .arg(&rec)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Pings until netflow stops by itself (it attaches in a second or two).
    let started = std::time::Instant::now();
    while t.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "-c 2 never stopped"
        );
        let _ = Command::new("ping")
            .args(["-c", "1", "-W", "1", "127.0.0.1"])
            .output();
    }
    let status = t.wait().unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{err}");
    let lines = netflow_tests::parse_lines(&std::fs::read_to_string(&out_path).unwrap());
    assert_eq!(netflow_tests::packets(&lines).len(), 2, "{lines:#?}");
    assert!(
        err.contains("netflow: 2 packets"),
        "the summary line: {err}"
    );
    // The recording is whole: it replays without being cut short.
    let replayed = Command::new(netflow_bin())
        .arg("replay")
        .arg(&rec)
        .output()
        .unwrap();
    let rerr = String::from_utf8_lossy(&replayed.stderr);
    assert!(
        replayed.status.success() && !rerr.contains("cut short"),
        "{rerr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_output_on_stdout_and_selectors_that_match_nothing_are_said() {
    let f = fixture("service-and-drop.nflw");
    let (code, err) = run(&["export", &f, "--pcapng", "-", "--json", "-"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("would mix two formats on stdout"), "{err}");
    let (code, err) = run(&["replay", &f, "--pod", "nosuch"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "warning: no packet of the recording matches the selectors (--pod/--netns nosuch)"
        ),
        "{err}"
    );
    // A selector that matches says nothing of the kind.
    let (code, err) = run(&["replay", &f, "--port", "5432"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    // SCTP is a protocol like the others.
    let (code, err) = run(&["replay", &f, "--proto", "sctp"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--proto sctp"), "{err}");
    let (code, err) = run(&["trace", "--idle", "0s"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 10ms"), "{err}");
}

/// NO_COLOR: the dashboard draws without colours (emphasis stays; the
/// binary sets `no_color` from the environment).
#[test]
fn no_color_is_honoured() {
    use netflow::output::dashboard::draw;
    use ratatui::{backend::TestBackend, style::Color, Terminal};
    let app =
        netflow_tests::replayed_dashboard(std::path::Path::new(&fixture("service-and-drop.nflw")));
    let colours = |no_color: bool| {
        app.lock().unwrap().no_color = no_color;
        let mut t = Terminal::new(TestBackend::new(160, 45)).unwrap();
        t.draw(|f| draw(f, &app.lock().unwrap())).unwrap();
        t.backend()
            .buffer()
            .content
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    assert!(colours(false) > 0, "the dashboard has colours");
    assert_eq!(colours(true), 0, "NO_COLOR leaves none");
}
