//! The kernel time of netflow's programs per forwarded packet: one round
//! per mode with `kernel.bpf_stats_enabled` on (it inflates small programs,
//! so the throughput rounds run with it off), the run time of every program
//! behind the observer's links summed and divided by the packets that
//! crossed the node in that round (pod a's eth0, both directions: each one
//! is forwarded across the bridge once).
use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{
    lab::{iperf, sh, NS_A},
    prog_stats, Mode, Observer,
};

/// Packets pod a's eth0 received and sent so far.
fn pod_packets() -> Result<u64> {
    let out = sh(&format!("ip -n {NS_A} -s -j link show eth0"))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -s -j link")?;
    let s = &v[0]["stats64"];
    let n = |d: &str| s[d]["packets"].as_u64().unwrap_or(0);
    Ok(n("rx") + n("tx"))
}

/// One mode's figures: forwarded packets, and each program's run time and
/// runs in the round.
pub(super) struct Cost {
    pub packets: u64,
    pub progs: BTreeMap<String, (u64, u64)>,
}

impl Cost {
    pub fn ns_per_packet(&self) -> f64 {
        let total: u64 = self.progs.values().map(|(t, _)| t).sum();
        total as f64 / self.packets.max(1) as f64
    }
}

/// The round of `mode` (its observer already started), with bpf_stats on
/// for its length only.
pub(super) fn round(observer: Observer, seconds: u32) -> Result<Cost> {
    sh("sysctl -qw kernel.bpf_stats_enabled=1")?;
    let before = pod_packets()?;
    let measured = iperf(seconds);
    let after = pod_packets()?;
    let progs = prog_stats(observer.child.id());
    sh("sysctl -qw kernel.bpf_stats_enabled=0")?;
    observer.stop()?;
    measured?;
    Ok(Cost {
        packets: after.saturating_sub(before),
        progs,
    })
}

/// The table: each mode's kernel time per forwarded packet beside the
/// agent's target, and what each program costs per run and per packet.
pub(super) fn print(costs: &[(Mode, Option<Cost>)]) {
    println!();
    println!(
        "kernel time of netflow's programs per forwarded packet (bpf_stats on, a round of its own; an empty program is ~60 ns here):"
    );
    println!(
        "{:<28} {:>12} {:>12}  target",
        "mode", "packets", "ns/packet"
    );
    for (mode, cost) in costs {
        let (packets, ns) = match cost {
            Some(c) => (c.packets.to_string(), format!("{:.0}", c.ns_per_packet())),
            // tcpdump's classic BPF socket filter is not counted by bpf_stats.
            None if *mode == Mode::Tcpdump => ("-".into(), "not counted (cBPF)".into()),
            None => ("-".into(), "0 (nothing attached)".into()),
        };
        let target = if *mode == Mode::AgentEvents {
            "<= 100 ns"
        } else {
            ""
        };
        println!("{:<28} {:>12} {:>12}  {target}", mode.label(), packets, ns);
    }
    println!();
    println!("per program, the same rounds (run_time_ns / run_cnt; runs per forwarded packet):");
    for (mode, cost) in costs {
        let Some(c) = cost else { continue };
        for (name, (t, n)) in &c.progs {
            if *n > 0 {
                println!(
                    "  {:<26} {:<24} {:>7.0} ns/run  {:>5.2} runs/packet",
                    mode.label(),
                    name,
                    *t as f64 / *n as f64,
                    *n as f64 / c.packets.max(1) as f64
                );
            }
        }
    }
}
