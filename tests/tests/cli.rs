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
    assert!(err.contains("needs root or the capabilities"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
