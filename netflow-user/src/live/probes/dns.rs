//! The events mode's DNS, attached for the whole run: fentry on the UDP
//! paths alone where the kernel takes it (no TCP segment runs them), else
//! the two cgroup_skb programs every socket's packet runs (see the kernel
//! side's `dns.rs`); the same read UDP conversations' first datagrams
//! each way (`conv.rs`). `NETFLOW_DNS_PROBE=sockets` forces the latter.
use aya::{
    programs::{CgroupSkbAttachType, FEntry},
    Btf, Ebpf,
};
use netflow_common::names;

use super::{attach_cgroup_skb, hooks::forced, load::program, load::short};
use crate::output::ProbeStatus;

/// How DNS is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    /// fentry on `ip_send_skb`, `ip6_send_skb`, `udp_queue_rcv_one_skb` and
    /// its IPv6 twin.
    Udp,
    /// cgroup_skb egress and ingress on the cgroup v2 root (ingress also
    /// takes followed flows' packets at their sockets).
    Sockets,
    None,
}

/// The fentry programs: each with the functions it may attach to, the
/// first this kernel's BTF has (a static function the compiler inlined
/// has none), and what it reads.
const UDP: [(&str, &[&str], &str); 4] = [
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
];

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
                status.push(ProbeStatus {
                    name,
                    target: format!("fentry/{func}"),
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

/// Every fentry program, or none (those that attached are unloaded, which
/// detaches them, when another fails); the functions they attached to.
fn attach_udp(ebpf: &mut Ebpf, btf: &Btf) -> Result<Vec<&'static str>, String> {
    let mut funcs = Vec::new();
    for (name, candidates, _) in UDP {
        let p: &mut FEntry = program(ebpf, name, "fentry").map_err(|e| e.to_string())?;
        let mut tried = Vec::new();
        let func = candidates.iter().find(|f| match p.load(f, btf) {
            Ok(()) => true,
            Err(e) => {
                tried.push(format!("{f}: {}", short(&e)));
                false
            }
        });
        funcs.push(*func.ok_or_else(|| tried.join("; "))?);
    }
    let mut err = None;
    for ((name, _, _), func) in UDP.into_iter().zip(&funcs) {
        let p: &mut FEntry = program(ebpf, name, "fentry").map_err(|e| e.to_string())?;
        if let Err(e) = p.attach() {
            err = Some(format!("{func}: {}", short(&e)));
            break;
        }
    }
    let Some(err) = err else { return Ok(funcs) };
    for (name, _, _) in UDP {
        if let Ok(p) = program::<FEntry>(ebpf, name, "fentry") {
            let _ = p.unload();
        }
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
            "DNS datagrams and UDP conversations' first ones a socket takes, and followed flows' packets",
        ),
        (
            names::PROG_SOCK_OUT,
            CgroupSkbAttachType::Egress,
            "cgroup_skb/egress",
            "DNS datagrams and UDP conversations' first ones a socket sends",
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
