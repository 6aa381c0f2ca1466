//! Conntrack as the cause of a netfilter drop: its statistics, read around
//! the drop in the drop's namespace (`conntrack -S`), moved since the
//! previous read. A full table drops a new connection's first packet where
//! conntrack takes it (PREROUTING, OUTPUT), before any filter rule; an
//! entry that lost its insert race drops where conntrack confirms it
//! (INPUT, POSTROUTING).
use super::{
    at::At,
    evidence::{self, Ask, ConntrackState},
    explained::Explained,
};
use crate::correlate::Timeline;

const PREROUTING: u8 = 0;
const INPUT: u8 = 1;
const OUTPUT: u8 = 3;
const POSTROUTING: u8 = 4;

/// ` in PREROUTING` for a drop at a known hook.
pub(super) fn hook_words(tl: &Timeline) -> String {
    tl.drop_hook
        .map(|(h, _)| {
            format!(
                " in {}",
                netflow_common::NF_HOOK_NAMES
                    .get(h as usize)
                    .copied()
                    .unwrap_or("unknown-hook")
                    .to_uppercase()
            )
        })
        .unwrap_or_default()
}

/// The drop was conntrack's: its table full, or an insert race lost.
pub(super) fn conntrack(tl: &Timeline, at: &At, ct: &ConntrackState) -> Option<Explained> {
    let hook = tl.drop_hook.map(|(h, _)| h);
    let at_hook = |hooks: &[u8]| hook.is_none_or(|h| hooks.contains(&h));
    let where_ = hook_words(tl);
    let ns = &at.netns_name;
    if ct.drop > 0 && at_hook(&[PREROUTING, OUTPUT]) {
        let mut cause = at.cause("conntrack_full");
        cause.setting = Some("net.netfilter.nf_conntrack_max".into());
        cause.value = Some(ct.max.to_string());
        let evicted = if ct.early_drop > 0 {
            format!(", {} unreplied entries evicted to make room", ct.early_drop)
        } else {
            String::new()
        };
        return Some(Explained {
            hint: format!(
                "conntrack's table is full ({} entries in netns {ns}, net.netfilter.nf_conntrack_max = {}): conntrack had no room for this connection and dropped its packet{where_}, before any rule ({} packets dropped for it{evicted}); raise nf_conntrack_max or find what opens so many connections (conntrack -L)",
                ct.count, ct.max, ct.drop
            ),
            cause: Some(cause),
            ruled_out: vec!["a rule or a chain's policy (conntrack drops before them)".into()],
            rule: None,
        });
    }
    if ct.insert_failed > 0 && at_hook(&[INPUT, POSTROUTING]) {
        let mut cause = at.cause("conntrack_insert_failed");
        cause.value = Some(ct.insert_failed.to_string());
        let udp = at.tuple.proto == crate::decode::packet::Proto::Udp;
        let race = if udp {
            "two packets of one UDP flow sent at once (a resolver's parallel A and AAAA queries from one socket: the query dropped is answered after the resolver's 5 s timeout); use `options single-request-reopen` (or use-vc) in resolv.conf, or a node-local DNS cache"
        } else {
            "two packets of one new flow raced to create its entry"
        };
        return Some(Explained {
            hint: format!(
                "conntrack could not insert this connection's entry{where_} in netns {ns}: another packet of the same flow had inserted it first (insert_failed +{}), and the loser was dropped: {race}",
                ct.insert_failed
            ),
            cause: Some(cause),
            ruled_out: vec!["a rule or a chain's policy".into()],
            rule: None,
        });
    }
    None
}

/// What the statistics rule out, said beside another hint.
pub(super) fn ruled_out(ct: &ConntrackState) -> String {
    format!(
        "conntrack (no packet dropped by it; {} of {} entries)",
        ct.count, ct.max
    )
}

/// Conntrack's state in the drop's namespace.
pub(super) fn read(ask: &mut Ask, at: &At) -> Option<ConntrackState> {
    evidence::conntrack(ask, at.netns)
}
