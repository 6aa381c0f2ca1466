//! Legacy x_tables rulesets as `iptables-save -c` prints them: every rule
//! and built-in chain policy with its packet counter, and a rule's matches
//! as far as a packet's addresses, ports and protocol go.
//!
//! nftables tracing cannot see legacy x_tables (the `iptables-legacy`
//! backend that Amazon Linux 2 and older kube-proxy and CNI set-ups still
//! use); their own counters can. The live side saves the tables of a
//! namespace when netflow starts and again when a packet dies at a hook
//! with no nftables rule seen, and [`moved`] keeps what counted packets in
//! between: the cause finder names the rule among those whose matches
//! accept the dead packet.
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::decode::packet::{Proto, Tuple};

/// One counted entry of a saved ruleset: a rule, or a built-in chain's
/// policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub table: String,
    pub chain: String,
    /// The rule as saved (`-A CHAIN ...`, without its counters); empty for
    /// a chain's policy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// A built-in chain's policy (`ACCEPT`, `DROP`); empty for a rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy: String,
    pub packets: u64,
}

impl Entry {
    pub fn is_policy(&self) -> bool {
        self.rule.is_empty()
    }
}

/// The built-in chains, by netfilter hook number.
pub const HOOK_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// `[packets:bytes]` -> packets.
fn packets(c: &str) -> Option<u64> {
    c.strip_prefix('[')?.split(':').next()?.parse().ok()
}

/// Every rule and built-in policy of `iptables-save -c` output, in order.
pub fn parse_save(text: &str) -> Vec<Entry> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_string();
        } else if let Some(c) = line.strip_prefix(':') {
            // `:FORWARD DROP [3:180]`; a user chain's policy is `-`.
            let mut w = c.split_whitespace();
            let (Some(chain), Some(policy)) = (w.next(), w.next()) else {
                continue;
            };
            if policy != "-" {
                out.push(Entry {
                    table: table.clone(),
                    chain: chain.to_string(),
                    rule: String::new(),
                    policy: policy.to_string(),
                    packets: w.next().and_then(packets).unwrap_or(0),
                });
            }
        } else if line.starts_with('[') {
            // `[12:720] -A FORWARD ...`
            let Some((count, rule)) = line.split_once(' ') else {
                continue;
            };
            let Some(chain) = rule.strip_prefix("-A ").and_then(|r| r.split(' ').next()) else {
                continue;
            };
            out.push(Entry {
                table: table.clone(),
                chain: chain.to_string(),
                rule: rule.trim().to_string(),
                policy: String::new(),
                packets: packets(count).unwrap_or(0),
            });
        }
    }
    out
}

/// The number of rules in a saved ruleset.
pub fn rule_count(entries: &[Entry]) -> usize {
    entries.iter().filter(|e| !e.is_policy()).count()
}

/// Entries whose packet counters moved from `before` to `after`, with the
/// packets counted in between (a rule not there before: all of its
/// packets). Identical rules of a chain are told apart by their order.
pub fn moved(before: &[Entry], after: &[Entry]) -> Vec<Entry> {
    use std::collections::HashMap;
    type Key<'a> = (&'a str, &'a str, &'a str, &'a str, usize);
    fn keyed(entries: &[Entry]) -> Vec<(Key<'_>, u64)> {
        let mut seen: HashMap<(&str, &str, &str, &str), usize> = HashMap::new();
        entries
            .iter()
            .map(|e| {
                let k = (
                    e.table.as_str(),
                    e.chain.as_str(),
                    e.rule.as_str(),
                    e.policy.as_str(),
                );
                let n = seen.entry(k).or_default();
                *n += 1;
                ((k.0, k.1, k.2, k.3, *n), e.packets)
            })
            .collect()
    }
    let old: HashMap<Key, u64> = keyed(before).into_iter().collect();
    keyed(after)
        .into_iter()
        .zip(after)
        .filter_map(|((k, now), e)| {
            let was = old.get(&k).copied().unwrap_or(0);
            // A counter that went back (the table was restored) counts from zero.
            let d = if now >= was { now - was } else { now };
            (d > 0).then(|| Entry {
                packets: d,
                ..e.clone()
            })
        })
        .collect()
}

/// Shell-like words: double quotes group, a backslash escapes.
pub fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    any = true;
                }
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// `80`, `80,443`, `8000:8080` -> ranges.
pub fn ports(s: &str) -> Vec<(u16, u16)> {
    s.split(',')
        .filter_map(|p| match p.split_once(':') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => p.parse().ok().map(|v| (v, v)),
        })
        .collect()
}

/// A match on one field, possibly negated (`! -s 10.0.0.0/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field<T> {
    value: T,
    negated: bool,
}

impl<T> Field<T> {
    fn new(value: T, negated: bool) -> Self {
        Field { value, negated }
    }
}

/// A rule's matches on what a tuple says, its comment and its target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    proto: Option<Field<String>>,
    src: Option<Field<IpNet>>,
    dst: Option<Field<IpNet>>,
    sports: Option<Field<Vec<(u16, u16)>>>,
    dports: Option<Field<Vec<(u16, u16)>>>,
    pub comment: String,
    /// `-j` or `-g` target: `DROP`, `REJECT`, `ACCEPT`, a chain.
    pub target: String,
    pub goto: bool,
    /// A match module whose test on the packet cannot be read from its
    /// tuple (`-m conntrack`, `-m mark`, `-m set`, ...): it may or may not
    /// have matched.
    pub opaque: bool,
}

fn net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The matches of one saved rule (`-A CHAIN ...`).
pub fn rule(text: &str) -> Option<Rule> {
    let w = words(text);
    if w.first().map(String::as_str) != Some("-A") {
        return None;
    }
    let mut r = Rule {
        chain: w.get(1)?.clone(),
        ..Default::default()
    };
    let (mut i, mut negated) = (2, false);
    while i < w.len() {
        let next = w.get(i + 1).cloned().unwrap_or_default();
        match w[i].as_str() {
            "!" => {
                negated = true;
                i += 1;
                continue;
            }
            "-p" | "--protocol" => r.proto = Some(Field::new(next, negated)),
            "-s" | "--source" => r.src = net(&next).map(|n| Field::new(n, negated)),
            "-d" | "--destination" => r.dst = net(&next).map(|n| Field::new(n, negated)),
            "--sport" | "--sports" | "--source-port" | "--source-ports" => {
                r.sports = Some(Field::new(ports(&next), negated))
            }
            "--dport" | "--dports" | "--destination-port" | "--destination-ports" => {
                r.dports = Some(Field::new(ports(&next), negated))
            }
            "--comment" => r.comment = next,
            "-j" | "-g" => {
                r.goto = w[i] == "-g";
                r.target = next;
            }
            "-m" => {
                // Modules that only carry what is read above (or a comment).
                if !matches!(
                    next.as_str(),
                    "tcp" | "udp" | "sctp" | "multiport" | "comment"
                ) {
                    r.opaque = true;
                }
            }
            // Interfaces, and the target's own options: not judged here.
            _ => {
                negated = false;
                i += 1;
                continue;
            }
        }
        negated = false;
        i += 2;
    }
    Some(r)
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
        Proto::Icmpv6 => "ipv6-icmp",
        Proto::Other(132) => "sctp",
        Proto::Other(_) => "",
    }
}

impl Rule {
    /// Nothing the rule says of addresses, ports and protocol contradicts
    /// the packet's tuple.
    pub fn accepts(&self, t: &Tuple) -> bool {
        fn ok<T>(f: &Option<Field<T>>, test: impl Fn(&T) -> bool) -> bool {
            f.as_ref().is_none_or(|f| test(&f.value) != f.negated)
        }
        let in_ports = |port: Option<u16>| {
            move |r: &Vec<(u16, u16)>| {
                port.is_some_and(|p| r.iter().any(|(a, b)| (*a..=*b).contains(&p)))
            }
        };
        ok(&self.proto, |p| {
            p == "all" || p == proto_name(t.proto) || (p == "icmpv6" && t.proto == Proto::Icmpv6)
        }) && ok(&self.src, |n| n.contains(&t.src))
            && ok(&self.dst, |n| n.contains(&t.dst))
            && ok(&self.sports, in_ports(t.sport))
            && ok(&self.dports, in_ports(t.dport))
    }

    /// The rule ends a packet's way: `DROP` or `REJECT`.
    pub fn drops(&self) -> bool {
        matches!(self.target.as_str(), "DROP" | "REJECT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = r#"# Generated by iptables-save v1.8.9
*filter
:INPUT ACCEPT [10:600]
:FORWARD DROP [3:180]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
[7:420] -A FORWARD -j KUBE-SERVICES
[2:120] -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/db:pg has no endpoints" -m tcp --dport 5432 -j REJECT --reject-with icmp-port-unreachable
[0:0] -A FORWARD ! -s 10.0.0.0/8 -j DROP
[5:300] -A FORWARD -p udp -m multiport --dports 53,8000:8080 -j ACCEPT
COMMIT
"#;

    fn tuple(proto: Proto, src: &str, dst: &str, dport: u16) -> Tuple {
        Tuple {
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: Some(40000),
            dport: Some(dport),
        }
    }

    #[test]
    fn rules_and_policies_with_their_counters() {
        let e = parse_save(SAVE);
        assert_eq!(e.len(), 7, "{e:#?}");
        assert_eq!(rule_count(&e), 4);
        assert!(e[1].is_policy() && e[1].policy == "DROP" && e[1].packets == 3);
        assert_eq!(e[4].chain, "KUBE-SERVICES");
        assert_eq!(e[4].packets, 2);
        assert!(e[4].rule.starts_with("-A KUBE-SERVICES -d 10.96.0.10/32"));
    }

    #[test]
    fn only_what_counted_in_between_moved() {
        let before = parse_save(SAVE);
        let after = parse_save(
            &SAVE
                .replace("[2:120] -A KUBE", "[3:180] -A KUBE")
                .replace(":FORWARD DROP [3:180]", ":FORWARD DROP [5:300]")
                .replace("COMMIT", "[1:60] -A FORWARD -j DROP\nCOMMIT"),
        );
        let m = moved(&before, &after);
        assert_eq!(m.len(), 3, "{m:#?}");
        assert!(m[0].is_policy() && m[0].chain == "FORWARD" && m[0].packets == 2);
        assert_eq!((m[1].chain.as_str(), m[1].packets), ("KUBE-SERVICES", 1));
        assert_eq!(
            (m[2].rule.as_str(), m[2].packets),
            ("-A FORWARD -j DROP", 1)
        );
        assert!(moved(&before, &before).is_empty());
    }

    #[test]
    fn matches_are_read_against_the_tuple() {
        let e = parse_save(SAVE);
        let reject = rule(&e[4].rule).unwrap();
        assert_eq!(reject.comment, "default/db:pg has no endpoints");
        assert_eq!(reject.target, "REJECT");
        assert!(reject.drops() && !reject.opaque);
        assert!(reject.accepts(&tuple(Proto::Tcp, "10.0.0.5", "10.96.0.10", 5432)));
        assert!(!reject.accepts(&tuple(Proto::Tcp, "10.0.0.5", "10.96.0.10", 5433)));
        assert!(!reject.accepts(&tuple(Proto::Udp, "10.0.0.5", "10.96.0.10", 5432)));
        assert!(!reject.accepts(&tuple(Proto::Tcp, "10.0.0.5", "10.96.0.11", 5432)));
        let not_from = rule(&e[5].rule).unwrap();
        assert!(not_from.accepts(&tuple(Proto::Tcp, "192.168.1.1", "10.0.0.1", 80)));
        assert!(!not_from.accepts(&tuple(Proto::Tcp, "10.1.1.1", "10.0.0.1", 80)));
        let udp = rule(&e[6].rule).unwrap();
        assert!(udp.accepts(&tuple(Proto::Udp, "10.1.1.1", "10.0.0.1", 8080)));
        assert!(!udp.accepts(&tuple(Proto::Udp, "10.1.1.1", "10.0.0.1", 9000)));
        let jump = rule(&e[3].rule).unwrap();
        assert_eq!((jump.target.as_str(), jump.goto), ("KUBE-SERVICES", false));
        assert!(
            rule("-A X -m conntrack --ctstate INVALID -j DROP")
                .unwrap()
                .opaque
        );
    }
}
