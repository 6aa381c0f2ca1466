//! The events mode's UDP conversations, as each socket of the node sees
//! them. A socket's first datagram each way of a conversation is reported
//! where it sends or takes it (as a DNS datagram is), so that the daemon
//! makes a connection of it: answered, or `no_reply` once it is idle; the
//! rest of its datagrams cost one lookup in CONVS and a store of the time.
//! A conversation quiet for [`CONV_IDLE_NS`] begins anew.
//!
//! The key is the socket's own view (its address and port, the peer's), so
//! the two ends of a conversation between pods of the node are two
//! entries, each reporting its own first datagrams: a datagram one end
//! sends is tracked, and the other end's report of it joins its timeline.
//! Two CPUs may both find a new conversation missing and both report it:
//! at least once, not exactly once.
//!
//! ICMP echo is a conversation too, keyed by its id (in the source port's
//! place, as conntrack keys it): the requests a socket sends, the replies
//! a raw or ping socket takes. A raw socket takes a copy of the reply;
//! the original goes on to `ping_rcv`, which finds no ping socket and
//! frees it, as a drop on some kernels (5.10, 6.1 and 6.12 in the matrix:
//! `NO_SOCKET`, 5.10 with no reason). ECHO_TAKEN notes, per CPU, the buffer of the last reply
//! whose copy a socket took, so that the free program, which runs on
//! the same CPU a moment later in the same softirq, knows it for no drop
//! (the copy shares the original's buffer).
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use netflow_common::{conv_sides, Conv, FlowKey, PacketEvent, CONVS_ENTRIES, CONV_IDLE_NS};

use crate::globals::KEY_SCRATCH;

#[map]
static CONVS: LruHashMap<FlowKey, Conv> = LruHashMap::with_max_entries(CONVS_ENTRIES, 0);

/// `[buffer, time]` of the last ICMP echo reply whose copy a socket took.
#[map]
static ECHO_TAKEN: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// How soon after its copy was taken the original's free must come: the
/// same softirq, microseconds on hardware; an emulated machine (the
/// kernel matrix's) has taken over a millisecond. Only an ICMP echo
/// reply's free in the same buffer on the same CPU is looked at.
const ECHO_FREE_WITHIN_NS: u64 = 100_000_000;

/// A socket took a copy of the ICMP echo reply in buffer `head` at `now`.
#[inline(always)]
pub(crate) fn echo_taken(head: u64, now: u64) {
    if let Some(m) = ECHO_TAKEN.get_ptr_mut(0) {
        // SAFETY: `m` is this CPU's ECHO_TAKEN slot: per-CPU map memory,
        // aligned for the value, valid while the program runs.
        unsafe { *m = [head, now] };
    }
}

/// Is a free of the packet in buffer `head` at `now` that of an echo
/// reply whose copy a socket just took (no drop)?
#[inline(always)]
pub(crate) fn echo_copy_taken(head: u64, now: u64) -> bool {
    let Some(m) = ECHO_TAKEN.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: as in `echo_taken`.
    let [h, t] = unsafe { *m };
    if head == 0 || h != head || now.saturating_sub(t) > ECHO_FREE_WITHIN_NS {
        return false;
    }
    // SAFETY: as in `echo_taken`; one free per note.
    unsafe { *m = [0, 0] };
    true
}

/// Is the packet read into `ev` an ICMP or ICMPv6 echo reply?
#[inline(always)]
pub(crate) fn echo_reply(ev: &PacketEvent) -> bool {
    let cap = ev.hdr.cap_len as usize;
    match ev.hdr.l3_proto {
        0x0800 if cap >= 21 => {
            let l4 = ((ev.data[0] & 0x0f) as usize) * 4;
            ev.data[9] == 1 && l4 < cap && ev.data[l4 & 0x7f] == 0
        }
        0x86dd if cap >= 41 => ev.data[6] == 58 && ev.data[40] == 129,
        _ => false,
    }
}

/// The program's key slot, emptied for a key of IP version `ip` and
/// protocol `proto` (UDP, ICMP or ICMPv6).
#[inline(always)]
pub(crate) fn key(ip: u8, proto: u8) -> Option<&'static mut FlowKey> {
    let k = crate::nest::slot(&KEY_SCRATCH)?;
    // SAFETY: `k` is this program's KEY_SCRATCH slot for its nesting
    // level: per-CPU map memory, aligned for a FlowKey, used by no other
    // program while this one runs (see `nest`).
    let k = unsafe { &mut *k };
    k.src = [0; 16];
    k.dst = [0; 16];
    k.proto = proto;
    k._pad = [ip, 0, 0];
    Some(k)
}

/// Is this datagram (`sent` by the socket, else taken) the first of its
/// direction in the conversation `k` (the socket's own view)? Notes the
/// time either way.
#[inline(always)]
pub(crate) fn first(k: &FlowKey, sent: bool, now: u64) -> bool {
    let side = if sent {
        conv_sides::SENT
    } else {
        conv_sides::TAKEN
    };
    match CONVS.get_ptr_mut(k) {
        Some(c) => {
            // SAFETY: `c` is the key's CONVS value: preallocated map memory,
            // aligned for a Conv, valid while the program runs. An eviction
            // giving it to another conversation meanwhile gives a report too
            // many or too few, never invalid memory.
            let (last, sides) = unsafe { ((*c).last_ns, (*c).sides) };
            let fresh = now.saturating_sub(last) > CONV_IDLE_NS;
            let new = fresh || sides & side == 0;
            let sides = if fresh { side } else { sides | side };
            // SAFETY: as above.
            unsafe {
                (*c).last_ns = now;
                (*c).sides = sides;
            }
            new
        }
        None => {
            let c = Conv {
                last_ns: now,
                sides: side,
                _pad: 0,
            };
            let _ = CONVS.insert(k, c, 0);
            true
        }
    }
}
