//! Builds the kernel programs (`netflow-ebpf`) for bpfel-unknown-none with
//! aya-build; the object is embedded in the `netflow` binary.
//! Without the `live` feature there is no kernel side: nothing to build.
#[cfg(not(feature = "live"))]
fn main() {}

#[cfg(feature = "live")]
fn main() -> anyhow::Result<()> {
    use anyhow::{anyhow, Context as _};
    use aya_build::Toolchain;

    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "netflow-ebpf")
        .ok_or_else(|| anyhow!("netflow-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
