//! Memory under floods of new flows (issue 40): `trace --json` and the
//! dashboard, each watching pod a while it sends N new UDP flows (a new
//! socket and one datagram each) at a fixed rate, delivered to a sink in
//! pod b or dropped by a DROP rule in the node's FORWARD chain. RSS as
//! three figures (start-up peak, idle, flood peak), the BPF maps' memory
//! beside them (charged to the memory cgroup, not to RSS), events and lost
//! (trace) or whether it said it evicts (dashboard); then, per tool and
//! kind, the peaks by flood size against the targets (trace 150 MB,
//! dashboard 300 MB, the largest flood within 10% of the smallest).
use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::lab::{sh, Lab, IP_B, NS_A, NS_B, NS_NODE};
use super::load::{map_mb, peak_rss_mb, rss_mb};
use super::{median, netflow_counts, Observer};

const DELIVERED_PORT: u16 = 7700;
const DROPPED_PORT: u16 = 7701;
const TRACE_TARGET_MB: u64 = 150;
const DASHBOARD_TARGET_MB: u64 = 300;

/// What one run measured.
struct Run {
    startup: u64,
    idle: u64,
    peak: u64,
    maps: u64,
    /// trace: events and lost; dashboard: whether it showed "evicting".
    said: String,
}

/// A process that is killed (and reaped) when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Send `n` new UDP flows from pod a to `port` of pod b at `rate` a second
/// (python's own pace when it cannot keep up); the rate reached.
fn send_flows(n: u32, port: u16, rate: u32) -> Result<f64> {
    let start = Instant::now();
    sh(&format!(
        "ip netns exec {NS_A} python3 -c \"import socket, time
t0 = time.monotonic()
for i in range({n}):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'x', ('{IP_B}', {port}))
    s.close()
    if i % 500 == 499:
        ahead = (i + 1) / {rate} - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)\""
    ))?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `trace --json --netns a --proto udp` under the flood.
fn trace(bin: &Path, n: u32, port: u16, rate: u32) -> Result<(Run, f64)> {
    let o = Observer::netflow(bin, &["--netns", NS_A, "--proto", "udp"], "flood")?;
    let pid = o.child.id();
    let startup = peak_rss_mb(pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_mb(pid);
    let reached = send_flows(n, port, rate)?;
    // The flows it still holds expire (1 s idle) and are printed.
    std::thread::sleep(Duration::from_secs(3));
    let (peak, maps) = (peak_rss_mb(pid), map_mb(pid));
    let err = o.stop()?;
    let (events, lost) = netflow_counts(&err);
    let said = format!("{events} events, {lost} lost");
    Ok((
        Run {
            startup,
            idle,
            peak,
            maps,
            said,
        },
        reached,
    ))
}

/// A tmux session, killed when dropped.
struct Session(String);

impl Session {
    fn screen(&self) -> String {
        sh(&format!("tmux capture-pane -p -t {}", self.0)).unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = sh(&format!(
            "tmux kill-session -t {} 2>/dev/null || true",
            self.0
        ));
    }
}

/// `dashboard --netns a --proto udp` in a terminal of its own (tmux)
/// under the flood.
fn dashboard(bin: &Path, n: u32, port: u16, rate: u32) -> Result<(Run, f64)> {
    let s = Session(format!("nfbench-dash-{}", std::process::id()));
    sh(&format!(
        "tmux new-session -d -s {} -x 160 -y 48 '{} dashboard --netns {NS_A} --proto udp'",
        s.0,
        bin.display()
    ))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Started once the status bar lists the probes attached.
    while !s.screen().contains("sorted by") || s.screen().contains("probes 0/0") {
        if Instant::now() > deadline {
            bail!("the dashboard did not start: {}", s.screen());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The pane runs the dashboard itself (its shell execs the command).
    let pid: u32 = sh(&format!("tmux list-panes -t {} -F '#{{pane_pid}}'", s.0))?
        .trim()
        .parse()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "netflow" {
        bail!("the dashboard's pane runs {comm:?}, not netflow");
    }
    let startup = peak_rss_mb(pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_mb(pid);
    let reached = send_flows(n, port, rate)?;
    std::thread::sleep(Duration::from_secs(3));
    let (peak, maps) = (peak_rss_mb(pid), map_mb(pid));
    let evicting = s.screen().contains("evicting: ");
    sh(&format!("tmux send-keys -t {} q", s.0))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = if evicting {
        "said it evicts".to_string()
    } else {
        "evicted nothing".to_string()
    };
    Ok((
        Run {
            startup,
            idle,
            peak,
            maps,
            said,
        },
        reached,
    ))
}

/// Every flood size, delivered and dropped, for the trace and the
/// dashboard (of this build, and of `baseline` too when given), `rounds`
/// times; each run's figures, then the median peaks against the targets.
pub(super) fn floods(
    bin: &Path,
    sizes: &[u32],
    rate: u32,
    rounds: usize,
    baseline: Option<&Path>,
) -> Result<()> {
    let _lab = Lab::new()?;
    let sink = Command::new("ip")
        .args(["netns", "exec", NS_B, "python3", "-c"])
        .arg(format!("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',{DELIVERED_PORT}))\nwhile True: s.recvfrom(64)"))
        .stdout(Stdio::null())
        .spawn()?;
    let _sink = Kill(sink);
    sh(&format!(
        "ip netns exec {NS_NODE} iptables -I FORWARD -p udp --dport {DROPPED_PORT} -j DROP"
    ))?;
    let mut builds = vec![("this build", bin)];
    if let Some(b) = baseline {
        builds.push(("--baseline", b));
    }
    println!(
        "netflow bench: memory under floods of {sizes:?} new UDP flows from {NS_A} at {rate}/s, delivered and dropped (targets: trace --json <= {TRACE_TARGET_MB} MB, dashboard <= {DASHBOARD_TARGET_MB} MB, the largest flood within 10% of the smallest)"
    );
    let mut peaks: BTreeMap<(&str, &str, &str, u32), Vec<f64>> = BTreeMap::new();
    for round in 1..=rounds {
        for &n in sizes {
            for (kind, port) in [("delivered", DELIVERED_PORT), ("dropped", DROPPED_PORT)] {
                for tool in ["trace", "dashboard"] {
                    for (label, b) in &builds {
                        let (r, reached) = match tool {
                            "trace" => trace(b, n, port, rate)?,
                            _ => dashboard(b, n, port, rate)?,
                        };
                        println!(
                            "  round {round} {tool:<9} {kind:<9} {label:<10} {n:>7} flows at {reached:>6.0}/s: RSS start-up peak {} MB, idle {} MB, flood peak {} MB; BPF maps {} MB; {}",
                            r.startup, r.idle, r.peak, r.maps, r.said
                        );
                        peaks
                            .entry((tool, kind, label, n))
                            .or_default()
                            .push(r.peak as f64);
                    }
                }
            }
        }
    }
    println!("flood peaks (median of {rounds} round(s), MB):");
    let mut keys: Vec<(&str, &str, &str)> = peaks.keys().map(|k| (k.0, k.1, k.2)).collect();
    keys.dedup();
    for (tool, kind, label) in keys {
        let target = if tool == "trace" {
            TRACE_TARGET_MB
        } else {
            DASHBOARD_TARGET_MB
        };
        let mut by_size = Vec::new();
        for &n in sizes {
            if let Some(v) = peaks.get_mut(&(tool, kind, label, n)) {
                by_size.push((n, median(v)));
            }
        }
        let row: Vec<String> = by_size
            .iter()
            .map(|(n, p)| format!("{n}: {p:.0}"))
            .collect();
        let worst = by_size.iter().map(|(_, p)| *p).fold(0.0, f64::max);
        let flat = match (by_size.first(), by_size.last()) {
            (Some((_, a)), Some((_, b))) if *a > 0.0 => b / a,
            _ => 1.0,
        };
        println!(
            "  {tool:<9} {kind:<9} {label:<10} {} | target {target} MB: {}; largest/smallest {flat:.2}: {}",
            row.join(", "),
            if worst <= target as f64 { "met" } else { "NOT met" },
            if flat <= 1.10 { "flat" } else { "NOT flat" }
        );
    }
    Ok(())
}
