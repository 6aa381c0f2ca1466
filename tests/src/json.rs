//! Reading netflow's JSON lines: packets, hops, connections, stats. Every
//! line a test reads goes through [`parse_lines`]: it validates against the
//! checked-in schema and reads into the schema's types unchanged.
use std::sync::OnceLock;

use netflow_schema::{Line, VERSION};
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

/// One line of netflow's output, held to the contract: valid against the
/// schema, with `v`, `time` and `node`, and read by the schema's types
/// without losing a field.
pub fn parse_line(text: &str) -> Value {
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
    value
}

/// Every line of an output ([`parse_line`] each).
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines().map(parse_line).collect()
}

/// The typed records of lines already parsed.
pub fn typed(lines: &[Value]) -> Vec<Line> {
    lines
        .iter()
        .map(|v| serde_json::from_value(v.clone()).expect("a line"))
        .collect()
}

/// Packet objects only.
pub fn packets(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|v| v["kind"] == "packet").collect()
}

pub fn stats(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|v| v["kind"] == "stats")
        .expect("a stats line at the end")
}

/// The (point, ifname, netns_name, dir) of each hop, for assertions and messages.
pub fn hop_list(p: &Value) -> Vec<(String, String, String, String)> {
    p["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["point"].as_str().unwrap_or("").to_string(),
                h["ifname"].as_str().unwrap_or("").to_string(),
                h["netns_name"].as_str().unwrap_or("?").to_string(),
                h["dir"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Every packet of a run, one line each (first timestamp, verdict, flow,
/// hops as point@ifname), for failure messages: what else the run saw.
pub fn packet_summary(lines: &[Value]) -> String {
    packets(lines)
        .iter()
        .map(|p| {
            let hops: Vec<String> = p["hops"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            format!(
                                "{}@{}",
                                h["point"].as_str().unwrap_or("?"),
                                h["ifname"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} {:<9} {} {}:{} > {}:{} [{}]",
                p["hops"][0]["ts_ns"],
                p["verdict"].as_str().unwrap_or("?"),
                p["flow"]["proto"].as_str().unwrap_or("?"),
                p["flow"]["src"].as_str().unwrap_or("?"),
                p["flow"]["sport"],
                p["flow"]["dst"].as_str().unwrap_or("?"),
                p["flow"]["dport"],
                hops.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Packets whose flow matches (proto, src, dst).
pub fn flows<'a>(pkts: &[&'a Value], proto: &str, src: &str, dst: &str) -> Vec<&'a Value> {
    pkts.iter()
        .copied()
        .filter(|p| {
            p["flow"]["proto"] == proto && p["flow"]["src"] == src && p["flow"]["dst"] == dst
        })
        .collect()
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

/// Connection records (`"kind":"connection"`).
pub fn connections(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|v| v["kind"] == "connection").collect()
}

/// The hops of a packet that carry a NAT translation.
pub fn nat_hops(p: &Value) -> Vec<&Value> {
    p["hops"]
        .as_array()
        .map(|h| h.iter().filter(|h| !h["nat"].is_null()).collect())
        .unwrap_or_default()
}

/// The one hop of a packet that carries a NAT translation (panics otherwise).
pub fn one_nat_hop(p: &Value) -> &Value {
    let nat = nat_hops(p);
    assert_eq!(nat.len(), 1, "exactly one translation: {p:#}");
    nat[0]
}

/// The drop reason of a drop or connection record: the kernel's, or on
/// kernels without drop reasons (before 5.17) the one its location most
/// likely means, which netflow then reports as `likely` (with `reason`
/// "unavailable" and the location present).
pub fn reason(v: &Value) -> &str {
    match v["reason"].as_str() {
        Some("unavailable") => {
            assert!(
                v["location"].as_str().is_some_and(|l| !l.is_empty()),
                "{v:#}"
            );
            v["likely"].as_str().unwrap_or("unavailable")
        }
        Some(r) => r,
        None => "",
    }
}
