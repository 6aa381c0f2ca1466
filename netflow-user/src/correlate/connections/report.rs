//! Connections out: which are over, and each one's outcome, counts (the
//! packets only counted added in) and where it went wrong.
use super::{dns, Connection, Connections, Counts, Dir, Open, Outcome, SocketCounts, Where};
use crate::decode::packet::{Proto, Tuple};

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
}

impl Connections {
    /// Connections that are over at `now_ns`, with the packets only counted;
    /// beyond [`super::Config::max_open`] open ones, the least recently active are reported
    /// early (and counted in `evicted`).
    pub fn expire(&mut self, now_ns: u64, counts: Counts) -> Vec<Connection> {
        let (open, cfg) = (&self.open, &self.cfg);
        let mut done = self
            .due
            .due(now_ns, |id| open.get(&id).map(|o| o.deadline(cfg)));
        let max_open = self.cfg.max_open;
        if self.open.len() > max_open {
            let mut by_age: Vec<(u64, u64)> =
                self.open.iter().map(|(id, o)| (o.last_ts, *id)).collect();
            let n = self.open.len() - max_open * 9 / 10;
            by_age.select_nth_unstable(n - 1);
            done.extend(by_age[..n].iter().map(|(_, id)| *id));
            done.sort_unstable();
            done.dedup();
            self.evicted += n as u64;
        }
        let done = self.finish(done, counts);
        self.walks.settle(done, now_ns)
    }
    /// Every connection (end of the run).
    pub fn flush(&mut self, counts: Counts) -> Vec<Connection> {
        let mut out = Vec::new();
        while let Some(mut some) = self.flush_some(&mut *counts, usize::MAX) {
            out.append(&mut some);
        }
        out
    }

    /// The end of the run, `n` connections at a time (a flood's tens of
    /// thousands at once would hold twice their size while they go out);
    /// what DNS walks held comes last. None once all went out.
    pub fn flush_some(&mut self, counts: Counts, n: usize) -> Option<Vec<Connection>> {
        self.due.clear();
        if self.open.is_empty() {
            if self.walks.is_empty() {
                return None;
            }
            // Whatever a walk held goes out too.
            return Some(self.walks.settle(Vec::new(), u64::MAX));
        }
        // The oldest first, as they opened.
        let mut some: Vec<u64> = self.open.keys().copied().collect();
        some.sort_unstable();
        some.truncate(n);
        let done = self.finish(some, counts);
        // Nothing a walk holds is released before the last call.
        Some(self.walks.settle(done, 0))
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
                    read_at_sockets: o.read_at_sockets,
                })
            })
            .collect()
    }
}
