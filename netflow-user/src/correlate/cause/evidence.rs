//! What the node says when a packet fails: the questions the cause finder
//! asks (a sysctl of a namespace, a device and its veth peer, the
//! neighbour entries of a device, the rules behind a translation) and their
//! answers. A live run asks the
//! node (`live::evidence`) and records every answer; a replay answers from
//! the recording, so it names the same causes anywhere.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::decode::rule::RuleHit;

/// One question about the node, in a network namespace (by inode).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    /// A sysctl under `/proc/sys`, as a path: `net/ipv4/ip_forward`.
    Sysctl { netns: u32, key: String },
    /// A device: its name, master (bridge) and the other end of a veth.
    Link { netns: u32, ifindex: u32 },
    /// The neighbour (ARP/NDP) entries of a device.
    Neighbours { netns: u32, ifindex: u32 },
    /// The ruleset's rule that translates `proto` packets for `from` (the
    /// original destination, `ip:port`) to `to`, for a translation no rule
    /// tracing saw (a packet selected only once translated, a kernel
    /// without tracing).
    DnatRule {
        netns: u32,
        proto: u8,
        from: String,
        to: String,
    },
    /// Conntrack in a namespace: its count against the max, and its
    /// per-CPU statistics summed, as moved since the previous read (or
    /// since netflow started).
    Conntrack { netns: u32 },
    /// The legacy x_tables rules and built-in chain policies of a namespace
    /// (`family` 2 or 10) whose packet counters moved since the previous
    /// read (or since netflow started).
    Legacy { netns: u32, family: u8 },
}

/// Conntrack's state in a namespace ([`Query::Conntrack`]). The
/// statistics are those `conntrack -S` prints, summed over CPUs, counted
/// since the previous read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackState {
    /// Entries in the namespace's table, and `nf_conntrack_max`.
    pub count: u64,
    pub max: u64,
    /// Packets dropped for want of an entry (the table full after
    /// `early_drop` found nothing to evict).
    pub drop: u64,
    /// Unreplied entries evicted to make room.
    pub early_drop: u64,
    /// Entries that lost a race to be inserted: their packet dropped.
    pub insert_failed: u64,
    /// Races resolved without a drop.
    pub clash_resolve: u64,
}

/// What moved in a namespace's legacy tables ([`Query::Legacy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyMoved {
    /// Rules in the namespace's legacy tables of that family.
    pub rules: u64,
    /// Rules and policies whose counters moved, with the packets counted.
    pub moved: Vec<crate::decode::xtables::Entry>,
}

/// The rules behind a destination translation, read from the ruleset: the
/// one that translates, and the one that matched the original destination
/// on the way to it (kube-proxy's `KUBE-NODEPORTS` or `KUBE-SERVICES` rule,
/// the CNI portmap plugin's `CNI-HOSTPORT-DNAT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRules {
    pub dnat: RuleHit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<RuleHit>,
}

/// A device as the node describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub name: String,
    /// The bridge (or other master) it is a port of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The other end of a veth: (netns inode, ifindex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<(u32, u32)>,
}

/// A neighbour entry: the address and its state (`FAILED`, `INCOMPLETE`,
/// `REACHABLE`, ... as `ip neigh` prints them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    pub addr: IpAddr,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Value(String),
    Link(LinkInfo),
    Neighbours(Vec<Neighbour>),
    Nat(Box<NatRules>),
    Legacy(Box<LegacyMoved>),
    Conntrack(ConntrackState),
}

/// Kind 8 of a recording: a question and what the node answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    #[serde(flatten)]
    pub query: Query,
    pub answer: Option<Answer>,
}

/// Where answers come from: the node (live) or a recording.
pub trait Evidence {
    fn ask(&mut self, q: &Query) -> Option<Answer>;
}

/// How the cause finder asks (answers recorded by the caller).
pub type Ask<'a> = dyn FnMut(&Query) -> Option<Answer> + 'a;

/// A sysctl's value (trimmed).
pub fn sysctl(ask: &mut Ask, netns: u32, key: &str) -> Option<String> {
    match ask(&Query::Sysctl {
        netns,
        key: key.to_string(),
    })? {
        Answer::Value(v) => Some(v.trim().to_string()),
        _ => None,
    }
}

pub fn link(ask: &mut Ask, netns: u32, ifindex: u32) -> Option<LinkInfo> {
    match ask(&Query::Link { netns, ifindex })? {
        Answer::Link(l) => Some(l),
        _ => None,
    }
}

pub fn neighbours(ask: &mut Ask, netns: u32, ifindex: u32) -> Vec<Neighbour> {
    match ask(&Query::Neighbours { netns, ifindex }) {
        Some(Answer::Neighbours(n)) => n,
        _ => Vec::new(),
    }
}

/// The rules behind a translation of `proto` packets from `from` to `to`.
pub fn dnat_rules(
    ask: &mut Ask,
    netns: u32,
    proto: u8,
    from: String,
    to: String,
) -> Option<NatRules> {
    match ask(&Query::DnatRule {
        netns,
        proto,
        from,
        to,
    })? {
        Answer::Nat(n) => Some(*n),
        _ => None,
    }
}

/// Conntrack's state in a namespace (None: no conntrack there).
pub fn conntrack(ask: &mut Ask, netns: u32) -> Option<ConntrackState> {
    match ask(&Query::Conntrack { netns })? {
        Answer::Conntrack(c) => Some(c),
        _ => None,
    }
}

/// What moved in a namespace's legacy tables (None: it has none).
pub fn legacy(ask: &mut Ask, netns: u32, family: u8) -> Option<LegacyMoved> {
    match ask(&Query::Legacy { netns, family })? {
        Answer::Legacy(l) => Some(*l),
        _ => None,
    }
}

/// A sysctl path as `sysctl` names it: `net/ipv4/ip_forward` ->
/// `net.ipv4.ip_forward` (a device name keeps its dots as slashes do not
/// occur in it).
pub fn setting_name(key: &str) -> String {
    key.replace('/', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_as_recorded() {
        let a = Answered {
            query: Query::Link {
                netns: 7,
                ifindex: 3,
            },
            answer: Some(Answer::Link(LinkInfo {
                name: "veth1".into(),
                master: Some("br0".into()),
                peer: Some((9, 2)),
            })),
        };
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Answered>(&s).unwrap(), a);
        let n = Answered {
            query: Query::Neighbours {
                netns: 1,
                ifindex: 2,
            },
            answer: Some(Answer::Neighbours(vec![Neighbour {
                addr: "169.254.1.1".parse().unwrap(),
                state: "FAILED".into(),
            }])),
        };
        let s = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<Answered>(&s).unwrap(), n);
        let v = Answered {
            query: Query::Sysctl {
                netns: 1,
                key: "net/ipv4/ip_forward".into(),
            },
            answer: Some(Answer::Value("0".into())),
        };
        let s = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Answered>(&s).unwrap(), v);
        let hit = crate::correlate::rules::tests::hit(
            "KUBE-SEP-X",
            "default/web:http",
            1,
            crate::decode::rule::Action::Dnat,
        );
        let r = Answered {
            query: Query::DnatRule {
                netns: 1,
                proto: 6,
                from: "192.168.1.1:30080".into(),
                to: "10.0.0.2:8080".into(),
            },
            answer: Some(Answer::Nat(Box::new(NatRules {
                dnat: hit.clone(),
                entry: Some(hit),
            }))),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Answered>(&s).unwrap(), r);
        for a in [
            Answered {
                query: Query::Conntrack { netns: 3 },
                answer: Some(Answer::Conntrack(ConntrackState {
                    count: 8,
                    max: 8,
                    drop: 2,
                    ..Default::default()
                })),
            },
            Answered {
                query: Query::Legacy {
                    netns: 3,
                    family: 2,
                },
                answer: Some(Answer::Legacy(Box::new(LegacyMoved {
                    rules: 4,
                    moved: crate::decode::xtables::parse_save(
                        "*filter\n:FORWARD DROP [1:60]\n[2:120] -A FORWARD -j DROP\n",
                    ),
                }))),
            },
        ] {
            let s = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Answered>(&s).unwrap(), a, "{s}");
        }
        assert_eq!(
            setting_name("net/ipv4/conf/va/forwarding"),
            "net.ipv4.conf.va.forwarding"
        );
    }
}
