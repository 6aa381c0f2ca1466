//! Conntrack: the reply direction of a selected connection, so that replies
//! (translated addresses included) are selected too.
use netflow_common::Offsets;

use crate::{globals::*, sock::AF_INET};

/// A selected packet after the hook's NAT: remember the reply direction of
/// its connection (conntrack's reply tuple, translated addresses included).
/// The key is built in a per-CPU map value, not on the stack: the late
/// programs are near the 512 bytes older verifiers allow (caller and callee).
#[inline(always)]
pub(crate) fn remember_reply<M: Mem>(skb: *const u8, o: &Offsets) {
    let Ok(nfct) = (unsafe { M::read::<u64>(skb, v(&o.skb_nfct)) }) else {
        return;
    };
    let ct = (nfct & !7) as *const u8;
    if ct.is_null() {
        return;
    }
    let Some(k) = KEY_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let k = unsafe { &mut *k };
    let tuple = unsafe { ct.add(v(&o.ct_reply_tuple) as usize) };
    let l3num: u16 = unsafe { Probe::read(tuple, v(&o.tuple_l3num)) }.unwrap_or(0);
    let proto: u8 = unsafe { Probe::read(tuple, v(&o.tuple_proto)) }.unwrap_or(0);
    let sport: u16 = unsafe { Probe::read(tuple, v(&o.tuple_src_port)) }.unwrap_or(0);
    let dport: u16 = unsafe { Probe::read(tuple, v(&o.tuple_dst_port)) }.unwrap_or(0);
    let read_addr = |dst: &mut [u8; 16], off: u32| -> Result<(), ()> {
        let src = unsafe { tuple.add(off as usize) };
        if l3num == AF_INET {
            *dst = [0; 16];
            dst[10] = 0xff;
            dst[11] = 0xff;
            let a: [u8; 4] = unsafe { Probe::read(src, 0)? };
            dst[12..16].copy_from_slice(&a);
        } else {
            unsafe {
                aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                    dst.as_mut_ptr() as *mut _,
                    16,
                    src as *const _,
                )
            };
        }
        Ok(())
    };
    if read_addr(&mut k.src, v(&o.tuple_src_addr)).is_err()
        || read_addr(&mut k.dst, v(&o.tuple_dst_addr)).is_err()
    {
        return;
    }
    k.sport = u16::from_be(sport);
    // ICMP: the destination side holds type/code, not a port.
    k.dport = if proto == 1 || proto == 58 {
        0
    } else {
        u16::from_be(dport)
    };
    k.proto = proto;
    k._pad = [0; 3];
    let _ = SEL_FLOWS.insert(k, 1, 0);
    if let Some(n) = FLOWS_ACTIVE.get_ptr_mut(0) {
        unsafe { *n = 1 };
    }
}
