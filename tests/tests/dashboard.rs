//! The dashboard on a recording (tests/fixtures/service-and-drop.nflw, made
//! with `netflow trace --write` on a lab: a Service DNAT, a FORWARD drop):
//! screens rendered with ratatui's TestBackend, and the real binary in tmux.
use std::{
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use netflow::{
    dashboard::{draw, App, DashboardSink},
    replay,
    select::FlowFilter,
};
use ratatui::{
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    Terminal,
};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/service-and-drop.nflw")
}

fn loaded() -> Arc<Mutex<App>> {
    let app = Arc::new(Mutex::new(App::default()));
    let r = replay::replay(
        &fixture(),
        Box::new(DashboardSink(app.clone())),
        FlowFilter::default(),
    )
    .unwrap();
    {
        let mut a = app.lock().unwrap();
        a.state.source = "replay fixture".into();
        a.state.selection = r.meta.summary;
        a.state.probes = r.meta.probes;
    }
    app
}

fn screen(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(160, 45)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
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
        s.contains("flows (") && s.contains("sorted by last seen"),
        "{s}"
    );
    assert!(s.contains("10.96.0.10") || s.contains("10.207.0.2"), "{s}");
    assert!(
        s.contains("drop reasons") && s.contains("NETFILTER_DROP"),
        "{s}"
    );
    assert!(s.contains("packets/s"), "{s}");
    assert!(s.contains("q quit"), "{s}");

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
    for c in "tcp".chars() {
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
    let session = format!("nfdash{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux (scripts/setup.sh installs it)")
    };
    let cmd = format!(
        "{} dashboard --replay {}; echo EXITED=$?",
        netflow_tests::netflow_bin().display(),
        fixture().display()
    );
    let out = tmux(&[
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
        &format!("{cmd}; sleep 30"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let _kill = Kill(session.clone());
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = capture();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let s = wait_for("drop reasons");
    assert!(s.contains("NETFILTER_DROP"), "{s}");
    tmux(&["send-keys", "-t", &session, "?"]);
    wait_for(" keys ");
    tmux(&["send-keys", "-t", &session, "q"]);
    tmux(&["send-keys", "-t", &session, "q"]);
    let s = wait_for("EXITED=");
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(
        !s.contains("drop reasons"),
        "the alternate screen is left: {s}"
    );
}
