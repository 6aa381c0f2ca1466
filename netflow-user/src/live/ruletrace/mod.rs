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
};

use tokio::sync::mpsc;

mod matches;
pub mod netlink;
pub mod resolve;
mod watcher;

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

/// How far behind the clock rule tracing may hold packets back.
const MAX_LAG_NS: u64 = 5_000_000_000;
/// A watcher waiting on an empty socket: caught up with the clock.
const IDLE: u64 = u64::MAX;

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

    /// Stop (the tables deleted) and hand over every trace the watchers
    /// had read: none is lost to a tracer replaced by another.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut out = Vec::new();
        while let Ok(b) = self.events.try_recv() {
            out.push(b);
        }
        out
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
