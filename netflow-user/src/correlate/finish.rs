//! Timelines out: which are complete, and what each one's hops say once
//! they are all in (NAT, the hook or rule that dropped it, DNS, verdict).
use netflow_common::Point;

use super::{
    is_group_addr, rules, Correlator, Hop, Nat, NatKind, Timeline, Verdict, PENDING_RULE_NS,
};
use crate::decode::packet::Tuple;

impl Correlator {
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
        let max_open = self.cfg.max_open;
        let mut evicted: Vec<u64> = Vec::new();
        if self.open.len() > max_open {
            // Those due soonest first: packets that ended and wait only for
            // late copies or rule traces.
            let mut by_due: Vec<(u64, u64)> = self
                .open
                .iter()
                .map(|(id, o)| (o.deadline(cfg), *id))
                .collect();
            let n = self.open.len() - max_open * 9 / 10;
            by_due.select_nth_unstable(n - 1);
            evicted.extend(by_due[..n].iter().map(|(_, id)| *id));
            done.extend(evicted.iter().copied());
            done.sort_unstable();
            done.dedup();
            self.evicted += n as u64;
        }
        let mut out = self.finish(done);
        if !evicted.is_empty() {
            // Completed before their time: a fate not known yet is not one.
            evicted.sort_unstable();
            for tl in &mut out {
                if tl.verdict == Verdict::Unknown && evicted.binary_search(&tl.id).is_ok() {
                    tl.incomplete = true;
                }
            }
        }
        out
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
        // The events mode's DNS: seen where its socket sent it, not
        // followed on (nothing at devices); no free said it died.
        (_, None) if tl.hops.iter().any(|h| h.point == Point::SockSend) => Verdict::Forwarded,
        _ if group => Verdict::Unclaimed,
        _ => Verdict::Unknown,
    }
}
