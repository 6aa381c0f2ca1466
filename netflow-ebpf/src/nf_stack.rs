//! The arguments of `nf_hook_slow` from its kprobe to its kretprobe (which
//! only sees the return value): a small stack per task, since hooks nest (a
//! bridge hook runs the IPv4 hooks; a REJECT target sends its answer through
//! OUTPUT from inside INPUT or FORWARD).
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::LruHashMap};
use netflow_common::NfStack;

#[map]
static NF_STACK: LruHashMap<u64, NfStack> = LruHashMap::with_max_entries(4096, 0);

const DEPTH: u32 = 4;

/// A new task's empty stack, inserted from read-only data (a value built on
/// the stack would push the kprobe past the 512 bytes older verifiers allow).
static EMPTY: NfStack = NfStack {
    depth: 0,
    _pad: 0,
    skb: [0; 4],
    state: [0; 4],
};

#[inline(always)]
pub(crate) fn push(skb: *const u8, state: *const u8) {
    let key = bpf_get_current_pid_tgid();
    if NF_STACK.get_ptr_mut(&key).is_none() {
        let _ = NF_STACK.insert(&key, &EMPTY, 0);
    }
    let Some(s) = NF_STACK.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: `s` is this task's NF_STACK value from the lookup just above:
    // preallocated map memory, 8-aligned for the NfStack, valid while the
    // program runs. Only this task's nf_hook_slow kprobe and kretprobe use its
    // key (a thread's pid_tgid), and kprobe programs do not nest on a CPU (the
    // kernel's bpf_prog_active skips a nested one). Entries stay after their
    // task's hooks return, so the map fills up (4096) and the LRU evicts: should
    // it pick this entry while in use, another CPU could hand the element to
    // another task meanwhile, and both would write one NfStack, popping wrong
    // skb/state values (only ever read through the probe helper), never invalid
    // memory.
    let s = unsafe { &mut *s };
    let d = s.depth;
    if d < DEPTH {
        let i = (d & (DEPTH - 1)) as usize;
        s.skb[i] = skb as u64;
        s.state[i] = state as u64;
    }
    // Past the depth only the count moves: those returns report nothing.
    s.depth = d.saturating_add(1);
}

#[inline(always)]
pub(crate) fn pop() -> Option<(*const u8, *const u8)> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: as in `push`: this task's NF_STACK value, from the lookup in this
    // statement.
    let s = unsafe { &mut *NF_STACK.get_ptr_mut(&key)? };
    if s.depth == 0 {
        return None;
    }
    s.depth -= 1;
    let d = s.depth;
    if d >= DEPTH {
        return None;
    }
    let i = (d & (DEPTH - 1)) as usize;
    Some((s.skb[i] as *const u8, s.state[i] as *const u8))
}
