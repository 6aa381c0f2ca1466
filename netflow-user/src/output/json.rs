//! JSON lines: a start record, one record per completed packet, connection
//! and TCP note, then a stats line; each a `netflow_schema::Line` (the
//! records of `view`, in the envelope every line has: `v`, `kind`, `time`,
//! `ts_ns`, `node`).
use std::io::Write;

use netflow_schema::{Line, Record, VERSION};

use super::{
    view::{connection_view, note_view, timeline_view},
    Run, Sink, Stats,
};
use crate::{
    correlate::{connections::Connection, Note, Timeline},
    decode::names::Names,
};

pub struct Json {
    out: Box<dyn Write + Send>,
    /// One line is built here, then written at once (serde_json writes in
    /// many small pieces).
    line: Vec<u8>,
    node: String,
    realtime_offset_ns: i128,
}

impl Json {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            line: Vec::with_capacity(4096),
            node: String::new(),
            realtime_offset_ns: 0,
        }
    }

    fn write_line(&mut self, ts_ns: u64, record: Record) -> std::io::Result<()> {
        let line = Line {
            v: VERSION,
            time: wall_clock(ts_ns, self.realtime_offset_ns),
            ts_ns,
            node: self.node.clone(),
            record,
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

/// A monotonic time on the realtime clock, RFC 3339 with nanoseconds (UTC).
pub fn wall_clock(ts_ns: u64, realtime_offset_ns: i128) -> String {
    let ns = ts_ns as i128 + realtime_offset_ns;
    match jiff::Timestamp::from_nanosecond(ns) {
        Ok(t) => format!("{t:.9}"),
        Err(_) => format!("{:.9}", jiff::Timestamp::UNIX_EPOCH),
    }
}

impl Sink for Json {
    fn start(&mut self, run: &Run) -> std::io::Result<()> {
        self.node = run.node.clone();
        self.realtime_offset_ns = run.realtime_offset_ns;
        self.write_line(run.ts_ns, Record::Start(run.start.clone()))?;
        self.out.flush()
    }

    fn clock(&mut self, realtime_offset_ns: i128) {
        self.realtime_offset_ns = realtime_offset_ns;
    }

    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()> {
        let ts = tl.hops.first().map_or(0, |h| h.ts_ns);
        self.write_line(ts, Record::Packet(timeline_view(tl, names)))
    }

    fn note(&mut self, n: &Note, names: &Names) -> std::io::Result<()> {
        self.write_line(n.ts_ns, Record::Tcp(note_view(n, names)))
    }

    fn connection(&mut self, c: &Connection, names: &Names) -> std::io::Result<()> {
        self.write_line(c.first_ts_ns, Record::Connection(connection_view(c, names)))
    }

    fn stats(&mut self, s: &Stats, now: u64) -> std::io::Result<()> {
        self.write_line(now, Record::Stats(s.clone()))?;
        self.out.flush()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wall_clock_is_rfc3339_with_nanoseconds() {
        // 2026-12-07T07:18:09.000000042Z on the realtime clock.
        let real = 1_796_627_889_000_000_042i128;
        assert_eq!(
            super::wall_clock(5, real - 5),
            "2026-12-07T07:18:09.000000042Z"
        );
    }
}
