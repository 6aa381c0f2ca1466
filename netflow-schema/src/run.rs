//! A run's records: its start, its TCP notes, its counters.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Flow;

/// The run starts (`"kind":"start"`, the first line): what is traced, on
/// which kernel, with which probes. A replay's start is the recorded run's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Start {
    /// The netflow that traced.
    pub netflow_version: String,
    /// The kernel's release (`uname -r`).
    pub kernel: String,
    /// What is selected, in words.
    pub summary: String,
    /// Every probe, on or off, and why.
    pub probes: Vec<Probe>,
    /// A replay: the recording it reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
}

/// One probe and whether it runs on this kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Probe {
    /// What it attaches to (a tracepoint, a hook, `nftables tracing`).
    pub target: String,
    pub on: bool,
    /// What it serves, or why it is off.
    pub note: String,
}

wire_enum! {
    /// A TCP event of a connection.
    pub enum TcpEvent {
        /// A segment sent again.
        Retransmit => "retransmit",
        /// A reset sent.
        Reset => "reset",
        /// A connect failed (its socket went from SYN_SENT to CLOSE), seen
        /// at the socket; `error` says why.
        ConnectFailed => "connect_failed",
    }
}

/// A TCP event (`"kind":"tcp"`), counted per connection and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TcpNote {
    pub event: TcpEvent,
    pub flow: Flow,
    pub netns: u32,
    pub netns_name: Option<String>,
    /// The socket's TCP state (`ESTABLISHED`, `SYN_SENT`, ...).
    pub state: String,
    pub count: u32,
    /// For `connect_failed`: the socket's error (`ECONNREFUSED`: a RST
    /// answered; `ETIMEDOUT`: no answer to its SYNs; `EHOSTUNREACH`,
    /// `ENETUNREACH`: an ICMP error answered; `none`: the application gave
    /// up first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counters of a run (`"kind":"stats"`): the last line, and the agent's
/// periodic ones. Every event lost, sampled or evicted is counted here.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    /// Events read from the ring buffer.
    pub events: u64,
    /// Events the kernel could not hand over (ring buffer full).
    pub lost: u64,
    /// Selected packets the guardrails only counted (no hops reported).
    pub sampled: u64,
    /// Records that could not be decoded.
    pub decode_errors: u64,
    /// Packet records written.
    pub packets: u64,
    pub dropped: u64,
    /// Packets whose last trace is neither a socket, a device's transmit, nor a drop.
    pub unknown: u64,
    /// Multicast/broadcast packets no socket on the node took (not drops).
    pub unclaimed: u64,
    /// Packets freed after a socket took them (not drops).
    pub after_delivery: u64,
    /// TCP notes (retransmissions and resets).
    pub notes: u64,
    /// Packets and connections still open when a stopped tracer ran out of
    /// time to print them (counted, not printed).
    pub unreported: u64,
    /// Packets still on their way when the trace stopped (or when events
    /// were lost): verdict unknown, marked incomplete.
    pub in_flight: u64,
    /// Connections reported before their end, and packets' records
    /// completed early, to keep the tables bounded.
    pub evicted: u64,
    /// Connection records, and how many of them had an outcome other than ok.
    pub connections: u64,
    pub connections_failed: u64,
}
