//! What every output implements ([`Sink`]) and what it is told: the probes
//! that run, the run's counters.
use serde::Serialize;

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

impl std::fmt::Display for ProbeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.active { "on " } else { "off" };
        write!(f, "{state} {:<22} {}", self.target, self.note)
    }
}

/// Output format, chosen once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    Json,
}

/// Counters of a run, printed at its end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Events read from the ring buffer.
    pub events: u64,
    /// Events the kernel could not hand over (ring buffer full).
    pub lost: u64,
    /// Selected packets the guardrails only counted (no hops reported).
    pub sampled: u64,
    /// Records that could not be decoded.
    pub decode_errors: u64,
    /// Packet timelines printed.
    pub packets: u64,
    pub dropped: u64,
    /// Packets whose last trace is neither a socket, a device's transmit, nor a drop.
    pub unknown: u64,
    /// Multicast/broadcast packets no socket on the node took (not drops).
    pub unclaimed: u64,
    /// Packets freed after a socket took them (not drops).
    pub after_delivery: u64,
    /// Flow notes (TCP retransmissions and resets).
    pub notes: u64,
    /// Packets and connections still open when a stopped tracer ran out of
    /// time to print them (counted, not printed).
    pub unreported: u64,
    /// Packets still on their way when the trace stopped (or when events were
    /// lost): verdict unknown, marked incomplete.
    pub in_flight: u64,
    /// Connections reported before their end, and packets' timelines
    /// completed early, to keep the tables bounded.
    pub evicted: u64,
    /// Connection records, and how many of them had an outcome other than ok.
    pub connections: u64,
    pub connections_failed: u64,
}

pub trait Sink {
    /// Tracing starts: what is selected and which probes run.
    fn start(&mut self, _summary: &str, _probes: &[ProbeStatus]) -> std::io::Result<()> {
        Ok(())
    }
    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()>;
    /// Counters so far (every poll).
    fn progress(&mut self, _s: &Stats) {}
    fn note(&mut self, n: &Note, names: &Names) -> std::io::Result<()>;
    /// A connection is over (or the run is).
    fn connection(&mut self, c: &Connection, names: &Names) -> std::io::Result<()>;
    fn stats(&mut self, s: &Stats) -> std::io::Result<()>;
    /// Push out what is buffered (called after each batch of timelines).
    fn flush(&mut self) -> std::io::Result<()>;
}
