//! Programs nest on a CPU, and their per-CPU working memory is one slot per
//! nesting level.
//!
//! A program runs with migration disabled, not with interrupts off: a
//! softirq's program (rx, tc ingress, the PREROUTING, INPUT and FORWARD
//! hooks, a route lookup) can run inside a process-context one (the OUTPUT
//! and POSTROUTING hooks, cgroup egress, a kfree_skb, tcp_retransmit_skb or
//! tcp_send_reset, a local socket's route lookup) on the same CPU. With one
//! per-CPU slot, the inner program would overwrite the event, flow key or
//! pending route the outer one is building.
//!
//! So each program that uses such memory takes a level when it starts
//! ([`enter`]), and gives it back when it returns (the [`Level`]'s drop).
//! Nesting is a stack: an inner program has returned before the outer one
//! goes on, so the level count read at entry is the outer one's plus one
//! and is restored on the way out, even if the inner program ran between
//! this one's load and store. Every per-CPU working map (`SCRATCH`,
//! `KEY_SCRATCH`, `PRE_NAT`, `ROUTE_PENDING`) has [`DEPTH`] entries, indexed
//! by [`level`]. What the receive program leaves for PREROUTING or the route
//! lookup that follows is found there: they run in the same softirq, at the
//! same level.
//!
//! A program nested deeper than [`DEPTH`] (none of these runs in hard
//! interrupt or NMI context: process, softirq, and one spare) does nothing
//! and counts a lost event.
use aya_ebpf::{macros::map, maps::PerCpuArray};

use crate::emit::count_lost;

/// Nesting levels with their own slot.
pub(crate) const DEPTH: u32 = netflow_common::NEST_DEPTH;

/// How many programs are running on this CPU (the levels taken).
#[map]
static NEST: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// A level taken: given back when dropped. Zero-sized, so that it costs
/// no stack: the netfilter programs of 5.10 are near the 512 bytes a chain
/// of BPF calls may use.
pub(crate) struct Level;

impl Drop for Level {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(count) = NEST.get_ptr_mut(0) {
            // SAFETY: `count` is this CPU's NEST slot, a 4-aligned u32 of map
            // memory that lives as long as the map; no other CPU uses it. A
            // program nesting here has given its level back before this one
            // goes on (nesting is a stack), so the count is this program's
            // level plus one, as `enter` left it.
            unsafe { count.write_volatile(count.read_volatile().saturating_sub(1)) };
        }
    }
}

/// Take this program's level (None: nested too deep, counted as lost).
#[inline(always)]
pub(crate) fn enter() -> Option<Level> {
    let count = NEST.get_ptr_mut(0)?;
    // SAFETY: as in `Level::drop`.
    let outer = unsafe { count.read_volatile() };
    if outer >= DEPTH {
        count_lost();
        return None;
    }
    // SAFETY: as in `Level::drop`. A program that nests between this load
    // and this store has given its level back by now: `outer` is still the
    // count.
    unsafe { count.write_volatile(outer + 1) };
    Some(Level)
}

/// The running program's slot in the per-CPU working maps (None when it took
/// no level).
#[inline(always)]
pub(crate) fn level() -> Option<u32> {
    let count = NEST.get_ptr(0)?;
    // SAFETY: as in `Level::drop` (read only).
    let n = unsafe { count.read_volatile() };
    if n == 0 || n > DEPTH {
        return None;
    }
    Some(n - 1)
}

/// The running program's slot of a per-CPU working map (one entry per level).
#[inline(always)]
pub(crate) fn slot<T>(map: &PerCpuArray<T>) -> Option<*mut T> {
    map.get_ptr_mut(level()?)
}
