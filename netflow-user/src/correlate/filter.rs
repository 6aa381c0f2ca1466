//! Which recorded or traced timelines to show: the selectors that make sense
//! for packets already seen (replay, export, and the daemon's own check).
use std::net::IpAddr;

use ipnet::IpNet;

use super::Timeline;
use crate::decode::{
    names::Names,
    packet::{Proto, Tuple},
};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(
        "invalid --host {0:?}: expected an IP address or CIDR (10.0.0.1, 10.0.0.0/24, fd00::/64)"
    )]
    BadHost(String),
    #[error("invalid --proto {0:?}: expected tcp, udp, sctp, icmp, icmpv6 or a protocol number")]
    BadProto(String),
}

pub fn parse_proto(s: &str) -> Result<Proto, FilterError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmpv6" | "icmp6" => Proto::Icmpv6,
        "sctp" => Proto::from_ip_number(132),
        n => Proto::from_ip_number(n.parse().map_err(|_| FilterError::BadProto(s.into()))?),
    })
}

pub fn parse_host(s: &str) -> Result<IpNet, FilterError> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| FilterError::BadHost(s.into()))
}

/// The selectors that make sense for recorded timelines (replay, export):
/// a timeline matches when one of its hops matches all of them.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub hosts: Vec<IpNet>,
    pub ports: Vec<u16>,
    pub proto: Option<Proto>,
    /// Namespace or pod names (as printed).
    pub netns: Vec<String>,
}

impl FlowFilter {
    pub fn new(
        hosts: &[String],
        ports: &[u16],
        proto: Option<&str>,
        netns: Vec<String>,
    ) -> Result<Self, FilterError> {
        Ok(FlowFilter {
            hosts: hosts
                .iter()
                .map(|h| parse_host(h))
                .collect::<Result<_, _>>()?,
            ports: ports.to_vec(),
            proto: proto.map(parse_proto).transpose()?,
            netns,
        })
    }

    /// No selector given: everything passes.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.ports.is_empty()
            && self.proto.is_none()
            && self.netns.is_empty()
    }

    /// The selectors as given: `--pod web --port 80`.
    pub fn words(&self) -> String {
        let mut w: Vec<String> = self
            .netns
            .iter()
            .map(|n| format!("--pod/--netns {n}"))
            .collect();
        w.extend(self.hosts.iter().map(|h| format!("--host {h}")));
        w.extend(self.ports.iter().map(|p| format!("--port {p}")));
        w.extend(self.proto.iter().map(|p| format!("--proto {p}")));
        w.join(" ")
    }

    pub fn tuple(&self, t: &Tuple) -> bool {
        (self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|h| h.contains(&t.src) || h.contains(&t.dst)))
            && (self.ports.is_empty()
                || self
                    .ports
                    .iter()
                    .any(|p| Some(*p) == t.sport || Some(*p) == t.dport))
            && self.proto.is_none_or(|p| p == t.proto)
    }

    pub fn timeline(&self, tl: &Timeline, names: &Names) -> bool {
        let tuples = tl
            .hops
            .iter()
            .filter_map(|h| h.packet.as_ref().map(|p| p.tuple));
        let by_tuple = self.hosts.is_empty() && self.ports.is_empty() && self.proto.is_none()
            || tuples.clone().any(|t| self.tuple(&t));
        by_tuple
            && (self.netns.is_empty()
                || tl.hops.iter().any(|h| {
                    names
                        .netns(h.netns)
                        .is_some_and(|n| self.netns.iter().any(|s| s == n))
                }))
    }
}
