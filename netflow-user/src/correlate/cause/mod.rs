//! Why a packet died: the cause behind a drop, from what its timeline
//! shows and what the node says at that moment ([`evidence`]). The place
//! (device, hook, kernel function) comes from the kernel; the cause comes
//! from a setting or a state read on the node, and is named only when the
//! evidence shows it — with the setting and its value, the namespace and
//! the device. What the evidence rules out is said too.
//!
//! | cause (`kind`) | signal | evidence read |
//! | --- | --- | --- |
//! | `forwarding_disabled` | `IP_INADDRERRORS` after a route was found | `net.ipv4.ip_forward`, `conf.DEV.forwarding` (IPv6: `conf.all/DEV.forwarding`) |
//! | `gateway_unanswered` | `NEIGH_FAILED` on a pod's device | its neighbour entries, its veth peer, the peer's `proxy_arp` |
//! | `neighbour_unanswered` | `NEIGH_FAILED`, `proxy_arp` not in question | the neighbour entry and its state |
//! | `rp_filter` | `IP_RPFILTER` | `conf.all.rp_filter`, `conf.DEV.rp_filter` (the kernel uses the higher) |
//! | `reply_not_translated` | `NO_SOCKET` for a reply from a DNAT'd connection's backend | bridges it crossed, their namespace's `bridge-nf-call-iptables` |
//! | `mtu` | `PKT_TOO_BIG` with the node's ICMP error | the route's device and its MTU (from the ICMP error) |
//! | `no_route` | a failed route lookup | the table and the error |
//! | `chain_policy` | `NETFILTER_DROP` by a base chain's policy (rule tracing) | the chain, its table and family |
//! | `conntrack_full` | `NETFILTER_DROP` at PREROUTING/OUTPUT with conntrack's `drop` statistic moved | ctnetlink's per-CPU statistics (`conntrack -S`), the count and `nf_conntrack_max` |
//! | `conntrack_insert_failed` | `NETFILTER_DROP` at INPUT/POSTROUTING with `insert_failed` moved | the same statistics (a UDP flow's parallel packets: the DNS 5 s delay) |
//! | a legacy rule (`rule`, `k8s`) | `NETFILTER_DROP` no nftables rule was seen making | the legacy x_tables' counters (`iptables-legacy-save -c`): the `DROP`/`REJECT` rule that moved and fits the packet, with the jumps to it |
//! | `chain_policy` (legacy) | the same, no rule fits, the hook's chain policy `DROP` moved | the built-in chain's policy counter |
//! | `no_rule` | `NETFILTER_DROP` that rule tracing followed without a rule dropping it, conntrack's statistics still | (ruled out: rules, conntrack with its count against the max) |
mod at;
mod conntrack;
pub mod evidence;
pub mod explained;
pub mod frees;
mod legacy;
pub mod nat;
mod neighbour;
mod netfilter;
mod route;

pub use explained::{Cause, Explained};
pub use netfilter::Translations;

use self::{
    at::At,
    evidence::Ask,
    neighbour::neighbour,
    netfilter::{netfilter_drop, untranslated_reply},
    route::{failed_route, forwarding, rp_filter, too_big},
};
use crate::{
    correlate::{Timeline, Verdict},
    decode::names::Names,
};

/// Explain a dropped packet (None: nothing to add to the kernel's reason).
pub fn explain(
    tl: &Timeline,
    names: &Names,
    ask: &mut Ask,
    conns: &dyn Translations,
) -> Option<Explained> {
    if tl.verdict != Verdict::Dropped {
        return None;
    }
    let d = tl.drop?;
    let location = names.location(d.location);
    let reason = frees::effective_reason(names, d.reason, &location);
    // Before drop reasons (5.17) only the location tells, and less surely.
    let inferred = names.reason(d.reason) == crate::decode::names::UNAVAILABLE;
    let at = At::of(tl, names)?;
    if let Some(e) = too_big(tl, &reason, inferred, &at) {
        return Some(e);
    }
    if let Some(m) = &tl.drop_rule {
        // A rule dropped it: its hint names it. A base chain's policy is a
        // setting of the chain, not a rule: named as such.
        if m.hit.kind != crate::decode::rule::TraceKind::Policy {
            return None;
        }
        let mut c = at.cause("chain_policy");
        c.setting = Some(format!(
            "policy of chain {} in table {} {}",
            m.hit.chain,
            crate::decode::rule::family_name(m.hit.family),
            m.hit.table
        ));
        c.value = Some("drop".into());
        return Some(Explained {
            rule: None,
            cause: Some(c),
            ruled_out: vec!["a rule (none of the chain's rules dropped it)".into()],
            hint: crate::correlate::rules::drop_hint(m, Some(&at.tuple)),
        });
    }
    if let Some(e) = failed_route(tl) {
        return Some(e);
    }
    match reason.as_str() {
        "IP_INADDRERRORS" => forwarding(tl, &at, ask, !inferred),
        // Freed in ip_forward/ip6_forward without a reason: forwarding off
        // is one possibility among several (hop limit, policy).
        "IP_INNOROUTES" if inferred => forwarding(tl, &at, ask, false),
        "NEIGH_FAILED" | "NEIGH_QUEUEFULL" | "NEIGH_DEAD" => neighbour(tl, &at, ask),
        "IP_RPFILTER" => rp_filter(tl, &at, ask),
        "NO_SOCKET" => untranslated_reply(tl, &at, names, ask, conns),
        "NETFILTER_DROP" => netfilter_drop(tl, &at, ask),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
