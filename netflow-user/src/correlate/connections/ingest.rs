//! Timelines in: each completed packet timeline on its connection (a new
//! one for a packet of no known conversation), ICMP errors on the
//! connection of the packet they quote.
use super::{
    classify::{conv_tuple, key, kind, Kind},
    Connections, Dir, Open, Where,
};
use netflow_common::Point;

use crate::{
    correlate::{NatKind, Timeline, Verdict},
    decode::packet::Tuple,
};

fn where_of(tl: &Timeline) -> Option<Box<Where>> {
    Some(Box::new(Where {
        hop: tl.hops.last()?.without_bytes(),
        drop: tl.drop,
        drop_hook: tl.drop_hook,
        rule: tl.drop_rule.clone(),
        explained: tl.explained.clone(),
    }))
}

impl Connections {
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
        // A timeline that begins at a socket (the events mode read it
        // there): a device program would have seen it first otherwise.
        o.read_at_sockets |= tl
            .hops
            .first()
            .is_some_and(|h| matches!(h.point, Point::SockSend | Point::Socket));
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
        // The kernel answered a request with a RST or an ICMP unreachable
        // (nothing listens): said on the request's own timeline, where the
        // error's packet is not followed (the agent's events mode).
        if fwd
            && tl
                .hops
                .iter()
                .any(|h| h.point == Point::TcpReset || h.icmp.is_some_and(|i| i.unreachable()))
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
                read_at_sockets: false,
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
}
