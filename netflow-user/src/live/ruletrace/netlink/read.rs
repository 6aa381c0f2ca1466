//! Reading what nf_tables sends: messages, their attributes one by one,
//! trace events and rules (an iptables-nft rule's comment and target).
use netlink_packet_core::{NlaBuffer, NlasIterator};

use crate::decode::rule::Action;

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

/// A table's name (`NFTA_TABLE_NAME`) from a `NFT_MSG_NEWTABLE`'s attributes.
pub fn table_name(attrs: &[u8]) -> Option<String> {
    nlas(attrs)
        .find(|a| a.kind() == 1)
        .map(|a| string(a.value()))
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
pub(super) struct Msg<'a> {
    pub kind: u16,
    pub seq: u32,
    pub body: &'a [u8],
}

pub(super) fn messages(mut buf: &[u8]) -> Vec<Msg<'_>> {
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
