//! Shell commands for building labs: run, fail loudly, or ignore failure
//! (cleanup); the root check every lab makes.
use std::process::{Command, Stdio};

/// Run a shell command; panic with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    if !out.status.success() {
        panic!(
            "command failed ({}): {cmd}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a shell command: did it succeed? (Probing what the kernel has.)
pub fn sh_ok(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run a shell command, ignoring failure (cleanup).
pub fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "netflow's kernel tests need root (they build namespaces and load eBPF programs): run them with sudo"
    );
}
