//! The benchmark's lab: a node's namespace with two pods on a bridge, its
//! kube-proxy-style rules, an iperf3 server, and the shell helpers.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

pub(super) const NS_NODE: &str = "nfbench-node";
pub(super) const NS_A: &str = "nfbench-a";
pub(super) const NS_B: &str = "nfbench-b";
pub(super) const IP_B: &str = "10.210.0.2";
/// kube-proxy-like Services in the node's rules (none of them this traffic's).
pub(super) const SERVICES: u32 = 300;

/// A node as users have it: two pods on a bridge in the node's namespace,
/// `bridge-nf-call-iptables=1` (their traffic crosses netfilter), and
/// kube-proxy-style iptables rules (a Service VIP DNAT, and a few hundred
/// per-Service rules that every new connection and every forwarded packet
/// walks past).
pub(super) struct Lab {
    server: Option<Child>,
}

impl Lab {
    pub(super) fn new() -> Result<Self> {
        for ns in [NS_A, NS_B, NS_NODE] {
            let _ = quiet(&format!("ip netns del {ns}"));
        }
        for ns in [NS_NODE, NS_A, NS_B] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"))?;
        }
        let lab = Lab { server: None };
        sh(&format!(
            "ip -n {NS_NODE} link add br0 type bridge && ip -n {NS_NODE} addr add 10.210.0.254/24 dev br0 && ip -n {NS_NODE} link set br0 up"
        ))?;
        for (ns, ip, veth) in [(NS_A, "10.210.0.1", "veth-a"), (NS_B, IP_B, "veth-b")] {
            sh(&format!(
                "ip link add eth0 netns {ns} type veth peer name {veth} netns {NS_NODE}"
            ))?;
            sh(&format!(
                "ip -n {ns} addr add {ip}/24 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} route add default via 10.210.0.254"
            ))?;
            sh(&format!(
                "ip -n {NS_NODE} link set {veth} master br0 && ip -n {NS_NODE} link set {veth} up"
            ))?;
        }
        sh(&format!(
            "ip netns exec {NS_NODE} sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1"
        ))?;
        let rules = std::env::temp_dir().join("netflow-bench-rules");
        std::fs::write(&rules, kube_proxy_rules())?;
        sh(&format!(
            "ip netns exec {NS_NODE} iptables-restore < {}",
            rules.display()
        ))?;
        let _ = std::fs::remove_file(&rules);
        Ok(lab)
    }

    pub(super) fn start_server(&mut self) -> Result<()> {
        let child = Command::new("ip")
            .args(["netns", "exec", NS_B, "iperf3", "-s", "-p", "5201"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start iperf3 server (installed by scripts/setup.sh)")?;
        self.server = Some(child);
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }
}

/// iptables-restore input in kube-proxy's layout: nat `KUBE-SERVICES` with
/// one `KUBE-SVC-*` chain per Service (one of them, 10.96.0.10:80, pointing
/// at pod b), and filter `KUBE-SERVICES` REJECT rules for Services without
/// endpoints, walked by every forwarded packet of a new connection.
pub(super) fn kube_proxy_rules() -> String {
    let mut nat = String::from(
        "*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n:KUBE-SERVICES -\n:KUBE-MARK-MASQ -\n:KUBE-POSTROUTING -\n\
         -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n",
    );
    let mut filter = String::from(
        "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n:KUBE-SERVICES -\n:KUBE-FORWARD -\n\
         -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\n",
    );
    for i in 0..SERVICES {
        let vip = format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250);
        let svc = format!("KUBE-SVC-BENCH{i:04}");
        nat.push_str(&format!(":{svc} -\n"));
        nat.push_str(&format!(
            "-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment \"bench/svc{i}:http cluster IP\" -m tcp --dport 80 -j {svc}\n"
        ));
        let (ep, port) = if i == 0 {
            (IP_B.to_string(), 5201)
        } else {
            (format!("10.244.{}.{}", i / 250, 1 + i % 250), 8080)
        };
        nat.push_str(&format!(
            "-A {svc} -p tcp -m comment --comment \"bench/svc{i}:http -> {ep}:{port}\" -j DNAT --to-destination {ep}:{port}\n"
        ));
        if i % 3 == 1 {
            filter.push_str(&format!(
                "-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment \"bench/svc{i}:http has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable\n"
            ));
        }
    }
    format!("{nat}COMMIT\n{filter}COMMIT\n")
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [NS_A, NS_B, NS_NODE] {
            let _ = quiet(&format!("ip netns del {ns}"));
        }
    }
}

pub(super) fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output()?;
    if !out.status.success() {
        bail!("{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn quiet(cmd: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// One iperf3 run: received bits per second.
pub(super) fn iperf(seconds: u32) -> Result<f64> {
    let out = sh(&format!(
        "ip netns exec {NS_A} iperf3 -c {IP_B} -p 5201 -t {seconds} -J"
    ))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 result without end.sum_received.bits_per_second")
}
