//! What the dashboard shows, built from completed timelines: flows (both
//! directions of a 5-tuple), drop reasons, packets per second. No UI here.
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::{
    connections::{Connection, Outcome},
    correlate::{Timeline, Verdict},
    names::Names,
    output::json::{timeline_json, JsonTimeline},
    packet::Tuple,
};

/// A flow: both directions of one connection (endpoints in sorted order).
#[derive(Debug, Clone)]
pub struct Flow {
    pub key: Tuple,
    /// Where the flow's first packet started (pod, namespace or device).
    pub endpoint: String,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub last_verdict: Verdict,
    /// Time from a packet's first to last hop, for each packet (µs).
    pub spans_us: Vec<f64>,
    pub latest: JsonTimeline,
    pub latest_drop: Option<JsonTimeline>,
    pub last_ts: u64,
    /// The outcome of its last connection that ended.
    pub outcome: Option<Outcome>,
}

impl Flow {
    pub fn median_us(&self) -> f64 {
        percentile(&self.spans_us, 0.5)
    }
    pub fn p99_us(&self) -> f64 {
        percentile(&self.spans_us, 0.99)
    }
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    s[((s.len() - 1) as f64 * q).round() as usize]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    LastSeen,
    Endpoint,
    Proto,
    Packets,
    Bytes,
    Drops,
    Latency,
}

impl SortBy {
    pub const ALL: [SortBy; 7] = [
        SortBy::LastSeen,
        SortBy::Endpoint,
        SortBy::Proto,
        SortBy::Packets,
        SortBy::Bytes,
        SortBy::Drops,
        SortBy::Latency,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SortBy::LastSeen => "last seen",
            SortBy::Endpoint => "endpoint",
            SortBy::Proto => "protocol",
            SortBy::Packets => "packets",
            SortBy::Bytes => "bytes",
            SortBy::Drops => "drops",
            SortBy::Latency => "latency",
        }
    }

    pub fn next(self) -> SortBy {
        let i = SortBy::ALL.iter().position(|s| *s == self).unwrap_or(0);
        SortBy::ALL[(i + 1) % SortBy::ALL.len()]
    }
}

/// Seconds of packets-per-second history kept for the sparkline.
const HISTORY: usize = 120;

#[derive(Debug, Default, Clone)]
pub struct State {
    pub flows: HashMap<Tuple, Flow>,
    /// Other keys of a flow (its tuples before/after NAT) -> its key.
    aliases: HashMap<Tuple, Tuple>,
    /// Drop reason -> (count, hint).
    pub drops: BTreeMap<String, (u64, String)>,
    /// Packets completed per second (oldest first).
    pub rate: VecDeque<u64>,
    current_second: Option<u64>,
    pub events: u64,
    pub lost: u64,
    pub packets: u64,
    pub probes: Vec<String>,
    pub selection: String,
    pub source: String,
}

fn flow_key(t: Tuple) -> Tuple {
    let a = (t.src, t.sport);
    let b = (t.dst, t.dport);
    if a <= b {
        t
    } else {
        t.reversed()
    }
}

impl State {
    /// A copy to show while frozen.
    pub fn snapshot(&self) -> State {
        self.clone()
    }

    pub fn add(&mut self, tl: &Timeline, names: &Names) {
        let Some(t) = tl.tuple() else { return };
        let first = &tl.hops[0];
        let last = tl.hops.last().expect("a timeline has hops");
        let span = last.ts_ns.saturating_sub(first.ts_ns) as f64 / 1000.0;
        let js = timeline_json(tl, names);
        let endpoint = names
            .netns(first.netns)
            .map(str::to_string)
            .unwrap_or_else(|| first.ifname.clone());
        // A translated connection has other tuples on the other side of the
        // NAT: the packet's first and last tuples name the same flow.
        let last_t = tl
            .hops
            .iter()
            .rev()
            .find_map(|h| h.packet.as_ref().map(|p| p.tuple))
            .unwrap_or(t);
        let keys = [flow_key(t), flow_key(last_t)];
        let key = keys
            .iter()
            .find_map(|k| {
                if self.flows.contains_key(k) {
                    Some(*k)
                } else {
                    self.aliases.get(k).copied()
                }
            })
            .unwrap_or(keys[0]);
        for k in keys {
            if k != key {
                self.aliases.insert(k, key);
            }
        }
        let f = self.flows.entry(key).or_insert_with(|| Flow {
            key: t,
            endpoint,
            packets: 0,
            bytes: 0,
            drops: 0,
            last_verdict: tl.verdict,
            spans_us: Vec::new(),
            latest: timeline_json(tl, names),
            latest_drop: None,
            last_ts: 0,
            outcome: None,
        });
        f.packets += 1;
        f.bytes += first.len as u64;
        f.last_verdict = tl.verdict;
        f.last_ts = f.last_ts.max(last.ts_ns);
        if f.spans_us.len() < 10_000 {
            f.spans_us.push(span);
        }
        // Only drops on a packet's path count (not group packets nobody
        // wanted, not frees after delivery).
        if let Some(d) = js.drop.as_ref().filter(|_| tl.verdict == Verdict::Dropped) {
            f.drops += 1;
            let e = self
                .drops
                .entry(d.reason.clone())
                .or_insert((0, d.hint.clone()));
            e.0 += 1;
            f.latest_drop = Some(timeline_json(tl, names));
        }
        f.latest = js;
        self.packets += 1;
        // Packets per second, by the packets' own clock (live or replayed).
        let sec = first.ts_ns / 1_000_000_000;
        match self.current_second {
            Some(cur) if sec <= cur => {
                if let Some(b) = self.rate.back_mut() {
                    *b += 1;
                }
            }
            Some(cur) => {
                for _ in cur + 1..sec.min(cur + HISTORY as u64) {
                    self.rate.push_back(0);
                }
                self.rate.push_back(1);
                self.current_second = Some(sec);
            }
            None => {
                self.rate.push_back(1);
                self.current_second = Some(sec);
            }
        }
        while self.rate.len() > HISTORY {
            self.rate.pop_front();
        }
    }

    /// A connection ended: its flow shows the outcome.
    pub fn connection(&mut self, c: &Connection) {
        let k = flow_key(c.tuple);
        let key = if self.flows.contains_key(&k) {
            Some(k)
        } else {
            self.aliases.get(&k).copied()
        };
        if let Some(f) = key.and_then(|k| self.flows.get_mut(&k)) {
            f.outcome = Some(c.outcome);
        }
    }

    /// Flows passing `filter` (a substring of the endpoint, addresses,
    /// protocol or ports), sorted.
    pub fn rows(&self, filter: &str, sort: SortBy, reverse: bool) -> Vec<&Flow> {
        let f = filter.to_lowercase();
        let mut v: Vec<&Flow> = self
            .flows
            .values()
            .filter(|fl| f.is_empty() || row_text(fl).to_lowercase().contains(&f))
            .collect();
        v.sort_by(|a, b| {
            let o = match sort {
                SortBy::LastSeen => b.last_ts.cmp(&a.last_ts),
                SortBy::Endpoint => a.endpoint.cmp(&b.endpoint),
                SortBy::Proto => a.key.proto.cmp(&b.key.proto),
                SortBy::Packets => b.packets.cmp(&a.packets),
                SortBy::Bytes => b.bytes.cmp(&a.bytes),
                SortBy::Drops => b.drops.cmp(&a.drops),
                SortBy::Latency => b
                    .p99_us()
                    .partial_cmp(&a.p99_us())
                    .unwrap_or(std::cmp::Ordering::Equal),
            }
            .then_with(|| a.key.cmp(&b.key));
            if reverse {
                o.reverse()
            } else {
                o
            }
        });
        v
    }
}

/// The searchable text of a row.
pub fn row_text(f: &Flow) -> String {
    format!("{} {}", f.endpoint, f.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 100.0], 0.99), 100.0);
    }

    #[test]
    fn sort_cycles_through_every_column() {
        let mut s = SortBy::LastSeen;
        for _ in 0..SortBy::ALL.len() {
            s = s.next();
        }
        assert_eq!(s, SortBy::LastSeen);
    }
}
