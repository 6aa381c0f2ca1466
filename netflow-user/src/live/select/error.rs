//! What can go wrong turning selectors into a selection.
use crate::correlate::filter::FilterError;

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("network namespace {name:?} not found (looked for {path}); known namespaces: {known}")]
    NoNetns {
        name: String,
        path: String,
        known: String,
    },
    #[error("failed to open network namespace {0}: {1}")]
    OpenNetns(String, String),
    #[error("failed to read addresses of network namespace {0}: {1}")]
    NetnsAddrs(String, String),
    #[error("interface {name:?} not found in this network namespace; interfaces: {known}")]
    NoIface { name: String, known: String },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("invalid pod {0:?}: expected NAME or NAMESPACE/NAME")]
    BadPod(String),
    #[error("pod {pod} not found on this node; closest: {closest}")]
    NoPod { pod: String, closest: String },
    #[error("several pods are named {pod} (namespaces {namespaces}): give NAMESPACE/{pod}")]
    AmbiguousPod { pod: String, namespaces: String },
    #[error("{0} uses the node's network namespace (hostNetwork) and declares no ports: select its traffic with --port (and --proto)")]
    HostNetworkNoPorts(String),
    #[error("no pod on this node has the address {0}")]
    NoPodIp(String),
    #[error("failed to ask the container runtime: {0}")]
    Runtime(String),
    #[error("too many {what}: at most {max}")]
    TooMany { what: &'static str, max: usize },
}
