//! DNS as users read it: a packet's message, a connection's lookup.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DNS message, or a connection's lookup (named by its last answered
/// try, with every try when it asked more than once: a search-path walk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Dns {
    pub id: u16,
    /// The question's name (`null` when the capture cut it).
    pub qname: Option<String>,
    /// `A`, `AAAA`, `SRV`, ... (`TYPE65` for the rest).
    pub qtype: String,
    /// The response's code (`NOERROR`, `NXDOMAIN`, ...); `null` for a query.
    pub rcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_count: Option<u16>,
    pub answers: Vec<DnsAnswer>,
    /// From the query to its response (lookups).
    pub latency_ns: Option<u64>,
    /// The capture ended before the message: answers past it are missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tries: Vec<Dns>,
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DnsAnswer {
    /// Its type (`A`, `CNAME`, ...).
    #[serde(rename = "type")]
    pub rtype: String,
    pub data: String,
}
