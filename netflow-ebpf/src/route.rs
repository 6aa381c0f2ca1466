//! Route hops: `fib:fib_table_lookup` says which table answered a lookup,
//! with which device and gateway, or the error. The tracepoint has no skb:
//! the receive program remembers, per CPU, the selected IPv4 packets it just
//! reported (a few: the stack hands received packets on in small batches),
//! and a lookup for the same source and destination moments later is that
//! packet's. Locally sent packets look their route up before they exist:
//! they get no route hop.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::PerCpuArray};
use netflow_common::{PacketEvent, Point};

use crate::{
    emit::{header, output},
    globals::*,
    skb::{dev_at, device, scratch},
};

/// Packets remembered per CPU (the kernel's GRO batch is 8 by default).
pub(crate) const PENDING: usize = 16;
/// A lookup this long after the receive is not that packet's.
const PENDING_NS: u64 = 2_000_000;
/// `-EAGAIN`: this table has no answer, the next one is asked.
const EAGAIN: i32 = -11;

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Pending {
    pub skb: u64,
    pub ts: u64,
    pub saddr: u32,
    pub daddr: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct PendingRing {
    pub next: u32,
    pub _pad: u32,
    pub e: [Pending; PENDING],
}

/// The selected IPv4 packets the receive program reported last on this CPU,
/// for the route lookup that follows.
#[map]
pub(crate) static ROUTE_PENDING: PerCpuArray<PendingRing> = PerCpuArray::with_max_entries(1, 0);

/// The receive program reported this packet (its headers in `ev`): keep it
/// for the route lookup that follows.
#[inline(always)]
pub(crate) fn remember(ev: &PacketEvent) {
    // A header-only report (same headers as before) has cap_len 0 but the
    // bytes it read: the version nibble says they are an IPv4 header.
    if ev.hdr.l3_proto != 0x0800 || ev.data[0] >> 4 != 4 {
        return;
    }
    let Some(ring) = ROUTE_PENDING.get_ptr_mut(0) else {
        return;
    };
    let d = &ev.data;
    let saddr = u32::from_ne_bytes([d[12], d[13], d[14], d[15]]);
    let daddr = u32::from_ne_bytes([d[16], d[17], d[18], d[19]]);
    let ring = unsafe { &mut *ring };
    let i = (ring.next as usize) % PENDING;
    ring.e[i] = Pending {
        skb: ev.hdr.skb,
        ts: ev.hdr.ts_ns,
        saddr,
        daddr,
    };
    ring.next = ring.next.wrapping_add(1);
}

/// `fib_table_lookup(u32 tb_id, const struct flowi4 *flp, const struct
/// fib_nh_common *nhc, int err)`.
#[inline(always)]
pub(crate) fn on_fib_lookup(
    tb_id: u32,
    flp: *const u8,
    nhc: *const u8,
    err: i32,
) -> Result<(), ()> {
    if err == EAGAIN || flp.is_null() || !tracking() {
        return Ok(());
    }
    let o = offsets();
    let Some(ring) = ROUTE_PENDING.get_ptr_mut(0) else {
        return Ok(());
    };
    let ring = unsafe { &mut *ring };
    let saddr: u32 = unsafe { Btf::read(flp, v(&o.flowi4_saddr))? };
    let daddr: u32 = unsafe { Btf::read(flp, v(&o.flowi4_daddr))? };
    let now = unsafe { bpf_ktime_get_ns() };
    let mut skb = 0;
    for i in 0..PENDING {
        let e = &mut ring.e[i];
        if e.skb != 0 && e.saddr == saddr && e.daddr == daddr && now.wrapping_sub(e.ts) < PENDING_NS
        {
            let candidate = e.skb;
            e.skb = 0;
            // Still followed (not delivered by early demux without a lookup
            // and freed since): the oldest such is the packet being routed.
            if unsafe { TRACKED.get(candidate) }.is_some() {
                skb = candidate;
                break;
            }
        }
    }
    if skb == 0 {
        return Ok(());
    }
    let ev = scratch()?;
    header(&mut ev.hdr, skb, Point::Route, now);
    let (dev, gw_family, gw) = if nhc.is_null() || err != 0 {
        // No route: the device it came in on, whose namespace looked it up.
        (device::<Probe>(skb as *const u8, o), 0u8, 0u32)
    } else {
        let d: *const u8 = unsafe { Btf::read(nhc, v(&o.nhc_dev)) }.unwrap_or(core::ptr::null());
        let fam: u8 = unsafe { Btf::read(nhc, v(&o.nhc_gw_family)) }.unwrap_or(0);
        let gw: u32 = unsafe { Btf::read(nhc, v(&o.nhc_gw)) }.unwrap_or(0);
        (dev_at::<Probe>(d, o), fam, gw)
    };
    let h = &mut ev.hdr;
    h.ifindex = dev.ifindex;
    h.netns = dev.netns;
    h.ifname = [0; 16];
    if !dev.ptr.is_null() {
        if let Ok(name) = unsafe { Probe::read::<[u8; 16]>(dev.ptr, v(&o.dev_name)) } {
            h.ifname = name;
        }
    }
    h.reason = tb_id;
    h.hook = gw_family;
    h.location = ((err as u32 as u64) << 32) | if gw_family == 2 { gw as u64 } else { 0 };
    h.len = 0;
    h.l3_proto = 0x0800;
    h.cap_len = 0;
    output(&ev.hdr);
    Ok(())
}
