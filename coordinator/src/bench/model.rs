//! What a benchmark run produces: measurements with their statistics and ratios, plus the
//! machine they were taken on. Every export is written from a [`Report`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{self, Summary};
use crate::machine::Machine;

/// One measured quantity of one configuration, summarised over its runs or samples.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The suite that took it (`startup`, `latency`, ...).
    pub suite: &'static str,
    /// What was measured, e.g. `pool ready`, `noop round trip`.
    pub case: String,
    /// Who ran it: `process`, `thread`, `sequential`, `floor-ipc`, `python-thread`...
    pub runtime: String,
    pub workers: Option<usize>,
    /// The configuration beyond runtime and workers, e.g. `chunk=16 inflight=2`.
    pub param: Option<String>,
    /// Unit of every statistic: `ms`, `us`, `tasks/s`, `KiB`, `x`.
    pub unit: &'static str,
    pub stats: Summary,
    /// Comparisons taken in the same run: `x floor`, `process/thread`, `x python`...
    pub ratios: BTreeMap<String, f64>,
    /// Outlier and other warnings about this sample.
    pub warnings: Vec<String>,
}

impl Measurement {
    /// Summarises `values`; `None` when there are none (the caller reports why).
    pub fn new(
        suite: &'static str,
        case: impl Into<String>,
        runtime: impl Into<String>,
        workers: Option<usize>,
        param: Option<String>,
        unit: &'static str,
        values: &[f64],
    ) -> Option<Measurement> {
        let stats = Summary::of(values)?;
        let mut warnings = Vec::new();
        let outliers = stats::outliers(values).len();
        if outliers > 0 && values.len() >= 5 {
            warnings.push(format!(
                "{outliers} of {} values are statistical outliers (modified Z-score > 3.5): \
                 the machine may have been busy",
                values.len()
            ));
        }
        Some(Measurement {
            suite,
            case: case.into(),
            runtime: runtime.into(),
            workers,
            param,
            unit,
            stats,
            ratios: BTreeMap::new(),
            warnings,
        })
    }

    /// Whether this is the measurement of (case, runtime, workers, param).
    pub fn is(
        &self,
        case: &str,
        runtime: &str,
        workers: Option<usize>,
        param: Option<&str>,
    ) -> bool {
        self.case == case
            && self.runtime == runtime
            && self.workers == workers
            && self.param.as_deref() == param
    }
}

/// Everything one `coordinator bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub version: &'static str,
    /// `--quick`, runs, warm-up runs, worker sweep.
    pub settings: BTreeMap<String, String>,
    pub measurements: Vec<Measurement>,
    /// Latency histograms: (runtime, buckets of (from, to, count)) in microseconds.
    pub histograms: BTreeMap<String, Vec<(f64, f64, usize)>>,
    /// Suites that were skipped or failed, with the reason.
    pub notes: Vec<String>,
}

impl Report {
    /// Keeps a measurement, if there was one (no values: the caller has said why).
    pub fn add(&mut self, m: Option<Measurement>) {
        if let Some(m) = m {
            self.measurements.push(m);
        }
    }

    pub fn find(
        &self,
        case: &str,
        runtime: &str,
        workers: Option<usize>,
        param: Option<&str>,
    ) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.is(case, runtime, workers, param))
    }
}
