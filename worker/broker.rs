//! `worker --broker URL`: serves runs through Redis Streams from any host. It joins the
//! consumer group of the tasks stream, runs the batches it takes on its own threads,
//! publishes each batch's outcomes and acknowledges the entry in one atomic step.
//!
//! Crash recovery is the broker's: an entry stays pending until acknowledged, so the
//! batches of a worker that died are claimed by another (`XAUTOCLAIM`) once their lease
//! has run out. A live worker renews the leases of what it holds, so long tasks are not
//! taken from it; an entry delivered more than `--max-deliveries` times is given up with
//! `worker_crashed` outcomes rather than passed around for ever.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use crossbeam_channel::{Receiver, Sender};
use shared::broker::{self, BrokerError, BrokerUrl, OutcomeEntry, RunSpec, TaskEntry};
use shared::outcome::Arrival;
use shared::{codec, workload, ErrorKind, Outcome, Task, TaskError};

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

/// Where a broker worker runs a batch's tasks.
#[derive(Clone)]
pub enum Isolation {
    /// On the executor thread itself: cheapest; a task that aborts takes the worker down
    /// (its batches are then taken over by other workers after their lease).
    Thread,
    /// In a child `worker` process per executor thread, driven by workpool's own process
    /// pool: a crash or a `--timeout` kills only the child, which is replaced.
    Process(workpool::pool::WorkerBinary),
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

/// One entry being worked on: its batch, and the outcomes so far (in the batch's order).
struct Job {
    id: String,
    entry: TaskEntry,
    spec: Arc<RunSpec>,
    arrival: Arrival,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    /// The next task to start.
    next: usize,
    outcomes: Vec<Outcome>,
}

impl Job {
    fn tasks(&self) -> &[Task] {
        &self.entry.tasks
    }

    /// Adds the next outcome; hands the job to the publisher once every task has one.
    fn record(self: &Arc<Self>, outcome: Outcome, done: &Sender<Arc<Job>>) {
        let complete = {
            let mut progress = lock(&self.progress);
            progress.outcomes.push(outcome);
            progress.outcomes.len() == self.tasks().len()
        };
        if complete {
            let _ = done.send(Arc::clone(self));
        }
    }
}

/// What one executor thread is doing, shared with the watchdog.
#[derive(Default)]
struct Current {
    job: Option<Arc<Job>>,
    /// When the running task started.
    started: Option<Instant>,
    /// Set by the watchdog: this thread's task overran and was reported; it must not
    /// report anything more, and exits when the task returns.
    abandoned: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them half-updated (tasks run outside).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn serve(settings: Settings) -> Result<(), ServeError> {
    let url = settings.url.clone();
    let mut con = url
        .connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))
        .map_err(ServeError::Start)?;
    broker::ensure_group(&url, &mut con).map_err(ServeError::Start)?;
    let publisher_con = url
        .connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))
        .map_err(ServeError::Start)?;
    let isolation = match settings.isolation {
        Isolation::Thread => "threads",
        Isolation::Process(_) => "child processes",
    };
    eprintln!(
        "worker {}: serving {} with {} {isolation} (lease {:?}, max deliveries {})",
        settings.name, url, settings.concurrency, settings.lease, settings.max_deliveries
    );

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(&stop)?;
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Arc<Job>>();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Arc<Job>>();
    let (freed_tx, freed_rx) = crossbeam_channel::unbounded::<String>();
    {
        let url = url.clone();
        let name = settings.name.clone();
        std::thread::Builder::new()
            .name("broker-publisher".into())
            .spawn(move || {
                if let Err(err) = publish_loop(&url, publisher_con, &name, &done_rx, &freed_tx) {
                    // Unpublished entries stay pending: another worker claims them.
                    eprintln!("worker {name}: cannot publish outcomes: {err}");
                    std::process::exit(1);
                }
            })
            .context("cannot start the publisher thread")?;
    }
    let mut pool = Executors {
        jobs: jobs_rx,
        done: done_tx,
        isolation: settings.isolation.clone(),
        threads: Vec::new(),
    };
    for _ in 0..settings.concurrency {
        pool.spawn(None)?;
    }
    let mut server = Server {
        settings,
        con,
        specs: HashMap::new(),
        held: HashMap::new(),
        jobs: jobs_tx,
        done: pool.done.clone(),
        cursor: "0-0".into(),
        last_keepalive: Instant::now(),
        last_reclaim: Instant::now(),
    };
    // The loop ends once every entry it took is published (or on an error); abandoned
    // threads may still be running tasks nobody waits for, so the publisher is not joined.
    server
        .run(&mut pool, &freed_rx, &stop)
        .map_err(ServeError::Other)
}

/// SIGINT/SIGTERM: stop taking entries, finish what is held, exit. A second one exits at
/// once (what was held is then claimed by another worker after its lease).
fn watch_signals(stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let stop = Arc::clone(stop);
    workpool::app::on_interrupt(
        "worker: stopping after the batches it holds (again to exit now)",
        move || stop.store(true, Ordering::SeqCst),
    )
}

/// The threads that run batches.
struct Executors {
    jobs: Receiver<Arc<Job>>,
    done: Sender<Arc<Job>>,
    isolation: Isolation,
    threads: Vec<Arc<Mutex<Current>>>,
}

impl Executors {
    /// Starts a thread, which first finishes `resume` (the batch of a thread it replaces).
    fn spawn(&mut self, resume: Option<Arc<Job>>) -> anyhow::Result<()> {
        let current = Arc::new(Mutex::new(Current::default()));
        let (jobs, done, mine) = (self.jobs.clone(), self.done.clone(), Arc::clone(&current));
        let isolation = self.isolation.clone();
        std::thread::Builder::new()
            .name("broker-executor".into())
            .spawn(move || match isolation {
                Isolation::Thread => execute_jobs(resume, &jobs, &done, &mine),
                Isolation::Process(bin) => execute_in_child(&bin, &jobs, &done),
            })
            .context("cannot start an executor thread")?;
        self.threads.push(current);
        Ok(())
    }

    /// Reports every task that has run past its run's `--timeout` and replaces its thread:
    /// a thread cannot be stopped from outside, so it is abandoned (it exits when the task
    /// returns) and a new one goes on with the rest of the batch.
    fn expire(&mut self, name: &str) -> anyhow::Result<()> {
        let mut resume = Vec::new();
        self.threads.retain(|current| {
            let mut c = lock(current);
            let (Some(job), Some(started)) = (c.job.clone(), c.started) else {
                return true;
            };
            let Some(limit) = job.spec.timeout_ms.map(Duration::from_millis) else {
                return true;
            };
            if started.elapsed() < limit {
                return true;
            }
            c.abandoned = true;
            drop(c);
            let (task, more) = {
                let progress = lock(&job.progress);
                (progress.next - 1, progress.next < job.tasks().len())
            };
            let task = &job.tasks()[task];
            let message = format!(
                "task ran longer than the {limit:?} timeout on worker {name}; its thread \
                 cannot be stopped: abandoned and replaced"
            );
            let outcome = Outcome {
                index: task.index,
                attempt: task.attempt,
                result: Err(TaskError::new(ErrorKind::Timeout, message)),
                run_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                trace: None,
            };
            job.record(outcome, &self.done);
            resume.push(more.then_some(job));
            false
        });
        for job in resume {
            self.spawn(job)?;
        }
        Ok(())
    }
}

fn execute_jobs(
    mut resume: Option<Arc<Job>>,
    jobs: &Receiver<Arc<Job>>,
    done: &Sender<Arc<Job>>,
    current: &Mutex<Current>,
) {
    loop {
        let job = match resume.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        lock(current).job = Some(Arc::clone(&job));
        loop {
            let index = {
                let mut progress = lock(&job.progress);
                if progress.next == job.tasks().len() {
                    break;
                }
                progress.next += 1;
                progress.next - 1
            };
            lock(current).started = Some(Instant::now());
            let outcome = workload::execute(&job.spec.context, &job.tasks()[index], job.arrival);
            let mut c = lock(current);
            if c.abandoned {
                return;
            }
            c.started = None;
            drop(c);
            job.record(outcome, done);
        }
        lock(current).job = None;
    }
}

/// The executor of `--isolate process`: each batch goes to a one-worker process pool
/// (workpool's own), started for the batch's run and kept while batches of that run come.
/// The pool enforces the run's `--timeout` by killing its worker, and turns a crash into a
/// `worker_crashed` outcome, replacing the worker; this process lives on.
fn execute_in_child(
    bin: &workpool::pool::WorkerBinary,
    jobs: &Receiver<Arc<Job>>,
    done: &Sender<Arc<Job>>,
) {
    use workpool::pool::{BackendKind, Chunk, Order, Pool, PoolConfig};
    let mut local: Option<(String, Pool)> = None;
    for job in jobs {
        if local.as_ref().is_none_or(|(run, _)| *run != job.entry.run) {
            local = None; // Shuts the last run's worker down.
            let config = PoolConfig {
                backend: BackendKind::Process,
                workers: 1,
                order: Order::Input,
                chunk: Chunk::Auto,
                inflight: None,
                // Retries are the coordinator's: it sees every attempt.
                retries: 0,
                backoff: Duration::ZERO,
                context: job.spec.context.clone(),
                timeout: job.spec.timeout_ms.map(Duration::from_millis),
                first: None,
                fail_fast: false,
                worker_bin: Some(bin.clone()),
                broker: None,
            };
            match Pool::start(config) {
                Ok(pool) => local = Some((job.entry.run.clone(), pool)),
                Err(err) => {
                    // Reported as a crash of this batch: the coordinator may retry it.
                    let message = format!("cannot start a child worker: {err}");
                    for task in job.tasks() {
                        let result = Err(TaskError::new(ErrorKind::WorkerCrashed, &message));
                        job.record(outcome_of(task, result, 0), done);
                    }
                    continue;
                }
            }
        }
        let Some((_, pool)) = local.as_mut() else {
            continue;
        };
        let inputs = job.tasks().iter().map(|t| t.input.clone());
        let records: Vec<_> = pool.map(inputs).collect();
        for record in records {
            let Some(task) = usize::try_from(record.index)
                .ok()
                .and_then(|i| job.tasks().get(i))
            else {
                continue;
            };
            let run_us = (record.elapsed_ms * 1000.0) as u64;
            job.record(outcome_of(task, record.result, run_us), done);
        }
    }
}

fn outcome_of(task: &Task, result: Result<shared::Value, TaskError>, run_us: u64) -> Outcome {
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
fn publish_loop(
    url: &BrokerUrl,
    mut con: redis::Connection,
    name: &str,
    done: &Receiver<Arc<Job>>,
    freed: &Sender<String>,
) -> Result<(), BrokerError> {
    for job in done {
        let outcomes = std::mem::take(&mut lock(&job.progress).outcomes);
        let entry = OutcomeEntry {
            route: job.entry.route,
            consumer: name.to_string(),
            pid: std::process::id(),
            outcomes,
        };
        let frame = codec::encode(&entry)?;
        with_retries(url, &mut con, |con| {
            broker::finish(url, con, &job.entry.run, &job.id, &frame)
        })?;
        let _ = freed.send(job.id.clone());
    }
    Ok(())
}

/// Runs a broker command, reconnecting for up to [`RECONNECT_FOR`] if the connection
/// fails; a refused command is returned at once.
fn with_retries<T>(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    mut command: impl FnMut(&mut redis::Connection) -> Result<T, BrokerError>,
) -> Result<T, BrokerError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match command(con) {
            Err(err) if err.is_missing_group() && started.elapsed() < RECONNECT_FOR => {
                eprintln!("worker: the consumer group is gone (broker restarted?); joining anew");
                broker::ensure_group(url, con)?;
            }
            Err(err) if err.is_connection() && started.elapsed() < RECONNECT_FOR => {
                eprintln!("worker: {err}; reconnecting");
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

/// The main loop's state: what this worker holds, and when it last renewed and reclaimed.
struct Server {
    settings: Settings,
    con: redis::Connection,
    specs: HashMap<String, (Option<Arc<RunSpec>>, Instant)>,
    /// Entries taken and not yet acknowledged.
    held: HashMap<String, ()>,
    jobs: Sender<Arc<Job>>,
    /// Where finished batches go to be published (entries given up go there directly).
    done: Sender<Arc<Job>>,
    /// Where the next `XAUTOCLAIM` scan continues.
    cursor: String,
    last_keepalive: Instant,
    last_reclaim: Instant,
}

impl Server {
    fn run(
        &mut self,
        pool: &mut Executors,
        freed: &Receiver<String>,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        // Up to one batch queued behind each running one, so a thread finds its next
        // batch here instead of waiting a round trip to the broker.
        let capacity = self.settings.concurrency * 2;
        loop {
            while let Ok(id) = freed.try_recv() {
                self.held.remove(&id);
            }
            pool.expire(&self.settings.name)?;
            let stopping = stop.load(Ordering::SeqCst);
            if stopping && self.held.is_empty() {
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
            for (id, frame) in entries {
                self.admit(id, frame, 1)?;
            }
        }
    }

    /// Renews the leases of held entries, a third of a lease after the last renewal.
    fn renew_leases(&mut self) -> anyhow::Result<()> {
        if self.last_keepalive.elapsed() < self.settings.lease / 3 {
            return Ok(());
        }
        self.last_keepalive = Instant::now();
        let ids: Vec<String> = self.held.keys().cloned().collect();
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
            eprintln!(
                "worker {name}: took over {} batch(es) whose worker stopped renewing them",
                claimed.len()
            );
        }
        for (id, frame) in claimed {
            let deliveries = with_retries(&url, &mut self.con, |con| {
                broker::deliveries(&url, con, &id)
            })?;
            self.admit(id, frame, deliveries.unwrap_or(1))?;
        }
        Ok(())
    }

    /// Looks at one delivered entry and either starts it, gives it up, or drops it.
    fn admit(&mut self, id: String, frame: Option<Vec<u8>>, deliveries: u64) -> anyhow::Result<()> {
        let Some(frame) = frame else {
            // Deleted since it was published (its run was cancelled): just acknowledge.
            return self.acknowledge("", &id);
        };
        let protocol = codec::decode_prefix_u32(&frame).unwrap_or(0);
        if protocol != broker::BROKER_PROTOCOL {
            // Left pending for a worker of the right build to claim.
            bail!(
                "entry {id} was published by a coordinator speaking broker protocol \
                 {protocol}; this worker speaks {}",
                broker::BROKER_PROTOCOL
            );
        }
        let entry: TaskEntry = match broker::decode_entry(&id, &frame) {
            Ok(entry) => entry,
            Err(err) => {
                eprintln!(
                    "worker {}: dropping a corrupt entry: {err}",
                    self.settings.name
                );
                return self.acknowledge("", &id);
            }
        };
        let Some(spec) = self.spec(&entry.run)? else {
            // The run is over (finished, stopped or cancelled): nothing to do.
            return self.acknowledge(&entry.run, &id);
        };
        let job = Arc::new(Job {
            id: id.clone(),
            entry,
            spec,
            arrival: Arrival::now(),
            progress: Mutex::new(Progress::default()),
        });
        self.held.insert(id, ());
        if deliveries > self.settings.max_deliveries {
            let message = format!(
                "given up after {deliveries} deliveries: each worker that took this batch \
                 stopped before finishing it (lease {:?})",
                self.settings.lease
            );
            for task in job.tasks() {
                let outcome = Outcome {
                    index: task.index,
                    attempt: task.attempt,
                    result: Err(TaskError::new(ErrorKind::WorkerCrashed, message.clone())),
                    run_us: 0,
                    trace: None,
                };
                lock(&job.progress).next += 1;
                job.record(outcome, &self.done);
            }
            return Ok(());
        }
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

    /// The settings of a live run (cached for [`SPEC_TTL`]), None if it is over.
    fn spec(&mut self, run: &str) -> anyhow::Result<Option<Arc<RunSpec>>> {
        if let Some((spec, at)) = self.specs.get(run) {
            if at.elapsed() < SPEC_TTL {
                return Ok(spec.clone());
            }
        }
        let url = self.settings.url.clone();
        let spec = with_retries(&url, &mut self.con, |con| broker::get_spec(&url, con, run))?;
        if let Some(spec) = &spec {
            if spec.protocol != broker::BROKER_PROTOCOL {
                bail!(
                    "run {run} was started by a coordinator speaking broker protocol {}; \
                     this worker speaks {}",
                    spec.protocol,
                    broker::BROKER_PROTOCOL
                );
            }
        }
        let spec = spec.map(Arc::new);
        self.specs.retain(|_, (_, at)| at.elapsed() < SPEC_TTL * 60);
        self.specs
            .insert(run.to_string(), (spec.clone(), Instant::now()));
        Ok(spec)
    }
}
