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
    collections::HashMap,
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
};

use aya::{maps::Map, Ebpf};
use netflow_common::names;

use super::load::EBPF_OBJECT;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_NETFILTER: u32 = 32;
const BPF_NETFILTER: u32 = 45;
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
    #[error("failed to parse the netflow object for the netfilter loader: {0}")]
    Parse(String),
    #[error("failed to relocate netfilter program {0}: {1}")]
    Relocate(&'static str, String),
    #[error("kernel object has no program {0}")]
    Missing(&'static str),
    #[error("failed to load netfilter program {prog}: {err} (verifier log: RUST_LOG=debug)")]
    Load {
        prog: &'static str,
        err: std::io::Error,
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
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    /// The rest of `union bpf_attr`, zero.
    rest: [u64; 12],
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

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<RawFd> {
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the given size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as RawFd)
    }
}

/// The fd of each of aya's maps, by name.
fn map_fds(ebpf: &Ebpf) -> HashMap<String, RawFd> {
    ebpf.maps()
        .filter_map(|(name, m)| {
            let data = match m {
                Map::Array(d)
                | Map::HashMap(d)
                | Map::LpmTrie(d)
                | Map::LruHashMap(d)
                | Map::PerCpuArray(d)
                | Map::RingBuf(d) => d,
                _ => return None,
            };
            Some((name.to_string(), data.fd().as_fd().as_raw_fd()))
        })
        .collect()
}

/// The two netfilter programs, loaded against the maps of `ebpf`.
pub struct NfPrograms {
    early: OwnedFd,
    late: OwnedFd,
}

impl NfPrograms {
    /// Must run while every map is still owned by `ebpf` (before `take_map`).
    pub fn load(ebpf: &Ebpf) -> Result<Self, NetfilterError> {
        let mut obj = aya_obj::Object::parse(EBPF_OBJECT)
            .map_err(|e| NetfilterError::Parse(e.to_string()))?;
        let fds = map_fds(ebpf);
        let maps: Vec<(String, RawFd, aya_obj::Map)> = obj
            .maps
            .iter()
            .filter_map(|(n, m)| fds.get(n).map(|fd| (n.clone(), *fd, m.clone())))
            .collect();
        let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
            &text_sections,
        )
        .map_err(|e| NetfilterError::Relocate("maps", e.to_string()))?;
        obj.relocate_calls(&text_sections)
            .map_err(|e| NetfilterError::Relocate("calls", e.to_string()))?;
        let load = |prog: &'static str| -> Result<OwnedFd, NetfilterError> {
            let p = obj
                .programs
                .get(prog)
                .ok_or(NetfilterError::Missing(prog))?;
            let f = obj
                .functions
                .get(&p.function_key())
                .ok_or(NetfilterError::Missing(prog))?;
            load_program(prog, &f.instructions)
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

fn load_program(
    prog: &'static str,
    insns: &[aya_obj::generated::bpf_insn],
) -> Result<OwnedFd, NetfilterError> {
    let license = CString::new("GPL").expect("no NUL");
    let mut log = vec![0u8; 1 << 20];
    let mut name = [0u8; 16];
    let n = prog.len().min(15);
    name[..n].copy_from_slice(&prog.as_bytes()[..n]);
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_NETFILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_NETFILTER,
        ..Default::default()
    };
    match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a new fd the kernel just returned.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(err) => {
            // Retry with the verifier log for the error message.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = sys_bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            log::debug!("verifier log for {prog}:\n{text}");
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            Err(NetfilterError::Load {
                prog,
                err,
                log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            })
        }
    }
}

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
