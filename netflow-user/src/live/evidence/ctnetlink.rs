//! Conntrack's statistics over ctnetlink, for the calling thread's
//! namespace: what `conntrack -S` (per-CPU statistics) and `conntrack -C`
//! (entries, and `nf_conntrack_max`) print, without the tool.
use std::io;

use super::rtnl::{attrs, request_on};

/// NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET_STATS_CPU / _GET_STATS.
const GET_STATS_CPU: u16 = (1 << 8) | 4;
const GET_STATS: u16 = (1 << 8) | 5;
/// enum ctattr_stats_cpu
const CTA_STATS_INSERT_FAILED: u16 = 9;
const CTA_STATS_DROP: u16 = 10;
const CTA_STATS_EARLY_DROP: u16 = 11;
const CTA_STATS_CLASH_RESOLVE: u16 = 14;
/// enum ctattr_stats_global
const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;
const CTA_STATS_GLOBAL_MAX_ENTRIES: u16 = 2;

/// The statistics a cause reads, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub drop: u64,
    pub early_drop: u64,
    pub insert_failed: u64,
    pub clash_resolve: u64,
}

impl Stats {
    /// What counted from `before` to `self` (a counter that went back
    /// counts from zero: a new namespace under the same inode).
    pub fn since(&self, before: &Stats) -> Stats {
        let d = |now: u64, was: u64| if now >= was { now - was } else { now };
        Stats {
            drop: d(self.drop, before.drop),
            early_drop: d(self.early_drop, before.early_drop),
            insert_failed: d(self.insert_failed, before.insert_failed),
            clash_resolve: d(self.clash_resolve, before.clash_resolve),
        }
    }
}

fn be32(v: &[u8]) -> u64 {
    v.get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0) as u64
}

/// A request to ctnetlink; asked again once when the kernel loaded its
/// module for the first one (EAGAIN).
fn ask(msg_type: u16, dump: bool) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // struct nfgenmsg: AF_UNSPEC, NFNETLINK_V0, res_id 0.
    let nfgen = [0u8; 4];
    match request_on(libc::NETLINK_NETFILTER, msg_type, dump, &nfgen) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            request_on(libc::NETLINK_NETFILTER, msg_type, dump, &nfgen)
        }
        r => r,
    }
}

/// The per-CPU statistics, summed.
pub fn stats() -> io::Result<Stats> {
    let mut s = Stats::default();
    for (_, body) in ask(GET_STATS_CPU, true)? {
        for (ty, v) in attrs(body.get(4..).unwrap_or(&[])) {
            match ty {
                CTA_STATS_DROP => s.drop += be32(v),
                CTA_STATS_EARLY_DROP => s.early_drop += be32(v),
                CTA_STATS_INSERT_FAILED => s.insert_failed += be32(v),
                CTA_STATS_CLASH_RESOLVE => s.clash_resolve += be32(v),
                _ => {}
            }
        }
    }
    Ok(s)
}

/// Entries in the namespace's table and `nf_conntrack_max` (older kernels
/// do not say the max).
pub fn count_and_max() -> io::Result<(u64, Option<u64>)> {
    let (mut count, mut max) = (0, None);
    for (_, body) in ask(GET_STATS, false)? {
        for (ty, v) in attrs(body.get(4..).unwrap_or(&[])) {
            match ty {
                CTA_STATS_GLOBAL_ENTRIES => count = be32(v),
                CTA_STATS_GLOBAL_MAX_ENTRIES => max = Some(be32(v)),
                _ => {}
            }
        }
    }
    Ok((count, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_forward_or_restart() {
        let a = Stats {
            drop: 5,
            early_drop: 1,
            insert_failed: 2,
            clash_resolve: 0,
        };
        let b = Stats {
            drop: 7,
            early_drop: 1,
            insert_failed: 1,
            clash_resolve: 3,
        };
        assert_eq!(
            b.since(&a),
            Stats {
                drop: 2,
                early_drop: 0,
                insert_failed: 1,
                clash_resolve: 3
            }
        );
    }
}
