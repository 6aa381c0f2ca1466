//! `netflow demo`: a small lab on this machine — two pods on a bridge, a
//! Service VIP DNATed to one of them, a pod behind a VXLAN "node", a policy
//! drop and a closed port — with traffic, shown in the dashboard. Everything
//! it creates is named `nfdemo-*` and removed on exit, Ctrl-C included.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

pub const NODE: &str = "nfdemo-node";
pub const NODE2: &str = "nfdemo-node2";
pub const WEB: &str = "nfdemo-web";
pub const API: &str = "nfdemo-api";
pub const DB: &str = "nfdemo-db";
const ALL: [&str; 5] = [WEB, API, DB, NODE, NODE2];

pub const VIP: &str = "10.96.250.10";
const API_IP: &str = "10.250.0.2";
const DB_IP: &str = "10.251.0.2";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo setup failed at `{cmd}`: {err}")]
    Setup { cmd: String, err: String },
    #[error("demo namespaces already exist ({0}): another demo is running, or remove them with `ip netns del`")]
    Exists(String),
}

fn run(cmd: &str) -> Result<(), DemoError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| DemoError::Setup {
            cmd: cmd.into(),
            err: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DemoError::Setup {
            cmd: cmd.into(),
            err: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The lab; dropping it removes it.
pub struct Lab {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Lab {
    pub fn build() -> Result<Self, DemoError> {
        let existing: Vec<&str> = ALL
            .iter()
            .copied()
            .filter(|n| std::path::Path::new("/run/netns").join(n).exists())
            .collect();
        if !existing.is_empty() {
            return Err(DemoError::Exists(existing.join(", ")));
        }
        let lab = Lab {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for ns in ALL {
            run(&format!("ip netns add {ns} && ip -n {ns} link set lo up"))?;
        }
        let steps = [
            // Node 1: a bridge for two pods, the pods' gateway, NAT and policy.
            format!("ip -n {NODE} link add cni0 type bridge && ip -n {NODE} addr add 10.250.0.254/24 dev cni0 && ip -n {NODE} link set cni0 up"),
            format!("ip netns exec {NODE} sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1"),
            format!("ip link add eth0 netns {WEB} type veth peer name vweb netns {NODE}"),
            format!("ip link add eth0 netns {API} type veth peer name vapi netns {NODE}"),
            format!("ip -n {NODE} link set vweb master cni0 up && ip -n {NODE} link set vapi master cni0 up"),
            format!("ip -n {WEB} addr add 10.250.0.1/24 dev eth0 && ip -n {WEB} link set eth0 up && ip -n {WEB} route add default via 10.250.0.254"),
            format!("ip -n {API} addr add {API_IP}/24 dev eth0 && ip -n {API} link set eth0 up && ip -n {API} route add default via 10.250.0.254"),
            format!(
                "ip netns exec {NODE} nft 'add table ip demo; \
                 add chain ip demo pre {{ type nat hook prerouting priority -100; }}; \
                 add rule ip demo pre ip daddr {VIP} tcp dport 80 dnat to {API_IP}:8080; \
                 add chain ip demo netpol {{ type filter hook forward priority 0; }}; \
                 add rule ip demo netpol ip daddr {API_IP} tcp dport 5432 drop'"
            ),
            // Node 2 behind VXLAN, with a routed pod.
            format!("ip link add under0 netns {NODE} type veth peer name under0 netns {NODE2}"),
            format!("ip -n {NODE} addr add 192.168.250.1/24 dev under0 && ip -n {NODE} link set under0 up"),
            format!("ip -n {NODE2} addr add 192.168.250.2/24 dev under0 && ip -n {NODE2} link set under0 up"),
            format!("ip -n {NODE} link add vxlan0 type vxlan id 42 local 192.168.250.1 remote 192.168.250.2 dstport 4789 dev under0"),
            format!("ip -n {NODE2} link add vxlan0 type vxlan id 42 local 192.168.250.2 remote 192.168.250.1 dstport 4789 dev under0"),
            format!("ip -n {NODE} addr add 10.249.0.1/24 dev vxlan0 && ip -n {NODE} link set vxlan0 up"),
            format!("ip -n {NODE2} addr add 10.249.0.2/24 dev vxlan0 && ip -n {NODE2} link set vxlan0 up"),
            format!("ip -n {NODE} route add 10.251.0.0/24 via 10.249.0.2 dev vxlan0"),
            format!("ip netns exec {NODE2} sysctl -qw net.ipv4.ip_forward=1"),
            format!("ip -n {NODE2} route add 10.250.0.0/24 via 10.249.0.1 dev vxlan0"),
            format!("ip link add eth0 netns {DB} type veth peer name vdb netns {NODE2}"),
            format!("ip -n {DB} addr add {DB_IP}/24 dev eth0 && ip -n {DB} link set eth0 up && ip -n {DB} route add default via 10.251.0.1"),
            format!("ip -n {NODE2} addr add 10.251.0.1/24 dev vdb && ip -n {NODE2} link set vdb up"),
        ];
        for s in &steps {
            run(s)?;
        }
        Ok(lab)
    }

    /// Servers in the api and db pods, and a client in the web pod that
    /// talks to the Service, to the db across the tunnel, to a port a
    /// policy blocks and to a closed port, every half second.
    pub fn start_traffic(&mut self) {
        self.spawn_in(API, |stop| serve("0.0.0.0:8080", stop));
        self.spawn_in(DB, |stop| serve("0.0.0.0:6379", stop));
        self.spawn_in(WEB, |stop| {
            while !stop.load(Ordering::Relaxed) {
                for (addr, port) in [(VIP, 80), (DB_IP, 6379), (API_IP, 5432), (API_IP, 9999)] {
                    let sa: SocketAddr = format!("{addr}:{port}").parse().expect("valid address");
                    if let Ok(mut s) = TcpStream::connect_timeout(&sa, Duration::from_millis(300)) {
                        let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                        let _ = s.read(&mut [0u8; 64]);
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
    }

    fn spawn_in(&mut self, ns: &'static str, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            let Ok(file) = std::fs::File::open(format!("/run/netns/{ns}")) else {
                return;
            };
            if nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).is_ok() {
                f(stop);
            }
        }));
    }
}

fn serve(addr: &str, stop: Arc<AtomicBool>) {
    let Ok(l) = TcpListener::bind(addr) else {
        return;
    };
    let _ = l.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((mut c, _)) => {
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
                let _ = c.read(&mut [0u8; 256]);
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello from netflow demo\n");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for ns in ALL {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
