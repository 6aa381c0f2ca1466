//! The packet selection, in the kernel: outer and inner headers against
//! the selected addresses, networks, ports, protocol and namespaces, and
//! replies of selected translated connections.
use aya_ebpf::maps::lpm_trie::Key;
use netflow_common::{
    filter_flags as ff, AddrKey, Filter, PacketEvent, ADDR_HOST, ADDR_NETNS, CAPTURE_BYTES,
    MAX_INLINE_V4, MAX_PORTS,
};

use netflow_common::{parse, parse::Tuple};

use crate::globals::*;

/// Does the packet (outer or, when encapsulated, inner headers) match?
#[inline(always)]
pub(crate) fn selected(ev: &PacketEvent, f: &Filter, netns_hit: bool) -> bool {
    if v(&f.flags) & ff::ON_DEMAND != 0 {
        // A branch of its own, apart from `matches`: a verifier that does
        // not know the filter's value (5.10) walks it beside, not inside.
        return followed(ev, f);
    }
    if v(&f.flags) & ff::ALL != 0 {
        return true;
    }
    matched(ev, f, netns_hit)
}

/// Is the event of a per-event program (a drop, a socket event, an ICMP
/// error sent) reported? As [`selected`], except that the events mode
/// reports every one. One test of the flags: no path of its own for the
/// verifier to walk.
#[inline(always)]
pub(crate) fn reported(ev: &PacketEvent, f: &Filter, netns_hit: bool) -> bool {
    if v(&f.flags) & (ff::ALL | ff::ON_DEMAND) != 0 {
        return true;
    }
    matched(ev, f, netns_hit)
}

/// The selectors against the outer headers, then the inner ones.
#[inline(always)]
fn matched(ev: &PacketEvent, f: &Filter, netns_hit: bool) -> bool {
    let cap = ev.hdr.cap_len as usize;
    let Some(outer) = parse::outer(&ev.data, cap, ev.hdr.l3_proto) else {
        return false;
    };
    if matches(&ev.data, &outer, f, netns_hit) || reply_of_selected(&ev.data, &outer) {
        return true;
    }
    match parse::inner(&ev.data, cap, &outer, f) {
        Some(t) => matches(&ev.data, &t, f, netns_hit) || reply_of_selected(&ev.data, &t),
        None => false,
    }
}

/// The events mode: a flow the daemon follows (outer or inner headers).
#[inline(always)]
fn followed(ev: &PacketEvent, f: &Filter) -> bool {
    let cap = ev.hdr.cap_len as usize;
    let Some(outer) = parse::outer(&ev.data, cap, ev.hdr.l3_proto) else {
        return false;
    };
    if reply_of_selected(&ev.data, &outer) {
        return true;
    }
    match parse::inner(&ev.data, cap, &outer, f) {
        Some(t) => reply_of_selected(&ev.data, &t),
        None => false,
    }
}

/// Is this packet the reply direction of a selected, translated connection?
#[inline(always)]
pub(crate) fn reply_of_selected(buf: &[u8; CAPTURE_BYTES], t: &Tuple) -> bool {
    match FLOWS_ACTIVE.get(0) {
        Some(n) if *n != 0 => {}
        _ => return false,
    }
    // SAFETY: the reference the lookup returns is never read, only tested for
    // presence, so aya's caveat on `get` (a value removed and reused under the
    // reference) cannot matter.
    unsafe { SEL_FLOWS.get(parse::flow_key(buf, t)) }.is_some()
}

#[inline(always)]
pub(crate) fn matches(buf: &[u8; CAPTURE_BYTES], t: &Tuple, f: &Filter, netns_hit: bool) -> bool {
    if v(&f.flags) & ff::PROTO != 0 && t.proto != v(&f.proto) {
        return false;
    }
    if v(&f.flags) & ff::PORT != 0 {
        let mut hit = false;
        let mut i = 0;
        while i < MAX_PORTS {
            if i < v(&f.n_ports) as usize {
                let p = v(&f.ports[i]);
                if t.has_ports && (p == t.sport || p == t.dport) {
                    hit = true;
                }
            }
            i += 1;
        }
        if !hit {
            return false;
        }
    }
    if v(&f.flags) & (ff::HOST | ff::NETNS) != 0 {
        let bits = addr_bits(buf, t.addr, t.addr_len, f)
            | addr_bits(buf, t.addr + t.addr_len, t.addr_len, f);
        if v(&f.flags) & ff::HOST != 0 && bits & ADDR_HOST == 0 {
            return false;
        }
        if v(&f.flags) & ff::NETNS != 0 && !netns_hit && bits & ADDR_NETNS == 0 {
            return false;
        }
    }
    true
}

#[inline(always)]
pub(crate) fn addr_bits(buf: &[u8; CAPTURE_BYTES], off: usize, len: usize, f: &Filter) -> u32 {
    if len == 4 && v(&f.flags) & ff::V4_INLINE != 0 && v(&f.flags) & ff::NETS == 0 {
        // A handful of IPv4 addresses: compare in place (cheaper than hashing).
        let a = parse::be32(buf, off);
        let n = v(&f.n_v4) as usize;
        let mut bits = 0;
        let mut i = 0;
        while i < MAX_INLINE_V4 {
            if i < n && v(&f.v4[i]) == a {
                bits |= v(&f.v4_bits[i]);
            }
            i += 1;
        }
        return bits;
    }
    let mut key = Key::new(128, AddrKey { addr: [0; 16] });
    parse::copy_addr(buf, off, len, &mut key.data.addr);
    // SAFETY: the reference only copies the u32 out, at once. SEL_ADDRS's
    // values are preallocated with the map, so it is valid, aligned memory
    // while the program runs; an update from the daemon meanwhile (aya's caveat
    // on `get`: an element freed and reused) could give another address's bits
    // for this one packet, not a fault.
    let mut bits = unsafe { SEL_ADDRS.get(key.data) }.copied().unwrap_or(0);
    if v(&f.flags) & ff::NETS != 0 {
        bits |= SEL_NETS.get(&key).copied().unwrap_or(0);
    }
    bits
}
