//! Test servers and clients in a namespace (TCP, UDP), killed when dropped.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::sh;

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

/// A TCP server in `ns` on `addr:port` that reads each connection to its
/// end and answers with the number of bytes it read.
pub fn byte_sink(ns: &str, addr: &str, port: u16) -> Background {
    let script = std::env::temp_dir().join(format!("netflow-sink-{ns}-{port}.py"));
    std::fs::write(
        &script,
        format!(
            "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('{addr}',{port})); s.listen()\nwhile True:\n    c,_=s.accept()\n    n=0\n    while True:\n        d=c.recv(65536)\n        if not d: break\n        n+=len(d)\n    c.sendall(str(n).encode()); c.close()\n"
        ),
    )
    .expect("write test server script");
    let mut bg = Background::spawn(&format!("ip netns exec {ns} python3 {}", script.display()));
    bg.1 = Some(script);
    wait_bound(ns, "-ltnH", addr, port);
    bg
}

/// From `ns`, send `bytes` to the [`byte_sink`] on `addr:port` and check
/// its answer.
pub fn send_bytes(ns: &str, addr: &str, port: u16, bytes: u64) {
    sh(&format!(
        "ip netns exec {ns} python3 -c \"import socket; s=socket.create_connection(('{addr}',{port}),timeout=5); s.sendall(b'x'*{bytes}); s.shutdown(socket.SHUT_WR); assert s.recv(20)==b'{bytes}'\""
    ));
}

/// Debian's dnsmasq as a lab's DNS server in `ns` on `addr:53`: every name
/// under `cluster.local` answered from `records` (`(name, address)`) or
/// NXDOMAIN; any other name is REFUSED (it has no upstream).
pub fn dnsmasq(ns: &str, addr: &str, records: &[(&str, &str)]) -> Background {
    let mut cmd = format!(
        "ip netns exec {ns} dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
         --bind-interfaces --listen-address={addr} --port=53 --user=root --pid-file= \
         --local=/cluster.local/"
    );
    for (name, ip) in records {
        cmd.push_str(&format!(" --address=/{name}/{ip}"));
    }
    let bg = Background::spawn(&cmd);
    wait_bound(ns, "-lunH", addr, 53);
    bg
}

/// Debian's BIND (`named`) in `ns` on `addr:port`, serving one zone,
/// `broken.test`, whose file does not exist: it answers SERVFAIL for every
/// name in it, as a server with a zone that failed to load does.
pub fn named_servfail(ns: &str, addr: &str, port: u16) -> Background {
    let dir = std::env::temp_dir().join(format!("netflow-named-{ns}-{port}"));
    std::fs::create_dir_all(&dir).expect("named's directory");
    let d = dir.display();
    std::fs::write(
        dir.join("named.conf"),
        format!(
            "options {{ directory \"{d}\"; listen-on port {port} {{ {addr}; }}; listen-on-v6 {{ none; }};\n\
             recursion no; pid-file none; dnssec-validation no; }};\n\
             controls {{ }};\n\
             zone \"broken.test\" {{ type primary; file \"{d}/missing.zone\"; }};\n"
        ),
    )
    .expect("write named.conf");
    let mut bg = Background::spawn(&format!("ip netns exec {ns} named -g -c {d}/named.conf"));
    bg.1 = Some(dir.join("named.conf"));
    wait_bound(ns, "-lunH", addr, port);
    bg
}

/// A UDP server in `ns` on `addr:port` that reads queries and never answers.
pub fn silent_udp(ns: &str, addr: &str, port: u16) -> Background {
    let bg = Background::spawn(&format!(
        "ip netns exec {ns} python3 -c \"import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('{addr}',{port}))\nwhile True: s.recv(2048)\""
    ));
    wait_bound(ns, "-lunH", addr, port);
    bg
}

/// `dig` from `ns`: what it printed (a query nobody answers is no error).
pub fn dig(ns: &str, args: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ip netns exec {ns} dig +tries=1 +time=2 {args}"))
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An nftables counter in `ns` at OUTPUT for packets matching `expr`
/// (one per namespace: table `ip cnt`).
pub fn output_counter(ns: &str, expr: &str) {
    sh(&format!(
        "ip netns exec {ns} nft 'add table ip cnt; add chain ip cnt out {{ type filter hook output priority 10; }}; add rule ip cnt out {expr} counter'"
    ));
}

/// The packets [`output_counter`] counted in `ns`.
pub fn counter_packets(ns: &str) -> u64 {
    let out = sh(&format!("ip netns exec {ns} nft list table ip cnt"));
    out.split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {out}"))
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

/// A DNS server in `ns` on `addr:port` whose answers (NOERROR, no
/// records) leave by a packet socket on `eth0` to its default gateway:
/// past the node's IP stack and its socket programs, as an answer from a
/// server on another node arrives. The query is read by a UDP socket.
pub fn dns_answering_from_off_node(ns: &str, addr: &str, port: u16) -> Background {
    let script = std::env::temp_dir().join(format!("netflow-test-offnode-dns-{ns}-{port}.py"));
    std::fs::write(
        &script,
        format!(
            r#"import socket, struct
def gateway():
    for l in open('/proc/net/route').read().split('\n')[1:]:
        f = l.split()
        if len(f) > 2 and f[1] == '00000000':
            return socket.inet_ntoa(struct.pack('<I', int(f[2], 16)))
def mac_of(ip):
    for l in open('/proc/net/arp').read().split('\n')[1:]:
        f = l.split()
        if f and f[0] == ip:
            return bytes.fromhex(f[3].replace(':', ''))
def csum(b):
    s = sum(struct.unpack('!10H', b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(('{addr}', {port}))
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
p.bind(('eth0', 0))
me = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))
while True:
    q, (cip, cport) = u.recvfrom(2048)
    gw = mac_of(gateway())
    m = bytearray(q)
    m[2] |= 0x80
    m[3] = 0x80
    udp = struct.pack('!HHHH', {port}, cport, 8 + len(m), 0) + bytes(m)
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 7, 0, 64, 17, 0,
                     socket.inet_aton('{addr}'), socket.inet_aton(cip))
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    p.send(gw + me + b'\x08\x00' + ip + udp)
"#
        ),
    )
    .expect("write test server script");
    let mut bg = Background::spawn(&format!("ip netns exec {ns} python3 {}", script.display()));
    bg.1 = Some(script);
    wait_bound(ns, "-lunH", addr, port);
    bg
}
