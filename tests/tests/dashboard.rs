//! The dashboard on a recording (tests/fixtures/service-and-drop.nflw, made
//! with `netflow trace --write` on a lab: a Service DNAT, a FORWARD drop):
//! screens rendered with ratatui's TestBackend, and the real binary in tmux.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use netflow::output::dashboard::{draw, App};
use netflow_tests::{dashboard_screen as screen, replayed_dashboard as loaded_from, Tmux};
use ratatui::{
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    Terminal,
};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/service-and-drop.nflw")
}

fn loaded() -> Arc<Mutex<App>> {
    loaded_from(&fixture())
}

fn key(app: &Arc<Mutex<App>>, c: KeyCode) {
    app.lock()
        .unwrap()
        .key(KeyEvent::new(c, KeyModifiers::NONE));
}

#[test]
fn screens_from_a_recording() {
    let app = loaded();
    let s = screen(&app.lock().unwrap());
    // Status bar, flows table, timeline, drop reasons, sparkline, key hints.
    assert!(s.contains("replay fixture") && s.contains("lost 0"), "{s}");
    assert!(
        s.contains("flows by peer and port (") && s.contains("sorted by last seen"),
        "{s}"
    );
    assert!(s.contains("10.96.0.10") || s.contains("10.207.0.2"), "{s}");
    assert!(
        s.contains("drop reasons") && s.contains("NETFILTER_DROP"),
        "{s}"
    );
    assert!(s.contains("packets/s"), "{s}");
    assert!(s.contains("q quit"), "{s}");
    // Grouped by peer and port first; `c` shows each connection.
    assert!(s.contains("flows by peer and port"), "{s}");
    key(&app, KeyCode::Char('c'));

    // Filter to the dropped ping: its timeline shows the FORWARD drop and hint.
    key(&app, KeyCode::Char('/'));
    for c in "icmp 10.207.0.1".chars() {
        key(&app, KeyCode::Char(c));
    }
    key(&app, KeyCode::Enter);
    let s = screen(&app.lock().unwrap());
    assert!(s.contains("flows (1)"), "{s}");
    assert!(s.contains("filter \"icmp 10.207.0.1\""), "{s}");
    assert!(
        s.contains("dropped: NETFILTER_DROP") && s.contains("FORWARD"),
        "{s}"
    );
    assert!(s.contains("hint: a firewall rule"), "{s}");

    // Esc clears; the Service flow shows its DNAT hop.
    key(&app, KeyCode::Esc);
    key(&app, KeyCode::Char('/'));
    for c in "10.96.0.10".chars() {
        key(&app, KeyCode::Char(c));
    }
    key(&app, KeyCode::Enter);
    let s = screen(&app.lock().unwrap());
    assert!(
        s.contains("DNAT 10.96.0.10:80 -> 10.207.0.2:8080")
            || s.contains("SNAT 10.207.0.2:8080 -> 10.96.0.10:80"),
        "{s}"
    );

    // Sort, freeze, help.
    key(&app, KeyCode::Char('s'));
    key(&app, KeyCode::Char('f'));
    key(&app, KeyCode::Char('?'));
    let s = screen(&app.lock().unwrap());
    assert!(
        s.contains("sorted by endpoint") && s.contains("FROZEN") && s.contains(" keys "),
        "{s}"
    );
    key(&app, KeyCode::Char('x'));
    assert!(!screen(&app.lock().unwrap()).contains(" keys "));
    key(&app, KeyCode::Char('q'));
    assert!(app.lock().unwrap().quit);
}

/// tests/fixtures/outcomes.nflw (recorded by tests/fixtures/record-outcomes.sh):
/// one connection of each outcome; the flows table shows each, and the drop
/// reasons count only drops on a packet's path.
#[test]
fn outcome_column_from_a_recording() {
    let app =
        loaded_from(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/outcomes.nflw"));
    let s = screen(&app.lock().unwrap());
    assert!(s.contains("outcome"), "{s}");
    for (port, outcome) in [
        ("→80", "ok"),
        ("→9090", "request_lost"),
        ("→5500", "no_reply"),
        ("→5501", "reply_lost"),
        ("→9999", "refused"),
    ] {
        let row = s
            .lines()
            .find(|l| l.contains(port))
            .unwrap_or_else(|| panic!("no row for {port}:\n{s}"));
        assert!(
            row.contains(outcome),
            "{port} should read {outcome}: {row}\n{s}"
        );
    }
    // Enter on a group shows its connections.
    let port_row = s.lines().position(|l| l.contains("→5501")).unwrap();
    let first_row = s.lines().position(|l| l.contains("endpoint")).unwrap() + 1;
    for _ in first_row..port_row {
        key(&app, KeyCode::Down);
    }
    key(&app, KeyCode::Enter);
    let s2 = screen(&app.lock().unwrap());
    assert!(
        s2.contains("filter \"-> 10.238.0.2:5501\"") && s2.contains(" flows (1)"),
        "{s2}"
    );
    // Path drops only: the FORWARD drops and the closed port; no QUEUE_PURGE
    // (after delivery), no NOT_SPECIFIED of unclaimed multicast.
    assert!(
        s.contains("NETFILTER_DROP") && s.contains("NO_SOCKET"),
        "{s}"
    );
    assert!(
        !s.contains("QUEUE_PURGE") && !s.contains("NOT_SPECIFIED"),
        "{s}"
    );
}

#[test]
fn tiny_terminal_does_not_panic() {
    let app = loaded();
    for (w, h) in [(20, 5), (1, 1), (80, 10)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, &app.lock().unwrap())).unwrap();
    }
}

/// The real binary in a real terminal (tmux): draws, answers keys, quits
/// cleanly and leaves the terminal usable.
#[test]
fn real_binary_in_tmux() {
    let cmd = format!(
        "{} dashboard --replay {}; echo EXITED=$?; sleep 30",
        netflow_tests::netflow_bin().display(),
        fixture().display()
    );
    let t = Tmux::start(&format!("nfdash{}", std::process::id()), &cmd);
    // The frame with the recording's drops (a capture can catch a frame
    // half drawn, or one drawn before the replay was read).
    t.wait_for("drop reasons", 15);
    t.wait_for("NETFILTER_DROP", 15);
    t.keys("?");
    t.wait_for(" keys ", 15);
    t.keys("q");
    t.keys("q");
    let s = t.wait_for("EXITED=", 15);
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(
        !s.contains("drop reasons"),
        "the alternate screen is left: {s}"
    );
}
