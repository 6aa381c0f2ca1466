//! Where the packet died (its namespace, device and tuple), the cause
//! found there, and a setting as the hints say it.
use netflow_common::Point;

use super::{evidence::setting_name, explained::Cause};
use crate::{
    correlate::Timeline,
    decode::{names::Names, packet::Tuple},
};

/// Where the packet died: the drop's namespace and device.
pub(super) struct At {
    pub(super) netns: u32,
    pub(super) netns_name: String,
    pub(super) ifindex: u32,
    pub(super) dev: String,
    pub(super) tuple: Tuple,
    /// The namespace is a selected pod's.
    pub(super) pod: bool,
}

impl At {
    pub(super) fn of(tl: &Timeline, names: &Names) -> Option<Self> {
        let drop = tl.hops.iter().rev().find(|h| h.point == Point::Drop)?;
        // The device the kernel had for it, else the last one it was seen on
        // in that namespace.
        let dev_hop = std::iter::once(drop)
            .chain(tl.hops.iter().rev())
            .find(|h| h.netns == drop.netns && !h.ifname.is_empty() && h.ifindex != 0);
        let tuple = tl
            .hops
            .iter()
            .rev()
            .find_map(|h| h.packet.as_ref().map(|p| p.tuple))?;
        Some(At {
            netns: drop.netns,
            netns_name: names.netns_label(drop.netns),
            ifindex: dev_hop.map(|h| h.ifindex).unwrap_or(0),
            dev: dev_hop.map(|h| h.ifname.clone()).unwrap_or_default(),
            tuple,
            pod: names.pods.contains_key(&drop.netns),
        })
    }

    pub(super) fn v6(&self) -> bool {
        self.tuple.dst.is_ipv6()
    }

    pub(super) fn cause(&self, kind: &'static str) -> Cause {
        Cause {
            kind,
            setting: None,
            value: None,
            netns: Some(self.netns),
            netns_name: Some(self.netns_name.clone()),
            dev: (!self.dev.is_empty()).then(|| self.dev.clone()),
            addr: None,
        }
    }
}

/// `setting = value` as the hints and the ruled-out list say it.
pub(super) fn said(key: &str, value: &str) -> String {
    format!("{} = {value}", setting_name(key))
}
