//! Causes around netfilter: a reply whose DNAT was not reversed (often a
//! bridge that bypasses netfilter), a drop by netfilter itself (conntrack).
use netflow_common::Point;

use super::{
    at::{said, At},
    evidence::{link, setting_name, sysctl, Ask},
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
        hint: format!(
            "the reply came back from {backend}, not from {called} that the client called: it did not pass back through the conntrack that translated its request (an asymmetric return path, or the translation's entry was gone), so the client had no socket for it{ruled}"
        ),
        cause: Some(c),
        ruled_out,
    })
}

/// A netfilter drop that rule tracing followed without seeing a rule or a
/// chain's policy drop it: netfilter itself (conntrack) did.
pub(super) fn no_rule(tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
    if tl.rules.is_empty() {
        // Rule tracing did not follow it: nothing to rule out.
        return None;
    }
    let hook = tl
        .drop_hook
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
        .unwrap_or_default();
    let count = sysctl(ask, at.netns, "net/netfilter/nf_conntrack_count");
    let max = sysctl(ask, at.netns, "net/netfilter/nf_conntrack_max");
    let n = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    let mut ruled_out = vec![
        "a rule or a chain's policy (rule tracing followed the packet and saw none drop it)"
            .to_string(),
    ];
    if let (Some(c), Some(m)) = (n(&count), n(&max)) {
        if m > 0 && c >= m {
            let mut cause = at.cause("conntrack_full");
            cause.setting = Some("net.netfilter.nf_conntrack_max".into());
            cause.value = Some(m.to_string());
            return Some(Explained {
                hint: format!(
                    "conntrack's table is full ({c} of net.netfilter.nf_conntrack_max = {m} in netns {}): new connections are dropped{hook}; raise nf_conntrack_max or find what opens so many",
                    at.netns_name
                ),
                cause: Some(cause),
                ruled_out,
            });
        }
        ruled_out.push(format!("a full conntrack table ({c} of {m})"));
    }
    Some(Explained {
        hint: format!(
            "netfilter dropped it{hook} and no rule did: ruled out {}; look at conntrack (conntrack -S: invalid, insert_failed, drop) and at netfilter's own checks",
            ruled_out.join(", ")
        ),
        cause: None,
        ruled_out,
    })
}
