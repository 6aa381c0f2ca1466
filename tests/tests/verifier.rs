//! Programs that cannot be attached on this kernel are still loaded, so the
//! verifier checks them here.
use netflow::kernel::btf::KernelBtf;

#[test]
fn kprobe_drop_program_passes_the_verifier() {
    netflow_tests::require_root();
    let kbtf = KernelBtf::load().expect("kernel BTF");
    netflow::probes::verify_kprobe_drop(&kbtf)
        .expect("kprobe program netflow_kprobe_kfree_skb_reason must pass the verifier");
    let kprobes = std::path::Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/kprobe_events").exists();
    println!(
        "kprobe program netflow_kprobe_kfree_skb_reason: loaded, passed the verifier; {}",
        if kprobes {
            "this kernel has kprobes (attach not exercised by this test)"
        } else {
            "NOT attached: this kernel has no kprobes"
        }
    );
}
