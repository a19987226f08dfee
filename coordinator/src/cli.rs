//! The command line as clap sees it: flags and their help, nothing validated beyond types.
//! [`crate::app`] turns it into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::pool::{BackendKind, Order};

/// Run batches of tasks on a pool of worker processes or threads, and measure what each
/// choice costs.
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a batch of tasks of one workload and stream their outcomes.
    #[command(subcommand)]
    Run(Box<Workload>),
    /// Write the notebook's sample price files (one CSV per ticker) for `run files`.
    GenData(GenDataArgs),
    /// The notebook, section by section, measured on this machine on every backend.
    Demo(DemoArgs),
    /// Measure what processes cost compared with threads: start-up, latency, throughput,
    /// payload, memory, scaling, the machine's floor, and Python's executors as peers.
    Bench(BenchArgs),
    /// Show this machine's facts and which worker binary would be used.
    Info(InfoArgs),
}

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Tasks that return at once, echoing an optional payload (measures pure overhead).
    Noop(NoopArgs),
    /// Tasks that sleep, like the notebook's `io_bound_task`.
    Io(IoArgs),
    /// Tasks that sum i*i in a loop, like the notebook's `cpu_bound_task`.
    Cpu(CpuArgs),
    /// Simulated stock-quote fetches with latency and failures (notebook sections 2-4).
    Fetch(FetchArgs),
    /// Summary statistics of CSV price files (notebook section 5).
    Files(FilesArgs),
}

impl Workload {
    pub fn options(&self) -> &RunOptions {
        match self {
            Workload::Noop(a) => &a.run,
            Workload::Io(a) => &a.run,
            Workload::Cpu(a) => &a.run,
            Workload::Fetch(a) => &a.run,
            Workload::Files(a) => &a.run,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Workload::Noop(_) => "noop",
            Workload::Io(_) => "io",
            Workload::Cpu(_) => "cpu",
            Workload::Fetch(_) => "fetch",
            Workload::Files(_) => "files",
        }
    }
}

#[derive(Debug, Args)]
pub struct NoopArgs {
    /// Number of tasks.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Bytes of payload each task carries to the worker and back.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub payload: usize,
    /// Make chosen tasks misbehave, to see what the pool does: KIND@INDEX strikes every
    /// attempt of task INDEX, KIND@INDEX/N only its first N attempts. KIND is panic,
    /// abort, exit, kill (SIGKILL) or hang. abort/exit/kill need the process backend.
    #[arg(long, value_delimiter = ',', value_name = "KIND@INDEX[/N]")]
    pub fault: Vec<shared::workload::fault::FaultSpec>,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Debug, Args)]
pub struct IoArgs {
    /// Number of tasks.
    #[arg(long, default_value_t = 8)]
    pub count: u64,
    /// Milliseconds each task sleeps; a comma-separated list is used in turn, task by task
    /// (e.g. `--ms 400,300,200,100`).
    #[arg(long, default_value = "300", value_delimiter = ',', num_args = 1..)]
    pub ms: Vec<u64>,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Debug, Args)]
pub struct CpuArgs {
    /// Number of tasks.
    #[arg(long, default_value_t = 4)]
    pub count: u64,
    /// Loop iterations per task. The notebook's 2,000,000 take CPython about half a second
    /// but compiled Rust about a millisecond, so the default is larger to give each task
    /// real weight.
    #[arg(long, default_value_t = 200_000_000)]
    pub iters: u64,
    /// Hold one lock per process while CPU work runs, as CPython's GIL does.
    #[arg(long)]
    pub gil: bool,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Tickers to fetch, comma-separated [default: the notebook's sixteen].
    #[arg(long, value_delimiter = ',', conflicts_with = "tickers_file")]
    pub tickers: Vec<String>,
    /// Read tickers from FILE: one per line (commas also separate), `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub tickers_file: Option<PathBuf>,
    /// Simulated latency in ms: `LO..HI` (uniform) or one number (fixed).
    #[arg(long, default_value = "100..500", value_name = "LO..HI")]
    pub latency_ms: String,
    /// Tickers that are always slow (notebook section 3 uses TSLA,META,NVDA).
    #[arg(long, value_delimiter = ',')]
    pub slow: Vec<String>,
    /// Latency of the `--slow` tickers.
    #[arg(long, default_value_t = 800, value_name = "MS")]
    pub slow_ms: u64,
    /// Tickers the API rejects with a permanent `invalid_input` error.
    #[arg(long, value_delimiter = ',', default_value = "BAD,INVALID,ERROR")]
    pub reject: Vec<String>,
    /// Probability that an attempt fails with a transient `network` error (notebook: 0.1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fail_rate: f64,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Debug, Args)]
#[command(after_long_help = FILES_HELP)]
pub struct FilesArgs {
    /// CSV files, directories (their *.csv files) or glob patterns such as 'data/*.csv'.
    /// A path that does not exist is a usage error.
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<std::ffi::OsString>,
    /// The column of prices (a Yahoo Finance download has `Close` and `Adj Close`).
    #[arg(long, default_value = shared::workload::files::DEFAULT_PRICE_COLUMN, value_name = "NAME")]
    pub price_column: String,
    /// A row whose price or volume is missing (empty, null, NaN, or another of pandas'
    /// default missing markers): `error` fails the file, `skip` leaves the row out of the
    /// statistics and counts it in `skipped_rows`.
    #[arg(long, default_value = "error", value_name = "error|skip")]
    pub missing: shared::workload::files::Missing,
    /// Simulated slow-storage delay before each file is read (the notebook uses 100).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub io_delay_ms: u64,
    #[command(flatten)]
    pub run: RunOptions,
}

/// What `run files --help` says about the input files.
const FILES_HELP: &str = "\
Each file is a CSV with a header line, comma-separated, UTF-8. Two columns are needed, found \
by name in any order among any others, ignoring case and surrounding spaces: the price \
(`close`, or the one --price-column names) and `volume`. Prices must be positive, volumes \
not negative. At least 3 rows are needed (2 returns for a standard deviation).

Statistics are pandas': returns are pct_change of the price, std has ddof=1, 252 trading \
days a year; with --missing skip, on the rows kept (as after pandas' dropna on the two \
columns). A Yahoo Finance download (Date,Open,High,Low,Close,Adj Close,Volume) reads as \
it is; add --price-column 'Adj Close' for adjusted prices and --missing skip for its `null` \
rows.

Only regular files are read (a FIFO or a device is that file's `io` error). A row (a line, \
or a quoted row spanning lines) may be at most 1 MiB long; a longer one is a `parse` error. \
Error messages quote at most 80 characters of a file. File names that are not UTF-8 are \
read by their exact bytes; exports show them with U+FFFD in place of the invalid bytes.";

#[derive(Debug, Args)]
pub struct GenDataArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Tickers, one file each [default: the notebook's eight].
    #[arg(long, value_delimiter = ',', conflicts_with = "files")]
    pub tickers: Vec<String>,
    /// Number of files, for scale tests: the notebook's tickers, then T0008, T0009...
    #[arg(long)]
    pub files: Option<usize>,
    /// First date (YYYY-MM-DD).
    #[arg(long, default_value = "2020-01-01")]
    pub start: chrono::NaiveDate,
    /// Last date, inclusive (YYYY-MM-DD).
    #[arg(long, default_value = "2023-12-31", conflicts_with = "rows")]
    pub end: chrono::NaiveDate,
    /// Rows per file (one per calendar day from --start), instead of --end.
    #[arg(long)]
    pub rows: Option<usize>,
    /// Seed of the random prices and volumes.
    #[arg(long, default_value_t = shared::seed::DEFAULT_SEED)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Suites to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub suite: Vec<Suite>,
    /// Worker counts to sweep [default: 1,2,4,8; with --quick 1,2,4].
    #[arg(short, long, value_delimiter = ',')]
    pub workers: Vec<usize>,
    /// Measured runs per configuration [default: 5; with --quick 2].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Unmeasured warm-up runs before them [default: 1].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// A short pass: fewer runs and samples, smaller tasks.
    #[arg(long)]
    pub quick: bool,
    /// Write every measurement as JSON to FILE (`-`: standard output), after each suite.
    #[arg(long, value_name = "FILE")]
    pub export_json: Option<PathBuf>,
    /// Write one CSV row per measurement to FILE (`-`: standard output).
    #[arg(long, value_name = "FILE")]
    pub export_csv: Option<PathBuf>,
    /// Write Markdown tables to FILE (`-`: standard output).
    #[arg(long, value_name = "FILE")]
    pub export_markdown: Option<PathBuf>,
    /// Write SVG charts (speedup against workers, latency histograms, the round trip's
    /// breakdown) into DIR.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Also measure these peers in the same run: `python` (ThreadPoolExecutor and
    /// ProcessPoolExecutor; skipped with a note when python3 is missing).
    #[arg(long, value_delimiter = ',', value_parser = ["python"])]
    pub peers: Vec<String>,
    /// The worker executable [default: $WORKPOOL_WORKER, else `worker` next to this binary].
    #[arg(long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
    /// Also measure the redis backend through this broker (the `broker` suite: it starts
    /// two `worker --broker` processes of its own on this machine).
    #[arg(
        long,
        value_name = "URL",
        env = "WORKPOOL_BROKER",
        hide_env_values = true
    )]
    pub broker: Option<String>,
}

/// The bench suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Pool ready (spawn + handshake) and shutdown, across the worker sweep.
    Startup,
    /// One no-op at a time on a warm pool: median, p95, p99, histogram.
    Latency,
    /// No-op tasks per second across batch sizes and pipeline depths.
    Throughput,
    /// 1 KiB..1 MiB payloads: serialization alone against the whole round trip.
    Payload,
    /// Worker process RSS/PSS against what a thread adds.
    Memory,
    /// Speedup over sequential on io, cpu and files, cold and warm.
    Scaling,
    /// The task duration at which the process pool's overhead is 10% and 1%.
    BreakEven,
    /// This machine's floor: bare ipc echo between processes, bare channel echo.
    Floor,
    /// Where one no-op's round trip goes, phase by phase, on each backend.
    Breakdown,
    /// The redis backend next to processes and threads: start-up, round trip, throughput,
    /// io speedup, and how long a killed worker's tasks take to be reclaimed (--broker).
    Broker,
}

impl Suite {
    /// Floor first, so that every later latency can be compared with it.
    pub const ALL: [Suite; 9] = [
        Suite::Floor,
        Suite::Startup,
        Suite::Latency,
        Suite::Breakdown,
        Suite::Throughput,
        Suite::Payload,
        Suite::Memory,
        Suite::Scaling,
        Suite::BreakEven,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Startup => "startup",
            Suite::Latency => "latency",
            Suite::Throughput => "throughput",
            Suite::Payload => "payload",
            Suite::Memory => "memory",
            Suite::Scaling => "scaling",
            Suite::BreakEven => "break-even",
            Suite::Floor => "floor",
            Suite::Breakdown => "breakdown",
            Suite::Broker => "broker",
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// A shorter pass (smaller tasks, shorter sleeps): a few seconds.
    #[arg(long)]
    pub quick: bool,
    /// Also run CPU work on threads under a GIL-like lock, as CPython does.
    #[arg(long)]
    pub gil: bool,
    /// The worker executable [default: $WORKPOOL_WORKER, else `worker` next to this binary].
    #[arg(long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
}

/// How to run the batch and where its outcomes go; shared by every workload.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Pool and output")]
pub struct RunOptions {
    /// Where tasks run: worker processes, threads of this process, one after another, or
    /// `worker --broker` processes on any host, through a Redis broker (needs --broker).
    #[arg(long, value_enum, default_value_t = BackendKind::Process)]
    pub backend: BackendKind,
    /// The Redis broker of `--backend redis`: redis://[:PASSWORD@]HOST[:PORT][/DB], or
    /// rediss://... for TLS (checked against the system's CAs, or the PEM file in
    /// $WORKPOOL_BROKER_CA). Prefer $WORKPOOL_BROKER for a URL with a password (it stays
    /// out of `ps`); the password is never printed.
    #[arg(
        long,
        value_name = "URL",
        env = "WORKPOOL_BROKER",
        hide_env_values = true
    )]
    pub broker: Option<String>,
    /// Number of workers [default: logical cores]. With --backend redis: how many batches
    /// may wait on the broker at once (its back-pressure) [default: 64].
    #[arg(short, long)]
    pub workers: Option<usize>,
    /// Input order (like `executor.map`) or completion order (like `as_completed`).
    #[arg(long, value_enum, default_value_t = Order::Input)]
    pub order: Order,
    /// Tasks per message to a worker: a number, or `auto` (grows for tiny tasks, stays 1
    /// for long ones).
    #[arg(long, default_value = "auto", value_name = "N|auto")]
    pub chunk: String,
    /// Batches a worker may have queued before it answers [default: chosen by the pool].
    #[arg(long, value_name = "N")]
    pub inflight: Option<usize>,
    /// Further attempts for a task that failed transiently (network, timeout, worker crash).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Stop a task that runs longer than this (e.g. 500ms, 2s): a worker process is killed
    /// and replaced; a thread cannot be killed, so it is abandoned and replaced (a
    /// broker's worker enforces it on its own threads, the same way).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Stop after N tasks have succeeded; the rest are reported `cancelled`.
    #[arg(long, value_name = "N")]
    pub first: Option<u64>,
    /// Stop at the first failed task; the rest are reported `cancelled`.
    #[arg(long)]
    pub fail_fast: bool,
    /// Base delay before a retry, doubled each attempt, with jitter.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub backoff_ms: u64,
    /// Seed of every random quantity; the same seed gives the same data on any backend.
    #[arg(long, default_value_t = shared::seed::DEFAULT_SEED)]
    pub seed: u64,
    /// Output format [default: table].
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write outcomes to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Progress bar on standard error: when it is a terminal, always, or never.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// No progress bar, no per-task table rows: only the summary and errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// The worker executable [default: $WORKPOOL_WORKER, else `worker` next to this binary].
    #[arg(long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
}

/// `500ms`, `2s`, `1m 30s`: a positive duration.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("the duration must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(err) => Err(format!("{err} (write e.g. 500ms, 2s, 1m)")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned rows as outcomes arrive, then a summary.
    Table,
    /// One JSON document: outcomes then summary.
    Json,
    /// One JSON object per line, then a `{"summary": ...}` line.
    Jsonl,
    /// One CSV row per outcome; the summary goes to standard error.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The worker executable to check [default: $WORKPOOL_WORKER, else next to this binary].
    #[arg(long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
