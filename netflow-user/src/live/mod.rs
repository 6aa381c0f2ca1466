//! The kernel side: what runs only on a node, as root. Loading and attaching
//! the kernel programs ([`probes`]), what the running kernel offers
//! ([`kernel`]), turning selectors into the kernel's packet selection
//! ([`select`], pods over CRI), reading names off the node ([`names`]) and
//! the settings behind a failure ([`evidence`]), the live run that drains
//! the ring buffer into the pipeline ([`trace`]), and the events mode's
//! following of failed flows (`follow`).
pub mod agent;
pub mod check;
pub mod demo;
pub mod evidence;
mod follow;
pub mod kernel;
pub mod names;
pub mod probes;
pub mod ruletrace;
pub mod select;
pub mod trace;

use std::{os::fd::AsFd, path::Path};

/// Run `f` in a thread that entered the namespace at `path`.
pub(crate) fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Option<T> {
    let file = std::fs::File::open(path).ok()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            Some(f())
        })
        .join()
        .ok()
        .flatten()
    })
}
