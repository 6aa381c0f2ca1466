//! nf_tables over netlink: netflow's owned trace table, the trace events,
//! and rules by handle. Requests are built with `netlink-packet-netfilter`;
//! replies and events are read attribute by attribute (their expressions
//! may be of any kind, which a reader of the whole message would refuse).
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_netfilter::{
    nftables::{
        ChainAttribute, ChainMessage, Hook, HookNumber, NfTablesMessage, RuleAttribute,
        RuleMessage, TableAttribute, TableFlags, TableMessage,
    },
    none::ControlMessage,
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

mod read;
mod selection;

use read::messages;
pub use read::{rule_info, table_name, trace, Incoming, RuleInfo, Trace};
use selection::trace_expressions;
pub use selection::{L4Match, Match, TRACE_BURST, TRACE_RATE};

/// Multicast groups of NETLINK_NETFILTER.
pub const NFNLGRP_NFTABLES: u32 = 7;
pub const NFNLGRP_NFTRACE: u32 = 9;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u8 = 0;
const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_NEWGEN: u8 = 15;
const NFT_MSG_TRACE: u8 = 17;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NFPROTO_INET: u8 = 1;
/// `NF_INET_PRE_ROUTING`, `NF_INET_LOCAL_OUT`.
const HOOK_PREROUTING: u32 = 0;
const HOOK_OUTPUT: u32 = 3;
/// Before every other hook at these points (raw is -300, defrag -400):
/// the flag is set before any rule netflow should name runs.
pub const TRACE_PRIORITY: i32 = -350;
/// Right after DNAT (-100), before the filter (0).
pub const TRACE_AFTER_DNAT_PRIORITY: i32 = -99;

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
        for (chain, hook, priority) in [
            ("pre", HOOK_PREROUTING, TRACE_PRIORITY),
            ("out", HOOK_OUTPUT, TRACE_PRIORITY),
            // A packet DNAT made selected (a NodePort call to a selected
            // pod) matches only once translated: marked right after DNAT.
            ("dnat", HOOK_PREROUTING, TRACE_AFTER_DNAT_PRIORITY),
        ] {
            let mut c = nf(
                NFPROTO_INET,
                NfTablesMessage::NewChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table(table.into()),
                        ChainAttribute::Name(chain.into()),
                        ChainAttribute::Hook(vec![
                            Hook::Number(HookNumber::Other(hook)),
                            Hook::Priority(priority as u32),
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
        let get = NfTablesMessage::GetRule(RuleMessage {
            attributes: vec![
                RuleAttribute::Table(table.into()),
                RuleAttribute::Chain(chain.into()),
            ],
        });
        self.dump(family, get, NFT_MSG_NEWRULE, |b| Some(rule_info(b)))
    }

    /// The names of the namespace's nf_tables tables, of every family
    /// (iptables-nft's included).
    pub fn table_names(&mut self) -> Result<Vec<String>, NetlinkError> {
        let get = NfTablesMessage::GetTable(TableMessage { attributes: vec![] });
        self.dump(0, get, NFT_MSG_NEWTABLE, table_name)
    }

    /// Dump what `get` asks for: each reply of kind `new` read by `read`.
    fn dump<T>(
        &mut self,
        family: u8,
        get: NfTablesMessage,
        new: u8,
        read: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, NetlinkError> {
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0),
                get,
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
                    k if k == (NFNL_SUBSYS_NFTABLES << 8 | new as u16) => {
                        if let Some(r) = m.body.get(4..).and_then(&read) {
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
