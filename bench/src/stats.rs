//! Latency histograms and summary statistics.
//!
//! A run can produce hundreds of millions of deliveries, so latencies are not kept one by
//! one: they go into a log-linear histogram (the HDR idea) with 128 buckets per power of
//! two, which bounds the error of any percentile to 1/128 of the value (under 0.8 %) in
//! 60 KiB, whatever the count. Buckets are atomic so that every connection task records
//! into the one shared histogram without locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Values below this are recorded exactly.
const EXACT: u64 = 256;
/// Sub-buckets per power of two above `EXACT`: the top 8 significant bits are kept.
const HALF: u64 = EXACT / 2;
const BUCKETS: usize = (HALF as usize) * 56 + EXACT as usize;

fn bucket_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let shift = 63 - u64::from(value.leading_zeros()) - 7;
    (HALF * shift + (value >> shift)) as usize
}

/// The smallest and largest value a bucket holds.
fn bounds_of(bucket: usize) -> (u64, u64) {
    let bucket = bucket as u64;
    if bucket < EXACT {
        return (bucket, bucket);
    }
    let shift = bucket / HALF - 1;
    let mantissa = bucket - HALF * shift;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// Nanosecond latencies (or any non-negative integers).
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, value: u64) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.min.fetch_min(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.max.load(Ordering::Relaxed))
    }

    /// The nearest-rank `pct` percentile (0–100): the smallest recorded value with at
    /// least `pct` % of the values at or below it, to the histogram's precision (the
    /// middle of its bucket, kept within the recorded minimum and maximum).
    pub fn percentile(&self, pct: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((pct / 100.0) * count as f64)
            .ceil()
            .clamp(1.0, count as f64) as u64;
        let mut seen = 0;
        for (bucket, n) in self.buckets.iter().enumerate() {
            seen += n.load(Ordering::Relaxed);
            if seen >= rank {
                let (low, high) = bounds_of(bucket);
                let middle = low + (high - low) / 2;
                let min = self.min.load(Ordering::Relaxed);
                let max = self.max.load(Ordering::Relaxed);
                return Some(middle.clamp(min, max));
            }
        }
        self.max()
    }
}

impl Histogram {
    /// Every bucket's count now, for [`Histogram::percentile_between`].
    pub fn snapshot(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The nearest-rank `pct` percentile of the values recorded between two snapshots
    /// (the middle of its bucket, kept within the recorded maximum; exact below 256);
    /// `None` when nothing was recorded between them.
    pub fn percentile_between(&self, earlier: &[u64], later: &[u64], pct: f64) -> Option<u64> {
        // A missing earlier count is zero: an empty snapshot is the histogram's start.
        let counts = || {
            later
                .iter()
                .enumerate()
                .map(|(i, after)| after.saturating_sub(earlier.get(i).copied().unwrap_or(0)))
        };
        let count: u64 = counts().sum();
        if count == 0 {
            return None;
        }
        let rank = ((pct / 100.0) * count as f64)
            .ceil()
            .clamp(1.0, count as f64) as u64;
        let mut seen = 0;
        for (bucket, n) in counts().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds_of(bucket);
                return Some((low + (high - low) / 2).min(self.max.load(Ordering::Relaxed)));
            }
        }
        None
    }
}

/// The median of `values` (the mean of the two middle ones for an even count); `None`
/// when empty. NaN values (a figure a run could not measure) are left out.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact nearest-rank percentile of a sorted slice.
    fn exact(sorted: &[u64], pct: f64) -> u64 {
        let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    #[test]
    fn buckets_are_contiguous_and_hold_their_values() {
        let mut previous_high = None;
        for bucket in 0..BUCKETS {
            let (low, high) = bounds_of(bucket);
            assert!(low <= high, "bucket {bucket}: {low} > {high}");
            if let Some(prev) = previous_high {
                assert_eq!(low, prev + 1, "gap before bucket {bucket}");
            }
            assert_eq!(bucket_of(low), bucket);
            assert_eq!(bucket_of(high), bucket);
            previous_high = Some(high);
        }
        assert_eq!(previous_high, Some(u64::MAX));
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::default();
        for v in [3, 1, 2, 200, 4] {
            h.record(v);
        }
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.percentile(50.0), Some(3));
        assert_eq!(h.percentile(80.0), Some(4));
        assert_eq!(h.percentile(100.0), Some(200));
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn percentiles_stay_within_the_precision_bound() {
        let h = Histogram::default();
        let mut values = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Spread over six decades, like latencies from microseconds to seconds.
            let v = 1_000 + (state % 1_000_000_000) / (1 + (state >> 60));
            values.push(v);
            h.record(v);
        }
        values.sort_unstable();
        for pct in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            let want = exact(&values, pct) as f64;
            let got = h.percentile(pct).unwrap() as f64;
            assert!(
                (got - want).abs() <= want / 128.0,
                "p{pct}: histogram {got}, exact {want}"
            );
        }
        assert_eq!(h.max(), values.last().copied());
    }

    #[test]
    fn percentiles_between_snapshots_see_only_what_came_between() {
        let h = Histogram::default();
        for v in [1, 2, 3] {
            h.record(v);
        }
        let a = h.snapshot();
        for v in [100, 200, 250] {
            h.record(v);
        }
        let b = h.snapshot();
        assert_eq!(h.percentile_between(&a, &b, 0.0), Some(100));
        assert_eq!(h.percentile_between(&a, &b, 50.0), Some(200));
        assert_eq!(h.percentile_between(&a, &b, 100.0), Some(250));
        assert_eq!(h.percentile_between(&b, &b, 50.0), None);
        // The whole history, from an empty start.
        assert_eq!(h.percentile_between(&[], &b, 0.0), Some(1));
        assert_eq!(h.percentile_between(&[], &a, 100.0), Some(3));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.max(), None);
    }

    #[test]
    fn median_of_odd_even_and_missing() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }
}
