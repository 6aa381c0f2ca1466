//! What the correlator produces: a packet's timeline (its hops, how it
//! ended, its verdict) and notes about flows.
use netflow_common::Point;

use super::rules::RuleMatch;
pub use crate::decode::NoteKind;
use crate::decode::{
    packet::{Packet, Tuple},
    rule::RuleHit,
    Event, IcmpError, RouteLookup, What,
};

/// What became of a packet (its word: `output::view::wire_verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forwarded,
    Delivered,
    Dropped,
    /// A multicast or broadcast packet that no socket on the node took (a
    /// router solicitation nobody answers): nobody's traffic was lost.
    Unclaimed,
    Unknown,
}

/// One place a packet was seen.
#[derive(Debug, Clone)]
pub struct Hop {
    pub ts_ns: u64,
    pub point: Point,
    pub skb: u64,
    pub netns: u32,
    pub ifindex: u32,
    pub ifname: String,
    pub len: u32,
    pub mark: u32,
    /// Netfilter hook number and family, for netfilter points.
    pub hook: u8,
    pub pf: u8,
    pub packet: Option<Packet>,
    /// The packet bytes as captured (network header on).
    pub data: Vec<u8>,
    /// The tuple changed since the previous hop: NAT.
    pub nat: Option<Nat>,
    /// nftables table and chain (kprobe upgrade on `nft_do_chain`).
    pub nft: Option<(String, String)>,
    /// The ICMP error the node sent about the packet (an `IcmpSend` hop).
    pub icmp: Option<IcmpError>,
    /// The rule that made this hop's translation (`nat`), where nftables
    /// tracing named it.
    pub rule: Option<Box<RuleMatch>>,
    /// The routing decision (a `Route` hop).
    pub route: Option<RouteLookup>,
}

impl Hop {
    /// A copy without the captured bytes (what a connection keeps of a hop
    /// to say where it went wrong: the headers are parsed in `packet`).
    pub fn without_bytes(&self) -> Self {
        Self {
            ts_ns: self.ts_ns,
            point: self.point,
            skb: self.skb,
            netns: self.netns,
            ifindex: self.ifindex,
            ifname: self.ifname.clone(),
            len: self.len,
            mark: self.mark,
            hook: self.hook,
            pf: self.pf,
            packet: self.packet.clone(),
            data: Vec::new(),
            nat: self.nat,
            nft: self.nft.clone(),
            icmp: self.icmp,
            rule: self.rule.clone(),
            route: self.route,
        }
    }

    pub(super) fn new(ev: Event) -> Self {
        let icmp = match ev.what {
            What::IcmpError(e) => Some(e),
            _ => None,
        };
        let route = match ev.what {
            What::Route(r) => Some(r),
            _ => None,
        };
        let (hook, pf, nft) = match ev.what {
            What::Hop { hook, pf } => (hook, pf, None),
            What::NftChain {
                hook,
                pf,
                table,
                chain,
            } => (hook, pf, Some((table, chain))),
            _ => (0, 0, None),
        };
        Hop {
            ts_ns: ev.ts_ns,
            point: ev.point,
            skb: ev.skb,
            netns: ev.netns,
            ifindex: ev.ifindex,
            ifname: ev.ifname,
            len: ev.len,
            mark: ev.mark,
            hook,
            pf,
            packet: ev.packet,
            nft,
            icmp,
            data: ev.data,
            nat: None,
            rule: None,
            route,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    Dnat,
    Snat,
}

/// An address translation between two hops: the endpoint that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat {
    pub kind: NatKind,
    pub from: (std::net::IpAddr, Option<u16>),
    pub to: (std::net::IpAddr, Option<u16>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropInfo {
    pub reason: u32,
    pub location: u64,
    /// Freed outside netfilter's hook code: not a hook's verdict.
    pub outside_hook: bool,
    /// Freed from a closing socket's queue: not a drop on its path.
    pub purged: bool,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    pub id: u64,
    pub hops: Vec<Hop>,
    pub verdict: Verdict,
    pub drop: Option<DropInfo>,
    /// Where a consumed packet was freed.
    pub consumed_at: Option<u64>,
    /// A socket took the packet (or, without the socket probe, its reader
    /// copied the data).
    pub delivered: bool,
    /// Freed after a socket took it (QUEUE_PURGE when the socket closed, a
    /// duplicate, a full receive queue), or a copy freed once another copy
    /// was delivered, or an unclaimed group packet let go: not a drop on its
    /// path.
    pub after: Option<DropInfo>,
    /// Events of this packet may be missing (the ring buffer was full while
    /// it was open).
    pub incomplete: bool,
    /// The guardrails had only counted it: its drop is its only report (its
    /// connection has it in the kernel's counts already).
    pub counted: bool,
    /// Netfilter hook (and family) where a dropped packet was last seen
    /// before its hook's filtering and never after.
    pub drop_hook: Option<(u8, u8)>,
    /// The rules nftables tracing saw the packet meet, in order.
    pub rules: Vec<RuleHit>,
    /// The rule that dropped it (see [`super::rules`]).
    pub drop_rule: Option<RuleMatch>,
    /// The cause behind its drop, from the node's evidence (see
    /// [`super::cause`]); set when it is complete.
    pub explained: Option<Box<super::cause::explained::Explained>>,
    /// The DNS message it carries; set when it is complete.
    pub dns: Option<Box<crate::decode::dns::Message>>,
}

impl Timeline {
    /// The packet's tuple at its first hop that has one.
    pub fn tuple(&self) -> Option<Tuple> {
        self.hops
            .iter()
            .find_map(|h| h.packet.as_ref().map(|p| p.tuple))
    }
}

/// Something about a flow rather than one packet: a TCP retransmission or a
/// reset sent by a socket.
#[derive(Debug, Clone)]
pub struct Note {
    pub ts_ns: u64,
    pub kind: NoteKind,
    pub tuple: Tuple,
    pub netns: u32,
    /// The socket's TCP state (`TCP_SYN_SENT` ...), see [`tcp_state_name`].
    pub tcp_state: u8,
    /// How many of this kind this flow had so far.
    pub count: u32,
}

pub fn tcp_state_name(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Multicast and broadcast destinations: copies go wherever someone might
/// listen, and a copy nobody wants is no loss.
pub fn is_group_addr(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        std::net::IpAddr::V6(a) => a.is_multicast(),
    }
}
