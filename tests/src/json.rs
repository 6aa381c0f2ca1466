//! Reading netflow's JSON lines: packets, hops, connections, stats. Every
//! line a test reads goes through [`parse_line`]: it validates against the
//! checked-in schema and reads into the schema's types unchanged, and the
//! tests read those typed records.
use std::sync::OnceLock;

use netflow_schema::{
    Connection, Drop, Flow, Hop, Line, Nat, Packet, Proto, Record, Stats, VERSION,
};
use serde_json::Value;

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        // The checked-in file (built in: the kernel matrix runs these tests
        // in VMs without the checkout).
        let text = include_str!("../../schema/netflow.schema.json");
        let schema: Value = serde_json::from_str(text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("a valid JSON Schema")
    })
}

/// [`parse_line`], read into the schema's types.
pub fn parse_line(text: &str) -> Line {
    checked_line(text).1
}

/// Every line of an output ([`parse_line`] each).
pub fn parse_lines(text: &str) -> Vec<Line> {
    text.lines().map(parse_line).collect()
}

/// The checks of [`parse_line`]; the line as JSON and as the schema's types.
fn checked_line(text: &str) -> (Value, Line) {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON line {text:?}: {e}"));
    let errors: Vec<String> = validator()
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "line against the schema: {errors:?}\n{text}"
    );
    let line: Line =
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(line.v, VERSION);
    assert!(!line.node.is_empty(), "no node: {text}");
    assert!(
        line.time.len() == "2026-12-07T07:18:09.000000042Z".len() && line.time.ends_with('Z'),
        "time is not RFC 3339 with nanoseconds: {text}"
    );
    assert_eq!(
        serde_json::to_value(&line).unwrap(),
        value,
        "a field the schema's types do not know: {text}"
    );
    (value, line)
}

/// Does `hops` contain `want` as a subsequence (in order)?
pub fn in_order(
    hops: &[(String, String, String, String)],
    want: &[(&str, &str, &str, &str)],
) -> bool {
    let mut it = hops.iter();
    want.iter().all(|w| {
        it.any(|h| h.0 == w.0 && h.1 == w.1 && h.2 == w.2 && (w.3.is_empty() || h.3 == w.3))
    })
}

/// Packet records only.
pub fn packets(lines: &[Line]) -> Vec<&Packet> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Packet(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Connection records only.
pub fn connections(lines: &[Line]) -> Vec<&Connection> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Connection(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The last stats record (the run's counters).
pub fn stats(lines: &[Line]) -> &Stats {
    lines
        .iter()
        .rev()
        .find_map(|l| match &l.record {
            Record::Stats(s) => Some(s),
            _ => None,
        })
        .expect("a stats line at the end")
}

/// A line's flow: a packet's (where it has one), a connection's, a TCP note's.
pub fn line_flow(l: &Line) -> Option<&Flow> {
    match &l.record {
        Record::Packet(p) => p.flow.as_ref(),
        Record::Connection(c) => Some(&c.flow),
        Record::Tcp(n) => Some(&n.flow),
        Record::Start(_) | Record::Stats(_) => None,
    }
}

/// A protocol as the output spells it (`tcp`, `udp`, `icmp`, `icmpv6`, or its number).
pub fn proto_name(p: Proto) -> String {
    match p {
        Proto::Tcp => "tcp".into(),
        Proto::Udp => "udp".into(),
        Proto::Icmp => "icmp".into(),
        Proto::Icmpv6 => "icmpv6".into(),
        Proto::Other(n) => n.to_string(),
    }
}

/// The (point, ifname, netns_name, dir) of each hop, for assertions and
/// messages (`?` for a hop without a netns name, empty for one without a dir).
pub fn hop_list(p: &Packet) -> Vec<(String, String, String, String)> {
    p.hops
        .iter()
        .map(|h| {
            (
                h.point.as_str().to_string(),
                h.ifname.clone(),
                h.netns_name.clone().unwrap_or_else(|| "?".into()),
                h.dir.map(|d| d.as_str()).unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn or_null<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// One packet on one line (first timestamp, verdict, flow, hops as
/// point@ifname), for failure messages.
pub fn packet_line(p: &Packet) -> String {
    let hops: Vec<String> = p
        .hops
        .iter()
        .map(|h| format!("{}@{}", h.point, h.ifname))
        .collect();
    let (proto, src, sport, dst, dport) = match &p.flow {
        Some(f) => (
            proto_name(f.proto),
            f.src.to_string(),
            or_null(f.sport),
            f.dst.to_string(),
            or_null(f.dport),
        ),
        None => (
            "?".into(),
            "?".into(),
            "null".into(),
            "?".into(),
            "null".into(),
        ),
    };
    format!(
        "{} {:<9} {} {}:{} > {}:{} [{}]",
        or_null(p.hops.first().map(|h| h.ts_ns)),
        p.verdict.as_str(),
        proto,
        src,
        sport,
        dst,
        dport,
        hops.join(" ")
    )
}

/// Every packet of a run, one line each ([`packet_line`]), for
/// failure messages: what else the run saw.
pub fn packet_summary(lines: &[Line]) -> String {
    packets(lines)
        .iter()
        .map(|p| packet_line(p))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Packets whose flow matches (proto, src, dst) (addresses as the output
/// writes them).
pub fn flows<'a>(pkts: &[&'a Packet], proto: Proto, src: &str, dst: &str) -> Vec<&'a Packet> {
    pkts.iter()
        .copied()
        .filter(|p| {
            p.flow.as_ref().is_some_and(|f| {
                f.proto == proto && f.src.to_string() == src && f.dst.to_string() == dst
            })
        })
        .collect()
}

/// A packet's drop (panics without one).
pub fn the_drop(p: &Packet) -> &Drop {
    p.drop.as_ref().unwrap_or_else(|| panic!("no drop: {p:#?}"))
}

/// A hop's translation (panics without one).
pub fn hop_nat(h: &Hop) -> &Nat {
    h.nat
        .as_ref()
        .unwrap_or_else(|| panic!("no translation: {h:#?}"))
}

/// The TCP flags of a packet's first hop.
pub fn first_flags(p: &Packet) -> Option<&str> {
    p.hops.first().and_then(|h| h.tcp_flags.as_deref())
}

/// The hops of a packet that carry a NAT translation.
pub fn nat_hops(p: &Packet) -> Vec<&Hop> {
    p.hops.iter().filter(|h| h.nat.is_some()).collect()
}

/// The one hop of a packet that carries a NAT translation (panics otherwise).
pub fn one_nat_hop(p: &Packet) -> &Hop {
    let nat = nat_hops(p);
    assert_eq!(nat.len(), 1, "exactly one translation: {p:#?}");
    nat[0]
}

/// [`reason`] of a reason, its `likely` and its location (a drop's or a
/// connection's).
fn reason_of<'a>(
    reason: Option<&'a str>,
    likely: Option<&'a str>,
    location: Option<&str>,
    what: &dyn std::fmt::Debug,
) -> &'a str {
    match reason {
        Some("unavailable") => {
            assert!(location.is_some_and(|l| !l.is_empty()), "{what:#?}");
            likely.unwrap_or("unavailable")
        }
        Some(r) => r,
        None => "",
    }
}

/// The drop reason of a drop: the kernel's, or on kernels without drop
/// reasons (before 5.17) the one its location most likely means, which
/// netflow then reports as `likely` (with `reason` "unavailable" and the
/// location present).
pub fn drop_reason(d: &Drop) -> &str {
    reason_of(Some(&d.reason), d.likely.as_deref(), Some(&d.location), d)
}

/// [`drop_reason`] of a packet's drop (empty when it has none).
pub fn packet_reason(p: &Packet) -> &str {
    p.drop.as_ref().map_or("", drop_reason)
}

/// [`drop_reason`] of a connection (empty where no drop ended it).
pub fn conn_reason(c: &Connection) -> &str {
    reason_of(
        c.reason.as_deref(),
        c.likely.as_deref(),
        c.location.as_deref(),
        c,
    )
}
