//! Rule trace events: nftables traced a selected packet through a rule or a
//! base chain's policy. The live side reads them from `NFNLGRP_NFTRACE`,
//! resolves the rule's text and comment by its handle (while the rule still
//! exists) and writes them as events of the daemon's own point
//! [`Point::RuleTrace`], so a recording replays them anywhere.
//!
//! Layout (after the common header): the packet's headers as the trace
//! carried them (network header, then the first transport bytes; `len`
//! bytes), one byte [`Action`], then table, chain, jump target, rule text,
//! comment, element comment and the jump target's comment, each
//! NUL-terminated (an event written before the last one existed ends after
//! the element comment: it reads as empty). The header's `location` is the
//! rule handle, `reason` the verdict, `hook` the [`TraceKind`], `pf` the
//! family.
use netflow_common::Point;

use super::{raw::RawEvent, DecodeError};

/// Which trace event: a rule that matched, a base chain's policy, or the
/// end of a chain that returned (`enum nft_trace_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    Policy = 1,
    Return = 2,
    Rule = 3,
}

impl TraceKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Policy,
            2 => Self::Return,
            3 => Self::Rule,
            _ => return None,
        })
    }
}

/// What a rule does to the packet, read from its expressions (not its text):
/// a translation, a rejection, or nothing netflow names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Other = 0,
    Dnat = 1,
    Snat = 2,
    Reject = 3,
}

impl Action {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Dnat,
            2 => Self::Snat,
            3 => Self::Reject,
            _ => Self::Other,
        }
    }
}

/// Verdicts as nftables reports them (`NF_DROP`, `NF_ACCEPT`, `NFT_*`).
pub mod verdict {
    pub const DROP: i32 = 0;
    pub const ACCEPT: i32 = 1;
    pub const CONTINUE: i32 = -1;
    pub const BREAK: i32 = -2;
    pub const JUMP: i32 = -3;
    pub const GOTO: i32 = -4;
    pub const RETURN: i32 = -5;

    pub fn name(v: i32) -> &'static str {
        match v {
            DROP => "drop",
            ACCEPT => "accept",
            CONTINUE => "continue",
            BREAK => "break",
            JUMP => "jump",
            GOTO => "goto",
            RETURN => "return",
            2 => "stolen",
            3 => "queue",
            _ => "other",
        }
    }
}

/// One rule (or policy) nftables applied to a packet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleHit {
    pub kind: TraceKind,
    /// NFPROTO_* of the table (2 ip, 10 ip6, 1 inet, 7 bridge ...).
    pub family: u8,
    pub table: String,
    pub chain: String,
    /// The rule's handle (0 for a policy).
    pub handle: u64,
    pub verdict: i32,
    /// The chain a jump or goto went to.
    pub target: String,
    /// The rule as `iptables-save` (rules iptables-nft wrote) or `nft`
    /// prints it; empty where neither could say.
    pub rule: String,
    /// The rule's comment (`-m comment`, or nft's `comment "..."`).
    pub comment: String,
    /// The comment of the set or map element the packet matched in the
    /// rule's lookup (kube-proxy's nftables mode names Services there).
    pub element: String,
    /// The comment of the first rule of the chain a jump went to, where
    /// that names the chain's owner (Calico writes a policy's name there).
    pub target_comment: String,
    pub action: Action,
}

pub fn family_name(f: u8) -> &'static str {
    match f {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

/// What the live side knows of one trace event besides the rule.
pub struct TraceContext<'a> {
    pub ts_ns: u64,
    pub netns: u32,
    pub ifindex: u32,
    pub ifname: &'a str,
    pub mark: u32,
    /// Ethertype of the headers (0x0800, 0x86dd).
    pub l3_proto: u16,
    /// Network header then transport header bytes.
    pub headers: &'a [u8],
}

impl RuleHit {
    /// The event the daemon records for this hit.
    pub fn to_raw(&self, cx: &TraceContext) -> RawEvent {
        let mut data = cx.headers.to_vec();
        data.push(self.action as u8);
        for s in [
            &self.table,
            &self.chain,
            &self.target,
            &self.rule,
            &self.comment,
            &self.element,
            &self.target_comment,
        ] {
            data.extend(s.bytes().filter(|b| *b != 0));
            data.push(0);
        }
        RawEvent {
            ts_ns: cx.ts_ns,
            skb: 0,
            point: Point::RuleTrace,
            netns: cx.netns,
            ifindex: cx.ifindex,
            ifname: cx.ifname.to_string(),
            len: cx.headers.len() as u32,
            mark: cx.mark,
            reason: self.verdict as u32,
            location: self.handle,
            fp: 0,
            l3_proto: cx.l3_proto,
            hook: self.kind as u8,
            pf: self.family,
            flags: 0,
            data,
        }
    }

    /// Split a rule trace event into the hit and its packet headers.
    pub fn from_raw(raw: &RawEvent) -> Result<(Self, &[u8]), DecodeError> {
        let bad = || DecodeError::Rule;
        let n = raw.len as usize;
        let kind = TraceKind::from_u8(raw.hook).ok_or_else(bad)?;
        if n >= raw.data.len() {
            return Err(bad());
        }
        let (headers, rest) = raw.data.split_at(n);
        let action = Action::from_u8(rest[0]);
        let mut parts = rest[1..].split(|b| *b == 0);
        let mut next = || {
            parts
                .next()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .ok_or_else(bad)
        };
        let hit = RuleHit {
            kind,
            family: raw.pf,
            table: next()?,
            chain: next()?,
            target: next()?,
            rule: next()?,
            comment: next()?,
            element: next()?,
            // Absent in events written before it existed.
            target_comment: next().unwrap_or_default(),
            handle: raw.location,
            verdict: raw.reason as i32,
            action,
        };
        Ok((hit, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_survives_its_event_layout() {
        let hit = RuleHit {
            kind: TraceKind::Rule,
            family: 2,
            table: "filter".into(),
            chain: "KUBE-SERVICES".into(),
            handle: 42,
            verdict: verdict::DROP,
            target: String::new(),
            rule: "-A KUBE-SERVICES -d 10.96.0.11/32 -j REJECT".into(),
            comment: "default/empty:http has no endpoints".into(),
            element: String::new(),
            target_comment: "Policy default/knp.default.deny ingress".into(),
            action: Action::Reject,
        };
        let headers = [
            0x45u8, 0, 0, 20, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let cx = TraceContext {
            ts_ns: 7,
            netns: 4026531840,
            ifindex: 3,
            ifname: "eth0",
            mark: 0x4000,
            l3_proto: 0x0800,
            headers: &headers,
        };
        let bytes = super::super::encode(&hit.to_raw(&cx));
        let raw = RawEvent::try_from(bytes.as_slice()).unwrap();
        let (back, h) = RuleHit::from_raw(&raw).unwrap();
        assert_eq!(back, hit);
        assert_eq!(h, headers);
        assert_eq!(raw.mark, 0x4000);
        // An event written before the jump target's comment existed.
        let mut old = raw.clone();
        let cut = old.data.len() - hit.target_comment.len() - 1;
        old.data.truncate(cut);
        let (back, _) = RuleHit::from_raw(&old).unwrap();
        assert_eq!(back.target_comment, "");
        assert_eq!(back.element, hit.element);
    }

    #[test]
    fn a_truncated_hit_is_an_error_not_a_panic() {
        let mut raw = super::super::raw::sample();
        raw.point = Point::RuleTrace;
        raw.hook = 3;
        raw.len = 4;
        raw.data = vec![1, 2, 3, 4, 0, b'x'];
        assert!(RuleHit::from_raw(&raw).is_err());
        raw.len = 40;
        assert!(RuleHit::from_raw(&raw).is_err());
    }
}
