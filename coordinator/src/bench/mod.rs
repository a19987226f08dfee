//! `coordinator bench`: what processes cost compared with threads, measured side by side
//! in one run on this machine, with hyperfine-style statistics, the machine's own floor
//! (a bare ipc echo, a bare channel echo), and optionally Python's executors as peers.

mod breakdown;
mod broker;
pub mod conclusions;
mod export;
mod load;
mod memory;
mod model;
mod output_rate;
mod overhead;
mod peers;
mod plot;
mod progress;
mod recycle;
mod scaling;
pub mod stats;
pub mod units;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::cli::{BenchArgs, Suite};
use crate::machine::Machine;
pub use model::{Measurement, Report};
use workpool::pool::{BackendKind, Chunk, Pool, PoolBuilder, WorkerBinary};
use workpool::Task;

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
    pub broker: Option<workpool::broker::BrokerUrl>,
    pub broker_raw: Option<String>,
    /// `--load`: CPU hogs to measure the latency suite under, a second time.
    pub load: Option<usize>,
}

impl Bench {
    /// The settings of a pool for one configuration.
    pub fn builder(
        &self,
        backend: BackendKind,
        workers: usize,
        chunk: Chunk,
        inflight: Option<usize>,
    ) -> PoolBuilder {
        let builder = PoolBuilder::new()
            .backend(backend)
            .workers(workers)
            .chunk(chunk)
            .inflight(inflight.unwrap_or(0))
            .backoff(std::time::Duration::ZERO)
            .worker_program(self.bin.clone());
        match &self.broker {
            Some(url) if backend == BackendKind::Redis => builder.broker(url.clone()),
            _ => builder,
        }
    }

    /// A started pool of `task` for one configuration.
    pub fn pool<T: Task>(
        &self,
        backend: BackendKind,
        workers: usize,
        chunk: Chunk,
        inflight: Option<usize>,
        task: T,
    ) -> Result<Pool<T>> {
        start(self.builder(backend, workers, chunk, inflight), task)
    }

    /// A one-worker pool that takes one task at a time: what latency is measured on.
    pub fn one_at_a_time<T: Task>(&self, backend: BackendKind, task: T) -> Result<Pool<T>> {
        self.pool(backend, 1, Chunk::Fixed(1), Some(1), task)
    }

    /// `coordinator run WORKLOAD` as a program of its own (this very binary, as a user
    /// runs it) on the bench's worker binary: what a command line costs, its start-up
    /// included. Its standard error is piped, for the message of a failed run.
    pub fn run_command(&self, workload: &str) -> Result<std::process::Command> {
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let mut command = std::process::Command::new(exe);
        command
            .args(["run", workload, "--progress", "never", "--worker-bin"])
            .arg(&self.bin.path)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        load::die_with_parent(&mut command);
        Ok(command)
    }

    /// Runs `f` `warmup` times unmeasured, then `runs` times, returning its results.
    pub fn repeat(&self, mut f: impl FnMut() -> Result<f64>) -> Result<Vec<f64>> {
        for _ in 0..self.warmup {
            f()?;
        }
        (0..self.runs).map(|_| f()).collect()
    }
}

/// Starts a pool to measure.
pub fn start<T: Task>(builder: PoolBuilder, task: T) -> Result<Pool<T>> {
    builder
        .build(task)
        .context("cannot start a pool to measure")
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
            .map(workpool::broker::BrokerUrl::parse)
            .transpose()?,
        broker_raw: args.broker.clone(),
        load: args.load,
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
    if let Some(hogs) = bench.load {
        settings.insert("load".to_string(), format!("{hogs} CPU hogs"));
    }
    let report = Report {
        machine: Machine::read(),
        version: env!("CARGO_PKG_VERSION"),
        settings,
        measurements: Vec::new(),
        histograms: BTreeMap::new(),
        notes: Vec::new(),
        conclusions: Vec::new(),
    };
    let m = &report.machine;
    workpool::diag!(
        "workpool bench on {} ({} logical cores, {} MiB, {}, kernel {}); {} runs after {} warm-up",
        m.cpu,
        m.logical_cores,
        m.memory_total_mib,
        m.os,
        m.kernel,
        bench.runs,
        bench.warmup
    );

    // The suites run on a thread of their own, so that an interrupt is answered at once
    // with every suite already finished, while the one in progress is abandoned.
    let progress = progress::Suites::new(&suites, quick);
    let done = Arc::new(Mutex::new(Finished {
        report: report.clone(),
        stopped: false,
    }));
    let (events, event) = flume::bounded(2);
    let interrupted = events.clone();
    crate::app::on_interrupt(
        "interrupted: keeping the suites already finished (interrupt again to exit at once)",
        move || {
            let _ = interrupted.try_send(Event::Interrupted);
        },
    )?;
    let run = Run {
        bench,
        suites,
        peers: args.peers.iter().any(|p| p == "python"),
        targets: targets.clone(),
        progress: progress.clone(),
        done: Arc::clone(&done),
    };
    std::thread::Builder::new()
        .name("workpool-bench".into())
        .spawn(move || {
            let _ = events.send(Event::Done(run.measure(report).map(Box::new)));
        })
        .context("cannot start the bench thread")?;
    let (report, code) = match event.recv() {
        Ok(Event::Done(result)) => (*result?, crate::app::exit::OK),
        Ok(Event::Interrupted) | Err(_) => {
            let mut done = lock(&done);
            done.stopped = true;
            let mut report = done.report.clone();
            drop(done);
            remove_temp_files();
            let unfinished = progress.unfinished();
            report.notes.push(if unfinished.is_empty() {
                "interrupted by the user while the python peers ran: they are not shown".into()
            } else {
                format!("interrupted by the user: {}", unfinished.join(", "))
            });
            (report, crate::app::exit::INTERRUPTED)
        }
    };
    progress.finish();
    let mut report = report;
    report.conclusions = conclusions::of(&report.measurements, report.machine.logical_cores);
    targets.write(&report, true)?;
    if let Some(dir) = &args.plot {
        for path in plot::write_all(&report, dir)? {
            workpool::diag!("wrote {}", path.display());
        }
    }
    let markdown_on_stdout = args.export_markdown.as_deref() == Some(std::path::Path::new("-"));
    print_terminal(&report, !markdown_on_stdout);
    Ok(code)
}

/// What the bench thread tells the main one.
enum Event {
    Done(Result<Box<Report>>),
    Interrupted,
}

/// The report as of the last finished suite; once `stopped`, the bench thread leaves it
/// and the exports alone.
struct Finished {
    report: Report,
    stopped: bool,
}

fn lock(done: &Mutex<Finished>) -> std::sync::MutexGuard<'_, Finished> {
    done.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The suites to run and where their results go, moved to the bench thread.
struct Run {
    bench: Bench,
    suites: Vec<Suite>,
    peers: bool,
    targets: export::Targets,
    progress: progress::Suites,
    done: Arc<Mutex<Finished>>,
}

impl Run {
    /// Runs every suite, then the peers; exports after each suite.
    fn measure(self, mut report: Report) -> Result<Report> {
        let bench = &self.bench;
        let started = Instant::now();
        for suite in &self.suites {
            let t = Instant::now();
            self.progress.start(*suite);
            let result = match suite {
                Suite::Startup => overhead::startup(bench, &mut report),
                Suite::Latency => overhead::latency(bench, &mut report),
                Suite::Throughput => overhead::throughput(bench, &mut report),
                Suite::Payload => overhead::payload(bench, &mut report),
                Suite::Floor => overhead::floor(bench, &mut report),
                Suite::BreakEven => overhead::break_even(bench, &mut report),
                Suite::Breakdown => breakdown::breakdown(bench, &mut report),
                Suite::Memory => memory::memory(bench, &mut report),
                Suite::Scaling => scaling::scaling(bench, &mut report),
                Suite::Broker => broker::broker(bench, &mut report),
                Suite::Recycle => recycle::recycle(bench, &mut report),
            };
            if let Err(err) = result {
                let note = format!("suite {} failed: {err:#}", suite.name());
                self.progress.println(&format!("warning: {note}"));
                report.notes.push(note);
            }
            overhead::add_ratios(&mut report);
            report.conclusions =
                conclusions::of(&report.measurements, report.machine.logical_cores);
            let mut done = lock(&self.done);
            if done.stopped {
                return Ok(report);
            }
            self.targets.write(&report, false)?;
            done.report = report.clone();
            drop(done);
            self.progress.finish_suite(*suite, t.elapsed());
        }
        if self.peers {
            self.progress.println("peers: python ...");
            match peers::python(bench, &self.suites, &mut report) {
                Ok(()) => peers::add_ratios(&mut report),
                Err(err) => {
                    let note = format!("python peers skipped: {err:#}");
                    self.progress.println(&note);
                    report.notes.push(note);
                }
            }
        }
        report.notes.push(format!(
            "bench took {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(report)
    }
}

/// A temporary folder of this run, named so that an interrupted run can remove it.
fn temp_dir(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("workpool-{what}-{}", std::process::id()))
}

/// Removes what an abandoned suite may have left in the temporary folder.
fn remove_temp_files() {
    for what in ["bench", "peers"] {
        let _ = std::fs::remove_dir_all(temp_dir(what));
    }
}

/// The terminal report on stderr: the Markdown tables, with a line per suite whose
/// samples had outliers and the plain-words conclusions, unless they already went to
/// stdout.
fn print_terminal(report: &Report, tables: bool) {
    if tables {
        workpool::diag!("\n{}", export::markdown(report));
    }
}
