//! The `worker` process: joins its coordinator over ipc-channel, then runs the batches of
//! tasks it receives and sends their outcomes back, until told to stop or orphaned.

use std::process::ExitCode;
use std::thread;

use anyhow::{bail, Context as _};
use clap::Parser;
use ipc_channel::ipc::{self, IpcSender};
use workpool::clock::monotonic_ns;
use workpool::codec::{self, Frame};
use workpool::outcome::Arrival;
use workpool::protocol::{Bootstrap, Hello, ToCoordinator, ToWorker, PROTOCOL_VERSION};
use workpool::workload;

mod broker;

/// How long the runner spins for its next batch before sleeping (see `recv_spinning`).
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// A workpool worker process. The coordinator starts it with --connect for its local
/// process pool; start it by hand with --broker to serve runs of `--backend redis` from
/// any host.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Name of the coordinator's one-shot ipc server to connect to.
    #[arg(long, required_unless_present = "broker", conflicts_with = "broker")]
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
    let args = Args::parse();
    // A task's panic becomes a `panicked` outcome carrying its message; printing it here
    // as well would scribble over the coordinator's terminal.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(url) = &args.broker {
        // Started by hand, a broker worker outlives its shell; started by a program that
        // says so, it dies with that program.
        if args.parent.is_some() {
            die_with_parent(args.parent);
        }
        return serve_broker(&args, url);
    }
    die_with_parent(args.parent);
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            workpool::diag!("worker {}: {err:#}", args.id);
            ExitCode::FAILURE
        }
    }
}

/// Asks the kernel to kill this process when its parent dies, so that even a SIGKILLed
/// coordinator leaves no worker behind.
fn die_with_parent(parent: Option<u32>) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no memory.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // The parent may have died before the prctl call took effect.
        if let Some(parent) = parent {
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(1);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

/// The version this worker announces. `WORKPOOL_TEST_PROTOCOL` makes it claim another
/// one, so tests can check that the coordinator refuses a worker from another build.
fn protocol_version() -> u32 {
    std::env::var("WORKPOOL_TEST_PROTOCOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PROTOCOL_VERSION)
}

/// Test hook: `WORKPOOL_TEST_FRAME` = `garbage`, `truncated` or `oversized` makes this
/// worker send a bad frame in place of its outcomes, so tests can check that the
/// coordinator treats such a worker as crashed and never trusts what it sent.
fn corrupt_for_tests(frame: Frame, corruption: &str) -> Frame {
    let mut bytes = frame.into_vec();
    match corruption {
        "garbage" => bytes = vec![0xEE; 64],
        "truncated" => bytes.truncate(bytes.len() / 2),
        // Outcomes, one outcome, index 0, attempt 1, Ok, Value::Noop, then a payload
        // length of u64::MAX: decoding must refuse it without allocating.
        "oversized" => {
            bytes = vec![0, 1, 0, 1, 0, 0, 0xFD];
            bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        }
        _ => {}
    }
    Frame::from(bytes)
}

/// `--broker`: exit code 2 when the broker cannot be reached or refuses us at start (a
/// set-up error, as the coordinator's), 1 when serving fails later.
fn serve_broker(args: &Args, url: &str) -> ExitCode {
    let isolation = match args.isolate {
        Isolate::Thread => broker::Isolation::Thread,
        // The children are this very executable, started with --connect.
        Isolate::Process => match std::env::current_exe() {
            Ok(path) => broker::Isolation::Process(workpool::pool::WorkerBinary {
                path,
                source: "this worker",
            }),
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
        name: args.name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_or_else(|_| "host".to_string(), |h| h.trim().to_string());
            format!("{host}-{}", std::process::id())
        }),
    });
    let result = match settings {
        Ok(settings) => broker::serve(settings),
        Err(err) => Err(broker::ServeError::Start(err)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err @ broker::ServeError::Start(_)) => {
            workpool::diag!("worker: error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            workpool::diag!("worker: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &Args) -> anyhow::Result<()> {
    let connect = args.connect.clone().unwrap_or_default();
    let bootstrap = IpcSender::<Bootstrap>::connect(connect.clone())
        .with_context(|| format!("cannot connect to coordinator at {connect}"))?;
    let (to_worker, tasks) = ipc::channel::<Frame>().context("cannot create task channel")?;
    let (outcomes, from_worker) =
        ipc::channel::<Frame>().context("cannot create outcome channel")?;
    let hello = codec::encode(&Hello {
        protocol: protocol_version(),
        worker_id: args.id,
        pid: std::process::id(),
    })?;
    bootstrap
        .send(Bootstrap {
            hello,
            to_worker,
            from_worker,
        })
        .context("handshake with coordinator failed")?;
    drop(bootstrap);
    if args.echo {
        while let Ok(frame) = tasks.recv() {
            outcomes.send(frame).context("cannot echo")?;
        }
        return Ok(());
    }

    // Frames are read on their own thread so the coordinator's sends never wait for a
    // running batch to finish; the queue holds at most the few batches it has in flight.
    let (queue, inbox) = crossbeam_channel::unbounded::<(ToWorker, Arrival)>();
    let reader = thread::Builder::new()
        .name("worker-reader".into())
        .spawn(move || -> anyhow::Result<()> {
            // A receive error means the coordinator hung up: stop quietly.
            while let Ok(frame) = tasks.recv() {
                let received_ns = monotonic_ns();
                let message = codec::decode::<ToWorker>(&frame)
                    .context("coordinator sent a corrupt frame")?;
                let arrival = Arrival {
                    received_ns,
                    decoded_ns: monotonic_ns(),
                };
                if queue.send((message, arrival)).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .context("cannot start reader thread")?;

    let corruption = std::env::var("WORKPOOL_TEST_FRAME").unwrap_or_default();
    let mut ctx = workpool::Context::default();
    let mut send_error = None;
    while let Ok((message, arrival)) =
        workpool::recv_spinning(&inbox, SPIN, std::time::Duration::from_secs(86_400 * 365))
    {
        match message {
            ToWorker::Setup(setup) => ctx = setup,
            ToWorker::Tasks(batch) => {
                workload::run_batch(&ctx, &batch, arrival, |done| {
                    if send_error.is_none() {
                        let sent = codec::encode(&ToCoordinator::Outcomes(done))
                            .map(|frame| corrupt_for_tests(frame, &corruption))
                            .map_err(anyhow::Error::from)
                            .and_then(|frame| outcomes.send(frame).map_err(Into::into));
                        send_error = sent.err();
                    }
                    send_error.is_none()
                });
                if let Some(err) = send_error.take() {
                    // The coordinator is gone or the frame could not be built.
                    return Err(err.context("cannot send outcomes"));
                }
            }
            ToWorker::Shutdown => return Ok(()),
        }
    }
    match reader.join() {
        Ok(result) => result,
        Err(_) => bail!("reader thread panicked"),
    }
}
