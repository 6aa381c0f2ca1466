//! The `netflow` command line: a thin layer over the library.
mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(not(feature = "live"))]
use cli::args::Unavailable;
#[cfg(feature = "live")]
use cli::args::{AgentArgs, CheckArgs, DemoArgs, TraceArgs};
use cli::args::{DashboardArgs, ExportArgs, ReplayArgs};
#[cfg(feature = "live")]
use cli::commands::{agent_cmd, demo_cmd};
use cli::commands::{dashboard_cmd, export_cmd, replay_cmd, schema_cmd};
#[cfg(feature = "live")]
use netflow::{live::trace, output::Mode};

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
