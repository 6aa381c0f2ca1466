//! What the cause finder says about a failure (see the module above).
use serde::Serialize;

/// A setting or state of the node that explains a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub kind: &'static str,
    /// The sysctl (or other setting) to look at, as `sysctl` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// Its value, as read on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where: the namespace (inode and name) and the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// The address it is about (the gateway, the neighbour, the Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

/// What the cause finder made of a failure: the cause if the evidence
/// names one, what it ruled out, and the hint they give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub cause: Option<Cause>,
    pub ruled_out: Vec<String>,
    pub hint: String,
}
