//! The agent's events mode, full detail on demand. The per-hop programs
//! (devices, netfilter, socket delivery, routes) are loaded and verified at
//! start, and attached only while a flow is followed: a drop or a failed
//! connect puts its flow, both directions, in SEL_FLOWS for a window long
//! enough for a client's retries (SYNs are sent again at 1 and 3 s), and
//! the programs select nothing else (`filter_flags::ON_DEMAND`). When no
//! flow is followed any more they are detached again: a healthy packet's
//! path has no program on it the rest of the time.
//!
//! Bounded: a few flows at once and a few new ones a second; what is not
//! followed is counted (`skipped`). Everything attached is a link owned
//! here (or by the probes' `Ebpf`): it dies with the process.
use std::{any::Any, collections::HashMap, os::fd::OwnedFd, path::PathBuf};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, FEntry, FExit, KProbe,
    },
    Btf, Ebpf,
};
use netflow_common::{names, FlowKey};

use super::{
    hooks::{forced, has_kprobes},
    load::{program, short},
    netfilter::NfPrograms,
    tracepoints::{fits, EVENT_PROBES, REQUIRED, TRACEPOINTS},
};
use crate::{decode::packet::Tuple, live::kernel::btf::KernelBtf, output::ProbeStatus};

/// How long a flow is followed after its failure.
pub const WINDOW_NS: u64 = 5_000_000_000;
/// Flows followed at once, at most.
pub const MAX_FOLLOWED: usize = 4;
/// New flows followed per second, at most.
const MAX_NEW_PER_SECOND: u32 = 4;
const NF_FUNC: &str = "nf_hook_slow";

/// What became of a flow to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    New,
    /// Followed already (its window is not extended).
    Already,
    /// Too many at once, or the programs could not be attached: counted.
    Skipped,
}

/// A per-hop program, loaded, waiting to be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prog {
    Tp(&'static str),
    SockIn,
    /// `nf_hook_slow` by fentry and fexit (kernels without netfilter links).
    FEntryPair,
    KProbePair,
}

pub(super) struct OnDemand {
    /// In attach order: where packets end, netfilter, where they start.
    ends: Vec<Prog>,
    starts: Vec<Prog>,
    nf: Option<NfPrograms>,
    nf_fallback: Option<Prog>,
    links: Option<Links>,
    /// Followed flows (one direction as seen first) until their deadline.
    followed: HashMap<Tuple, u64>,
    second: (u64, u32),
    pub started: u64,
    pub skipped: u64,
}

/// What is attached while flows are followed: dropped, it is detached.
struct Links {
    _aya: Vec<Box<dyn Any>>,
    nf: Vec<OwnedFd>,
    /// The namespaces with netfilter links besides the host's.
    nf_netns: Vec<PathBuf>,
}

impl OnDemand {
    /// Load every per-hop program this kernel takes (nothing attached).
    /// `sock_in`: the socket program is attached for good already (the
    /// events mode's DNS), and takes followed flows' packets too.
    pub(super) fn load(
        ebpf: &mut Ebpf,
        kbtf: &KernelBtf,
        btf: &Btf,
        sock_in: bool,
    ) -> (Self, ProbeStatus) {
        let mut loaded = Vec::new();
        let mut off = Vec::new();
        let sock_in = sock_in
            || match load_sock_in(ebpf) {
                Ok(()) => {
                    loaded.push(Prog::SockIn);
                    true
                }
                Err(e) => {
                    off.push(format!("socket delivery: {e}"));
                    false
                }
            };
        for (prog, tp, _) in TRACEPOINTS {
            if EVENT_PROBES.contains(&prog)
                || (sock_in && [names::PROG_DELIVER, names::PROG_TCP_RCV].contains(&prog))
            {
                continue;
            }
            match load_tp(ebpf, kbtf, btf, prog, tp) {
                Ok(()) => loaded.push(Prog::Tp(prog)),
                Err(e) => off.push(format!("{tp}: {e}")),
            }
        }
        let (nf, nf_fallback) = match NfPrograms::load(ebpf) {
            Ok(p) if forced("NETFLOW_NF_PROBE").is_none() => (Some(p), None),
            other => {
                if let Err(e) = other {
                    off.push(format!("netfilter links: {e}"));
                }
                match load_nf_fallback(ebpf, btf) {
                    Ok(p) => (None, Some(p)),
                    Err(e) => {
                        off.push(format!("netfilter: {e}"));
                        (None, None)
                    }
                }
            }
        };
        let (starts, ends) = loaded.into_iter().partition(|p| match p {
            Prog::Tp(name) => REQUIRED.contains(name),
            _ => false,
        });
        let me = Self {
            ends,
            starts,
            nf,
            nf_fallback,
            links: None,
            followed: HashMap::new(),
            second: (0, 0),
            started: 0,
            skipped: 0,
        };
        let netfilter = match (&me.nf, me.nf_fallback) {
            (Some(_), _) => "netfilter links",
            (None, Some(Prog::FEntryPair)) => "fentry/nf_hook_slow",
            (None, Some(_)) => "kprobe/nf_hook_slow",
            (None, None) => "no netfilter",
        };
        let status = ProbeStatus {
            name: "per-hop",
            target: "on demand".into(),
            active: me.starts.len() == REQUIRED.len(),
            note: format!(
                "devices, {netfilter}, sockets: attached while a failed flow is followed ({} s, {MAX_FOLLOWED} at once){}",
                WINDOW_NS / 1_000_000_000,
                if off.is_empty() {
                    String::new()
                } else {
                    format!("; off: {}", off.join("; "))
                }
            ),
        };
        (me, status)
    }

    /// Follow `t` (both directions) from now on, attaching the programs if
    /// none are; `netns`: the namespace the failure was seen in, for its
    /// netfilter links (None: the host's).
    pub(super) fn follow(
        &mut self,
        ebpf: &mut Ebpf,
        t: &Tuple,
        netns: Option<PathBuf>,
        now_ns: u64,
    ) -> Followed {
        if self.followed.contains_key(t) || self.followed.contains_key(&t.reversed()) {
            return Followed::Already;
        }
        if now_ns.saturating_sub(self.second.0) >= 1_000_000_000 {
            self.second = (now_ns, 0);
        }
        if self.followed.len() >= MAX_FOLLOWED || self.second.1 >= MAX_NEW_PER_SECOND {
            self.skipped += 1;
            return Followed::Skipped;
        }
        if select_flow(ebpf, t).is_err() {
            self.skipped += 1;
            return Followed::Skipped;
        }
        match &mut self.links {
            None => match self.attach(ebpf, netns) {
                Ok(links) => self.links = Some(links),
                Err(e) => {
                    log::warn!("following {t}: {e}");
                    self.skipped += 1;
                    clear_flows(ebpf);
                    return Followed::Skipped;
                }
            },
            // Attached for other flows: netfilter links in this one's
            // namespace too.
            Some(links) => {
                if let (Some(progs), Some(path)) = (&self.nf, netns) {
                    if !links.nf_netns.contains(&path) {
                        match progs.attach(Some(&path)) {
                            Ok(fds) => {
                                links.nf.extend(fds);
                                links.nf_netns.push(path);
                            }
                            Err(e) => log::warn!("following {t}: {e}"),
                        }
                    }
                }
            }
        }
        self.second.1 += 1;
        self.started += 1;
        self.followed.insert(*t, now_ns + WINDOW_NS);
        Followed::New
    }

    /// The flows followed now.
    pub(super) fn flows(&self) -> Vec<Tuple> {
        self.followed.keys().copied().collect()
    }

    /// Flows past their window are no longer followed; with none left, the
    /// programs are detached and the kernel's flow selection emptied.
    pub(super) fn expire(&mut self, ebpf: &mut Ebpf, now_ns: u64) {
        self.followed.retain(|_, deadline| *deadline > now_ns);
        if self.followed.is_empty() && self.links.is_some() {
            self.links = None;
            clear_flows(ebpf);
        }
    }

    pub(super) fn attached(&self) -> bool {
        self.links.is_some()
    }

    fn attach(&self, ebpf: &mut Ebpf, netns: Option<PathBuf>) -> Result<Links, String> {
        let mut aya: Vec<Box<dyn Any>> = Vec::new();
        for p in &self.ends {
            attach_one(ebpf, *p, &mut aya)?;
        }
        let mut nf = Vec::new();
        let mut nf_netns = Vec::new();
        if let Some(progs) = &self.nf {
            nf.extend(progs.attach(None).map_err(|e| e.to_string())?);
            if let Some(path) = netns {
                nf.extend(progs.attach(Some(&path)).map_err(|e| e.to_string())?);
                nf_netns.push(path);
            }
        } else if let Some(p) = self.nf_fallback {
            attach_one(ebpf, p, &mut aya)?;
        }
        for p in &self.starts {
            attach_one(ebpf, *p, &mut aya)?;
        }
        Ok(Links {
            _aya: aya,
            nf,
            nf_netns,
        })
    }
}

fn load_tp(
    ebpf: &mut Ebpf,
    kbtf: &KernelBtf,
    btf: &Btf,
    prog: &'static str,
    tp: &str,
) -> Result<(), String> {
    if !fits(kbtf, prog, tp)? {
        return Err("unexpected prototype".into());
    }
    let p: &mut BtfTracePoint = program(ebpf, prog, tp).map_err(|e| e.to_string())?;
    p.load(tp, btf).map_err(|e| short(&e))
}

fn load_sock_in(ebpf: &mut Ebpf) -> Result<(), String> {
    crate::live::kernel::cgroup::open_root().map_err(|e| e.to_string())?;
    let p: &mut CgroupSkb =
        program(ebpf, names::PROG_SOCK_IN, "cgroup_skb").map_err(|e| e.to_string())?;
    p.load().map_err(|e| short(&e))
}

fn load_nf_fallback(ebpf: &mut Ebpf, btf: &Btf) -> Result<Prog, String> {
    let mut tried = Vec::new();
    if forced("NETFLOW_NF_PROBE").as_deref() != Some("kprobe") {
        let r = (|| -> Result<(), String> {
            let p: &mut FEntry =
                program(ebpf, names::PROG_NF_FENTRY, "fentry").map_err(|e| e.to_string())?;
            p.load(NF_FUNC, btf).map_err(|e| short(&e))?;
            let p: &mut FExit =
                program(ebpf, names::PROG_NF_FEXIT, "fexit").map_err(|e| e.to_string())?;
            p.load(NF_FUNC, btf).map_err(|e| short(&e))
        })();
        match r {
            Ok(()) => return Ok(Prog::FEntryPair),
            Err(e) => tried.push(format!("fentry: {e}")),
        }
    }
    if !has_kprobes() {
        tried.push("no kprobes".into());
        return Err(tried.join("; "));
    }
    for prog in [names::PROG_NF_KRETPROBE, names::PROG_NF_KPROBE] {
        let p: &mut KProbe = program(ebpf, prog, "kprobe").map_err(|e| e.to_string())?;
        p.load().map_err(|e| short(&e))?;
    }
    Ok(Prog::KProbePair)
}

/// Attach one loaded program; its link goes in `out` (detached when dropped).
fn attach_one(ebpf: &mut Ebpf, p: Prog, out: &mut Vec<Box<dyn Any>>) -> Result<(), String> {
    let e = |e: aya::programs::ProgramError| short(&e);
    match p {
        Prog::Tp(name) => {
            let p: &mut BtfTracePoint = program(ebpf, name, "tp_btf").map_err(|e| e.to_string())?;
            let id = p.attach().map_err(e)?;
            out.push(Box::new(p.take_link(id).map_err(e)?));
        }
        Prog::SockIn => {
            let root = crate::live::kernel::cgroup::open_root().map_err(|e| e.to_string())?;
            let p: &mut CgroupSkb =
                program(ebpf, names::PROG_SOCK_IN, "cgroup_skb").map_err(|e| e.to_string())?;
            let id = p
                .attach(
                    &root.fd,
                    CgroupSkbAttachType::Ingress,
                    CgroupAttachMode::Single,
                )
                .map_err(e)?;
            out.push(Box::new(p.take_link(id).map_err(e)?));
        }
        Prog::FEntryPair => {
            let p: &mut FEntry =
                program(ebpf, names::PROG_NF_FENTRY, "fentry").map_err(|e| e.to_string())?;
            let id = p.attach().map_err(e)?;
            out.push(Box::new(p.take_link(id).map_err(e)?));
            let p: &mut FExit =
                program(ebpf, names::PROG_NF_FEXIT, "fexit").map_err(|e| e.to_string())?;
            let id = p.attach().map_err(e)?;
            out.push(Box::new(p.take_link(id).map_err(e)?));
        }
        Prog::KProbePair => {
            // The return probe first: an entry without its return would
            // grow the per-task stack.
            for prog in [names::PROG_NF_KRETPROBE, names::PROG_NF_KPROBE] {
                let p: &mut KProbe = program(ebpf, prog, "kprobe").map_err(|e| e.to_string())?;
                let id = p.attach(NF_FUNC, 0).map_err(e)?;
                out.push(Box::new(p.take_link(id).map_err(e)?));
            }
        }
    }
    Ok(())
}

/// The flow's key as the kernel makes it of a packet (`parse::flow_key`):
/// IPv4 addresses IPv6-mapped, ports in host order.
fn flow_key(t: &Tuple) -> FlowKey {
    let mapped = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(a) => a.octets(),
    };
    FlowKey {
        src: mapped(t.src),
        dst: mapped(t.dst),
        sport: t.sport.unwrap_or(0),
        dport: t.dport.unwrap_or(0),
        proto: t.proto.number(),
        _pad: [0; 3],
    }
}

/// Both directions of `t` into SEL_FLOWS, and the programs told to look.
fn select_flow(ebpf: &mut Ebpf, t: &Tuple) -> Result<(), aya::maps::MapError> {
    let map = ebpf
        .map_mut(names::SEL_FLOWS)
        .ok_or(aya::maps::MapError::InvalidName {
            name: names::SEL_FLOWS.into(),
        })?;
    let mut flows: BpfHashMap<&mut MapData, FlowKey, u8> = BpfHashMap::try_from(map)?;
    flows.insert(flow_key(t), 1, 0)?;
    flows.insert(flow_key(&t.reversed()), 1, 0)?;
    set_active(ebpf, 1)
}

/// SEL_FLOWS emptied (the followed flows and the replies the kernel added).
fn clear_flows(ebpf: &mut Ebpf) {
    let _ = set_active(ebpf, 0);
    // No packet is tracked across the node any more: the socket programs
    // (attached for DNS) go back to returning at once for any other packet.
    if let Some(map) = ebpf.map_mut(names::TRACKING) {
        if let Ok(mut a) = Array::<&mut MapData, u32>::try_from(map) {
            let _ = a.set(0, 0, 0);
        }
    }
    let Some(map) = ebpf.map_mut(names::SEL_FLOWS) else {
        return;
    };
    let Ok(mut flows) = BpfHashMap::<&mut MapData, FlowKey, u8>::try_from(map) else {
        return;
    };
    let keys: Vec<FlowKey> = flows.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = flows.remove(&k);
    }
}

fn set_active(ebpf: &mut Ebpf, v: u32) -> Result<(), aya::maps::MapError> {
    let map = ebpf
        .map_mut(names::FLOWS_ACTIVE)
        .ok_or(aya::maps::MapError::InvalidName {
            name: names::FLOWS_ACTIVE.into(),
        })?;
    let mut a: Array<&mut MapData, u32> = Array::try_from(map)?;
    a.set(0, v, 0)
}
