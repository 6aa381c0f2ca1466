//! What the verifier checks once per program instead of at every call.
//!
//! A hop's decision parses the packet's headers several times (is it
//! encapsulated, counted at its socket, selected, new to the guardrails,
//! its fingerprint, its header hash). Inlined, each parse is walked again
//! for every path that reaches it, and the netfilter programs came to 0.7-0.9
//! million instructions on 5.10 and 6.1, past the verifier's million on
//! some point releases. These are BPF global functions: the verifier checks
//! each one once, on its own, and a call costs the caller one instruction.
//!
//! bpf-linker makes every function static; the loader marks these global
//! in the object's BTF by their prefix ([`netflow_common::names::GLOBAL_FN_PREFIX`]).
//! 5.10 allows a global function integers only (no pointer but the
//! context's), so they work on the per-CPU scratch event ([`scratch`])
//! and take or return plain integers. Only the netfilter programs call
//! them (`G` in [`crate::hop::on_hop`]): the device programs, verified in
//! far less, keep their inlined parse (no call on the hot path).
use netflow_common::{filter_flags as ff, parse};

use crate::{
    globals::*,
    guard,
    select::{matches, reply_of_selected},
    skb::scratch,
};

/// The scratch event's fingerprint (0 without one).
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_fingerprint() -> u64 {
    let Ok(ev) = scratch() else {
        return 0;
    };
    parse::fingerprint(
        &ev.data,
        v(&ev.hdr.cap_len) as usize,
        ev.hdr.l3_proto,
        filter(),
    )
}

/// The fingerprint of the receive kept for PREROUTING (`PRE_NAT`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_pre_nat_fingerprint() -> u64 {
    let Some(pre) = crate::nest::slot(&PRE_NAT) else {
        return 0;
    };
    // SAFETY: `pre` is this program's PRE_NAT slot (see `nest`): map memory, 8-aligned for the
    // PacketEvent, that lives as long as the map. Its only caller,
    // `netfilter::report_receive`, holds a `&mut` to the same slot across this
    // call: a `&` while that one is live is aliasing Rust forbids, harmless in
    // practice only because nothing writes the slot during this call, which
    // just reads it.
    let pre = unsafe { &*pre };
    parse::fingerprint(
        &pre.data,
        v(&pre.hdr.cap_len) as usize,
        pre.hdr.l3_proto,
        filter(),
    )
}

/// The scratch event's header hash (`Track::hdr`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_tuple_hash() -> u64 {
    let Ok(ev) = scratch() else {
        return 0;
    };
    parse::tuple_hash(
        &ev.data,
        v(&ev.hdr.cap_len) as usize,
        ev.hdr.l3_proto,
        filter(),
    )
}

/// 1: the scratch event's packet is encapsulated (its inner headers lie
/// past the first bytes read).
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_has_inner() -> u32 {
    let Ok(ev) = scratch() else {
        return 0;
    };
    parse::has_inner(
        &ev.data,
        v(&ev.hdr.cap_len) as usize,
        ev.hdr.l3_proto,
        filter(),
    ) as u32
}

/// 1: the agent's sockets count the scratch event's packet.
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_socket_counted() -> u32 {
    let Ok(ev) = scratch() else {
        return 0;
    };
    guard::socket_counted(ev, filter()).is_some() as u32
}

/// The scratch event's outer headers, or (`inner`) its encapsulated ones.
#[inline(always)]
fn headers(inner: u32) -> Option<(&'static netflow_common::PacketEvent, parse::Tuple)> {
    let ev = scratch().ok()?;
    let cap = v(&ev.hdr.cap_len) as usize;
    let outer = parse::outer(&ev.data, cap, ev.hdr.l3_proto)?;
    if inner == 0 {
        return Some((ev, outer));
    }
    Some((ev, parse::inner(&ev.data, cap, &outer, filter())?))
}

/// 1: the scratch event's packet is selected by its outer headers, or
/// (`inner`) by its encapsulated ones (`netns_hit`: its device is in a
/// selected namespace). One header set and one test per call: inlined
/// together they took 312 bytes of stack, and 5.10 allows 512 for the
/// chain of calls (rounded up to 32 each).
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_selected(netns_hit: u32, inner: u32) -> u32 {
    let f = filter();
    if v(&f.flags) & ff::ON_DEMAND != 0 {
        // Only followed flows: `netflow_g_reply_of_selected` says.
        return 0;
    }
    if v(&f.flags) & ff::ALL != 0 {
        return 1;
    }
    match headers(inner) {
        Some((ev, t)) => matches(&ev.data, &t, f, netns_hit != 0) as u32,
        None => 0,
    }
}

/// 1: the scratch event's packet (outer or, `inner`, encapsulated
/// headers) is the reply direction of a selected translated connection.
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_reply_of_selected(inner: u32) -> u32 {
    match headers(inner) {
        Some((ev, t)) => reply_of_selected(&ev.data, &t) as u32,
        None => 0,
    }
}

/// 1: the guardrails give the scratch event's new packet full detail.
#[no_mangle]
#[inline(never)]
pub extern "C" fn netflow_g_full_detail(now: u64) -> u32 {
    let Ok(ev) = scratch() else {
        return 1;
    };
    guard::full_detail(ev, filter(), now) as u32
}
