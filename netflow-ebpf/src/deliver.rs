//! A socket takes the packet: `cgroup_skb` ingress on the cgroup v2 root,
//! which runs after INPUT and the socket lookup, for every socket of the
//! node (listeners and connecting sockets included).
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated},
    programs::SkBuffContext,
};
use netflow_common::{
    event_flags, filter_flags as ff, parse, track_flags, Point, Track, CAPTURE_BYTES,
};

use crate::{
    dns,
    emit::output,
    globals::*,
    guard,
    select::selected,
    skb::{device, fill_meta, read_packet, scratch},
};

/// A tracked skb (same fingerprint) is marked delivered and reported
/// without its bytes (the daemon has them). An untracked one that matches
/// the selection — a copy made for a raw socket, say — is reported with its
/// bytes, so the daemon joins it to its packet by fingerprint. Either way
/// it stays tracked as delivered: a later free of it (QUEUE_PURGE when the
/// socket closes) is known to come after delivery.
#[inline(always)]
pub(crate) fn on_deliver(ctx: &SkBuffContext) -> Result<(), ()> {
    let skb = ctx.skb.skb as *const u8;
    let f = filter();
    // The events mode's DNS: every datagram to or from a DNS port, with
    // its bytes, tracked or not; and a UDP conversation's first datagram
    // taken.
    let dns = v(&f.flags) & ff::DNS != 0 && dns::datagram(ctx, f, false);
    // Nothing selected yet: no packet of ours can be here (a copy's
    // original was tracked when a device first saw it). The agent's
    // counting needs none.
    if !dns && !tracking() && v(&f.flags) & ff::SOCKET_COUNT == 0 {
        return Ok(());
    }
    let o = offsets();
    let key = skb as u64;
    let slot = TRACKED.get_ptr_mut(key);
    if slot.is_none() && v(&f.flags) & ff::SOCKET_COUNT != 0 && count_at_socket(ctx, false) {
        return Ok(());
    }
    // Copies (raw sockets, multicast to several sockets) are cloned skbs,
    // and a copy may be made in the memory of a packet freed a moment ago.
    // SAFETY: `skb` is the cgroup_skb context pointer, which is the kernel's
    // `struct sk_buff *` (the verifier maps `__sk_buff` accesses onto it);
    // `skb_cloned_byte` is the offset of the byte holding its `cloned` bit,
    // read through bpf_probe_read_kernel, which faults safely (zero).
    let cloned: u8 = unsafe { Probe::read(skb, v(&o.skb_cloned_byte)) }.unwrap_or(0);
    let cloned = cloned as u32 & v(&o.skb_cloned_mask) != 0;
    if let Some(t) = slot {
        // Only counted: it arrived; nothing to report, nothing to read (a
        // reused skb went through a device program first, which noticed;
        // a copy did not: its fingerprint is checked below).
        // SAFETY: `t` is this skb's TRACKED value from the lookup above:
        // preallocated map memory, aligned for the Track, valid while the
        // program runs. An LRU eviction on another CPU can give the element to
        // another skb meanwhile (aya's caveat on these lookups): then this
        // reads, and the line below writes, that skb's entry: wrong data, never
        // invalid memory.
        let flags = unsafe { (*t).flags };
        if flags & track_flags::COUNTED != 0 && !cloned {
            // SAFETY: as above.
            unsafe { (*t).flags = flags | track_flags::DELIVERED };
            return Ok(());
        }
    }
    // Only a copy can be a selected packet we did not track (or a DNS
    // datagram, reported wherever it came from).
    if slot.is_none() && !cloned && !dns {
        return Ok(());
    }
    let ev = scratch()?;
    let max = if dns {
        CAPTURE_BYTES as u32
    } else {
        FILTER_BYTES
    };
    read_packet::<Probe>(skb, o, ev, max)?;
    let fp = parse::fingerprint(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, f);
    // ICMP reaches a socket only as a copy (raw and ping sockets take
    // clones): an entry at its address is a freed skb's, whose fingerprint
    // an IPv6 echo reply shares with its request.
    let icmp = matches!((fp >> 48) as u8, 1 | 58);
    let tracked = match slot {
        // SAFETY: as above: `t` is this skb's TRACKED value from the lookup at
        // the top.
        Some(t) if !icmp && unsafe { (*t).fp } == fp => {
            // SAFETY: as above.
            let flags = unsafe { (*t).flags };
            // SAFETY: as above.
            unsafe { (*t).flags = flags | track_flags::DELIVERED };
            if flags & track_flags::COUNTED != 0 {
                return Ok(()); // only counted
            }
            true
        }
        _ => false,
    };
    let dev = device::<Probe>(skb, o);
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    if !tracked {
        // Loopback is never part of a path across the node; `--iface`
        // limits where we look, and a socket is no device.
        if dev.ifindex == 1 || v(&f.flags) & ff::IFACE != 0 {
            return Ok(());
        }
        // SAFETY: the reference the lookup returns is never read, only tested
        // for presence, so aya's caveat on `get` (a value removed and reused
        // under the reference) cannot matter.
        let netns_hit =
            v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(dev.netns) }.is_some();
        if !dns && !selected(ev, f, netns_hit) {
            return Ok(());
        }
        let track = Track {
            ts: now,
            fp,
            flags: track_flags::DELIVERED,
            _pad: 0,
            hdr: 0,
        };
        let _ = TRACKED.insert(key, track, 0);
    }
    fill_meta::<Probe>(ev, skb, o, &dev, Point::Socket, now);
    if tracked {
        ev.hdr.cap_len = 0;
    }
    if dns {
        ev.hdr.flags |= event_flags::SOCKET_READ;
    }
    output(ev);
    Ok(())
}

/// cgroup_skb egress (attached for the agent's counting only): a socket of
/// the node sends a packet.
#[inline(always)]
pub(crate) fn on_send(ctx: &SkBuffContext) {
    let f = filter();
    if v(&f.flags) & ff::DNS != 0 && dns::datagram(ctx, f, true) {
        let _ = dns::on_sock_send(ctx);
        return;
    }
    if v(&f.flags) & ff::SOCKET_COUNT != 0 {
        let _ = count_at_socket(ctx, true);
    }
}

/// A TCP segment without SYN/FIN/RST at a socket: counted in its
/// connection (see `guard::count_at_socket`). False for any other packet.
///
/// The headers come by `bpf_skb_load_bytes` (a cgroup_skb program sees the
/// packet from its network header on, both ways): one helper call instead
/// of the probe reads of the skb's fields and bytes. Constant sizes, each
/// enough for the IPv4 or IPv6 and TCP headers of a packet that long.
#[inline(always)]
fn count_at_socket(ctx: &SkBuffContext, sent: bool) -> bool {
    let Ok(ev) = scratch() else {
        return false;
    };
    let len = ctx.len();
    let skb = ctx.skb.skb as *const core::ffi::c_void;
    let dst = ev.data.as_mut_ptr() as *mut core::ffi::c_void;
    // SAFETY: `skb` is this program's context, which bpf_skb_load_bytes takes
    // as its first argument (the verifier checks that); `dst` is `ev.data`, 128
    // writable bytes, and each constant length (64, 56, 40) is no more; the
    // helper checks offset 0 plus the length against the packet and fails
    // otherwise (`len` is checked first anyway).
    let (r, n) = unsafe {
        if len >= 64 {
            (generated::bpf_skb_load_bytes(skb, 0, dst, 64), 64)
        } else if len >= 56 {
            (generated::bpf_skb_load_bytes(skb, 0, dst, 56), 56)
        } else if len >= 40 {
            (generated::bpf_skb_load_bytes(skb, 0, dst, 40), 40)
        } else {
            return false;
        }
    };
    if r != 0 {
        return false;
    }
    ev.hdr.cap_len = n;
    ev.hdr.len = len;
    ev.hdr.l3_proto = u16::from_be(ctx.skb.protocol() as u16);
    match guard::socket_counted(ev, filter()) {
        Some(t) => {
            guard::count_at_socket(ev, &t, sent);
            true
        }
        None => false,
    }
}
