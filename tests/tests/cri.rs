//! Pod resolution over CRI against a real containerd (started by the test).
use netflow_tests::{cri::Containerd, hop_list, in_order, netflow_bin, packets, sh, Tracer};

#[test]
fn pod_created_through_cri_is_found_by_name() {
    let mut ctr = Containerd::start("c1", "10.213");
    ctr.run_pod("shop", "checkout-0");
    let endpoint = format!("unix://{}", ctr.socket.display());

    let t = Tracer::start(&[
        "--pod",
        "shop/checkout-0",
        "--runtime-endpoint",
        &endpoint,
        "--proto",
        "icmp",
    ]);
    assert!(
        t.stderr_text.contains("pod shop/checkout-0"),
        "{}",
        t.stderr_text
    );
    // The CNI bridge is the pods' gateway: ping the pod from the host.
    let ip = pod_ip(&t.stderr_text);
    sh(&format!("ping -c2 -i0.2 -W2 {ip}"));
    let lines = t.stop();
    let pkts = packets(&lines);
    let to_pod: Vec<_> = pkts
        .iter()
        .filter(|p| p["flow"]["dst"] == ip.as_str())
        .collect();
    assert!(to_pod.len() >= 2, "{pkts:#?}");
    for p in &to_pod {
        let hops = hop_list(p);
        // The pod's eth0 is labelled with the pod's name.
        assert!(
            in_order(&hops, &[("rx", "eth0", "shop/checkout-0", "ingress")]),
            "{hops:#?}"
        );
    }

    // Unknown and ambiguous names are explained.
    let out = std::process::Command::new(netflow_bin())
        .args([
            "trace",
            "--pod",
            "shop/checkout-1",
            "--runtime-endpoint",
            &endpoint,
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pod shop/checkout-1 not found") && err.contains("shop/checkout-0"),
        "{err}"
    );
    drop(ctr);
}

/// The pod's IPv4 address from netflow's "tracing netns pod ... (ADDRS)" line.
fn pod_ip(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("tracing"))
        .expect("tracing line");
    let inside = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("addresses");
    inside
        .split(", ")
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .unwrap_or_else(|| panic!("no IPv4 address in {line}"))
        .to_string()
}
