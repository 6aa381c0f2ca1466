//! One handler per command: each reads its arguments and runs the library.
use std::io::Write;
use std::path::PathBuf;
#[cfg(feature = "live")]
use std::time::Duration;

#[cfg(feature = "live")]
use netflow::live::{
    probes::ProbeSet,
    select::Selectors,
    trace::{self, TraceOptions},
};
use netflow::{
    correlate::filter::FlowFilter,
    output::{self, Mode},
    replay,
};

#[cfg(feature = "live")]
use super::args::{AgentArgs, DemoArgs};
use super::args::{DashboardArgs, ExportArgs, ReplayArgs};

#[cfg(feature = "live")]
pub(crate) fn agent_cmd(a: AgentArgs, rt: &Runtime) -> anyhow::Result<()> {
    use netflow::live::agent::{self, AgentOptions};
    netflow::live::kernel::preflight::check("agent")?;
    let events = a.probes == "events";
    if a.sample_flows != 0 && !events {
        anyhow::bail!(
            "--sample-flows samples the events mode's flows; --probes per-hop follows every flow already"
        );
    }
    let extra = a.dns_port.iter().filter(|p| **p != 53).count();
    if events && extra >= netflow_common::MAX_DNS_PORTS {
        anyhow::bail!(
            "the events mode reads DNS on port 53 and at most {} --dns-port besides ({extra} given; --probes per-hop takes any number)",
            netflow_common::MAX_DNS_PORTS - 1
        );
    }
    let opts = AgentOptions {
        trace: TraceOptions {
            selectors: Selectors {
                runtime_endpoint: a.runtime_endpoint.clone(),
                ..Selectors::default()
            },
            tc: false,
            // The events mode runs nothing per healthy packet: netfilter
            // programs and nftables tracing only for the flows it follows,
            // while it does; no counting at the sockets.
            netfilter: !events,
            rule_trace: !a.no_rule_trace,
            nf_netns: a.nf_netns,
            duration: None,
            mode: Mode::Json,
            idle: Duration::from_secs(1),
            write: None,
            ring_bytes: a.ring_size,
            memory: a.memory,
            every_packet: false,
            count_at_sockets: !events,
            probes: if events {
                ProbeSet::Events
            } else {
                ProbeSet::PerHop
            },
            dns_ports: a.dns_port,
            sample_flows: a.sample_flows,
            node: a.node,
            count: None,
            command: "agent",
            pods: None,
            follow_netns: None,
        },
        metrics_addr: a.metrics_addr,
        runtime_endpoint: a.runtime_endpoint,
        log_all_connections: a.log_connections == "all",
    };
    rt.block_on(agent::run(opts)).map(|_| ())
}

pub(crate) fn schema_cmd() -> anyhow::Result<()> {
    print_or_pipe(netflow_schema::schema_text().as_bytes())
}

/// Everything to stdout; a reader that went away (`| head`) is not an error.
fn print_or_pipe(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

pub(crate) fn replay_cmd(a: ReplayArgs) -> anyhow::Result<()> {
    let filter = a.select.filter()?;
    let mode = if a.json { Mode::Json } else { Mode::Text };
    let r = replay::replay(
        &a.file,
        output::sink(mode, Box::new(output::Stdout)),
        filter.clone(),
    )?;
    replay::summary(&r, &a.file, &mut std::io::stderr())?;
    warn_unmatched(&filter, &r);
    if r.truncated {
        anyhow::bail!("{} is truncated", a.file.display());
    }
    Ok(())
}

/// Selectors that matched nothing in a recording: said, with what the
/// recording has (a typo, or the wrong recording).
fn warn_unmatched(filter: &FlowFilter, r: &replay::Replayed) {
    if filter.is_empty() || r.stats.packets > 0 {
        return;
    }
    eprintln!(
        "netflow: warning: no packet of the recording matches the selectors ({}); it holds {} events of {}",
        filter.words(),
        r.stats.events,
        r.meta.summary
    );
}

pub(crate) fn export_cmd(a: ExportArgs) -> anyhow::Result<()> {
    let filter = a.select.filter()?;
    let stdout = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if stdout(&a.json) && stdout(&a.pcapng) {
        anyhow::bail!(
            "--pcapng - and --json - would mix two formats on stdout: give one of them a file"
        );
    }
    let create = |p: &PathBuf| -> anyhow::Result<Box<dyn std::io::Write + Send>> {
        if p.as_os_str() == "-" {
            return Ok(Box::new(output::Stdout));
        }
        let f = netflow::record::create_private(p)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?;
        Ok(Box::new(std::io::BufWriter::new(f)))
    };
    let mut truncated = false;
    if let Some(out) = &a.json {
        let r = replay::replay(
            &a.file,
            output::sink(Mode::Json, create(out)?),
            filter.clone(),
        )?;
        truncated |= r.truncated;
        replay::summary(&r, &a.file, &mut std::io::stderr())?;
        warn_unmatched(&filter, &r);
    }
    if let Some(out) = &a.pcapng {
        let offset = replay::meta(&a.file)?.realtime_offset_ns;
        let sink = netflow::output::pcapng::Pcapng::new(create(out)?, offset)?;
        let r = replay::replay(&a.file, Box::new(sink), filter)?;
        truncated |= r.truncated;
        eprintln!(
            "netflow: wrote {} ({} packet timelines, one pcapng packet per hop)",
            out.display(),
            r.stats.packets
        );
    }
    if truncated {
        anyhow::bail!("{} is truncated: exported what it holds", a.file.display());
    }
    Ok(())
}

pub(crate) fn dashboard_cmd(
    a: DashboardArgs,
    #[cfg(feature = "live")] rt: &Runtime,
) -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};

    use netflow::output::dashboard::{run_ui, App, DashboardSink, Inbox};

    let app = Arc::new(Mutex::new(App {
        no_color: netflow::output::dashboard::no_color_asked(),
        ..App::default()
    }));
    if let Some(file) = &a.replay {
        #[cfg(feature = "live")]
        let filter = a.live.select.filter()?;
        #[cfg(not(feature = "live"))]
        let filter = a.select.filter()?;
        app.lock().expect("state").state.source = format!("replay {}", file.display());
        let inbox = Arc::new(Inbox::default());
        let r = replay::replay(file, Box::new(DashboardSink(inbox.clone())), filter)?;
        {
            let mut st = app.lock().expect("state");
            st.absorb(&inbox);
            st.state.selection = r.meta.summary.clone();
            st.state.probes = r.meta.probes.clone();
            st.state.lost = r.stats.lost;
        }
        run_ui(app, inbox, || false)?;
        if r.truncated {
            eprintln!(
                "netflow: {} was cut short: showed what it holds",
                file.display()
            );
        }
        return Ok(());
    }
    #[cfg(feature = "live")]
    {
        netflow::live::kernel::preflight::check("dashboard")?;
        let mut opts = a.live.options(Mode::Text);
        opts.command = "dashboard";
        live_dashboard(opts, "live", rt)
    }
    #[cfg(not(feature = "live"))]
    anyhow::bail!("this netflow is built without the kernel side: give --replay FILE")
}

#[cfg(feature = "live")]
pub(crate) type Runtime = tokio::runtime::Runtime;

#[cfg(feature = "live")]
/// The trace runs here, the terminal UI in its own thread; either ending
/// stops the other.
fn live_dashboard(opts: TraceOptions, source: &str, rt: &Runtime) -> anyhow::Result<()> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    };

    use netflow::output::dashboard::{run_ui, App, DashboardSink, Inbox};

    let app = Arc::new(Mutex::new(App {
        no_color: netflow::output::dashboard::no_color_asked(),
        ..App::default()
    }));
    {
        let mut app = app.lock().expect("state");
        app.state.source = source.into();
        app.state.max_flows = trace::budget(&opts)?.flows();
    }
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let inbox = Arc::new(Inbox::default());
    let ui = {
        let (app, done, inbox) = (app.clone(), done.clone(), inbox.clone());
        std::thread::spawn(move || {
            let r = run_ui(app, inbox, || done.load(Ordering::Relaxed));
            let _ = tx.send(());
            r
        })
    };
    let traced = rt.block_on(trace::run_with(
        opts,
        Box::new(DashboardSink(inbox)),
        true,
        async {
            let _ = rx.await;
        },
    ));
    done.store(true, Ordering::Relaxed);
    let ui = ui
        .join()
        .map_err(|_| anyhow::anyhow!("the dashboard thread panicked"))?;
    traced?;
    ui?;
    Ok(())
}

#[cfg(feature = "live")]
pub(crate) fn demo_cmd(a: DemoArgs, rt: &Runtime) -> anyhow::Result<()> {
    use netflow::live::demo;

    netflow::live::kernel::preflight::check("demo")?;
    eprintln!("netflow demo: building the lab (namespaces nfdemo-*)...");
    let mut lab = demo::Lab::build()?;
    lab.start_traffic();
    let opts = TraceOptions {
        selectors: Selectors {
            pods: vec![demo::WEB.into()],
            ..Selectors::default()
        },
        tc: false,
        netfilter: true,
        rule_trace: true,
        nf_netns: vec![demo::NODE.into(), demo::NODE2.into()],
        duration: a.json_for,
        mode: Mode::Json,
        idle: Duration::from_secs(1),
        write: None,
        ring_bytes: netflow_common::RING_BYTES,
        memory: None,
        every_packet: false,
        count_at_sockets: false,
        probes: Default::default(),
        sample_flows: 0,
        dns_ports: Vec::new(),
        node: None,
        count: None,
        command: "demo",
        pods: None,
        follow_netns: None,
    };
    let result = match a.json_for {
        Some(_) => rt.block_on(trace::run(opts)).map(|_| ()),
        None => live_dashboard(opts, "demo", rt),
    };
    drop(lab);
    eprintln!("netflow demo: lab removed");
    result
}
