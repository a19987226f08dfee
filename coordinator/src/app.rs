//! The binary's flow: parse -> plan -> pool -> stream of outcomes -> export -> exit code.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::builtin::Builtin;
use crate::cli::{Cli, Command, RunOptions, Workload};
use crate::export::{self, Exporter, Layout};
use crate::plan::{Plan, Tasks, Typed};
use crate::progress::Progress;
use crate::report::{round3, Summary};
use workpool::pool::{BackendKind, PoolBuilder, Stats, WorkerBinary, MAX_WORKERS};

/// Exit codes, as `coordinator --help` lists them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const TASK_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INTERRUPTED: u8 = 130;
}

pub fn main() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse_args() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(exit::OK),
        Err(err) => {
            workpool::diag!("error: {err:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn dispatch(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Run(workload) => run(workload),
        Command::GenData(args) => crate::gen_data::run(args).map(|()| exit::OK),
        Command::Demo(args) => crate::demo::run(args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Info(args) => crate::info::run(args).map(|()| exit::OK),
    }
}

/// `coordinator run`: every outcome is written the moment it is known.
fn run(workload: &Workload) -> Result<u8> {
    let opts = workload.options();
    let plan = Plan::from_cli(workload)?;
    let mut config = pool_config(opts)?;
    // Never more workers than there can be tasks in flight.
    if let Some(len) = plan.len.filter(|&len| len > 0) {
        let workers = config.resolved_workers().min(len);
        config = config.workers(workers);
    }
    let destination = match &opts.output {
        Some(path) => path.display().to_string(),
        None => "standard output".to_string(),
    };
    // Open the output before starting any worker, so a bad path fails fast.
    let sink: Box<dyn Write + Send> = match &opts.output {
        Some(path) => Box::new(create_output(path, &plan.input_files)?),
        None => Box::new(io::stdout()),
    };
    let layout = Layout {
        workload: plan.workload,
        order: opts.order,
        quiet: opts.quiet,
        terminal: opts.output.is_none() && io::IsTerminal::is_terminal(&io::stdout()),
    };
    let exporter = export::exporter(opts.format, export::output(sink), layout);
    let progress = Progress::new(opts.progress, opts.quiet, plan.len.map(|n| n as u64));
    let mut output = Output {
        exporter,
        progress,
        destination,
    };

    let started = Instant::now();
    let broker = config.broker_redacted();
    let ran = match plan.tasks {
        Tasks::Noop(tasks) => drive(tasks, &config, &mut output)?,
        Tasks::Io(tasks) => drive(tasks, &config, &mut output)?,
        Tasks::Cpu(tasks) => drive(tasks, &config, &mut output)?,
        Tasks::Fetch(tasks) => drive(tasks, &config, &mut output)?,
        Tasks::Files(tasks) => drive(tasks, &config, &mut output)?,
    };
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let Output {
        mut exporter,
        progress,
        destination,
    } = output;
    progress.finish();
    let stats = ran.stats;
    // Whether every task that ended succeeded: all a reader gone (`| head`) is told.
    let tasks_code = if stats.failed > 0 {
        exit::TASK_FAILED
    } else {
        exit::OK
    };
    if ran.reader_gone {
        return Ok(tasks_code);
    }
    let interrupted = stats.interrupted;
    let summary = Summary {
        broker,
        pool_shutdown_ms: round3(ran.pool_shutdown_ms),
        ..Summary::new(
            plan.workload,
            opts.backend,
            ran.workers,
            opts.order,
            stats,
            wall_ms,
            ran.pool_start_ms,
        )
    };
    let code = if interrupted {
        exit::INTERRUPTED
    } else {
        tasks_code
    };
    match exporter.finish(&summary) {
        // Every task has ended: a reader gone before the summary changes nothing.
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            Err(err).with_context(|| format!("cannot write {destination}"))
        }
        _ => match plan.input_error.take() {
            Some(err) => bail!("{err} (the run stopped reading its inputs there)"),
            None => Ok(code),
        },
    }
}

/// Where a run's records go.
struct Output {
    exporter: Box<dyn Exporter + Send>,
    progress: Progress,
    destination: String,
}

/// What [`drive`] learnt of the pool and the run.
struct Ran {
    stats: Stats,
    workers: usize,
    pool_start_ms: f64,
    pool_shutdown_ms: f64,
    /// The reader of the output went away (`| head`): the run was stopped.
    reader_gone: bool,
}

/// Runs one workload's tasks on a pool made for its task type, writing each record as it
/// comes.
fn drive<T: Builtin>(tasks: Typed<T>, config: &PoolBuilder, output: &mut Output) -> Result<Ran> {
    let backend = config.backend_kind();
    let mut pool = config.build(tasks.task).context("cannot start the pool")?;
    let pool_start_ms = pool.start_time().as_secs_f64() * 1000.0;
    let workers = pool.workers();
    let interrupter = pool.interrupter();
    watch_for_interrupts(interrupter.clone(), backend)?;
    let mut run = pool.run(tasks.inputs);
    let Output {
        exporter,
        progress,
        destination,
    } = output;
    // Records are formatted and written on a thread of their own, so that writing them
    // overlaps with running the pool rather than taking turns with it.
    let written = std::thread::scope(|scope| {
        let (batches, from_run) = flume::bounded::<Written>(WRITE_QUEUE);
        let (done, written) = flume::unbounded::<Written>();
        let stop = interrupter.clone();
        let writer = std::thread::Builder::new()
            .name("workpool-writer".into())
            .spawn_scoped(scope, move || {
                write_records(&from_run, &done, &mut **exporter, progress, || {
                    stop.interrupt()
                })
            })
            .context("cannot start the writer thread")?;
        let mut to_writer = ToWriter {
            batches,
            written,
            queued: 0,
            records: Vec::with_capacity(WRITE_BATCH),
            bytes: 0,
            spare: Vec::new(),
        };
        while let Some(record) = run.next() {
            if !to_writer.push(T::record(record), run.has_ready()) {
                break; // The writer failed: its error says why.
            }
        }
        to_writer.finish();
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))
    })?;
    let reader_gone = written.with_context(|| format!("cannot write {destination}"))?;
    let stats = run.stats();
    let pool_shutdown_ms = pool.shutdown().as_secs_f64() * 1000.0;
    Ok(Ran {
        stats,
        workers,
        pool_start_ms,
        pool_shutdown_ms,
        reader_gone,
    })
}

/// Records handed to the writer thread in one message, at most: enough to make the
/// hand-off cheap.
const WRITE_BATCH: usize = 256;
/// A message ends once its records hold this many bytes (a no-op's payload makes a record
/// as big as the user asks).
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// Messages queued for the writer before the run waits for it.
const WRITE_QUEUE: usize = 16;
/// Bytes of records handed to the writer and not yet written, beyond which the run waits
/// for it: with [`WRITE_QUEUE`], the memory bound.
const WRITE_QUEUE_BYTES: usize = 4 << 20;

/// Records for the writer thread, their size, and whether to flush after them; sent back
/// emptied once written, so that the run reuses the room rather than allocating a batch's
/// worth for every message (one per record while a slow run flushes each).
struct Written {
    records: Vec<crate::builtin::Record>,
    bytes: usize,
    flush: bool,
}

/// The run's end of the writer's queue: gathers records into messages and keeps what
/// waits within [`WRITE_QUEUE`] messages and about [`WRITE_QUEUE_BYTES`].
struct ToWriter {
    batches: flume::Sender<Written>,
    /// Each message the writer is done with, emptied.
    written: flume::Receiver<Written>,
    queued: usize,
    records: Vec<crate::builtin::Record>,
    bytes: usize,
    /// An emptied message's room, for the next one.
    spare: Vec<crate::builtin::Record>,
}

impl ToWriter {
    /// Adds a record, and hands the message over when it is full or nothing more is
    /// `ready`; says whether the writer is still there.
    fn push(&mut self, record: crate::builtin::Record, ready: bool) -> bool {
        // Every record is flushed when the next one is not ready, so that a slow run
        // shows it the moment it arrives; but for a flood of tasks that never ran.
        let flush = !ready && crate::builtin::never_ran(&record).is_none();
        self.bytes += record_bytes(&record);
        self.records.push(record);
        if ready && self.records.len() < WRITE_BATCH && self.bytes < WRITE_BATCH_BYTES {
            return true;
        }
        self.hand_over(flush)
    }

    fn hand_over(&mut self, flush: bool) -> bool {
        while let Ok(done) = self.written.try_recv() {
            self.returned(done);
        }
        while self.queued > WRITE_QUEUE_BYTES {
            match self.written.recv() {
                Ok(done) => self.returned(done),
                Err(_) => return false,
            }
        }
        let next = match std::mem::take(&mut self.spare) {
            spare if spare.capacity() > 0 => spare,
            _ => Vec::with_capacity(WRITE_BATCH),
        };
        let records = std::mem::replace(&mut self.records, next);
        let bytes = std::mem::take(&mut self.bytes);
        self.queued += bytes;
        self.batches
            .send(Written {
                records,
                bytes,
                flush,
            })
            .is_ok()
    }

    /// Counts a message the writer is done with out of the queue, and keeps its room.
    fn returned(&mut self, done: Written) {
        self.queued -= done.bytes;
        self.spare = done.records;
    }

    /// Hands over what is left, flushed.
    fn finish(mut self) {
        if !self.records.is_empty() {
            self.hand_over(true);
        }
    }
}

/// About what a record holds in memory: its payloads, and a little for the rest.
fn record_bytes(record: &crate::builtin::Record) -> usize {
    use crate::builtin::{Input, Value};
    let input = match &record.input {
        Input::Noop { payload, .. } => payload.len(),
        _ => 0,
    };
    let value = match &record.result {
        Ok(Value::Noop { payload }) => payload.len(),
        _ => 0,
    };
    256 + input + value
}

/// Writes what the run sends until it is done; says whether the reader of the output went
/// away. Once it has (`| head`), the run is stopped (`stop`) and nothing more is written;
/// the exit code still says whether every task that ended succeeded (the ones the stop
/// cancelled never ended).
fn write_records(
    from_run: &flume::Receiver<Written>,
    done: &flume::Sender<Written>,
    exporter: &mut (dyn Exporter + Send),
    progress: &Progress,
    stop: impl Fn(),
) -> io::Result<bool> {
    let mut reader_gone = false;
    for Written {
        mut records,
        bytes,
        flush,
    } in from_run
    {
        progress.inc_by(records.len() as u64);
        let written = if reader_gone {
            Ok(())
        } else {
            records
                .iter()
                .try_for_each(|record| exporter.record(record))
                .and_then(|()| {
                    if flush {
                        progress.suspend(|| exporter.flush())
                    } else {
                        Ok(())
                    }
                })
        };
        records.clear();
        // The run may have ended already; then nobody needs to know.
        let _ = done.send(Written {
            records,
            bytes,
            flush,
        });
        match written {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                // No point running tasks whose outcomes would be written into nothing.
                reader_gone = true;
                stop();
            }
            Err(err) => return Err(err),
        }
    }
    Ok(reader_gone)
}

/// Opens `--output` without destroying an input: the file is opened without truncating it,
/// compared (device and inode, so a link or another spelling of the path is caught) with
/// every file the run reads, and only then emptied.
fn create_output(path: &Path, inputs: &[PathBuf]) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    // A pipe or a terminal has nothing to lose, and cannot be truncated.
    if !meta.is_file() {
        return Ok(file);
    }
    let same = |input: &&PathBuf| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(input).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
    };
    if let Some(input) = inputs.iter().find(same) {
        bail!(
            "--output {} is the input file {}: writing the results would destroy it; \
             choose another output path",
            path.display(),
            input.display()
        );
    }
    file.set_len(0)
        .with_context(|| format!("cannot truncate {}", path.display()))?;
    Ok(file)
}

/// SIGINT or SIGTERM stops the run (pending tasks are reported `cancelled`, workers are
/// stopped); a second one exits at once, and the workers die with the coordinator. On the
/// sequential backend a task runs in this very thread and cannot be stopped: if one is
/// still running a moment after the interrupt, the process exits with the records so far
/// (each was flushed before the next task started) but without the summary.
fn watch_for_interrupts<O: Send + 'static>(
    interrupter: workpool::pool::Interrupter<O>,
    backend: BackendKind,
) -> Result<()> {
    on_interrupt(
        "interrupted: stopping (interrupt again to exit at once)",
        move || {
            interrupter.interrupt();
            if backend == BackendKind::Sequential {
                exit_if_stuck_inline();
            }
        },
    )
}

/// How long an interrupted run may go on finishing the task in the coordinator's own
/// thread before the process exits without it.
const STUCK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Exits with code 130 if the sequential backend is still in the same batch after
/// [`STUCK_GRACE`], or in one it began after the interrupt (the signal came just before
/// the batch started, so the run could not hear it either: once the run has heard it, no
/// batch starts); runs on a thread of its own so that a second interrupt still exits at
/// once.
fn exit_if_stuck_inline() {
    let before = workpool::pool::running_batch();
    let _ = std::thread::Builder::new()
        .name("workpool-stuck".into())
        .spawn(move || {
            std::thread::sleep(STUCK_GRACE);
            let now = workpool::pool::running_batch();
            if now.is_some() && before.is_none_or(|batch| Some(batch) == now) {
                workpool::diag!(
                    "interrupted: a task is running in the coordinator's own thread \
                     (--backend sequential) and cannot be stopped; exiting without the summary"
                );
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        });
}

/// Calls `first` at the first SIGINT or SIGTERM, and exits with code 130 at the second.
pub fn on_interrupt(message: &'static str, first: impl Fn() + Send + 'static) -> Result<()> {
    workpool::interrupt::on_interrupt(message, first)
        .context("cannot install the interrupt handler")
}

/// Validates the pool flags into a [`PoolBuilder`].
pub fn pool_config(opts: &RunOptions) -> Result<PoolBuilder> {
    let workers = match opts.workers {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) if n > MAX_WORKERS => {
            bail!("--workers {n} is more than the {MAX_WORKERS} a pool can have")
        }
        Some(n) => n,
        None if opts.backend == BackendKind::Redis => REDIS_DEFAULT_SLOTS,
        None => crate::machine::default_workers(),
    };
    let mut config = PoolBuilder::new()
        .backend(opts.backend)
        .workers(workers)
        .order(opts.order)
        .chunk(opts.chunk)
        .inflight(opts.inflight.unwrap_or(0))
        .retries(opts.retries)
        .backoff(std::time::Duration::from_millis(opts.backoff_ms))
        .timeout(opts.timeout)
        .first(opts.first)
        .fail_fast(opts.fail_fast)
        .seed(opts.seed)
        .max_tasks_per_worker(opts.max_tasks_per_worker)
        .max_worker_rss(opts.max_worker_rss);
    config
        .check_recycle()
        .map_err(|err| anyhow::anyhow!("--max-tasks-per-worker, --max-worker-rss: {err}"))?;
    match (opts.backend, &opts.broker) {
        (BackendKind::Redis, Some(url)) => {
            config = config.broker(workpool::broker::BrokerUrl::parse(url)?);
        }
        (BackendKind::Redis, None) => {
            bail!("--backend redis needs --broker URL (or $WORKPOOL_BROKER)")
        }
        _ => {}
    }
    if opts.backend == BackendKind::Sequential && opts.timeout.is_some() {
        bail!(
            "--timeout cannot stop a task of --backend sequential, which runs in the \
             coordinator's own thread: use --backend thread -w 1 to run one task at a time \
             with a timeout"
        );
    }
    if opts.backend == BackendKind::Process {
        config = config.worker_program(WorkerBinary::locate(opts.worker_bin.as_deref())?);
    }
    Ok(config)
}

/// Batches that may wait on a broker at once unless `-w` says otherwise: enough to keep a
/// few remote workers with several threads each busy.
const REDIS_DEFAULT_SLOTS: usize = 64;

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Panics inside tasks on pool threads are caught and reported as `panicked` outcomes;
/// the default hook would print them as well. Any other panic is a bug and is printed.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_pool_thread = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(workpool::pool::THREAD_NAME_PREFIX));
        if !on_pool_thread {
            default(info);
        }
    }));
}
