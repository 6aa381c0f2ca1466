//! The `netflow` command line: a thin layer over the library.
use std::io::Write;
use std::process::ExitCode;
#[cfg(feature = "live")]
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[cfg(feature = "live")]
use netflow::live::{
    select::Selectors,
    trace::{self, TraceOptions},
};
use netflow::{
    correlate::filter::FlowFilter,
    output::{self, Mode},
    replay,
};

#[derive(Parser)]
#[command(
    name = "netflow",
    version,
    about = "Follow packets across this node with eBPF: every device, netfilter, tunnels, and where and why they are dropped"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print, per packet, every hop it takes through this node (needs root).
    ///
    /// Selectors pick packets, not devices: a selected packet is shown on
    /// every device it crosses. With no selector every packet is traced.
    #[cfg(feature = "live")]
    Trace(TraceArgs),
    /// Print the timelines of a recording (`trace --write`), as `trace` did.
    /// Needs no root; the selectors filter the recorded packets.
    Replay(ReplayArgs),
    /// Turn a recording into pcapng (one packet per hop) or JSON lines.
    Export(ExportArgs),
    /// A live terminal view of many flows (needs root), or of a recording
    /// with --replay (no root): flows, hop timelines, drop reasons, rates.
    Dashboard(DashboardArgs),
    /// Build a small lab here (pods on a bridge, a Service VIP, a pod behind
    /// VXLAN, a policy drop), send traffic and show it in the dashboard.
    /// Needs root; removes everything on exit.
    #[cfg(feature = "live")]
    Demo(DemoArgs),
    /// The node mode (needs root): every pod of this node with the
    /// guardrails on, Prometheus metrics on --metrics-addr (`/metrics`,
    /// `/healthz`), each drop and each connection that did not end well as a
    /// JSON line on stdout. Runs until SIGTERM or Ctrl-C.
    #[cfg(feature = "live")]
    Agent(AgentArgs),
    /// What this kernel gives netflow (needs root): every probe attached as
    /// `trace` would (then detached), per hop the probe that serves it and
    /// the fallbacks taken, per program the verifier's figure against its
    /// bound. Run it before an incident; attach it to a bug report. Exits
    /// 1 when a program is refused by the verifier or over its bound.
    #[cfg(feature = "live")]
    Check(CheckArgs),
    /// Print the JSON Schema of the JSON lines (`--json`, the agent's
    /// stdout): one `kind` per record, each line with its format version
    /// `v`, `time`, `ts_ns` and `node`.
    Schema,
    /// Not in a build without the kernel side: says so.
    #[cfg(not(feature = "live"))]
    #[command(hide = true)]
    Trace(Unavailable),
    #[cfg(not(feature = "live"))]
    #[command(hide = true)]
    Demo(Unavailable),
}

/// Whatever was given to a command this build does not have.
#[cfg(not(feature = "live"))]
#[derive(Args)]
struct Unavailable {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

#[cfg(feature = "live")]
#[derive(Args)]
struct CheckArgs {
    /// One JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "live")]
#[derive(Args)]
struct DemoArgs {
    /// Instead of the dashboard, print JSON lines for this long (e.g. 5s).
    #[arg(long, value_parser = parse_duration)]
    json_for: Option<Duration>,
}

/// Which packets: shared by `trace` (in the kernel) and `replay`/`export`.
#[derive(Args)]
struct SelectArgs {
    /// Packets of this pod, `NAME` or `NAMESPACE/NAME`: asked of the container
    /// runtime over CRI, else a named network namespace (`ip netns`). Repeatable.
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pod: Vec<String>,
    /// Packets entering or leaving this network namespace: a name from
    /// `ip netns` or a path such as /proc/PID/ns/net. Repeatable.
    #[arg(long, value_name = "NAME|PATH")]
    netns: Vec<String>,
    /// Packets from or to this address or CIDR (also inside VXLAN/IP-in-IP). Repeatable.
    #[arg(long, value_name = "IP[/LEN]")]
    host: Vec<String>,
    /// Packets from or to this TCP/UDP port. Repeatable.
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,
    /// Only this protocol: tcp, udp, sctp, icmp, icmpv6 or a number.
    #[arg(long, value_name = "PROTO")]
    proto: Option<String>,
}

#[cfg(feature = "live")]
/// What `trace` and `dashboard` attach and select, live.
#[derive(Args)]
struct LiveArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Packets of the pod that has this address. Repeatable.
    #[arg(long, value_name = "IP")]
    pod_ip: Vec<String>,
    /// CRI socket (default: containerd's, then CRI-O's, as crictl).
    #[arg(long, value_name = "unix:///PATH")]
    runtime_endpoint: Option<String>,
    /// Only look at these devices (of this network namespace). Repeatable.
    #[arg(short = 'i', long, value_name = "DEV")]
    iface: Vec<String>,
    /// Stop after this many packets are reported (as tcpdump's -c).
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Also attach tc ingress/egress programs (TCX, else clsact) on the --iface
    /// devices, or on every non-bridge device of this namespace: hops at the
    /// exact tc points (tc ingress runs before netfilter PREROUTING).
    #[arg(long)]
    tc: bool,
    /// Do not attach BPF netfilter links (no netfilter/NAT hops).
    #[arg(long)]
    no_netfilter: bool,
    /// Leave the nftables ruleset untouched: no rule names. By default
    /// netflow adds its own table (`inet netflow-PID`, owned: the kernel
    /// deletes it when netflow exits, even killed) whose rules mark the
    /// selected packets for nftables tracing, at most 500 per second.
    #[arg(long)]
    no_rule_trace: bool,
    /// Also watch netfilter in this network namespace (netflow's own and the
    /// --netns/--pod ones are watched already). Repeatable.
    #[arg(long, value_name = "NAME|PATH")]
    nf_netns: Vec<String>,
    /// UDP ports that carry VXLAN (default 4789 and 8472). Repeatable.
    #[arg(long, value_name = "PORT")]
    vxlan_port: Vec<u16>,
    /// A port DNS servers listen on besides 53 (a NodeLocal DNSCache or a
    /// CoreDNS on another port): its messages are decoded. Repeatable.
    #[arg(long, value_name = "PORT")]
    dns_port: Vec<u16>,
    /// The node's name on every JSON record (default: the hostname; in a
    /// DaemonSet, the Kubernetes node's name from the downward API).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Stop after this long (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// A packet with no new hop for this long is complete (at least 10ms).
    #[arg(long, default_value = "1s", value_parser = parse_idle)]
    idle: Duration,
    /// Also record every event to FILE, for `netflow replay` and `netflow
    /// export` (as tcpdump's -w, but a netflow recording, not a pcap:
    /// `netflow export FILE --pcapng OUT` makes one).
    #[arg(short = 'w', long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Size of the kernel's event ring buffer (a power of two, at least 4K;
    /// e.g. 64M for a busy node). Events that do not fit are counted as lost
    /// and mark their connections incomplete.
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_ring_size)]
    ring_size: u32,
    /// Trace every selected packet hop by hop. By default the guardrails
    /// trace the first packets of each connection, TCP SYN/FIN/RST, non-TCP/UDP
    /// packets, every drop and a sample of the rest (at most ~1000 packets/s
    /// per CPU), and count the others per connection in the kernel.
    #[arg(long)]
    every_packet: bool,
}

#[cfg(feature = "live")]
#[derive(Args)]
struct AgentArgs {
    /// Where Prometheus scrapes: `/metrics` (and `/healthz`).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9965")]
    metrics_addr: std::net::SocketAddr,
    /// CRI socket (default: containerd's, then CRI-O's, as crictl); without
    /// one, named network namespaces stand in for pods.
    #[arg(long, value_name = "unix:///PATH")]
    runtime_endpoint: Option<String>,
    /// Leave the nftables ruleset untouched: no rule names.
    #[arg(long)]
    no_rule_trace: bool,
    /// Also watch netfilter in this network namespace. Repeatable.
    #[arg(long, value_name = "NAME|PATH")]
    nf_netns: Vec<String>,
    /// Size of the kernel's event ring buffer (a power of two, at least 4K).
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_ring_size)]
    ring_size: u32,
    /// Which connections stdout gets as JSON lines: those that did not end
    /// well, or all of them (every connection of the node: a flow log).
    #[arg(long, value_name = "WHICH", default_value = "failed", value_parser = ["failed", "all"])]
    log_connections: String,
    /// A port DNS servers listen on besides 53. Repeatable.
    #[arg(long, value_name = "PORT")]
    dns_port: Vec<u16>,
    /// The node's name on every JSON record (default: the hostname; in a
    /// DaemonSet, the Kubernetes node's name from the downward API).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

#[cfg(feature = "live")]
fn agent_cmd(a: AgentArgs, rt: &Runtime) -> anyhow::Result<()> {
    use netflow::live::agent::{self, AgentOptions};
    netflow::live::kernel::preflight::check("agent")?;
    let opts = AgentOptions {
        trace: TraceOptions {
            selectors: Selectors {
                runtime_endpoint: a.runtime_endpoint.clone(),
                ..Selectors::default()
            },
            tc: false,
            netfilter: true,
            rule_trace: !a.no_rule_trace,
            nf_netns: a.nf_netns,
            duration: None,
            mode: Mode::Json,
            idle: Duration::from_secs(1),
            write: None,
            ring_bytes: a.ring_size,
            every_packet: false,
            count_at_sockets: true,
            dns_ports: a.dns_port,
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

#[cfg(feature = "live")]
fn parse_ring_size(s: &str) -> Result<u32, String> {
    let err = || format!("invalid ring size {s:?}: a power of two from 4K to 1G (e.g. 8M)");
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    let bytes = n.checked_mul(mult).ok_or_else(err)?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(err());
    }
    Ok(bytes as u32)
}

#[cfg(feature = "live")]
#[derive(Args)]
struct TraceArgs {
    #[command(flatten)]
    live: LiveArgs,
    /// Read a recording instead of tracing (as tcpdump's -r; the same as
    /// `netflow replay FILE`, needs no root). A netflow recording, not a pcap.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: Option<PathBuf>,
    /// JSON lines instead of text: a start record, one per packet,
    /// connection and TCP note, then a stats line (`netflow schema` prints
    /// their JSON Schema).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DashboardArgs {
    #[cfg(feature = "live")]
    #[command(flatten)]
    live: LiveArgs,
    #[cfg(not(feature = "live"))]
    #[command(flatten)]
    select: SelectArgs,
    /// Show a recording (`trace --write`) instead of live traffic; needs no root.
    #[cfg_attr(not(feature = "live"), arg(required = true))]
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
}

#[cfg(feature = "live")]
impl LiveArgs {
    fn options(self, mode: Mode) -> TraceOptions {
        let mut selectors = self.select.selectors();
        selectors.pod_ips = self.pod_ip;
        selectors.runtime_endpoint = self.runtime_endpoint;
        selectors.ifaces = self.iface;
        selectors.vxlan_ports = self.vxlan_port;
        TraceOptions {
            selectors,
            tc: self.tc,
            netfilter: !self.no_netfilter,
            rule_trace: !self.no_rule_trace,
            nf_netns: self.nf_netns,
            duration: self.duration,
            mode,
            idle: self.idle,
            write: self.write,
            ring_bytes: self.ring_size,
            every_packet: self.every_packet,
            count_at_sockets: false,
            dns_ports: self.dns_port,
            node: self.node,
            count: self.count,
            command: "trace",
            pods: None,
            follow_netns: None,
        }
    }
}

#[derive(Args)]
struct ReplayArgs {
    /// A recording made with `netflow trace --write`.
    file: PathBuf,
    #[command(flatten)]
    select: SelectArgs,
    /// JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// A recording made with `netflow trace --write`.
    file: PathBuf,
    #[command(flatten)]
    select: SelectArgs,
    /// Write pcapng (one packet per hop) to OUT (`-`: stdout), for Wireshark/tshark.
    #[arg(long, value_name = "OUT", required_unless_present = "json")]
    pcapng: Option<PathBuf>,
    /// Write the JSON lines of `trace --json` to OUT (`-`: stdout).
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

impl SelectArgs {
    /// The selectors that apply to packets already seen.
    fn filter(&self) -> Result<FlowFilter, netflow::correlate::filter::FilterError> {
        FlowFilter::new(
            &self.host,
            &self.port,
            self.proto.as_deref(),
            self.netns.iter().chain(&self.pod).cloned().collect(),
        )
    }

    #[cfg(feature = "live")]
    fn selectors(self) -> Selectors {
        Selectors {
            pods: self.pod,
            netns: self.netns,
            hosts: self.host,
            ports: self.port,
            proto: self.proto,
            ..Selectors::default()
        }
    }
}

/// `--idle`: a duration, at least 10ms (shorter ends packets on their way).
#[cfg(feature = "live")]
fn parse_idle(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!(
            "--idle {s} is too short: at least 10ms (a packet crossing the node takes up to a few ms; shorter ends packets on their way)"
        ));
    }
    Ok(d)
}

#[cfg(feature = "live")]
fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?}: use a number with ms, s, m or h (e.g. 10s)");
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(err()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn schema_cmd() -> anyhow::Result<()> {
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

fn replay_cmd(a: ReplayArgs) -> anyhow::Result<()> {
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

fn export_cmd(a: ExportArgs) -> anyhow::Result<()> {
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

fn dashboard_cmd(a: DashboardArgs, #[cfg(feature = "live")] rt: &Runtime) -> anyhow::Result<()> {
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
type Runtime = tokio::runtime::Runtime;

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
    app.lock().expect("state").state.source = source.into();
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
fn demo_cmd(a: DemoArgs, rt: &Runtime) -> anyhow::Result<()> {
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
        every_packet: false,
        count_at_sockets: false,
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

/// The daemon allocates per event (hops, names, JSON): mimalloc keeps that
/// cheap (replay of a 370k-event recording: ~25% faster than glibc's malloc).
/// The `system-alloc` feature leaves the system's malloc in place, for heap
/// profilers that hook it (heaptrack).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    #[cfg(feature = "live")]
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netflow: failed to start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        #[cfg(feature = "live")]
        Command::Trace(a) => match a.read {
            // `-r FILE`: as `netflow replay FILE`, with the same selectors.
            Some(file) => replay_cmd(ReplayArgs {
                file,
                select: a.live.select,
                json: a.json,
            }),
            None => {
                let mode = if a.json { Mode::Json } else { Mode::Text };
                rt.block_on(trace::run(a.live.options(mode))).map(|_| ())
            }
        },
        #[cfg(feature = "live")]
        Command::Dashboard(a) => dashboard_cmd(a, &rt),
        #[cfg(not(feature = "live"))]
        Command::Dashboard(a) => dashboard_cmd(a),
        #[cfg(feature = "live")]
        Command::Demo(a) => demo_cmd(a, &rt),
        #[cfg(feature = "live")]
        Command::Agent(a) => agent_cmd(a, &rt),
        #[cfg(feature = "live")]
        Command::Check(a) => match netflow::live::check::run(a.json) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        #[cfg(not(feature = "live"))]
        Command::Trace(_) | Command::Demo(_) => Err(anyhow::anyhow!(
            "this netflow is built without the kernel side (--no-default-features): it replays, exports and shows recordings; tracing needs the default build"
        )),
        Command::Replay(a) => replay_cmd(a),
        Command::Export(a) => export_cmd(a),
        Command::Schema => schema_cmd(),
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): not a failure.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One readable line per cause, no debug dump.
            eprintln!("netflow: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
