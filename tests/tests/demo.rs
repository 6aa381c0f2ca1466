//! `netflow demo`: builds its lab, shows the Service DNAT, the VXLAN hop,
//! the policy drop and the closed port, and removes everything on exit.
//! One test: the demo's namespaces have fixed names.
use std::process::Command;

use netflow_tests::{netflow_bin, require_root, Tmux};

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
        .map(netflow_tests::json::parse_line)
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
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for n in demo_netns_left() {
                let _ = Command::new("ip").args(["netns", "del", &n]).output();
            }
        }
    }
    let _cleanup = Cleanup;
    let t = Tmux::start(
        &format!("nfdemo{}", std::process::id()),
        &format!("{} demo; echo EXITED=$?; sleep 30", netflow_bin().display()),
    );
    t.wait_for("NETFILTER_DROP", 30);
    let s = t.wait_for("10.96.250.", 30);
    assert!(s.contains("demo"), "{s}");
    t.keys("q");
    let s = t.wait_for("EXITED=", 30);
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(
        demo_netns_left().is_empty(),
        "left: {:?}",
        demo_netns_left()
    );
}
