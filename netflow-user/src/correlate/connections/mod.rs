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
use std::net::IpAddr;

use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use crate::{
    correlate::expiry::Deadlines,
    correlate::rules::RuleMatch,
    correlate::{is_group_addr, DropInfo, Hop, Nat, NatKind, Timeline, Verdict},
    decode::packet::{decode_ip, Packet, Proto, Tuple},
};

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
pub mod dns;
mod walk;

pub trait CountSource {
    fn take(&mut self, t: &Tuple) -> Option<Counted>;
}

/// The counts of a connection's tuple, when it is reported.
pub type Counts<'a> = &'a mut dyn FnMut(&Tuple) -> Option<Counted>;

impl Dir {
    /// Packets only counted: those that were dropped were reported (and are
    /// in `dropped` already); the others arrived.
    fn add_counted(&mut self, packets: u64, bytes: u64) {
        let arrived = packets.saturating_sub(self.counted_dropped);
        self.counted_dropped = self.counted_dropped.saturating_sub(packets);
        self.counts.packets += packets;
        self.counts.bytes += bytes;
        self.counts.sampled += arrived;
        self.reached += arrived;
        self.accepted += arrived;
    }
}

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
}

/// One side of a conversation: address and port (ICMP echo: its id).
type Endpoint = (IpAddr, Option<u16>);
/// Endpoints in a fixed order, and the protocol.
type Key = (Proto, Endpoint, Endpoint);

fn key(t: &Tuple) -> Key {
    let (a, b) = ((t.src, t.sport), (t.dst, t.dport));
    if a <= b {
        (t.proto, a, b)
    } else {
        (t.proto, b, a)
    }
}

/// What a packet is, for connections.
enum Kind {
    /// Part of a conversation; `answer`: it can only come from a responder.
    Conv {
        answer: bool,
        reset: bool,
        fin: bool,
    },
    /// An ICMP error about a packet with this tuple.
    IcmpError(Tuple),
    /// Not part of a conversation (neighbour discovery, group traffic).
    Other,
}

const ICMP_ECHO: [(Proto, u8, u8); 2] = [(Proto::Icmp, 8, 0), (Proto::Icmpv6, 128, 129)];

/// The packet's tuple for connections: ICMP echoes carry their id as ports.
fn conv_tuple(p: &Packet) -> Tuple {
    let mut t = p.tuple;
    if let Some((_, id, _)) = p.ids.icmp {
        if matches!(t.proto, Proto::Icmp | Proto::Icmpv6) {
            t.sport = Some(id);
            t.dport = Some(id);
        }
    }
    t
}

fn kind(p: &Packet, data: &[u8]) -> Kind {
    if is_group_addr(&p.tuple.dst) {
        return Kind::Other;
    }
    match p.tuple.proto {
        Proto::Tcp => {
            let f = p.tcp_flags.as_deref().unwrap_or("");
            Kind::Conv {
                answer: f.contains('S') && f.contains('.'),
                reset: f.contains('R'),
                fin: f.contains('F'),
            }
        }
        Proto::Udp => Kind::Conv {
            answer: false,
            reset: false,
            fin: false,
        },
        proto @ (Proto::Icmp | Proto::Icmpv6) => {
            let Some((ty, _, _)) = p.ids.icmp else {
                return Kind::Other;
            };
            if let Some((_, _, reply)) = ICMP_ECHO
                .iter()
                .find(|(pr, req, rep)| *pr == proto && (ty == *req || ty == *rep))
            {
                return Kind::Conv {
                    answer: ty == *reply,
                    reset: false,
                    fin: false,
                };
            }
            let error = match proto {
                Proto::Icmp => matches!(ty, 3 | 11 | 12),
                _ => matches!(ty, 1..=4),
            };
            match error.then(|| quoted(data)).flatten() {
                Some(t) => Kind::IcmpError(t),
                None => Kind::Other,
            }
        }
        Proto::Other(_) => Kind::Other,
    }
}

/// The tuple of the packet an ICMP error quotes (after the outer IP header
/// and the 8-byte ICMP header).
fn quoted(data: &[u8]) -> Option<Tuple> {
    let ip_len = match data.first()? >> 4 {
        4 => ((data[0] & 0x0f) as usize) * 4,
        6 => 40,
        _ => return None,
    };
    let inner = data.get(ip_len + 8..)?;
    decode_ip(inner, &[]).ok().map(|p| conv_tuple(&p))
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Quiet time after a close before the connection is reported (late
    /// packets of it are still completing).
    pub settle_ns: u64,
    /// A connection with no packet for this long is reported.
    pub idle_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            settle_ns: 2_000_000_000,
            idle_ns: 10_000_000_000,
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
/// [`MAX_OPEN`]): the hops it may report are boxed and carry no packet bytes.
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
}

impl Open {
    fn outcome(&self) -> (Outcome, Option<Where>) {
        // Events lost, or only answers seen (it began before the trace).
        if self.incomplete || self.fwd.counts.packets == 0 {
            return (Outcome::Incomplete, None);
        }
        if let Some(w) = self.refused.as_ref().filter(|_| self.rev.accepted == 0) {
            // Where the request died (e.g. NO_SOCKET at the server) says more
            // than where the RST or ICMP error went; kernels before 6.10 have
            // no reset event without a socket, so only the drop tells.
            let died = self.fwd.failed.as_deref().filter(|f| f.drop.is_some());
            return (Outcome::Refused, Some(died.unwrap_or(w).clone()));
        }
        if self.fwd.reached == 0 {
            return (Outcome::RequestLost, self.fwd.failed.as_deref().cloned());
        }
        if self.rev.counts.packets == 0 {
            let at = self.fwd.arrived.as_deref().map(|hop| Where {
                hop: hop.clone(),
                drop: None,
                drop_hook: None,
                rule: None,
                explained: None,
            });
            return (Outcome::NoReply, at);
        }
        if self.rev.reached == 0 {
            return (Outcome::ReplyLost, self.rev.failed.as_deref().cloned());
        }
        if let Some(dns::Result::Error(_)) = self.dns.as_ref().and_then(|d| d.result()) {
            return (Outcome::DnsError, None);
        }
        (Outcome::Ok, None)
    }

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

/// Open connections kept at most (memory stays bounded under a flood of
/// new flows).
pub const MAX_OPEN: usize = 50_000;

fn where_of(tl: &Timeline) -> Option<Box<Where>> {
    Some(Box::new(Where {
        hop: tl.hops.last()?.without_bytes(),
        drop: tl.drop,
        drop_hook: tl.drop_hook,
        rule: tl.drop_rule.clone(),
        explained: tl.explained.clone(),
    }))
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

    /// Add a completed packet timeline.
    pub fn add(&mut self, tl: &Timeline) {
        let Some((first, data)) = tl
            .hops
            .iter()
            .find_map(|h| h.packet.as_ref().map(|p| (p, &h.data)))
        else {
            return;
        };
        let (answer, reset, fin) = match kind(first, data) {
            Kind::Other => return,
            Kind::IcmpError(quoted) => return self.icmp_error(tl, &quoted),
            Kind::Conv { answer, reset, fin } => (answer, reset, fin),
        };
        let mut tuples: Vec<Tuple> = Vec::with_capacity(2);
        for p in tl.hops.iter().filter_map(|h| h.packet.as_ref()) {
            let t = conv_tuple(p);
            if !tuples.contains(&t) {
                tuples.push(t);
            }
        }
        let ts = tl.hops.first().map(|h| h.ts_ns).unwrap_or(0);
        let id = match tuples.iter().find_map(|t| self.by_key.get(&key(t))) {
            Some(id) => *id,
            None => self.create(&tuples, answer, ts),
        };
        let o = self.open.get_mut(&id).expect("indexed connection is open");
        let fwd = tuples.iter().any(|t| o.fwd_tuples.contains(t));
        for t in &tuples {
            let k = key(t);
            if !o.keys.contains(&k) {
                o.keys.push(k);
                self.by_key.insert(k, id);
            }
            let f = if fwd { *t } else { t.reversed() };
            if !o.fwd_tuples.contains(&f) {
                o.fwd_tuples.push(f);
            }
        }
        if fwd && o.nat.is_none() {
            let mut nats = tl.hops.iter().filter_map(|h| h.nat);
            o.nat = nats.next();
            o.nat2 = nats.find(|n| Some(n.kind) != o.nat.map(|f| f.kind));
        }
        if fwd && o.dnat_rule.is_none() {
            o.dnat_rule = tl
                .hops
                .iter()
                .find(|h| h.nat.is_some_and(|n| n.kind == NatKind::Dnat))
                .and_then(|h| h.rule.clone());
        }
        o.first_ts = o.first_ts.min(ts);
        o.last_ts = o.last_ts.max(tl.hops.last().map(|h| h.ts_ns).unwrap_or(ts));
        o.incomplete |= tl.incomplete;
        if let Some(m) = &tl.dns {
            o.dns
                .get_or_insert_with(Default::default)
                .see((**m).clone(), ts);
        }
        if reset {
            o.reset = true;
            if !fwd && o.refused.is_none() {
                o.refused = where_of(tl);
            }
        }
        // The kernel answered a request with a RST (nothing listens).
        if fwd
            && tl
                .hops
                .iter()
                .any(|h| h.point == netflow_common::Point::TcpReset)
        {
            o.refused
                .get_or_insert_with(|| where_of(tl).expect("a hop"));
        }
        let d = if fwd { &mut o.fwd } else { &mut o.rev };
        d.fin |= fin;
        let dl = o.deadline(&self.cfg);
        self.due.schedule(id, dl);
        let d = if fwd { &mut o.fwd } else { &mut o.rev };
        if tl.counted {
            d.counted_dropped += 1;
        } else {
            d.counts.packets += 1;
            d.counts.bytes += tl.hops.first().map(|h| h.len as u64).unwrap_or(0);
        }
        match tl.verdict {
            Verdict::Delivered | Verdict::Forwarded => {
                if tl.verdict == Verdict::Delivered {
                    d.counts.delivered += 1;
                }
                d.reached += 1;
                if !reset {
                    d.accepted += 1;
                }
                if let Some(h) = tl.hops.last() {
                    match &mut d.arrived {
                        Some(b) => **b = h.without_bytes(),
                        None => d.arrived = Some(Box::new(h.without_bytes())),
                    }
                }
            }
            Verdict::Dropped | Verdict::Unknown | Verdict::Unclaimed => {
                if tl.verdict == Verdict::Dropped {
                    d.counts.dropped += 1;
                }
                if d.failed
                    .as_ref()
                    .is_none_or(|w| w.drop.is_none() && tl.drop.is_some())
                {
                    d.failed = where_of(tl);
                }
            }
        }
    }

    fn create(&mut self, tuples: &[Tuple], answer: bool, ts: u64) -> u64 {
        self.next_id += 1;
        let fwd_tuples: Vec<Tuple> = if answer {
            tuples.iter().map(Tuple::reversed).collect()
        } else {
            tuples.to_vec()
        };
        self.open.insert(
            self.next_id,
            Open {
                tuple: fwd_tuples[0],
                fwd_tuples,
                keys: Vec::new(),
                fwd: Dir::default(),
                rev: Dir::default(),
                first_ts: ts,
                last_ts: ts,
                nat: None,
                nat2: None,
                dnat_rule: None,
                refused: None,
                reset: false,
                incomplete: ts <= self.suspect_until,
                dns: None,
            },
        );
        self.next_id
    }

    /// An ICMP error quoting a packet of a connection we know: an
    /// unreachable answers it (refused); others are left to the packet view.
    fn icmp_error(&mut self, tl: &Timeline, quoted: &Tuple) {
        let Some(o) = self
            .by_key
            .get(&key(quoted))
            .and_then(|id| self.open.get_mut(id))
        else {
            return;
        };
        let unreachable = tl
            .hops
            .iter()
            .find_map(|h| h.packet.as_ref())
            .and_then(|p| p.ids.icmp)
            .is_some_and(|(ty, _, _)| ty == 3 || ty == 1);
        if unreachable && o.refused.is_none() {
            // Where the request ended is the better answer than the error's path.
            o.refused = o.fwd.failed.clone().or_else(|| where_of(tl));
        }
        o.last_ts = o.last_ts.max(tl.hops.last().map(|h| h.ts_ns).unwrap_or(0));
    }

    /// The kernel lost events up to `now_ns`: connections open now, and those
    /// whose first packet is older, may miss packets.
    pub fn mark_incomplete(&mut self, now_ns: u64) {
        self.suspect_until = now_ns;
        for o in self.open.values_mut() {
            o.incomplete = true;
        }
    }

    /// Connections that are over at `now_ns`, with the packets only counted;
    /// beyond [`MAX_OPEN`] open ones, the least recently active are reported
    /// early (and counted in `evicted`).
    pub fn expire(&mut self, now_ns: u64, counts: Counts) -> Vec<Connection> {
        let (open, cfg) = (&self.open, &self.cfg);
        let mut done = self
            .due
            .due(now_ns, |id| open.get(&id).map(|o| o.deadline(cfg)));
        if self.open.len() > MAX_OPEN {
            let mut by_age: Vec<(u64, u64)> =
                self.open.iter().map(|(id, o)| (o.last_ts, *id)).collect();
            let n = self.open.len() - MAX_OPEN * 9 / 10;
            by_age.select_nth_unstable(n - 1);
            done.extend(by_age[..n].iter().map(|(_, id)| *id));
            done.sort_unstable();
            done.dedup();
            self.evicted += n as u64;
        }
        let done = self.finish(done, counts);
        self.walks.settle(done, now_ns)
    }

    /// Connections reported early to keep the table bounded, so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Every connection (end of the run).
    pub fn flush(&mut self, counts: Counts) -> Vec<Connection> {
        let all: Vec<u64> = self.open.keys().copied().collect();
        self.due.clear();
        let done = self.finish(all, counts);
        // Whatever a walk held goes out too.
        self.walks.settle(done, u64::MAX)
    }

    fn finish(&mut self, mut ids: Vec<u64>, counts: Counts) -> Vec<Connection> {
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| {
                let mut o = self.open.remove(&id)?;
                let tuples: Vec<Tuple> = o
                    .fwd_tuples
                    .iter()
                    .filter(|t| matches!(t.proto, Proto::Tcp | Proto::Udp))
                    .copied()
                    .collect();
                let mut at_sockets = SocketCounts::default();
                for t in &tuples {
                    if let Some(k) = counts(t) {
                        o.fwd.add_counted(k.fwd_packets, k.fwd_bytes);
                        o.rev.add_counted(k.rev_packets, k.rev_bytes);
                        at_sockets = at_sockets.max(k.at_sockets);
                    }
                }
                o.fwd
                    .add_counted(at_sockets.fwd_packets, at_sockets.fwd_bytes);
                o.rev
                    .add_counted(at_sockets.rev_packets, at_sockets.rev_bytes);
                for k in &o.keys {
                    if self.by_key.get(k) == Some(&id) {
                        self.by_key.remove(k);
                    }
                }
                let (outcome, at) = o.outcome();
                Some(Connection {
                    tuple: o.tuple,
                    outcome,
                    at,
                    fwd: o.fwd.counts,
                    rev: o.rev.counts,
                    first_ts_ns: o.first_ts,
                    last_ts_ns: o.last_ts,
                    nat: o.nat,
                    translations: o.nat.into_iter().chain(o.nat2).collect(),
                    dnat_rule: o.dnat_rule,
                    counted_at_sockets: at_sockets.fwd_packets + at_sockets.rev_packets,
                    dns: o.dns,
                })
            })
            .collect()
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests;
