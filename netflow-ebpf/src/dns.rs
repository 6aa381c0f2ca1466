//! The events mode's DNS: each datagram to or from a DNS port where a
//! socket of the node sends it and where one takes it, with its bytes, so
//! that each lookup is named by its query and answer without a program on
//! any other packet's path. Two ways in, the best the kernel has: fentry on
//! the UDP paths alone (`ip_send_skb`, `ip6_send_skb` where a UDP socket
//! sends, `udp_queue_rcv_one_skb` and its IPv6 twin where one takes a
//! datagram: no TCP segment passes them), else the two cgroup_skb programs, which every
//! packet of every socket runs and which test its ports in place.
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::SkBuffContext};
use netflow_common::{
    event_flags, filter_flags as ff, parse, track_flags, Filter, Point, Track, CAPTURE_BYTES,
    MAX_DNS_PORTS,
};

use crate::{
    emit::output,
    globals::*,
    skb::{device, fill_meta, read_packet, scratch},
};

/// One of the DNS ports?
#[inline(always)]
fn dns_port(f: &Filter, sport: u16, dport: u16) -> bool {
    let mut i = 0;
    while i < MAX_DNS_PORTS {
        let p = v(&f.dns_ports[i]);
        if p != 0 && (p == sport || p == dport) {
            return true;
        }
        i += 1;
    }
    false
}

/// fentry on a UDP path: `skb` a datagram a socket of the node sends
/// (`sent`) or takes. Nothing but UDP runs these functions, so the ports
/// are read from the packet's bytes, after they are copied. A DNS
/// datagram is reported as the cgroup programs report it: sent, it is
/// tracked; taken, a tracked one is marked delivered (a free of it later is
/// after delivery) and reported header-only, an untracked one (from off
/// the node) with its bytes. Loopback (either address) is left out.
#[inline(always)]
pub(crate) fn on_udp<M: Mem>(skb: *const u8, sent: bool) -> Result<(), ()> {
    let f = filter();
    if v(&f.flags) & ff::DNS == 0 {
        return Ok(());
    }
    let o = offsets();
    let ev = scratch()?;
    read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
    let cap = ev.hdr.cap_len as usize;
    let t = parse::outer(&ev.data, cap, ev.hdr.l3_proto).ok_or(())?;
    if t.proto != 17 || !t.has_ports || !dns_port(f, t.sport, t.dport) {
        return Ok(());
    }
    if loopback(&ev.data, &t) {
        return Ok(());
    }
    let dev = device::<M>(skb, o);
    let fp = parse::fingerprint(&ev.data, cap, ev.hdr.l3_proto, f);
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = skb as u64;
    let mut header_only = false;
    let point = if sent {
        Point::SockSend
    } else {
        if let Some(tr) = TRACKED.get_ptr_mut(key) {
            // SAFETY: `tr` is this skb's TRACKED value: preallocated map
            // memory, aligned for the Track, valid while the program runs; an
            // LRU eviction giving it to another skb meanwhile gives wrong
            // flags, not a fault.
            unsafe {
                header_only = (*tr).fp == fp;
                (*tr).flags |= track_flags::DELIVERED;
            }
        }
        Point::Socket
    };
    if sent || !header_only {
        let flags = if sent { 0 } else { track_flags::DELIVERED };
        let track = Track {
            ts: now,
            fp,
            flags,
            _pad: 0,
            hdr: 0,
        };
        let _ = TRACKED.insert(key, track, 0);
    }
    fill_meta::<M>(ev, skb, o, &dev, point, now);
    ev.hdr.flags |= event_flags::DNS;
    if header_only {
        ev.hdr.cap_len = 0;
    }
    output(ev);
    Ok(())
}

/// Is either address loopback (127.0.0.0/8, ::1)?
#[inline(always)]
fn loopback(buf: &[u8; CAPTURE_BYTES], t: &parse::Tuple) -> bool {
    if t.addr_len == 4 {
        let a = t.addr & 0x7f;
        let b = (t.addr + 4) & 0x7f;
        return buf[a] == 127 || buf[b] == 127;
    }
    let one = |at: usize| {
        let mut i = 0;
        let mut zero = true;
        while i < 15 {
            if buf[(at + i) & 0x7f] != 0 {
                zero = false;
            }
            i += 1;
        }
        zero && buf[(at + 15) & 0x7f] == 1
    };
    one(t.addr) || one(t.addr + 16)
}

/// The events mode: a DNS datagram a socket sends, reported with its bytes
/// and tracked (a socket of the node that takes it, a device or a free
/// then joins it by its skb). Not over loopback: a resolver of the node's
/// own is no pod's lookup, and its answer is not looked at either.
#[inline(always)]
pub(crate) fn on_sock_send(ctx: &SkBuffContext) -> Result<(), ()> {
    let skb = ctx.skb.skb as *const u8;
    let o = offsets();
    let dev = device::<Probe>(skb, o);
    if dev.ifindex == 1 || v(&filter().flags) & ff::IFACE != 0 {
        return Ok(());
    }
    let ev = scratch()?;
    read_packet::<Probe>(skb, o, ev, CAPTURE_BYTES as u32)?;
    let fp = parse::fingerprint(&ev.data, ev.hdr.cap_len as usize, ev.hdr.l3_proto, filter());
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    let track = Track {
        ts: now,
        fp,
        flags: 0,
        _pad: 0,
        hdr: 0,
    };
    let _ = TRACKED.insert(skb as u64, track, 0);
    fill_meta::<Probe>(ev, skb, o, &dev, Point::SockSend, now);
    ev.hdr.flags |= event_flags::DNS;
    output(ev);
    Ok(())
}

/// Is the packet a UDP datagram to or from one of the DNS ports? Read in
/// place: a cgroup_skb program sees the packet from its network header on,
/// both ways, and the IP and UDP headers are in its linear part by then.
/// The one test every packet of every socket pays in the events mode: a
/// few loads, no helper call.
#[inline(always)]
pub(crate) fn datagram(ctx: &SkBuffContext, f: &Filter) -> bool {
    // SAFETY: `ctx.skb.skb` is this program's context, the kernel's
    // `__sk_buff` as the verifier checks its accesses (`data` and
    // `data_end` become the packet's bounds for a privileged loader).
    let (data, end) = unsafe {
        (
            (*ctx.skb.skb).data as usize,
            (*ctx.skb.skb).data_end as usize,
        )
    };
    let l4 = match u16::from_be(ctx.skb.protocol() as u16) {
        0x0800 => {
            if data + 20 > end {
                return false;
            }
            // SAFETY: `data..data + 20` is inside the packet (checked above,
            // as the verifier requires).
            let (vihl, proto) = unsafe { (*(data as *const u8), *((data + 9) as *const u8)) };
            if proto != 17 {
                return false;
            }
            data + ((vihl & 0x0f) as usize) * 4
        }
        0x86dd => {
            if data + 40 > end {
                return false;
            }
            // SAFETY: as above, `data..data + 40`.
            if unsafe { *((data + 6) as *const u8) } != 17 {
                return false;
            }
            data + 40
        }
        _ => return false,
    };
    if l4 + 4 > end {
        return false;
    }
    // SAFETY: `l4..l4 + 4` is inside the packet (checked above); byte
    // loads, so no alignment is assumed.
    let b = unsafe {
        [
            *(l4 as *const u8),
            *((l4 + 1) as *const u8),
            *((l4 + 2) as *const u8),
            *((l4 + 3) as *const u8),
        ]
    };
    let (sport, dport) = (
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    );
    dns_port(f, sport, dport)
}
