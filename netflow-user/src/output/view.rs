//! Where netflow's own values become the output's records (the wire types
//! of `netflow-schema`): the one place a completed timeline, connection or
//! note is put in the words every output uses. JSON serializes the records
//! as they are; text, pcapng comments and the dashboard render the same
//! fields.
use netflow_common::Point;
use netflow_schema as wire;
use netflow_schema::{Hop as HopView, Nat as NatView, Packet as TimelineView, Rule as RuleView};

pub use netflow_schema::Drop as DropView;

use crate::{
    correlate::cause::{Cause, Explained},
    correlate::connections::{Connection, DirCounts, Outcome, Where},
    correlate::rules::{drop_hint, K8sRef, RuleMatch},
    correlate::{tcp_state_name, DropInfo, Hop, Nat, NatKind, Note, Timeline, Verdict},
    decode::packet::{Encap, EncapKind, Proto, Tuple},
    decode::rule::{family_name, verdict, RuleHit, TraceKind},
    decode::NoteKind,
    decode::{names::Names, IcmpError},
    output::diagnose::{hint, hook_name, outcome_hint, reason_from_location, UNAVAILABLE},
};

pub fn route_view(h: &Hop) -> Option<wire::Route> {
    let r = h.route?;
    Some(wire::Route {
        table: r.table,
        oif: (r.err == 0 && !h.ifname.is_empty()).then(|| h.ifname.clone()),
        gw: r.gw,
        error: r.error().map(str::to_string),
    })
}

pub fn icmp_view(e: &IcmpError) -> wire::Icmp {
    wire::Icmp {
        icmp_type: e.icmp_type,
        code: e.code,
        what: e.words().to_string(),
        mtu: e.frag_needed().then_some(e.mtu),
    }
}

/// A translation as text and the dashboard say it: `NodePort
/// 192.168.5.1:30080 -> 10.100.0.2:8080 (Service default/web:http)`, `DNAT
/// a -> b`, `SNAT a -> b`.
pub fn nat_words(n: &NatView) -> String {
    let kind = match (n.kind, n.via.as_deref()) {
        (wire::NatKind::Dnat, Some(via)) => via,
        (wire::NatKind::Dnat, None) => "DNAT",
        (wire::NatKind::Snat, _) => "SNAT",
    };
    let mut s = format!("{kind} {} -> {}", n.from, n.to);
    if let Some(k) = &n.k8s {
        s.push_str(&format!(" ({} {})", k.kind, k8s_display(k)));
    }
    s
}

/// `ns/name:port` (or `ns/name`, or `name` for a cluster-wide object).
pub fn k8s_display(k: &wire::K8sRef) -> String {
    let name = match &k.port {
        Some(p) => format!("{}:{p}", k.name),
        None => k.name.clone(),
    };
    if k.namespace.is_empty() {
        name
    } else {
        format!("{}/{name}", k.namespace)
    }
}

pub fn k8s_view(k: &K8sRef) -> wire::K8sRef {
    wire::K8sRef {
        kind: k.kind.to_string(),
        namespace: k.namespace.clone(),
        name: k.name.clone(),
        port: k.port.clone(),
        no_endpoints: k.no_endpoints,
    }
}

pub fn cause_view(c: &Cause) -> wire::Cause {
    wire::Cause {
        kind: c.kind.to_string(),
        setting: c.setting.clone(),
        value: c.value.clone(),
        netns: c.netns,
        netns_name: c.netns_name.clone(),
        dev: c.dev.clone(),
        addr: c.addr.clone(),
    }
}

pub fn rule_view(h: &RuleHit) -> RuleView {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    RuleView {
        family: family_name(h.family).to_string(),
        table: h.table.clone(),
        chain: h.chain.clone(),
        handle: (h.kind != TraceKind::Policy && h.handle != 0).then_some(h.handle),
        rule: some(&h.rule),
        comment: some(&h.comment),
        element: some(&h.element),
        target_comment: some(&h.target_comment),
        verdict: verdict::name(h.verdict).to_string(),
    }
}

pub use crate::decode::packet::endpoint;

/// A point as the text output names it: its wire name, finer for tc (its
/// direction) and netfilter (after its own hooks).
pub fn point_label(p: Point) -> &'static str {
    match p {
        Point::TcIngress => "tc-in",
        Point::TcEgress => "tc-out",
        Point::NfLate => "nf-after",
        p => wire_point(p).as_str(),
    }
}

/// A verdict as every output writes it (JSON's value, pcapng comments,
/// the dashboard; text in capitals).
pub fn verdict_name(v: Verdict) -> &'static str {
    wire_verdict(v).as_str()
}

pub fn wire_verdict(v: Verdict) -> wire::Verdict {
    match v {
        Verdict::Forwarded => wire::Verdict::Forwarded,
        Verdict::Delivered => wire::Verdict::Delivered,
        Verdict::Dropped => wire::Verdict::Dropped,
        Verdict::Unclaimed => wire::Verdict::Unclaimed,
        Verdict::Unknown => wire::Verdict::Unknown,
    }
}

pub fn wire_outcome(o: Outcome) -> wire::Outcome {
    match o {
        Outcome::Ok => wire::Outcome::Ok,
        Outcome::RequestLost => wire::Outcome::RequestLost,
        Outcome::NoReply => wire::Outcome::NoReply,
        Outcome::ReplyLost => wire::Outcome::ReplyLost,
        Outcome::Refused => wire::Outcome::Refused,
        Outcome::DnsError => wire::Outcome::DnsError,
        Outcome::Incomplete => wire::Outcome::Incomplete,
    }
}

/// An outcome as every output writes it (text in capitals).
pub fn outcome_name(o: Outcome) -> &'static str {
    wire_outcome(o).as_str()
}

pub fn wire_point(p: Point) -> wire::Point {
    match p {
        Point::Rx => wire::Point::Rx,
        Point::Tx => wire::Point::Tx,
        Point::TcIngress | Point::TcEgress => wire::Point::Tc,
        Point::Drop => wire::Point::KfreeSkb,
        Point::Consume => wire::Point::ConsumeSkb,
        Point::Deliver | Point::Socket => wire::Point::Socket,
        Point::NfEarly | Point::NfLate => wire::Point::Nf,
        Point::TcpRetransmit => wire::Point::TcpRetransmit,
        Point::TcpReset => wire::Point::TcpReset,
        Point::NftChain => wire::Point::NftChain,
        Point::IcmpSend => wire::Point::IcmpError,
        Point::RuleTrace => wire::Point::Rule,
        Point::Route => wire::Point::Route,
        Point::SockState => wire::Point::SockState,
        Point::SockSend => wire::Point::SockSend,
    }
}

pub fn point_name(p: Point) -> &'static str {
    wire_point(p).as_str()
}

pub fn direction(p: Point) -> Option<wire::Dir> {
    match p {
        Point::Rx | Point::TcIngress => Some(wire::Dir::Ingress),
        Point::Tx | Point::TcEgress => Some(wire::Dir::Egress),
        _ => None,
    }
}

fn wire_nat_kind(k: NatKind) -> wire::NatKind {
    match k {
        NatKind::Dnat => wire::NatKind::Dnat,
        NatKind::Snat => wire::NatKind::Snat,
    }
}

pub fn wire_proto(p: Proto) -> wire::Proto {
    match p {
        Proto::Tcp => wire::Proto::Tcp,
        Proto::Udp => wire::Proto::Udp,
        Proto::Icmp => wire::Proto::Icmp,
        Proto::Icmpv6 => wire::Proto::Icmpv6,
        Proto::Other(n) => wire::Proto::Other(n),
    }
}

pub fn tcp_event(k: NoteKind) -> wire::TcpEvent {
    match k {
        NoteKind::Retransmit => wire::TcpEvent::Retransmit,
        NoteKind::Reset => wire::TcpEvent::Reset,
        NoteKind::ConnectFailed { .. } => wire::TcpEvent::ConnectFailed,
    }
}

fn encap_view(e: &Encap) -> wire::Encap {
    wire::Encap {
        kind: match e.kind {
            EncapKind::Vxlan => wire::EncapKind::Vxlan,
            EncapKind::Ipip => wire::EncapKind::Ipip,
        },
        vni: e.vni,
        outer_src: e.outer_src,
        outer_dst: e.outer_dst,
    }
}

fn counts_view(c: &DirCounts) -> wire::DirCounts {
    wire::DirCounts {
        packets: c.packets,
        bytes: c.bytes,
        delivered: c.delivered,
        dropped: c.dropped,
        sampled: c.sampled,
    }
}

pub fn flow_view(t: &Tuple) -> wire::Flow {
    wire::Flow {
        proto: wire_proto(t.proto),
        src: t.src,
        dst: t.dst,
        sport: t.sport,
        dport: t.dport,
    }
}

pub fn hop_view(h: &Hop, names: &Names) -> HopView {
    // Every field named, none skipped with `..` (and the wire hop built
    // whole): a field added to either fails to compile here until JSON
    // carries it (or says why not).
    let Hop {
        ts_ns,
        point,
        // The address that joins a packet's hops; no reader's business.
        skb: _,
        netns,
        ifindex,
        ifname,
        len,
        mark: _,
        hook,
        pf: _,
        packet,
        // pcapng's.
        data: _,
        nat,
        nft,
        icmp,
        rule,
        // Through `route_view`.
        route: _,
    } = h;
    let t = packet.as_ref().map(|p| p.tuple);
    HopView {
        ts_ns: *ts_ns,
        point: wire_point(*point),
        ifname: ifname.clone(),
        ifindex: *ifindex,
        netns: *netns,
        netns_name: names.netns(*netns).map(str::to_string),
        master: names.master(*netns, *ifindex).map(str::to_string),
        dir: direction(*point),
        src: t.map(|t| t.src),
        dst: t.map(|t| t.dst),
        sport: t.and_then(|t| t.sport),
        dport: t.and_then(|t| t.dport),
        len: *len,
        tcp_flags: packet.as_ref().and_then(|p| p.tcp_flags.clone()),
        encap: packet
            .as_ref()
            .and_then(|p| p.encap.as_ref())
            .map(encap_view),
        hook: matches!(point, Point::NfEarly | Point::NfLate | Point::NftChain)
            .then(|| hook_name(*hook).to_string()),
        table: nft.as_ref().map(|n| n.0.clone()),
        chain: nft.as_ref().map(|n| n.1.clone()),
        stage: match point {
            Point::NfEarly => Some(wire::Stage::Early),
            Point::NfLate => Some(wire::Stage::Late),
            _ => None,
        },
        nat: nat.map(|n| nat_view(n, rule.as_deref())),
        icmp: icmp.as_ref().map(icmp_view),
        route: route_view(h),
    }
}

pub fn nat_view(n: Nat, rule: Option<&RuleMatch>) -> NatView {
    let k8s = rule.and_then(|r| r.k8s.as_ref());
    NatView {
        kind: wire_nat_kind(n.kind),
        from: endpoint(n.from),
        to: endpoint(n.to),
        service: k8s
            .filter(|k| k.kind == "Service" && n.kind == NatKind::Dnat)
            .map(K8sRef::display),
        via: rule
            .and_then(|r| r.via)
            .filter(|_| n.kind == NatKind::Dnat)
            .map(str::to_string),
        rule: rule.map(|r| rule_view(&r.hit)),
        k8s: k8s.map(k8s_view),
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
            .flatten()
            .map(str::to_string),
        hook: hook.map(|h| hook_name(h).to_string()),
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
fn name_rule(v: &mut DropView, rule: Option<&RuleMatch>, flow: Option<&Tuple>) {
    if let Some(m) = rule {
        v.hint = drop_hint(m, flow);
        v.rule = Some(rule_view(&m.hit));
        v.k8s = m.k8s.as_ref().map(k8s_view);
        // Several policies judged it, or the object is the pod they select.
        if m.judged_by.len() > 1
            || (!m.judged_by.is_empty() && m.k8s.as_ref() != m.judged_by.last())
        {
            v.policies = Some(m.judged_by.iter().map(k8s_view).collect());
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
        v.likely = Some("PKT_TOO_BIG".into());
    }
    name_rule(&mut v, tl.drop_rule.as_ref(), tl.tuple().as_ref());
    explain(&mut v, tl.explained.as_deref());
    Some(v)
}

/// The cause the node's evidence names, and what it ruled out.
fn explain(v: &mut DropView, e: Option<&Explained>) {
    if let Some(e) = e {
        // Its hint is the explanation's (said with the packet's tuple).
        name_rule(v, e.rule.as_ref(), None);
        v.hint = e.hint.clone();
        v.cause = e.cause.as_ref().map(cause_view);
        v.ruled_out = e.ruled_out.clone();
    }
}

pub fn timeline_view(tl: &Timeline, names: &Names) -> TimelineView {
    TimelineView {
        flow: tl.tuple().as_ref().map(flow_view),
        verdict: wire_verdict(tl.verdict),
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

pub fn connection_view(c: &Connection, names: &Names) -> wire::Connection {
    let drop = c.at.as_ref().and_then(|w| {
        w.drop.map(|d| {
            let mut v = drop_view(d, w.drop_hook.map(|(h, _)| h), names);
            name_rule(&mut v, w.rule.as_ref(), Some(&c.tuple));
            explain(&mut v, w.explained.as_deref());
            v
        })
    });
    let at_words =
        c.at.as_ref()
            .map(|w| where_words(w, names))
            .unwrap_or_default();
    wire::Connection {
        flow: flow_view(&c.tuple),
        outcome: wire_outcome(c.outcome),
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
        likely: drop.as_ref().and_then(|d| d.likely.clone()),
        hook: drop.as_ref().and_then(|d| d.hook.clone()),
        rule: drop.as_ref().and_then(|d| d.rule.clone()),
        k8s: drop.as_ref().and_then(|d| d.k8s.clone()),
        cause: drop.as_ref().and_then(|d| d.cause.clone()),
        location: drop.map(|d| d.location),
        fwd: counts_view(&c.fwd),
        rev: counts_view(&c.rev),
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

pub fn note_view(n: &Note, names: &Names) -> wire::TcpNote {
    wire::TcpNote {
        event: tcp_event(n.kind),
        flow: flow_view(&n.tuple),
        netns: n.netns,
        netns_name: names.netns(n.netns).map(str::to_string),
        state: tcp_state_name(n.tcp_state).to_string(),
        count: n.count,
        error: n.kind.error_name().map(str::to_string),
    }
}
