//! The `netflow` command line: a thin layer over the library.
use std::{process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use netflow::{
    output::Mode,
    select::Selectors,
    trace::{self, TraceOptions},
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
    Trace(TraceArgs),
}

#[derive(Args)]
struct TraceArgs {
    /// Packets of this pod, `NAME` or `NAMESPACE/NAME`: asked of the container
    /// runtime over CRI, else a named network namespace (`ip netns`). Repeatable.
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pod: Vec<String>,
    /// Packets of the pod that has this address. Repeatable.
    #[arg(long, value_name = "IP")]
    pod_ip: Vec<String>,
    /// CRI socket (default: containerd's, then CRI-O's, as crictl).
    #[arg(long, value_name = "unix:///PATH")]
    runtime_endpoint: Option<String>,
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
    /// Only this protocol: tcp, udp, icmp, icmpv6 or a number.
    #[arg(long, value_name = "PROTO")]
    proto: Option<String>,
    /// Only look at these devices (of this network namespace). Repeatable.
    #[arg(long, value_name = "DEV")]
    iface: Vec<String>,
    /// Also attach tc ingress/egress programs (TCX, else clsact) on the --iface
    /// devices, or on every non-bridge device of this namespace: hops at the
    /// exact tc points (tc ingress runs before netfilter PREROUTING).
    #[arg(long)]
    tc: bool,
    /// Do not attach BPF netfilter links (no netfilter/NAT hops).
    #[arg(long)]
    no_netfilter: bool,
    /// Also watch netfilter in this network namespace (netflow's own and the
    /// --netns ones are watched already). Repeatable.
    #[arg(long, value_name = "NAME|PATH")]
    nf_netns: Vec<String>,
    /// UDP ports that carry VXLAN (default 4789 and 8472). Repeatable.
    #[arg(long, value_name = "PORT")]
    vxlan_port: Vec<u16>,
    /// Stop after this long (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// A packet with no new hop for this long is complete.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    idle: Duration,
    /// JSON lines (one object per packet, then a stats line) instead of text.
    #[arg(long)]
    json: bool,
}

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

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
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
        Command::Trace(a) => rt.block_on(trace::run(TraceOptions {
            selectors: Selectors {
                pods: a.pod,
                pod_ips: a.pod_ip,
                runtime_endpoint: a.runtime_endpoint,
                netns: a.netns,
                hosts: a.host,
                ports: a.port,
                proto: a.proto,
                ifaces: a.iface,
                vxlan_ports: a.vxlan_port,
            },
            tc: a.tc,
            netfilter: !a.no_netfilter,
            nf_netns: a.nf_netns,
            duration: a.duration,
            mode: if a.json { Mode::Json } else { Mode::Text },
            idle: a.idle,
        })),
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
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
