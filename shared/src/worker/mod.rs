//! The worker side: a program registers the task types it serves, then, when its
//! coordinator started it as a worker, serves batches of them until told to stop.
//!
//! "Your binary is your worker": call [`Worker::serve_if_worker`] first thing in `main`.
//! Started by a pool's process backend, the program serves and exits there; started any
//! other way, the call returns at once and the program goes on.

use std::thread;
use std::time::Duration;

use ipc_channel::ipc::{self, IpcReceiver, IpcSender, IpcSharedMemory};

use crate::clock::monotonic_ns;
use crate::codec::{self, CodecError, Envelope, Frame, Inbox, Outbox, RegionFrame};
use crate::outcome::Arrival;
use crate::protocol::{Bootstrap, Hello, Setup, ToCoordinator, ToWorker, PROTOCOL_VERSION};
use crate::task::Signature;
use crate::{execute, Task};

#[cfg(feature = "redis")]
pub mod broker;
pub mod zygote;

/// The environment a process backend gives each worker it starts. Nothing else steers a
/// worker: the pool removes every other `WORKPOOL_*` variable from a worker's environment.
pub mod env {
    /// The name of the coordinator's one-shot ipc server: its presence makes a program
    /// a worker.
    pub const CONNECT: &str = "WORKPOOL_CONNECT";
    /// The worker's slot in its pool.
    pub const ID: &str = "WORKPOOL_WORKER_ID";
    /// The coordinator's pid: the worker dies with it.
    pub const PARENT: &str = "WORKPOOL_PARENT";
    /// Echo frames instead of running tasks (the bare round trip `bench` measures).
    pub const ECHO: &str = "WORKPOOL_ECHO";
    /// `off`: never spin for the next message (see [`crate::recv_spinning`]), in the
    /// coordinator and its worker processes, to measure what spinning buys on a machine.
    pub const SPIN: &str = "WORKPOOL_SPIN";
    /// Test hook: the protocol version the worker claims.
    pub const TEST_PROTOCOL: &str = "WORKPOOL_TEST_PROTOCOL";
    /// Test hook: `garbage`, `truncated`, `oversized`, `region-id` or `region-length`
    /// replaces outcome frames.
    pub const TEST_FRAME: &str = "WORKPOOL_TEST_FRAME";
    /// The coordinator's one-shot ipc server, for a program started as the pool's zygote
    /// (see [`super::zygote`]), which forks the pool's workers.
    pub const ZYGOTE: &str = "WORKPOOL_ZYGOTE";
    /// How many workers (slots 0 to N-1) a zygote forks as soon as it starts.
    pub const ZYGOTE_WORKERS: &str = "WORKPOOL_ZYGOTE_WORKERS";
    /// Test hook: the Nth worker a zygote forks (from 1) dies before its handshake, as
    /// if SIGKILLed at start-up.
    pub const TEST_FORK_DIES: &str = "WORKPOOL_TEST_FORK_DIES";
    /// `worker`, with [`BROKER`] set: the program serves a Redis broker instead of
    /// returning from [`Worker::serve_if_worker`](super::Worker::serve_if_worker).
    pub const ROLE: &str = "WORKPOOL_ROLE";
    /// The broker URL (`redis://[:PASSWORD@]HOST[:PORT][/DB]` or `rediss://...`).
    pub const BROKER: &str = "WORKPOOL_BROKER";
}

/// How long the runner spins for its next batch before sleeping (see
/// [`crate::recv_spinning`]).
const SPIN: Duration = Duration::from_micros(50);

/// The task types a program serves as a worker.
#[derive(Default)]
pub struct Worker {
    entries: Vec<Entry>,
}

/// Serves one run of a task type: its setup frame, then batches from the coordinator.
type ServeFn = fn(&[u8], IpcReceiver<Envelope>, IpcSender<Envelope>) -> Result<(), WorkerError>;

/// One served task type: its signature, and its serving loop, monomorphised.
struct Entry {
    signature: Signature,
    serve: ServeFn,
    #[cfg(feature = "redis")]
    broker: broker::RunnerFactory,
}

/// How a worker process joins its coordinator.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The coordinator's one-shot server.
    pub server: String,
    /// The worker's slot.
    pub id: u32,
    /// Echo frames back instead of running tasks.
    pub echo: bool,
}

/// Why a worker stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator could not be reached.
    #[error("cannot connect to coordinator at {server}: {reason}")]
    Connect {
        /// Its server's name.
        server: String,
        /// Why.
        reason: String,
    },
    /// An ipc channel failed.
    #[error("{what}: {reason}")]
    Channel {
        /// What was being done.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The coordinator sent something this worker cannot read.
    #[error("coordinator sent a corrupt frame: {0}")]
    Corrupt(#[from] CodecError),
    /// The coordinator asked for a task type this program does not serve.
    #[error("this worker serves the task types [{served}], not `{wanted}`")]
    UnknownTask {
        /// The task type asked for.
        wanted: String,
        /// The ones registered.
        served: String,
    },
}

fn channel_error(what: &'static str) -> impl FnOnce(std::io::Error) -> WorkerError {
    move |err| WorkerError::Channel {
        what,
        reason: err.to_string(),
    }
}

impl Worker {
    /// A worker serving no task type yet.
    pub fn new() -> Worker {
        Worker::default()
    }

    /// Serves task type `T` too. Registering two types of one name is a bug: the later
    /// one is ignored.
    pub fn task<T: Task>(mut self) -> Worker {
        if self.entries.iter().all(|e| e.signature.name != T::NAME) {
            self.entries.push(Entry {
                signature: Signature::of::<T>(),
                serve: serve_typed::<T>,
                #[cfg(feature = "redis")]
                broker: broker::runner_for::<T>,
            });
        }
        self
    }

    /// The signatures of the task types served.
    pub fn signatures(&self) -> Vec<Signature> {
        self.entries.iter().map(|e| e.signature.clone()).collect()
    }

    /// If this process was started as a worker by a pool's process backend, serves its
    /// coordinator and exits (0 when told to stop, 1 on error); otherwise returns at once.
    /// Call it first thing in `main`, before anything that a worker should not do, and
    /// before any thread is started: the pool starts the program once as a zygote that
    /// forks its workers from here (see [`zygote`]), and a fork takes only the calling
    /// thread along.
    pub fn serve_if_worker(&self) {
        #[cfg(feature = "redis")]
        self.serve_broker_if_asked();
        let parent = || std::env::var(env::PARENT).ok().and_then(|v| v.parse().ok());
        if let Some(server) = std::env::var_os(env::ZYGOTE) {
            zygote::serve(self, server.to_string_lossy().into_owned(), parent());
        }
        let Some(server) = std::env::var_os(env::CONNECT) else {
            return;
        };
        let id = std::env::var(env::ID)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let connection = Connection {
            server: server.to_string_lossy().into_owned(),
            id,
            echo: std::env::var_os(env::ECHO).is_some(),
        };
        quiet_panics();
        die_with_parent(parent());
        match self.serve(&connection) {
            Ok(()) => std::process::exit(0),
            Err(err) => {
                crate::diag!("worker {id}: {err}");
                std::process::exit(1)
            }
        }
    }

    /// With `WORKPOOL_ROLE=worker` and `WORKPOOL_BROKER=URL`, serves that broker with the
    /// default [`broker::Settings`] and exits: 0 once interrupted, 2 if the broker cannot
    /// be reached at start, 1 if serving fails later.
    #[cfg(feature = "redis")]
    fn serve_broker_if_asked(&self) {
        if std::env::var_os(env::ROLE).is_none_or(|role| role != "worker") {
            return;
        }
        let Some(url) = std::env::var_os(env::BROKER) else {
            crate::diag!(
                "worker: error: {} is set, but {} is not",
                env::ROLE,
                env::BROKER
            );
            std::process::exit(2);
        };
        quiet_panics();
        // Started by a program that says so, a broker worker dies with that program.
        if let Some(parent) = std::env::var(env::PARENT).ok().and_then(|v| v.parse().ok()) {
            die_with_parent(Some(parent));
        }
        let code = match crate::broker::BrokerUrl::parse(&url.to_string_lossy()) {
            Err(err) => {
                crate::diag!("worker: error: {err}");
                2
            }
            Ok(url) => match self.serve_broker(broker::Settings::new(url)) {
                Ok(()) => 0,
                Err(err) => {
                    crate::diag!("worker: error: {err}");
                    err.exit_code().into()
                }
            },
        };
        std::process::exit(code);
    }

    /// Serves runs of the registered task types from a Redis broker until interrupted.
    #[cfg(feature = "redis")]
    pub fn serve_broker(&self, settings: broker::Settings) -> Result<(), broker::ServeError> {
        broker::serve(self, settings)
    }

    /// Joins the coordinator at `connection` and serves it until it says stop or hangs up.
    pub fn serve(&self, connection: &Connection) -> Result<(), WorkerError> {
        let bootstrap =
            IpcSender::<Bootstrap>::connect(connection.server.clone()).map_err(|err| {
                WorkerError::Connect {
                    server: connection.server.clone(),
                    reason: err.to_string(),
                }
            })?;
        self.serve_over(bootstrap, connection.id, connection.echo)
    }

    /// Serves the coordinator that listens on `bootstrap` (a one-shot server's, or the
    /// one a zygote was handed for this worker).
    fn serve_over(
        &self,
        bootstrap: IpcSender<Bootstrap>,
        id: u32,
        echo: bool,
    ) -> Result<(), WorkerError> {
        let (to_worker, tasks) =
            ipc::channel::<Envelope>().map_err(channel_error("cannot create task channel"))?;
        let (outcomes, from_worker) =
            ipc::channel::<Envelope>().map_err(channel_error("cannot create outcome channel"))?;
        let hello = codec::encode(&Hello {
            protocol: protocol_version(),
            worker_id: id,
            pid: std::process::id(),
            tasks: self.signatures(),
        })?;
        bootstrap
            .send(Bootstrap {
                hello,
                to_worker,
                from_worker,
            })
            .map_err(|err| WorkerError::Channel {
                what: "handshake with coordinator failed",
                reason: err.to_string(),
            })?;
        drop(bootstrap);
        if echo {
            while let Ok(frame) = tasks.recv() {
                outcomes.send(frame).map_err(|err| WorkerError::Channel {
                    what: "cannot echo",
                    reason: err.to_string(),
                })?;
            }
            return Ok(());
        }
        // The first message names the task type of the run: one dispatch per worker, and
        // every batch after it is decoded and run by code made for that type.
        let Ok(setup) = tasks.recv() else {
            return Ok(()); // The coordinator hung up before the run began.
        };
        let setup = Inbox::new().read(setup, |frame| Ok(frame.to_vec()))?;
        let name: String = codec::decode_prefix(&setup)?;
        match self.entries.iter().find(|e| e.signature.name == name) {
            Some(entry) => (entry.serve)(&setup, tasks, outcomes),
            None => Err(WorkerError::UnknownTask {
                wanted: name,
                served: self.names(),
            }),
        }
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.signature.name.as_str())
            .collect();
        names.join(", ")
    }
}

/// Decodes one frame from the coordinator, with its arrival times when traced.
fn read_message<T: Task>(
    regions: &mut Inbox,
    frame: Envelope,
    trace: bool,
) -> Result<(ToWorker<T::Input>, Arrival), WorkerError> {
    let received_ns = if trace { monotonic_ns() } else { 0 };
    let message = regions.decode::<ToWorker<T::Input>>(frame)?;
    let arrival = if trace {
        Arrival {
            received_ns,
            decoded_ns: monotonic_ns(),
        }
    } else {
        Arrival::default()
    };
    Ok((message, arrival))
}

/// Serves batches of task type `T` until the coordinator says stop or hangs up.
fn serve_typed<T: Task>(
    setup: &[u8],
    tasks: IpcReceiver<Envelope>,
    outcomes: IpcSender<Envelope>,
) -> Result<(), WorkerError> {
    let Setup { settings, task, .. } = codec::decode::<Setup<T>>(setup)?;
    // Arrival times only feed traces: without one, no clock is read per frame.
    let trace = settings.trace;
    // The coordinator's shared-memory regions, mapped once each. Decoding a frame hands
    // its region back at once, whenever the batch runs.
    let mut regions = Inbox::new();
    // The first message is read here, and the reader thread started only once it has
    // come: a pool's workers start together, and a thread's start would take CPU from
    // the others' hellos. A pool shut down before any run starts no thread at all.
    let first = match tasks.recv() {
        Ok(frame) => read_message::<T>(&mut regions, frame, trace)?,
        Err(_) => return Ok(()), // The coordinator hung up.
    };
    if matches!(first.0, ToWorker::Shutdown) {
        return Ok(());
    }
    // Frames are read on their own thread so the coordinator's sends never wait for a
    // running batch to finish; the queue holds at most the few batches it has in flight.
    let (queue, inbox) = flume::unbounded::<(ToWorker<T::Input>, Arrival)>();
    let _ = queue.send(first);
    let reader = thread::Builder::new()
        .name("worker-reader".into())
        .spawn(move || -> Result<(), WorkerError> {
            // A receive error means the coordinator hung up: stop quietly.
            while let Ok(frame) = tasks.recv() {
                let message = read_message::<T>(&mut regions, frame, trace)?;
                // Nothing follows a shutdown: this thread ends now rather than asleep in
                // a read when the process exits, which would take a wake-up to kill it.
                let last = matches!(message.0, ToWorker::Shutdown);
                if queue.send(message).is_err() || last {
                    break;
                }
            }
            Ok(())
        })
        .map_err(channel_error("cannot start reader thread"))?;

    let corruption = std::env::var(env::TEST_FRAME).unwrap_or_default();
    let mut outbox = Outbox::new();
    let mut send_error = None;
    // The first message is waiting already: a worker never spins while its pool starts.
    while let Ok((message, arrival)) = crate::recv_spinning(&inbox, SPIN, crate::FOREVER) {
        match message {
            ToWorker::Tasks(batch) => {
                // The batch was decoded for this worker alone (a retry is sent again), so
                // each task owns its input: an echo moves its bytes rather than copying.
                execute::run_batch(&task, &settings, batch, arrival, |done| {
                    if send_error.is_none() {
                        let message = ToCoordinator::Outcomes(done);
                        let sent = if corruption.is_empty() {
                            outbox.encode(&message)
                        } else {
                            codec::encode(&message)
                                .map(|frame| corrupt_for_tests(frame, &corruption))
                        };
                        let sent = sent.map_err(WorkerError::from).and_then(|frame| {
                            outcomes.send(frame).map_err(|err| WorkerError::Channel {
                                what: "cannot send outcomes",
                                reason: err.to_string(),
                            })
                        });
                        send_error = sent.err();
                    }
                    send_error.is_none()
                });
                if let Some(err) = send_error.take() {
                    // The coordinator is gone or the frame could not be built.
                    return Err(err);
                }
            }
            ToWorker::Shutdown => return Ok(()),
        }
    }
    match reader.join() {
        Ok(result) => result,
        Err(_) => Err(WorkerError::Channel {
            what: "reader thread",
            reason: "panicked".into(),
        }),
    }
}

/// A task's panic becomes a `panicked` outcome carrying its message; printing it as well
/// would scribble over the coordinator's terminal.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// Asks the kernel to kill this process when its parent dies, so that even a SIGKILLed
/// coordinator leaves no worker behind; exits at once if the parent is not `parent` (it
/// is gone already).
pub fn die_with_parent(parent: Option<u32>) {
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

/// The version this worker announces. [`env::TEST_PROTOCOL`] makes it claim another one,
/// so tests can check that the coordinator refuses a worker from another build.
fn protocol_version() -> u32 {
    std::env::var(env::TEST_PROTOCOL)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PROTOCOL_VERSION)
}

/// Test hook: [`env::TEST_FRAME`] = `garbage`, `truncated`, `oversized`, `region-id` or
/// `region-length` makes this worker send a bad frame in place of its outcomes, so tests
/// can check that the coordinator treats such a worker as crashed and never trusts what
/// it sent.
fn corrupt_for_tests(frame: Frame, corruption: &str) -> Envelope {
    let mut bytes = frame.into_vec();
    match corruption {
        // A shared-memory region never sent.
        "region-id" => {
            return Envelope::Region(RegionFrame {
                id: u32::MAX,
                len: 16,
                region: None,
            })
        }
        // A real region, with a frame said to run far past its end.
        "region-length" => {
            return Envelope::Region(RegionFrame {
                id: 0,
                len: u32::MAX,
                region: Some(IpcSharedMemory::from_byte(0, 4096)),
            })
        }
        "garbage" => bytes = vec![0xEE; 64],
        "truncated" => bytes.truncate(bytes.len() / 2),
        // Outcomes, one outcome, index 0, attempt 1, Ok, then a length of u64::MAX
        // (where an output starts with a length): decoding must refuse it without
        // allocating.
        "oversized" => {
            bytes = vec![0, 1, 0, 1, 0, 0xFD];
            bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        }
        _ => {}
    }
    Envelope::Inline(Frame::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::SHARED_MEMORY_THRESHOLD;
    use crate::protocol::{Job, RunSettings, SetupRef};
    use crate::task::tests::{pattern, Bytes, Echoed, Scribble};
    use crate::{ErrorKind, Outcome};

    /// The coordinator's side of [`serve_typed`] running on a thread of this process,
    /// over real ipc channels and shared-memory regions.
    struct Coordinator {
        outbox: Outbox,
        inbox: Inbox,
        to_worker: IpcSender<Envelope>,
        from_worker: IpcReceiver<Envelope>,
        worker: thread::JoinHandle<Result<(), WorkerError>>,
    }

    impl Coordinator {
        fn start(task: Scribble) -> Coordinator {
            let setup = codec::encode(&SetupRef {
                name: Scribble::NAME,
                settings: &RunSettings::default(),
                task: &task,
            })
            .unwrap();
            let (to_worker, tasks) = ipc::channel().unwrap();
            let (outcomes, from_worker) = ipc::channel().unwrap();
            let worker = thread::spawn(move || serve_typed::<Scribble>(&setup, tasks, outcomes));
            Coordinator {
                outbox: Outbox::new(),
                inbox: Inbox::new(),
                to_worker,
                from_worker,
                worker,
            }
        }

        /// Sends one job in a frame of its own, and returns whether the frame went in
        /// shared memory, and the job's outcome.
        fn run(&mut self, job: &Job<Bytes>) -> (bool, Outcome<Echoed>) {
            let frame = self
                .outbox
                .encode(&ToWorker::Tasks(vec![job.clone()]))
                .unwrap();
            let shared = !matches!(frame, Envelope::Inline(_));
            self.to_worker.send(frame).unwrap();
            let frame = self.from_worker.recv().unwrap();
            let ToCoordinator::Outcomes(mut outcomes) = self.inbox.decode(frame).unwrap();
            assert_eq!(outcomes.len(), 1);
            (shared, outcomes.remove(0))
        }

        fn stop(mut self) {
            let frame = self.outbox.encode(&ToWorker::<Bytes>::Shutdown).unwrap();
            self.to_worker.send(frame).unwrap();
            self.worker.join().unwrap().unwrap();
        }
    }

    /// A job whose frame, alone in a batch, is `frame_len` bytes long.
    fn job_with_frame_len(frame_len: usize) -> Job<Bytes> {
        let job = |len| Job {
            index: 7,
            attempt: 1,
            input: Bytes(pattern(len)),
        };
        let frame_of = |len| {
            codec::encode(&ToWorker::Tasks(vec![job(len)]))
                .unwrap()
                .len()
        };
        let len = (frame_len.saturating_sub(16)..=frame_len)
            .find(|&len| frame_of(len) == frame_len)
            .unwrap_or_else(|| panic!("no payload makes a frame of {frame_len} bytes"));
        job(len)
    }

    #[test]
    fn a_worker_gives_each_task_its_input_inline_or_in_shared_memory() {
        let mut coordinator = Coordinator::start(Scribble { fail_first: false });
        let empty = Job {
            index: 0,
            attempt: 1,
            input: Bytes(Vec::new()),
        };
        let jobs = [
            empty,
            job_with_frame_len(SHARED_MEMORY_THRESHOLD - 1),
            job_with_frame_len(SHARED_MEMORY_THRESHOLD),
            job_with_frame_len(SHARED_MEMORY_THRESHOLD + 1),
            job_with_frame_len(1 << 20),
        ];
        for job in &jobs {
            let len = job.input.0.len();
            let frame_len = codec::encode(&ToWorker::Tasks(vec![job.clone()]))
                .unwrap()
                .len();
            let (shared, outcome) = coordinator.run(job);
            assert_eq!(shared, frame_len >= SHARED_MEMORY_THRESHOLD, "{len} bytes");
            let echoed = outcome.result.unwrap();
            assert!(echoed.owned, "{len} bytes: the input was lent, not given");
            assert_eq!(echoed.bytes, job.input, "{len} bytes");
        }
        coordinator.stop();
    }

    #[test]
    fn a_retry_sent_to_a_worker_gets_the_original_input() {
        let mut coordinator = Coordinator::start(Scribble { fail_first: true });
        for frame_len in [100, SHARED_MEMORY_THRESHOLD, 1 << 20] {
            // The coordinator keeps the job and sends it again, as the pool does.
            let mut job = job_with_frame_len(frame_len);
            let (_, first) = coordinator.run(&job);
            assert_eq!(first.result.unwrap_err().kind, ErrorKind::Network);
            job.attempt = 2;
            let (_, second) = coordinator.run(&job);
            assert_eq!(second.result.unwrap().bytes, job.input, "{frame_len}");
        }
        coordinator.stop();
    }
}
