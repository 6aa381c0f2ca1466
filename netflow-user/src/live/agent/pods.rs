//! The pods of this node, listed again every few seconds: by network
//! namespace (what hops carry) and by address (what connections carry).
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use super::metrics::{Metrics, PodLabels};
use crate::live::trace::{NetnsList, PodLabels as NsLabels};

#[derive(Debug, Default, Clone)]
pub struct PodIndex {
    pub by_netns: HashMap<u32, PodLabels>,
    pub by_ip: HashMap<IpAddr, PodLabels>,
    /// Each pod's network namespace: (`ns/name`, path).
    pub netns: Vec<(String, std::path::PathBuf)>,
}

impl PodIndex {
    /// Labels for the namespace names output shows (`ns/name`).
    pub fn labels(&self) -> HashMap<u32, String> {
        self.by_netns
            .iter()
            .map(|(ino, p)| {
                let label = if p.namespace.is_empty() {
                    p.pod.clone()
                } else {
                    format!("{}/{}", p.namespace, p.pod)
                };
                (*ino, label)
            })
            .collect()
    }
}

/// List the pods again (their labels by namespace into `labels`, for the
/// output; their namespaces into `follow`, for netfilter links); retire the
/// series of those that went away. A runtime that does not answer keeps
/// the last listing.
pub fn refresh(
    index: &Arc<Mutex<PodIndex>>,
    labels: &NsLabels,
    follow: &NetnsList,
    metrics: &Metrics,
    endpoint: Option<&str>,
) {
    let list = match crate::live::select::cri::list_pods(endpoint) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("listing pods: {e}");
            return;
        }
    };
    // Named network namespaces that are no runtime pod's (off Kubernetes,
    // labs) stand in for pods too.
    let mut list = list;
    let known: Vec<u32> = list
        .iter()
        .filter_map(|p| crate::live::select::inode_of(&p.netns).ok())
        .collect();
    list.extend(
        crate::live::select::pod::netns_pods()
            .into_iter()
            .filter(|p| crate::live::select::inode_of(&p.netns).is_ok_and(|i| !known.contains(&i))),
    );
    let new = by_what_packets_carry(list);
    let Ok(mut cur) = index.lock() else { return };
    let gone: Vec<PodLabels> = cur
        .by_netns
        .values()
        .chain(cur.by_ip.values())
        .filter(|p| !new.by_netns.values().any(|n| n == *p) && !new.by_ip.values().any(|n| n == *p))
        .cloned()
        .collect();
    if let Ok(mut l) = labels.lock() {
        *l = new.labels();
    }
    // Netfilter links only where the pod has rules of its own: a
    // namespace without any runs no hook at all, and links there would be
    // the only hooks its packets pass (a cost, and nothing to see). A pod
    // that adds rules later gets its links at the next listing.
    let hooked: Vec<_> = new
        .netns
        .iter()
        .filter(|(_, path)| has_netfilter_rules(path))
        .cloned()
        .collect();
    if let Ok(mut f) = follow.lock() {
        *f = hooked;
    }
    *cur = new;
    drop(cur);
    for p in gone {
        metrics.retire(&p);
    }
}

/// The runtime's pods keyed by what packets carry.
fn by_what_packets_carry(list: Vec<crate::live::select::pod::Pod>) -> PodIndex {
    let mut by_netns = HashMap::new();
    let mut by_ip = HashMap::new();
    let mut netns = Vec::new();
    for p in list {
        let labels = PodLabels {
            namespace: p.namespace.clone().unwrap_or_default(),
            pod: p.name.clone(),
        };
        let name = match &p.namespace {
            Some(ns) => format!("{ns}/{}", p.name),
            None => p.name.clone(),
        };
        netns.push((name, p.netns.clone()));
        if let Ok(ino) = crate::live::select::inode_of(&p.netns) {
            by_netns.insert(ino, labels.clone());
        }
        for ip in p.ips {
            by_ip.insert(ip, labels.clone());
        }
    }
    PodIndex {
        by_netns,
        by_ip,
        netns,
    }
}

/// Does the namespace have netfilter rules of its own: an nf_tables table
/// (nft, iptables-nft) that is not netflow's, or a legacy xtables table
/// (hooked in a namespace only once something uses it)? When it cannot
/// tell, yes.
fn has_netfilter_rules(path: &std::path::Path) -> bool {
    crate::live::in_netns(path, || {
        let legacy = ["ip_tables_names", "ip6_tables_names"].iter().any(|f| {
            std::fs::read_to_string(format!("/proc/thread-self/net/{f}"))
                .is_ok_and(|t| !t.trim().is_empty())
        });
        let tables = crate::live::ruletrace::netlink::Nl::open()
            .and_then(|mut nl| nl.table_names())
            .map(|t| t.iter().any(|n| !n.starts_with("netflow-")));
        legacy || tables.unwrap_or(true)
    })
    .unwrap_or(true)
}
