//! The globals the loader fills (kernel offsets, the selection) and the maps
//! shared by every program; how kernel memory is read.
use core::ptr::read_volatile;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use netflow_common::{
    AddrKey, Bucket, ConnCount, Filter, FlowKey, Offsets, PacketEvent, Track, RING_BYTES,
    TRACKED_ENTRIES,
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

/// The event being built, per CPU.
#[map]
pub(crate) static SCRATCH: PerCpuArray<PacketEvent> = PerCpuArray::with_max_entries(1, 0);

/// A packet's receive, as the device saw it before PREROUTING's DNAT made
/// it selected (see `netfilter::follow_translated`), per CPU.
#[map]
pub(crate) static PRE_NAT: PerCpuArray<PacketEvent> = PerCpuArray::with_max_entries(1, 0);

/// Selected addresses (IPv4 mapped into IPv6) -> ADDR_* bits.
#[map]
pub(crate) static SEL_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(4096, 0);

/// Selected networks (`--host` CIDRs) -> ADDR_* bits.
#[map]
pub(crate) static SEL_NETS: LpmTrie<AddrKey, u32> = LpmTrie::with_max_entries(1024, 0);

/// Selected network namespaces (inode numbers).
#[map]
pub(crate) static SEL_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// Connections of selected packets, keyed by their reply direction as
/// conntrack knows it after NAT: a reply to a translated packet is selected
/// wherever it is seen, before its translation is undone.
#[map]
pub(crate) static SEL_FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(16384, 0);

/// A flow key being built, per CPU (off the stack).
#[map]
pub(crate) static KEY_SCRATCH: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(1, 0);

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
    unsafe { read_volatile(p) }
}

/// How kernel memory is read. tp_btf programs get a BTF-typed `struct
/// sk_buff *`: the verifier checks plain loads against BTF and makes them
/// fault-safe, which costs a load instead of a helper call. tc and kprobe
/// programs hold an untyped pointer and use `bpf_probe_read_kernel`.
pub(crate) trait Mem {
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()>;
}

pub(crate) struct Btf;
pub(crate) struct Probe;

impl Mem for Btf {
    #[inline(always)]
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()> {
        Ok(core::ptr::read_volatile(base.add(off as usize) as *const T))
    }
}

impl Mem for Probe {
    /// Never fails: a read the kernel cannot do leaves zeros (the helper
    /// zeroes its destination on failure), as a missing field would read.
    /// No branch on the helper's result: each such branch doubled the
    /// paths the verifier walks after it (the kprobe on `nf_hook_slow`:
    /// 862k -> 260k instructions on 5.10.0-46, tc 402k -> 133k).
    #[inline(always)]
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()> {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            v.as_mut_ptr() as *mut core::ffi::c_void,
            core::mem::size_of::<T>() as u32,
            base.add(off as usize) as *const core::ffi::c_void,
        );
        Ok(v.assume_init())
    }
}
