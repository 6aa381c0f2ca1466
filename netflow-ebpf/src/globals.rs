//! The globals the loader fills (kernel offsets, the selection) and the maps
//! shared by every program; how kernel memory is read.
use core::ptr::read_volatile;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use netflow_common::{
    AddrKey, Bucket, ConnCount, Filter, FlowKey, Offsets, PacketEvent, SockCounts, Track,
    RING_BYTES, TRACKED_ENTRIES,
};

#[no_mangle]
pub(crate) static OFFSETS: Offsets = Offsets {
    skb_len: 0,
    skb_head: 0,
    skb_tail: 0,
    skb_network_header: 0,
    skb_dev: 0,
    skb_protocol: 0,
    skb_mark: 0,
    dev_ifindex: 0,
    dev_name: 0,
    dev_nd_net: 0,
    net_inum: 0,
    nf_state_in: 0,
    nf_state_out: 0,
    sk_daddr: 0,
    sk_rcv_saddr: 0,
    sk_dport: 0,
    sk_num: 0,
    sk_family: 0,
    sk_state: 0,
    sk_net: 0,
    sk_v6_daddr: 0,
    sk_v6_rcv_saddr: 0,
    skb_nfct: 0,
    ct_reply_tuple: 0,
    tuple_src_addr: 0,
    tuple_src_port: 0,
    tuple_l3num: 0,
    tuple_dst_addr: 0,
    tuple_dst_port: 0,
    tuple_proto: 0,
    nft_pkt_skb: 0,
    nft_pkt_state: 0,
    nft_chain_name: 0,
    nft_chain_table: 0,
    nft_table_name: 0,
    skb_cloned_byte: 0,
    skb_cloned_mask: 0,
    nf_state_pf: 0,
    skb_refdst: 0,
    dst_dev: 0,
    dev_mtu: 0,
    flowi4_saddr: 0,
    flowi4_daddr: 0,
    nhc_dev: 0,
    nhc_gw_family: 0,
    nhc_gw: 0,
    flowi6_saddr: 0,
    flowi6_daddr: 0,
    fib6_res_nh: 0,
    fib6_res_type: 0,
    fib6_table_id: 0,
    ct_status: 0,
    sk_err: 0,
    sk_sport: 0,
};

#[no_mangle]
pub(crate) static FILTER: Filter = Filter::empty();

/// Bytes read to decide on an unselected packet (IPv4/IPv6 + ports); VXLAN
/// and IP-in-IP packets are read in full for their inner headers.
pub(crate) const FILTER_BYTES: u32 = 64;

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Events the ring buffer could not take, per CPU.
#[map]
pub(crate) static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Selected packets: skb address -> when last seen and which packet it held.
#[map]
pub(crate) static TRACKED: LruHashMap<u64, Track> =
    LruHashMap::with_max_entries(TRACKED_ENTRIES, 0);

/// The event being built, per CPU and nesting level (see `nest`).
#[map]
pub(crate) static SCRATCH: PerCpuArray<PacketEvent> =
    PerCpuArray::with_max_entries(netflow_common::NEST_DEPTH, 0);

/// A packet's receive, as the device saw it before PREROUTING's DNAT made
/// it selected (see `netfilter::follow_translated`), per CPU and nesting
/// level.
#[map]
pub(crate) static PRE_NAT: PerCpuArray<PacketEvent> =
    PerCpuArray::with_max_entries(netflow_common::NEST_DEPTH, 0);

/// Selected addresses (IPv4 mapped into IPv6) -> ADDR_* bits.
#[map]
pub(crate) static SEL_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(4096, 0);

/// Selected networks (`--host` CIDRs) -> ADDR_* bits.
#[map]
pub(crate) static SEL_NETS: LpmTrie<AddrKey, u32> = LpmTrie::with_max_entries(1024, 0);

/// Selected network namespaces (inode numbers).
#[map]
pub(crate) static SEL_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// TCP state changes per network namespace (see `sock::on_state`): a few
/// thousand namespaces at most on a node; the least recent go first.
#[map]
pub(crate) static SOCK_COUNTS: LruPerCpuHashMap<u32, SockCounts> =
    LruPerCpuHashMap::with_max_entries(8192, 0);

/// Connections of selected packets, keyed by their reply direction as
/// conntrack knows it after NAT: a reply to a translated packet is selected
/// wherever it is seen, before its translation is undone.
#[map]
pub(crate) static SEL_FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(16384, 0);

/// A flow key being built, per CPU and nesting level (off the stack).
#[map]
pub(crate) static KEY_SCRATCH: PerCpuArray<FlowKey> =
    PerCpuArray::with_max_entries(netflow_common::NEST_DEPTH, 0);

/// SEL_FLOWS has entries (spares the lookup until then).
#[map]
pub(crate) static FLOWS_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Guardrails: connections of selected packets -> packets given full
/// detail, and those only counted (see `guard`).
#[map]
pub(crate) static CONNS: LruHashMap<FlowKey, ConnCount> = LruHashMap::with_max_entries(65536, 0);

/// Guardrails: the full-detail token bucket, per CPU.
/// Never written: the zeroed value a new CONNS entry starts from (the
/// programs' stacks have no room for one).
#[map]
pub(crate) static CONN_ZERO: Array<ConnCount> = Array::with_max_entries(1, 0);

#[map]
pub(crate) static BUCKET: PerCpuArray<Bucket> = PerCpuArray::with_max_entries(1, 0);

/// Guardrails: selected packets only counted, per CPU.
#[map]
pub(crate) static SAMPLED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Non-zero once any packet was tracked: until then the programs where
/// packets end (consumed, taken by a socket) have nothing to look up.
#[map]
pub(crate) static TRACKING: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
pub(crate) fn tracking() -> bool {
    matches!(TRACKING.get(0), Some(n) if *n != 0)
}

#[inline(always)]
pub(crate) fn set_tracking() {
    if let Some(n) = TRACKING.get_ptr_mut(0) {
        // SAFETY: `n` is TRACKING's one value (an Array: one u32 shared by all
        // CPUs, allocated with the map, aligned). Other CPUs may store the same
        // 1, or read it (`tracking`), at the same time: a plain aligned 32-bit
        // store, one BPF instruction that is never torn, though not an atomic
        // in Rust's model.
        unsafe { *n = 1 };
    }
}

/// `--iface`: (netns inode << 32 | ifindex) of the devices we look at.
#[map]
pub(crate) static SEL_IFACES: HashMap<u64, u8> = HashMap::with_max_entries(256, 0);

/// The globals are read field by field with volatile loads: the compiler
/// must not fold their (link-time zero) values, and copying the whole
/// structs would cost stack the verifier limits to 512 bytes.
#[inline(always)]
pub(crate) fn offsets() -> &'static Offsets {
    &OFFSETS
}

#[inline(always)]
pub(crate) fn filter() -> &'static Filter {
    &FILTER
}

/// Volatile read of a global's field.
#[inline(always)]
pub(crate) fn v<T: Copy>(p: &T) -> T {
    // SAFETY: `p` is a reference: non-null, aligned and valid for reads of an
    // initialized `T`. Volatile only so that the compiler neither folds the
    // loader-filled globals nor copies whole structs.
    unsafe { read_volatile(p) }
}

/// How kernel memory is read. tp_btf programs get a BTF-typed `struct
/// sk_buff *`: the verifier checks plain loads against BTF and makes them
/// fault-safe, which costs a load instead of a helper call. tc and kprobe
/// programs hold an untyped pointer and use `bpf_probe_read_kernel`.
pub(crate) trait Mem {
    /// Reads a `T` at `base + off` in kernel memory.
    ///
    /// # Safety
    /// - `T` is plain data valid for any bit pattern (integers, byte arrays,
    ///   raw pointers): what is read is whatever the kernel holds (or zeros).
    /// - `off` is the offset of a field of the kernel object `base` points to
    ///   (the loader's BTF offsets), whose bytes are read as the `T`, so that
    ///   `base.add(off)` stays inside that object. `base` may be null only if
    ///   `off` is 0: `add` on null with another offset is outside any object.
    /// - Each implementation adds its own conditions below.
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()>;
}

pub(crate) struct Btf;
pub(crate) struct Probe;

impl Mem for Btf {
    /// # Safety
    /// As [`Mem::read`], and:
    /// - `base` is a pointer the verifier types by BTF (a tp_btf or
    ///   fentry/fexit argument, a BPF netfilter context field, or a pointer
    ///   loaded through one of these), to an object the kernel keeps alive
    ///   while the program runs. The verifier checks the load against the
    ///   field's BTF type and makes it fault-safe (a bad address reads zero
    ///   instead of faulting); with any other pointer it rejects the
    ///   program, so no unchecked load can run.
    /// - `base + off` is aligned for `T` (kernel fields are naturally
    ///   aligned; see `route::on_fib6_lookup` for a `[u64; 2]` read).
    #[inline(always)]
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()> {
        // Sound by the caller's promise: `base.add(off)` is a field inside the
        // object `base` points to, aligned for `T`, and `base` is a BTF
        // pointer, so the verifier checked this load against the field and
        // made it fault-safe.
        Ok(core::ptr::read_volatile(base.add(off as usize) as *const T))
    }
}

impl Mem for Probe {
    /// Never fails: a read the kernel cannot do leaves zeros (the helper
    /// zeroes its destination on failure), as a missing field would read.
    /// No branch on the helper's result: each such branch doubled the
    /// paths the verifier walks after it (the kprobe on `nf_hook_slow`:
    /// 862k -> 260k instructions on 5.10.0-46, tc 402k -> 133k).
    ///
    /// # Safety
    /// As [`Mem::read`]. `base` need not be valid, live or aligned:
    /// `bpf_probe_read_kernel` checks the address, and copies from it or
    /// zeroes the destination.
    #[inline(always)]
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()> {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        // The destination is `v`, size_of::<T>() writable bytes on this
        // program's stack; the source is only an address to the helper, which
        // checks it (`base.add(off)` stays in `base`'s object: the caller's
        // promise).
        let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            v.as_mut_ptr() as *mut core::ffi::c_void,
            core::mem::size_of::<T>() as u32,
            base.add(off as usize) as *const core::ffi::c_void,
        );
        // Initialized: the helper wrote all size_of::<T>() bytes of `v`, the
        // kernel's or, on a fault, zeros; any bytes are a valid `T` (the
        // caller's promise).
        Ok(v.assume_init())
    }
}
