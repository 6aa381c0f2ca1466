//! The last step of an event's path: printing completed timelines.
//!
//! [`view`] turns a completed timeline, connection or note into the one view
//! model every output renders (names of points, verdicts, endpoints, hints);
//! [`json`], `text`, [`pcapng`] and the [`dashboard`] render it.
pub mod dashboard;
pub mod diagnose;
pub mod dns;
pub mod json;
pub mod pcapng;
mod sink;
mod stdout;
mod text;
pub mod view;

use std::io::Write;

pub use sink::{parse_probe_line, probe_line, Mode, Probe, ProbeStatus, Run, Sink, Start, Stats};
pub use stdout::{stdout_closed, Stdout};

pub fn sink(mode: Mode, out: Box<dyn Write + Send>) -> Box<dyn Sink + Send> {
    let out: Box<dyn Write + Send> = Box::new(std::io::BufWriter::with_capacity(1 << 16, out));
    match mode {
        Mode::Text => Box::new(text::Text::new(out)),
        Mode::Json => Box::new(json::Json::new(out)),
    }
}

pub use view::timeline_view;
