//! Turning the user's selectors into the kernel's packet selection.
//!
//! A selector picks packets, not devices: `--netns` selects the packets that
//! enter or leave that namespace (its device namespace, and its addresses so
//! that a packet heading into it is selected before it gets there); `--host`,
//! `--port`, `--proto` narrow that. Only `--iface` limits where we look.
use std::{net::IpAddr, path::Path};

use ipnet::IpNet;
use netflow_common::{
    filter_flags as ff, Filter, ADDR_HOST, ADDR_NETNS, MAX_INLINE_V4, MAX_PORTS, MAX_VXLAN_PORTS,
};

use crate::correlate::filter::{parse_host, parse_proto};

pub mod cri;
pub mod error;
pub mod netns;
pub mod pod;

pub use error::SelectError;
pub use netns::{inode_of, named_netns, resolve_netns, Netns};

/// The selectors as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    /// `[namespace/]name`: a pod (CRI, else a named netns).
    pub pods: Vec<String>,
    /// A pod by one of its addresses.
    pub pod_ips: Vec<String>,
    /// CRI socket; None: the standard containerd and CRI-O paths.
    pub runtime_endpoint: Option<String>,
    pub netns: Vec<String>,
    pub hosts: Vec<String>,
    pub ports: Vec<u16>,
    pub proto: Option<String>,
    pub ifaces: Vec<String>,
    pub vxlan_ports: Vec<u16>,
}

/// What the kernel programs get: the filter global and the map contents.
#[derive(Debug, Clone)]
pub struct Selection {
    pub filter: Filter,
    pub netns: Vec<Netns>,
    /// Single addresses (mapped) -> ADDR_* bits.
    pub addrs: Vec<([u8; 16], u32)>,
    /// `--host` networks: (prefix length over the 128-bit mapped address, network).
    pub nets: Vec<(u32, [u8; 16])>,
    /// netns inode << 32 | ifindex
    pub ifaces: Vec<u64>,
    pub vxlan_ports: Vec<u16>,
    /// Human summary, e.g. "netns pod-a (10.0.0.2), port 80".
    pub summary: String,
}

/// An address in the kernel's key form: IPv6, or IPv4 mapped into IPv6.
pub fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn mapped_net(net: IpNet) -> (u32, [u8; 16]) {
    match net {
        IpNet::V4(n) => (96 + n.prefix_len() as u32, mapped(IpAddr::V4(n.network()))),
        IpNet::V6(n) => (n.prefix_len() as u32, mapped(IpAddr::V6(n.network()))),
    }
}

fn iface_index(name: &str) -> Result<u32, SelectError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| {
        let mut known: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        SelectError::NoIface {
            name: name.into(),
            known: known.join(", "),
        }
    })
}

/// Devices for tc programs: the `--iface` ones, else every device of this
/// namespace except loopback and bridges (veths, tunnels, uplinks).
pub fn tc_devices(ifaces: &[String]) -> Vec<String> {
    if !ifaces.is_empty() {
        return ifaces.to_vec();
    }
    let mut out: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter(|e| !e.path().join("bridge").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl Selectors {
    pub fn resolve(&self) -> Result<Selection, SelectError> {
        let mut f = Filter::empty();
        f.stale_ns = 2_000_000_000;
        let mut summary = Vec::new();

        let mut netns = self
            .netns
            .iter()
            .map(|n| resolve_netns(n))
            .collect::<Result<Vec<_>, _>>()?;
        // Pods are their network namespaces, with the pod's addresses; a
        // hostNetwork pod is its ports.
        let mut host_ports: Vec<u16> = Vec::new();
        if !self.pods.is_empty() || !self.pod_ips.is_empty() {
            let known = crate::live::select::cri::list_pods(self.runtime_endpoint.as_deref())?;
            let mut pods = Vec::new();
            for spec in &self.pods {
                pods.push(crate::live::select::pod::choose(
                    &crate::live::select::pod::PodRef::parse(spec)?,
                    known.clone(),
                )?);
            }
            for ip in &self.pod_ips {
                let want: IpAddr = ip.parse().map_err(|_| {
                    SelectError::from(crate::correlate::filter::FilterError::BadHost(ip.clone()))
                })?;
                let p = known
                    .iter()
                    .find(|p| p.ips.contains(&want))
                    .ok_or_else(|| SelectError::NoPodIp(ip.clone()))?;
                pods.push(p.clone());
            }
            for p in pods {
                if let Some(ports) = &p.host_ports {
                    // The node's namespace is everyone's: its ports pick it.
                    if ports.is_empty() {
                        return Err(SelectError::HostNetworkNoPorts(p.label()));
                    }
                    host_ports.extend(ports.iter().copied());
                    summary.push(format!(
                        "{} (hostNetwork: it shares the node's namespace, selected by its ports {})",
                        p.label(),
                        ports
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                    continue;
                }
                let mut n = resolve_netns(&p.netns.display().to_string())?;
                n.name = p.label();
                n.addrs.extend(p.ips.iter().copied());
                n.addrs.sort();
                n.addrs.dedup();
                netns.push(n);
            }
        }
        if !netns.is_empty() {
            f.flags |= ff::NETNS;
            for n in &netns {
                let a: Vec<String> = n.addrs.iter().map(|a| a.to_string()).collect();
                let what = if n.name.starts_with("pod ") {
                    n.name.clone()
                } else {
                    format!("netns {}", n.name)
                };
                summary.push(format!("{what} ({})", a.join(", ")));
            }
        }

        let hosts = self
            .hosts
            .iter()
            .map(|h| parse_host(h))
            .collect::<Result<Vec<_>, _>>()?;
        if !hosts.is_empty() {
            f.flags |= ff::HOST;
            summary.push(format!(
                "host {}",
                hosts
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        // Single addresses go to a hash map (one exact lookup), networks to
        // an LPM trie consulted only when there are any.
        let mut addrs: Vec<([u8; 16], u32)> = Vec::new();
        let mut add = |a: [u8; 16], bits: u32| match addrs.iter_mut().find(|(k, _)| *k == a) {
            Some((_, b)) => *b |= bits,
            None => addrs.push((a, bits)),
        };
        let mut nets = Vec::new();
        for h in &hosts {
            let (len, a) = mapped_net(*h);
            if len == 128 {
                add(a, ADDR_HOST);
            } else {
                nets.push((len, a));
            }
        }
        for n in &netns {
            for a in &n.addrs {
                add(mapped(*a), ADDR_NETNS);
            }
        }
        if !nets.is_empty() {
            f.flags |= ff::NETS;
        }
        // Few IPv4 addresses (a pod's): the kernel compares them in place.
        let v4: Vec<(u32, u32)> = addrs
            .iter()
            .filter(|(a, _)| a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
            .map(|(a, bits)| (u32::from_be_bytes([a[12], a[13], a[14], a[15]]), *bits))
            .collect();
        if v4.len() <= MAX_INLINE_V4 {
            f.flags |= ff::V4_INLINE;
            f.n_v4 = v4.len() as u32;
            for (i, (a, bits)) in v4.into_iter().enumerate() {
                f.v4[i] = a;
                f.v4_bits[i] = bits;
            }
        }

        let mut ports = self.ports.clone();
        ports.extend(host_ports.iter().filter(|p| !self.ports.contains(p)));
        ports.dedup();
        if !ports.is_empty() {
            if ports.len() > MAX_PORTS {
                return Err(SelectError::TooMany {
                    what: "--port values (a hostNetwork pod's ports included)",
                    max: MAX_PORTS,
                });
            }
            f.flags |= ff::PORT;
            f.n_ports = ports.len() as u8;
            f.ports[..ports.len()].copy_from_slice(&ports);
            if !self.ports.is_empty() {
                summary.push(format!(
                    "port {}",
                    self.ports
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
        }
        if let Some(p) = &self.proto {
            let p = parse_proto(p)?;
            f.flags |= ff::PROTO;
            f.proto = p.number();
            summary.push(format!("proto {p}"));
        }

        let own_netns = inode_of(Path::new("/proc/self/ns/net")).unwrap_or(0);
        let ifaces = self
            .ifaces
            .iter()
            .map(|i| iface_index(i).map(|idx| ((own_netns as u64) << 32) | idx as u64))
            .collect::<Result<Vec<_>, _>>()?;
        if !ifaces.is_empty() {
            f.flags |= ff::IFACE;
            summary.push(format!("iface {}", self.ifaces.join(",")));
        }

        let vxlan_ports = if self.vxlan_ports.is_empty() {
            crate::decode::packet::DEFAULT_VXLAN_PORTS.to_vec()
        } else {
            self.vxlan_ports.clone()
        };
        if vxlan_ports.len() > MAX_VXLAN_PORTS {
            return Err(SelectError::TooMany {
                what: "--vxlan-port values",
                max: MAX_VXLAN_PORTS,
            });
        }
        f.n_vxlan_ports = vxlan_ports.len() as u8;
        f.vxlan_ports[..vxlan_ports.len()].copy_from_slice(&vxlan_ports);

        if f.flags & (ff::NETNS | ff::HOST | ff::PORT | ff::PROTO) == 0 {
            f.flags |= ff::ALL;
            summary.insert(0, "every packet".into());
        }
        Ok(Selection {
            filter: f,
            netns,
            addrs,
            nets,
            ifaces,
            vxlan_ports,
            summary: summary.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_selector_selects_everything() {
        let s = Selectors::default().resolve().unwrap();
        assert_eq!(s.filter.flags & ff::ALL, ff::ALL);
        assert_eq!(s.filter.n_vxlan_ports, 2);
    }

    #[test]
    fn host_port_proto() {
        let s = Selectors {
            hosts: vec!["10.1.0.0/16".into(), "fd00::1".into()],
            ports: vec![80, 443],
            proto: Some("TCP".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.filter.flags & ff::ALL, 0);
        assert_eq!(s.filter.proto, 6);
        assert_eq!(&s.filter.ports[..2], &[80, 443]);
        assert_eq!(s.nets.len(), 1);
        assert_eq!(s.nets[0].0, 96 + 16);
        assert_eq!(&s.nets[0].1[10..14], &[0xff, 0xff, 10, 1]);
        assert_eq!(s.filter.flags & ff::NETS, ff::NETS);
        assert_eq!(s.addrs.len(), 1);
        assert_eq!(s.addrs[0].1, ADDR_HOST);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let e = Selectors {
            hosts: vec!["10.0.0.300".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("invalid --host"));
        let e = Selectors {
            proto: Some("tpc".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("invalid --proto"));
        let e = Selectors {
            netns: vec!["surely-not-a-netns-xyz".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
        let e = Selectors {
            ifaces: vec!["nope0xyz".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("interfaces:"), "{e}");
    }
}
