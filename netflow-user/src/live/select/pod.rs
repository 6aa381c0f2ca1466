//! Finding a pod's network namespace and addresses.
//!
//! On a Kubernetes node the container runtime knows the pods: it is asked
//! over CRI (see [`crate::live::select::cri`]). Off Kubernetes (and in tests) a named
//! network namespace (`ip netns`) is a pod of that name.
use std::{net::IpAddr, path::PathBuf};

use crate::live::select::{
    error::SelectError,
    netns::{named_netns, resolve_netns, Netns},
};

/// `[namespace/]name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: String,
}

impl PodRef {
    pub fn parse(s: &str) -> Result<Self, SelectError> {
        let bad = || SelectError::BadPod(s.to_string());
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: Some(ns.into()),
                    name: name.into(),
                })
            }
            None if !s.is_empty() => Ok(Self {
                namespace: None,
                name: s.into(),
            }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A pod as the runtime (or `ip netns`) describes it.
#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: Option<String>,
    pub name: String,
    pub netns: PathBuf,
    pub ips: Vec<IpAddr>,
    /// A hostNetwork pod (it shares the node's namespace): the ports it
    /// declares, which select it instead of a namespace.
    pub host_ports: Option<Vec<u16>>,
}

impl Pod {
    pub fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("pod {ns}/{}", self.name),
            None => format!("pod {}", self.name),
        }
    }
}

/// The closest `n` names to `want` (for "did you mean").
pub fn closest<'a>(want: &str, names: impl Iterator<Item = &'a str>, n: usize) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = names.map(|c| (strsim::jaro_winkler(want, c), c)).collect();
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Pick the one pod matching `want` among `pods`, or say why not.
pub fn choose(want: &PodRef, pods: Vec<Pod>) -> Result<Pod, SelectError> {
    let matching: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.name == want.name
                && want
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| p.namespace.as_ref() == Some(ns))
        })
        .collect();
    match matching.len() {
        1 => Ok(matching[0].clone()),
        0 => {
            let labels: Vec<String> = pods
                .iter()
                .map(|p| match &p.namespace {
                    Some(ns) => format!("{ns}/{}", p.name),
                    None => p.name.clone(),
                })
                .collect();
            let near = closest(&want.to_string(), labels.iter().map(|s| s.as_str()), 5);
            Err(SelectError::NoPod {
                pod: want.to_string(),
                closest: if near.is_empty() {
                    "no pods on this node".into()
                } else {
                    near.join(", ")
                },
            })
        }
        _ => Err(SelectError::AmbiguousPod {
            pod: want.name.clone(),
            namespaces: matching
                .iter()
                .filter_map(|p| p.namespace.clone())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Pods known from named network namespaces: each is a pod of its name.
pub fn netns_pods() -> Vec<Pod> {
    named_netns()
        .into_iter()
        .filter_map(|(name, _)| resolve_netns(&name).ok())
        .map(|n: Netns| Pod {
            namespace: None,
            name: n.name,
            netns: n.path,
            ips: n.addrs,
            host_ports: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: Option<&str>, name: &str) -> Pod {
        Pod {
            namespace: ns.map(Into::into),
            name: name.into(),
            netns: "/x".into(),
            ips: vec![],
            host_ports: None,
        }
    }

    #[test]
    fn parses_refs() {
        assert_eq!(
            PodRef::parse("web").unwrap(),
            PodRef {
                namespace: None,
                name: "web".into()
            }
        );
        assert_eq!(
            PodRef::parse("prod/web").unwrap().namespace.as_deref(),
            Some("prod")
        );
        assert!(PodRef::parse("a/b/c").is_err());
        assert!(PodRef::parse("/web").is_err());
        assert!(PodRef::parse("").is_err());
    }

    #[test]
    fn chooses_or_explains() {
        let pods = vec![
            pod(Some("prod"), "web-1"),
            pod(Some("dev"), "web-1"),
            pod(Some("prod"), "db-0"),
        ];
        let e = choose(&PodRef::parse("web-1").unwrap(), pods.clone()).unwrap_err();
        assert!(
            e.to_string().contains("prod") && e.to_string().contains("dev"),
            "{e}"
        );
        assert_eq!(
            choose(&PodRef::parse("dev/web-1").unwrap(), pods.clone())
                .unwrap()
                .namespace
                .as_deref(),
            Some("dev")
        );
        let e = choose(&PodRef::parse("prod/web-2").unwrap(), pods)
            .unwrap_err()
            .to_string();
        assert!(e.contains("prod/web-1"), "closest names listed: {e}");
    }
}
