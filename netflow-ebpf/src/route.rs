//! Route hops: `fib:fib_table_lookup` (IPv4) and `fib6:fib6_table_lookup`
//! (IPv6) say which table answered a lookup, with which device and gateway,
//! or the error. The tracepoints have no skb: the receive program
//! remembers, per CPU, the selected packets it just reported (a few: the
//! stack hands received packets on in small batches), and a lookup for the
//! same source and destination moments later is that packet's. Locally
//! sent packets look their route up before they exist: they get no route
//! hop.
//!
//! An IPv4 table without an answer says `-EAGAIN` (skipped: the next rule's
//! table is asked). An IPv6 table without one answers "unreachable" and the
//! next rule's table is asked too: such an answer leaves the packet
//! remembered, and the daemon keeps the last answer of a packet's lookups.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::PerCpuArray};
use netflow_common::{track_flags, PacketEvent, Point};

use crate::{
    emit::{header, output},
    globals::*,
    skb::{dev_at, device, scratch},
};

/// Packets remembered per CPU (the kernel's GRO batch is 8 by default).
pub(crate) const PENDING: usize = 16;
/// A lookup this long after the receive is not that packet's. Natively
/// it comes microseconds after; an emulated or very busy machine takes
/// milliseconds (2 ms was too short under qemu's TCG). A packet delivered
/// since (early demux: no lookup) is never taken, however recent.
const PENDING_NS: u64 = 20_000_000;
/// `-EAGAIN`: this table has no answer, the next one is asked.
const EAGAIN: i32 = -11;

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Pending {
    pub skb: u64,
    pub ts: u64,
    /// 4 or 6.
    pub version: u32,
    pub _pad: u32,
    /// As two words (compared word by word: no memcmp in a BPF program);
    /// an IPv4 address in the first word's low bytes.
    pub saddr: [u64; 2],
    pub daddr: [u64; 2],
}

/// 16 bytes as two native words.
#[inline(always)]
fn words(b: &[u8]) -> [u64; 2] {
    [
        u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    ]
}

/// An IPv4 address as the first word.
#[inline(always)]
fn v4_words(b: [u8; 4]) -> [u64; 2] {
    [u32::from_ne_bytes(b) as u64, 0]
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
pub(crate) static ROUTE_PENDING: PerCpuArray<PendingRing> =
    PerCpuArray::with_max_entries(netflow_common::NEST_DEPTH, 0);

/// The receive program reported this packet (its headers in `ev`): keep it
/// for the route lookup that follows.
#[inline(always)]
pub(crate) fn remember(ev: &PacketEvent) {
    // A header-only report (same headers as before) has cap_len 0 but the
    // bytes it read: the version nibble says which header they are.
    let d = &ev.data;
    let version = (d[0] >> 4) as u32;
    let (saddr, daddr) = match (ev.hdr.l3_proto, version) {
        (0x0800, 4) => (
            v4_words([d[12], d[13], d[14], d[15]]),
            v4_words([d[16], d[17], d[18], d[19]]),
        ),
        (0x86dd, 6) => (words(&d[8..24]), words(&d[24..40])),
        _ => return,
    };
    let Some(ring) = crate::nest::slot(&ROUTE_PENDING) else {
        return;
    };
    // SAFETY: `ring` is this program's ROUTE_PENDING slot: map memory,
    // 8-aligned for the PendingRing, that lives as long as the map; no other
    // CPU uses it (a program runs with migration disabled), and a program
    // nesting on this CPU uses the next level's slot (see `nest`). The
    // reference ends with this function.
    let ring = unsafe { &mut *ring };
    let i = (ring.next as usize) % PENDING;
    ring.e[i] = Pending {
        skb: ev.hdr.skb,
        ts: ev.hdr.ts_ns,
        version,
        _pad: 0,
        saddr,
        daddr,
    };
    ring.next = ring.next.wrapping_add(1);
}

/// The oldest remembered packet with these addresses that is still
/// followed and on its way (not delivered by early demux without a lookup);
/// `take`: it is answered, forget it.
#[inline(always)]
fn pending(version: u32, saddr: [u64; 2], daddr: [u64; 2], take: bool) -> Option<u64> {
    let ring = crate::nest::slot(&ROUTE_PENDING)?;
    // SAFETY: this program's ROUTE_PENDING slot, as in `remember`.
    let ring = unsafe { &mut *ring };
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    for i in 0..PENDING {
        let e = &mut ring.e[i];
        if e.skb != 0
            && e.version == version
            && e.saddr[0] == saddr[0]
            && e.saddr[1] == saddr[1]
            && e.daddr[0] == daddr[0]
            && e.daddr[1] == daddr[1]
            && now.wrapping_sub(e.ts) < PENDING_NS
        {
            let candidate = e.skb;
            // SAFETY: TRACKED's values are preallocated with the map, so the
            // reference is to valid, aligned memory while the program runs; it
            // only reads `flags`, at once. An LRU eviction on another CPU
            // reusing the element meanwhile (aya's caveat on `get`) would show
            // another skb's flags, not a fault.
            let followed = unsafe { TRACKED.get(candidate) }
                .is_some_and(|t| t.flags & track_flags::DELIVERED == 0);
            if take || !followed {
                e.skb = 0;
            }
            if followed {
                return Some(candidate);
            }
        }
    }
    None
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
    // SAFETY: `flp` is the tracepoint's BTF-typed `const struct flowi4 *`
    // (non-null, checked above), read with a verifier-checked, fault-safe load
    // (see `Btf`); `flowi4_saddr` is the BTF offset of its `__be32 saddr`, 4
    // bytes.
    let saddr = v4_words(unsafe { Btf::read(flp, v(&o.flowi4_saddr))? });
    // SAFETY: as above, `__be32 daddr`.
    let daddr = v4_words(unsafe { Btf::read(flp, v(&o.flowi4_daddr))? });
    let Some(skb) = pending(4, saddr, daddr, true) else {
        return Ok(());
    };
    report(
        skb,
        tb_id,
        if err != 0 { core::ptr::null() } else { nhc },
        err,
        0x0800,
    )
}

/// `RTN_*` of an IPv6 answer that is no route, and its error
/// (`ip6_rt_type_to_error`, the same IPv4 gives).
fn fib6_error(fib6_type: u8) -> i32 {
    match fib6_type {
        6 => -22,    // RTN_BLACKHOLE: -EINVAL
        7 => -113,   // RTN_UNREACHABLE: -EHOSTUNREACH
        8 => -13,    // RTN_PROHIBIT: -EACCES
        9 => EAGAIN, // RTN_THROW
        _ => 0,
    }
}

/// `fib6_table_lookup(const struct net *net, const struct fib6_result
/// *res, struct fib6_table *table, const struct flowi6 *flp)`.
#[inline(always)]
pub(crate) fn on_fib6_lookup(res: *const u8, table: *const u8, flp: *const u8) -> Result<(), ()> {
    if res.is_null() || flp.is_null() || !tracking() {
        return Ok(());
    }
    let o = offsets();
    // SAFETY: `res` is the tracepoint's BTF-typed `const struct fib6_result *`
    // (non-null, checked above; see `Btf`); `fib6_res_type` is the BTF offset
    // of its `u8 fib6_type`.
    let err = fib6_error(unsafe { Btf::read::<u8>(res, v(&o.fib6_res_type))? });
    if err == EAGAIN {
        return Ok(());
    }
    // SAFETY: `flp` is the tracepoint's BTF-typed `const struct flowi6 *`
    // (non-null, checked above; see `Btf`); `flowi6_saddr` is the BTF offset of
    // its `struct in6_addr saddr`, 16 bytes read as two u64s. `in6_addr` itself
    // promises only 4-alignment: the u64 loads rely on the field's offset
    // being 8-aligned, as it is in the kernels' layouts (`daddr` follows
    // `flowi_common`, whose `__be64` tunnel id makes its size a multiple of 8).
    let saddr: [u64; 2] = unsafe { Btf::read(flp, v(&o.flowi6_saddr))? };
    // SAFETY: as above, `struct in6_addr daddr` (8-aligned in the same
    // layouts).
    let daddr: [u64; 2] = unsafe { Btf::read(flp, v(&o.flowi6_daddr))? };
    // A table without an answer leaves the packet to the next rule's table.
    let Some(skb) = pending(6, saddr, daddr, err == 0) else {
        return Ok(());
    };
    let tb_id: u32 = if table.is_null() {
        0
    } else {
        // SAFETY: `table` is the tracepoint's BTF-typed `struct fib6_table *`,
        // non-null here (see `Btf`); `fib6_table_id` is the BTF offset of its
        // `u32 tb6_id`.
        unsafe { Btf::read(table, v(&o.fib6_table_id)) }.unwrap_or(0)
    };
    // `fib6_nh` starts with its `fib_nh_common`.
    let nh: *const u8 = if err != 0 {
        core::ptr::null()
    } else {
        // SAFETY: `res` as above; `fib6_res_nh` is the BTF offset of its
        // `struct fib6_nh *nh`, a pointer (BTF-typed in turn).
        unsafe { Btf::read(res, v(&o.fib6_res_nh)) }.unwrap_or(core::ptr::null())
    };
    report(skb, tb_id, nh, err, 0x86dd)
}

/// The route hop of `skb`: the table, and the device and gateway of the
/// answer (`nhc`), or the error.
#[inline(always)]
fn report(skb: u64, tb_id: u32, nhc: *const u8, err: i32, l3_proto: u16) -> Result<(), ()> {
    let o = offsets();
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    let ev = scratch()?;
    header(&mut ev.hdr, skb, Point::Route, now);
    let mut gw = [0u64; 2];
    let (dev, gw_family) = if nhc.is_null() {
        // No route: the device it came in on, whose namespace looked it up.
        (device::<Probe>(skb as *const u8, o), 0u8)
    } else {
        // SAFETY: `nhc` is non-null: the IPv4 tracepoint's BTF-typed
        // `const struct fib_nh_common *`, or the IPv6 answer's
        // `struct fib6_nh *`, BTF-typed too, which begins with its
        // `fib_nh_common` (the same offsets); see `Btf`. `nhc_dev` is the BTF
        // offset of its `struct net_device *nhc_dev`.
        let d: *const u8 = unsafe { Btf::read(nhc, v(&o.nhc_dev)) }.unwrap_or(core::ptr::null());
        // SAFETY: as above, `u8 nhc_gw_family`.
        let fam: u8 = unsafe { Btf::read(nhc, v(&o.nhc_gw_family)) }.unwrap_or(0);
        match fam {
            // SAFETY: as above, the union `nhc_gw`'s first member,
            // `__be32 ipv4`.
            2 => gw = v4_words(unsafe { Btf::read(nhc, v(&o.nhc_gw)) }.unwrap_or([0; 4])),
            // Not by BTF: before 6.12 the verifier walks the union only
            // into its first member (the 4-byte IPv4 address).
            // SAFETY: `nhc` as above, read through bpf_probe_read_kernel (which
            // faults safely) as the union's `struct in6_addr ipv6`: 16 bytes,
            // any of which make valid u64s; the helper needs no alignment.
            10 => gw = unsafe { Probe::read(nhc, v(&o.nhc_gw)) }.unwrap_or([0; 2]),
            _ => {}
        }
        (dev_at::<Probe>(d, o), fam)
    };
    let h = &mut ev.hdr;
    h.ifindex = dev.ifindex;
    h.netns = dev.netns;
    h.ifname = [0; 16];
    if !dev.ptr.is_null() {
        // SAFETY: `dev.ptr` is non-null: a `struct net_device *` (see
        // `dev_at`); `dev_name` is the offset of its `char name[16]`, read
        // through bpf_probe_read_kernel, which faults safely.
        if let Ok(name) = unsafe { Probe::read::<[u8; 16]>(dev.ptr, v(&o.dev_name)) } {
            h.ifname = name;
        }
    }
    h.reason = tb_id;
    h.hook = gw_family;
    // The error; the gateway in the data (an IPv4 one in its first bytes).
    h.location = (err as u32 as u64) << 32;
    h.len = 0;
    h.l3_proto = l3_proto;
    h.cap_len = 16;
    let p = ev.data.as_mut_ptr() as *mut u64;
    // SAFETY: `p` points to `ev.data`, CAPTURE_BYTES (128) writable bytes of
    // the event; the two stores cover its first 16, and `write_unaligned` needs
    // no alignment.
    unsafe {
        core::ptr::write_unaligned(p, gw[0]);
        core::ptr::write_unaligned(p.add(1), gw[1]);
    }
    output(ev);
    Ok(())
}
