//! Neighbour resolution that gave up: whose address went unanswered, and
//! for a pod's veth whether its other end answers for the gateway.
use std::net::IpAddr;

use super::{
    at::{said, At},
    evidence::{link, neighbours, setting_name, sysctl, Ask},
    explained::Explained,
};
use crate::correlate::Timeline;

/// Neighbour resolution gave up: whose address went unanswered, and for a
/// pod's veth whether its other end would answer for the gateway.
pub(super) fn neighbour(tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
    if at.ifindex == 0 {
        return None;
    }
    let gw = tl
        .hops
        .iter()
        .rev()
        .filter(|h| h.netns == at.netns)
        .find_map(|h| h.route.and_then(|r| r.gw));
    let entries = neighbours(ask, at.netns, at.ifindex);
    let failed = |s: &str| matches!(s, "FAILED" | "INCOMPLETE");
    let entry = match gw {
        Some(g) => entries.iter().find(|n| n.addr == g),
        None => entries
            .iter()
            .find(|n| n.addr == at.tuple.dst)
            .or_else(|| entries.iter().find(|n| failed(&n.state))),
    };
    let addr: IpAddr = entry.map(|n| n.addr).or(gw).unwrap_or(at.tuple.dst);
    let state = entry.map(|n| n.state.clone());
    let is_gw = gw == Some(addr) || at.tuple.dst != addr;
    let what = match (is_gw, at.pod) {
        (true, true) => "the pod's gateway",
        (true, false) => "the gateway",
        _ => "the neighbour",
    };
    let proto = if at.v6() {
        "neighbour discovery"
    } else {
        "ARP"
    };
    let state_words = state
        .as_deref()
        .map(|s| format!(" (neighbour entry {s})"))
        .unwrap_or_default();
    let mut ruled_out = Vec::new();
    // A pod's veth: its other end answers for the gateway by proxy ARP.
    let peer = link(ask, at.netns, at.ifindex)
        .and_then(|l| l.peer)
        .and_then(|(ns, idx)| link(ask, ns, idx).map(|l| (ns, l)));
    if entry.is_none() && peer.is_none() {
        // The node said nothing (a recording without evidence).
        return None;
    }
    if let (Some((pns, p)), false) = (&peer, at.v6()) {
        let key = format!("net/ipv4/conf/{}/proxy_arp", p.name);
        if let Some(v) = sysctl(ask, *pns, &key) {
            if v == "0" && is_gw {
                let mut c = at.cause("gateway_unanswered");
                c.setting = Some(setting_name(&key));
                c.value = Some(v.clone());
                c.netns = Some(*pns);
                c.netns_name = None;
                c.dev = Some(p.name.clone());
                c.addr = Some(addr.to_string());
                return Some(Explained {
rule: None,
                    hint: format!(
                        "nobody answered {proto} for {what} {addr} on {} in netns {}{state_words}: the other end of that veth, {}, has {} and so does not answer for an address it does not own; a routed CNI (Calico's 169.254.1.1) needs proxy_arp=1 there, or give {addr} to {}",
                        at.dev, at.netns_name, p.name, said(&key, &v), p.name
                    ),
                    cause: Some(c),
                    ruled_out,
                });
            }
            ruled_out.push(format!("{} on the veth's other end", said(&key, &v)));
        }
    }
    let mut c = at.cause(if is_gw {
        "gateway_unanswered"
    } else {
        "neighbour_unanswered"
    });
    c.setting = Some(format!("neighbour {addr} on {}", at.dev));
    c.value = state.clone();
    c.addr = Some(addr.to_string());
    let peer_words = peer
        .map(|(_, p)| {
            format!(
                "; is {} (the veth's other end) up and does it own or proxy {addr}?",
                p.name
            )
        })
        .unwrap_or_else(|| format!("; is {addr} up and on the link of {}?", at.dev));
    let ruled = if ruled_out.is_empty() {
        String::new()
    } else {
        format!(" (ruled out: {})", ruled_out.join(", "))
    };
    Some(Explained {
rule: None,
        hint: format!(
            "nobody answered {proto} for {what} {addr} on {} in netns {}{state_words}: the kernel held the packet while it asked, then gave up{peer_words}{ruled} (ip neigh show dev {})",
            at.dev, at.netns_name, at.dev
        ),
        cause: Some(c),
        ruled_out,
    })
}
