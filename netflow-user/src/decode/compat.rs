//! Event layouts this netflow reads, oldest first, and how an event of an
//! older layout is brought to the current one: recordings made by an older
//! netflow replay in this one. (The recording file's own format versions are
//! listed in `record`.)
//!
//! | layout | header | what changed |
//! | --- | --- | --- |
//! | 1 | 72 bytes | first layout |
//! | 2 | 80 bytes | `fp` (the kernel's fingerprint) after `location` |
//!
//! The version byte moves with the layout: it is read where the newest
//! layout has it first, then where older ones had it. (At layout 2's
//! version offset a layout-1 event holds the second byte of its device
//! name: ASCII or NUL, never a version number.)
use std::borrow::Cow;

use netflow_common::{EventHeader, EVENT_VERSION};

/// Each layout: version, header size, offset of its version byte.
pub const LAYOUTS: [(u8, usize, usize); 2] = [
    (1, 72, 49),
    (
        2,
        std::mem::size_of::<EventHeader>(),
        std::mem::offset_of!(EventHeader, version),
    ),
];

/// Where layout 2 put `fp`: layout 1 is layout 2 without these 8 bytes.
const FP_AT: usize = std::mem::offset_of!(EventHeader, fp);

/// The layout version of an event, or None when no known layout claims it.
pub fn version_of(buf: &[u8]) -> Option<u8> {
    LAYOUTS
        .iter()
        .rev()
        .find(|(v, _, at)| buf.get(*at) == Some(v))
        .map(|(v, _, _)| *v)
}

/// The event in the current layout: as is when it has it, rewritten when it
/// has an older one (fields the older layout lacked are zero). Err: the
/// version byte of an unknown layout.
pub fn upgrade(buf: &[u8]) -> Result<Cow<'_, [u8]>, u8> {
    match version_of(buf) {
        Some(EVENT_VERSION) => Ok(Cow::Borrowed(buf)),
        Some(1) => {
            let mut out = Vec::with_capacity(buf.len() + 8);
            out.extend_from_slice(&buf[..FP_AT]);
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&buf[FP_AT..]);
            out[std::mem::offset_of!(EventHeader, version)] = EVENT_VERSION;
            Ok(Cow::Owned(out))
        }
        _ => {
            let at = std::mem::offset_of!(EventHeader, version);
            Err(buf.get(at).copied().unwrap_or(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use netflow_common::Point;

    use super::*;
    use crate::decode::raw::{encode, RawEvent};

    /// The shared sample, as a receive hop with a mark and a hook.
    fn sample() -> RawEvent {
        RawEvent {
            point: Point::Rx,
            mark: 3,
            location: 0xffff_ffff_8100_0000,
            hook: 1,
            pf: 2,
            ..crate::decode::raw::sample()
        }
    }

    /// A layout-1 event as netflow 0.1 wrote it: layout 2 without `fp`.
    fn as_layout_1(v2: &[u8]) -> Vec<u8> {
        let mut v1 = v2[..FP_AT].to_vec();
        v1.extend_from_slice(&v2[FP_AT + 8..]);
        v1[LAYOUTS[0].2] = 1;
        v1
    }

    #[test]
    fn a_layout_1_event_reads_as_the_same_event() {
        let v2 = encode(&sample());
        let v1 = as_layout_1(&v2);
        assert_eq!(v1.len(), LAYOUTS[0].1 + 4);
        assert_eq!(version_of(&v1), Some(1));
        assert_eq!(version_of(&v2), Some(2));
        assert_eq!(upgrade(&v1).unwrap().as_ref(), v2.as_slice());
        let e = RawEvent::try_from(v1.as_slice()).unwrap();
        assert_eq!((e.ifname.as_str(), e.mark, e.hook), ("veth-a", 3, 1));
        assert_eq!(e.location, 0xffff_ffff_8100_0000);
    }

    #[test]
    fn unknown_layouts_are_refused() {
        let mut v = encode(&sample());
        v[std::mem::offset_of!(EventHeader, version)] = 9;
        assert_eq!(upgrade(&v).unwrap_err(), 9);
        assert_eq!(
            RawEvent::try_from(v.as_slice()).unwrap_err(),
            crate::decode::DecodeError::Version(9)
        );
    }
}
