//! The verifier's figure for every kernel program: the instructions it
//! processed to accept (or refuse) the program on this kernel. The verifier
//! refuses a program past a million; a program near that limit loads on one
//! point release and not on the next, so each has a bound well below it
//! ([`bound`]), and `netflow check` and the tests measure against it.
//!
//! The figure depends on the selection: the filter is a constant the
//! verifier prunes on. Each program is measured under several filters
//! ([`FILTERS`]: every selector at its largest, the agent, every packet)
//! and its figure is the largest.
use aya::{Btf, Ebpf};
use aya_obj::{btf::BtfKind, ProgramSection};
use netflow_common::{filter_flags as ff, names, Filter};

use super::{
    load::{ebpf_object, loader, ProbeError},
    netfilter,
    raw::{LoadSpec, Relocated},
    tracepoints::fits,
};
use crate::live::kernel::btf::KernelBtf;

/// The netfilter fallback on kernels without BPF netfilter links.
pub const NF_FALLBACK_BOUND: u32 = 200_000;
/// Every other program.
pub const BOUND: u32 = 500_000;
/// Where the kernel gives up (a refusal with E2BIG).
pub const VERIFIER_LIMIT: u32 = 1_000_000;

/// The bound of `prog`'s figure.
pub fn bound(prog: &str) -> u32 {
    match prog {
        names::PROG_NF_FENTRY
        | names::PROG_NF_FEXIT
        | names::PROG_NF_KPROBE
        | names::PROG_NF_KRETPROBE => NF_FALLBACK_BOUND,
        _ => BOUND,
    }
}

/// The programs that serve the hop a probe status names (its program and
/// the pair's other half).
pub fn serving(prog: &str) -> Vec<&str> {
    match prog {
        names::PROG_NF_EARLY | names::PROG_NF_LATE => {
            vec![names::PROG_NF_EARLY, names::PROG_NF_LATE]
        }
        names::PROG_NF_FENTRY | names::PROG_NF_FEXIT => {
            vec![names::PROG_NF_FENTRY, names::PROG_NF_FEXIT]
        }
        names::PROG_NF_KPROBE | names::PROG_NF_KRETPROBE => {
            vec![names::PROG_NF_KPROBE, names::PROG_NF_KRETPROBE]
        }
        p => vec![p],
    }
}

/// One program on this kernel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Figure {
    pub prog: String,
    /// Its kind and target, e.g. `kprobe/nf_hook_slow`.
    pub probe: String,
    /// The largest figure over the filters (None: never verified here).
    pub insns: Option<u32>,
    /// The filter that gave it.
    pub filter: String,
    pub bound: u32,
    /// Why the kernel did not take it (the first refusal), if it did not.
    pub refused: Option<String>,
    /// The refusal is the verifier's (E2BIG: too complex; EACCES: unsafe),
    /// not a kernel without the program type or target.
    pub verifier_refused: bool,
}

impl Figure {
    /// Over its bound, or refused by the verifier.
    pub fn fails(&self) -> bool {
        self.verifier_refused || self.insns.is_some_and(|n| n > self.bound)
    }
}

/// The filters measured: (name, filter).
fn filters(reason_consumed: u32) -> Vec<(&'static str, Filter)> {
    let guarded = |flags| {
        let mut f = Filter::empty();
        f.flags = flags;
        f.reason_consumed = reason_consumed;
        f.stale_ns = 2_000_000_000;
        f.guard_first = 8;
        f.guard_every = 64;
        f.guard_rate = 2000;
        f
    };
    let mut every_selector =
        guarded(ff::NETNS | ff::HOST | ff::PORT | ff::PROTO | ff::IFACE | ff::NETS | ff::V4_INLINE);
    every_selector.proto = 6;
    every_selector.n_ports = netflow_common::MAX_PORTS as u8;
    every_selector.n_vxlan_ports = netflow_common::MAX_VXLAN_PORTS as u8;
    every_selector.n_v4 = netflow_common::MAX_INLINE_V4 as u32;
    let agent = guarded(ff::ALL | ff::SOCKET_COUNT);
    let mut every_packet = guarded(ff::ALL | ff::EVERY_PACKET);
    every_packet.guard_first = 0;
    let mut events = guarded(ff::ALL | ff::ON_DEMAND | ff::DNS);
    events.dns_ports = [53, 5353, 5354, 5355];
    vec![
        ("every selector", every_selector),
        ("agent", agent),
        ("every packet", every_packet),
        ("events", events),
    ]
}

/// Each program's section target (`tp_btf/x`, `fentry/y`, ...), by name,
/// from the object's symbols.
fn targets() -> std::collections::HashMap<String, String> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let mut out = std::collections::HashMap::new();
    let Ok(file) = object::File::parse(ebpf_object()) else {
        return out;
    };
    for sym in file.symbols() {
        let (Ok(name), Some(idx)) = (sym.name(), sym.section_index()) else {
            continue;
        };
        if let Ok(sec) = file
            .section_by_index(idx)
            .and_then(|s| s.name().map(str::to_string))
        {
            if name.starts_with("netflow_") {
                out.insert(name.to_string(), sec);
            }
        }
    }
    out
}

/// How the kernel takes `prog`, or why this kernel has nothing for it.
fn spec(
    prog: &str,
    section: &ProgramSection,
    target: &str,
    kbtf: &KernelBtf,
    btf: &Btf,
) -> Result<LoadSpec, String> {
    const KPROBE: u32 = 2;
    const SCHED_CLS: u32 = 3;
    const CGROUP_SKB: u32 = 8;
    const TRACING: u32 = 26;
    const TRACE_RAW_TP: u32 = 23;
    const TRACE_FENTRY: u32 = 24;
    const TRACE_FEXIT: u32 = 25;
    let func = target.split_once('/').map(|(_, f)| f).unwrap_or("");
    let tracing = |attach, name: String, kind| {
        btf.id_by_type_name_kind(&name, kind)
            .map(|id| LoadSpec {
                prog_type: TRACING,
                expected_attach_type: attach,
                attach_btf_id: id,
            })
            .map_err(|_| format!("this kernel has no {name}"))
    };
    match section {
        _ if prog == names::PROG_NF_EARLY || prog == names::PROG_NF_LATE => Ok(netfilter::SPEC),
        ProgramSection::KProbe | ProgramSection::KRetProbe => Ok(LoadSpec {
            prog_type: KPROBE,
            ..Default::default()
        }),
        ProgramSection::SchedClassifier => Ok(LoadSpec {
            prog_type: SCHED_CLS,
            ..Default::default()
        }),
        ProgramSection::CgroupSkb { attach_type } => Ok(LoadSpec {
            prog_type: CGROUP_SKB,
            expected_attach_type: match attach_type {
                Some(aya_obj::programs::CgroupSkbAttachType::Egress) => 1,
                _ => 0,
            },
            attach_btf_id: 0,
        }),
        ProgramSection::BtfTracePoint => {
            let tp = if prog == names::PROG_KFREE_LOC {
                "kfree_skb"
            } else {
                func
            };
            match fits(kbtf, prog, tp) {
                Ok(true) => {}
                Ok(false) => return Err(format!("does not fit this kernel's {tp}")),
                Err(e) => return Err(e),
            }
            tracing(TRACE_RAW_TP, format!("btf_trace_{tp}"), BtfKind::Typedef)
        }
        ProgramSection::FEntry { .. } => {
            // The first function this kernel has, as the daemon picks it.
            let funcs = super::dns::candidates(prog).unwrap_or(std::slice::from_ref(&func));
            funcs
                .iter()
                .find_map(|f| tracing(TRACE_FENTRY, f.to_string(), BtfKind::Func).ok())
                .ok_or_else(|| format!("this kernel has none of {}", funcs.join(", ")))
        }
        ProgramSection::FExit { .. } => tracing(TRACE_FEXIT, func.to_string(), BtfKind::Func),
        other => Err(format!("not measured ({other:?})")),
    }
}

/// Load every program of the object under each filter, with the
/// verifier's statistics on; nothing is attached, every program is closed.
pub fn measure(kbtf: &KernelBtf, reason_consumed: u32) -> Result<Vec<Figure>, ProbeError> {
    let offsets = kbtf.offsets()?;
    let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;
    let targets = targets();
    let mut out: Vec<Figure> = Vec::new();
    for (fname, filter) in filters(reason_consumed) {
        let ebpf: Ebpf = loader(&offsets, &filter)
            .load(ebpf_object())
            .map_err(ProbeError::Object)?;
        let obj = Relocated::new(&ebpf).map_err(|e| ProbeError::Raw(e.to_string()))?;
        let mut progs: Vec<(String, ProgramSection)> = obj
            .programs()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect();
        progs.sort_by(|a, b| a.0.cmp(&b.0));
        for (prog, section) in progs {
            let target = targets.get(&prog).cloned().unwrap_or_default();
            let i = match out.iter().position(|f| f.prog == prog) {
                Some(i) => i,
                None => {
                    out.push(Figure {
                        probe: target.clone(),
                        bound: bound(&prog),
                        prog: prog.clone(),
                        insns: None,
                        filter: String::new(),
                        refused: None,
                        verifier_refused: false,
                    });
                    out.len() - 1
                }
            };
            let fig = &mut out[i];
            let spec = match spec(&prog, &section, &target, kbtf, &btf) {
                Ok(s) => s,
                Err(why) => {
                    fig.refused.get_or_insert(why);
                    continue;
                }
            };
            let loaded = obj
                .load(&prog, spec)
                .map_err(|e| ProbeError::Raw(e.to_string()))?;
            if loaded.insns > fig.insns {
                fig.insns = loaded.insns;
                fig.filter = fname.to_string();
            }
            if let Err(e) = loaded.fd {
                let errno = e.raw_os_error();
                let by_verifier = matches!(errno, Some(libc::E2BIG) | Some(libc::EACCES));
                fig.verifier_refused |= by_verifier;
                if fig.refused.is_none() {
                    fig.refused = Some(if by_verifier {
                        format!(
                            "{e} under filter {fname}: {}",
                            loaded.log.replace('\n', " | ")
                        )
                    } else {
                        format!("{e}")
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The figures checked into the repository: per kernel (its release, or
/// its series `major.minor` for a kernel that is not pinned), per program.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CheckedIn {
    pub kernels: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
}

/// A figure may grow this much over its checked-in one.
pub const GROWTH: f64 = 1.20;

impl CheckedIn {
    /// The checked-in figures of kernel `release`: its own, else its series'.
    pub fn for_kernel(&self, release: &str) -> Option<&std::collections::BTreeMap<String, u32>> {
        self.kernels.get(release).or_else(|| {
            let series: Vec<&str> = release.splitn(3, ['.', '-']).take(2).collect();
            self.kernels.get(&series.join("."))
        })
    }

    /// What is wrong with `figs` on kernel `release`, one line each: a
    /// program refused by the verifier, over its bound, or
    /// grown past its checked-in figure by more than [`GROWTH`].
    pub fn problems(&self, release: &str, figs: &[Figure]) -> Vec<String> {
        let mine = self.for_kernel(release);
        let mut out = Vec::new();
        for f in figs {
            if f.verifier_refused {
                out.push(format!(
                    "{}: refused by the verifier: {}",
                    f.prog,
                    f.refused.as_deref().unwrap_or("")
                ));
                continue;
            }
            let Some(n) = f.insns else { continue };
            if n > f.bound {
                out.push(format!(
                    "{}: {n} instructions, over its bound {}",
                    f.prog, f.bound
                ));
            }
            if let Some(&was) = mine.and_then(|m| m.get(&f.prog)) {
                if n as f64 > was as f64 * GROWTH {
                    out.push(format!(
                        "{}: {n} instructions, grown more than {:.0}% over its checked-in {was}",
                        f.prog,
                        (GROWTH - 1.0) * 100.0
                    ));
                }
            }
        }
        out
    }
}
