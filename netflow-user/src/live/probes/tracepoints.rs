//! The tp_btf programs: each one's arguments checked against the running
//! kernel's prototype, then loaded and attached, or said why not.
use aya::{programs::BtfTracePoint, Btf, Ebpf};
use netflow_common::names;

use super::load::{program, ProbeError, Result};
use crate::live::kernel::btf::KernelBtf;
use crate::output::ProbeStatus;

/// tp_btf programs: (program, tracepoint, what the user loses without it).
/// The first two are required; without the others netflow runs and says what is missing.
pub(super) type Tracepoint = (&'static str, &'static str, &'static str);
pub(super) const TRACEPOINTS: [Tracepoint; 11] = [
    (names::PROG_RX, "netif_receive_skb", "no receive hops"),
    (names::PROG_TX, "net_dev_queue", "no transmit hops"),
    (names::PROG_KFREE, "kfree_skb", "no drops"),
    (
        names::PROG_CONSUME,
        "consume_skb",
        "no delivered/forwarded verdicts",
    ),
    (
        names::PROG_DELIVER,
        "skb_copy_datagram_iovec",
        "no delivered-to-socket verdicts",
    ),
    (
        names::PROG_TCP_RCV,
        "tcp_probe",
        "no delivered verdicts for TCP ACKs",
    ),
    (
        names::PROG_TCP_RETRANSMIT,
        "tcp_retransmit_skb",
        "no TCP retransmission notes",
    ),
    (
        names::PROG_TCP_RESET,
        "tcp_send_reset",
        "no TCP reset notes",
    ),
    (
        names::PROG_ICMP_SEND,
        "icmp_send",
        "no ICMP errors on timelines",
    ),
    (names::PROG_ROUTE, "fib_table_lookup", "no route hops"),
    (
        names::PROG_ROUTE6,
        "fib6_table_lookup",
        "no IPv6 route hops",
    ),
];

/// The agent's events mode: the programs that run per drop, per socket
/// event or per ICMP error, never per healthy packet.
pub(super) const EVENT_PROBES: [&str; 4] = [
    names::PROG_KFREE,
    names::PROG_TCP_RETRANSMIT,
    names::PROG_TCP_RESET,
    names::PROG_ICMP_SEND,
];

/// TCP state changes: the agent's connections (events mode only; the
/// per-hop mode reads connections from their packets).
pub(super) const SOCK_STATE: Tracepoint = (
    names::PROG_SOCK_STATE,
    "inet_sock_set_state",
    "no TCP connection counts or failed connects",
);

/// The leading arguments each program reads, checked against the running
/// kernel's prototype before loading: a program that does not fit is not
/// loaded (no verifier log), its fallback is used or the loss said.
fn reads(prog: &str) -> &'static [&'static str] {
    match prog {
        p if p == names::PROG_KFREE => &["sk_buff *", "void *", "enum skb_drop_reason"],
        p if p == names::PROG_KFREE_LOC => &["sk_buff *", "void *"],
        p if p == names::PROG_DELIVER => &["sk_buff *"],
        p if p == names::PROG_TCP_RCV => &["sock *", "sk_buff *"],
        p if p == names::PROG_TCP_RETRANSMIT => &["sock *"],
        p if p == names::PROG_TCP_RESET => &["sock *", "sk_buff *"],
        p if p == names::PROG_SOCK_STATE => &["sock *", "int", "int"],
        p if p == names::PROG_ICMP_SEND => &["sk_buff *", "int", "int"],
        p if p == names::PROG_ROUTE => &["unsigned int", "flowi4 *", "fib_nh_common *", "int"],
        p if p == names::PROG_ROUTE6 => &["net *", "fib6_result *", "fib6_table *", "flowi6 *"],
        _ => &["sk_buff *"],
    }
}

/// `prog` reads arguments this kernel's `tp` has.
pub(super) fn fits(kbtf: &KernelBtf, prog: &str, tp: &str) -> std::result::Result<bool, String> {
    let params = kbtf.tracepoint_args(tp).map_err(|e| e.to_string())?;
    let want = reads(prog);
    Ok(params.len() >= want.len() && params[..want.len()] == *want)
}

/// The program for `tp` that fits this kernel's prototype, and a note.
fn fitting(
    kbtf: &KernelBtf,
    prog: &'static str,
    tp: &str,
) -> std::result::Result<(&'static str, String), String> {
    let params = kbtf.tracepoint_args(tp).map_err(|e| e.to_string())?;
    let fits = |p: &str| {
        let want = reads(p);
        params.len() >= want.len() && params[..want.len()] == *want
    };
    if fits(prog) {
        return Ok((prog, String::new()));
    }
    if prog == names::PROG_KFREE && fits(names::PROG_KFREE_LOC) {
        return Ok((
            names::PROG_KFREE_LOC,
            "drops with their location; this kernel has no drop reasons (5.17+)".into(),
        ));
    }
    Err(format!("unexpected prototype ({})", params.join(", ")))
}
pub(super) const REQUIRED: [&str; 2] = [names::PROG_RX, names::PROG_TX];
/// Where the socket-delivery program cannot attach, these tell delivery
/// for most packets (not the handshake ACK at a listener, the SYN-ACK at a
/// connecting socket or FINs).
const DELIVERY_FALLBACKS: [&str; 2] = [names::PROG_DELIVER, names::PROG_TCP_RCV];

/// One tp_btf program of [`TRACEPOINTS`]: attached, or said why not (only
/// the required ones fail the start). `sockets`: the socket-delivery program
/// is on, its fallbacks are not needed.
pub(super) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    kbtf: &KernelBtf,
    btf: &Btf,
    (prog, tp, loss): Tracepoint,
    sockets: bool,
    status: &mut Vec<ProbeStatus>,
) -> Result<()> {
    let target = format!("tp_btf/{tp}");
    let off = |note: String| ProbeStatus {
        name: prog,
        target: target.clone(),
        active: false,
        note,
    };
    if sockets && DELIVERY_FALLBACKS.contains(&prog) {
        status.push(off(
            "not needed: cgroup_skb sees every socket delivery".into()
        ));
        return Ok(());
    }
    if prog == names::PROG_ICMP_SEND
        && super::hooks::forced("NETFLOW_ICMP_PROBE").as_deref() == Some("kprobe")
    {
        let why = "tp_btf/icmp_send skipped (NETFLOW_ICMP_PROBE=kprobe)".to_string();
        status.push(super::hooks::attach_icmp_send(ebpf, btf, why));
        return Ok(());
    }
    let (prog, note) = match fitting(kbtf, prog, tp) {
        Ok(p) => p,
        Err(e) if prog == names::PROG_ICMP_SEND => {
            status.push(super::hooks::attach_icmp_send(ebpf, btf, e));
            return Ok(());
        }
        Err(e) if !REQUIRED.contains(&prog) => {
            status.push(off(format!("{e}: {loss}")));
            return Ok(());
        }
        Err(e) => return Err(ProbeError::Prototype(tp.to_string(), e)),
    };
    match attach_tp(ebpf, prog, tp, btf) {
        Ok(()) => status.push(ProbeStatus {
            name: prog,
            target: target.clone(),
            active: true,
            note,
        }),
        Err(e) if prog == names::PROG_ICMP_SEND => {
            status.push(super::hooks::attach_icmp_send(ebpf, btf, e.to_string()))
        }
        Err(e) if !REQUIRED.contains(&prog) => status.push(off(format!("{loss}: {e}"))),
        Err(e) => return Err(e),
    }
    Ok(())
}

fn attach_tp(ebpf: &mut Ebpf, prog: &'static str, tp: &str, btf: &Btf) -> Result<()> {
    let target = format!("tp_btf/{tp}");
    let p: &mut BtfTracePoint = program(ebpf, prog, &target)?;
    p.load(tp, btf).map_err(|err| ProbeError::Load {
        prog,
        target: target.clone(),
        err,
    })?;
    p.attach().map_err(|source| ProbeError::Attach {
        prog,
        target,
        source,
    })?;
    Ok(())
}
