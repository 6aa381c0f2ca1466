//! The watchers: per namespace a thread that creates netflow's table
//! there, reads the trace events, resolves each rule and hands it to the
//! pipeline. [`RuleTracer::start`] starts them.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::mpsc;

use super::{
    matches::matches,
    netlink::{self, Incoming, L4Match, Match, Nl, NFNLGRP_NFTABLES, NFNLGRP_NFTRACE},
    resolve, RuleTraceError, RuleTracer, WatchedNs, IDLE,
};
use crate::{
    decode::rule::{verdict, RuleHit, TraceContext, TraceKind},
    live::select::Selection,
};

/// Trace events waiting for the pipeline, at most (then counted as lost).
const QUEUE: usize = 65536;

/// How long a busy watcher lets traces gather after draining its socket.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

impl RuleTracer {
    /// Trace the selected packets' rules in these namespaces. Fails as a
    /// whole when the first namespace cannot be traced (the others are
    /// then not touched either); later ones are skipped with a warning.
    pub fn start(namespaces: &[WatchedNs], sel: &Selection) -> Result<Self, RuleTraceError> {
        let table = format!("netflow-{}", std::process::id());
        let matches = matches(sel);
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicU64::new(0));
        let mut caught_up = Vec::new();
        let (tx, events) = mpsc::channel(QUEUE);
        let mut threads = Vec::new();
        for (i, ns) in namespaces.iter().enumerate() {
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let mark = Arc::new(AtomicU64::new(0));
            let w = Watcher {
                ns: ns.clone(),
                table: table.clone(),
                matches: matches.clone(),
                tx: tx.clone(),
                stop: stop.clone(),
                lost: lost.clone(),
                caught_up: mark.clone(),
            };
            let t = std::thread::Builder::new()
                .name(format!("netflow-rules-{i}"))
                .spawn(move || w.run(ready_tx))
                .map_err(|e| RuleTraceError::Netns(ns.name.clone(), e.to_string()))?;
            match ready.recv() {
                Ok(Ok(())) => {
                    threads.push(t);
                    caught_up.push(mark);
                }
                Ok(Err(e)) if i == 0 => {
                    let _ = t.join();
                    stop.store(true, Ordering::Relaxed);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
                Ok(Err(e)) => log::warn!("rule tracing in netns {}: {e}", ns.name),
                Err(_) => log::warn!("rule tracing in netns {}: watcher ended", ns.name),
            }
        }
        let namespaces = threads.len();
        Ok(RuleTracer {
            stop,
            threads,
            events,
            lost,
            caught_up,
            table,
            namespaces,
        })
    }
}

struct Watcher {
    ns: WatchedNs,
    table: String,
    matches: Vec<(Match, L4Match)>,
    tx: mpsc::Sender<Vec<u8>>,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicU64>,
    caught_up: Arc<AtomicU64>,
}

/// Headers of a trace: the kernel sends them with a base chain's first
/// event only; the chain's later events carry its trace id.
struct Headers {
    /// A packet of the selection (another tracer's marks trace its packets
    /// too, in every table: not ours).
    ours: bool,
    data: Vec<u8>,
    l3_proto: u16,
    ifindex: u32,
    mark: u32,
}

/// Trace ids remembered at most (a base chain's events come together).
const MAX_IDS: usize = 4096;

impl Watcher {
    fn run(self, ready: std::sync::mpsc::Sender<Result<(), RuleTraceError>>) {
        let (ctl, mut ev) = match self.setup() {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut resolver = resolve::Resolver::new(ctl);
        let mut heads: std::collections::HashMap<u32, Headers> = Default::default();
        let mut names: std::collections::HashMap<u32, String> = Default::default();
        let clock = crate::live::kernel::clock::monotonic_ns;
        let mut wait = false;
        // Drained a moment ago, and waited for more to gather.
        let mut gathered = false;
        // When the socket was last seen empty.
        let mut empty_at = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let before = clock();
            let batch = match ev.recv_events(wait) {
                Ok(b) => {
                    // Busy: what came was sent after the queue was empty.
                    self.caught_up.store(empty_at, Ordering::Relaxed);
                    wait = false;
                    gathered = false;
                    b
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    empty_at = before;
                    if !wait && !gathered {
                        // Just drained while busy: let the next traces gather
                        // a moment, one wakeup for a batch rather than one
                        // per trace (a traced flow's packets come hundreds a
                        // second, each with several traces). What was sent
                        // before `empty_at` is handled.
                        self.caught_up.store(empty_at, Ordering::Relaxed);
                        std::thread::sleep(GATHER);
                        gathered = true;
                        continue;
                    }
                    // Nothing queued: everything the kernel sent is handled,
                    // and whatever it sends next wakes us at once (idle).
                    self.caught_up.store(IDLE, Ordering::Relaxed);
                    wait = true;
                    gathered = false;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => {
                    log::warn!("rule tracing in netns {}: {e}", self.ns.name);
                    return;
                }
            };
            for inc in batch {
                let t = match inc {
                    Incoming::NewGeneration => {
                        resolver.clear();
                        continue;
                    }
                    Incoming::Trace(t) => t,
                };
                log::trace!(
                    "nftrace {}: {} {} kind {} id {:x} verdict {:?} headers {}+{}",
                    self.ns.name,
                    t.table,
                    t.chain,
                    t.kind,
                    t.id,
                    t.verdict,
                    t.network.len(),
                    t.transport.len()
                );
                if !t.network.is_empty() {
                    if heads.len() >= MAX_IDS {
                        heads.clear();
                    }
                    let mut data = t.network.clone();
                    data.extend_from_slice(&t.transport);
                    let l3_proto = match t.network[0] >> 4 {
                        6 => 0x86dd,
                        _ => 0x0800,
                    };
                    let ours = self
                        .matches
                        .iter()
                        .any(|(m, l4)| m.accepts(&data) && l4.accepts(&data));
                    heads.insert(
                        t.id,
                        Headers {
                            ours,
                            data,
                            l3_proto,
                            ifindex: if t.iif != 0 { t.iif } else { t.oif },
                            mark: t.mark,
                        },
                    );
                }
                if t.table == self.table {
                    continue;
                }
                let Some(kind) = TraceKind::from_u8(t.kind as u8) else {
                    continue;
                };
                let v = match kind {
                    TraceKind::Policy => t.policy.map(|p| p as i32),
                    _ => t.verdict,
                };
                let Some(v) = v else { continue };
                // Rules that only count or mark, returns, accepting policies:
                // nothing a reader needs.
                let keep = match kind {
                    TraceKind::Rule => v != verdict::CONTINUE,
                    TraceKind::Policy => v == verdict::DROP,
                    TraceKind::Return => false,
                };
                let Some(h) = heads.get(&t.id) else { continue };
                if !keep || !h.ours {
                    continue;
                }
                let key = crate::decode::packet::decode_ip(&h.data, &[])
                    .ok()
                    .map(|p| resolve::Key {
                        daddr: p.tuple.dst,
                        proto: p.tuple.proto.number(),
                        dport: p.tuple.dport,
                    });
                let target_comment = match v {
                    verdict::JUMP | verdict::GOTO => {
                        resolver.owner_comment(t.family, &t.table, &t.target)
                    }
                    _ => String::new(),
                };
                let r = match kind {
                    TraceKind::Rule => {
                        resolver.resolve(t.family, &t.table, &t.chain, t.handle, key)
                    }
                    _ => resolve::Resolved {
                        rule: String::new(),
                        comment: String::new(),
                        action: Default::default(),
                        element: String::new(),
                    },
                };
                let hit = RuleHit {
                    kind,
                    family: t.family,
                    table: t.table,
                    chain: t.chain,
                    handle: t.handle,
                    verdict: v,
                    target: t.target,
                    rule: r.rule,
                    comment: r.comment,
                    element: r.element,
                    target_comment,
                    action: r.action,
                };
                log::debug!(
                    "rule trace in {}: {} {} {} handle {} verdict {} -> {:?} {:?} [{}] {:?} {:?}",
                    self.ns.name,
                    hit.family,
                    hit.table,
                    hit.chain,
                    hit.handle,
                    hit.verdict,
                    hit.target,
                    hit.action,
                    hit.rule,
                    hit.comment,
                    hit.element
                );
                let ifname = names
                    .entry(h.ifindex)
                    .or_insert_with(|| {
                        nix::net::if_::if_indextoname(h.ifindex)
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    })
                    .clone();
                let raw = hit.to_raw(&TraceContext {
                    ts_ns: crate::live::kernel::clock::monotonic_ns(),
                    netns: self.ns.inode,
                    ifindex: h.ifindex,
                    ifname: &ifname,
                    mark: h.mark,
                    l3_proto: h.l3_proto,
                    headers: &h.data,
                });
                if self.tx.try_send(crate::decode::encode(&raw)).is_err() {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                }
            }
            if names.len() > MAX_IDS {
                names.clear();
            }
        }
    }

    /// Enter the namespace, create the table, join the trace group.
    fn setup(&self) -> Result<(Nl, Nl), RuleTraceError> {
        if let Some(path) = &self.ns.path {
            let f = std::fs::File::open(path)
                .map_err(|e| RuleTraceError::Netns(self.ns.name.clone(), e.to_string()))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| RuleTraceError::Netns(self.ns.name.clone(), e.to_string()))?;
        }
        let mut ctl = Nl::open()?;
        ctl.create_trace_table(&self.table, &self.matches)
            .map_err(|e| match &e {
                netlink::NetlinkError::Refused(io)
                    if matches!(io.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
                {
                    RuleTraceError::OldKernel
                }
                netlink::NetlinkError::Refused(io)
                    if matches!(
                        io.raw_os_error(),
                        Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT)
                    ) =>
                {
                    RuleTraceError::NoNftables
                }
                _ => RuleTraceError::Netlink(e),
            })?;
        let ev = Nl::open()?;
        let s = ev.socket();
        s.add_membership(NFNLGRP_NFTRACE)
            .and_then(|_| s.add_membership(NFNLGRP_NFTABLES))
            .map_err(netlink::NetlinkError::Io)?;
        let _ = s.set_rx_buf_sz(4 << 20);
        netlink::set_timeout(s, Duration::from_millis(200));
        Ok((ctl, ev))
    }
}
