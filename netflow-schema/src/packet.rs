//! A packet's record: its flow, verdict and path (hops), and where it was
//! dropped and why.
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dns::Dns;

wire_enum! {
    /// What became of a packet on this node.
    pub enum Verdict {
        /// It left the node on a device (in the events mode, a DNS
        /// datagram also when it left its socket and was not followed on).
        Forwarded => "forwarded",
        /// A socket on the node took it.
        Delivered => "delivered",
        /// The kernel dropped it on its path.
        Dropped => "dropped",
        /// A multicast or broadcast packet no socket on the node took (not a drop).
        Unclaimed => "unclaimed",
        /// Its last trace is none of the above (or the run ended first).
        Unknown => "unknown",
    }
}

wire_enum! {
    /// Where a packet was seen.
    pub enum Point {
        /// A device received it.
        Rx => "rx",
        /// A device transmitted it.
        Tx => "tx",
        /// tc (its direction in `dir`).
        Tc => "tc",
        /// The kernel freed it as a drop.
        KfreeSkb => "kfree_skb",
        /// The kernel freed it as used up.
        ConsumeSkb => "consume_skb",
        /// A socket took it.
        Socket => "socket",
        /// A netfilter hook (which in `hook`, before or after the built-in
        /// hooks in `stage`).
        Nf => "nf",
        TcpRetransmit => "tcp_retransmit",
        TcpReset => "tcp_reset",
        /// An nftables chain.
        NftChain => "nft_chain",
        /// The node sent an ICMP error about it (`icmp`).
        IcmpError => "icmp_error",
        /// A rule nftables tracing reported.
        Rule => "rule",
        /// A routing decision (`route`).
        Route => "route",
        /// A TCP socket's state change (`inet_sock_set_state`).
        SockState => "sock_state",
        /// A socket of the node sent it (the events mode's DNS: not
        /// followed further unless its flow is).
        SockSend => "sock_send",
    }
}

wire_enum! {
    /// A device hop's direction.
    pub enum Dir {
        Ingress => "ingress",
        Egress => "egress",
    }
}

wire_enum! {
    /// A netfilter hop: before or after the hook's built-in functions
    /// (conntrack, iptables, nftables).
    pub enum Stage {
        Early => "early",
        Late => "late",
    }
}

wire_enum! {
    pub enum NatKind {
        /// The destination changed (a Service, a NodePort, a hostPort).
        Dnat => "dnat",
        /// The source changed (masquerade).
        Snat => "snat",
    }
}

wire_enum! {
    pub enum EncapKind {
        Vxlan => "vxlan",
        Ipip => "ipip",
    }
}

/// An IP protocol: its name (`tcp`, `udp`, `icmp`, `icmpv6`) or, for the
/// rest, its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    #[serde(untagged)]
    Other(u8),
}

impl JsonSchema for Proto {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Proto".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An IP protocol: its name, or for the rest its number",
            "anyOf": [
                {"type": "string", "enum": ["tcp", "udp", "icmp", "icmpv6"]},
                {"type": "integer", "minimum": 0, "maximum": 255},
            ],
        })
    }
}

/// Addresses, protocol and ports (`null` for protocols without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Flow {
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// The outer header of an encapsulated packet (the hop's addresses are the
/// inner packet's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Encap {
    pub kind: EncapKind,
    pub vni: Option<u32>,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

/// One place a packet was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hop {
    /// CLOCK_MONOTONIC, ns.
    pub ts_ns: u64,
    pub point: Point,
    /// The device (empty where the probe has none).
    pub ifname: String,
    pub ifindex: u32,
    /// The network namespace's inode number, and its name where known (a
    /// pod's `namespace/name`, `node`, a named netns).
    pub netns: u32,
    pub netns_name: Option<String>,
    /// The bridge (or bond, VRF) this device is a port of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    pub dir: Option<Dir>,
    /// The packet's addresses and ports here (after any translation before it).
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub len: u32,
    /// TCP flags, as tcpdump writes them (`S`, `S.`, `P.`, `F.`, `R`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    pub encap: Option<Encap>,
    /// Netfilter hops: the hook (`prerouting`, `input`, `forward`,
    /// `output`, `postrouting`) and the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// The translation that happened at this hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<Nat>,
    /// nftables table and chain, where the kernel lets netflow see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// An ICMP error the node sent about the packet (`icmp_error` hops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<Icmp>,
    /// The routing decision (`route` hops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// The table that answered a route lookup, the route's device and gateway,
/// or why the lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    pub table: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oif: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// `network unreachable`, `no route to host`, `prohibited`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An ICMP error the node sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
    /// In words (`port unreachable`, `fragmentation needed`, ...).
    pub what: String,
    /// For "fragmentation needed": the MTU of the device the packet's
    /// route leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// An address translation: the endpoint that changed (`addr:port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Nat {
    pub kind: NatKind,
    pub from: String,
    pub to: String,
    /// The Service a DNAT serves (`ns/name:port`), from kube-proxy's rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// How the call reached it: `NodePort`, `externalIP`, `LoadBalancer`,
    /// `ClusterIP` or `hostPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The rule that translated, where nftables tracing named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sRef>,
}

/// A rule as nftables tracing named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rule {
    /// `ip`, `ip6`, `inet`, `bridge`, ...
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The rule's handle; absent for a chain's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// As `iptables-save` (rules iptables-nft wrote) or `nft` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The comment of the set or map element the packet matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    /// The comment that names the chain a jump went to (Calico's policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_comment: Option<String>,
    /// `accept`, `drop`, `jump`, `return`, ...
    pub verdict: String,
}

/// A Kubernetes object a rule belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct K8sRef {
    /// `Service`, `NetworkPolicy` or `Pod` (a pod a default deny protects).
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The Service's port name (or number) as kube-proxy names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// kube-proxy rejects the packet because the Service has no endpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_endpoints: bool,
}

/// A setting or state of the node that explains a failure, as read on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cause {
    /// What it is (`no_route`, `rp_filter`, `reply_not_translated`, ...).
    pub kind: String,
    /// The sysctl (or other setting) to look at, as `sysctl` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// Its value, as read on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where: the namespace (inode and name) and the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// The address it is about (the gateway, the neighbour, the Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

/// Where and why a packet was dropped (or freed after delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Drop {
    /// The kernel's drop reason (`unavailable` before 5.17).
    pub reason: String,
    /// Where the kernel gives no reason: the reason its location most
    /// likely means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likely: Option<String>,
    /// The kernel function that freed it.
    pub location: String,
    /// What to do about it, in words.
    pub hint: String,
    /// The netfilter hook where the packet was last seen before filtering.
    pub hook: Option<String>,
    /// The rule that dropped it, where nftables tracing named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// The Kubernetes object that rule belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sRef>,
    /// A drop because no policy accepted the packet, when several judged
    /// it: all of them, in order (`k8s` is the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<K8sRef>>,
    /// The node setting or state behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// What the evidence ruled out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ruled_out: Vec<String>,
}

/// One packet's path across the node (`"kind":"packet"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Packet {
    /// Its addresses (the inner packet's when encapsulated) at its first hop.
    pub flow: Option<Flow>,
    pub verdict: Verdict,
    pub hops: Vec<Hop>,
    pub drop: Option<Drop>,
    /// Freed after a socket took it: not a drop on its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Drop>,
    /// `unknown` packets: where they were last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Hop>,
    /// Events of this packet may be missing (ring buffer full).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// The DNS message it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}
