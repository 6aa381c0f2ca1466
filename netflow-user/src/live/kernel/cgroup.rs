//! The cgroup v2 root, where netflow's socket-delivery program attaches.
//!
//! Most current nodes mount cgroup v2 at `/sys/fs/cgroup`; hosts that still
//! run cgroup v1 controllers may have it elsewhere or not at all. When it is
//! not mounted, netflow mounts it on a private folder, opens the root and
//! detaches the mount at once: the open directory is all the attach needs,
//! and nothing stays mounted, even if netflow is killed.
use std::{fs::File, os::fd::OwnedFd, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot open the cgroup v2 root {0}: {1}")]
    Open(PathBuf, #[source] std::io::Error),
    #[error("cgroup v2 is not mounted and mounting it failed: {0}")]
    Mount(#[source] nix::Error),
}

/// An open cgroup v2 root directory and how it was found.
pub struct Cgroup2Root {
    pub fd: OwnedFd,
    /// `/sys/fs/cgroup`, or "mounted privately".
    pub how: String,
}

/// Where cgroup v2 is mounted, from `/proc/self/mountinfo` (the mount of
/// the hierarchy's root, when there are several).
fn mounted() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let f: Vec<&str> = left.split_whitespace().collect();
        let (root, point) = (f.get(3)?, f.get(4)?);
        let point = PathBuf::from(point.replace("\\040", " "));
        if *root == "/" {
            return Some(point);
        }
        found.get_or_insert(point);
    }
    found
}

pub fn open_root() -> Result<Cgroup2Root, CgroupError> {
    if let Some(path) = mounted() {
        let f = File::open(&path).map_err(|e| CgroupError::Open(path.clone(), e))?;
        return Ok(Cgroup2Root {
            fd: f.into(),
            how: path.display().to_string(),
        });
    }
    let dir = std::env::temp_dir().join(format!("netflow-cgroup2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CgroupError::Open(dir.clone(), e))?;
    let mounted = nix::mount::mount(
        Some("none"),
        &dir,
        Some("cgroup2"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    let opened = mounted
        .map_err(CgroupError::Mount)
        .and_then(|()| File::open(&dir).map_err(|e| CgroupError::Open(dir.clone(), e)));
    if mounted.is_ok() {
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(Cgroup2Root {
        fd: opened?.into(),
        how: "cgroup v2 was not mounted: mounted privately, and detached".into(),
    })
}

/// The memory limit of this process's cgroup (v2 `memory.max`; None when
/// there is none, `max`, or no cgroup v2).
pub fn memory_max() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let file = std::path::Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("memory.max");
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}
