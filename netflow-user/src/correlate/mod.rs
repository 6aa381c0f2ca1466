//! Joining events into per-packet timelines.
//!
//! A packet is identified by its `struct sk_buff *` while the kernel keeps
//! the same skb: across veth pairs, bridges, routing, NAT and VXLAN/IP-in-IP
//! encapsulation. When the kernel clones or copies a packet into a new skb,
//! the new skb is joined to the packet's timeline by its [`Fingerprint`]
//! (IPv4 ID, TCP seq/ack, ICMP id/seq, IP payload length), which survives
//! NAT because it leaves addresses and ports out.
//!
//! A timeline ends when the packet is freed (dropped with a reason, or
//! consumed), or when no event arrived for `idle_ns`. Ended timelines are
//! held for `grace_ns` so that a copy made just before the free still joins.
// The per-event maps: a fast hasher (keys are kernel addresses and tuples).
use rustc_hash::FxHashMap as HashMap;

pub mod connections;
pub mod expiry;
pub mod filter;

use netflow_common::{event_flags, Point};

use crate::{
    correlate::expiry::Deadlines,
    decode::packet::{Fingerprint, Packet, Tuple},
    decode::Event,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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
}

impl Hop {
    fn new(ev: Event, packet: Option<Packet>) -> Self {
        Hop {
            ts_ns: ev.ts_ns,
            point: ev.point,
            skb: ev.skb,
            netns: ev.netns,
            ifindex: ev.ifindex,
            ifname: ev.ifname,
            len: ev.len,
            mark: ev.mark,
            hook: ev.hook,
            pf: ev.pf,
            packet,
            nft: (ev.point == Point::NftChain).then(|| nft_names(&ev.data)),
            data: ev.data,
            nat: None,
        }
    }
}

/// Table and chain names of an `NftChain` event: two NUL-terminated halves.
fn nft_names(data: &[u8]) -> (String, String) {
    let half = data.len() / 2;
    let s = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    (s(&data[..half]), s(&data[half..]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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
}

impl Timeline {
    /// The packet's tuple at its first hop that has one.
    pub fn tuple(&self) -> Option<Tuple> {
        self.hops
            .iter()
            .find_map(|h| h.packet.as_ref().map(|p| p.tuple))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub idle_ns: u64,
    pub grace_ns: u64,
    pub vxlan_ports: Vec<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_ns: 1_000_000_000,
            grace_ns: 20_000_000,
            vxlan_ports: crate::decode::packet::DEFAULT_VXLAN_PORTS.to_vec(),
        }
    }
}

struct Open {
    tl: Timeline,
    /// skbs indexed in `by_skb` for this timeline.
    skbs: Vec<u64>,
    last_ts: u64,
    ended_at: Option<u64>,
    fp: Option<Fingerprint>,
}

impl Open {
    /// When this timeline is complete, as things stand.
    fn deadline(&self, cfg: &Config) -> u64 {
        match self.ended_at {
            Some(t) => t + cfg.grace_ns,
            None => self.last_ts + cfg.idle_ns,
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteKind {
    Retransmit,
    Reset,
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

/// Flows whose retransmissions/resets are counted at most.
const MAX_NOTE_FLOWS: usize = 65536;

#[derive(Default)]
pub struct Correlator {
    notes: Vec<Note>,
    note_counts: HashMap<(Tuple, NoteKind), u32>,
    cfg: Config,
    by_skb: HashMap<u64, u64>,
    by_fp: HashMap<Fingerprint, u64>,
    open: HashMap<u64, Open>,
    due: Deadlines,
    next_id: u64,
    late_after: u64,
}

/// Only fingerprints that tell packets apart are used for joining.
fn joinable(fp: &Fingerprint) -> bool {
    fp.tcp_seq.is_some() || fp.icmp.is_some() || fp.ip_id.is_some_and(|id| id != 0)
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
        let packet = ev.packet(&self.cfg.vxlan_ports);
        // Socket events (no skb) are notes on the flow.
        if ev.skb == 0 && matches!(ev.point, Point::TcpRetransmit | Point::TcpReset) {
            let Some(p) = packet else { return };
            let kind = if ev.point == Point::TcpRetransmit {
                NoteKind::Retransmit
            } else {
                NoteKind::Reset
            };
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
                tcp_state: ev.reason as u8,
                count: *count,
            });
            return;
        }
        match ev.point {
            Point::Drop if ev.flags & event_flags::AFTER_DELIVERY != 0 => self.after_delivery(ev),
            Point::Drop | Point::Consume | Point::Deliver => self.end(ev, packet),
            Point::Socket => self.socket(ev, packet),
            _ => self.hop(ev, packet),
        }
    }

    /// A socket took the packet: the skb as tracked, or a copy of it (joined
    /// by fingerprint). The timeline ends, held for the grace period (and
    /// its skb kept) so that a free right after is known as "after".
    fn socket(&mut self, ev: Event, packet: Option<Packet>) {
        let grace = self.cfg.grace_ns;
        let open = |o: &Open| {
            o.ended_at
                .is_none_or(|e| ev.ts_ns.saturating_sub(e) < grace)
        };
        let id = self
            .by_skb
            .get(&ev.skb)
            .copied()
            .filter(|id| self.open.get(id).is_some_and(open))
            .or_else(|| {
                let fp = packet.as_ref().map(|p| p.fp).filter(joinable)?;
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
        o.tl.hops.push(Hop::new(ev, packet));
        self.due.schedule(id, o.deadline(&self.cfg));
    }

    /// The kernel freed a packet a socket had taken. On its timeline when
    /// that is still open, else only counted.
    fn after_delivery(&mut self, ev: Event) {
        let info = DropInfo {
            reason: ev.reason,
            location: ev.location,
            outside_hook: true,
        };
        match self
            .by_skb
            .get(&ev.skb)
            .and_then(|id| self.open.get_mut(id))
        {
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

    fn new_timeline(&mut self, ts: u64, fp: Option<Fingerprint>) -> u64 {
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
                },
                skbs: Vec::new(),
                last_ts: ts,
                ended_at: None,
                fp,
            },
        );
        if let Some(fp) = fp.filter(joinable) {
            self.by_fp.insert(fp, id);
        }
        self.due.schedule(id, ts + self.cfg.idle_ns);
        id
    }

    fn hop(&mut self, ev: Event, packet: Option<Packet>) {
        let fp = packet.as_ref().map(|p| p.fp);
        let idle = self.cfg.idle_ns;
        // The same skb holds the same packet while its fingerprint holds: the
        // kernel may free an skb silently and reuse it for another packet.
        let current = self.by_skb.get(&ev.skb).copied().filter(|id| {
            self.open.get(id).is_some_and(|o| {
                o.ended_at.is_none()
                    && ev.ts_ns.saturating_sub(o.last_ts) < idle
                    && !matches!((o.fp, fp), (Some(a), Some(b)) if joinable(&a) && a != b)
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
        o.last_ts = o.last_ts.max(ev.ts_ns);
        o.ended_at = None;
        if o.fp.is_none() {
            o.fp = fp;
        }
        let mut ev = ev;
        let mut packet = packet;
        if ev.data.is_empty() {
            // Header-only: the kernel saw the same addresses, ports and
            // encapsulation as at the packet's previous report.
            if let Some(prev) = o.tl.hops.iter().rev().find(|h| h.packet.is_some()) {
                packet = prev.packet.clone();
                ev.data = prev.data.clone();
            }
        }
        o.tl.hops.push(Hop::new(ev, packet));
    }

    fn end(&mut self, ev: Event, packet: Option<Packet>) {
        let id = match self.by_skb.remove(&ev.skb) {
            Some(id) if self.open.contains_key(&id) => id,
            // A packet we never saw on a device: nothing to report.
            _ if ev.point != Point::Drop => return,
            // A drop of a selected packet before any device saw it.
            _ => self.new_timeline(ev.ts_ns, packet.as_ref().map(|p| p.fp)),
        };
        let o = self.open.get_mut(&id).expect("timeline is open");
        o.last_ts = o.last_ts.max(ev.ts_ns);
        o.ended_at = Some(ev.ts_ns);
        self.due.schedule(id, o.deadline(&self.cfg));
        if ev.point == Point::Drop {
            o.tl.counted |= ev.flags & event_flags::COUNTED != 0;
            o.tl.drop = Some(DropInfo {
                reason: ev.reason,
                location: ev.location,
                outside_hook: ev.flags & event_flags::OUTSIDE_HOOK != 0,
            });
            o.tl.hops.push(Hop::new(ev, packet));
        } else if ev.point == Point::Deliver {
            o.tl.delivered = true;
        } else {
            o.tl.consumed_at = Some(ev.location);
        }
    }

    /// Flow notes since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Timelines that are complete at monotonic time `now_ns`.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Timeline> {
        let (open, cfg) = (&self.open, &self.cfg);
        let done = self
            .due
            .due(now_ns, |id| open.get(&id).map(|o| o.deadline(cfg)));
        self.finish(done)
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
            if o.tl.delivered {
                // Another copy was freed: the packet still reached its socket.
                if let Some(d) = o.tl.drop.take() {
                    o.tl.after.get_or_insert(d);
                }
            }
            o.tl.drop_hook = drop_hook(&o.tl);
            o.tl.verdict = verdict(&o.tl);
            if o.tl.verdict == Verdict::Unclaimed {
                // Not a loss: what freed it is kept, as for frees after delivery.
                o.tl.after = o.tl.drop.take();
            }
            out.push(o.tl);
        }
        out
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

/// Multicast and broadcast destinations: copies go wherever someone might
/// listen, and a copy nobody wants is no loss.
pub fn is_group_addr(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        std::net::IpAddr::V6(a) => a.is_multicast(),
    }
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
pub(crate) mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    pub(crate) fn icmp(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16, ip_id: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .icmpv4_echo_request(id, seq)
            .write(&mut out, b"payload")
            .unwrap();
        // etherparse's builder sets no IP ID: patch it in.
        out[4..6].copy_from_slice(&ip_id.to_be_bytes());
        out
    }

    pub(crate) fn ev(ts: u64, skb: u64, point: Point, ifname: &str, data: &[u8]) -> Event {
        Event {
            ts_ns: ts,
            skb,
            point,
            netns: 1,
            ifindex: 2,
            ifname: ifname.into(),
            len: data.len() as u32,
            mark: 0,
            reason: if point == Point::Drop { 5 } else { 0 },
            location: 0xffff_ffff_8100_0000,
            l3_proto: 0x0800,
            hook: 0,
            pf: 0,
            flags: 0,
            data: data.to_vec(),
        }
    }

    #[test]
    fn one_skb_across_devices_is_one_delivered_timeline() {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(30, 0xa, Point::Rx, "veth-b", &p));
        c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
        c.push(ev(20, 0xa, Point::Tx, "veth-a", &p));
        c.push(ev(40, 0xa, Point::Consume, "", &[]));
        assert!(c.expire(41).is_empty(), "held for the grace period");
        let out = c.expire(40 + 20_000_000);
        assert_eq!(out.len(), 1);
        let names: Vec<&str> = out[0].hops.iter().map(|h| h.ifname.as_str()).collect();
        assert_eq!(names, ["eth0", "veth-a", "veth-b"], "ordered by time");
        assert_eq!(out[0].verdict, Verdict::Delivered);
        assert_eq!(c.open_count(), 0);
    }

    #[test]
    fn drop_ends_the_timeline_with_reason() {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
        c.push(ev(20, 0xa, Point::Drop, "veth-a", &p));
        let out = c.flush();
        assert_eq!(out[0].verdict, Verdict::Dropped);
        assert_eq!(out[0].drop.unwrap().reason, 5);
        assert_eq!(out[0].hops.last().unwrap().point, Point::Drop);
    }

    #[test]
    fn a_drop_after_an_early_hop_is_that_hook_only_if_freed_in_netfilter() {
        // Freed by the hook (NF_DROP): the hook dropped it.
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
        let mut early = ev(15, 0xa, Point::NfEarly, "veth-a", &p);
        early.hook = 2;
        c.push(early.clone());
        c.push(ev(20, 0xa, Point::Drop, "veth-a", &p));
        let out = c.flush();
        assert_eq!(out[0].drop_hook, Some((2, 0)));
        // Stolen inside the hook (br_netfilter) and freed later by the stack.
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "veth-a", &p));
        c.push(early);
        let mut drop = ev(20, 0xa, Point::Drop, "veth-a", &p);
        drop.flags = event_flags::OUTSIDE_HOOK;
        c.push(drop);
        let out = c.flush();
        assert_eq!(out[0].drop_hook, None);
        assert_eq!(out[0].verdict, Verdict::Dropped);
    }

    #[test]
    fn copy_into_new_skb_joins_by_fingerprint_even_after_nat() {
        let before = icmp([10, 0, 0, 1], [10, 96, 0, 10], 7, 3, 555);
        let after = icmp([10, 0, 0, 1], [10, 244, 1, 7], 7, 3, 555);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "veth-a", &before));
        c.push(ev(20, 0xa, Point::Consume, "", &[]));
        c.push(ev(25, 0xb, Point::Tx, "veth-b", &after));
        let out = c.flush();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].hops.len(), 2);
        assert_eq!(out[0].verdict, Verdict::Forwarded);
    }

    #[test]
    fn different_packets_stay_apart_and_reused_skb_starts_fresh() {
        let req = icmp([10, 0, 0, 1], [10, 0, 0, 2], 7, 3, 555);
        let rep = icmp([10, 0, 0, 2], [10, 0, 0, 1], 7, 3, 900);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "veth-a", &req));
        c.push(ev(20, 0xb, Point::Tx, "veth-b", &rep));
        // The skb of the request is freed and its memory reused much later.
        c.push(ev(30, 0xa, Point::Consume, "", &[]));
        c.push(ev(5_000_000_000, 0xa, Point::Rx, "veth-c", &rep));
        let out = c.flush();
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn identical_packets_after_a_drop_are_separate() {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 77);
        let mut c = Correlator::new(Config::default());
        for (i, skb) in [0xa, 0xb, 0xc].into_iter().enumerate() {
            let t = i as u64 * 100;
            c.push(ev(t, skb, Point::Tx, "eth0", &p));
            c.push(ev(t + 10, skb, Point::Drop, "eth0", &p));
        }
        let out = c.flush();
        assert_eq!(out.len(), 3);
        assert!(out
            .iter()
            .all(|t| t.hops.len() == 2 && t.verdict == Verdict::Dropped));
    }

    #[test]
    fn reused_skb_with_another_packet_starts_a_new_timeline() {
        let a = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
        let b = icmp([10, 0, 0, 3], [10, 0, 0, 4], 9, 9, 200);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Tx, "eth0", &a));
        c.push(ev(20, 0xa, Point::Rx, "veth", &a));
        // Freed without a tracepoint; the same memory now holds another packet.
        c.push(ev(30, 0xa, Point::Tx, "eth1", &b));
        c.push(ev(40, 0xa, Point::Deliver, "", &[]));
        let mut out = c.flush();
        out.sort_by_key(|t| t.id);
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[0].hops.len(), 2);
        assert_eq!(out[1].hops.len(), 1);
        assert_eq!(out[1].verdict, Verdict::Delivered);
        assert_eq!(out[0].verdict, Verdict::Unknown);
    }

    #[test]
    fn socket_delivery_ends_the_timeline_and_a_later_free_is_after() {
        let p = icmp([10, 0, 0, 2], [10, 0, 0, 1], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
        c.push(ev(20, 0xa, Point::Rx, "eth0", &p));
        c.push(ev(30, 0xa, Point::Socket, "eth0", &[]));
        let mut purge = ev(40, 0xa, Point::Drop, "eth0", &p);
        purge.flags = event_flags::AFTER_DELIVERY;
        c.push(purge);
        let out = c.expire(40 + 20_000_000);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].verdict, Verdict::Delivered);
        assert!(out[0].drop.is_none());
        assert_eq!(out[0].after.unwrap().reason, 5);
        assert_eq!(out[0].hops.last().unwrap().point, Point::Socket);
        // Long after: counted, never a new dropped packet.
        let mut late = ev(5_000_000_000, 0xa, Point::Drop, "eth0", &p);
        late.flags = event_flags::AFTER_DELIVERY;
        c.push(late);
        assert!(c.flush().is_empty());
        assert_eq!(c.take_late_after(), 1);
    }

    #[test]
    fn a_copy_delivered_to_a_raw_socket_makes_the_packet_delivered() {
        let p = icmp([10, 0, 0, 2], [10, 0, 0, 1], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "eth0", &p));
        // The clone (another skb, its bytes carried) reaches the raw socket;
        // the original is then freed: no ping socket.
        c.push(ev(20, 0xb, Point::Socket, "eth0", &p));
        c.push(ev(30, 0xa, Point::Drop, "eth0", &p));
        let out = c.flush();
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].verdict, Verdict::Delivered);
        assert!(out[0].drop.is_none() && out[0].after.is_some());
    }

    #[test]
    fn group_packets_nobody_took_are_unclaimed() {
        let p = icmp([10, 0, 0, 2], [224, 0, 0, 251], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "eth0", &p));
        c.push(ev(20, 0xa, Point::Drop, "eth0", &p));
        let out = c.flush();
        assert_eq!(out[0].verdict, Verdict::Unclaimed);
        assert!(out[0].drop.is_none() && out[0].after.is_some());
    }

    #[test]
    fn lost_events_mark_open_timelines_incomplete() {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Tx, "eth0", &p));
        c.mark_incomplete();
        let out = c.flush();
        assert!(out[0].incomplete);
    }

    #[test]
    fn idle_timeline_expires_as_forwarded_or_unknown() {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "eth0", &p));
        assert!(c.expire(500_000_000).is_empty());
        let out = c.expire(2_000_000_000);
        assert_eq!(out[0].verdict, Verdict::Unknown);
    }
}
