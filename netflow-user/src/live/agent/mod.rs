//! `netflow agent`: the node mode. Every pod of this node, all the time,
//! with the guardrails on: Prometheus metrics over HTTP (`/metrics`,
//! `/healthz`), and each dropped packet and each connection that did not
//! end well as one JSON line on stdout (a cluster's log pipeline collects
//! container stdout). SIGTERM detaches everything and exits within seconds.
//!
//! No selector: the kernel follows every packet (the guardrails bound the
//! cost), so pods that appear later are seen at once; their names come from
//! the container runtime (CRI; else named network namespaces), read again
//! every few seconds, and the series of pods that went away are retired.
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    correlate::{connections::Connection, Note, NoteKind, Timeline, Verdict},
    decode::names::Names,
    live::{probes::ProbeSet, trace},
    output::{self, Mode, Run, Sink, Stats},
};

mod devices;
pub mod metrics;
mod pods;

use metrics::{DropLabels, Metrics, OutcomeLabels, PacketLabels, PodLabels};
pub use pods::PodIndex;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot serve metrics on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

pub struct AgentOptions {
    pub trace: trace::TraceOptions,
    pub metrics_addr: SocketAddr,
    pub runtime_endpoint: Option<String>,
    /// Every connection as a JSON line, not only those that did not end well.
    pub log_all_connections: bool,
}

/// How often the pods of the node are listed again.
const POD_REFRESH: Duration = Duration::from_secs(3);

/// Run until SIGTERM or Ctrl-C.
pub async fn run(opts: AgentOptions) -> anyhow::Result<Stats> {
    let metrics = Arc::new(Metrics::new());
    let pods = Arc::new(Mutex::new(PodIndex::default()));
    let labels: trace::PodLabels = Default::default();
    let follow: trace::NetnsList = Default::default();
    // The first listing before tracing starts: packets get their pod at once.
    pods::refresh(
        &pods,
        &labels,
        &follow,
        &metrics,
        opts.runtime_endpoint.as_deref(),
    );
    devices::count(&pods, &metrics);
    let listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .map_err(|e| AgentError::Listen(opts.metrics_addr, e))?;
    let served = Arc::clone(&metrics);
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let m = Arc::clone(&served);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }));
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            log::warn!("metrics server: {e}");
        }
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresher = {
        let (pods, labels, follow, metrics, stop) = (
            Arc::clone(&pods),
            Arc::clone(&labels),
            Arc::clone(&follow),
            Arc::clone(&metrics),
            Arc::clone(&stop),
        );
        let endpoint = opts.runtime_endpoint.clone();
        std::thread::Builder::new()
            .name("netflow-pods".into())
            .spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..(POD_REFRESH.as_millis() / 100) {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    pods::refresh(&pods, &labels, &follow, &metrics, endpoint.as_deref());
                    devices::count(&pods, &metrics);
                }
            })?
    };
    eprintln!(
        "netflow agent: metrics on http://{}/metrics, health on /healthz",
        opts.metrics_addr
    );
    let sink = AgentSink {
        metrics: Arc::clone(&metrics),
        pods: Arc::clone(&pods),
        json: output::sink(Mode::Json, Box::new(output::Stdout)),
        log_all_connections: opts.log_all_connections,
        events: opts.trace.probes == ProbeSet::Events,
    };
    let mut topts = opts.trace;
    topts.pods = Some(labels);
    topts.follow_netns = Some(follow);
    let result = trace::run_with(topts, Box::new(sink), false, std::future::pending()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = refresher.join();
    server.abort();
    result
}

/// A failed connect's outcome, as `netflow_connections_total` names it: a
/// RST or an ICMP error answered (`refused`), else no answer came before
/// the socket gave up or the application closed it (`unanswered`).
fn connect_outcome(err: u16) -> &'static str {
    const ECONNREFUSED: u16 = 111;
    const EHOSTUNREACH: u16 = 113;
    const ENETUNREACH: u16 = 101;
    match err {
        ECONNREFUSED | EHOSTUNREACH | ENETUNREACH => "refused",
        _ => "unanswered",
    }
}

/// Counts what the pipeline reports into the metrics; writes drops and
/// connections that did not end well as JSON lines.
struct AgentSink {
    metrics: Arc<Metrics>,
    pods: Arc<Mutex<PodIndex>>,
    json: Box<dyn Sink + Send>,
    log_all_connections: bool,
    /// The events mode: connections come from their sockets' state
    /// changes; those the correlator makes of drops alone are not said.
    events: bool,
}

impl AgentSink {
    fn pod_of(&self, netns: Option<u32>, ip: Option<IpAddr>) -> Option<PodLabels> {
        let pods = self.pods.lock().ok()?;
        netns
            .and_then(|n| pods.by_netns.get(&n))
            .or_else(|| ip.and_then(|a| pods.by_ip.get(&a)))
            .cloned()
    }
}

impl Sink for AgentSink {
    fn start(&mut self, run: &Run) -> std::io::Result<()> {
        self.json.start(run)
    }

    fn clock(&mut self, realtime_offset_ns: i128) {
        self.json.clock(realtime_offset_ns)
    }

    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()> {
        let tuple = tl.tuple();
        // The pod that sent it (the namespace of its first hop, else its
        // source address) and the pod it was for.
        let from = self.pod_of(
            tl.hops.first().map(|h| h.netns),
            tuple.as_ref().map(|t| t.src),
        );
        let to = tl
            .hops
            .iter()
            .rev()
            .find_map(|h| self.pod_of(Some(h.netns), None))
            .filter(|p| Some(p) != from.as_ref())
            .or_else(|| {
                self.pod_of(None, tuple.as_ref().map(|t| t.dst))
                    .filter(|p| Some(p) != from.as_ref())
            });
        for (pod, direction) in [(&from, "egress"), (&to, "ingress")] {
            if let Some(p) = pod {
                self.metrics.packet(PacketLabels {
                    namespace: p.namespace.clone(),
                    pod: p.pod.clone(),
                    direction: direction.into(),
                });
            }
        }
        if let (Some(first), Some(last)) = (tl.hops.first(), tl.hops.last()) {
            self.metrics
                .transit
                .observe(last.ts_ns.saturating_sub(first.ts_ns) as f64 / 1e9);
        }
        if tl.verdict == Verdict::Dropped {
            let pod = from.or(to).unwrap_or_default();
            let d = output::view::timeline_drop_view(tl, names);
            let (reason, hook) = d
                .map(|d| (d.likely.unwrap_or(d.reason), d.hook.unwrap_or_default()))
                .unwrap_or_default();
            self.metrics.dropped(DropLabels {
                reason,
                hook,
                namespace: pod.namespace,
                pod: pod.pod,
            });
            self.json.timeline(tl, names)?;
        }
        Ok(())
    }

    fn progress(&mut self, s: &Stats) {
        Metrics::advance(&self.metrics.lost, s.lost);
        Metrics::advance(&self.metrics.sampled, s.sampled);
    }

    /// Retransmissions and resets, by the pod whose socket sent them. A
    /// failed connect (the events mode) is a connection that did not end
    /// well: counted by outcome and written as a JSON line.
    fn note(&mut self, n: &Note, names: &Names) -> std::io::Result<()> {
        let pod = self
            .pod_of(Some(n.netns), Some(n.tuple.src))
            .unwrap_or_default();
        if let NoteKind::ConnectFailed { err } = n.kind {
            self.metrics.connection(OutcomeLabels {
                outcome: connect_outcome(err).into(),
                namespace: pod.namespace,
                pod: pod.pod,
            });
            return self.json.note(n, names);
        }
        self.metrics.tcp(n.kind, pod);
        Ok(())
    }

    fn follows(&mut self, followed: u64, skipped: u64) {
        Metrics::advance(&self.metrics.followed, followed);
        Metrics::advance(&self.metrics.follows_skipped, skipped);
    }

    fn sockets(&mut self, counts: &[(u32, [u64; netflow_common::sock_class::N])]) {
        for (netns, now) in counts {
            let pod = self.pod_of(Some(*netns), None).unwrap_or_default();
            self.metrics.socket_counts(*netns, &pod, *now);
        }
    }

    fn connection(&mut self, c: &Connection, names: &Names) -> std::io::Result<()> {
        // The events mode's connections come from their sockets: TCP's
        // from their state changes (notes), UDP's and DNS lookups from
        // the datagrams read there; those the correlator makes of drops or
        // followed flows alone are not counted again.
        if self.events && !c.read_at_sockets {
            return Ok(());
        }
        let pod = self
            .pod_of(None, Some(c.tuple.src))
            .or_else(|| self.pod_of(None, Some(c.tuple.dst)))
            .unwrap_or_default();
        if let Some(l) = &c.dns {
            // The client's pod (the connection's initiator).
            let client = self.pod_of(None, Some(c.tuple.src)).unwrap_or_default();
            for t in &l.tries {
                self.metrics.dns(
                    t.rcode().map(crate::decode::dns::rcode_name),
                    t.latency_ns().map(|ns| ns as f64 / 1e9),
                    client.clone(),
                );
            }
        }
        self.metrics.connection(OutcomeLabels {
            outcome: output::view::outcome_name(c.outcome).into(),
            namespace: pod.namespace,
            pod: pod.pod,
        });
        if self.log_all_connections || c.outcome != crate::correlate::connections::Outcome::Ok {
            self.json.connection(c, names)?;
        }
        Ok(())
    }

    fn stats(&mut self, s: &Stats, now: u64) -> std::io::Result<()> {
        self.progress(s);
        self.json.stats(s, now)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.json.flush()
    }
}
