//! netflow kernel programs.
//!
//! One pair of `tp_btf` programs (`net:netif_receive_skb`, `net:net_dev_queue`)
//! sees a packet on every device of every network namespace. A packet that
//! matches the selection has its `struct sk_buff *` remembered in `TRACKED`, so
//! it stays selected after NAT and encapsulation change its headers; the
//! `skb:kfree_skb` / `skb:consume_skb` programs report its end and forget it.
//! Programs only read: they never change or drop the packets they observe.
#![no_std]
#![no_main]
// The BPF target has no atomic read-modify-write types in core (no CAS):
// the counters shared by CPUs use the add intrinsic (BPF_XADD), see
// `atomic::add`.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// Every `unsafe` says why it is sound (`cargo xtask test` runs clippy on
// this crate for the BPF target).
#![deny(clippy::undocumented_unsafe_blocks)]

mod atomic;
mod conntrack;
mod conv;
mod deliver;
mod dns;
mod emit;
mod globals;
mod guard;
mod hop;
mod icmp;
mod nest;
mod netfilter;
mod nf_stack;
mod once;
mod route;
mod select;
mod skb;
mod sock;

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    macros::{btf_tracepoint, cgroup_skb, classifier, fentry, fexit, kprobe, kretprobe},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        SkBuffContext, TcContext,
    },
};
use netflow_common::Point;

use crate::{
    deliver::on_deliver,
    emit::end_tracked,
    globals::{offsets, Btf, Probe},
    hop::{on_device, on_drop, on_hop},
    netfilter::{on_netfilter, on_nf_hook, on_nft_chain, NF_ACCEPT},
    skb::device,
    sock::on_sock,
};

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netflow_rx(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0);
    let _ = on_device::<Btf>(skb, Point::Rx);
    0
}

#[btf_tracepoint(function = "net_dev_queue")]
pub fn netflow_tx(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0);
    let _ = on_device::<Btf>(skb, Point::Tx);
    0
}

/// tc programs (TCX or clsact) on chosen devices. The context pointer is the
/// kernel's `struct sk_buff *`, so these hops join the same timeline. They
/// always return TC_ACT_UNSPEC (TCX_NEXT): whatever else is attached decides.
#[classifier]
pub fn netflow_tc_ingress(ctx: TcContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return TC_ACT_UNSPEC;
    };
    let _ = on_device::<Probe>(ctx.skb.skb as *const u8, Point::TcIngress);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn netflow_tc_egress(ctx: TcContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return TC_ACT_UNSPEC;
    };
    let _ = on_device::<Probe>(ctx.skb.skb as *const u8, Point::TcEgress);
    TC_ACT_UNSPEC
}

/// `TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`
/// (the argument order is checked against BTF by the loader).
#[btf_tracepoint(function = "kfree_skb")]
pub fn netflow_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let _ = on_drop::<Btf>(skb, location, reason);
    0
}

/// `TP_PROTO(struct sk_buff *skb, void *location)`: kernels before drop
/// reasons (5.10-5.16). Drops with their location; the reason is unavailable.
#[btf_tracepoint(function = "kfree_skb")]
pub fn netflow_kfree_skb_loc(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let _ = on_drop::<Btf>(skb, location, netflow_common::REASON_UNAVAILABLE);
    0
}

/// `TP_PROTO(struct sk_buff *skb, void *location)` (6.1 and older: only
/// the skb): only the skb is read, so one program fits every kernel.
#[btf_tracepoint(function = "consume_skb")]
pub fn netflow_consume_skb(ctx: BtfTracePointContext) -> i32 {
    end_tracked(ctx.arg(0), Point::Consume, 0);
    0
}

/// `TP_PROTO(const struct sk_buff *skb, int len)`: a socket's reader copies
/// the packet's data to user space (TCP, UDP, raw and ping sockets). Many
/// packets are freed without a tracepoint afterwards, so this is what says
/// "delivered", and it ends the packet's timeline.
#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn netflow_deliver(ctx: BtfTracePointContext) -> i32 {
    // Later reads of the same packet are not news: it stops being tracked.
    end_tracked(ctx.arg(0), Point::Deliver, 0);
    0
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb)`: an
/// established TCP socket processes the segment (pure ACKs included, which
/// TCP frees without a tracepoint).
#[btf_tracepoint(function = "tcp_probe")]
pub fn netflow_tcp_rcv(ctx: BtfTracePointContext) -> i32 {
    end_tracked(ctx.arg(1), Point::Deliver, 0);
    0
}

/// cgroup_skb ingress, attached with a link on the cgroup v2 root: a socket
/// takes the packet. The context pointer is the kernel's `struct sk_buff *`
/// (as for tc), so this joins the packet's timeline by skb address. Always
/// returns 1 (allow): the packet goes on untouched.
#[cgroup_skb(ingress)]
pub fn netflow_sock_in(ctx: SkBuffContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 1;
    };
    let _ = on_deliver(&ctx);
    1
}

/// cgroup_skb egress on the cgroup v2 root, attached only for the agent's
/// counting: a socket of the node sends a TCP segment, counted in its
/// connection instead of followed across the node. Always returns 1.
#[cgroup_skb(egress)]
pub fn netflow_sock_out(ctx: SkBuffContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 1;
    };
    deliver::on_send(&ctx);
    1
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb, int err)`:
/// a retransmission. The skb sits in the retransmit queue without IP
/// headers, so the event's headers are built from the socket.
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn netflow_tcp_retransmit(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let sk: *const u8 = ctx.arg(0);
    let _ = on_sock(sk, Point::TcpRetransmit, None);
    0
}

/// `TP_PROTO(const struct sock *sk, const struct sk_buff *skb, ...)`: a RST
/// goes out, in reply to `skb` (e.g. a SYN to a closed port: no socket), or
/// from the socket `sk`.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn netflow_tcp_reset(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    if !skb.is_null() {
        let o = offsets();
        let dev = device::<Btf>(skb, o);
        let _ = on_hop::<Btf, false>(skb, Point::TcpReset, o, &dev, 0, 0);
    } else if !sk.is_null() {
        let _ = on_sock(sk, Point::TcpReset, None);
    }
    0
}

/// `TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)`:
/// a TCP socket changes state (per connection, never per packet). Counted
/// per namespace; a failed connect is an event.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn netflow_sock_state(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let sk: *const u8 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if !sk.is_null() {
        let _ = sock::on_state(sk, old, new);
    }
    0
}

/// `TP_PROTO(const struct sk_buff *skb, int type, int code)`: the node
/// sends an ICMP error because of `skb` (6.10+).
/// `TP_PROTO(u32 tb_id, const struct flowi4 *flp, const struct
/// fib_nh_common *nhc, int err)` (checked against BTF by the loader).
#[btf_tracepoint(function = "fib_table_lookup")]
pub fn netflow_route(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let tb_id: u32 = ctx.arg(0);
    let flp: *const u8 = ctx.arg(1);
    let nhc: *const u8 = ctx.arg(2);
    let err: i32 = ctx.arg(3);
    let _ = route::on_fib_lookup(tb_id, flp, nhc, err);
    0
}

/// `TP_PROTO(const struct net *net, const struct fib6_result *res, struct
/// fib6_table *table, const struct flowi6 *flp)` (checked by the loader).
#[btf_tracepoint(function = "fib6_table_lookup")]
pub fn netflow_route6(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let res: *const u8 = ctx.arg(1);
    let table: *const u8 = ctx.arg(2);
    let flp: *const u8 = ctx.arg(3);
    let _ = route::on_fib6_lookup(res, table, flp);
    0
}

#[btf_tracepoint(function = "icmp_send")]
pub fn netflow_icmp_send(ctx: BtfTracePointContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0);
    let icmp_type: i32 = ctx.arg(1);
    let code: i32 = ctx.arg(2);
    let _ = icmp::on_icmp_send::<Btf>(skb, icmp_type as u8, code as u8);
    0
}

/// Where that tracepoint is missing: `void __icmp_send(struct sk_buff
/// *skb_in, int type, int code, __be32 info, const struct ip_options *opt)`,
/// by fentry, else by kprobe: the same event.
#[fentry(function = "__icmp_send")]
#[inline(always)]
pub fn netflow_icmp_fentry(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0);
    let icmp_type: i32 = ctx.arg(1);
    let code: i32 = ctx.arg(2);
    let _ = icmp::on_icmp_send::<Btf>(skb, icmp_type as u8, code as u8);
    0
}

#[kprobe]
#[inline(always)]
pub fn netflow_icmp_kprobe(ctx: ProbeContext) -> u32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0).unwrap_or_default();
    let icmp_type: i32 = ctx.arg(1).unwrap_or(0);
    let code: i32 = ctx.arg(2).unwrap_or(0);
    let _ = icmp::on_icmp_send::<Probe>(skb, icmp_type as u8, code as u8);
    0
}

/// ICMPv6 errors (no tracepoint in any kernel): `void icmp6_send(struct
/// sk_buff *skb, u8 type, u8 code, __u32 info, ...)`, by fentry, else by
/// kprobe: the same event as IPv4's.
#[fentry(function = "icmp6_send")]
#[inline(always)]
pub fn netflow_icmp6_fentry(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0);
    let icmp_type: u8 = ctx.arg(1);
    let code: u8 = ctx.arg(2);
    let _ = icmp::on_icmp_send::<Btf>(skb, icmp_type, code);
    0
}

#[kprobe]
#[inline(always)]
pub fn netflow_icmp6_kprobe(ctx: ProbeContext) -> u32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let skb: *const u8 = ctx.arg(0).unwrap_or_default();
    let icmp_type: u64 = ctx.arg(1).unwrap_or(0);
    let code: u64 = ctx.arg(2).unwrap_or(0);
    let _ = icmp::on_icmp_send::<Probe>(skb, icmp_type as u8, code as u8);
    0
}

/// BPF netfilter programs (BPF_PROG_TYPE_NETFILTER). aya-obj accepts no
/// netfilter section, so they live in `classifier` sections and netflow's
/// own loader (netflow-user/src/netfilter.rs) loads and links them; aya never
/// loads them as tc programs. The context is `struct bpf_nf_ctx { const
/// struct nf_hook_state *state; struct sk_buff *skb; }`. They always return
/// NF_ACCEPT (1): the verdict is the kernel's, seen as presence or absence
/// of the packet at the late priority.
#[classifier]
pub fn netflow_nf_early(ctx: TcContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return NF_ACCEPT;
    };
    on_netfilter(ctx.skb.skb as *const u8, Point::NfEarly);
    NF_ACCEPT
}

#[classifier]
pub fn netflow_nf_late(ctx: TcContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return NF_ACCEPT;
    };
    on_netfilter(ctx.skb.skb as *const u8, Point::NfLate);
    NF_ACCEPT
}

/// (`#[inline(always)]` reaches the body the macros wrap: one frame, no
/// BPF-to-BPF call, which older verifiers count against the 512-byte stack.)
///
/// Kernels without BPF netfilter links (before 6.4): `int nf_hook_slow(struct
/// sk_buff *skb, struct nf_hook_state *state, const struct nf_hook_entries *e,
/// unsigned int s)` runs every function of one hook; its entry is the early
/// observation and its return, when it returns 1 (accepted), the late one.
/// A drop inside shows as the kfree_skb that follows (the skb is gone then).
#[fentry(function = "nf_hook_slow")]
#[inline(always)]
pub fn netflow_nf_fentry(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    on_nf_hook::<Btf, true>(ctx.arg(0), ctx.arg(1), Point::NfEarly);
    0
}

#[fexit(function = "nf_hook_slow")]
#[inline(always)]
pub fn netflow_nf_fexit(ctx: FExitContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let ret: i32 = ctx.arg(4);
    if ret == 1 {
        on_nf_hook::<Btf, true>(ctx.arg(0), ctx.arg(1), Point::NfLate);
    }
    0
}

/// The same with a kprobe and a kretprobe, where fentry is refused: the entry
/// pushes (skb, state) on a per-task stack (hooks nest: a bridge hook runs
/// the IPv4 ones, a REJECT sends its answer through OUTPUT), the return pops.
#[kprobe]
#[inline(always)]
pub fn netflow_nf_kprobe(ctx: ProbeContext) -> u32 {
    let skb: *const u8 = ctx.arg(0).unwrap_or_default();
    let state: *const u8 = ctx.arg(1).unwrap_or_default();
    if !skb.is_null() && !state.is_null() {
        nf_stack::push(skb, state);
        if let Some(_level) = nest::enter() {
            on_nf_hook::<Probe, false>(skb, state, Point::NfEarly);
        }
    }
    0
}

#[kretprobe]
#[inline(always)]
pub fn netflow_nf_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i32 = ctx.ret();
    if let Some((skb, state)) = nf_stack::pop() {
        if let (1, Some(_level)) = (ret, nest::enter()) {
            on_nf_hook::<Probe, false>(skb, state, Point::NfLate);
        }
    }
    0
}

/// `nft_do_chain(struct nft_pktinfo *pkt, void *priv)`, `priv` being the
/// chain: for a tracked packet, which nftables table and chain (and hook)
/// evaluate it. An upgrade for kernels with kprobes; loaded (verifier-
/// checked) everywhere.
#[kprobe]
#[inline(always)]
pub fn netflow_kprobe_nft_do_chain(ctx: ProbeContext) -> u32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let pkt: *const u8 = ctx.arg(0).unwrap_or_default();
    let chain: *const u8 = ctx.arg(1).unwrap_or_default();
    let _ = on_nft_chain(pkt, chain);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";

/// `int ip_send_skb(struct net *net, struct sk_buff *skb)`: a UDP socket
/// (or a raw or ping one; never TCP) sends an IPv4 datagram. The events
/// mode's DNS and UDP conversations, where fentry works.
#[fentry(function = "ip_send_skb")]
pub fn netflow_dns_send(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let _ = dns::on_datagram::<Btf>(ctx.arg(1), true, false);
    0
}

/// `int ip6_send_skb(struct sk_buff *skb)`: the same for IPv6.
#[fentry(function = "ip6_send_skb")]
pub fn netflow_dns_send6(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let _ = dns::on_datagram::<Btf>(ctx.arg(0), true, false);
    0
}

/// `int udp_queue_rcv_one_skb(struct sock *sk, struct sk_buff *skb)` (else
/// `udp_queue_rcv_skb`, the same arguments; the daemon picks the one this
/// kernel's BTF has): an IPv4 UDP socket takes a datagram.
#[fentry(function = "udp_queue_rcv_one_skb")]
pub fn netflow_dns_recv(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let _ = dns::on_datagram::<Btf>(ctx.arg(1), false, false);
    0
}

/// The same for IPv6: `udpv6_queue_rcv_one_skb`, else `udpv6_queue_rcv_skb`.
#[fentry(function = "udpv6_queue_rcv_one_skb")]
pub fn netflow_dns_recv6(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let _ = dns::on_datagram::<Btf>(ctx.arg(1), false, false);
    0
}

/// `int sock_queue_rcv_skb_reason(struct sock *sk, struct sk_buff *skb,
/// enum skb_drop_reason *reason)` (else `sock_queue_rcv_skb(sk, skb)`,
/// kernels before 5.19): a raw or ping socket (or another that queues
/// this way; never TCP or UDP) takes a packet. The events mode's ICMP
/// echo replies, where fentry works.
#[fentry(function = "sock_queue_rcv_skb_reason")]
pub fn netflow_dns_recv_raw(ctx: FEntryContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let _ = dns::on_datagram::<Btf>(ctx.arg(1), false, true);
    0
}

/// `struct sk_buff *__ip_make_skb(struct sock *sk, struct flowi4 *fl4,
/// struct sk_buff_head *queue, struct inet_cork *cork)` returns: an IPv4
/// datagram built from a socket's pending data. The events mode's ICMP
/// echo requests a raw or ping socket sends, where fentry works: they
/// reach `ip_send_skb` from `ip_push_pending_frames`, in the same file,
/// where the compiler inlines it (UDP calls it from another file).
#[fexit(function = "__ip_make_skb")]
pub fn netflow_dns_make(ctx: FExitContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let _ = dns::on_datagram::<Btf>(ctx.arg(4), true, true);
    0
}

/// `struct sk_buff *__ip6_make_skb(struct sock *sk, struct sk_buff_head
/// *queue, struct inet_cork_full *cork, struct inet6_cork *v6_cork)`
/// returns: the same for IPv6.
#[fexit(function = "__ip6_make_skb")]
pub fn netflow_dns_make6(ctx: FExitContext) -> i32 {
    let Some(_level) = nest::enter() else {
        return 0;
    };
    let _ = dns::on_datagram::<Btf>(ctx.arg(4), true, true);
    0
}
