//! What every probe module needs: the compiled object, its loader, the
//! error type, and the one-line form of a refused program.
use std::path::PathBuf;

use aya::{programs::ProgramError, Ebpf, EbpfLoader, VerifierLogLevel};
use netflow_common::names;

/// The compiled kernel programs (built by build.rs with aya-build), as
/// built: load [`ebpf_object`].
static BUILT_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netflow"));

/// The object as built (before [`ebpf_object`]'s rewrite).
#[cfg(test)]
pub(super) fn built_object() -> &'static [u8] {
    BUILT_OBJECT
}

/// The kernel programs to load: the built object with its functions named
/// `netflow_g_*` marked global in its BTF (see `netflow-ebpf/src/once.rs`).
pub fn ebpf_object() -> &'static [u8] {
    static OBJ: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    let words = OBJ.get_or_init(|| {
        let mut bytes = BUILT_OBJECT.to_vec();
        if let Err(e) = super::btf_linkage::mark_global(&mut bytes, names::GLOBAL_FN_PREFIX) {
            log::warn!("kernel object: functions left static: {e}");
        }
        // 8-byte aligned for the ELF parser.
        bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect()
    });
    // SAFETY: the words' memory, viewed as bytes, for as long as the static lives.
    let all = unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) };
    &all[..BUILT_OBJECT.len()]
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("failed to load the netflow kernel object: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("kernel object has no {0} {1}")]
    Missing(&'static str, &'static str),
    #[error("failed to load program {prog} for {target}: {}", short(.err))]
    /// One line: the verifier's log goes to the debug log (`RUST_LOG=debug`).
    Load {
        prog: &'static str,
        target: String,
        err: aya::programs::ProgramError,
    },
    #[error("failed to attach program {prog} to {target}: {source}")]
    Attach {
        prog: &'static str,
        target: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("failed to fill map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("tracepoint {0}: {1}")]
    Prototype(String, String),
    #[error("failed to read the kernel's BTF for program loading: {0}")]
    Btf(#[source] aya::BtfError),
    #[error("{0}")]
    Raw(String),
    #[error("skipped ({0})")]
    Forced(&'static str),
    #[error(transparent)]
    KernelBtf(#[from] crate::live::kernel::btf::BtfError),
}

pub(super) type Result<T> = std::result::Result<T, ProbeError>;

/// Where to attach the netfilter programs: netflow's own namespace (None) and others.
#[derive(Debug, Clone, Default)]
pub struct NetfilterPlan {
    pub enabled: bool,
    pub netns: Vec<(String, PathBuf)>,
}

/// An error in one line: a load failure without the verifier's log (that
/// goes to the debug log, `RUST_LOG=debug`).
pub(super) fn short(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            log::debug!("verifier log:\n{log}");
            match processed(&log) {
                Some(n) => format!(
                    "the kernel refused the program ({io_error}; the verifier processed {n} instructions)"
                ),
                None => format!("the kernel refused the program ({io_error})"),
            }
        }
        e => {
            // aya puts the errno in the source: show it.
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(c) = src {
                s.push_str(&format!(": {c}"));
                src = c.source();
            }
            s
        }
    }
}

pub(super) fn loader<'a>(
    offsets: &'a netflow_common::Offsets,
    filter: &'a netflow_common::Filter,
) -> EbpfLoader<'a> {
    let mut l = EbpfLoader::new();
    // A refused program is verified once more for its log: with the
    // statistics alone (its figure) that log fits aya's first buffer; at
    // the debug level aya verifies it again and again with larger ones
    // (minutes under emulation). `RUST_LOG=debug` asks for the whole log.
    l.verifier_log_level(if log::log_enabled!(log::Level::Debug) {
        VerifierLogLevel::DEBUG | VerifierLogLevel::STATS
    } else {
        VerifierLogLevel::STATS
    });
    l.override_global(names::GLOBAL_OFFSETS, offsets, true)
        .override_global(names::GLOBAL_FILTER, filter, true);
    l
}

/// The program `prog` of `ebpf` as its concrete type.
pub(super) fn program<'a, T>(
    ebpf: &'a mut Ebpf,
    prog: &'static str,
    target: &str,
) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(prog)
        .ok_or(ProbeError::Missing("program", prog))?
        .try_into()
        .map_err(|err| ProbeError::Load {
            prog,
            target: target.into(),
            err,
        })
}

/// The verifier's "processed N insns" (its statistics line, or the
/// complexity limit's message).
pub fn processed(log: &str) -> Option<u32> {
    log.lines().rev().find_map(|l| {
        let l = l.trim().to_ascii_lowercase();
        let at = l.find("processed ")?;
        let rest = &l[at + "processed ".len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let after = rest[digits.len()..].trim_start();
        if after.starts_with("insn") {
            digits.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    /// The built object: every function of `netflow-ebpf/src/once.rs` is
    /// found and marked global, and nothing else is.
    #[test]
    fn marks_the_once_functions_of_the_built_object() {
        use super::super::btf_linkage::mark_global;
        let mut obj = super::built_object().to_vec();
        let n = mark_global(&mut obj, netflow_common::names::GLOBAL_FN_PREFIX)
            .expect("the object's BTF");
        assert_eq!(n, 8, "functions named netflow_g_* in the object's BTF");
        assert_eq!(mark_global(&mut obj, "no_such_prefix_").unwrap(), 0);
    }

    use super::processed;

    #[test]
    fn reads_the_verifiers_figure() {
        let ok = "verification time 1234 usec\nstack depth 96+0\nprocessed 183405 insns (limit 1000000) max_states_per_insn 4 total_states 9000 peak_states 3000 mark_read 100\n";
        assert_eq!(processed(ok), Some(183405));
        let big = "BPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns (limit 1000000) max_states_per_insn 24\n";
        assert_eq!(processed(big), Some(1000001));
        let only_limit = "BPF program is too large. Processed 1000001 insn\n";
        assert_eq!(processed(only_limit), Some(1000001));
        assert_eq!(processed("invalid mem access 'inv'\n"), None);
        assert_eq!(processed(""), None);
    }
}
