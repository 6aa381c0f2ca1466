//! The fuzz targets' bodies: any bytes in, an answer or an error out, never
//! a panic. Shared by the cargo-fuzz binaries (`fuzz_targets/`, run with
//! `cargo +nightly fuzz run TARGET` in netflow-user/fuzz) and by the test
//! that replays the committed corpus in CI (`tests/fuzz_corpus.rs`).
#![allow(dead_code)] // each fuzz binary uses one body

use std::io;

use netflow::{
    correlate::{filter::FlowFilter, Config},
    decode::{names::Names, Event},
    output::{self, pcapng::Pcapng, Mode, Sink},
    pipeline::Pipeline,
    record::Reader,
};

/// Any bytes as one ring-buffer event.
pub fn event_decoder(data: &[u8]) {
    let _ = Event::decode(data, &[4789, 8472]);
}

/// Any bytes as a recording: the reader returns records or an error.
pub fn record_reader(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("netflow-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.nflw");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut r) = Reader::open(&path) {
        let mut n = 0;
        while let Ok(Some(_)) = r.next_record() {
            n += 1;
            if n > 100_000 {
                break;
            }
        }
    }
}

/// A run of events as `[length u16 LE][event]...`; a zero length is a tick
/// of the clock (one second on).
pub fn events(data: &[u8]) -> Vec<Option<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        if n == 0 {
            out.push(None);
            continue;
        }
        let n = n.min(rest.len());
        out.push(Some(&rest[..n]));
        rest = &rest[n..];
    }
    out
}

/// Feed a run of events through a pipeline into `sink`; the packets printed.
pub fn run(data: &[u8], sink: Box<dyn Sink + Send>) -> u64 {
    let mut p = Pipeline::new(
        Config::default(),
        sink,
        Names::default(),
        None,
        FlowFilter::default(),
    );
    let mut now = 0u64;
    for e in events(data) {
        let _ = match e {
            Some(bytes) => p.event(bytes),
            None => {
                now += 1_000_000_000;
                p.tick(now)
            }
        };
    }
    p.finish(0, now + 10_000_000_000, None)
        .map(|s| s.packets)
        .unwrap_or(0)
}

/// A run of events through decode, correlation, connections and the JSON
/// and text outputs.
pub fn pipeline(data: &[u8]) {
    run(data, output::sink(Mode::Json, Box::new(io::sink())));
    run(data, output::sink(Mode::Text, Box::new(io::sink())));
}

/// [`pipeline`] with JSON only, counting what it printed.
pub fn pipeline_packets(data: &[u8]) -> u64 {
    run(data, output::sink(Mode::Json, Box::new(io::sink())))
}

/// A run of events exported to pcapng.
pub fn pcapng_export(data: &[u8]) {
    if let Ok(sink) = Pcapng::new(io::sink(), 0) {
        let _ = run(data, Box::new(sink));
    }
}

/// A fuzz target's body.
pub type Body = fn(&[u8]);

/// Every target by name (the corpus folders are named after them).
pub const TARGETS: [(&str, Body); 4] = [
    ("event_decoder", event_decoder),
    ("record_reader", record_reader),
    ("pipeline", pipeline),
    ("pcapng_export", pcapng_export),
];
