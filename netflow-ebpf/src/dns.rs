//! The events mode's DNS: each datagram to or from a DNS port where a
//! socket of the node sends it and where one takes it, with its bytes, so
//! that each lookup is named by its query and answer without a program on
//! any other packet's path. Two ways in, the best the kernel has: fentry on
//! the UDP paths alone (`ip_send_skb`, `ip6_send_skb` where a UDP socket
//! sends, `udp_queue_rcv_one_skb` and its IPv6 twin where one takes a
//! datagram: no TCP segment passes them), else the two cgroup_skb programs, which every
//! packet of every socket runs and which test its ports in place. The
//! same places report the first datagram each way of every other UDP
//! conversation, and ICMP echo's first request and reply (see `conv`;
//! with fentry, by programs of their own: a raw or ping socket builds a
//! request in `__ip_make_skb`, fexit, and takes a reply in
//! `sock_queue_rcv_skb_reason`).
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::SkBuffContext};
use netflow_common::{
    event_flags, filter_flags as ff, parse, track_flags, Filter, Point, Track, CAPTURE_BYTES,
    MAX_DNS_PORTS,
};

use crate::{
    conv,
    emit::output,
    globals::*,
    skb::{device, fill_meta, read_packet, scratch},
};

/// ICMP echo's types, `sent` (a request) or taken (a reply), for the
/// IP protocol `proto` (ICMP or ICMPv6); none for another protocol.
#[inline(always)]
fn echo_type(proto: u8, sent: bool) -> Option<u8> {
    match (proto, sent) {
        (1, true) => Some(8),
        (1, false) => Some(0),
        (58, true) => Some(128),
        (58, false) => Some(129),
        _ => None,
    }
}

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
/// (`sent`) or takes. Nothing but UDP (and raw and ping sockets' sends)
/// runs these functions, never TCP, so the ports are read from the
/// packet's bytes, after they are copied. A DNS datagram, or the first
/// each way of a UDP conversation, is reported as the cgroup programs
/// report it: sent, it is
/// tracked; taken, a tracked one is marked delivered (a free of it later is
/// after delivery) and reported header-only, an untracked one (from off
/// the node) with its bytes. Loopback (either address) is left out.
/// `echo`: the program reads ICMP echo requests sent and replies taken
/// (conversations too, see `conv`) instead of UDP.
#[inline(always)]
pub(crate) fn on_datagram<M: Mem>(skb: *const u8, sent: bool, echo: bool) -> Result<(), ()> {
    let f = filter();
    if v(&f.flags) & ff::DNS == 0 || skb.is_null() {
        return Ok(());
    }
    let o = offsets();
    let ev = scratch()?;
    read_packet::<M>(skb, o, ev, CAPTURE_BYTES as u32)?;
    let cap = ev.hdr.cap_len as usize;
    if sent {
        // The skb's protocol is set later, by ip_output / ip6_output: the
        // IP header says which it is.
        ev.hdr.l3_proto = match ev.data[0] >> 4 {
            4 if cap > 0 => 0x0800,
            6 if cap > 0 => 0x86dd,
            _ => return Ok(()),
        };
    }
    let t = parse::outer(&ev.data, cap, ev.hdr.l3_proto).ok_or(())?;
    let udp = t.proto == 17 && t.has_ports && !echo;
    let echo = if echo { echo_type(t.proto, sent) } else { None };
    if !udp && echo.is_none() || loopback(&ev.data, &t) {
        return Ok(());
    }
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    let (sport, dport) = if udp {
        (t.sport, t.dport)
    } else {
        // ICMP echo, with its id in the source port's place.
        if v(&f.flags) & ff::UDP_CONVS == 0 || t.l4 + 8 > cap || Some(ev.data[t.l4 & 0x7f]) != echo
        {
            return Ok(());
        }
        if !sent {
            // SAFETY: `skb` is the kernel's `struct sk_buff *` this
            // program got; `skb_head` the BTF offset of its `head` pointer,
            // read as plain data through `M` (fault-safe).
            conv::echo_taken(
                unsafe { M::read::<u64>(skb, v(&o.skb_head)) }.unwrap_or(0),
                now,
            );
        }
        (t.flow_sport, 0)
    };
    if !udp || !dns_port(f, sport, dport) {
        // Another datagram: reported if it is the first its way of its
        // conversation.
        if v(&f.flags) & ff::UDP_CONVS == 0 {
            return Ok(());
        }
        let v6 = t.addr_len == 16;
        let k = conv::key(if v6 { 6 } else { 4 }, t.proto).ok_or(())?;
        let (local, remote) = if sent {
            (t.addr, t.addr + t.addr_len)
        } else {
            (t.addr + t.addr_len, t.addr)
        };
        let mut i = 0;
        while i < 16 {
            if i < 4 || v6 {
                k.src[i] = ev.data[(local + i) & 0x7f];
                k.dst[i] = ev.data[(remote + i) & 0x7f];
            }
            i += 1;
        }
        (k.sport, k.dport) = if sent || !udp {
            (sport, dport)
        } else {
            (dport, sport)
        };
        if !conv::first(k, sent, now) {
            return Ok(());
        }
    }
    let dev = device::<M>(skb, o);
    let fp = parse::fingerprint(&ev.data, cap, ev.hdr.l3_proto, f);
    let key = skb as u64;
    let mut header_only = false;
    let point = if sent {
        Point::SockSend
    } else {
        // An echo reply a socket takes is a copy, new: an entry at its
        // address is a freed skb's (an IPv6 echo request's has the same
        // fingerprint).
        if let Some(tr) = TRACKED.get_ptr_mut(key).filter(|_| echo.is_none()) {
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
    ev.hdr.flags |= event_flags::SOCKET_READ;
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
    ev.hdr.flags |= event_flags::SOCKET_READ;
    output(ev);
    Ok(())
}

/// Is the packet one the events mode reads at its socket: a UDP datagram
/// to or from one of the DNS ports, or (with [`ff::UDP_CONVS`]) the first
/// one its way (`sent` by the socket, else taken) of a UDP conversation
/// or of an ICMP echo one (a request sent, a reply taken)?
/// Read in place: a cgroup_skb program sees the packet from its network
/// header on, both ways, and the IP and UDP headers are in its linear part
/// by then. The one test every packet of every socket pays in the events
/// mode: a few loads, no helper call (a UDP datagram not to a DNS port: a
/// lookup in CONVS).
#[inline(always)]
pub(crate) fn datagram(ctx: &SkBuffContext, f: &Filter, sent: bool) -> bool {
    // SAFETY: `ctx.skb.skb` is this program's context, the kernel's
    // `__sk_buff` as the verifier checks its accesses (`data` and
    // `data_end` become the packet's bounds for a privileged loader).
    let (data, end) = unsafe {
        (
            (*ctx.skb.skb).data as usize,
            (*ctx.skb.skb).data_end as usize,
        )
    };
    let (l4, v6, proto) = match u16::from_be(ctx.skb.protocol() as u16) {
        0x0800 => {
            if data + 20 > end {
                return false;
            }
            // SAFETY: `data..data + 20` is inside the packet (checked above,
            // as the verifier requires).
            let (vihl, proto) = unsafe { (*(data as *const u8), *((data + 9) as *const u8)) };
            if proto != 17 && proto != 1 {
                return false;
            }
            (data + ((vihl & 0x0f) as usize) * 4, false, proto)
        }
        0x86dd => {
            if data + 40 > end {
                return false;
            }
            // SAFETY: as above, `data..data + 40`.
            let proto = unsafe { *((data + 6) as *const u8) };
            if proto != 17 && proto != 58 {
                return false;
            }
            (data + 40, true, proto)
        }
        _ => return false,
    };
    if proto != 17 {
        return echo_in_place(ctx, f, sent, data, end, l4, v6, proto);
    }
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
    if dns_port(f, sport, dport) {
        return true;
    }
    if v(&f.flags) & ff::UDP_CONVS == 0 {
        return false;
    }
    let (local, remote) = if sent { (sport, dport) } else { (dport, sport) };
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    first_in_place(data, end, v6, 17, sent, (local, remote), now)
}

/// `datagram` for ICMP (`proto` 1) or ICMPv6 (58) at `l4`: an echo
/// request sent or a reply taken, the first its way of its conversation
/// (keyed by the echo id). A reply taken is noted in ECHO_TAKEN either
/// way: its original's free is no drop.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn echo_in_place(
    ctx: &SkBuffContext,
    f: &Filter,
    sent: bool,
    data: usize,
    end: usize,
    l4: usize,
    v6: bool,
    proto: u8,
) -> bool {
    if v(&f.flags) & ff::UDP_CONVS == 0 || l4 + 8 > end {
        return false;
    }
    // SAFETY: `l4..l4 + 8` is inside the packet (checked above): the
    // type, and the echo id at 4..6; byte loads.
    let (ty, id) = unsafe {
        (
            *(l4 as *const u8),
            u16::from_be_bytes([*((l4 + 4) as *const u8), *((l4 + 5) as *const u8)]),
        )
    };
    if Some(ty) != echo_type(proto, sent) {
        return false;
    }
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    let now = unsafe { bpf_ktime_get_ns() };
    if !sent {
        // SAFETY: the context pointer is the kernel's `struct sk_buff *`
        // (see `deliver::on_deliver`); `skb_head` the BTF offset of its
        // `head` pointer, read through bpf_probe_read_kernel (fault-safe).
        let head = unsafe { Probe::read::<u64>(ctx.skb.skb as *const u8, v(&offsets().skb_head)) };
        conv::echo_taken(head.unwrap_or(0), now);
    }
    first_in_place(data, end, v6, proto, sent, (id, 0), now)
}

/// The conversation of the packet at `data` (an IP header of the version
/// `v6` says, checked against `end` by the caller) with the socket's own
/// port and the peer's `ports`: is this the first its way (see
/// `conv::first`)?
#[inline(always)]
fn first_in_place(
    data: usize,
    end: usize,
    v6: bool,
    proto: u8,
    sent: bool,
    ports: (u16, u16),
    now: u64,
) -> bool {
    let Some(k) = conv::key(if v6 { 6 } else { 4 }, proto) else {
        return false;
    };
    // The addresses: IPv4's at 12 and 16, IPv6's at 8 and 24; inside the
    // 20 or 40 bytes the caller checked.
    let (src, dst, n) = if v6 {
        (data + 8, data + 24, 16)
    } else {
        (data + 12, data + 16, 4)
    };
    if (if v6 { data + 40 } else { data + 20 }) > end {
        return false;
    }
    let (local, remote) = if sent { (src, dst) } else { (dst, src) };
    let mut i = 0;
    while i < 16 {
        if i < n {
            // SAFETY: `local + i` and `remote + i` are inside the IP header
            // checked against `end` above (i < 4 for IPv4, < 16 for IPv6).
            unsafe {
                k.src[i] = *((local + i) as *const u8);
                k.dst[i] = *((remote + i) as *const u8);
            }
        }
        i += 1;
    }
    (k.sport, k.dport) = ports;
    conv::first(k, sent, now)
}
