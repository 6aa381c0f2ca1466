//! TCP events known by their socket (retransmissions, resets).
use aya_ebpf::helpers::bpf_ktime_get_ns;
use netflow_common::{filter_flags as ff, Point, CAPTURE_BYTES};

use crate::{
    emit::{header, output, zero16},
    globals::*,
    select::selected,
    skb::scratch,
};

pub(crate) const AF_INET: u16 = 2;
pub(crate) const AF_INET6: u16 = 10;

/// A TCP event known by its socket: IPv4/IPv6 + TCP headers are written
/// from the socket's addresses and ports, so selection and decoding work as
/// for packets. The TCP state goes in `reason`.
#[inline(always)]
pub(crate) fn on_sock(sk: *const u8, point: Point) -> Result<(), ()> {
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
    let sport: u16 = unsafe { Btf::read(sk, v(&o.sk_num))? };
    // SAFETY: as above, `__be16 skc_dport`.
    let dport: u16 = unsafe { Btf::read(sk, v(&o.sk_dport))? };
    d[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    d[l4 + 2..l4 + 4].copy_from_slice(&dport.to_ne_bytes());
    d[l4 + 12] = 0x50;
    ev.hdr.cap_len = (l4 + 20) as u16;
    ev.hdr.len = (l4 + 20) as u32;
    // SAFETY: `sk` as for `family` above: `sk_net` is the offset of the
    // `struct net *` inside `possible_net_t skc_net`, a pointer (BTF-typed in
    // turn).
    let netns: u32 = match unsafe { Btf::read::<*const u8>(sk, v(&o.sk_net)) } {
        // SAFETY: `net` is the socket's namespace, the BTF pointer read just
        // above; `net_inum` is the offset of its `ns.inum`, a u32. Were `net`
        // null (a faulted read above), `add` with this offset would be
        // formally outside any object; the fault-safe load reads zero.
        Ok(net) => unsafe { Btf::read(net, v(&o.net_inum)) }.unwrap_or(0),
        Err(()) => 0,
    };
    // SAFETY: the reference the lookup returns is never read, only tested for
    // presence, so aya's caveat on `get` (a value removed and reused under the
    // reference) cannot matter.
    let netns_hit = v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(netns) }.is_some();
    if !selected(ev, f, netns_hit) {
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
    h.reason = state as u32;
    zero16(&mut h.ifname);
    output(ev);
    Ok(())
}
