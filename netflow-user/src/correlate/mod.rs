//! The third step of an event's path: events → per-packet timelines. This
//! module owns packet identity: what makes two events the same packet.
//!
//! # Following one packet across the node
//!
//! **The skb is the packet, while it holds the same packet.** Every event
//! carries the address of its `struct sk_buff`. The kernel keeps one skb for
//! a packet from the device it arrived on (or the socket that sent it)
//! across veth pairs (`veth_xmit` hands the same skb to the peer), bridges,
//! routing and forwarding, every netfilter hook, NAT (conntrack rewrites
//! the headers in place) and VXLAN/IP-in-IP encapsulation and
//! decapsulation (headers are pushed and pulled in the same skb). So the
//! events of one skb address, in time order, are one packet's hops.
//!
//! **But skbs are reused.** An skb can be freed without any event (TCP
//! frees acknowledged segments, GRO merges and frees, a packet may be freed
//! on a path no probe watches) and its memory handed to the next packet.
//! Each packet therefore also carries its *fingerprint*
//! (`netflow_common::parse::fingerprint`, one definition shared with the
//! kernel programs: the innermost header's protocol, IPv4 ID, TCP seq and
//! ack, UDP length, ICMP type and id/seq). The addresses and ports are left
//! out, so NAT and encapsulation leave it unchanged, and it differs between
//! two packets of a flow. An event of a known skb with another fingerprint,
//! or after the timeline has been idle for `idle_ns`, starts a new timeline.
//! The kernel programs make the same check before they treat a tracked skb
//! as the packet they selected (`TRACKED` in the kernel maps).
//!
//! **Copies get new skbs.** When the kernel clones or copies a packet
//! (`skb_clone` for a raw socket or a multicast listener, `skb_copy`, a
//! tunnel that cannot reuse the headroom), the new skb's first event joins
//! the timeline that has the same fingerprint, if that timeline is still
//! open or ended less than `grace_ns` ago (a copy made just before the
//! original is freed). Only fingerprints that tell packets apart join (TCP,
//! ICMP, IPv4 with an ID); others start a timeline of their own.
//!
//! **Ends.** A timeline ends when the packet is freed (`kfree_skb` with a
//! reason: dropped; `consume_skb`: consumed), when a socket takes it
//! (delivered), or when no event came for `idle_ns` (its verdict then says
//! where it was last seen). A free of a packet a socket already took is
//! recorded as `after`, never as a drop on its path; so is a free of a
//! multicast copy nobody wanted (`unclaimed`).
//!
//! **What is not followed.** A packet the kernel builds anew from another
//! (an ICMP error quoting it, a TCP RST answering it, a fragment) is a new
//! packet; connections (see [`connections`]) relate them by their tuples.
// The per-event maps: a fast hasher (keys are kernel addresses and tuples).
use rustc_hash::FxHashMap as HashMap;

pub mod cause;
pub mod connections;
pub mod expiry;
pub mod filter;
mod finish;
mod ingest;
pub mod rules;
mod timeline;

pub use timeline::*;

use crate::{
    correlate::expiry::Deadlines,
    decode::packet::Tuple,
    decode::{rule::RuleHit, Event},
};

#[derive(Debug, Clone)]
pub struct Config {
    pub idle_ns: u64,
    pub grace_ns: u64,
    pub vxlan_ports: Vec<u16>,
    /// How long an ended timeline waits for rule trace events, which come
    /// over netlink rather than the ring buffer (0: no rule tracing).
    pub rule_hold_ns: u64,
    /// How long a packet past POSTROUTING and on no device yet may be held
    /// by the kernel (the neighbour queue while ARP/ND asks: 3 probes a
    /// second apart by default) before it is given up as unknown.
    pub held_ns: u64,
    /// Ports of DNS servers besides 53 (`--dns-port`).
    pub dns_ports: Vec<u16>,
    /// Open timelines kept at most, and open connections (from the run's
    /// memory budget, `crate::budget`).
    pub max_open: usize,
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_ns: 1_000_000_000,
            grace_ns: 20_000_000,
            vxlan_ports: crate::decode::packet::DEFAULT_VXLAN_PORTS.to_vec(),
            rule_hold_ns: 0,
            held_ns: 6_000_000_000,
            dns_ports: Vec::new(),
            max_open: crate::budget::Budget::default().timelines(),
            max_connections: crate::budget::Budget::default().connections(),
        }
    }
}

struct Open {
    tl: Timeline,
    /// skbs indexed in `by_skb` for this timeline.
    skbs: Vec<u64>,
    last_ts: u64,
    ended_at: Option<u64>,
    fp: Option<u64>,
    /// Last seen at POSTROUTING: on its way to a device, where the kernel
    /// may hold it for seconds (the neighbour queue).
    held: bool,
}

impl Open {
    /// When this timeline is complete, as things stand.
    fn deadline(&self, cfg: &Config) -> u64 {
        match self.ended_at {
            Some(t) => t + cfg.grace_ns.max(cfg.rule_hold_ns),
            None if self.held => self.last_ts + cfg.idle_ns.max(cfg.held_ns),
            None => self.last_ts + cfg.idle_ns,
        }
    }

    /// Can an event with this fingerprint be of this timeline's packet? An
    /// skb reused for another packet (freed silently, handed to the next
    /// one) carries another fingerprint; events without bytes carry none.
    fn same_packet(&self, fp: Option<u64>) -> bool {
        !matches!((self.fp, fp), (Some(a), Some(b)) if joinable(&a) && a != b)
    }

    /// May a new skb with this timeline's fingerprint continue it? A dropped
    /// packet never continues; a consumed one only within the grace period
    /// (a copy made just before the free).
    fn can_join(&self, ts: u64, cfg: &Config) -> bool {
        match self.ended_at {
            _ if self.tl.drop.is_some() => false,
            Some(end) => ts.saturating_sub(end) < cfg.grace_ns,
            None => ts.saturating_sub(self.last_ts) < cfg.idle_ns,
        }
    }
}

/// Netfilter's POSTROUTING hook number.
const POSTROUTING: u8 = 4;

// Open timelines are capped by `Config::max_open` (the run's budget): under
// a burst (the agent with 50k connections opening in seconds, its ticks
// ~100 ms apart while it drains the ring, rule tracing holding ended packets
// back) they were ~200k, 300 MB. Beyond it those due soonest are completed
// early and counted (`evicted`); one whose fate was still unknown reads
// `incomplete`, never a verdict.

/// Timelines held past POSTROUTING (`Open::held`) at most: the kernel's
/// neighbour queues hold ~100 packets per unresolved neighbour.
const MAX_HELD: usize = 4096;

/// Flows whose retransmissions/resets are counted at most.
const MAX_NOTE_FLOWS: usize = 65536;
/// Rule trace events waiting for their packet's first hop, at most.
const MAX_PENDING_RULES: usize = 4096;
/// How long a rule trace event waits for its packet.
const PENDING_RULE_NS: u64 = 1_000_000_000;

#[derive(Default)]
pub struct Correlator {
    notes: Vec<Note>,
    note_counts: HashMap<(Tuple, NoteKind), u32>,
    cfg: Config,
    by_skb: HashMap<u64, u64>,
    by_fp: HashMap<u64, u64>,
    open: HashMap<u64, Open>,
    /// Open timelines with `held` set.
    held: usize,
    evicted: u64,
    due: Deadlines,
    next_id: u64,
    late_after: u64,
    /// Rule trace events that came before their packet's first hop, by
    /// identity: (when, rule).
    pending_rules: HashMap<u64, Vec<(u64, RuleHit)>>,
    pending_count: usize,
    /// Rule trace events that joined no packet (no identity, or their
    /// packet never showed up).
    unjoined_rules: u64,
}

/// What joins a packet's events and copies: the fingerprint the kernel
/// shares (protocol, IPv4 ID, the word after the ports), narrowed by what
/// copies keep and the kernel does not need: the ICMP type (an echo reply
/// carries its request's id and seq) and the TCP ack (a connection's pure
/// ACKs share their seq). The top half (protocol, IPv4 ID) is left as is.
fn identity(ev: &Event) -> Option<u64> {
    let fp = ev.fp?;
    let ids = ev.packet.as_ref().map(|p| p.ids).unwrap_or_default();
    let icmp_type = ids.icmp.map(|(t, _, _)| t).unwrap_or(0) as u64;
    let ack = ids.tcp_ack.unwrap_or(0) as u64;
    Some(fp ^ ((ack.rotate_left(11) ^ icmp_type << 24) & 0xffff_ffff))
}

/// Only fingerprints that tell packets apart are used for joining.
/// (TCP and ICMP carry their own numbers; other IPv4 packets their IP ID.)
fn joinable(fp: &u64) -> bool {
    let proto = (fp >> 48) as u8;
    let ip_id = (fp >> 32) as u16;
    matches!(proto, 1 | 6 | 58) || ip_id != 0
}

impl Correlator {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            ..Default::default()
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// A packet of this skb is being followed.
    pub fn is_open(&self, skb: u64) -> bool {
        self.by_skb
            .get(&skb)
            .is_some_and(|id| self.open.contains_key(id))
    }

    /// Rule trace events that joined no packet so far.
    pub fn unjoined_rules(&self) -> u64 {
        self.unjoined_rules
    }

    /// Drops after delivery that came when their packet was already out.
    pub fn take_late_after(&mut self) -> u64 {
        std::mem::take(&mut self.late_after)
    }

    /// The kernel lost events: every open timeline may miss some.
    pub fn mark_incomplete(&mut self) {
        for o in self.open.values_mut() {
            o.tl.incomplete = true;
        }
    }

    /// Flow notes since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Packets whose timelines were completed early to keep them bounded.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
pub(crate) mod tests;
