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
pub mod rules;
mod timeline;

pub use timeline::*;

use netflow_common::{event_flags, Point};

use crate::{
    correlate::expiry::Deadlines,
    decode::packet::Tuple,
    decode::{rule::RuleHit, Event, What},
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

/// Open timelines at most: under a burst (the agent with 50k connections
/// opening in seconds, its ticks ~100 ms apart while it drains the ring, rule
/// tracing holding ended packets back) they were ~200k, 300 MB. Beyond it
/// those due soonest are completed early and counted (`evicted`).
const MAX_OPEN: usize = 32768;

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

    pub fn push(&mut self, ev: Event) {
        match ev.what {
            What::Note { kind, tcp_state } => self.note(&ev, kind, tcp_state),
            What::End { reason, location }
                if ev.point == Point::Drop && ev.flags & event_flags::AFTER_DELIVERY != 0 =>
            {
                self.after_delivery(ev.skb, reason, location)
            }
            What::End { reason, location } => self.end(ev, reason, location),
            What::Socket => self.socket(ev),
            What::Hop { .. } | What::NftChain { .. } | What::IcmpError(_) => self.hop(ev),
            What::Route(_) => self.route(ev),
            What::Rule(_) => self.rule(ev),
        }
    }

    /// nftables traced the packet through a rule: on its timeline (joined by
    /// identity: the trace carries headers, no skb), or held until the
    /// packet's first hop comes out of the ring buffer.
    fn rule(&mut self, ev: Event) {
        let Some(fp) = identity(&ev).filter(joinable) else {
            self.unjoined_rules += 1;
            return;
        };
        let What::Rule(hit) = ev.what else { return };
        if let Some(o) = self.by_fp.get(&fp).and_then(|id| self.open.get_mut(id)) {
            o.tl.rules.push(hit);
            return;
        }
        if self.pending_count >= MAX_PENDING_RULES {
            self.unjoined_rules += self.pending_count as u64;
            self.pending_rules.clear();
            self.pending_count = 0;
        }
        self.pending_rules
            .entry(fp)
            .or_default()
            .push((ev.ts_ns, hit));
        self.pending_count += 1;
    }

    /// A routing decision joins its packet while that is on its way; one
    /// for a packet already ended (the kernel matched it by addresses to a
    /// packet delivered without a lookup) starts nothing.
    /// An IPv6 table without an answer says "unreachable" before the next
    /// rule's table is asked: a failed lookup followed by another one of the
    /// same packet is replaced by it (the last answer decides).
    fn route(&mut self, ev: Event) {
        let Some(o) = self
            .by_skb
            .get(&ev.skb)
            .and_then(|id| self.open.get_mut(id))
            .filter(|o| o.ended_at.is_none())
        else {
            return;
        };
        if o.tl
            .hops
            .last()
            .is_some_and(|h| h.route.is_some_and(|r| r.err != 0))
        {
            o.tl.hops.pop();
        }
        self.hop(ev);
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

    /// Socket events (no skb) are notes on the flow.
    fn note(&mut self, ev: &Event, kind: NoteKind, tcp_state: u8) {
        {
            let Some(p) = &ev.packet else { return };
            if self.note_counts.len() >= MAX_NOTE_FLOWS {
                // Bounded: counts of flows long gone restart.
                self.note_counts.clear();
            }
            let count = self.note_counts.entry((p.tuple, kind)).or_insert(0);
            *count += 1;
            self.notes.push(Note {
                ts_ns: ev.ts_ns,
                kind,
                tuple: p.tuple,
                netns: ev.netns,
                tcp_state,
                count: *count,
            });
        }
    }

    /// A socket took the packet: the skb as tracked, or a copy of it (joined
    /// by fingerprint). The timeline ends, held for the grace period (and
    /// its skb kept) so that a free right after is known as "after".
    /// A copy may be made in the skb of a packet delivered a moment ago (a
    /// raw socket's clone of an echo reply in the memory of a TCP segment
    /// just freed): the fingerprint tells them apart.
    fn socket(&mut self, ev: Event) {
        let grace = self.cfg.grace_ns;
        let fp = identity(&ev);
        let open = |o: &Open| {
            o.ended_at
                .is_none_or(|e| ev.ts_ns.saturating_sub(e) < grace)
        };
        let id = self
            .by_skb
            .get(&ev.skb)
            .copied()
            .filter(|id| {
                self.open
                    .get(id)
                    .is_some_and(|o| open(o) && o.same_packet(fp))
            })
            .or_else(|| {
                let fp = fp.filter(joinable)?;
                let id = self.by_fp.get(&fp).copied()?;
                self.open.get(&id).is_some_and(open).then_some(id)
            });
        // A packet never seen on a device (loopback): not on a path.
        let Some(id) = id else { return };
        let o = self.open.get_mut(&id).expect("timeline is open");
        if self.by_skb.insert(ev.skb, id) != Some(id) {
            o.skbs.push(ev.skb);
        }
        o.last_ts = o.last_ts.max(ev.ts_ns);
        o.ended_at = Some(ev.ts_ns);
        o.tl.delivered = true;
        o.tl.hops.push(Hop::new(ev));
        self.due.schedule(id, o.deadline(&self.cfg));
    }

    /// The kernel freed a packet a socket had taken. On its timeline when
    /// that is still open, else only counted.
    fn after_delivery(&mut self, skb: u64, reason: u32, location: u64) {
        let info = DropInfo {
            reason,
            location,
            outside_hook: true,
            purged: true,
        };
        match self.by_skb.get(&skb).and_then(|id| self.open.get_mut(id)) {
            Some(o) => o.tl.after = Some(info),
            None => self.late_after += 1,
        }
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

    fn new_timeline(&mut self, ts: u64, fp: Option<u64>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.open.insert(
            id,
            Open {
                tl: Timeline {
                    id,
                    // A packet across a node has ~10 hops: grow once at most.
                    hops: Vec::with_capacity(12),
                    verdict: Verdict::Unknown,
                    drop: None,
                    consumed_at: None,
                    delivered: false,
                    after: None,
                    incomplete: false,
                    counted: false,
                    drop_hook: None,
                    dns: None,
                    rules: fp
                        .and_then(|fp| self.pending_rules.remove(&fp))
                        .map(|v| {
                            self.pending_count -= v.len();
                            v.into_iter().map(|(_, r)| r).collect()
                        })
                        .unwrap_or_default(),
                    drop_rule: None,
                    explained: None,
                },
                skbs: Vec::new(),
                last_ts: ts,
                ended_at: None,
                fp,
                held: false,
            },
        );
        if let Some(fp) = fp.filter(joinable) {
            self.by_fp.insert(fp, id);
        }
        self.due.schedule(id, ts + self.cfg.idle_ns);
        id
    }

    fn hop(&mut self, mut ev: Event) {
        let fp = identity(&ev);
        let idle = self.cfg.idle_ns;
        // The same skb holds the same packet while its fingerprint holds: the
        // kernel may free an skb silently and reuse it for another packet.
        let held = self.cfg.held_ns.max(idle);
        let current = self.by_skb.get(&ev.skb).copied().filter(|id| {
            self.open.get(id).is_some_and(|o| {
                o.ended_at.is_none()
                    && ev.ts_ns.saturating_sub(o.last_ts) < if o.held { held } else { idle }
                    && o.same_packet(fp)
            })
        });
        let id = match current {
            Some(id) => id,
            None => {
                let joined = fp
                    .filter(joinable)
                    .and_then(|fp| self.by_fp.get(&fp).copied())
                    .filter(|id| {
                        self.open
                            .get(id)
                            .is_some_and(|o| o.can_join(ev.ts_ns, &self.cfg))
                    });
                let id = match joined {
                    Some(id) => id,
                    None => self.new_timeline(ev.ts_ns, fp),
                };
                self.by_skb.insert(ev.skb, id);
                if let Some(o) = self.open.get_mut(&id) {
                    o.skbs.push(ev.skb);
                }
                id
            }
        };
        let o = self
            .open
            .get_mut(&id)
            .expect("timeline of an indexed skb is open");
        if ev.ts_ns >= o.last_ts {
            let held = matches!(ev.point, Point::NfEarly | Point::NfLate)
                && matches!(ev.what, What::Hop { hook, .. } if hook == POSTROUTING);
            // At most MAX_HELD held at once: past POSTROUTING and then not
            // seen again is also what a packet whose next events were lost
            // looks like, and a burst of those held for seconds was most of
            // the agent's memory under 50k new connections.
            let held = held && (o.held || self.held < MAX_HELD);
            match (o.held, held) {
                (false, true) => self.held += 1,
                (true, false) => self.held -= 1,
                _ => {}
            }
            o.held = held;
        }
        o.last_ts = o.last_ts.max(ev.ts_ns);
        o.ended_at = None;
        if o.fp.is_none() {
            o.fp = fp;
        }
        if ev.data.is_empty() {
            // Header-only: the kernel saw the same addresses, ports and
            // encapsulation as at the packet's previous report.
            // (The previous report in time: a receive reported after the
            // hop that selected it, as for a NodePort call, came earlier.)
            let ts = ev.ts_ns;
            if let Some(prev) =
                o.tl.hops
                    .iter()
                    .filter(|h| h.packet.is_some() && h.ts_ns <= ts)
                    .max_by_key(|h| h.ts_ns)
            {
                ev.packet = prev.packet.clone();
                ev.data = prev.data.clone();
            }
        }
        o.tl.hops.push(Hop::new(ev));
    }

    fn end(&mut self, ev: Event, reason: u32, location: u64) {
        let id = match self.by_skb.remove(&ev.skb) {
            Some(id) if self.open.contains_key(&id) => id,
            // A packet we never saw on a device: nothing to report.
            _ if ev.point != Point::Drop => return,
            // A drop of a selected packet before any device saw it.
            _ => self.new_timeline(ev.ts_ns, identity(&ev)),
        };
        let o = self.open.get_mut(&id).expect("timeline is open");
        o.last_ts = o.last_ts.max(ev.ts_ns);
        o.ended_at = Some(ev.ts_ns);
        self.due.schedule(id, o.deadline(&self.cfg));
        if ev.point == Point::Drop {
            o.tl.counted |= ev.flags & event_flags::COUNTED != 0;
            o.tl.drop = Some(DropInfo {
                reason,
                location,
                outside_hook: ev.flags & event_flags::OUTSIDE_HOOK != 0,
                purged: ev.flags & event_flags::SOCKET_PURGE != 0,
            });
            o.tl.hops.push(Hop::new(ev));
        } else if ev.point == Point::Deliver {
            o.tl.delivered = true;
        } else {
            o.tl.consumed_at = Some(location);
        }
    }

    /// Flow notes since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Timelines that are complete at monotonic time `now_ns`.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Timeline> {
        if self.pending_count > 0 {
            let (mut gone, mut left) = (0, 0);
            self.pending_rules.retain(|_, v| {
                let before = v.len();
                v.retain(|(ts, _)| now_ns.saturating_sub(*ts) < PENDING_RULE_NS);
                gone += before - v.len();
                left += v.len();
                !v.is_empty()
            });
            self.unjoined_rules += gone as u64;
            self.pending_count = left;
        }
        let (open, cfg) = (&self.open, &self.cfg);
        let mut done = self
            .due
            .due(now_ns, |id| open.get(&id).map(|o| o.deadline(cfg)));
        if self.open.len() > MAX_OPEN {
            // Those due soonest first: packets that ended and wait only for
            // late copies or rule traces.
            let mut by_due: Vec<(u64, u64)> = self
                .open
                .iter()
                .map(|(id, o)| (o.deadline(cfg), *id))
                .collect();
            let n = self.open.len() - MAX_OPEN * 9 / 10;
            by_due.select_nth_unstable(n - 1);
            done.extend(by_due[..n].iter().map(|(_, id)| *id));
            done.sort_unstable();
            done.dedup();
            self.evicted += n as u64;
        }
        self.finish(done)
    }

    /// Packets whose timelines were completed early to keep them bounded.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Every timeline, complete or not (end of the run).
    /// A packet whose fate is unknown at the end of the run was still on its
    /// way when the trace stopped: it is marked `incomplete` (netflow did not
    /// see all of it), not counted as a packet that vanished.
    pub fn flush(&mut self) -> Vec<Timeline> {
        let all: Vec<u64> = self.open.keys().copied().collect();
        self.due.clear();
        let mut out = self.finish(all);
        for tl in &mut out {
            if tl.verdict == Verdict::Unknown {
                tl.incomplete = true;
            }
        }
        out
    }

    fn finish(&mut self, mut ids: Vec<u64>) -> Vec<Timeline> {
        ids.sort_unstable();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(mut o) = self.open.remove(&id) else {
                continue;
            };
            if o.held {
                self.held -= 1;
            }
            for skb in &o.skbs {
                if self.by_skb.get(skb) == Some(&id) {
                    self.by_skb.remove(skb);
                }
            }
            if let Some(fp) = o.fp {
                if self.by_fp.get(&fp) == Some(&id) {
                    self.by_fp.remove(&fp);
                }
            }
            o.tl.hops.sort_by_key(|h| h.ts_ns);
            annotate_nat(&mut o.tl.hops);
            if !o.tl.delivered && o.tl.drop.is_some_and(|d| d.purged) {
                // The free is no hop of its way: what was last seen is.
                if let Some(i) = o.tl.hops.iter().rposition(|h| h.point == Point::Drop) {
                    o.tl.hops.remove(i);
                }
            }
            if o.tl.delivered || o.tl.drop.is_some_and(|d| d.purged) {
                // Another copy was freed: the packet still reached its
                // socket. Or freed from a closing socket's queue: where no
                // socket hop says it arrived, its verdict is its last hop's
                // (unknown after a receive), never dropped.
                if let Some(d) = o.tl.drop.take() {
                    o.tl.after.get_or_insert(d);
                }
            }
            o.tl.drop_hook = drop_hook(&o.tl);
            o.tl.dns = dns_of(&o.tl, &self.cfg.dns_ports);
            o.tl.verdict = verdict(&o.tl);
            if !o.tl.rules.is_empty() {
                name_rules(&mut o.tl);
            }
            if o.tl.verdict == Verdict::Unclaimed {
                // Not a loss: what freed it is kept, as for frees after delivery.
                o.tl.after = o.tl.drop.take();
            }
            out.push(o.tl);
        }
        out
    }
}

/// The rules that dropped or translated the packet, where tracing saw them.
fn name_rules(tl: &mut Timeline) {
    if tl.verdict == Verdict::Dropped {
        tl.drop_rule = rules::drop_rule(&tl.rules);
    }
    for h in tl.hops.iter_mut() {
        if let Some(n) = h.nat {
            h.rule = rules::nat_rule(&tl.rules, n.kind == NatKind::Dnat).map(Box::new);
        }
    }
}

/// Mark each hop whose tuple differs from the previous hop's (NAT rewrote it).
fn annotate_nat(hops: &mut [Hop]) {
    let mut prev: Option<Tuple> = None;
    for h in hops.iter_mut() {
        let Some(t) = h.packet.as_ref().map(|p| p.tuple) else {
            continue;
        };
        if let Some(p) = prev {
            if p.proto == t.proto && p != t {
                h.nat = Some(if (p.dst, p.dport) != (t.dst, t.dport) {
                    Nat {
                        kind: NatKind::Dnat,
                        from: (p.dst, p.dport),
                        to: (t.dst, t.dport),
                    }
                } else {
                    Nat {
                        kind: NatKind::Snat,
                        from: (p.src, p.sport),
                        to: (t.src, t.sport),
                    }
                });
            }
        }
        prev = Some(t);
    }
}

/// The DNS message the packet carries (read from its first hop with bytes).
fn dns_of(tl: &Timeline, ports: &[u16]) -> Option<Box<crate::decode::dns::Message>> {
    tl.hops
        .iter()
        .find_map(|h| h.packet.as_ref().map(|p| (p, &h.data)))
        .and_then(|(p, data)| crate::decode::dns::of_packet(p, data, ports))
        .map(Box::new)
}

/// A dropped packet whose last netfilter hop is "early" at a hook, with no
/// "late" at that hook: that hook dropped it.
fn drop_hook(tl: &Timeline) -> Option<(u8, u8)> {
    if tl.drop?.outside_hook {
        return None;
    }
    let last_nf = tl
        .hops
        .iter()
        .rev()
        .find(|h| matches!(h.point, Point::NfEarly | Point::NfLate))?;
    (last_nf.point == Point::NfEarly).then_some((last_nf.hook, last_nf.pf))
}

fn verdict(tl: &Timeline) -> Verdict {
    if tl.delivered {
        return Verdict::Delivered;
    }
    // Group packets fan out as copies; one nobody took is no loss, unless
    // a firewall hook dropped it.
    let group = tl.tuple().is_some_and(|t| is_group_addr(&t.dst));
    if tl.drop.is_some() {
        return if group && tl.drop_hook.is_none() {
            Verdict::Unclaimed
        } else {
            Verdict::Dropped
        };
    }
    let last = tl.hops.iter().rev().find(|h| {
        matches!(
            h.point,
            Point::Rx | Point::Tx | Point::TcIngress | Point::TcEgress
        )
    });
    match (tl.consumed_at.is_some(), last.map(|h| h.point)) {
        (true, Some(Point::Rx | Point::TcIngress)) => Verdict::Delivered,
        (_, Some(Point::Tx | Point::TcEgress)) => Verdict::Forwarded,
        _ if group => Verdict::Unclaimed,
        _ => Verdict::Unknown,
    }
}

#[cfg(test)]
pub(crate) mod tests;
