//! Types shared by the kernel programs (`netflow-ebpf`) and the daemon
//! (`netflow-user`). Everything here is `#[repr(C)]` and free of padding so
//! both sides agree on the byte layout; map, program and global names are
//! constants so they are spelled once.
#![no_std]

pub mod parse;

/// Names of maps, programs and globals, used by both sides.
pub mod names {
    /// Kernel functions the loader marks global in the object's BTF, so
    /// that the verifier checks each once (bpf-linker makes every
    /// function static).
    pub const GLOBAL_FN_PREFIX: &str = "netflow_g_";
    pub const EVENTS: &str = "EVENTS";
    pub const LOST: &str = "LOST";
    pub const TRACKED: &str = "TRACKED";
    pub const SCRATCH: &str = "SCRATCH";
    pub const SEL_ADDRS: &str = "SEL_ADDRS";
    pub const SEL_NETS: &str = "SEL_NETS";
    pub const SEL_NETNS: &str = "SEL_NETNS";
    pub const SEL_IFACES: &str = "SEL_IFACES";
    pub const SEL_FLOWS: &str = "SEL_FLOWS";
    pub const FLOWS_ACTIVE: &str = "FLOWS_ACTIVE";
    pub const TRACKING: &str = "TRACKING";
    pub const CONNS: &str = "CONNS";
    pub const BUCKET: &str = "BUCKET";
    pub const SAMPLED: &str = "SAMPLED";
    /// TCP state changes counted per network namespace ([`SockCounts`]).
    pub const SOCK_COUNTS: &str = "SOCK_COUNTS";
    /// UDP and ICMP echo conversations as each socket of the node sees
    /// them ([`Conv`]).
    pub const CONVS: &str = "CONVS";
    /// Per CPU: the buffer of the last ICMP echo reply a raw or ping
    /// socket took a copy of, and when.
    pub const ECHO_TAKEN: &str = "ECHO_TAKEN";

    pub const PROG_RX: &str = "netflow_rx";
    pub const PROG_TX: &str = "netflow_tx";
    pub const PROG_KFREE: &str = "netflow_kfree_skb";
    pub const PROG_CONSUME: &str = "netflow_consume_skb";
    pub const PROG_DELIVER: &str = "netflow_deliver";
    pub const PROG_TCP_RCV: &str = "netflow_tcp_rcv";
    /// cgroup_skb ingress on the cgroup v2 root: a socket takes the packet.
    pub const PROG_SOCK_IN: &str = "netflow_sock_in";
    /// cgroup_skb egress on the cgroup v2 root (the agent's counting): a
    /// socket sends the packet.
    pub const PROG_SOCK_OUT: &str = "netflow_sock_out";
    /// The events mode's DNS where fentry works: UDP sends (IPv4, IPv6)
    /// and a UDP socket taking a datagram.
    pub const PROG_DNS_SEND: &str = "netflow_dns_send";
    pub const PROG_DNS_SEND6: &str = "netflow_dns_send6";
    pub const PROG_DNS_RECV: &str = "netflow_dns_recv";
    pub const PROG_DNS_RECV6: &str = "netflow_dns_recv6";
    /// ... and a raw or ping socket taking an ICMP echo reply.
    pub const PROG_DNS_RECV_RAW: &str = "netflow_dns_recv_raw";
    /// ... and a raw or ping socket's ICMP echo request built (fexit on
    /// `__ip_make_skb`, `__ip6_make_skb`: where they call `ip_send_skb`
    /// it is inlined).
    pub const PROG_DNS_MAKE: &str = "netflow_dns_make";
    pub const PROG_DNS_MAKE6: &str = "netflow_dns_make6";
    /// BPF_PROG_TYPE_NETFILTER programs, kept in a section aya accepts and
    /// loaded by netflow's own loader.
    pub const PROG_TCP_RETRANSMIT: &str = "netflow_tcp_retransmit";
    pub const PROG_TCP_RESET: &str = "netflow_tcp_reset";
    /// `sock:inet_sock_set_state`: TCP state changes (the agent's
    /// connections, counted per namespace; failed connects as events).
    pub const PROG_SOCK_STATE: &str = "netflow_sock_state";
    pub const PROG_ICMP_SEND: &str = "netflow_icmp_send";
    /// Where the `icmp:icmp_send` tracepoint is missing: `__icmp_send`.
    pub const PROG_ICMP_FENTRY: &str = "netflow_icmp_fentry";
    pub const PROG_ICMP_KPROBE: &str = "netflow_icmp_kprobe";
    /// ICMPv6 errors (no tracepoint): `icmp6_send` by fentry, else kprobe.
    pub const PROG_ICMP6_FENTRY: &str = "netflow_icmp6_fentry";
    pub const PROG_ICMP6_KPROBE: &str = "netflow_icmp6_kprobe";
    /// `fib:fib_table_lookup`: route hops.
    pub const PROG_ROUTE: &str = "netflow_route";
    /// `fib6:fib6_table_lookup`: IPv6 route hops.
    pub const PROG_ROUTE6: &str = "netflow_route6";
    pub const ROUTE_PENDING: &str = "ROUTE_PENDING";
    pub const PROG_NF_EARLY: &str = "netflow_nf_early";
    pub const PROG_NF_LATE: &str = "netflow_nf_late";
    pub const PROG_TC_INGRESS: &str = "netflow_tc_ingress";
    pub const PROG_TC_EGRESS: &str = "netflow_tc_egress";
    /// Upgrade where kprobes exist: nftables table and chain names.
    pub const PROG_KPROBE_NFT: &str = "netflow_kprobe_nft_do_chain";
    /// Drops on kernels before drop reasons (5.10-5.16): location only.
    pub const PROG_KFREE_LOC: &str = "netflow_kfree_skb_loc";
    /// Netfilter hops where BPF netfilter links are missing (before 6.4):
    /// `nf_hook_slow` by fentry/fexit, else by kprobe/kretprobe.
    pub const PROG_NF_FENTRY: &str = "netflow_nf_fentry";
    pub const PROG_NF_FEXIT: &str = "netflow_nf_fexit";
    pub const PROG_NF_KPROBE: &str = "netflow_nf_kprobe";
    pub const PROG_NF_KRETPROBE: &str = "netflow_nf_kretprobe";
    pub const NF_STACK: &str = "NF_STACK";
    pub const KEY_SCRATCH: &str = "KEY_SCRATCH";
    pub const NEST: &str = "NEST";

    pub const GLOBAL_OFFSETS: &str = "OFFSETS";
    pub const GLOBAL_FILTER: &str = "FILTER";
}

/// Bytes of the packet, from its network header, copied into each event.
pub const CAPTURE_BYTES: usize = 128;
/// Ring buffer size (bytes, power of two).
pub const RING_BYTES: u32 = 8 << 20;
/// Maximum ports in a `--port` selection.
pub const MAX_PORTS: usize = 8;
/// Maximum VXLAN UDP ports recognised in the kernel parser.
pub const MAX_VXLAN_PORTS: usize = 4;
/// Entries of the tracked-skb table.
pub const TRACKED_ENTRIES: u32 = 65536;

/// Where an event was recorded.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// `net:netif_receive_skb`: a device received the packet.
    Rx = 1,
    /// `net:net_dev_queue`: a device is about to transmit the packet.
    Tx = 2,
    /// tc ingress (clsact or TCX) on a chosen device.
    TcIngress = 3,
    /// tc egress (clsact or TCX) on a chosen device.
    TcEgress = 4,
    /// `skb:kfree_skb` with a drop reason.
    Drop = 5,
    /// `skb:consume_skb`: freed after normal processing.
    Consume = 6,
    /// `skb:skb_copy_datagram_iovec` or `tcp:tcp_probe`: a socket took it.
    Deliver = 7,
    /// BPF netfilter link before the hook's built-in conntrack/NAT/filter.
    NfEarly = 8,
    /// BPF netfilter link after them.
    NfLate = 9,
    /// `tcp:tcp_retransmit_skb`: a socket retransmits (headers from the socket).
    TcpRetransmit = 10,
    /// `tcp:tcp_send_reset`: a RST is sent (in reply to this packet, or by the socket).
    TcpReset = 11,
    /// kprobe on `nft_do_chain`: an nftables chain evaluates the packet. The
    /// event's data holds the table and chain names (NUL-terminated, 64 bytes each).
    NftChain = 12,
    /// cgroup_skb ingress: a socket takes the packet (after INPUT, after the
    /// socket lookup). Carries the device it came in on; packet bytes only
    /// when the skb was not tracked (a copy, e.g. for a raw socket).
    Socket = 13,
    /// `icmp:icmp_send`: the node sends an ICMP error because of this
    /// packet. `reason` holds type << 8 | code; the device is the one the
    /// packet's route leads to, `location` that device's MTU.
    IcmpSend = 14,
    /// Made by the daemon, never by the kernel: nftables traced the packet
    /// through a rule or a base chain's policy (`NFNLGRP_NFTRACE`). `location`
    /// holds the rule handle, `reason` the verdict (as i32), `hook` the trace
    /// type, `pf` the family; the data is the packet's headers as the trace
    /// carried them (`len` bytes) followed by the names (see the daemon's
    /// `decode::rule`).
    RuleTrace = 15,
    /// `fib:fib_table_lookup`: a routing table lookup for a packet that was
    /// just received (joined by its addresses to the packets the receive
    /// program saw last on this CPU). `reason` holds the table id, the
    /// device is the route's, `location` is `err << 32 | gateway` (IPv4,
    /// network order; 0: none), `hook` the gateway's family.
    Route = 16,
    /// `sock:inet_sock_set_state`: a TCP connect failed (SYN_SENT to
    /// CLOSE), or one sampled (`Filter::sample_every`) succeeded (SYN_SENT to
    /// ESTABLISHED). Headers from the socket, as for [`Point::TcpRetransmit`];
    /// `reason` holds the socket's error (`sk_err`: ECONNREFUSED,
    /// ETIMEDOUT, EHOSTUNREACH, 0 when the application gave up), `location`
    /// old state << 8 | new state.
    SockState = 17,
    /// cgroup_skb egress: a socket of the node sends the packet. The events
    /// mode's DNS: a datagram to or from a DNS port, with its bytes, where
    /// its socket sends it (not followed further unless its flow is).
    SockSend = 18,
}

impl Point {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Rx,
            2 => Self::Tx,
            3 => Self::TcIngress,
            4 => Self::TcEgress,
            5 => Self::Drop,
            6 => Self::Consume,
            7 => Self::Deliver,
            8 => Self::NfEarly,
            9 => Self::NfLate,
            10 => Self::TcpRetransmit,
            11 => Self::TcpReset,
            12 => Self::NftChain,
            13 => Self::Socket,
            14 => Self::IcmpSend,
            15 => Self::RuleTrace,
            16 => Self::Route,
            17 => Self::SockState,
            18 => Self::SockSend,
            _ => return None,
        })
    }
}

/// Fixed part of every event. Followed by `cap_len` bytes of the packet
/// (from its network header) when `cap_len > 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Kernel address of the `struct sk_buff`: the packet's identity.
    pub skb: u64,
    /// Kernel code address that freed the packet (drop/consume only).
    pub location: u64,
    /// The packet's [`parse::fingerprint`] as the kernel computed it over
    /// the bytes that follow (hops and tracked drops; 0 where it computed
    /// none). The daemon computes its own from the same bytes with the same
    /// function; this one lets a test compare the two.
    pub fp: u64,
    /// Inode number of the device's network namespace.
    pub netns: u32,
    pub ifindex: u32,
    /// `skb->len`.
    pub len: u32,
    /// `skb->mark`.
    pub mark: u32,
    /// `enum skb_drop_reason` (drop), the socket's TCP state (TCP events).
    pub reason: u32,
    /// Ethertype of the packet (`skb->protocol`, host order).
    pub l3_proto: u16,
    /// Valid packet bytes that follow this header.
    pub cap_len: u16,
    /// A [`Point`].
    pub point: u8,
    /// Layout version of this header, see [`EVENT_VERSION`].
    pub version: u8,
    /// Netfilter hook (NF_INET_*) for netfilter points.
    pub hook: u8,
    /// Protocol family (NFPROTO_IPV4 2, NFPROTO_IPV6 10) for netfilter points.
    pub pf: u8,
    /// [`event_flags`] bits.
    pub flags: u8,
    pub _pad: [u8; 3],
    /// Device name (`dev->name`), NUL padded.
    pub ifname: [u8; 16],
}

/// Layout version 2 (1 had no `fp`; the daemon reads both, see its
/// `record::compat`). `flags` (a former padding byte, zero in older
/// recordings) needed no new version.
pub const EVENT_VERSION: u8 = 2;

/// Bits of [`EventHeader::flags`].
pub mod event_flags {
    /// A drop of a packet a socket had already taken (e.g. QUEUE_PURGE when
    /// the socket closed): not a drop on the packet's path.
    pub const AFTER_DELIVERY: u8 = 1;
    /// A drop of a packet the guardrails had only counted (its count is in
    /// CONNS already; this event is its only report).
    pub const COUNTED: u8 = 2;
    /// The events mode: a datagram read at a socket (a DNS message, or the
    /// first datagram one way of a UDP conversation). One a socket takes
    /// begins a timeline of its own when none is open (it came from off
    /// the node, where nothing saw it before).
    pub const SOCKET_READ: u8 = 4;
    /// Set by the daemon, never by the kernel: a packet followed on its way
    /// was freed from a closing socket's queue. With no socket hop (a run
    /// without socket-delivery evidence) it reads unknown, not dropped.
    pub const SOCKET_PURGE: u8 = 0x40;
    /// Set by the daemon, never by the kernel: the packet was freed outside
    /// `nf_hook_slow`, so an "early" netfilter hop before it is not a hook's
    /// drop verdict (e.g. br_netfilter's `ip_sabotage_in` steals the packet
    /// inside the hook and the stack frees it later).
    pub const OUTSIDE_HOOK: u8 = 0x80;
}

/// A whole event as the kernel builds it in per-CPU scratch memory.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PacketEvent {
    pub hdr: EventHeader,
    pub data: [u8; CAPTURE_BYTES],
}

/// A connection as conntrack keys one direction of it: addresses (IPv4
/// mapped into IPv6), ports (ICMP: echo id, 0) and protocol. Key of SEL_FLOWS.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Nesting levels of the kernel programs on one CPU with their own working
/// slots (process, softirq, one spare): the entries of every per-CPU
/// working map (see the kernel crate's `nest`).
pub const NEST_DEPTH: u32 = 3;

/// Value of the TRACKED map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Track {
    /// When the packet was last seen; 0 once it ended (an only counted
    /// packet's entry is kept for the LRU to evict, but names no packet).
    pub ts: u64,
    /// Its fingerprint (see the kernel parser), to notice a reused skb.
    pub fp: u64,
    /// [`track_flags`] bits.
    pub flags: u32,
    pub _pad: u32,
    /// Hash of its addresses, ports and protocols (outer and inner) as last
    /// reported: a hop that changed none of them is reported header-only.
    pub hdr: u64,
}

/// Value of the CONVS map (the events mode), keyed by a [`FlowKey`] as one
/// socket sees its UDP conversation: `src` its own address and port, `dst`
/// the peer's; `proto` 17, `_pad[0]` 4 or 6 (an IPv4 address in the first
/// four bytes of each, the rest zero).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    /// A datagram of it was last sent or taken at this time.
    pub last_ns: u64,
    /// [`conv_sides`] bits: the directions reported since it began.
    pub sides: u32,
    pub _pad: u32,
}

/// Bits of [`Conv::sides`].
pub mod conv_sides {
    /// The socket sent a datagram of it.
    pub const SENT: u32 = 1;
    /// The socket took one.
    pub const TAKEN: u32 = 2;
}

/// A UDP conversation quiet this long begins anew (its next datagram each
/// way is reported again): the connections' idle time, so that the daemon
/// has reported the old one by then.
pub const CONV_IDLE_NS: u64 = 10_000_000_000;

/// UDP conversations the kernel keeps at once (an LRU: past it, the least
/// recent is forgotten and, if it goes on, reported as a new one).
pub const CONVS_ENTRIES: u32 = 16384;

/// The drop reason of a drop on a kernel without drop reasons (5.10-5.16).
pub const REASON_UNAVAILABLE: u32 = u32::MAX;

/// `nf_hook_slow`'s (skb, state) from its kprobe to its kretprobe, per task.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NfStack {
    pub depth: u32,
    pub _pad: u32,
    pub skb: [u64; 4],
    pub state: [u64; 4],
}

pub mod track_flags {
    /// A socket took it (a later free is not a drop on its path).
    pub const DELIVERED: u32 = 1;
    /// Only counted (guardrails): no hops reported, only a drop.
    pub const COUNTED: u32 = 2;
}

/// Value of the CONNS map, keyed by a [`FlowKey`] with the lower endpoint
/// (address, then port) as `src`: a connection as the guardrails see it.
/// Index 0 of the arrays is the direction from `src`, 1 the other.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnCount {
    /// Selected packets of the connection so far.
    pub total: u64,
    /// Of those, given full detail.
    pub full: u64,
    /// Packets and bytes only counted (no hops reported), per direction.
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    /// Counting at the sockets ([`filter_flags::SOCKET_COUNT`]): TCP
    /// segments without SYN/FIN/RST a socket of the node sent, and those a
    /// socket took, per direction (IP bytes). A connection between two
    /// sockets of the node is seen at both ends: its count is the larger.
    pub sent: [u64; 2],
    pub sent_bytes: [u64; 2],
    /// The sender's CPU writes `sent`, the receiver's `taken`: a cache
    /// line apart, so that they do not take the line from each other at
    /// every packet.
    pub _gap: [u64; 8],
    pub taken: [u64; 2],
    pub taken_bytes: [u64; 2],
}

/// What a TCP state change is, as counted in SOCK_COUNTS (indexes of
/// [`SockCounts::n`]).
pub mod sock_class {
    /// SYN_SENT -> ESTABLISHED: a connect succeeded.
    pub const OPENED_ACTIVE: usize = 0;
    /// SYN_RECV -> ESTABLISHED: a listener accepted a connection.
    pub const OPENED_PASSIVE: usize = 1;
    /// SYN_SENT -> CLOSE: a connect failed (also an event).
    pub const CONNECT_FAILED: usize = 2;
    /// Any other state (not LISTEN) -> CLOSE: a connection ended.
    pub const CLOSED: usize = 3;
    /// ... with ECONNRESET or EPIPE on the socket: a reset ended it.
    pub const RESET: usize = 4;
    pub const N: usize = 6;
}

/// Value of SOCK_COUNTS (per CPU), keyed by network namespace inode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockCounts {
    pub n: [u64; sock_class::N],
}

/// A per-CPU token bucket for full-detail packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Bucket {
    pub tokens: u64,
    pub last_ns: u64,
}

/// Kernel struct member offsets, read from BTF at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Offsets {
    pub skb_len: u32,
    pub skb_head: u32,
    /// End of the linear data, an offset from `head` on 64-bit kernels.
    pub skb_tail: u32,
    pub skb_network_header: u32,
    pub skb_dev: u32,
    pub skb_protocol: u32,
    pub skb_mark: u32,
    pub dev_ifindex: u32,
    pub dev_name: u32,
    pub dev_nd_net: u32,
    /// `struct net` → `ns.inum`.
    pub net_inum: u32,
    /// `struct nf_hook_state` → `in`, `out`.
    pub nf_state_in: u32,
    pub nf_state_out: u32,
    /// `struct sock_common` (at the start of `struct sock`).
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_family: u32,
    pub sk_state: u32,
    pub sk_net: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// `sk_buff._nfct` (conntrack entry | ctinfo).
    pub skb_nfct: u32,
    /// `struct nf_conn` → `tuplehash[IP_CT_DIR_REPLY].tuple`.
    pub ct_reply_tuple: u32,
    /// In `struct nf_conntrack_tuple`: src.u3, src.u, src.l3num, dst.u3, dst.u, dst.protonum.
    pub tuple_src_addr: u32,
    pub tuple_src_port: u32,
    pub tuple_l3num: u32,
    pub tuple_dst_addr: u32,
    pub tuple_dst_port: u32,
    pub tuple_proto: u32,
    /// nftables (0 when the kernel has no nf_tables): `nft_pktinfo.skb`,
    /// `nft_pktinfo.state`, `nft_chain.name`, `nft_chain.table`, `nft_table.name`.
    pub nft_pkt_skb: u32,
    pub nft_pkt_state: u32,
    pub nft_chain_name: u32,
    pub nft_chain_table: u32,
    pub nft_table_name: u32,
    /// `sk_buff.cloned` (a bitfield): its byte and bit mask.
    pub skb_cloned_byte: u32,
    pub skb_cloned_mask: u32,
    /// `nf_hook_state.pf` (offset 1 since 5.15's `u8 hook`; 4 when `hook`
    /// was an `unsigned int`, as in 5.10).
    pub nf_state_pf: u32,
    /// `sk_buff._skb_refdst` (the route), `dst_entry.dev`, `net_device.mtu`.
    pub skb_refdst: u32,
    pub dst_dev: u32,
    pub dev_mtu: u32,
    /// `flowi4.saddr`, `flowi4.daddr`; `fib_nh_common.nhc_dev`,
    /// `.nhc_gw_family`, `.nhc_gw` (0 where the kernel lacks them: no route hops).
    pub flowi4_saddr: u32,
    pub flowi4_daddr: u32,
    pub nhc_dev: u32,
    pub nhc_gw_family: u32,
    pub nhc_gw: u32,
    /// `flowi6.saddr`, `flowi6.daddr`; `fib6_result.nh`, `.fib6_type`;
    /// `fib6_table.tb6_id` (0 where missing: no IPv6 route hops).
    pub flowi6_saddr: u32,
    pub flowi6_daddr: u32,
    pub fib6_res_nh: u32,
    pub fib6_res_type: u32,
    pub fib6_table_id: u32,
    /// `nf_conn.status` (IPS_* bits).
    pub ct_status: u32,
    /// `struct sock` → `sk_err` (an int).
    pub sk_err: u32,
    /// `struct inet_sock` → `inet_sport` (network order): the local port,
    /// still there when a closing socket's `skc_num` was cleared.
    pub sk_sport: u32,
}

/// `nf_conn.status`: the destination was translated (DNAT).
pub const IPS_DST_NAT: u64 = 1 << 5;

pub mod filter_flags {
    /// No selector: every packet (except loopback).
    pub const ALL: u32 = 1 << 0;
    /// `--netns`: the device's netns is in SEL_NETNS or an address is a netns address.
    pub const NETNS: u32 = 1 << 1;
    /// `--host`: an address is in SEL_ADDRS with [`ADDR_HOST`].
    pub const HOST: u32 = 1 << 2;
    /// `--port`.
    pub const PORT: u32 = 1 << 3;
    /// `--proto`.
    pub const PROTO: u32 = 1 << 4;
    /// `--iface`: only look at devices in SEL_IFACES.
    pub const IFACE: u32 = 1 << 5;
    /// `--host` has networks (SEL_NETS, an LPM trie) besides single addresses.
    pub const NETS: u32 = 1 << 6;
    /// Every selected IPv4 address is in `Filter::v4`: no map lookup for IPv4.
    pub const V4_INLINE: u32 = 1 << 7;
    /// `--every-packet`: no guardrails, full detail for every selected packet.
    pub const EVERY_PACKET: u32 = 1 << 8;
    /// The agent's counting: a TCP segment without SYN/FIN/RST is not
    /// followed across the node; the sockets that send and take it count
    /// it in CONNS (cgroup_skb egress and ingress). Its drop is reported.
    pub const SOCKET_COUNT: u32 = 1 << 9;
    /// The agent's events mode (with [`ALL`]): every drop, socket event and
    /// ICMP error is reported; at devices, hooks and sockets only the flows
    /// being followed (SEL_FLOWS, filled by the daemon) are.
    pub const ON_DEMAND: u32 = 1 << 10;
    /// The events mode's DNS: a UDP datagram to or from one of
    /// `Filter::dns_ports` is reported, with its bytes, where its socket
    /// sends it and where a socket takes it (cgroup_skb egress and
    /// ingress); every other packet costs those programs a few loads.
    pub const DNS: u32 = 1 << 11;
    /// The events mode's UDP conversations (with [`DNS`]): at the same
    /// places, the first datagram each way of each UDP conversation of a
    /// socket (CONVS) is reported as a DNS datagram is; the rest of its
    /// datagrams cost a map lookup. TCP is never looked up. ICMP echo
    /// too, keyed by its id: the first request a socket sends, the first
    /// reply a raw or ping socket takes (whose original's free is then no
    /// drop: ECHO_TAKEN).
    pub const UDP_CONVS: u32 = 1 << 12;
}

/// Bits of a SEL_ADDRS value.
pub const ADDR_NETNS: u32 = 1;
pub const ADDR_HOST: u32 = 2;

/// The packet selection, handed to the programs as a global.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    pub flags: u32,
    /// IP protocol number for [`filter_flags::PROTO`].
    pub proto: u8,
    pub n_ports: u8,
    pub n_vxlan_ports: u8,
    pub _pad: u8,
    pub ports: [u16; MAX_PORTS],
    pub vxlan_ports: [u16; MAX_VXLAN_PORTS],
    /// A tracked skb not seen for this long is forgotten (its free was missed).
    pub stale_ns: u64,
    /// Value of `SKB_CONSUMED` in `enum skb_drop_reason` (not a drop).
    pub reason_consumed: u32,
    pub _pad2: u32,
    /// [`filter_flags::V4_INLINE`]: the selected IPv4 addresses (big-endian
    /// value of a.b.c.d) and their ADDR_* bits, compared in place of a map lookup.
    pub n_v4: u32,
    pub _pad3: u32,
    pub v4: [u32; MAX_INLINE_V4],
    pub v4_bits: [u32; MAX_INLINE_V4],
    /// Guardrails: full detail for the first `guard_first` packets of each
    /// connection, then one in `guard_every` (0: none), at most `guard_rate`
    /// such packets per second per CPU; control packets (TCP SYN/FIN/RST,
    /// not TCP/UDP) always.
    pub guard_first: u32,
    pub guard_every: u32,
    pub guard_rate: u32,
    /// The events mode's sampling: one TCP connect in `sample_every` that
    /// succeeds (per CPU and namespace) is an event, and its flow is
    /// followed in full for a while (0: none).
    pub sample_every: u32,
    /// [`filter_flags::DNS`]: the DNS ports (0: none).
    pub dns_ports: [u16; MAX_DNS_PORTS],
}

/// DNS ports the events mode reads at sockets (53 and `--dns-port`s).
pub const MAX_DNS_PORTS: usize = 4;

/// Selected IPv4 addresses kept in the filter itself (beyond: the map).
pub const MAX_INLINE_V4: usize = 8;

impl Filter {
    pub const fn empty() -> Self {
        Self {
            flags: 0,
            proto: 0,
            n_ports: 0,
            n_vxlan_ports: 0,
            _pad: 0,
            ports: [0; MAX_PORTS],
            vxlan_ports: [0; MAX_VXLAN_PORTS],
            stale_ns: 0,
            reason_consumed: 1,
            _pad2: 0,
            n_v4: 0,
            _pad3: 0,
            v4: [0; MAX_INLINE_V4],
            v4_bits: [0; MAX_INLINE_V4],
            guard_first: 0,
            guard_every: 0,
            guard_rate: 0,
            sample_every: 0,
            dns_ports: [0; MAX_DNS_PORTS],
        }
    }
}

/// An IPv6 address or an IPv4-mapped one: key of SEL_ADDRS, data of SEL_NETS keys.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AddrKey {
    pub addr: [u8; 16],
}

/// Names of the five IPv4/IPv6 netfilter hooks, by number (NF_INET_*).
pub const NF_HOOK_NAMES: [&str; 5] = ["prerouting", "input", "forward", "output", "postrouting"];

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl aya::Pod for super::Filter {}
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::ConnCount {}
    unsafe impl aya::Pod for super::SockCounts {}
}
