//! Connections: the packets of both directions of one conversation, across
//! NAT, and the answer an SRE looks for first — did the request reach the
//! server's socket, did the server answer, did the answer come back.
//!
//! Completed packet timelines come in from the correlator. A connection is
//! keyed by each tuple its packets showed (before and after NAT, endpoints
//! in either order), so a Service call — client → VIP, then client → pod
//! after DNAT, and the reply un-DNAT'd on its way back — is one connection.
//! The initiator is the side that sent the first packet, unless that packet
//! is itself an answer (a SYN-ACK, an echo reply). ICMP errors join the
//! connection of the packet they quote.
//!
//! A connection is reported when it closed (FIN both ways, or a RST) and
//! then stayed quiet for `settle_ns`, when it was idle for `idle_ns`, and at
//! the end of the run.
use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use crate::{
    correlate::expiry::Deadlines,
    correlate::rules::RuleMatch,
    correlate::{DropInfo, Hop, Nat},
    decode::packet::Tuple,
};

mod classify;
pub mod dns;
mod ingest;
mod report;
mod walk;

use classify::{key, Key};

/// How a connection went (its word: `output::view::wire_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request reached the responder's socket and the reply reached the initiator's.
    Ok,
    /// The initiator's packets never reached the responder's socket.
    RequestLost,
    /// The responder's socket took the request and nothing came back.
    NoReply,
    /// The reply left the responder but never reached the initiator's socket.
    ReplyLost,
    /// A RST or an ICMP unreachable answered.
    Refused,
    /// A DNS server answered the lookup with an error (NXDOMAIN, SERVFAIL,
    /// REFUSED ...): the transport worked, the name did not resolve.
    DnsError,
    /// netflow did not see the whole connection (the kernel lost events of
    /// it, or it began before the trace): no answer is given.
    Incomplete,
}

/// Counts of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirCounts {
    /// Every selected packet, traced or only counted.
    pub packets: u64,
    pub bytes: u64,
    /// Taken by a socket on this node (of the traced packets).
    pub delivered: u64,
    /// Dropped on their path (not after delivery); every drop is traced.
    pub dropped: u64,
    /// Only counted by the guardrails (no hops reported).
    pub sampled: u64,
}

/// Packets the kernel only counted (guardrails) for one tuple of a
/// connection, by direction relative to that tuple.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counted {
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
    /// Counted by the sockets of the node (the agent): a connection whose
    /// ends are both here has the same packets under each of its tuples
    /// (before and after NAT), so the tuples' figures are not added: the
    /// largest is taken.
    #[serde(default)]
    pub at_sockets: SocketCounts,
}

/// Packets and bytes counted at the sockets, by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SocketCounts {
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    pub rev_packets: u64,
    pub rev_bytes: u64,
}

impl SocketCounts {
    fn max(self, o: SocketCounts) -> SocketCounts {
        SocketCounts {
            fwd_packets: self.fwd_packets.max(o.fwd_packets),
            fwd_bytes: self.fwd_bytes.max(o.fwd_bytes),
            rev_packets: self.rev_packets.max(o.rev_packets),
            rev_bytes: self.rev_bytes.max(o.rev_bytes),
        }
    }
}

/// Where the counts of only-counted packets come from: the kernel's map in
/// a live run, the recording in a replay. `take` removes them.
pub trait CountSource {
    fn take(&mut self, t: &Tuple) -> Option<Counted>;
}

/// The counts of a connection's tuple, when it is reported.
pub type Counts<'a> = &'a mut dyn FnMut(&Tuple) -> Option<Counted>;

/// Where a connection went wrong: the hop, and the drop there if any.
#[derive(Debug, Clone)]
pub struct Where {
    pub hop: Hop,
    pub drop: Option<DropInfo>,
    /// Netfilter hook (and family) of a filtered drop.
    pub drop_hook: Option<(u8, u8)>,
    /// The rule that dropped it, where nftables tracing named it.
    pub rule: Option<crate::correlate::rules::RuleMatch>,
    /// The cause behind the drop, from the node's evidence.
    pub explained: Option<Box<crate::correlate::cause::Explained>>,
}

/// A connection, as reported.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The initiator's tuple, at its first hop.
    pub tuple: Tuple,
    pub outcome: Outcome,
    pub at: Option<Where>,
    pub fwd: DirCounts,
    pub rev: DirCounts,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    /// The first translation the initiator's packets went through.
    pub nat: Option<Nat>,
    /// Every translation they went through, in order (DNAT to the pod, then
    /// SNAT to the node, for a NodePort call).
    pub translations: Vec<Nat>,
    /// The rule behind the destination translation, with its Service and
    /// how the call reached it (NodePort, externalIP, ...).
    pub dnat_rule: Option<Box<RuleMatch>>,
    /// Of its packets, those the sockets counted (the agent's counting).
    pub counted_at_sockets: u64,
    /// Its DNS lookups, when it is one.
    pub dns: Option<Box<dns::Lookups>>,
    /// Its first packet was read at a socket (the agent's events mode:
    /// DNS, a UDP conversation's first datagram each way), not followed
    /// across the node from a device.
    pub read_at_sockets: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Quiet time after a close before the connection is reported (late
    /// packets of it are still completing).
    pub settle_ns: u64,
    /// A connection with no packet for this long is reported.
    pub idle_ns: u64,
    /// Open connections kept at most (from the run's memory budget): the
    /// least recently active beyond it are reported early and counted in
    /// `evicted`.
    pub max_open: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            settle_ns: 2_000_000_000,
            idle_ns: 10_000_000_000,
            max_open: crate::budget::Budget::default().connections(),
        }
    }
}

/// A direction's state beyond its counts.
#[derive(Debug, Default)]
struct Dir {
    counts: DirCounts,
    /// Packets that reached a socket or left the node.
    reached: u64,
    /// Of those, packets that were not RSTs or ICMP errors.
    accepted: u64,
    /// The first packet that did not arrive: its last hop and drop.
    failed: Option<Box<Where>>,
    /// The last hop where one of its packets arrived (without its bytes).
    arrived: Option<Box<Hop>>,
    fin: bool,
    /// Drops of packets the kernel only counted (in its counts already).
    counted_dropped: u64,
}

/// An open connection. Kept small (a few hundred bytes, in a map of up to
/// [`Config::max_open`]): the hops it may report are boxed and carry no packet bytes.
struct Open {
    tuple: Tuple,
    /// Tuples of the initiator's direction (before and after NAT).
    fwd_tuples: Vec<Tuple>,
    keys: Vec<Key>,
    fwd: Dir,
    rev: Dir,
    first_ts: u64,
    last_ts: u64,
    nat: Option<Nat>,
    /// A second translation of the initiator's packets (the SNAT after a
    /// NodePort's DNAT).
    nat2: Option<Nat>,
    /// The rule behind the destination translation, with its Service.
    dnat_rule: Option<Box<RuleMatch>>,
    /// The responder (or a node on the way) answered with RST / ICMP unreachable.
    refused: Option<Box<Where>>,
    reset: bool,
    incomplete: bool,
    /// Its DNS queries and responses, when it is a lookup.
    dns: Option<Box<dns::Lookups>>,
    /// See [`Connection::read_at_sockets`].
    read_at_sockets: bool,
}

impl Open {
    fn closed(&self) -> bool {
        self.reset || (self.fwd.fin && self.rev.fin)
    }

    /// When it is reported, as things stand.
    fn deadline(&self, cfg: &Config) -> u64 {
        self.last_ts
            + if self.closed() {
                cfg.settle_ns
            } else {
                cfg.idle_ns
            }
    }
}

#[derive(Default)]
pub struct Connections {
    cfg: Config,
    by_key: HashMap<Key, u64>,
    open: HashMap<u64, Open>,
    due: Deadlines,
    next_id: u64,
    /// Events were lost up to this time: connections that began before it
    /// may miss packets.
    suspect_until: u64,
    evicted: u64,
    /// Search-path walks being put together (see [`walk`]).
    walks: walk::Walks,
}

impl crate::correlate::cause::Translations for Connections {
    /// `t` (server -> client) answers a request that was DNAT'd to `t`'s
    /// source: the translation its reply should have been reversed by.
    fn dnat_of_reply(&self, t: &Tuple) -> Option<Nat> {
        let o = self.open.get(self.by_key.get(&key(t))?)?;
        let n = o
            .nat
            .filter(|n| n.kind == crate::correlate::NatKind::Dnat)?;
        ((t.src, t.sport) == n.to && o.fwd_tuples.contains(&t.reversed())).then_some(n)
    }
}

impl Connections {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            ..Default::default()
        }
    }

    /// The kernel lost events up to `now_ns`: connections open now, and those
    /// whose first packet is older, may miss packets.
    pub fn mark_incomplete(&mut self, now_ns: u64) {
        self.suspect_until = now_ns;
        for o in self.open.values_mut() {
            o.incomplete = true;
        }
    }

    /// Connections reported early to keep the table bounded, so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests;
