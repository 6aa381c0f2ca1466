//! The bytes of one ring-buffer record → [`RawEvent`], the kernel's header
//! field by field. The layout is `netflow_common::EventHeader` followed by
//! `cap_len` packet bytes; reading checks sizes and the layout version and
//! never transmutes.
use netflow_common::{EventHeader, Point, EVENT_VERSION};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header ({1} bytes)")]
    Short(usize, usize),
    #[error("event layout version {0}, this netflow reads layouts 1 to {EVENT_VERSION}")]
    Version(u8),
    #[error("unknown probe point {0}")]
    Point(u8),
    #[error("event claims {0} packet bytes but carries {1}")]
    CapLen(usize, usize),
    #[error("rule trace event is cut short")]
    Rule,
}

/// A record as the kernel wrote it: the header's fields, whose meaning
/// depends on `point` (the typed [`super::Event`] says what they mean).
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub ts_ns: u64,
    pub skb: u64,
    pub point: Point,
    pub netns: u32,
    pub ifindex: u32,
    pub ifname: String,
    pub len: u32,
    pub mark: u32,
    pub reason: u32,
    pub location: u64,
    /// The kernel's fingerprint of the packet (0 where it computed none).
    pub fp: u64,
    pub l3_proto: u16,
    /// Netfilter hook and family (netfilter points only).
    pub hook: u8,
    pub pf: u8,
    /// `netflow_common::event_flags` bits.
    pub flags: u8,
    /// Packet bytes from the network header (possibly truncated).
    pub data: Vec<u8>,
}

impl TryFrom<&[u8]> for RawEvent {
    type Error = DecodeError;

    fn try_from(buf: &[u8]) -> Result<Self, Self::Error> {
        let hsize = std::mem::size_of::<EventHeader>();
        // Older layouts (recordings of an older netflow) first become this one.
        let min = super::compat::LAYOUTS
            .iter()
            .map(|l| l.1)
            .min()
            .unwrap_or(hsize);
        if buf.len() < min {
            return Err(DecodeError::Short(buf.len(), hsize));
        }
        let buf = &*super::compat::upgrade(buf).map_err(DecodeError::Version)?;
        if buf.len() < hsize {
            return Err(DecodeError::Short(buf.len(), hsize));
        }
        // Read the header field by field at its repr(C) offsets.
        let u64_at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_ne_bytes(buf[o..o + 2].try_into().unwrap());
        let p = buf[std::mem::offset_of!(EventHeader, point)];
        let point = Point::from_u8(p).ok_or(DecodeError::Point(p))?;
        let cap = u16_at(std::mem::offset_of!(EventHeader, cap_len)) as usize;
        let avail = buf.len() - hsize;
        if cap > avail {
            return Err(DecodeError::CapLen(cap, avail));
        }
        let name_off = std::mem::offset_of!(EventHeader, ifname);
        let name = &buf[name_off..name_off + 16];
        let name_len = name.iter().position(|b| *b == 0).unwrap_or(16);
        Ok(RawEvent {
            ts_ns: u64_at(std::mem::offset_of!(EventHeader, ts_ns)),
            skb: u64_at(std::mem::offset_of!(EventHeader, skb)),
            location: u64_at(std::mem::offset_of!(EventHeader, location)),
            fp: u64_at(std::mem::offset_of!(EventHeader, fp)),
            netns: u32_at(std::mem::offset_of!(EventHeader, netns)),
            ifindex: u32_at(std::mem::offset_of!(EventHeader, ifindex)),
            len: u32_at(std::mem::offset_of!(EventHeader, len)),
            mark: u32_at(std::mem::offset_of!(EventHeader, mark)),
            reason: u32_at(std::mem::offset_of!(EventHeader, reason)),
            l3_proto: u16_at(std::mem::offset_of!(EventHeader, l3_proto)),
            hook: buf[std::mem::offset_of!(EventHeader, hook)],
            pf: buf[std::mem::offset_of!(EventHeader, pf)],
            flags: buf[std::mem::offset_of!(EventHeader, flags)],
            ifname: String::from_utf8_lossy(&name[..name_len]).into_owned(),
            point,
            data: buf[hsize..hsize + cap].to_vec(),
        })
    }
}

/// Encode an event as the kernel lays it out (tests, replay tooling).
pub fn encode(ev: &RawEvent) -> Vec<u8> {
    let hdr = EventHeader {
        ts_ns: ev.ts_ns,
        skb: ev.skb,
        location: ev.location,
        fp: ev.fp,
        netns: ev.netns,
        ifindex: ev.ifindex,
        len: ev.len,
        mark: ev.mark,
        reason: ev.reason,
        l3_proto: ev.l3_proto,
        cap_len: ev.data.len() as u16,
        point: ev.point as u8,
        version: EVENT_VERSION,
        hook: ev.hook,
        pf: ev.pf,
        flags: ev.flags,
        _pad: [0; 3],
        ifname: {
            let mut n = [0u8; 16];
            let b = ev.ifname.as_bytes();
            let l = b.len().min(15);
            n[..l].copy_from_slice(&b[..l]);
            n
        },
    };
    let mut out = Vec::with_capacity(std::mem::size_of::<EventHeader>() + ev.data.len());
    out.extend_from_slice(&hdr.ts_ns.to_ne_bytes());
    out.extend_from_slice(&hdr.skb.to_ne_bytes());
    out.extend_from_slice(&hdr.location.to_ne_bytes());
    out.extend_from_slice(&hdr.fp.to_ne_bytes());
    for v in [hdr.netns, hdr.ifindex, hdr.len, hdr.mark, hdr.reason] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    out.extend_from_slice(&hdr.l3_proto.to_ne_bytes());
    out.extend_from_slice(&hdr.cap_len.to_ne_bytes());
    out.push(hdr.point);
    out.push(hdr.version);
    out.push(hdr.hook);
    out.push(hdr.pf);
    out.push(hdr.flags);
    out.extend_from_slice(&hdr._pad);
    out.extend_from_slice(&hdr.ifname);
    debug_assert_eq!(out.len(), std::mem::size_of::<EventHeader>());
    out.extend_from_slice(&ev.data);
    out
}

/// An event for tests: a transmit hop of an IPv4 packet's first bytes.
#[cfg(test)]
pub(crate) fn sample() -> RawEvent {
    RawEvent {
        ts_ns: 42,
        skb: 0xffff_8880_1234_5600,
        point: Point::Tx,
        netns: 4026531840,
        ifindex: 7,
        ifname: "veth-a".into(),
        len: 84,
        mark: 0,
        reason: 0,
        location: 0,
        fp: 0,
        l3_proto: 0x0800,
        hook: 0,
        pf: 0,
        flags: 0,
        data: vec![0x45, 0, 0, 84],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let b = encode(&sample());
        let e = RawEvent::try_from(b.as_slice()).unwrap();
        assert_eq!(e.ifname, "veth-a");
        assert_eq!(e.point, Point::Tx);
        assert_eq!(e.skb, 0xffff_8880_1234_5600);
        assert_eq!(e.data, vec![0x45, 0, 0, 84]);
    }

    #[test]
    fn rejects_bad_records() {
        let b = encode(&sample());
        assert!(matches!(
            RawEvent::try_from(&b[..10]),
            Err(DecodeError::Short(10, _))
        ));
        assert!(matches!(
            RawEvent::try_from(&b[..b.len() - 1]),
            Err(DecodeError::CapLen(4, 3))
        ));
        let mut v = b.clone();
        v[std::mem::offset_of!(EventHeader, version)] = 99;
        assert_eq!(
            RawEvent::try_from(v.as_slice()).unwrap_err(),
            DecodeError::Version(99)
        );
        let mut v = b;
        v[std::mem::offset_of!(EventHeader, point)] = 0;
        assert_eq!(
            RawEvent::try_from(v.as_slice()).unwrap_err(),
            DecodeError::Point(0)
        );
    }
}
