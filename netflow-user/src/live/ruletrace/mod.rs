//! Rule names by nftables tracing: which iptables/nftables rule dropped or
//! translated a selected packet.
//!
//! In each watched network namespace netflow creates its own table, `inet
//! netflow-PID`, with the owner flag (Linux ≥ 5.12): the kernel deletes it
//! when netflow's netlink socket closes, so even SIGKILL leaves the ruleset
//! as it was. Its two chains (PREROUTING and OUTPUT, priority -350, before
//! every other) hold rules `[selection] limit rate 500/second meta nftrace
//! set 1`: they change no verdict, they only ask the kernel to report the
//! packet's way through every table (`NFNLGRP_NFTRACE`). The flag does not
//! survive a namespace crossing, hence one table per namespace.
//!
//! A thread per namespace reads the trace events, resolves each rule by its
//! handle (see [`resolve`]) and hands them to the pipeline as events of the
//! daemon's own point (`decode::rule`), so recordings keep them.
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use tokio::sync::mpsc;

use crate::{
    decode::rule::{verdict, RuleHit, TraceContext, TraceKind},
    live::select::Selection,
};

pub mod netlink;
pub mod resolve;

use netlink::{Incoming, L4Match, Match, Nl, NFNLGRP_NFTABLES, NFNLGRP_NFTRACE};

#[derive(Debug, thiserror::Error)]
pub enum RuleTraceError {
    #[error("owned nftables tables need Linux 5.12 or later")]
    OldKernel,
    #[error("no nf_tables in this kernel")]
    NoNftables,
    #[error("netns {0}: {1}")]
    Netns(String, String),
    #[error("{0}")]
    Netlink(#[from] netlink::NetlinkError),
}

/// Trace events waiting for the pipeline, at most (then counted as lost).
const QUEUE: usize = 65536;
/// How far behind the clock rule tracing may hold packets back.
const MAX_LAG_NS: u64 = 5_000_000_000;
/// A watcher waiting on an empty socket: caught up with the clock.
const IDLE: u64 = u64::MAX;

/// How long a busy watcher lets traces gather after draining its socket.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// Where rules are traced: a namespace by path (None: netflow's own).
#[derive(Debug, Clone)]
pub struct WatchedNs {
    pub name: String,
    pub path: Option<PathBuf>,
    pub inode: u32,
}

pub struct RuleTracer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub events: mpsc::Receiver<Vec<u8>>,
    lost: Arc<AtomicU64>,
    /// Per watcher: every trace event the kernel sent before this time
    /// (CLOCK_MONOTONIC) has been handed to the pipeline.
    caught_up: Vec<Arc<AtomicU64>>,
    pub table: String,
    pub namespaces: usize,
}

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

    /// Every rule trace event the kernel sent before this time (monotonic)
    /// is in the pipeline's queue: packets that ended before it have all
    /// their rules. A watcher that lags more than `MAX_LAG_NS` (stuck
    /// resolving rules) holds nothing back beyond that.
    pub fn caught_up(&self, now: u64) -> u64 {
        let slowest = self
            .caught_up
            .iter()
            .map(|m| match m.load(Ordering::Relaxed) {
                IDLE => now,
                t => t,
            })
            .min()
            .unwrap_or(now);
        slowest.clamp(now.saturating_sub(MAX_LAG_NS), now)
    }

    /// Trace events the pipeline could not take (queue full, socket overrun).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for RuleTracer {
    /// Each watcher closes its sockets: the kernel deletes its table.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The trace rules: the selection's addresses (as source and as
/// destination), times its protocol or ports (as source and destination;
/// TCP and UDP when no protocol is chosen). Every packet when it has none:
/// the rate limit bounds the cost.
fn matches(sel: &Selection) -> Vec<(Match, L4Match)> {
    let addrs = addr_matches(sel);
    let f = &sel.filter;
    let proto = (f.flags & netflow_common::filter_flags::PROTO != 0).then_some(f.proto);
    let ports = &f.ports[..(f.n_ports as usize).min(f.ports.len())];
    let mut l4 = Vec::new();
    for port in ports {
        for p in proto.map(|p| vec![p]).unwrap_or_else(|| vec![6, 17]) {
            for src in [true, false] {
                l4.push(L4Match::Port {
                    proto: p,
                    src,
                    port: *port,
                });
            }
        }
    }
    if l4.is_empty() {
        l4.push(proto.map(L4Match::Proto).unwrap_or(L4Match::Any));
    }
    addrs
        .iter()
        .flat_map(|a| l4.iter().map(move |l| (a.clone(), l.clone())))
        .collect()
}

/// The selection's addresses and networks, as source and as destination;
/// any address when it has none.
fn addr_matches(sel: &Selection) -> Vec<Match> {
    let mut out = Vec::new();
    for (addr, _) in &sel.addrs {
        let (v6, bytes) = unmap(addr);
        for src in [true, false] {
            out.push(Match::Addr {
                v6,
                src,
                addr: bytes.clone(),
            });
        }
    }
    for (prefix, net) in &sel.nets {
        let (v6, bytes) = unmap(net);
        let bits = if v6 {
            *prefix
        } else {
            prefix.saturating_sub(96)
        } as usize;
        let mask: Vec<u8> = (0..bytes.len())
            .map(|i| {
                let b = bits.saturating_sub(i * 8).min(8);
                (0xffu16 << (8 - b)) as u8
            })
            .collect();
        for src in [true, false] {
            out.push(Match::Net {
                v6,
                src,
                net: bytes.clone(),
                mask: mask.clone(),
            });
        }
    }
    if out.is_empty() {
        out.push(Match::All);
    }
    out
}

/// A mapped address back to 4 or 16 bytes.
fn unmap(a: &[u8; 16]) -> (bool, Vec<u8>) {
    let v6 = std::net::Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => (false, v4.octets().to_vec()),
        None => (true, a.to_vec()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_become_masks() {
        let sel = Selection {
            filter: netflow_common::Filter::empty(),
            netns: vec![],
            addrs: vec![(crate::live::select::mapped("10.1.2.3".parse().unwrap()), 1)],
            nets: vec![(
                96 + 20,
                crate::live::select::mapped("10.1.0.0".parse().unwrap()),
            )],
            ifaces: vec![],
            vxlan_ports: vec![],
            summary: String::new(),
        };
        let m = addr_matches(&sel);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[0],
            Match::Addr {
                v6: false,
                src: true,
                addr: vec![10, 1, 2, 3]
            }
        );
        assert_eq!(
            m[2],
            Match::Net {
                v6: false,
                src: true,
                net: vec![10, 1, 0, 0],
                mask: vec![255, 255, 240, 0]
            }
        );
        // The daemon's reading of a packet agrees with the kernel rule.
        let pkt = [
            0x45u8, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 1, 2, 3, 10, 1, 9, 9, 0x9c, 0x40, 0,
            80,
        ];
        assert!(m[0].accepts(&pkt), "source 10.1.2.3");
        assert!(!m[1].accepts(&pkt), "destination is not 10.1.2.3");
        assert!(m[3].accepts(&pkt), "destination in 10.1.0.0/20");
        assert!(L4Match::Port {
            proto: 6,
            src: false,
            port: 80
        }
        .accepts(&pkt));
        assert!(!L4Match::Port {
            proto: 6,
            src: true,
            port: 80
        }
        .accepts(&pkt));
        assert!(!L4Match::Proto(17).accepts(&pkt));
        let empty = Selection {
            addrs: vec![],
            nets: vec![],
            ..sel
        };
        assert_eq!(addr_matches(&empty), vec![Match::All]);
        assert_eq!(matches(&empty), vec![(Match::All, L4Match::Any)]);
        let mut ports = empty.clone();
        ports.filter.n_ports = 1;
        ports.filter.ports[0] = 80;
        let m = matches(&ports);
        assert_eq!(m.len(), 4, "tcp and udp, source and destination: {m:?}");
        ports.filter.flags |= netflow_common::filter_flags::PROTO;
        ports.filter.proto = 6;
        assert_eq!(
            matches(&ports),
            vec![
                (
                    Match::All,
                    L4Match::Port {
                        proto: 6,
                        src: true,
                        port: 80
                    }
                ),
                (
                    Match::All,
                    L4Match::Port {
                        proto: 6,
                        src: false,
                        port: 80
                    }
                )
            ]
        );
    }
}
