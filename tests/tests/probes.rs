//! Real-kernel tests: each builds its own namespace lab, runs `netflow`,
//! sends real traffic and checks what netflow saw. Each lab reserves an
//! address block of its own (`Lab::net`), so tests run in parallel.
//!
//! Probes themselves: nothing left after SIGKILL, tc programs coexisting with others.
use netflow_tests::*;

/// A tracer killed with SIGKILL leaves no program or link behind.
#[test]
fn sigkill_leaves_nothing_attached() {
    let mut lab = Lab::new("kl");
    let a = lab.netns("a");
    let mut t = Tracer::start(&["--netns", &a]);
    let progs = bpf_link_prog_ids(t.pid());
    assert!(
        progs.len() >= 4,
        "netflow holds its probes as links: {progs:?}"
    );
    assert!(progs.iter().all(|id| bpf_prog_exists(*id)));
    t.sigkill();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<_> = progs.iter().filter(|id| bpf_prog_exists(**id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "programs still loaded 10s after SIGKILL: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(lab);
}

/// tc programs (TCX) on a chosen host veth: hops at the tc points beside the
/// device tracepoints. Two tracers attached to the same device both see every
/// packet and traffic flows: our programs pass packets on to whatever else is
/// attached (a CNI's own tc programs keep deciding).
#[test]
fn tc_hops_coexist_with_other_tc_programs() {
    let mut lab = Lab::new("tc");
    let net = lab.net();
    let a = lab.netns("a");
    let va = lab.name("va");
    lab.pod(&a, &va, &format!("{net}.0.1/24"));
    sh(&format!("ip addr add {net}.0.254/24 dev {va}"));
    lab.exec(&a, &format!("ping -c1 -W2 {net}.0.254"));

    let first = Tracer::start(&["--tc", "--iface", &va, "--netns", &a]);
    let second = Tracer::start(&["--tc", "--iface", &va, "--proto", "icmp"]);
    lab.exec(&a, &format!("ping -c3 -i0.2 -W2 {net}.0.254"));
    for (who, lines) in [
        ("first", first.stop_lines()),
        ("second", second.stop_lines()),
    ] {
        let pkts = packets(&lines);
        let reqs = flows(
            &pkts,
            netflow_schema::Proto::Icmp,
            &format!("{net}.0.1"),
            &format!("{net}.0.254"),
        );
        assert!(reqs.len() >= 3, "{who} tracer: {pkts:#?}");
        for r in &reqs {
            let hops = hop_list(r);
            assert!(
                in_order(
                    &hops,
                    &[
                        ("rx", &va, "host", "ingress"),
                        ("tc", &va, "host", "ingress")
                    ]
                ),
                "{who}: {hops:#?}"
            );
            // --iface limits where we look: nothing from the pod side.
            assert!(hops.iter().all(|h| h.1 == va), "{who}: {hops:#?}");
        }
        let reps = flows(
            &pkts,
            netflow_schema::Proto::Icmp,
            &format!("{net}.0.254"),
            &format!("{net}.0.1"),
        );
        assert!(reps.len() >= 3, "{who}: {pkts:#?}");
        for r in &reps {
            let hops = hop_list(r);
            assert!(
                hops.iter().any(|h| h.0 == "tc" && h.3 == "egress"),
                "{who}: {hops:#?}"
            );
        }
    }
}
