//! Facts read from the running kernel's BTF (`/sys/kernel/btf/vmlinux`):
//! struct member offsets handed to the kernel programs, the names of
//! `enum skb_drop_reason`, and the tracepoint prototypes the programs rely on.
use std::collections::HashMap;

use btf_rs::{Btf, BtfType, Type};
use netflow_common::Offsets;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("failed to read kernel BTF from {VMLINUX}: {0} (netflow needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)")]
    Open(String),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {0} has no member {1}")]
    NoMember(String, String),
    #[error("kernel BTF: {0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, BtfError>;

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    /// Mapped where the kernel lets its BTF be mapped (a few MB, read as
    /// asked), else parsed whole (~55 MB of heap while it lives).
    pub fn load() -> Result<Self> {
        Btf::from_file_with_backend(VMLINUX, btf_rs::Backend::Mmap)
            .or_else(|_| Btf::from_file(VMLINUX))
            .map(|btf| Self { btf })
            .map_err(|e| BtfError::Open(e.to_string()))
    }

    fn find_struct(&self, name: &str) -> Result<btf_rs::Struct> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| BtfError::NoStruct(name.into()))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoStruct(name.into()))
    }

    /// Bit offset of `member` in `strct`, looking into anonymous structs and
    /// unions. Returns the offset and the member's type.
    fn member_in(&self, s: &btf_rs::Struct, member: &str) -> Option<(u32, Type)> {
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let ty = self.btf.resolve_chained_type(m).ok()?;
            if name == member {
                return Some((m.bit_offset(), ty));
            }
            if name.is_empty() {
                if let Type::Struct(inner) | Type::Union(inner) = &ty {
                    if let Some((off, t)) = self.member_in(inner, member) {
                        return Some((m.bit_offset() + off, t));
                    }
                }
            }
        }
        None
    }

    /// A one-bit bitfield member: its byte offset and mask.
    pub fn bit_of(&self, strct: &str, member: &str) -> Result<(u32, u32)> {
        let s = self.find_struct(strct)?;
        let (bits, _) = self
            .member_in(&s, member)
            .ok_or_else(|| BtfError::NoMember(strct.into(), member.into()))?;
        Ok((bits / 8, 1 << (bits % 8)))
    }

    /// Offset of a dotted member path (`ns.inum`) in struct `strct`.
    pub fn offset_of(&self, strct: &str, path: &str) -> Result<u32> {
        let mut s = self.find_struct(strct)?;
        let mut total = 0;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (off, ty) = self
                .member_in(&s, part)
                .ok_or_else(|| BtfError::NoMember(strct.into(), path.into()))?;
            total += off / 8;
            if i + 1 < parts.len() {
                s = match self.strip(ty) {
                    Type::Struct(inner) | Type::Union(inner) => inner,
                    _ => return Err(BtfError::NoMember(strct.into(), path.into())),
                };
            }
        }
        Ok(total)
    }

    /// Size of a struct.
    pub fn size_of(&self, strct: &str) -> Result<u32> {
        Ok(self.find_struct(strct)?.size() as u32)
    }

    /// Follow typedefs and qualifiers to the underlying type.
    fn strip(&self, mut ty: Type) -> Type {
        loop {
            ty = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t),
                Type::Const(t) => self.btf.resolve_chained_type(t),
                Type::Volatile(t) => self.btf.resolve_chained_type(t),
                Type::Restrict(t) => self.btf.resolve_chained_type(t),
                Type::TypeTag(t) => self.btf.resolve_chained_type(t),
                _ => return ty,
            }
            .unwrap_or(Type::Void);
        }
    }

    /// The offsets the kernel programs read.
    pub fn offsets(&self) -> Result<Offsets> {
        let cloned = self.bit_of("sk_buff", "cloned")?;
        Ok(Offsets {
            skb_len: self.offset_of("sk_buff", "len")?,
            skb_head: self.offset_of("sk_buff", "head")?,
            skb_tail: self.offset_of("sk_buff", "tail")?,
            skb_network_header: self.offset_of("sk_buff", "network_header")?,
            skb_dev: self.offset_of("sk_buff", "dev")?,
            skb_protocol: self.offset_of("sk_buff", "protocol")?,
            skb_mark: self.offset_of("sk_buff", "mark")?,
            dev_ifindex: self.offset_of("net_device", "ifindex")?,
            dev_name: self.offset_of("net_device", "name")?,
            dev_nd_net: self.offset_of("net_device", "nd_net.net")?,
            net_inum: self.offset_of("net", "ns.inum")?,
            nf_state_in: self.offset_of("nf_hook_state", "in")?,
            nf_state_out: self.offset_of("nf_hook_state", "out")?,
            sk_daddr: self.offset_of("sock_common", "skc_daddr")?,
            sk_rcv_saddr: self.offset_of("sock_common", "skc_rcv_saddr")?,
            sk_dport: self.offset_of("sock_common", "skc_dport")?,
            sk_num: self.offset_of("sock_common", "skc_num")?,
            sk_family: self.offset_of("sock_common", "skc_family")?,
            sk_state: self.offset_of("sock_common", "skc_state")?,
            sk_err: self.offset_of("sock", "sk_err")?,
            sk_sport: self.offset_of("inet_sock", "inet_sport")?,
            sk_net: self.offset_of("sock_common", "skc_net.net")?,
            sk_v6_daddr: self.offset_of("sock_common", "skc_v6_daddr")?,
            sk_v6_rcv_saddr: self.offset_of("sock_common", "skc_v6_rcv_saddr")?,
            skb_nfct: self.offset_of("sk_buff", "_nfct")?,
            // tuplehash[1].tuple: one nf_conntrack_tuple_hash past tuplehash[0].
            ct_reply_tuple: self.offset_of("nf_conn", "tuplehash")?
                + self.size_of("nf_conntrack_tuple_hash")?
                + self.offset_of("nf_conntrack_tuple_hash", "tuple")?,
            tuple_src_addr: self.offset_of("nf_conntrack_tuple", "src.u3")?,
            tuple_src_port: self.offset_of("nf_conntrack_tuple", "src.u")?,
            tuple_l3num: self.offset_of("nf_conntrack_tuple", "src.l3num")?,
            tuple_dst_addr: self.offset_of("nf_conntrack_tuple", "dst.u3")?,
            tuple_dst_port: self.offset_of("nf_conntrack_tuple", "dst.u")?,
            tuple_proto: self.offset_of("nf_conntrack_tuple", "dst.protonum")?,
            nft_pkt_skb: self.offset_of("nft_pktinfo", "skb").unwrap_or(0),
            nft_pkt_state: self.offset_of("nft_pktinfo", "state").unwrap_or(0),
            nft_chain_name: self.offset_of("nft_chain", "name").unwrap_or(0),
            nft_chain_table: self.offset_of("nft_chain", "table").unwrap_or(0),
            nft_table_name: self.offset_of("nft_table", "name").unwrap_or(0),
            skb_cloned_byte: cloned.0,
            skb_cloned_mask: cloned.1,
            nf_state_pf: self.offset_of("nf_hook_state", "pf")?,
            skb_refdst: self.offset_of("sk_buff", "_skb_refdst")?,
            dst_dev: self.offset_of("dst_entry", "dev")?,
            dev_mtu: self.offset_of("net_device", "mtu")?,
            flowi4_saddr: self.offset_of("flowi4", "saddr").unwrap_or(0),
            flowi4_daddr: self.offset_of("flowi4", "daddr").unwrap_or(0),
            nhc_dev: self.offset_of("fib_nh_common", "nhc_dev").unwrap_or(0),
            nhc_gw_family: self
                .offset_of("fib_nh_common", "nhc_gw_family")
                .unwrap_or(0),
            nhc_gw: self.offset_of("fib_nh_common", "nhc_gw").unwrap_or(0),
            ct_status: self.offset_of("nf_conn", "status")?,
            flowi6_saddr: self.offset_of("flowi6", "saddr").unwrap_or(0),
            flowi6_daddr: self.offset_of("flowi6", "daddr").unwrap_or(0),
            fib6_res_nh: self.offset_of("fib6_result", "nh").unwrap_or(0),
            fib6_res_type: self.offset_of("fib6_result", "fib6_type").unwrap_or(0),
            fib6_table_id: self.offset_of("fib6_table", "tb6_id").unwrap_or(0),
        })
    }

    /// `enum skb_drop_reason` value → name without the `SKB_DROP_REASON_` prefix.
    /// Names of `enum skb_drop_reason` (empty before Linux 5.17, which has
    /// no drop reasons: drops are then known by their location only).
    pub fn drop_reasons(&self) -> Result<HashMap<u32, String>> {
        let Ok(types) = self.btf.resolve_types_by_name("skb_drop_reason") else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        for t in types {
            if let Type::Enum(e) = t {
                for m in &e.members {
                    let name = self.btf.resolve_name(m).unwrap_or_default();
                    let short = name
                        .strip_prefix("SKB_DROP_REASON_")
                        .or_else(|| name.strip_prefix("SKB_"))
                        .unwrap_or(&name);
                    out.insert(m.val(), short.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Argument types of a tracepoint, from its `btf_trace_<name>` prototype
    /// (the tracepoint's leading `void *__data` left out): `sk_buff *`,
    /// `void *`, `enum skb_drop_reason`, ...
    pub fn tracepoint_args(&self, tp: &str) -> Result<Vec<String>> {
        let name = format!("btf_trace_{tp}");
        let types = self
            .btf
            .resolve_types_by_name(&name)
            .map_err(|_| BtfError::Other(format!("no tracepoint {tp}")))?;
        for t in types {
            let Type::Typedef(td) = t else { continue };
            let Ok(Type::Ptr(p)) = self.btf.resolve_chained_type(&td) else {
                continue;
            };
            let Ok(Type::FuncProto(fp)) = self.btf.resolve_chained_type(&p) else {
                continue;
            };
            return Ok(fp
                .parameters
                .iter()
                .skip(1)
                .map(
                    |p| match self.btf.resolve_chained_type(p).map(|t| self.strip(t)) {
                        Ok(t) => self.type_label(&t),
                        Err(_) => "?".into(),
                    },
                )
                .collect());
        }
        Err(BtfError::Other(format!("no prototype for tracepoint {tp}")))
    }

    fn type_label(&self, t: &Type) -> String {
        let named = |b: &dyn BtfType| self.btf.resolve_name(b).unwrap_or_default();
        match t {
            Type::Ptr(p) => match self.btf.resolve_chained_type(p).map(|t| self.strip(t)) {
                Ok(Type::Struct(s)) => format!("{} *", named(&s)),
                _ => "void *".into(),
            },
            Type::Enum(e) => format!("enum {}", named(e)),
            Type::Struct(s) => format!("struct {}", named(s)),
            Type::Int(i) => named(i),
            other => other.name().to_string(),
        }
    }
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelBtf")
    }
}
