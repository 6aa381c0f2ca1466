//! JSON lines: one object per completed packet, then a stats line: the
//! view model serialized.
use std::io::Write;

use serde::Serialize;

use super::{
    view::{connection_view, note_view, timeline_view},
    Sink, Stats,
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
}

impl Json {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            line: Vec::with_capacity(4096),
        }
    }

    fn write_line<T: Serialize>(&mut self, v: &T) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, v)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

impl Sink for Json {
    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()> {
        self.write_line(&timeline_view(tl, names))
    }

    fn note(&mut self, n: &Note, names: &Names) -> std::io::Result<()> {
        self.write_line(&note_view(n, names))
    }

    fn connection(&mut self, c: &Connection, names: &Names) -> std::io::Result<()> {
        self.write_line(&connection_view(c, names))
    }

    fn stats(&mut self, s: &Stats) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            kind: &'static str,
            #[serde(flatten)]
            stats: &'a Stats,
        }
        serde_json::to_writer(
            &mut self.out,
            &Line {
                kind: "stats",
                stats: s,
            },
        )?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
