//! Per-pod packets and bytes from counters the kernel keeps anyway: the
//! statistics of the pod's own devices, read in its namespace (a veth's
//! pod end, an ipvlan, macvlan or netkit device alike). What they receive
//! enters the pod (`ingress`), what they send leaves it (`egress`). No
//! program runs for them. hostNetwork pods share the node's devices and are
//! not counted here.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::{metrics::Metrics, PodIndex};
use crate::live::evidence::rtnl::{self, LinkStats};

/// The sum of a namespace's devices but loopback.
fn of_netns(path: &std::path::Path) -> Option<LinkStats> {
    let links = crate::live::in_netns(path, || rtnl::links().ok()).flatten()?;
    Some(
        links
            .iter()
            .filter(|l| !l.loopback)
            .filter_map(|l| l.stats)
            .fold(LinkStats::default(), |a, s| LinkStats {
                rx_packets: a.rx_packets + s.rx_packets,
                tx_packets: a.tx_packets + s.tx_packets,
                rx_bytes: a.rx_bytes + s.rx_bytes,
                tx_bytes: a.tx_bytes + s.tx_bytes,
            }),
    )
}

/// Read every pod's device counters into the metrics.
pub fn count(index: &Arc<Mutex<PodIndex>>, metrics: &Metrics) {
    let Ok(own) = crate::live::select::inode_of(std::path::Path::new("/proc/self/ns/net")) else {
        return;
    };
    let pods: Vec<_> = {
        let Ok(cur) = index.lock() else { return };
        let mut seen: HashMap<u32, ()> = HashMap::new();
        cur.netns
            .iter()
            .filter_map(|(_, path)| {
                let ino = crate::live::select::inode_of(path).ok()?;
                // The node's own namespace (hostNetwork pods), and a
                // namespace two pods share, are not one pod's.
                if ino == own || seen.insert(ino, ()).is_some() {
                    return None;
                }
                Some((cur.by_netns.get(&ino)?.clone(), path.clone()))
            })
            .collect()
    };
    for (labels, path) in pods {
        if let Some(s) = of_netns(&path) {
            metrics.device_counts(&labels, s);
        }
    }
}
