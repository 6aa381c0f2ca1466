//! Destination translations no rule tracing saw (a packet selected only
//! once translated, a kernel without tracing), named from the node's
//! ruleset through the evidence: the rule, its Service, and how the call
//! reached it.
use super::evidence::{dnat_rules, Ask};
use crate::correlate::rules;
use crate::correlate::timeline::{NatKind, Timeline};

/// Name the destination translations of a packet that no rule tracing saw
/// from the node's ruleset (asked once per translation; answers recorded).
/// Only packets that open a connection ask: a reply's translation back is
/// conntrack's, not a rule's.
pub fn name_untraced(tl: &mut Timeline, ask: &mut Ask) {
    for h in tl.hops.iter_mut() {
        let Some(n) = h.nat.filter(|n| n.kind == NatKind::Dnat) else {
            continue;
        };
        if h.rule.is_some() {
            continue;
        }
        let Some(p) = h.packet.as_ref() else {
            continue;
        };
        if !opens(p) {
            continue;
        }
        let (from, to) = (addr_port(n.from), addr_port(n.to));
        if let Some(r) = dnat_rules(ask, h.netns, p.tuple.proto.number(), from, to) {
            h.rule = Some(Box::new(rules::from_ruleset(&r)));
        }
    }
}

/// A TCP SYN, an echo request, any UDP datagram (which of a UDP flow's
/// packets is a reply the timeline alone does not say).
fn opens(p: &crate::decode::packet::Packet) -> bool {
    use crate::decode::packet::Proto;
    match p.tuple.proto {
        Proto::Tcp => p.tcp_flags.as_deref() == Some("S"),
        Proto::Udp => true,
        // Only an echo request's translation is a rule's (type 8 / 128).
        Proto::Icmp | Proto::Icmpv6 => p.ids.icmp.is_some_and(|(t, ..)| t == 8 || t == 128),
        Proto::Other(_) => true,
    }
}

/// `ip:port`, `[ip6]:port`, or the address alone.
fn addr_port(e: (std::net::IpAddr, Option<u16>)) -> String {
    match e {
        (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}
