//! Checks before loading anything, so that a missing privilege or facility
//! is reported as what it is, with what to do about it.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("this command needs root or the capabilities {missing} to load the kernel programs (run it with sudo)")]
    Privileges { missing: String },
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

pub fn check() -> Result<(), PreflightError> {
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
        return Err(PreflightError::Privileges {
            missing: missing.join(", "),
        });
    }
    let btf = crate::live::kernel::btf::VMLINUX;
    if !Path::new(btf).exists() {
        return Err(PreflightError::NoBtf(btf.into()));
    }
    Ok(())
}
