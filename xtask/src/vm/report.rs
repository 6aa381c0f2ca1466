//! What the guests said: each test's result, the failures' output, and
//! the matrix table with the verifier's figures.
use std::{collections::BTreeMap, fs, path::Path};

use anyhow::Result;

use super::Outcome;

/// A test's name in the table: with the forced probe, when there is one.
pub(super) fn labelled(name: &str, label: &str) -> String {
    if label == "-" {
        name.to_string()
    } else {
        format!("{name} [{label}]")
    }
}

/// Each selected test's result from the guest's output: pass, FAIL or "not run".
pub(super) fn read_results(
    share: &Path,
    selected: &[String],
) -> Result<BTreeMap<String, &'static str>> {
    let text = fs::read_to_string(share.join("results.txt")).unwrap_or_default();
    let mut results: BTreeMap<String, &'static str> =
        selected.iter().map(|n| (n.clone(), "not run")).collect();
    let mut label = "-".to_string();
    for line in text.lines() {
        if let Some(section) = line.strip_prefix("== ") {
            label = section.split_whitespace().next().unwrap_or("-").to_string();
            continue;
        }
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.split_once(" ... ") else {
            continue;
        };
        if let Some(r) = results.get_mut(&labelled(name.trim(), &label)) {
            *r = if verdict.trim() == "ok" {
                "pass"
            } else {
                "FAIL"
            };
        }
    }
    Ok(results)
}

/// The failing tests' own output from a kernel's run (at most a screenful
/// each), so a CI log says why without its artifacts.
pub(super) fn print_failures(share: &Path, release: &str) {
    let text = fs::read_to_string(share.join("results.txt")).unwrap_or_default();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "failures:" {
            inside = true;
        } else if line.starts_with("test result:") {
            inside = false;
        }
        if inside || line.starts_with("vm: ") || line.starts_with("vm:   ") {
            out.push(line);
        }
    }
    let keep = out.len().saturating_sub(200);
    println!(
        "== {release}: failing tests' output (last {} lines)",
        out.len() - keep
    );
    for line in &out[keep..] {
        println!("{line}");
    }
}

pub(super) fn matrix(outcomes: &[Outcome]) -> String {
    let mut s = String::from("| test |");
    for o in outcomes {
        s.push_str(&format!(" {} ({}) |", o.release, o.name));
    }
    s.push_str("\n| --- |");
    for _ in outcomes {
        s.push_str(" --- |");
    }
    s.push('\n');
    // Every test any kernel ran (a point release runs a subset: "-" elsewhere).
    let names: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.results.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for n in &names {
        s.push_str(&format!("| {n} |"));
        for o in outcomes {
            s.push_str(&format!(" {} |", o.results.get(n).copied().unwrap_or("-")));
        }
        s.push('\n');
    }
    s.push_str("| (VM time) |");
    for o in outcomes {
        s.push_str(&format!(" {} s |", o.secs));
    }
    s.push('\n');
    s.push_str(&figures(outcomes));
    for o in outcomes {
        s.push_str(&format!(
            "\nProbes on {} (netflow's start-up lines):\n\n",
            o.release
        ));
        for p in &o.probes {
            s.push_str(&format!("    {p}\n"));
        }
    }
    s
}

/// Per kernel: netflow's start-up under emulation and each program's
/// verifier figure (`netflow check` in the guest).
pub(super) fn figures(outcomes: &[Outcome]) -> String {
    let mut s = String::from("\nStart-up and the verifier's figure per program (`netflow check`, instructions processed; -: not loaded there):\n\n| program |");
    for o in outcomes {
        s.push_str(&format!(" {} |", o.release));
    }
    s.push_str("\n| --- |");
    for _ in outcomes {
        s.push_str(" ---: |");
    }
    s.push_str("\n| (start-up: probes loaded and attached) |");
    for o in outcomes {
        let ms = o.check.as_ref().and_then(|c| c["startup_ms"].as_u64());
        match ms {
            Some(ms) => s.push_str(&format!(" {:.1} s |", ms as f64 / 1000.0)),
            None => s.push_str(" (no check) |"),
        }
    }
    s.push('\n');
    let mut progs: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.check.as_ref()?["programs"].as_array().cloned())
        .flatten()
        .filter_map(|p| p["prog"].as_str().map(str::to_string))
        .collect();
    progs.sort();
    progs.dedup();
    for p in &progs {
        s.push_str(&format!("| {p} |"));
        for o in outcomes {
            let fig = o.check.as_ref().and_then(|c| {
                c["programs"]
                    .as_array()?
                    .iter()
                    .find(|f| f["prog"] == p.as_str())
                    .cloned()
            });
            let cell = match fig {
                Some(f) if f["verifier_refused"] == true => {
                    format!("REFUSED ({})", f["insns"])
                }
                Some(f) => match f["insns"].as_u64() {
                    Some(n) if n > f["bound"].as_u64().unwrap_or(u64::MAX) => {
                        format!("{n} (over {})", f["bound"])
                    }
                    Some(n) => n.to_string(),
                    None => "-".into(),
                },
                None => "-".into(),
            };
            s.push_str(&format!(" {cell} |"));
        }
        s.push('\n');
    }
    s
}
