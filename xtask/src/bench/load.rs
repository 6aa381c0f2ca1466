//! Scale: the node with many connections held open through it (with the
//! agent); the memory figures the flood bench (`flood`) reads too.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Result;

use super::lab::{iperf, Lab, IP_B, NS_A, NS_B};
use super::{cpu_seconds, median, netflow_counts, Observer};

/// Peak resident memory of a process so far (VmHWM), in MB.
pub(super) fn peak_rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// A process's resident memory now (VmRSS), in MB.
pub(super) fn rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// The memory of the BPF maps a process holds (their `memlock` in
/// fdinfo), in MB: charged to its memory cgroup, not to its RSS.
pub(super) fn map_mb(pid: u32) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let mut bytes = 0u64;
    for fd in fds.flatten() {
        let is_map = std::fs::read_link(fd.path())
            .is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-map");
        if !is_map {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        bytes += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    bytes / (1024 * 1024)
}

/// Connections per destination port: one source address has ~28k
/// ephemeral ports.
const PER_PORT: u32 = 15_000;
const HOLD_PORT: u16 = 7800;

/// `n` TCP connections from pod a to pod b held open: servers accepting
/// and keeping them, clients opening them and waiting (one pair per
/// `PER_PORT` connections: a process's descriptors are limited, and root's
/// hard limit cannot always be raised); all stop on drop.
struct Held(Vec<Child>);

impl Held {
    fn open(n: u32) -> Result<Self> {
        let mut held = Held(Vec::new());
        let chunks = n.div_ceil(PER_PORT).max(1);
        for k in 0..chunks {
            let port = HOLD_PORT + k as u16;
            let server = Command::new("ip")
                .args(["netns", "exec", NS_B, "sh", "-c"])
                .arg(format!(
                    "ulimit -n $(ulimit -Hn); exec python3 -c \"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('{IP_B}', {port})); s.listen(4096)
held = []
while True:
    c, _ = s.accept(); held.append(c)
\""
                ))
                .stdout(Stdio::null())
                .spawn()?;
            held.0.push(server);
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut outs = Vec::new();
        for k in 0..chunks {
            let port = HOLD_PORT + k as u16;
            let m = PER_PORT.min(n - k * PER_PORT);
            let mut client = Command::new("ip")
                .args(["netns", "exec", NS_A, "sh", "-c"])
                .arg(format!(
                    "ulimit -n $(ulimit -Hn); exec python3 -c \"
import socket, time
held = [socket.create_connection(('{IP_B}', {port}), timeout=5) for i in range({m})]
print('ready', flush=True)
time.sleep(3600)
\""
                ))
                .stdout(Stdio::piped())
                .spawn()?;
            outs.push(client.stdout.take());
            held.0.push(client);
        }
        use std::io::BufRead;
        for o in outs {
            let mut line = String::new();
            if let Some(o) = o {
                std::io::BufReader::new(o).read_line(&mut line)?;
            }
            if line.trim() != "ready" {
                anyhow::bail!("could not hold {n} connections open");
            }
        }
        Ok(held)
    }
}

impl Drop for Held {
    /// Servers first: the side that closes first keeps TIME_WAIT, and on the
    /// clients' side it would hold the ephemeral ports the next round needs.
    fn drop(&mut self) {
        for c in self.0.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kernel memory of a process's BPF maps (the `memlock` of each map fd), MB.
fn map_memory_mb(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0;
    for e in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if !info.contains("map_type:") {
            continue;
        }
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if field("map_id:").is_some_and(|id| seen.insert(id)) {
            bytes += field("memlock:").unwrap_or(0);
        }
    }
    bytes / (1 << 20)
}

/// The node with `n` connections held open through it, with and without
/// the agent (alternating, `rounds` each): iperf3 beside them, the agent's
/// CPU during it, its peak RSS and map memory.
pub(super) fn many_flows(
    bin: &Path,
    n: u32,
    seconds: u32,
    rounds: usize,
    probes: &str,
) -> Result<()> {
    let mut lab = Lab::new()?;
    lab.start_server()?;
    println!(
        "netflow bench: {n} TCP connections held open pod {NS_A} -> pod {NS_B}, iperf3 {seconds} s beside them, {rounds} rounds, agent --probes {probes} (target: >= 0.98 of off, <= 2% CPU, <= 100 MB, 0 lost)"
    );
    let (mut off, mut with) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for agent in [false, true] {
            let observer = if agent {
                Some(Observer::agent(bin, probes)?)
            } else {
                None
            };
            let started = std::time::Instant::now();
            let held = Held::open(n)?;
            let opened = started.elapsed().as_secs_f64();
            let cpu0 = observer.as_ref().map(|o| cpu_seconds(o.child.id()));
            let bps = iperf(seconds)?;
            let line = match &observer {
                Some(o) => {
                    let cpu =
                        100.0 * (cpu_seconds(o.child.id()) - cpu0.unwrap_or(0.0)) / seconds as f64;
                    format!(
                        "agent: CPU {cpu:.0}% during iperf3, peak RSS {} MB, maps {} MB",
                        peak_rss_mb(o.child.id()),
                        map_memory_mb(o.child.id())
                    )
                }
                None => "off".to_string(),
            };
            drop(held);
            if let Some(o) = observer {
                let err = o.stop()?;
                let (events, lost) = netflow_counts(&err);
                println!(
                    "  round {} {line}, {events} events, {lost} lost; {n} opened in {opened:.1} s; {:.2} Gbit/s",
                    round + 1,
                    bps / 1e9
                );
                with.push(bps);
            } else {
                println!(
                    "  round {} off; {n} opened in {opened:.1} s; {:.2} Gbit/s",
                    round + 1,
                    bps / 1e9
                );
                off.push(bps);
            }
        }
    }
    let (o, w) = (median(&mut off), median(&mut with));
    println!(
        "agent with {n} connections held: {:.3} of off (median {:.2} vs {:.2} Gbit/s)",
        w / o.max(1.0),
        w / 1e9,
        o / 1e9
    );
    Ok(())
}
