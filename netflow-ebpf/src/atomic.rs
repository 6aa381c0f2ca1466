//! Counters that programs on several CPUs, or nested on one, update at
//! once.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

/// Adds `n` to a counter that other CPUs (a connection's two directions in
/// CONNS, or one spread by RSS) or a nested program update too: one atomic add (BPF_XADD, on
/// every kernel netflow runs on; its result unused, so no BPF_FETCH, which
/// 5.10 lacks), so that no increment is lost.
///
/// # Safety
/// `p` points to a `u64` of a map value that lives while the program runs.
#[inline(always)]
pub(crate) unsafe fn add(p: *mut u64, n: u64) {
    // SAFETY: the caller's promise; the value's u64 fields are 8-aligned
    // (map values are).
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
}

/// Reads a counter that other CPUs may be adding to: one aligned
/// 8-byte load (one BPF instruction, not torn; the BPF backend has no
/// atomic load to select for cpu v1-v3).
///
/// # Safety
/// As [`add`].
#[inline(always)]
pub(crate) unsafe fn load(p: *mut u64) -> u64 {
    // SAFETY: the caller's promise, as for `add`.
    unsafe { core::ptr::read_volatile(p) }
}
