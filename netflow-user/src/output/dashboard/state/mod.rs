//! What the dashboard shows, built from completed timelines: flows (both
//! directions of a 5-tuple), drop reasons, packets per second. No UI here.
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
};

use netflow_schema::Verdict;

use crate::{
    correlate::connections::Outcome, correlate::Timeline, decode::names::Names,
    decode::packet::Tuple, output::view::timeline_view,
};

mod hist;
mod rows;

pub use hist::Hist;

/// What the dashboard keeps of one completed packet, prepared where the
/// packet is completed (the tracer) and applied where the screen is drawn.
#[derive(Debug, Clone)]
pub struct FlowUpdate {
    /// The packet's first and last tuples (they differ across NAT).
    pub first: Tuple,
    pub last: Tuple,
    pub endpoint: String,
    pub len: u32,
    pub first_ts: u64,
    pub last_ts: u64,
    pub span_us: f64,
    pub js: Arc<netflow_schema::Packet>,
}

impl FlowUpdate {
    pub fn new(tl: &Timeline, names: &Names) -> Option<Self> {
        let t = tl.tuple()?;
        let first = tl.hops.first()?;
        let last = tl.hops.last()?;
        Some(Self {
            first: t,
            last: tl
                .hops
                .iter()
                .rev()
                .find_map(|h| h.packet.as_ref().map(|p| p.tuple))
                .unwrap_or(t),
            endpoint: names
                .netns(first.netns)
                .map(str::to_string)
                .unwrap_or_else(|| first.ifname.clone()),
            len: first.len,
            first_ts: first.ts_ns,
            last_ts: last.ts_ns,
            span_us: last.ts_ns.saturating_sub(first.ts_ns) as f64 / 1000.0,
            js: Arc::new(timeline_view(tl, names)),
        })
    }
}

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
    /// Time from a packet's first to last hop (µs), as a histogram.
    pub spans: Hist,
    pub latest: Arc<netflow_schema::Packet>,
    pub latest_drop: Option<Arc<netflow_schema::Packet>>,
    pub first_ts: u64,
    pub last_ts: u64,
    /// The outcome of its last connection that ended.
    pub outcome: Option<Outcome>,
    /// What failed, in short: the rule or Policy, the setting, "nothing
    /// listens" (see [`short_cause`]).
    pub cause: Option<String>,
    /// A grouped row (see [`State::groups`]).
    pub group: Option<GroupCounts>,
    /// A row of folded link-local and multicast flows: its scope.
    pub folded: Option<Scope>,
}

impl Flow {
    pub fn median_us(&self) -> f64 {
        self.spans.quantile(0.5)
    }
    pub fn p99_us(&self) -> f64 {
        self.spans.quantile(0.99)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Failing,
    LastSeen,
    Endpoint,
    Proto,
    Packets,
    Bytes,
    Drops,
    Latency,
}

impl SortBy {
    pub const ALL: [SortBy; 8] = [
        SortBy::Failing,
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
            SortBy::Failing => "failing first",
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

/// Flows kept at most when the run's budget does not say (`max_flows`):
/// beyond, the least recently seen tenth is folded into counters (memory
/// and per-frame work stay bounded under a flood).
pub const MAX_FLOWS: usize = 10_000;

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
    pub sampled: u64,
    pub packets: u64,
    /// Flows folded away (least recently seen, beyond [`MAX_FLOWS`]) and
    /// their packets.
    pub folded_flows: u64,
    pub folded_packets: u64,
    /// Timelines the tracer could not hand to a busy screen (counted only).
    pub skipped: u64,
    /// Open timelines and connections the tracer completed early to stay
    /// within its memory budget.
    pub evicted: u64,
    /// Flows kept at most (the run's memory budget; 0: [`MAX_FLOWS`]).
    pub max_flows: usize,
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
        if let Some(u) = FlowUpdate::new(tl, names) {
            self.apply(u);
        }
    }

    /// One completed packet, prepared by [`FlowUpdate::new`].
    pub fn apply(&mut self, u: FlowUpdate) {
        let keys = [flow_key(u.first), flow_key(u.last)];
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
            key: u.first,
            endpoint: u.endpoint,
            packets: 0,
            bytes: 0,
            drops: 0,
            last_verdict: u.js.verdict,
            spans: Hist::default(),
            latest: u.js.clone(),
            latest_drop: None,
            first_ts: u.first_ts,
            last_ts: 0,
            outcome: None,
            cause: None,
            group: None,
            folded: None,
        });
        f.packets += 1;
        f.bytes += u.len as u64;
        f.last_verdict = u.js.verdict;
        f.last_ts = f.last_ts.max(u.last_ts);
        f.spans.add(u.span_us);
        // Only drops on a packet's path count (not group packets nobody
        // wanted, not frees after delivery).
        if let Some(d) =
            u.js.drop
                .as_ref()
                .filter(|_| u.js.verdict == Verdict::Dropped)
        {
            f.drops += 1;
            let e = self
                .drops
                .entry(d.reason.clone())
                .or_insert((0, d.hint.clone()));
            e.0 += 1;
            f.cause = Some(short_cause(d, None));
            f.latest_drop = Some(u.js.clone());
        }
        f.latest = u.js;
        self.packets += 1;
        if self.flows.len() > self.cap() {
            self.fold_oldest();
        }
        let first_ts = u.first_ts;
        // Packets per second, by the packets' own clock (live or replayed).
        let sec = first_ts / 1_000_000_000;
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

    fn cap(&self) -> usize {
        if self.max_flows == 0 {
            MAX_FLOWS
        } else {
            self.max_flows
        }
    }

    /// Fold the least recently seen flows, down to 90% of the cap.
    fn fold_oldest(&mut self) {
        let mut by_age: Vec<(u64, Tuple)> =
            self.flows.iter().map(|(k, f)| (f.last_ts, *k)).collect();
        let n = self.flows.len() - self.cap() * 9 / 10;
        by_age.select_nth_unstable(n - 1);
        for (_, k) in &by_age[..n] {
            if let Some(f) = self.flows.remove(k) {
                self.folded_flows += 1;
                self.folded_packets += f.packets;
            }
        }
        let flows = &self.flows;
        self.aliases.retain(|_, k| flows.contains_key(k));
    }

    /// A connection ended: its flow shows the outcome and, when it failed,
    /// its cause in short.
    pub fn connection(&mut self, tuple: Tuple, outcome: Outcome, cause: Option<String>) {
        // An ICMP connection is keyed by its echo id; its packets' flows
        // have no ports.
        let portless = Tuple {
            sport: None,
            dport: None,
            ..tuple
        };
        let key = [flow_key(tuple), flow_key(portless)]
            .into_iter()
            .find_map(|k| {
                if self.flows.contains_key(&k) {
                    Some(k)
                } else {
                    self.aliases.get(&k).copied()
                }
            });
        if let Some(f) = key.and_then(|k| self.flows.get_mut(&k)) {
            f.outcome = Some(outcome);
            if cause.is_some() {
                f.cause = cause;
            }
        }
    }
}

/// Where link-local and multicast traffic goes (neighbour discovery, MLD,
/// IGMP, mDNS, LLMNR, SSDP, DHCP): folded into one row per scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Link-local: fe80::/10 sources, ff02::/16, 224.0.0.0/24, 169.254/16.
    LinkLocal,
    /// Other multicast (239.255.255.250 for SSDP, ff05::...) and broadcast.
    Multicast,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::LinkLocal => "link-local",
            Scope::Multicast => "multicast",
        }
    }
}

/// The scope a flow folds into, if any.
pub fn scope(t: &Tuple) -> Option<Scope> {
    use std::net::IpAddr;
    let link_local = |a: &IpAddr| match a {
        IpAddr::V4(a) => a.is_link_local() || (a.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(a) => {
            (a.segments()[0] & 0xffc0) == 0xfe80 || (a.segments()[0] & 0xff0f) == 0xff02
        }
    };
    if link_local(&t.src) || link_local(&t.dst) {
        Some(Scope::LinkLocal)
    } else if crate::correlate::is_group_addr(&t.dst) {
        Some(Scope::Multicast)
    } else {
        None
    }
}

/// A failure in a few words, from its drop: the Kubernetes object or the
/// rule that dropped it, the node setting behind it, "nothing listens", or
/// the kernel's reason.
pub fn short_cause(d: &netflow_schema::Drop, outcome: Option<Outcome>) -> String {
    if let Some(k) = &d.k8s {
        return format!("{} {}", k.kind, crate::output::view::k8s_display(k));
    }
    if let Some(r) = &d.rule {
        return match r.handle {
            Some(h) => format!("rule {h} in {} {}", r.table, r.chain),
            None => format!("policy of {} {}", r.table, r.chain),
        };
    }
    if let Some(c) = &d.cause {
        return match (&c.setting, &c.value) {
            (Some(s), Some(v)) => format!("{s}={v}"),
            (Some(s), None) => s.clone(),
            _ => c.kind.replace('_', " "),
        };
    }
    let reason = d.likely.as_deref().unwrap_or(&d.reason);
    if reason == "NO_SOCKET" || outcome == Some(Outcome::Refused) {
        return "nothing listens".into();
    }
    reason.to_string()
}

/// Connections of a grouped row and how they ended.
#[derive(Debug, Clone, Default)]
pub struct GroupCounts {
    pub flows: u64,
    pub ok: u64,
    /// Outcomes other than ok, by name.
    pub failed: BTreeMap<&'static str, u64>,
}

/// The searchable text of a row: endpoint, addresses, protocol, ports,
/// verdict, outcome and cause.
pub fn row_text(f: &Flow) -> String {
    let outcome = f.outcome.map(crate::output::view::outcome_name);
    let failed = f
        .group
        .iter()
        .flat_map(|g| g.failed.keys().copied())
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{} {} {} {} {failed} {}",
        f.endpoint,
        f.key,
        f.last_verdict,
        outcome.unwrap_or(""),
        f.cause.as_deref().unwrap_or("")
    )
}

/// What identifies a row across reorderings: its endpoint and key.
pub type RowKey = (String, Tuple);

pub fn row_key(f: &Flow) -> RowKey {
    (f.endpoint.clone(), f.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_cycles_through_every_column() {
        let mut s = SortBy::Failing;
        for _ in 0..SortBy::ALL.len() {
            s = s.next();
        }
        assert_eq!(s, SortBy::Failing);
    }
}
