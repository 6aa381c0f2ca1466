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
    // SAFETY: `skb` is the kernel `struct sk_buff *` the program got, which
    // either `M` reads safely (see `Mem`: a verifier-checked, fault-safe load,
    // or bpf_probe_read_kernel); `skb_nfct` is the BTF offset of its
    // `unsigned long _nfct`, read as a u64.
    let Ok(nfct) = (unsafe { M::read::<u64>(skb, v(&o.skb_nfct)) }) else {
        return;
    };
    let ct = (nfct & !7) as *const u8;
    if ct.is_null() {
        return;
    }
    let Some(k) = crate::nest::slot(&KEY_SCRATCH) else {
        return;
    };
    // SAFETY: `k` is this program's KEY_SCRATCH slot: map memory, 8-aligned
    // for the FlowKey, that lives as long as the map; no other CPU uses it (a
    // program runs with migration disabled), and a program nesting on this
    // CPU (a softirq hook inside OUTPUT's, say) uses the next level's slot
    // (see `nest`). Nothing else in this program holds a reference to it.
    let k = unsafe { &mut *k };
    // SAFETY: `ct` is the skb's `struct nf_conn *` (`_nfct` without its 3
    // ctinfo bits, non-null) and `ct_reply_tuple` the offset of
    // `tuplehash[IP_CT_DIR_REPLY].tuple` in it, so `tuple` stays inside the
    // conntrack entry; only the probe helper reads through it.
    let tuple = unsafe { ct.add(v(&o.ct_reply_tuple) as usize) };
    // SAFETY: `tuple` is that reply `struct nf_conntrack_tuple`; `tuple_l3num`
    // is the BTF offset of its `u16 src.l3num`, read through
    // bpf_probe_read_kernel, which faults safely (zero).
    let l3num: u16 = unsafe { Probe::read(tuple, v(&o.tuple_l3num)) }.unwrap_or(0);
    // SAFETY: as above, `u8 dst.protonum`.
    let proto: u8 = unsafe { Probe::read(tuple, v(&o.tuple_proto)) }.unwrap_or(0);
    // SAFETY: as above, `__be16 src.u.all`.
    let sport: u16 = unsafe { Probe::read(tuple, v(&o.tuple_src_port)) }.unwrap_or(0);
    // SAFETY: as above, `__be16 dst.u.all`.
    let dport: u16 = unsafe { Probe::read(tuple, v(&o.tuple_dst_port)) }.unwrap_or(0);
    let read_addr = |dst: &mut [u8; 16], off: u32| -> Result<(), ()> {
        // SAFETY: `off` is the offset of `src.u3` or `dst.u3` in the tuple (the
        // two calls below), so `src` stays inside the conntrack entry.
        let src = unsafe { tuple.add(off as usize) };
        if l3num == AF_INET {
            *dst = [0; 16];
            dst[10] = 0xff;
            dst[11] = 0xff;
            // SAFETY: `src` is the tuple's IPv4 address (`u3.ip`), read through
            // bpf_probe_read_kernel, which faults safely; any 4 bytes are a
            // valid `[u8; 4]`.
            let a: [u8; 4] = unsafe { Probe::read(src, 0)? };
            dst[12..16].copy_from_slice(&a);
        } else {
            // SAFETY: `dst` is the key's `&mut [u8; 16]`, 16 writable bytes;
            // `src` is the tuple's 16-byte IPv6 address (`u3.in6`), an address
            // only the helper reads: it faults safely, zeroing `dst`.
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
        // SAFETY: `n` is FLOWS_ACTIVE's one value (an Array: one u32 shared by
        // all CPUs, allocated with the map, aligned). Other CPUs may store the
        // same 1, or read it (`select::reply_of_selected`), at the same time: a
        // plain aligned 32-bit store, one BPF instruction that is never torn,
        // though not an atomic in Rust's model.
        unsafe { *n = 1 };
    }
}
