//! `netflow demo`: builds its lab, shows the Service DNAT, the VXLAN hop,
//! the policy drop and the closed port, and removes everything on exit.
//! One test: the demo's namespaces have fixed names.
use std::process::Command;

use netflow_schema::{EncapKind, Hop, NatKind};
use netflow_tests::{netflow_bin, packet_summary, packets, parse_lines, require_root, Tmux};

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
    let lines = parse_lines(&String::from_utf8_lossy(&out.stdout));
    let pkts = packets(&lines);
    let any_hop = |f: &dyn Fn(&Hop) -> bool| pkts.iter().any(|p| p.hops.iter().any(f));
    assert!(
        any_hop(&|h| h
            .nat
            .as_ref()
            .is_some_and(|n| n.kind == NatKind::Dnat && n.from == "10.96.250.10:80")),
        "Service DNAT: {}",
        packet_summary(&lines)
    );
    assert!(
        any_hop(&|h| h
            .encap
            .as_ref()
            .is_some_and(|e| e.kind == EncapKind::Vxlan && e.vni == Some(42))),
        "VXLAN hop: {}",
        packet_summary(&lines)
    );
    // The kernel's reason as written (not `likely`).
    let dropped = |reason: &str, dport: u16| {
        pkts.iter().any(|p| {
            p.drop.as_ref().is_some_and(|d| d.reason == reason)
                && p.flow.as_ref().and_then(|f| f.dport) == Some(dport)
        })
    };
    assert!(
        dropped("NETFILTER_DROP", 5432),
        "policy drop: {}",
        packet_summary(&lines)
    );
    assert!(
        dropped("NO_SOCKET", 9999),
        "closed port: {}",
        packet_summary(&lines)
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
    // The answer first: the two failing calls (the policy drop and the
    // closed port) on top with their causes, the healthy ones below, the
    // link-local noise folded away.
    // Both causes, the rule's name arriving after its drop (the rule
    // trace), within the same 30 s.
    let top_rows = |s: &str| -> Vec<String> {
        s.lines()
            .skip_while(|l| !l.contains("endpoint"))
            .skip(1)
            .take(2)
            .map(str::to_string)
            .collect()
    };
    let s = t.wait_until("both failing calls with their causes", 30, |s| {
        let rows = top_rows(s);
        rows.iter()
            .any(|r| r.contains("→5432") && r.contains("rule"))
            && rows.iter().any(|r| r.contains("nothing listens"))
    });
    let rows = top_rows(&s);
    assert_eq!(rows.len(), 2, "{s}");
    for r in &rows {
        assert!(r.contains("DROPPED"), "a failing row first: {r}\n{s}");
    }
    assert!(
        rows.iter()
            .any(|r| r.contains("→5432") && r.contains("rule"))
            && rows
                .iter()
                .any(|r| r.contains("→9999") && r.contains("nothing listens")),
        "{s}"
    );
    assert!(!s.contains("ff02::"), "link-local folded: {s}");
    t.keys("q");
    let s = t.wait_for("EXITED=", 30);
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(
        demo_netns_left().is_empty(),
        "left: {:?}",
        demo_netns_left()
    );
}
