//! Netfilter: the hop at a hook (BPF netfilter programs), conntrack's reply
//! tuple of selected packets, and nftables chain names (kprobe upgrade).
use aya_ebpf::helpers::bpf_ktime_get_ns;
use netflow_common::{track_flags, Point, CAPTURE_BYTES};

use crate::{
    emit::output,
    globals::*,
    hop::on_hop,
    skb::{dev_at, fill_meta, scratch, Dev},
};

pub(crate) const NF_ACCEPT: i32 = 1;
pub(crate) const NF_INET_PRE_ROUTING: u8 = 0;
pub(crate) const NF_INET_LOCAL_IN: u8 = 1;
pub(crate) const NF_INET_FORWARD: u8 = 2;
pub(crate) const NF_INET_LOCAL_OUT: u8 = 3;
pub(crate) const NFPROTO_IPV4: u8 = 2;
pub(crate) const NFPROTO_IPV6: u8 = 10;
/// A receive kept for PREROUTING is at most this old (the same packet
/// goes from the device to the hook without a pause).
const RECEIVE_WINDOW_NS: u64 = 50_000_000;

/// A BPF netfilter program's context `struct bpf_nf_ctx { state, skb }`.
#[inline(always)]
pub(crate) fn on_netfilter(ctx: *const u8, point: Point) {
    // Direct context loads: the verifier types them as BTF pointers.
    let state: *const u8 = unsafe { core::ptr::read_volatile(ctx as *const *const u8) };
    let skb: *const u8 = unsafe { core::ptr::read_volatile((ctx as *const *const u8).add(1)) };
    on_nf_hook::<Btf, true>(skb, state, point);
}

/// A packet at a netfilter hook (`struct nf_hook_state *state`): from a BPF
/// netfilter link (6.4+), or from `nf_hook_slow`'s entry and return on older
/// kernels (fentry/fexit, else kprobe/kretprobe), which run around all of a
/// hook's functions just as the early and late links do.
#[inline(always)]
///
/// `FOLLOW_DNAT`: select packets that PREROUTING's DNAT made selected. Off
/// in the kprobe/kretprobe fallback, whose program it would take past the
/// verifier's limit of a million instructions (6.1).
pub(crate) fn on_nf_hook<M: Mem, const FOLLOW_DNAT: bool>(
    skb: *const u8,
    state: *const u8,
    point: Point,
) {
    let o = offsets();
    // `hook` is the first member (a u8, or an unsigned int before 5.15:
    // its low byte on little-endian).
    let hook: u8 = unsafe { M::read(state, 0) }.unwrap_or(0);
    // A packet from a device was selected (and tracked) when the device saw
    // it, before any hook: only at OUTPUT does a hook see a packet first. A
    // packet the guardrails only count has nothing to report at a hook (the
    // device programs notice a reused skb).
    // And a packet that PREROUTING's DNAT sent to a selected destination (a
    // NodePort or external IP call from outside the node) is selected after
    // it: its receive, kept by the device program, becomes its first hop.
    let mut translated = false;
    match unsafe { TRACKED.get(skb as u64) } {
        Some(t) if t.flags & track_flags::COUNTED != 0 => return,
        None if FOLLOW_DNAT && hook == NF_INET_PRE_ROUTING && point == Point::NfLate => {
            if !dst_translated::<M>(skb, o) {
                return;
            }
            translated = true;
        }
        None if hook != NF_INET_LOCAL_OUT => return,
        _ => {}
    }
    let pf: u8 = unsafe { M::read(state, v(&o.nf_state_pf)) }.unwrap_or(0);
    // IPv4 and IPv6 hooks only (as the links): nf_hook_slow also runs the
    // bridge, ARP and netdev families' hooks.
    if pf != NFPROTO_IPV4 && pf != NFPROTO_IPV6 {
        return;
    }
    // The device the packet came in on (PREROUTING, INPUT, FORWARD) or goes out of.
    let dev_off = match hook {
        NF_INET_PRE_ROUTING | NF_INET_LOCAL_IN | NF_INET_FORWARD => v(&o.nf_state_in),
        _ => v(&o.nf_state_out),
    };
    let ptr: *const u8 = unsafe { M::read(state, dev_off) }.unwrap_or(core::ptr::null());
    let dev = dev_at::<M>(ptr, o);
    if translated {
        let kept = keep_receive(skb);
        if on_hop::<M, true>(skb, point, o, &dev, hook, pf) == Ok(true) {
            // Its route lookup comes next, with the translated addresses.
            if let Ok(ev) = scratch() {
                crate::route::remember(ev);
            }
            if kept {
                report_receive::<M>(skb, o, &dev);
            }
        }
        return;
    }
    let _ = on_hop::<M, true>(skb, point, o, &dev, hook, pf);
}

/// Conntrack translated the packet's destination (`IPS_DST_NAT`). The
/// skb's field is read as its program types it (a direct load where the
/// verifier knows the skb's BTF); the conntrack entry, an untyped address
/// here, by a probe read.
#[inline(always)]
fn dst_translated<M: Mem>(skb: *const u8, o: &netflow_common::Offsets) -> bool {
    let Ok(nfct) = (unsafe { M::read::<u64>(skb, v(&o.skb_nfct)) }) else {
        return false;
    };
    let ct = (nfct & !7) as *const u8;
    if ct.is_null() {
        return false;
    }
    let status: u64 = unsafe { Probe::read(ct, v(&o.ct_status)) }.unwrap_or(0);
    status & netflow_common::IPS_DST_NAT != 0
}

/// The scratch event still holds this skb's receive (the device program
/// left it there, unselected): keep it before the hop's own event is built.
#[inline(always)]
fn keep_receive(skb: *const u8) -> bool {
    let (Ok(ev), Some(pre)) = (scratch(), PRE_NAT.get_ptr_mut(0)) else {
        return false;
    };
    if ev.hdr.skb != skb as u64 || ev.hdr.point != Point::Rx as u8 {
        return false;
    }
    let size = core::mem::size_of::<netflow_common::PacketEvent>() as u32;
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            pre as *mut core::ffi::c_void,
            size,
            ev as *const _ as *const core::ffi::c_void,
        )
    };
    r == 0
}

/// Report the kept receive: the packet as it arrived (before DNAT), on the
/// device PREROUTING saw it come in on, when it came.
#[inline(always)]
fn report_receive<M: Mem>(skb: *const u8, o: &netflow_common::Offsets, dev: &Dev) {
    let Some(pre) = PRE_NAT.get_ptr_mut(0) else {
        return;
    };
    let pre = unsafe { &mut *pre };
    let ts = pre.hdr.ts_ns;
    let fp = crate::once::netflow_g_pre_nat_fingerprint();
    // The same packet as the hop just reported (its fingerprint is NAT
    // invariant), received a moment ago: not an earlier packet's receive
    // left behind in a reused skb.
    let Ok(hop) = scratch() else {
        return;
    };
    if hop.hdr.fp != fp || hop.hdr.ts_ns.wrapping_sub(ts) > RECEIVE_WINDOW_NS {
        return;
    }
    fill_meta::<M>(pre, skb, o, dev, Point::Rx, ts);
    pre.hdr.fp = fp;
    output(pre);
}

#[inline(always)]
pub(crate) fn on_nft_chain(pkt: *const u8, chain: *const u8) -> Result<(), ()> {
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
    let pf: u8 = unsafe { Probe::read(state, v(&o.nf_state_pf)) }.unwrap_or(0);
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
