//! What is needed to interpret events: drop-reason names, kernel symbols,
//! names of network namespaces. Read once at start.
use std::collections::HashMap;

use crate::kernel::kallsyms::Kallsyms;

#[derive(Debug, Default, Clone)]
pub struct Names {
    pub reasons: HashMap<u32, String>,
    pub kallsyms: Kallsyms,
    pub netns: HashMap<u32, String>,
}

impl Names {
    /// Namespace names: the tracer's own is `host`, named ones (`ip netns`) by name.
    pub fn read_netns() -> HashMap<u32, String> {
        let mut m = HashMap::new();
        for (name, path) in crate::select::named_netns() {
            if let Ok(ino) = crate::select::inode_of(&path) {
                m.insert(ino, name);
            }
        }
        if let Ok(ino) = crate::select::inode_of(std::path::Path::new("/proc/self/ns/net")) {
            m.insert(ino, "host".into());
        }
        m
    }

    pub fn reason(&self, r: u32) -> String {
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
        self.kallsyms.symbolize(addr)
    }

    pub fn netns(&self, ino: u32) -> Option<&str> {
        self.netns.get(&ino).map(|s| s.as_str())
    }

    /// Name when known, else the inode number.
    pub fn netns_label(&self, ino: u32) -> String {
        self.netns(ino)
            .map(str::to_string)
            .unwrap_or_else(|| ino.to_string())
    }
}
