//! `coordinator bench`: what processes cost compared with threads, measured side by side
//! in one run on this machine, with hyperfine-style statistics, the machine's own floor
//! (a bare ipc echo, a bare channel echo), and optionally Python's executors as peers.

mod breakdown;
mod broker;
mod export;
mod memory;
mod model;
mod overhead;
mod peers;
mod plot;
mod scaling;
pub mod stats;

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::cli::{BenchArgs, Suite};
use crate::machine::Machine;
use crate::pool::{BackendKind, Chunk, Pool, PoolConfig, WorkerBinary};
pub use model::{Measurement, Report};

/// Settings every suite reads.
pub struct Bench {
    pub bin: WorkerBinary,
    pub quick: bool,
    /// Measured runs per configuration.
    pub runs: usize,
    /// Unmeasured runs before them.
    pub warmup: usize,
    /// The `--workers` sweep.
    pub sweep: Vec<usize>,
    /// `--broker`, for the broker suite: checked, and as given (for the workers it starts).
    pub broker: Option<shared::broker::BrokerUrl>,
    pub broker_raw: Option<String>,
}

impl Bench {
    /// A started pool for one configuration.
    pub fn pool(
        &self,
        backend: BackendKind,
        workers: usize,
        chunk: Chunk,
        inflight: Option<usize>,
        context: shared::Context,
    ) -> Result<Pool> {
        Pool::start(PoolConfig {
            backend,
            workers,
            order: crate::pool::Order::Input,
            chunk,
            inflight,
            retries: 0,
            backoff: std::time::Duration::ZERO,
            context,
            timeout: None,
            first: None,
            fail_fast: false,
            worker_bin: Some(self.bin.clone()),
            broker: self
                .broker
                .clone()
                .filter(|_| backend == BackendKind::Redis),
        })
        .context("cannot start a pool to measure")
    }

    /// A one-worker pool that takes one task at a time: what latency is measured on.
    pub fn one_at_a_time(&self, backend: BackendKind, context: shared::Context) -> Result<Pool> {
        self.pool(backend, 1, Chunk::Fixed(1), Some(1), context)
    }

    /// Runs `f` `warmup` times unmeasured, then `runs` times, returning its results.
    pub fn repeat(&self, mut f: impl FnMut() -> Result<f64>) -> Result<Vec<f64>> {
        for _ in 0..self.warmup {
            f()?;
        }
        (0..self.runs).map(|_| f()).collect()
    }
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub fn run(args: &BenchArgs) -> Result<u8> {
    let bin = WorkerBinary::locate(args.worker_bin.as_deref())?;
    let quick = args.quick;
    let bench = Bench {
        bin,
        quick,
        runs: args.runs.unwrap_or(if quick { 2 } else { 5 }).max(1),
        warmup: args.warmup.unwrap_or(1),
        sweep: if args.workers.is_empty() {
            if quick {
                vec![1, 2, 4]
            } else {
                vec![1, 2, 4, 8]
            }
        } else {
            args.workers.clone()
        },
        broker: args
            .broker
            .as_deref()
            .map(shared::broker::BrokerUrl::parse)
            .transpose()?,
        broker_raw: args.broker.clone(),
    };
    if bench.sweep.contains(&0) {
        anyhow::bail!("--workers takes positive numbers");
    }
    let suites: Vec<Suite> = if args.suite.is_empty() {
        let mut all = Suite::ALL.to_vec();
        // The broker column needs a broker: measured when one is given.
        if bench.broker.is_some() {
            all.push(Suite::Broker);
        }
        all
    } else {
        args.suite.clone()
    };
    let targets = export::Targets {
        json: args.export_json.clone(),
        csv: args.export_csv.clone(),
        markdown: args.export_markdown.clone(),
    };
    let mut settings = BTreeMap::new();
    settings.insert("quick".to_string(), quick.to_string());
    settings.insert("runs".to_string(), bench.runs.to_string());
    settings.insert("warmup".to_string(), bench.warmup.to_string());
    settings.insert("workers".to_string(), format!("{:?}", bench.sweep));
    let mut report = Report {
        machine: Machine::read(),
        version: env!("CARGO_PKG_VERSION"),
        settings,
        measurements: Vec::new(),
        histograms: BTreeMap::new(),
        notes: Vec::new(),
    };
    let m = &report.machine;
    eprintln!(
        "workpool bench on {} ({} logical cores, {} MiB, {}, kernel {}); {} runs after {} warm-up",
        m.cpu, m.logical_cores, m.memory_total_mib, m.os, m.kernel, bench.runs, bench.warmup
    );
    let started = Instant::now();
    for suite in &suites {
        let t = Instant::now();
        eprintln!("suite {} ...", suite.name());
        let result = match suite {
            Suite::Startup => overhead::startup(&bench, &mut report),
            Suite::Latency => overhead::latency(&bench, &mut report),
            Suite::Throughput => overhead::throughput(&bench, &mut report),
            Suite::Payload => overhead::payload(&bench, &mut report),
            Suite::Floor => overhead::floor(&bench, &mut report),
            Suite::BreakEven => overhead::break_even(&bench, &mut report),
            Suite::Breakdown => breakdown::breakdown(&bench, &mut report),
            Suite::Memory => memory::memory(&bench, &mut report),
            Suite::Scaling => scaling::scaling(&bench, &mut report),
            Suite::Broker => broker::broker(&bench, &mut report),
        };
        if let Err(err) = result {
            let note = format!("suite {} failed: {err:#}", suite.name());
            eprintln!("warning: {note}");
            report.notes.push(note);
        }
        eprintln!(
            "suite {} done in {:.1} s",
            suite.name(),
            t.elapsed().as_secs_f64()
        );
        overhead::add_ratios(&mut report);
        targets.write(&report, false)?;
    }
    if args.peers.iter().any(|p| p == "python") {
        eprintln!("peers: python ...");
        match peers::python(&bench, &suites, &mut report) {
            Ok(()) => peers::add_ratios(&mut report),
            Err(err) => {
                let note = format!("python peers skipped: {err:#}");
                eprintln!("{note}");
                report.notes.push(note);
            }
        }
    }
    report.notes.push(format!(
        "bench took {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    targets.write(&report, true)?;
    if let Some(dir) = &args.plot {
        for path in plot::write_all(&report, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    let markdown_on_stdout = args.export_markdown.as_deref() == Some(std::path::Path::new("-"));
    print_terminal(&report, !markdown_on_stdout);
    Ok(crate::app::exit::OK)
}

/// The terminal report on stderr: warnings, then the Markdown tables unless they already
/// went to stdout.
fn print_terminal(report: &Report, tables: bool) {
    for warning in report.measurements.iter().flat_map(|m| {
        m.warnings
            .iter()
            .map(move |w| format!("{} / {} / {}: {w}", m.suite, m.case, m.runtime))
    }) {
        eprintln!("warning: {warning}");
    }
    if tables {
        eprintln!("\n{}", export::markdown(report));
    }
}
