//! The events mode's DNS, attached for the whole run: fentry on the UDP
//! paths alone where the kernel takes it (no TCP segment runs them), else
//! the two cgroup_skb programs every socket's packet runs (see the kernel
//! side's `dns.rs`); the same read UDP conversations' first datagrams
//! each way (`conv.rs`). `NETFLOW_DNS_PROBE=sockets` forces the latter.
use aya::{
    programs::{CgroupSkbAttachType, FEntry, FExit},
    Btf, Ebpf,
};
use netflow_common::names;

use super::{attach_cgroup_skb, hooks::forced, load::program, load::short};
use crate::output::ProbeStatus;

/// How DNS is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    /// fentry on `ip_send_skb`, `ip6_send_skb`, `udp_queue_rcv_one_skb`,
    /// its IPv6 twin and `sock_queue_rcv_skb_reason`; fexit on
    /// `__ip_make_skb` and `__ip6_make_skb`.
    Udp,
    /// cgroup_skb egress and ingress on the cgroup v2 root (ingress also
    /// takes followed flows' packets at their sockets).
    Sockets,
    None,
}

/// The fentry and fexit programs: each with the functions it may attach to, the
/// first this kernel's BTF has (a static function the compiler inlined
/// has none), and what it reads.
const UDP: [(&str, &[&str], &str); 7] = [
    (
        names::PROG_DNS_SEND,
        &["ip_send_skb"],
        "DNS datagrams and UDP conversations' first ones, sent (IPv4)",
    ),
    (
        names::PROG_DNS_SEND6,
        &["ip6_send_skb"],
        "DNS datagrams and UDP conversations' first ones, sent (IPv6)",
    ),
    (
        names::PROG_DNS_RECV,
        &["udp_queue_rcv_one_skb", "udp_queue_rcv_skb"],
        "DNS datagrams and UDP conversations' first ones, taken (IPv4)",
    ),
    (
        names::PROG_DNS_RECV6,
        &["udpv6_queue_rcv_one_skb", "udpv6_queue_rcv_skb"],
        "DNS datagrams and UDP conversations' first ones, taken (IPv6)",
    ),
    (
        names::PROG_DNS_RECV_RAW,
        &["sock_queue_rcv_skb_reason", "sock_queue_rcv_skb"],
        "ICMP echo conversations' first replies, taken by a raw or ping socket",
    ),
    (
        names::PROG_DNS_MAKE,
        &["__ip_make_skb"],
        "ICMP echo conversations' first requests, sent by a raw or ping socket (IPv4)",
    ),
    (
        names::PROG_DNS_MAKE6,
        &["__ip6_make_skb"],
        "ICMP echo conversations' first requests, sent by a raw or ping socket (IPv6)",
    ),
];

/// Of these, the programs that run as a function returns.
fn fexit(name: &str) -> bool {
    name == names::PROG_DNS_MAKE || name == names::PROG_DNS_MAKE6
}

/// Load `name` for the kernel function `func`.
fn load(ebpf: &mut Ebpf, name: &'static str, func: &str, btf: &Btf) -> Result<(), String> {
    let r = if fexit(name) {
        let p: &mut FExit = program(ebpf, name, "fexit").map_err(|e| e.to_string())?;
        p.load(func, btf)
    } else {
        let p: &mut FEntry = program(ebpf, name, "fentry").map_err(|e| e.to_string())?;
        p.load(func, btf)
    };
    r.map_err(|e| short(&e))
}

/// Attach the loaded program `name`.
fn attach_one(ebpf: &mut Ebpf, name: &'static str) -> Result<(), String> {
    if fexit(name) {
        let p: &mut FExit = program(ebpf, name, "fexit").map_err(|e| e.to_string())?;
        p.attach().map(drop).map_err(|e| short(&e))
    } else {
        let p: &mut FEntry = program(ebpf, name, "fentry").map_err(|e| e.to_string())?;
        p.attach().map(drop).map_err(|e| short(&e))
    }
}

/// Unload `name` (detaching it).
fn unload(ebpf: &mut Ebpf, name: &'static str) {
    if fexit(name) {
        if let Ok(p) = program::<FExit>(ebpf, name, "fexit") {
            let _ = p.unload();
        }
    } else if let Ok(p) = program::<FEntry>(ebpf, name, "fentry") {
        let _ = p.unload();
    }
}

/// The functions the fentry program `prog` may attach to, best first
/// (none: not one of these programs).
pub(super) fn candidates(prog: &str) -> Option<&'static [&'static str]> {
    UDP.iter()
        .find(|(name, _, _)| *name == prog)
        .map(|(_, f, _)| *f)
}

/// Attach the best way this kernel has; its probe lines in `status`.
pub(super) fn attach(ebpf: &mut Ebpf, btf: &Btf, status: &mut Vec<ProbeStatus>) -> Way {
    let udp = if forced("NETFLOW_DNS_PROBE").as_deref() == Some("sockets") {
        Err("skipped (NETFLOW_DNS_PROBE=sockets)".to_string())
    } else {
        attach_udp(ebpf, btf)
    };
    match udp {
        Ok(funcs) => {
            for ((name, _, what), func) in UDP.into_iter().zip(funcs) {
                let kind = if fexit(name) { "fexit" } else { "fentry" };
                status.push(ProbeStatus {
                    name,
                    target: format!("{kind}/{func}"),
                    active: true,
                    note: format!("{what}: nothing on TCP's path"),
                });
            }
            Way::Udp
        }
        Err(why) => {
            log::debug!("DNS by fentry: {why}");
            if attach_sockets(ebpf, status) {
                Way::Sockets
            } else {
                Way::None
            }
        }
    }
}

/// Every program of the table, or none (those that attached are unloaded, which
/// detaches them, when another fails); the functions they attached to.
fn attach_udp(ebpf: &mut Ebpf, btf: &Btf) -> Result<Vec<&'static str>, String> {
    let mut funcs = Vec::new();
    let mut err = None;
    for (name, candidates, _) in UDP {
        let mut tried = Vec::new();
        let func = candidates.iter().find(|f| match load(ebpf, name, f, btf) {
            Ok(()) => true,
            Err(e) => {
                tried.push(format!("{f}: {e}"));
                false
            }
        });
        match func {
            Some(f) => funcs.push(*f),
            None => {
                err = Some(tried.join("; "));
                break;
            }
        }
    }
    if err.is_none() {
        for ((name, _, _), func) in UDP.into_iter().zip(&funcs) {
            if let Err(e) = attach_one(ebpf, name) {
                err = Some(format!("{func}: {e}"));
                break;
            }
        }
    }
    let Some(err) = err else { return Ok(funcs) };
    for (name, _, _) in UDP {
        unload(ebpf, name);
    }
    Err(err)
}

/// The events mode's DNS: both `cgroup_skb` programs on the cgroup v2 root
/// for good, where every packet of a socket costs them a few loads and a
/// DNS datagram is reported (ingress also takes a followed flow's packets
/// at their socket). True when both are attached.
fn attach_sockets(ebpf: &mut Ebpf, status: &mut Vec<ProbeStatus>) -> bool {
    let mut both = true;
    for (name, kind, target, what) in [
        (
            names::PROG_SOCK_IN,
            CgroupSkbAttachType::Ingress,
            "cgroup_skb/ingress",
            "DNS datagrams, UDP and ICMP echo conversations' first ones a socket takes, and followed flows' packets",
        ),
        (
            names::PROG_SOCK_OUT,
            CgroupSkbAttachType::Egress,
            "cgroup_skb/egress",
            "DNS datagrams, UDP and ICMP echo conversations' first ones a socket sends",
        ),
    ] {
        let (active, note) = match attach_cgroup_skb(ebpf, name, kind) {
            Ok(how) => (true, format!("{what} ({how})")),
            Err(e) => (false, format!("no DNS lookups: {e}")),
        };
        both &= active;
        status.push(ProbeStatus {
            name,
            target: target.into(),
            active,
            note,
        });
    }
    both
}
