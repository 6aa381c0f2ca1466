//! The view model: what a completed timeline, connection or note shows, in
//! the words every output uses. JSON serializes it as is (its keys are
//! documented in the README and kept stable); text, pcapng comments and the
//! dashboard render the same fields.
use std::net::IpAddr;

use netflow_common::Point;
use serde::Serialize;

use crate::output::dns::DnsView;

use crate::{
    correlate::cause::{Cause, Explained},
    correlate::connections::{Connection, DirCounts, Outcome, Where},
    correlate::rules::{drop_hint, K8sRef, RuleMatch},
    correlate::{tcp_state_name, DropInfo, Hop, Nat, NatKind, Note, NoteKind, Timeline, Verdict},
    decode::packet::{Encap, Proto, Tuple},
    decode::rule::{family_name, verdict, RuleHit, TraceKind},
    decode::{names::Names, IcmpError},
    output::diagnose::{hint, hook_name, outcome_hint, reason_from_location, UNAVAILABLE},
};

#[derive(Debug, Clone, Serialize)]
pub struct FlowView {
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HopView {
    pub ts_ns: u64,
    pub point: &'static str,
    pub ifname: String,
    pub ifindex: u32,
    pub netns: u32,
    pub netns_name: Option<String>,
    /// The bridge (or bond, VRF) this device is a port of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    pub dir: Option<&'static str>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub len: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    pub encap: Option<Encap>,
    /// Netfilter points: the hook, and whether before or after its built-in hooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatView>,
    /// nftables table and chain, where the kernel lets netflow see them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// An ICMP error the node sent about the packet (`icmp_error` hops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpView>,
    /// The routing decision (`route` hops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteView>,
}

/// `{"table","oif","gw","error"}`: the table that answered, the route's
/// device and gateway, or why the lookup failed.
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    pub table: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oif: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

pub fn route_view(h: &Hop) -> Option<RouteView> {
    let r = h.route?;
    Some(RouteView {
        table: r.table,
        oif: (r.err == 0 && !h.ifname.is_empty()).then(|| h.ifname.clone()),
        gw: r.gw,
        error: r.error(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct IcmpView {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
    pub what: &'static str,
    /// For "fragmentation needed": the MTU of the device the packet's route
    /// leads to (the hop's device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

pub fn icmp_view(e: &IcmpError) -> IcmpView {
    IcmpView {
        icmp_type: e.icmp_type,
        code: e.code,
        what: e.words(),
        mtu: e.frag_needed().then_some(e.mtu),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NatView {
    pub kind: NatKind,
    pub from: String,
    pub to: String,
    /// The Service a DNAT serves (`ns/name:port`), from kube-proxy's rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// How the call reached it: `NodePort`, `externalIP`, `LoadBalancer`,
    /// `ClusterIP` or `hostPort` (from the rules on its way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// The rule that translated, where nftables tracing named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sRef>,
}

impl NatView {
    /// As text and the dashboard say it: `NodePort 192.168.5.1:30080 ->
    /// 10.100.0.2:8080 (Service default/web:http)`, `DNAT a -> b`, `SNAT a -> b`.
    pub fn words(&self) -> String {
        let kind = match (self.kind, self.via) {
            (NatKind::Dnat, Some(via)) => via,
            (NatKind::Dnat, None) => "DNAT",
            (NatKind::Snat, _) => "SNAT",
        };
        let mut s = format!("{kind} {} -> {}", self.from, self.to);
        if let Some(k) = &self.k8s {
            s.push_str(&format!(" ({} {})", k.kind, k.display()));
        }
        s
    }
}

/// A rule as nftables tracing named it: `{"family","table","chain",
/// "handle","rule","comment","verdict"}`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    pub family: &'static str,
    pub table: String,
    pub chain: String,
    /// The rule's handle; absent for a chain's policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// As `iptables-save` (rules iptables-nft wrote) or `nft` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The comment of the set or map element the packet matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    /// The comment that names the chain a jump went to (Calico's policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_comment: Option<String>,
    pub verdict: &'static str,
}

pub fn rule_view(h: &RuleHit) -> RuleView {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    RuleView {
        family: family_name(h.family),
        table: h.table.clone(),
        chain: h.chain.clone(),
        handle: (h.kind != TraceKind::Policy).then_some(h.handle),
        rule: some(&h.rule),
        comment: some(&h.comment),
        element: some(&h.element),
        target_comment: some(&h.target_comment),
        verdict: verdict::name(h.verdict),
    }
}

pub use crate::decode::packet::endpoint;

#[derive(Debug, Clone, Serialize)]
pub struct DropView {
    pub reason: String,
    /// Where the kernel gives no reason (before 5.17): the reason its
    /// location most likely means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likely: Option<&'static str>,
    pub location: String,
    pub hint: String,
    /// Netfilter hook where the packet was last seen before filtering.
    pub hook: Option<&'static str>,
    /// The rule that dropped it, where nftables tracing named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleView>,
    /// The Kubernetes object that rule belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sRef>,
    /// A drop because no policy accepted the packet, when several judged
    /// it: all of them, in order (`k8s` is the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<K8sRef>>,
    /// The node setting or state behind it, as read on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// What the evidence ruled out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ruled_out: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineView {
    pub kind: &'static str,
    pub flow: Option<FlowView>,
    pub verdict: Verdict,
    pub hops: Vec<HopView>,
    pub drop: Option<DropView>,
    /// Freed after a socket took it: not a drop on its path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<DropView>,
    /// `unknown` packets: where they were last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<HopView>,
    /// Events of this packet may be missing (ring buffer full).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// The DNS message it carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsView>,
}

/// A point as the text output names it (finer than [`point_name`]: tc
/// direction, before/after netfilter's own hooks).
pub fn point_label(p: Point) -> &'static str {
    match p {
        Point::Rx => "rx",
        Point::Tx => "tx",
        Point::TcIngress => "tc-in",
        Point::TcEgress => "tc-out",
        Point::Drop => "kfree_skb",
        Point::Consume => "consume",
        Point::Deliver => "socket",
        Point::NfEarly => "nf",
        Point::NfLate => "nf-after",
        Point::TcpRetransmit => "tcp-retransmit",
        Point::TcpReset => "tcp-reset",
        Point::NftChain => "nft-chain",
        Point::Socket => "socket",
        Point::IcmpSend => "icmp-error",
        Point::RuleTrace => "rule",
        Point::Route => "route",
    }
}

/// A verdict as every output writes it (JSON's value, pcapng comments,
/// the dashboard; text in capitals).
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Forwarded => "forwarded",
        Verdict::Delivered => "delivered",
        Verdict::Dropped => "dropped",
        Verdict::Unclaimed => "unclaimed",
        Verdict::Unknown => "unknown",
    }
}

pub fn point_name(p: Point) -> &'static str {
    match p {
        Point::Rx => "rx",
        Point::Tx => "tx",
        Point::TcIngress | Point::TcEgress => "tc",
        Point::Drop => "kfree_skb",
        Point::Consume => "consume_skb",
        Point::Deliver => "socket",
        Point::NfEarly | Point::NfLate => "nf",
        Point::TcpRetransmit => "tcp_retransmit",
        Point::TcpReset => "tcp_reset",
        Point::NftChain => "nft_chain",
        Point::Socket => "socket",
        Point::IcmpSend => "icmp_error",
        Point::RuleTrace => "rule",
        Point::Route => "route",
    }
}

pub fn direction(p: Point) -> Option<&'static str> {
    match p {
        Point::Rx | Point::TcIngress => Some("ingress"),
        Point::Tx | Point::TcEgress => Some("egress"),
        _ => None,
    }
}

pub fn flow_view(t: &Tuple) -> FlowView {
    FlowView {
        proto: t.proto,
        src: t.src,
        dst: t.dst,
        sport: t.sport,
        dport: t.dport,
    }
}

pub fn hop_view(h: &Hop, names: &Names) -> HopView {
    let t = h.packet.as_ref().map(|p| p.tuple);
    HopView {
        ts_ns: h.ts_ns,
        point: point_name(h.point),
        ifname: h.ifname.clone(),
        ifindex: h.ifindex,
        netns: h.netns,
        netns_name: names.netns(h.netns).map(str::to_string),
        master: names.master(h.netns, h.ifindex).map(str::to_string),
        dir: direction(h.point),
        src: t.map(|t| t.src),
        dst: t.map(|t| t.dst),
        sport: t.and_then(|t| t.sport),
        dport: t.and_then(|t| t.dport),
        len: h.len,
        tcp_flags: h.packet.as_ref().and_then(|p| p.tcp_flags.clone()),
        encap: h.packet.as_ref().and_then(|p| p.encap),
        hook: matches!(h.point, Point::NfEarly | Point::NfLate | Point::NftChain)
            .then(|| hook_name(h.hook)),
        table: h.nft.as_ref().map(|n| n.0.clone()),
        chain: h.nft.as_ref().map(|n| n.1.clone()),
        stage: match h.point {
            Point::NfEarly => Some("early"),
            Point::NfLate => Some("late"),
            _ => None,
        },
        nat: h.nat.map(|n| nat_view(n, h.rule.as_deref())),
        icmp: h.icmp.as_ref().map(icmp_view),
        route: route_view(h),
    }
}

pub fn nat_view(n: Nat, rule: Option<&RuleMatch>) -> NatView {
    let k8s = rule.and_then(|r| r.k8s.clone());
    NatView {
        kind: n.kind,
        from: endpoint(n.from),
        to: endpoint(n.to),
        service: k8s
            .as_ref()
            .filter(|k| k.kind == "Service" && n.kind == NatKind::Dnat)
            .map(K8sRef::display),
        via: rule.and_then(|r| r.via).filter(|_| n.kind == NatKind::Dnat),
        rule: rule.map(|r| rule_view(&r.hit)),
        k8s,
    }
}

/// A drop with its reason and location names, and the hint.
pub fn drop_view(d: DropInfo, hook: Option<u8>, names: &Names) -> DropView {
    let reason = names.reason(d.reason);
    let location = names.location(d.location);
    DropView {
        hint: hint(&reason, hook, &location),
        likely: (reason == UNAVAILABLE)
            .then(|| reason_from_location(&location))
            .flatten(),
        hook: hook.map(hook_name),
        reason,
        location,
        rule: None,
        k8s: None,
        policies: None,
        cause: None,
        ruled_out: Vec::new(),
    }
}

/// The rule that dropped the packet, its object, and the hint they give.
fn name_rule(v: &mut DropView, rule: Option<&RuleMatch>) {
    if let Some(m) = rule {
        v.hint = drop_hint(m);
        v.rule = Some(rule_view(&m.hit));
        v.k8s = m.k8s.clone();
        if m.judged_by.len() > 1 {
            v.policies = Some(m.judged_by.clone());
        }
    }
}

/// A timeline's drop; for a packet too big for its route's device, with
/// the ICMP "fragmentation needed" the node sent, the hint names that
/// device and its MTU.
pub fn timeline_drop_view(tl: &Timeline, names: &Names) -> Option<DropView> {
    let d = tl.drop?;
    let mut v = drop_view(d, tl.drop_hook.map(|(h, _)| h), names);
    let too_big = tl
        .hops
        .iter()
        .rev()
        .find(|h| h.icmp.is_some_and(|e| e.frag_needed()));
    if let (true, Some(_)) = (v.reason == UNAVAILABLE, too_big) {
        // A kernel without drop reasons: the ICMP error says which.
        v.likely = Some("PKT_TOO_BIG");
    }
    name_rule(&mut v, tl.drop_rule.as_ref());
    explain(&mut v, tl.explained.as_deref());
    Some(v)
}

/// The cause the node's evidence names, and what it ruled out.
fn explain(v: &mut DropView, e: Option<&Explained>) {
    if let Some(e) = e {
        v.hint = e.hint.clone();
        v.cause = e.cause.clone();
        v.ruled_out = e.ruled_out.clone();
    }
}

pub fn timeline_view(tl: &Timeline, names: &Names) -> TimelineView {
    TimelineView {
        kind: "packet",
        flow: tl.tuple().as_ref().map(flow_view),
        verdict: tl.verdict,
        hops: tl.hops.iter().map(|h| hop_view(h, names)).collect(),
        drop: timeline_drop_view(tl, names),
        after: tl.after.map(|d| drop_view(d, None, names)),
        last_seen: (tl.verdict == Verdict::Unknown)
            .then(|| tl.hops.last().map(|h| hop_view(h, names)))
            .flatten(),
        incomplete: tl.incomplete,
        dns: tl.dns.as_deref().map(crate::output::dns::message_view),
    }
}

/// One connection: `{"kind":"flow", ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub kind: &'static str,
    pub flow: FlowView,
    pub outcome: Outcome,
    /// The hop where it went wrong.
    #[serde(rename = "where")]
    pub at: Option<HopView>,
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likely: Option<&'static str>,
    pub location: Option<String>,
    /// The netfilter hook that dropped it, when a filter did.
    pub hook: Option<&'static str>,
    /// The rule that dropped it and its Kubernetes object (rule tracing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sRef>,
    /// The node setting or state behind the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    pub hint: Option<String>,
    pub fwd: DirCounts,
    pub rev: DirCounts,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    pub nat: Option<NatView>,
    /// Every translation of the initiator's packets, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub translations: Vec<NatView>,
    /// Its DNS lookup, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsView>,
}

/// Where a connection went wrong, in words: "at FORWARD on vclient in
/// netns node", "dropped on eth0 in netns server", "at the socket in netns
/// server (arrived on eth0)".
pub fn where_words(w: &Where, names: &Names) -> String {
    let h = &w.hop;
    let netns = names
        .netns(h.netns)
        .map(str::to_string)
        .unwrap_or_else(|| h.netns.to_string());
    let dev = if h.ifname.is_empty() { "-" } else { &h.ifname };
    match (w.drop_hook, h.point) {
        (Some((hook, _)), _) => format!(
            "at {} on {dev} in netns {netns}",
            hook_name(hook).to_uppercase()
        ),
        (None, Point::Drop) => format!("dropped on {dev} in netns {netns}"),
        (None, Point::Socket) => format!("at the socket in netns {netns} (arrived on {dev})"),
        (None, p) => format!("at {} on {dev} in netns {netns}", point_name(p)),
    }
}

pub fn connection_view(c: &Connection, names: &Names) -> ConnectionView {
    let drop = c.at.as_ref().and_then(|w| {
        w.drop.map(|d| {
            let mut v = drop_view(d, w.drop_hook.map(|(h, _)| h), names);
            name_rule(&mut v, w.rule.as_ref());
            explain(&mut v, w.explained.as_deref());
            v
        })
    });
    let at_words =
        c.at.as_ref()
            .map(|w| where_words(w, names))
            .unwrap_or_default();
    ConnectionView {
        kind: "flow",
        flow: flow_view(&c.tuple),
        outcome: c.outcome,
        at: c.at.as_ref().map(|w| hop_view(&w.hop, names)),
        hint: c
            .dns
            .as_deref()
            .filter(|_| matches!(c.outcome, Outcome::DnsError | Outcome::NoReply))
            .and_then(|l| {
                let server = crate::decode::packet::endpoint((c.tuple.dst, c.tuple.dport));
                crate::output::dns::hint(l, &server)
            })
            .or_else(|| outcome_hint(c.outcome, drop.as_ref().map(|d| d.hint.clone()), &at_words)),
        reason: drop.as_ref().map(|d| d.reason.clone()),
        likely: drop.as_ref().and_then(|d| d.likely),
        hook: drop.as_ref().and_then(|d| d.hook),
        rule: drop.as_ref().and_then(|d| d.rule.clone()),
        k8s: drop.as_ref().and_then(|d| d.k8s.clone()),
        cause: drop.as_ref().and_then(|d| d.cause.clone()),
        location: drop.map(|d| d.location),
        fwd: c.fwd,
        rev: c.rev,
        first_ts_ns: c.first_ts_ns,
        last_ts_ns: c.last_ts_ns,
        nat: c.nat.map(|n| nat_view(n, dnat_rule(c, n))),
        translations: c
            .translations
            .iter()
            .map(|n| nat_view(*n, dnat_rule(c, *n)))
            .collect(),
        dns: c.dns.as_deref().and_then(crate::output::dns::lookups_view),
    }
}

/// A connection's destination translation's rule, for that translation.
fn dnat_rule(c: &Connection, n: Nat) -> Option<&RuleMatch> {
    c.dnat_rule.as_deref().filter(|_| n.kind == NatKind::Dnat)
}

#[derive(Debug, Clone, Serialize)]
pub struct NoteView {
    pub kind: &'static str,
    pub event: NoteKind,
    pub flow: FlowView,
    pub ts_ns: u64,
    pub netns: u32,
    pub netns_name: Option<String>,
    pub state: &'static str,
    pub count: u32,
}

pub fn note_view(n: &Note, names: &Names) -> NoteView {
    NoteView {
        kind: "tcp",
        event: n.kind,
        flow: flow_view(&n.tuple),
        ts_ns: n.ts_ns,
        netns: n.netns,
        netns_name: names.netns(n.netns).map(str::to_string),
        state: tcp_state_name(n.tcp_state),
        count: n.count,
    }
}
