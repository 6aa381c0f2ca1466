//! Minimal header parser over the captured bytes, shared by the kernel
//! programs and the daemon: which packet it is (its tuple, the connection
//! key) and its [`fingerprint`], the one definition of "the same packet"
//! both sides use. The daemon decodes the same bytes fully (etherparse) for
//! everything else. Every index is masked into the buffer so the verifier
//! sees it bounded; no loop is unbounded; nothing allocates.
use crate::{Filter, CAPTURE_BYTES, MAX_VXLAN_PORTS};

/// A global read the compiler may not fold (the loader rewrites the kernel
/// programs' globals after compilation).
#[inline(always)]
fn v<T: Copy>(p: &T) -> T {
    // SAFETY: `p` is a valid reference.
    unsafe { core::ptr::read_volatile(p) }
}

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
        if i < v(&f.n_vxlan_ports) as usize && v(&f.vxlan_ports[i]) == port {
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

/// What identifies one packet besides its addresses and ports, so that it
/// survives NAT and encapsulation: of the innermost IP header, the protocol,
/// the IPv4 ID and the word after the ports (TCP seq, UDP length, ICMP
/// id+seq). The kernel compares it to tell a reused skb from the packet it
/// tracked; the daemon joins a packet's copies (new skbs) by it (narrowed
/// further by fields the kernel does not need, see the correlator). Bytes at
/// or past `cap` are never read. Kept small on purpose: the verifier walks
/// every copy of it the compiler inlines, and the kprobe programs of older
/// kernels are near its million instructions (one more branch here pushed
/// `nf_hook_slow`'s kretprobe over on 6.1).
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
pub fn flow_key(buf: &[u8; CAPTURE_BYTES], t: &Tuple) -> crate::FlowKey {
    let mut k = crate::FlowKey {
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

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use etherparse::PacketBuilder;

    use super::*;

    fn buf(bytes: &[u8]) -> ([u8; CAPTURE_BYTES], usize) {
        let mut b = [0u8; CAPTURE_BYTES];
        let n = bytes.len().min(CAPTURE_BYTES);
        b[..n].copy_from_slice(&bytes[..n]);
        (b, n)
    }

    fn fp(bytes: &[u8], ethertype: u16, f: &Filter) -> u64 {
        let (b, n) = buf(bytes);
        fingerprint(&b, n, ethertype, f)
    }

    fn tcp4(src: [u8; 4], sport: u16, seq: u32, ack: u32, id: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, [10, 0, 0, 2], 64)
            .tcp(sport, 80, seq, 1000)
            .ack(ack)
            .write(&mut out, b"hello")
            .unwrap();
        out[4..6].copy_from_slice(&id.to_be_bytes());
        out
    }

    fn echo6(request: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let b = PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64);
        let b = if request {
            b.icmpv6_echo_request(7, 9)
        } else {
            b.icmpv6_echo_reply(7, 9)
        };
        b.write(&mut out, b"ping").unwrap();
        out
    }

    #[test]
    fn tcp_fingerprint_is_protocol_id_and_seq() {
        let f = Filter::empty();
        let p = tcp4([10, 0, 0, 1], 40000, 0x1122_3344, 0x5566_7788, 0x0abc);
        assert_eq!(
            fp(&p, ETH_P_IP, &f),
            6u64 << 48 | 0x0abc << 32 | 0x1122_3344
        );
    }

    #[test]
    fn nat_leaves_it_and_other_packets_differ() {
        let f = Filter::empty();
        let a = fp(&tcp4([10, 0, 0, 1], 40000, 1, 2, 3), ETH_P_IP, &f);
        // SNAT: another source address and port, same packet.
        assert_eq!(a, fp(&tcp4([192, 168, 9, 9], 61000, 1, 2, 3), ETH_P_IP, &f));
        // Another segment: another seq.
        assert_ne!(a, fp(&tcp4([10, 0, 0, 1], 40000, 2, 2, 3), ETH_P_IP, &f));
        // An echo request and its reply share id and seq (and in IPv6 have
        // no IP ID): the correlator tells them apart by the ICMP type.
        assert_eq!(
            fp(&echo6(true), ETH_P_IPV6, &f),
            fp(&echo6(false), ETH_P_IPV6, &f)
        );
    }

    #[test]
    fn vxlan_carries_the_inner_packets_fingerprint() {
        let inner = tcp4([10, 244, 1, 2], 40000, 9, 8, 77);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 244, 1, 2], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 9, 1000)
            .ack(8)
            .write(&mut frame, b"hello")
            .unwrap();
        frame[14 + 4..14 + 6].copy_from_slice(&77u16.to_be_bytes());
        let mut vx = std::vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend_from_slice(&frame);
        let mut outer = Vec::new();
        PacketBuilder::ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
            .udp(5555, 4789)
            .write(&mut outer, &vx)
            .unwrap();
        let mut f = Filter::empty();
        f.n_vxlan_ports = 1;
        f.vxlan_ports[0] = 4789;
        assert_eq!(
            fp(&outer, ETH_P_IP, &f),
            fp(&inner, ETH_P_IP, &Filter::empty())
        );
    }

    #[test]
    fn bytes_past_the_capture_are_never_read() {
        let f = Filter::empty();
        let p = tcp4([10, 0, 0, 1], 40000, 1, 2, 3);
        for cap in [0, 20, 24, 28, 31, 32, 40, p.len()] {
            let (mut b, _) = buf(&p);
            let clean = fingerprint(&b, cap, ETH_P_IP, &f);
            for x in b.iter_mut().skip(cap) {
                *x = 0xa5;
            }
            assert_eq!(fingerprint(&b, cap, ETH_P_IP, &f), clean, "cap {cap}");
        }
    }
}
