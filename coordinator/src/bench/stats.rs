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

/// Counts of values in `buckets` equal-width bins from min to max, for histograms.
pub fn histogram(values: &[f64], buckets: usize) -> Vec<(f64, f64, usize)> {
    let Some(s) = Summary::of(values) else {
        return Vec::new();
    };
    let buckets = buckets.max(1);
    let width = (s.max - s.min) / buckets as f64;
    if width == 0.0 {
        return vec![(s.min, s.max, s.n)];
    }
    let mut counts = vec![0usize; buckets];
    for v in values.iter().filter(|v| !v.is_nan()) {
        let i = (((v - s.min) / width) as usize).min(buckets - 1);
        counts[i] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (s.min + width * i as f64, s.min + width * (i + 1) as f64, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sample_has_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert!(outliers(&[]).is_empty());
        assert!(histogram(&[], 4).is_empty());
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
        assert_eq!(histogram(&[4.0; 5], 3), vec![(4.0, 4.0, 5)]);
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
    fn histogram_counts_every_value() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        let h = histogram(&v, 2);
        assert_eq!(h.iter().map(|b| b.2).sum::<usize>(), 5);
        assert_eq!(h.len(), 2);
    }
}
