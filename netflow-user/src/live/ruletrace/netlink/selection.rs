//! The trace table's rule: what it matches (an address, a network, a
//! protocol and port; the same test in the daemon for the packets it
//! should have marked) and the expressions that mark a packet for tracing.
use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, Expressions, Immediate, Meta, MetaKey, Operator, Payload, Register,
};

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// Packets per second each trace rule marks at most, and its burst.
pub const TRACE_RATE: u64 = 500;
pub const TRACE_BURST: u32 = 100;

/// What a trace table rule matches: all packets, or one address as source
/// or destination, or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    All,
    Addr {
        v6: bool,
        src: bool,
        addr: Vec<u8>,
    },
    Net {
        v6: bool,
        src: bool,
        net: Vec<u8>,
        mask: Vec<u8>,
    },
}

/// What a trace table rule matches above the network header: any packet,
/// a protocol, or a protocol and a source or destination port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Match {
    Any,
    Proto(u8),
    Port { proto: u8, src: bool, port: u16 },
}

impl L4Match {
    /// Does a packet match, as the kernel rule does?
    pub fn accepts(&self, pkt: &[u8]) -> bool {
        let (proto, port) = match self {
            L4Match::Any => return true,
            L4Match::Proto(p) => (*p, None),
            L4Match::Port { proto, src, port } => (*proto, Some((*src, *port))),
        };
        // The protocol and transport offset (IPv6 extension headers are
        // not walked: such packets are not matched here).
        let (l4, thoff) = match pkt.first().map(|b| b >> 4) {
            Some(4) if pkt.len() >= 20 => (pkt[9], (pkt[0] & 0xf) as usize * 4),
            Some(6) if pkt.len() >= 40 => (pkt[6], 40),
            _ => return false,
        };
        if l4 != proto {
            return false;
        }
        match port {
            None => true,
            Some((src, p)) => {
                let at = thoff + if src { 0 } else { 2 };
                pkt.get(at..at + 2) == Some(&p.to_be_bytes()[..])
            }
        }
    }

    pub(super) fn expressions(&self) -> Vec<Expressions> {
        let (proto, port) = match self {
            L4Match::Any => return Vec::new(),
            L4Match::Proto(p) => (*p, None),
            L4Match::Port { proto, src, port } => (*proto, Some((*src, *port))),
        };
        let mut e = vec![
            Expressions::Meta(vec![
                Meta::DestinationRegister(Register::Reg1),
                Meta::Key(MetaKey::L4Proto),
            ]),
            Expressions::Cmp(vec![
                Cmp::SourceRegister(Register::Reg1),
                Cmp::Op(Operator::Equal),
                Cmp::Data(DataAttribute::Value(vec![proto])),
            ]),
        ];
        if let Some((src, port)) = port {
            e.push(Expressions::Payload(vec![
                Payload::DestinationRegister(Register::Reg1),
                Payload::Base(2), // transport header
                Payload::Offset(if src { 0 } else { 2 }),
                Payload::Len(2),
            ]));
            e.push(Expressions::Cmp(vec![
                Cmp::SourceRegister(Register::Reg1),
                Cmp::Op(Operator::Equal),
                Cmp::Data(DataAttribute::Value(port.to_be_bytes().to_vec())),
            ]));
        }
        e
    }
}

impl Match {
    /// Does a packet (from its network header) match, as the kernel rule
    /// does? Trace events of packets other tracers marked are not ours.
    pub fn accepts(&self, pkt: &[u8]) -> bool {
        let (v6, src, value, mask) = match self {
            Match::All => return true,
            Match::Addr { v6, src, addr } => (*v6, *src, addr, None),
            Match::Net { v6, src, net, mask } => (*v6, *src, net, Some(mask)),
        };
        let version = pkt.first().map(|b| b >> 4);
        let off = match (v6, src, version) {
            (false, true, Some(4)) => 12,
            (false, false, Some(4)) => 16,
            (true, true, Some(6)) => 8,
            (true, false, Some(6)) => 24,
            _ => return false,
        };
        let Some(field) = pkt.get(off..off + value.len()) else {
            return false;
        };
        match mask {
            None => field == value.as_slice(),
            Some(m) => field
                .iter()
                .zip(m)
                .map(|(b, m)| b & m)
                .eq(value.iter().copied()),
        }
    }

    pub(super) fn expressions(&self) -> Vec<Expressions> {
        let (v6, src, value, mask) = match self {
            Match::All => return Vec::new(),
            Match::Addr { v6, src, addr } => (*v6, *src, addr.clone(), None),
            Match::Net { v6, src, net, mask } => (*v6, *src, net.clone(), Some(mask.clone())),
        };
        let len = value.len() as u32;
        let offset = match (v6, src) {
            (false, true) => 12,
            (false, false) => 16,
            (true, true) => 8,
            (true, false) => 24,
        };
        let mut e = vec![
            Expressions::Meta(vec![
                Meta::DestinationRegister(Register::Reg1),
                Meta::Key(MetaKey::Nfproto),
            ]),
            Expressions::Cmp(vec![
                Cmp::SourceRegister(Register::Reg1),
                Cmp::Op(Operator::Equal),
                Cmp::Data(DataAttribute::Value(vec![if v6 {
                    NFPROTO_IPV6
                } else {
                    NFPROTO_IPV4
                }])),
            ]),
            Expressions::Payload(vec![
                Payload::DestinationRegister(Register::Reg1),
                Payload::Base(1), // network header
                Payload::Offset(offset),
                Payload::Len(len),
            ]),
        ];
        if let Some(mask) = mask {
            e.push(Expressions::Bitwise(vec![
                Bitwise::SourceRegister(Register::Reg1),
                Bitwise::DestinationRegister(Register::Reg1),
                Bitwise::Length(len),
                Bitwise::Mask(DataAttribute::Value(mask)),
                Bitwise::Xor(DataAttribute::Value(vec![0; len as usize])),
            ]));
        }
        e.push(Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(value)),
        ]));
        e
    }
}

/// `limit rate TRACE_RATE/second burst TRACE_BURST packets meta nftrace set 1`.
pub(super) fn trace_expressions() -> Vec<Expressions> {
    vec![
        Expressions::Other {
            expression_type: "limit".into(),
            attributes: vec![
                DefaultNla::new(1, TRACE_RATE.to_be_bytes().to_vec()), // RATE
                DefaultNla::new(2, 1u64.to_be_bytes().to_vec()),       // UNIT: second
                DefaultNla::new(3, TRACE_BURST.to_be_bytes().to_vec()), // BURST
                DefaultNla::new(4, 0u32.to_be_bytes().to_vec()),       // TYPE: packets
            ],
        },
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Reg1),
            Immediate::Data(DataAttribute::Value(1u32.to_ne_bytes().to_vec())),
        ]),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::NftraceBit),
            Meta::SourceRegister(Register::Reg1),
        ]),
    ]
}
