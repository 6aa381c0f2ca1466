//! Minimal in-kernel header parser, used only to decide whether a packet is
//! selected. The daemon decodes the same bytes fully (etherparse).
//! Every index is masked into the buffer so the verifier sees it bounded.
use netflow_common::{Filter, CAPTURE_BYTES, MAX_VXLAN_PORTS};

const MASK: usize = CAPTURE_BYTES - 1;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

pub struct Tuple {
    /// Offset of the source address; the destination follows it.
    pub addr: usize,
    /// 4 (IPv4) or 16 (IPv6).
    pub addr_len: usize,
    pub proto: u8,
    pub has_ports: bool,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the L4 header in the buffer.
    pub l4: usize,
    /// Ports as conntrack keys the flow (ICMP: echo id, 0).
    pub flow_sport: u16,
    pub flow_dport: u16,
}

#[inline(always)]
fn b(buf: &[u8; CAPTURE_BYTES], off: usize) -> u8 {
    buf[off & MASK]
}

/// The byte at `off` (masked into the buffer).
#[inline(always)]
pub fn byte(buf: &[u8; CAPTURE_BYTES], off: usize) -> u8 {
    b(buf, off)
}

#[inline(always)]
fn be16(buf: &[u8; CAPTURE_BYTES], off: usize) -> u16 {
    ((b(buf, off) as u16) << 8) | b(buf, off + 1) as u16
}

/// Write the address at `off` (IPv4 mapped into IPv6 when `len` is 4).
#[inline(always)]
pub fn copy_addr(buf: &[u8; CAPTURE_BYTES], off: usize, len: usize, out: &mut [u8; 16]) {
    if len == 4 {
        *out = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
        let mut i = 0;
        while i < 4 {
            out[12 + i] = b(buf, off + i);
            i += 1;
        }
    } else {
        let mut i = 0;
        while i < 16 {
            out[i] = b(buf, off + i);
            i += 1;
        }
    }
}

/// Parse the IP header at `off` (an IPv4 or IPv6 header by `ethertype`).
#[inline(always)]
fn ip(buf: &[u8; CAPTURE_BYTES], off: usize, cap: usize, ethertype: u16) -> Option<Tuple> {
    let mut t = Tuple {
        addr: 0,
        addr_len: 0,
        proto: 0,
        has_ports: false,
        sport: 0,
        dport: 0,
        l4: 0,
        flow_sport: 0,
        flow_dport: 0,
    };
    let l4 = match ethertype {
        ETH_P_IP => {
            if off + 20 > cap {
                return None;
            }
            let ihl = ((b(buf, off) & 0x0f) as usize) * 4;
            t.proto = b(buf, off + 9);
            t.addr = off + 12;
            t.addr_len = 4;
            // Ports only in the first fragment.
            if be16(buf, off + 6) & 0x1fff != 0 {
                return Some(t);
            }
            off + ihl
        }
        ETH_P_IPV6 => {
            if off + 40 > cap {
                return None;
            }
            t.proto = b(buf, off + 6);
            t.addr = off + 8;
            t.addr_len = 16;
            off + 40
        }
        _ => return None,
    };
    t.l4 = l4;
    if matches!(t.proto, IPPROTO_ICMP | IPPROTO_ICMPV6) && l4 + 8 <= cap {
        // Echo id in place of the source port, as conntrack keys ICMP.
        t.flow_sport = be16(buf, l4 + 4);
    }
    if matches!(t.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) && l4 + 4 <= cap {
        t.has_ports = true;
        t.sport = be16(buf, l4);
        t.dport = be16(buf, l4 + 2);
        t.flow_sport = t.sport;
        t.flow_dport = t.dport;
    }
    Some(t)
}

/// The packet's outer tuple.
#[inline(always)]
pub fn outer(buf: &[u8; CAPTURE_BYTES], cap: usize, ethertype: u16) -> Option<Tuple> {
    ip(buf, 0, cap, ethertype)
}

/// For VXLAN or IP-in-IP, the inner tuple.
#[inline(always)]
pub fn inner(buf: &[u8; CAPTURE_BYTES], cap: usize, outer: &Tuple, f: &Filter) -> Option<Tuple> {
    match outer.proto {
        IPPROTO_IPIP => ip(buf, outer.l4, cap, ETH_P_IP),
        IPPROTO_IPV6 => ip(buf, outer.l4, cap, ETH_P_IPV6),
        IPPROTO_UDP if outer.has_ports && is_vxlan(outer.dport, f) => {
            // UDP (8) + VXLAN (8) + inner Ethernet (14).
            let eth = outer.l4 + 16;
            ip(buf, eth + 14, cap, be16(buf, eth + 12))
        }
        _ => None,
    }
}

#[inline(always)]
fn is_vxlan(port: u16, f: &Filter) -> bool {
    let mut i = 0;
    while i < MAX_VXLAN_PORTS {
        if i < crate::globals::v(&f.n_vxlan_ports) as usize
            && crate::globals::v(&f.vxlan_ports[i]) == port
        {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
pub fn be32(buf: &[u8; CAPTURE_BYTES], off: usize) -> u32 {
    ((be16(buf, off) as u32) << 16) | be16(buf, off + 2) as u32
}

/// What identifies one packet besides addresses and ports (unchanged by NAT
/// and encapsulation): of the innermost IP header, the IPv4 ID, the protocol
/// and the word after the ports (TCP seq, UDP length, ICMP id+seq).
#[inline(always)]
pub fn fingerprint(buf: &[u8; CAPTURE_BYTES], cap: usize, ethertype: u16, f: &Filter) -> u64 {
    let Some(o) = outer(buf, cap, ethertype) else {
        return 0;
    };
    let t = inner(buf, cap, &o, f).unwrap_or(o);
    // IPv4: the ID sits 8 bytes before the source address.
    let id = if t.addr_len == 4 {
        be16(buf, t.addr - 8) as u64
    } else {
        0
    };
    // UDP: the length only (NAT rewrites the checksum).
    let word = if t.l4 + 8 > cap {
        0
    } else if t.proto == IPPROTO_UDP {
        be16(buf, t.l4 + 4) as u64
    } else {
        be32(buf, t.l4 + 4) as u64
    };
    (t.proto as u64) << 48 | id << 32 | word
}

/// Does the packet carry an inner packet (VXLAN, IP-in-IP) to look into?
#[inline(always)]
pub fn has_inner(buf: &[u8; CAPTURE_BYTES], cap: usize, ethertype: u16, f: &Filter) -> bool {
    match outer(buf, cap, ethertype) {
        Some(t) => match t.proto {
            IPPROTO_IPIP | IPPROTO_IPV6 => true,
            IPPROTO_UDP => t.has_ports && is_vxlan(t.dport, f),
            _ => false,
        },
        None => false,
    }
}

/// A hash of the packet's addresses, ports and protocol, outer and (when
/// encapsulated) inner: unchanged across hops unless NAT or encapsulation
/// changed them (TTL and checksums are left out).
#[inline(always)]
pub fn tuple_hash(buf: &[u8; CAPTURE_BYTES], cap: usize, ethertype: u16, f: &Filter) -> u64 {
    let Some(o) = outer(buf, cap, ethertype) else {
        return 0;
    };
    let mut h = tuple_words(buf, &o, 0);
    if let Some(t) = inner(buf, cap, &o, f) {
        h = tuple_words(buf, &t, h.rotate_left(17));
    }
    h
}

#[inline(always)]
fn tuple_words(buf: &[u8; CAPTURE_BYTES], t: &Tuple, seed: u64) -> u64 {
    let mut h = seed ^ ((t.proto as u64) << 32 | (t.sport as u64) << 16 | t.dport as u64);
    let mut i = 0;
    while i < 8 {
        if i * 4 < 2 * t.addr_len {
            h = h.rotate_left(9) ^ be32(buf, t.addr + i * 4) as u64;
        }
        i += 1;
    }
    h
}

/// The connection key of a tuple, as the packet has it (source first).
#[inline(always)]
pub fn flow_key(buf: &[u8; CAPTURE_BYTES], t: &Tuple) -> netflow_common::FlowKey {
    let mut k = netflow_common::FlowKey {
        src: [0; 16],
        dst: [0; 16],
        sport: t.flow_sport,
        dport: t.flow_dport,
        proto: t.proto,
        _pad: [0; 3],
    };
    copy_addr(buf, t.addr, t.addr_len, &mut k.src);
    copy_addr(buf, t.addr + t.addr_len, t.addr_len, &mut k.dst);
    k
}
