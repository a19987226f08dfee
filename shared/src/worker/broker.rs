//! A broker worker (`worker --broker URL`, or any program whose `main` calls
//! [`Worker::serve_if_worker`](super::Worker::serve_if_worker) started with
//! `WORKPOOL_ROLE=worker` and `WORKPOOL_BROKER=URL`): serves runs through Redis Streams
//! from any host, for the task types it registered. It joins the
//! consumer group of the tasks stream, runs the batches it takes on workpool's own pool
//! (threads or child processes), publishes each batch's outcomes and acknowledges the
//! entry in one atomic step.
//!
//! Crash recovery is the broker's: an entry stays pending until acknowledged, so the
//! batches of a worker that died are claimed by another (`XAUTOCLAIM`) once their lease
//! has run out. A live worker renews the leases of what it holds, so long tasks are not
//! taken from it; an entry delivered more than `--max-deliveries` times is given up with
//! `worker_crashed` outcomes rather than passed around for ever.
//!
//! Nothing in the broker makes a worker exit: an entry it cannot read or run (garbage,
//! another build's, or of a run whose settings are unreadable) is moved to the dead-letter
//! stream and its run's coordinator told; a key of another type than expected is waited
//! out. Only a broker out of reach for long ends it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flume::{Receiver, Sender};

use super::Worker;
use crate::broker::{
    self, Body, BrokerError, BrokerUrl, Burial, Entry, OutcomeEntryRef, RunSpec, TaskEntry,
};
use crate::codec::{self, CodecError, Frame};
use crate::pool::{BackendKind, Chunk, Pool, PoolBuilder, Recycle, WorkerBinary};
use crate::protocol::Job as Batch;
use crate::{ErrorKind, Outcome, Task, TaskError};

/// How long a connection attempt may take before the broker counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reads and writes on an open connection fail after this (a `BLOCK` wait is shorter).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the main loop waits for new entries before looking at its timers again.
const POLL: Duration = Duration::from_millis(100);
/// How long a run's settings are trusted before checking the run is still live.
const SPEC_TTL: Duration = Duration::from_secs(1);
/// How long a lost connection is retried before the worker gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(30);
/// How often a tasks stream found holding something else is looked at again.
const CORRUPT_PAUSE: Duration = Duration::from_secs(1);

/// What a broker worker was asked to do.
pub struct Settings {
    /// The broker.
    pub url: BrokerUrl,
    /// Batches run at once (threads).
    pub concurrency: usize,
    /// An entry held this long without renewal is taken to belong to a dead worker.
    pub lease: Duration,
    /// Deliveries after which an entry is given up.
    pub max_deliveries: u64,
    /// This worker's consumer name in the group.
    pub name: String,
    /// Where a batch's tasks run.
    pub isolation: Isolation,
}

/// Where a broker worker runs a batch's tasks: on a one-runner pool of workpool's own per
/// executor thread, so timeouts, panics and crashes are handled as on the local backends.
#[derive(Clone)]
pub enum Isolation {
    /// A thread: cheapest (the executor's own, unless the run has a `--timeout`: then a
    /// task past it is abandoned with its thread); a task that aborts takes the worker
    /// down (its batches are then taken over by others).
    Thread,
    /// A child worker process (this program, started as a worker): a crash or a
    /// `--timeout` kills only the child, which is replaced; and a child is retired and
    /// replaced as the [`Recycle`] limits say (a task count, a memory limit).
    Process(WorkerBinary, Recycle),
}

impl Settings {
    /// The defaults for `url`: a thread per logical CPU, a 10 s lease, 3 deliveries, named
    /// after the host and the process.
    pub fn new(url: BrokerUrl) -> Settings {
        Settings {
            url,
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            lease: Duration::from_secs(10),
            max_deliveries: 3,
            name: default_name(),
            isolation: Isolation::Thread,
        }
    }
}

/// `HOST-PID`: unique among the workers of a broker.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "host".to_string(), |h| h.trim().to_string());
    format!("{host}-{}", std::process::id())
}

/// Why the worker stopped: the caller maps it to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The broker could not be reached or refused us at start: a set-up problem.
    #[error(transparent)]
    Start(BrokerError),
    /// The broker failed for good while serving.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// An entry could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A thread could not be started, or the interrupt handler installed.
    #[error("{what}: {source}")]
    System {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Every executor thread has stopped.
    #[error("every executor thread has stopped")]
    Executors,
}

impl ServeError {
    /// The worker's exit code for it: 2 for a set-up problem (the broker unreachable or
    /// refusing us at start), 1 for a failure while serving.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Start(_) => 2,
            _ => 1,
        }
    }
}

/// One entry taken from the stream: its batch, and the settings of its run.
struct Job {
    id: String,
    entry: TaskEntry,
    spec: Arc<RunSpec>,
    /// The run's moving average of a job's run time, in microseconds, kept by the
    /// executors for [`Server::hand_out`].
    job_us: Arc<AtomicU64>,
}

/// A batch's outcomes, in the batch's order, encoded and ready to publish.
struct Finished {
    id: String,
    run: String,
    route: broker::Route,
    outcomes: Frame,
}

impl Finished {
    /// The outcome entry `consumer` (process `pid`) publishes for this batch.
    fn entry(&self, consumer: &str, pid: u32) -> Result<Frame, CodecError> {
        codec::encode(&OutcomeEntryRef {
            route: self.route,
            consumer,
            pid,
            outcomes: &self.outcomes,
        })
    }
}

impl Job {
    /// The batch ended with `outcomes` (an encoded `Vec<Outcome>`, one per task, in order).
    fn finished(self, outcomes: Frame) -> Finished {
        Finished {
            id: self.id,
            run: self.entry.run,
            route: self.entry.route,
            outcomes,
        }
    }

    /// The batch ended without running: every task fails with `kind`.
    fn failed(self, kind: ErrorKind, message: &str) -> Finished {
        // Failures carry no output, so they encode alike whatever the task type's is.
        let outcomes: Vec<Outcome<()>> = self
            .entry
            .keys
            .iter()
            .map(|&(index, attempt)| Outcome {
                index,
                attempt,
                result: Err(TaskError::new(kind, message)),
                run_us: 0,
                trace: None,
            })
            .collect();
        let frame = codec::encode(&outcomes).unwrap_or_default();
        self.finished(frame)
    }
}

/// Serves runs of `worker`'s task types from the broker until interrupted (or the broker
/// is gone for good).
pub fn serve(worker: &Worker, settings: Settings) -> Result<(), ServeError> {
    let served: Arc<Vec<Served>> = Arc::new(
        worker
            .entries
            .iter()
            .map(|e| Served {
                signature: e.signature.clone(),
                start: e.broker,
            })
            .collect(),
    );
    let url = settings.url.clone();
    let mut con = url
        .connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))
        .map_err(ServeError::Start)?;
    match broker::ensure_group(&url, &mut con) {
        // Waited out by the main loop, as when it happens later.
        Err(err) if err.corrupt_key().is_some() => {}
        other => other.map_err(ServeError::Start)?,
    }
    let isolation = match settings.isolation {
        Isolation::Thread => "threads",
        Isolation::Process(..) => "child processes",
    };
    crate::diag!(
        "worker {}: serving {} with {} {isolation} (lease {:?}, max deliveries {})",
        settings.name,
        url,
        settings.concurrency,
        settings.lease,
        settings.max_deliveries
    );

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(&stop)?;
    let (jobs_tx, jobs_rx) = flume::unbounded::<Vec<Job>>();
    let (freed_tx, freed_rx) = flume::unbounded::<String>();
    let (done_tx, done_rx) = flume::unbounded::<Done>();
    let publisher = Publisher {
        url: url.clone(),
        con: url
            .connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))
            .map_err(ServeError::Start)?,
        name: settings.name.clone(),
        freed: freed_tx,
    };
    std::thread::Builder::new()
        .name("broker-publisher".into())
        .spawn(move || publisher.run(&done_rx))
        .map_err(|source| ServeError::System {
            what: "cannot start the publisher thread",
            source,
        })?;
    for _ in 0..settings.concurrency {
        let outbox = Outbox {
            name: settings.name.clone(),
            pid: std::process::id(),
            done: done_tx.clone(),
        };
        let (jobs, isolation) = (jobs_rx.clone(), settings.isolation.clone());
        let served = Arc::clone(&served);
        std::thread::Builder::new()
            .name("broker-executor".into())
            .spawn(move || execute_jobs(&served, &isolation, &jobs, &outbox))
            .map_err(|source| ServeError::System {
                what: "cannot start an executor thread",
                source,
            })?;
    }
    drop(done_tx);
    let mut server = Server {
        served,
        settings,
        con,
        runs: HashMap::new(),
        buried: 0,
        held: HashSet::new(),
        jobs: jobs_tx,
        admitted: Vec::new(),
        cursor: "0-0".into(),
        last_keepalive: Instant::now(),
        last_reclaim: Instant::now(),
    };
    // The loop ends once every entry it took is published (or on an error); abandoned
    // threads may still be running tasks nobody waits for, so the publisher is not joined.
    server.run(&freed_rx, &stop)
}

/// SIGINT/SIGTERM: stop taking entries, finish what is held, exit. A second one exits at
/// once (what was held is then claimed by another worker after its lease).
fn watch_signals(stop: &Arc<AtomicBool>) -> Result<(), ServeError> {
    let stop = Arc::clone(stop);
    crate::interrupt::on_interrupt(
        "worker: stopping after the batches it holds (again to exit now)",
        move || stop.store(true, Ordering::SeqCst),
    )
    .map_err(|source| ServeError::System {
        what: "cannot install the interrupt handler",
        source,
    })
}

/// A task type this worker serves, and how to start running a run of it.
pub(super) struct Served {
    signature: crate::task::Signature,
    start: RunnerFactory,
}

/// Starts what runs the batches of one run of a served task type.
pub(super) type RunnerFactory = fn(&RunSpec, &Isolation) -> Result<Box<dyn RunBatches>, String>;

/// Why a run cannot be served by this worker, if it cannot.
fn refusal(served: &[Served], spec: &RunSpec) -> Option<String> {
    let signatures: Vec<_> = served.iter().map(|s| s.signature.clone()).collect();
    crate::task::Signature::refusal(&signatures, &spec.task)
}

/// Runs the batches of one run, whatever its task type: one dynamic call per batch, and
/// code made for the type inside.
pub(super) trait RunBatches {
    /// Runs the encoded batch `tasks` and returns its encoded outcomes, one per task in
    /// the batch's order.
    fn run(&mut self, keys: &[(u64, u32)], tasks: &[u8]) -> Result<Frame, String>;
}

/// The batches of one run of task type `T`, on a one-runner pool of workpool's own.
struct TypedRun<T: Task> {
    pool: Pool<T>,
}

/// Starts a one-runner pool for a run of `T`: a thread or a child process, per
/// `isolation`. The pool enforces the run's timeout and turns a panic or a crash into an
/// outcome, replacing its runner; the broker owns retries, so the pool makes none.
pub(super) fn runner_for<T: Task>(
    spec: &RunSpec,
    isolation: &Isolation,
) -> Result<Box<dyn RunBatches>, String> {
    let task: T = codec::decode(&spec.task_value)
        .map_err(|err| format!("cannot read the run's task: {err}"))?;
    let timeout = spec.timeout_ms.map(Duration::from_millis);
    let builder = PoolBuilder::new()
        .workers(1)
        // A batch travels to its runner in one message.
        .chunk(Chunk::Fixed(1024))
        .inflight(1)
        .retries(0)
        .backoff(Duration::ZERO)
        .seed(spec.settings.seed)
        .timeout(timeout);
    let builder = match isolation {
        // Inline on this executor thread, unless a timeout needs a thread it can
        // abandon: two hand-offs between threads fewer per batch.
        Isolation::Thread if timeout.is_none() => builder.backend(BackendKind::Sequential),
        Isolation::Thread => builder.backend(BackendKind::Thread),
        Isolation::Process(bin, recycle) => builder
            .backend(BackendKind::Process)
            .worker_program(bin.clone())
            .recycle(*recycle),
    };
    let pool = builder
        .build(task)
        .map_err(|err| format!("cannot start a runner: {err}"))?;
    Ok(Box::new(TypedRun { pool }))
}

impl<T: Task> RunBatches for TypedRun<T> {
    fn run(&mut self, keys: &[(u64, u32)], tasks: &[u8]) -> Result<Frame, String> {
        let batch: Vec<Batch<T::Input>> =
            codec::decode(tasks).map_err(|err| format!("its batch is corrupt: {err}"))?;
        let outcomes: Vec<Outcome<T::Output>> = self
            .pool
            .run_attempts(batch.into_iter().map(|t| (t.input, t.attempt)))
            .zip(keys)
            .map(|(record, &(index, attempt))| Outcome {
                index,
                attempt,
                result: record.result,
                run_us: (record.elapsed_ms * 1000.0) as u64,
                trace: None,
            })
            .collect();
        codec::encode(&outcomes).map_err(|err| err.to_string())
    }
}

/// [`Job::job_us`] before any job of the run has ended: every job then goes alone.
const UNMEASURED: u64 = u64::MAX;

/// The run time a group of short jobs handed to one executor aims at: jobs far shorter
/// than waking a thread go together, so that one-task entries cost one wake-up per group
/// instead of one per entry, while a group still ends long before a lease.
const GROUP_US: u64 = 500;

/// Splits `jobs` into groups for the executors, in order: consecutive jobs of one run
/// whose moving average (`run_and_us`) says they fit in [`GROUP_US`] go together.
fn groups<J>(jobs: Vec<J>, run_and_us: impl Fn(&J) -> (&str, u64)) -> Vec<Vec<J>> {
    let mut groups: Vec<Vec<J>> = Vec::new();
    for job in jobs {
        let joins = groups.last().and_then(|g| g.first().map(|f| (g.len(), f)));
        let joins = joins.is_some_and(|(len, first)| {
            let (run, us) = run_and_us(first);
            let per_group = match us {
                UNMEASURED => 1,
                us => GROUP_US / us.max(1),
            };
            run == run_and_us(&job).0 && (len as u64) < per_group
        });
        match groups.last_mut() {
            Some(group) if joins => group.push(job),
            _ => groups.push(vec![job]),
        }
    }
    groups
}

/// An executor thread: runs each batch on the runner of its run, started for the run and
/// kept while batches of that run come; records how long a batch takes, for grouping.
fn execute_jobs(
    served: &[Served],
    isolation: &Isolation,
    jobs: &Receiver<Vec<Job>>,
    outbox: &Outbox,
) {
    let mut local: Option<(String, Box<dyn RunBatches>)> = None;
    for job in jobs.iter().flatten() {
        if local.as_ref().is_none_or(|(run, _)| *run != job.entry.run) {
            local = None; // Shuts the last run's runner down.
            let started = served
                .iter()
                .find(|s| s.signature.name == job.spec.task.name)
                .ok_or_else(|| "no such task type".to_string())
                .and_then(|s| (s.start)(&job.spec, isolation));
            match started {
                Ok(runner) => local = Some((job.entry.run.clone(), runner)),
                Err(message) => {
                    // Reported as a crash of this batch: the coordinator may retry it.
                    outbox.send(job.failed(ErrorKind::WorkerCrashed, &message));
                    continue;
                }
            }
        }
        let Some((_, runner)) = local.as_mut() else {
            continue;
        };
        let started = Instant::now();
        let result = runner.run(&job.entry.keys, &job.entry.tasks);
        let took = started
            .elapsed()
            .as_micros()
            .min(u128::from(UNMEASURED - 1)) as u64;
        // A moving average; a lost update between executors only delays it.
        let mean = match job.job_us.load(Ordering::Relaxed) {
            UNMEASURED => took,
            mean => mean - mean / 8 + took / 8,
        };
        job.job_us.store(mean, Ordering::Relaxed);
        match result {
            Ok(outcomes) => outbox.send(job.finished(outcomes)),
            Err(message) => outbox.send(job.failed(ErrorKind::WorkerCrashed, &message)),
        }
    }
}

/// A finished batch's outcome entry, encoded by its executor, waiting to be published.
struct Done {
    id: String,
    run: String,
    frame: Frame,
}

/// Where an executor leaves what it finished, for the publisher thread.
struct Outbox {
    name: String,
    /// This process's id, read once rather than by a syscall per batch.
    pid: u32,
    done: Sender<Done>,
}

impl Outbox {
    fn send(&self, batch: Finished) {
        let frame = match batch.entry(&self.name, self.pid) {
            Ok(frame) => frame,
            Err(err) => {
                crate::diag!("worker {}: cannot encode outcomes: {err}", self.name);
                std::process::exit(1);
            }
        };
        // The publisher stops only by exiting the process.
        let _ = self.done.send(Done {
            id: batch.id,
            run: batch.run,
            frame,
        });
    }
}

/// Finished batches published per round trip, at most.
const PUBLISH_GROUP: usize = 256;

/// Publishes finished batches and acknowledges their entries, then tells the main loop
/// the entries are no longer held. One thread for all executors: what they finish while
/// a round trip is under way goes in the next one, in one script call, so short tasks
/// cost the broker one call per group instead of one per batch.
struct Publisher {
    url: BrokerUrl,
    con: redis::Connection,
    name: String,
    freed: Sender<String>,
}

impl Publisher {
    /// Publishes until every executor has stopped; a worker that cannot (the broker gone
    /// for good) exits, and the batches it holds are taken over by another worker after
    /// their lease.
    fn run(mut self, done: &Receiver<Done>) {
        let mut group = Vec::with_capacity(PUBLISH_GROUP);
        while let Ok(first) = done.recv() {
            group.push(first);
            group.extend(done.try_iter().take(PUBLISH_GROUP - 1));
            let finished: Vec<broker::Finished<'_>> = group
                .iter()
                .map(|d| broker::Finished {
                    run: &d.run,
                    id: &d.id,
                    frame: &d.frame,
                })
                .collect();
            let url = &self.url;
            if let Err(err) = with_retries(url, &mut self.con, |con| {
                broker::finish_many(url, con, &finished)
            }) {
                crate::diag!("worker {}: cannot publish outcomes: {err}", self.name);
                std::process::exit(1);
            }
            for published in group.drain(..) {
                let _ = self.freed.send(published.id);
            }
        }
    }
}

/// Runs a broker command, reconnecting for up to [`RECONNECT_FOR`] if the connection
/// fails, and waiting for as long as it takes if the tasks stream holds something else
/// (what is in the broker never ends a worker); any other refusal is returned at once.
fn with_retries<T>(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    mut command: impl FnMut(&mut redis::Connection) -> Result<T, BrokerError>,
) -> Result<T, BrokerError> {
    let mut started = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut waiting = false;
    loop {
        match command(con) {
            Err(err) if err.corrupt_key() == Some(broker::TASKS_STREAM) => {
                if !waiting {
                    crate::diag!("worker: {err}; waiting until it is a stream again");
                    waiting = true;
                }
                std::thread::sleep(CORRUPT_PAUSE);
                // A missing group once the key is removed is then joined anew.
                started = Instant::now();
            }
            Err(err) if err.is_missing_group() && started.elapsed() < RECONNECT_FOR => {
                crate::diag!(
                    "worker: the consumer group is gone (broker restarted?); joining anew"
                );
                broker::ensure_group(url, con)?;
            }
            Err(err) if err.is_connection() && started.elapsed() < RECONNECT_FOR => {
                crate::diag!("worker: {err}; reconnecting");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
                if let Ok(fresh) = url.connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT)) {
                    *con = fresh;
                }
            }
            other => return other,
        }
    }
}

/// What a worker knows of a run, from its settings key.
#[derive(Clone)]
enum RunState {
    Live(Arc<RunSpec>),
    /// Finished, stopped or cancelled: its entries are dropped.
    Over,
    /// Its settings cannot be read (another build's, or overwritten): its entries are
    /// given up, and its coordinator told why.
    Unreadable(String),
}

/// A run as this worker knows it.
struct KnownRun {
    state: RunState,
    /// When `state` was read.
    at: Instant,
    /// The run's moving average of a job's run time (see [`Job::job_us`]): kept when the
    /// state is read again.
    job_us: Arc<AtomicU64>,
}

/// The main loop's state: what this worker holds, and when it last renewed and reclaimed.
struct Server {
    served: Arc<Vec<Served>>,
    settings: Settings,
    con: redis::Connection,
    /// What is known of each run, and since when (trusted for [`SPEC_TTL`]).
    runs: HashMap<String, KnownRun>,
    /// Entries given up as unreadable or unrunnable so far.
    buried: u64,
    /// Entries taken and not yet acknowledged.
    held: HashSet<String>,
    jobs: Sender<Vec<Job>>,
    /// Jobs admitted from the last read, handed to the executors together.
    admitted: Vec<Job>,
    /// Where the next `XAUTOCLAIM` scan continues.
    cursor: String,
    last_keepalive: Instant,
    last_reclaim: Instant,
}

impl Server {
    fn run(&mut self, freed: &Receiver<String>, stop: &AtomicBool) -> Result<(), ServeError> {
        // Up to one batch queued behind each running one, so a thread finds its next
        // batch here instead of waiting a round trip to the broker.
        let capacity = self.settings.concurrency * 2;
        loop {
            while let Ok(id) = freed.try_recv() {
                self.held.remove(&id);
            }
            let stopping = stop.load(Ordering::SeqCst);
            if stopping && self.held.is_empty() {
                if self.buried > 0 {
                    crate::diag!(
                        "worker {}: gave up {} unreadable entries (see {})",
                        self.settings.name,
                        self.buried,
                        broker::DEAD_STREAM
                    );
                }
                return Ok(());
            }
            self.renew_leases()?;
            let free = capacity.saturating_sub(self.held.len());
            if stopping || free == 0 {
                if let Ok(id) = freed.recv_timeout(POLL) {
                    self.held.remove(&id);
                }
                continue;
            }
            self.reclaim(free)?;
            self.hand_out()?;
            let free = capacity.saturating_sub(self.held.len());
            if free == 0 {
                continue;
            }
            let (url, name) = (&self.settings.url, &self.settings.name);
            let entries = with_retries(url, &mut self.con, |con| {
                broker::read_tasks(url, con, name, free, POLL)
            })?;
            for entry in entries {
                self.admit(entry, 1)?;
            }
            self.hand_out()?;
        }
    }

    /// Hands the admitted jobs to the executors: one group per job, or short jobs of a
    /// run together, about [`GROUP_US`] of work per group.
    fn hand_out(&mut self) -> Result<(), ServeError> {
        let jobs = std::mem::take(&mut self.admitted);
        for group in groups(jobs, |job| {
            (&job.entry.run, job.job_us.load(Ordering::Relaxed))
        }) {
            self.jobs.send(group).map_err(|_| ServeError::Executors)?;
        }
        Ok(())
    }

    /// Renews the leases of held entries, a third of a lease after the last renewal.
    fn renew_leases(&mut self) -> Result<(), ServeError> {
        if self.last_keepalive.elapsed() < self.settings.lease / 3 {
            return Ok(());
        }
        self.last_keepalive = Instant::now();
        let ids: Vec<String> = self.held.iter().cloned().collect();
        let (url, name) = (&self.settings.url, &self.settings.name);
        with_retries(url, &mut self.con, |con| {
            broker::keep_alive(url, con, name, &ids)
        })?;
        Ok(())
    }

    /// Takes over entries whose worker stopped renewing them, a quarter lease apart.
    fn reclaim(&mut self, free: usize) -> Result<(), ServeError> {
        if self.last_reclaim.elapsed() < self.settings.lease / 4 {
            return Ok(());
        }
        self.last_reclaim = Instant::now();
        let (url, name, lease) = (
            self.settings.url.clone(),
            self.settings.name.clone(),
            self.settings.lease,
        );
        let cursor = self.cursor.clone();
        let (claimed, next) = with_retries(&url, &mut self.con, |con| {
            broker::reclaim(&url, con, &name, lease, &cursor, free)
        })?;
        self.cursor = next;
        if !claimed.is_empty() {
            crate::diag!(
                "worker {name}: took over {} batch(es) whose worker stopped renewing them",
                claimed.len()
            );
        }
        for entry in claimed {
            let deliveries = with_retries(&url, &mut self.con, |con| {
                broker::deliveries(&url, con, &entry.id)
            })?;
            self.admit(entry, deliveries.unwrap_or(1))?;
        }
        Ok(())
    }

    /// Looks at one delivered entry and either starts it, gives it up, or drops it.
    fn admit(&mut self, entry: Entry, deliveries: u64) -> Result<(), ServeError> {
        let Entry { id, body } = entry;
        let frame = match body {
            Body::Frame(frame) => frame,
            // Deleted since it was published (its run was cancelled): just acknowledge.
            Body::Deleted => return self.acknowledge("", &id),
            Body::Refused(_) | Body::Foreign => {
                return self.bury(
                    &id,
                    None,
                    "it has no `f` field: workpool did not write it",
                    &[],
                )
            }
        };
        let protocol = codec::decode_prefix_u32(&frame).ok();
        if protocol != Some(broker::BROKER_PROTOCOL) {
            let reason = match protocol {
                Some(other) => format!(
                    "it is in broker protocol {other}, and this worker speaks {}: a \
                     coordinator of another build wrote it, or something else did",
                    broker::BROKER_PROTOCOL
                ),
                None => "it holds no frame workpool can read".to_string(),
            };
            return self.bury(&id, broker::run_of(&frame).as_deref(), &reason, &frame);
        }
        let entry: TaskEntry = match broker::decode_entry(&id, &frame) {
            Ok(entry) => entry,
            Err(err) => {
                let reason = format!("its batch is corrupt: {err}");
                return self.bury(&id, broker::run_of(&frame).as_deref(), &reason, &frame);
            }
        };
        let (state, job_us) = self.run_state(&entry.run)?;
        let spec = match state {
            RunState::Live(spec) => spec,
            // The run is over (finished, stopped or cancelled): nothing to do.
            RunState::Over => return self.acknowledge(&entry.run, &id),
            RunState::Unreadable(reason) => {
                return self.bury(&id, Some(&entry.run), &reason, &frame)
            }
        };
        let job = Job {
            id: id.clone(),
            entry,
            spec,
            job_us,
        };
        if deliveries > self.settings.max_deliveries {
            let message = format!(
                "given up after {deliveries} deliveries: each worker that took this batch \
                 stopped before finishing it (lease {:?})",
                self.settings.lease
            );
            let batch = job.failed(ErrorKind::WorkerCrashed, &message);
            let frame = batch.entry(&self.settings.name, std::process::id())?;
            let url = self.settings.url.clone();
            with_retries(&url, &mut self.con, |con| {
                broker::finish(&url, con, &batch.run, &batch.id, &frame)
            })?;
            return Ok(());
        }
        self.held.insert(id);
        self.admitted.push(job);
        Ok(())
    }

    fn acknowledge(&mut self, run: &str, id: &str) -> Result<(), ServeError> {
        let url = &self.settings.url;
        with_retries(url, &mut self.con, |con| {
            broker::finish(url, con, run, id, &[])
        })?;
        Ok(())
    }

    /// Gives up an entry that cannot be read or run: logged once (never its bytes),
    /// counted, moved to the dead-letter stream, and its run's coordinator (if the run is
    /// known) told why, so that it fails the run instead of waiting for it.
    fn bury(
        &mut self,
        id: &str,
        run: Option<&str>,
        reason: &str,
        frame: &[u8],
    ) -> Result<(), ServeError> {
        self.buried += 1;
        crate::diag!(
            "worker {}: gave up entry {id} ({} bytes) and moved it to {}: {reason} ({} so far)",
            self.settings.name,
            frame.len(),
            broker::DEAD_STREAM,
            self.buried
        );
        let url = self.settings.url.clone();
        let burial = Burial {
            id,
            run,
            reason,
            worker: &self.settings.name,
            frame,
        };
        with_retries(&url, &mut self.con, |con| broker::bury(&url, con, &burial))?;
        Ok(())
    }

    /// What is known of a run (cached for [`SPEC_TTL`]), and its jobs' moving average.
    fn run_state(&mut self, run: &str) -> Result<(RunState, Arc<AtomicU64>), ServeError> {
        let known = self.runs.get(run);
        if let Some(known) = known.filter(|k| k.at.elapsed() < SPEC_TTL) {
            return Ok((known.state.clone(), Arc::clone(&known.job_us)));
        }
        let job_us = known.map_or_else(
            || Arc::new(AtomicU64::new(UNMEASURED)),
            |k| Arc::clone(&k.job_us),
        );
        let url = self.settings.url.clone();
        let found = with_retries(&url, &mut self.con, |con| {
            // Unreadable settings are an answer here, not an error to retry.
            match broker::get_spec(&url, con, run) {
                Err(err) if err.corrupt_key().is_some() => Ok(Err(err)),
                other => other.map(Ok),
            }
        })?;
        let state = match found {
            // A run of a task type this worker does not serve, or serves as another
            // build has it: refused, and its coordinator told what differs.
            Ok(Some(spec)) => match refusal(&self.served, &spec) {
                Some(reason) => RunState::Unreadable(reason),
                None => RunState::Live(Arc::new(spec)),
            },
            Ok(None) => RunState::Over,
            Err(err) => RunState::Unreadable(err.to_string()),
        };
        self.runs
            .retain(|_, known| known.at.elapsed() < SPEC_TTL * 60);
        let known = KnownRun {
            state: state.clone(),
            at: Instant::now(),
            job_us: Arc::clone(&job_us),
        };
        self.runs.insert(run.to_string(), known);
        Ok((state, job_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(jobs: &[(&str, u64)]) -> Vec<usize> {
        groups(jobs.to_vec(), |&(run, us)| (run, us))
            .iter()
            .map(Vec::len)
            .collect()
    }

    #[test]
    fn short_jobs_of_one_run_go_together_and_others_alone() {
        assert_eq!(
            sizes(&[("a", UNMEASURED); 3]),
            [1, 1, 1],
            "nothing measured"
        );
        assert_eq!(sizes(&[("a", 2); 5]), [5], "far shorter than a wake-up");
        assert_eq!(sizes(&[("a", 200); 5]), [2, 2, 1], "about GROUP_US each");
        assert_eq!(sizes(&[("a", 10_000); 3]), [1, 1, 1], "long jobs alone");
        assert_eq!(sizes(&[("a", 0); 2]), [2], "no division by zero");
        let mixed = [("a", 1), ("a", 1), ("b", 1), ("a", 1)];
        assert_eq!(sizes(&mixed), [2, 1, 1], "a group never mixes runs");
        assert_eq!(sizes(&[]), Vec::<usize>::new());
    }
}
