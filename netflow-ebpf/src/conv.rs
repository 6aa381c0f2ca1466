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
use aya_ebpf::{macros::map, maps::LruHashMap};
use netflow_common::{conv_sides, Conv, FlowKey, CONVS_ENTRIES, CONV_IDLE_NS};

use crate::globals::KEY_SCRATCH;

#[map]
static CONVS: LruHashMap<FlowKey, Conv> = LruHashMap::with_max_entries(CONVS_ENTRIES, 0);

/// The program's key slot, emptied for a UDP key of IP version `ip`.
#[inline(always)]
pub(crate) fn key(ip: u8) -> Option<&'static mut FlowKey> {
    let k = crate::nest::slot(&KEY_SCRATCH)?;
    // SAFETY: `k` is this program's KEY_SCRATCH slot for its nesting
    // level: per-CPU map memory, aligned for a FlowKey, used by no other
    // program while this one runs (see `nest`).
    let k = unsafe { &mut *k };
    k.src = [0; 16];
    k.dst = [0; 16];
    k.proto = 17;
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
