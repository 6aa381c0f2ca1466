//! The second step of an event's path: the bytes the kernel wrote → a typed
//! [`Event`] whose packet is parsed already. After this step nothing reads
//! the kernel's header or parses packet bytes again: the correlator joins
//! events, the outputs print them.
//!
//! [`raw`] reads the kernel's layout; [`packet`] parses IP headers (VXLAN and
//! IP-in-IP inner packets included); [`names`] and [`kallsyms`] hold what
//! turns numbers into words (drop reasons, symbols, namespaces).
use netflow_common::Point;

pub mod compat;
pub mod dns;
pub mod kallsyms;
pub mod names;
pub mod packet;
pub mod raw;
pub mod rule;
pub mod xtables;

pub use raw::{encode, DecodeError, RawEvent};

use packet::{decode_ip, fingerprint, Packet};

/// What one event says, by kind: the header fields that mean something
/// for that kind, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Seen at a device (rx, tx, tc), at a netfilter hook (`hook`, `pf`;
    /// early or late by its point), or answered by the kernel with a
    /// socketless reset (`TcpReset` with an skb).
    Hop { hook: u8, pf: u8 },
    /// The packet's end: freed by `kfree_skb` (a drop: reason, location),
    /// `consume_skb`, or handed to a socket's receive path (`Deliver`).
    End { reason: u32, location: u64 },
    /// A socket took the packet (cgroup_skb ingress).
    Socket,
    /// A TCP socket retransmitted or reset a connection (no skb): a note
    /// on the flow, in the socket's TCP state.
    Note { kind: NoteKind, tcp_state: u8 },
    /// The node sent an ICMP error because of the packet; the event's
    /// device is the one the packet's route leads to.
    IcmpError(IcmpError),
    /// nftables evaluated a base chain for the packet (kprobe upgrade).
    NftChain {
        hook: u8,
        pf: u8,
        table: String,
        chain: String,
    },
    /// nftables traced the packet through a rule or a chain's policy
    /// (daemon-made, see [`rule`]).
    Rule(rule::RuleHit),
    /// The routing decision for the packet: the event's device is the
    /// route's (none for a failed lookup).
    Route(RouteLookup),
    /// A TCP connect that succeeded, sampled (the events mode's one in N):
    /// its flow is to be followed in full for a while; nothing to report.
    Sampled,
}

/// One routing table lookup for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLookup {
    pub table: u32,
    /// The next hop, when the route has a gateway.
    pub gw: Option<std::net::IpAddr>,
    /// 0, or the lookup's error (`-ENETUNREACH`, ...).
    pub err: i32,
}

/// A route event's gateway: `family` (AF_INET 2, AF_INET6 10) says which;
/// the address is in the event's 16 data bytes (an IPv4 one in the first
/// four), or for IPv4 in the location's low half (events written before
/// IPv6 routes).
fn route_gateway(family: u8, data: &[u8], location: u64) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let gw = match (family, data.get(..16)) {
        (2, Some(d)) => IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3])),
        (2, None) => IpAddr::V4(Ipv4Addr::from((location as u32).to_ne_bytes())),
        (10, Some(d)) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(d).ok()?)),
        _ => return None,
    };
    (!gw.is_unspecified()).then_some(gw)
}

impl RouteLookup {
    /// The error in words (`errno` names as `ip route get` says them).
    pub fn error(&self) -> Option<&'static str> {
        Some(match -self.err {
            0 => return None,
            101 => "network unreachable",
            113 => "no route to host",
            22 => "invalid argument",
            1 | 13 => "prohibited",
            _ => "lookup failed",
        })
    }
}

/// An ICMP error the node sent about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// ICMPv6 (the packet it is about is IPv6).
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
    /// The MTU of the device the packet's route leads to.
    pub mtu: u32,
}

impl IcmpError {
    /// The packet was too big for the route's device: IPv4 destination
    /// unreachable, fragmentation needed (and DF set); ICMPv6 packet too big.
    pub fn frag_needed(&self) -> bool {
        match self.v6 {
            false => self.icmp_type == 3 && self.code == 4,
            true => self.icmp_type == 2,
        }
    }

    /// A destination unreachable the packet's sender takes as a refusal
    /// (port, host, network unreachable, prohibited), not a size limit.
    pub fn unreachable(&self) -> bool {
        match self.v6 {
            false => self.icmp_type == 3 && self.code != 4,
            true => self.icmp_type == 1,
        }
    }

    /// What the error says, in words.
    pub fn words(&self) -> &'static str {
        if self.v6 {
            return match (self.icmp_type, self.code) {
                (1, 0) => "no route to destination",
                (1, 1) => "administratively prohibited",
                (1, 3) => "address unreachable",
                (1, 4) => "port unreachable",
                (1, 5) => "source address failed policy",
                (1, 6) => "reject route",
                (1, _) => "destination unreachable",
                (2, _) => "packet too big",
                (3, 0) => "hop limit exceeded",
                (3, _) => "time exceeded",
                (4, _) => "parameter problem",
                _ => "error",
            };
        }
        match (self.icmp_type, self.code) {
            (3, 0) => "network unreachable",
            (3, 1) => "host unreachable",
            (3, 2) => "protocol unreachable",
            (3, 3) => "port unreachable",
            (3, 4) => "fragmentation needed",
            (3, 9 | 10 | 13) => "administratively prohibited",
            (3, _) => "destination unreachable",
            (5, _) => "redirect",
            (11, _) => "time exceeded",
            (12, _) => "parameter problem",
            _ => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteKind {
    Retransmit,
    Reset,
    /// A connect failed, with the socket's error (`sk_err`; 0: none).
    ConnectFailed {
        err: u16,
    },
}

impl NoteKind {
    /// The socket error's name (`ECONNREFUSED`, ...), for a failed connect.
    pub fn error_name(self) -> Option<&'static str> {
        let NoteKind::ConnectFailed { err } = self else {
            return None;
        };
        Some(match err {
            0 => "none",
            101 => "ENETUNREACH",
            104 => "ECONNRESET",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            113 => "EHOSTUNREACH",
            _ => "other",
        })
    }
}

/// One observation of one packet by one probe, decoded.
#[derive(Debug, Clone)]
pub struct Event {
    pub ts_ns: u64,
    /// The `struct sk_buff` address (0 for socket notes).
    pub skb: u64,
    pub point: Point,
    pub netns: u32,
    pub ifindex: u32,
    pub ifname: String,
    pub len: u32,
    pub mark: u32,
    /// `netflow_common::event_flags` bits.
    pub flags: u8,
    pub what: What,
    /// The packet (the inner one when encapsulated), when the event carries
    /// IP headers.
    pub packet: Option<Packet>,
    /// The packet's fingerprint (see [`packet::fingerprint`]), when it has one.
    pub fp: Option<u64>,
    /// The packet bytes as captured (network header on), for pcapng.
    pub data: Vec<u8>,
}

impl Event {
    /// Decode one ring-buffer record; `vxlan_ports` say which UDP ports
    /// carry VXLAN (their inner packet is the one followed).
    pub fn decode(buf: &[u8], vxlan_ports: &[u16]) -> Result<Self, DecodeError> {
        RawEvent::try_from(buf)?.typed(vxlan_ports)
    }
}

impl RawEvent {
    /// What the header's fields mean for this point, with the packet parsed.
    pub fn typed(self, vxlan_ports: &[u16]) -> Result<Event, DecodeError> {
        let what = match self.point {
            Point::TcpRetransmit | Point::TcpReset if self.skb == 0 => What::Note {
                kind: if self.point == Point::TcpRetransmit {
                    NoteKind::Retransmit
                } else {
                    NoteKind::Reset
                },
                tcp_state: self.reason as u8,
            },
            // SYN_SENT to ESTABLISHED: a sampled connect.
            Point::SockState if self.location & 0xff == 1 => What::Sampled,
            Point::SockState => What::Note {
                kind: NoteKind::ConnectFailed {
                    err: self.reason as u16,
                },
                tcp_state: (self.location >> 8) as u8,
            },
            Point::Drop | Point::Consume | Point::Deliver => What::End {
                reason: self.reason,
                location: self.location,
            },
            Point::Socket => What::Socket,
            Point::IcmpSend => What::IcmpError(IcmpError {
                v6: self.l3_proto == 0x86dd,
                icmp_type: (self.reason >> 8) as u8,
                code: self.reason as u8,
                mtu: self.location as u32,
            }),
            Point::NftChain => {
                let (table, chain) = nft_names(&self.data);
                What::NftChain {
                    hook: self.hook,
                    pf: self.pf,
                    table,
                    chain,
                }
            }
            Point::Route => What::Route(RouteLookup {
                table: self.reason,
                gw: route_gateway(self.hook, &self.data, self.location),
                err: (self.location >> 32) as u32 as i32,
            }),
            Point::RuleTrace => {
                let (hit, headers) = rule::RuleHit::from_raw(&self)?;
                let headers = headers.to_vec();
                return Ok(self.typed_rule(hit, headers, vxlan_ports));
            }
            Point::Rx
            | Point::Tx
            | Point::TcIngress
            | Point::TcEgress
            | Point::NfEarly
            | Point::NfLate
            | Point::TcpRetransmit
            | Point::TcpReset
            | Point::SockSend => What::Hop {
                hook: self.hook,
                pf: self.pf,
            },
        };
        // nft chain events carry names, route events a gateway: no packet.
        let (packet, fp, data) = match what {
            What::NftChain { .. } | What::Route(_) => (None, None, Vec::new()),
            _ => {
                let packet = (!self.data.is_empty())
                    .then(|| decode_ip(&self.data, vxlan_ports).ok())
                    .flatten();
                let fp = packet
                    .as_ref()
                    .map(|_| fingerprint(&self.data, self.l3_proto, vxlan_ports))
                    .filter(|fp| *fp != 0);
                (packet, fp, self.data)
            }
        };
        Ok(Event {
            ts_ns: self.ts_ns,
            skb: self.skb,
            point: self.point,
            netns: self.netns,
            ifindex: self.ifindex,
            ifname: self.ifname,
            len: self.len,
            mark: self.mark,
            flags: self.flags,
            what,
            packet,
            fp,
            data,
        })
    }

    /// A rule trace: its packet is the headers the trace carried.
    fn typed_rule(self, hit: rule::RuleHit, headers: Vec<u8>, vxlan_ports: &[u16]) -> Event {
        let packet = decode_ip(&headers, vxlan_ports).ok();
        let fp = packet
            .as_ref()
            .map(|_| fingerprint(&headers, self.l3_proto, vxlan_ports))
            .filter(|fp| *fp != 0);
        Event {
            ts_ns: self.ts_ns,
            skb: 0,
            point: self.point,
            netns: self.netns,
            ifindex: self.ifindex,
            ifname: self.ifname,
            len: headers.len() as u32,
            mark: self.mark,
            flags: 0,
            what: What::Rule(hit),
            packet,
            fp,
            data: headers,
        }
    }
}

/// Table and chain names of an `NftChain` event: two NUL-terminated halves.
fn nft_names(data: &[u8]) -> (String, String) {
    let half = data.len() / 2;
    let s = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    (s(&data[..half]), s(&data[half..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_gateways_of_both_families_and_the_old_layout() {
        let v6: std::net::IpAddr = "fe80::1".parse().unwrap();
        let std::net::IpAddr::V6(b) = v6 else {
            unreachable!()
        };
        assert_eq!(route_gateway(10, &b.octets(), 0), Some(v6));
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&[169, 254, 1, 1]);
        assert_eq!(
            route_gateway(2, &d, 0),
            Some("169.254.1.1".parse().unwrap())
        );
        // Written before IPv6 routes: the IPv4 gateway in the location.
        let loc = (u32::from_ne_bytes([10, 0, 0, 1]) as u64) | (5u64 << 32);
        assert_eq!(
            route_gateway(2, &[], loc),
            Some("10.0.0.1".parse().unwrap())
        );
        // No gateway (a device route).
        assert_eq!(route_gateway(0, &[0; 16], 0), None);
        assert_eq!(route_gateway(2, &[0; 16], 0), None);
    }

    fn raw(point: Point, skb: u64, data: Vec<u8>) -> RawEvent {
        RawEvent {
            ts_ns: 1,
            skb,
            point,
            ifname: "eth0".into(),
            len: data.len() as u32,
            reason: 2,
            location: 0xffff_ffff_8100_0000,
            hook: 1,
            pf: 2,
            data,
            ..raw::sample()
        }
    }

    #[test]
    fn each_point_decodes_to_its_kind_with_the_packet_parsed() {
        let mut icmp = vec![
            0x45, 0, 0, 28, 0, 7, 0, 0, 64, 1, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
        ];
        icmp.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        let e = Event::decode(&encode(&raw(Point::Rx, 0xa, icmp.clone())), &[]).unwrap();
        assert_eq!(e.what, What::Hop { hook: 1, pf: 2 });
        let p = e.packet.expect("parsed");
        assert_eq!(p.tuple.src.to_string(), "10.9.0.1");

        let e = raw(Point::Drop, 0xa, icmp.clone()).typed(&[]).unwrap();
        assert_eq!(
            e.what,
            What::End {
                reason: 2,
                location: 0xffff_ffff_8100_0000
            }
        );
        assert!(e.packet.is_some());

        let e = raw(Point::NfEarly, 0xa, icmp.clone()).typed(&[]).unwrap();
        assert_eq!(e.what, What::Hop { hook: 1, pf: 2 });

        let e = raw(Point::TcpReset, 0, icmp.clone()).typed(&[]).unwrap();
        assert_eq!(
            e.what,
            What::Note {
                kind: NoteKind::Reset,
                tcp_state: 2
            }
        );
        let e = raw(Point::TcpReset, 0xa, icmp).typed(&[]).unwrap();
        assert!(matches!(e.what, What::Hop { .. }), "socketless RST: a hop");

        let mut names = b"filter\0\0".to_vec();
        names.extend_from_slice(b"input\0\0\0");
        let e = raw(Point::NftChain, 0xa, names).typed(&[]).unwrap();
        assert_eq!(
            e.what,
            What::NftChain {
                hook: 1,
                pf: 2,
                table: "filter".into(),
                chain: "input".into()
            }
        );
        assert!(e.packet.is_none() && e.data.is_empty());
    }
}
