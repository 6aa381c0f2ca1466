//! Reading an skb: the device it is on, the event metadata, the packet
//! bytes; the per-CPU event being built.
use aya_ebpf::helpers::generated;
use netflow_common::{Offsets, PacketEvent, Point, CAPTURE_BYTES};

use crate::{
    emit::{header, zero16},
    globals::*,
};

/// The device an skb is on: pointer, ifindex, netns inode (zeros if none).
pub(crate) struct Dev {
    pub ptr: *const u8,
    pub ifindex: u32,
    pub netns: u32,
}

#[inline(always)]
pub(crate) fn device<M: Mem>(skb: *const u8, o: &Offsets) -> Dev {
    // SAFETY: `skb` is the kernel `struct sk_buff *` the program got, which
    // either `M` reads safely (see `Mem`: a verifier-checked, fault-safe load,
    // or bpf_probe_read_kernel); `skb_dev` is the loader's BTF offset of its
    // `dev` field, a pointer: any value is a valid `*const u8`.
    let ptr: *const u8 = unsafe { M::read(skb, v(&o.skb_dev)) }.unwrap_or(core::ptr::null());
    dev_at::<M>(ptr, o)
}

#[inline(always)]
pub(crate) fn dev_at<M: Mem>(ptr: *const u8, o: &Offsets) -> Dev {
    if ptr.is_null() {
        return Dev {
            ptr,
            ifindex: 0,
            netns: 0,
        };
    }
    // SAFETY: `ptr` is a non-null `struct net_device *` (the skb's `dev`, the
    // hook state's `in`/`out`, a route's `dst->dev` or `nhc_dev`), BTF-typed
    // where `M` is `Btf` (see `Mem`); `dev_ifindex` is the BTF offset of its
    // `int ifindex`, read as a u32.
    let ifindex = unsafe { M::read(ptr, v(&o.dev_ifindex)) }.unwrap_or(0);
    // SAFETY: as above: `dev_nd_net` is the offset of the `struct net *` inside
    // its `possible_net_t nd_net`, a pointer (any value is valid).
    let netns = match unsafe { M::read::<*const u8>(ptr, v(&o.dev_nd_net)) } {
        // SAFETY: `net` is the device's namespace and `net_inum` the offset of
        // its `ns.inum`, a u32. Were `net` null (a failed read above), `add`
        // with this offset would be formally outside any object; the load or
        // helper only fails on the address (zero).
        Ok(net) => unsafe { M::read(net, v(&o.net_inum)) }.unwrap_or(0),
        Err(()) => 0,
    };
    Dev {
        ptr,
        ifindex,
        netns,
    }
}

/// The event this program builds: its level's SCRATCH slot (see `nest`).
/// The global functions of `once` call this again for the same slot.
#[inline(always)]
pub(crate) fn scratch() -> Result<&'static mut PacketEvent, ()> {
    let p = crate::nest::slot(&SCRATCH).ok_or(())?;
    // SAFETY: `p` is this program's SCRATCH slot: map memory, 8-aligned for
    // the PacketEvent, that lives as long as the map (so through any program:
    // the `'static`). No other CPU uses it (a program runs with migration
    // disabled), and a program nesting on this CPU takes the next level's slot
    // (see `nest`), so no other program writes it while this one runs.
    //
    // Within this program, each call makes a new `&mut` to the slot: the
    // global functions of `once` call this while `hop::on_hop` still holds its
    // own. Rust's aliasing rule is broken there in form only: those are
    // separate BPF functions the compiler cannot see into (`inline(never)`,
    // `extern "C"`), and they only read the slot.
    Ok(unsafe { &mut *p })
}

/// Everything but the packet bytes.
#[inline(always)]
pub(crate) fn fill_meta<M: Mem>(
    ev: &mut PacketEvent,
    skb: *const u8,
    o: &Offsets,
    dev: &Dev,
    point: Point,
    now: u64,
) {
    let h = &mut ev.hdr;
    header(h, skb as u64, point, now);
    // SAFETY: `skb` is the kernel `struct sk_buff *` the program got, which
    // either `M` reads safely (see `Mem`: a verifier-checked, fault-safe load,
    // or bpf_probe_read_kernel); `skb_mark` is the BTF offset of its
    // `__u32 mark`.
    h.mark = unsafe { M::read(skb, v(&o.skb_mark)) }.unwrap_or(0);
    h.ifindex = dev.ifindex;
    h.netns = dev.netns;
    if dev.ptr.is_null() {
        zero16(&mut h.ifname);
        // SAFETY: (the `else if` below) `dev.ptr` is non-null there: a
        // `struct net_device *` (see `dev_at`); `dev_name` is the BTF offset of
        // its `char name[IFNAMSIZ]`, 16 bytes, any of which make a valid
        // `[u8; 16]`.
    } else if let Ok(name) = unsafe { M::read::<[u8; 16]>(dev.ptr, v(&o.dev_name)) } {
        h.ifname = name;
    } else {
        zero16(&mut h.ifname);
    }
}

/// Length, ethertype and the bytes from the network header to the end of
/// the linear buffer. On 64-bit kernels `tail` is an offset from `head`, like
/// `network_header`, so no pointer arithmetic on `data` is needed (the header
/// may lie before `data` once the stack pulled it).
#[inline(always)]
pub(crate) fn read_packet<M: Mem>(
    skb: *const u8,
    o: &Offsets,
    ev: &mut PacketEvent,
    max: u32,
) -> Result<(), ()> {
    let h = &mut ev.hdr;
    h.cap_len = 0;
    // SAFETY: `skb` is the kernel `struct sk_buff *` the program got, which
    // either `M` reads safely (see `Mem`: a verifier-checked, fault-safe load,
    // or bpf_probe_read_kernel); `skb_len` is the BTF offset of its
    // `unsigned int len`.
    h.len = unsafe { M::read(skb, v(&o.skb_len))? };
    // SAFETY: as above, `__be16 protocol`.
    let proto: u16 = unsafe { M::read(skb, v(&o.skb_protocol))? };
    h.l3_proto = u16::from_be(proto);
    // SAFETY: as above, `__u16 network_header`.
    let nh: u16 = unsafe { M::read(skb, v(&o.skb_network_header))? };
    // SAFETY: as above, `sk_buff_data_t tail`, a u32 offset from `head` on
    // 64-bit kernels.
    let tail: u32 = unsafe { M::read(skb, v(&o.skb_tail))? };
    if nh == 0xffff || tail <= nh as u32 {
        return Ok(());
    }
    let avail = tail - nh as u32;
    let n = if avail > max { max } else { avail };
    let n = if n > CAPTURE_BYTES as u32 {
        CAPTURE_BYTES as u32
    } else {
        n
    };
    // SAFETY: as above, `unsigned char *head`: any value is a valid pointer.
    let head: *const u8 = unsafe { M::read(skb, v(&o.skb_head))? };
    // Constant read sizes: older verifiers lose a variable size's bounds
    // when the compiler spills it. Reading past `tail` stays inside the
    // head buffer (`end` and the shared info follow it); only `n` bytes count.
    // SAFETY: (`head.add`) `nh < tail`, both offsets into the head buffer
    // `head` points to, so `head + nh` stays inside it. Only a failed read
    // could leave `head` null here: the `add` would then be formally outside
    // any object, and the helper below would fail on the address, leaving
    // `cap_len` 0.
    let (dst, src) =
        (
            ev.data.as_mut_ptr() as *mut core::ffi::c_void,
            unsafe { head.add(nh as usize) } as *const core::ffi::c_void,
        );
    // SAFETY: `dst` is `ev.data`, CAPTURE_BYTES (128) writable bytes of the
    // event (FILTER_BYTES, 64, is fewer); `src` is only an address to
    // bpf_probe_read_kernel, which checks it and, on a fault, zeroes `dst` and
    // fails. Past `tail`, a full-size read stays inside the head buffer's
    // allocation (`end` and the shared info follow); only `n` bytes count.
    let r = unsafe {
        if n <= FILTER_BYTES {
            generated::bpf_probe_read_kernel(dst, FILTER_BYTES, src)
        } else {
            generated::bpf_probe_read_kernel(dst, CAPTURE_BYTES as u32, src)
        }
    };
    if r == 0 {
        ev.hdr.cap_len = n as u16;
    }
    Ok(())
}
