//! `netflow trace`: kernel programs → ring buffer → [`Pipeline`] (decoder →
//! correlator → output), until Ctrl-C, SIGTERM or `--duration`.
use std::{io::Write, path::PathBuf, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use crate::{
    correlate::filter::FlowFilter,
    correlate::Config,
    decode::kallsyms::Kallsyms,
    decode::names::Names,
    live::kernel::clock::{clock_ns, monotonic_ns},
    live::kernel::{btf::KernelBtf, preflight},
    live::probes::{NetfilterPlan, ProbeSet, Probes},
    live::ruletrace::{RuleTracer, WatchedNs},
    live::select::{inode_of, Selection, Selectors},
    output::{self, Mode, ProbeStatus, Run, Start, Stats},
    pipeline::Pipeline,
    record::{Meta, Writer},
};

#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub selectors: Selectors,
    /// Attach tc programs (see `select::tc_devices`).
    pub tc: bool,
    /// Attach BPF netfilter links (netflow's namespace, the --netns ones, and these).
    pub netfilter: bool,
    /// Name rules by nftables tracing (see `ruletrace`).
    pub rule_trace: bool,
    pub nf_netns: Vec<String>,
    pub duration: Option<Duration>,
    pub mode: Mode,
    /// A packet with no event for this long is complete.
    pub idle: Duration,
    /// Record every raw event here (see `record`).
    pub write: Option<PathBuf>,
    /// Size of the event ring buffer.
    pub ring_bytes: u32,
    /// `--memory`: the budget for what the run holds (`crate::budget`).
    pub memory: Option<u64>,
    /// No guardrails: full detail for every selected packet.
    pub every_packet: bool,
    /// The agent's counting: TCP segments without SYN/FIN/RST are counted
    /// by the sockets that send and take them, never followed hop by hop
    /// (their drops are still reported). Needs cgroup v2.
    pub count_at_sockets: bool,
    /// Which programs run (the agent's events mode: none per healthy
    /// packet; no netfilter links, tc or rule tracing then).
    pub probes: ProbeSet,
    /// Ports of DNS servers besides 53.
    pub dns_ports: Vec<u16>,
    /// The events mode: one successful TCP connect in N followed in full
    /// (0: none).
    pub sample_flows: u32,
    /// The node's name on every record (default: the hostname).
    pub node: Option<String>,
    /// Stop after this many packets reported (`-c`).
    pub count: Option<u64>,
    /// The command that traces, for its messages (`trace`, `dashboard`, ...).
    pub command: &'static str,
    /// Pods kept current by someone else (the agent): netns inode → pod
    /// label, shown instead of the selected pods' names.
    pub pods: Option<PodLabels>,
    /// Network namespaces kept current by someone else (the agent's pods):
    /// netfilter links follow them where the kernel has links.
    pub follow_netns: Option<NetnsList>,
}

/// Pod labels by network namespace inode, kept current by their owner.
pub type PodLabels = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, String>>>;

/// Network namespaces (name, path), kept current by their owner.
pub type NetnsList = std::sync::Arc<std::sync::Mutex<Vec<(String, PathBuf)>>>;

/// Guardrails by default (the kernel side is netflow-ebpf's `guard.rs`):
/// full detail for the first packets of each connection, then one in
/// `GUARD_EVERY`, at most `GUARD_RATE` such packets per second per CPU;
/// TCP SYN/FIN/RST, packets that are not TCP or UDP, and every drop always.
/// The rest is counted per connection in the kernel, so connection records
/// stay exact. With ~11 hops per packet across a node this keeps the daemon
/// to a few percent of a core per CPU at any traffic rate.
pub const GUARD_FIRST: u32 = 10;
pub const GUARD_EVERY: u32 = 1000;
pub const GUARD_RATE: u32 = 1000;

/// How often the ring buffer is drained when the kernel did not wake us.
const POLL: Duration = Duration::from_millis(5);
/// How often names of namespaces and devices are read again (in polls).
const REFRESH_POLLS: u64 = 400;

fn pod_labels(sel: &Selection, opts: &TraceOptions) -> std::collections::HashMap<u32, String> {
    if let Some(pods) = &opts.pods {
        return pods.lock().map(|p| p.clone()).unwrap_or_default();
    }
    sel.netns
        .iter()
        .filter_map(|n| {
            n.name
                .strip_prefix("pod ")
                .map(|p| (n.inode, p.to_string()))
        })
        .collect()
}

fn meta(sel: &Selection, probes: &Probes, opts: &TraceOptions, rule_trace: bool) -> Meta {
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Meta {
        netflow_version: env!("CARGO_PKG_VERSION").into(),
        kernel: field(|u| u.release()),
        hostname: opts.node.clone().unwrap_or_else(|| field(|u| u.nodename())),
        realtime_offset_ns: realtime_offset_ns(),
        started_ns: monotonic_ns(),
        summary: sel.summary.clone(),
        probes: probes.status.iter().map(|p| p.to_string()).collect(),
        probe_list: probes.status.iter().map(ProbeStatus::wire).collect(),
        idle_ns: opts.idle.as_nanos() as u64,
        vxlan_ports: sel.vxlan_ports.clone(),
        rule_hold_ns: if rule_trace { RULE_HOLD_NS } else { 0 },
        dns_ports: opts.dns_ports.clone(),
    }
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC now, ns: turns event times into dates.
fn realtime_offset_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME) as i128 - monotonic_ns() as i128
}

/// A change of the realtime clock's offset taken for a step (NTP's).
const CLOCK_STEP_NS: i128 = 1_000_000;

/// How long an ended packet waits for its rule trace events.
const RULE_HOLD_NS: u64 = 100_000_000;

/// Start nftables rule tracing where netfilter is watched; what it says
/// goes into the probe list shown at start.
fn start_rule_trace(
    opts: &TraceOptions,
    sel: &Selection,
    plan: &NetfilterPlan,
) -> (Option<RuleTracer>, ProbeStatus) {
    let status = |active: bool, note: String| ProbeStatus {
        name: "rules",
        target: "nftables tracing".into(),
        active,
        note,
    };
    if opts.probes == ProbeSet::Events && opts.rule_trace {
        return (None, crate::live::follow::try_rule_trace());
    }
    if !opts.rule_trace {
        return (
            None,
            status(
                false,
                "--no-rule-trace: ruleset untouched, no rule names".into(),
            ),
        );
    }
    let mut watched = vec![WatchedNs {
        name: "netflow's own".into(),
        path: None,
        inode: inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap_or(0),
    }];
    for (name, path) in &plan.netns {
        let inode = inode_of(path).unwrap_or(0);
        if watched.iter().all(|w| w.inode != inode) {
            watched.push(WatchedNs {
                name: name.clone(),
                path: Some(path.clone()),
                inode,
            });
        }
    }
    match RuleTracer::start(&watched, sel) {
        Ok(t) => {
            let note = format!(
                "rule names: table inet {} in {} netns (owned, gone when netflow exits), marks selected packets for tracing, {}/s; --no-rule-trace to leave the ruleset alone",
                t.table,
                t.namespaces,
                crate::live::ruletrace::netlink::TRACE_RATE
            );
            (Some(t), status(true, note))
        }
        Err(e) => (None, status(false, format!("no rule names: {e}"))),
    }
}

/// Trace to stdout until Ctrl-C, SIGTERM or `--duration`.
pub async fn run(opts: TraceOptions) -> anyhow::Result<Stats> {
    let sink = output::sink(opts.mode, Box::new(output::Stdout));
    run_with(opts, sink, false, std::future::pending()).await
}

/// Trace into `sink` until Ctrl-C, SIGTERM, `--duration` or `stop`
/// completes; `quiet`: nothing on stderr (a terminal UI owns the screen).
/// Give the allocator's freed memory back to the system now: mimalloc keeps
/// freed pages for reuse a while, and a parse of the kernel's BTF leaves
/// ~55 MB of them (idle RSS 112 MB without this, ~60 MB with it).
/// The run's memory budget: `--memory`, else its memory cgroup's limit,
/// else the default.
pub fn budget(opts: &TraceOptions) -> Result<crate::budget::Budget, crate::budget::BudgetError> {
    match opts.memory {
        Some(b) => crate::budget::Budget::given(b),
        None => Ok(crate::live::kernel::cgroup::memory_max()
            .map(crate::budget::Budget::of_limit)
            .unwrap_or_default()),
    }
}

/// mimalloc's `mi_option_purge_delay` (the 16th of its `mi_option_e` in v2
/// and v3) and its documented defaults (10 ms in v2, 1000 ms in v3, which
/// the bundled `libmimalloc-sys` builds: `MIMALLOC_VERBOSE=1` lists it).
#[cfg(not(feature = "system-alloc"))]
const MI_OPTION_PURGE_DELAY: i32 = 15;
#[cfg(not(feature = "system-alloc"))]
const MI_PURGE_DELAY_DEFAULTS: [std::ffi::c_long; 2] = [10, 1000];

/// Freed memory goes back to the system at once rather than a second
/// later: under a flood the churn otherwise held ~20-40 MB more (100k
/// dropped flows peaked at 155-180 MB, 135-155 MB with this). Only where
/// the option has a documented default (another mimalloc's option of that
/// number is left alone).
fn purge_freed_memory_promptly() {
    #[cfg(not(feature = "system-alloc"))]
    {
        extern "C" {
            fn mi_option_get(option: i32) -> std::ffi::c_long;
            fn mi_option_set(option: i32, value: std::ffi::c_long);
        }
        // SAFETY: mimalloc's option calls (linked with the allocator), valid
        // for any option number, callable from any thread at any time.
        unsafe {
            if MI_PURGE_DELAY_DEFAULTS.contains(&mi_option_get(MI_OPTION_PURGE_DELAY)) {
                mi_option_set(MI_OPTION_PURGE_DELAY, 0);
            }
        }
    }
}

fn release_freed_memory() {
    #[cfg(not(feature = "system-alloc"))]
    {
        use mimalloc as _;
        extern "C" {
            fn mi_collect(force: bool);
        }
        // SAFETY: mimalloc's entry point (linked with the allocator),
        // callable from any thread at any time.
        unsafe { mi_collect(true) }
    }
}

pub async fn run_with(
    opts: TraceOptions,
    sink: Box<dyn crate::output::Sink + Send>,
    quiet: bool,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Stats> {
    purge_freed_memory_promptly();
    preflight::check(opts.command)?;
    // A bad recording path fails before anything is loaded.
    let record_file = opts.write.as_deref().map(Writer::open).transpose()?;
    let sel = opts.selectors.resolve()?;
    let kbtf = KernelBtf::load()?;
    let reasons = kbtf.drop_reasons()?;
    let consumed = reasons
        .iter()
        .find(|(_, n)| n.as_str() == "CONSUMED")
        .map(|(v, _)| *v)
        // Before 6.2 there is no CONSUMED: a value no drop carries.
        .unwrap_or(u32::MAX - 1);
    let mut names = Names {
        reasons,
        kallsyms: Kallsyms::load(),
        ..Names::default()
    };
    crate::live::names::refresh(&mut names);
    names.pods = pod_labels(&sel, &opts);
    let mut plan = NetfilterPlan {
        enabled: opts.netfilter,
        netns: Vec::new(),
    };
    for n in &sel.netns {
        plan.netns.push((n.name.clone(), n.path.clone()));
    }
    for spec in &opts.nf_netns {
        let n = crate::live::select::resolve_netns(spec)?;
        plan.netns.push((n.name, n.path));
    }
    let mut sel = sel;
    if opts.probes == ProbeSet::Events {
        sel.summary = "every drop and TCP connection event (events mode)".into();
        // DNS and the first datagram each way of each UDP conversation
        // are read where sockets send and take them.
        sel.filter.flags |= netflow_common::filter_flags::ON_DEMAND
            | netflow_common::filter_flags::DNS
            | netflow_common::filter_flags::UDP_CONVS;
        // DNS is read where sockets send and take it: port 53 and those
        // named (the CLI allows as many as fit).
        let ports = std::iter::once(53).chain(opts.dns_ports.iter().copied().filter(|p| *p != 53));
        for (slot, p) in sel.filter.dns_ports.iter_mut().zip(ports) {
            *slot = p;
        }
        sel.filter.sample_every = opts.sample_flows;
    }
    if opts.every_packet {
        sel.filter.flags |= netflow_common::filter_flags::EVERY_PACKET;
    } else {
        sel.filter.guard_first = GUARD_FIRST;
        sel.filter.guard_every = GUARD_EVERY;
        sel.filter.guard_rate = GUARD_RATE;
        if opts.count_at_sockets && crate::live::kernel::cgroup::open_root().is_ok() {
            sel.filter.flags |= netflow_common::filter_flags::SOCKET_COUNT;
        }
    }
    let mut probes = Probes::start(&sel, &kbtf, consumed, &plan, opts.ring_bytes, opts.probes)?;
    // The kernel's BTF as parsed (~55 MB of heap) was for the offsets and the
    // probes' checks: not kept for the run, and given back to the system.
    drop(kbtf);
    release_freed_memory();
    follow_netns(&mut probes, &opts, quiet);
    if opts.tc {
        probes.attach_tc(&crate::live::select::tc_devices(&opts.selectors.ifaces))?;
    }
    let (mut rules, rule_status) = start_rule_trace(&opts, &sel, &plan);
    let rules_work = rule_status.active;
    probes.status.push(rule_status);
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd lives.
    let mut ring = unsafe { AsyncFd::register(probes.take_events()?) }
        .map_err(|e| anyhow::anyhow!("failed to watch the event ring buffer: {e}"))?;

    let budget = budget(&opts)?;
    let meta = meta(&sel, &probes, &opts, rules.is_some());
    let recorder = match (record_file, &opts.write) {
        (Some(f), Some(path)) => Some(Writer::start(f, path, &meta)?),
        _ => None,
    };
    if !quiet {
        let mut err = std::io::stderr().lock();
        writeln!(err, "netflow: tracing {}", sel.summary)?;
        for p in &probes.status {
            writeln!(err, "  probe {p}")?;
        }
        if let Some(p) = &opts.write {
            writeln!(err, "  recording to {}", p.display())?;
        }
        writeln!(
            err,
            "  memory budget {}: {} open timelines, {} open connections at most (--memory)",
            budget.said(),
            budget.timelines(),
            budget.connections()
        )?;
        writeln!(err, "  Ctrl-C to stop")?;
    }
    // Counters a drop's cause is read against, as they are before the first
    // packet is traced.
    let evidence = crate::live::evidence::NodeEvidence::with_baseline();
    // Under a service manager (systemd Type=notify) or a test harness: the
    // probes are attached, packets are being traced.
    notify(sd_notify::NotifyState::Ready);

    let cfg = Config {
        max_open: budget.timelines(),
        max_connections: budget.connections(),
        idle_ns: opts.idle.as_nanos() as u64,
        vxlan_ports: sel.vxlan_ports.clone(),
        rule_hold_ns: if rules.is_some() || (opts.rule_trace && opts.probes == ProbeSet::Events) {
            RULE_HOLD_NS
        } else {
            0
        },
        dns_ports: opts.dns_ports.clone(),
        ..Config::default()
    };
    // The kernel selected the packets: no filter after it.
    let mut pipe = Pipeline::new(cfg, sink, names, recorder, FlowFilter::default());
    pipe.limit(opts.count);
    pipe.set_counts(Box::new(probes.take_counts()?));
    pipe.set_evidence(Box::new(evidence));
    if opts.probes == ProbeSet::Events {
        pipe.collect_failures();
    }
    pipe.start(&Run {
        node: meta.hostname.clone(),
        realtime_offset_ns: meta.realtime_offset_ns,
        ts_ns: meta.started_ns,
        start: Start {
            netflow_version: meta.netflow_version.clone(),
            kernel: meta.kernel.clone(),
            summary: sel.summary.clone(),
            probes: meta.probe_list.clone(),
            recording: None,
        },
    })?;
    pipe.names_changed()?;
    let mut clock = meta.realtime_offset_ns;

    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls: u64 = 0;
    let mut rules_open = rules.is_some();
    let mut follow = crate::live::follow::Follow::new(rules_work);

    // When the pipeline last expired packets and connections. Draining a
    // busy ring keeps the loop from ever waiting, and then the runtime's
    // timer (the interval) does not fire: under a burst the open packets
    // grew for seconds (~300k timelines, 500 MB). A tick overdue runs at
    // once, whatever the interval says.
    let mut last_tick = std::time::Instant::now();
    loop {
        // `-c N` reached, or the reader of stdout went away (`| head`):
        // stop as on Ctrl-C, the recording's tail written.
        if pipe.limit_reached() || output::stdout_closed() {
            break;
        }
        let overdue = last_tick.elapsed() >= 2 * POLL;
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
            _ = &mut stop => break,
            ev = next_rule(&mut rules), if rules_open => match ev {
                Some(bytes) => {
                    pipe.event(&bytes)?;
                    if let Some(r) = &mut rules {
                        while let Ok(bytes) = r.events.try_recv() {
                            pipe.event(&bytes)?;
                        }
                    }
                }
                None => rules_open = false,
            },
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                if !drain(guard.get_inner_mut(), &mut pipe)? {
                    guard.clear_ready();
                }
            }
            _ = async {
                if !overdue {
                    tick.tick().await;
                }
            } => {
                last_tick = std::time::Instant::now();
                drain(ring.get_mut(), &mut pipe)?;
                polls += 1;
                if polls.is_multiple_of(4) {
                    pipe.lost(probes.lost(), monotonic_ns());
                    pipe.sampled(probes.sampled());
                    if opts.probes == ProbeSet::Events {
                        pipe.sockets(&probes.sock_counts());
                    }
                }
                if opts.probes == ProbeSet::Events {
                    crate::live::follow::failures(
                        &mut probes,
                        &mut pipe,
                        opts.follow_netns.as_ref(),
                        &mut follow,
                        crate::live::follow::Rules {
                            tracer: &mut rules,
                            open: &mut rules_open,
                        },
                    );
                }
                if polls.is_multiple_of(REFRESH_POLLS) {
                    // NTP may have stepped the realtime clock (two reads of
                    // the offset differ by the time between the clock reads:
                    // not a step).
                    let offset = realtime_offset_ns();
                    if (offset - clock).abs() > CLOCK_STEP_NS {
                        clock = offset;
                        pipe.clock(offset);
                    }
                    let before = pipe.names.snapshot();
                    crate::live::names::refresh(&mut pipe.names);
                    pipe.names.pods = pod_labels(&sel, &opts);
                    follow_netns(&mut probes, &opts, quiet);
                    if pipe.names.snapshot() != before {
                        pipe.names_changed()?;
                    }
                }
                // With rule tracing, packets end only once the watchers
                // handed over every trace the kernel sent before then.
                let mut now = monotonic_ns();
                if let Some(r) = &mut rules {
                    while let Ok(bytes) = r.events.try_recv() {
                        pipe.event(&bytes)?;
                    }
                    now = r.caught_up(now);
                }
                pipe.tick(now)?;
            }
        }
    }
    notify(sd_notify::NotifyState::Stopping);
    // What is already in the ring, for at most a moment: stopping must be quick.
    // Rule traces of the last packets may still be on their way (the
    // watchers resolve rules by handle): until they caught up, briefly.
    let stopped_at = monotonic_ns();
    let until = std::time::Instant::now()
        + if rules.is_some() {
            RULES_AT_EXIT
        } else {
            Duration::from_millis(300)
        };
    loop {
        let more = drain(ring.get_mut(), &mut pipe)?;
        let mut rules_behind = false;
        if let Some(r) = &mut rules {
            while let Ok(bytes) = r.events.try_recv() {
                pipe.event(&bytes)?;
            }
            rules_behind = r.caught_up(monotonic_ns()) < stopped_at;
        }
        if std::time::Instant::now() >= until || (!more && !rules_behind) {
            break;
        }
        if !more {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pipe.sampled(probes.sampled());
    let stats = pipe.finish(probes.lost(), monotonic_ns(), Some(EXIT_BUDGET))?;
    if !quiet {
        eprintln!(
            "netflow: {} packets ({} dropped, {} unknown, {} cut short), {} only counted, {} connections ({} not ok), {} events, {} lost, {} evicted, {} undecodable, {} not printed at exit",
            stats.packets,
            stats.dropped,
            stats.unknown,
            stats.in_flight,
            stats.sampled,
            stats.connections,
            stats.connections_failed,
            stats.events,
            stats.lost,
            stats.evicted,
            stats.decode_errors,
            stats.unreported
        );
    }
    if let Some(r) = &rules {
        if r.lost() > 0 && !quiet {
            eprintln!(
                "netflow: {} rule trace events lost (queue or socket full)",
                r.lost()
            );
        }
    }
    // Dropping the rule tracer closes its sockets: the kernel deletes its tables.
    drop(rules);
    // Dropping the probes detaches every program.
    drop(ring);
    drop(probes);
    Ok(stats)
}

/// Netfilter links follow the namespaces someone else keeps current (the
/// agent's pods); what changed goes to stderr.
fn follow_netns(probes: &mut Probes, opts: &TraceOptions, quiet: bool) {
    let Some(list) = &opts.follow_netns else {
        return;
    };
    let want = match list.lock() {
        Ok(l) => l.clone(),
        Err(_) => return,
    };
    for said in probes.follow_netns(&want) {
        if !quiet {
            eprintln!("netflow: {said}");
        }
    }
}

/// The next rule trace event (never, without rule tracing).
async fn next_rule(r: &mut Option<RuleTracer>) -> Option<Vec<u8>> {
    match r {
        Some(t) => t.events.recv().await,
        None => std::future::pending().await,
    }
}

/// How long a stopping tracer waits at most for rule traces of its last packets.
const RULES_AT_EXIT: Duration = Duration::from_secs(2);

/// How long a stopping tracer spends printing what is still open; the
/// rest is counted (`unreported` in the stats).
const EXIT_BUDGET: Duration = Duration::from_millis(1500);

/// Events handled per drain at most: under any event rate the loop comes
/// back to signals, `--duration` and the clock between batches.
const DRAIN_MAX: usize = 16384;

/// Hand the ring's events to the pipeline; true when more are waiting.
fn drain(ring: &mut RingBuf<MapData>, pipe: &mut Pipeline) -> std::io::Result<bool> {
    for _ in 0..DRAIN_MAX {
        match ring.next() {
            Some(item) => pipe.event(&item)?,
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// Tell a service manager how the trace is doing (`NOTIFY_SOCKET`, the
/// systemd protocol); nothing without one.
fn notify(state: sd_notify::NotifyState) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(&[state]) {
            log::warn!("NOTIFY_SOCKET: {e}");
        }
    }
}
