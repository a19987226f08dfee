//! `worker --broker URL`: serves runs through Redis Streams from any host. It joins the
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use workpool::broker::{
    self, Body, BrokerError, BrokerUrl, Burial, Entry, OutcomeEntryRef, RunSpec, TaskEntry,
};
use workpool::pool::{BackendKind, Chunk, Order, Pool, PoolConfig, WorkerBinary};
use workpool::{codec, ErrorKind, Outcome, Task, TaskError};

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

/// What `worker --broker` was asked to do.
pub struct Settings {
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
    /// A child `worker` process: a crash or a `--timeout` kills only the child, which is
    /// replaced.
    Process(WorkerBinary),
}

/// Why the worker stopped: the caller maps it to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The broker could not be reached or refused us at start: a set-up problem.
    #[error(transparent)]
    Start(BrokerError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One entry taken from the stream: its batch, and the settings of its run.
struct Job {
    id: String,
    entry: TaskEntry,
    spec: Arc<RunSpec>,
}

/// A batch's outcomes, in the batch's order, ready to publish.
struct Finished {
    id: String,
    run: String,
    route: broker::Route,
    outcomes: Vec<Outcome>,
}

impl Job {
    fn tasks(&self) -> &[Task] {
        &self.entry.tasks
    }

    /// The batch ended with `outcomes` (one per task, in order).
    fn finished(self, outcomes: Vec<Outcome>) -> Finished {
        Finished {
            id: self.id,
            run: self.entry.run,
            route: self.entry.route,
            outcomes,
        }
    }

    /// The batch ended without running: every task fails with `kind`.
    fn failed(self, kind: ErrorKind, message: &str) -> Finished {
        let outcomes = self
            .tasks()
            .iter()
            .map(|task| outcome_of(task, Err(TaskError::new(kind, message)), 0))
            .collect();
        self.finished(outcomes)
    }
}

pub fn serve(settings: Settings) -> Result<(), ServeError> {
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
        Isolation::Process(_) => "child processes",
    };
    workpool::diag!(
        "worker {}: serving {} with {} {isolation} (lease {:?}, max deliveries {})",
        settings.name,
        url,
        settings.concurrency,
        settings.lease,
        settings.max_deliveries
    );

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(&stop)?;
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    let (freed_tx, freed_rx) = crossbeam_channel::unbounded::<String>();
    for _ in 0..settings.concurrency {
        // Each executor publishes its own batches: no hand-off to another thread.
        let publisher = Publisher {
            url: url.clone(),
            con: url
                .connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))
                .map_err(ServeError::Start)?,
            name: settings.name.clone(),
            freed: freed_tx.clone(),
        };
        let (jobs, isolation) = (jobs_rx.clone(), settings.isolation.clone());
        std::thread::Builder::new()
            .name("broker-executor".into())
            .spawn(move || execute_jobs(&isolation, &jobs, publisher))
            .context("cannot start an executor thread")?;
    }
    let mut server = Server {
        settings,
        con,
        runs: HashMap::new(),
        buried: 0,
        held: HashSet::new(),
        jobs: jobs_tx,
        cursor: "0-0".into(),
        last_keepalive: Instant::now(),
        last_reclaim: Instant::now(),
    };
    // The loop ends once every entry it took is published (or on an error); abandoned
    // threads may still be running tasks nobody waits for, so the publisher is not joined.
    server.run(&freed_rx, &stop).map_err(ServeError::Other)
}

/// SIGINT/SIGTERM: stop taking entries, finish what is held, exit. A second one exits at
/// once (what was held is then claimed by another worker after its lease).
fn watch_signals(stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let stop = Arc::clone(stop);
    workpool::interrupt::on_interrupt(
        "worker: stopping after the batches it holds (again to exit now)",
        move || stop.store(true, Ordering::SeqCst),
    )
    .context("cannot install the interrupt handler")
}

/// An executor thread: runs each batch on a one-runner pool of workpool's own (a thread or
/// a child process), started for the batch's run and kept while batches of that run come.
/// The pool enforces the run's `--timeout` and turns a panic or a crash into an outcome,
/// replacing its runner; the broker owns retries, so the pool makes none.
fn execute_jobs(isolation: &Isolation, jobs: &Receiver<Job>, mut publisher: Publisher) {
    let mut local: Option<(String, Pool)> = None;
    for job in jobs {
        if local.as_ref().is_none_or(|(run, _)| *run != job.entry.run) {
            local = None; // Shuts the last run's runner down.
            let timeout = job.spec.timeout_ms.map(Duration::from_millis);
            let (backend, worker_bin) = match isolation {
                // Inline on this executor thread, unless a timeout needs a thread it can
                // abandon: two hand-offs between threads fewer per batch.
                Isolation::Thread if timeout.is_none() => (BackendKind::Sequential, None),
                Isolation::Thread => (BackendKind::Thread, None),
                Isolation::Process(bin) => (BackendKind::Process, Some(bin.clone())),
            };
            let config = PoolConfig {
                backend,
                workers: 1,
                order: Order::Input,
                // A batch travels to its runner in one message.
                chunk: Chunk::Fixed(job.tasks().len().max(1024)),
                inflight: Some(1),
                retries: 0,
                backoff: Duration::ZERO,
                context: job.spec.context.clone(),
                timeout,
                first: None,
                fail_fast: false,
                worker_bin,
                broker: None,
            };
            match Pool::start(config) {
                Ok(pool) => local = Some((job.entry.run.clone(), pool)),
                Err(err) => {
                    // Reported as a crash of this batch: the coordinator may retry it.
                    let message = format!("cannot start a runner: {err}");
                    publisher.publish(job.failed(ErrorKind::WorkerCrashed, &message));
                    continue;
                }
            }
        }
        let Some((_, pool)) = local.as_mut() else {
            continue;
        };
        let records: Vec<_> = pool
            .map(job.tasks().iter().map(|t| (t.input.clone(), t.attempt)))
            .collect();
        let outcomes = records
            .into_iter()
            .zip(job.tasks())
            .map(|(record, task)| {
                let run_us = (record.elapsed_ms * 1000.0) as u64;
                outcome_of(task, record.result, run_us)
            })
            .collect();
        publisher.publish(job.finished(outcomes));
    }
}

fn outcome_of(task: &Task, result: Result<workpool::Value, TaskError>, run_us: u64) -> Outcome {
    Outcome {
        index: task.index,
        attempt: task.attempt,
        result,
        run_us,
        trace: None,
    }
}

/// Publishes finished batches and acknowledges their entries, then tells the main loop
/// the entry is no longer held.
struct Publisher {
    url: BrokerUrl,
    con: redis::Connection,
    name: String,
    freed: Sender<String>,
}

impl Publisher {
    /// Publishes one batch; a worker that cannot (the broker gone for good) exits, and the
    /// batches it holds are taken over by another worker after their lease.
    fn publish(&mut self, batch: Finished) {
        if let Err(err) = self.try_publish(&batch) {
            workpool::diag!("worker {}: cannot publish outcomes: {err}", self.name);
            std::process::exit(1);
        }
        let _ = self.freed.send(batch.id);
    }

    fn try_publish(&mut self, batch: &Finished) -> Result<(), BrokerError> {
        let entry = OutcomeEntryRef {
            route: batch.route,
            consumer: &self.name,
            pid: std::process::id(),
            outcomes: &batch.outcomes,
        };
        let frame = codec::encode(&entry)?;
        let url = &self.url;
        with_retries(url, &mut self.con, |con| {
            broker::finish(url, con, &batch.run, &batch.id, &frame)
        })
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
                    workpool::diag!("worker: {err}; waiting until it is a stream again");
                    waiting = true;
                }
                std::thread::sleep(CORRUPT_PAUSE);
                // A missing group once the key is removed is then joined anew.
                started = Instant::now();
            }
            Err(err) if err.is_missing_group() && started.elapsed() < RECONNECT_FOR => {
                workpool::diag!(
                    "worker: the consumer group is gone (broker restarted?); joining anew"
                );
                broker::ensure_group(url, con)?;
            }
            Err(err) if err.is_connection() && started.elapsed() < RECONNECT_FOR => {
                workpool::diag!("worker: {err}; reconnecting");
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

/// The main loop's state: what this worker holds, and when it last renewed and reclaimed.
struct Server {
    settings: Settings,
    con: redis::Connection,
    /// What is known of each run, and since when (trusted for [`SPEC_TTL`]).
    runs: HashMap<String, (RunState, Instant)>,
    /// Entries given up as unreadable or unrunnable so far.
    buried: u64,
    /// Entries taken and not yet acknowledged.
    held: HashSet<String>,
    jobs: Sender<Job>,
    /// Where the next `XAUTOCLAIM` scan continues.
    cursor: String,
    last_keepalive: Instant,
    last_reclaim: Instant,
}

impl Server {
    fn run(&mut self, freed: &Receiver<String>, stop: &AtomicBool) -> anyhow::Result<()> {
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
                    workpool::diag!(
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
            let free = capacity.saturating_sub(self.held.len());
            if free == 0 {
                continue;
            }
            let (url, name) = (self.settings.url.clone(), self.settings.name.clone());
            let entries = with_retries(&url, &mut self.con, |con| {
                broker::read_tasks(&url, con, &name, free, POLL)
            })?;
            for entry in entries {
                self.admit(entry, 1)?;
            }
        }
    }

    /// Renews the leases of held entries, a third of a lease after the last renewal.
    fn renew_leases(&mut self) -> anyhow::Result<()> {
        if self.last_keepalive.elapsed() < self.settings.lease / 3 {
            return Ok(());
        }
        self.last_keepalive = Instant::now();
        let ids: Vec<String> = self.held.iter().cloned().collect();
        let (url, name) = (self.settings.url.clone(), self.settings.name.clone());
        with_retries(&url, &mut self.con, |con| {
            broker::keep_alive(&url, con, &name, &ids)
        })?;
        Ok(())
    }

    /// Takes over entries whose worker stopped renewing them, a quarter lease apart.
    fn reclaim(&mut self, free: usize) -> anyhow::Result<()> {
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
            workpool::diag!(
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
    fn admit(&mut self, entry: Entry, deliveries: u64) -> anyhow::Result<()> {
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
        let spec = match self.run_state(&entry.run)? {
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
        };
        if deliveries > self.settings.max_deliveries {
            let message = format!(
                "given up after {deliveries} deliveries: each worker that took this batch \
                 stopped before finishing it (lease {:?})",
                self.settings.lease
            );
            let batch = job.failed(ErrorKind::WorkerCrashed, &message);
            let entry = OutcomeEntryRef {
                route: batch.route,
                consumer: &self.settings.name,
                pid: std::process::id(),
                outcomes: &batch.outcomes,
            };
            let frame = codec::encode(&entry)?;
            let url = self.settings.url.clone();
            with_retries(&url, &mut self.con, |con| {
                broker::finish(&url, con, &batch.run, &batch.id, &frame)
            })?;
            return Ok(());
        }
        self.held.insert(id);
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("every executor thread has stopped"))
    }

    fn acknowledge(&mut self, run: &str, id: &str) -> anyhow::Result<()> {
        let url = self.settings.url.clone();
        with_retries(&url, &mut self.con, |con| {
            broker::finish(&url, con, run, id, &[])
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
    ) -> anyhow::Result<()> {
        self.buried += 1;
        workpool::diag!(
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

    /// What is known of a run (cached for [`SPEC_TTL`]).
    fn run_state(&mut self, run: &str) -> anyhow::Result<RunState> {
        if let Some((state, at)) = self.runs.get(run) {
            if at.elapsed() < SPEC_TTL {
                return Ok(state.clone());
            }
        }
        let url = self.settings.url.clone();
        let found = with_retries(&url, &mut self.con, |con| {
            // Unreadable settings are an answer here, not an error to retry.
            match broker::get_spec(&url, con, run) {
                Err(err) if err.corrupt_key().is_some() => Ok(Err(err)),
                other => other.map(Ok),
            }
        })?;
        let state = match found {
            Ok(Some(spec)) => RunState::Live(Arc::new(spec)),
            Ok(None) => RunState::Over,
            Err(err) => RunState::Unreadable(err.to_string()),
        };
        self.runs.retain(|_, (_, at)| at.elapsed() < SPEC_TTL * 60);
        self.runs
            .insert(run.to_string(), (state.clone(), Instant::now()));
        Ok(state)
    }
}
