//! Pod resolution over CRI against a real containerd (started by the test).
use netflow_tests::{cri::Containerd, hop_list, in_order, netflow_bin, packets, sh, Tracer};

#[test]
fn pod_created_through_cri_is_found_by_name() {
    let mut ctr = Containerd::start("c1");
    let id = ctr.run_pod("shop", "checkout-0");
    // What to expect comes from the runtime.
    let ip = ctr.pod_ip(&id);
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
    assert!(
        t.stderr_text.contains(&ip),
        "netflow names the pod's address {ip}: {}",
        t.stderr_text
    );
    // The CNI bridge is the pods' gateway: ping the pod from the host.
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
