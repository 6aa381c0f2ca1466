//! A guest: its share (the script, what to run), its initramfs, its boot
//! under qemu and how that ended.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    report::labelled,
    suite::{FALLBACKS, GUEST_MODULES, SUITE},
    BOOT_MODULES, TEST_BIN_SECS,
};

/// The writable share: the guest script, what to run and the results.
pub(super) fn prepare_share(
    share: &Path,
    bins: &BTreeMap<String, PathBuf>,
    netflow: &Path,
    only: Option<&str>,
    suite: &[(&str, &[&str])],
    keep: Option<&BTreeSet<String>>,
) -> Result<Vec<String>> {
    let _ = fs::remove_dir_all(share);
    fs::create_dir_all(share)?;
    fs::write(share.join("run.sh"), include_str!("run.sh"))?;
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
            .filter(|n| only.is_none_or(|o| o.split(',').any(|o| n.contains(o))))
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
    fs::write(share.join("tests.txt"), tests)?;
    Ok(selected)
}

/// A busybox initramfs with the virtio/9p/overlay modules of this kernel.
pub(super) fn build_initramfs(vm_dir: &Path, release: &str, share: &Path) -> Result<PathBuf> {
    let kdir = vm_dir.join("kernels").join(release);
    let tree = share.join("initramfs");
    for d in ["bin", "sbin", "mods", "proc", "sys", "dev"] {
        fs::create_dir_all(tree.join(d))?;
    }
    fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .context("/bin/busybox (package busybox-static)")?;
    write_exec(&tree.join("init"), include_str!("init.sh"))?;
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

pub(super) fn write_exec(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Modules to insmod, dependencies first, from the kernel's `modules.dep`
/// (modules built into the kernel are not listed there and are skipped).
pub(super) fn module_order(modules: &Path, wanted: &[&str]) -> Result<Vec<String>> {
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
pub(super) fn panicked(share: &Path) -> bool {
    fs::read_to_string(share.join("boot.log")).is_ok_and(|l| l.contains("Kernel panic"))
}

/// The guest kernel panicked before the test script wrote anything.
pub(super) fn died_before_the_tests(share: &Path) -> bool {
    let started = ["results.txt", "probes.txt", "exec.txt"]
        .iter()
        .any(|f| share.join(f).exists());
    !started && fs::read_to_string(share.join("boot.log")).is_ok_and(|l| l.contains("Kernel panic"))
}

/// How a guest's run ended.
pub(super) enum Ended {
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
pub(super) fn progress(share: &Path) -> u64 {
    ["probes.txt", "check.json", "check.err", "results.txt"]
        .iter()
        .filter_map(|f| fs::metadata(share.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Boot a guest on `share` and wait for it: at most `timeout`, and, when
/// `watch`, at most [`STALL_SECS`] without progress.
pub(super) fn boot(
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
