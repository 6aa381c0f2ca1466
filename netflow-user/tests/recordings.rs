//! Recordings made by earlier netflow versions (tests/fixtures, recorded by
//! live runs of netflow 0.1 with event layout 1) replay in this one, and what
//! they print is pinned: the text and JSON outputs are compared with golden
//! files. Runs without root and without the kernel side
//! (`--no-default-features`). After an intended change of the output,
//! `NETFLOW_BLESS=1 cargo test -p netflow-user --test recordings` rewrites
//! the golden files; review their diff.
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use netflow::{
    correlate::filter::FlowFilter,
    decode::compat,
    output::{self, Mode},
    record::{Reader, Record},
    replay,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A `Write` the test keeps a handle on.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn replayed(file: &str, mode: Mode) -> (String, replay::Replayed) {
    let out = Shared::default();
    let r = replay::replay(
        &fixtures().join(file),
        output::sink(mode, Box::new(out.clone())),
        FlowFilter::default(),
    )
    .unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    // The start record names the recording as given: here, where this
    // checkout is.
    let text = text.replace(&fixtures().display().to_string(), "tests/fixtures");
    (text, r)
}

fn golden(name: &str, got: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("NETFLOW_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (NETFLOW_BLESS=1 writes it)", path.display()));
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{name} differs from line {}:\n got: {:?}\nwant: {:?}",
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

#[test]
fn the_fixtures_are_of_the_previous_event_layout() {
    for file in ["service-and-drop.nflw", "outcomes.nflw"] {
        let mut r = Reader::open(&fixtures().join(file)).unwrap();
        let mut layouts = std::collections::BTreeSet::new();
        while let Some(rec) = r.next_record().unwrap() {
            if let Record::Event(bytes) = rec {
                layouts.insert(compat::version_of(&bytes));
            }
        }
        assert_eq!(
            layouts.into_iter().collect::<Vec<_>>(),
            vec![Some(1)],
            "{file}"
        );
    }
}

#[test]
fn previous_layout_recordings_replay_completely() {
    for file in ["service-and-drop.nflw", "outcomes.nflw"] {
        let (_, r) = replayed(file, Mode::Json);
        assert_eq!(r.stats.decode_errors, 0, "{file}");
        assert!(
            r.stats.events > 100 && r.stats.packets > 10,
            "{file}: {:?}",
            r.stats
        );
        assert!(!r.truncated);
    }
}

#[test]
fn text_output_is_unchanged() {
    let (text, _) = replayed("service-and-drop.nflw", Mode::Text);
    assert!(
        text.contains("DNAT 10.96.0.10:80 -> 10.207.0.2:8080"),
        "{text}"
    );
    assert!(text.contains("=> DROPPED"), "{text}");
    golden("service-and-drop.txt", &text);
}

#[test]
fn json_output_is_unchanged() {
    let (json, _) = replayed("outcomes.nflw", Mode::Json);
    for outcome in ["ok", "request_lost", "no_reply", "reply_lost", "refused"] {
        assert!(
            json.contains(&format!("\"outcome\":\"{outcome}\"")),
            "no {outcome} connection"
        );
    }
    golden("outcomes.jsonl", &json);
}
