//! Helpers for netflow's real-kernel tests, one module per concern: shell
//! commands ([`shell`]), namespace labs that remove everything they created
//! when dropped, also when a test panics ([`lab`]), test servers
//! ([`servers`]), the dashboard rendered off screen ([`screen`]), the binaries under test and a running tracer ([`tracer`]),
//! its JSON lines ([`json`]), what the kernel has ([`kernel`]), a terminal
//! in tmux ([`tmux`]), a real containerd ([`cri`]), the agent's metrics
//! endpoint ([`scrape`]) and what a healthy run reads as ([`verdict`]).
//!
//! Tests run as root against the running kernel; nothing is mocked.
pub mod cri;
pub mod json;
pub mod kernel;
pub mod lab;
pub mod scrape;
pub mod screen;
pub mod servers;
pub mod shell;
pub mod tmux;
pub mod tracer;
pub mod verdict;

pub use json::*;
pub use kernel::*;
pub use lab::*;
pub use scrape::*;
pub use screen::*;
pub use servers::*;
pub use shell::*;
pub use tmux::*;
pub use tracer::*;
pub use verdict::*;
