//! `netflow replay` and `netflow export`: a recording through the same
//! pipeline as a live trace, on any machine, without root.
use std::{io::Write, path::Path};

use crate::{
    correlate::filter::FlowFilter,
    correlate::Config,
    decode::names::Names,
    decode::Event,
    output::{parse_probe_line, Run, Sink, Start, Stats},
    pipeline::Pipeline,
    record::{Meta, Reader, Record, RecordError},
};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0} holds no header record")]
    Empty(String),
    #[error("failed to write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What a replay found besides the timelines.
#[derive(Debug)]
pub struct Replayed {
    pub meta: Meta,
    pub stats: Stats,
    /// The recording ended without its end record (the tracer was killed).
    pub truncated: bool,
}

/// Replay `path` into `sink`, keeping the timelines `filter` accepts.
pub fn replay(
    path: &Path,
    sink: Box<dyn Sink + Send>,
    filter: FlowFilter,
) -> Result<Replayed, ReplayError> {
    replay_with(path, |meta, names| {
        Pipeline::new(config(meta), sink, names, None, filter)
    })
}

fn config(meta: &Meta) -> Config {
    Config {
        idle_ns: meta.idle_ns,
        vxlan_ports: meta.vxlan_ports.clone(),
        rule_hold_ns: meta.rule_hold_ns,
        dns_ports: meta.dns_ports.clone(),
        ..Config::default()
    }
}

fn replay_with(
    path: &Path,
    make: impl FnOnce(&Meta, Names) -> Pipeline,
) -> Result<Replayed, ReplayError> {
    let mut r = Reader::open(path)?;
    let meta = match r.next_record()? {
        Some(Record::Meta(m)) => m,
        _ => return Err(ReplayError::Empty(path.display().to_string())),
    };
    let mut pipe = make(&meta, Names::default());
    let (mut lost, mut last_tick) = (0, 0);
    // The start record: when the run started, else at its first event.
    let mut start = Some(run(&meta, path));
    while let Some(rec) = r.next_record()? {
        if let Some(mut s) = start.take_if(|s| s.ts_ns != 0 || matches!(rec, Record::Event(_))) {
            if let (0, Record::Event(bytes)) = (s.ts_ns, &rec) {
                s.ts_ns = Event::decode(bytes, &[]).map_or(0, |e| e.ts_ns);
            }
            pipe.start(&s)?;
        }
        match rec {
            Record::Meta(_) => {}
            Record::Names(n) => pipe.names.restore(n),
            Record::Symbol(a, s) => {
                pipe.names.syms.insert(a, s);
            }
            Record::Event(bytes) => pipe.event(&bytes)?,
            Record::Tick(now) => {
                last_tick = now;
                pipe.tick(now)?
            }
            Record::End(end) => {
                lost = end.lost;
                pipe.ended(end.ended_ns);
                pipe.sampled(end.sampled);
            }
            Record::Counted(c) => pipe.recorded_counts(c.tuple(), c.counted),
            Record::Evidence(a) => pipe.recorded_evidence(a),
        }
    }
    if let Some(s) = start {
        pipe.start(&s)?;
    }
    let truncated = r.truncated;
    let stats = pipe.finish(lost, last_tick, None)?;
    Ok(Replayed {
        meta,
        stats,
        truncated,
    })
}

/// The recorded run as its start record says it.
fn run(meta: &Meta, path: &Path) -> Run {
    Run {
        node: meta.hostname.clone(),
        realtime_offset_ns: meta.realtime_offset_ns,
        ts_ns: meta.started_ns,
        start: Start {
            netflow_version: meta.netflow_version.clone(),
            kernel: meta.kernel.clone(),
            summary: meta.summary.clone(),
            probes: if meta.probe_list.is_empty() {
                meta.probes.iter().map(|l| parse_probe_line(l)).collect()
            } else {
                meta.probe_list.clone()
            },
            recording: Some(path.display().to_string()),
        },
    }
}

/// The header of a recording.
pub fn meta(path: &Path) -> Result<Meta, ReplayError> {
    match Reader::open(path)?.next_record()? {
        Some(Record::Meta(m)) => Ok(m),
        _ => Err(ReplayError::Empty(path.display().to_string())),
    }
}

/// One line for stderr about what a replay covered.
pub fn summary(r: &Replayed, path: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "netflow: replayed {} ({}, kernel {} on {}): {} packets ({} dropped), {} events, {} lost",
        path.display(),
        r.meta.summary,
        r.meta.kernel,
        r.meta.hostname,
        r.stats.packets,
        r.stats.dropped,
        r.stats.events,
        r.stats.lost
    )?;
    if r.truncated {
        writeln!(out, "netflow: {} was cut short (the tracer was stopped before it finished writing): replayed what it holds", path.display())?;
    }
    Ok(())
}
