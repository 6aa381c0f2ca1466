//! `netflow demo`: builds its lab, shows the Service DNAT, the VXLAN hop,
//! the policy drop and the closed port, and removes everything on exit.
//! One test: the demo's namespaces have fixed names.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use netflow_tests::{netflow_bin, require_root};

fn demo_netns_left() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("nfdemo-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn demo_shows_the_lab_and_cleans_up() {
    require_root();
    // JSON mode: what the demo's traffic looks like.
    let out = Command::new(netflow_bin())
        .args(["demo", "--json-for", "4s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("lab removed"), "{err}");
    assert!(
        demo_netns_left().is_empty(),
        "left: {:?}",
        demo_netns_left()
    );
    let pkts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "packet")
        .collect();
    let any_hop = |f: &dyn Fn(&serde_json::Value) -> bool| {
        pkts.iter()
            .any(|p| p["hops"].as_array().unwrap().iter().any(f))
    };
    assert!(
        any_hop(&|h| h["nat"]["kind"] == "dnat" && h["nat"]["from"] == "10.96.250.10:80"),
        "Service DNAT"
    );
    assert!(
        any_hop(&|h| h["encap"]["kind"] == "vxlan" && h["encap"]["vni"] == 42),
        "VXLAN hop"
    );
    assert!(
        pkts.iter()
            .any(|p| p["drop"]["reason"] == "NETFILTER_DROP" && p["flow"]["dport"] == 5432),
        "policy drop"
    );
    assert!(
        pkts.iter()
            .any(|p| p["drop"]["reason"] == "NO_SOCKET" && p["flow"]["dport"] == 9999),
        "closed port"
    );

    // Dashboard mode in a real terminal, quit with q.
    let session = format!("nfdemo{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    let cmd = format!("{} demo; echo EXITED=$?; sleep 30", netflow_bin().display());
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "45",
        "sh",
        "-c",
        &cmd
    ])
    .status
    .success());
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
            for n in demo_netns_left() {
                let _ = Command::new("ip").args(["netns", "del", &n]).output();
            }
        }
    }
    let _kill = Kill(session.clone());
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
                .into_owned();
            if s.contains(what) {
                return s;
            }
            assert!(Instant::now() < deadline, "never saw {what:?}:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("NETFILTER_DROP");
    let s = wait_for("10.96.250.10");
    assert!(s.contains("demo"), "{s}");
    tmux(&["send-keys", "-t", &session, "q"]);
    let s = wait_for("EXITED=");
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(
        demo_netns_left().is_empty(),
        "left: {:?}",
        demo_netns_left()
    );
}
