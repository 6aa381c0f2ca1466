//! What every output implements ([`Sink`]) and what it is told: the probes
//! that run, the run's counters.
pub use netflow_schema::{Probe, Start};

use crate::{
    correlate::{connections::Connection, Note, Timeline},
    decode::names::Names,
};

/// One probe and whether it runs on this kernel.
#[derive(Debug, Clone)]
pub struct ProbeStatus {
    pub name: &'static str,
    pub target: String,
    pub active: bool,
    pub note: String,
}

impl ProbeStatus {
    /// As the start record says it.
    pub fn wire(&self) -> Probe {
        Probe {
            target: self.target.clone(),
            on: self.active,
            note: self.note.clone(),
        }
    }
}

impl std::fmt::Display for ProbeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&probe_line(&self.wire()))
    }
}

/// A probe as the start lines (and a recording's header) say it:
/// `on  tp_btf/net_dev_xmit       device transmits`.
pub fn probe_line(p: &Probe) -> String {
    let state = if p.on { "on " } else { "off" };
    format!("{state} {:<22} {}", p.target, p.note)
}

/// [`probe_line`] read back (a recording's header keeps the lines).
pub fn parse_probe_line(line: &str) -> Probe {
    let (state, rest) = line.split_at(line.len().min(4));
    let (target, note) = match rest.get(..22) {
        Some(t) if rest[22..].starts_with(' ') || rest.len() == 22 => (t, &rest[22..]),
        _ => rest.split_once(' ').unwrap_or((rest, "")),
    };
    Probe {
        target: target.trim().to_string(),
        on: state.trim() == "on",
        note: note.trim().to_string(),
    }
}

/// A run as the outputs are told of it when it starts.
#[derive(Debug, Clone)]
pub struct Run {
    /// The node's name on every record (its hostname, or `--node`).
    pub node: String,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, ns, when the run started.
    pub realtime_offset_ns: i128,
    /// When it started (CLOCK_MONOTONIC, ns).
    pub ts_ns: u64,
    pub start: Start,
}

/// Output format, chosen once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    Json,
}

/// Counters of a run, printed at its end.
pub use netflow_schema::Stats;

pub trait Sink {
    /// Tracing starts: what is selected, where, and which probes run.
    fn start(&mut self, _run: &Run) -> std::io::Result<()> {
        Ok(())
    }
    /// The realtime clock moved against the monotonic one (NTP stepped it):
    /// CLOCK_REALTIME - CLOCK_MONOTONIC now, ns.
    fn clock(&mut self, _realtime_offset_ns: i128) {}
    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()>;
    /// Counters so far (every poll).
    fn progress(&mut self, _s: &Stats) {}
    /// TCP state changes so far per network namespace, by
    /// `netflow_common::sock_class` (the agent's events mode).
    fn sockets(&mut self, _counts: &[(u32, [u64; netflow_common::sock_class::N])]) {}
    /// Failed flows followed hop by hop so far, and those skipped (the
    /// events mode's bounds).
    fn follows(&mut self, _followed: u64, _skipped: u64) {}
    fn note(&mut self, n: &Note, names: &Names) -> std::io::Result<()>;
    /// A connection is over (or the run is).
    fn connection(&mut self, c: &Connection, names: &Names) -> std::io::Result<()>;
    /// The run's counters at `now` (CLOCK_MONOTONIC, ns).
    fn stats(&mut self, s: &Stats, now: u64) -> std::io::Result<()>;
    /// Push out what is buffered (called after each batch of timelines).
    fn flush(&mut self) -> std::io::Result<()>;
}
