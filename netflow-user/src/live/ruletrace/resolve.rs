//! A rule handle → the rule's text, comment and action, while the rule
//! exists. netflow writes no nft expression renderer: the text is the
//! line `iptables-save` prints for the rule (rules iptables-nft wrote: the
//! same position in the same chain) or the line `nft -a list chain` prints
//! with its handle; the comment and the action come from the rule's own
//! expressions over netlink (iptables' `comment` match, nft's comment),
//! so they are there even where neither tool is installed.
//!
//! Runs on the namespace's watcher thread: the tools it starts inherit the
//! thread's network namespace. Cached until the ruleset changes
//! (`NFT_MSG_NEWGEN`).
use std::{collections::HashMap, process::Command};

use super::netlink::{Nl, RuleInfo};
use crate::decode::rule::{family_name, Action};

/// Chains whose rules are cached at most (a ruleset of thousands of
/// chains is read chain by chain, as packets meet them).
const MAX_CHAINS: usize = 1024;

pub struct Resolved {
    pub rule: String,
    pub comment: String,
    pub action: Action,
    /// The comment of the set or map element the packet matched in the
    /// rule's lookup (kube-proxy's nftables mode names Services there).
    pub element: String,
}

/// What a lookup's key is made of: the packet's destination address,
/// protocol and destination port.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub daddr: std::net::IpAddr,
    pub proto: u8,
    pub dport: Option<u16>,
}

pub struct Resolver {
    nl: Nl,
    chains: HashMap<(u8, String, String), Vec<RuleInfo>>,
    /// `iptables-save -t TABLE` lines, per family and table (None: not an
    /// iptables-nft table, or no iptables-save).
    saves: HashMap<(u8, String), Option<Vec<String>>>,
    /// `nft -a list table` output per family and table (None: no nft).
    nft: HashMap<(u8, String), Option<String>>,
    /// `nft -j list map|set` per family, table and set (None: no nft).
    sets: HashMap<(u8, String, String), Option<serde_json::Value>>,
}

impl Resolver {
    pub fn new(nl: Nl) -> Self {
        Resolver {
            nl,
            chains: HashMap::new(),
            saves: HashMap::new(),
            nft: HashMap::new(),
            sets: HashMap::new(),
        }
    }

    /// The ruleset changed.
    pub fn clear(&mut self) {
        self.chains.clear();
        self.saves.clear();
        self.nft.clear();
        self.sets.clear();
    }

    pub fn resolve(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
        handle: u64,
        lookup: Option<Key>,
    ) -> Resolved {
        let rules = self.rules(family, table, chain);
        let pos = rules.iter().position(|r| r.handle == handle);
        let info = pos.map(|i| rules[i].clone()).unwrap_or_default();
        let xt_table = rules.iter().any(|r| r.xt);
        let count = rules.len();
        let mut rule = String::new();
        if let (Some(pos), true) = (pos, xt_table || is_iptables_table(table)) {
            rule = self
                .iptables_line(family, table, chain, pos, count)
                .unwrap_or_default();
        }
        if rule.is_empty() {
            rule = self.nft_line(family, table, handle).unwrap_or_default();
        }
        log::trace!("rule {handle} sets {:?} key {lookup:?}", info.sets);
        let element = match lookup {
            Some(k) => info
                .sets
                .iter()
                .filter(|s| !s.starts_with("__"))
                .find_map(|s| self.element_comment(family, table, s, k))
                .unwrap_or_default(),
            None => String::new(),
        };
        Resolved {
            rule,
            comment: info.comment,
            action: info.action,
            element,
        }
    }

    /// A chain's rules, read once per ruleset generation.
    fn rules(&mut self, family: u8, table: &str, chain: &str) -> &Vec<RuleInfo> {
        if self.chains.len() >= MAX_CHAINS {
            self.clear();
        }
        let key = (family, table.to_string(), chain.to_string());
        let nl = &mut self.nl;
        self.chains.entry(key).or_insert_with(|| {
            nl.chain_rules(family, table, chain).unwrap_or_else(|e| {
                log::debug!("rules of {table} {chain}: {e}");
                Vec::new()
            })
        })
    }

    /// The comment of a chain's first rule: Calico names a policy there
    /// (`Policy NS/knp.default.NAME ingress`), in chains `cali-pi-*` and
    /// `cali-po-*`; other chains are not read for it.
    pub fn owner_comment(&mut self, family: u8, table: &str, chain: &str) -> String {
        if !(chain.starts_with("cali-pi-") || chain.starts_with("cali-po-")) {
            return String::new();
        }
        self.rules(family, table, chain)
            .first()
            .map(|r| r.comment.clone())
            .unwrap_or_default()
    }

    /// The comment of the element of `set` the packet's key matches.
    fn element_comment(&mut self, family: u8, table: &str, set: &str, k: Key) -> Option<String> {
        let json = self
            .sets
            .entry((family, table.to_string(), set.to_string()))
            .or_insert_with(|| {
                ["map", "set"].iter().find_map(|kind| {
                    run(
                        "nft",
                        &["-j", "list", kind, family_name(family), table, set],
                    )
                    .and_then(|s| serde_json::from_str(&s).ok())
                })
            })
            .as_ref()?;
        element_comment(json, k)
    }

    /// Rule `pos` of `count` in the chain, as iptables-save prints it, when
    /// iptables-save lists exactly as many rules there.
    fn iptables_line(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
        pos: usize,
        count: usize,
    ) -> Option<String> {
        let lines = self
            .saves
            .entry((family, table.to_string()))
            .or_insert_with(|| iptables_save(family, table))
            .as_ref()?;
        let prefix = format!("-A {chain} ");
        let of_chain: Vec<&String> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
        (of_chain.len() == count).then(|| of_chain[pos].clone())
    }

    /// Handles are unique in a table: one listing of the table serves
    /// every rule of it until the ruleset changes.
    fn nft_line(&mut self, family: u8, table: &str, handle: u64) -> Option<String> {
        let out = self
            .nft
            .entry((family, table.to_string()))
            .or_insert_with(|| run("nft", &["-a", "list", "table", family_name(family), table]))
            .as_ref()?;
        nft_rule_line(out, handle)
    }
}

/// In `nft -j list map` output: the comment of the element whose key is
/// the packet's destination (`addr`, `addr . proto . port`, ...).
pub fn element_comment(json: &serde_json::Value, k: Key) -> Option<String> {
    let proto = match k.proto {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        _ => "",
    };
    let matches = |key: &serde_json::Value| -> bool {
        let parts: Vec<&serde_json::Value> = match key.get("concat") {
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            _ => vec![key],
        };
        parts.iter().all(|p| match p {
            serde_json::Value::String(s) => {
                s.parse::<std::net::IpAddr>().is_ok_and(|a| a == k.daddr) || s == proto
            }
            serde_json::Value::Number(n) => k.dport.is_some_and(|d| n.as_u64() == Some(d as u64)),
            _ => false,
        })
    };
    let objects = json.get("nftables")?.as_array()?;
    for o in objects {
        let Some(set) = o.get("map").or_else(|| o.get("set")) else {
            continue;
        };
        for e in set
            .get("elem")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            // Maps: [key, value]; sets: key. A key with a comment is {"elem":{"val","comment"}}.
            let key = match e {
                serde_json::Value::Array(kv) => kv.first()?,
                other => other,
            };
            if let Some(inner) = key.get("elem") {
                if matches(inner.get("val")?) {
                    return inner.get("comment")?.as_str().map(str::to_string);
                }
            }
        }
    }
    None
}

/// Tables iptables-nft makes.
fn is_iptables_table(t: &str) -> bool {
    matches!(t, "filter" | "nat" | "mangle" | "raw" | "security")
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rule lines of one table, from the nf_tables variant of iptables-save.
fn iptables_save(family: u8, table: &str) -> Option<Vec<String>> {
    let tool = match family {
        2 => "iptables-save",
        10 => "ip6tables-save",
        _ => return None,
    };
    let out = run(tool, &["-t", table])?;
    // iptables-legacy's rules are not nf_tables rules: never theirs.
    // ("# Generated by iptables-save v1.8.9 (nf_tables)", or iptables-nft-save).
    if !out
        .lines()
        .next()
        .is_some_and(|l| l.contains("nf_tables") || l.contains("-nft"))
    {
        return None;
    }
    Some(
        out.lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect(),
    )
}

/// The rule line of `nft -a list` output that ends with this handle,
/// without its handle comment (chains, sets and maps have handles too:
/// their lines open a block).
pub fn nft_rule_line(out: &str, handle: u64) -> Option<String> {
    let tag = format!("# handle {handle}");
    out.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_suffix(&tag))
        .map(str::trim_end)
        .find(|l| !l.ends_with('{'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_element_a_packet_matched_names_its_comment() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "ip", "name": "no-endpoint-services", "table": "kube-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict", "elem": [[{"elem": {"val": {"concat": ["10.96.0.11", "tcp", 80]}, "comment": "default/empty:http"}}, {"goto": {"target": "reject-chain"}}], [{"concat": ["10.96.0.12", "tcp", 80]}, {"goto": {"target": "reject-chain"}}]]}}]}"#,
        )
        .unwrap();
        let key = |a: &str, port| Key {
            daddr: a.parse().unwrap(),
            proto: 6,
            dport: Some(port),
        };
        assert_eq!(
            element_comment(&json, key("10.96.0.11", 80)).as_deref(),
            Some("default/empty:http")
        );
        assert_eq!(
            element_comment(&json, key("10.96.0.11", 81)),
            None,
            "another port"
        );
        assert_eq!(
            element_comment(&json, key("10.96.0.12", 80)),
            None,
            "no comment"
        );
    }

    #[test]
    fn the_nft_line_of_a_handle() {
        let out = "table ip filter {\n\tchain FORWARD { # handle 2\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip saddr 10.0.0.1 counter packets 0 bytes 0 drop # handle 12\n\t\tip saddr 10.0.0.2 accept # handle 13\n\t}\n}\n";
        assert_eq!(
            nft_rule_line(out, 12).as_deref(),
            Some("ip saddr 10.0.0.1 counter packets 0 bytes 0 drop")
        );
        assert_eq!(nft_rule_line(out, 2), None, "a chain is not a rule");
        let map = "table ip kube-proxy {\n\tmap service-ips { # handle 3\n\t}\n}\n";
        assert_eq!(nft_rule_line(map, 3), None, "nor is a map");
        assert_eq!(nft_rule_line(out, 1), None);
    }
}
