//! The arguments of each command, and the parsers of their values.
use std::path::PathBuf;
#[cfg(feature = "live")]
use std::time::Duration;

use clap::Args;

use netflow::correlate::filter::FlowFilter;
#[cfg(feature = "live")]
use netflow::live::{select::Selectors, trace::TraceOptions};
#[cfg(feature = "live")]
use netflow::output::Mode;

/// Whatever was given to a command this build does not have.
#[cfg(not(feature = "live"))]
#[derive(Args)]
pub(crate) struct Unavailable {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

#[cfg(feature = "live")]
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// One JSON object instead of the tables.
    #[arg(long)]
    pub(crate) json: bool,
}

#[cfg(feature = "live")]
#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Instead of the dashboard, print JSON lines for this long (e.g. 5s).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) json_for: Option<Duration>,
}

/// Which packets: shared by `trace` (in the kernel) and `replay`/`export`.
#[derive(Args)]
pub(crate) struct SelectArgs {
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
pub(crate) struct LiveArgs {
    #[command(flatten)]
    pub(crate) select: SelectArgs,
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
    /// Memory for what netflow holds (open timelines, connections, the
    /// dashboard's flows): beyond it the least useful are completed early
    /// or folded, and counted as evicted (e.g. 128M, 1G). Default: the
    /// memory cgroup's memory.max less 96M when there is one, else 96M.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    memory: Option<u64>,
    /// Trace every selected packet hop by hop. By default the guardrails
    /// trace the first packets of each connection, TCP SYN/FIN/RST, non-TCP/UDP
    /// packets, every drop and a sample of the rest (at most ~1000 packets/s
    /// per CPU), and count the others per connection in the kernel.
    #[arg(long)]
    every_packet: bool,
}

#[cfg(feature = "live")]
#[derive(Args)]
pub(crate) struct AgentArgs {
    /// Where Prometheus scrapes: `/metrics` (and `/healthz`).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9965")]
    pub(crate) metrics_addr: std::net::SocketAddr,
    /// CRI socket (default: containerd's, then CRI-O's, as crictl); without
    /// one, named network namespaces stand in for pods.
    #[arg(long, value_name = "unix:///PATH")]
    pub(crate) runtime_endpoint: Option<String>,
    /// Leave the nftables ruleset untouched: no rule names.
    #[arg(long)]
    pub(crate) no_rule_trace: bool,
    /// Also watch netfilter in this network namespace. Repeatable.
    #[arg(long, value_name = "NAME|PATH")]
    pub(crate) nf_netns: Vec<String>,
    /// Size of the kernel's event ring buffer (a power of two, at least 4K).
    #[arg(long, value_name = "BYTES", default_value = "8M", value_parser = parse_ring_size)]
    pub(crate) ring_size: u32,
    /// Memory for what netflow holds (open timelines, connections, the
    /// dashboard's flows): beyond it the least useful are completed early
    /// or folded, and counted as evicted (e.g. 128M, 1G). Default: the
    /// memory cgroup's memory.max less 96M when there is one, else 96M.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub(crate) memory: Option<u64>,
    /// Which connections stdout gets as JSON lines: those that did not end
    /// well, or all of them (every connection of the node: a flow log).
    #[arg(long, value_name = "WHICH", default_value = "failed", value_parser = ["failed", "all"])]
    pub(crate) log_connections: String,
    /// A port DNS servers listen on besides 53. Repeatable (in the events
    /// mode at most three: the kernel reads them at the sockets).
    #[arg(long, value_name = "PORT")]
    pub(crate) dns_port: Vec<u16>,
    /// Which programs run. `events` (the default): no per-hop program on
    /// a healthy packet's path: drops, failed connects, connection counts,
    /// retransmits and resets, DNS and UDP conversations read where
    /// sockets send and take them; a failed flow followed hop by hop for
    /// its retries; transit times only of followed flows (see
    /// --sample-flows). `per-hop`: every packet followed across the node,
    /// as `trace` does (every connection from its packets, transit times,
    /// drops with hook and rule; ~1.3 µs of kernel time per forwarded
    /// packet).
    #[arg(long, value_name = "SET", default_value = "events", value_parser = ["events", "per-hop"])]
    pub(crate) probes: String,
    /// The events mode: follow one TCP connection in N that
    /// succeeds (per CPU and pod) in full for 5 s, as a failed one is, so
    /// that transit times and hops of healthy traffic are sampled. The
    /// per-hop programs are attached while any flow is followed: every
    /// packet of the node pays them then (0: never, the default).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) sample_flows: u32,
    /// The node's name on every JSON record (default: the hostname; in a
    /// DaemonSet, the Kubernetes node's name from the downward API).
    #[arg(long, value_name = "NAME")]
    pub(crate) node: Option<String>,
}

#[cfg(feature = "live")]
fn parse_memory(s: &str) -> Result<u64, String> {
    let b = netflow::budget::parse_size(s).map_err(|e| e.to_string())?;
    netflow::budget::Budget::given(b)
        .map(|b| b.bytes)
        .map_err(|e| e.to_string())
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
pub(crate) struct TraceArgs {
    #[command(flatten)]
    pub(crate) live: LiveArgs,
    /// Read a recording instead of tracing (as tcpdump's -r; the same as
    /// `netflow replay FILE`, needs no root). A netflow recording, not a pcap.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub(crate) read: Option<PathBuf>,
    /// JSON lines instead of text: a start record, one per packet,
    /// connection and TCP note, then a stats line (`netflow schema` prints
    /// their JSON Schema).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct DashboardArgs {
    #[cfg(feature = "live")]
    #[command(flatten)]
    pub(crate) live: LiveArgs,
    #[cfg(not(feature = "live"))]
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// Show a recording (`trace --write`) instead of live traffic; needs no root.
    #[cfg_attr(not(feature = "live"), arg(required = true))]
    #[arg(long, value_name = "FILE")]
    pub(crate) replay: Option<PathBuf>,
}

#[cfg(feature = "live")]
impl LiveArgs {
    pub(crate) fn options(self, mode: Mode) -> TraceOptions {
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
            memory: self.memory,
            every_packet: self.every_packet,
            count_at_sockets: false,
            probes: Default::default(),
            sample_flows: 0,
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
pub(crate) struct ReplayArgs {
    /// A recording made with `netflow trace --write`.
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// JSON lines instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// A recording made with `netflow trace --write`.
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// Write pcapng (one packet per hop) to OUT (`-`: stdout), for Wireshark/tshark.
    #[arg(long, value_name = "OUT", required_unless_present = "json")]
    pub(crate) pcapng: Option<PathBuf>,
    /// Write the JSON lines of `trace --json` to OUT (`-`: stdout).
    #[arg(long, value_name = "OUT")]
    pub(crate) json: Option<PathBuf>,
}

impl SelectArgs {
    /// The selectors that apply to packets already seen.
    pub(crate) fn filter(&self) -> Result<FlowFilter, netflow::correlate::filter::FilterError> {
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
