//! The node image (`cargo xtask image`, built by `cargo xtask test` before
//! the tests: NETFLOW_IMAGE) in a real containerd: imported with `ctr images
//! import`, run the way the DaemonSet runs it (privileged, the host's
//! network, `/run/netns` and the runtime socket mounted), and inside it
//! `netflow trace --pod NS/NAME --runtime-endpoint ...` finds a CRI pod and
//! traces its packets.
use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netflow_schema::Verdict;
use netflow_tests::{
    cri::Containerd, hop_list, in_order, packet_summary, packets, parse_lines, sh, sh_quiet,
};

#[test]
fn the_image_traces_a_cri_pod_inside_containerd() {
    let image = std::env::var("NETFLOW_IMAGE")
        .expect("NETFLOW_IMAGE: run through `cargo xtask test`, which builds the image");
    let mut ctr = Containerd::start("img");
    let id = ctr.run_pod("shop", "cart-0");
    let ip = ctr.pod_ip(&id);
    let sock = ctr.socket.display().to_string();
    let ns = "netflow-test";
    sh(&format!("ctr -a {sock} -n {ns} images import {image}"));
    let name = format!("localhost/netflow:{}", env!("CARGO_PKG_VERSION"));
    assert!(
        sh(&format!("ctr -a {sock} -n {ns} images ls -q")).contains(&name),
        "{name} imported"
    );
    let dir = ctr.dir.display().to_string();
    let container = format!("netflow-img-{}", std::process::id());
    let mut run = Command::new("ctr")
        .args([
            "-a",
            &sock,
            "-n",
            ns,
            "run",
            "--rm",
            "--privileged",
            "--net-host",
        ])
        .args([
            "--mount",
            "type=bind,src=/run/netns,dst=/run/netns,options=rbind:ro",
        ])
        // The DaemonSet mounts both: runtimes name either.
        .args([
            "--mount",
            "type=bind,src=/var/run/netns,dst=/var/run/netns,options=rbind:ro",
        ])
        .args([
            "--mount",
            "type=bind,src=/sys/fs/cgroup,dst=/sys/fs/cgroup,options=rbind:ro",
        ])
        .args([
            "--mount",
            &format!("type=bind,src={dir},dst={dir},options=rbind"),
        ])
        .args([&name, &container])
        .args([
            "/usr/local/bin/netflow",
            "trace",
            "--json",
            "--pod",
            "shop/cart-0",
        ])
        .args(["--runtime-endpoint", &format!("unix://{sock}")])
        .args(["--proto", "icmp", "--duration", "8s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    let mut out = run.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    // Ready when it says how to stop it (its probes are attached).
    let (tx, rx) = std::sync::mpsc::channel();
    let err = run.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                said.push_str(&l);
                said.push('\n');
                if l.contains("Ctrl-C to stop") {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("netflow in the container ended before tracing:\n{said}")
            }
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "not ready in 30s:\n{said}");
    }
    assert!(said.contains("pod shop/cart-0"), "{said}");
    assert!(said.contains(&ip), "the pod's address from CRI: {said}");
    sh(&format!("ping -c2 -i0.2 -W2 {ip}"));
    let status = run.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        said.push_str(&l);
        said.push('\n');
    }
    assert!(
        status.success(),
        "netflow in the container: {status}\n{said}"
    );
    let lines = parse_lines(&stdout.join().unwrap());
    let pkts = packets(&lines);
    let to_pod: Vec<_> = pkts
        .iter()
        .filter(|p| p.flow.as_ref().is_some_and(|f| f.dst.to_string() == ip))
        .collect();
    assert!(to_pod.len() >= 2, "{}\n{said}", packet_summary(&lines));
    for p in &to_pod {
        assert!(
            in_order(&hop_list(p), &[("rx", "eth0", "shop/cart-0", "ingress")]),
            "{p:#?}"
        );
        assert_eq!(p.verdict, Verdict::Delivered, "{p:#?}");
    }
    sh_quiet(&format!(
        "ctr -a {sock} -n {ns} tasks kill -s KILL {container}"
    ));
    sh_quiet(&format!("ctr -a {sock} -n {ns} containers rm {container}"));
    drop(ctr);
}
