//! Marking chosen functions global in the object's BTF (`.BTF` section).
//!
//! The verifier checks a static BPF function again at every call, a global
//! one once on its own (its linkage is the FUNC type's `vlen`). bpf-linker
//! makes every function static; the few netflow wants checked once carry a
//! name prefix, and their FUNC types are rewritten here before aya parses
//! the object. The section's layout is the kernel's (`include/uapi/linux/
//! btf.h`): a header, then the types, each a 12-byte `btf_type` followed by
//! its kind's extra bytes, then the strings.
use object::{Object, ObjectSection};

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;
const BTF_FUNC_GLOBAL: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LinkageError {
    #[error("not an ELF object: {0}")]
    Elf(String),
    #[error("the object has no .BTF section")]
    NoBtf,
    #[error("its .BTF section is malformed ({0})")]
    Malformed(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, LinkageError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(LinkageError::Malformed("truncated"))
}

/// The bytes that follow a `btf_type` of `kind` with `vlen` members.
fn extra(kind: u32, vlen: usize) -> Result<usize, LinkageError> {
    Ok(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
        _ => return Err(LinkageError::Malformed("unknown type kind")),
    })
}

/// Mark every FUNC whose name starts with `prefix` global, in place.
/// Returns how many were marked.
pub fn mark_global(obj: &mut [u8], prefix: &str) -> Result<usize, LinkageError> {
    let (start, size) = {
        let file = object::File::parse(&*obj).map_err(|e| LinkageError::Elf(e.to_string()))?;
        let sec = file.section_by_name(".BTF").ok_or(LinkageError::NoBtf)?;
        let (start, size) = sec.file_range().ok_or(LinkageError::NoBtf)?;
        (start as usize, size as usize)
    };
    let btf = obj
        .get_mut(start..start + size)
        .ok_or(LinkageError::Malformed("section past the end"))?;
    if btf.len() < 24 || u16::from_le_bytes([btf[0], btf[1]]) != BTF_MAGIC {
        return Err(LinkageError::Malformed("bad magic (not little-endian BTF)"));
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
    let types = hdr_len + type_off..hdr_len + type_off + type_len;
    let strings = hdr_len + str_off..hdr_len + str_off + str_len;
    if types.end > btf.len() || strings.end > btf.len() {
        return Err(LinkageError::Malformed("sections past the end"));
    }
    let name_at = |btf: &[u8], off: usize| -> Vec<u8> {
        let s = &btf[strings.clone()];
        s.get(off..)
            .map(|t| t.iter().take_while(|b| **b != 0).copied().collect())
            .unwrap_or_default()
    };
    let mut at = types.start;
    let mut marked = 0;
    while at + 12 <= types.end {
        let name_off = u32_at(btf, at)? as usize;
        let info = u32_at(btf, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        if kind == KIND_FUNC && name_at(btf, name_off).starts_with(prefix.as_bytes()) {
            let info = (info & !0xffff) | BTF_FUNC_GLOBAL;
            btf[at + 4..at + 8].copy_from_slice(&info.to_le_bytes());
            marked += 1;
        }
        at += 12 + extra(kind, vlen)?;
    }
    if at != types.end {
        return Err(LinkageError::Malformed(
            "types do not end where the header says",
        ));
    }
    Ok(marked)
}
