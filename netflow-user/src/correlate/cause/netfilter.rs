//! Causes around netfilter: a reply whose DNAT was not reversed (often a
//! bridge that bypasses netfilter), a drop by netfilter itself (conntrack).
use netflow_common::Point;

use super::{
    at::{said, At},
    conntrack,
    evidence::{link, setting_name, sysctl, Ask, ConntrackState},
    explained::{Cause, Explained},
};
use crate::{
    correlate::{Nat, Timeline},
    decode::{
        names::Names,
        packet::{endpoint, Tuple},
    },
};

/// What the cause finder needs to know about connections: the DNAT a
/// reply's connection went through, when `t` (server -> client) is the
/// reply of a translated request.
pub trait Translations {
    fn dnat_of_reply(&self, t: &Tuple) -> Option<Nat>;
}

/// No socket for a reply that came back from a Service's backend without
/// its translation reversed: the client never called that address. Often
/// a bridge that does not pass bridged packets to netfilter.
pub(super) fn untranslated_reply(
    tl: &Timeline,
    at: &At,
    names: &Names,
    ask: &mut Ask,
    conns: &dyn Translations,
) -> Option<Explained> {
    let nat = conns.dnat_of_reply(&at.tuple)?;
    if tl.hops.iter().any(|h| h.nat.is_some()) {
        return None;
    }
    let (called, backend) = (endpoint(nat.from), endpoint(nat.to));
    let key = if at.v6() {
        "net/bridge/bridge-nf-call-ip6tables"
    } else {
        "net/bridge/bridge-nf-call-iptables"
    };
    let mut ruled_out = Vec::new();
    // Bridges the reply crossed (received on a port of one).
    let mut seen: Vec<(u32, u32)> = Vec::new();
    for h in tl
        .hops
        .iter()
        .filter(|h| h.point == Point::Rx && h.ifindex != 0)
    {
        if seen.contains(&(h.netns, h.ifindex)) || h.netns == at.netns {
            continue;
        }
        seen.push((h.netns, h.ifindex));
        let Some(master) = link(ask, h.netns, h.ifindex).and_then(|l| l.master) else {
            continue;
        };
        let Some(v) = sysctl(ask, h.netns, key) else {
            continue;
        };
        let ns = names.netns_label(h.netns);
        if v == "0" {
            let c = Cause {
                kind: "reply_not_translated",
                setting: Some(setting_name(key)),
                value: Some(v.clone()),
                netns: Some(h.netns),
                netns_name: Some(ns.clone()),
                dev: Some(master.clone()),
                addr: Some(called.clone()),
            };
            return Some(Explained {
rule: None,
                hint: format!(
                    "the reply came back from {backend}, not from {called} that the client called: the request's DNAT was not reversed because the reply crossed bridge {master} in netns {ns} without netfilter ({}); the client's kernel had no socket for it and reset it. Set it to 1 (modprobe br_netfilter), as kube-proxy requires",
                    said(key, &v)
                ),
                cause: Some(c),
                ruled_out,
            });
        }
        ruled_out.push(format!("{} in netns {ns}", said(key, &v)));
    }
    let mut c = at.cause("reply_not_translated");
    c.addr = Some(called.clone());
    let ruled = if ruled_out.is_empty() {
        String::new()
    } else {
        format!(" (ruled out: {})", ruled_out.join(", "))
    };
    Some(Explained {
rule: None,
        hint: format!(
            "the reply came back from {backend}, not from {called} that the client called: it did not pass back through the conntrack that translated its request (an asymmetric return path, or the translation's entry was gone), so the client had no socket for it{ruled}"
        ),
        cause: Some(c),
        ruled_out,
    })
}

/// A netfilter drop no nftables rule was seen making: conntrack's (its
/// statistics moved), a legacy rule's (its counter moved), else, when rule
/// tracing followed the packet, netfilter's own checks.
pub(super) fn netfilter_drop(tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
    let ct = conntrack::read(ask, at);
    if let Some(e) = ct.as_ref().and_then(|c| conntrack::conntrack(tl, at, c)) {
        return Some(e);
    }
    if let Some(e) = super::legacy::legacy(tl, at, ask) {
        return Some(e);
    }
    no_rule(tl, ct.as_ref())
}

/// A netfilter drop that rule tracing followed without seeing a rule or a
/// chain's policy drop it, nor conntrack's statistics move.
fn no_rule(tl: &Timeline, ct: Option<&ConntrackState>) -> Option<Explained> {
    if tl.rules.is_empty() {
        // Rule tracing did not follow it: nothing to rule out.
        return None;
    }
    let hook = conntrack::hook_words(tl);
    let mut ruled_out = vec![
        "a rule or a chain's policy (rule tracing followed the packet and saw none drop it)"
            .to_string(),
    ];
    if let Some(c) = ct {
        ruled_out.push(conntrack::ruled_out(c));
    }
    Some(Explained {
        hint: format!(
            "netfilter dropped it{hook} and no rule did: ruled out {}; look at netfilter's own checks (conntrack -S: invalid; a helper or a match that drops)",
            ruled_out.join(", ")
        ),
        cause: None,
        ruled_out,
        rule: None,
    })
}
