//! Scheduling, written once for every backend: which task goes to which runner and when,
//! matching outcomes to tasks, and the run's stop rules. The parts it is built from are
//! modules of their own, each tested alone: the batching policy ([`super::batching`]),
//! the reorder buffer ([`super::reorder`]), the retry queue ([`super::retry`]) and the
//! recovery of a lost runner ([`super::recovery`]); [`super::mock`] drives it whole.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flume::{Receiver, RecvTimeoutError, Sender};

use super::batching::{BatchPolicy, MAX_AUTO_CHUNK};
use super::record::{Phases, Record, Stats};
use super::recovery::{leftovers, loss_message, start_with_retries, Leftovers};
use super::recycle::Retirement;
use super::reorder::ReorderBuffer;
use super::retry::{backoff, RetryQueue};
use super::{Backend, Capabilities, Event, Order, PoolBuilder, PoolError, Runner};
use crate::codec::BATCH_BYTES_TARGET;
use crate::outcome::Arrival;
use crate::protocol::Job;
use crate::{ErrorKind, Outcome, Task, TaskError};

/// How many tasks past the oldest unreported one input order may start: it bounds the
/// reorder buffer when one early task is slow.
const REORDER_WINDOW: u64 = 16_384;
/// How long the scheduler spins for the next event before sleeping, on the process
/// backend: a sleeping thread takes longer to wake on a VM than a tiny task's round trip.
const SPIN: Duration = Duration::from_micros(50);
/// After an interrupt, at most this many tasks never read from the input are still listed
/// as `cancelled`; the rest are only counted (`not_started`), so that Ctrl-C on a run of a
/// billion tasks ends in seconds rather than writing a billion records.
pub const INTERRUPT_LIST_LIMIT: u64 = 100_000;
/// While tasks never started are reported, pending events (an interrupt) are looked at
/// once per this many records.
const DRAIN_POLL_EVERY: u64 = 4096;

/// The inputs of a run, each at its first attempt: what [`Pool::map`] runs.
#[derive(Debug, Clone)]
pub struct FirstAttempts<I>(I);

impl<I: Iterator> Iterator for FirstAttempts<I> {
    type Item = (I::Item, u32);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|input| (input, 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// A pool of started workers running task type `T`, reusable across runs. Build one with
/// [`PoolBuilder`]; dropping it stops its workers.
pub struct Pool<T: Task> {
    config: PoolBuilder,
    backend: Box<dyn Backend<T>>,
    /// What the backend can do, read once: some of it is asked for every outcome.
    caps: Capabilities,
    slots: Vec<Slot<T>>,
    events: Receiver<Event<T::Output>>,
    sender: Sender<Event<T::Output>>,
    /// Start-up failures not yet counted in a run's [`Stats`].
    failed_starts: u64,
    start_time: Duration,
}

struct Slot<T: Task> {
    runner: Option<Box<dyn Runner<T>>>,
    generation: u64,
    pid: u32,
    /// Batches sent and not yet fully answered, oldest first; the worker runs them in order.
    inflight: VecDeque<Batch<T::Input>>,
    /// When the task at the head of `inflight` started: the worker runs its queue in order,
    /// so that is when the batch reached an idle worker or the previous outcomes arrived.
    head_started: Option<Instant>,
    /// Tasks sent to this runner since it started, over every run: what its task limit
    /// is counted against.
    tasks_sent: u64,
    /// The worker this runner replaced, while it runs and answers what it held, until it
    /// has exited and been reaped. One at a time: a slot holds at most two processes.
    retiree: Option<Box<Retiree<T>>>,
    /// This runner is to be retired as soon as the slot's retiree is gone; meanwhile it
    /// takes no work.
    due: Option<Retirement>,
    /// A batch could not be sent to this runner, which was then killed: it takes no work
    /// until its loss is reported (after the outcomes it had sent), and this says why.
    failed_send: Option<String>,
}

/// A worker being retired, with what it still holds.
struct Retiree<T: Task> {
    /// Its runner, generation and batches, as they were in the slot.
    state: Slot<T>,
    reason: Retirement,
}

/// A runner the scheduler hears from, by slot: the one serving it, or its retiree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Slot(usize),
    Retiree(usize),
}

impl Who {
    fn slot(self) -> usize {
        match self {
            Who::Slot(i) | Who::Retiree(i) => i,
        }
    }
}

/// A batch in flight, kept for retries, for the records' inputs, and (when tracing) for
/// when it left.
struct Batch<I> {
    tasks: VecDeque<Job<I>>,
    sent: SendTimes,
}

/// When a batch was handed to its runner, on the shared monotonic clock (tracing only).
#[derive(Debug, Clone, Copy, Default)]
struct SendTimes {
    start_ns: u64,
    /// Encoding finished (process backend), else `start_ns`.
    encoded_ns: u64,
}

impl<T: Task> Slot<T> {
    fn new(runner: Box<dyn Runner<T>>, generation: u64) -> Slot<T> {
        Slot {
            pid: runner.pid(),
            runner: Some(runner),
            generation,
            inflight: VecDeque::new(),
            head_started: None,
            tasks_sent: 0,
            retiree: None,
            due: None,
            failed_send: None,
        }
    }

    /// Batches this slot's runners hold: its own, and its retiree's.
    fn load(&self) -> usize {
        self.inflight.len() + self.retiree.as_ref().map_or(0, |r| r.state.inflight.len())
    }
}

impl<T: Task> Pool<T> {
    /// Starts every runner and waits until each has answered.
    pub(crate) fn start(config: PoolBuilder, task: T) -> Result<Pool<T>, PoolError> {
        let started = Instant::now();
        let backend = config.backend_for(task)?;
        Pool::with_backend(config, backend, started)
    }

    /// Starts every runner of `backend` (a mock one, in tests).
    pub(crate) fn with_backend(
        config: PoolBuilder,
        mut backend: Box<dyn Backend<T>>,
        started: Instant,
    ) -> Result<Pool<T>, PoolError> {
        let caps = backend.capabilities();
        let (sender, events) = flume::unbounded();
        let workers = config
            .resolved_workers()
            .min(caps.max_slots.unwrap_or(usize::MAX))
            .max(1);
        let mut failed_starts = 0;
        let mut slots = Vec::with_capacity(workers);
        for (slot, first_try) in backend.start_all(workers, &sender)?.into_iter().enumerate() {
            // One worker that fails to start (killed during its handshake) is started
            // again, as a replacement would be; only a worker that never starts is fatal.
            let runner = match first_try {
                Ok(runner) => runner,
                Err(err) if err.is_permanent() => return Err(err),
                Err(_) => {
                    failed_starts += 1;
                    start_with_retries(backend.as_mut(), slot, 0, &sender, &mut failed_starts)?
                }
            };
            slots.push(Slot::new(runner, 0));
        }
        Ok(Pool {
            config,
            caps,
            backend,
            slots,
            events,
            sender,
            failed_starts,
            start_time: started.elapsed(),
        })
    }

    /// Time from the start of [`PoolBuilder::build`] until every runner was ready.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    /// How many workers (or broker slots) the pool has.
    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// The OS processes serving the slots (all the coordinator's own on the thread and
    /// sequential backends); `bench` reads their memory.
    pub fn pids(&self) -> Vec<u32> {
        self.slots.iter().map(|s| s.pid).collect()
    }

    /// A handle that stops the current run from another thread (a signal handler).
    pub fn interrupter(&self) -> Interrupter<T::Output> {
        Interrupter(self.sender.clone())
    }

    /// Runs every input, handing out one [`Record`] per input in input order, each as
    /// soon as it and every earlier one are known (Python's `executor.map`). The inputs
    /// are read lazily: only a bounded window of them is in memory at once.
    pub fn map<I>(&mut self, inputs: I) -> Run<'_, T, FirstAttempts<I::IntoIter>>
    where
        I: IntoIterator<Item = T::Input>,
    {
        self.start_run(FirstAttempts(inputs.into_iter()), Order::Input)
    }

    /// Runs every input, handing out one [`Record`] per input as each task ends
    /// (Python's `as_completed`).
    pub fn as_completed<I>(&mut self, inputs: I) -> Run<'_, T, FirstAttempts<I::IntoIter>>
    where
        I: IntoIterator<Item = T::Input>,
    {
        self.start_run(FirstAttempts(inputs.into_iter()), Order::Completion)
    }

    /// [`Pool::map`] or [`Pool::as_completed`], as [`PoolBuilder::order`] says.
    pub fn run<I>(&mut self, inputs: I) -> Run<'_, T, FirstAttempts<I::IntoIter>>
    where
        I: IntoIterator<Item = T::Input>,
    {
        let order = self.config.order;
        self.start_run(FirstAttempts(inputs.into_iter()), order)
    }

    /// Runs tasks some attempts at which were made elsewhere: a broker worker runs the
    /// coordinator's attempt N locally as attempt N, so that what depends on the attempt
    /// is the same wherever it runs.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn run_attempts<I>(&mut self, inputs: I) -> Run<'_, T, I>
    where
        I: Iterator<Item = (T::Input, u32)>,
    {
        self.start_run(inputs, Order::Input)
    }

    fn start_run<I>(&mut self, inputs: I, order: Order) -> Run<'_, T, I>
    where
        I: Iterator<Item = (T::Input, u32)>,
    {
        // A run stopped early leaves killed runners behind, and a runner may die between
        // runs: a new run starts with a full pool. The rest is late news from the last run.
        while let Ok(event) = self.events.try_recv() {
            if let Event::Lost {
                slot, generation, ..
            } = event
            {
                let serving = self.slots.get_mut(slot);
                if let Some(lost) = serving.filter(|s| s.generation == generation) {
                    if let Some(mut runner) = lost.runner.take() {
                        runner.kill();
                    }
                }
            }
        }
        self.reap_retirees();
        self.backend.begin_run();
        for slot in 0..self.slots.len() {
            if self.slots[slot].runner.is_none() {
                let generation = self.slots[slot].generation + 1;
                let started = start_with_retries(
                    self.backend.as_mut(),
                    slot,
                    generation,
                    &self.sender,
                    &mut self.failed_starts,
                );
                match started {
                    Ok(runner) => self.slots[slot] = Slot::new(runner, generation),
                    Err(err) => crate::diag!("warning: cannot restart worker {slot}: {err}"),
                }
            }
        }
        let (lo, hi) = inputs.size_hint();
        Run {
            order,
            stop: None,
            drain: None,
            remaining_hint: (Some(lo) == hi).then_some(lo),
            inputs,
            exhausted: false,
            next_index: 0,
            ready: VecDeque::new(),
            delayed: RetryQueue::new(),
            reorder: ReorderBuffer::new(),
            completed: VecDeque::new(),
            outstanding: 0,
            policy: BatchPolicy::new(self.config.chunk, self.config.inflight, &self.caps),
            started: Instant::now(),
            started_ns: crate::clock::monotonic_ns(),
            stats: Stats {
                failed_starts: std::mem::take(&mut self.failed_starts),
                ..Stats::default()
            },
            pool: self,
        }
    }

    /// Asks every runner to finish and waits for the processes to exit; returns how long
    /// that took, the pool's cost at its end as [`Pool::start_time`] is at its start.
    pub fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        self.shutdown_all();
        started.elapsed()
    }

    fn shutdown_all(&mut self) {
        // The workers are asked first: their exits are what the shutdown waits for.
        for runner in self.slots.iter_mut().filter_map(|s| s.runner.as_mut()) {
            runner.ask_to_stop();
        }
        self.backend.stop_starting();
        self.reap_retirees();
        for slot in &mut self.slots {
            if let Some(mut runner) = slot.runner.take() {
                runner.shutdown();
            }
        }
    }

    /// Waits for every retiring worker to exit (each was asked to once it has answered
    /// what it held).
    fn reap_retirees(&mut self) {
        for slot in &mut self.slots {
            if let Some(mut runner) = slot.retiree.take().and_then(|r| r.state.runner) {
                runner.shutdown();
            }
        }
    }

    /// The runner that serves `slot` at `generation`, or its retiree.
    fn find(&self, slot: usize, generation: u64) -> Option<Who> {
        let serving = self.slots.get(slot)?;
        if serving.generation == generation {
            return Some(Who::Slot(slot));
        }
        let retiree = serving.retiree.as_ref()?;
        (retiree.state.generation == generation).then_some(Who::Retiree(slot))
    }

    /// The state of a runner [`Pool::find`] found.
    fn state(&self, who: Who) -> &Slot<T> {
        let slot = &self.slots[who.slot()];
        match (who, &slot.retiree) {
            (Who::Retiree(_), Some(retiree)) => &retiree.state,
            _ => slot,
        }
    }

    fn state_mut(&mut self, who: Who) -> &mut Slot<T> {
        let slot = &mut self.slots[who.slot()];
        match who {
            Who::Retiree(_) if slot.retiree.is_some() => match slot.retiree.as_mut() {
                Some(retiree) => &mut retiree.state,
                None => unreachable!("checked above"),
            },
            _ => slot,
        }
    }
}

impl<T: Task> Drop for Pool<T> {
    fn drop(&mut self) {
        self.shutdown_all();
    }
}

/// Stops a run from another thread: the run cancels what is left and ends.
pub struct Interrupter<O>(Sender<Event<O>>);

impl<O> Clone for Interrupter<O> {
    fn clone(&self) -> Self {
        Interrupter(self.0.clone())
    }
}

impl<O> Interrupter<O> {
    /// Stops the current run: the tasks not yet ended are reported `cancelled`.
    pub fn interrupt(&self) {
        let _ = self.0.send(Event::Interrupted);
    }
}

/// One run over a pool: an iterator of [`Record`]s, exactly one per input, in the
/// configured order, each handed out as soon as it is known.
pub struct Run<'p, T: Task, I> {
    pool: &'p mut Pool<T>,
    /// The order records are handed out in.
    order: Order,
    /// Set when the run must stop early: the reason given to the cancelled tasks.
    stop: Option<String>,
    /// Once the run stopped early or lost every runner: the error every task still in the
    /// input ends with, reported one input at a time (never collected, so memory stays flat).
    drain: Option<Drain>,
    inputs: I,
    remaining_hint: Option<usize>,
    exhausted: bool,
    next_index: u64,
    /// Tasks to send before new inputs: retries whose time has come, work of lost runners.
    ready: VecDeque<Job<T::Input>>,
    /// Retries waiting out their backoff.
    delayed: RetryQueue<Job<T::Input>>,
    /// Input order: finished records waiting for earlier ones.
    reorder: ReorderBuffer<Record<T::Input, T::Output>>,
    /// Records ready to hand out.
    completed: VecDeque<Record<T::Input, T::Output>>,
    /// Tasks taken from the input and not yet reported.
    outstanding: u64,
    /// Batch sizes and queue depths, from the run times measured so far.
    policy: BatchPolicy,
    started: Instant,
    /// The same moment on the clock traces use.
    started_ns: u64,
    stats: Stats,
}

/// Where and how long the last attempt at a task ran.
struct Attempt {
    /// (worker slot, pid), if it reached a runner.
    ran_on: Option<(u32, u32)>,
    elapsed_ms: f64,
    phases: Option<Box<Phases>>,
    /// When its outcome reached the coordinator (monotonic ns), if it came from a runner:
    /// stamped once per message, which saves a clock read per record.
    arrived_ns: Option<u64>,
}

impl Attempt {
    /// For a task that ends without running (cancelled, no worker left).
    fn none() -> Attempt {
        Attempt {
            ran_on: None,
            elapsed_ms: 0.0,
            phases: None,
            arrived_ns: None,
        }
    }
}

/// How the inputs never read end, once no task can run any more.
struct Drain {
    error: TaskError,
    /// How many more may be listed before the rest is only counted (after an interrupt).
    limit: Option<u64>,
}

impl<T: Task, I: Iterator<Item = (T::Input, u32)>> Iterator for Run<'_, T, I> {
    type Item = Record<T::Input, T::Output>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.completed.pop_front() {
                return Some(record);
            }
            if let Some(reason) = self.stop.take() {
                self.cancel_everything(&reason);
                continue;
            }
            if self.drain.is_some() {
                if self.drain_one() {
                    continue;
                }
                self.drain = None;
            }
            if self.is_finished() {
                return None;
            }
            self.dispatch();
            if !self.completed.is_empty() {
                continue;
            }
            self.wait_for_event();
        }
    }
}

impl<T: Task, I: Iterator<Item = (T::Input, u32)>> Run<'_, T, I> {
    /// Counters so far; final once the iterator has ended.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Whether the next record is available without waiting: the caller's cue to flush
    /// its output before it would otherwise block. After a stop, the tasks never started
    /// are reported one after another without waiting, however many there are.
    pub fn has_ready(&self) -> bool {
        !self.completed.is_empty() || self.stop.is_some() || self.drain.is_some()
    }

    /// When this run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    fn tracing(&self) -> bool {
        self.pool.config.trace
    }

    fn is_finished(&mut self) -> bool {
        self.outstanding == 0 && self.ready.is_empty() && self.delayed.is_empty() && {
            self.fill_exhausted();
            self.exhausted
        }
    }

    /// Learns whether the input is exhausted without losing an item.
    fn fill_exhausted(&mut self) {
        if !self.exhausted && self.ready.is_empty() {
            if let Some(task) = self.next_input() {
                self.ready.push_back(task);
            }
        }
    }

    fn next_input(&mut self) -> Option<Job<T::Input>> {
        if self.exhausted {
            return None;
        }
        match self.inputs.next() {
            Some((input, attempt)) => {
                let task = Job {
                    index: self.next_index,
                    attempt: attempt.max(1),
                    input,
                };
                self.next_index += 1;
                self.outstanding += 1;
                self.stats.tasks += 1;
                if let Some(n) = &mut self.remaining_hint {
                    *n = n.saturating_sub(1);
                }
                Some(task)
            }
            None => {
                self.exhausted = true;
                None
            }
        }
    }

    /// Sends work to the least-loaded runners until each has its queue full or nothing is
    /// ready to go.
    fn dispatch(&mut self) {
        self.release_due_retries();
        let depth = self.policy.depth();
        let chunk = self
            .policy
            .chunk_size(self.remaining_hint, self.pool.slots.len());
        while let Some(slot) = self.least_loaded(depth) {
            let sent = self.pool.slots[slot].tasks_sent;
            let batch = self.take_batch(self.pool.config.recycle.batch_room(sent, chunk));
            if batch.is_empty() {
                break;
            }
            self.send(slot, batch);
            if !self.completed.is_empty() {
                // The sequential backend answers within `send`: hand that out first.
                break;
            }
        }
    }

    /// The live runner with the fewest batches queued, if one has room for another. A
    /// slot's retiree counts: while it drains, its replacement takes only what keeps the
    /// slot's queue at its depth.
    fn least_loaded(&self, depth: usize) -> Option<usize> {
        self.pool
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.runner.is_some() && s.due.is_none() && s.failed_send.is_none() && s.load() < depth
            })
            .min_by_key(|(_, s)| s.load())
            .map(|(i, _)| i)
    }

    fn take_batch(&mut self, chunk: usize) -> Vec<Job<T::Input>> {
        // The capacity is not sized by --chunk alone: a huge chunk over a short input
        // would reserve memory that is never used.
        let mut batch = Vec::with_capacity(chunk.min(MAX_AUTO_CHUNK));
        let mut bytes = 0;
        while batch.len() < chunk && bytes < BATCH_BYTES_TARGET {
            let task = match self.ready.pop_front() {
                Some(task) => task,
                None => {
                    let ahead = self.next_index.saturating_sub(self.reorder.next_index());
                    if self.order == Order::Input && ahead >= REORDER_WINDOW {
                        break;
                    }
                    match self.next_input() {
                        Some(task) => task,
                        None => break,
                    }
                }
            };
            bytes += T::input_bytes(&task.input);
            batch.push(task);
        }
        if !batch.is_empty() {
            self.policy.sent(bytes);
        }
        batch
    }

    fn send(&mut self, slot_index: usize, batch: Vec<Job<T::Input>>) {
        let Slot {
            runner,
            inflight,
            head_started,
            tasks_sent,
            ..
        } = &mut self.pool.slots[slot_index];
        let Some(runner) = runner.as_mut() else {
            self.ready.extend(batch);
            return;
        };
        self.stats.batches += 1;
        self.stats.largest_batch = self.stats.largest_batch.max(batch.len());
        *tasks_sent += batch.len() as u64;
        let spent = self.pool.config.recycle.spent(*tasks_sent);
        // The batch stays here (for retries and for the records' inputs); the runner sees
        // it borrowed, so only a backend that must own it (threads) copies it.
        if inflight.is_empty() {
            *head_started = Some(Instant::now());
        }
        let start_ns = if self.pool.config.trace {
            crate::clock::monotonic_ns()
        } else {
            0
        };
        inflight.push_back(Batch {
            tasks: VecDeque::from(batch),
            sent: SendTimes {
                start_ns,
                encoded_ns: start_ns,
            },
        });
        let sent = match inflight.back_mut() {
            Some(queued) => runner.send(queued.tasks.make_contiguous()).map(|encoded| {
                if let Some(ns) = encoded.filter(|_| start_ns > 0) {
                    queued.sent.encoded_ns = ns;
                }
            }),
            None => Ok(()),
        };
        match sent {
            Err(reason) if self.pool.caps.loss_follows_outcomes => {
                // The worker may have died with outcomes still on their way: they come
                // before its loss is reported, which then blames only what was running.
                // Killed, it is sure to be reported.
                let slot = &mut self.pool.slots[slot_index];
                let exit = slot.runner.as_mut().and_then(|r| r.kill());
                slot.failed_send = Some(match exit {
                    Some(exit) => format!("{exit} ({reason})"),
                    None => reason,
                });
            }
            Err(reason) => self.lose(Who::Slot(slot_index), reason),
            Ok(()) if spent => self.retire(slot_index, Retirement::MaxTasks),
            Ok(()) => {}
        }
    }

    fn release_due_retries(&mut self) {
        // No clock read on every dispatch when nothing waits (the common case).
        if self.delayed.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(job) = self.delayed.pop_due(now) {
            self.ready.push_back(job);
        }
    }

    /// The earliest moment a running task exceeds `--timeout`, and its runner.
    fn next_deadline(&self) -> Option<(Instant, Who)> {
        let limit = self
            .pool
            .config
            .timeout
            .filter(|_| !self.pool.caps.enforces_timeouts)?;
        let started = self.pool.slots.iter().enumerate().flat_map(|(i, s)| {
            let retiree = s.retiree.as_ref().and_then(|r| r.state.head_started);
            [
                s.head_started.map(|t| (t, Who::Slot(i))),
                retiree.map(|t| (t, Who::Retiree(i))),
            ]
        });
        started
            .flatten()
            .min_by_key(|(t, _)| *t)
            .map(|(t, who)| (t + limit, who))
    }

    fn wait_for_event(&mut self) {
        let wake = [
            self.delayed.next_due(),
            self.next_deadline().map(|(at, _)| at),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = wake.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        // Outcomes from worker processes reach this thread through their reader threads;
        // spinning briefly saves the wake-up of a sleeping scheduler (see `SPIN`) when a
        // round trip is what the run waits on: at most one batch per worker in flight.
        // Not with threads (the runner needs the other core) and not when batches are
        // pipelined (the workers need every core, and events come often anyway): those
        // spin only as the pool's other hand-offs do (`BRIEF_SPIN`).
        let latency_bound = self.pool.caps.spin_for_outcomes
            && self.pool.slots.iter().all(|s| s.inflight.len() <= 1);
        let spin = if latency_bound {
            SPIN
        } else {
            crate::BRIEF_SPIN
        };
        let event = match crate::recv_spinning(&self.pool.events, spin, timeout) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                self.expire_late_tasks();
                return;
            }
            // The pool holds a sender itself, so this cannot happen.
            Err(RecvTimeoutError::Disconnected) => return,
        };
        self.handle(event);
        // Take whatever else has arrived before dispatching again.
        while let Ok(event) = self.pool.events.try_recv() {
            self.handle(event);
        }
        self.expire_late_tasks();
    }

    /// Stops every runner whose current task has run past `--timeout`: the task ends
    /// `timeout` (or is retried) and the runner is replaced.
    fn expire_late_tasks(&mut self) {
        let Some(limit) = self.pool.config.timeout else {
            return;
        };
        while let Some((at, who)) = self.next_deadline() {
            if at > Instant::now() {
                break;
            }
            let how = if self.pool.caps.kills_runners {
                "worker killed and replaced"
            } else {
                // See thread.rs: a thread cannot be stopped from outside.
                "its thread cannot be killed: abandoned and replaced"
            };
            let reason = format!("task ran longer than the {limit:?} timeout; {how}");
            self.lose_as(who, ErrorKind::Timeout, reason);
        }
    }

    fn handle(&mut self, event: Event<T::Output>) {
        match event {
            Event::Outcomes {
                slot,
                generation,
                outcomes,
                arrival,
                pid,
            } => {
                let Some(who) = self.pool.find(slot, generation) else {
                    return; // From a runner already replaced; its tasks were reassigned.
                };
                let state = self.pool.state(who);
                let pid = pid.map_or(state.pid, |p| p.get());
                let batches_before = state.inflight.len();
                let mut settled_any = false;
                for outcome in outcomes {
                    match self.pop_inflight(who, &outcome) {
                        Some((task, sent)) => {
                            settled_any = true;
                            let phases = self.phases(sent, &outcome, arrival);
                            let arrived_ns = arrival.received_ns;
                            let ran_on = (slot as u32, pid);
                            self.finish_attempt(ran_on, task, outcome, phases, arrived_ns);
                        }
                        // At-least-once delivery: this task was settled already.
                        None if self.pool.caps.batches_interleave => {
                            self.stats.duplicates += 1;
                        }
                        None => {
                            // The task it was running is timed from its own start.
                            if settled_any {
                                self.next_task_started(who);
                            }
                            let reason = format!(
                                "reported task {} attempt {}, which it was not running",
                                outcome.index, outcome.attempt
                            );
                            self.lose(who, reason);
                            return;
                        }
                    }
                }
                if settled_any {
                    self.next_task_started(who);
                }
                self.after_outcomes(who, batches_before);
            }
            Event::Lost {
                slot,
                generation,
                reason,
            } => match self.pool.find(slot, generation) {
                // A retired worker that answered everything has exited, as asked.
                Some(Who::Retiree(i)) if self.pool.state(Who::Retiree(i)).inflight.is_empty() => {
                    let retiree = self.pool.slots[i].retiree.take();
                    if let Some(mut runner) = retiree.and_then(|r| r.state.runner) {
                        runner.shutdown();
                    }
                    self.retire_if_due(i);
                }
                Some(who) => {
                    let state = self.pool.state_mut(who);
                    let reason = state.failed_send.take().unwrap_or(reason);
                    self.lose(who, reason)
                }
                None => {}
            },
            Event::BackendDown { reason } => self.abandon_everything(&reason),
            Event::Republish => self.republish(),
            Event::Interrupted => {
                self.stats.interrupted = true;
                // Already listing what will not run: stop listing, count the rest.
                if let Some(drain) = &mut self.drain {
                    drain.limit = Some(0);
                }
                self.request_stop("interrupted".to_string());
            }
        }
    }

    /// Asks the run to stop at the next step; the first reason given wins.
    fn request_stop(&mut self, reason: String) {
        if self.stats.stopped.is_none() {
            self.stats.stopped = Some(reason.clone());
            self.stop = Some(reason);
        }
    }

    /// Ends the run now: kills runners that are busy (their tasks would be wasted work),
    /// reports every task already taken from the input as `cancelled`, in input order, and
    /// leaves the inputs never read to [`Run::drain_one`].
    fn cancel_everything(&mut self, reason: &str) {
        let mut tasks: Vec<Job<T::Input>> = Vec::new();
        for slot in &mut self.pool.slots {
            if slot.inflight.is_empty() {
                continue;
            }
            if let Some(mut runner) = slot.runner.take() {
                runner.kill();
            }
            // Outcomes still on their way from the killed runner must be ignored.
            slot.generation += 1;
            slot.head_started = None;
            tasks.extend(slot.inflight.drain(..).flat_map(|b| b.tasks));
        }
        tasks.extend(self.stop_retirees());
        tasks.extend(self.take_unstarted());
        tasks.sort_by_key(|t| t.index);
        let error = TaskError::new(ErrorKind::Cancelled, reason);
        for task in tasks {
            self.record(task, Err(error.clone()), Attempt::none());
        }
        let limit = self.stats.interrupted.then_some(INTERRUPT_LIST_LIMIT);
        self.drain = Some(Drain { error, limit });
    }

    /// Reports the next input never read with the drain's error. Returns false when there
    /// is none left, or when an interrupt's listing limit is reached: the rest is then
    /// counted, not read.
    fn drain_one(&mut self) -> bool {
        let Some(drain) = &mut self.drain else {
            return false;
        };
        if drain.limit == Some(0) {
            let (lo, hi) = self.inputs.size_hint();
            self.stats.not_started = (Some(lo) == hi).then_some(lo as u64);
            self.exhausted = true;
            return false;
        }
        if let Some(left) = &mut drain.limit {
            *left -= 1;
        }
        let error = drain.error.clone();
        let Some(task) = self.next_input() else {
            return false;
        };
        self.record(task, Err(error), Attempt::none());
        // A long listing must still hear an interrupt (to cut it short).
        if self.next_index.is_multiple_of(DRAIN_POLL_EVERY) {
            while let Ok(event) = self.pool.events.try_recv() {
                self.handle(event);
            }
        }
        true
    }

    /// Matches an outcome against the task the runner should have finished next: the
    /// head of its oldest batch, or of any of its batches where they interleave.
    fn pop_inflight(
        &mut self,
        who: Who,
        outcome: &Outcome<T::Output>,
    ) -> Option<(Job<T::Input>, SendTimes)> {
        let interleave = self.pool.caps.batches_interleave;
        let state = self.pool.state_mut(who);
        let inflight = &mut state.inflight;
        let answers = |batch: &Batch<T::Input>| {
            batch
                .tasks
                .front()
                .is_some_and(|t| t.index == outcome.index && t.attempt == outcome.attempt)
        };
        let position = if inflight.front().is_some_and(answers) {
            0
        } else if interleave {
            inflight.iter().position(answers)?
        } else {
            return None;
        };
        let batch = &mut inflight[position];
        let sent = batch.sent;
        let task = batch.tasks.pop_front().map(|t| (t, sent));
        if batch.tasks.is_empty() {
            inflight.remove(position);
        }
        task
    }

    /// After a message of outcomes was taken: the runner went straight on to its next
    /// queued task, if any. Once per message, not per outcome: a clock read per task would
    /// cost the per-task path, and the outcomes of one message arrived together anyway.
    fn next_task_started(&mut self, who: Who) {
        let state = self.pool.state_mut(who);
        state.head_started = (!state.inflight.is_empty()).then(Instant::now);
    }

    /// After a runner's outcomes were taken: a retiring worker that has answered
    /// everything counts as retired, and a serving one that finished a batch has its
    /// memory checked (between batches, never per task).
    fn after_outcomes(&mut self, who: Who, batches_before: usize) {
        match who {
            Who::Retiree(i) => {
                let Some(retiree) = &self.pool.slots[i].retiree else {
                    return;
                };
                if retiree.state.inflight.is_empty() && batches_before > 0 {
                    self.stats.count_retired(retiree.reason);
                }
            }
            Who::Slot(i) => {
                let recycle = self.pool.config.recycle;
                let slot = &self.pool.slots[i];
                if recycle.max_rss_bytes.is_none() || slot.inflight.len() >= batches_before {
                    return;
                }
                let rss = slot.runner.as_ref().and_then(|r| r.resident_bytes());
                if rss.is_some_and(|rss| recycle.over_memory(rss)) {
                    self.retire(i, Retirement::MaxRss);
                }
            }
        }
    }

    /// Retires the worker of a slot: it is asked to exit once it has answered what it
    /// holds, and a fresh one takes the slot at once, so the pool stays at strength.
    /// Nothing it holds is sent elsewhere: it runs there, once. While the slot's previous
    /// retiree is still there, the retirement waits (and the worker takes no work), so
    /// that a slot never holds more than two processes.
    fn retire(&mut self, index: usize, reason: Retirement) {
        let slot = &mut self.pool.slots[index];
        if slot.retiree.is_some() {
            slot.due = Some(reason);
            return;
        }
        let Some(runner) = slot.runner.as_mut() else {
            return;
        };
        runner.retire();
        let state = Slot {
            runner: slot.runner.take(),
            generation: slot.generation,
            pid: slot.pid,
            inflight: std::mem::take(&mut slot.inflight),
            head_started: slot.head_started.take(),
            tasks_sent: slot.tasks_sent,
            retiree: None,
            due: None,
            failed_send: slot.failed_send.take(),
        };
        if state.inflight.is_empty() {
            self.stats.count_retired(reason);
        }
        slot.retiree = Some(Box::new(Retiree { state, reason }));
        self.restart(index, "was retired");
    }

    /// The slot's retiree is gone: a retirement that waited for it happens now.
    fn retire_if_due(&mut self, index: usize) {
        if let Some(reason) = self.pool.slots[index].due.take() {
            self.retire(index, reason);
        }
    }

    /// The phases of a traced task's round trip, up to the scheduler taking its outcome.
    fn phases(
        &self,
        sent: SendTimes,
        outcome: &Outcome<T::Output>,
        arrival: Arrival,
    ) -> Option<Box<Phases>> {
        let trace = outcome.trace.filter(|_| self.tracing())?;
        let now = crate::clock::monotonic_ns();
        let us = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1000.0;
        let mut p = Phases {
            queued_us: us(self.started_ns, sent.start_ns),
            encode_us: us(sent.start_ns, sent.encoded_ns),
            transfer_to_us: us(sent.encoded_ns, trace.received_ns),
            decode_us: us(trace.received_ns, trace.decoded_ns),
            worker_wait_us: us(trace.decoded_ns, trace.started_ns),
            run_us: us(trace.started_ns, trace.finished_ns),
            transfer_back_us: us(trace.finished_ns, arrival.received_ns),
            decode_result_us: us(arrival.received_ns, arrival.decoded_ns),
            coordinator_wait_us: us(arrival.decoded_ns, now),
            settled_ns: now,
            ..Phases::default()
        };
        p.total_us = us(self.started_ns, now);
        Some(Box::new(p))
    }

    fn finish_attempt(
        &mut self,
        ran_on: (u32, u32),
        task: Job<T::Input>,
        outcome: Outcome<T::Output>,
        phases: Option<Box<Phases>>,
        arrived_ns: u64,
    ) {
        let run_us = outcome.run_us as f64;
        self.policy.observe(run_us);
        let attempt = Attempt {
            ran_on: Some(ran_on),
            elapsed_ms: run_us / 1000.0,
            phases,
            arrived_ns: Some(arrived_ns),
        };
        self.settle(task, outcome.result, attempt);
    }

    /// Reports a task's final result, or schedules another attempt if the failure is
    /// transient and retries remain.
    fn settle(
        &mut self,
        task: Job<T::Input>,
        result: Result<T::Output, TaskError>,
        attempt: Attempt,
    ) {
        if let Err(err) = &result {
            if err.kind.is_transient() && task.attempt <= self.pool.config.retries {
                let config = &self.pool.config;
                let delay = backoff(config.backoff, config.seed, task.index, task.attempt);
                self.stats.retries += 1;
                let retry = Job {
                    attempt: task.attempt + 1,
                    ..task
                };
                self.delayed.push(Instant::now() + delay, retry);
                return;
            }
        }
        self.record(task, result, attempt);
    }

    /// Reports a task's final result and hands it to the output in the configured order.
    fn record(
        &mut self,
        task: Job<T::Input>,
        result: Result<T::Output, TaskError>,
        attempt: Attempt,
    ) {
        let Attempt {
            ran_on,
            elapsed_ms,
            phases,
            arrived_ns,
        } = attempt;
        let arrived_ns = arrived_ns.unwrap_or_else(crate::clock::monotonic_ns);
        let result = match (result, self.pool.config.first) {
            // A task that was already running when `--first` was reached: it ran, but the
            // records honour N (the summary counts it).
            (Ok(_), Some(n)) if self.stats.succeeded >= n => {
                self.stats.succeeded_beyond_first += 1;
                Err(TaskError::new(
                    ErrorKind::Cancelled,
                    format!("--first {n} reached (this task succeeded after that)"),
                ))
            }
            (result, _) => result,
        };
        match &result {
            Ok(_) => {
                self.stats.succeeded += 1;
                if let Some(n) = self.pool.config.first {
                    if self.stats.succeeded >= n {
                        self.request_stop(format!("--first {n} reached"));
                    }
                }
            }
            Err(err) if err.kind == ErrorKind::Cancelled => self.stats.cancelled += 1,
            Err(err) => {
                self.stats.failed += 1;
                *self
                    .stats
                    .failed_by_kind
                    .entry(err.kind.as_str())
                    .or_insert(0) += 1;
                if self.pool.config.fail_fast {
                    self.request_stop(format!("--fail-fast: task {} failed", task.index));
                }
            }
        }
        self.outstanding -= 1;
        let record = Record {
            index: task.index,
            input: task.input,
            result,
            attempts: task.attempt,
            worker: ran_on.map(|(w, _)| w),
            pid: ran_on.map(|(_, p)| p),
            elapsed_ms,
            finished_ms: arrived_ns.saturating_sub(self.started_ns) as f64 / 1e6,
            phases,
        };
        match self.order {
            Order::Completion => self.completed.push_back(record),
            // The next record in line skips the reorder buffer: the common case.
            Order::Input if self.reorder.is_next(record.index) && record.phases.is_none() => {
                self.completed.push_back(record);
                self.reorder.skip();
                while let Some(record) = self.reorder.pop_ready() {
                    self.completed.push_back(record);
                }
            }
            Order::Input => {
                self.reorder.insert(record.index, record);
                while let Some(mut record) = self.reorder.pop_ready() {
                    if let Some(p) = &mut record.phases {
                        let now = crate::clock::monotonic_ns();
                        p.reorder_us = now.saturating_sub(p.settled_ns) as f64 / 1000.0;
                        p.total_us += p.reorder_us;
                    }
                    self.completed.push_back(record);
                }
            }
        }
    }

    /// A runner is gone: reap it, fail the task it was running (retried if allowed), put
    /// the tasks it had not started back in line, and start a replacement.
    fn lose(&mut self, who: Who, reason: String) {
        self.lose_as(who, ErrorKind::WorkerCrashed, reason);
    }

    /// Like [`Run::lose`], with the error kind the running task ends with. A retiring
    /// worker lost this way is an ordinary crash; its replacement already serves its slot.
    fn lose_as(&mut self, who: Who, kind: ErrorKind, reason: String) {
        let slot_index = who.slot();
        let slot = self.pool.state_mut(who);
        // How long the running task had run, measured before the kill adds its own time.
        let ran_ms = slot
            .head_started
            .take()
            .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
        let exit = slot.runner.as_mut().and_then(|r| r.kill());
        slot.runner = None;
        let pid = slot.pid;
        let Leftovers { running, queued } = leftovers(slot.inflight.drain(..).map(|b| b.tasks));
        if let Who::Retiree(i) = who {
            self.pool.slots[i].retiree = None;
        }
        let timed_out = kind == ErrorKind::Timeout;
        let message = loss_message(slot_index, pid, timed_out, exit, &reason);
        if let Some(running) = running {
            let err = TaskError::new(kind, message.clone());
            let attempt = Attempt {
                ran_on: Some((slot_index as u32, pid)),
                elapsed_ms: ran_ms,
                phases: None,
                arrived_ns: None,
            };
            self.settle(running, Err(err), attempt);
        }
        // Unstarted tasks go first in line, ahead of new inputs, in their original order.
        for task in queued.into_iter().rev() {
            self.ready.push_front(task);
        }
        self.stats.workers_replaced += 1;
        match who {
            Who::Slot(i) => self.restart(i, &message),
            Who::Retiree(i) => self.retire_if_due(i),
        }
    }

    /// Starts a replacement for a lost runner. A replacement can itself fail to start (it
    /// was killed during its handshake, the machine is out of processes), so it is tried a
    /// few times with growing pauses before the slot is given up.
    fn restart(&mut self, slot_index: usize, after: &str) {
        let slot = &mut self.pool.slots[slot_index];
        slot.generation += 1;
        let started = start_with_retries(
            self.pool.backend.as_mut(),
            slot_index,
            slot.generation,
            &self.pool.sender,
            &mut self.stats.failed_starts,
        );
        match started {
            Ok(runner) => {
                slot.pid = runner.pid();
                slot.runner = Some(runner);
                slot.tasks_sent = 0;
                slot.due = None;
            }
            Err(err) => {
                crate::diag!("warning: cannot replace worker {slot_index} after it {after}: {err}");
                if self.pool.slots.iter().all(|s| s.runner.is_none()) {
                    self.fail_everything(&format!("no worker left: {err}"));
                }
            }
        }
    }

    /// Sends every batch in flight again, to the same runner: for a backend whose
    /// batches may be answered more than once, so the first answer wins.
    fn republish(&mut self) {
        if !self.pool.caps.batches_interleave {
            return;
        }
        for index in 0..self.pool.slots.len() {
            let slot = &mut self.pool.slots[index];
            let Some(runner) = slot.runner.as_mut() else {
                continue;
            };
            let batches = &mut self.stats.batches;
            let failed = slot.inflight.iter_mut().find_map(|batch| {
                *batches += 1;
                runner.send(batch.tasks.make_contiguous()).err()
            });
            if let Some(reason) = failed {
                self.lose(Who::Slot(index), reason);
            }
        }
    }

    /// The backend is gone (a broker that cannot be reached): every task in flight or
    /// still to run fails, as no runner can be started again.
    fn abandon_everything(&mut self, reason: &str) {
        crate::diag!("error: {reason}");
        let mut tasks: Vec<Job<T::Input>> = Vec::new();
        for slot in &mut self.pool.slots {
            slot.runner = None;
            slot.generation += 1;
            slot.head_started = None;
            tasks.extend(slot.inflight.drain(..).flat_map(|b| b.tasks));
        }
        tasks.extend(self.stop_retirees());
        tasks.sort_by_key(|t| t.index);
        let error = TaskError::new(ErrorKind::WorkerCrashed, reason);
        for task in tasks {
            self.record(task, Err(error.clone()), Attempt::none());
        }
        self.fail_everything(reason);
    }

    /// Every runner is gone and none can be started: every task not yet handed to a
    /// runner fails (no retry can help: this is final, whatever --retries allows).
    fn fail_everything(&mut self, message: &str) {
        let error = TaskError::new(ErrorKind::WorkerCrashed, message);
        let mut tasks = self.take_unstarted();
        tasks.sort_by_key(|t| t.index);
        for task in tasks {
            self.record(task, Err(error.clone()), Attempt::none());
        }
        self.drain = Some(Drain { error, limit: None });
    }

    /// Kills the retiring workers that still hold tasks (the run is ending early), and
    /// returns those tasks; the ones that hold nothing are left to exit as asked.
    fn stop_retirees(&mut self) -> Vec<Job<T::Input>> {
        let mut tasks = Vec::new();
        for slot in &mut self.pool.slots {
            let holds = |r: &mut Box<Retiree<T>>| !r.state.inflight.is_empty();
            if let Some(mut retiree) = slot.retiree.take_if(holds) {
                if let Some(mut runner) = retiree.state.runner.take() {
                    runner.kill();
                }
                tasks.extend(retiree.state.inflight.drain(..).flat_map(|b| b.tasks));
            }
        }
        tasks
    }

    /// Every task taken from the input but not handed to a runner: ready, or waiting out a
    /// backoff. The window bounds them; the input itself is left to [`Run::drain_one`].
    fn take_unstarted(&mut self) -> Vec<Job<T::Input>> {
        let mut tasks: Vec<Job<T::Input>> = self.ready.drain(..).collect();
        tasks.extend(self.delayed.drain());
        tasks
    }
}
