//! Loading the kernel programs, handing them the kernel's offsets and the
//! packet selection, and attaching them. Everything attached here is an fd
//! link owned by this process: it is detached when [`Probes`] is dropped and
//! also when the process dies (SIGKILL included).
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf,
    },
    programs::{
        tc, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, SchedClassifier, TcAttachType,
    },
    Btf, Ebpf,
};
use netflow_common::{names, sock_class, AddrKey, ConnCount, FlowKey, SockCounts};

use crate::{
    correlate::connections::{CountSource, Counted, SocketCounts},
    decode::packet::Tuple,
    live::kernel::btf::KernelBtf,
    live::probes::netfilter::NfPrograms,
    live::select::Selection,
    output::ProbeStatus,
};

mod btf_linkage;
mod dns;
pub mod figures;
mod hooks;
mod load;
pub mod netfilter;
mod on_demand;
mod raw;
mod tracepoints;

use hooks::{attach_kprobes, attach_netfilter, attach_nf_hook_slow};
pub use hooks::{has_kprobes, verify_kprobe};
pub use load::{ebpf_object, NetfilterPlan, ProbeError};
use load::{loader, program, short, Result};
pub use on_demand::Followed;
use tracepoints::{attach_tracepoint, Tracepoint, EVENT_PROBES, REQUIRED, SOCK_STATE, TRACEPOINTS};

/// Which programs run: every hop of every selected packet (`trace`), or
/// only those that run per drop and per connection event (the agent's
/// events mode: nothing on a healthy packet's path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeSet {
    #[default]
    PerHop,
    Events,
}

pub struct Probes {
    ebpf: Ebpf,
    pub status: Vec<ProbeStatus>,
    lost: PerCpuArray<MapData, u64>,
    sampled: PerCpuArray<MapData, u64>,
    /// Netfilter programs and their links (dropped with the probes).
    nf: Option<NfLinks>,
    /// The events mode: the per-hop programs, attached while a failed flow
    /// is followed.
    on_demand: Option<on_demand::OnDemand>,
}

/// The netfilter programs, their links at start, and the links of the
/// namespaces followed since (`Probes::follow_netns`), by namespace inode.
struct NfLinks {
    progs: NfPrograms,
    _fixed: Vec<std::os::fd::OwnedFd>,
    /// The namespaces linked at start (netflow's own and the plan's).
    fixed: std::collections::HashSet<u32>,
    followed: std::collections::HashMap<u32, (String, Vec<std::os::fd::OwnedFd>)>,
}

/// `cgroup_skb` ingress on the cgroup v2 root (a link: it dies with the
/// process): the moment a socket takes a packet. True when attached.
fn attach_sock_in(ebpf: &mut Ebpf, status: &mut Vec<ProbeStatus>) -> bool {
    let r = match hooks::forced("NETFLOW_SOCK_PROBE").as_deref() {
        Some("tracepoint") => Err("skipped (NETFLOW_SOCK_PROBE=tracepoint)".to_string()),
        _ => attach_cgroup_skb(ebpf, names::PROG_SOCK_IN, CgroupSkbAttachType::Ingress),
    };
    let (active, note) = match r {
        Ok(how) => (true, format!("socket delivery ({how})")),
        Err(e) => (
            false,
            format!("handshake ACKs, SYN-ACKs and FINs may read unknown: {e}"),
        ),
    };
    status.push(ProbeStatus {
        name: names::PROG_SOCK_IN,
        target: "cgroup_skb/ingress".into(),
        active,
        note,
    });
    active
}

/// The agent's counting: `cgroup_skb` egress on the cgroup v2 root, where
/// a socket of the node sends (ingress is `attach_sock_in`).
fn attach_sock_out(ebpf: &mut Ebpf, status: &mut Vec<ProbeStatus>) {
    let r = attach_cgroup_skb(ebpf, names::PROG_SOCK_OUT, CgroupSkbAttachType::Egress);
    let (active, note) = match r {
        Ok(how) => (
            true,
            format!("TCP data counted where sockets send and take it ({how})"),
        ),
        Err(e) => (false, format!("TCP data a pod sends is not counted: {e}")),
    };
    status.push(ProbeStatus {
        name: names::PROG_SOCK_OUT,
        target: "cgroup_skb/egress".into(),
        active,
        note,
    });
}

pub(super) fn attach_cgroup_skb(
    ebpf: &mut Ebpf,
    name: &'static str,
    kind: CgroupSkbAttachType,
) -> std::result::Result<String, String> {
    let target = match kind {
        CgroupSkbAttachType::Ingress => "cgroup_skb/ingress",
        CgroupSkbAttachType::Egress => "cgroup_skb/egress",
    };
    let root = crate::live::kernel::cgroup::open_root().map_err(|e| e.to_string())?;
    let p: &mut CgroupSkb = program(ebpf, name, target).map_err(|e| e.to_string())?;
    p.load().map_err(|e| short(&e))?;
    // A link (5.7+) shares the cgroup with other programs whatever the
    // mode, and the kernel wants no mode flags with it.
    p.attach(&root.fd, kind, CgroupAttachMode::Single)
        .map_err(|e| short(&e))?;
    Ok(root.how)
}

impl Probes {
    /// Load, fill the selection maps, attach every probe this kernel offers.
    pub fn start(
        sel: &Selection,
        kbtf: &KernelBtf,
        reason_consumed: u32,
        nf: &NetfilterPlan,
        ring_bytes: u32,
        set: ProbeSet,
    ) -> Result<Self> {
        let nf_plan = nf;
        let offsets = kbtf.offsets()?;
        let mut filter = sel.filter;
        filter.reason_consumed = reason_consumed;
        let mut ebpf = loader(&offsets, &filter)
            .map_max_entries(names::EVENTS, ring_bytes)
            .load(ebpf_object())
            .map_err(ProbeError::Object)?;
        fill_selection(&mut ebpf, sel)?;
        let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;

        let mut status = Vec::new();
        if set == ProbeSet::Events {
            for tp in TRACEPOINTS
                .into_iter()
                .filter(|(p, _, _)| EVENT_PROBES.contains(p))
                .chain([SOCK_STATE])
            {
                attach_tracepoint(&mut ebpf, kbtf, &btf, tp, false, &mut status)?;
            }
            status.push(hooks::attach_icmp6_send(&mut ebpf, &btf));
            let sockets = filter.flags & netflow_common::filter_flags::DNS != 0
                && dns::attach(&mut ebpf, &btf, &mut status) == dns::Way::Sockets;
            let (od, st) = on_demand::OnDemand::load(&mut ebpf, kbtf, &btf, sockets);
            status.push(st);
            let mut me = Self::started(ebpf, status, None, nf_plan)?;
            me.on_demand = Some(od);
            return Ok(me);
        }
        let sockets = attach_sock_in(&mut ebpf, &mut status);
        if filter.flags & netflow_common::filter_flags::SOCKET_COUNT != 0 {
            attach_sock_out(&mut ebpf, &mut status);
        }
        // Where packets end first, then netfilter, then where they start: a
        // packet first seen on a device always has its end probes in place.
        let (starts, ends): (Vec<Tracepoint>, Vec<Tracepoint>) = TRACEPOINTS
            .into_iter()
            .partition(|(prog, _, _)| REQUIRED.contains(prog));
        for tp in ends {
            attach_tracepoint(&mut ebpf, kbtf, &btf, tp, sockets, &mut status)?;
        }
        let (nf, nf_on) = if nf.enabled {
            match attach_netfilter(&ebpf, nf) {
                Ok((links, st)) => {
                    status.push(st);
                    (Some(links), true)
                }
                Err(why) => {
                    let st = attach_nf_hook_slow(&mut ebpf, &btf, why);
                    let on = st.active;
                    status.push(st);
                    (None, on)
                }
            }
        } else {
            (None, false)
        };
        if nf_on {
            attach_kprobes(&mut ebpf, &mut status);
        }
        status.push(hooks::attach_icmp6_send(&mut ebpf, &btf));
        for tp in starts {
            attach_tracepoint(&mut ebpf, kbtf, &btf, tp, sockets, &mut status)?;
        }
        Self::started(ebpf, status, nf, nf_plan)
    }

    fn started(
        mut ebpf: Ebpf,
        status: Vec<ProbeStatus>,
        nf: Option<(NfPrograms, Vec<std::os::fd::OwnedFd>)>,
        nf_plan: &NetfilterPlan,
    ) -> Result<Self> {
        let counter = |ebpf: &mut Ebpf, name: &'static str| {
            PerCpuArray::try_from(
                ebpf.take_map(name)
                    .ok_or(ProbeError::Missing("map", name))?,
            )
            .map_err(|source| ProbeError::Map { map: name, source })
        };
        let lost = counter(&mut ebpf, names::LOST)?;
        let sampled = counter(&mut ebpf, names::SAMPLED)?;
        Ok(Self {
            ebpf,
            status,
            lost,
            sampled,
            nf: nf.map(|(progs, links)| NfLinks {
                progs,
                _fixed: links,
                fixed: std::iter::once(std::path::Path::new("/proc/self/ns/net"))
                    .chain(nf_plan.netns.iter().map(|(_, p)| p.as_path()))
                    .filter_map(|p| crate::live::select::inode_of(p).ok())
                    .collect(),
                followed: Default::default(),
            }),
            on_demand: None,
        })
    }

    /// Netfilter links in exactly these namespaces (name, path) besides
    /// those of the start: new ones linked, gone ones unlinked (pods that
    /// start and stop while the agent runs). What changed, in words. A
    /// no-op where netfilter is probed without links (fentry or kprobe on
    /// `nf_hook_slow` sees every namespace).
    pub fn follow_netns(&mut self, want: &[(String, std::path::PathBuf)]) -> Vec<String> {
        let Some(nf) = &mut self.nf else {
            return Vec::new();
        };
        let mut said = Vec::new();
        let mut keep = std::collections::HashSet::new();
        for (name, path) in want {
            let Ok(ino) = crate::live::select::inode_of(path) else {
                continue;
            };
            if nf.fixed.contains(&ino) || !keep.insert(ino) || nf.followed.contains_key(&ino) {
                continue;
            }
            match nf.progs.attach(Some(path)) {
                Ok(links) => {
                    said.push(format!("netfilter links in netns {name}"));
                    nf.followed.insert(ino, (name.clone(), links));
                }
                // Gone meanwhile, or refused: the next listing tries again.
                Err(e) => said.push(format!("no netfilter links in netns {name}: {e}")),
            }
        }
        nf.followed.retain(|ino, (name, _)| {
            let stay = keep.contains(ino);
            if !stay {
                said.push(format!("netfilter links in netns {name} removed"));
            }
            stay
        });
        said
    }

    /// tc ingress and egress on `devices` (of this namespace): TCX links on
    /// kernels that have them (6.6+), else clsact filters. Our programs always
    /// pass the packet on to whatever else is attached.
    pub fn attach_tc(&mut self, devices: &[String]) -> Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        for (prog, attach) in [
            (names::PROG_TC_INGRESS, TcAttachType::Ingress),
            (names::PROG_TC_EGRESS, TcAttachType::Egress),
        ] {
            let p: &mut SchedClassifier = program(&mut self.ebpf, prog, "tc")?;
            p.load().map_err(|err| ProbeError::Load {
                prog,
                target: "tc".into(),
                err,
            })?;
            for dev in devices {
                let target = format!(
                    "tc {}/{dev}",
                    if attach == TcAttachType::Ingress {
                        "ingress"
                    } else {
                        "egress"
                    }
                );
                if !has_tcx() {
                    // Legacy path: needs a clsact qdisc (an existing one is fine).
                    if let Err(e) = tc::qdisc_add_clsact(dev) {
                        if !already_exists(&e) {
                            return Err(ProbeError::Attach {
                                prog,
                                target,
                                source: e.into(),
                            });
                        }
                    }
                }
                p.attach(dev, attach).map_err(|source| ProbeError::Attach {
                    prog,
                    target: target.clone(),
                    source,
                })?;
            }
        }
        self.status.push(ProbeStatus {
            name: names::PROG_TC_INGRESS,
            target: format!(
                "tc ingress+egress ({})",
                if has_tcx() { "tcx" } else { "clsact" }
            ),
            active: true,
            note: devices.join(", "),
        });
        Ok(())
    }

    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let m = self
            .ebpf
            .take_map(names::EVENTS)
            .ok_or(ProbeError::Missing("map", names::EVENTS))?;
        RingBuf::try_from(m).map_err(|source| ProbeError::Map {
            map: names::EVENTS,
            source,
        })
    }

    /// Events the kernel could not put in the ring buffer, all CPUs.
    pub fn lost(&self) -> u64 {
        sum(&self.lost)
    }

    /// The events mode: follow `t` hop by hop for a while; its failure was
    /// seen in the namespace at `netns` (None: the host's).
    pub fn follow(
        &mut self,
        t: &Tuple,
        netns: Option<std::path::PathBuf>,
        now_ns: u64,
    ) -> Followed {
        match &mut self.on_demand {
            Some(od) => od.follow(&mut self.ebpf, t, netns, now_ns),
            None => Followed::Skipped,
        }
    }

    /// The flows the events mode follows now.
    pub fn followed_flows(&self) -> Vec<Tuple> {
        self.on_demand
            .as_ref()
            .map(|od| od.flows())
            .unwrap_or_default()
    }

    /// Flows followed past their window are let go (the programs detached
    /// when none is left); how many were followed and skipped so far, and
    /// whether the per-hop programs are attached now.
    pub fn follows(&mut self, now_ns: u64) -> (u64, u64, bool) {
        let Some(od) = &mut self.on_demand else {
            return (0, 0, false);
        };
        od.expire(&mut self.ebpf, now_ns);
        (od.started, od.skipped, od.attached())
    }

    /// TCP state changes so far per network namespace (all CPUs), when the
    /// events mode counts them.
    pub fn sock_counts(&self) -> Vec<(u32, [u64; sock_class::N])> {
        let Some(m) = self.ebpf.map(names::SOCK_COUNTS) else {
            return Vec::new();
        };
        let Ok(m) = PerCpuHashMap::<_, u32, SockCounts>::try_from(m) else {
            return Vec::new();
        };
        m.iter()
            .filter_map(std::result::Result::ok)
            .map(|(netns, per_cpu)| {
                let mut sum = [0u64; sock_class::N];
                for c in per_cpu.iter() {
                    for (s, n) in sum.iter_mut().zip(c.n) {
                        *s += n;
                    }
                }
                (netns, sum)
            })
            .collect()
    }

    /// Selected packets the guardrails only counted, all CPUs.
    pub fn sampled(&self) -> u64 {
        sum(&self.sampled)
    }

    /// The kernel's per-connection counts of only-counted packets.
    pub fn take_counts(&mut self) -> Result<KernelCounts> {
        let m = self
            .ebpf
            .take_map(names::CONNS)
            .ok_or(ProbeError::Missing("map", names::CONNS))?;
        Ok(KernelCounts(HashMap::try_from(m).map_err(|source| {
            ProbeError::Map {
                map: names::CONNS,
                source,
            }
        })?))
    }
}

fn sum(counter: &PerCpuArray<MapData, u64>) -> u64 {
    counter
        .get(&0, 0)
        .map(|v| v.iter().copied().sum())
        .unwrap_or(0)
}

/// The CONNS map: connections keyed with their lower endpoint first (as the
/// kernel's guardrails key them), read and removed when a connection ends.
pub struct KernelCounts(HashMap<MapData, FlowKey, ConnCount>);

impl CountSource for KernelCounts {
    fn take(&mut self, t: &Tuple) -> Option<Counted> {
        let mapped = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        let (a, b) = (
            (mapped(t.src), t.sport.unwrap_or(0)),
            (mapped(t.dst), t.dport.unwrap_or(0)),
        );
        let from_low = a <= b;
        let (lo, hi) = if from_low { (a, b) } else { (b, a) };
        let key = FlowKey {
            src: lo.0,
            dst: hi.0,
            sport: lo.1,
            dport: hi.1,
            proto: t.proto.number(),
            _pad: [0; 3],
        };
        let c = self.0.get(&key, 0).ok()?;
        let _ = self.0.remove(&key);
        let (fwd, rev) = if from_low { (0, 1) } else { (1, 0) };
        Some(Counted {
            fwd_packets: c.pkts[fwd],
            fwd_bytes: c.bytes[fwd],
            rev_packets: c.pkts[rev],
            rev_bytes: c.bytes[rev],
            // Seen by the socket that sent it and by the one that took it:
            // the larger of the two counts.
            at_sockets: SocketCounts {
                fwd_packets: c.sent[fwd].max(c.taken[fwd]),
                fwd_bytes: c.sent_bytes[fwd].max(c.taken_bytes[fwd]),
                rev_packets: c.sent[rev].max(c.taken[rev]),
                rev_bytes: c.sent_bytes[rev].max(c.taken_bytes[rev]),
            },
        })
        .filter(|k| {
            let s = &k.at_sockets;
            k.fwd_packets + k.rev_packets + s.fwd_packets + s.rev_packets > 0
        })
    }
}

/// TCX links (6.6+): attached programs die with the process.
/// The clsact qdisc is there already (another tc user's, or another
/// netflow's): aya says so as its own variant, an I/O error, or a netlink
/// error whose cause is EEXIST ("Exclusivity flag on, cannot modify").
fn already_exists(e: &tc::TcError) -> bool {
    if matches!(e, tc::TcError::AlreadyAttached) {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::EEXIST) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

fn has_tcx() -> bool {
    use aya::util::KernelVersion;
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

fn fill_selection(ebpf: &mut Ebpf, sel: &Selection) -> Result<()> {
    let map_err = |map| move |source| ProbeError::Map { map, source };
    let mut netns: HashMap<_, u32, u8> = HashMap::try_from(
        ebpf.map_mut(names::SEL_NETNS)
            .ok_or(ProbeError::Missing("map", names::SEL_NETNS))?,
    )
    .map_err(map_err(names::SEL_NETNS))?;
    for n in &sel.netns {
        netns
            .insert(n.inode, 1, 0)
            .map_err(map_err(names::SEL_NETNS))?;
    }
    let mut addrs: HashMap<_, AddrKey, u32> = HashMap::try_from(
        ebpf.map_mut(names::SEL_ADDRS)
            .ok_or(ProbeError::Missing("map", names::SEL_ADDRS))?,
    )
    .map_err(map_err(names::SEL_ADDRS))?;
    for (addr, bits) in &sel.addrs {
        addrs
            .insert(AddrKey { addr: *addr }, *bits, 0)
            .map_err(map_err(names::SEL_ADDRS))?;
    }
    let mut nets: LpmTrie<_, AddrKey, u32> = LpmTrie::try_from(
        ebpf.map_mut(names::SEL_NETS)
            .ok_or(ProbeError::Missing("map", names::SEL_NETS))?,
    )
    .map_err(map_err(names::SEL_NETS))?;
    for (len, addr) in &sel.nets {
        nets.insert(
            &Key::new(*len, AddrKey { addr: *addr }),
            netflow_common::ADDR_HOST,
            0,
        )
        .map_err(map_err(names::SEL_NETS))?;
    }
    let mut ifaces: HashMap<_, u64, u8> = HashMap::try_from(
        ebpf.map_mut(names::SEL_IFACES)
            .ok_or(ProbeError::Missing("map", names::SEL_IFACES))?,
    )
    .map_err(map_err(names::SEL_IFACES))?;
    for k in &sel.ifaces {
        ifaces
            .insert(*k, 1, 0)
            .map_err(map_err(names::SEL_IFACES))?;
    }
    Ok(())
}
