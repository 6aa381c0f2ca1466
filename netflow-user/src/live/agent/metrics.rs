//! The agent's Prometheus metrics (`prometheus-client`, text exposition):
//! what happened to the packets and connections of each pod of this node.
//!
//! Label values stay few: pods of this node only (series of a pod that went
//! away are retired), drop reasons from the kernel's enum, netfilter hooks,
//! outcomes; never an address or a port.
use std::collections::{HashMap, HashSet};

use netflow_common::sock_class;
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// A pod of this node, as metric labels (empty for the node's own traffic).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet, Default)]
pub struct PodLabels {
    pub namespace: String,
    pub pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: String,
    pub hook: String,
    pub namespace: String,
    pub pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
    pub namespace: String,
    pub pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PacketLabels {
    pub namespace: String,
    pub pod: String,
    /// `egress` (the pod sent it) or `ingress` (it was for the pod).
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...
    pub rcode: String,
    pub namespace: String,
    pub pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabels {
    /// `connected`, `accepted`, `connect_failed`, `closed`, `reset`.
    pub event: String,
    pub namespace: String,
    pub pod: String,
}

/// The TCP state changes the kernel counts, by the name of each
/// `netflow_common::sock_class`.
const SOCKET_EVENTS: [(usize, &str); 5] = [
    (sock_class::OPENED_ACTIVE, "connected"),
    (sock_class::OPENED_PASSIVE, "accepted"),
    (sock_class::CONNECT_FAILED, "connect_failed"),
    (sock_class::CLOSED, "closed"),
    (sock_class::RESET, "reset"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// One series of a pod, to retire it with the pod.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Series {
    Drop(DropLabels),
    Connection(OutcomeLabels),
    Packet(PacketLabels),
    Retransmit(PodLabels),
    Reset(PodLabels),
    DnsResponse(DnsLabels),
    DnsUnanswered(PodLabels),
    /// Both device series of a pod (packets and bytes, both directions).
    Devices(PodLabels),
    Socket(SocketLabels),
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    drops: Family<DropLabels, Counter>,
    connections: Family<OutcomeLabels, Counter>,
    packets: Family<PacketLabels, Counter>,
    device_packets: Family<PacketLabels, Counter>,
    device_bytes: Family<PacketLabels, Counter>,
    /// Each pod's device totals as last read (a device made again counts
    /// from zero).
    device_last: std::sync::Mutex<HashMap<PodLabels, crate::live::evidence::rtnl::LinkStats>>,
    retransmits: Family<PodLabels, Counter>,
    resets: Family<PodLabels, Counter>,
    sockets: Family<SocketLabels, Counter>,
    /// Each namespace's socket counts as last read.
    socket_last: std::sync::Mutex<HashMap<u32, [u64; sock_class::N]>>,
    dns_responses: Family<DnsLabels, Counter>,
    dns_unanswered: Family<PodLabels, Counter>,
    pub dns_latency: Histogram,
    /// The series each pod has (the client library cannot list them).
    series: std::sync::Mutex<HashMap<PodLabels, HashSet<Series>>>,
    pub transit: Histogram,
    pub lost: Counter,
    pub sampled: Counter,
    pub followed: Counter,
    pub follows_skipped: Counter,
    cpu_seconds: Counter<f64>,
    resident_bytes: Gauge,
}

/// DNS latency buckets: 100 µs to ~6.5 s.
fn dns_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-4, 3.0, 11)
}

/// Transit time buckets: 1 µs to ~1 s.
fn transit_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-6, 4.0, 11)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let drops = Family::<DropLabels, Counter>::default();
        registry.register(
            "netflow_drops",
            "Packets dropped on their way through this node, by drop reason, netfilter hook and pod",
            drops.clone(),
        );
        let connections = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "netflow_connections",
            "Connections that ended, by outcome and pod (the initiator's, else the responder's)",
            connections.clone(),
        );
        let packets = Family::<PacketLabels, Counter>::default();
        registry.register(
            "netflow_packets",
            "Packets followed across this node, by pod and direction (followed hop by hop; the guardrails count the rest per connection)",
            packets.clone(),
        );
        let device_packets = Family::<PacketLabels, Counter>::default();
        registry.register(
            "netflow_pod_device_packets",
            "Packets the pod's own devices received (ingress) and sent (egress), as the kernel counts them (no program runs for them; hostNetwork pods are not counted)",
            device_packets.clone(),
        );
        let device_bytes = Family::<PacketLabels, Counter>::default();
        registry.register(
            "netflow_pod_device_bytes",
            "Bytes the pod's own devices received (ingress) and sent (egress), as the kernel counts them",
            device_bytes.clone(),
        );
        let retransmits = Family::<PodLabels, Counter>::default();
        registry.register(
            "netflow_tcp_retransmits",
            "TCP segments (SYNs included) a socket of the pod sent again",
            retransmits.clone(),
        );
        let resets = Family::<PodLabels, Counter>::default();
        registry.register(
            "netflow_tcp_resets",
            "TCP resets a socket of the pod sent",
            resets.clone(),
        );
        let sockets = Family::<SocketLabels, Counter>::default();
        registry.register(
            "netflow_tcp_socket_events",
            "TCP state changes of the pod's sockets (connected, accepted, connect_failed, closed, reset), counted in the kernel per connection event (the events mode)",
            sockets.clone(),
        );
        let dns_responses = Family::<DnsLabels, Counter>::default();
        registry.register(
            "netflow_dns_responses",
            "DNS responses to the pod's queries, by response code",
            dns_responses.clone(),
        );
        let dns_unanswered = Family::<PodLabels, Counter>::default();
        registry.register(
            "netflow_dns_unanswered",
            "DNS queries of the pod nobody answered",
            dns_unanswered.clone(),
        );
        let dns_latency = Histogram::new(dns_buckets());
        registry.register(
            "netflow_dns_latency_seconds",
            "Time from a DNS query to its response",
            dns_latency.clone(),
        );
        let transit = Histogram::new(transit_buckets());
        registry.register(
            "netflow_node_transit_seconds",
            "Time from a packet's first to its last hop on this node",
            transit.clone(),
        );
        let lost = Counter::default();
        registry.register(
            "netflow_lost_events",
            "Events the kernel could not hand to netflow (ring buffer full)",
            lost.clone(),
        );
        let sampled = Counter::default();
        registry.register(
            "netflow_sampled_packets",
            "Packets the guardrails only counted (no hops reported)",
            sampled.clone(),
        );
        let followed = Counter::default();
        registry.register(
            "netflow_followed_flows",
            "Failed flows followed hop by hop for a while (the events mode: the per-hop programs attached on demand)",
            followed.clone(),
        );
        let follows_skipped = Counter::default();
        registry.register(
            "netflow_follows_skipped",
            "Failed flows not followed: too many at once (the events mode's bounds)",
            follows_skipped.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("netflow_build_info", "netflow's version", build);
        let cpu_seconds = Counter::<f64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time the agent used (user and system)",
            cpu_seconds.clone(),
        );
        let resident_bytes = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "The agent's resident memory",
            resident_bytes.clone(),
        );
        Metrics {
            registry,
            drops,
            connections,
            packets,
            device_packets,
            device_bytes,
            device_last: Default::default(),
            retransmits,
            resets,
            sockets,
            socket_last: Default::default(),
            dns_responses,
            dns_unanswered,
            dns_latency,
            series: Default::default(),
            transit,
            lost,
            sampled,
            followed,
            follows_skipped,
            cpu_seconds,
            resident_bytes,
        }
    }

    /// Bring a total the run keeps up to date into a counter.
    pub fn advance(counter: &Counter, total: u64) {
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// The text exposition, with the process's own figures read now.
    pub fn encode(&self) -> String {
        let (cpu, rss) = process_figures();
        let had = self.cpu_seconds.get();
        if cpu > had {
            self.cpu_seconds.inc_by(cpu - had);
        }
        self.resident_bytes.set(rss as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn dropped(&self, l: DropLabels) {
        self.drops.get_or_create(&l).inc();
        self.remember(Series::Drop(l));
    }

    pub fn connection(&self, l: OutcomeLabels) {
        self.connections.get_or_create(&l).inc();
        self.remember(Series::Connection(l));
    }

    pub fn packet(&self, l: PacketLabels) {
        self.packets.get_or_create(&l).inc();
        self.remember(Series::Packet(l));
    }

    /// The totals of a pod's devices, read now: what they counted since
    /// the previous read goes into its series.
    pub fn device_counts(&self, pod: &PodLabels, now: crate::live::evidence::rtnl::LinkStats) {
        let Ok(mut last) = self.device_last.lock() else {
            return;
        };
        let was = last.insert(pod.clone(), now).unwrap_or_default();
        drop(last);
        let d = |now: u64, was: u64| if now >= was { now - was } else { now };
        let labels = |direction: &str| PacketLabels {
            namespace: pod.namespace.clone(),
            pod: pod.pod.clone(),
            direction: direction.into(),
        };
        for (dir, packets, bytes) in [
            (
                "ingress",
                d(now.rx_packets, was.rx_packets),
                d(now.rx_bytes, was.rx_bytes),
            ),
            (
                "egress",
                d(now.tx_packets, was.tx_packets),
                d(now.tx_bytes, was.tx_bytes),
            ),
        ] {
            self.device_packets
                .get_or_create(&labels(dir))
                .inc_by(packets);
            self.device_bytes.get_or_create(&labels(dir)).inc_by(bytes);
        }
        self.remember(Series::Devices(pod.clone()));
    }

    /// A namespace's TCP state change totals, read now: what they counted
    /// since the previous read goes into its pod's series.
    pub fn socket_counts(&self, netns: u32, pod: &PodLabels, now: [u64; sock_class::N]) {
        let Ok(mut last) = self.socket_last.lock() else {
            return;
        };
        let was = last.insert(netns, now).unwrap_or_default();
        drop(last);
        for (i, event) in SOCKET_EVENTS {
            // An entry evicted and made again counts from zero.
            let d = if now[i] >= was[i] {
                now[i] - was[i]
            } else {
                now[i]
            };
            if d == 0 {
                continue;
            }
            let l = SocketLabels {
                event: event.into(),
                namespace: pod.namespace.clone(),
                pod: pod.pod.clone(),
            };
            self.sockets.get_or_create(&l).inc_by(d);
            self.remember(Series::Socket(l));
        }
    }

    /// A socket of the pod retransmitted (or reset) a connection.
    pub fn tcp(&self, kind: crate::decode::NoteKind, l: PodLabels) {
        match kind {
            crate::decode::NoteKind::Retransmit => {
                self.retransmits.get_or_create(&l).inc();
                self.remember(Series::Retransmit(l));
            }
            crate::decode::NoteKind::Reset => {
                self.resets.get_or_create(&l).inc();
                self.remember(Series::Reset(l));
            }
            // A connection outcome (see the agent's sink).
            crate::decode::NoteKind::ConnectFailed { .. } => {}
        }
    }

    /// A DNS query of the pod: its response code and latency, or none.
    pub fn dns(&self, rcode: Option<String>, latency_s: Option<f64>, pod: PodLabels) {
        match rcode {
            Some(rcode) => {
                let l = DnsLabels {
                    rcode,
                    namespace: pod.namespace,
                    pod: pod.pod,
                };
                self.dns_responses.get_or_create(&l).inc();
                self.remember(Series::DnsResponse(l));
                if let Some(s) = latency_s {
                    self.dns_latency.observe(s);
                }
            }
            None => {
                self.dns_unanswered.get_or_create(&pod).inc();
                self.remember(Series::DnsUnanswered(pod));
            }
        }
    }

    fn remember(&self, s: Series) {
        let pod = match &s {
            Series::Drop(l) => (&l.namespace, &l.pod),
            Series::Connection(l) => (&l.namespace, &l.pod),
            Series::Packet(l) => (&l.namespace, &l.pod),
            Series::Retransmit(l) | Series::Reset(l) | Series::DnsUnanswered(l) => {
                (&l.namespace, &l.pod)
            }
            Series::DnsResponse(l) => (&l.namespace, &l.pod),
            Series::Devices(l) => (&l.namespace, &l.pod),
            Series::Socket(l) => (&l.namespace, &l.pod),
        };
        if pod.1.is_empty() {
            return;
        }
        let key = PodLabels {
            namespace: pod.0.clone(),
            pod: pod.1.clone(),
        };
        if let Ok(mut m) = self.series.lock() {
            m.entry(key).or_default().insert(s);
        }
    }

    /// A pod went away: its series go with it.
    pub fn retire(&self, pod: &PodLabels) {
        let Some(series) = self.series.lock().ok().and_then(|mut m| m.remove(pod)) else {
            return;
        };
        for s in series {
            match s {
                Series::Drop(l) => self.drops.remove(&l),
                Series::Connection(l) => self.connections.remove(&l),
                Series::Packet(l) => self.packets.remove(&l),
                Series::Retransmit(l) => self.retransmits.remove(&l),
                Series::Reset(l) => self.resets.remove(&l),
                Series::DnsResponse(l) => self.dns_responses.remove(&l),
                Series::DnsUnanswered(l) => self.dns_unanswered.remove(&l),
                Series::Socket(l) => self.sockets.remove(&l),
                Series::Devices(l) => {
                    if let Ok(mut last) = self.device_last.lock() {
                        last.remove(&l);
                    }
                    for direction in ["ingress", "egress"] {
                        let d = PacketLabels {
                            namespace: l.namespace.clone(),
                            pod: l.pod.clone(),
                            direction: direction.into(),
                        };
                        self.device_packets.remove(&d);
                        self.device_bytes.remove(&d);
                    }
                    true
                }
            };
        }
    }
}

/// CPU seconds and resident bytes of this process (`/proc/self`).
fn process_figures() -> (f64, u64) {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (in parentheses): utime is the
            // 12th, stime the 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * page;
    (cpu, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_metric_and_retires_a_pod() {
        let m = Metrics::new();
        let web = PodLabels {
            namespace: "default".into(),
            pod: "web".into(),
        };
        m.dropped(DropLabels {
            reason: "NETFILTER_DROP".into(),
            hook: "forward".into(),
            namespace: web.namespace.clone(),
            pod: web.pod.clone(),
        });
        m.connection(OutcomeLabels {
            outcome: "ok".into(),
            namespace: "default".into(),
            pod: "client".into(),
        });
        m.tcp(crate::decode::NoteKind::Retransmit, web.clone());
        m.tcp(crate::decode::NoteKind::Retransmit, web.clone());
        m.tcp(crate::decode::NoteKind::Reset, web.clone());
        Metrics::advance(&m.lost, 5);
        Metrics::advance(&m.lost, 3);
        m.transit.observe(20e-6);
        m.dns(Some("NXDOMAIN".into()), Some(0.0004), web.clone());
        m.dns(None, None, web.clone());
        let text = m.encode();
        for want in [
            r#"netflow_drops_total{reason="NETFILTER_DROP",hook="forward",namespace="default",pod="web"} 1"#,
            r#"netflow_connections_total{outcome="ok",namespace="default",pod="client"} 1"#,
            r#"netflow_tcp_retransmits_total{namespace="default",pod="web"} 2"#,
            r#"netflow_tcp_resets_total{namespace="default",pod="web"} 1"#,
            "netflow_lost_events_total 5",
            "netflow_node_transit_seconds_count 1",
            r#"netflow_dns_responses_total{rcode="NXDOMAIN",namespace="default",pod="web"} 1"#,
            r#"netflow_dns_unanswered_total{namespace="default",pod="web"} 1"#,
            "netflow_dns_latency_seconds_count 1",
            "netflow_build_info{version=",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
        m.retire(&web);
        let text = m.encode();
        assert!(!text.contains(r#"pod="web""#), "{text}");
        assert!(text.contains(r#"pod="client""#), "{text}");
    }
}
