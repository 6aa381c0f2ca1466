//! A terminal program driven through tmux (the dashboard tests).
use std::{
    process::Command,
    time::{Duration, Instant},
};

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
        self.wait_until(what, secs, |s| s.contains(what))
    }

    /// The screen once `ready` holds for it (`what` says what is awaited,
    /// for the failure's message), within `secs`: what arrives in steps (a
    /// rule's name after its drop) is waited for, not caught half-way.
    pub fn wait_until(&self, what: &str, secs: u64, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ready(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what}:\n{s}"
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
