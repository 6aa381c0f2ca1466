//! `cargo xtask image`: the node image, an OCI image archive
//! (`target/netflow-image.tar`, tagged `localhost/netflow:VERSION`) holding
//! the optimized `netflow`, the shared libraries it loads (as `ldd` names
//! them) and an empty `/tmp`: no shell, no package manager. Its entrypoint
//! is `/usr/local/bin/netflow`, its default command `agent`.
//!
//! The layout's documents are `oci-spec`'s types; the archive and the layer
//! are written with `tar` (gzip by `flate2`), digests by `sha2`.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use oci_spec::image::{
    ConfigBuilder, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, RootFsBuilder, Sha256Digest,
};
use sha2::{Digest, Sha256};

/// The name containerd, podman and skopeo give the imported image.
pub fn image_name() -> String {
    format!("localhost/netflow:{}", env!("CARGO_PKG_VERSION"))
}

/// Build the image archive; its path.
pub fn build(root: &Path) -> Result<PathBuf> {
    let bin = crate::build_netflow(root)?;
    let out = root.join("target/netflow-image.tar");
    let layer = layer(&bin)?;
    let diff_id = sha256(&layer);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer)?;
    let layer_gz = gz.finish()?;

    let config = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .config(
            ConfigBuilder::default()
                .entrypoint(vec!["/usr/local/bin/netflow".to_string()])
                .cmd(vec!["agent".to_string()])
                .env(vec!["PATH=/usr/local/bin".to_string()])
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{diff_id}")])
                .build()?,
        )
        .build()?;
    let config_json = serde_json::to_vec(&config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(MediaType::ImageConfig, &config_json)?)
        .layers(vec![descriptor(MediaType::ImageLayerGzip, &layer_gz)?])
        .build()?;
    let manifest_json = serde_json::to_vec(&manifest)?;
    let mut manifest_desc = descriptor(MediaType::ImageManifest, &manifest_json)?;
    manifest_desc.set_annotations(Some(
        [
            ("io.containerd.image.name".to_string(), image_name()),
            (
                "org.opencontainers.image.ref.name".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]
        .into(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()?;

    let file = std::fs::File::create(&out).with_context(|| format!("create {}", out.display()))?;
    let mut ar = tar::Builder::new(file);
    let mut add = |path: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        ar.append_data(&mut h, path, data)?;
        Ok(())
    };
    add("oci-layout", &serde_json::to_vec(&layout)?)?;
    add("index.json", &serde_json::to_vec(&index)?)?;
    for blob in [&config_json, &manifest_json, &layer_gz] {
        add(&format!("blobs/sha256/{}", sha256(blob)), blob)?;
    }
    ar.into_inner()?.sync_all()?;
    Ok(out)
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn descriptor(media: MediaType, data: &[u8]) -> Result<oci_spec::image::Descriptor> {
    let digest: Sha256Digest = sha256(data).parse()?;
    Ok(DescriptorBuilder::default()
        .media_type(media)
        .digest(digest)
        .size(data.len() as u64)
        .build()?)
}

/// The shared libraries `bin` loads, as the dynamic loader finds them.
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .context("ldd")?;
    if !out.status.success() {
        // A static binary needs none.
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() {
        bail!("ldd named no libraries for {}", bin.display());
    }
    Ok(libs)
}

/// The image's one layer (uncompressed tar): the binary, its libraries at
/// the paths the loader looks them up (their contents, links followed), /tmp.
fn layer(bin: &Path) -> Result<Vec<u8>> {
    let mut ar = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    let mut files = vec![(
        PathBuf::from("usr/local/bin/netflow"),
        bin.to_path_buf(),
        0o755,
    )];
    for lib in libraries(bin)? {
        let inside = lib.strip_prefix("/").unwrap().to_path_buf();
        files.push((inside, lib, 0o755));
    }
    for (inside, _, _) in &files {
        let mut p = inside.parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    let mut dir = |path: &Path, mode: u32| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        ar.append_data(&mut h, path, std::io::empty())?;
        Ok(())
    };
    for d in &dirs {
        dir(d, 0o755)?;
    }
    dir(Path::new("tmp"), 0o1777)?;
    for (inside, src, mode) in files {
        let data = std::fs::read(&src).with_context(|| format!("read {}", src.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        ar.append_data(&mut h, &inside, data.as_slice())?;
    }
    Ok(ar.into_inner()?)
}
