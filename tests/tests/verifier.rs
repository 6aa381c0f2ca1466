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
fn kprobe_drop_program_passes_the_verifier() {
    check(
        names::PROG_KPROBE_DROP,
        "drop reasons via sk_skb_reason_drop",
    );
}

#[test]
fn kprobe_nft_chain_program_passes_the_verifier() {
    check(
        names::PROG_KPROBE_NFT,
        "nftables table/chain names via nft_do_chain",
    );
}
