//! `cargo xtask vm-test`: the kernel matrix. Debian's stock 5.10, 6.1 and 6.12
//! kernels boot here under qemu (software emulation), with this machine's root
//! filesystem shared read-only under a tmpfs overlay, so the freshly built
//! `netflow` and test binaries run inside them unchanged. Each VM runs a chosen
//! set of the real-kernel tests; the host prints a pass/fail table per kernel
//! and writes it, with the probes netflow turned on there, to
//! `target/vm/matrix.md` (the README's kernel table comes from that file).
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{cargo, run};

mod guest;
mod report;
mod suite;
use guest::{boot, build_initramfs, died_before_the_tests, panicked, prepare_share, Ended};
use report::{matrix, print_failures, read_results};
use suite::{POINT_SUITE, SUITE};

/// A test binary running longer than this in a guest is stopped (a hang
/// costs one binary's tests, not the kernel's whole run).
const TEST_BIN_SECS: u64 = 600;
/// What the initramfs loads to reach the shared filesystems.
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

#[derive(clap::Args)]
pub struct VmArgs {
    /// Kernel series to boot (5.10, 6.1, 6.12); all of them when not given.
    #[arg(long = "kernel")]
    kernels: Vec<String>,
    /// Run only the tests whose name contains this (several: comma-separated).
    #[arg(long)]
    only: Option<String>,
    /// Instead of the tests, run this shell command in each VM and print its
    /// output (debugging a kernel: e.g. `--exec 'RUST_LOG=debug $NETFLOW_BIN trace --duration 2s'`).
    #[arg(long)]
    exec: Option<String>,
    /// Minutes one VM may run before it is stopped and its tests count as
    /// failed (5.10's run takes ~19 min here under emulation, ~25 on a CI
    /// machine a little slower; a hanging test binary is stopped after
    /// TEST_BIN_SECS anyway).
    #[arg(long, default_value_t = VM_TIMEOUT_MIN)]
    timeout_min: u64,
}

/// The matrix's kernels, by the names scripts/vm-kernels.sh gives them: the
/// newest of each series (security suite) and, for the older series, the
/// series' own point release (main suite), which runs [`POINT_SUITE`].
pub const KERNELS: [&str; 5] = ["5.10", "5.10-point", "6.1", "6.1-point", "6.12"];

fn is_point(name: &str) -> bool {
    name.ends_with("-point")
}

/// A whole kernel's run at most (see `timeout_min`).
const VM_TIMEOUT_MIN: u64 = 40;

impl VmArgs {
    /// Every kernel, every test of the matrix.
    pub fn all() -> Self {
        Self {
            kernels: Vec::new(),
            only: None,
            exec: None,
            timeout_min: VM_TIMEOUT_MIN,
        }
    }
}

struct Outcome {
    /// Its name in the matrix (`5.10`, `5.10-point`, ...).
    name: String,
    release: String,
    results: BTreeMap<String, &'static str>,
    probes: Vec<String>,
    secs: u64,
    /// `netflow check --json` in the guest (figures, start-up).
    check: Option<serde_json::Value>,
}

pub fn vm_test(root: &Path, args: VmArgs) -> Result<()> {
    let series: Vec<String> = if args.kernels.is_empty() {
        KERNELS.iter().map(|s| s.to_string()).collect()
    } else {
        args.kernels.clone()
    };
    run(Command::new("bash")
        .arg(root.join("scripts/vm-kernels.sh"))
        .current_dir(root))?;
    let netflow = crate::build_netflow(root)?.canonicalize()?;
    let bins = test_binaries(root)?;
    let vm_dir = root.join("target/vm");
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut missing: Vec<(String, String)> = Vec::new();
    for s in &series {
        let release = match find_kernel(&vm_dir, s)? {
            Ok(r) => r,
            Err(why) => {
                println!("== {s}: not run: {why}");
                missing.push((s.clone(), why));
                continue;
            }
        };
        if let Some(o) = outcomes.iter().find(|o| o.release == release) {
            let why = format!("the same kernel as {} ({release})", o.name);
            println!("== {s}: not run: {why}");
            missing.push((s.clone(), why));
            continue;
        }
        println!("== {s}: booting {release}");
        let started = Instant::now();
        let share = vm_dir.join("run").join(&release);
        let suite = if is_point(s) { POINT_SUITE } else { SUITE };
        let selected = prepare_share(&share, &bins, &netflow, args.only.as_deref(), suite, None)?;
        if selected.is_empty() && args.exec.is_none() {
            // A point release runs a shorter suite: a filter may leave it none.
            let why = format!("no test of its suite matches {:?}", args.only);
            println!("   not run: {why}");
            missing.push((s.clone(), why));
            continue;
        }
        if let Some(cmd) = &args.exec {
            fs::write(share.join("exec.sh"), cmd)?;
        }
        let initramfs = build_initramfs(&vm_dir, &release, &share)?;
        let kdir = vm_dir.join("kernels").join(&release);
        let timeout = Duration::from_secs(args.timeout_min * 60);
        let mut ended = boot(&kdir, &initramfs, &share, timeout, args.exec.is_none())?;
        if died_before_the_tests(&share) {
            // Under emulation a guest kernel has been seen to panic while
            // booting (sched_clock_cpu, before init ran): no test started, so
            // boot once more. A panic during the tests is never retried.
            println!(
                "   the guest kernel panicked before any test ran (see boot.log); booting again"
            );
            fs::rename(share.join("boot.log"), share.join("boot-1.log"))?;
            ended = boot(&kdir, &initramfs, &share, timeout, args.exec.is_none())?;
        }
        if args.exec.is_some() {
            let out = fs::read_to_string(share.join("exec.txt")).unwrap_or_default();
            println!("{out}");
            continue;
        }
        let mut results = read_results(&share, &selected)?;
        let unfinished: BTreeSet<String> = results
            .iter()
            .filter(|(_, r)| **r == "not run")
            .map(|(n, _)| n.clone())
            .collect();
        let stopped = match ended {
            Ended::Exited if panicked(&share) => Some("the guest kernel panicked during the tests"),
            Ended::Exited => None,
            Ended::Stalled => Some("the guest made no progress for a test binary's bound and more"),
            Ended::TimedOut => Some("the guest ran out of its time"),
        };
        if let (Some(why), false) = (stopped, unfinished.is_empty()) {
            // Under emulation (TCG) 6.12 has been seen to die on a stale int3
            // of live code patching at a tracepoint site (consume_skb,
            // __dev_queue_xmit) while programs attach and detach, and 6.1 to
            // hang outright: faults of the emulator, not of the kernel under
            // test. The first boot's results stand; the tests it never
            // finished run in a second boot (its console and results kept
            // beside the run), once.
            let kept = vm_dir.join("run").join(format!("{release}-first"));
            let _ = fs::remove_dir_all(&kept);
            fs::create_dir_all(&kept)?;
            for f in ["boot.log", "results.txt"] {
                let _ = fs::copy(share.join(f), kept.join(f));
            }
            println!(
                "   {why} ({} of its tests unfinished; console and results kept in {}); booting again for those",
                unfinished.len(),
                kept.display()
            );
            let again = prepare_share(
                &share,
                &bins,
                &netflow,
                args.only.as_deref(),
                suite,
                Some(&unfinished),
            )?;
            let initramfs = build_initramfs(&vm_dir, &release, &share)?;
            boot(&kdir, &initramfs, &share, timeout, true)?;
            for (n, r) in read_results(&share, &again)? {
                results.insert(n, r);
            }
        }
        if results.values().any(|r| *r != "pass") {
            print_failures(&share, &release);
        }
        let probes = fs::read_to_string(share.join("probes.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("probe "))
            .map(str::to_string)
            .collect();
        let check = fs::read_to_string(share.join("check.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        outcomes.push(Outcome {
            name: s.clone(),
            release,
            results,
            probes,
            secs: started.elapsed().as_secs(),
            check,
        });
    }
    let mut table = matrix(&outcomes);
    for (name, why) in &missing {
        table.push_str(&format!("\nNot run: {name}: {why}.\n"));
    }
    println!("{table}");
    fs::write(vm_dir.join("matrix.md"), &table)?;
    if args.only.is_none() && args.kernels.is_empty() && args.exec.is_none() {
        write_doc(root, &table)?;
    }
    let failed: usize = outcomes
        .iter()
        .map(|o| o.results.values().filter(|r| **r != "pass").count())
        .sum();
    if failed > 0 {
        let which: Vec<String> = outcomes
            .iter()
            .flat_map(|o| {
                o.results
                    .iter()
                    .filter(|(_, r)| **r != "pass")
                    .map(move |(t, r)| format!("{t} on {} ({r})", o.release))
            })
            .collect();
        bail!(
            "{failed} test runs failed across the kernel matrix (logs under target/vm/run/): {}",
            which.join(", ")
        );
    }
    Ok(())
}

/// Build the test binaries and map each test target's name to its executable.
fn test_binaries(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let out = cargo()
        .current_dir(root)
        .args([
            "test",
            "-p",
            "netflow-tests",
            "--tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut bins = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || !v["target"]["kind"][0].eq("test") {
            continue;
        }
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            bins.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    Ok(bins)
}

/// The release scripts/vm-kernels.sh unpacked for `name`, or why there is
/// none (its suite is gone from the archive, say).
fn find_kernel(vm_dir: &Path, name: &str) -> Result<std::result::Result<String, String>> {
    if !KERNELS.contains(&name) {
        bail!(
            "no kernel {name} in the matrix (kernels: {})",
            KERNELS.join(", ")
        );
    }
    let list = fs::read_to_string(vm_dir.join("kernels/matrix.txt"))
        .context("target/vm/kernels/matrix.txt (scripts/vm-kernels.sh writes it)")?;
    for line in list.lines() {
        let mut w = line.splitn(3, ' ');
        if w.next() != Some(name) {
            continue;
        }
        return Ok(match (w.next(), w.next()) {
            (Some(rel), _)
                if rel != "-" && vm_dir.join("kernels").join(rel).join("vmlinuz").exists() =>
            {
                Ok(rel.to_string())
            }
            (_, why) => Err(format!("no kernel ({})", why.unwrap_or("not downloaded"))),
        });
    }
    Ok(Err(
        "no kernel (scripts/vm-kernels.sh did not list it)".into()
    ))
}

/// The line of docs/kernels.md below which a full run writes its tables.
const DOC_MARKER: &str =
    "<!-- generated: `cargo xtask vm-test` (a full run) writes everything below this line -->";

/// A full run's tables into docs/kernels.md, below [`DOC_MARKER`]: the
/// manual's matrix is the last run's, never pasted by hand.
fn write_doc(root: &Path, table: &str) -> Result<()> {
    let path = root.join("docs/kernels.md");
    let doc = fs::read_to_string(&path).context("docs/kernels.md")?;
    let Some(at) = doc.find(DOC_MARKER) else {
        bail!("docs/kernels.md has no line {DOC_MARKER}");
    };
    let head = &doc[..at + DOC_MARKER.len()];
    fs::write(&path, format!("{head}\n\n{}\n", table.trim_end()))?;
    println!("the matrix written to docs/kernels.md");
    Ok(())
}
