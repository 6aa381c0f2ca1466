//! Netfilter hops: BPF netfilter links where the kernel has them (6.4+),
//! else `nf_hook_slow` by fentry/fexit or kprobe/kretprobe; and the kprobe
//! upgrades (nftables chain names); `__icmp_send` where the ICMP tracepoint
//! is missing.
use aya::{
    programs::{FEntry, FExit, KProbe},
    Btf, Ebpf,
};
use netflow_common::names;

use super::load::{ebpf_object, loader, program, NetfilterPlan, ProbeError, Result};
use crate::output::ProbeStatus;
use crate::{
    live::kernel::btf::KernelBtf,
    live::probes::netfilter::{NfPrograms, HOOKS},
};

/// Netfilter links (6.4+) in each planned namespace, or why not.
pub(super) fn attach_netfilter(
    ebpf: &Ebpf,
    plan: &NetfilterPlan,
) -> std::result::Result<((NfPrograms, Vec<std::os::fd::OwnedFd>), ProbeStatus), String> {
    if forced_nf().is_some() {
        return Err("BPF netfilter links skipped (NETFLOW_NF_PROBE)".into());
    }
    // Tried, not guessed from the version: a kernel without the program
    // type (before 6.4) refuses the load.
    let progs = NfPrograms::load(ebpf).map_err(|e| format!("no BPF netfilter links ({e})"))?;
    let mut links = Vec::new();
    let mut where_ = vec!["host".to_string()];
    links.extend(progs.attach(None).map_err(|e| e.to_string())?);
    for (name, path) in &plan.netns {
        links.extend(progs.attach(Some(path)).map_err(|e| e.to_string())?);
        where_.push(name.clone());
    }
    let st = ProbeStatus {
        name: names::PROG_NF_EARLY,
        target: format!("netfilter ({} hooks x early/late)", HOOKS.len()),
        active: true,
        note: format!("netns {}", where_.join(", ")),
    };
    Ok(((progs, links), st))
}

/// `NETFLOW_NF_PROBE=fentry|kprobe`: skip the better netfilter probes (to
/// test a fallback on a kernel that has both).
fn forced_nf() -> Option<String> {
    forced("NETFLOW_NF_PROBE")
}

/// A fallback probe forced by the environment (the kernel matrix tests each
/// fallback on a kernel that also has the better probe): `NETFLOW_NF_PROBE`,
/// `NETFLOW_ICMP_PROBE=kprobe` (ICMP and ICMPv6 errors by kprobe, skipping
/// the tracepoint and fentry), `NETFLOW_SOCK_PROBE=tracepoint` (socket
/// delivery by the tracepoints, skipping cgroup_skb).
pub(super) fn forced(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|s| !s.is_empty())
}

/// Kernels without BPF netfilter links: the same early and late hops from
/// `nf_hook_slow` (fentry/fexit, else kprobe/kretprobe), in every namespace.
/// Owned by `ebpf` (aya links): detached with it, and on exit.
pub(super) fn attach_nf_hook_slow(
    ebpf: &mut Ebpf,
    btf: &Btf,
    why_not_links: String,
) -> ProbeStatus {
    const FUNC: &str = "nf_hook_slow";
    let forced = forced_nf();
    let mut tried = vec![why_not_links];
    if forced.as_deref() != Some("kprobe") {
        match attach_fentry_pair(ebpf, btf, FUNC) {
            Ok(()) => {
                return ProbeStatus {
                    name: names::PROG_NF_FENTRY,
                    target: format!("fentry+fexit/{FUNC}"),
                    active: true,
                    note: "netfilter and NAT hops, every namespace".into(),
                }
            }
            Err(e) => tried.push(format!("fentry: {e}")),
        }
    }
    if !has_kprobes() {
        tried.push("no kprobes".into());
    } else {
        match attach_kprobe_pair(ebpf, FUNC) {
            Ok(()) => {
                return ProbeStatus {
                    name: names::PROG_NF_KPROBE,
                    target: format!("kprobe+kretprobe/{FUNC}"),
                    active: true,
                    note: "netfilter and NAT hops, every namespace; calls from outside the node (NodePort) followed from their DNAT on, not from the uplink".into(),
                }
            }
            Err(e) => tried.push(format!("kprobe: {e}")),
        }
    }
    ProbeStatus {
        name: names::PROG_NF_EARLY,
        target: "netfilter".into(),
        active: false,
        note: format!("no netfilter hops, no NAT hops: {}", tried.join("; ")),
    }
}

/// Where `icmp:icmp_send` is missing: `__icmp_send` by fentry, else by
/// kprobe (the same events), else off with the reasons.
pub(super) fn attach_icmp_send(ebpf: &mut Ebpf, btf: &Btf, why_not_tp: String) -> ProbeStatus {
    attach_fentry_or_kprobe(
        ebpf,
        btf,
        "__icmp_send",
        (names::PROG_ICMP_FENTRY, names::PROG_ICMP_KPROBE),
        "ICMP errors on timelines",
        (names::PROG_ICMP_SEND, "tp_btf/icmp_send", vec![why_not_tp]),
    )
}

/// ICMPv6 errors: no kernel has a tracepoint; `icmp6_send` by fentry, else
/// by kprobe, else off with the reasons.
pub(super) fn attach_icmp6_send(ebpf: &mut Ebpf, btf: &Btf) -> ProbeStatus {
    attach_fentry_or_kprobe(
        ebpf,
        btf,
        "icmp6_send",
        (names::PROG_ICMP6_FENTRY, names::PROG_ICMP6_KPROBE),
        "ICMPv6 errors on timelines",
        (names::PROG_ICMP6_FENTRY, "fentry/icmp6_send", Vec::new()),
    )
}

/// `func` by the fentry program, else the kprobe program; when neither
/// attaches, the status line `off` (program, target, what was tried before).
fn attach_fentry_or_kprobe(
    ebpf: &mut Ebpf,
    btf: &Btf,
    func: &str,
    (fentry_prog, kprobe_prog): (&'static str, &'static str),
    what: &str,
    (off_name, off_target, mut tried): (&'static str, &str, Vec<String>),
) -> ProbeStatus {
    let fentry = (|| {
        let target = format!("fentry/{func}");
        if forced("NETFLOW_ICMP_PROBE").as_deref() == Some("kprobe") {
            return Err(ProbeError::Forced("NETFLOW_ICMP_PROBE=kprobe"));
        }
        let load = |err| ProbeError::Load {
            prog: fentry_prog,
            target: target.clone(),
            err,
        };
        let p: &mut FEntry = program(ebpf, fentry_prog, &target)?;
        p.load(func, btf).map_err(load)?;
        p.attach().map_err(load)?;
        Ok::<_, ProbeError>(())
    })();
    match fentry {
        Ok(()) => {
            return ProbeStatus {
                name: fentry_prog,
                target: format!("fentry/{func}"),
                active: true,
                note: what.into(),
            }
        }
        Err(e) => tried.push(format!("fentry: {e}")),
    }
    if !has_kprobes() {
        tried.push("no kprobes".into());
    } else {
        let kprobe = (|| {
            let target = format!("kprobe/{func}");
            let load = |err| ProbeError::Load {
                prog: kprobe_prog,
                target: target.clone(),
                err,
            };
            let p: &mut KProbe = program(ebpf, kprobe_prog, &target)?;
            p.load().map_err(load)?;
            p.attach(func, 0).map_err(load)?;
            Ok::<_, ProbeError>(())
        })();
        match kprobe {
            Ok(()) => {
                return ProbeStatus {
                    name: kprobe_prog,
                    target: format!("kprobe/{func}"),
                    active: true,
                    note: what.into(),
                }
            }
            Err(e) => tried.push(format!("kprobe: {e}")),
        }
    }
    ProbeStatus {
        name: off_name,
        target: off_target.into(),
        active: false,
        note: format!("no {what}: {}", tried.join("; ")),
    }
}

fn attach_fentry_pair(ebpf: &mut Ebpf, btf: &Btf, func: &str) -> Result<()> {
    let load = |err| ProbeError::Load {
        prog: names::PROG_NF_FENTRY,
        target: format!("fentry/{func}"),
        err,
    };
    let p: &mut FEntry = program(ebpf, names::PROG_NF_FENTRY, "fentry")?;
    p.load(func, btf).map_err(load)?;
    p.attach().map_err(load)?;
    let r = (|| {
        let p: &mut FExit = program(ebpf, names::PROG_NF_FEXIT, "fexit")?;
        p.load(func, btf).map_err(load)?;
        p.attach().map_err(load)?;
        Ok(())
    })();
    if r.is_err() {
        // Both or neither: an early hop without its late one reads as a drop.
        if let Ok(p) = program::<FEntry>(ebpf, names::PROG_NF_FENTRY, "fentry") {
            let _ = p.unload();
        }
    }
    r
}

fn attach_kprobe_pair(ebpf: &mut Ebpf, func: &str) -> Result<()> {
    let load = |prog| {
        move |err| ProbeError::Load {
            prog,
            target: format!("kprobe/{func}"),
            err,
        }
    };
    // The return probe first: an entry without its return would grow the stack.
    let p: &mut KProbe = program(ebpf, names::PROG_NF_KRETPROBE, "kretprobe")?;
    p.load().map_err(load(names::PROG_NF_KRETPROBE))?;
    p.attach(func, 0).map_err(load(names::PROG_NF_KRETPROBE))?;
    let r = (|| {
        let p: &mut KProbe = program(ebpf, names::PROG_NF_KPROBE, "kprobe")?;
        p.load().map_err(load(names::PROG_NF_KPROBE))?;
        p.attach(func, 0).map_err(load(names::PROG_NF_KPROBE))?;
        Ok(())
    })();
    if r.is_err() {
        if let Ok(p) = program::<KProbe>(ebpf, names::PROG_NF_KRETPROBE, "kretprobe") {
            let _ = p.unload();
        }
    }
    r
}

/// Load a kprobe upgrade without attaching it: proves it passes this
/// kernel's verifier (kernels with kprobes attach it).
pub fn verify_kprobe(kbtf: &KernelBtf, prog: &'static str) -> Result<()> {
    let offsets = kbtf.offsets()?;
    let filter = netflow_common::Filter::empty();
    let mut ebpf = loader(&offsets, &filter)
        .load(ebpf_object())
        .map_err(ProbeError::Object)?;
    let target = format!("kprobe ({prog})");
    let p: &mut KProbe = program(&mut ebpf, prog, &target)?;
    p.load()
        .map_err(|err| ProbeError::Load { prog, target, err })
}

/// The kernel was built with kprobes (CONFIG_KPROBES: `register_kprobe`
/// is a kernel symbol). Needs no mounted tracefs.
pub fn has_kprobes() -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .map(|s| s.lines().any(|l| l.ends_with(" register_kprobe")))
        .unwrap_or(false)
}

/// kprobe upgrades: attached where the kernel has kprobes, else said so.
pub(super) fn attach_kprobes(ebpf: &mut Ebpf, status: &mut Vec<ProbeStatus>) {
    let target = "kprobe/nft_do_chain".to_string();
    let name = names::PROG_KPROBE_NFT;
    if !has_kprobes() {
        status.push(ProbeStatus {
            name,
            target,
            active: false,
            note: "this kernel has no kprobes: no nftables table/chain names".into(),
        });
        return;
    }
    let r = program::<KProbe>(ebpf, name, &target).and_then(|p| {
        p.load().map_err(|err| ProbeError::Load {
            prog: name,
            target: target.clone(),
            err,
        })?;
        p.attach("nft_do_chain", 0)
            .map_err(|source| ProbeError::Attach {
                prog: name,
                target: target.clone(),
                source,
            })?;
        Ok(())
    });
    status.push(match r {
        Ok(()) => ProbeStatus {
            name,
            target,
            active: true,
            note: "nftables table/chain names".into(),
        },
        Err(e) => ProbeStatus {
            name,
            target,
            active: false,
            note: format!("no table/chain names: {e}"),
        },
    });
}
