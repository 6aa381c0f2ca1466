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
        s.contains("flows by peer and port (") && s.contains("sorted by failing first"),
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
    // Its route lookup shows as `trace` shows it (table, device).
    assert!(
        s.lines()
            .any(|l| l.contains(" route ") && l.contains("sdnode"))
            && s.contains("table 254 dev vserver"),
        "{s}"
    );

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
        s.contains("sorted by last seen") && s.contains("FROZEN") && s.contains(" keys "),
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

/// The rows of the flows table, top to bottom (the lines between its
/// header and its bottom border).
fn table_rows(s: &str) -> Vec<String> {
    s.lines()
        .skip_while(|l| !l.contains("endpoint"))
        .skip(1)
        .take_while(|l| !l.starts_with('└'))
        .map(|l| l.split('│').nth(1).unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What an SRE looks at first: the failing calls with their causes, the
/// healthy one below them, the link-local noise folded into one row.
#[test]
fn failing_rows_come_first_with_their_causes_and_link_local_is_folded() {
    let app = loaded();
    let s = screen(&app.lock().unwrap());
    let rows = table_rows(&s);
    assert_eq!(rows.len(), 4, "{s}");
    for row in &rows[..2] {
        assert!(
            row.contains("DROPPED") && row.contains("request_lost") && row.contains("rule"),
            "a failing row with its cause first: {row}\n{s}"
        );
    }
    assert!(
        rows[0].contains("5432") && rows[0].contains("rule 4 in svc deny"),
        "{s}"
    );
    assert!(
        rows[2].contains("10.96.0.10") && rows[2].contains("ok 2/2"),
        "{s}"
    );
    assert!(rows[3].starts_with("link-local ×3"), "{s}");
    assert!(
        !s.contains("ff02::") && s.contains("1 link-local folded (m)"),
        "{s}"
    );
    // `m` shows them, each on its own row; `m` again folds them.
    key(&app, KeyCode::Char('m'));
    let s = screen(&app.lock().unwrap());
    assert!(s.contains("ff02::") && !s.contains("link-local ×"), "{s}");
    key(&app, KeyCode::Char('m'));
    assert!(screen(&app.lock().unwrap()).contains("link-local ×3"));
}

/// The selection is a connection, not a row number: new traffic that
/// reorders the table leaves it where it was.
#[test]
fn the_selection_stays_on_its_flow_when_rows_move() {
    let app = loaded();
    // The healthy Service call (third row).
    key(&app, KeyCode::Down);
    key(&app, KeyCode::Down);
    let s = screen(&app.lock().unwrap());
    let selected = |s: &str| {
        s.lines()
            .flat_map(|l| l.split('│'))
            .find(|l| l.contains("pkts,") && l.contains("bytes"))
            .map(|l| l.trim().to_string())
    };
    let before = table_rows(&s);
    assert!(before[2].contains("10.96.0.10"), "{s}");
    assert!(s.contains("10.96.0.10:80"), "the details show it: {s}");
    // More traffic: another recording's failing calls come in above it.
    let more = netflow_tests::replayed_dashboard(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/outcomes.nflw"),
    );
    {
        let more = more.lock().unwrap();
        let mut a = app.lock().unwrap();
        for f in more.state.flows.values() {
            a.state.flows.insert(f.key, f.clone());
        }
    }
    let s2 = screen(&app.lock().unwrap());
    let after = table_rows(&s2);
    let at = after
        .iter()
        .position(|r| r.starts_with("sdclient") && r.contains("10.96.0.10"))
        .unwrap();
    assert!(at > 2, "the Service call moved down: {s2}");
    assert_eq!(
        selected(&s),
        selected(&s2),
        "the details pane kept it:\n{s}\n{s2}"
    );
    assert!(
        s2.lines()
            .any(|l| l.contains("10.207.0.1 -> 10.96.0.10:80")),
        "still the Service call: {s2}"
    );
    let a = app.lock().unwrap();
    let rows = a.rows();
    assert_eq!(a.selected_index(&rows), at);
}

/// `/` matches verdicts, outcomes and causes, not only addresses.
#[test]
fn the_filter_matches_verdicts_outcomes_and_causes() {
    let app = loaded();
    key(&app, KeyCode::Char('c'));
    for (filter, want) in [
        ("dropped", 2),
        ("request_lost", 2),
        ("rule 5", 1),
        ("delivered", 2),
        ("refused", 0),
    ] {
        key(&app, KeyCode::Char('/'));
        for c in filter.chars() {
            key(&app, KeyCode::Char(c));
        }
        key(&app, KeyCode::Enter);
        let s = screen(&app.lock().unwrap());
        assert!(s.contains(&format!(" flows ({want})")), "{filter}: {s}");
        assert_eq!(table_rows(&s).len(), want, "{filter}: {s}");
        key(&app, KeyCode::Esc);
    }
}

/// The dashboard on a recording says what `replay` says of every
/// connection (the same end of input: an ICMP echo nobody answered is
/// request_lost in both, not left open).
#[test]
fn the_replay_dashboard_agrees_with_replay_on_every_outcome() {
    for file in ["service-and-drop.nflw", "outcomes.nflw"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(file);
        let out = std::process::Command::new(netflow_tests::netflow_bin())
            .args(["replay", path.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        let lines = netflow_tests::parse_lines(&String::from_utf8_lossy(&out.stdout));
        let conns = netflow_tests::connections(&lines);
        assert!(conns.len() >= 4, "{file}");
        let app = loaded_from(&path);
        key(&app, KeyCode::Char('c'));
        let s = screen(&app.lock().unwrap());
        for c in conns {
            use netflow_schema::Proto;
            let port = |p: Option<u16>| p.map_or("-".to_string(), |p| p.to_string());
            let ports = match c.flow.proto {
                // ICMP: the echo's flow has no ports.
                Proto::Icmp | Proto::Icmpv6 => "-→-".to_string(),
                _ => format!("{}→{}", port(c.flow.sport), port(c.flow.dport)),
            };
            let proto = netflow_tests::proto_name(c.flow.proto);
            let row = table_rows(&s)
                .into_iter()
                .find(|r| r.contains(&ports) && r.contains(&proto))
                .unwrap_or_else(|| panic!("{file}: no row for {c:#?}\n{s}"));
            assert!(
                row.contains(c.outcome.as_str()),
                "{file}: replay says {} of {ports}: {row}\n{s}",
                c.outcome
            );
        }
    }
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
    // The failing calls on top, with their causes; the link-local noise
    // folded into one row.
    let s = t.wait_for("link-local ×", 15);
    let first = s
        .lines()
        .skip_while(|l| !l.contains("endpoint"))
        .nth(1)
        .unwrap_or("");
    assert!(
        first.contains("DROPPED") && first.contains("request_lost") && first.contains("rule"),
        "{s}"
    );
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
