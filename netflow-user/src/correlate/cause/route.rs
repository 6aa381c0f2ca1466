//! Causes on the packet's way through routing: too big for its route's
//! device, no route, forwarding off, the reverse-path filter.
use super::{
    at::{said, At},
    evidence::{setting_name, sysctl, Ask},
    explained::{Cause, Explained},
};
use crate::{correlate::Timeline, decode::packet::endpoint};

/// The packet was larger than its route's device allowed: the node's ICMP
/// error says which device and MTU.
pub(super) fn too_big(tl: &Timeline, reason: &str, inferred: bool, at: &At) -> Option<Explained> {
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
rule: None,
        cause: Some(c),
        ruled_out: Vec::new(),
        hint: format!(
            "the packet ({} bytes) is larger than the MTU {} of {} and {frag}: the node sent {sent}; lower the sender's MTU (or MSS) or raise {}'s, counting the tunnel's overhead",
            h.len, e.mtu, h.ifname, h.ifname
        ),
    })
}

/// A route lookup failed: the table that had no answer.
pub(super) fn failed_route(tl: &Timeline) -> Option<Explained> {
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
rule: None,
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
pub(super) fn forwarding(tl: &Timeline, at: &At, ask: &mut Ask, sure: bool) -> Option<Explained> {
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
rule: None,
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
        rule: None,
        cause: Some(c),
        ruled_out: Vec::new(),
        hint,
    })
}

/// Reverse-path filtering: the setting that made it strict (the kernel uses
/// the higher of `conf.all` and the device's).
pub(super) fn rp_filter(_tl: &Timeline, at: &At, ask: &mut Ask) -> Option<Explained> {
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
rule: None,
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
