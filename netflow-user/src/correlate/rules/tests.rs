//! Rules and objects named from synthetic rule traces: kube-proxy,
//! kube-router, Calico, and which drop or translation decides.
use super::*;

pub(crate) fn hit(chain: &str, comment: &str, v: i32, action: Action) -> RuleHit {
    RuleHit {
        kind: TraceKind::Rule,
        family: 2,
        table: "filter".into(),
        chain: chain.into(),
        handle: 7,
        verdict: v,
        target: String::new(),
        rule: String::new(),
        comment: comment.into(),
        element: String::new(),
        target_comment: String::new(),
        action,
    }
}

#[test]
fn kube_proxy_comments_name_the_service() {
    let r = from_comment("default/web:http cluster IP").unwrap();
    assert_eq!(
        (r.kind, r.display().as_str()),
        ("Service", "default/web:http")
    );
    let r = from_comment("default/web:http -> 10.244.1.5:8080").unwrap();
    assert_eq!(r.display(), "default/web:http");
    let r = from_comment("default/empty:http has no endpoints").unwrap();
    assert!(r.no_endpoints);
    assert_eq!(from_comment("kube-system/dns").unwrap().port, None);
    // Comments that are not kube-proxy's name nothing.
    assert_eq!(from_comment("allow ssh from the office"), None);
    assert_eq!(from_comment("a/b:c d e"), None);
    assert_eq!(from_comment("Foo/Bar:x"), None, "not DNS names");
}

#[test]
fn kube_router_comments_name_the_policy_or_the_pod() {
    let r = from_comment(
        "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-web namespace default",
    )
    .unwrap();
    assert_eq!(
        (r.kind, r.namespace.as_str(), r.name.as_str()),
        ("NetworkPolicy", "default", "allow-web")
    );
    let r =
        from_comment("rule to REJECT traffic destined for POD name:web-1 namespace: prod").unwrap();
    assert_eq!(
        (r.kind, r.namespace.as_str(), r.name.as_str()),
        ("Pod", "prod", "web-1")
    );
}

#[test]
fn calico_policy_comments_name_the_policy() {
    let name = |c: &str| calico(c).map(|r| (r.kind, r.display()));
    // felix 3.26–3.31: its own name for the policy.
    assert_eq!(
        name("Policy default/knp.default.deny-db ingress"),
        Some(("NetworkPolicy", "default/deny-db".into()))
    );
    assert_eq!(
        name("Policy prod/default.allow-dns egress"),
        Some(("CalicoNetworkPolicy", "prod/allow-dns".into()))
    );
    assert_eq!(
        name("Policy security.block-metadata egress"),
        Some(("GlobalNetworkPolicy", "security.block-metadata".into()))
    );
    assert_eq!(
        name("Policy kanp.adminnetworkpolicy.cluster-guard ingress"),
        Some(("AdminNetworkPolicy", "cluster-guard".into()))
    );
    // 3.32 on: the kind is written out.
    assert_eq!(
        name("KubernetesNetworkPolicy default/deny-db ingress"),
        Some(("NetworkPolicy", "default/deny-db".into()))
    );
    // Profiles, rule ids and the tier's own comments are no policy.
    assert_eq!(name("Profile kns.default ingress"), None);
    assert_eq!(name("cali:q6VcRL0gx-CI1iw6"), None);
    assert_eq!(
        name("End of tier default. Drop if no policies passed packet"),
        None
    );
    assert_eq!(name("Policy default/knp.default.deny-db sideways"), None);
}

#[test]
fn a_calico_tier_drop_names_every_policy_that_judged_the_packet() {
    let jump = |chain: &str, to: &str, policy: &str| RuleHit {
        target: to.into(),
        target_comment: policy.into(),
        ..hit(chain, "", verdict::JUMP, Action::Other)
    };
    let hits = vec![
        jump("FORWARD", "cali-FORWARD", ""),
        // An earlier workload chain's policy is not this drop's.
        jump(
            "cali-fw-cali1",
            "cali-po-_A",
            "Policy default/knp.default.egress ingress",
        ),
        RuleHit {
            verdict: verdict::GOTO,
            ..jump("cali-to-wl-dispatch", "cali-tw-cali2", "")
        },
        jump(
            "cali-tw-cali2",
            "cali-pi-_B",
            "Policy default/knp.default.allow-web ingress",
        ),
        jump("cali-tw-cali2", "cali-gi-_G", ""),
        jump(
            "cali-gi-_G",
            "cali-pi-_C",
            "Policy default/knp.default.deny-db ingress",
        ),
        hit(
            "cali-tw-cali2",
            "End of tier default. Drop if no policies passed packet",
            verdict::DROP,
            Action::Other,
        ),
    ];
    let m = drop_rule(&hits).unwrap();
    let names: Vec<String> = m.judged_by.iter().map(K8sRef::display).collect();
    assert_eq!(names, ["default/allow-web", "default/deny-db"]);
    assert_eq!(m.k8s.as_ref().unwrap().name, "deny-db");
    let hint = drop_hint(&m, None);
    assert!(
        hint.starts_with(
            "no rule of NetworkPolicy default/allow-web, NetworkPolicy default/deny-db allows"
        ),
        "{hint}"
    );
    // A policy's own drop: the jump into its chain names it.
    let mut own = hits[..4].to_vec();
    own.push(hit("cali-pi-_B", "cali:x", verdict::DROP, Action::Other));
    let m = drop_rule(&own).unwrap();
    assert!(m.judged_by.is_empty());
    assert_eq!(m.k8s.unwrap().display(), "default/allow-web");
}

#[test]
fn nft_mode_chains_name_the_service() {
    let mut h = hit(
        "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
        "",
        verdict::ACCEPT,
        Action::Dnat,
    );
    h.table = "kube-proxy".into();
    let r = object_of(&h).unwrap();
    assert_eq!(r.display(), "ns1/svc1:p80");
    h.table = "mytable".into();
    assert_eq!(object_of(&h), None, "only kube-proxy's table");
    // No endpoints: the map element's comment, and the chain it sends to.
    let mut v = hit("service-endpoints-check", "", verdict::GOTO, Action::Other);
    v.table = "kube-proxy".into();
    v.target = "reject-chain".into();
    v.element = "default/empty:http".into();
    let r = object_of(&v).unwrap();
    assert!(
        r.no_endpoints && r.display() == "default/empty:http",
        "{r:?}"
    );
}

#[test]
fn the_last_drop_decides_and_the_path_names_its_object() {
    let jump = |chain: &str, comment: &str, to: &str| RuleHit {
        target: to.into(),
        ..hit(chain, comment, verdict::JUMP, Action::Other)
    };
    let mut hits = vec![
        jump("PREROUTING", "", "KUBE-SERVICES"),
        jump("KUBE-SERVICES", "ns1/svc:p cluster IP", "KUBE-SVC-X"),
        jump("KUBE-SVC-X", "", "KUBE-SEP-Y"),
        hit("KUBE-SEP-Y", "", verdict::ACCEPT, Action::Dnat),
        hit("FORWARD", "", verdict::DROP, Action::Other),
    ];
    let m = drop_rule(&hits).unwrap();
    assert_eq!(m.hit.chain, "FORWARD");
    // A drop on another path than the Service's jumps names no object.
    assert_eq!(m.k8s, None);
    // The DNAT rule's comment-less chain: its jumps name the Service.
    let n = nat_rule(&hits, true).unwrap();
    assert_eq!(n.hit.chain, "KUBE-SEP-Y");
    assert_eq!(n.k8s.unwrap().display(), "ns1/svc:p");
    hits[4] = jump("FORWARD", "", "KUBE-POD-FW-A");
    hits.push(hit(
        "KUBE-POD-FW-A",
        "rule to REJECT traffic destined for POD name:web namespace: default",
        verdict::DROP,
        Action::Reject,
    ));
    assert_eq!(drop_rule(&hits).unwrap().k8s.unwrap().kind, "Pod");
    assert!(nat_rule(&hits, false).is_none());
    assert!(
        drop_rule(&hits[..3]).is_none(),
        "no drop verdict, no drop rule"
    );
}

#[test]
fn kube_router_reject_names_the_policies_that_selected_the_pod() {
    let pod = "rule to REJECT traffic destined for POD name:db namespace: default";
    let jump = |chain: &str, comment: &str, to: &str| RuleHit {
        target: to.into(),
        ..hit(chain, comment, verdict::JUMP, Action::Other)
    };
    let mut through = jump("KUBE-POD-FW-A", "", "KUBE-NWPLCY-B");
    through.comment = "run through nw policy allow-from-pc".into();
    let hits = vec![
        jump("FORWARD", "", "KUBE-POD-FW-A"),
        through,
        hit("KUBE-NWPLCY-B", "", verdict::RETURN, Action::Other),
        hit("KUBE-POD-FW-A", pod, verdict::DROP, Action::Reject),
    ];
    let m = drop_rule(&hits).unwrap();
    assert_eq!(m.k8s.as_ref().unwrap().kind, "Pod");
    let judged: Vec<String> = m.judged_by.iter().map(|k| k.display()).collect();
    assert_eq!(judged, ["default/allow-from-pc"]);
    let t = Tuple {
        proto: crate::decode::packet::Proto::Tcp,
        src: "10.10.1.10".parse().unwrap(),
        dst: "10.10.2.5".parse().unwrap(),
        sport: Some(40000),
        dport: Some(5432),
    };
    let hint = drop_hint(&m, Some(&t));
    assert!(
        hint.contains("pod default/db is selected by NetworkPolicy allow-from-pc; none allows 10.10.1.10 -> :5432"),
        "{hint}"
    );
    // No policy jump seen: the pod's policies, never "no NetworkPolicy".
    let m = drop_rule(&[hits[0].clone(), hits[3].clone()]).unwrap();
    assert!(m.judged_by.is_empty());
    let hint = drop_hint(&m, None);
    assert!(!hint.contains("no NetworkPolicy"), "{hint}");
}
