//! The agent's events mode: the flows of drops and failed connects, handed
//! from the pipeline to the probes to be followed hop by hop for a while,
//! and nftables tracing of just those flows while any is followed (rule
//! names for their next packets; the ruleset untouched the rest of the
//! time).
use std::path::PathBuf;

use netflow_common::filter_flags as ff;

use crate::{
    decode::packet::Tuple,
    live::{
        probes::{Followed, Probes},
        ruletrace::{RuleTracer, WatchedNs},
        select::{inode_of, mapped, Selection},
    },
    pipeline::Pipeline,
};

/// The pods' network namespaces (name, path), kept current by the agent.
pub(crate) type Pods = std::sync::Arc<std::sync::Mutex<Vec<(String, PathBuf)>>>;

/// What is traced for the followed flows: the namespaces their failures
/// were seen in (the host's first), while rules are traced.
pub(crate) struct Follow {
    watched: Vec<WatchedNs>,
    /// Rule tracing works here (tried at start).
    rules: bool,
}

/// Rule tracing of the followed flows: started or widened when a flow is
/// newly followed, stopped (its table deleted) when none is.
pub(crate) struct Rules<'a> {
    pub tracer: &'a mut Option<RuleTracer>,
    pub open: &'a mut bool,
}

/// The events mode: each flow that failed since the last poll is followed
/// hop by hop for a while (its next packets, a client's retries, get their
/// whole path); what the bounds skipped is counted.
pub(crate) fn failures(
    probes: &mut Probes,
    pipe: &mut Pipeline,
    pods: Option<&Pods>,
    state: &mut Follow,
    rules: Rules,
) {
    let now = crate::live::kernel::clock::monotonic_ns();
    let failures = pipe.take_failures();
    let mut new = false;
    if !failures.is_empty() {
        let candidates = pods
            .and_then(|l| l.lock().ok().map(|l| l.clone()))
            .unwrap_or_default();
        for (t, netns) in failures {
            let path = candidates
                .iter()
                .find(|(_, p)| inode_of(p).ok() == Some(netns))
                .map(|(n, p)| (n.clone(), p.clone()));
            if probes.follow(&t, path.as_ref().map(|(_, p)| p.clone()), now) == Followed::New {
                new = true;
                state.watch(path, netns);
            }
        }
    }
    let (followed, skipped, attached) = probes.follows(now);
    pipe.follows(followed, skipped);
    if !attached {
        if let Some(old) = rules.tracer.take() {
            hand_over(old, pipe);
            *rules.open = false;
        }
        state.watched.clear();
        return;
    }
    if new && state.rules {
        // A tracer for the flows followed now replaces the one before,
        // whose traces go to the pipeline first.
        if let Some(old) = rules.tracer.take() {
            hand_over(old, pipe);
        }
        let sel = selection(&probes.followed_flows());
        match RuleTracer::start(&state.watched, &sel) {
            Ok(t) => *rules.tracer = Some(t),
            Err(e) => log::warn!("no rule names for the followed flows: {e}"),
        }
        *rules.open = rules.tracer.is_some();
    }
}

/// A tracer's last traces into the pipeline, as it stops.
fn hand_over(tracer: RuleTracer, pipe: &mut Pipeline) {
    for bytes in tracer.finish() {
        if let Err(e) = pipe.event(&bytes) {
            log::warn!("rule trace: {e}");
        }
    }
}

impl Follow {
    pub(crate) fn new(rules: bool) -> Self {
        Self {
            watched: Vec::new(),
            rules,
        }
    }

    fn watch(&mut self, path: Option<(String, PathBuf)>, netns: u32) {
        if self.watched.is_empty() {
            self.watched.push(WatchedNs {
                name: "netflow's own".into(),
                path: None,
                inode: inode_of(std::path::Path::new("/proc/self/ns/net")).unwrap_or(0),
            });
        }
        if let Some((name, path)) = path {
            if self.watched.iter().all(|w| w.inode != netns) {
                self.watched.push(WatchedNs {
                    name,
                    path: Some(path),
                    inode: netns,
                });
            }
        }
    }
}

/// The trace rules' selection: each followed flow's addresses and ports
/// (as source or destination, so that a packet before its DNAT is marked
/// by its client's address and port), and its protocol when all share one.
fn selection(flows: &[Tuple]) -> Selection {
    let mut filter = netflow_common::Filter::empty();
    let mut addrs: Vec<([u8; 16], u32)> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    for t in flows {
        for a in [t.src, t.dst] {
            if !addrs.iter().any(|(x, _)| *x == mapped(a)) {
                addrs.push((mapped(a), netflow_common::ADDR_HOST));
            }
        }
        for p in [t.sport, t.dport].into_iter().flatten() {
            if !ports.contains(&p) && ports.len() < filter.ports.len() {
                ports.push(p);
            }
        }
    }
    filter.flags = ff::HOST;
    if let Some(first) = flows.first() {
        if flows.iter().all(|t| t.proto == first.proto) {
            filter.flags |= ff::PROTO;
            filter.proto = first.proto.number();
        }
    }
    if !ports.is_empty() {
        filter.flags |= ff::PORT;
        filter.n_ports = ports.len() as u8;
        filter.ports[..ports.len()].copy_from_slice(&ports);
    }
    Selection {
        filter,
        netns: Vec::new(),
        addrs,
        nets: Vec::new(),
        ifaces: Vec::new(),
        vxlan_ports: Vec::new(),
        summary: "the followed flows".into(),
    }
}

/// Whether rule tracing works on this node, tried at start with a table
/// that marks nothing (a documentation address), deleted at once; the
/// probe line says so.
pub(crate) fn try_rule_trace() -> crate::output::ProbeStatus {
    let nothing = Tuple {
        proto: crate::decode::packet::Proto::Tcp,
        src: std::net::Ipv4Addr::new(192, 0, 2, 1).into(),
        dst: std::net::Ipv4Addr::new(192, 0, 2, 2).into(),
        sport: Some(9),
        dport: Some(9),
    };
    let mut own = Follow::new(true);
    own.watch(None, 0);
    let (active, note) = match RuleTracer::start(&own.watched, &selection(&[nothing])) {
        Ok(t) => {
            drop(t.finish());
            (
                true,
                "rule names on demand: nftables tracing of the followed flows only, while one is (table owned, gone when netflow exits)".to_string(),
            )
        }
        Err(e) => (false, format!("no rule names: {e}")),
    };
    crate::output::ProbeStatus {
        name: "rules",
        target: "nftables tracing".into(),
        active,
        note,
    }
}
