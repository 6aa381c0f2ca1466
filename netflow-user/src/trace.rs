//! `netflow trace`: kernel programs → ring buffer → decoder → correlator →
//! output, until Ctrl-C, SIGTERM or `--duration`.
use std::{io::Write, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use crate::{
    correlate::{Config, Correlator},
    decode::Event,
    kernel::{btf::KernelBtf, kallsyms::Kallsyms, preflight},
    names::Names,
    output::{self, Mode, Sink, Stats},
    probes::{NetfilterPlan, Probes},
    select::Selectors,
};

#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub selectors: Selectors,
    /// Attach tc programs (see `select::tc_devices`).
    pub tc: bool,
    /// Attach BPF netfilter links (netflow's namespace, the --netns ones, and these).
    pub netfilter: bool,
    pub nf_netns: Vec<String>,
    pub duration: Option<Duration>,
    pub mode: Mode,
    /// A packet with no event for this long is complete.
    pub idle: Duration,
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How often the ring buffer is drained when the kernel did not wake us.
const POLL: Duration = Duration::from_millis(5);

pub async fn run(opts: TraceOptions) -> anyhow::Result<Stats> {
    preflight::check()?;
    let sel = opts.selectors.resolve()?;
    let kbtf = KernelBtf::load()?;
    let reasons = kbtf.drop_reasons()?;
    let consumed = reasons
        .iter()
        .find(|(_, n)| n.as_str() == "CONSUMED")
        .map(|(v, _)| *v)
        .unwrap_or(1);
    let mut names = Names {
        reasons,
        kallsyms: Kallsyms::load(),
        ..Names::default()
    };
    names.refresh();
    names.pods = sel
        .netns
        .iter()
        .filter_map(|n| {
            n.name
                .strip_prefix("pod ")
                .map(|p| (n.inode, p.to_string()))
        })
        .collect();
    let mut plan = NetfilterPlan {
        enabled: opts.netfilter,
        netns: Vec::new(),
    };
    for n in &sel.netns {
        plan.netns.push((n.name.clone(), n.path.clone()));
    }
    for spec in &opts.nf_netns {
        let n = crate::select::resolve_netns(spec)?;
        plan.netns.push((n.name, n.path));
    }
    let mut probes = Probes::start(&sel, &kbtf, consumed, &plan)?;
    if opts.tc {
        probes.attach_tc(&crate::select::tc_devices(&opts.selectors.ifaces))?;
    }
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd lives.
    let mut ring = unsafe { AsyncFd::register(probes.take_events()?) }
        .map_err(|e| anyhow::anyhow!("failed to watch the event ring buffer: {e}"))?;

    {
        let mut err = std::io::stderr().lock();
        writeln!(err, "netflow: tracing {}", sel.summary)?;
        for p in &probes.status {
            writeln!(err, "  probe {p}")?;
        }
        writeln!(err, "  Ctrl-C to stop")?;
    }

    let mut sink = output::sink(opts.mode, Box::new(std::io::stdout()));
    let mut corr = Correlator::new(Config {
        idle_ns: opts.idle.as_nanos() as u64,
        vxlan_ports: sel.vxlan_ports.clone(),
        ..Config::default()
    });
    let mut stats = Stats::default();
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;

    loop {
        tokio::select! {
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = &mut deadline => break,
                guard = ring.readable_mut() => {
                    let mut guard = guard?;
                    drain(guard.get_inner_mut(), &mut corr, &mut stats);
                    guard.clear_ready();
                }
                _ = tick.tick() => {
                    drain(ring.get_mut(), &mut corr, &mut stats);
                    ticks += 1;
                    if ticks.is_multiple_of(400) {
                        names.refresh();
        names.pods = sel
            .netns
            .iter()
            .filter_map(|n| n.name.strip_prefix("pod ").map(|p| (n.inode, p.to_string())))
            .collect();
                    }
                    emit(corr.expire(monotonic_ns()), corr.take_notes(), sink.as_mut(), &names, &mut stats)?;
                }
            }
    }
    drain(ring.get_mut(), &mut corr, &mut stats);
    emit(
        corr.flush(),
        corr.take_notes(),
        sink.as_mut(),
        &names,
        &mut stats,
    )?;
    stats.lost = probes.lost();
    sink.stats(&stats)?;
    sink.flush()?;
    eprintln!(
        "netflow: {} packets ({} dropped), {} events, {} lost, {} undecodable",
        stats.packets, stats.dropped, stats.events, stats.lost, stats.decode_errors
    );
    // Dropping the probes detaches every program.
    drop(ring);
    drop(probes);
    Ok(stats)
}

fn drain(ring: &mut RingBuf<MapData>, corr: &mut Correlator, stats: &mut Stats) {
    while let Some(item) = ring.next() {
        stats.events += 1;
        match Event::try_from(&*item) {
            Ok(ev) => corr.push(ev),
            Err(e) => {
                stats.decode_errors += 1;
                log::debug!("undecodable event: {e}");
            }
        }
    }
}

fn emit(
    tls: Vec<crate::correlate::Timeline>,
    notes: Vec<crate::correlate::Note>,
    sink: &mut dyn Sink,
    names: &Names,
    stats: &mut Stats,
) -> std::io::Result<()> {
    for n in notes {
        stats.notes += 1;
        sink.note(&n, names)?;
    }
    for tl in tls {
        if tl.hops.is_empty() {
            continue;
        }
        stats.packets += 1;
        if tl.drop.is_some() {
            stats.dropped += 1;
        }
        sink.timeline(&tl, names)?;
    }
    sink.flush()
}
