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
    let family: u16 = unsafe { Btf::read(sk, v(&o.sk_family))? };
    let ev = scratch()?;
    let d = &mut ev.data;
    let l4 = match family {
        AF_INET => {
            let src: [u8; 4] = unsafe { Btf::read(sk, v(&o.sk_rcv_saddr))? };
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
            let src: [u8; 16] = unsafe { Btf::read(sk, v(&o.sk_v6_rcv_saddr))? };
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
    let sport: u16 = unsafe { Btf::read(sk, v(&o.sk_num))? };
    let dport: u16 = unsafe { Btf::read(sk, v(&o.sk_dport))? };
    d[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    d[l4 + 2..l4 + 4].copy_from_slice(&dport.to_ne_bytes());
    d[l4 + 12] = 0x50;
    ev.hdr.cap_len = (l4 + 20) as u16;
    ev.hdr.len = (l4 + 20) as u32;
    let netns: u32 = match unsafe { Btf::read::<*const u8>(sk, v(&o.sk_net)) } {
        Ok(net) => unsafe { Btf::read(net, v(&o.net_inum)) }.unwrap_or(0),
        Err(()) => 0,
    };
    let netns_hit = v(&f.flags) & ff::NETNS != 0 && unsafe { SEL_NETNS.get(netns) }.is_some();
    if !selected(ev, f, netns_hit) {
        return Ok(());
    }
    let state: u8 = unsafe { Btf::read(sk, v(&o.sk_state)) }.unwrap_or(0);
    let h = &mut ev.hdr;
    // No skb: these events describe the socket, not one packet.
    header(h, 0, point, unsafe { bpf_ktime_get_ns() });
    h.netns = netns;
    h.ifindex = 0;
    h.reason = state as u32;
    zero16(&mut h.ifname);
    output(ev);
    Ok(())
}
