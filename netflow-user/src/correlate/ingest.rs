//! Events in: each kind of event on its packet's timeline (hops, ends,
//! sockets, routes, rule traces), or a note on its flow.
use netflow_common::{event_flags, Point};

use super::{
    identity, joinable, Correlator, DropInfo, Hop, Note, NoteKind, Open, Timeline, Verdict,
    MAX_HELD, MAX_NOTE_FLOWS, MAX_PENDING_RULES, POSTROUTING,
};
use crate::decode::{Event, What};

impl Correlator {
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
            // Only for the live follow (see the pipeline).
            What::Sampled => {}
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
        // A packet never seen on a device (loopback): not on a path. But
        // a DNS datagram read at its socket (the events mode) that nothing
        // saw before came from off the node: its own timeline.
        let dns = ev.flags & event_flags::SOCKET_READ != 0 && ev.packet.is_some();
        let Some(id) = id.or_else(|| dns.then(|| self.new_timeline(ev.ts_ns, fp))) else {
            return;
        };
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

    fn new_timeline(&mut self, ts: u64, fp: Option<u64>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.open.insert(
            id,
            Open {
                tl: Timeline {
                    id,
                    // A hop is ~300 bytes: a packet across a node has ~10
                    // hops (two growths), a dropped or delivered one at its
                    // first device 2-4. Twelve up front held 3.6 KB per open
                    // timeline, most of a flood's memory.
                    hops: Vec::with_capacity(4),
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
        // The skb's packet, unless it holds another by now (the kernel
        // reused it after a free nobody reported: the events mode follows a
        // datagram from its socket with no program at its last hop).
        let fp = identity(&ev);
        let id = match self.by_skb.remove(&ev.skb) {
            Some(id) if self.open.get(&id).is_some_and(|o| o.same_packet(fp)) => id,
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
}
