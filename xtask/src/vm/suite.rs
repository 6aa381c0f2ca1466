//! What the kernel matrix runs: the tests of each kernel, the fallback
//! probes forced on kernels that have better ones, which test runs each
//! kernel program, and the modules a guest loads.

/// The tests each kernel runs: the path, drop, NAT, Service, policy, VXLAN,
/// verdict and SIGKILL tests (test binary, test names).
pub(super) static SUITE: &[(&str, &[&str])] = &[
    (
        "paths",
        &[
            "bridge_ping_selected_by_sender_netns",
            "routed_pods_with_proxy_arp",
            "vxlan_inner_and_outer_headers_in_one_timeline",
            "cross_node_pod_to_pod_over_vxlan",
        ],
    ),
    (
        "record",
        &["kernel_and_daemon_compute_the_same_fingerprints"],
    ),
    (
        "icmp",
        &[
            "too_big_for_the_tunnel_shows_fragmentation_needed",
            "ipv6_too_big_shows_packet_too_big",
        ],
    ),
    (
        "rules",
        &[
            "kube_proxy_iptables_rules_name_the_service_and_the_policy",
            "sigkill_leaves_no_trace_table",
        ],
    ),
    (
        "route",
        &[
            "policy_routing_shows_the_table_on_the_route_hop",
            "a_failed_lookup_is_named_on_the_drop",
            "ipv6_route_hops_show_the_table_and_the_failed_lookup",
        ],
    ),
    (
        "netfilter",
        &[
            "forward_drop_is_attributed_to_netfilter",
            "service_vip_dnat_and_reverse_translation",
            "masquerade_to_external_network",
            "bridged_backend_dnat_with_bridge_nf_call_iptables",
        ],
    ),
    (
        "verdicts",
        &[
            "service_calls_read_healthy",
            "udp_service_calls_read_healthy",
            "ipvs_service_calls_read_healthy",
            "hairpin_service_call_to_itself_reads_healthy",
            "udp_and_ping_ipv4_ipv6_read_healthy",
            "bridged_pods_read_healthy",
            "pod_to_pod_over_vxlan_reads_healthy",
            "forward_drop_is_request_lost",
            "closed_ports_are_refused",
        ],
    ),
    (
        "causes",
        &[
            "forwarding_off_names_ip_forward",
            "ipv6_forwarding_off_names_the_ipv6_setting",
            "unanswered_gateway_names_proxy_arp",
            "strict_rp_filter_names_the_setting_in_force",
            "bridged_reply_without_netfilter_names_bridge_nf_call_iptables",
            "forward_policy_drop_names_the_chain_policy",
        ],
    ),
    (
        "legacy",
        &[
            "legacy_drop_rule_is_named_with_its_service",
            "legacy_chain_policy_drop_is_named",
        ],
    ),
    (
        "conntrack",
        &["full_conntrack_table_names_nf_conntrack_max"],
    ),
    (
        "kube_router",
        &[
            "kube_router_reject_names_the_pod_and_its_policy",
            "kube_router_legacy_reject_names_the_pod_and_its_policy",
        ],
    ),
    (
        "external",
        &[
            "nodeport_call_is_followed_from_the_uplink",
            "nodeport_call_dropped_at_forward_names_hook_and_rule",
            "local_traffic_policy_without_local_endpoint_names_service_and_policy",
            "hostport_and_external_ip_calls_are_followed_from_the_uplink",
        ],
    ),
    ("tcp", &["closed_port_no_socket_and_reset"]),
    (
        "agent",
        &[
            "the_agent_counts_tcp_data_at_its_sockets",
            "per_pod_device_counts_equal_the_devices_counters",
        ],
    ),
    (
        "agent_events",
        &[
            "the_events_mode_reports_failed_connects_from_their_sockets",
            "a_dropped_flow_is_followed_so_its_retry_names_hook_and_rule",
            "the_events_mode_reads_dns_at_the_sockets",
            "the_events_mode_reads_dns_over_ipv6",
            "the_events_mode_reads_udp_conversations_at_the_sockets",
            "the_events_mode_reads_icmp_echo_at_the_sockets",
            "sampled_healthy_connections_are_followed_in_full",
        ],
    ),
    (
        "probes",
        &[
            "sigkill_leaves_nothing_attached",
            "tc_hops_coexist_with_other_tc_programs",
        ],
    ),
    (
        "verifier",
        &["every_program_within_its_bound_and_checked_in_figure"],
    ),
];

/// What a second point release of a series runs (CI time is short): start-up
/// and the probes on (`netflow check`, in every guest), the verifier's
/// figures, a Service DNAT, a policy drop, healthy verdicts.
pub(super) static POINT_SUITE: &[(&str, &[&str])] = &[
    (
        "netfilter",
        &[
            "forward_drop_is_attributed_to_netfilter",
            "service_vip_dnat_and_reverse_translation",
        ],
    ),
    (
        "verdicts",
        &[
            "service_calls_read_healthy",
            "hairpin_service_call_to_itself_reads_healthy",
            "forward_drop_is_request_lost",
        ],
    ),
    (
        "rules",
        &["kube_proxy_iptables_rules_name_the_service_and_the_policy"],
    ),
    (
        "verifier",
        &["every_program_within_its_bound_and_checked_in_figure"],
    ),
];

/// Tests run again with netflow's fallback probes forced (label,
/// environment as `VAR=value[,VAR=value]`, test binary, tests): every kernel
/// here has the better probe, so each fallback is only tried when forced.
pub(super) const FALLBACKS: &[(&str, &str, &str, &[&str])] = &[
    (
        "kprobe",
        "NETFLOW_NF_PROBE=kprobe",
        "netfilter",
        &[
            "forward_drop_is_attributed_to_netfilter",
            "service_vip_dnat_and_reverse_translation",
        ],
    ),
    (
        "kprobe",
        "NETFLOW_ICMP_PROBE=kprobe",
        "icmp",
        &[
            "too_big_for_the_tunnel_shows_fragmentation_needed",
            "ipv6_too_big_shows_packet_too_big",
        ],
    ),
];

/// Every kernel program (netflow-ebpf/src/main.rs) and the matrix tests
/// that run it on a kernel that has its probe, with the label of a forced
/// fallback (`[kprobe]`) where one is needed. A program added without a
/// matrix test that runs it fails `every_program_is_run_by_the_matrix`.
#[cfg(test)]
const PROGRAM_TESTS: &[(&str, &[&str])] = &[
    ("netflow_rx", &["bridged_pods_read_healthy"]),
    (
        "netflow_sock_state",
        &["the_events_mode_reports_failed_connects_from_their_sockets"],
    ),
    (
        "netflow_dns_send",
        &[
            "the_events_mode_reads_dns_at_the_sockets",
            "the_events_mode_reads_udp_conversations_at_the_sockets",
        ],
    ),
    (
        "netflow_dns_send6",
        &["the_events_mode_reads_dns_over_ipv6"],
    ),
    (
        "netflow_dns_recv",
        &["the_events_mode_reads_dns_at_the_sockets"],
    ),
    (
        "netflow_dns_recv6",
        &["the_events_mode_reads_dns_over_ipv6"],
    ),
    (
        "netflow_dns_recv_raw",
        &["the_events_mode_reads_icmp_echo_at_the_sockets"],
    ),
    (
        "netflow_dns_make",
        &["the_events_mode_reads_icmp_echo_at_the_sockets"],
    ),
    (
        "netflow_dns_make6",
        &["the_events_mode_reads_icmp_echo_at_the_sockets"],
    ),
    ("netflow_tx", &["bridged_pods_read_healthy"]),
    (
        "netflow_tc_ingress",
        &["tc_hops_coexist_with_other_tc_programs"],
    ),
    (
        "netflow_tc_egress",
        &["tc_hops_coexist_with_other_tc_programs"],
    ),
    // 5.17+ (6.1, 6.12): drop reasons; 5.10: the location only.
    ("netflow_kfree_skb", &["forward_drop_is_request_lost"]),
    ("netflow_kfree_skb_loc", &["forward_drop_is_request_lost"]),
    ("netflow_consume_skb", &["service_calls_read_healthy"]),
    ("netflow_sock_in", &["service_calls_read_healthy"]),
    (
        "netflow_sock_out",
        &["the_agent_counts_tcp_data_at_its_sockets"],
    ),
    (
        "netflow_tcp_retransmit",
        &["closed_port_no_socket_and_reset"],
    ),
    ("netflow_tcp_reset", &["closed_port_no_socket_and_reset"]),
    (
        "netflow_route",
        &["policy_routing_shows_the_table_on_the_route_hop"],
    ),
    (
        "netflow_route6",
        &["ipv6_route_hops_show_the_table_and_the_failed_lookup"],
    ),
    // 6.10+ (6.12): the tracepoint; 5.10 and 6.1: fentry.
    (
        "netflow_icmp_send",
        &["too_big_for_the_tunnel_shows_fragmentation_needed"],
    ),
    (
        "netflow_icmp_fentry",
        &["too_big_for_the_tunnel_shows_fragmentation_needed"],
    ),
    (
        "netflow_icmp_kprobe",
        &["too_big_for_the_tunnel_shows_fragmentation_needed [kprobe]"],
    ),
    (
        "netflow_icmp6_fentry",
        &["ipv6_too_big_shows_packet_too_big"],
    ),
    (
        "netflow_icmp6_kprobe",
        &["ipv6_too_big_shows_packet_too_big [kprobe]"],
    ),
    // 6.4+ (6.12): BPF netfilter links; 5.10 and 6.1: nf_hook_slow.
    (
        "netflow_nf_early",
        &["service_vip_dnat_and_reverse_translation"],
    ),
    (
        "netflow_nf_late",
        &["service_vip_dnat_and_reverse_translation"],
    ),
    (
        "netflow_nf_fentry",
        &["service_vip_dnat_and_reverse_translation"],
    ),
    (
        "netflow_nf_fexit",
        &["service_vip_dnat_and_reverse_translation"],
    ),
    (
        "netflow_nf_kprobe",
        &["service_vip_dnat_and_reverse_translation [kprobe]"],
    ),
    (
        "netflow_nf_kretprobe",
        &["service_vip_dnat_and_reverse_translation [kprobe]"],
    ),
    (
        "netflow_kprobe_nft_do_chain",
        &["kube_proxy_iptables_rules_name_the_service_and_the_policy"],
    ),
];

/// Modules a node has loaded for pods, Services and policies (the guest's
/// modprobe also loads on demand, through the initramfs's helper).
pub(super) const GUEST_MODULES: &[&str] = &[
    "veth",
    "bridge",
    "br_netfilter",
    "vxlan",
    "ipip",
    "nf_conntrack",
    "nf_conntrack_netlink",
    "nf_nat",
    "nf_tables",
    "nft_compat",
    "nft_chain_nat",
    "nft_ct",
    "nft_masq",
    "nft_nat",
    "nft_reject_inet",
    "nft_reject_ipv4",
    "nft_reject_ipv6",
    "xt_tcpudp",
    "xt_conntrack",
    "xt_comment",
    "xt_statistic",
    "xt_mark",
    "xt_nat",
    "xt_MASQUERADE",
    "xt_addrtype",
    "ipt_REJECT",
    "ip6t_REJECT",
    "iptable_filter",
    "iptable_nat",
    "ip6table_filter",
    "ip6table_nat",
    "sch_ingress",
    "cls_bpf",
];

/// Programs no matrix test runs yet, and why: said by the check, so that
/// the gap stays in sight. A program is in [`PROGRAM_TESTS`] or here.
#[cfg(test)]
const NOT_RUN: &[(&str, &str)] = &[
    (
        "netflow_deliver",
        "the socket-delivery fallback where cgroup_skb cannot attach \
         (cgroup v1 hosts); forced (NETFLOW_SOCK_PROBE=tracepoint) on 6.18, \
         ping replies read dropped and UDP connections incomplete: to fix, \
         then run the verdict tests with it forced",
    ),
    ("netflow_tcp_rcv", "as netflow_deliver (its TCP half)"),
];

/// Every test of the matrix, as its table names it (`name [label]` when run
/// with a forced fallback).
#[cfg(test)]
fn matrix_tests() -> Vec<String> {
    let plain = SUITE
        .iter()
        .chain(POINT_SUITE)
        .flat_map(|(_, names)| names.iter().map(|n| n.to_string()));
    let forced = FALLBACKS
        .iter()
        .flat_map(|(label, _, _, names)| names.iter().map(move |n| format!("{n} [{label}]")));
    plain.chain(forced).collect()
}

/// The kernel programs: the functions of netflow-ebpf/src/main.rs under a
/// program attribute (`#[btf_tracepoint(...)]`, `#[kprobe]`, ...).
#[cfg(test)]
fn programs(main_rs: &str) -> Vec<String> {
    const ATTRS: &[&str] = &[
        "#[btf_tracepoint",
        "#[classifier",
        "#[cgroup_skb",
        "#[fentry",
        "#[fexit",
        "#[kprobe",
        "#[kretprobe",
    ];
    let mut out = Vec::new();
    let mut armed = false;
    for line in main_rs.lines().map(str::trim) {
        if ATTRS.iter().any(|a| line.starts_with(a)) {
            armed = true;
        } else if let Some(rest) = line.strip_prefix("pub fn ").filter(|_| armed) {
            out.push(rest.split('(').next().unwrap_or("").to_string());
            armed = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe no matrix test runs is a probe nobody knows works: each
    /// program of the kernel crate names a test of the matrix that runs it.
    #[test]
    fn every_program_is_run_by_the_matrix() {
        let main_rs = include_str!("../../../netflow-ebpf/src/main.rs");
        let progs = programs(main_rs);
        assert!(progs.len() > 20, "programs found: {progs:?}");
        let tests = matrix_tests();
        let mut missing = Vec::new();
        for p in &progs {
            if let Some((_, why)) = NOT_RUN.iter().find(|(name, _)| name == p) {
                println!("{p}: run by no matrix test: {why}");
                continue;
            }
            match PROGRAM_TESTS.iter().find(|(name, _)| name == p) {
                None => missing.push(format!("{p}: no matrix test named in PROGRAM_TESTS")),
                Some((_, named)) => {
                    for t in named.iter().filter(|t| !tests.iter().any(|m| m == *t)) {
                        missing.push(format!("{p}: {t} is not a test of the matrix"));
                    }
                    if named.is_empty() {
                        missing.push(format!("{p}: no test"));
                    }
                }
            }
        }
        let named = PROGRAM_TESTS
            .iter()
            .map(|(n, _)| n)
            .chain(NOT_RUN.iter().map(|(n, _)| n));
        for name in named {
            if !progs.iter().any(|p| p == name) {
                missing.push(format!("{name}: no such kernel program"));
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    /// The check sees a program without a test.
    #[test]
    fn a_program_without_a_test_is_seen() {
        let main_rs =
            "#[kprobe]\n#[inline(always)]\npub fn netflow_new_probe(ctx: ProbeContext) -> u32 {";
        assert_eq!(programs(main_rs), ["netflow_new_probe"]);
        assert!(!PROGRAM_TESTS.iter().any(|(n, _)| *n == "netflow_new_probe"));
    }
}
