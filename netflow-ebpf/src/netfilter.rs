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
    // SAFETY: `ctx` is the program's context, a `struct bpf_nf_ctx *` (the
    // loader loads these programs as BPF_PROG_TYPE_NETFILTER, see main.rs):
    // 8-aligned, with `state` its first 8-byte field and `skb` its second. The
    // verifier allows these context loads and types both results as BTF
    // pointers.
    let state: *const u8 = unsafe { core::ptr::read_volatile(ctx as *const *const u8) };
    // SAFETY: as above, the second field (`skb`); `add(1)` stays inside the
    // context.
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
    // SAFETY: `state` is the hook's `struct nf_hook_state *`: a BTF pointer
    // (the netfilter context's field, fentry/fexit's argument) or, with
    // `Probe`, the kprobe's non-null argument or the one it kept for the
    // kretprobe (see `nf_stack`), read by the helper (see `Mem`); offset 0 is
    // its `hook`, a u8 (before 5.15 an unsigned int, whose low byte this is on
    // little-endian).
    let hook: u8 = unsafe { M::read(state, 0) }.unwrap_or(0);
    // A packet from a device was selected (and tracked) when the device saw
    // it, before any hook: only at OUTPUT does a hook see a packet first. A
    // packet the guardrails only count has nothing to report at a hook (the
    // device programs notice a reused skb).
    // And a packet that PREROUTING's DNAT sent to a selected destination (a
    // NodePort or external IP call from outside the node) is selected after
    // it: its receive, kept by the device program, becomes its first hop.
    let mut translated = false;
    // SAFETY: TRACKED's values are preallocated with the map, so the reference
    // is to valid, aligned memory while the program runs; it only reads
    // `flags`, at once. An LRU eviction on another CPU reusing the element
    // meanwhile (aya's caveat on `get`) would show another skb's flags, not a
    // fault.
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
    // SAFETY: `state` as above; `nf_state_pf` is the BTF offset of its `u8 pf`.
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
    // SAFETY: `state` as above; `dev_off` is the BTF offset of its
    // `struct net_device *in` or `*out`, a pointer (any value is valid;
    // `dev_at` checks for null).
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
    // SAFETY: `skb` is the kernel `struct sk_buff *` the program got, which
    // either `M` reads safely (see `Mem`: a verifier-checked, fault-safe load,
    // or bpf_probe_read_kernel); `skb_nfct` is the BTF offset of its
    // `unsigned long _nfct`, read as a u64.
    let Ok(nfct) = (unsafe { M::read::<u64>(skb, v(&o.skb_nfct)) }) else {
        return false;
    };
    let ct = (nfct & !7) as *const u8;
    if ct.is_null() {
        return false;
    }
    // SAFETY: `ct` is the skb's `struct nf_conn *` (`_nfct` without its 3
    // ctinfo bits, non-null), an untyped address here: `ct_status` is the
    // offset of its `unsigned long status`, read through bpf_probe_read_kernel,
    // which faults safely (zero).
    let status: u64 = unsafe { Probe::read(ct, v(&o.ct_status)) }.unwrap_or(0);
    status & netflow_common::IPS_DST_NAT != 0
}

/// The scratch event still holds this skb's receive (the device program
/// left it there, unselected): keep it before the hop's own event is built.
#[inline(always)]
fn keep_receive(skb: *const u8) -> bool {
    let (Ok(ev), Some(pre)) = (scratch(), crate::nest::slot(&PRE_NAT)) else {
        return false;
    };
    if ev.hdr.skb != skb as u64 || ev.hdr.point != Point::Rx as u8 {
        return false;
    }
    let size = core::mem::size_of::<netflow_common::PacketEvent>() as u32;
    // SAFETY: `pre` is this program's PRE_NAT slot and `ev` its SCRATCH
    // slot (see `nest`): two distinct map values of `size` bytes each (both PacketEvents),
    // so the helper copies one whole event into the other without overlap;
    // `pre` is writable map memory, and `ev` is only read.
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
    let Some(pre) = crate::nest::slot(&PRE_NAT) else {
        return;
    };
    // SAFETY: `pre` is this program's PRE_NAT slot: map memory, 8-aligned for
    // the PacketEvent, that lives as long as the map; no other CPU uses it, and
    // a program nesting on this CPU uses the next level's (see `nest`). But `netflow_g_pre_nat_fingerprint`
    // below makes a `&` to the same slot while this `&mut` is live (it is used
    // after): aliasing that Rust forbids, harmless in practice only because
    // that BPF function just reads the slot.
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
    // SAFETY: `pkt` is the kprobe's `struct nft_pktinfo *`, non-null (checked
    // above): `nft_pkt_skb` is the offset of its `struct sk_buff *skb`, read
    // through bpf_probe_read_kernel, which faults safely (null).
    let skb: *const u8 = unsafe { Probe::read(pkt, v(&o.nft_pkt_skb))? };
    // SAFETY: the reference the lookup returns is never read, only tested for
    // presence, so aya's caveat on `get` (a value removed and reused under the
    // reference) cannot matter.
    if unsafe { TRACKED.get(skb as u64) }.is_none() {
        return Ok(());
    }
    // SAFETY: as above, `pkt->state`, a `const struct nf_hook_state *`.
    let state: *const u8 = unsafe { Probe::read(pkt, v(&o.nft_pkt_state))? };
    // SAFETY: offset 0 of the state is its `hook` (a u8, or the low byte of an
    // unsigned int before 5.15), read through the helper, which faults safely:
    // a null `state` (a failed read above) reads zero.
    let hook: u8 = unsafe { Probe::read(state, 0) }.unwrap_or(0);
    // SAFETY: as above, the state's `u8 pf`. Were `state` null (a failed read
    // above), `add` with this offset would be formally outside any object; the
    // helper only fails on the address (zero).
    let pf: u8 = unsafe { Probe::read(state, v(&o.nf_state_pf)) }.unwrap_or(0);
    let ev = scratch()?;
    // SAFETY: `chain` is the kprobe's `struct nft_chain *`, non-null (checked
    // above): `nft_chain_name` is the offset of its `char *name`, read through
    // the helper, which faults safely.
    let chain_name: *const u8 = unsafe { Probe::read(chain, v(&o.nft_chain_name))? };
    // SAFETY: as above, `chain->table`, a `struct nft_table *`.
    let table: *const u8 = unsafe { Probe::read(chain, v(&o.nft_chain_table))? };
    // SAFETY: as above, `table->name`. Were `table` null (a failed read above),
    // `add` with this offset would be formally outside any object; the helper
    // only fails on the address (null).
    let table_name: *const u8 = unsafe { Probe::read(table, v(&o.nft_table_name))? };
    let (t, c) = ev.data.split_at_mut(CAPTURE_BYTES / 2);
    // SAFETY: `t` and `c` are the two halves of `ev.data`, 64 writable bytes
    // each, and the helper writes at most that many into each; the names'
    // addresses are only read by bpf_probe_read_kernel_str, which faults safely
    // (zeroing the half; the error is ignored).
    unsafe {
        let _ = aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(table_name, t);
        let _ = aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(chain_name, c);
    }
    let dev = Dev {
        ptr: core::ptr::null(),
        ifindex: 0,
        netns: 0,
    };
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
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
