//! Which rule decided a packet's fate, and which Kubernetes object that rule
//! belongs to.
//!
//! nftables tracing reports every rule a selected packet matched and every
//! base chain policy it met, in order (see `decode::rule`). The rule that
//! dropped it is the last one whose verdict is drop; the rule that
//! translated it is the last one whose expressions translate (DNAT, SNAT,
//! masquerade). The Kubernetes object is read from what the owners of the
//! rules write into them, never guessed:
//!
//! - kube-proxy, iptables mode: comments `"ns/name:port cluster IP"`,
//!   `"ns/name:port -> ip:port"`, `"ns/name:port"` (KUBE-SEP chains) and
//!   `"ns/name:port has no endpoints"` (its REJECT rules);
//! - kube-proxy, nftables mode (table `kube-proxy`): chains named
//!   `service-HASH-ns/name/proto/port`, `endpoint-HASH-ns/name/proto/port__ip/port`,
//!   `external-HASH-...`, and the comments of `no-endpoint-services` elements;
//! - kube-router: comments naming the policy (`... policy name NAME namespace NS`)
//!   or the pod a default deny protects (`... POD name:NAME namespace: NS`);
//! - Calico (iptables dataplane): the first rule of a policy's chain
//!   (`cali-pi-*`, `cali-po-*`, names mostly hashed) says whose it is,
//!   `Policy NS/knp.default.NAME ingress` (felix's name, 3.26–3.31) or
//!   `KubernetesNetworkPolicy NS/NAME ingress` (3.32 on); the live side
//!   reads it for each jump into such a chain ([`RuleHit::target_comment`]).
//!   A packet no policy accepted is dropped in the workload's chain
//!   (`cali-tw-*`, "... Drop if no policies passed packet") after the
//!   policies it was judged by: those jumps name them.
//!
//! Anything else gets its rule and comment, and no object.
use crate::decode::{
    packet::Tuple,
    rule::{verdict, Action, RuleHit, TraceKind},
};

/// A Kubernetes object a rule belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sRef {
    /// `Service`, `NetworkPolicy` or `Pod` (a pod a default deny protects).
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// The Service's port name (or number) as kube-proxy names it.
    pub port: Option<String>,
    /// kube-proxy rejects the packet because the Service has no endpoints.
    pub no_endpoints: bool,
}

impl K8sRef {
    /// `ns/name:port` (or `ns/name`, or `name` for a cluster-wide object).
    pub fn display(&self) -> String {
        let name = match &self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.clone(),
        };
        if self.namespace.is_empty() {
            name
        } else {
            format!("{}/{name}", self.namespace)
        }
    }

    fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        K8sRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            port: None,
            no_endpoints: false,
        }
    }
}

/// A rule that decided something about the packet, with its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub hit: RuleHit,
    pub k8s: Option<K8sRef>,
    /// A drop because no policy accepted the packet: the policies that
    /// judged it, in order (`k8s` is the last one).
    pub judged_by: Vec<K8sRef>,
    /// How a translated packet reached its Service: `NodePort`,
    /// `externalIP`, `LoadBalancer`, `ClusterIP` or `hostPort`.
    pub via: Option<&'static str>,
}

/// The rule that dropped the packet (a rule, or a base chain's policy).
pub fn drop_rule(hits: &[RuleHit]) -> Option<RuleMatch> {
    let i = hits.iter().rposition(|h| h.verdict == verdict::DROP)?;
    Some(matched(hits, i))
}

/// The rule that translated the packet's destination (`dnat`) or source.
pub fn nat_rule(hits: &[RuleHit], dnat: bool) -> Option<RuleMatch> {
    let want = if dnat { Action::Dnat } else { Action::Snat };
    let i = hits
        .iter()
        .rposition(|h| h.kind == TraceKind::Rule && h.action == want)?;
    Some(matched(hits, i))
}

/// Rule `i` with the object it, or the rules that led to it, name.
fn matched(hits: &[RuleHit], i: usize) -> RuleMatch {
    let hit = hits[i].clone();
    // The deciding rule first, then the jumps that led to its chain (a
    // jump from KUBE-SERVICES names the Service of the chain it jumped to);
    // never a rule of another path.
    let mut chain = hit.chain.as_str();
    let mut path = vec![&hits[i]];
    for h in hits[..i].iter().rev() {
        if matches!(h.verdict, verdict::JUMP | verdict::GOTO) && h.target == chain {
            path.push(h);
            chain = &h.chain;
        }
    }
    if let Some(k8s) = path.into_iter().find_map(object_of) {
        let via = (hit.action == Action::Dnat)
            .then(|| reached(&hits[..i]))
            .flatten();
        // kube-router's reject for a pod: the policies its chain ran the
        // packet through before ("run through nw policy NAME", in the pod's
        // namespace) selected the pod and none accepted it.
        let judged_by = if k8s.kind == "Pod" && hit.verdict == verdict::DROP {
            hits[..i]
                .iter()
                .filter(|h| h.chain == hit.chain && h.verdict == verdict::JUMP)
                .filter_map(|h| h.comment.trim().strip_prefix("run through nw policy "))
                .filter(|name| is_name(name))
                .map(|name| K8sRef::new("NetworkPolicy", &k8s.namespace, name))
                .collect()
        } else {
            Vec::new()
        };
        return RuleMatch {
            hit,
            k8s: Some(k8s),
            judged_by,
            via,
        };
    }
    // Dropped where no policy accepted it: the policies the chain jumped
    // to before (in nested chains too: Calico groups policies) judged it.
    let mut judged_by = Vec::new();
    if hit.verdict == verdict::DROP {
        for h in hits[..i].iter().rev() {
            if matches!(h.verdict, verdict::JUMP | verdict::GOTO) {
                if h.target == hit.chain {
                    break;
                }
                if let Some(p) = calico(&h.target_comment) {
                    judged_by.push(p);
                }
            }
        }
    }
    judged_by.reverse();
    let via = (hit.action == Action::Dnat)
        .then(|| reached(&hits[..i]))
        .flatten();
    RuleMatch {
        hit,
        k8s: judged_by.last().cloned(),
        judged_by,
        via,
    }
}

/// How the packet reached a translation: from the last rule on its way
/// that says (kube-proxy's entry rules, the portmap plugin's chain).
fn reached(hits: &[RuleHit]) -> Option<&'static str> {
    hits.iter().rev().find_map(reached_by)
}

/// What one rule says about how a packet reaches a Service: kube-proxy's
/// `KUBE-NODEPORTS` (nftables mode: `nodeports`) and the comments of its
/// `KUBE-SERVICES` rules (`... cluster IP`, `... external IP`, `...
/// loadbalancer IP`); the CNI portmap plugin's `CNI-HOSTPORT-DNAT` and
/// `CNI-DN-*` chains.
pub fn reached_by(h: &RuleHit) -> Option<&'static str> {
    let c = h.comment.trim();
    match h.chain.as_str() {
        "KUBE-NODEPORTS" | "nodeports" => Some("NodePort"),
        "CNI-HOSTPORT-DNAT" => Some("hostPort"),
        ch if ch.starts_with("CNI-DN-") => Some("hostPort"),
        _ if c.ends_with(" external IP") => Some("externalIP"),
        _ if c.ends_with(" loadbalancer IP") => Some("LoadBalancer"),
        _ if c.ends_with(" cluster IP") => Some("ClusterIP"),
        _ => None,
    }
}

/// A translation no tracing saw, named from the ruleset: the translating
/// rule, its object (or the entry rule's), and how the packet got there.
pub fn from_ruleset(n: &crate::correlate::cause::evidence::NatRules) -> RuleMatch {
    let entry = n.entry.as_ref();
    RuleMatch {
        hit: n.dnat.clone(),
        k8s: object_of(&n.dnat).or_else(|| entry.and_then(object_of)),
        judged_by: Vec::new(),
        via: entry.and_then(reached_by).or_else(|| reached_by(&n.dnat)),
    }
}

/// The object one rule names, by its comment or its chain; in kube-proxy's
/// nftables table also by the comment of the map element the packet
/// matched (`no-endpoint-services` sends to `reject-chain`: no endpoints).
pub fn object_of(h: &RuleHit) -> Option<K8sRef> {
    from_comment(&h.comment)
        .or_else(|| calico(&h.target_comment))
        .or_else(|| {
            if h.table != "kube-proxy" {
                return None;
            }
            from_nft_chain(&h.chain)
                .or_else(|| from_nft_chain(&h.target))
                .or_else(|| {
                    let mut svc = service_port(h.element.trim())?;
                    svc.no_endpoints = h.target == "reject-chain";
                    Some(svc)
                })
        })
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// `ns/name` or `ns/name:port`, exactly.
fn service_port(s: &str) -> Option<K8sRef> {
    let (ns, rest) = s.split_once('/')?;
    let (name, port) = match rest.split_once(':') {
        Some((n, p)) if !p.is_empty() && !p.contains(char::is_whitespace) => {
            (n, Some(p.to_string()))
        }
        Some(_) => return None,
        None => (rest, None),
    };
    (is_name(ns) && is_name(name)).then(|| K8sRef {
        kind: "Service",
        namespace: ns.to_string(),
        name: name.to_string(),
        port,
        no_endpoints: false,
    })
}

fn from_comment(c: &str) -> Option<K8sRef> {
    let c = c.trim();
    if c.is_empty() {
        return None;
    }
    // kube-router's policy chains and default deny; Calico's policy chains.
    if let Some(r) = kube_router(c).or_else(|| calico(c)) {
        return Some(r);
    }
    // kube-proxy: "ns/name:port <what>".
    let (head, tail) = c.split_once(' ').unwrap_or((c, ""));
    let mut svc = service_port(head)?;
    let known = [
        "",
        "cluster IP",
        "external IP",
        "loadbalancer IP",
        "health check node port",
        "has no endpoints",
        "has no local endpoints",
    ];
    if !(known.contains(&tail) || tail.starts_with("-> ")) {
        return None;
    }
    svc.no_endpoints = tail.starts_with("has no");
    Some(svc)
}

/// `... policy name NAME namespace NS` and `... POD name:NAME namespace: NS`.
fn kube_router(c: &str) -> Option<K8sRef> {
    let words: Vec<&str> = c.split_whitespace().collect();
    let after = |key: &[&str]| {
        words
            .windows(key.len() + 1)
            .find(|w| w[..key.len()] == *key)
            .map(|w| w[key.len()])
    };
    if let (Some(name), Some(ns)) = (after(&["policy", "name"]), after(&["namespace"])) {
        return (is_name(name) && is_name(ns)).then(|| K8sRef {
            kind: "NetworkPolicy",
            namespace: ns.to_string(),
            name: name.to_string(),
            port: None,
            no_endpoints: false,
        });
    }
    let pod = words.iter().position(|w| *w == "POD")?;
    let name = words.get(pod + 1)?.strip_prefix("name:")?;
    let ns = after(&["namespace:"])?;
    (is_name(name) && is_name(ns)).then(|| K8sRef {
        kind: "Pod",
        namespace: ns.to_string(),
        name: name.to_string(),
        port: None,
        no_endpoints: false,
    })
}

/// The comment Calico writes on the first rule of a policy's chain:
/// `Policy NS/knp.default.NAME ingress` (felix's name: `knp.default.` a
/// Kubernetes NetworkPolicy, `TIER.NAME` Calico's own, namespaced or
/// global), or from 3.32 on `KIND [NS/]NAME ingress|egress`.
fn calico(c: &str) -> Option<K8sRef> {
    let mut w = c.split_whitespace();
    let (kind, id, dir) = (w.next()?, w.next()?, w.next()?);
    if w.next().is_some() || !matches!(dir, "ingress" | "egress") {
        return None;
    }
    let (ns, name) = match id.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => ("", id),
    };
    let (kind, name) = match kind {
        "Policy" => [
            ("knp.default.", "NetworkPolicy"),
            ("kanp.adminnetworkpolicy.", "AdminNetworkPolicy"),
            (
                "kbanp.baselineadminnetworkpolicy.",
                "BaselineAdminNetworkPolicy",
            ),
        ]
        .iter()
        .find_map(|(prefix, kind)| Some((*kind, name.strip_prefix(prefix)?)))
        .unwrap_or_else(|| {
            // Calico's own, stored as TIER.NAME: the default tier's
            // policies go by their plain name.
            let kind = if ns.is_empty() {
                "GlobalNetworkPolicy"
            } else {
                "CalicoNetworkPolicy"
            };
            (kind, name.strip_prefix("default.").unwrap_or(name))
        }),
        "KubernetesNetworkPolicy" => ("NetworkPolicy", name),
        "KubernetesAdminNetworkPolicy" => ("AdminNetworkPolicy", name),
        "KubernetesBaselineAdminNetworkPolicy" => ("BaselineAdminNetworkPolicy", name),
        "NetworkPolicy" => ("CalicoNetworkPolicy", name),
        "GlobalNetworkPolicy" => ("GlobalNetworkPolicy", name),
        _ => return None,
    };
    (is_name(name) && (ns.is_empty() || is_name(ns))).then(|| K8sRef::new(kind, ns, name))
}

/// kube-proxy's nftables chains: `service-HASH-ns/name/proto/port`,
/// `external-HASH-...`, `endpoint-HASH-ns/name/proto/port__ip/port`.
fn from_nft_chain(chain: &str) -> Option<K8sRef> {
    let rest = ["service-", "external-", "endpoint-"]
        .iter()
        .find_map(|p| chain.strip_prefix(p))?;
    let (_hash, spec) = rest.split_once('-')?;
    let spec = spec.split("__").next()?;
    let mut parts = spec.split('/');
    let (ns, name, _proto, port) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (is_name(ns) && is_name(name) && parts.next().is_none()).then(|| K8sRef {
        kind: "Service",
        namespace: ns.to_string(),
        name: name.to_string(),
        port: Some(port.to_string()),
        no_endpoints: false,
    })
}

/// The hint for a drop by a rule.
pub fn drop_hint(m: &RuleMatch, flow: Option<&Tuple>) -> String {
    let h = &m.hit;
    let at = if h.kind == TraceKind::Policy {
        format!("the policy of chain {} in table {}", h.chain, h.table)
    } else if h.handle == 0 {
        // Read from the legacy tables' counters: no handle, the rule's text.
        format!("legacy iptables rule `{}` in table {}", h.rule, h.table)
    } else {
        format!(
            "rule {} in chain {} of table {} {}",
            h.handle,
            h.chain,
            crate::decode::rule::family_name(h.family),
            h.table
        )
    };
    if let (Some(pod), false) = (
        m.k8s.as_ref().filter(|k| k.kind == "Pod"),
        m.judged_by.is_empty(),
    ) {
        let names: Vec<String> = m.judged_by.iter().map(|k| k.name.clone()).collect();
        let what = flow
            .map(|t| {
                let port = t.dport.map(|p| format!(":{p}")).unwrap_or_default();
                format!("{} -> {port}", t.src)
            })
            .unwrap_or_else(|| "this traffic".into());
        return format!(
            "pod {}/{} is selected by NetworkPolicy {}; none allows {what}: kube-router rejected it ({at}); check {}",
            pod.namespace,
            pod.name,
            names.join(", "),
            m.judged_by.iter().map(check).collect::<Vec<_>>().join(" and ")
        );
    }
    if !m.judged_by.is_empty() {
        let names: Vec<String> = m
            .judged_by
            .iter()
            .map(|k| format!("{} {}", k.kind, k.display()))
            .collect();
        return format!(
            "no rule of {} allows this traffic: the policies that select this endpoint judged it and none accepted it ({at}); check {}",
            names.join(", "),
            m.judged_by.iter().map(check).collect::<Vec<_>>().join(" and ")
        );
    }
    match &m.k8s {
        Some(k) if k.no_endpoints && h.comment.contains("has no local endpoints") => format!(
            "Service {} has externalTrafficPolicy: Local and no ready endpoint on this node: kube-proxy drops traffic from outside to it here ({at}); send it to a node that runs one of its pods (the load balancer's health check does), or use externalTrafficPolicy: Cluster",
            k.display()
        ),
        Some(k) if k.no_endpoints => format!(
            "Service {} has no ready endpoints: kube-proxy rejects connections to it ({at}); check the Service's selector and its pods' readiness (kubectl get endpointslices -n {} -l kubernetes.io/service-name={})",
            k.display(),
            k.namespace,
            k.name
        ),
        Some(k) if k.kind.ends_with("NetworkPolicy") => format!(
            "{} {} dropped it ({at}); check {}",
            k.kind,
            k.display(),
            check(k)
        ),
        Some(k) if k.kind == "Pod" => format!(
            "the NetworkPolicies that select pod {}/{} do not allow this traffic: its firewall chain rejected it ({at}); check kubectl get networkpolicy -n {}",
            k.namespace, k.name, k.namespace
        ),
        Some(k) => format!("a rule of {} {} dropped it ({at})", k.kind, k.display()),
        None if h.kind == TraceKind::Policy => format!(
            "no rule accepted it and {at} is drop (policy of chain {} in table {} {} = drop; Docker sets FORWARD's so): add an accept rule for pod traffic or set the policy to accept",
            h.chain,
            crate::decode::rule::family_name(h.family),
            h.table
        ),
        None if h.comment.is_empty() => format!("a firewall rule dropped it: {at}"),
        None => format!("a firewall rule dropped it: {at} (\"{}\")", h.comment),
    }
}

/// The command that shows a policy.
fn check(k: &K8sRef) -> String {
    let (resource, ns) = match k.kind {
        "NetworkPolicy" => ("describe networkpolicy", true),
        "CalicoNetworkPolicy" => ("get networkpolicies.projectcalico.org -o yaml", true),
        "GlobalNetworkPolicy" => ("get globalnetworkpolicies.projectcalico.org -o yaml", false),
        "AdminNetworkPolicy" => ("describe adminnetworkpolicy", false),
        "BaselineAdminNetworkPolicy" => ("describe baselineadminnetworkpolicy", false),
        _ => ("describe", true),
    };
    if ns && !k.namespace.is_empty() {
        format!("kubectl {resource} -n {} {}", k.namespace, k.name)
    } else {
        format!("kubectl {resource} {}", k.name)
    }
}

#[cfg(test)]
pub(crate) mod tests;
