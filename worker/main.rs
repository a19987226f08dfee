//! The `worker` binary: serves the built-in workloads, to a coordinator's process pool
//! (which starts it with its connection in the environment, or `--connect` by hand) or to a
//! Redis broker (`--broker`). All the serving is the library's; this is flags and exit codes.

// The doc comments of `Args` are the --help text, which writes optional parts of a URL in
// square brackets: they are not links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::process::ExitCode;
use std::thread;

use clap::Parser;
use workpool::worker::broker::{self, Isolation};
use workpool::worker::{die_with_parent, quiet_panics, Connection};
use workpool::Worker;

/// A workpool worker process. The coordinator starts it with --connect for its local
/// process pool; start it by hand with --broker to serve runs of `--backend redis` from
/// any host.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Name of the coordinator's one-shot ipc server to connect to (a coordinator passes
    /// it in the environment of the workers it starts; this is for starting one by hand).
    #[arg(long, conflicts_with = "broker")]
    connect: Option<String>,
    /// This worker's id within its pool.
    #[arg(long, default_value_t = 0)]
    id: u32,
    /// The pid of the process that started this worker: the worker dies with it (with
    /// --broker too, e.g. the workers `coordinator bench` starts), and exits at once if its
    /// parent is not that process (it is gone already).
    #[arg(long)]
    parent: Option<u32>,
    /// Echo every frame back unchanged instead of running tasks: `bench` measures the
    /// bare ipc-channel round trip (the floor under any pool) with it.
    #[arg(long, hide = true)]
    echo: bool,
    /// Serve runs through the Redis broker at URL (redis://[:PASSWORD@]HOST[:PORT][/DB], or
    /// rediss://... for TLS, checked against the system's CAs or the PEM file in
    /// $WORKPOOL_BROKER_CA): take batches from the shared tasks stream, run them, publish
    /// their outcomes. Prefer $WORKPOOL_BROKER for a URL with a password, and percent-encode
    /// its `/`, `?`, `#`, `@` and `%`.
    ///
    /// Nothing in the broker stops the worker: an entry of the tasks stream it cannot read
    /// or run (not written by workpool, written by another build, or of a run whose
    /// settings key is unreadable) is logged without its bytes, counted, acknowledged and
    /// moved to the stream workpool:dead (its id, the reason, the worker, its size and first
    /// 256 bytes; the last 1000 such entries are kept, for a week after the last one), and
    /// its run's coordinator, if the run can be told, fails the run with the reason.
    #[arg(
        long,
        value_name = "URL",
        env = "WORKPOOL_BROKER",
        hide_env_values = true
    )]
    broker: Option<String>,
    /// With --broker: batches run at once, each on its own thread, 1 to 1024 [default:
    /// logical CPUs, at most 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_CONCURRENCY))]
    concurrency: Option<u16>,
    /// With --broker: how long a batch may go without its holder renewing it before
    /// another worker takes it over (the holder renews every third of it), 100ms to 1h.
    /// Use the same value on every worker.
    #[arg(long, default_value = "10s", value_parser = parse_lease)]
    lease: std::time::Duration,
    /// With --broker: a batch delivered more often than this (each holder died before
    /// finishing it) is given up, its tasks reported `worker_crashed`; 1 to 1000.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_DELIVERIES))]
    max_deliveries: u64,
    /// With --broker: this worker's consumer name, not empty [default: HOST-PID].
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    name: Option<String>,
    /// With --broker: run tasks on this process's threads, or in child worker processes
    /// (one per thread), where a crashing or overrunning task kills only its child.
    #[arg(long, value_enum, default_value_t = Isolate::Thread)]
    isolate: Isolate,
    /// With --broker --isolate process: retire a child worker once it has run N tasks
    /// (retries included) and start a fresh one in its place; 1 to 1000000000000. What it
    /// holds runs there first: nothing is lost or run twice.
    #[arg(long, value_name = "N", requires = "broker",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TASKS_PER_WORKER))]
    max_tasks_per_worker: Option<u64>,
    /// With --broker --isolate process: retire a child worker whose resident memory is
    /// above SIZE (e.g. 256MiB, 2G; 1MiB to 1TiB) after a batch, and start a fresh one.
    #[arg(long, value_name = "SIZE", requires = "broker", value_parser = parse_rss)]
    max_worker_rss: Option<u64>,
}

/// The most tasks `--max-tasks-per-worker` takes.
const MAX_TASKS_PER_WORKER: u64 = 1_000_000_000_000;

fn parse_rss(text: &str) -> Result<u64, String> {
    match workpool::size::parse_size(text, 1 << 40)? {
        bytes if bytes < 1 << 20 => Err("the smallest limit is 1MiB".into()),
        bytes => Ok(bytes),
    }
}

/// The most batches one broker worker runs at once.
const MAX_CONCURRENCY: i64 = 1024;
/// The most deliveries `--max-deliveries` allows.
const MAX_DELIVERIES: u64 = 1000;
/// `--lease` bounds: shorter, live workers would take each other's batches; longer, a dead
/// worker's batches would wait more than an hour.
const MIN_LEASE: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_LEASE: std::time::Duration = std::time::Duration::from_secs(3600);

fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
        return Err(format!("the lease must be from 100ms to 1h, not {text}"));
    }
    Ok(lease)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Isolate {
    Thread,
    Process,
}

fn main() -> ExitCode {
    let worker = workpool::workload::register(Worker::new());
    // Started by a coordinator's process backend: serves it and exits here.
    worker.serve_if_worker();
    let args = Args::parse();
    quiet_panics();
    if let Some(url) = &args.broker {
        // Started by hand, a broker worker outlives its shell; started by a program that
        // says so, it dies with that program.
        if args.parent.is_some() {
            die_with_parent(args.parent);
        }
        return serve_broker(&worker, &args, url);
    }
    let Some(server) = args.connect.clone() else {
        // Started by a person: what they want is almost always a broker worker.
        workpool::diag!(
            "worker: nothing to serve. Start it with --broker URL (or $WORKPOOL_BROKER) to \
             serve runs of `coordinator run --backend redis` from this host; a coordinator \
             starts its own local workers. See `worker --help`."
        );
        return ExitCode::from(2);
    };
    die_with_parent(args.parent);
    let connection = Connection {
        server,
        id: args.id,
        echo: args.echo,
    };
    match worker.serve(&connection) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            workpool::diag!("worker {}: {err}", args.id);
            ExitCode::FAILURE
        }
    }
}

/// `--broker`: exit code 2 when the broker cannot be reached or refuses us at start (a
/// set-up error, as the coordinator's), 1 when serving fails later.
fn serve_broker(worker: &Worker, args: &Args, url: &str) -> ExitCode {
    let recycle = workpool::pool::Recycle {
        max_tasks: args.max_tasks_per_worker,
        max_rss_bytes: args.max_worker_rss,
    };
    let isolation = match args.isolate {
        Isolate::Thread if recycle.is_on() => {
            workpool::diag!(
                "worker: error: --max-tasks-per-worker and --max-worker-rss need --isolate \
                 process: with threads, the tasks' memory is this worker's own, and a thread \
                 cannot be retired alone"
            );
            return ExitCode::from(2);
        }
        Isolate::Thread => Isolation::Thread,
        // The children are this very executable, started with --connect.
        Isolate::Process => match std::env::current_exe() {
            Ok(path) => Isolation::Process(
                workpool::pool::WorkerBinary {
                    path,
                    source: "this worker",
                },
                recycle,
            ),
            Err(err) => {
                workpool::diag!("worker: error: cannot find this executable's path: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let settings = workpool::broker::BrokerUrl::parse(url).map(|url| broker::Settings {
        isolation,
        url,
        concurrency: args
            .concurrency
            .map_or_else(
                || thread::available_parallelism().map_or(1, |n| n.get()),
                usize::from,
            )
            .min(MAX_CONCURRENCY as usize),
        lease: args.lease,
        max_deliveries: args.max_deliveries,
        name: args.name.clone().unwrap_or_else(broker::default_name),
    });
    let result = match settings {
        Ok(settings) => worker.serve_broker(settings),
        Err(err) => Err(broker::ServeError::Start(err)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            workpool::diag!("worker: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
