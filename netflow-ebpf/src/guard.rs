//! Guardrails: full detail for what an SRE needs — TCP SYN/FIN/RST, every
//! packet that is not TCP or UDP, the first packets of each connection and
//! one in N of the rest, within a per-CPU rate — while every other selected
//! packet is only counted here, per connection and direction. Drops are
//! reported whatever this decides (see `hop::on_drop`).
use netflow_common::{filter_flags as ff, ConnCount, Filter, FlowKey, PacketEvent};

use core::ptr::addr_of_mut;

use netflow_common::parse;

use crate::{
    atomic::{add, load},
    globals::*,
};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// TCP FIN, SYN, RST.
const TCP_CONTROL: u8 = 0x07;

/// Does this newly selected packet get full detail? Otherwise it is counted
/// in CONNS (and SAMPLED) and not reported hop by hop.
#[inline(always)]
pub(crate) fn full_detail(ev: &PacketEvent, f: &Filter, now: u64) -> bool {
    if v(&f.flags) & ff::EVERY_PACKET != 0 {
        return true;
    }
    let cap = ev.hdr.cap_len as usize;
    let Some(o) = parse::outer(&ev.data, cap, ev.hdr.l3_proto) else {
        return true;
    };
    let t = parse::inner(&ev.data, cap, &o, f).unwrap_or(o);
    match t.proto {
        IPPROTO_TCP => {
            if t.l4 + 14 > cap || parse::byte(&ev.data, t.l4 + 13) & TCP_CONTROL != 0 {
                return true;
            }
        }
        IPPROTO_UDP => {}
        _ => return true,
    }
    let (key, dir) = conn_key(&ev.data, &t);
    let Some(c) = conn_entry(&key) else {
        return true;
    };
    // Two CPUs may read the same `n` (both directions at once): only which
    // packets get full detail depends on it, never a count.
    // SAFETY: `c` points to a live CONNS value (see `conn_entry`).
    let n = unsafe { load(addr_of_mut!((*c).total)) };
    // SAFETY: as above, for each field below.
    unsafe { add(addr_of_mut!((*c).total), 1) };
    let every = v(&f.guard_every) as u64;
    // SAFETY: as above.
    let full = unsafe { load(addr_of_mut!((*c).full)) };
    let wanted = full < v(&f.guard_first) as u64 || (every != 0 && n % every == 0);
    // A connection's first packet is like its SYN: always shown (it names
    // the initiator); the next ones within the per-CPU rate.
    if wanted && (n == 0 || take_token(f, now)) {
        // SAFETY: as above.
        unsafe { add(addr_of_mut!((*c).full), 1) };
        return true;
    }
    let len = ev.hdr.len as u64;
    let d = (dir & 1) as usize;
    // SAFETY: as above; `d` is 0 or 1, within the arrays.
    unsafe {
        add(addr_of_mut!((*c).pkts[d]), 1);
        add(addr_of_mut!((*c).bytes[d]), len);
    }
    count_sampled();
    false
}

/// `bpf_map_update_elem`'s flag: create, never replace.
const BPF_NOEXIST: u64 = 1;

#[inline(always)]
fn count_sampled() {
    if let Some(s) = SAMPLED.get_ptr_mut(0) {
        // SAFETY: `s` is this CPU's SAMPLED slot: an 8-aligned u64 of map
        // memory that lives as long as the map. One atomic add: a program
        // nesting on this CPU (see `nest`) cannot lose a count.
        unsafe { add(s, 1) };
    }
}

/// The connection's counts, created when it is new: a pointer, not a
/// reference (other CPUs update the same value at the same time; every
/// update goes through [`add`]). The memory stays map memory while the
/// program runs; an LRU eviction may hand the element to another
/// connection meanwhile (LRU elements are reused at once): at worst a count
/// lands on the wrong connection, never outside the map.
#[inline(always)]
fn conn_entry(key: &FlowKey) -> Option<*mut ConnCount> {
    if let Some(c) = CONNS.get_ptr_mut(key) {
        return Some(c);
    }
    let zero = CONN_ZERO.get(0)?;
    // Only if still absent: another CPU may have made it since the lookup
    // (both directions' first packets at once), and replacing it would
    // lose what that CPU counts in the replaced value.
    let _ = CONNS.insert(key, zero, BPF_NOEXIST);
    CONNS.get_ptr_mut(key)
}

/// Counting at the sockets (the agent, [`ff::SOCKET_COUNT`]): the packet
/// is a TCP segment without SYN/FIN/RST (innermost headers), which no
/// program follows across the node. Its tuple, else `None` (the packet is
/// followed as the guardrails decide).
#[inline(always)]
pub(crate) fn socket_counted(ev: &PacketEvent, f: &Filter) -> Option<parse::Tuple> {
    if v(&f.flags) & ff::SOCKET_COUNT == 0 {
        return None;
    }
    // Read back, not forwarded from the caller's store: a verifier that
    // knows the length as a constant per branch (6.12's) loses the
    // buffer's pointer type in the parse that follows.
    let cap = v(&ev.hdr.cap_len) as usize;
    let o = parse::outer(&ev.data, cap, ev.hdr.l3_proto)?;
    let t = parse::inner(&ev.data, cap, &o, f).unwrap_or(o);
    if t.proto != IPPROTO_TCP
        || t.l4 + 14 > cap
        || parse::byte(&ev.data, t.l4 + 13) & TCP_CONTROL != 0
    {
        return None;
    }
    Some(t)
}

/// A socket of the node sent (`sent`) or took a segment `socket_counted`
/// chose: count it in its connection. Sockets on loopback addresses are
/// not on any path across the node.
#[inline(always)]
pub(crate) fn count_at_socket(ev: &PacketEvent, t: &parse::Tuple, sent: bool) {
    let (key, dir) = conn_key(&ev.data, t);
    if is_loopback(&key.src) || is_loopback(&key.dst) {
        return;
    }
    let Some(c) = conn_entry(&key) else {
        return;
    };
    // The IP length (the skb's length depends on where the socket sees
    // it); a GSO packet of more than 64 KiB has none: its skb length.
    let len = match ev.hdr.l3_proto {
        0x0800 => ((parse::byte(&ev.data, 2) as u64) << 8) | parse::byte(&ev.data, 3) as u64,
        _ => {
            let p = ((parse::byte(&ev.data, 4) as u64) << 8) | parse::byte(&ev.data, 5) as u64;
            if p == 0 {
                0
            } else {
                p + 40
            }
        }
    };
    let len = if len == 0 { ev.hdr.len as u64 } else { len };
    // Only this side's counters: the other end's CPU writes its own (the
    // daemon takes the larger, and counts them in `sampled` then).
    let d = (dir & 1) as usize;
    // SAFETY: `c` points to a live CONNS value (see `conn_entry`); `d` is 0
    // or 1, within the arrays.
    unsafe {
        if sent {
            add(addr_of_mut!((*c).sent[d]), 1);
            add(addr_of_mut!((*c).sent_bytes[d]), len);
        } else {
            add(addr_of_mut!((*c).taken[d]), 1);
            add(addr_of_mut!((*c).taken_bytes[d]), len);
        }
    }
}

/// 127.0.0.0/8 (IPv4-mapped) or ::1.
#[inline(always)]
fn is_loopback(a: &[u8; 16]) -> bool {
    let mut zeros = 0u8;
    let mut i = 0;
    while i < 10 {
        zeros |= a[i];
        i += 1;
    }
    if zeros != 0 {
        return false;
    }
    if a[10] == 0xff && a[11] == 0xff {
        return a[12] == 127;
    }
    a[10] | a[11] | a[12] | a[13] | a[14] == 0 && a[15] == 1
}

/// The connection's key (lower endpoint first) and the packet's direction
/// (0: from the lower endpoint).
#[inline(always)]
fn conn_key(buf: &[u8; netflow_common::CAPTURE_BYTES], t: &parse::Tuple) -> (FlowKey, u8) {
    let mut k = parse::flow_key(buf, t);
    // Compare (src, sport) with (dst, dport): the addresses as two
    // big-endian halves each (the byte order the daemon compares in).
    let half = |a: &[u8; 16], i: usize| {
        u64::from_be_bytes([
            a[i],
            a[i + 1],
            a[i + 2],
            a[i + 3],
            a[i + 4],
            a[i + 5],
            a[i + 6],
            a[i + 7],
        ])
    };
    let (s0, d0) = (half(&k.src, 0), half(&k.dst, 0));
    let (s1, d1) = (half(&k.src, 8), half(&k.dst, 8));
    let order: i8 = if s0 != d0 {
        if s0 < d0 {
            -1
        } else {
            1
        }
    } else if s1 != d1 {
        if s1 < d1 {
            -1
        } else {
            1
        }
    } else if k.sport > k.dport {
        1
    } else {
        0
    };
    if order > 0 {
        core::mem::swap(&mut k.src, &mut k.dst);
        core::mem::swap(&mut k.sport, &mut k.dport);
        (k, 1)
    } else {
        (k, 0)
    }
}

/// One full-detail packet from this CPU's bucket (`guard_rate` per second,
/// bursts of a tenth of that).
#[inline(always)]
fn take_token(f: &Filter, now: u64) -> bool {
    let rate = v(&f.guard_rate) as u64;
    if rate == 0 {
        return true;
    }
    let Some(b) = BUCKET.get_ptr_mut(0) else {
        return true;
    };
    // No reference to the bucket is made: a program nesting on this CPU (a
    // softirq hook inside OUTPUT's, see `nest`) may take a token between a
    // load and a store here. Then one token is taken twice or not at all: the
    // rate is a little off, the memory unharmed.
    //
    // SAFETY: `b` is this CPU's BUCKET slot, map memory 8-aligned for the
    // Bucket that lives as long as the map; no other CPU uses it (a program
    // runs with migration disabled). The same holds for each access below.
    let (tokens, last) = unsafe {
        (
            addr_of_mut!((*b).tokens).read_volatile(),
            addr_of_mut!((*b).last_ns).read_volatile(),
        )
    };
    let cap = rate / 10 + 1;
    let refill = now.saturating_sub(last) * rate / 1_000_000_000;
    let mut tokens = tokens;
    if refill > 0 {
        tokens = if tokens + refill > cap {
            cap
        } else {
            tokens + refill
        };
        // SAFETY: as above.
        unsafe { addr_of_mut!((*b).last_ns).write_volatile(now) };
    }
    if tokens == 0 {
        // SAFETY: as above.
        unsafe { addr_of_mut!((*b).tokens).write_volatile(0) };
        return false;
    }
    // SAFETY: as above.
    unsafe { addr_of_mut!((*b).tokens).write_volatile(tokens - 1) };
    true
}
