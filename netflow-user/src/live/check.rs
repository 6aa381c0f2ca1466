//! `netflow check`: what this node's kernel gives netflow, before an
//! incident and for a bug report. Every probe is attached as `trace` would
//! attach it (then detached), and every program of the object is loaded
//! once more with the verifier's statistics on: per hop, the probe that
//! serves it and the fallbacks taken; per program, the instructions the
//! verifier processed against the program's bound.
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::live::{
    kernel::{btf::KernelBtf, preflight},
    probes::{
        figures::{self, Figure},
        NetfilterPlan, Probes,
    },
    select::Selectors,
};

/// What `check --json` prints (one object).
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub kernel: String,
    /// Load and attach of every probe, as `trace` starts (milliseconds).
    pub startup_ms: u64,
    pub probes: Vec<ProbeLine>,
    pub programs: Vec<Figure>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProbeLine {
    pub prog: String,
    pub target: String,
    pub on: bool,
    /// The verifier's figure of the program serving it (from `programs`).
    pub insns: Option<u32>,
    pub note: String,
}

impl Report {
    /// Programs over their bound or refused by the verifier.
    pub fn failing(&self) -> Vec<&Figure> {
        self.programs.iter().filter(|f| f.fails()).collect()
    }
}

/// Attach everything, measure every program, and report.
pub fn run(json: bool) -> anyhow::Result<bool> {
    preflight::check("check")?;
    let started = Instant::now();
    let kbtf = KernelBtf::load()?;
    let reasons = kbtf.drop_reasons()?;
    let consumed = reasons
        .iter()
        .find(|(_, n)| n.as_str() == "CONSUMED")
        .map(|(v, _)| *v)
        .unwrap_or(u32::MAX - 1);
    let sel = Selectors::default().resolve()?;
    let plan = NetfilterPlan {
        enabled: true,
        netns: Vec::new(),
    };
    let probes = Probes::start(
        &sel,
        &kbtf,
        consumed,
        &plan,
        netflow_common::RING_BYTES,
        Default::default(),
    )?;
    let startup_ms = started.elapsed().as_millis() as u64;
    let status = probes.status.clone();
    drop(probes);
    let programs = figures::measure(&kbtf, consumed)?;
    // A hop's figure: the largest of the programs serving it (a netfilter
    // hop is served by a pair: early and late, entry and return).
    let insns = |p: &str| {
        figures::serving(p)
            .iter()
            .filter_map(|q| programs.iter().find(|f| f.prog == *q).and_then(|f| f.insns))
            .max()
    };
    let report = Report {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        startup_ms,
        probes: status
            .iter()
            .map(|s| ProbeLine {
                prog: s.name.to_string(),
                target: s.target.clone(),
                on: s.active,
                insns: if s.active { insns(s.name) } else { None },
                note: s.note.clone(),
            })
            .collect(),
        programs,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(report.failing().is_empty())
}

fn figure(n: Option<u32>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// The report for a terminal: the hops, the programs, a verdict.
pub fn text(r: &Report) -> String {
    let mut s = format!(
        "kernel {}: probes attached in {:.1} s\n\nPROBES (as `trace` starts; insns: the verifier's figure)\n",
        r.kernel,
        r.startup_ms as f64 / 1000.0
    );
    s.push_str(&format!(
        "{:<4} {:<34} {:>8}  {}\n",
        "", "PROBE", "INSNS", "NOTE"
    ));
    for p in &r.probes {
        s.push_str(&format!(
            "{:<4} {:<34} {:>8}  {}\n",
            if p.on { "on" } else { "off" },
            p.target,
            figure(p.insns),
            p.note
        ));
    }
    s.push_str(&format!(
        "\nPROGRAMS (the largest figure over the filters: every selector, agent, every packet)\n{:<34} {:<36} {:>8} {:>8}  {}\n",
        "PROGRAM", "PROBE", "INSNS", "BOUND", "STATE"
    ));
    for f in &r.programs {
        let state = if f.verifier_refused {
            format!("REFUSED: {}", f.refused.as_deref().unwrap_or(""))
        } else if f.fails() {
            "OVER BOUND".to_string()
        } else if let Some(why) = &f.refused {
            format!("not on this kernel: {why}")
        } else {
            "ok".to_string()
        };
        s.push_str(&format!(
            "{:<34} {:<36} {:>8} {:>8}  {state}\n",
            f.prog,
            f.probe,
            figure(f.insns),
            f.bound
        ));
    }
    let failing = r.failing();
    if failing.is_empty() {
        s.push_str(&format!(
            "\nall {} programs this kernel takes are within their bounds\n",
            r.programs.iter().filter(|f| f.insns.is_some()).count()
        ));
    } else {
        let names: Vec<&str> = failing.iter().map(|f| f.prog.as_str()).collect();
        s.push_str(&format!(
            "\n{} program(s) refused or over their bound: {}\n",
            failing.len(),
            names.join(", ")
        ));
    }
    s
}
