//! Writing events to the ring buffer, and counting what it could not take.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
};
use netflow_common::{track_flags, EventHeader, Point, EVENT_VERSION, RING_BYTES};

use crate::globals::*;

/// The fields every event sets the same way; the caller fills in the rest
/// (device, packet, reason, location).
#[inline(always)]
pub(crate) fn header(h: &mut EventHeader, skb: u64, point: Point, ts: u64) {
    h.ts_ns = ts;
    h.skb = skb;
    h.location = 0;
    h.fp = 0;
    h.reason = 0;
    h.mark = 0;
    h.point = point as u8;
    h.version = EVENT_VERSION;
    h.hook = 0;
    h.pf = 0;
    h.flags = 0;
}

/// A tracked packet's journey ends here (consumed, or taken by a socket):
/// forget it and say so with a header-only event. Untracked, already
/// reported taken by a socket, or only counted: nothing to say (an only
/// counted one is marked ended).
#[inline(always)]
pub(crate) fn end_tracked(skb: *const u8, point: Point, location: u64) {
    if !tracking() {
        return;
    }
    let key = skb as u64;
    let Some(t) = TRACKED.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: `t` is this skb's TRACKED value: preallocated map memory,
    // aligned for the Track, valid while the program runs. An LRU eviction on
    // another CPU, or a program nesting on this one, giving the element to
    // another skb meanwhile would give that skb's flags, not a fault.
    let flags = unsafe { (*t).flags };
    if flags & track_flags::COUNTED != 0 {
        // Only counted: marked ended (one store; a delete costs more) and
        // left for the LRU to evict. The skb's memory is soon another
        // packet's, and a fingerprint alone can match by chance (a UDP
        // answer of the same length whose IP ID equals the request's): that
        // packet would be taken for this one and go uncounted.
        // SAFETY: as above; one u64 store.
        unsafe { (*t).ts = 0 };
        return;
    }
    let _ = TRACKED.remove(key);
    if flags & track_flags::DELIVERED != 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<EventHeader>(0) else {
        count_lost();
        return;
    };
    // SAFETY: `entry` is a record just reserved in EVENTS:
    // size_of::<EventHeader>() bytes of ring memory, 8-aligned (as ring records
    // are), that only this program holds until `submit`. Its bytes are real
    // ones (the ring is zeroed when created, then holds older records), and
    // every field of EventHeader is an integer or a byte array, valid for any
    // bytes; each field but `_pad` is written below before the submit.
    let h = unsafe { &mut *entry.as_mut_ptr() };
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    header(h, key, point, unsafe { bpf_ktime_get_ns() });
    h.location = location;
    h.netns = 0;
    h.ifindex = 0;
    h.len = 0;
    h.l3_proto = 0;
    h.cap_len = 0;
    zero16(&mut h.ifname);
    entry.submit(wake_flags());
}

/// Word-sized stores (a byte-array zeroing becomes a memset the verifier rejects).
#[inline(always)]
pub(crate) fn zero16(b: &mut [u8; 16]) {
    let p = b.as_mut_ptr() as *mut u64;
    // SAFETY: `p` covers `b`'s 16 bytes as two u64s, writable through the
    // `&mut`. The u64 stores need 8-alignment, which `[u8; 16]` does not
    // promise: every caller passes `EventHeader::ifname`, at offset 64 of the
    // 8-aligned repr(C) EventHeader (in the scratch or PRE_NAT slot or a ring
    // record), so it holds for them, but this safe function would be UB for an
    // unaligned array.
    unsafe {
        core::ptr::write_volatile(p, 0);
        core::ptr::write_volatile(p.add(1), 0);
    }
}

/// Wake the reader only when the ring is filling up; otherwise it polls.
#[inline(always)]
pub(crate) fn wake_flags() -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if avail > (RING_BYTES / 4) as u64 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
pub(crate) fn count_lost() {
    if let Some(c) = LOST.get_ptr_mut(0) {
        // SAFETY: `c` is this CPU's LOST slot: an 8-aligned u64 of map memory
        // that lives as long as the map. One atomic add (BPF_XADD): a program
        // nesting on this CPU (see `nest`) cannot lose a count.
        unsafe { crate::atomic::add(c, 1) };
    }
}

/// Copy a scratch-built event into the ring.
#[inline(always)]
pub(crate) fn output<T>(ev: &T) {
    if EVENTS.output::<T>(ev, wake_flags()).is_err() {
        count_lost();
    }
}
