use std::path::Path;

use anyhow::Result;

#[derive(clap::Args)]
pub struct BenchArgs {}

pub fn run(_root: &Path, _a: BenchArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
