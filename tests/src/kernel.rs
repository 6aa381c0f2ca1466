//! What the running kernel has: BPF links and programs of a process, and
//! which tracepoints exist.
use std::process::{Command, Stdio};

/// Program ids of the BPF links a process holds (from /proc/PID/fdinfo).
pub fn bpf_link_prog_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for e in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .flatten()
    {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if !info.contains("link_type:") {
            continue;
        }
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    ids
}

/// Does a BPF program with this id still exist?
pub fn bpf_prog_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run bpftool (installed by scripts/setup.sh)")
        .success()
}

/// The running kernel reports a RST sent without a socket (a SYN to a closed
/// port) through `tcp:tcp_send_reset`: since 6.10, whose prototype has the
/// reset reason. Older kernels only report the SYN's NO_SOCKET drop.
pub fn kernel_traces_socketless_resets() -> bool {
    netflow::live::kernel::btf::KernelBtf::load()
        .and_then(|b| b.tracepoint_args("tcp_send_reset"))
        .is_ok_and(|args| args.len() >= 3)
}

/// The running kernel's (major, minor) version.
pub fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("read osrelease");
    let mut it = r
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// nftables tables with the owner flag (Linux 5.12): netflow's rule names.
pub fn kernel_has_owned_tables() -> bool {
    kernel_version() >= (5, 12)
}
