//! The netflow binaries under test and a running `netflow trace --json`,
//! ready when it says so over NOTIFY_SOCKET.
use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use netflow_schema::Line;

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
        Self::spawn(&["trace", "--json"], args)
    }

    /// Start `netflow agent ARGS`, ready as `start` is.
    pub fn agent(args: &[&str]) -> Self {
        Self::spawn(&["agent"], args)
    }

    fn spawn(command: &[&str], args: &[&str]) -> Self {
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
            .args(command)
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

    /// What netflow printed on stderr until now.
    pub fn stderr_so_far(&mut self) -> &str {
        while let Ok(l) = self.stderr.try_recv() {
            self.stderr_text.push_str(&l);
            self.stderr_text.push('\n');
        }
        &self.stderr_text
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

    /// Ctrl-C, then every line it printed, typed.
    pub fn stop_lines(self) -> Vec<Line> {
        self.stop_lines_by(libc::SIGINT).0
    }

    /// SIGTERM (what a DaemonSet rollout sends): every line it printed,
    /// typed, and how long it took to exit.
    pub fn terminate_lines(self) -> (Vec<Line>, Duration) {
        self.stop_lines_by(libc::SIGTERM)
    }

    fn stop_lines_by(self, signal: i32) -> (Vec<Line>, Duration) {
        let (out, took) = self.stopped(signal);
        (crate::json::parse_lines(&out), took)
    }

    /// Signal it, wait for it to exit (successfully): what it printed on
    /// stdout and how long it took.
    fn stopped(mut self, signal: i32) -> (String, Duration) {
        let mut child = self.child.take().unwrap();
        let asked = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("netflow did not stop within 20s of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = asked.elapsed();
        while let Ok(l) = self.stderr.try_recv() {
            self.stderr_text.push_str(&l);
            self.stderr_text.push('\n');
        }
        let out = self.stdout.take().unwrap().join().unwrap();
        // Debugging a test: what netflow said (with RUST_LOG=netflow=debug).
        if std::env::var_os("NETFLOW_TEST_STDERR").is_some() {
            eprintln!("{}", self.stderr_text);
        }
        assert!(
            status.success(),
            "netflow failed ({status}):\n{}",
            self.stderr_text
        );
        (out, took)
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
