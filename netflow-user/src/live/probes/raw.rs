//! The raw `bpf()` program load, for what aya 0.14 cannot do: load
//! BPF_PROG_TYPE_NETFILTER programs, and load any program with the
//! verifier's statistics on (aya asks for a log only after a refusal, and
//! then at its debug level). The object is parsed again with aya-obj and its
//! map references pointed at the maps aya created (globals included), so a
//! program loaded here is verified exactly as aya's load of it would be.
use std::{
    collections::HashMap,
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use aya::{maps::Map, Ebpf};

use super::load::{ebpf_object, processed};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_BTF_LOAD: libc::c_long = 18;
pub(super) const BPF_LINK_CREATE: libc::c_long = 28;
/// `log_level` bit: the verifier's statistics only ("processed N insns").
const BPF_LOG_STATS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("failed to parse the netflow object: {0}")]
    Parse(String),
    #[error("failed to relocate the netflow object's {0}: {1}")]
    Relocate(&'static str, String),
    #[error("kernel object has no program {0}")]
    Missing(String),
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `attach_prog_fd`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    /// The rest of `union bpf_attr`, zero.
    rest: [u32; 13],
}

/// `union bpf_attr` for BPF_BTF_LOAD.
#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    _pad: u32,
}

pub(super) fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<RawFd> {
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the given size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as RawFd)
    }
}

/// The fd of each of aya's maps, by name.
fn map_fds(ebpf: &Ebpf) -> HashMap<String, RawFd> {
    ebpf.maps()
        .filter_map(|(name, m)| {
            let data = match m {
                Map::Array(d)
                | Map::HashMap(d)
                | Map::LpmTrie(d)
                | Map::LruHashMap(d)
                | Map::PerCpuArray(d)
                | Map::PerCpuHashMap(d)
                | Map::PerCpuLruHashMap(d)
                | Map::ProgramArray(d)
                | Map::RingBuf(d) => d,
                _ => return None,
            };
            Some((name.to_string(), data.fd().as_fd().as_raw_fd()))
        })
        .collect()
}

/// netflow's object with its maps relocated against `ebpf`'s (which must
/// still own every map: before any `take_map`).
pub struct Relocated {
    obj: aya_obj::Object,
    /// The object's BTF as the kernel took it: programs loaded with it
    /// carry their functions' info, which tells the verifier which
    /// functions are global (checked once).
    btf: Option<OwnedFd>,
}

/// How the kernel is to take one program.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadSpec {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub attach_btf_id: u32,
}

/// What one load gave: the program, or the kernel's error, and the
/// verifier's figure (instructions processed) when it printed one.
pub struct Loaded {
    pub fd: std::io::Result<OwnedFd>,
    pub insns: Option<u32>,
    /// The last lines of the verifier's log (its statistics, or its refusal).
    pub log: String,
}

impl Relocated {
    pub fn new(ebpf: &Ebpf) -> Result<Self, RawError> {
        let mut obj =
            aya_obj::Object::parse(ebpf_object()).map_err(|e| RawError::Parse(e.to_string()))?;
        // As aya does: the BTF sanitized for this kernel's features, loaded.
        let btf = match aya::features().btf() {
            Some(features) => match obj.fixup_and_sanitize_btf(features) {
                Ok(Some(btf)) => load_btf(&btf.to_bytes()),
                Ok(None) => None,
                Err(e) => return Err(RawError::Relocate("BTF", e.to_string())),
            },
            None => None,
        };
        let fds = map_fds(ebpf);
        let maps: Vec<(String, RawFd, aya_obj::Map)> = obj
            .maps
            .iter()
            .filter_map(|(n, m)| fds.get(n).map(|fd| (n.clone(), *fd, m.clone())))
            .collect();
        let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
        obj.relocate_maps(
            maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)),
            &text_sections,
        )
        .map_err(|e| RawError::Relocate("maps", e.to_string()))?;
        obj.relocate_calls(&text_sections)
            .map_err(|e| RawError::Relocate("calls", e.to_string()))?;
        Ok(Self { obj, btf })
    }

    /// The names of the object's programs with their sections.
    pub fn programs(&self) -> impl Iterator<Item = (&str, &aya_obj::ProgramSection)> {
        self.obj
            .programs
            .iter()
            .map(|(n, p)| (n.as_str(), &p.section))
    }

    fn function(&self, prog: &str) -> Result<&aya_obj::Function, RawError> {
        let p = self
            .obj
            .programs
            .get(prog)
            .ok_or_else(|| RawError::Missing(prog.into()))?;
        let f = self
            .obj
            .functions
            .get(&p.function_key())
            .ok_or_else(|| RawError::Missing(prog.into()))?;
        Ok(f)
    }

    /// Load `prog` as `spec` says, with the verifier's statistics on: one
    /// verification, whose figure comes back whether the kernel takes the
    /// program or refuses it.
    pub fn load(&self, prog: &str, spec: LoadSpec) -> Result<Loaded, RawError> {
        let func = self.function(prog)?;
        let insns = &func.instructions;
        let func_info = func.func_info.func_info_bytes();
        let line_info = func.line_info.line_info_bytes();
        let license = CString::new("GPL").expect("no NUL");
        let mut log = vec![0u8; 64 << 10];
        let mut name = [0u8; 16];
        let n = prog.len().min(15);
        name[..n].copy_from_slice(&prog.as_bytes()[..n]);
        let mut attr = ProgLoadAttr {
            prog_type: spec.prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: BPF_LOG_STATS,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name,
            expected_attach_type: spec.expected_attach_type,
            attach_btf_id: spec.attach_btf_id,
            ..Default::default()
        };
        if let Some(btf) = &self.btf {
            attr.prog_btf_fd = btf.as_raw_fd() as u32;
            if func.func_info_rec_size > 0 {
                attr.func_info = func_info.as_ptr() as u64;
                attr.func_info_cnt = func.func_info.len() as u32;
                attr.func_info_rec_size = func.func_info_rec_size as u32;
            }
            if func.line_info_rec_size > 0 {
                attr.line_info = line_info.as_ptr() as u64;
                attr.line_info_cnt = func.line_info.len() as u32;
                attr.line_info_rec_size = func.line_info_rec_size as u32;
            }
        }
        let mut r = sys_bpf(BPF_PROG_LOAD, &mut attr);
        if r.as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOSPC))
        {
            // A log too small for the statistics alone: load without one.
            attr.log_level = 0;
            attr.log_size = 0;
            attr.log_buf = 0;
            r = sys_bpf(BPF_PROG_LOAD, &mut attr);
        }
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let mut text = String::from_utf8_lossy(&log[..end]).into_owned();
        if r.as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EACCES))
        {
            // Refused as unsafe: verify once more with the whole log for
            // the verifier's reason (its last lines).
            let mut big = vec![0u8; 64 << 20];
            attr.log_level = 1 | BPF_LOG_STATS;
            attr.log_size = big.len() as u32;
            attr.log_buf = big.as_mut_ptr() as u64;
            let _ = sys_bpf(BPF_PROG_LOAD, &mut attr);
            let end = big.iter().position(|b| *b == 0).unwrap_or(big.len());
            let whole = String::from_utf8_lossy(&big[..end]);
            log::debug!("verifier log of {prog}:\n{whole}");
            let stats = tail(&text, 3);
            text = format!("{}\n{stats}", tail(&whole, 12));
        }
        // SAFETY: a new fd the kernel just returned.
        let fd = r.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Loaded {
            fd,
            insns: processed(&text),
            log: tail(&text, 20),
        })
    }
}

/// Load `raw` as a BTF object; None when the kernel refuses it (the
/// programs then load without it, as aya's do).
fn load_btf(raw: &[u8]) -> Option<OwnedFd> {
    let mut attr = BtfLoadAttr {
        btf: raw.as_ptr() as u64,
        btf_size: raw.len() as u32,
        ..Default::default()
    };
    match sys_bpf(BPF_BTF_LOAD, &mut attr) {
        // SAFETY: a new fd the kernel just returned.
        Ok(fd) => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => {
            log::debug!("the kernel refused the object's BTF: {e}");
            None
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
