//! Labs: network namespaces, veths, bridges, routed pods and VXLAN nodes
//! with unique names and addresses of their own, all removed when the lab is
//! dropped (also when a test panics).
//!
//! Each lab holds a reservation of one address block: `10.N.0.0/16` and
//! `fd00:N::/32` for its pods, `192.168.N.0/24` for underlays ([`Lab::net`],
//! [`Lab::net6`], [`Lab::underlay`]),
//! N from 100 to 199. A reservation is an exclusive `flock` on
//! `/run/netflow-tests/nets/N`, so concurrent tests, test binaries and
//! interrupted runs never share addresses (the kernel releases the lock of a
//! process that died).
use std::{fs::File, os::fd::AsRawFd, path::Path};

use crate::{require_root, sh, sh_quiet};

/// Where reservations are kept.
const NETS: &str = "/run/netflow-tests/nets";

/// An address block reserved while this lives.
pub struct Reservation {
    pub octet: u8,
    _lock: File,
}

impl Reservation {
    /// The first free block, held until dropped.
    pub fn take() -> Self {
        std::fs::create_dir_all(NETS).expect("create the reservations folder");
        for octet in 100..=199u8 {
            let path = Path::new(NETS).join(octet.to_string());
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // SAFETY: a valid fd; the lock goes with the file.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Reservation { octet, _lock: f };
            }
        }
        panic!("every test address block (10.100-199) is taken: see {NETS}")
    }
}

/// A lab: namespaces and host devices with unique names, removed on drop.
pub struct Lab {
    pub tag: String,
    netns: Vec<String>,
    links: Vec<String>,
    undo: Vec<String>,
    block: Reservation,
}

impl Lab {
    /// `tag` must be unique among concurrently running tests (<= 6 chars).
    pub fn new(tag: &str) -> Self {
        require_root();
        assert!(tag.len() <= 6, "lab tag too long for interface names");
        let tag = format!("{tag}{:x}", std::process::id() % 0xfff);
        Lab {
            tag,
            netns: Vec::new(),
            links: Vec::new(),
            undo: Vec::new(),
            block: Reservation::take(),
        }
    }

    /// This lab's `10.N` (a /16 of its own): `format!("{net}.0.2")`.
    pub fn net(&self) -> String {
        format!("10.{}", self.block.octet)
    }

    /// This lab's `fd00:N` (an IPv6 /32 of its own): `format!("{net6}::2")`.
    pub fn net6(&self) -> String {
        format!("fd00:{}", self.block.octet)
    }

    /// This lab's `192.168.N` (a /24 of its own) for underlay links.
    pub fn underlay(&self) -> String {
        format!("192.168.{}", self.block.octet)
    }

    /// A unique name for a namespace or device, e.g. `n<tag>a`.
    pub fn name(&self, suffix: &str) -> String {
        let n = format!("{}{suffix}", self.tag);
        assert!(n.len() <= 15, "name {n} too long for an interface");
        n
    }

    pub fn netns(&mut self, suffix: &str) -> String {
        let n = self.name(suffix);
        sh_quiet(&format!("ip netns del {n}"));
        sh(&format!("ip netns add {n}"));
        self.netns.push(n.clone());
        sh(&format!("ip -n {n} link set lo up"));
        n
    }

    /// A host-side link (deleted on drop; deleting one end of a veth deletes both).
    pub fn host_link(&mut self, name: &str) {
        self.links.push(name.to_string());
    }

    /// A command run on drop, before namespaces and links are deleted.
    pub fn on_drop(&mut self, cmd: String) {
        self.undo.push(cmd);
    }

    /// Two namespaces joined by a veth pair, `eth0` in each, with
    /// `{net}.0.1/24` and `{net}.0.2/24`.
    pub fn pair(&mut self, a: &str, b: &str) -> (String, String) {
        let subnet = format!("{}.0", self.net());
        let (a, b) = (self.netns(a), self.netns(b));
        sh(&format!(
            "ip link add eth0 netns {a} type veth peer name eth0 netns {b}"
        ));
        for (ns, host) in [(&a, 1), (&b, 2)] {
            sh(&format!(
                "ip -n {ns} addr add {subnet}.{host}/24 dev eth0 && ip -n {ns} link set eth0 up"
            ));
        }
        (a, b)
    }

    /// veth pair: `host` end in the host, `eth0` in `ns` with `addr` (CIDR).
    pub fn pod(&mut self, ns: &str, host: &str, addr: &str) {
        sh(&format!(
            "ip link add {host} type veth peer name eth0 netns {ns}"
        ));
        self.host_link(host);
        sh(&format!("ip -n {ns} addr add {addr} dev eth0"));
        sh(&format!("ip -n {ns} link set eth0 up"));
        sh(&format!("ip link set {host} up"));
    }

    pub fn exec(&self, ns: &str, cmd: &str) -> String {
        sh(&format!("ip netns exec {ns} {cmd}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for cmd in self.undo.iter().rev() {
            sh_quiet(cmd);
        }
        for l in self.links.iter().rev() {
            sh_quiet(&format!("ip link del {l}"));
        }
        for n in self.netns.iter().rev() {
            sh_quiet(&format!("ip netns del {n}"));
        }
    }
}

/// Routed pods behind a node (calico style: /32 routes, proxy ARP,
/// 169.254.1.1 as the pods' gateway); the node is its own namespace.
pub fn routed_lab(tag: &str) -> (Lab, String, String, String, String, String) {
    let mut lab = Lab::new(tag);
    let subnet = format!("{}.0", lab.net());
    let node = lab.netns("n");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    let (va, vb) = (lab.name("va"), lab.name("vb"));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1"
    ));
    // The node's default route (proxy ARP answers for targets it can route).
    sh(&format!(
        "ip -n {node} link add up0 type veth peer name up1 && ip -n {node} link set up0 up && ip -n {node} link set up1 up && ip -n {node} route add default dev up0"
    ));
    for (pod, veth, ip) in [
        (&a, &va, format!("{subnet}.1")),
        (&b, &vb, format!("{subnet}.2")),
    ] {
        sh(&format!(
            "ip link add eth0 netns {pod} type veth peer name {veth} netns {node}"
        ));
        sh(&format!(
            "ip -n {pod} addr add {ip}/32 dev eth0 && ip -n {pod} link set eth0 up"
        ));
        sh(&format!(
            "ip -n {pod} route add 169.254.1.1 dev eth0 scope link && ip -n {pod} route add default via 169.254.1.1 dev eth0"
        ));
        sh(&format!("ip -n {node} link set {veth} up"));
        sh(&format!(
            "ip netns exec {node} sysctl -qw net.ipv4.conf.{veth}.proxy_arp=1"
        ));
        sh(&format!("ip -n {node} route add {ip}/32 dev {veth}"));
    }
    (lab, node, a, b, va, vb)
}

/// Bridged pods behind a node (docker/flannel style): pods `a` and `b`
/// (`{net}.0.1`, `{net}.0.2`) on `br0` of the node (`{net}.0.254`, their
/// gateway), forwarding on and `bridge-nf-call-iptables = 1`. Returns the
/// lab, the node, and the pods.
pub fn bridged_lab(tag: &str) -> (Lab, String, String, String) {
    let mut lab = Lab::new(tag);
    let net = lab.net();
    let node = lab.netns("n");
    let (a, b) = (lab.netns("a"), lab.netns("b"));
    sh(&format!(
        "ip -n {node} link add br0 type bridge && ip -n {node} link set br0 up && ip -n {node} addr add {net}.0.254/24 dev br0"
    ));
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1"
    ));
    for (pod, ip) in [(&a, format!("{net}.0.1")), (&b, format!("{net}.0.2"))] {
        let veth = format!("v{pod}");
        sh(&format!(
            "ip link add eth0 netns {pod} type veth peer name {veth} netns {node}"
        ));
        sh(&format!(
            "ip -n {node} link set {veth} master br0 && ip -n {node} link set {veth} up"
        ));
        sh(&format!(
            "ip -n {pod} addr add {ip}/24 dev eth0 && ip -n {pod} link set eth0 up && ip -n {pod} route add default via {net}.0.254"
        ));
    }
    (lab, node, a, b)
}

/// IPv6 on a [`routed_lab`]: pods `NET6::1` and `NET6::2` (/128, default
/// route via the node's link-local `fe80::1` on each veth, as Calico does),
/// the node routing each to its veth; their addresses.
pub fn with_ipv6(lab: &Lab, node: &str, pods: [(&str, &str); 2]) -> [String; 2] {
    let net6 = lab.net6();
    sh(&format!(
        "ip netns exec {node} sysctl -qw net.ipv6.conf.all.forwarding=1"
    ));
    let mut addrs = Vec::new();
    for (i, (pod, veth)) in pods.iter().enumerate() {
        let ip = format!("{net6}::{}", i + 1);
        sh(&format!(
            "ip -n {node} -6 addr add fe80::1/64 dev {veth} nodad && \
             ip -n {pod} -6 addr add {ip}/128 dev eth0 nodad && \
             ip -n {pod} -6 route add default via fe80::1 dev eth0 && \
             ip -n {node} -6 route add {ip}/128 dev {veth}"
        ));
        addrs.push(ip);
    }
    [addrs[0].clone(), addrs[1].clone()]
}

/// Two "nodes" joined by VXLAN (VNI 7, UDP 8472) over an underlay veth,
/// with a routed pod behind each (flannel/calico style), in the lab's own
/// block (`10.o` = [`Lab::net`]): pods `10.o.1.2` and `10.o.2.2`, nodes'
/// underlay `192.168.o.1/.2`, overlay `10.o.0.1/.2`.
pub struct VxlanNodes {
    pub lab: Lab,
    pub n1: String,
    pub n2: String,
    pub p1: String,
    pub p2: String,
    pub u1: String,
    pub u2: String,
}

pub fn vxlan_nodes(tag: &str) -> VxlanNodes {
    let mut lab = Lab::new(tag);
    let o = lab.block.octet;
    let (n1, n2) = (lab.netns("n1"), lab.netns("n2"));
    let (p1, p2) = (lab.netns("p1"), lab.netns("p2"));
    let (u1, u2) = (lab.name("u1"), lab.name("u2"));
    sh(&format!(
        "ip link add {u1} netns {n1} type veth peer name {u2} netns {n2}"
    ));
    for (n, u, me, other, pod) in [(&n1, &u1, 1, 2, &p1), (&n2, &u2, 2, 1, &p2)] {
        sh(&format!(
            "ip -n {n} addr add 192.168.{o}.{me}/24 dev {u} && ip -n {n} link set {u} up"
        ));
        sh(&format!(
            "ip netns exec {n} sysctl -qw net.ipv4.ip_forward=1"
        ));
        // A default route, so proxy ARP answers for the pods' gateway.
        sh(&format!(
            "ip -n {n} link add up0 type veth peer name up1 && ip -n {n} link set up0 up && ip -n {n} link set up1 up && ip -n {n} route add default dev up0"
        ));
        sh(&format!("ip -n {n} link add vx0 type vxlan id 7 local 192.168.{o}.{me} remote 192.168.{o}.{other} dstport 8472 dev {u}"));
        sh(&format!(
            "ip -n {n} addr add 10.{o}.0.{me}/24 dev vx0 && ip -n {n} link set vx0 up"
        ));
        sh(&format!(
            "ip -n {n} route add 10.{o}.{other}.0/24 via 10.{o}.0.{other} dev vx0"
        ));
        let veth = format!("v{pod}");
        sh(&format!(
            "ip link add eth0 netns {pod} type veth peer name {veth} netns {n}"
        ));
        sh(&format!(
            "ip -n {pod} addr add 10.{o}.{me}.2/32 dev eth0 && ip -n {pod} link set eth0 up"
        ));
        sh(&format!("ip -n {pod} route add 169.254.1.1 dev eth0 scope link && ip -n {pod} route add default via 169.254.1.1 dev eth0"));
        sh(&format!(
            "ip -n {n} link set {veth} up && ip -n {n} route add 10.{o}.{me}.2/32 dev {veth}"
        ));
        sh(&format!(
            "ip netns exec {n} sysctl -qw net.ipv4.conf.{veth}.proxy_arp=1"
        ));
    }
    VxlanNodes {
        lab,
        n1,
        n2,
        p1,
        p2,
        u1,
        u2,
    }
}
