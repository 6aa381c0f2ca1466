//! The trace rules of a selection: which packets netflow's table marks
//! for tracing (addresses, networks, protocol and ports).
use super::netlink::{L4Match, Match};
use crate::live::select::Selection;

/// The trace rules: the selection's addresses (as source and as
/// destination), times its protocol or ports (as source and destination;
/// TCP and UDP when no protocol is chosen). Every packet when it has none:
/// the rate limit bounds the cost.
pub(super) fn matches(sel: &Selection) -> Vec<(Match, L4Match)> {
    let addrs = addr_matches(sel);
    let f = &sel.filter;
    let proto = (f.flags & netflow_common::filter_flags::PROTO != 0).then_some(f.proto);
    let ports = &f.ports[..(f.n_ports as usize).min(f.ports.len())];
    let mut l4 = Vec::new();
    for port in ports {
        for p in proto.map(|p| vec![p]).unwrap_or_else(|| vec![6, 17]) {
            for src in [true, false] {
                l4.push(L4Match::Port {
                    proto: p,
                    src,
                    port: *port,
                });
            }
        }
    }
    if l4.is_empty() {
        l4.push(proto.map(L4Match::Proto).unwrap_or(L4Match::Any));
    }
    addrs
        .iter()
        .flat_map(|a| l4.iter().map(move |l| (a.clone(), l.clone())))
        .collect()
}

/// The selection's addresses and networks, as source and as destination;
/// any address when it has none.
fn addr_matches(sel: &Selection) -> Vec<Match> {
    let mut out = Vec::new();
    for (addr, _) in &sel.addrs {
        let (v6, bytes) = unmap(addr);
        for src in [true, false] {
            out.push(Match::Addr {
                v6,
                src,
                addr: bytes.clone(),
            });
        }
    }
    for (prefix, net) in &sel.nets {
        let (v6, bytes) = unmap(net);
        let bits = if v6 {
            *prefix
        } else {
            prefix.saturating_sub(96)
        } as usize;
        let mask: Vec<u8> = (0..bytes.len())
            .map(|i| {
                let b = bits.saturating_sub(i * 8).min(8);
                (0xffu16 << (8 - b)) as u8
            })
            .collect();
        for src in [true, false] {
            out.push(Match::Net {
                v6,
                src,
                net: bytes.clone(),
                mask: mask.clone(),
            });
        }
    }
    if out.is_empty() {
        out.push(Match::All);
    }
    out
}

/// A mapped address back to 4 or 16 bytes.
fn unmap(a: &[u8; 16]) -> (bool, Vec<u8>) {
    let v6 = std::net::Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => (false, v4.octets().to_vec()),
        None => (true, a.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_become_masks() {
        let sel = Selection {
            filter: netflow_common::Filter::empty(),
            netns: vec![],
            addrs: vec![(crate::live::select::mapped("10.1.2.3".parse().unwrap()), 1)],
            nets: vec![(
                96 + 20,
                crate::live::select::mapped("10.1.0.0".parse().unwrap()),
            )],
            ifaces: vec![],
            vxlan_ports: vec![],
            summary: String::new(),
        };
        let m = addr_matches(&sel);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[0],
            Match::Addr {
                v6: false,
                src: true,
                addr: vec![10, 1, 2, 3]
            }
        );
        assert_eq!(
            m[2],
            Match::Net {
                v6: false,
                src: true,
                net: vec![10, 1, 0, 0],
                mask: vec![255, 255, 240, 0]
            }
        );
        // The daemon's reading of a packet agrees with the kernel rule.
        let pkt = [
            0x45u8, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 1, 2, 3, 10, 1, 9, 9, 0x9c, 0x40, 0,
            80,
        ];
        assert!(m[0].accepts(&pkt), "source 10.1.2.3");
        assert!(!m[1].accepts(&pkt), "destination is not 10.1.2.3");
        assert!(m[3].accepts(&pkt), "destination in 10.1.0.0/20");
        assert!(L4Match::Port {
            proto: 6,
            src: false,
            port: 80
        }
        .accepts(&pkt));
        assert!(!L4Match::Port {
            proto: 6,
            src: true,
            port: 80
        }
        .accepts(&pkt));
        assert!(!L4Match::Proto(17).accepts(&pkt));
        let empty = Selection {
            addrs: vec![],
            nets: vec![],
            ..sel
        };
        assert_eq!(addr_matches(&empty), vec![Match::All]);
        assert_eq!(matches(&empty), vec![(Match::All, L4Match::Any)]);
        let mut ports = empty.clone();
        ports.filter.n_ports = 1;
        ports.filter.ports[0] = 80;
        let m = matches(&ports);
        assert_eq!(m.len(), 4, "tcp and udp, source and destination: {m:?}");
        ports.filter.flags |= netflow_common::filter_flags::PROTO;
        ports.filter.proto = 6;
        assert_eq!(
            matches(&ports),
            vec![
                (
                    Match::All,
                    L4Match::Port {
                        proto: 6,
                        src: true,
                        port: 80
                    }
                ),
                (
                    Match::All,
                    L4Match::Port {
                        proto: 6,
                        src: false,
                        port: 80
                    }
                )
            ]
        );
    }
}
