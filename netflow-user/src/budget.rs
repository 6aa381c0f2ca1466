//! The memory a run may give what it holds: open packet timelines, open
//! connections and the dashboard's flows. Each structure gets a share of
//! the budget and a cap from the bytes one entry holds at most (measured
//! with heaptrack under floods, docs/performance.md); beyond its cap the
//! least useful entries are completed early or folded, and counted as
//! evicted. A flood of a million flows then holds what a flood of a hundred
//! thousand does.
//!
//! The budget is `--memory` when given; else the memory cgroup's
//! `memory.max` (a DaemonSet's limit) less what a run needs besides (its
//! start-up, its code and buffers); else [`DEFAULT_BYTES`].

/// The budget when nothing sets it.
pub const DEFAULT_BYTES: u64 = 96 << 20;
/// What a run needs besides its structures (start-up peak, code, the ring
/// buffer's mapping, the allocator's slack): taken off a cgroup's limit.
pub const BESIDES_BYTES: u64 = 96 << 20;
/// The smallest budget: below it the caps would hold too little to follow
/// a busy node at all.
pub const MIN_BYTES: u64 = 16 << 20;

/// Bytes one open timeline holds at most (its hops with their captured
/// bytes, its entry in the correlator's maps).
const TIMELINE_BYTES: u64 = 1024;
/// Bytes one open connection holds (counts, the hop where it failed with
/// its rule and cause, its entries in the maps).
const CONNECTION_BYTES: u64 = 1024;
/// Bytes one dashboard flow holds (its row, its last timeline).
const FLOW_BYTES: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("invalid memory size {0:?}: give bytes, or a number with K, M or G (e.g. 128M)")]
    Size(String),
    #[error("memory budget {0} is below the least netflow can work in ({MIN_BYTES} bytes, 16M)")]
    TooSmall(u64),
}

/// A run's budget and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub from: &'static str,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            bytes: DEFAULT_BYTES,
            from: "default",
        }
    }
}

/// `128M`, `1G`, `65536`, `256Mi`.
pub fn parse_size(s: &str) -> Result<u64, BudgetError> {
    let t = s.trim();
    let t = t.strip_suffix('i').unwrap_or(t);
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| BudgetError::Size(s.to_string()))
}

impl Budget {
    /// `--memory`: checked against the least netflow works in.
    pub fn given(bytes: u64) -> Result<Self, BudgetError> {
        if bytes < MIN_BYTES {
            return Err(BudgetError::TooSmall(bytes));
        }
        Ok(Budget {
            bytes,
            from: "--memory",
        })
    }

    /// From a memory cgroup's limit (`memory.max`'s value).
    pub fn of_limit(limit: u64) -> Self {
        Budget {
            bytes: limit.saturating_sub(BESIDES_BYTES).max(MIN_BYTES),
            from: "the memory cgroup's memory.max",
        }
    }

    fn cap(&self, percent: u64, each: u64, least: usize) -> usize {
        ((self.bytes / 100 * percent / each) as usize).max(least)
    }

    /// Open packet timelines: 30% of the budget.
    pub fn timelines(&self) -> usize {
        self.cap(30, TIMELINE_BYTES, 1024)
    }

    /// Open connections: 40%.
    pub fn connections(&self) -> usize {
        self.cap(40, CONNECTION_BYTES, 1024)
    }

    /// The dashboard's flows: 20% (the rest is the names, the screen and
    /// the allocator's slack).
    pub fn flows(&self) -> usize {
        self.cap(20, FLOW_BYTES, 256)
    }

    /// As the start says it: `96 MiB (default)`.
    pub fn said(&self) -> String {
        format!("{} MiB ({})", self.bytes >> 20, self.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_people_write_them() {
        assert_eq!(parse_size("128M").unwrap(), 128 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("256Mi").unwrap(), 256 << 20);
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("").is_err());
        assert!(Budget::given(1 << 20).is_err());
    }

    #[test]
    fn caps_follow_the_budget() {
        let d = Budget::default();
        let half = Budget::given(48 << 20).unwrap();
        assert!(half.timelines() * 2 <= d.timelines() && half.timelines() * 2 + 2 >= d.timelines());
        assert!(half.connections() < d.connections());
        // A small budget keeps a floor to work with.
        let small = Budget::given(MIN_BYTES).unwrap();
        assert!(small.timelines() >= 1024 && small.flows() >= 256);
        // A DaemonSet's 256 MiB limit: what is left after the run's own needs.
        assert_eq!(Budget::of_limit(256 << 20).bytes, 160 << 20);
        assert_eq!(Budget::of_limit(64 << 20).bytes, MIN_BYTES);
    }
}
