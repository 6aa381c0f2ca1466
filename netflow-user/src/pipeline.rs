//! decoder → correlator → output, driven the same way by a live trace and
//! by a replay: `event` for each raw ring-buffer record, `tick` when the
//! clock advanced, `finish` at the end. A live run also records here.
use crate::{
    connections::{self, Connection, Connections},
    correlate::{Config, Correlator, Timeline, Verdict},
    decode::Event,
    names::Names,
    output::{Sink, Stats},
    record::{End, Writer},
    select::FlowFilter,
};

pub struct Pipeline {
    corr: Correlator,
    conns: Connections,
    sink: Box<dyn Sink + Send>,
    pub names: Names,
    pub stats: Stats,
    recorder: Option<Writer>,
    filter: FlowFilter,
}

impl Pipeline {
    pub fn new(
        cfg: Config,
        sink: Box<dyn Sink + Send>,
        names: Names,
        recorder: Option<Writer>,
        filter: FlowFilter,
    ) -> Self {
        Pipeline {
            corr: Correlator::new(cfg),
            conns: Connections::new(connections::Config::default()),
            sink,
            names,
            stats: Stats::default(),
            recorder,
            filter,
        }
    }

    /// One record as the kernel wrote it.
    pub fn event(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stats.events += 1;
        if let Some(r) = &mut self.recorder {
            r.event(bytes)?;
        }
        match Event::try_from(bytes) {
            Ok(ev) => {
                if let Some(r) = &mut self.recorder {
                    r.symbol(ev.location, &self.names.location(ev.location))?;
                }
                self.corr.push(ev);
            }
            Err(e) => {
                self.stats.decode_errors += 1;
                log::debug!("undecodable event: {e}");
            }
        }
        Ok(())
    }

    /// The monotonic clock reads `now`: print what is complete.
    pub fn tick(&mut self, now: u64) -> std::io::Result<()> {
        self.sink.progress(&self.stats);
        let tls = self.corr.expire(now);
        let tls = self.completed(tls);
        let notes = self.corr.take_notes();
        let conns = self.conns.expire(now);
        if tls.is_empty() && notes.is_empty() && conns.is_empty() {
            return Ok(());
        }
        if let Some(r) = &mut self.recorder {
            r.tick(now)?;
        }
        self.emit(tls, notes)?;
        self.emit_connections(conns)
    }

    /// The kernel's count of lost events, read at monotonic time `now`:
    /// what was open when events went missing is incomplete.
    pub fn lost(&mut self, total: u64, now: u64) {
        if total > self.stats.lost {
            self.stats.lost = total;
            self.corr.mark_incomplete();
            self.conns.mark_incomplete(now);
        }
    }

    /// Tell the output what is traced.
    pub fn start(
        &mut self,
        summary: &str,
        probes: &[crate::probes::ProbeStatus],
    ) -> std::io::Result<()> {
        self.sink.start(summary, probes)
    }

    /// Names changed (namespaces or devices came and went).
    pub fn names_changed(&mut self) -> std::io::Result<()> {
        if let Some(r) = &mut self.recorder {
            r.names(&self.names.snapshot())?;
        }
        Ok(())
    }

    /// Completed timelines that pass the filter, counted into their connections.
    fn completed(&mut self, mut tls: Vec<Timeline>) -> Vec<Timeline> {
        tls.retain(|tl| !tl.hops.is_empty() && self.filter.timeline(tl, &self.names));
        for tl in &tls {
            self.conns.add(tl);
        }
        tls
    }

    fn emit(
        &mut self,
        tls: Vec<Timeline>,
        notes: Vec<crate::correlate::Note>,
    ) -> std::io::Result<()> {
        for n in notes {
            if !self.filter.tuple(&n.tuple) {
                continue;
            }
            self.stats.notes += 1;
            self.sink.note(&n, &self.names)?;
        }
        for tl in tls {
            self.stats.packets += 1;
            match tl.verdict {
                Verdict::Dropped => self.stats.dropped += 1,
                Verdict::Unknown => self.stats.unknown += 1,
                Verdict::Unclaimed => self.stats.unclaimed += 1,
                Verdict::Delivered | Verdict::Forwarded => {}
            }
            if tl.after.is_some() {
                self.stats.after_delivery += 1;
            }
            self.sink.timeline(&tl, &self.names)?;
        }
        self.stats.after_delivery += self.corr.take_late_after();
        self.sink.flush()
    }

    fn emit_connections(&mut self, conns: Vec<Connection>) -> std::io::Result<()> {
        if conns.is_empty() {
            return Ok(());
        }
        for c in conns {
            self.stats.connections += 1;
            if c.outcome != connections::Outcome::Ok {
                self.stats.connections_failed += 1;
            }
            self.sink.connection(&c, &self.names)?;
        }
        self.sink.flush()
    }

    /// Everything still open, the stats line; `lost` as the kernel counted.
    pub fn finish(mut self, lost: u64, now: u64) -> std::io::Result<Stats> {
        self.lost(lost, now);
        let tls = self.corr.flush();
        let tls = self.completed(tls);
        let notes = self.corr.take_notes();
        self.emit(tls, notes)?;
        let conns = self.conns.flush();
        self.emit_connections(conns)?;
        self.sink.stats(&self.stats)?;
        self.sink.flush()?;
        if let Some(r) = self.recorder.take() {
            r.end(&End {
                events: self.stats.events,
                lost,
            })?;
        }
        Ok(self.stats)
    }
}
