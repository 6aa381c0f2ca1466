//! The rule behind a destination translation, read from the ruleset's text
//! (what `iptables-save -t nat` and `nft -a list ruleset` print): the rule
//! that translates to the address a packet was sent on to, and the rule
//! that matched its original destination on the way (kube-proxy's
//! `KUBE-NODEPORTS` / `KUBE-SERVICES` rules, the portmap plugin's
//! `CNI-HOSTPORT-DNAT`). For translations no rule tracing saw: a packet
//! selected only once translated (a NodePort call traced by its pod), a
//! kernel without tracing. Rules are matched on what they say about the
//! packet (protocol, destination address, destination port) and on their
//! target; a rule that says nothing of the destination is never an entry.
use crate::correlate::cause::evidence::NatRules;
use crate::decode::rule::{verdict, Action, RuleHit, TraceKind};
use crate::decode::xtables::{ports, words};

/// What a translation is looked up by.
pub struct Wanted<'a> {
    pub proto: u8,
    /// The original destination: `ip:port`, `[ip6]:port` or `ip`.
    pub from: &'a str,
    /// Where it was sent on to, in the same form.
    pub to: &'a str,
}

impl Wanted<'_> {
    fn original(&self) -> (&str, Option<u16>) {
        split(self.from)
    }

    fn proto_name(&self) -> &'static str {
        match self.proto {
            6 => "tcp",
            17 => "udp",
            132 => "sctp",
            1 => "icmp",
            58 => "ipv6-icmp",
            _ => "",
        }
    }

    /// A rule's `to` (as it prints it) says this translation: the same
    /// address and port, or the address alone when the port is kept.
    fn to_matches(&self, target: &str) -> bool {
        let (ta, tp) = split(self.to);
        let (_, fp) = self.original();
        target == self.to || (target.trim_matches(['[', ']']) == ta && tp == fp)
    }
}

/// `ip:port` / `[ip6]:port` / `ip` -> (address, port).
fn split(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest
            .split_once("]:")
            .unwrap_or((rest.trim_end_matches(']'), ""));
        return (a, p.parse().ok());
    }
    match s.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') => (a, p.parse().ok()),
        _ => (s, None),
    }
}

/// One `-A CHAIN ...` line of `iptables-save`, as far as it matters here.
#[derive(Default, Debug)]
struct IptLine<'a> {
    chain: String,
    proto: Option<String>,
    dst: Option<String>,
    dports: Vec<(u16, u16)>,
    comment: String,
    target: String,
    to: Option<String>,
    negated: bool,
    text: &'a str,
}

fn ipt_line(text: &str) -> Option<IptLine<'_>> {
    let w = words(text);
    if w.first().map(String::as_str) != Some("-A") {
        return None;
    }
    let mut l = IptLine {
        chain: w.get(1)?.clone(),
        text,
        ..Default::default()
    };
    let mut i = 2;
    while i < w.len() {
        let next = w.get(i + 1).cloned();
        match w[i].as_str() {
            "!" => l.negated = true,
            "-p" => l.proto = next,
            "-d" => {
                l.dst = next.map(|d| {
                    d.strip_suffix("/32")
                        .or_else(|| d.strip_suffix("/128"))
                        .unwrap_or(&d)
                        .to_string()
                })
            }
            "--dport" | "--dports" | "--destination-port" | "--destination-ports" => {
                l.dports = next.as_deref().map(ports).unwrap_or_default()
            }
            "--comment" => l.comment = next.unwrap_or_default(),
            "-j" | "-g" => l.target = next.unwrap_or_default(),
            "--to-destination" => l.to = next,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    Some(l)
}

impl IptLine<'_> {
    /// Nothing in the rule contradicts the packet's protocol and original
    /// destination.
    fn fits(&self, w: &Wanted) -> bool {
        let (addr, port) = w.original();
        !self.negated
            && self.proto.as_deref().is_none_or(|p| p == w.proto_name())
            && self.dst.as_deref().is_none_or(|d| d == addr)
            && (self.dports.is_empty()
                || port.is_some_and(|p| self.dports.iter().any(|(a, b)| (*a..=*b).contains(&p))))
    }

    fn says_destination(&self) -> bool {
        self.dst.is_some() || !self.dports.is_empty()
    }

    fn hit(&self, family: u8, action: Action) -> RuleHit {
        RuleHit {
            kind: TraceKind::Rule,
            family,
            table: "nat".into(),
            chain: self.chain.clone(),
            handle: 0,
            verdict: if action == Action::Dnat {
                verdict::ACCEPT
            } else {
                verdict::JUMP
            },
            target: if action == Action::Dnat {
                String::new()
            } else {
                self.target.clone()
            },
            rule: self.text.to_string(),
            comment: self.comment.clone(),
            element: String::new(),
            target_comment: String::new(),
            action,
        }
    }
}

/// The Service part of a kube-proxy comment (`ns/name:port`).
fn service_of(comment: &str) -> &str {
    comment.split_whitespace().next().unwrap_or("")
}

/// From `iptables-save -t nat` output (family 2 or 10).
pub fn from_iptables(save: &str, family: u8, w: &Wanted) -> Option<NatRules> {
    let lines: Vec<IptLine> = save.lines().filter_map(ipt_line).collect();
    let dnats: Vec<&IptLine> = lines
        .iter()
        .filter(|l| l.target == "DNAT" && l.to.as_deref().is_some_and(|t| w.to_matches(t)))
        .filter(|l| l.fits(w))
        .collect();
    if dnats.is_empty() {
        return None;
    }
    // The entry: a jump on the original destination (most specific first:
    // one that names the address and the port).
    let entry = lines
        .iter()
        .filter(|l| l.target != "DNAT" && !l.target.is_empty() && l.says_destination())
        .filter(|l| !l.target.starts_with("KUBE-MARK"))
        .filter(|l| l.fits(w))
        .max_by_key(|l| (l.dst.is_some() as u8) + (!l.dports.is_empty() as u8));
    // Two Services on one endpoint: the one the entry names; else the most
    // specific translation.
    let dnat = entry
        .filter(|e| !e.comment.is_empty())
        .and_then(|e| {
            dnats
                .iter()
                .find(|d| service_of(&d.comment) == service_of(&e.comment))
        })
        .or_else(|| {
            dnats
                .iter()
                .max_by_key(|l| (l.dst.is_some() as u8) + (!l.dports.is_empty() as u8))
        })?;
    Some(NatRules {
        dnat: dnat.hit(family, Action::Dnat),
        entry: entry.map(|e| e.hit(family, Action::Other)),
    })
}

fn family_number(name: &str) -> u8 {
    match name {
        "inet" => 1,
        "ip" => 2,
        "ip6" => 10,
        "bridge" => 7,
        "netdev" => 5,
        _ => 0,
    }
}

/// From `nft -a list ruleset` output: a native `dnat to` rule (kube-proxy's
/// nftables mode names the Service in the endpoint chain's name). Tables
/// netflow owns are not looked at.
pub fn from_nft(list: &str, w: &Wanted) -> Option<NatRules> {
    let (addr, port) = w.original();
    let (mut family, mut table, mut chain) = (0u8, String::new(), String::new());
    for raw in list.lines() {
        let line = raw.trim();
        let wd = words(line);
        match wd.first().map(String::as_str) {
            Some("table") if wd.len() >= 3 => {
                family = family_number(&wd[1]);
                table = wd[2].clone();
                continue;
            }
            Some("chain") if wd.len() >= 2 => {
                chain = wd[1].clone();
                continue;
            }
            _ => {}
        }
        if table.starts_with("netflow-") {
            continue;
        }
        let Some(at) = wd.iter().position(|t| t == "dnat") else {
            continue;
        };
        let Some(to) = wd[at..]
            .iter()
            .position(|t| t == "to")
            .and_then(|i| wd.get(at + i + 1))
        else {
            continue;
        };
        if !w.to_matches(to) {
            continue;
        }
        // What the rule says of the destination must be the packet's.
        let value_after = |key: &str| {
            wd.iter()
                .position(|t| t == key)
                .and_then(|i| wd.get(i + 1))
                .filter(|v| !v.starts_with(['{', '@', '!', '$']))
        };
        if value_after("daddr").is_some_and(|d| d.trim_end_matches("/32") != addr) {
            continue;
        }
        if value_after("dport").is_some_and(|d| Some(ports(d)) != port.map(|p| vec![(p, p)])) {
            continue;
        }
        let l4 = ["tcp", "udp", "sctp"];
        if wd.iter().any(|t| l4.contains(&t.as_str())) && !wd.iter().any(|t| *t == w.proto_name()) {
            continue;
        }
        let comment = wd
            .iter()
            .position(|t| t == "comment")
            .and_then(|i| wd.get(i + 1))
            .cloned()
            .unwrap_or_default();
        let (text, handle) = match line.rsplit_once(" # handle ") {
            Some((t, h)) => (t.trim(), h.trim().parse().unwrap_or(0)),
            None => (line, 0),
        };
        return Some(NatRules {
            dnat: RuleHit {
                kind: TraceKind::Rule,
                family,
                table: table.clone(),
                chain: chain.clone(),
                handle,
                verdict: verdict::ACCEPT,
                target: String::new(),
                rule: text.to_string(),
                comment,
                element: String::new(),
                target_comment: String::new(),
                action: Action::Dnat,
            },
            entry: None,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBE_PROXY: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Thu Dec  3 12:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -d 10.96.0.30/32 -p tcp -m comment --comment "default/api:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-API
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.100.0.2:8080" -j KUBE-SEP-WEB
-A KUBE-SEP-API -p tcp -m comment --comment "default/api:http" -m tcp -j DNAT --to-destination 10.100.0.2:8080
-A KUBE-SEP-WEB -s 10.100.0.2/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.100.0.2:8080
COMMIT
"#;

    #[test]
    fn a_nodeport_call_names_the_service_and_the_nodeport() {
        let w = Wanted {
            proto: 6,
            from: "192.168.5.1:30080",
            to: "10.100.0.2:8080",
        };
        let n = from_iptables(KUBE_PROXY, 2, &w).unwrap();
        // Two Services share the endpoint: the entry decides.
        assert_eq!(n.dnat.chain, "KUBE-SEP-WEB");
        assert_eq!(n.dnat.comment, "default/web:http");
        assert_eq!(n.dnat.action, Action::Dnat);
        assert!(n.dnat.rule.contains("--to-destination 10.100.0.2:8080"));
        let e = n.entry.unwrap();
        assert_eq!(e.chain, "KUBE-NODEPORTS");
        assert_eq!(crate::correlate::rules::reached_by(&e), Some("NodePort"));
    }

    #[test]
    fn a_cluster_ip_call_names_its_own_service() {
        let w = Wanted {
            proto: 6,
            from: "10.96.0.30:80",
            to: "10.100.0.2:8080",
        };
        let n = from_iptables(KUBE_PROXY, 2, &w).unwrap();
        assert_eq!(n.dnat.chain, "KUBE-SEP-API");
        let e = n.entry.unwrap();
        assert_eq!(e.comment, "default/api:http cluster IP");
        // UDP to the same place: no rule says so.
        let udp = Wanted { proto: 17, ..w };
        assert!(from_iptables(KUBE_PROXY, 2, &udp).is_none());
        // Another endpoint: none.
        let other = Wanted {
            proto: 6,
            from: "10.96.0.30:80",
            to: "10.100.0.3:8080",
        };
        assert!(from_iptables(KUBE_PROXY, 2, &other).is_none());
    }

    #[test]
    fn a_hostport_is_named_by_the_portmap_chains() {
        let save = r#"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"cbr0\" id: \"0123abcd\"" -m multiport --dports 8081,9000:9010 -j CNI-DN-5e1f
-A CNI-DN-5e1f -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.100.0.2:8080"#;
        let w = Wanted {
            proto: 6,
            from: "192.168.5.1:8081",
            to: "10.100.0.2:8080",
        };
        let n = from_iptables(save, 2, &w).unwrap();
        assert_eq!(n.dnat.chain, "CNI-DN-5e1f");
        let e = n.entry.unwrap();
        assert_eq!(e.comment, r#"dnat name: "cbr0" id: "0123abcd""#);
        assert_eq!(crate::correlate::rules::reached_by(&e), Some("hostPort"));
        let w = Wanted {
            from: "192.168.5.1:8082",
            ..w
        };
        assert!(from_iptables(save, 2, &w).is_none(), "another port");
    }

    #[test]
    fn native_nft_rules_and_kube_proxy_nft_mode() {
        let list = r#"table ip kp { # handle 5
	chain pre { # handle 1
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 192.168.5.1 tcp dport 30080 dnat to 10.100.0.2:8080 # handle 3
		ip daddr 203.0.113.10 tcp dport 80 dnat to 10.100.0.2:8080 comment "ext" # handle 4
	}
}
table ip kube-proxy { # handle 9
	chain endpoint-5OJB2KTY-default/web/tcp/http__10.100.0.3/8080 { # handle 20
		ip saddr 10.100.0.3 jump mark-for-masquerade # handle 21
		meta l4proto tcp dnat to 10.100.0.3:8080 # handle 22
	}
}
table inet netflow-7 { # handle 10
	chain x { # handle 1
		dnat to 10.100.0.4:8080 # handle 2
	}
}
"#;
        let w = Wanted {
            proto: 6,
            from: "203.0.113.10:80",
            to: "10.100.0.2:8080",
        };
        let n = from_nft(list, &w).unwrap();
        assert_eq!(
            (n.dnat.table.as_str(), n.dnat.chain.as_str()),
            ("kp", "pre")
        );
        assert_eq!(n.dnat.handle, 4);
        assert_eq!(n.dnat.comment, "ext");
        assert!(n.dnat.rule.starts_with("ip daddr 203.0.113.10"));
        let w = Wanted {
            proto: 6,
            from: "10.96.0.20:80",
            to: "10.100.0.3:8080",
        };
        let n = from_nft(list, &w).unwrap();
        assert_eq!(n.dnat.table, "kube-proxy");
        let k = crate::correlate::rules::object_of(&n.dnat).unwrap();
        assert_eq!(k.display(), "default/web:http");
        let w = Wanted {
            proto: 6,
            from: "10.96.0.20:80",
            to: "10.100.0.4:8080",
        };
        assert!(from_nft(list, &w).is_none(), "netflow's own tables");
    }

    #[test]
    fn endpoints_split() {
        assert_eq!(split("10.0.0.1:80"), ("10.0.0.1", Some(80)));
        assert_eq!(split("[fd00::1]:80"), ("fd00::1", Some(80)));
        assert_eq!(split("fd00::1"), ("fd00::1", None));
        assert_eq!(split("10.0.0.1"), ("10.0.0.1", None));
    }
}
