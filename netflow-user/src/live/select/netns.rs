//! Network namespaces: named ones (`ip netns`), paths, their inodes and addresses.
use std::{
    net::IpAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use super::error::SelectError;

/// A resolved network namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
    pub inode: u32,
    pub addrs: Vec<IpAddr>,
}

pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Named namespaces (`ip netns`) and their nsfs paths.
pub fn named_netns() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(NETNS_RUN_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

pub fn inode_of(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino() as u32)
}

/// `NAME` (a named netns) or a path such as `/proc/PID/ns/net`.
pub fn resolve_netns(spec: &str) -> Result<Netns, SelectError> {
    let path = if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new(NETNS_RUN_DIR).join(spec)
    };
    let inode = inode_of(&path).map_err(|_| SelectError::NoNetns {
        name: spec.into(),
        path: path.display().to_string(),
        known: {
            let names: Vec<String> = named_netns().into_iter().map(|(n, _)| n).collect();
            if names.is_empty() {
                "none (ip netns list is empty)".into()
            } else {
                names.join(", ")
            }
        },
    })?;
    let addrs = netns_addrs(&path).map_err(|e| SelectError::NetnsAddrs(spec.into(), e))?;
    Ok(Netns {
        name: spec.into(),
        path,
        inode,
        addrs,
    })
}

/// Addresses configured inside a namespace (read from a thread that enters it).
fn netns_addrs(path: &Path) -> Result<Vec<IpAddr>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns: {e}"))?;
            let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
            let mut out: Vec<IpAddr> = addrs
                .filter_map(|a| {
                    let sa = a.address?;
                    if let Some(v4) = sa.as_sockaddr_in() {
                        return Some(IpAddr::V4(v4.ip()));
                    }
                    sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                })
                .filter(|ip| !ip.is_loopback())
                .collect();
            out.sort();
            out.dedup();
            Ok(out)
        })
        .join()
        .map_err(|_| "address reader thread panicked".to_string())?
    })
}
