//! decoder → correlator → output, driven the same way by a live trace and
//! by a replay: `event` for each raw ring-buffer record, `tick` when the
//! clock advanced, `finish` at the end. A live run also records here.
use std::collections::HashMap;

use crate::{
    correlate::cause::{
        self,
        evidence::{Answer, Answered, Evidence, Query},
        frees,
    },
    correlate::connections::{self, Connection, Connections, CountSource, Counted},
    correlate::filter::FlowFilter,
    correlate::{Config, Correlator, Timeline, Verdict},
    decode::names::Names,
    decode::packet::Tuple,
    decode::{Event, What},
    output::{Sink, Stats},
    record::{CountedRecord, End, Writer},
};

/// The flow of a drop on a packet's path or of a failed connect. A group
/// packet (multicast, broadcast) nobody took is no failure: not followed.
fn failed_flow(ev: &Event) -> Option<Tuple> {
    let failed = match ev.what {
        What::End { .. } => {
            ev.point == netflow_common::Point::Drop
                && ev.flags & netflow_common::event_flags::AFTER_DELIVERY == 0
        }
        What::Note { kind, .. } => matches!(kind, crate::decode::NoteKind::ConnectFailed { .. }),
        // Not a failure: a connect sampled to be followed all the same.
        What::Sampled => true,
        _ => false,
    };
    failed
        .then(|| ev.packet.as_ref().map(|p| p.tuple))
        .flatten()
        .filter(|t| !crate::correlate::is_group_addr(&t.dst))
}

/// Connections that go out at a time when the run ends.
const FLUSH_CHUNK: usize = 2048;

pub struct Pipeline {
    corr: Correlator,
    conns: Connections,
    /// Live: the kernel's counts of only-counted packets.
    counts: Option<Box<dyn CountSource + Send>>,
    /// Replay: the counts the live run read, by tuple.
    recorded_counts: HashMap<Tuple, Counted>,
    /// Live: where the cause finder asks the node.
    evidence: Option<Box<dyn Evidence + Send>>,
    /// Replay: what the node answered in the live run; live: the last
    /// answer recorded for each question (an answer is recorded when it
    /// changes, not at every drop of a flood).
    recorded_evidence: HashMap<Query, Option<Answer>>,
    /// At exit: what is not printed by then is only counted (a tracer
    /// stopped under a flood must stop now).
    deadline: Option<std::time::Instant>,
    sink: Box<dyn Sink + Send>,
    pub names: Names,
    pub stats: Stats,
    recorder: Option<Writer>,
    filter: FlowFilter,
    /// UDP ports whose packets carry VXLAN (the decoder follows the inner packet).
    vxlan_ports: Vec<u16>,
    /// The kernel's count of only-counted packets; `stats.sampled` adds
    /// those the sockets counted (known as each connection ends).
    kernel_sampled: u64,
    sampled_at_sockets: u64,
    /// Replay: when the recorded run ended (its stats line's moment).
    ended_ns: Option<u64>,
    /// Packets to report at most (`-c`).
    limit: Option<u64>,
    /// Live, the events mode: the flows of drops and failed connects seen
    /// since the last take, to follow hop by hop (bounded).
    failures: Option<Vec<(Tuple, u32)>>,
}

/// Failures held for the next take, at most.
const MAX_FAILURES: usize = 64;

impl Pipeline {
    pub fn new(
        cfg: Config,
        sink: Box<dyn Sink + Send>,
        names: Names,
        recorder: Option<Writer>,
        filter: FlowFilter,
    ) -> Self {
        Pipeline {
            vxlan_ports: cfg.vxlan_ports.clone(),
            conns: Connections::new(connections::Config {
                max_open: cfg.max_connections,
                ..connections::Config::default()
            }),
            corr: Correlator::new(cfg),
            counts: None,
            recorded_counts: HashMap::new(),
            evidence: None,
            recorded_evidence: HashMap::new(),
            deadline: None,
            sink,
            names,
            stats: Stats::default(),
            recorder,
            filter,
            kernel_sampled: 0,
            sampled_at_sockets: 0,
            ended_ns: None,
            limit: None,
            failures: None,
        }
    }

    /// Keep the flows of drops and failed connects for `take_failures`.
    pub fn collect_failures(&mut self) {
        self.failures = Some(Vec::new());
    }

    /// The flows that failed since the last take (tuple, namespace).
    pub fn take_failures(&mut self) -> Vec<(Tuple, u32)> {
        self.failures
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// One record as the kernel wrote it.
    pub fn event(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stats.events += 1;
        match Event::decode(bytes, &self.vxlan_ports) {
            Ok(mut ev) => {
                if let What::End { reason, location } = ev.what {
                    // The location's name first: a replay knows it when the event comes.
                    let at = self.names.location(location);
                    if let Some(r) = &mut self.recorder {
                        r.symbol(location, &at)?;
                    }
                    let open = self.corr.is_open(ev.skb);
                    frees::settle(&mut ev, &self.names, reason, &at, open);
                }
                if let Some(r) = &mut self.recorder {
                    r.event(bytes)?;
                }
                if let Some(f) = self.failures.as_mut().filter(|f| f.len() < MAX_FAILURES) {
                    if let Some(t) = failed_flow(&ev) {
                        f.push((t, ev.netns));
                    }
                }
                self.corr.push(ev);
            }
            Err(e) => {
                if let Some(r) = &mut self.recorder {
                    r.event(bytes)?;
                }
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
        let conns = {
            let mut counts = counts(
                &mut self.counts,
                &mut self.recorded_counts,
                &mut self.recorder,
            );
            self.conns.expire(now, &mut counts)
        };
        if tls.is_empty() && notes.is_empty() && conns.is_empty() {
            return Ok(());
        }
        if let Some(r) = &mut self.recorder {
            r.tick(now)?;
        }
        self.emit(tls, notes)?;
        self.emit_connections(conns)
    }

    /// Flows followed hop by hop so far, and those the bounds skipped.
    pub fn follows(&mut self, followed: u64, skipped: u64) {
        self.sink.follows(followed, skipped);
    }

    /// The kernel's TCP state change counts, per namespace, to the sink.
    pub fn sockets(&mut self, counts: &[(u32, [u64; netflow_common::sock_class::N])]) {
        self.sink.sockets(counts);
    }

    /// Where a live run reads the kernel's counts of only-counted packets.
    pub fn set_counts(&mut self, source: Box<dyn CountSource + Send>) {
        self.counts = Some(source);
    }

    /// Where a live run asks the node about failures.
    pub fn set_evidence(&mut self, source: Box<dyn Evidence + Send>) {
        self.evidence = Some(source);
    }

    /// A replayed answer the node gave the live run.
    pub fn recorded_evidence(&mut self, a: Answered) {
        self.recorded_evidence.insert(a.query, a.answer);
    }

    /// Report at most `n` packets (`-c N`); see [`Pipeline::limit_reached`].
    pub fn limit(&mut self, n: Option<u64>) {
        self.limit = n;
    }

    /// `-c N` packets reported: the run should stop.
    pub fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|n| self.stats.packets >= n)
    }

    /// A replay: when the recorded run ended.
    pub fn ended(&mut self, ns: u64) {
        self.ended_ns = (ns != 0).then_some(ns);
    }

    /// A replayed record of counts the live run read.
    pub fn recorded_counts(&mut self, t: Tuple, c: Counted) {
        *self.recorded_counts.entry(t).or_default() = c;
    }

    /// The kernel's count of only-counted packets so far.
    pub fn sampled(&mut self, total: u64) {
        self.kernel_sampled = total;
        self.stats.sampled = total + self.sampled_at_sockets;
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
    pub fn start(&mut self, run: &crate::output::Run) -> std::io::Result<()> {
        self.sink.start(run)
    }

    /// The realtime clock's offset now (a live run looks again periodically).
    pub fn clock(&mut self, realtime_offset_ns: i128) {
        self.sink.clock(realtime_offset_ns)
    }

    /// Names changed (namespaces or devices came and went).
    pub fn names_changed(&mut self) -> std::io::Result<()> {
        if let Some(r) = &mut self.recorder {
            r.names(&self.names.snapshot())?;
        }
        Ok(())
    }

    /// Past the exit deadline (looked at every 256 items).
    fn out_of_time(&self, i: usize) -> bool {
        i.is_multiple_of(256) && self.deadline.is_some_and(|d| std::time::Instant::now() > d)
    }

    /// Completed timelines that pass the filter, counted into their connections.
    fn completed(&mut self, mut tls: Vec<Timeline>) -> Vec<Timeline> {
        tls.retain(|tl| !tl.hops.is_empty() && self.filter.timeline(tl, &self.names));
        for i in 0..tls.len() {
            if self.out_of_time(i) {
                // Stopping under a flood: the rest is counted, not printed.
                self.stats.unreported += (tls.len() - i) as u64;
                tls.truncate(i);
                break;
            }
            let tl = &mut tls[i];
            let mut ask = ask(
                &mut self.evidence,
                &mut self.recorded_evidence,
                &mut self.recorder,
            );
            cause::nat::name_untraced(tl, &mut ask);
            if tl.verdict == Verdict::Dropped {
                tl.explained = cause::explain(tl, &self.names, &mut ask, &self.conns).map(Box::new);
            }
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
        let mut late = false;
        for (i, tl) in tls.into_iter().enumerate() {
            if self.limit_reached() {
                break;
            }
            late = late || self.out_of_time(i);
            if late {
                self.stats.unreported += 1;
                continue;
            }
            self.stats.packets += 1;
            match tl.verdict {
                Verdict::Dropped => self.stats.dropped += 1,
                // Still on its way when the trace stopped: not a vanished packet.
                Verdict::Unknown if tl.incomplete => self.stats.in_flight += 1,
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
        self.stats.evicted = self.conns.evicted() + self.corr.evicted();
        if conns.is_empty() {
            return Ok(());
        }
        let mut late = false;
        for (i, c) in conns.into_iter().enumerate() {
            self.sampled_at_sockets += c.counted_at_sockets;
            self.stats.sampled = self.kernel_sampled + self.sampled_at_sockets;
            late = late || self.out_of_time(i);
            if late {
                self.stats.unreported += 1;
                continue;
            }
            self.stats.connections += 1;
            if c.outcome != connections::Outcome::Ok {
                self.stats.connections_failed += 1;
            }
            self.sink.connection(&c, &self.names)?;
        }
        self.sink.flush()
    }

    /// Everything still open, the stats line; `lost` as the kernel counted.
    /// With `budget`, what is not printed within it is counted as
    /// `unreported` instead (stopping a tracer under a flood).
    pub fn finish(
        mut self,
        lost: u64,
        now: u64,
        budget: Option<std::time::Duration>,
    ) -> std::io::Result<Stats> {
        self.deadline = budget.map(|b| std::time::Instant::now() + b);
        self.lost(lost, now);
        let tls = self.corr.flush();
        let tls = self.completed(tls);
        let notes = self.corr.take_notes();
        self.emit(tls, notes)?;
        // A chunk at a time: a flood's open connections all at once would
        // hold twice their size at the very end of the run.
        loop {
            let conns = {
                let mut counts = counts(
                    &mut self.counts,
                    &mut self.recorded_counts,
                    &mut self.recorder,
                );
                self.conns.flush_some(&mut counts, FLUSH_CHUNK)
            };
            let Some(conns) = conns else { break };
            self.emit_connections(conns)?;
        }
        self.sink.stats(&self.stats, self.ended_ns.unwrap_or(now))?;
        self.sink.flush()?;
        if let Some(r) = self.recorder.take() {
            r.end(&End {
                events: self.stats.events,
                lost,
                // The replay counts the sockets' share again from the
                // recorded counts.
                sampled: self.kernel_sampled,
                ended_ns: now,
            })?;
        }
        Ok(self.stats)
    }
}

/// The counts of only-counted packets of a connection's tuple: from the
/// kernel (and recorded, for the replay) or from the recording.
fn counts<'a>(
    source: &'a mut Option<Box<dyn CountSource + Send>>,
    recorded: &'a mut HashMap<Tuple, Counted>,
    recorder: &'a mut Option<Writer>,
) -> impl FnMut(&Tuple) -> Option<Counted> + 'a {
    move |t: &Tuple| {
        let k = match source {
            Some(src) => src.take(t),
            None => recorded.remove(t),
        }?;
        if let Some(r) = recorder.as_mut() {
            if let Err(e) = r.counted(&CountedRecord::new(t, k)) {
                log::warn!("recording: {e}");
            }
        }
        Some(k)
    }
}

/// How the cause finder asks: the node (and the answer recorded) or the
/// recording's answers.
fn ask<'a>(
    source: &'a mut Option<Box<dyn Evidence + Send>>,
    recorded: &'a mut HashMap<Query, Option<Answer>>,
    recorder: &'a mut Option<Writer>,
) -> impl FnMut(&Query) -> Option<Answer> + 'a {
    move |q: &Query| {
        let Some(src) = source else {
            return recorded.get(q).cloned().flatten();
        };
        let a = src.ask(q);
        if recorded.get(q) == Some(&a) {
            return a;
        }
        if recorded.len() >= 4096 {
            recorded.clear();
        }
        recorded.insert(q.clone(), a.clone());
        if let Some(r) = recorder.as_mut() {
            let rec = Answered {
                query: q.clone(),
                answer: a.clone(),
            };
            if let Err(e) = r.evidence(&rec) {
                log::warn!("recording: {e}");
            }
        }
        a
    }
}
