//! What a benchmark run produces: measurements with their statistics and ratios, plus the
//! machine they were taken on. Every export is written from a [`Report`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{self, Summary};
use super::units;
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
    /// Comparisons taken in the same run, by key: `process/thread`, `redis/process`,
    /// `redis/thread`, `x floor` and `x -q` are this median over the other's (the floor is
    /// a bare echo with no pool logic; `-q`, the same run writing no outcomes); `x python`, `x python spawn` and `speedup` say how many
    /// times better this is than Python's executor or than running one after another.
    /// [`Measurement::comparisons`] words them all one way.
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

    /// Every ratio in words, one convention for all: "21x slower than threads",
    /// "1.5x faster than Python's thread pool".
    pub fn comparisons(&self) -> Vec<String> {
        self.ratios
            .iter()
            .map(|(key, &value)| match reading(key, &self.runtime) {
                Some((reference, Reads::Quotient)) => {
                    let better = if units::higher_is_better(self.unit) {
                        value
                    } else {
                        1.0 / value
                    };
                    units::compare(better, self.unit, reference)
                }
                Some((reference, Reads::TimesBetter)) => {
                    units::compare(value, self.unit, reference)
                }
                None => format!("{} {key}", units::num(value)),
            })
            .collect()
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

/// How the value of a ratio reads.
enum Reads {
    /// This median divided by the reference's.
    Quotient,
    /// How many times better this is than the reference (higher: better).
    TimesBetter,
}

/// What the ratio `key` of a `runtime`'s measurement compares with, and how it reads.
fn reading(key: &str, runtime: &str) -> Option<(&'static str, Reads)> {
    Some(match key {
        "process/thread" | "redis/thread" => ("threads", Reads::Quotient),
        "redis/process" => ("processes", Reads::Quotient),
        "x floor" => (
            match runtime {
                "process" => "a bare ipc echo",
                "thread" => "a bare channel echo",
                "redis" => "a bare Redis echo",
                _ => "the floor",
            },
            Reads::Quotient,
        ),
        "x python" => (
            match runtime {
                "thread" => "Python's thread pool",
                _ => "Python's process pool (fork)",
            },
            Reads::TimesBetter,
        ),
        "x python spawn" => ("Python's process pool (spawn)", Reads::TimesBetter),
        "x -q" => ("the same run with -q", Reads::Quotient),
        "speedup" => ("sequential", Reads::TimesBetter),
        _ => return None,
    })
}

/// A latency histogram on an axis every runtime of the run shares, cut at the largest
/// p99 so that a few outliers do not squeeze the rest into one bar.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    /// Buckets of (from, to, count), in microseconds, equal widths on a log scale.
    pub buckets: Vec<(f64, f64, usize)>,
    /// Samples above the last bucket: not drawn.
    pub clipped: usize,
    /// The largest sample, in microseconds.
    pub max: f64,
    /// The median, in microseconds.
    pub median: f64,
    /// The 99th percentile, in microseconds.
    pub p99: f64,
}

/// Everything one `coordinator bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub version: &'static str,
    /// `--quick`, runs, warm-up runs, worker sweep.
    pub settings: BTreeMap<String, String>,
    pub measurements: Vec<Measurement>,
    /// Latency histograms by runtime, on one shared axis.
    pub histograms: BTreeMap<String, Histogram>,
    /// Suites that were skipped or failed, with the reason.
    pub notes: Vec<String>,
    /// What this run's measurements say, in plain words (see [`super::conclusions`]).
    pub conclusions: Vec<String>,
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
