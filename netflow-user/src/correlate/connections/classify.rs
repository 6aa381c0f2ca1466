//! What a packet is, for connections: part of a conversation (and which
//! way), an ICMP error about one, or neither; and the key both directions
//! of a conversation share.
use std::net::IpAddr;

use crate::{
    correlate::is_group_addr,
    decode::packet::{decode_ip, Packet, Proto, Tuple},
};

/// One side of a conversation: address and port (ICMP echo: its id).
pub(super) type Endpoint = (IpAddr, Option<u16>);
/// Endpoints in a fixed order, and the protocol.
pub(super) type Key = (Proto, Endpoint, Endpoint);

pub(super) fn key(t: &Tuple) -> Key {
    let (a, b) = ((t.src, t.sport), (t.dst, t.dport));
    if a <= b {
        (t.proto, a, b)
    } else {
        (t.proto, b, a)
    }
}

/// What a packet is, for connections.
pub(super) enum Kind {
    /// Part of a conversation; `answer`: it can only come from a responder.
    Conv {
        answer: bool,
        reset: bool,
        fin: bool,
    },
    /// An ICMP error about a packet with this tuple.
    IcmpError(Tuple),
    /// Not part of a conversation (neighbour discovery, group traffic).
    Other,
}

const ICMP_ECHO: [(Proto, u8, u8); 2] = [(Proto::Icmp, 8, 0), (Proto::Icmpv6, 128, 129)];

/// The packet's tuple for connections: ICMP echoes carry their id as ports.
pub(super) fn conv_tuple(p: &Packet) -> Tuple {
    let mut t = p.tuple;
    if let Some((_, id, _)) = p.ids.icmp {
        if matches!(t.proto, Proto::Icmp | Proto::Icmpv6) {
            t.sport = Some(id);
            t.dport = Some(id);
        }
    }
    t
}

pub(super) fn kind(p: &Packet, data: &[u8]) -> Kind {
    if is_group_addr(&p.tuple.dst) {
        return Kind::Other;
    }
    match p.tuple.proto {
        Proto::Tcp => {
            let f = p.tcp_flags.as_deref().unwrap_or("");
            Kind::Conv {
                answer: f.contains('S') && f.contains('.'),
                reset: f.contains('R'),
                fin: f.contains('F'),
            }
        }
        Proto::Udp => Kind::Conv {
            answer: false,
            reset: false,
            fin: false,
        },
        proto @ (Proto::Icmp | Proto::Icmpv6) => {
            let Some((ty, _, _)) = p.ids.icmp else {
                return Kind::Other;
            };
            if let Some((_, _, reply)) = ICMP_ECHO
                .iter()
                .find(|(pr, req, rep)| *pr == proto && (ty == *req || ty == *rep))
            {
                return Kind::Conv {
                    answer: ty == *reply,
                    reset: false,
                    fin: false,
                };
            }
            let error = match proto {
                Proto::Icmp => matches!(ty, 3 | 11 | 12),
                _ => matches!(ty, 1..=4),
            };
            match error.then(|| quoted(data)).flatten() {
                Some(t) => Kind::IcmpError(t),
                None => Kind::Other,
            }
        }
        Proto::Other(_) => Kind::Other,
    }
}

/// The tuple of the packet an ICMP error quotes (after the outer IP header
/// and the 8-byte ICMP header).
fn quoted(data: &[u8]) -> Option<Tuple> {
    let ip_len = match data.first()? >> 4 {
        4 => ((data[0] & 0x0f) as usize) * 4,
        6 => 40,
        _ => return None,
    };
    let inner = data.get(ip_len + 8..)?;
    decode_ip(inner, &[]).ok().map(|p| conv_tuple(&p))
}
