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
//! | `no_rule` | `NETFILTER_DROP` that rule tracing followed without a rule dropping it | conntrack's `nf_conntrack_count`/`max` (`conntrack_full` when full) |
pub mod evidence;
pub mod explained;
pub mod frees;
pub mod nat;

pub use explained::{Cause, Explained};

use std::net::IpAddr;

use netflow_common::Point;

use self::evidence::{link, neighbours, setting_name, sysctl, Ask};
use crate::{
    correlate::{Nat, Timeline, Verdict},
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
            cause: Some(c),
            ruled_out: vec!["a rule (none of the chain's rules dropped it)".into()],
            hint: crate::correlate::rules::drop_hint(m),
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
        "NETFILTER_DROP" => no_rule(tl, &at, ask),
        _ => None,
    }
}

/// Where the packet died: the drop's namespace and device.
struct At {
    netns: u32,
    netns_name: String,
    ifindex: u32,
    dev: String,
    tuple: Tuple,
    /// The namespace is a selected pod's.
    pod: bool,
}

impl At {
    fn of(tl: &Timeline, names: &Names) -> Option<Self> {
        let drop = tl.hops.iter().rev().find(|h| h.point == Point::Drop)?;
        // The device the kernel had for it, else the last one it was seen on
        // in that namespace.
        let dev_hop = std::iter::once(drop)
            .chain(tl.hops.iter().rev())
            .find(|h| h.netns == drop.netns && !h.ifname.is_empty() && h.ifindex != 0);
        let tuple = tl
            .hops
            .iter()
            .rev()
            .find_map(|h| h.packet.as_ref().map(|p| p.tuple))?;
        Some(At {
            netns: drop.netns,
            netns_name: names.netns_label(drop.netns),
            ifindex: dev_hop.map(|h| h.ifindex).unwrap_or(0),
            dev: dev_hop.map(|h| h.ifname.clone()).unwrap_or_default(),
            tuple,
            pod: names.pods.contains_key(&drop.netns),
        })
    }

    fn v6(&self) -> bool {
        self.tuple.dst.is_ipv6()
    }

    fn cause(&self, kind: &'static str) -> Cause {
        Cause {
            kind,
            setting: None,
            value: None,
            netns: Some(self.netns),
            netns_name: Some(self.netns_name.clone()),
            dev: (!self.dev.is_empty()).then(|| self.dev.clone()),
            addr: None,
        }
    }
}

/// `setting = value` as the hints and the ruled-out list say it.
fn said(key: &str, value: &str) -> String {
    format!("{} = {value}", setting_name(key))
}

/// The packet was larger than its route's device allowed: the node's ICMP
/// error says which device and MTU.
fn too_big(tl: &Timeline, reason: &str, inferred: bool, at: &At) -> Option<Explained> {
    let h = tl
        .hops
        .iter()
        .rev()
        .find(|h| h.icmp.is_some_and(|e| e.frag_needed()))?;
    if reason != "PKT_TOO_BIG" && !inferred {
        return None;
    }
    let e = h.icmp?;
    let (sent, frag) = match e.v6 {
        true => ("ICMPv6 packet too big", "IPv6 routers never fragment"),
        false => ("ICMP fragmentation needed", "may not be fragmented"),
    };
    let mut c = at.cause("mtu");
    c.setting = Some(format!("mtu of {}", h.ifname));
    c.value = Some(e.mtu.to_string());
    c.dev = Some(h.ifname.clone());
    c.netns = Some(h.netns);
    Some(Explained {
        cause: Some(c),
        ruled_out: Vec::new(),
        hint: format!(
            "the packet ({} bytes) is larger than the MTU {} of {} and {frag}: the node sent {sent}; lower the sender's MTU (or MSS) or raise {}'s, counting the tunnel's overhead",
            h.len, e.mtu, h.ifname, h.ifname
        ),
    })
}

/// A route lookup failed: the table that had no answer.
fn failed_route(tl: &Timeline) -> Option<Explained> {
    let (h, r) = tl
        .hops
        .iter()
        .rev()
        .find_map(|h| h.route.filter(|r| r.err != 0).map(|r| (h, r)))?;
    let dst = tl
        .hops
        .iter()
        .rev()
        .find_map(|h| h.packet.as_ref().map(|p| p.tuple.dst.to_string()))
        .unwrap_or_default();
    let error = r.error().unwrap_or("lookup failed");
    Some(Explained {
        cause: Some(Cause {
            kind: "no_route",
            setting: Some(format!("route table {}", r.table)),
            value: Some(error.to_string()),
            netns: Some(h.netns),
            netns_name: None,
            dev: None,
            addr: Some(dst.clone()),
        }),
        ruled_out: Vec::new(),
        hint: format!(
            "no route to {dst}: the lookup in table {} failed ({error}); check `ip route show table {}` and `ip rule` where it was dropped",
            r.table, r.table
        ),
    })
}

/// Dropped as undeliverable after a route was found: forwarding off on the
/// node or on the arrival device. `sure`: the kernel's reason says the
/// packet could not be forwarded, so forwarding on is worth ruling out.
fn forwarding(tl: &Timeline, at: &At, ask: &mut Ask, sure: bool) -> Option<Explained> {
    let routed = tl
        .hops
        .iter()
        .rev()
        .find(|h| h.netns == at.netns && h.route.is_some_and(|r| r.err == 0));
    let (global, dev) = if at.v6() {
        (
            "net/ipv6/conf/all/forwarding".to_string(),
            format!("net/ipv6/conf/{}/forwarding", at.dev),
        )
    } else {
        (
            "net/ipv4/ip_forward".to_string(),
            format!("net/ipv4/conf/{}/forwarding", at.dev),
        )
    };
    let g = sysctl(ask, at.netns, &global);
    let d = (!at.dev.is_empty())
        .then(|| sysctl(ask, at.netns, &dev))
        .flatten();
    let off = |v: &Option<String>| v.as_deref() == Some("0");
    let via = routed
        .map(|h| format!(" (its route leads out of {})", h.ifname))
        .unwrap_or_default();
    let dst = endpoint((at.tuple.dst, None));
    let (key, value) = match (off(&g), off(&d)) {
        (true, _) => (global.clone(), "0"),
        (false, true) => (dev.clone(), "0"),
        _ if !sure => return None,
        _ => {
            let mut ruled_out = Vec::new();
            for (k, v) in [(&global, &g), (&dev, &d)] {
                if let Some(v) = v {
                    ruled_out.push(format!("{} in netns {}", said(k, v), at.netns_name));
                }
            }
            if ruled_out.is_empty() {
                return None;
            }
            return Some(Explained {
                cause: None,
                hint: format!(
                    "the node could not deliver or forward it to {dst}{via}: forwarding is on ({}); check `ip route get {dst}` and the address's scope",
                    ruled_out.join(", ")
                ),
                ruled_out,
            });
        }
    };
    let mut c = at.cause("forwarding_disabled");
    c.setting = Some(setting_name(&key));
    c.value = Some(value.into());
    c.addr = Some(dst.clone());
    let hint = format!(
        "forwarding is off: {} in netns {}, so the node drops what arrives on {} for {dst}{via} instead of routing it; pod traffic needs it on (sysctl -w {}=1)",
        said(&key, value),
        at.netns_name,
        at.dev,
        setting_name(&key)
    );
    Some(Explained {
        cause: Some(c),
        ruled_out: Vec::new(),
        hint,
    })
}

/// Neighbour resolution gave up: whose address went unanswered, and for a
/// pod's veth whether its other end would answer for the gateway.
fn neighbour(tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
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
        hint: format!(
            "nobody answered {proto} for {what} {addr} on {} in netns {}{state_words}: the kernel held the packet while it asked, then gave up{peer_words}{ruled} (ip neigh show dev {})",
            at.dev, at.netns_name, at.dev
        ),
        cause: Some(c),
        ruled_out,
    })
}

/// Reverse-path filtering: the setting that made it strict (the kernel uses
/// the higher of `conf.all` and the device's).
fn rp_filter(_tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
    if at.v6() || at.dev.is_empty() {
        return None;
    }
    let all = "net/ipv4/conf/all/rp_filter".to_string();
    let dev = format!("net/ipv4/conf/{}/rp_filter", at.dev);
    let num = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u8>().ok());
    let (a, d) = (sysctl(ask, at.netns, &all), sysctl(ask, at.netns, &dev));
    let (na, nd) = (num(&a), num(&d));
    let (key, v) = match (na, nd) {
        (Some(x), Some(y)) if y >= x && y > 0 => (dev, y),
        (Some(x), _) if x > 0 => (all, x),
        (None, Some(y)) if y > 0 => (dev, y),
        _ => return None,
    };
    let mode = if v == 1 { "strict" } else { "loose" };
    let mut c = at.cause("rp_filter");
    c.setting = Some(setting_name(&key));
    c.value = Some(v.to_string());
    c.addr = Some(at.tuple.src.to_string());
    let fix = if v == 1 {
        "fix the route back, or set it to 2 (loose) where pod traffic is asymmetric".to_string()
    } else {
        format!(
            "loose mode accepts a source routed by another device only when {} has an IPv4 address; route {} back by {} or turn rp_filter off (0) for it and conf.all",
            at.dev, at.tuple.src, at.dev
        )
    };
    Some(Explained {
        hint: format!(
            "reverse-path filter ({mode}): {} in netns {} (the kernel uses the higher of conf.all and conf.{}), and the route back to {} does not leave by {}: {fix}",
            said(&key, &v.to_string()),
            at.netns_name,
            at.dev,
            at.tuple.src,
            at.dev
        ),
        cause: Some(c),
        ruled_out: Vec::new(),
    })
}

/// No socket for a reply that came back from a Service's backend without
/// its translation reversed: the client never called that address. Often
/// a bridge that does not pass bridged packets to netfilter.
fn untranslated_reply(
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
fn no_rule(tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
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

#[cfg(test)]
mod tests {
    use super::evidence::{Answer, Query};
    use super::*;
    use crate::correlate::{tests::ev, tests::icmp, Config, Correlator};
    use crate::decode::{RouteLookup, What};

    struct NoConns;
    impl Translations for NoConns {
        fn dnat_of_reply(&self, _: &Tuple) -> Option<Nat> {
            None
        }
    }

    /// A forwarded packet dropped as undeliverable after its route was found.
    fn undeliverable() -> (Timeline, Names) {
        let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
        let mut c = Correlator::new(Config::default());
        c.push(ev(10, 0xa, Point::Rx, "va", &p));
        let mut r = ev(12, 0xa, Point::Route, "vb", &p);
        r.what = What::Route(RouteLookup {
            table: 254,
            gw: None,
            err: 0,
        });
        c.push(r);
        c.push(ev(20, 0xa, Point::Drop, "va", &p));
        let tl = c.flush().remove(0);
        let mut names = Names::default();
        names.reasons.insert(5, "IP_INADDRERRORS".into());
        (tl, names)
    }

    fn answers(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl FnMut(&Query) -> Option<Answer> {
        move |q| match q {
            Query::Sysctl { key, .. } => pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| Answer::Value(v.to_string())),
            _ => None,
        }
    }

    #[test]
    fn forwarding_off_is_named_with_its_setting() {
        let (tl, names) = undeliverable();
        let mut ask = answers(&[
            ("net/ipv4/ip_forward", "0"),
            ("net/ipv4/conf/va/forwarding", "0"),
        ]);
        let e = explain(&tl, &names, &mut ask, &NoConns).unwrap();
        let c = e.cause.unwrap();
        assert_eq!(c.kind, "forwarding_disabled");
        assert_eq!(c.setting.as_deref(), Some("net.ipv4.ip_forward"));
        assert_eq!(c.value.as_deref(), Some("0"));
        assert!(
            e.hint.contains("net.ipv4.ip_forward = 0") && e.hint.contains("vb"),
            "{}",
            e.hint
        );
        // Off on the device only: the device's setting.
        let mut ask = answers(&[
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/va/forwarding", "0"),
        ]);
        let c = explain(&tl, &names, &mut ask, &NoConns)
            .unwrap()
            .cause
            .unwrap();
        assert_eq!(c.setting.as_deref(), Some("net.ipv4.conf.va.forwarding"));
    }

    #[test]
    fn forwarding_on_is_ruled_out_and_no_evidence_names_nothing() {
        let (tl, names) = undeliverable();
        let mut ask = answers(&[
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/va/forwarding", "1"),
        ]);
        let e = explain(&tl, &names, &mut ask, &NoConns).unwrap();
        assert!(e.cause.is_none());
        assert_eq!(e.ruled_out.len(), 2, "{:?}", e.ruled_out);
        assert!(e.hint.contains("forwarding is on"), "{}", e.hint);
        // Without drop reasons (5.10), freed in ip_forward with forwarding
        // on: no forwarding cause, nothing ruled out (it may be too big).
        let mut old = tl.clone();
        old.drop.as_mut().unwrap().reason = netflow_common::REASON_UNAVAILABLE;
        let mut old_names = names.clone();
        old_names
            .syms
            .insert(old.drop.unwrap().location, "ip_forward+0x1a".into());
        let mut ask = answers(&[
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/va/forwarding", "1"),
        ]);
        assert!(explain(&old, &old_names, &mut ask, &NoConns).is_none());
        // A recording without evidence: the kernel's reason alone.
        let mut ask = answers(&[]);
        assert!(explain(&tl, &names, &mut ask, &NoConns).is_none());
    }
}
