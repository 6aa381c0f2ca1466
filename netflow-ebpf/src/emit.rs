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
/// reported taken by a socket, or only counted: nothing to say.
#[inline(always)]
pub(crate) fn end_tracked(skb: *const u8, point: Point, location: u64) {
    if !tracking() {
        return;
    }
    let key = skb as u64;
    let flags = match unsafe { TRACKED.get(key) } {
        None => return,
        Some(t) => t.flags,
    };
    if flags & track_flags::COUNTED != 0 {
        // Only counted: left for the LRU to evict (a delete costs more than
        // the lookup; a reused skb is noticed by its fingerprint).
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
    let h = unsafe { &mut *entry.as_mut_ptr() };
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
        unsafe { *c += 1 };
    }
}

/// Copy a scratch-built event into the ring.
#[inline(always)]
pub(crate) fn output<T>(ev: &T) {
    if EVENTS.output::<T>(ev, wake_flags()).is_err() {
        count_lost();
    }
}
