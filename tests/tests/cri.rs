//! Pod resolution over CRI against a real containerd (started by the test).
use netflow_schema::{Outcome, Proto};
use netflow_tests::{
    connections, cri::Containerd, hop_list, in_order, netflow_bin, packet_summary, packets, sh,
    stats, tcp_client, Background, Lab, Tracer,
};

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
    let lines = t.stop_lines();
    let pkts = packets(&lines);
    let to_pod: Vec<_> = pkts
        .iter()
        .filter(|p| p.flow.as_ref().is_some_and(|f| f.dst.to_string() == ip))
        .collect();
    assert!(to_pod.len() >= 2, "{}", packet_summary(&lines));
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

/// A hostNetwork pod shares the node's namespace: `--pod` selects it by the
/// ports it declares (from the runtime), says so, and follows a call to one
/// of them; the node's other traffic (a ping to the same address) is not
/// selected.
#[test]
fn host_network_pod_is_selected_by_its_ports() {
    let mut ctr = Containerd::start("c2");
    let port = 9401;
    ctr.run_host_pod("kube-system", "node-exporter-x", &[port]);
    let endpoint = format!("unix://{}", ctr.socket.display());
    // A client behind a veth of the node; the pod's server on the node.
    let mut lab = Lab::new("crih");
    let net = lab.net();
    let client = lab.netns("c");
    let host_if = lab.name("h");
    lab.pod(&client, &host_if, &format!("{net}.0.1/24"));
    let node_ip = format!("{net}.0.254");
    sh(&format!("ip addr add {node_ip}/24 dev {host_if}"));
    let script = std::env::temp_dir().join(format!("netflow-test-hostpod-{port}.py"));
    std::fs::write(
        &script,
        format!("import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{node_ip}',{port}))\ns.listen()\nwhile True:\n    c,_=s.accept()\n    c.recv(100)\n    c.sendall(b'ok')\n    c.close()\n"),
    )
    .unwrap();
    let _server = Background::spawn(&format!("python3 {}", script.display()));
    for _ in 0..100 {
        if !sh(&format!("ss -ltnH 'sport = :{port}'")).trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    lab.exec(&client, &format!("ping -c1 -W2 {node_ip}"));

    let t = Tracer::start(&[
        "--pod",
        "kube-system/node-exporter-x",
        "--runtime-endpoint",
        &endpoint,
    ]);
    assert!(
        t.stderr_text.contains("hostNetwork") && t.stderr_text.contains(&format!("ports {port}")),
        "netflow says how it selects the pod: {}",
        t.stderr_text
    );
    tcp_client(&client, &node_ip, port);
    lab.exec(&client, &format!("ping -c2 -i0.2 -W2 {node_ip}"));
    let lines = t.stop_lines();
    let _ = std::fs::remove_file(&script);
    let s = stats(&lines);
    assert_eq!(s.dropped, 0, "{}", packet_summary(&lines));
    assert_eq!(s.unknown, 0, "{}", packet_summary(&lines));
    let pkts = packets(&lines);
    assert!(
        pkts.iter()
            .all(|p| p.flow.as_ref().is_some_and(|f| f.proto == Proto::Tcp)),
        "only the pod's ports: {}",
        packet_summary(&lines)
    );
    let calls: Vec<_> = connections(&lines)
        .into_iter()
        .filter(|c| c.flow.dport == Some(port))
        .collect();
    assert_eq!(calls.len(), 1, "{}", packet_summary(&lines));
    assert_eq!(calls[0].outcome, Outcome::Ok, "{:#?}", calls[0]);
    assert_eq!(calls[0].flow.dst.to_string(), node_ip, "{:#?}", calls[0]);
    drop(ctr);
}
