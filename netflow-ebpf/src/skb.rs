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
    let ifindex = unsafe { M::read(ptr, v(&o.dev_ifindex)) }.unwrap_or(0);
    let netns = match unsafe { M::read::<*const u8>(ptr, v(&o.dev_nd_net)) } {
        Ok(net) => unsafe { M::read(net, v(&o.net_inum)) }.unwrap_or(0),
        Err(()) => 0,
    };
    Dev {
        ptr,
        ifindex,
        netns,
    }
}

#[inline(always)]
pub(crate) fn scratch() -> Result<&'static mut PacketEvent, ()> {
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p }).ok_or(())
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
    h.mark = unsafe { M::read(skb, v(&o.skb_mark)) }.unwrap_or(0);
    h.ifindex = dev.ifindex;
    h.netns = dev.netns;
    if dev.ptr.is_null() {
        zero16(&mut h.ifname);
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
    h.len = unsafe { M::read(skb, v(&o.skb_len))? };
    let proto: u16 = unsafe { M::read(skb, v(&o.skb_protocol))? };
    h.l3_proto = u16::from_be(proto);
    let nh: u16 = unsafe { M::read(skb, v(&o.skb_network_header))? };
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
    let head: *const u8 = unsafe { M::read(skb, v(&o.skb_head))? };
    // Constant read sizes: older verifiers lose a variable size's bounds
    // when the compiler spills it. Reading past `tail` stays inside the
    // head buffer (`end` and the shared info follow it); only `n` bytes count.
    let (dst, src) =
        (
            ev.data.as_mut_ptr() as *mut core::ffi::c_void,
            unsafe { head.add(nh as usize) } as *const core::ffi::c_void,
        );
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
