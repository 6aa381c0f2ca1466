//! TCP events known by their socket (retransmissions, resets, state
//! changes).
use aya_ebpf::helpers::bpf_ktime_get_ns;
use netflow_common::{filter_flags as ff, sock_class, Point, SockCounts, CAPTURE_BYTES};

use crate::{
    emit::{header, output, zero16},
    globals::*,
    select::reported,
    skb::scratch,
};

pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;

/// TCP states (include/net/tcp_states.h).
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const TCP_LISTEN: i32 = 10;
const ECONNRESET: i32 = 104;
const EPIPE: i32 = 32;

/// The namespace of a socket (0 if unreadable).
#[inline(always)]
fn sock_netns(sk: *const u8) -> u32 {
    let o = offsets();
    // SAFETY: `sk` is the tracepoint's BTF-typed `struct sock *`, read with
    // a verifier-checked, fault-safe load (see `Btf`): `sk_net` is the offset
    // of the `struct net *` inside `possible_net_t skc_net`.
    match unsafe { Btf::read::<*const u8>(sk, v(&o.sk_net)) } {
        // SAFETY: `net` is the socket's namespace, the BTF pointer read just
        // above; `net_inum` is the offset of its `ns.inum`, a u32. Were `net`
        // null (a faulted read above), `add` with this offset would be
        // formally outside any object; the fault-safe load reads zero.
        Ok(net) => unsafe { Btf::read(net, v(&o.net_inum)) }.unwrap_or(0),
        Err(()) => 0,
    }
}

/// A TCP state change: counted per namespace in SOCK_COUNTS (a handful of
/// adds per connection, never per packet); a failed connect is also an
/// event, with the socket's error.
#[inline(always)]
pub(crate) fn on_state(sk: *const u8, old: i32, new: i32) -> Result<(), ()> {
    let class = match (old, new) {
        (TCP_SYN_SENT, TCP_ESTABLISHED) => sock_class::OPENED_ACTIVE,
        (TCP_SYN_RECV, TCP_ESTABLISHED) => sock_class::OPENED_PASSIVE,
        (TCP_SYN_SENT, TCP_CLOSE) => sock_class::CONNECT_FAILED,
        (TCP_LISTEN, _) | (TCP_CLOSE, _) => return Ok(()),
        (_, TCP_CLOSE) => sock_class::CLOSED,
        _ => return Ok(()),
    };
    let o = offsets();
    let err: i32 = if new == TCP_CLOSE {
        // SAFETY: `sk` is the tracepoint's BTF-typed `struct sock *`, read
        // with a fault-safe load; `sk_err` is the BTF offset of its `int
        // sk_err`.
        unsafe { Btf::read(sk, v(&o.sk_err)) }.unwrap_or(0)
    } else {
        0
    };
    let netns = sock_netns(sk);
    let n = count(netns, class);
    if class == sock_class::CLOSED && (err == ECONNRESET || err == EPIPE) {
        count(netns, sock_class::RESET);
    }
    let every = v(&filter().sample_every);
    let sampled = class == sock_class::OPENED_ACTIVE && every != 0 && n % every as u64 == 0;
    if class == sock_class::CONNECT_FAILED || sampled {
        on_sock(
            sk,
            Point::SockState,
            Some((err as u32, ((old as u64) << 8) | new as u64)),
        )?;
    }
    Ok(())
}

/// One more `class` for `netns` (this CPU's value; the daemon sums them):
/// the new count (0 if none could be kept).
#[inline(always)]
fn count(netns: u32, class: usize) -> u64 {
    if class >= sock_class::N {
        return 0;
    }
    if SOCK_COUNTS.get_ptr_mut(&netns).is_none() {
        let _ = SOCK_COUNTS.insert(&netns, &SockCounts::default(), 0);
    }
    if let Some(c) = SOCK_COUNTS.get_ptr_mut(&netns) {
        // SAFETY: `c` is this CPU's value of a per-CPU map: preallocated,
        // aligned map memory that no other CPU writes; `class` is checked
        // in bounds above. An LRU eviction meanwhile would count into a
        // reused element, not fault.
        unsafe {
            (*c).n[class] += 1;
            return (*c).n[class];
        }
    }
    0
}

/// A TCP event known by its socket: IPv4/IPv6 + TCP headers are written
/// from the socket's addresses and ports, so selection and decoding work as
/// for packets. The TCP state goes in `reason`, unless `note` gives the
/// event's reason and location.
#[inline(always)]
pub(crate) fn on_sock(sk: *const u8, point: Point, note: Option<(u32, u64)>) -> Result<(), ()> {
    let f = filter();
    let o = offsets();
    // SAFETY: `sk` is the tracepoint's BTF-typed `struct sock *`
    // (tcp_retransmit_skb, tcp_send_reset: non-null), read with a
    // verifier-checked, fault-safe load (see `Btf`); `sk_family` is the BTF
    // offset of its `unsigned short skc_family`.
    let family: u16 = unsafe { Btf::read(sk, v(&o.sk_family))? };
    let ev = scratch()?;
    let d = &mut ev.data;
    let l4 = match family {
        AF_INET => {
            // SAFETY: `sk` as above, `__be32 skc_rcv_saddr`: any 4 bytes are a
            // valid `[u8; 4]`.
            let src: [u8; 4] = unsafe { Btf::read(sk, v(&o.sk_rcv_saddr))? };
            // SAFETY: as above, `__be32 skc_daddr`.
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
            // SAFETY: `sk` as above, `struct in6_addr skc_v6_rcv_saddr`, 16
            // bytes.
            let src: [u8; 16] = unsafe { Btf::read(sk, v(&o.sk_v6_rcv_saddr))? };
            // SAFETY: as above, `struct in6_addr skc_v6_daddr`.
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
    // SAFETY: `sk` as for `family` above, `__u16 skc_num`.
    let mut sport: u16 = unsafe { Btf::read(sk, v(&o.sk_num))? };
    if sport == 0 {
        // Unhashed on its way to CLOSE: the port as `inet_sport` keeps it.
        // SAFETY: a TCP socket's `struct sock` is the start of its `struct
        // inet_sock`, whose `__be16 inet_sport` is at `sk_sport`: past
        // `struct sock` as BTF types `sk`, so read with the checked helper
        // (zeros on a fault), any 2 bytes a valid u16.
        sport = u16::from_be(unsafe { Probe::read::<u16>(sk, v(&o.sk_sport)) }.unwrap_or(0));
    }
    // SAFETY: as above, `__be16 skc_dport`.
    let dport: u16 = unsafe { Btf::read(sk, v(&o.sk_dport))? };
    d[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    d[l4 + 2..l4 + 4].copy_from_slice(&dport.to_ne_bytes());
    d[l4 + 12] = 0x50;
    ev.hdr.cap_len = (l4 + 20) as u16;
    ev.hdr.len = (l4 + 20) as u32;
    let netns = sock_netns(sk);
    // SAFETY: the reference the lookup returns is never read, only tested for
    // presence, so aya's caveat on `get` (a value removed and reused under the
    // reference) cannot matter.
    let netns_hit = v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(netns) }.is_some();
    if !reported(ev, f, netns_hit) {
        return Ok(());
    }
    // SAFETY: `sk` as for `family` above, `volatile unsigned char skc_state`.
    let state: u8 = unsafe { Btf::read(sk, v(&o.sk_state)) }.unwrap_or(0);
    let h = &mut ev.hdr;
    // No skb: these events describe the socket, not one packet.
    // SAFETY: bpf_ktime_get_ns takes no arguments and only reads the monotonic
    // clock; every program type here may call it.
    header(h, 0, point, unsafe { bpf_ktime_get_ns() });
    h.netns = netns;
    h.ifindex = 0;
    match note {
        Some((reason, location)) => {
            h.reason = reason;
            h.location = location;
        }
        None => h.reason = state as u32,
    }
    zero16(&mut h.ifname);
    output(ev);
    Ok(())
}
