//! `netflow replay` and `netflow export`: a recording through the same
//! pipeline as a live trace, on any machine, without root.
use std::{io::Write, path::Path};

use crate::{
    correlate::filter::FlowFilter,
    correlate::Config,
    decode::names::Names,
    output::{Sink, Stats},
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
    while let Some(rec) = r.next_record()? {
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
                pipe.sampled(end.sampled);
            }
            Record::Counted(c) => pipe.recorded_counts(c.tuple(), c.counted),
            Record::Evidence(a) => pipe.recorded_evidence(a),
        }
    }
    let truncated = r.truncated;
    let stats = pipe.finish(lost, last_tick, None)?;
    Ok(Replayed {
        meta,
        stats,
        truncated,
    })
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
