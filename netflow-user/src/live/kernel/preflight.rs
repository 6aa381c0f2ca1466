//! Checks before loading anything, so that a missing privilege or facility
//! is reported as what it is, with what to do about it.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("`netflow {command}` needs root, or the capabilities CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (and CAP_SYS_ADMIN on 5.10 or to enter other network namespaces) to {what}: missing {missing}. Run it with sudo{offline}")]
    Privileges {
        command: &'static str,
        what: &'static str,
        missing: String,
        offline: &'static str,
    },
    #[error("this kernel has no BTF at {0}: netflow needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.8 or newer)")]
    NoBtf(String),
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// What each command does with its privileges, and what it can do without.
fn words(command: &'static str) -> (&'static str, &'static str) {
    match command {
        "trace" => (
            "load its kernel programs",
            "; reading a recording needs none: netflow replay FILE",
        ),
        "dashboard" => (
            "trace live",
            "; a recording needs none: netflow dashboard --replay FILE",
        ),
        "demo" => ("build its lab and trace it", ""),
        "agent" => ("trace every pod of the node", ""),
        "check" => ("load and check the kernel programs", ""),
        _ => ("load its kernel programs", ""),
    }
}

/// Before `command` loads anything: the privileges and the kernel's BTF.
pub fn check(command: &'static str) -> Result<(), PreflightError> {
    let caps = effective_caps();
    let has = |c: u32| caps & (1 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        // CAP_SYS_ADMIN covers BPF and PERFMON; otherwise both are needed.
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
        // Entering other network namespaces (--netns) needs it too.
        missing.push("CAP_SYS_ADMIN");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !missing.is_empty() {
        let (what, offline) = words(command);
        return Err(PreflightError::Privileges {
            command,
            what,
            missing: missing.join(", "),
            offline,
        });
    }
    let btf = crate::live::kernel::btf::VMLINUX;
    if !Path::new(btf).exists() {
        return Err(PreflightError::NoBtf(btf.into()));
    }
    Ok(())
}
