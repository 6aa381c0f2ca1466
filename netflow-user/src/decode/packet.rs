//! Decoding the packet bytes an event carries (from the network header on)
//! with etherparse: the L3/L4 tuple, TCP/ICMP details, and for VXLAN or
//! IP-in-IP the outer header plus the inner packet.
use std::net::IpAddr;

use etherparse::{IpNumber, LaxNetSlice, LaxSlicedPacket, TransportSlice};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Other(u8),
}

impl Proto {
    pub fn from_ip_number(n: u8) -> Self {
        match n {
            6 => Self::Tcp,
            17 => Self::Udp,
            1 => Self::Icmp,
            58 => Self::Icmpv6,
            n => Self::Other(n),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
            Self::Icmpv6 => 58,
            Self::Other(n) => n,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp => f.write_str("tcp"),
            Self::Udp => f.write_str("udp"),
            Self::Icmp => f.write_str("icmp"),
            Self::Icmpv6 => f.write_str("icmpv6"),
            Self::Other(132) => f.write_str("sctp"),
            Self::Other(n) => write!(f, "ip-proto-{n}"),
        }
    }
}

/// Addresses, protocol and ports of one IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

impl Tuple {
    pub fn reversed(&self) -> Self {
        Self {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// An address and port as every output writes it: `10.0.0.1:80`,
/// `[fd00::1]:80`, or the bare address without a port.
pub fn endpoint((ip, port): (IpAddr, Option<u16>)) -> String {
    match (ip, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

impl std::fmt::Display for Tuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.proto,
            endpoint((self.src, self.sport)),
            endpoint((self.dst, self.dport))
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapKind {
    Vxlan,
    Ipip,
}

/// The outer header of an encapsulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    pub kind: EncapKind,
    pub vni: Option<u32>,
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
}

/// The numbers a packet carries that people read (IPv4 ID, TCP seq/ack, ICMP
/// type/id/seq, IP payload length). Which packets are the same is decided by
/// [`fingerprint`], not by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PacketIds {
    pub ip_id: Option<u16>,
    pub tcp_seq: Option<u32>,
    pub tcp_ack: Option<u32>,
    pub icmp: Option<(u8, u16, u16)>,
    pub ip_payload_len: u16,
}

/// A decoded packet (the inner one when encapsulated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub tuple: Tuple,
    pub encap: Option<Encap>,
    /// TCP flags as tcpdump prints them (`S`, `S.`, `P.`, `F.`, `R`).
    pub tcp_flags: Option<String>,
    pub ids: PacketIds,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("not an IP packet")]
    NotIp,
    #[error("truncated or malformed IP header: {0}")]
    Malformed(String),
}

/// The packet's fingerprint, by the definition the kernel programs use
/// (`netflow_common::parse::fingerprint`), over the captured bytes from the
/// network header on.
pub fn fingerprint(data: &[u8], l3_proto: u16, vxlan_ports: &[u16]) -> u64 {
    use netflow_common::{parse, Filter, CAPTURE_BYTES, MAX_VXLAN_PORTS};
    let mut buf = [0u8; CAPTURE_BYTES];
    let cap = data.len().min(CAPTURE_BYTES);
    buf[..cap].copy_from_slice(&data[..cap]);
    let mut f = Filter::empty();
    for (i, p) in vxlan_ports.iter().take(MAX_VXLAN_PORTS).enumerate() {
        f.vxlan_ports[i] = *p;
        f.n_vxlan_ports = i as u8 + 1;
    }
    // skb->protocol is not always set where a packet is seen (the kernel
    // then computes none): the IP version says which header it is.
    let l3_proto = match data.first().map(|b| b >> 4) {
        Some(4) => 0x0800,
        Some(6) => 0x86dd,
        _ => l3_proto,
    };
    parse::fingerprint(&buf, cap, l3_proto, &f)
}

/// Default VXLAN UDP ports: IANA 4789 and Linux/flannel 8472.
pub const DEFAULT_VXLAN_PORTS: [u16; 2] = [4789, 8472];

/// Decode bytes starting at an IPv4 or IPv6 header. Sliced (no header is
/// copied out): this runs for every event.
pub fn decode_ip(data: &[u8], vxlan_ports: &[u16]) -> Result<Packet, PacketError> {
    let h = LaxSlicedPacket::from_ip(data).map_err(|e| PacketError::Malformed(e.to_string()))?;
    let mut pkt = from_sliced(&h)?;

    let encap = match (&h.transport, &h.net) {
        (Some(TransportSlice::Udp(u)), _)
            if vxlan_ports.contains(&u.destination_port()) && u.payload().len() >= 8 + 14 =>
        {
            let payload = u.payload();
            let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
            LaxSlicedPacket::from_ethernet(&payload[8..])
                .ok()
                .and_then(|inner| from_sliced(&inner).ok())
                .map(|inner| (EncapKind::Vxlan, Some(vni), inner))
        }
        (None, Some(net)) => net
            .ip_payload_ref()
            .filter(|p| p.ip_number == IpNumber::IPV4 || p.ip_number == IpNumber::IPV6)
            .and_then(|p| LaxSlicedPacket::from_ip(p.payload).ok())
            .and_then(|inner| from_sliced(&inner).ok())
            .map(|inner| (EncapKind::Ipip, None, inner)),
        _ => None,
    };
    if let Some((kind, vni, inner)) = encap {
        let outer = pkt.tuple;
        pkt = inner;
        pkt.encap = Some(Encap {
            kind,
            vni,
            outer_src: outer.src,
            outer_dst: outer.dst,
        });
    }
    Ok(pkt)
}

fn from_sliced(h: &LaxSlicedPacket<'_>) -> Result<Packet, PacketError> {
    let mut ids = PacketIds::default();
    let (src, dst, payload) = match &h.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let hd = ip.header();
            ids.ip_id = Some(hd.identification());
            ids.ip_payload_len = hd.total_len().saturating_sub(hd.slice().len() as u16);
            (
                IpAddr::from(hd.source_addr()),
                IpAddr::from(hd.destination_addr()),
                ip.payload(),
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let hd = ip.header();
            ids.ip_payload_len = hd.payload_length();
            (
                IpAddr::from(hd.source_addr()),
                IpAddr::from(hd.destination_addr()),
                ip.payload(),
            )
        }
        _ => return Err(PacketError::NotIp),
    };
    // The L4 protocol is the one after extension headers.
    let mut proto = payload.ip_number.0;
    let (mut sport, mut dport, mut tcp_flags) = (None, None, None);
    match &h.transport {
        Some(TransportSlice::Tcp(t)) => {
            proto = 6;
            sport = Some(t.source_port());
            dport = Some(t.destination_port());
            ids.tcp_seq = Some(t.sequence_number());
            ids.tcp_ack = Some(t.acknowledgment_number());
            tcp_flags = Some(tcp_flag_string(
                &[
                    (t.syn(), 'S'),
                    (t.fin(), 'F'),
                    (t.rst(), 'R'),
                    (t.psh(), 'P'),
                    (t.urg(), 'U'),
                    (t.ece(), 'E'),
                    (t.cwr(), 'W'),
                ],
                t.ack(),
            ));
        }
        Some(TransportSlice::Udp(u)) => {
            proto = 17;
            sport = Some(u.source_port());
            dport = Some(u.destination_port());
        }
        Some(TransportSlice::Icmpv4(i)) => {
            proto = 1;
            ids.icmp = icmp_fields(i.slice());
        }
        Some(TransportSlice::Icmpv6(i)) => {
            proto = 58;
            ids.icmp = icmp_fields(i.slice());
        }
        // A TCP header cut inside its options (nftables traces carry 20
        // bytes of it): its fixed part still says ports, numbers and flags.
        None if proto == 6 && payload.payload.len() >= 20 => {
            let b = payload.payload;
            let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
            let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            sport = Some(be16(0));
            dport = Some(be16(2));
            ids.tcp_seq = Some(be32(4));
            ids.tcp_ack = Some(be32(8));
            let f = b[13];
            tcp_flags = Some(tcp_flag_string(
                &[
                    (f & 0x02 != 0, 'S'),
                    (f & 0x01 != 0, 'F'),
                    (f & 0x04 != 0, 'R'),
                    (f & 0x08 != 0, 'P'),
                    (f & 0x20 != 0, 'U'),
                    (f & 0x40 != 0, 'E'),
                    (f & 0x80 != 0, 'W'),
                ],
                f & 0x10 != 0,
            ));
        }
        None => {}
    }
    Ok(Packet {
        tuple: Tuple {
            proto: Proto::from_ip_number(proto),
            src,
            dst,
            sport,
            dport,
        },
        encap: None,
        tcp_flags,
        ids,
    })
}

/// ICMP type, and the two words after the checksum (echo id and sequence).
fn icmp_fields(b: &[u8]) -> Option<(u8, u16, u16)> {
    (b.len() >= 8).then(|| {
        (
            b[0],
            u16::from_be_bytes([b[4], b[5]]),
            u16::from_be_bytes([b[6], b[7]]),
        )
    })
}

/// TCP flags as tcpdump prints them: the set ones, then `.` for ACK.
fn tcp_flag_string(flags: &[(bool, char)], ack: bool) -> String {
    let mut s: String = flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, c)| *c)
        .collect();
    if ack {
        s.push('.');
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use etherparse::PacketBuilder;

    use super::*;

    #[test]
    fn endpoints_bracket_ipv6_addresses_with_ports() {
        let v6: IpAddr = "fd00::2".parse().unwrap();
        let v4: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(endpoint((v6, Some(443))), "[fd00::2]:443");
        assert_eq!(endpoint((v6, None)), "fd00::2");
        assert_eq!(endpoint((v4, Some(80))), "10.0.0.2:80");
    }

    fn udp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    #[test]
    fn a_tcp_header_cut_in_its_options_keeps_ports_numbers_and_flags() {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 96, 0, 11], 64)
            .tcp(40000, 80, 7, 1024)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(&mut out, &[])
            .unwrap();
        // What an nftables trace carries: the IP header and 20 TCP bytes.
        let p = decode_ip(&out[..40], &[]).unwrap();
        assert_eq!((p.tuple.sport, p.tuple.dport), (Some(40000), Some(80)));
        assert_eq!(p.ids.tcp_seq, Some(7));
        assert_eq!(p.tcp_flags.as_deref(), Some("S"));
    }

    #[test]
    fn decodes_tcp_syn() {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1234, 64000)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        let p = decode_ip(&out, &DEFAULT_VXLAN_PORTS).unwrap();
        assert_eq!(p.tuple.proto, Proto::Tcp);
        assert_eq!(p.tuple.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(p.tuple.dport, Some(80));
        assert_eq!(p.tcp_flags.as_deref(), Some("S"));
        assert_eq!(p.ids.tcp_seq, Some(1234));
        assert!(p.encap.is_none());
    }

    #[test]
    fn decodes_icmp_echo_and_ipv6() {
        let mut out = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
            .icmpv6_echo_request(7, 9)
            .write(&mut out, b"ping")
            .unwrap();
        let p = decode_ip(&out, &[]).unwrap();
        assert_eq!(p.tuple.proto, Proto::Icmpv6);
        assert_eq!(p.ids.icmp, Some((128, 7, 9)));
        assert_eq!(p.tuple.sport, None);
    }

    #[test]
    fn decodes_vxlan_inner_and_outer() {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 244, 1, 2], [10, 244, 2, 3], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut inner, b"hi")
            .unwrap();
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend_from_slice(&inner);
        let out = udp_packet([192, 168, 0, 1], [192, 168, 0, 2], 5555, 4789, &vx);
        let p = decode_ip(&out, &DEFAULT_VXLAN_PORTS).unwrap();
        assert_eq!(p.tuple.proto, Proto::Icmp);
        assert_eq!(p.tuple.src.to_string(), "10.244.1.2");
        let e = p.encap.unwrap();
        assert_eq!(e.kind, EncapKind::Vxlan);
        assert_eq!(e.vni, Some(42));
        assert_eq!(e.outer_dst.to_string(), "192.168.0.2");
        // Not a VXLAN port: plain UDP.
        let p = decode_ip(&out, &[8472]).unwrap();
        assert_eq!(p.tuple.proto, Proto::Udp);
        assert!(p.encap.is_none());
    }

    #[test]
    fn decodes_ipip() {
        let inner = udp_packet([10, 1, 0, 1], [10, 2, 0, 1], 1000, 53, b"q");
        let mut out = Vec::new();
        PacketBuilder::ipv4([172, 16, 0, 1], [172, 16, 0, 2], 64)
            .write(&mut out, IpNumber::IPV4, &inner)
            .unwrap();
        let p = decode_ip(&out, &DEFAULT_VXLAN_PORTS).unwrap();
        assert_eq!(p.tuple.dport, Some(53));
        assert_eq!(p.encap.unwrap().kind, EncapKind::Ipip);
        assert_eq!(p.encap.unwrap().outer_src.to_string(), "172.16.0.1");
    }

    #[test]
    fn truncated_capture_still_decodes_headers() {
        let out = udp_packet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, &[0u8; 1000]);
        let p = decode_ip(&out[..40], &[]).unwrap();
        assert_eq!(p.tuple.dport, Some(2));
        assert!(decode_ip(&[0x45, 0], &[]).is_err());
        assert!(decode_ip(&[], &[]).is_err());
    }
}
