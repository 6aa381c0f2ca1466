//! Kernel code addresses → `function+0xoff`, from `/proc/kallsyms`.
use std::path::Path;

#[derive(Debug, Default, Clone)]
pub struct Kallsyms {
    /// Sorted by address.
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    pub fn load() -> Self {
        Self::from_path(Path::new("/proc/kallsyms"))
    }

    pub fn from_path(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .map(|s| Self::parse(&s))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable_by_key(|(a, _)| *a);
        Self { syms }
    }

    /// `name+0xoff`, or the raw address when unknown (or hidden by kptr_restrict).
    pub fn symbolize(&self, addr: u64) -> String {
        if addr == 0 {
            return String::new();
        }
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        match i.checked_sub(1).map(|i| &self.syms[i]) {
            Some((a, name)) => format!("{name}+{:#x}", addr - a),
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolizes_inside_functions() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t ip_rcv\nffffffff81000200 D data\nffffffff81000300 T tcp_v4_rcv\n",
        );
        assert_eq!(k.symbolize(0xffffffff81000110), "ip_rcv+0x10");
        assert_eq!(k.symbolize(0xffffffff81000300), "tcp_v4_rcv+0x0");
        assert_eq!(k.symbolize(0x10), "0x10");
        assert_eq!(k.symbolize(0), "");
    }
}
