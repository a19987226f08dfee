//! The command line as clap sees it: flags and their help, nothing validated beyond types.
//! [`crate::app`] turns it into settings.

// The doc comments here are the --help text, which writes optional parts of a URL in
// square brackets: they are not links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use workpool::pool::{BackendKind, Chunk, Order};

/// The largest value of each numeric flag. Each is far beyond any sensible run and low
/// enough that nothing derived from it (a deadline, an allocation, a retry's wait) can
/// overflow or exhaust memory; the `--help` of every flag states its maximum.
pub mod limits {
    use std::time::Duration;

    /// `--count`, `--first`: a trillion tasks.
    pub const MAX_COUNT: u64 = 1_000_000_000_000;
    /// Every delay in milliseconds (`--ms`, `--latency-ms`, `--slow-ms`, `--io-delay-ms`):
    /// one day.
    pub const MAX_MS: u64 = 86_400_000;
    /// `--timeout`: one day.
    pub const MAX_TIMEOUT: Duration = Duration::from_millis(MAX_MS);
    /// `--iters`: a trillion loop iterations (minutes of CPU per task).
    pub const MAX_ITERS: u64 = 1_000_000_000_000;
    /// `--retries`.
    pub const MAX_RETRIES: u64 = 1000;
    /// `--backoff-ms`: the scheduler never waits longer than this before a retry anyway.
    pub const MAX_BACKOFF_MS: u64 = 30_000;
    /// `--chunk`: tasks per message.
    pub const MAX_CHUNK: usize = 65_536;
    /// `--inflight`: batches queued per worker.
    pub const MAX_INFLIGHT: u64 = 1024;
    /// `gen-data --files`.
    pub const MAX_FILES: u64 = 1_000_000;
    /// `gen-data --rows`: every day from 0001-01-01 to 9999-12-31.
    pub const MAX_ROWS: u64 = workpool::datagen::MAX_DAYS as u64;
    /// `bench --runs`.
    pub const MAX_RUNS: u64 = 1000;
    /// `bench --warmup`.
    pub const MAX_WARMUP: u64 = 100;
    /// `bench -w`: worker counts to sweep.
    pub const MAX_BENCH_WORKERS: u64 = 1024;
    /// `bench --load`: CPU hogs.
    pub const MAX_LOAD: u64 = 256;
    /// `--max-worker-rss`: from 1 MiB (below a worker's own start-up memory, every worker
    /// would be retired after its first batch) to 1 TiB.
    pub const MIN_WORKER_RSS: u64 = 1 << 20;
    pub const MAX_WORKER_RSS: u64 = 1 << 40;
}

use limits::*;

/// A `u64` flag from `lo` to `hi`; clap's error names the flag and the range.
fn u64_in(lo: u64, hi: u64) -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(lo..=hi)
}

/// A `usize` flag from `lo` to `hi`.
fn usize_in(lo: u64, hi: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(lo..=hi)
}

/// What the exit code says, in `--help` (a macro, so that the top-level help can extend it).
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0    every task succeeded
  1    a task failed or was cancelled
  2    usage or set-up error (bad flag, missing worker binary, unwritable output)
  130  interrupted (SIGINT or SIGTERM); a second interrupt exits at once
When the reader of the output goes away (`| head`), the run stops quietly, and the code
still says whether every task that ended succeeded (0 or 1)."
    };
}
const EXIT_CODES: &str = exit_codes!();

/// Run batches of tasks on a pool of worker processes or threads, and measure what each
/// choice costs.
#[derive(Debug, Parser)]
#[command(
    name = "coordinator",
    version,
    propagate_version = true,
    after_help = concat!(
        "New here? Start with `coordinator demo --quick`: the notebook's sections in a few \
         seconds, on every backend. Then `coordinator run noop --help`.\n\n",
        exit_codes!()
    )
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments; see [`Cli::try_parse_from_args`].
    pub fn try_parse_args() -> Result<Cli, clap::Error> {
        Cli::try_parse_from_args(std::env::args_os())
    }

    /// Parses `args`, then settles what depends on where a value came from: `--broker`
    /// typed on the command line implies `--backend redis`, while the same URL from
    /// `$WORKPOOL_BROKER` waits for `--backend redis` to be asked for.
    pub fn try_parse_from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if let (Command::Run(workload), Some(("run", run))) =
            (&mut cli.command, matches.subcommand())
        {
            if let Some((_, flags)) = run.subcommand() {
                workload.options_mut().settle_backend(flags)?;
            }
        }
        Ok(cli)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a batch of tasks of one workload and stream their outcomes.
    #[command(subcommand, after_help = EXIT_CODES)]
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
    #[command(after_help = EXIT_CODES)]
    Noop(NoopArgs),
    /// Tasks that sleep, like the notebook's `io_bound_task`.
    #[command(after_help = EXIT_CODES)]
    Io(IoArgs),
    /// Tasks that sum i*i in a loop, like the notebook's `cpu_bound_task`.
    #[command(after_help = EXIT_CODES)]
    Cpu(CpuArgs),
    /// Simulated stock-quote fetches with latency and failures (notebook sections 2-4).
    #[command(after_help = EXIT_CODES)]
    Fetch(FetchArgs),
    /// Summary statistics of CSV price files (notebook section 5).
    #[command(after_help = EXIT_CODES)]
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

    fn options_mut(&mut self) -> &mut RunOptions {
        match self {
            Workload::Noop(a) => &mut a.run,
            Workload::Io(a) => &mut a.run,
            Workload::Cpu(a) => &mut a.run,
            Workload::Fetch(a) => &mut a.run,
            Workload::Files(a) => &mut a.run,
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
    /// Number of tasks (at most 1000000000000).
    #[arg(long, default_value_t = 1000, value_parser = u64_in(0, MAX_COUNT))]
    pub count: u64,
    /// Bytes of payload each task carries to the worker and back (at most 16777216).
    #[arg(long, default_value_t = 0, value_name = "BYTES",
          value_parser = usize_in(0, workpool::codec::MAX_PAYLOAD_BYTES as u64))]
    pub payload: usize,
    /// Make chosen tasks misbehave, to see what the pool does: KIND@INDEX strikes every
    /// attempt of task INDEX, KIND@INDEX/N only its first N attempts (N from 1 to 1000).
    /// KIND is panic, abort, exit, kill (SIGKILL), hang, or leak:SIZE (allocate SIZE, e.g.
    /// 4MiB, at most 1GiB, touch it and never free it: see --max-worker-rss). INDEX is a
    /// task below --count, or * for every task (`leak:4MiB@*`); each task takes one
    /// fault, and one aimed at a task wins over the one for *. abort/exit/kill need the
    /// process backend.
    #[arg(long, value_delimiter = ',', value_name = "KIND@INDEX[/N]")]
    pub fault: Vec<workpool::workload::fault::FaultSpec>,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Debug, Args)]
pub struct IoArgs {
    /// Number of tasks (at most 1000000000000).
    #[arg(long, default_value_t = 8, value_parser = u64_in(0, MAX_COUNT))]
    pub count: u64,
    /// Milliseconds each task sleeps; a comma-separated list is used in turn, task by task
    /// (e.g. `--ms 400,300,200,100`). Each at most 86400000 (one day).
    #[arg(long, default_value = "300", value_delimiter = ',', num_args = 1..,
          value_parser = u64_in(0, MAX_MS))]
    pub ms: Vec<u64>,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Debug, Args)]
pub struct CpuArgs {
    /// Number of tasks (at most 1000000000000).
    #[arg(long, default_value_t = 4, value_parser = u64_in(0, MAX_COUNT))]
    pub count: u64,
    /// Loop iterations per task (at most 1000000000000). The notebook's 2,000,000 take
    /// CPython about half a second but compiled Rust about a millisecond, so the default
    /// is larger to give each task real weight.
    #[arg(long, default_value_t = 200_000_000, value_parser = u64_in(0, MAX_ITERS))]
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
    /// Number of fetches: the first N tickers, going round the list again if N is larger
    /// (at most 1000000000000) [default: one per ticker].
    #[arg(long, value_parser = u64_in(0, MAX_COUNT))]
    pub count: Option<u64>,
    /// Simulated latency in ms: `LO..HI` (uniform) or one number (fixed); at most
    /// 86400000 (one day).
    #[arg(long, default_value = "100..500", value_name = "LO..HI", value_parser = parse_latency)]
    pub latency_ms: (u64, u64),
    /// Tickers that are always slow (notebook section 3 uses TSLA,META,NVDA).
    #[arg(long, value_delimiter = ',')]
    pub slow: Vec<String>,
    /// Latency of the `--slow` tickers (at most 86400000, one day).
    #[arg(long, default_value_t = 800, value_name = "MS", value_parser = u64_in(0, MAX_MS))]
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
    #[arg(long, default_value = workpool::workload::files::DEFAULT_PRICE_COLUMN, value_name = "NAME")]
    pub price_column: String,
    /// A row whose price or volume is missing (empty, null, NaN, or another of pandas'
    /// default missing markers): `error` fails the file, `skip` leaves the row out of the
    /// statistics and counts it in `skipped_rows`.
    #[arg(long, default_value = "error", value_name = "error|skip")]
    pub missing: workpool::workload::files::Missing,
    /// Simulated slow-storage delay before each file is read (the notebook uses 100; at
    /// most 86400000, one day).
    #[arg(long, default_value_t = 0, value_name = "MS", value_parser = u64_in(0, MAX_MS))]
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
    /// (at most 1000000).
    #[arg(long, value_parser = usize_in(1, MAX_FILES))]
    pub files: Option<usize>,
    /// First date (YYYY-MM-DD, years 1 to 9999).
    #[arg(long, default_value = "2020-01-01", value_parser = parse_date)]
    pub start: chrono::NaiveDate,
    /// Last date, inclusive (YYYY-MM-DD, years 1 to 9999).
    #[arg(long, default_value = "2023-12-31", conflicts_with = "rows", value_parser = parse_date)]
    pub end: chrono::NaiveDate,
    /// Rows per file (one per calendar day from --start), instead of --end; at most
    /// 3652059, and the last row's date may not pass 9999-12-31.
    #[arg(long, value_parser = usize_in(1, MAX_ROWS))]
    pub rows: Option<usize>,
    /// Seed of the random prices and volumes.
    #[arg(long, default_value_t = workpool::seed::DEFAULT_SEED)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Suites to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub suite: Vec<Suite>,
    /// Worker counts to sweep, each from 1 to 1024 [default: 1,2,4,8; with --quick 1,2,4].
    #[arg(short, long, value_delimiter = ',', value_parser = usize_in(1, MAX_BENCH_WORKERS))]
    pub workers: Vec<usize>,
    /// Measured runs per configuration, at most 1000 [default: 5; with --quick 2].
    #[arg(long, value_parser = usize_in(1, MAX_RUNS))]
    pub runs: Option<usize>,
    /// Unmeasured warm-up runs before them, at most 100 [default: 1].
    #[arg(long, value_parser = usize_in(0, MAX_WARMUP))]
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
    /// Measure the latency suite a second time while N CPU hogs spin (`python3 -c "while
    /// True: pass"`, at most 256): processes, threads and, with --peers python, Python's
    /// executors, all under the same load. The hogs die with the bench, however it ends.
    #[arg(long, value_name = "N", value_parser = usize_in(1, MAX_LOAD))]
    pub load: Option<usize>,
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
    /// Pool ready (spawn + handshake) and shutdown, across the worker sweep; and the start-up
    /// of `run`'s own pool, in a fresh `coordinator run`.
    Startup,
    /// One no-op at a time on a warm pool: median, p95, p99, histogram.
    Latency,
    /// No-op tasks per second across batch sizes and pipeline depths, and `run`'s rate
    /// with each export format written to a file against `-q`.
    Throughput,
    /// 1 KiB..16 MiB payloads: serialization alone against the whole round trip.
    Payload,
    /// Worker process RSS/PSS against what a thread adds.
    Memory,
    /// Speedup over sequential on io, cpu and files, cold and warm.
    Scaling,
    /// The task duration at which the process pool's overhead is 10% and 1%.
    BreakEven,
    /// This machine's floor: bare ipc echo between processes, bare channel echo, and a
    /// 64 KiB copy with its destination 16 bytes past the source within a page against
    /// the same copy page-aligned (some CPUs copy the first many times slower).
    Floor,
    /// Where one no-op's round trip goes, phase by phase, on each backend; then the
    /// same with a 1 MiB payload.
    Breakdown,
    /// The cost of retiring a worker and starting its replacement (worker recycling),
    /// per retirement, next to a task's round trip.
    Recycle,
    /// The redis backend next to processes and threads: start-up, round trip, throughput,
    /// io speedup, and how long a killed worker's tasks take to be reclaimed (--broker).
    Broker,
}

impl Suite {
    /// Floor first, so that every later latency can be compared with it.
    pub const ALL: [Suite; 10] = [
        Suite::Floor,
        Suite::Startup,
        Suite::Latency,
        Suite::Breakdown,
        Suite::Throughput,
        Suite::Payload,
        Suite::Memory,
        Suite::Scaling,
        Suite::BreakEven,
        Suite::Recycle,
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
            Suite::Recycle => "recycle",
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
    /// A sequential task runs in the coordinator's own thread and cannot be stopped: an
    /// interrupt that finds one still running after half a second exits (code 130) with
    /// the outcomes so far but no summary.
    #[arg(long, value_enum, default_value_t = BackendKind::Process)]
    pub backend: BackendKind,
    /// Number of workers, at most 1024 and never more than there are tasks [default:
    /// logical cores]. With --backend redis: how many batches may wait on the broker at
    /// once (its back-pressure) [default: 64].
    #[arg(short, long)]
    pub workers: Option<usize>,
    /// Input order (like `executor.map`) or completion order (like `as_completed`).
    #[arg(long, value_enum, default_value_t = Order::Input)]
    pub order: Order,
    /// Tasks per message to a worker: a number from 1 to 65536, or `auto` (grows for tiny
    /// tasks, stays 1 for long ones).
    #[arg(long, default_value = "auto", value_name = "N|auto", value_parser = parse_chunk)]
    pub chunk: Chunk,
    /// Batches a worker may have queued before it answers, from 1 to 1024 [default: chosen
    /// by the pool].
    #[arg(long, value_name = "N", value_parser = usize_in(1, MAX_INFLIGHT))]
    pub inflight: Option<usize>,
    /// Further attempts for a task that failed transiently (network, timeout, worker
    /// crash); at most 1000.
    #[arg(long, default_value_t = 0, value_parser = RangedU64ValueParser::<u32>::new().range(0..=MAX_RETRIES))]
    pub retries: u32,
    /// Stop a task that runs longer than this (e.g. 500ms, 2s; at most 24h): a worker
    /// process is killed and replaced; a thread cannot be killed, so it is abandoned and
    /// replaced (a broker's worker enforces it on its own threads, the same way). Not with
    /// `--backend sequential`, whose tasks run in the coordinator's own thread: use
    /// `--backend thread -w 1` for one task at a time with a timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Stop after N tasks have succeeded (N from 1 to 1000000000000); the rest are
    /// reported `cancelled`.
    #[arg(long, value_name = "N", value_parser = u64_in(1, MAX_COUNT))]
    pub first: Option<u64>,
    /// Stop at the first failed task; the rest are reported `cancelled`.
    #[arg(long)]
    pub fail_fast: bool,
    /// Base delay before a retry, doubled each attempt, with jitter; no retry waits more
    /// than 30000 ms, which is also this flag's maximum.
    #[arg(long, default_value_t = 100, value_name = "MS", value_parser = u64_in(0, MAX_BACKOFF_MS))]
    pub backoff_ms: u64,
    /// Seed of every random quantity; the same seed gives the same data on any backend.
    #[arg(long, default_value_t = workpool::seed::DEFAULT_SEED)]
    pub seed: u64,
    /// Output format.
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
    /// Retire a worker process once it has run N tasks (retries included; 1 to
    /// 1000000000000) and start a fresh one in its slot. Batches are sized to fit what a
    /// worker has left; what it holds runs there before it exits, so nothing is lost,
    /// retried or run twice. Process backend only (a thread cannot be retired alone; with
    /// --backend redis, give `worker --broker --isolate process` the limit).
    #[arg(long, value_name = "N", value_parser = u64_in(1, MAX_COUNT))]
    pub max_tasks_per_worker: Option<u64>,
    /// Retire a worker process whose resident memory is above SIZE (e.g. 256MiB, 2G;
    /// 1MiB to 1TiB) after a batch, and start a fresh one in its slot. Read from /proc
    /// between batches, so a worker may pass SIZE by what the batches already queued to it
    /// add. Process backend only (a thread's memory is the coordinator's).
    #[arg(long, value_name = "SIZE", value_parser = parse_rss)]
    pub max_worker_rss: Option<u64>,
    /// The worker executable [default: $WORKPOOL_WORKER, else `worker` next to this binary].
    #[arg(long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,
    /// The Redis broker of `--backend redis`: redis://[:PASSWORD@]HOST[:PORT][/DB], or
    /// rediss://... for TLS (checked against the system's CAs, or the PEM file in
    /// $WORKPOOL_BROKER_CA). Prefer $WORKPOOL_BROKER for a URL with a password (it stays
    /// out of `ps`); the password is never printed. Given on the command line, --broker
    /// implies --backend redis (and contradicts any other --backend); from
    /// $WORKPOOL_BROKER it is used only when --backend redis is asked for.
    #[arg(
        long,
        help_heading = "Redis backend",
        value_name = "URL",
        env = "WORKPOOL_BROKER",
        hide_env_values = true
    )]
    pub broker: Option<String>,
}

impl RunOptions {
    /// See [`Cli::try_parse_from_args`].
    fn settle_backend(&mut self, flags: &clap::ArgMatches) -> Result<(), clap::Error> {
        use clap::parser::ValueSource;
        if flags.value_source("broker") != Some(ValueSource::CommandLine) {
            return Ok(());
        }
        match flags.value_source("backend") {
            Some(ValueSource::CommandLine) if self.backend != BackendKind::Redis => {
                let message = format!(
                    "--broker is for --backend redis, not --backend {}: leave out --broker, \
                     or --backend (--broker alone implies redis)",
                    self.backend.as_str()
                );
                let mut cmd = <Cli as clap::CommandFactory>::command();
                Err(cmd.error(clap::error::ErrorKind::ArgumentConflict, message))
            }
            _ => {
                self.backend = BackendKind::Redis;
                Ok(())
            }
        }
    }
}

/// `500ms`, `2s`, `1m 30s`: a positive duration of at most [`MAX_TIMEOUT`].
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("the duration must be more than zero".into()),
        Ok(d) if d > MAX_TIMEOUT => Err("the longest timeout is 24h".into()),
        Ok(d) => Ok(d),
        Err(err) => Err(format!("{err} (write e.g. 500ms, 2s, 1m; at most 24h)")),
    }
}

/// `auto`, or a number of tasks from 1 to [`MAX_CHUNK`].
fn parse_chunk(text: &str) -> Result<Chunk, String> {
    if text == "auto" {
        return Ok(Chunk::Auto);
    }
    match text.parse::<usize>() {
        Ok(n @ 1..=MAX_CHUNK) => Ok(Chunk::Fixed(n)),
        _ => Err(format!("write `auto` or a number from 1 to {MAX_CHUNK}")),
    }
}

/// A memory size from [`MIN_WORKER_RSS`] to [`MAX_WORKER_RSS`].
fn parse_rss(text: &str) -> Result<u64, String> {
    match workpool::size::parse_size(text, MAX_WORKER_RSS)? {
        bytes if bytes < MIN_WORKER_RSS => Err("the smallest limit is 1MiB".into()),
        bytes => Ok(bytes),
    }
}

/// `LO..HI` (uniform) or a single number of milliseconds (fixed), each at most [`MAX_MS`].
fn parse_latency(text: &str) -> Result<(u64, u64), String> {
    let parse = |s: &str| match s.trim().parse::<u64>() {
        Ok(ms) if ms <= MAX_MS => Ok(ms),
        _ => Err(format!(
            "`{s}` is not a number of milliseconds from 0 to {MAX_MS}"
        )),
    };
    let (lo, hi) = match text.split_once("..") {
        Some((lo, hi)) => (parse(lo)?, parse(hi)?),
        None => {
            let ms = parse(text)?;
            (ms, ms)
        }
    };
    if lo > hi {
        return Err("the low end is above the high end".into());
    }
    Ok((lo, hi))
}

/// `YYYY-MM-DD` with a four-digit year: the dates `gen-data` can write.
fn parse_date(text: &str) -> Result<chrono::NaiveDate, String> {
    use workpool::datagen::{FIRST_DATE, LAST_DATE};
    match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) if (FIRST_DATE..=LAST_DATE).contains(&date) => Ok(date),
        Ok(_) => Err(format!("dates go from {FIRST_DATE} to {LAST_DATE}")),
        Err(err) => Err(format!(
            "{err}: write YYYY-MM-DD, from {FIRST_DATE} to {LAST_DATE}"
        )),
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

    /// Every numeric flag: the words before it, the flag, and its largest value.
    const LIMITS: &[(&[&str], &str, u64)] = &[
        (&["run", "noop"], "--count", MAX_COUNT),
        (
            &["run", "noop"],
            "--payload",
            workpool::codec::MAX_PAYLOAD_BYTES as u64,
        ),
        (&["run", "io"], "--ms", MAX_MS),
        (&["run", "cpu"], "--iters", MAX_ITERS),
        (&["run", "fetch"], "--latency-ms", MAX_MS),
        (&["run", "fetch"], "--slow-ms", MAX_MS),
        (&["run", "fetch"], "--count", MAX_COUNT),
        (&["run", "files", "x.csv"], "--io-delay-ms", MAX_MS),
        (&["run", "noop"], "--chunk", MAX_CHUNK as u64),
        (&["run", "noop"], "--inflight", MAX_INFLIGHT),
        (&["run", "noop"], "--retries", MAX_RETRIES),
        (&["run", "noop"], "--first", MAX_COUNT),
        (&["run", "noop"], "--max-tasks-per-worker", MAX_COUNT),
        (&["run", "noop"], "--backoff-ms", MAX_BACKOFF_MS),
        (&["run", "noop"], "--seed", u64::MAX),
        (&["gen-data", "--dir", "d"], "--files", MAX_FILES),
        (&["gen-data", "--dir", "d"], "--rows", MAX_ROWS),
        (&["gen-data", "--dir", "d"], "--seed", u64::MAX),
        (&["bench"], "--runs", MAX_RUNS),
        (&["bench"], "--warmup", MAX_WARMUP),
        (&["bench"], "--workers", MAX_BENCH_WORKERS),
        (&["bench"], "--load", MAX_LOAD),
    ];

    fn parse(words: &[&str], flag: &str, value: &str) -> Result<Cli, clap::Error> {
        let value = format!("{flag}={value}");
        let args = ["coordinator"]
            .iter()
            .chain(words)
            .copied()
            .chain([value.as_str()]);
        Cli::try_parse_from_args(args)
    }

    #[test]
    fn every_numeric_flag_takes_its_maximum_refuses_more_and_says_so_in_help() {
        for &(words, flag, max) in LIMITS {
            if let Err(err) = parse(words, flag, &max.to_string()) {
                panic!("{flag}={max} refused: {err}");
            }
            if max < u64::MAX {
                let err = parse(words, flag, &(max + 1).to_string())
                    .err()
                    .unwrap_or_else(|| panic!("{flag}={} accepted", max + 1));
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ValueValidation,
                    "{flag}"
                );
                assert!(err.to_string().contains(flag), "{err}");
                // The help of the flag states the maximum.
                let mut cmd = Cli::command();
                let mut sub = &mut cmd;
                for word in words
                    .iter()
                    .take_while(|w| !w.starts_with('-') && !w.contains('.'))
                {
                    sub = sub.find_subcommand_mut(word).expect("a subcommand");
                }
                let name = flag.trim_start_matches("--");
                let arg = sub
                    .get_arguments()
                    .find(|a| a.get_long() == Some(name))
                    .unwrap_or_else(|| panic!("{flag} exists"));
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.contains(&max.to_string()), "{flag} help: {help}");
            }
        }
    }

    #[test]
    fn timeouts_dates_and_latencies_have_bounds() {
        assert!(parse_duration("24h").is_ok());
        for bad in ["24h 1ms", "300000000000y", "18446744073709551615s", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_latency("100..500"), Ok((100, 500)));
        assert_eq!(parse_latency("250"), Ok((250, 250)));
        assert_eq!(parse_latency("86400000"), Ok((MAX_MS, MAX_MS)));
        for bad in [
            "500..100",
            "fast",
            "1..",
            "0..86400001",
            "18446744073709551616",
        ] {
            assert!(parse_latency(bad).is_err(), "{bad}");
        }
        assert!(parse_date("9999-12-31").is_ok() && parse_date("0001-01-01").is_ok());
        for bad in ["+10000-01-01", "10000-01-01", "0000-12-31", "-0001-01-01"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_chunk("auto"), Ok(Chunk::Auto));
        assert_eq!(parse_chunk("65536"), Ok(Chunk::Fixed(MAX_CHUNK)));
        for bad in ["0", "65537", "18446744073709551615", "-1", "x"] {
            assert!(parse_chunk(bad).is_err(), "{bad}");
        }
    }

    /// The rendered `--help` of `coordinator WORDS`.
    fn help(words: &[&str]) -> String {
        let args = ["coordinator"].iter().chain(words).chain(&["--help"]);
        match Cli::try_parse_from_args(args) {
            Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelp => err.to_string(),
            other => panic!("expected help, got {other:?}"),
        }
    }

    #[test]
    fn help_says_each_thing_once_and_in_order() {
        let files = help(&["run", "files"]);
        assert_eq!(files.matches("[default: table]").count(), 1, "{files}");
        // --broker comes under its own heading, after the options every backend shares.
        let pool = files.find("Pool and output:").expect("the common heading");
        let redis = files.find("Redis backend:").expect("the redis heading");
        let broker = files.find("--broker <URL>").expect("--broker");
        assert!(pool < redis && redis < broker, "{files}");
        assert!(help(&[]).contains("coordinator demo --quick"));
        assert!(help(&["run", "noop"]).contains("Exit codes:"));
    }

    #[test]
    fn broker_on_the_command_line_implies_redis_and_contradicts_other_backends() {
        let backend = |args: &[&str]| {
            let all = ["coordinator", "run", "noop"].iter().chain(args).copied();
            Cli::try_parse_from_args(all).map(|cli| match cli.command {
                Command::Run(workload) => workload.options().backend,
                _ => unreachable!("a run"),
            })
        };
        assert_eq!(
            backend(&["--broker", "redis://h"]).ok(),
            Some(BackendKind::Redis)
        );
        assert_eq!(
            backend(&["--broker", "redis://h", "--backend", "redis"]).ok(),
            Some(BackendKind::Redis)
        );
        assert!(backend(&["--broker", "redis://h", "--backend", "thread"]).is_err());
        assert_eq!(backend(&[]).ok(), Some(BackendKind::Process));
    }
}
