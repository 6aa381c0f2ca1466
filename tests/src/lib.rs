//! Helpers for netflow's real-kernel tests: namespace labs that remove
//! everything they created when dropped (also when a test panics), and a
//! handle on a running `netflow trace --json`.
//!
//! Tests run as root against the running kernel; nothing is mocked.
use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod cri;

/// Run a shell command; panic with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    if !out.status.success() {
        panic!(
            "command failed ({}): {cmd}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a shell command, ignoring failure (cleanup).
pub fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "netflow's kernel tests need root (they build namespaces and load eBPF programs): run them with sudo"
    );
}

/// A lab: namespaces and host devices with unique names, removed on drop.
pub struct Lab {
    pub tag: String,
    netns: Vec<String>,
    links: Vec<String>,
    undo: Vec<String>,
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
        }
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
    /// `{subnet}.1/24` and `{subnet}.2/24`.
    pub fn pair(&mut self, a: &str, b: &str, subnet: &str) -> (String, String) {
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

/// A background process (a test server), killed when dropped, with a file
/// it needed (removed then too).
pub struct Background(Child, Option<PathBuf>);

impl Background {
    /// Run `cmd` with `sh -c` in the background.
    pub fn spawn(cmd: &str) -> Self {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn background command");
        Background(child, None)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(f) = &self.1 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A TCP server in `ns` on `addr:port` that answers each connection with "ok".
pub fn tcp_server(ns: &str, addr: &str, port: u16) -> Background {
    let script = std::env::temp_dir().join(format!("netflow-test-server-{ns}-{port}.py"));
    std::fs::write(
        &script,
        format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('{addr}',{port}))\ns.listen()\nwhile True:\n    c,_=s.accept()\n    c.recv(100)\n    c.sendall(b'ok')\n    c.close()\n"
        ),
    )
    .expect("write test server script");
    let mut bg = Background::spawn(&format!("ip netns exec {ns} python3 {}", script.display()));
    bg.1 = Some(script);
    wait_bound(ns, "-ltnH", addr, port);
    bg
}

/// Wait until a socket in `ns` is bound to `port` (`ss` flags: -ltnH, -lunH).
fn wait_bound(ns: &str, ss_flags: &str, addr: &str, port: u16) {
    for _ in 0..100 {
        if Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "ss",
                ss_flags,
                &format!("sport = :{port}"),
            ])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("test server in {ns} did not bind {addr}:{port}");
}

/// Connect from `ns` to `addr:port`, send "hi", read the answer.
pub fn tcp_client(ns: &str, addr: &str, port: u16) {
    sh(&format!(
        "ip netns exec {ns} python3 -c \"import socket; s=socket.create_connection(('{addr}',{port}),timeout=3); s.sendall(b'hi'); assert s.recv(10)==b'ok'; s.close()\""
    ));
}

/// The `netflow` binary under test.
pub fn netflow_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NETFLOW_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = root.join("target/release/netflow");
    assert!(
        p.exists(),
        "netflow binary not found at {}: build it first (cargo build --release -p netflow-user) or set NETFLOW_BIN; `cargo xtask test` does both",
        p.display()
    );
    p
}

/// The `netflow` built without the kernel side (`--no-default-features`):
/// replay, export and the dashboard on recordings only.
pub fn offline_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NETFLOW_OFFLINE_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = root.join("target/offline/release/netflow");
    assert!(
        p.exists(),
        "offline netflow not found at {}: build it first (cargo build --release -p netflow-user --no-default-features --target-dir target/offline) or set NETFLOW_OFFLINE_BIN; `cargo xtask test` does both",
        p.display()
    );
    p
}

/// A path removed when this goes out of scope.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Makes each tracer's notify socket path unique within a test binary.
static NOTIFY_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A running `netflow trace --json`.
pub struct Tracer {
    child: Option<Child>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: mpsc::Receiver<String>,
    pub stderr_text: String,
}

impl Tracer {
    /// Start `netflow trace --json ARGS` and wait until its probes are
    /// attached: netflow says READY=1 on NOTIFY_SOCKET (the systemd protocol).
    pub fn start(args: &[&str]) -> Self {
        let notify_path = std::env::temp_dir().join(format!(
            "netflow-notify-{}-{}",
            std::process::id(),
            NOTIFY_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&notify_path);
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
        // Removed however this ends (ready, or a panic below).
        let _rm = RemoveOnDrop(notify_path.clone());
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut child = Command::new(netflow_bin())
            .arg("trace")
            .arg("--json")
            .args(args)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netflow");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut t = Tracer {
            child: Some(child),
            stdout: Some(stdout),
            stderr: rx,
            stderr_text: String::new(),
        };
        // The kernel matrix's VMs emulate the CPU: the verifier is slower there.
        let secs = std::env::var("NETFLOW_TEST_START_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 256];
        loop {
            if let Ok(n) = notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    // What it printed at start (the probes, the selection).
                    while let Ok(line) = t.stderr.recv_timeout(Duration::from_millis(50)) {
                        t.stderr_text.push_str(&line);
                        t.stderr_text.push('\n');
                    }
                    return t;
                }
            }
            match t.stderr.try_recv() {
                Ok(line) => {
                    t.stderr_text.push_str(&line);
                    t.stderr_text.push('\n');
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    let status = t.child.as_mut().unwrap().wait();
                    panic!(
                        "netflow exited before it was ready ({status:?}):\n{}",
                        t.stderr_text
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "netflow not ready after {secs}s:\n{}",
                t.stderr_text
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Kill without letting it clean up.
    pub fn sigkill(&mut self) {
        let mut c = self.child.take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Ctrl-C, then every JSON line it printed.
    pub fn stop(mut self) -> Vec<Value> {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("netflow did not stop within 20s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.stderr.try_recv() {
            self.stderr_text.push_str(&l);
            self.stderr_text.push('\n');
        }
        let out = self.stdout.take().unwrap().join().unwrap();
        assert!(
            status.success(),
            "netflow failed ({status}):\n{}",
            self.stderr_text
        );
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Packet objects only.
pub fn packets(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|v| v["kind"] == "packet").collect()
}

pub fn stats(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|v| v["kind"] == "stats")
        .expect("a stats line at the end")
}

/// The (point, ifname, netns_name, dir) of each hop, for assertions and messages.
pub fn hop_list(p: &Value) -> Vec<(String, String, String, String)> {
    p["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["point"].as_str().unwrap_or("").to_string(),
                h["ifname"].as_str().unwrap_or("").to_string(),
                h["netns_name"].as_str().unwrap_or("?").to_string(),
                h["dir"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Packets whose flow matches (proto, src, dst).
pub fn flows<'a>(pkts: &[&'a Value], proto: &str, src: &str, dst: &str) -> Vec<&'a Value> {
    pkts.iter()
        .copied()
        .filter(|p| {
            p["flow"]["proto"] == proto && p["flow"]["src"] == src && p["flow"]["dst"] == dst
        })
        .collect()
}

/// Does `hops` contain `want` as a subsequence (in order)?
pub fn in_order(
    hops: &[(String, String, String, String)],
    want: &[(&str, &str, &str, &str)],
) -> bool {
    let mut it = hops.iter();
    want.iter().all(|w| {
        it.any(|h| h.0 == w.0 && h.1 == w.1 && h.2 == w.2 && (w.3.is_empty() || h.3 == w.3))
    })
}

/// Program ids of the BPF links a process holds (from /proc/PID/fdinfo).
pub fn bpf_link_prog_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for e in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .flatten()
    {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if !info.contains("link_type:") {
            continue;
        }
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    ids
}

/// Does a BPF program with this id still exist?
pub fn bpf_prog_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run bpftool (installed by scripts/setup.sh)")
        .success()
}

/// Routed pods behind a node (calico style: /32 routes, proxy ARP,
/// 169.254.1.1 as the pods' gateway); the node is its own namespace.
pub fn routed_lab(tag: &str, subnet: &str) -> (Lab, String, String, String, String, String) {
    let mut lab = Lab::new(tag);
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

/// Two "nodes" joined by VXLAN (VNI 7, UDP 8472) over an underlay veth,
/// with a routed pod behind each (flannel/calico style). `o` is the second
/// octet of every address: pods `10.o.1.2` and `10.o.2.2`, nodes'
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

pub fn vxlan_nodes(tag: &str, o: u8) -> VxlanNodes {
    let mut lab = Lab::new(tag);
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

/// Connection records (`"kind":"flow"`).
pub fn connections(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|v| v["kind"] == "flow").collect()
}

/// A UDP server in `ns` on `addr:port` (IPv4 or IPv6) that answers each
/// datagram with "ok:" + the datagram, or never answers (`answer` false).
pub fn udp_server(ns: &str, addr: &str, port: u16, answer: bool) -> Background {
    let family = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let script = std::env::temp_dir().join(format!("netflow-test-udp-{ns}-{port}.py"));
    let reply = if answer {
        "s.sendto(b'ok:'+d,a)"
    } else {
        "pass"
    };
    std::fs::write(
        &script,
        format!(
            "import socket\ns=socket.socket(socket.{family},socket.SOCK_DGRAM)\ns.bind(('{addr}',{port}))\nwhile True:\n    d,a=s.recvfrom(2000)\n    {reply}\n"
        ),
    )
    .expect("write test server script");
    let mut bg = Background::spawn(&format!("ip netns exec {ns} python3 {}", script.display()));
    bg.1 = Some(script);
    wait_bound(ns, "-lunH", addr, port);
    bg
}

/// Send `n` datagrams from `ns` to `addr:port`, each from its own socket
/// (its own connection), waiting up to `wait` seconds for each answer.
/// Returns how many were answered.
pub fn udp_client(ns: &str, addr: &str, port: u16, n: u32, wait: f32) -> u32 {
    let family = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let out = sh(&format!(
        "ip netns exec {ns} python3 -c \"import socket\nk=0\nfor i in range({n}):\n s=socket.socket(socket.{family},socket.SOCK_DGRAM); s.settimeout({wait})\n s.sendto(b'q%d'%i,('{addr}',{port}))\n try:\n  s.recvfrom(100); k+=1\n except OSError: pass\n s.close()\nprint(k)\""
    ));
    out.trim().parse().expect("answered count")
}

/// The hops of a packet that carry a NAT translation.
pub fn nat_hops(p: &Value) -> Vec<&Value> {
    p["hops"]
        .as_array()
        .map(|h| h.iter().filter(|h| !h["nat"].is_null()).collect())
        .unwrap_or_default()
}

/// The one hop of a packet that carries a NAT translation (panics otherwise).
pub fn one_nat_hop(p: &Value) -> &Value {
    let nat = nat_hops(p);
    assert_eq!(nat.len(), 1, "exactly one translation: {p:#}");
    nat[0]
}

/// Run `netflow ARGS` as user nobody with no capabilities.
pub fn unprivileged(args: &[&str]) -> std::process::Output {
    unprivileged_bin(&netflow_bin(), args)
}

/// [`unprivileged`] with another build of netflow.
pub fn unprivileged_bin(bin: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin)
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

/// A tmux session running a command, killed when dropped.
pub struct Tmux(pub String);

impl Tmux {
    pub fn start(name: &str, cmd: &str) -> Self {
        let out = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "160",
                "-y",
                "45",
                "sh",
                "-c",
                cmd,
            ])
            .output()
            .expect("tmux (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux(name.to_string())
    }

    pub fn keys(&self, keys: &str) {
        let _ = Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys])
            .output();
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the screen shows `what`, then return it.
    pub fn wait_for(&self, what: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// The drop reason of a drop or connection record: the kernel's, or on
/// kernels without drop reasons (before 5.17) the one its location most
/// likely means, which netflow then reports as `likely` (with `reason`
/// "unavailable" and the location present).
pub fn reason(v: &Value) -> &str {
    match v["reason"].as_str() {
        Some("unavailable") => {
            assert!(
                v["location"].as_str().is_some_and(|l| !l.is_empty()),
                "{v:#}"
            );
            v["likely"].as_str().unwrap_or("unavailable")
        }
        Some(r) => r,
        None => "",
    }
}

/// The running kernel reports a RST sent without a socket (a SYN to a closed
/// port) through `tcp:tcp_send_reset`: since 6.10, whose prototype has the
/// reset reason. Older kernels only report the SYN's NO_SOCKET drop.
pub fn kernel_traces_socketless_resets() -> bool {
    netflow::live::kernel::btf::KernelBtf::load()
        .and_then(|b| b.tracepoint_args("tcp_send_reset"))
        .is_ok_and(|args| args.len() >= 3)
}
