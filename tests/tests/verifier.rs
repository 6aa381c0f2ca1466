//! Programs that cannot be attached on this kernel are still loaded, so the
//! verifier checks them here.
use netflow::live::kernel::btf::KernelBtf;
use netflow_common::names;

fn check(prog: &'static str, what: &str) {
    netflow_tests::require_root();
    let kbtf = KernelBtf::load().expect("kernel BTF");
    netflow::live::probes::verify_kprobe(&kbtf, prog)
        .unwrap_or_else(|e| panic!("kprobe program {prog} must pass the verifier: {e}"));
    println!(
        "kprobe program {prog} ({what}): loaded, passed the verifier; {}",
        if netflow::live::probes::has_kprobes() {
            "this kernel has kprobes (attach not exercised by this test)"
        } else {
            "NOT attached: this kernel has no kprobes"
        }
    );
}

#[test]
fn kprobe_nft_chain_program_passes_the_verifier() {
    check(
        names::PROG_KPROBE_NFT,
        "nftables table/chain names via nft_do_chain",
    );
}

/// Every program of the object, loaded with the verifier's statistics on
/// under each measured filter: none is refused by the verifier, none passes
/// its bound (200k for the netfilter fallback on `nf_hook_slow`, 500k for
/// the others), none grows more than 20% over its figure checked into
/// tests/verifier-figures.json for this kernel.
#[test]
fn every_program_within_its_bound_and_checked_in_figure() {
    use netflow::live::probes::figures::{measure, CheckedIn};
    netflow_tests::require_root();
    let kbtf = KernelBtf::load().expect("kernel BTF");
    let consumed = kbtf
        .drop_reasons()
        .expect("drop reasons")
        .iter()
        .find(|(_, n)| n.as_str() == "CONSUMED")
        .map(|(v, _)| *v)
        .unwrap_or(u32::MAX - 1);
    let figs = measure(&kbtf, consumed).expect("measuring the programs");
    let checked: CheckedIn =
        serde_json::from_str(include_str!("../verifier-figures.json")).expect("figures file");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("kernel release")
        .trim()
        .to_string();
    let mine = checked.for_kernel(&release);
    println!("kernel {release}: the verifier's figures");
    for f in &figs {
        let was = mine.and_then(|m| m.get(&f.prog)).copied();
        println!(
            "  {:<34} {:>8} (bound {}, checked in {}){}",
            f.prog,
            f.insns.map(|n| n.to_string()).unwrap_or("-".into()),
            f.bound,
            was.map(|n| n.to_string()).unwrap_or("-".into()),
            f.refused
                .as_deref()
                .map(|r| format!(": not loaded: {r}"))
                .unwrap_or_default()
        );
    }
    // This kernel's line for the figures file, to check in.
    let line: std::collections::BTreeMap<&str, u32> = figs
        .iter()
        .filter_map(|f| f.insns.map(|n| (f.prog.as_str(), n)))
        .collect();
    println!(
        "figures line: \"{release}\": {}",
        serde_json::to_string(&line).unwrap()
    );
    // Something was measured: the programs every kernel of ours takes.
    for p in [names::PROG_RX, names::PROG_TX] {
        assert!(
            figs.iter().any(|f| f.prog == p && f.insns.is_some()),
            "{p} was not measured"
        );
    }
    if mine.is_none() {
        println!("no checked-in figures for {release}: bounds checked, growth not");
    }
    let problems = checked.problems(&release, &figs);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
