//! A netfilter drop by a legacy x_tables rule, which nftables tracing
//! cannot see, named from the node's own counters: among the rules and
//! built-in policies whose counters moved since the previous read, the
//! `DROP` or `REJECT` rule whose matches accept the dead packet, reached
//! from the hook's built-in chain through jumps that moved too. One such
//! rule is named with the object its comment (or the jumps to it) names;
//! several are "one of N"; none, with the hook's chain policy moved on
//! `DROP`, is that policy. Nothing is named when no counter moved.
use super::{
    at::At,
    conntrack::hook_words,
    evidence::{Ask, LegacyMoved},
    explained::{Cause, Explained},
};
use crate::{
    correlate::{rules, Timeline},
    decode::{
        packet::Tuple,
        rule::{verdict, Action, RuleHit, TraceKind},
        xtables::{self, Entry, HOOK_CHAINS},
    },
};

/// Jumps followed back from a rule to its built-in chain, at most.
const MAX_DEPTH: usize = 16;

pub(super) fn legacy(tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
    let family = if at.v6() { 10 } else { 2 };
    let l = super::evidence::legacy(ask, at.netns, family)?;
    judge(tl, at, &l, family)
}

/// The hits from the hook's built-in chain down to a dropping rule: the
/// jumps that led there, then the rule.
fn paths<'a>(l: &'a LegacyMoved, t: &Tuple, hook: Option<&str>) -> Vec<Vec<&'a Entry>> {
    let parsed: Vec<(&Entry, xtables::Rule)> = l
        .moved
        .iter()
        .filter(|e| !e.is_policy())
        .filter_map(|e| Some((e, xtables::rule(&e.rule)?)))
        .filter(|(_, r)| r.accepts(t))
        .collect();
    // Back from `chain` (of `table`) to a built-in chain of the hook.
    fn back<'a>(
        parsed: &[(&'a Entry, xtables::Rule)],
        table: &str,
        chain: &str,
        hook: Option<&str>,
        depth: usize,
    ) -> Option<Vec<&'a Entry>> {
        if HOOK_CHAINS.contains(&chain) {
            return hook.is_none_or(|h| h == chain).then(Vec::new);
        }
        if depth >= MAX_DEPTH {
            return None;
        }
        parsed
            .iter()
            .filter(|(e, r)| e.table == table && r.target == chain)
            .find_map(|(e, r)| {
                let mut p = back(parsed, table, &r.chain, hook, depth + 1)?;
                p.push(e);
                Some(p)
            })
    }
    parsed
        .iter()
        .filter(|(_, r)| r.drops())
        .filter_map(|(e, r)| {
            let mut p = back(&parsed, &e.table, &r.chain, hook, 0)?;
            p.push(e);
            Some(p)
        })
        .collect()
}

/// Targets that are not chains.
const TARGETS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "REJECT",
    "RETURN",
    "MARK",
    "CONNMARK",
    "NFLOG",
    "LOG",
    "DNAT",
    "SNAT",
    "MASQUERADE",
    "REDIRECT",
    "NOTRACK",
    "CT",
    "TRACE",
    "TPROXY",
    "TCPMSS",
    "NFQUEUE",
];

/// The jumps to other chains that moved before `drop` in its chain and fit
/// the packet: the chains it was judged by before (kube-router's "run
/// through nw policy" jumps, which return).
fn siblings<'a>(l: &'a LegacyMoved, drop: &Entry, t: &Tuple) -> Vec<&'a Entry> {
    let Some(at) = l.moved.iter().position(|e| std::ptr::eq(e, drop)) else {
        return Vec::new();
    };
    l.moved[..at]
        .iter()
        .filter(|e| e.table == drop.table && e.chain == drop.chain && !e.is_policy())
        .filter(|e| {
            xtables::rule(&e.rule).is_some_and(|r| {
                !r.target.is_empty() && !TARGETS.contains(&r.target.as_str()) && r.accepts(t)
            })
        })
        .collect()
}

fn hit(e: &Entry, family: u8, last: bool) -> RuleHit {
    let r = xtables::rule(&e.rule).unwrap_or_default();
    let (verdict, action) = match (last, r.target.as_str()) {
        (true, "REJECT") => (verdict::DROP, Action::Reject),
        (true, _) => (verdict::DROP, Action::Other),
        (false, _) if r.goto => (verdict::GOTO, Action::Other),
        (false, _) => (verdict::JUMP, Action::Other),
    };
    RuleHit {
        kind: TraceKind::Rule,
        family,
        table: e.table.clone(),
        chain: e.chain.clone(),
        // Legacy rules have no handle.
        handle: 0,
        verdict,
        target: if last { String::new() } else { r.target },
        rule: e.rule.clone(),
        comment: r.comment,
        element: String::new(),
        target_comment: String::new(),
        action,
    }
}

fn judge(tl: &Timeline, at: &At, l: &LegacyMoved, family: u8) -> Option<Explained> {
    let hook = tl
        .drop_hook
        .and_then(|(h, _)| HOOK_CHAINS.get(h as usize).copied());
    let found = paths(l, &at.tuple, hook);
    let where_ = hook_words(tl);
    match found.as_slice() {
        [one] => {
            let (drop, jumps) = one.split_last()?;
            let mut hits: Vec<RuleHit> = jumps.iter().map(|e| hit(e, family, false)).collect();
            hits.extend(
                siblings(l, drop, &at.tuple)
                    .into_iter()
                    .map(|e| hit(e, family, false)),
            );
            hits.push(hit(drop, family, true));
            let m = rules::drop_rule(&hits)?;
            Some(Explained {
                hint: rules::drop_hint(&m, Some(&at.tuple)),
                cause: None,
                ruled_out: Vec::new(),
                rule: Some(m),
            })
        }
        [] => policy(l, at, hook, &where_),
        many => {
            let said: Vec<String> = many
                .iter()
                .filter_map(|p| p.last())
                .map(|e| format!("`{}` in table {}", e.rule, e.table))
                .collect();
            Some(Explained {
                hint: format!(
                    "a legacy iptables rule dropped it{where_} in netns {}: one of {} rules whose counters moved and whose matches fit this packet, of {} rules in its legacy tables: {}",
                    at.netns_name,
                    many.len(),
                    l.rules,
                    said.join("; ")
                ),
                cause: None,
                ruled_out: Vec::new(),
                rule: None,
            })
        }
    }
}

/// No rule fits: the hook's built-in chain's policy, if it drops and its
/// counter moved.
fn policy(l: &LegacyMoved, at: &At, hook: Option<&str>, where_: &str) -> Option<Explained> {
    let p = l
        .moved
        .iter()
        .find(|e| e.is_policy() && e.policy == "DROP" && hook.is_none_or(|h| h == e.chain))?;
    let mut c: Cause = at.cause("chain_policy");
    c.setting = Some(format!(
        "policy of chain {} in legacy iptables table {}",
        p.chain, p.table
    ));
    c.value = Some("drop".into());
    Some(Explained {
        hint: format!(
            "the legacy iptables policy of chain {} in table {} dropped it{where_} in netns {} (policy of chain {} in legacy iptables table {} = drop; its counter moved by {}): no rule of the chain accepted this packet; add a rule that accepts it, or check which of the {} rules should have (iptables-legacy-save -c)",
            p.chain, p.table, at.netns_name, p.chain, p.table, p.packets, l.rules
        ),
        cause: Some(c),
        ruled_out: vec!["a legacy rule (none that fits this packet counted a packet)".into()],
        rule: None,
    })
}
