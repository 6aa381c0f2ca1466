//! What the cause finder says about a failure (see the module above).

/// A setting or state of the node that explains a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub kind: &'static str,
    /// The sysctl (or other setting) to look at, as `sysctl` names it.
    pub setting: Option<String>,
    /// Its value, as read on the node.
    pub value: Option<String>,
    /// Where: the namespace (inode and name) and the device.
    pub netns: Option<u32>,
    pub netns_name: Option<String>,
    pub dev: Option<String>,
    /// The address it is about (the gateway, the neighbour, the Service).
    pub addr: Option<String>,
}

/// What the cause finder made of a failure: the cause if the evidence
/// names one, what it ruled out, and the hint they give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub cause: Option<Cause>,
    pub ruled_out: Vec<String>,
    pub hint: String,
    /// The rule that dropped it, found from the node's own counters (a
    /// legacy x_tables rule nftables tracing cannot see).
    pub rule: Option<crate::correlate::rules::RuleMatch>,
}
