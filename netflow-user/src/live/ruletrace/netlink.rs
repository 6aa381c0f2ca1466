//! nf_tables over netlink: netflow's owned trace table, the trace events,
//! and rules by handle. Requests are built with `netlink-packet-netfilter`;
//! replies and events are read attribute by attribute (their expressions
//! may be of any kind, which a reader of the whole message would refuse).
use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlaBuffer, NlasIterator, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::{
    nftables::{
        Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, Expressions, Hook, HookNumber,
        Immediate, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register, RuleAttribute,
        RuleMessage, TableAttribute, TableFlags, TableMessage,
    },
    none::ControlMessage,
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::decode::rule::Action;

/// Multicast groups of NETLINK_NETFILTER.
pub const NFNLGRP_NFTABLES: u32 = 7;
pub const NFNLGRP_NFTRACE: u32 = 9;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_NEWGEN: u8 = 15;
const NFT_MSG_TRACE: u8 = 17;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// `NF_INET_PRE_ROUTING`, `NF_INET_LOCAL_OUT`.
const HOOK_PREROUTING: u32 = 0;
const HOOK_OUTPUT: u32 = 3;
/// Before every other hook at these points (raw is -300, defrag -400):
/// the flag is set before any rule netflow should name runs.
pub const TRACE_PRIORITY: i32 = -350;
/// Packets per second each trace rule marks at most, and its burst.
pub const TRACE_RATE: u64 = 500;
pub const TRACE_BURST: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("nf_tables refused the request: {0}")]
    Refused(std::io::Error),
    #[error("netlink reply cut short")]
    Short,
}

/// One netlink socket of the netfilter family, in the calling thread's
/// network namespace.
pub struct Nl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Nl {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        // A reply that never comes must not hang netflow.
        set_timeout(&sock, std::time::Duration::from_secs(5));
        Ok(Nl {
            sock,
            seq: 1,
            buf: vec![0; 1 << 16],
        })
    }

    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    fn send(&mut self, msgs: Vec<NetlinkMessage<NetfilterMessage>>) -> Result<u32, NetlinkError> {
        let mut out = Vec::new();
        let first = self.seq;
        for mut m in msgs {
            m.header.sequence_number = self.seq;
            self.seq += 1;
            m.finalize();
            let at = out.len();
            out.resize(at + m.buffer_len(), 0);
            m.serialize(&mut out[at..]);
        }
        self.sock.send(&out, 0)?;
        Ok(first)
    }

    /// Read replies until `want` acks (or errors) for sequence numbers from
    /// `first` came; the first error wins.
    fn acks(&mut self, first: u32, want: usize) -> Result<(), NetlinkError> {
        let mut got = 0;
        let mut err = None;
        while got < want {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            for m in messages(&self.buf[..n]) {
                if m.kind == NLMSG_ERROR && m.seq >= first && m.seq < first + want as u32 {
                    got += 1;
                    let code = m.body.get(..4).ok_or(NetlinkError::Short)?;
                    let code = i32::from_ne_bytes(code.try_into().unwrap());
                    if code != 0 && err.is_none() {
                        err = Some(std::io::Error::from_raw_os_error(-code));
                    }
                }
            }
        }
        match err {
            Some(e) => Err(NetlinkError::Refused(e)),
            None => Ok(()),
        }
    }

    /// Create netflow's trace table (owned: it goes when this socket
    /// closes) with one chain at PREROUTING and one at OUTPUT, each with
    /// the rules that set `nftrace` on the selected packets.
    pub fn create_trace_table(
        &mut self,
        table: &str,
        matches: &[(Match, L4Match)],
    ) -> Result<(), NetlinkError> {
        let nf = |family: u8, inner: NfTablesMessage| {
            NetlinkMessage::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0),
                inner,
            ))
        };
        let mut msgs = vec![NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            ControlMessage::BatchBegin,
        ))];
        let mut t = nf(
            NFPROTO_INET,
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![
                    TableAttribute::Name(table.into()),
                    TableAttribute::Flags(TableFlags::Owner),
                ],
            }),
        );
        t.header.flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
        msgs.push(t);
        for (chain, hook) in [("pre", HOOK_PREROUTING), ("out", HOOK_OUTPUT)] {
            let mut c = nf(
                NFPROTO_INET,
                NfTablesMessage::NewChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table(table.into()),
                        ChainAttribute::Name(chain.into()),
                        ChainAttribute::Hook(vec![
                            Hook::Number(HookNumber::Other(hook)),
                            Hook::Priority(TRACE_PRIORITY as u32),
                        ]),
                        ChainAttribute::Type("filter".into()),
                        ChainAttribute::Policy(1),
                    ],
                }),
            );
            c.header.flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
            msgs.push(c);
            for (m, l4) in matches {
                let mut exprs = m.expressions();
                exprs.extend(l4.expressions());
                exprs.extend(trace_expressions());
                let mut r = nf(
                    NFPROTO_INET,
                    NfTablesMessage::NewRule(RuleMessage {
                        attributes: vec![
                            RuleAttribute::Table(table.into()),
                            RuleAttribute::Chain(chain.into()),
                            RuleAttribute::Expressions(exprs.into_iter().map(Into::into).collect()),
                        ],
                    }),
                );
                r.header.flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK | 0x800; // APPEND
                msgs.push(r);
            }
        }
        let want = msgs.len() - 1;
        msgs.push(NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            ControlMessage::BatchEnd,
        )));
        // The kernel handles requests only: a batch end without the flag
        // aborts the whole batch (with an error only for the end). Some
        // kernels acknowledge a batch end, others never: none is asked for.
        msgs[0].header.flags = NLM_F_REQUEST;
        let last = msgs.len() - 1;
        msgs[last].header.flags = NLM_F_REQUEST;
        let first = self.send(msgs)?;
        self.acks(first + 1, want)
    }

    /// The rules of one chain, in order: (handle, what they say).
    pub fn chain_rules(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
    ) -> Result<Vec<RuleInfo>, NetlinkError> {
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0),
                NfTablesMessage::GetRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table(table.into()),
                        RuleAttribute::Chain(chain.into()),
                    ],
                }),
            )),
        );
        m.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let seq = self.send(vec![m])?;
        let mut out = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            for m in messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = m.body.get(..4).ok_or(NetlinkError::Short)?;
                        let code = i32::from_ne_bytes(code.try_into().unwrap());
                        if code == 0 {
                            return Ok(out);
                        }
                        return Err(NetlinkError::Refused(std::io::Error::from_raw_os_error(
                            -code,
                        )));
                    }
                    k if k == (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE as u16) => {
                        if let Some(r) = m.body.get(4..).map(rule_info) {
                            out.push(r);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The next batch of events (traces, ruleset changes); `wait`: block
    /// (up to the socket's timeout) when none is queued.
    pub fn recv_events(&mut self, wait: bool) -> std::io::Result<Vec<Incoming>> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        let n = self.sock.recv(&mut &mut self.buf[..], flags)?;
        let mut out = Vec::new();
        for m in messages(&self.buf[..n]) {
            if m.kind >> 8 != NFNL_SUBSYS_NFTABLES || m.body.len() < 4 {
                continue;
            }
            let family = m.body[0];
            match (m.kind & 0xff) as u8 {
                NFT_MSG_TRACE => out.push(Incoming::Trace(trace(family, &m.body[4..]))),
                NFT_MSG_NEWGEN => out.push(Incoming::NewGeneration),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// What a trace table rule matches: all packets, or one address as source
/// or destination, or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    All,
    Addr {
        v6: bool,
        src: bool,
        addr: Vec<u8>,
    },
    Net {
        v6: bool,
        src: bool,
        net: Vec<u8>,
        mask: Vec<u8>,
    },
}

/// What a trace table rule matches above the network header: any packet,
/// a protocol, or a protocol and a source or destination port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Match {
    Any,
    Proto(u8),
    Port { proto: u8, src: bool, port: u16 },
}

impl L4Match {
    /// Does a packet match, as the kernel rule does?
    pub fn accepts(&self, pkt: &[u8]) -> bool {
        let (proto, port) = match self {
            L4Match::Any => return true,
            L4Match::Proto(p) => (*p, None),
            L4Match::Port { proto, src, port } => (*proto, Some((*src, *port))),
        };
        // The protocol and transport offset (IPv6 extension headers are
        // not walked: such packets are not matched here).
        let (l4, thoff) = match pkt.first().map(|b| b >> 4) {
            Some(4) if pkt.len() >= 20 => (pkt[9], (pkt[0] & 0xf) as usize * 4),
            Some(6) if pkt.len() >= 40 => (pkt[6], 40),
            _ => return false,
        };
        if l4 != proto {
            return false;
        }
        match port {
            None => true,
            Some((src, p)) => {
                let at = thoff + if src { 0 } else { 2 };
                pkt.get(at..at + 2) == Some(&p.to_be_bytes()[..])
            }
        }
    }

    fn expressions(&self) -> Vec<Expressions> {
        let (proto, port) = match self {
            L4Match::Any => return Vec::new(),
            L4Match::Proto(p) => (*p, None),
            L4Match::Port { proto, src, port } => (*proto, Some((*src, *port))),
        };
        let mut e = vec![
            Expressions::Meta(vec![
                Meta::DestinationRegister(Register::Reg1),
                Meta::Key(MetaKey::L4Proto),
            ]),
            Expressions::Cmp(vec![
                Cmp::SourceRegister(Register::Reg1),
                Cmp::Op(Operator::Equal),
                Cmp::Data(DataAttribute::Value(vec![proto])),
            ]),
        ];
        if let Some((src, port)) = port {
            e.push(Expressions::Payload(vec![
                Payload::DestinationRegister(Register::Reg1),
                Payload::Base(2), // transport header
                Payload::Offset(if src { 0 } else { 2 }),
                Payload::Len(2),
            ]));
            e.push(Expressions::Cmp(vec![
                Cmp::SourceRegister(Register::Reg1),
                Cmp::Op(Operator::Equal),
                Cmp::Data(DataAttribute::Value(port.to_be_bytes().to_vec())),
            ]));
        }
        e
    }
}

impl Match {
    /// Does a packet (from its network header) match, as the kernel rule
    /// does? Trace events of packets other tracers marked are not ours.
    pub fn accepts(&self, pkt: &[u8]) -> bool {
        let (v6, src, value, mask) = match self {
            Match::All => return true,
            Match::Addr { v6, src, addr } => (*v6, *src, addr, None),
            Match::Net { v6, src, net, mask } => (*v6, *src, net, Some(mask)),
        };
        let version = pkt.first().map(|b| b >> 4);
        let off = match (v6, src, version) {
            (false, true, Some(4)) => 12,
            (false, false, Some(4)) => 16,
            (true, true, Some(6)) => 8,
            (true, false, Some(6)) => 24,
            _ => return false,
        };
        let Some(field) = pkt.get(off..off + value.len()) else {
            return false;
        };
        match mask {
            None => field == value.as_slice(),
            Some(m) => field
                .iter()
                .zip(m)
                .map(|(b, m)| b & m)
                .eq(value.iter().copied()),
        }
    }

    fn expressions(&self) -> Vec<Expressions> {
        let (v6, src, value, mask) = match self {
            Match::All => return Vec::new(),
            Match::Addr { v6, src, addr } => (*v6, *src, addr.clone(), None),
            Match::Net { v6, src, net, mask } => (*v6, *src, net.clone(), Some(mask.clone())),
        };
        let len = value.len() as u32;
        let offset = match (v6, src) {
            (false, true) => 12,
            (false, false) => 16,
            (true, true) => 8,
            (true, false) => 24,
        };
        let mut e = vec![
            Expressions::Meta(vec![
                Meta::DestinationRegister(Register::Reg1),
                Meta::Key(MetaKey::Nfproto),
            ]),
            Expressions::Cmp(vec![
                Cmp::SourceRegister(Register::Reg1),
                Cmp::Op(Operator::Equal),
                Cmp::Data(DataAttribute::Value(vec![if v6 {
                    NFPROTO_IPV6
                } else {
                    NFPROTO_IPV4
                }])),
            ]),
            Expressions::Payload(vec![
                Payload::DestinationRegister(Register::Reg1),
                Payload::Base(1), // network header
                Payload::Offset(offset),
                Payload::Len(len),
            ]),
        ];
        if let Some(mask) = mask {
            e.push(Expressions::Bitwise(vec![
                Bitwise::SourceRegister(Register::Reg1),
                Bitwise::DestinationRegister(Register::Reg1),
                Bitwise::Length(len),
                Bitwise::Mask(DataAttribute::Value(mask)),
                Bitwise::Xor(DataAttribute::Value(vec![0; len as usize])),
            ]));
        }
        e.push(Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(value)),
        ]));
        e
    }
}

/// `limit rate TRACE_RATE/second burst TRACE_BURST packets meta nftrace set 1`.
fn trace_expressions() -> Vec<Expressions> {
    vec![
        Expressions::Other {
            expression_type: "limit".into(),
            attributes: vec![
                DefaultNla::new(1, TRACE_RATE.to_be_bytes().to_vec()), // RATE
                DefaultNla::new(2, 1u64.to_be_bytes().to_vec()),       // UNIT: second
                DefaultNla::new(3, TRACE_BURST.to_be_bytes().to_vec()), // BURST
                DefaultNla::new(4, 0u32.to_be_bytes().to_vec()),       // TYPE: packets
            ],
        },
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Reg1),
            Immediate::Data(DataAttribute::Value(1u32.to_ne_bytes().to_vec())),
        ]),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::NftraceBit),
            Meta::SourceRegister(Register::Reg1),
        ]),
    ]
}

/// A received event.
pub enum Incoming {
    Trace(Trace),
    /// The ruleset changed: handles may mean other rules now.
    NewGeneration,
}

/// One `NFT_MSG_TRACE`, as the kernel sent it.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    pub family: u8,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    /// `enum nft_trace_types`.
    pub kind: u32,
    pub verdict: Option<i32>,
    pub target: String,
    pub id: u32,
    pub network: Vec<u8>,
    pub transport: Vec<u8>,
    pub iif: u32,
    pub oif: u32,
    pub mark: u32,
    /// NFPROTO of the packet.
    pub nfproto: u32,
    /// The chain's policy (policy events).
    pub policy: Option<u32>,
}

fn be32(v: &[u8]) -> u32 {
    v.get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .unwrap_or(0)
}

fn be64(v: &[u8]) -> u64 {
    v.get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
        .unwrap_or(0)
}

fn string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// The attributes of a buffer: (kind without flags, value).
fn nlas(bytes: &[u8]) -> impl Iterator<Item = Attr<'_>> {
    NlasIterator::new(bytes)
        .map_while(Result::ok)
        .map(|a: NlaBuffer<&[u8]>| {
            let kind = a.kind();
            let len = (a.length() as usize).max(4);
            let inner = a.into_inner();
            Attr {
                kind,
                value: &inner[4..len.min(inner.len())],
            }
        })
}

struct Attr<'a> {
    kind: u16,
    value: &'a [u8],
}

impl<'a> Attr<'a> {
    fn kind(&self) -> u16 {
        self.kind
    }
    fn value(&self) -> &'a [u8] {
        self.value
    }
}

/// Parse a trace event's attributes (`enum nft_trace_attributes`).
pub fn trace(family: u8, attrs: &[u8]) -> Trace {
    let mut t = Trace {
        family,
        ..Trace::default()
    };
    for a in nlas(attrs) {
        let v = a.value();
        match a.kind() {
            1 => t.table = string(v),
            2 => t.chain = string(v),
            3 => t.handle = be64(v),
            4 => t.kind = be32(v),
            5 => {
                for va in nlas(v) {
                    match va.kind() {
                        1 => t.verdict = Some(be32(va.value()) as i32),
                        2 => t.target = string(va.value()),
                        _ => {}
                    }
                }
            }
            6 => t.id = be32(v),
            8 => t.network = v.to_vec(),
            9 => t.transport = v.to_vec(),
            10 => t.iif = be32(v),
            12 => t.oif = be32(v),
            14 => t.mark = be32(v),
            15 => t.nfproto = be32(v),
            16 => t.policy = Some(be32(v)),
            _ => {}
        }
    }
    t
}

/// What netflow reads from a rule: its handle, its comment, what it does,
/// and whether iptables-nft wrote it (it has `xt` matches or targets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleInfo {
    pub handle: u64,
    pub comment: String,
    pub action: Action,
    pub xt: bool,
    /// Sets and maps the rule looks the packet up in.
    pub sets: Vec<String>,
}

/// Parse a rule's attributes (`enum nft_rule_attributes`).
pub fn rule_info(attrs: &[u8]) -> RuleInfo {
    let mut r = RuleInfo::default();
    for a in nlas(attrs) {
        match a.kind() {
            3 => r.handle = be64(a.value()),
            4 => {
                for elem in nlas(a.value()) {
                    expression(elem.value(), &mut r);
                }
            }
            // NFTA_RULE_USERDATA: TLVs; type 0 is nft's comment.
            7 => {
                let u = a.value();
                let mut i = 0;
                while i + 2 <= u.len() {
                    let (ty, len) = (u[i], u[i + 1] as usize);
                    let Some(v) = u.get(i + 2..i + 2 + len) else {
                        break;
                    };
                    if ty == 0 && r.comment.is_empty() {
                        r.comment = string(v);
                    }
                    i += 2 + len;
                }
            }
            _ => {}
        }
    }
    r
}

/// One expression (`NFTA_EXPR_NAME`, `NFTA_EXPR_DATA`).
fn expression(e: &[u8], r: &mut RuleInfo) {
    let mut name = String::new();
    let mut data: &[u8] = &[];
    for a in nlas(e) {
        match a.kind() {
            1 => name = string(a.value()),
            2 => data = a.value(),
            _ => {}
        }
    }
    let attr = |kind: u16| {
        nlas(data)
            .find(|a| a.kind() == kind)
            .map(|a| a.value().to_vec())
    };
    match name.as_str() {
        // xt match: NFTA_MATCH_NAME 1, NFTA_MATCH_INFO 3.
        "match" => {
            r.xt = true;
            if attr(1).is_some_and(|n| string(&n) == "comment") {
                if let Some(info) = attr(3) {
                    r.comment = string(&info);
                }
            }
        }
        // xt target: NFTA_TARGET_NAME 1.
        "target" => {
            r.xt = true;
            r.action = match attr(1).map(|n| string(&n)).as_deref() {
                Some("DNAT") => Action::Dnat,
                Some("SNAT" | "MASQUERADE") => Action::Snat,
                Some("REJECT") => Action::Reject,
                _ => r.action,
            };
        }
        // NFTA_NAT_TYPE 1: NFT_NAT_SNAT 0, NFT_NAT_DNAT 1.
        "nat" => {
            r.action = match attr(1).map(|v| be32(&v)) {
                Some(1) => Action::Dnat,
                _ => Action::Snat,
            }
        }
        // NFTA_LOOKUP_SET 1.
        "lookup" => {
            if let Some(name) = attr(1) {
                r.sets.push(string(&name));
            }
        }
        "masq" => r.action = Action::Snat,
        "reject" => r.action = Action::Reject,
        _ => {}
    }
}

/// One netlink message of a datagram.
struct Msg<'a> {
    kind: u16,
    seq: u32,
    body: &'a [u8],
}

fn messages(mut buf: &[u8]) -> Vec<Msg<'_>> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        out.push(Msg {
            kind: u16::from_ne_bytes(buf[4..6].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[8..12].try_into().unwrap()),
            body: &buf[16..len],
        });
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

/// `SO_RCVTIMEO`: a receive that waits longer fails with `WouldBlock`.
pub fn set_timeout(s: &Socket, d: std::time::Duration) {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket and a timeval of the right size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, v: &[u8]) -> Vec<u8> {
        let mut out = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(v);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    #[test]
    fn a_trace_event_reads_field_by_field() {
        let mut a = nla(1, b"filter\0");
        a.extend(nla(2, b"FORWARD\0"));
        a.extend(nla(3, &9u64.to_be_bytes()));
        a.extend(nla(4, &3u32.to_be_bytes()));
        let mut verdict = nla(1, &(-3i32).to_be_bytes());
        verdict.extend(nla(2, b"KUBE-FORWARD\0"));
        a.extend(nla(5 | 0x8000, &verdict));
        a.extend(nla(6, &77u32.to_be_bytes()));
        a.extend(nla(8, &[0x45, 0, 0, 20]));
        a.extend(nla(14, &0x4000u32.to_be_bytes()));
        let t = trace(2, &a);
        assert_eq!(
            (t.table.as_str(), t.chain.as_str(), t.handle, t.kind),
            ("filter", "FORWARD", 9, 3)
        );
        assert_eq!(
            (t.verdict, t.target.as_str(), t.id, t.mark),
            (Some(-3), "KUBE-FORWARD", 77, 0x4000)
        );
        assert_eq!(t.network, [0x45, 0, 0, 20]);
    }

    #[test]
    fn an_iptables_nft_rule_gives_its_comment_and_target() {
        let expr = |name: &str, data: Vec<u8>| {
            let mut e = nla(1, format!("{name}\0").as_bytes());
            e.extend(nla(2 | 0x8000, &data));
            nla(1 | 0x8000, &e)
        };
        let mut comment = vec![0u8; 256];
        comment[..19].copy_from_slice(b"default/web:http cl");
        let mut m = nla(1, b"comment\0");
        m.extend(nla(2, &0u32.to_be_bytes()));
        m.extend(nla(3, &comment));
        let mut exprs = expr("match", m);
        exprs.extend(expr("target", nla(1, b"DNAT\0")));
        let mut a = nla(3, &12u64.to_be_bytes());
        a.extend(nla(4 | 0x8000, &exprs));
        let r = rule_info(&a);
        assert_eq!(
            r,
            RuleInfo {
                handle: 12,
                comment: "default/web:http cl".into(),
                action: Action::Dnat,
                xt: true,
                sets: vec![]
            }
        );

        // nft's own comment is user data.
        let mut ud = vec![0u8, 5];
        ud.extend_from_slice(b"hi!!\0");
        let r = rule_info(&nla(7, &ud));
        assert_eq!(r.comment, "hi!!");
    }
}
