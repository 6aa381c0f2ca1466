//! A fixed-size histogram of spans (µs), for a flow's latency quantiles.

/// Bucket `i` of [`Hist`] holds spans of [2^(i/4), 2^((i+1)/4)) µs (the
/// first one everything below 1 µs, the last everything above ~1 minute).
const HIST_BUCKETS: usize = 104;

/// A fixed-size histogram of spans in µs: a flow's memory does not grow
/// with its packets.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: [u32; HIST_BUCKETS],
    total: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            counts: [0; HIST_BUCKETS],
            total: 0,
        }
    }
}

impl Hist {
    pub fn add(&mut self, us: f64) {
        let i = if us < 1.0 {
            0
        } else {
            ((us.log2() * 4.0) as usize + 1).min(HIST_BUCKETS - 1)
        };
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
    }

    /// The value at quantile `q` (0..1): the geometric middle of its bucket.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let want = ((self.total - 1) as f64 * q).round() as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen > want {
                return if i == 0 {
                    0.5
                } else {
                    2f64.powf((i as f64 - 1.0 + 0.5) / 4.0)
                };
            }
        }
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_within_a_bucket() {
        let mut h = Hist::default();
        assert_eq!(h.quantile(0.5), 0.0);
        for us in [10.0, 12.0, 11.0, 1000.0] {
            h.add(us);
        }
        let p50 = h.quantile(0.5);
        assert!((9.0..13.5).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((850.0..1200.0).contains(&p99), "{p99}");
        h.add(0.2);
        assert_eq!(h.quantile(0.0), 0.5);
    }
}
