//! Statistics of a sample of measurements, as hyperfine reports them: pure functions,
//! defined (or explicitly absent) for every sample size.

use serde::Serialize;

/// The summary of one sample. `stddev` is `None` for fewer than two values, like
/// hyperfine's: one run has no spread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub stddev: Option<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// `None` for an empty sample; NaN values are dropped first.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        Some(Summary {
            n,
            mean,
            stddev: stddev(&sorted, mean),
            median: percentile(&sorted, 50.0),
            min: sorted[0],
            max: sorted[n - 1],
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
        })
    }
}

/// Sample standard deviation (n - 1 in the denominator); `None` below two values.
pub fn stddev(values: &[f64], mean: f64) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// The p-th percentile of sorted values, interpolating linearly between closest ranks
/// (the "R-7" definition, numpy's default). Panics on an empty slice: callers check.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Indices of outliers by the modified Z-score (Iglewicz and Hoaglin, 1993: |M| > 3.5,
/// with M = 0.6745 (x - median) / MAD), as hyperfine's outlier warning uses. None when
/// the MAD is 0 (all values, or more than half, equal).
pub fn outliers(values: &[f64]) -> Vec<usize> {
    let Some(summary) = Summary::of(values) else {
        return Vec::new();
    };
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - summary.median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = percentile(&deviations, 50.0);
    if mad == 0.0 {
        return Vec::new();
    }
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| (0.6745 * (*v - summary.median) / mad).abs() > 3.5)
        .map(|(i, _)| i)
        .collect()
}

/// Counts of `values` in `buckets` bins from `lo` to `hi`, of equal width on a log scale
/// (latencies spread over decades), and how many values lie above `hi`. Values below `lo`
/// count in the first bin; `lo` is raised to a positive value if it is not one, and a
/// range of no width is one bin.
pub fn log_histogram(
    values: &[f64],
    lo: f64,
    hi: f64,
    buckets: usize,
) -> (Vec<(f64, f64, usize)>, usize) {
    let values: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return (Vec::new(), 0);
    }
    let lo = if lo > 0.0 {
        lo
    } else {
        hi.abs().max(1.0) * 1e-3
    };
    let buckets = if hi > lo { buckets.max(1) } else { 1 };
    let hi = hi.max(lo);
    let (log_lo, log_hi) = (lo.ln(), hi.ln());
    let width = (log_hi - log_lo) / buckets as f64;
    let edge = |i: usize| {
        if i == 0 {
            lo
        } else {
            (log_lo + width * i as f64).exp()
        }
    };
    let mut counts = vec![0usize; buckets];
    let mut above = 0;
    for v in values {
        if v > hi {
            above += 1;
        } else if width == 0.0 || v <= lo {
            counts[0] += 1;
        } else {
            counts[(((v.ln() - log_lo) / width) as usize).min(buckets - 1)] += 1;
        }
    }
    let bins = counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (edge(i), if i + 1 == buckets { hi } else { edge(i + 1) }, c))
        .collect();
    (bins, above)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sample_has_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert!(outliers(&[]).is_empty());
    }

    #[test]
    fn one_value_has_no_spread() {
        let s = Summary::of(&[2.5]).unwrap();
        assert_eq!(
            (s.n, s.mean, s.median, s.min, s.max),
            (1, 2.5, 2.5, 2.5, 2.5)
        );
        assert_eq!(s.stddev, None);
        assert_eq!((s.p95, s.p99), (2.5, 2.5));
    }

    #[test]
    fn equal_values_have_zero_spread_and_no_outliers() {
        let s = Summary::of(&[4.0; 5]).unwrap();
        assert_eq!(s.stddev, Some(0.0));
        assert!(outliers(&[4.0; 5]).is_empty());
    }

    #[test]
    fn known_sample() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        let s = Summary::of(&v).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.mean, 4.0);
        // Sample variance: (9 + 4 + 1 + 0 + 36) / 4 = 12.5.
        assert!((s.stddev.unwrap() - 12.5f64.sqrt()).abs() < 1e-12);
        // rank 0.95 * 4 = 3.8 -> 4 + 0.8 * 6.
        assert!((s.p95 - 8.8).abs() < 1e-12);
    }

    #[test]
    fn outliers_by_modified_z_score() {
        let mut v = vec![10.0, 10.1, 9.9, 10.2, 9.8, 10.0, 10.1];
        v.push(30.0);
        assert_eq!(outliers(&v), vec![7]);
    }

    #[test]
    fn log_histogram_counts_every_value_and_the_clipped_ones() {
        let v = [1.0, 2.0, 5.0, 9.0, 10.0, 500.0];
        let (bins, above) = log_histogram(&v, 1.0, 10.0, 2);
        assert_eq!(above, 1);
        assert_eq!(bins.len(), 2);
        // Equal widths on a log scale: 1..3.16 and 3.16..10.
        assert!((bins[0].1 - 10f64.sqrt()).abs() < 1e-9);
        assert_eq!((bins[0].2, bins[1].2), (2, 3));
        assert_eq!(bins[1].1, 10.0);
    }

    #[test]
    fn log_histogram_of_degenerate_samples() {
        assert_eq!(log_histogram(&[], 1.0, 2.0, 4), (Vec::new(), 0));
        assert_eq!(
            log_histogram(&[3.0; 4], 3.0, 3.0, 4),
            (vec![(3.0, 3.0, 4)], 0)
        );
        // A zero sample on a range starting at zero still lands in the first bin.
        let (bins, above) = log_histogram(&[0.0, 1.0], 0.0, 1.0, 3);
        assert_eq!((bins.iter().map(|b| b.2).sum::<usize>(), above), (2, 0));
    }
}
