//! The `worker` process: joins its coordinator over ipc-channel, then runs the batches of
//! tasks it receives and sends their outcomes back, until told to stop or orphaned.

use std::process::ExitCode;
use std::thread;

use anyhow::{bail, Context as _};
use clap::Parser;
use ipc_channel::ipc::{self, IpcSender};
use shared::clock::monotonic_ns;
use shared::codec::{self, Frame};
use shared::outcome::Arrival;
use shared::protocol::{Bootstrap, Hello, ToCoordinator, ToWorker, PROTOCOL_VERSION};
use shared::workload;

/// How long the runner spins for its next batch before sleeping (see `recv_spinning`).
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// A workpool worker process. It is started by `coordinator`, not by hand.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Name of the coordinator's one-shot ipc server to connect to.
    #[arg(long)]
    connect: String,
    /// This worker's id within its pool.
    #[arg(long)]
    id: u32,
    /// The coordinator's pid: if the worker's parent is not it, the coordinator is gone.
    #[arg(long)]
    parent: Option<u32>,
    /// Echo every frame back unchanged instead of running tasks: `bench` measures the
    /// bare ipc-channel round trip (the floor under any pool) with it.
    #[arg(long, hide = true)]
    echo: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    die_with_parent(args.parent);
    // A task's panic becomes a `panicked` outcome carrying its message; printing it here
    // as well would scribble over the coordinator's terminal.
    std::panic::set_hook(Box::new(|_| {}));
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("worker {}: {err:#}", args.id);
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

fn serve(args: &Args) -> anyhow::Result<()> {
    let bootstrap = IpcSender::<Bootstrap>::connect(args.connect.clone())
        .with_context(|| format!("cannot connect to coordinator at {}", args.connect))?;
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
    let mut ctx = shared::Context::default();
    let mut send_error = None;
    while let Ok((message, arrival)) =
        shared::recv_spinning(&inbox, SPIN, std::time::Duration::from_secs(86_400 * 365))
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
