//! One hop of a packet at a device (rx, tx, tc) or netfilter hook, and its
//! end (a drop): decide whether the packet is selected, remember it, and
//! build its event.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use netflow_common::{
    event_flags, filter_flags as ff, parse, track_flags, Offsets, PacketEvent, Point, Track,
    CAPTURE_BYTES,
};

use crate::{
    conntrack::remember_reply,
    emit::output,
    globals::*,
    guard, once,
    select::{reported, selected},
    skb::{device, fill_meta, read_packet, scratch, Dev},
};

#[inline(always)]
pub(crate) fn on_drop<M: Mem>(skb: *const u8, location: u64, reason: u32) -> Result<(), ()> {
    let f = filter();
    if reason == 0 || reason == v(&f.reason_consumed) {
        return Ok(());
    }
    let o = offsets();
    let key = skb as u64;
    let dev = device::<M>(skb, o);
    let ev = scratch()?;
    read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
    if v(&f.flags) & ff::UDP_CONVS != 0 && crate::conv::echo_reply(ev) {
        // The original of an ICMP echo reply a raw socket took a copy of
        // (see `conv`): no drop.
        // SAFETY: `skb` is the kernel's `struct sk_buff *` this program
        // got, `skb_head` the BTF offset of its `head` pointer, read as
        // plain data through `M` (fault-safe); bpf_ktime_get_ns takes no
        // arguments.
        let (head, now) = unsafe {
            (
                M::read::<u64>(skb, v(&o.skb_head)).unwrap_or(0),
                bpf_ktime_get_ns(),
            )
        };
        if crate::conv::echo_copy_taken(head, now) {
            return Ok(());
        }
    }
    // SAFETY: TRACKED's values are preallocated with the map, so the reference
    // is to valid, aligned memory while the program runs; it is used only to
    // copy `fp` and `flags` out, before the remove. An LRU eviction on another
    // CPU reusing the element meanwhile (aya's caveat on `get`) would give
    // another skb's values, not a fault.
    let (tracked, flags) = match unsafe { TRACKED.get(key) } {
        Some(t) => {
            let (fp, flags) = (t.fp, t.flags);
            let _ = TRACKED.remove(key);
            let same =
                fp == parse::fingerprint(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f);
            (same, if same { flags } else { 0 })
        }
        None => (false, 0),
    };
    let delivered = flags & track_flags::DELIVERED != 0;
    if delivered && flags & track_flags::COUNTED != 0 {
        // Only counted, and its socket took it: nothing to tell.
        return Ok(());
    }
    if !tracked {
        // Not seen before: report it when it is an IP packet (not a
        // netlink message, say) whose headers match the selection.
        if parse::outer(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto).is_none() {
            return Ok(());
        }
        // SAFETY: the reference the lookup returns is never read, only tested
        // for presence, so aya's caveat on `get` (a value removed and reused
        // under the reference) cannot matter.
        let netns_hit =
            v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(dev.netns) }.is_some();
        if !reported(ev, f, netns_hit) {
            return Ok(());
        }
    }
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    fill_meta::<M>(ev, skb, o, &dev, Point::Drop, unsafe { bpf_ktime_get_ns() });
    ev.hdr.location = location;
    ev.hdr.reason = reason;
    if delivered {
        ev.hdr.flags = event_flags::AFTER_DELIVERY;
    } else if flags & track_flags::COUNTED != 0
        || (!tracked && guard::socket_counted(ev, f).is_some())
    {
        // Counted in CONNS (on its way, or by the socket that sent it).
        ev.hdr.flags = event_flags::COUNTED;
    }
    output(ev);
    Ok(())
}

/// rx, tx and tc: report a tracked packet; select (and track) a new one.
///
/// An skb can be freed without any tracepoint (TCP, GRO) and its memory
/// reused for another packet, so a tracked skb counts as the same packet only
/// while its fingerprint (innermost IPv4 ID and TCP seq / UDP length+checksum
/// / ICMP id+seq) is unchanged; NAT and encapsulation leave it unchanged.
#[inline(always)]
pub(crate) fn on_device<M: Mem>(skb: *const u8, point: Point) -> Result<(), ()> {
    let o = offsets();
    let dev = device::<M>(skb, o);
    let reported = on_hop::<M, false>(skb, point, o, &dev, 0, 0)?;
    if reported && point == Point::Rx {
        // Its route lookup comes next (forwarded and local input packets).
        crate::route::remember(scratch()?);
    }
    Ok(())
}

/// A hop at a device (or a netfilter hook with its device): the common path.
/// True when it reported the packet (its headers are in the scratch event).
/// `G`: parse through the global functions of [`crate::once`] (each
/// verified once) instead of inline (the netfilter programs).
#[inline(always)]
pub(crate) fn on_hop<M: Mem, const G: bool>(
    skb: *const u8,
    point: Point,
    o: &Offsets,
    dev: &Dev,
    hook: u8,
    pf: u8,
) -> Result<bool, ()> {
    let f = filter();
    if dev.ptr.is_null() {
        return Ok(false);
    }
    if v(&f.flags) & ff::IFACE != 0 {
        let k = ((dev.netns as u64) << 32) | dev.ifindex as u64;
        // SAFETY: the reference the lookup returns is never read, only tested
        // for presence, so aya's caveat on `get` (a value removed and reused
        // under the reference) cannot matter.
        if unsafe { SEL_IFACES.get(k) }.is_none() {
            return Ok(false);
        }
    } else if dev.ifindex == 1 {
        // Loopback: never part of a packet's path across the node.
        return Ok(false);
    }

    let key = skb as u64;
    let all = v(&f.flags) & ff::ALL != 0;
    let slot = TRACKED.get_ptr_mut(key);
    let ev = scratch()?;
    let fp_of = |ev: &PacketEvent| {
        if G {
            once::netflow_g_fingerprint()
        } else {
            parse::fingerprint(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f)
        }
    };
    let has_inner = |ev: &PacketEvent| {
        if G {
            once::netflow_g_has_inner() != 0
        } else {
            parse::has_inner(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f)
        }
    };
    let mut fp = 0;
    let mut now = 0;
    let mut flags = 0;
    // Whether `ev` holds the full capture. A packet the guardrails only
    // count needs just its headers (to notice a reused skb, to count it in
    // its connection): the rest is read once it is to be reported.
    let every = all && v(&f.flags) & ff::EVERY_PACKET != 0;
    let mut full = every;
    let tracked = match slot {
        Some(t) => {
            // SAFETY: `t` is this skb's TRACKED value from the lookup above:
            // preallocated map memory, aligned for the Track, valid while the
            // program runs, and this program does not remove it before its last
            // use (each remove below returns). An LRU eviction on another CPU,
            // or a program nesting on this one (see `nest`), can give the
            // element to another skb meanwhile: then these reads and the write
            // below see that skb's entry, wrong data but never invalid memory.
            if unsafe { (*t).flags } & track_flags::COUNTED != 0 {
                read_packet::<M>(skb, o, ev, FILTER_BYTES)?;
                if has_inner(ev) {
                    read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
                    full = true;
                }
            } else {
                read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
                full = true;
            }
            fp = fp_of(ev);
            // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the
            // monotonic clock; every program type here may call it.
            now = unsafe { bpf_ktime_get_ns() };
            // SAFETY: as above: `t` is this skb's TRACKED value.
            flags = unsafe { (*t).flags };
            // A packet a socket took goes nowhere after (a copy for another
            // reader is another skb): seen again at a device or hook, the
            // skb is another packet's. Its free may have gone unseen (a
            // consume_skb program skipped because one runs on this CPU
            // already), and a fingerprint alone can match by chance (a UDP
            // answer of the request's length whose IP ID equals the
            // request's): taken for the old packet, it would go uncounted.
            let ended = flags & track_flags::DELIVERED != 0 && at_device_or_hook(point);
            // SAFETY: as above.
            !ended && unsafe { (*t).fp == fp && now.wrapping_sub((*t).ts) < v(&f.stale_ns) }
        }
        None => {
            // Most packets are not selected, or only counted: read just the
            // headers first (everything when every packet is reported).
            let first = if every {
                CAPTURE_BYTES as u32
            } else {
                FILTER_BYTES
            };
            read_packet::<M>(skb, o, ev, first)?;
            false
        }
    };
    if !tracked {
        if !full && has_inner(ev) {
            read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
            full = true;
        }
        let counted_at_socket = if G {
            once::netflow_g_socket_counted() != 0
        } else {
            guard::socket_counted(ev, f).is_some()
        };
        if counted_at_socket {
            // The agent's TCP data: its sockets count it.
            if slot.is_some() {
                let _ = TRACKED.remove(key);
            }
            return Ok(false);
        }
        // SAFETY: the reference the lookup returns is never read, only tested
        // for presence, so aya's caveat on `get` (a value removed and reused
        // under the reference) cannot matter.
        let netns_hit =
            v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(dev.netns) }.is_some();
        let chosen = if G {
            let n = netns_hit as u32;
            once::netflow_g_selected(n, 0) != 0
                || once::netflow_g_reply_of_selected(0) != 0
                || once::netflow_g_selected(n, 1) != 0
                || once::netflow_g_reply_of_selected(1) != 0
        } else {
            selected(ev, f, netns_hit)
        };
        if !chosen {
            if slot.is_some() {
                // A different packet in a reused skb: forget the old one.
                let _ = TRACKED.remove(key);
            }
            if point == Point::Rx {
                // Kept in the scratch event until the next program on this
                // CPU: PREROUTING's DNAT may make it selected (a NodePort
                // call), and then this receive is its first hop.
                ev.hdr.skb = key;
                ev.hdr.point = Point::Rx as u8;
                // SAFETY: bpf_ktime_get_ns takes no arguments and only reads
                // the monotonic clock; every program type here may call it.
                ev.hdr.ts_ns = unsafe { bpf_ktime_get_ns() };
            }
            return Ok(false);
        }
        if slot.is_none() {
            // The fingerprint and the guard need only the headers (the
            // inner ones are in `ev` when there are any).
            fp = fp_of(ev);
            // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the
            // monotonic clock; every program type here may call it.
            now = unsafe { bpf_ktime_get_ns() };
        }
        // A packet new to us: full detail (the event carries the full
        // capture), or only counted.
        let full_detail = if G {
            once::netflow_g_full_detail(now) != 0
        } else {
            guard::full_detail(ev, f, now)
        };
        flags = if full_detail {
            if !full {
                read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
                // As the daemon computes it, from the bytes it gets.
                fp = fp_of(ev);
            }
            0
        } else {
            track_flags::COUNTED
        };
    }
    let counted = flags & track_flags::COUNTED != 0;
    let hdr = if counted {
        0
    } else if G {
        once::netflow_g_tuple_hash()
    } else {
        parse::tuple_hash(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f)
    };
    // Reported before with these very headers: this hop needs no bytes.
    // SAFETY: `t` is this skb's TRACKED value from the lookup at the top
    // (valid, aligned map memory; see there for what an eviction meanwhile can
    // do): one u64 read.
    let same_headers = tracked && slot.is_some_and(|t| unsafe { (*t).hdr } == hdr);
    let track = Track {
        ts: now,
        fp,
        flags: flags & track_flags::COUNTED,
        _pad: 0,
        hdr,
    };
    match slot {
        // SAFETY: `t` is this skb's TRACKED value from the lookup at the top:
        // valid, aligned map memory, not removed by this program (each remove
        // above returns). If an LRU eviction on another CPU, or a program
        // nesting on this one (see `nest`), gave the element to another skb
        // meanwhile, this overwrites that skb's entry: wrong tracking, never
        // invalid memory.
        Some(t) => unsafe { *t = track },
        None => {
            let _ = TRACKED.insert(key, track, 0);
            set_tracking();
        }
    }
    if counted {
        return Ok(false);
    }
    if point == Point::NfLate {
        remember_reply::<M>(skb, o);
    }
    fill_meta::<M>(ev, skb, o, dev, point, now);
    ev.hdr.hook = hook;
    ev.hdr.pf = pf;
    ev.hdr.fp = fp;
    if same_headers {
        ev.hdr.cap_len = 0;
        output(&ev.hdr);
    } else {
        output(ev);
    }
    Ok(true)
}

/// A device's or a netfilter hook's hop (not a socket's answer to the
/// packet: a RST, an ICMP error).
#[inline(always)]
fn at_device_or_hook(point: Point) -> bool {
    matches!(
        point,
        Point::Rx | Point::Tx | Point::TcIngress | Point::TcEgress | Point::NfEarly | Point::NfLate
    )
}
