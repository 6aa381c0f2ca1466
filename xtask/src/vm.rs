//! `cargo xtask vm-test`: the kernel matrix. Debian's stock 5.10, 6.1 and 6.12
//! kernels boot here under qemu (software emulation), with this machine's root
//! filesystem shared read-only under a tmpfs overlay, so the freshly built
//! `netflow` and test binaries run inside them unchanged. Each VM runs a chosen
//! set of the real-kernel tests; the host prints a pass/fail table per kernel
//! and writes it, with the probes netflow turned on there, to
//! `target/vm/matrix.md` (the README's kernel table comes from that file).
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{cargo, run};

/// The tests each kernel runs: the path, drop, NAT, Service, policy, VXLAN,
/// verdict and SIGKILL tests (test binary, test names).
const SUITE: &[(&str, &[&str])] = &[
    (
        "paths",
        &[
            "bridge_ping_selected_by_sender_netns",
            "routed_pods_with_proxy_arp",
            "vxlan_inner_and_outer_headers_in_one_timeline",
            "cross_node_pod_to_pod_over_vxlan",
        ],
    ),
    (
        "record",
        &["kernel_and_daemon_compute_the_same_fingerprints"],
    ),
    (
        "icmp",
        &[
            "too_big_for_the_tunnel_shows_fragmentation_needed",
            "ipv6_too_big_shows_packet_too_big",
        ],
    ),
    (
        "rules",
        &[
            "kube_proxy_iptables_rules_name_the_service_and_the_policy",
            "sigkill_leaves_no_trace_table",
        ],
    ),
    (
        "route",
        &[
            "policy_routing_shows_the_table_on_the_route_hop",
            "a_failed_lookup_is_named_on_the_drop",
            "ipv6_route_hops_show_the_table_and_the_failed_lookup",
        ],
    ),
    (
        "netfilter",
        &[
            "forward_drop_is_attributed_to_netfilter",
            "service_vip_dnat_and_reverse_translation",
            "masquerade_to_external_network",
            "bridged_backend_dnat_with_bridge_nf_call_iptables",
        ],
    ),
    (
        "verdicts",
        &[
            "service_calls_read_healthy",
            "udp_service_calls_read_healthy",
            "ipvs_service_calls_read_healthy",
            "hairpin_service_call_to_itself_reads_healthy",
            "udp_and_ping_ipv4_ipv6_read_healthy",
            "bridged_pods_read_healthy",
            "pod_to_pod_over_vxlan_reads_healthy",
            "forward_drop_is_request_lost",
            "closed_ports_are_refused",
        ],
    ),
    (
        "causes",
        &[
            "forwarding_off_names_ip_forward",
            "ipv6_forwarding_off_names_the_ipv6_setting",
            "unanswered_gateway_names_proxy_arp",
            "strict_rp_filter_names_the_setting_in_force",
            "bridged_reply_without_netfilter_names_bridge_nf_call_iptables",
            "forward_policy_drop_names_the_chain_policy",
        ],
    ),
    (
        "external",
        &[
            "nodeport_call_is_followed_from_the_uplink",
            "nodeport_call_dropped_at_forward_names_hook_and_rule",
            "local_traffic_policy_without_local_endpoint_names_service_and_policy",
            "hostport_and_external_ip_calls_are_followed_from_the_uplink",
        ],
    ),
    ("tcp", &["closed_port_no_socket_and_reset"]),
    ("agent", &["the_agent_counts_tcp_data_at_its_sockets"]),
    ("probes", &["sigkill_leaves_nothing_attached"]),
    (
        "verifier",
        &["every_program_within_its_bound_and_checked_in_figure"],
    ),
];

/// What a second point release of a series runs (CI time is short): start-up
/// and the probes on (`netflow check`, in every guest), the verifier's
/// figures, a Service DNAT, a policy drop, healthy verdicts.
const POINT_SUITE: &[(&str, &[&str])] = &[
    (
        "netfilter",
        &[
            "forward_drop_is_attributed_to_netfilter",
            "service_vip_dnat_and_reverse_translation",
        ],
    ),
    (
        "verdicts",
        &[
            "service_calls_read_healthy",
            "hairpin_service_call_to_itself_reads_healthy",
            "forward_drop_is_request_lost",
        ],
    ),
    (
        "rules",
        &["kube_proxy_iptables_rules_name_the_service_and_the_policy"],
    ),
    (
        "verifier",
        &["every_program_within_its_bound_and_checked_in_figure"],
    ),
];

/// Tests run again with netflow's fallback probes forced (label, environment):
/// the kprobe/kretprobe path on `nf_hook_slow` (every kernel here has fentry).
const FALLBACKS: &[(&str, &str, &str, &[&str])] = &[(
    "kprobe",
    "NETFLOW_NF_PROBE=kprobe",
    "netfilter",
    &[
        "forward_drop_is_attributed_to_netfilter",
        "service_vip_dnat_and_reverse_translation",
    ],
)];

/// Modules a node has loaded for pods, Services and policies (the guest's
/// modprobe also loads on demand, through the initramfs's helper).
const GUEST_MODULES: &[&str] = &[
    "veth",
    "bridge",
    "br_netfilter",
    "vxlan",
    "ipip",
    "nf_conntrack",
    "nf_nat",
    "nf_tables",
    "nft_compat",
    "nft_chain_nat",
    "nft_ct",
    "nft_masq",
    "nft_nat",
    "nft_reject_inet",
    "nft_reject_ipv4",
    "nft_reject_ipv6",
    "xt_tcpudp",
    "xt_conntrack",
    "xt_comment",
    "xt_statistic",
    "xt_mark",
    "xt_nat",
    "xt_MASQUERADE",
    "xt_addrtype",
    "ipt_REJECT",
    "ip6t_REJECT",
    "iptable_filter",
    "iptable_nat",
    "ip6table_filter",
    "ip6table_nat",
    "sch_ingress",
    "cls_bpf",
];

/// What the initramfs loads to reach the shared filesystems.
/// A test binary running longer than this in a guest is stopped (a hang
/// costs one binary's tests, not the kernel's whole run).
const TEST_BIN_SECS: u64 = 600;
const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

#[derive(clap::Args)]
pub struct VmArgs {
    /// Kernel series to boot (5.10, 6.1, 6.12); all of them when not given.
    #[arg(long = "kernel")]
    kernels: Vec<String>,
    /// Run only the tests whose name contains this.
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

/// The writable share: the guest script, what to run and the results.
fn prepare_share(
    share: &Path,
    bins: &BTreeMap<String, PathBuf>,
    netflow: &Path,
    only: Option<&str>,
    suite: &[(&str, &[&str])],
    keep: Option<&BTreeSet<String>>,
) -> Result<Vec<String>> {
    let _ = fs::remove_dir_all(share);
    fs::create_dir_all(share)?;
    fs::write(share.join("run.sh"), include_str!("vm/run.sh"))?;
    fs::write(
        share.join("env.sh"),
        format!(
            "export NETFLOW_BIN={}\nexport TEST_THREADS=2\nexport RUST_BACKTRACE=1\nexport NETFLOW_TEST_START_SECS=300\nexport TEST_BIN_SECS={}\n",
            netflow.display(),
            TEST_BIN_SECS
        ),
    )?;
    fs::write(share.join("modules.txt"), GUEST_MODULES.join("\n"))?;
    let mut tests = String::new();
    let mut selected = Vec::new();
    let plain = suite.iter().map(|(bin, names)| ("-", "-", *bin, *names));
    // The forced fallbacks run with the full suite only.
    let forced = FALLBACKS
        .iter()
        .copied()
        .filter(|_| std::ptr::eq(suite, SUITE));
    for (label, env, bin, names) in plain.chain(forced) {
        let exe = bins
            .get(bin)
            .with_context(|| format!("no test binary {bin}"))?;
        let names: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| only.is_none_or(|o| n.contains(o)))
            .filter(|n| keep.is_none_or(|k| k.contains(&labelled(n, label))))
            .collect();
        if names.is_empty() {
            continue;
        }
        tests.push_str(&format!(
            "{label} {env} {} {}\n",
            exe.display(),
            names.join(" ")
        ));
        selected.extend(names.iter().map(|n| labelled(n, label)));
    }
    if selected.is_empty() {
        bail!("no test of the kernel matrix matches {only:?}");
    }
    fs::write(share.join("tests.txt"), tests)?;
    Ok(selected)
}

/// A busybox initramfs with the virtio/9p/overlay modules of this kernel.
fn build_initramfs(vm_dir: &Path, release: &str, share: &Path) -> Result<PathBuf> {
    let kdir = vm_dir.join("kernels").join(release);
    let tree = share.join("initramfs");
    for d in ["bin", "sbin", "mods", "proc", "sys", "dev"] {
        fs::create_dir_all(tree.join(d))?;
    }
    fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .context("/bin/busybox (package busybox-static)")?;
    write_exec(&tree.join("init"), include_str!("vm/init.sh"))?;
    // Modules the kernel asks for on demand are loaded inside the test root.
    write_exec(
        &tree.join("sbin/modprobe"),
        "#!/bin/sh\nexec /bin/chroot /newroot /sbin/modprobe \"$@\"\n",
    )?;
    let order = module_order(&kdir.join("modules"), BOOT_MODULES)?;
    let mut names = Vec::new();
    for rel in &order {
        let src = kdir.join("modules").join(rel);
        let file = Path::new(rel)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let plain = file.trim_end_matches(".xz").to_string();
        if file.ends_with(".xz") {
            let out = Command::new("xz").arg("-dc").arg(&src).output()?;
            if !out.status.success() {
                bail!("xz -dc {} failed", src.display());
            }
            fs::write(tree.join("mods").join(&plain), out.stdout)?;
        } else {
            fs::copy(&src, tree.join("mods").join(&plain))?;
        }
        names.push(plain);
    }
    fs::write(tree.join("modules.order"), names.join("\n"))?;
    let _ = Command::new("mknod")
        .arg(tree.join("dev/console"))
        .args(["c", "5", "1"])
        .status();
    let cpio = share.join("initramfs.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | /bin/busybox cpio -o -H newc > {} 2>/dev/null",
            tree.display(),
            cpio.display()
        ))
        .status()?;
    if !status.success() {
        bail!("building the initramfs failed");
    }
    Ok(cpio)
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Modules to insmod, dependencies first, from the kernel's `modules.dep`
/// (modules built into the kernel are not listed there and are skipped).
fn module_order(modules: &Path, wanted: &[&str]) -> Result<Vec<String>> {
    let dep = fs::read_to_string(modules.join("modules.dep")).context("modules.dep")?;
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for line in dep.lines() {
        let Some((m, rest)) = line.split_once(':') else {
            continue;
        };
        let name = Path::new(m)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .split('.')
            .next()
            .unwrap()
            .replace('-', "_");
        by_name.insert(name, m.to_string());
        deps.insert(
            m.to_string(),
            rest.split_whitespace().map(str::to_string).collect(),
        );
    }
    fn visit(
        m: &str,
        deps: &BTreeMap<String, Vec<String>>,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(m.to_string()) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, out);
        }
        out.push(m.to_string());
    }
    let (mut seen, mut out) = (HashSet::new(), Vec::new());
    for w in wanted {
        if let Some(m) = by_name.get(&w.replace('-', "_")) {
            visit(m, &deps, &mut seen, &mut out);
        }
    }
    Ok(out)
}

/// The guest kernel panicked (its console says so).
fn panicked(share: &Path) -> bool {
    fs::read_to_string(share.join("boot.log")).is_ok_and(|l| l.contains("Kernel panic"))
}

/// The guest kernel panicked before the test script wrote anything.
fn died_before_the_tests(share: &Path) -> bool {
    let started = ["results.txt", "probes.txt", "exec.txt"]
        .iter()
        .any(|f| share.join(f).exists());
    !started && fs::read_to_string(share.join("boot.log")).is_ok_and(|l| l.contains("Kernel panic"))
}

/// How a guest's run ended.
enum Ended {
    /// The guest powered off (its tests done, or its kernel panicked).
    Exited,
    /// Its output did not grow for [`STALL_SECS`]: the guest hangs.
    Stalled,
    /// It ran past the kernel's whole bound.
    TimedOut,
}

/// No new output from a guest for this long means it hangs: its own bound
/// on a test binary ([`TEST_BIN_SECS`]) would have written a line by then.
const STALL_SECS: u64 = TEST_BIN_SECS + 180;

/// Bytes the guest has written so far (its progress).
fn progress(share: &Path) -> u64 {
    ["probes.txt", "check.json", "check.err", "results.txt"]
        .iter()
        .filter_map(|f| fs::metadata(share.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Boot a guest on `share` and wait for it: at most `timeout`, and, when
/// `watch`, at most [`STALL_SECS`] without progress.
fn boot(
    kdir: &Path,
    initramfs: &Path,
    share: &Path,
    timeout: Duration,
    watch: bool,
) -> Result<Ended> {
    use std::os::unix::process::CommandExt;
    let log = fs::File::create(share.join("boot.log"))?;
    let mut qemu = Command::new("qemu-system-x86_64");
    // The VM dies with this task (Ctrl-C, a killed CI job): nothing left running.
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        qemu.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = qemu
        // qemu64, not max: under emulation the plain x86-64 model runs the
        // guest ~20% faster (netflow's start, the verifier above all: 6.4 s ->
        // 5.0 s on 6.12); nothing the tests use needs a newer CPU.
        .args(["-accel", "tcg", "-cpu", "qemu64", "-m", "4096", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(kdir.join("vmlinuz"))
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .arg("-virtfs")
        .arg("local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap")
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=mods,security_model=passthrough,readonly=on",
            kdir.join("modules").display()
        ))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=guest,security_model=passthrough",
            share.display()
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("qemu-system-x86_64 (package qemu-system-x86)")?;
    let started = Instant::now();
    let (mut seen, mut moved) = (progress(share), Instant::now());
    loop {
        let now = progress(share);
        if now != seen {
            (seen, moved) = (now, Instant::now());
        }
        let stalled = watch && moved.elapsed() > Duration::from_secs(STALL_SECS);
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!(
                    "qemu exited with {status} (see {})",
                    share.join("boot.log").display()
                );
            }
            return Ok(Ended::Exited);
        }
        if stalled || started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let (ended, why) = if stalled {
                (Ended::Stalled, format!("no progress for {STALL_SECS} s"))
            } else {
                (Ended::TimedOut, format!("{} min", timeout.as_secs() / 60))
            };
            println!("   stopped ({why}); the console's last lines:");
            let console = fs::read_to_string(share.join("boot.log")).unwrap_or_default();
            let lines: Vec<&str> = console.lines().collect();
            for l in &lines[lines.len().saturating_sub(40)..] {
                println!("   | {l}");
            }
            return Ok(ended);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A test's name in the table: with the forced probe, when there is one.
fn labelled(name: &str, label: &str) -> String {
    if label == "-" {
        name.to_string()
    } else {
        format!("{name} [{label}]")
    }
}

/// Each selected test's result from the guest's output: pass, FAIL or "not run".
fn read_results(share: &Path, selected: &[String]) -> Result<BTreeMap<String, &'static str>> {
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
fn print_failures(share: &Path, release: &str) {
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

fn matrix(outcomes: &[Outcome]) -> String {
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
fn figures(outcomes: &[Outcome]) -> String {
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
