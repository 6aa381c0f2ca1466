//! Standard output that a reader may close (`netflow replay FILE | head
//! -1`): the first broken pipe marks it closed, and what follows is
//! discarded, so that a run stops normally (a live trace detaches and writes
//! its recording's tail) and exits 0, as tcpdump does. SIGPIPE stays
//! ignored (Rust's default): restoring it would kill the process before the
//! recording is complete.
use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Did the reader of stdout go away?
pub fn stdout_closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Writes to stdout until its reader goes away, then discards.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

fn closed_is_fine<T>(r: std::io::Result<T>, or: T) -> std::io::Result<T> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(or)
        }
        r => r,
    }
}

impl Write for Stdout {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if stdout_closed() {
            return Ok(b.len());
        }
        closed_is_fine(std::io::stdout().write(b), b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if stdout_closed() {
            return Ok(());
        }
        closed_is_fine(std::io::stdout().flush(), ())
    }
}
