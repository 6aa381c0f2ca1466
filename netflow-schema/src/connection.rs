//! A connection's record: its outcome, where it went wrong and why, and
//! its counts.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Cause, Dns, Flow, Hop, K8sRef, Nat, Rule};

wire_enum! {
    /// How a connection went.
    pub enum Outcome {
        /// The request reached the responder's socket and the reply reached
        /// the initiator's.
        Ok => "ok",
        /// The initiator's packets never reached the responder's socket.
        RequestLost => "request_lost",
        /// The responder's socket took the request and nothing came back.
        NoReply => "no_reply",
        /// The reply left the responder but never reached the initiator's socket.
        ReplyLost => "reply_lost",
        /// A RST or an ICMP unreachable answered.
        Refused => "refused",
        /// A DNS server answered the lookup with an error (NXDOMAIN,
        /// SERVFAIL, REFUSED ...).
        DnsError => "dns_error",
        /// netflow did not see the whole connection: no answer is given.
        Incomplete => "incomplete",
    }
}

/// Counts of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirCounts {
    /// Every selected packet, traced or only counted.
    pub packets: u64,
    pub bytes: u64,
    /// Taken by a socket on this node (of the traced packets).
    pub delivered: u64,
    /// Dropped on their path (not after delivery).
    pub dropped: u64,
    /// Only counted by the guardrails (no hops reported).
    pub sampled: u64,
}

/// One connection, when it ends (`"kind":"connection"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Connection {
    /// The initiator's side: its first packet's addresses.
    pub flow: Flow,
    pub outcome: Outcome,
    /// The hop where it went wrong.
    #[serde(rename = "where")]
    pub at: Option<Hop>,
    /// The kernel's drop reason, where a drop ended it.
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likely: Option<String>,
    pub location: Option<String>,
    /// The netfilter hook that dropped it, when a filter did.
    pub hook: Option<String>,
    /// The rule that dropped it and its Kubernetes object (rule tracing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sRef>,
    /// The node setting or state behind the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// What to do about it, in words (`null` when it went well).
    pub hint: Option<String>,
    /// The initiator's packets and the replies.
    pub fwd: DirCounts,
    pub rev: DirCounts,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    /// The destination translation of its packets (a Service), else the source one.
    pub nat: Option<Nat>,
    /// Every translation of the initiator's packets, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub translations: Vec<Nat>,
    /// Its DNS lookup, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}
