//! The latency histogram of grpc's benchmark protocol: logarithmic buckets exactly like
//! gRPC core's `gpr_histogram` (bucket `i` starts at `(1 + resolution)^i`, values clamped to
//! `[1, max_possible]`), so the `HistogramData` we report merges with the driver's own
//! histogram (which needs the same bucket count). Values are nanoseconds.

use crate::pb::{HistogramData, HistogramParams};

/// A gpr-style log-bucket histogram.
#[derive(Clone, Debug)]
pub struct Histogram {
    one_on_log_multiplier: f64,
    max_possible: f64,
    buckets: Vec<u32>,
    min_seen: f64,
    max_seen: f64,
    sum: f64,
    sum_of_squares: f64,
    count: f64,
}

/// grpc's defaults (test/cpp/qps/histogram.h): 1% resolution, 60 s maximum.
pub const DEFAULT_RESOLUTION: f64 = 0.01;
/// Default largest value, in nanoseconds.
pub const DEFAULT_MAX_POSSIBLE: f64 = 60e9;

impl Histogram {
    /// An empty histogram with the given resolution and largest value; non-positive or absurd
    /// parameters fall back to grpc's defaults.
    pub fn new(resolution: f64, max_possible: f64) -> Histogram {
        let resolution = if resolution > 0.0 && resolution.is_finite() {
            resolution
        } else {
            DEFAULT_RESOLUTION
        };
        let max_possible = if max_possible >= 1.0 && max_possible.is_finite() {
            max_possible
        } else {
            DEFAULT_MAX_POSSIBLE
        };
        let one_on_log_multiplier = 1.0 / (1.0 + resolution).ln();
        let n = (max_possible.ln() * one_on_log_multiplier) as usize + 1;
        // 1% resolution over 60 s is ~2,500 buckets; refuse to allocate absurd sizes.
        let n = n.min(1 << 20);
        Histogram {
            one_on_log_multiplier,
            max_possible,
            buckets: vec![0; n],
            min_seen: max_possible,
            max_seen: 0.0,
            sum: 0.0,
            sum_of_squares: 0.0,
            count: 0.0,
        }
    }

    /// A histogram for the driver's `HistogramParams` (defaults when absent).
    pub fn from_params(p: Option<&HistogramParams>) -> Histogram {
        match p {
            Some(p) => Histogram::new(p.resolution, p.max_possible),
            None => Histogram::new(DEFAULT_RESOLUTION, DEFAULT_MAX_POSSIBLE),
        }
    }

    /// An empty histogram with the same buckets as `self`.
    pub fn empty_like(&self) -> Histogram {
        let mut h = self.clone();
        h.buckets.iter_mut().for_each(|b| *b = 0);
        h.min_seen = h.max_possible;
        h.max_seen = 0.0;
        h.sum = 0.0;
        h.sum_of_squares = 0.0;
        h.count = 0.0;
        h
    }

    fn bucket_for(&self, x: f64) -> usize {
        let x = x.clamp(1.0, self.max_possible);
        ((x.ln() * self.one_on_log_multiplier) as usize).min(self.buckets.len() - 1)
    }

    /// Records one value (nanoseconds).
    pub fn add(&mut self, x: f64) {
        self.sum += x;
        self.sum_of_squares += x * x;
        self.count += 1.0;
        self.min_seen = self.min_seen.min(x);
        self.max_seen = self.max_seen.max(x);
        let b = self.bucket_for(x);
        self.buckets[b] = self.buckets[b].saturating_add(1);
    }

    /// Adds `other`'s counts (same parameters) into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.buckets.len() != self.buckets.len() {
            tracing::warn!(
                "merging histograms with different bucket counts; ignoring the other one"
            );
            return;
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.saturating_add(*b);
        }
        self.sum += other.sum;
        self.sum_of_squares += other.sum_of_squares;
        self.count += other.count;
        self.min_seen = self.min_seen.min(other.min_seen);
        self.max_seen = self.max_seen.max(other.max_seen);
    }

    /// Number of recorded values.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// The value at percentile `p` (0..=100), interpolated inside its bucket like gpr does.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.count == 0.0 {
            return 0.0;
        }
        let target = self.count * p / 100.0;
        let mut seen = 0.0;
        let multiplier = (1.0 / self.one_on_log_multiplier).exp();
        for (i, &c) in self.buckets.iter().enumerate() {
            let c = c as f64;
            if seen + c >= target && c > 0.0 {
                let lo = multiplier.powi(i as i32);
                let hi = multiplier.powi(i as i32 + 1);
                let v = lo + (hi - lo) * ((target - seen) / c);
                return v.clamp(self.min_seen, self.max_seen);
            }
            seen += c;
        }
        self.max_seen
    }

    /// The `HistogramData` message for this histogram.
    pub fn to_proto(&self) -> HistogramData {
        HistogramData {
            bucket: self.buckets.clone(),
            min_seen: self.min_seen,
            max_seen: self.max_seen,
            sum: self.sum,
            sum_of_squares: self.sum_of_squares,
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_count_matches_gpr_defaults() {
        // gpr: num_buckets = (size_t)(log(60e9) / log(1.01)) + 1
        let h = Histogram::new(0.01, 60e9);
        assert_eq!(
            h.buckets.len(),
            ((60e9f64).ln() / (1.01f64).ln()) as usize + 1
        );
    }

    #[test]
    fn percentiles_land_near_values() {
        let mut h = Histogram::new(0.01, 60e9);
        for v in 1..=1000 {
            h.add(v as f64 * 1000.0);
        }
        let p50 = h.percentile(50.0);
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.03, "p50 {p50}");
        let p99 = h.percentile(99.0);
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.03, "p99 {p99}");
        let d = h.to_proto();
        assert_eq!(d.count, 1000.0);
        assert_eq!(d.bucket.iter().map(|&b| b as u64).sum::<u64>(), 1000);
    }
}
