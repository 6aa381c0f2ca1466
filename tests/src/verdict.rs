//! What a healthy run reads as, and the connections of one call: the
//! verdict tests' checks, shared.
use netflow_schema::{Connection, Line, NatKind, Outcome, Proto, Verdict};

use crate::json::{connections, packet_summary, packets, stats};

/// Every packet reached a socket or left on a device; group packets nobody
/// wanted are unclaimed, never dropped; nothing is unknown.
pub fn assert_packets_healthy(lines: &[Line]) {
    let pkts = packets(lines);
    assert!(!pkts.is_empty(), "no packets traced");
    for p in &pkts {
        let v = p.verdict;
        let dst = p
            .flow
            .as_ref()
            .map(|f| f.dst.to_string())
            .unwrap_or_default();
        let group = dst.starts_with("ff") || dst.starts_with("224.") || dst == "255.255.255.255";
        // A packet still on its way when the trace stopped is marked incomplete.
        let cut_short = v == Verdict::Unknown && p.incomplete;
        assert!(
            v == Verdict::Delivered
                || v == Verdict::Forwarded
                || (v == Verdict::Unclaimed && group)
                || cut_short,
            "a healthy exchange has a {v} packet: {p:#?}\nevery packet of the run:\n{}",
            packet_summary(lines)
        );
    }
    let st = stats(lines);
    assert_eq!(st.dropped, 0, "{st:#?}");
    assert_eq!(st.unknown, 0, "{st:#?}");
    assert_eq!(st.lost, 0, "{st:#?}");
}

pub fn assert_connections_ok(conns: &[&Connection]) {
    for c in conns {
        assert_eq!(c.outcome, Outcome::Ok, "{c:#?}");
        assert!(c.at.is_none() && c.hint.is_none(), "{c:#?}");
        assert!(c.fwd.delivered >= 1, "{c:#?}");
        assert!(c.rev.delivered >= 1, "{c:#?}");
        assert_eq!(c.fwd.dropped, 0, "{c:#?}");
        assert_eq!(c.rev.dropped, 0, "{c:#?}");
    }
}

/// The connections whose initiator's tuple is (proto, src, dst, dport)
/// (any dport when 0).
pub fn conns_to<'a>(
    lines: &'a [Line],
    proto: Proto,
    src: &str,
    dst: &str,
    dport: u16,
) -> Vec<&'a Connection> {
    connections(lines)
        .into_iter()
        .filter(|c| {
            c.flow.proto == proto
                && c.flow.src.to_string() == src
                && c.flow.dst.to_string() == dst
                && (dport == 0 || c.flow.dport == Some(dport))
        })
        .collect()
}

/// The kind of a connection's translation.
pub fn nat_kind(c: &Connection) -> Option<NatKind> {
    c.nat.as_ref().map(|n| n.kind)
}

/// Where a connection's translation sent it (`addr:port`).
pub fn nat_to(c: &Connection) -> Option<&str> {
    c.nat.as_ref().map(|n| n.to.as_str())
}

/// The netns name of the hop where a connection went wrong.
pub fn where_netns(c: &Connection) -> Option<&str> {
    c.at.as_ref().and_then(|h| h.netns_name.as_deref())
}
