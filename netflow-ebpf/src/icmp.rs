//! ICMP errors the node sends because of a packet (`icmp:icmp_send`): a hop
//! of that packet, with the error's type and code, and the device its route
//! leads to with that device's MTU (what "fragmentation needed" is about).
use aya_ebpf::helpers::bpf_ktime_get_ns;
use netflow_common::{filter_flags as ff, Point, CAPTURE_BYTES};

use crate::{
    emit::output,
    globals::*,
    select::reported,
    skb::{dev_at, device, fill_meta, read_packet, scratch},
};

/// `skb->_skb_refdst` holds the route with a flag in bit 0 (SKB_DST_NOREF).
const DST_PTR_MASK: u64 = !1;

/// `M` reads the skb: typed (tracepoint, fentry) or through the probe
/// helper (kprobe).
#[inline(always)]
pub(crate) fn on_icmp_send<M: Mem>(skb: *const u8, icmp_type: u8, code: u8) -> Result<(), ()> {
    let f = filter();
    let o = offsets();
    if skb.is_null() {
        return Ok(());
    }
    let ev = scratch()?;
    read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
    // SAFETY: the reference the lookup returns is never read, only tested for
    // presence, so aya's caveat on `get` (a value removed and reused under the
    // reference) cannot matter.
    if unsafe { TRACKED.get(skb as u64) }.is_none() {
        // Not followed so far (a packet the guardrails did not pick, or seen
        // first here): reported when its headers match the selection.
        let in_dev = device::<M>(skb, o);
        // SAFETY: the reference the lookup returns is never read, only tested
        // for presence, so aya's caveat on `get` (a value removed and reused
        // under the reference) cannot matter.
        let netns_hit =
            v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(in_dev.netns) }.is_some();
        if !reported(ev, f, netns_hit) {
            return Ok(());
        }
    }
    // The device the packet's route leads to (else the one it is on).
    // SAFETY: `skb` is the kernel `struct sk_buff *` the program got, which
    // either `M` reads safely (see `Mem`: a verifier-checked, fault-safe load,
    // or bpf_probe_read_kernel), non-null (checked above); `skb_refdst` is the
    // BTF offset of its `unsigned long _skb_refdst`, read as a u64.
    let refdst: u64 = unsafe { M::read(skb, v(&o.skb_refdst)) }.unwrap_or(0);
    let dst = (refdst & DST_PTR_MASK) as *const u8;
    // A plain address, not a typed pointer: read through the probe helper.
    let dev = if dst.is_null() {
        device::<M>(skb, o)
    } else {
        // SAFETY: `dst` is the skb's `struct dst_entry *` (the refdst without
        // its NOREF bit, non-null here), an untyped address: `dst_dev` is the
        // offset of its `struct net_device *dev`, read through
        // bpf_probe_read_kernel, which faults safely (null).
        let d: *const u8 = unsafe { Probe::read(dst, v(&o.dst_dev)) }.unwrap_or(core::ptr::null());
        dev_at::<Probe>(d, o)
    };
    let mtu: u32 = if dev.ptr.is_null() {
        0
    } else {
        // SAFETY: `dev.ptr` is non-null here: a `struct net_device *` (see
        // `dev_at`); `dev_mtu` is the offset of its `unsigned int mtu`, read
        // through bpf_probe_read_kernel, which faults safely.
        unsafe { Probe::read(dev.ptr, v(&o.dev_mtu)) }.unwrap_or(0)
    };
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    fill_meta::<Probe>(ev, skb, o, &dev, Point::IcmpSend, unsafe {
        bpf_ktime_get_ns()
    });
    ev.hdr.reason = (icmp_type as u32) << 8 | code as u32;
    ev.hdr.location = mtu as u64;
    output(ev);
    Ok(())
}
