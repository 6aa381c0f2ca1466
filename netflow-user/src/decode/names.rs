//! What is needed to interpret events: drop-reason names, kernel symbols,
//! names of network namespaces. Read once at start.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::kallsyms::Kallsyms;

/// The reason of a drop on a kernel without drop reasons (before 5.17).
pub const UNAVAILABLE: &str = "unavailable";

/// Names as a recording stores them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NamesSnapshot {
    pub reasons: Vec<(u32, String)>,
    pub netns: Vec<(u32, String)>,
    pub masters: Vec<((u32, u32), String)>,
    pub pods: Vec<(u32, String)>,
}

#[derive(Debug, Default, Clone)]
pub struct Names {
    pub reasons: HashMap<u32, String>,
    pub kallsyms: Kallsyms,
    pub netns: HashMap<u32, String>,
    /// Bridge (or other master) of each device of the tracer's namespace:
    /// (netns inode, ifindex) -> master name.
    pub masters: HashMap<(u32, u32), String>,
    /// Labels of the selected pods' namespaces (they win over netns names).
    pub pods: HashMap<u32, String>,
    /// Symbols from a recording (they win over kallsyms).
    pub syms: HashMap<u64, String>,
}

impl Names {
    pub fn master(&self, netns: u32, ifindex: u32) -> Option<&str> {
        self.masters.get(&(netns, ifindex)).map(|s| s.as_str())
    }

    pub fn reason(&self, r: u32) -> String {
        if r == netflow_common::REASON_UNAVAILABLE {
            // Kernels before drop reasons (5.10-5.16): the location tells.
            return UNAVAILABLE.into();
        }
        if let Some(n) = self.reasons.get(&r) {
            return n.clone();
        }
        // Subsystem reasons carry the subsystem in the upper 16 bits.
        if r >> 16 != 0 {
            return format!("SUBSYS_{}_{}", r >> 16, r & 0xffff);
        }
        format!("REASON_{r}")
    }

    pub fn location(&self, addr: u64) -> String {
        match self.syms.get(&addr) {
            Some(s) => s.clone(),
            None => self.kallsyms.symbolize(addr),
        }
    }

    pub fn snapshot(&self) -> NamesSnapshot {
        let sorted = |m: &HashMap<u32, String>| {
            let mut v: Vec<(u32, String)> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
            v.sort();
            v
        };
        let mut masters: Vec<((u32, u32), String)> =
            self.masters.iter().map(|(k, v)| (*k, v.clone())).collect();
        masters.sort();
        NamesSnapshot {
            reasons: sorted(&self.reasons),
            netns: sorted(&self.netns),
            masters,
            pods: sorted(&self.pods),
        }
    }

    /// Take the names a recording holds (symbols stay).
    pub fn restore(&mut self, s: NamesSnapshot) {
        self.reasons = s.reasons.into_iter().collect();
        self.netns = s.netns.into_iter().collect();
        self.masters = s.masters.into_iter().collect();
        self.pods = s.pods.into_iter().collect();
    }

    pub fn netns(&self, ino: u32) -> Option<&str> {
        self.pods
            .get(&ino)
            .or_else(|| self.netns.get(&ino))
            .map(|s| s.as_str())
    }

    /// Name when known, else the inode number.
    pub fn netns_label(&self, ino: u32) -> String {
        self.netns(ino)
            .map(str::to_string)
            .unwrap_or_else(|| ino.to_string())
    }
}
