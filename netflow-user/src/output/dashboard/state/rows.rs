//! The rows on screen: flows filtered and sorted, folded by scope, or
//! grouped by endpoint, peer and port.
use std::collections::{BTreeMap, HashMap};

use super::{row_text, scope, Flow, GroupCounts, Hist, Scope, SortBy, State};
use crate::{correlate::connections::Outcome, decode::packet::Tuple};

impl State {
    /// Flows passing `filter` (words of the row: endpoint, addresses,
    /// protocol, ports, verdict, outcome, cause), sorted; link-local and
    /// multicast ones only with `local`.
    pub fn rows(&self, filter: &str, sort: SortBy, reverse: bool, local: bool) -> Vec<&Flow> {
        let f = filter.to_lowercase();
        let mut v: Vec<&Flow> = self
            .flows
            .values()
            .filter(|fl| local || scope(&fl.key).is_none())
            .filter(|fl| f.is_empty() || row_text(fl).to_lowercase().contains(&f))
            .collect();
        v.sort_by(|a, b| order(a, b, sort, reverse));
        v
    }

    /// Link-local and multicast flows folded away (not shown without
    /// `local`): one row per scope, as [`State::groups`] makes them.
    pub fn folded(&self, filter: &str) -> Vec<Flow> {
        let f = filter.to_lowercase();
        let mut rows: BTreeMap<Scope, Flow> = BTreeMap::new();
        let mut flows: Vec<&Flow> = self
            .flows
            .values()
            .filter(|fl| f.is_empty() || row_text(fl).to_lowercase().contains(&f))
            .collect();
        flows.sort_by_key(|fl| (fl.first_ts, fl.key));
        for fl in flows {
            let Some(s) = scope(&fl.key) else { continue };
            let row = rows.entry(s).or_insert_with(|| {
                let mut key = fl.key;
                key.sport = None;
                key.dport = None;
                Flow {
                    key,
                    endpoint: String::new(),
                    packets: 0,
                    bytes: 0,
                    drops: 0,
                    spans: Hist::default(),
                    outcome: None,
                    cause: None,
                    group: Some(GroupCounts::default()),
                    folded: Some(s),
                    ..fl.clone()
                }
            });
            add_to_group(row, fl);
        }
        for r in rows.values_mut() {
            let n = r.group.as_ref().map_or(0, |g| g.flows);
            r.endpoint = format!("{} ×{n}", r.folded.expect("a scope").label());
        }
        rows.into_values().collect()
    }

    /// The flows grouped by endpoint, peer, protocol and destination port
    /// ("pod → service:port"): one row per group, as a flow without a
    /// source port whose `group` counts its connections and outcomes.
    pub fn groups(&self, filter: &str, sort: SortBy, reverse: bool, local: bool) -> Vec<Flow> {
        let mut groups: HashMap<(String, Tuple), Flow> = HashMap::new();
        for fl in self.rows(filter, SortBy::LastSeen, true, local) {
            let mut key = fl.key;
            key.sport = None;
            let g = groups
                .entry((fl.endpoint.clone(), key))
                .or_insert_with(|| Flow {
                    key,
                    packets: 0,
                    bytes: 0,
                    drops: 0,
                    spans: Hist::default(),
                    outcome: None,
                    cause: None,
                    group: Some(GroupCounts::default()),
                    ..fl.clone()
                });
            add_to_group(g, fl);
        }
        let mut v: Vec<Flow> = groups.into_values().collect();
        v.sort_by(|a, b| order(a, b, sort, reverse));
        v
    }
}

/// One flow into a grouped row (flows come oldest first).
fn add_to_group(g: &mut Flow, fl: &Flow) {
    g.packets += fl.packets;
    g.bytes += fl.bytes;
    g.drops += fl.drops;
    g.spans.merge(&fl.spans);
    g.first_ts = g.first_ts.min(fl.first_ts);
    g.last_ts = g.last_ts.max(fl.last_ts);
    g.last_verdict = fl.last_verdict;
    g.latest = fl.latest.clone();
    if fl.latest_drop.is_some() {
        g.latest_drop = fl.latest_drop.clone();
    }
    if fl.cause.is_some() {
        g.cause = fl.cause.clone();
    }
    let c = g.group.as_mut().expect("a group");
    c.flows += 1;
    match fl.outcome {
        Some(Outcome::Ok) => c.ok += 1,
        Some(o) => {
            *c.failed
                .entry(crate::output::view::outcome_name(o))
                .or_default() += 1;
        }
        None => {}
    }
}

/// Failing first (a drop on its path, or an outcome other than ok and
/// incomplete), then open, then done.
fn rank(f: &Flow) -> u8 {
    let failed = |o: Outcome| !matches!(o, Outcome::Ok | Outcome::Incomplete);
    let failing = f.drops > 0
        || f.outcome.is_some_and(failed)
        || f.group.as_ref().is_some_and(|g| !g.failed.is_empty());
    let open = match &f.group {
        Some(g) => g.ok + g.failed.values().sum::<u64>() < g.flows,
        None => f.outcome.is_none(),
    };
    if failing {
        0
    } else if open {
        1
    } else {
        2
    }
}

fn order(a: &Flow, b: &Flow, sort: SortBy, reverse: bool) -> std::cmp::Ordering {
    let o = match sort {
        // Stable: ties keep the order they were first seen in.
        SortBy::Failing => rank(a).cmp(&rank(b)).then(a.first_ts.cmp(&b.first_ts)),
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
}
