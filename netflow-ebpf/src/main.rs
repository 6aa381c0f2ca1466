//! netflow kernel programs.
//!
//! One pair of `tp_btf` programs (`net:netif_receive_skb`, `net:net_dev_queue`)
//! sees a packet on every device of every network namespace. A packet that
//! matches the selection has its `struct sk_buff *` remembered in `TRACKED`, so
//! it stays selected after NAT and encapsulation change its headers; the
//! `skb:kfree_skb` / `skb:consume_skb` programs report its end and forget it.
//! Programs only read: they never change or drop the packets they observe.
#![no_std]
#![no_main]

mod parse;

use core::ptr::read_volatile;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel, generated},
    macros::{btf_tracepoint, classifier, kprobe, map},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, ProbeContext, TcContext},
};
use netflow_common::{
    filter_flags as ff, AddrKey, EventHeader, Filter, FlowKey, Offsets, PacketEvent, Point, Track,
    ADDR_HOST, ADDR_NETNS, CAPTURE_BYTES, EVENT_VERSION, MAX_PORTS, RING_BYTES, TRACKED_ENTRIES,
};

use crate::parse::Tuple;

#[no_mangle]
static OFFSETS: Offsets = Offsets {
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
    nf_state_net: 0,
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
    _pad2: 0,
};

#[no_mangle]
static FILTER: Filter = Filter::empty();

/// Bytes read to decide on an unselected packet (IPv4/IPv6 + ports); VXLAN
/// and IP-in-IP packets are read in full for their inner headers.
const FILTER_BYTES: u32 = 64;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Events the ring buffer could not take, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Selected packets: skb address -> when last seen and which packet it held.
#[map]
static TRACKED: LruHashMap<u64, Track> = LruHashMap::with_max_entries(TRACKED_ENTRIES, 0);

/// The event being built, per CPU.
#[map]
static SCRATCH: PerCpuArray<PacketEvent> = PerCpuArray::with_max_entries(1, 0);

/// Selected addresses (IPv4 mapped into IPv6) -> ADDR_* bits.
#[map]
static SEL_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(4096, 0);

/// Selected networks (`--host` CIDRs) -> ADDR_* bits.
#[map]
static SEL_NETS: LpmTrie<AddrKey, u32> = LpmTrie::with_max_entries(1024, 0);

/// Selected network namespaces (inode numbers).
#[map]
static SEL_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// Connections of selected packets, keyed by their reply direction as
/// conntrack knows it after NAT: a reply to a translated packet is selected
/// wherever it is seen, before its translation is undone.
#[map]
static SEL_FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(16384, 0);

/// SEL_FLOWS has entries (spares the lookup until then).
#[map]
static FLOWS_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// `--iface`: (netns inode << 32 | ifindex) of the devices we look at.
#[map]
static SEL_IFACES: HashMap<u64, u8> = HashMap::with_max_entries(256, 0);

/// The globals are read field by field with volatile loads: the compiler
/// must not fold their (link-time zero) values, and copying the whole
/// structs would cost stack the verifier limits to 512 bytes.
#[inline(always)]
fn offsets() -> &'static Offsets {
    &OFFSETS
}

#[inline(always)]
fn filter() -> &'static Filter {
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
trait Mem {
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()>;
}

struct Btf;
struct Probe;

impl Mem for Btf {
    #[inline(always)]
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()> {
        Ok(core::ptr::read_volatile(base.add(off as usize) as *const T))
    }
}

impl Mem for Probe {
    #[inline(always)]
    unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, ()> {
        bpf_probe_read_kernel(base.add(off as usize) as *const T).map_err(|_| ())
    }
}

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netflow_rx(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let _ = on_device::<Btf>(skb, Point::Rx);
    0
}

#[btf_tracepoint(function = "net_dev_queue")]
pub fn netflow_tx(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let _ = on_device::<Btf>(skb, Point::Tx);
    0
}

/// tc programs (TCX or clsact) on chosen devices. The context pointer is the
/// kernel's `struct sk_buff *`, so these hops join the same timeline. They
/// always return TC_ACT_UNSPEC (TCX_NEXT): whatever else is attached decides.
#[classifier]
pub fn netflow_tc_ingress(ctx: TcContext) -> i32 {
    let _ = on_device::<Probe>(ctx.skb.skb as *const u8, Point::TcIngress);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn netflow_tc_egress(ctx: TcContext) -> i32 {
    let _ = on_device::<Probe>(ctx.skb.skb as *const u8, Point::TcEgress);
    TC_ACT_UNSPEC
}

/// `TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`
/// (the argument order is checked against BTF by the loader).
#[btf_tracepoint(function = "kfree_skb")]
pub fn netflow_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let _ = on_drop::<Btf>(skb, location, reason);
    0
}

/// `TP_PROTO(struct sk_buff *skb, void *location)`.
#[btf_tracepoint(function = "consume_skb")]
pub fn netflow_consume_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let key = skb as u64;
    if unsafe { TRACKED.get(key) }.is_none() {
        return 0;
    }
    let _ = TRACKED.remove(key);
    emit_end(skb, Point::Consume, location);
    0
}

/// `TP_PROTO(const struct sk_buff *skb, int len)`: a socket's reader copies
/// the packet's data to user space (TCP, UDP, raw and ping sockets). Many
/// packets are freed without a tracepoint afterwards, so this is what says
/// "delivered", and it ends the packet's timeline.
#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn netflow_deliver(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    if unsafe { TRACKED.get(skb as u64) }.is_some() {
        // Delivered: the journey ends here (later reads of it are not news).
        let _ = TRACKED.remove(skb as u64);
        emit_end(skb, Point::Deliver, 0);
    }
    0
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb)`: an
/// established TCP socket processes the segment (pure ACKs included, which
/// TCP frees without a tracepoint).
#[btf_tracepoint(function = "tcp_probe")]
pub fn netflow_tcp_rcv(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(1);
    if unsafe { TRACKED.get(skb as u64) }.is_some() {
        let _ = TRACKED.remove(skb as u64);
        emit_end(skb, Point::Deliver, 0);
    }
    0
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb, int err)`:
/// a retransmission. The skb sits in the retransmit queue without IP
/// headers, so the event's headers are built from the socket.
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn netflow_tcp_retransmit(ctx: BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    let _ = on_sock(sk, Point::TcpRetransmit);
    0
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb, ...)`: a RST
/// goes out, in reply to `skb` (e.g. a SYN to a closed port: no socket), or
/// from the socket `sk`.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn netflow_tcp_reset(ctx: BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    if !skb.is_null() {
        let o = offsets();
        let dev = device::<Btf>(skb, o);
        let _ = on_hop::<Btf>(skb, Point::TcpReset, o, &dev, 0, 0);
    } else if !sk.is_null() {
        let _ = on_sock(sk, Point::TcpReset);
    }
    0
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// A TCP event known by its socket: IPv4/IPv6 + TCP headers are written
/// from the socket's addresses and ports, so selection and decoding work as
/// for packets. The TCP state goes in `reason`.
#[inline(always)]
fn on_sock(sk: *const u8, point: Point) -> Result<(), ()> {
    let f = filter();
    let o = offsets();
    let family: u16 = unsafe { Btf::read(sk, v(&o.sk_family))? };
    let ev = scratch()?;
    let d = &mut ev.data;
    let l4 = match family {
        AF_INET => {
            let src: [u8; 4] = unsafe { Btf::read(sk, v(&o.sk_rcv_saddr))? };
            let dst: [u8; 4] = unsafe { Btf::read(sk, v(&o.sk_daddr))? };
            *d = [0; CAPTURE_BYTES];
            d[0] = 0x45;
            d[3] = 40;
            d[8] = 64;
            d[9] = 6;
            d[12..16].copy_from_slice(&src);
            d[16..20].copy_from_slice(&dst);
            ev.hdr.l3_proto = 0x0800;
            20
        }
        AF_INET6 => {
            let src: [u8; 16] = unsafe { Btf::read(sk, v(&o.sk_v6_rcv_saddr))? };
            let dst: [u8; 16] = unsafe { Btf::read(sk, v(&o.sk_v6_daddr))? };
            *d = [0; CAPTURE_BYTES];
            d[0] = 0x60;
            d[5] = 20;
            d[6] = 6;
            d[7] = 64;
            d[8..24].copy_from_slice(&src);
            d[24..40].copy_from_slice(&dst);
            ev.hdr.l3_proto = 0x86dd;
            40
        }
        _ => return Ok(()),
    };
    let sport: u16 = unsafe { Btf::read(sk, v(&o.sk_num))? };
    let dport: u16 = unsafe { Btf::read(sk, v(&o.sk_dport))? };
    d[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    d[l4 + 2..l4 + 4].copy_from_slice(&dport.to_ne_bytes());
    d[l4 + 12] = 0x50;
    ev.hdr.cap_len = (l4 + 20) as u16;
    ev.hdr.len = (l4 + 20) as u32;
    let netns: u32 = match unsafe { Btf::read::<*const u8>(sk, v(&o.sk_net)) } {
        Ok(net) => unsafe { Btf::read(net, v(&o.net_inum)) }.unwrap_or(0),
        Err(()) => 0,
    };
    let netns_hit = v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(netns) }.is_some();
    if !selected(ev, f, netns_hit) {
        return Ok(());
    }
    let state: u8 = unsafe { Btf::read(sk, v(&o.sk_state)) }.unwrap_or(0);
    let h = &mut ev.hdr;
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    // No skb: these events describe the socket, not one packet.
    h.skb = 0;
    h.location = 0;
    h.netns = netns;
    h.ifindex = 0;
    h.mark = 0;
    h.reason = state as u32;
    h.point = point as u8;
    h.version = EVENT_VERSION;
    h.hook = 0;
    h.pf = 0;
    zero16(&mut h.ifname);
    output(ev);
    Ok(())
}

/// BPF netfilter programs (BPF_PROG_TYPE_NETFILTER). aya-obj accepts no
/// netfilter section, so they live in `classifier` sections and netflow's
/// own loader (netflow-user/src/netfilter.rs) loads and links them; aya never
/// loads them as tc programs. The context is `struct bpf_nf_ctx { const
/// struct nf_hook_state *state; struct sk_buff *skb; }`. They always return
/// NF_ACCEPT (1): the verdict is the kernel's, seen as presence or absence
/// of the packet at the late priority.
#[classifier]
pub fn netflow_nf_early(ctx: TcContext) -> i32 {
    on_netfilter(ctx.skb.skb as *const u8, Point::NfEarly);
    NF_ACCEPT
}

#[classifier]
pub fn netflow_nf_late(ctx: TcContext) -> i32 {
    on_netfilter(ctx.skb.skb as *const u8, Point::NfLate);
    NF_ACCEPT
}

const NF_ACCEPT: i32 = 1;
const NF_INET_PRE_ROUTING: u8 = 0;
const NF_INET_LOCAL_IN: u8 = 1;
const NF_INET_FORWARD: u8 = 2;

#[inline(always)]
fn on_netfilter(ctx: *const u8, point: Point) {
    // Direct context loads: the verifier types them as BTF pointers.
    let state: *const u8 = unsafe { core::ptr::read_volatile(ctx as *const *const u8) };
    let skb: *const u8 = unsafe { core::ptr::read_volatile((ctx as *const *const u8).add(1)) };
    let o = offsets();
    let hook: u8 = unsafe { Btf::read(state, 0) }.unwrap_or(0);
    let pf: u8 = unsafe { Btf::read(state, 1) }.unwrap_or(0);
    // The device the packet came in on (PREROUTING, INPUT, FORWARD) or goes out of.
    let dev_off = match hook {
        NF_INET_PRE_ROUTING | NF_INET_LOCAL_IN | NF_INET_FORWARD => v(&o.nf_state_in),
        _ => v(&o.nf_state_out),
    };
    let ptr: *const u8 = unsafe { Btf::read(state, dev_off) }.unwrap_or(core::ptr::null());
    let dev = dev_at::<Btf>(ptr, o);
    let _ = on_hop::<Btf>(skb, point, o, &dev, hook, pf);
}

/// `nft_do_chain(struct nft_pktinfo *pkt, void *priv)`, `priv` being the
/// chain: for a tracked packet, which nftables table and chain (and hook)
/// evaluate it. An upgrade for kernels with kprobes; loaded (verifier-
/// checked) everywhere.
#[kprobe]
pub fn netflow_kprobe_nft_do_chain(ctx: ProbeContext) -> u32 {
    let pkt: *const u8 = ctx.arg(0).unwrap_or_default();
    let chain: *const u8 = ctx.arg(1).unwrap_or_default();
    let _ = on_nft_chain(pkt, chain);
    0
}

#[inline(always)]
fn on_nft_chain(pkt: *const u8, chain: *const u8) -> Result<(), ()> {
    let o = offsets();
    if pkt.is_null() || chain.is_null() || v(&o.nft_chain_name) == 0 {
        return Ok(());
    }
    let skb: *const u8 = unsafe { Probe::read(pkt, v(&o.nft_pkt_skb))? };
    if unsafe { TRACKED.get(skb as u64) }.is_none() {
        return Ok(());
    }
    let state: *const u8 = unsafe { Probe::read(pkt, v(&o.nft_pkt_state))? };
    let hook: u8 = unsafe { Probe::read(state, 0) }.unwrap_or(0);
    let pf: u8 = unsafe { Probe::read(state, 1) }.unwrap_or(0);
    let ev = scratch()?;
    let chain_name: *const u8 = unsafe { Probe::read(chain, v(&o.nft_chain_name))? };
    let table: *const u8 = unsafe { Probe::read(chain, v(&o.nft_chain_table))? };
    let table_name: *const u8 = unsafe { Probe::read(table, v(&o.nft_table_name))? };
    let (t, c) = ev.data.split_at_mut(CAPTURE_BYTES / 2);
    unsafe {
        let _ = aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(table_name, t);
        let _ = aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(chain_name, c);
    }
    let dev = Dev {
        ptr: core::ptr::null(),
        ifindex: 0,
        netns: 0,
    };
    fill_meta::<Probe>(ev, skb, o, &dev, Point::NftChain, unsafe {
        bpf_ktime_get_ns()
    });
    ev.hdr.hook = hook;
    ev.hdr.pf = pf;
    ev.hdr.l3_proto = 0;
    ev.hdr.len = 0;
    ev.hdr.cap_len = CAPTURE_BYTES as u16;
    output(ev);
    Ok(())
}

/// Same drop report through a kprobe on `sk_skb_reason_drop(sk, skb, reason)`,
/// for kernels that offer kprobes but whose tracepoint layout is unknown.
/// Loaded (verifier-checked) everywhere; attached only where kprobes exist.
#[kprobe]
pub fn netflow_kprobe_kfree_skb_reason(ctx: ProbeContext) -> u32 {
    let skb: *const u8 = ctx.arg(1).unwrap_or_default();
    let reason: u32 = ctx.arg(2).unwrap_or(0);
    if !skb.is_null() {
        let _ = on_drop::<Probe>(skb, 0, reason);
    }
    0
}

#[inline(always)]
fn on_drop<M: Mem>(skb: *const u8, location: u64, reason: u32) -> Result<(), ()> {
    let f = filter();
    if reason == 0 || reason == v(&f.reason_consumed) {
        return Ok(());
    }
    let o = offsets();
    let key = skb as u64;
    let dev = device::<M>(skb, o);
    let ev = scratch()?;
    read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
    let tracked = match unsafe { TRACKED.get(key) } {
        Some(t) => {
            let _ = TRACKED.remove(key);
            t.fp == parse::fingerprint(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f)
        }
        None => false,
    };
    if !tracked {
        // Not seen before: report it when its headers match the selection.
        let netns_hit =
            v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(dev.netns) }.is_some();
        if !selected(ev, f, netns_hit) {
            return Ok(());
        }
    }
    fill_meta::<M>(ev, skb, o, &dev, Point::Drop, unsafe { bpf_ktime_get_ns() });
    ev.hdr.location = location;
    ev.hdr.reason = reason;
    output(ev);
    Ok(())
}

/// The device an skb is on: pointer, ifindex, netns inode (zeros if none).
struct Dev {
    ptr: *const u8,
    ifindex: u32,
    netns: u32,
}

#[inline(always)]
fn device<M: Mem>(skb: *const u8, o: &Offsets) -> Dev {
    let ptr: *const u8 = unsafe { M::read(skb, v(&o.skb_dev)) }.unwrap_or(core::ptr::null());
    dev_at::<M>(ptr, o)
}

#[inline(always)]
fn dev_at<M: Mem>(ptr: *const u8, o: &Offsets) -> Dev {
    if ptr.is_null() {
        return Dev {
            ptr,
            ifindex: 0,
            netns: 0,
        };
    }
    let ifindex = unsafe { M::read(ptr, v(&o.dev_ifindex)) }.unwrap_or(0);
    let netns = match unsafe { M::read::<*const u8>(ptr, v(&o.dev_nd_net)) } {
        Ok(net) => unsafe { M::read(net, v(&o.net_inum)) }.unwrap_or(0),
        Err(()) => 0,
    };
    Dev {
        ptr,
        ifindex,
        netns,
    }
}

/// rx, tx and tc: report a tracked packet; select (and track) a new one.
///
/// An skb can be freed without any tracepoint (TCP, GRO) and its memory
/// reused for another packet, so a tracked skb counts as the same packet only
/// while its fingerprint (innermost IPv4 ID and TCP seq / UDP length+checksum
/// / ICMP id+seq) is unchanged; NAT and encapsulation leave it unchanged.
#[inline(always)]
fn on_device<M: Mem>(skb: *const u8, point: Point) -> Result<(), ()> {
    let o = offsets();
    let dev = device::<M>(skb, o);
    on_hop::<M>(skb, point, o, &dev, 0, 0)
}

/// A hop at a device (or a netfilter hook with its device): the common path.
#[inline(always)]
fn on_hop<M: Mem>(
    skb: *const u8,
    point: Point,
    o: &Offsets,
    dev: &Dev,
    hook: u8,
    pf: u8,
) -> Result<(), ()> {
    let f = filter();
    if dev.ptr.is_null() {
        return Ok(());
    }
    if v(&f.flags) & ff::IFACE != 0 {
        let k = ((dev.netns as u64) << 32) | dev.ifindex as u64;
        if unsafe { SEL_IFACES.get(k) }.is_none() {
            return Ok(());
        }
    } else if dev.ifindex == 1 {
        // Loopback: never part of a packet's path across the node.
        return Ok(());
    }

    let key = skb as u64;
    let all = v(&f.flags) & ff::ALL != 0;
    let slot = TRACKED.get_ptr_mut(key);
    let ev = scratch()?;
    let fp_of = |ev: &PacketEvent| {
        parse::fingerprint(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f)
    };
    let mut fp = 0;
    let mut now = 0;
    let tracked = match slot {
        Some(t) => {
            read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
            fp = fp_of(ev);
            now = unsafe { bpf_ktime_get_ns() };
            unsafe { (*t).fp == fp && now.wrapping_sub((*t).ts) < v(&f.stale_ns) }
        }
        None => {
            // Most packets are not selected: read just the headers first
            // (everything when everything is selected).
            let first = if all {
                CAPTURE_BYTES as u32
            } else {
                FILTER_BYTES
            };
            read_packet::<M>(skb, o, ev, first)?;
            false
        }
    };
    let mut full = slot.is_some() || all;
    if !tracked {
        if !full && parse::has_inner(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f) {
            read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
            full = true;
        }
        let netns_hit =
            v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(dev.netns) }.is_some();
        if !selected(ev, f, netns_hit) {
            if slot.is_some() {
                // A different packet in a reused skb: forget the old one.
                let _ = TRACKED.remove(key);
            }
            return Ok(());
        }
        if slot.is_none() {
            // Selected: the event carries the full capture.
            if !full {
                read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
            }
            fp = fp_of(ev);
            now = unsafe { bpf_ktime_get_ns() };
        }
    }
    let track = Track { ts: now, fp };
    match slot {
        Some(t) => unsafe { *t = track },
        None => {
            let _ = TRACKED.insert(key, track, 0);
        }
    }
    if point == Point::NfLate {
        remember_reply(skb, o);
    }
    fill_meta::<M>(ev, skb, o, dev, point, now);
    ev.hdr.hook = hook;
    ev.hdr.pf = pf;
    output(ev);
    Ok(())
}

#[inline(always)]
fn scratch() -> Result<&'static mut PacketEvent, ()> {
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p }).ok_or(())
}

/// End of a tracked packet (consumed, or delivered to a socket): header only.
#[inline(always)]
fn emit_end(skb: *const u8, point: Point, location: u64) {
    let Some(mut entry) = EVENTS.reserve::<EventHeader>(0) else {
        count_lost();
        return;
    };
    let h = unsafe { &mut *entry.as_mut_ptr() };
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.skb = skb as u64;
    h.location = location;
    h.netns = 0;
    h.ifindex = 0;
    h.len = 0;
    h.mark = 0;
    h.reason = 0;
    h.l3_proto = 0;
    h.cap_len = 0;
    h.point = point as u8;
    h.version = EVENT_VERSION;
    h.hook = 0;
    h.pf = 0;
    zero16(&mut h.ifname);
    entry.submit(wake_flags());
}

/// Word-sized stores (a byte-array zeroing becomes a memset the verifier rejects).
#[inline(always)]
fn zero16(b: &mut [u8; 16]) {
    let p = b.as_mut_ptr() as *mut u64;
    unsafe {
        core::ptr::write_volatile(p, 0);
        core::ptr::write_volatile(p.add(1), 0);
    }
}

/// Everything but the packet bytes.
#[inline(always)]
fn fill_meta<M: Mem>(
    ev: &mut PacketEvent,
    skb: *const u8,
    o: &Offsets,
    dev: &Dev,
    point: Point,
    now: u64,
) {
    let h = &mut ev.hdr;
    h.ts_ns = now;
    h.skb = skb as u64;
    h.location = 0;
    h.reason = 0;
    h.point = point as u8;
    h.version = EVENT_VERSION;
    h.hook = 0;
    h.pf = 0;
    h.mark = unsafe { M::read(skb, v(&o.skb_mark)) }.unwrap_or(0);
    h.ifindex = dev.ifindex;
    h.netns = dev.netns;
    if dev.ptr.is_null() {
        zero16(&mut h.ifname);
    } else if let Ok(name) = unsafe { M::read::<[u8; 16]>(dev.ptr, v(&o.dev_name)) } {
        h.ifname = name;
    } else {
        zero16(&mut h.ifname);
    }
}

/// Length, ethertype and the bytes from the network header to the end of
/// the linear buffer. On 64-bit kernels `tail` is an offset from `head`, like
/// `network_header`, so no pointer arithmetic on `data` is needed (the header
/// may lie before `data` once the stack pulled it).
#[inline(always)]
fn read_packet<M: Mem>(
    skb: *const u8,
    o: &Offsets,
    ev: &mut PacketEvent,
    max: u32,
) -> Result<(), ()> {
    let h = &mut ev.hdr;
    h.cap_len = 0;
    h.len = unsafe { M::read(skb, v(&o.skb_len))? };
    let proto: u16 = unsafe { M::read(skb, v(&o.skb_protocol))? };
    h.l3_proto = u16::from_be(proto);
    let nh: u16 = unsafe { M::read(skb, v(&o.skb_network_header))? };
    let tail: u32 = unsafe { M::read(skb, v(&o.skb_tail))? };
    if nh == 0xffff || tail <= nh as u32 {
        return Ok(());
    }
    let avail = tail - nh as u32;
    let n = if avail > max { max } else { avail };
    let n = if n > CAPTURE_BYTES as u32 {
        CAPTURE_BYTES as u32
    } else {
        n
    };
    let head: *const u8 = unsafe { M::read(skb, v(&o.skb_head))? };
    let r = unsafe {
        generated::bpf_probe_read_kernel(
            ev.data.as_mut_ptr() as *mut _,
            n,
            head.add(nh as usize) as *const core::ffi::c_void,
        )
    };
    if r == 0 {
        ev.hdr.cap_len = n as u16;
    }
    Ok(())
}

/// Does the packet (outer or, when encapsulated, inner headers) match?
#[inline(always)]
fn selected(ev: &PacketEvent, f: &Filter, netns_hit: bool) -> bool {
    if v(&f.flags) & ff::ALL != 0 {
        return true;
    }
    let cap = ev.hdr.cap_len as usize;
    let Some(outer) = parse::outer(&ev.data, cap, ev.hdr.l3_proto) else {
        return false;
    };
    if matches(&ev.data, &outer, f, netns_hit) || reply_of_selected(&ev.data, &outer) {
        return true;
    }
    match parse::inner(&ev.data, cap, &outer, f) {
        Some(t) => matches(&ev.data, &t, f, netns_hit) || reply_of_selected(&ev.data, &t),
        None => false,
    }
}

/// Is this packet the reply direction of a selected, translated connection?
#[inline(always)]
fn reply_of_selected(buf: &[u8; CAPTURE_BYTES], t: &Tuple) -> bool {
    match FLOWS_ACTIVE.get(0) {
        Some(n) if *n != 0 => {}
        _ => return false,
    }
    let mut k = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        sport: t.flow_sport,
        dport: t.flow_dport,
        proto: t.proto,
        _pad: [0; 3],
    };
    parse::copy_addr(buf, t.addr, t.addr_len, &mut k.src);
    parse::copy_addr(buf, t.addr + t.addr_len, t.addr_len, &mut k.dst);
    unsafe { SEL_FLOWS.get(&k) }.is_some()
}

/// A selected packet after the hook's NAT: remember the reply direction of
/// its connection (conntrack's reply tuple, translated addresses included).
#[inline(always)]
fn remember_reply(skb: *const u8, o: &Offsets) {
    let Ok(nfct) = (unsafe { Btf::read::<u64>(skb, v(&o.skb_nfct)) }) else {
        return;
    };
    let ct = (nfct & !7) as *const u8;
    if ct.is_null() {
        return;
    }
    let tuple = unsafe { ct.add(v(&o.ct_reply_tuple) as usize) };
    let rd = |off: u32| -> Result<[u8; 16], ()> { unsafe { Probe::read(tuple, off) } };
    let (Ok(src), Ok(dst)) = (rd(v(&o.tuple_src_addr)), rd(v(&o.tuple_dst_addr))) else {
        return;
    };
    let l3num: u16 = unsafe { Probe::read(tuple, v(&o.tuple_l3num)) }.unwrap_or(0);
    let proto: u8 = unsafe { Probe::read(tuple, v(&o.tuple_proto)) }.unwrap_or(0);
    let sport: u16 = unsafe { Probe::read(tuple, v(&o.tuple_src_port)) }.unwrap_or(0);
    let dport: u16 = unsafe { Probe::read(tuple, v(&o.tuple_dst_port)) }.unwrap_or(0);
    let mut k = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        sport: u16::from_be(sport),
        // ICMP: the destination side holds type/code, not a port.
        dport: if proto == 1 || proto == 58 {
            0
        } else {
            u16::from_be(dport)
        },
        proto,
        _pad: [0; 3],
    };
    if l3num == AF_INET {
        k.src[10] = 0xff;
        k.src[11] = 0xff;
        k.dst[10] = 0xff;
        k.dst[11] = 0xff;
        k.src[12..16].copy_from_slice(&src[..4]);
        k.dst[12..16].copy_from_slice(&dst[..4]);
    } else {
        k.src = src;
        k.dst = dst;
    }
    let _ = SEL_FLOWS.insert(&k, 1, 0);
    if let Some(n) = FLOWS_ACTIVE.get_ptr_mut(0) {
        unsafe { *n = 1 };
    }
}

#[inline(always)]
fn matches(buf: &[u8; CAPTURE_BYTES], t: &Tuple, f: &Filter, netns_hit: bool) -> bool {
    if v(&f.flags) & ff::PROTO != 0 && t.proto != v(&f.proto) {
        return false;
    }
    if v(&f.flags) & ff::PORT != 0 {
        let mut hit = false;
        let mut i = 0;
        while i < MAX_PORTS {
            if i < v(&f.n_ports) as usize {
                let p = v(&f.ports[i]);
                if t.has_ports && (p == t.sport || p == t.dport) {
                    hit = true;
                }
            }
            i += 1;
        }
        if !hit {
            return false;
        }
    }
    if v(&f.flags) & (ff::HOST | ff::NETNS) != 0 {
        let bits = addr_bits(buf, t.addr, t.addr_len, f)
            | addr_bits(buf, t.addr + t.addr_len, t.addr_len, f);
        if v(&f.flags) & ff::HOST != 0 && bits & ADDR_HOST == 0 {
            return false;
        }
        if v(&f.flags) & ff::NETNS != 0 && !netns_hit && bits & ADDR_NETNS == 0 {
            return false;
        }
    }
    true
}

#[inline(always)]
fn addr_bits(buf: &[u8; CAPTURE_BYTES], off: usize, len: usize, f: &Filter) -> u32 {
    let mut key = Key::new(128, AddrKey { addr: [0; 16] });
    parse::copy_addr(buf, off, len, &mut key.data.addr);
    let mut bits = unsafe { SEL_ADDRS.get(key.data) }.copied().unwrap_or(0);
    if v(&f.flags) & ff::NETS != 0 {
        bits |= SEL_NETS.get(&key).copied().unwrap_or(0);
    }
    bits
}

/// Wake the reader only when the ring is filling up; otherwise it polls.
#[inline(always)]
fn wake_flags() -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if avail > (RING_BYTES / 4) as u64 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn count_lost() {
    if let Some(c) = LOST.get_ptr_mut(0) {
        unsafe { *c += 1 };
    }
}

/// Copy a scratch-built event into the ring.
#[inline(always)]
fn output<T>(ev: &T) {
    if EVENTS.output::<T>(ev, wake_flags()).is_err() {
        count_lost();
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
