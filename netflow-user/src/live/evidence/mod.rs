//! The node's answers to the cause finder (`correlate::cause::evidence`):
//! sysctls, devices and neighbour entries of any network namespace, and the
//! NAT rules behind a translation (`natrules`: the ruleset's text), read
//! from a thread that enters it (`/proc/sys`, rtnetlink and the tools it
//! starts answer for the reading thread's namespace). Answers are kept a
//! second: a flood of drops asks the same questions.
//!
//! Counters (conntrack's statistics, legacy x_tables rules) are answered
//! as moved since the previous read of that namespace; the first read is
//! taken for every namespace when the run starts ([`NodeEvidence::with_baseline`]),
//! and a namespace made later starts from zero, as its counters did.
mod ctnetlink;
mod legacy;
mod natrules;
pub(crate) mod rtnl;

use std::{
    collections::HashMap,
    os::fd::AsFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::in_netns;
use crate::correlate::cause::evidence::{
    Answer, ConntrackState, Evidence, LegacyMoved, LinkInfo, Neighbour, Query,
};
use crate::decode::xtables;

/// How long an answer is reused.
const KEEP: Duration = Duration::from_secs(1);
/// Answers kept at most.
const MAX_KEPT: usize = 4096;
/// Legacy entries that moved, said at most.
const MAX_MOVED: usize = 1024;

#[derive(Default)]
pub struct NodeEvidence {
    kept: HashMap<Query, (Instant, Option<Answer>)>,
    /// Namespace inode -> a path that opens it.
    paths: HashMap<u32, PathBuf>,
    scanned: Option<Instant>,
    /// The ruleset's text per namespace and family (`iptables-save -t nat`,
    /// `nft -a list ruleset`), read at most once a KEEP.
    rulesets: HashMap<(u32, u8), (Instant, Ruleset)>,
    /// Counters as last read, per namespace (and family).
    conntrack_last: HashMap<u32, ctnetlink::Stats>,
    legacy_last: HashMap<(u32, u8), Vec<xtables::Entry>>,
}

/// What a namespace's counters are at a moment.
struct Counters {
    conntrack: Option<ctnetlink::Stats>,
    legacy: [Option<Vec<xtables::Entry>>; 2],
}

fn counters_here() -> Counters {
    let legacy = |f| legacy::save(f).map(|t| xtables::parse_save(&t));
    Counters {
        conntrack: ctnetlink::stats().ok(),
        legacy: [legacy(2), legacy(10)],
    }
}

#[derive(Clone, Default)]
struct Ruleset {
    iptables: Option<String>,
    nft: Option<String>,
}

/// A tool's output, when it ran and succeeded (the node image may lack it).
fn tool(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

impl NodeEvidence {
    pub fn new() -> Self {
        Self::default()
    }

    /// With every namespace's counters read now: what a drop's cause
    /// compares them with.
    pub fn with_baseline() -> Self {
        let mut e = Self::new();
        e.scan();
        let paths: Vec<(u32, PathBuf)> = e.paths.iter().map(|(n, p)| (*n, p.clone())).collect();
        for (netns, path) in paths {
            let Some(c) = in_netns(&path, counters_here) else {
                continue;
            };
            if let Some(s) = c.conntrack {
                e.conntrack_last.insert(netns, s);
            }
            for (f, l) in [2u8, 10].into_iter().zip(c.legacy) {
                if let Some(l) = l {
                    e.legacy_last.insert((netns, f), l);
                }
            }
        }
        e
    }

    fn conntrack(&mut self, netns: u32) -> Option<ConntrackState> {
        let path = self.path(netns)?;
        let (now, (count, max)) = in_netns(&path, || {
            let s = ctnetlink::stats().ok()?;
            let cm = ctnetlink::count_and_max().ok();
            let sysctl = |k: &str| {
                std::fs::read_to_string(Path::new("/proc/sys/net/netfilter").join(k))
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let count = cm.map(|c| c.0).or_else(|| sysctl("nf_conntrack_count"));
            let max = cm.and_then(|c| c.1).or_else(|| sysctl("nf_conntrack_max"));
            Some((s, (count.unwrap_or(0), max.unwrap_or(0))))
        })
        .flatten()?;
        let was = self.conntrack_last.insert(netns, now).unwrap_or_default();
        let d = now.since(&was);
        Some(ConntrackState {
            count,
            max,
            drop: d.drop,
            early_drop: d.early_drop,
            insert_failed: d.insert_failed,
            clash_resolve: d.clash_resolve,
        })
    }

    fn legacy(&mut self, netns: u32, family: u8) -> Option<LegacyMoved> {
        let path = self.path(netns)?;
        let now = in_netns(&path, move || legacy::save(family))
            .flatten()
            .map(|t| xtables::parse_save(&t))?;
        let was = self
            .legacy_last
            .insert((netns, family), now.clone())
            .unwrap_or_default();
        let mut moved = xtables::moved(&was, &now);
        // kube-proxy's tables run to tens of thousands of rules; what moved
        // in a second is far less, but bounded all the same.
        moved.truncate(MAX_MOVED);
        Some(LegacyMoved {
            rules: xtables::rule_count(&now) as u64,
            moved,
        })
    }

    /// Paths of the node's network namespaces, by inode: the tracer's own,
    /// named ones (`ip netns`, CNI's), then every process's.
    fn scan(&mut self) {
        if self.scanned.is_some_and(|t| t.elapsed() < KEEP) {
            return;
        }
        self.scanned = Some(Instant::now());
        let mut add = |p: PathBuf| {
            if let Ok(ino) = crate::live::select::netns::inode_of(&p) {
                self.paths.entry(ino).or_insert(p);
            }
        };
        add(PathBuf::from("/proc/self/ns/net"));
        for dir in ["/run/netns", "/var/run/netns"] {
            if let Ok(d) = std::fs::read_dir(dir) {
                d.flatten().for_each(|e| add(e.path()));
            }
        }
        if let Ok(d) = std::fs::read_dir("/proc") {
            for e in d.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                {
                    add(e.path().join("ns/net"));
                }
            }
        }
    }

    fn path(&mut self, netns: u32) -> Option<PathBuf> {
        if let Some(p) = self
            .paths
            .get(&netns)
            .filter(|p| crate::live::select::netns::inode_of(p).ok() == Some(netns))
        {
            return Some(p.clone());
        }
        self.paths.remove(&netns);
        self.scan();
        self.paths.get(&netns).cloned()
    }

    fn read(&mut self, q: &Query) -> Option<Answer> {
        match q {
            Query::Sysctl { netns, key } => {
                if !sysctl_key_ok(key) {
                    return None;
                }
                let path = self.path(*netns)?;
                let file = Path::new("/proc/sys").join(key);
                in_netns(&path, move || std::fs::read_to_string(file).ok())
                    .flatten()
                    .map(|v| Answer::Value(v.trim().to_string()))
            }
            Query::Link { netns, ifindex } => self.link(*netns, *ifindex).map(Answer::Link),
            Query::DnatRule {
                netns,
                proto,
                from,
                to,
            } => {
                let family = if to.contains('[') || to.matches(':').count() > 1 {
                    10
                } else {
                    2
                };
                let rs = self.ruleset(*netns, family)?;
                let w = natrules::Wanted {
                    proto: *proto,
                    from,
                    to,
                };
                rs.iptables
                    .as_deref()
                    .and_then(|t| natrules::from_iptables(t, family, &w))
                    .or_else(|| rs.nft.as_deref().and_then(|t| natrules::from_nft(t, &w)))
                    .map(|n| Answer::Nat(Box::new(n)))
            }
            Query::Conntrack { netns } => self.conntrack(*netns).map(Answer::Conntrack),
            Query::Legacy { netns, family } => self
                .legacy(*netns, *family)
                .map(|l| Answer::Legacy(Box::new(l))),
            Query::Neighbours { netns, ifindex } => {
                let path = self.path(*netns)?;
                let idx = *ifindex;
                let n = in_netns(&path, move || rtnl::neighbours(idx).ok()).flatten()?;
                Some(Answer::Neighbours(
                    n.into_iter()
                        .map(|(addr, s)| Neighbour {
                            addr,
                            state: rtnl::nud_name(s).to_string(),
                        })
                        .collect(),
                ))
            }
        }
    }

    /// The namespace's NAT rules as the tools print them, read in it.
    fn ruleset(&mut self, netns: u32, family: u8) -> Option<Ruleset> {
        if let Some((at, r)) = self.rulesets.get(&(netns, family)) {
            if at.elapsed() < KEEP {
                return Some(r.clone());
            }
        }
        let path = self.path(netns)?;
        let save = if family == 10 {
            "ip6tables-save"
        } else {
            "iptables-save"
        };
        let r = in_netns(&path, move || Ruleset {
            iptables: tool(save, &["-t", "nat"]),
            nft: tool("nft", &["-a", "list", "ruleset"]),
        })?;
        if self.rulesets.len() >= 64 {
            self.rulesets.clear();
        }
        self.rulesets
            .insert((netns, family), (Instant::now(), r.clone()));
        Some(r)
    }

    fn links(&mut self, netns: u32) -> Option<Vec<rtnl::Link>> {
        let path = self.path(netns)?;
        in_netns(&path, || rtnl::links().ok()).flatten()
    }

    /// A device, its master, and for a veth the namespace and ifindex of
    /// its other end (the device there whose peer is this one).
    fn link(&mut self, netns: u32, ifindex: u32) -> Option<LinkInfo> {
        let all = self.links(netns)?;
        let l = all.iter().find(|l| l.ifindex == ifindex)?;
        let master = l
            .master
            .and_then(|m| all.iter().find(|x| x.ifindex == m))
            .map(|m| m.name.clone());
        let peer = match (l.kind.as_str(), l.link, l.link_netnsid) {
            ("veth", Some(p), None) => Some((netns, p)),
            ("veth", Some(p), Some(id)) => self.peer_netns(netns, id).map(|ns| (ns, p)),
            _ => None,
        };
        Some(LinkInfo {
            name: l.name.clone(),
            master,
            peer,
        })
    }
}

impl NodeEvidence {
    /// The namespace that `netns` knows by id `nsid` (where a veth's other
    /// end is): asked of the kernel for each known namespace, never guessed
    /// from ifindexes (those repeat across namespaces).
    fn peer_netns(&mut self, netns: u32, nsid: i32) -> Option<u32> {
        let here = self.path(netns)?;
        self.scan();
        let others: Vec<(u32, std::fs::File)> = self
            .paths
            .iter()
            .filter(|(n, _)| **n != netns)
            .filter_map(|(n, p)| Some((*n, std::fs::File::open(p).ok()?)))
            .collect();
        in_netns(&here, move || {
            others
                .iter()
                .find(|(_, f)| rtnl::nsid_of(f.as_fd()).ok().flatten() == Some(nsid))
                .map(|(n, _)| *n)
        })
        .flatten()
    }
}

impl Evidence for NodeEvidence {
    fn ask(&mut self, q: &Query) -> Option<Answer> {
        if let Some((at, a)) = self.kept.get(q) {
            if at.elapsed() < KEEP {
                return a.clone();
            }
        }
        let a = self.read(q);
        if self.kept.len() >= MAX_KEPT {
            self.kept.clear();
        }
        self.kept.insert(q.clone(), (Instant::now(), a.clone()));
        a
    }
}

/// Only sysctl names (no way out of /proc/sys).
fn sysctl_key_ok(key: &str) -> bool {
    !key.is_empty()
        && !key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_only() {
        assert!(sysctl_key_ok("net/ipv4/conf/eth0/forwarding"));
        assert!(sysctl_key_ok("net/bridge/bridge-nf-call-iptables"));
        assert!(!sysctl_key_ok("net/../../etc/shadow"));
        assert!(!sysctl_key_ok("/etc/passwd"));
        assert!(!sysctl_key_ok(""));
    }
}
