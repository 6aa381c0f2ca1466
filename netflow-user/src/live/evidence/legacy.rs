//! The legacy x_tables of the calling thread's namespace, with their
//! counters, as `iptables-legacy-save -c` prints them. Nothing is run where
//! the namespace has no legacy table (`ip_tables_names` empty: read from /proc/thread-self, the reading thread's namespace):
//! iptables-nft and nftables leave it so.
use super::tool;

/// The saved tables of `family` (2 or 10), None where there are none or
/// no tool to save them.
pub fn save(family: u8) -> Option<String> {
    let (names, legacy, plain) = if family == 10 {
        (
            "/proc/thread-self/net/ip6_tables_names",
            "ip6tables-legacy-save",
            "ip6tables-save",
        )
    } else {
        (
            "/proc/thread-self/net/ip_tables_names",
            "iptables-legacy-save",
            "iptables-save",
        )
    };
    let tables = std::fs::read_to_string(names).ok()?;
    if tables.trim().is_empty() {
        return None;
    }
    tool(legacy, &["-c"]).or_else(|| {
        // An image with one iptables, built for the legacy backend.
        let v = tool(plain, &["--version"])?;
        (v.contains("legacy") || !v.contains("nf_tables"))
            .then(|| tool(plain, &["-c"]))
            .flatten()
    })
}
