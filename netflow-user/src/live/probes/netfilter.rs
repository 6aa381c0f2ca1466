//! BPF netfilter links (BPF_PROG_TYPE_NETFILTER, kernel 6.4+): the packet
//! at each netfilter hook, before and after the built-in conntrack, NAT and
//! filter hooks. A packet seen early and late with different tuples was
//! NATed at that hook; one seen early and never late was dropped there.
//!
//! aya 0.14 has no loader for this program type. The programs sit in
//! `classifier` sections of netflow's object; aya loads the object (creating
//! the maps and globals) but never these programs. Here the same ELF is
//! parsed again with aya-obj, its map references are pointed at aya's maps,
//! and the programs are loaded and linked with the raw `bpf()` syscall.
//! Links are per network namespace and owned as fds: they vanish when netflow
//! exits, also on SIGKILL.
use std::{
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use aya::Ebpf;
use netflow_common::names;

use super::raw::{sys_bpf, LoadSpec, RawError, Relocated, BPF_LINK_CREATE};

pub const BPF_PROG_TYPE_NETFILTER: u32 = 32;
pub const BPF_NETFILTER: u32 = 45;
pub const NFPROTO_IPV4: u32 = 2;
pub const NFPROTO_IPV6: u32 = 10;

/// The five IPv4/IPv6 hooks, by number.
pub use netflow_common::NF_HOOK_NAMES as HOOKS;

/// Before the built-in hooks (conntrack -200, mangle -150, DNAT -100, filter 0,
/// SNAT 100); only the raw table (-300) and defragmentation (-400) come earlier.
const EARLY_PRIORITY: i32 = -250;
/// After all of them.
const LATE_PRIORITY: i32 = i32::MAX - 16;

#[derive(Debug, thiserror::Error)]
pub enum NetfilterError {
    #[error(transparent)]
    Object(#[from] RawError),
    #[error("failed to load netfilter program {prog}: {err}{}", insns.map(|n| format!(" (verifier: {n} instructions processed)")).unwrap_or_default())]
    Load {
        prog: &'static str,
        err: std::io::Error,
        insns: Option<u32>,
        log: String,
    },
    #[error("failed to attach netfilter program {prog} at {hook} (priority {priority}) in netns {netns}: {err}")]
    Attach {
        prog: &'static str,
        hook: String,
        priority: i32,
        netns: String,
        err: std::io::Error,
    },
    #[error("failed to enter network namespace {0}: {1}")]
    Netns(String, String),
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    pf: u32,
    hooknum: u32,
    priority: i32,
    nf_flags: u32,
    rest: [u64; 8],
}

/// The two netfilter programs, loaded against the maps of `ebpf`.
pub struct NfPrograms {
    early: OwnedFd,
    late: OwnedFd,
}

impl NfPrograms {
    /// Must run while every map is still owned by `ebpf` (before `take_map`).
    pub fn load(ebpf: &Ebpf) -> Result<Self, NetfilterError> {
        let obj = Relocated::new(ebpf)?;
        let load = |prog: &'static str| -> Result<OwnedFd, NetfilterError> {
            let l = obj.load(prog, SPEC)?;
            l.fd.map_err(|err| {
                log::debug!("verifier statistics for {prog}:\n{}", l.log);
                NetfilterError::Load {
                    prog,
                    err,
                    insns: l.insns,
                    log: l.log,
                }
            })
        };
        Ok(Self {
            early: load(names::PROG_NF_EARLY)?,
            late: load(names::PROG_NF_LATE)?,
        })
    }

    /// Attach early and late at every hook of IPv4 and IPv6 in the network
    /// namespace at `netns` (None: netflow's own).
    pub fn attach(&self, netns: Option<&Path>) -> Result<Vec<OwnedFd>, NetfilterError> {
        let label = netns
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "host".into());
        let work = || {
            let mut links = Vec::new();
            for pf in [NFPROTO_IPV4, NFPROTO_IPV6] {
                for hooknum in 0..HOOKS.len() as u32 {
                    for (prog, fd, prio, step) in [
                        (names::PROG_NF_EARLY, &self.early, EARLY_PRIORITY, -1),
                        (names::PROG_NF_LATE, &self.late, LATE_PRIORITY, -1),
                    ] {
                        links.push(link(prog, fd, pf, hooknum, prio, step, &label)?);
                    }
                }
            }
            Ok(links)
        };
        match netns {
            None => work(),
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| NetfilterError::Netns(label.clone(), e.to_string()))?;
                std::thread::scope(|s| {
                    s.spawn(|| {
                        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| NetfilterError::Netns(label.clone(), e.to_string()))?;
                        work()
                    })
                    .join()
                    .unwrap_or_else(|_| {
                        Err(NetfilterError::Netns(
                            label.clone(),
                            "thread panicked".into(),
                        ))
                    })
                })
            }
        }
    }
}

/// How the kernel takes a netfilter program.
pub const SPEC: LoadSpec = LoadSpec {
    prog_type: BPF_PROG_TYPE_NETFILTER,
    expected_attach_type: BPF_NETFILTER,
    attach_btf_id: 0,
};

/// Link at `priority`, stepping away from priorities already taken (EBUSY:
/// another hook, e.g. a second netflow, sits exactly there).
fn link(
    prog: &'static str,
    fd: &OwnedFd,
    pf: u32,
    hooknum: u32,
    priority: i32,
    step: i32,
    netns: &str,
) -> Result<OwnedFd, NetfilterError> {
    let mut prio = priority;
    for _ in 0..32 {
        let mut attr = LinkCreateAttr {
            prog_fd: fd.as_raw_fd() as u32,
            attach_type: BPF_NETFILTER,
            pf,
            hooknum,
            priority: prio,
            ..Default::default()
        };
        match sys_bpf(BPF_LINK_CREATE, &mut attr) {
            // SAFETY: a new fd the kernel just returned.
            Ok(l) => return Ok(unsafe { OwnedFd::from_raw_fd(l) }),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => prio += step,
            Err(err) => {
                return Err(NetfilterError::Attach {
                    prog,
                    hook: format!(
                        "{}/{}",
                        if pf == NFPROTO_IPV4 { "ipv4" } else { "ipv6" },
                        HOOKS[hooknum as usize]
                    ),
                    priority: prio,
                    netns: netns.into(),
                    err,
                })
            }
        }
    }
    Err(NetfilterError::Attach {
        prog,
        hook: HOOKS[hooknum as usize].into(),
        priority: prio,
        netns: netns.into(),
        err: std::io::Error::from_raw_os_error(libc::EBUSY),
    })
}
