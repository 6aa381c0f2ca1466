//! Project tasks: `cargo xtask test`, `cargo xtask bench`, `cargo xtask vm-test`.
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod image;
mod vm;

#[derive(Parser)]
#[command(about = "netflow project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build netflow and run every test (needs root): the offline core's tests
    /// in the build without the kernel side, unit tests and the real-kernel
    /// tests on this kernel, then the kernel matrix (`vm-test`).
    /// With a test filter, or --host-only, only this kernel's tests run.
    Test {
        /// Skip the kernel matrix.
        #[arg(long)]
        host_only: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// iperf3 between two namespaces with the tracer off, filtered out, and tracing
    /// every packet, and tcpdump for comparison; prints ratios and per-program cost.
    Bench(bench::BenchArgs),
    /// The kernel matrix: boot Debian's 5.10, 6.1 and 6.12 kernels under qemu and
    /// run the path, drop, NAT, Service, policy, VXLAN, verdict and SIGKILL tests
    /// in each; prints a pass/fail table (also written to target/vm/matrix.md).
    VmTest(vm::VmArgs),
    /// The node image: `target/netflow-image.tar`, an OCI image archive
    /// tagged `localhost/netflow:VERSION` (the optimized binary and the
    /// libraries it loads; entrypoint /usr/local/bin/netflow, command
    /// `agent`). Import it with `ctr images import` or copy it with skopeo.
    Image,
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Tests that cannot do everything here say so on stdout (e.g. a kprobe
/// that is verified but not attached): show it for passing tests too.
fn with_show_output(mut args: Vec<String>) -> Vec<String> {
    if !args.iter().any(|a| a == "--") {
        args.push("--".into());
    }
    args.push("--show-output".into());
    args
}

/// The wall time of each step of `cargo xtask test`.
struct Times {
    last: std::time::Instant,
    steps: Vec<(&'static str, u64)>,
}

impl Times {
    fn start() -> Self {
        Self {
            last: std::time::Instant::now(),
            steps: Vec::new(),
        }
    }

    /// The step that ends now (it began at the previous mark).
    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.steps.push((step, (now - self.last).as_secs()));
        self.last = now;
    }

    fn say(&self) {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(s, t)| format!("{s} {t} s"))
            .collect();
        println!("times: {}", steps.join(", "));
    }
}

/// Lines of a failing test's output repeated at the end of the run.
const REPORT_LINES: usize = 40;

/// Run `cargo test`, echo its output, and close with one summary line
/// over every test binary ("summary: N passed, N failed").
fn test(cmd: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut failures = Vec::new();
    // The start of each failing test's own output (its panic message), shown
    // again at the end where a CI log's tail has it.
    let mut reports: Vec<String> = Vec::new();
    let mut in_report: Option<usize> = None;
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if line.starts_with("---- ") && line.ends_with(" stdout ----") {
            reports.push(format!("{line}\n"));
            in_report = Some(0);
        } else if line == "failures:"
            || line == "successes:"
            || line.starts_with("stack backtrace:")
        {
            in_report = None;
        } else if let (Some(n), Some(r)) = (in_report.as_mut(), reports.last_mut()) {
            if *n < REPORT_LINES {
                r.push_str(&line);
                r.push('\n');
            }
            *n += 1;
        }
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            failures.push(name.to_string());
        }
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|p| {
                        p.trim().strip_suffix(word).map(|n| {
                            n.trim()
                                .trim_start_matches("ok. ")
                                .trim_start_matches("FAILED. ")
                                .to_string()
                        })
                    })
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
        }
    }
    let status = child.wait()?;
    for r in reports.iter().filter(|r| {
        failures
            .iter()
            .any(|f| r.starts_with(&format!("---- {f} stdout ----")))
    }) {
        print!("{r}");
    }
    println!("summary: {passed} passed, {failed} failed");
    if !status.success() {
        if failures.is_empty() {
            bail!("tests failed: {status}");
        }
        bail!("tests failed: {}", failures.join(", "));
    }
    Ok(())
}

/// Build the optimized `netflow` with `extra` cargo arguments; its path
/// under `target`.
fn build(root: &std::path::Path, extra: &[&str], target: &str) -> Result<std::path::PathBuf> {
    run(cargo()
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "netflow-user",
            "--bin",
            "netflow",
        ])
        .args(extra))?;
    Ok(root.join(target).join("release/netflow"))
}

/// Build the optimized `netflow` (the binary users run) and return its path.
pub fn build_netflow(root: &std::path::Path) -> Result<std::path::PathBuf> {
    build(root, &[], "target")
}

/// Lint the kernel crate where it is built (the BPF target, outside the
/// workspace's default members): every `unsafe` block carries a `// SAFETY:`
/// note (`clippy::undocumented_unsafe_blocks`, denied in the crate).
pub fn lint_ebpf(root: &std::path::Path) -> Result<()> {
    run(Command::new("rustup")
        .current_dir(root.join("netflow-ebpf"))
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--bins",
            "--target-dir",
        ])
        .arg(root.join("target/ebpf-clippy"))
        .args(["--", "-D", "clippy::undocumented_unsafe_blocks"]))
    .context("the kernel crate's lint: an `unsafe` block without a `// SAFETY:` note")
}

/// Where the build without the kernel side goes (its own target directory:
/// features would otherwise unify with the live build's).
const OFFLINE_TARGET: &str = "target/offline";

/// Build `netflow` without the kernel side (`--no-default-features`: replay,
/// export, dashboard --replay) and return its path.
pub fn build_offline(root: &std::path::Path) -> Result<std::path::PathBuf> {
    build(
        root,
        &["--no-default-features", "--target-dir", OFFLINE_TARGET],
        OFFLINE_TARGET,
    )
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Errors end the run with one line each (the last lines a CI log shows),
/// not a backtrace.
fn main() -> std::process::ExitCode {
    match run_cli() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_cli() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Test { host_only, args } => {
            let matrix = !host_only && args.is_empty();
            // How long each step took, said last: CI has a time limit, and
            // its log's tail shows where the time went.
            let mut times = Times::start();
            // The binary under test is the one users run: optimized (the
            // flood and dashboard tests measure what a release build does).
            lint_ebpf(&root)?;
            let bin = build_netflow(&root)?;
            let offline = build_offline(&root)?;
            // The node image, for the test that runs it in containerd.
            let image = image::build(&root)?;
            times.mark("builds");
            // The offline core's own tests, in the build without the kernel side.
            let core = if args.is_empty() {
                test(cargo().current_dir(&root).args([
                    "test",
                    "-p",
                    "netflow-user",
                    "--no-default-features",
                    "--target-dir",
                    OFFLINE_TARGET,
                ]))
            } else {
                Ok(())
            };
            let host = test(
                cargo()
                    .current_dir(&root)
                    .env("NETFLOW_BIN", &bin)
                    .env("NETFLOW_OFFLINE_BIN", &offline)
                    .env("NETFLOW_IMAGE", &image)
                    .args([
                        "test",
                        "--workspace",
                        "--exclude",
                        "netflow-ebpf",
                        // Every test binary runs: a failure does not hide the rest.
                        "--no-fail-fast",
                    ])
                    .args(with_show_output(args)),
            );
            let host = core.and(host);
            times.mark("offline core and host tests");
            if !matrix {
                times.say();
                println!("kernel matrix not run (a filter or --host-only): cargo xtask vm-test");
                return host;
            }
            // The matrix runs even when a host test failed: both results
            // count, and both are said last.
            let vms = vm::vm_test(&root, vm::VmArgs::all());
            times.mark("kernel matrix");
            times.say();
            match (host, vms) {
                (Ok(()), Ok(())) => Ok(()),
                (h, v) => {
                    let say = |r: Result<()>| match r {
                        Ok(()) => "passed".to_string(),
                        Err(e) => format!("{e:#}"),
                    };
                    bail!("host tests: {}\nkernel matrix: {}", say(h), say(v))
                }
            }
        }
        Cmd::Bench(a) => bench::run(&root, a),
        Cmd::VmTest(a) => vm::vm_test(&root, a),
        Cmd::Image => {
            let out = image::build(&root)?;
            println!("{} ({})", out.display(), image::image_name());
            Ok(())
        }
    }
}
