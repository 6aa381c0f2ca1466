//! Names read off this node: network namespaces and the masters (bridges)
//! of devices. Read at start and again while tracing (they come and go).
use std::collections::HashMap;

use crate::decode::names::Names;

/// Namespace names: the tracer's own is `host`, named ones (`ip netns`) by name.
pub fn read_netns() -> HashMap<u32, String> {
    let mut m = HashMap::new();
    for (name, path) in crate::live::select::netns::named_netns() {
        if let Ok(ino) = crate::live::select::netns::inode_of(&path) {
            m.insert(ino, name);
        }
    }
    if let Ok(ino) = crate::live::select::netns::inode_of(std::path::Path::new("/proc/self/ns/net"))
    {
        m.insert(ino, "host".into());
    }
    m
}

/// Masters (bridges, bonds, VRFs) of the devices in this namespace, from sysfs.
pub fn read_masters() -> HashMap<(u32, u32), String> {
    let own = crate::live::select::netns::inode_of(std::path::Path::new("/proc/self/ns/net"))
        .unwrap_or(0);
    let mut m = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return m;
    };
    for e in dir.flatten() {
        let p = e.path();
        let Ok(master) = std::fs::read_link(p.join("master")) else {
            continue;
        };
        let Some(idx) = std::fs::read_to_string(p.join("ifindex"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        else {
            continue;
        };
        if let Some(name) = master.file_name() {
            m.insert((own, idx), name.to_string_lossy().into_owned());
        }
    }
    m
}

/// Re-read what can change while tracing (namespaces and devices come and go).
pub fn refresh(names: &mut Names) {
    names.netns = read_netns();
    names.masters = read_masters();
}
