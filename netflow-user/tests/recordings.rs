//! Recordings replay, and what they print is pinned: the text and JSON
//! outputs are compared with golden files. Two generations: `layout1-*`,
//! recorded by live runs of netflow 0.1 with event layout 1 (older
//! recordings must keep replaying), and the rest, recorded with today's
//! probes by `tests/fixtures/record-*.sh`. Runs without root and without the
//! kernel side (`--no-default-features`). After an intended change of the
//! output, `NETFLOW_BLESS=1 cargo test -p netflow-user --test recordings`
//! rewrites the golden files; review their diff.
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

/// Recorded by netflow 0.1 with event layout 1 (no socket-delivery
/// probe yet): they must replay, and read true.
const LAYOUT1: [&str; 2] = ["layout1-service-and-drop.nflw", "layout1-outcomes.nflw"];
/// Recorded with today's probes (`tests/fixtures/record-*.sh`).
const CURRENT: [&str; 2] = ["service-and-drop.nflw", "outcomes.nflw"];

#[test]
fn the_fixtures_are_of_their_event_layout() {
    for (files, want) in [
        (LAYOUT1, Some(1)),
        (CURRENT, Some(netflow_common::EVENT_VERSION)),
    ] {
        for file in files {
            let mut r = Reader::open(&fixtures().join(file)).unwrap();
            let mut layouts = std::collections::BTreeSet::new();
            while let Some(rec) = r.next_record().unwrap() {
                if let Record::Event(bytes) = rec {
                    layouts.insert(compat::version_of(&bytes));
                }
            }
            assert_eq!(
                layouts.into_iter().collect::<Vec<_>>(),
                vec![want],
                "{file}"
            );
        }
    }
}

#[test]
fn recordings_replay_completely() {
    for file in LAYOUT1.into_iter().chain(CURRENT) {
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

/// The packets of a recording: (flow words, verdict, drop reason).
fn verdicts(file: &str) -> Vec<(String, String, String)> {
    let (json, _) = replayed(file, Mode::Json);
    json.lines()
        .map(|l| serde_json::from_str::<netflow_schema::Line>(l).unwrap())
        .filter_map(|l| match l.record {
            netflow_schema::Record::Packet(p) => Some(p),
            _ => None,
        })
        .map(|p| {
            let f = p.flow.expect("a flow");
            (
                format!(
                    "{} {}:{:?} > {}:{:?}",
                    serde_json::to_string(&f.proto).unwrap(),
                    f.src,
                    f.sport,
                    f.dst,
                    f.dport
                ),
                p.verdict.to_string(),
                p.drop.map(|d| d.reason).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn the_fixtures_read_true() {
    // Today's probes: both Service calls delivered both ways, FINs
    // included; the one drop is the policy's, of the call to 5432.
    let v = verdicts("service-and-drop.nflw");
    let tcp: Vec<_> = v
        .iter()
        .filter(|(f, _, _)| f.starts_with("\"tcp\""))
        .collect();
    assert!(tcp.len() >= 20, "{v:#?}");
    for (flow, verdict, reason) in &tcp {
        if flow.contains("5432") {
            assert_eq!(
                (verdict.as_str(), reason.as_str()),
                ("dropped", "NETFILTER_DROP")
            );
        } else {
            assert_eq!(verdict, "delivered", "{flow}");
        }
    }
    // Without socket-delivery evidence (layout 1), a packet freed from a
    // closing socket's queue is unknown, never dropped: the one drop is
    // the policy's.
    let v = verdicts("layout1-service-and-drop.nflw");
    let dropped: Vec<_> = v
        .iter()
        .filter(|(_, verdict, _)| verdict == "dropped")
        .collect();
    assert!(!dropped.is_empty(), "{v:#?}");
    for (flow, _, reason) in dropped {
        assert_ne!(reason, "QUEUE_PURGE", "{flow}");
    }
}

#[test]
fn text_output_is_unchanged() {
    for (file, gold) in [
        ("service-and-drop.nflw", "service-and-drop.txt"),
        (
            "layout1-service-and-drop.nflw",
            "layout1-service-and-drop.txt",
        ),
    ] {
        let (text, _) = replayed(file, Mode::Text);
        assert!(
            text.contains("DNAT 10.96.0.10:80 -> 10.207.0.2:8080"),
            "{text}"
        );
        assert!(text.contains("=> DROPPED"), "{text}");
        golden(gold, &text);
    }
}

#[test]
fn json_output_is_unchanged() {
    for (file, gold) in [
        ("outcomes.nflw", "outcomes.jsonl"),
        ("layout1-outcomes.nflw", "layout1-outcomes.jsonl"),
    ] {
        let (json, _) = replayed(file, Mode::Json);
        for outcome in ["ok", "request_lost", "no_reply", "reply_lost", "refused"] {
            assert!(
                json.contains(&format!("\"outcome\":\"{outcome}\"")),
                "{file}: no {outcome} connection"
            );
        }
        golden(gold, &json);
    }
}
