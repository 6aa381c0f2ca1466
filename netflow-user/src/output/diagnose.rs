//! One line an SRE can act on, for a dropped packet or a connection that
//! went wrong.
use netflow_common::NF_HOOK_NAMES;

use crate::correlate::connections::Outcome;
pub use crate::decode::names::UNAVAILABLE;

/// Hook name for a netfilter hook number.
pub fn hook_name(hook: u8) -> &'static str {
    NF_HOOK_NAMES
        .get(hook as usize)
        .copied()
        .unwrap_or("unknown-hook")
}

pub use crate::correlate::cause::frees::reason_from_location;

/// A reason as printed: the kernel's name, or where the kernel gives none,
/// "no reason on this kernel, likely X".
pub fn reason_words(reason: &str, location: &str) -> String {
    if reason != UNAVAILABLE {
        return reason.to_string();
    }
    match reason_from_location(location) {
        Some(r) => format!("(no reason on this kernel, likely {r})"),
        None => "(no reason on this kernel)".into(),
    }
}

/// A hint for a drop reason (names as the kernel's `enum skb_drop_reason`,
/// without the prefix), with the netfilter hook where the packet died if
/// known and the kernel function that freed it.
pub fn hint(reason: &str, hook: Option<u8>, location: &str) -> String {
    if reason == UNAVAILABLE {
        let func = location.split('+').next().unwrap_or(location);
        return match reason_from_location(location) {
            Some(r) => format!(
                "{} (this kernel gives no drop reason; inferred from {func})",
                hint(r, hook, location)
            ),
            None => format!(
                "freed in {func}; this kernel (before 5.17) gives no drop reason: read that \
                 function's error paths"
            ),
        };
    }
    if reason == "NO_SOCKET" && location.starts_with("ping_rcv") {
        return "no ping socket took this ICMP reply; when ping runs as root a raw socket gets a copy \
                first, so this is expected"
            .into();
    }
    let at = hook
        .map(|h| format!(" in {}", hook_name(h).to_uppercase()))
        .unwrap_or_default();
    match reason {
        "NETFILTER_DROP" => format!(
            "a firewall rule, a chain's policy or netfilter itself (conntrack) dropped it{at}: \
             check iptables/nftables rules and NetworkPolicies (iptables-save, nft list ruleset); \
             rule tracing names the rule when one did"
        ),
        "NO_SOCKET" => {
            "nothing listens on that port (or the socket is bound elsewhere): check the \
                        server is running and bound to this address"
                .into()
        }
        "IP_RPFILTER" => "reverse-path filter: the source is not routable back via the arrival \
                          device; check routes or net.ipv4.conf.<dev>.rp_filter"
            .into(),
        "NEIGH_FAILED" | "NEIGH_QUEUEFULL" | "NEIGH_DEAD" => {
            "ARP/ND for the next hop failed: is the neighbour up and on-link? (ip neigh)".into()
        }
        "OTHERHOST" => "the frame was addressed to another MAC: check MAC learning or promiscuous \
                        mode on the bridge/veth"
            .into(),
        "IP_INADDRERRORS" | "IP_INNOROUTES" | "IP_OUTNOROUTES" => {
            "no route for the destination: check the routing table (ip route get)".into()
        }
        "IP_NOPROTO" => "no handler for this IP protocol here (e.g. IP-in-IP without a tunnel \
                         device)"
            .into(),
        "TCP_INVALID_SEQUENCE" | "TCP_OLD_DATA" | "TCP_OFOMERGE" | "TCP_ZEROWINDOW" => {
            "TCP state mismatch (sequence/window): look for retransmissions or a middlebox \
             rewriting the connection"
                .into()
        }
        "TCP_RESET" | "TCP_CLOSE" => "the connection was reset or closed".into(),
        "SOCKET_RCVBUFF" | "PROTO_MEM" => {
            "the receiver's socket buffer was full: the application reads too slowly".into()
        }
        "QDISC_DROP" | "TC_EGRESS" | "TC_INGRESS" => {
            format!("dropped by traffic control (qdisc or a tc program){at}: tc -s qdisc / tc filter show")
        }
        "QUEUE_PURGE" => "still queued when its socket was closed".into(),
        "UNHANDLED_PROTO" => "no handler for this protocol on the receiving device".into(),
        "PKT_TOO_SMALL" | "PKT_TOO_BIG" => "packet size problem: check MTU along the path".into(),
        "XFRM_POLICY" => "IPsec policy rejected it".into(),
        "NOT_SPECIFIED" => "the kernel gave no reason for this free".into(),
        other => format!("kernel drop reason {other}"),
    }
}

/// A hint for a connection's outcome. `drop_hint`: the hint of the drop
/// where it went wrong, if it was a drop; `at`: where, in words.
pub fn outcome_hint(outcome: Outcome, drop_hint: Option<String>, at: &str) -> Option<String> {
    Some(match outcome {
        Outcome::Ok => return None,
        Outcome::RequestLost => drop_hint.unwrap_or_else(|| {
            format!("the request was last seen {at} and never reached a socket: look past that point (routes, the next node, a tunnel)")
        }),
        Outcome::NoReply => "the server's socket took the request and nothing came back: check the application (is it up, does it answer this request, is it overloaded?)".into(),
        Outcome::ReplyLost => drop_hint.unwrap_or_else(|| {
            format!("the reply was last seen {at} and never reached the client's socket: look past that point (return route, SNAT, rp_filter)")
        }),
        Outcome::Refused => drop_hint.unwrap_or_else(|| {
            format!("refused {at}: nothing listens on that port, or a firewall rejects it; check the Service's targetPort and the server's listening ports")
        }),
        Outcome::DnsError => "the DNS server answered with an error".into(),
        Outcome::Incomplete => "netflow did not see all of this connection (events lost while the ring buffer was full, or it began before the trace): no answer given; narrow the selection".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_hook_and_the_fix() {
        assert!(hint("NETFILTER_DROP", Some(2), "nft_do_chain+0x3e8").contains("in FORWARD"));
        assert!(hint("NO_SOCKET", None, "tcp_v4_rcv+0x10").contains("listens"));
        assert!(hint("NO_SOCKET", None, "ping_rcv+0xab").contains("raw socket"));
        assert!(hint("IP_RPFILTER", None, "").contains("rp_filter"));
        assert!(hint("SOMETHING_NEW", None, "").contains("SOMETHING_NEW"));
        assert_eq!(hook_name(0), "prerouting");
        assert_eq!(hook_name(9), "unknown-hook");
        let old = hint(UNAVAILABLE, Some(2), "nf_hook_slow+0xa3");
        assert!(old.contains("dropped it in FORWARD") && old.contains("inferred"));
        // Without rule tracing nothing says a rule did it: a policy or conntrack may have.
        assert!(hint("NETFILTER_DROP", Some(2), "").contains("conntrack"));
        assert!(hint(UNAVAILABLE, None, "some_fn+0x1").contains("freed in some_fn"));
    }
}
