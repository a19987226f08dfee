//! A scripted backend that drives the real scheduler through crashes, timeouts,
//! duplicates, interleaved and late outcomes, and stops, deterministically: its runners
//! answer within `send`, as a script says, and run no task (hyperfine's `MockExecutor`
//! is the model).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flume::Sender;
use serde::{Deserialize, Serialize};

use super::{Backend, Capabilities, Chunk, Event, EventSink, Order, Pool, PoolBuilder};
use super::{PoolError, Record, Runner, Stats};
use crate::outcome::Arrival;
use crate::protocol::Job;
use crate::{Attempt, ErrorKind, Outcome, Task, TaskError};

/// The mock never runs its task; what it answers is the square of the input.
impl Task for Square {
    const NAME: &'static str = "square";
    type Input = u64;
    type Output = u64;
    fn run(&self, n: &u64, _: &Attempt) -> Result<u64, TaskError> {
        Ok(n * n)
    }
}

/// The task type the mock pretends to run.
#[derive(Serialize, Deserialize)]
struct Square;

/// What a mock runner does with one task it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    /// Answers with the square.
    Answer,
    /// Answers with an error of this kind.
    Fail(ErrorKind),
    /// Answers twice (a broker's at-least-once delivery).
    Twice,
    /// Answers only after the outcomes of the next batch it is sent.
    Hold,
    /// Never answers, nor anything sent after it: the runner is stuck.
    Hang,
    /// Dies: the runner is reported lost.
    Crash,
    /// Dies, and its outcome arrives after the loss was reported.
    CrashThenLate,
    /// Holds its outcome until the next batch, and dies instead if the runner is retired
    /// first: a worker that crashes while it drains.
    HoldThenCrash,
    /// Answers, then dies before its next batch: that batch cannot be sent, while this
    /// outcome is still on its way, ahead of the loss (a process whose reader thread
    /// forwards what the worker wrote before it closed).
    AnswerThenDie,
}

/// The script: what the runner does with attempt `.1` at task `.0`.
type Script = Arc<dyn Fn(u64, u32) -> Act + Send + Sync>;

/// One batch as a runner received it: its slot, generation, and (index, attempt) keys.
type SentBatch = (usize, u64, Vec<(u64, u32)>);

/// What the mock saw, for the tests to check.
#[derive(Debug, Default)]
struct Log {
    /// (slot, generation) of every runner started.
    started: Vec<(usize, u64)>,
    /// Slots whose runner was killed.
    killed: Vec<usize>,
    /// (slot, generation, [(index, attempt)]) of every batch sent.
    batches: Vec<SentBatch>,
    /// (slot, generation) of every runner retired.
    retired: Vec<(usize, u64)>,
}

struct MockBackend {
    caps: Capabilities,
    script: Script,
    log: Arc<Mutex<Log>>,
    /// Replacements fail to start, for good.
    no_replacements: bool,
    /// Resident memory each task a runner answers adds (a leak), in bytes.
    leak_per_task: u64,
}

impl Backend<Square> for MockBackend {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn start(
        &mut self,
        slot: usize,
        generation: u64,
        events: &Sender<Event<u64>>,
    ) -> Result<Box<dyn Runner<Square>>, PoolError> {
        if self.no_replacements && generation > 0 {
            return Err(PoolError::Incompatible {
                id: slot as u32,
                reason: "the mock starts no replacement".into(),
            });
        }
        lock(&self.log).started.push((slot, generation));
        Ok(Box::new(MockRunner {
            sink: EventSink {
                slot,
                generation,
                events: events.clone(),
            },
            script: Arc::clone(&self.script),
            log: Arc::clone(&self.log),
            held: Vec::new(),
            stuck: false,
            answered: 0,
            leak_per_task: self.leak_per_task,
            crash_when_retired: false,
            dead: false,
        }))
    }
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

struct MockRunner {
    /// Its slot and generation, and where it posts its events.
    sink: EventSink<u64>,
    script: Script,
    log: Arc<Mutex<Log>>,
    held: Vec<Outcome<u64>>,
    stuck: bool,
    /// Tasks answered: its memory is `answered * leak_per_task`.
    answered: u64,
    leak_per_task: u64,
    /// A held outcome is a crash if the runner is retired before sending it.
    crash_when_retired: bool,
    /// It died after answering: the next send fails.
    dead: bool,
}

impl MockRunner {
    fn emit(&mut self, outcomes: Vec<Outcome<u64>>) {
        self.answered += outcomes.len() as u64;
        if !outcomes.is_empty() {
            self.sink.outcomes(outcomes, Arrival::now());
        }
    }

    fn lost(&self) {
        self.sink.lost("crashed (mock)".into());
    }
}

fn outcome(job: &Job<u64>, result: Result<u64, TaskError>) -> Outcome<u64> {
    Outcome {
        index: job.index,
        attempt: job.attempt,
        result,
        run_us: 10,
        trace: None,
    }
}

impl Runner<Square> for MockRunner {
    fn pid(&self) -> u32 {
        1000 + self.sink.slot as u32
    }

    fn send(&mut self, jobs: &[Job<u64>]) -> Result<Option<u64>, String> {
        let keys = jobs.iter().map(|j| (j.index, j.attempt)).collect();
        lock(&self.log)
            .batches
            .push((self.sink.slot, self.sink.generation, keys));
        if self.dead {
            // What the reader had yet to forward, then the closed channel; the send fails.
            let held = std::mem::take(&mut self.held);
            self.emit(held);
            self.lost();
            self.stuck = true;
            return Err("cannot send to worker: Broken pipe (mock)".into());
        }
        if self.stuck {
            return Ok(None);
        }
        let earlier = std::mem::take(&mut self.held);
        self.crash_when_retired = false;
        let mut out = Vec::new();
        for job in jobs {
            let square = Ok(job.input * job.input);
            match (self.script)(job.index, job.attempt) {
                Act::Answer => out.push(outcome(job, square)),
                Act::Fail(kind) => out.push(outcome(job, Err(TaskError::new(kind, "mock")))),
                Act::Twice => {
                    out.push(outcome(job, square.clone()));
                    out.push(outcome(job, square));
                }
                Act::Hold => self.held.push(outcome(job, square)),
                Act::HoldThenCrash => {
                    self.held.push(outcome(job, square));
                    self.crash_when_retired = true;
                }
                Act::Hang => {
                    self.stuck = true;
                    break;
                }
                Act::AnswerThenDie => {
                    self.held.push(outcome(job, square));
                    self.dead = true;
                    break;
                }
                Act::Crash | Act::CrashThenLate => {
                    self.emit(out);
                    self.lost();
                    if (self.script)(job.index, job.attempt) == Act::CrashThenLate {
                        self.emit(vec![outcome(job, square)]);
                    }
                    self.stuck = true;
                    return Ok(None);
                }
            }
        }
        self.emit(out);
        self.emit(earlier);
        Ok(None)
    }

    fn kill(&mut self) -> Option<String> {
        lock(&self.log).killed.push(self.sink.slot);
        self.stuck = true;
        None
    }

    fn shutdown(&mut self) {}

    /// Answers what it holds (or crashes, as scripted), then exits as a process would:
    /// its channel closes.
    fn retire(&mut self) {
        lock(&self.log)
            .retired
            .push((self.sink.slot, self.sink.generation));
        if self.stuck {
            return; // Hung: it never answers, nor exits.
        }
        if self.crash_when_retired {
            self.lost();
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.emit(held);
        self.sink.lost("exited (mock)".into());
    }

    fn resident_bytes(&self) -> Option<u64> {
        Some(self.answered * self.leak_per_task)
    }
}

/// The capabilities of a backend that delivers in order and can kill its runners.
fn in_order() -> Capabilities {
    Capabilities {
        kills_runners: true,
        ..Capabilities::LOCAL
    }
}

/// A backend whose batches may finish in any order and more than once.
fn at_least_once() -> Capabilities {
    Capabilities {
        batches_interleave: true,
        ..in_order()
    }
}

/// A script that does `act` with the attempts in `when`, and answers everything else.
fn only(when: &'static [(u64, u32)], act: Act) -> impl Fn(u64, u32) -> Act + Send + Sync {
    move |index, attempt| {
        if when.contains(&(index, attempt)) {
            act
        } else {
            Act::Answer
        }
    }
}

/// A script that does `act` with every attempt at task `index`, and answers the rest.
fn always(index: u64, act: Act) -> impl Fn(u64, u32) -> Act + Send + Sync {
    move |i, _| if i == index { act } else { Act::Answer }
}

/// One test's pool: a builder with tests' defaults, the mock's capabilities and script.
struct Setup {
    builder: PoolBuilder,
    caps: Capabilities,
    script: Script,
    no_replacements: bool,
    leak_per_task: u64,
}

impl Setup {
    fn new(script: impl Fn(u64, u32) -> Act + Send + Sync + 'static) -> Setup {
        Setup {
            builder: PoolBuilder::new()
                .workers(2)
                .chunk(Chunk::Fixed(1))
                .backoff(Duration::ZERO),
            caps: in_order(),
            script: Arc::new(script),
            no_replacements: false,
            leak_per_task: 0,
        }
    }

    fn pool(&self) -> (Pool<Square>, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let backend = MockBackend {
            caps: self.caps,
            script: Arc::clone(&self.script),
            log: Arc::clone(&log),
            no_replacements: self.no_replacements,
            leak_per_task: self.leak_per_task,
        };
        let pool = Pool::with_backend(self.builder.clone(), Box::new(backend), Instant::now())
            .expect("the mock starts");
        (pool, log)
    }

    /// Runs inputs `0..count` in `order`.
    fn run(&self, count: u64, order: Order) -> (Vec<Record<u64, u64>>, Stats, Log) {
        let (mut pool, log) = self.pool();
        let mut run = match order {
            Order::Input => pool.map(0..count),
            Order::Completion => pool.as_completed(0..count),
        };
        let records: Vec<_> = run.by_ref().collect();
        let stats = run.stats();
        drop(pool);
        let log = std::mem::take(&mut *lock(&log));
        (records, stats, log)
    }
}

/// How each record ended: Ok(value) or the error kind, and its attempts, by index.
fn endings(records: &[Record<u64, u64>]) -> Vec<(u64, Result<u64, ErrorKind>, u32)> {
    records
        .iter()
        .map(|r| {
            let ended = r.result.as_ref().map(|v| *v).map_err(|e| e.kind);
            (r.index, ended, r.attempts)
        })
        .collect()
}

/// Asserts every input `0..count` has exactly one record.
#[track_caller]
fn assert_each_once(records: &[Record<u64, u64>], count: u64) {
    let indexes: BTreeSet<u64> = records.iter().map(|r| r.index).collect();
    assert_eq!(
        records.len() as u64,
        count,
        "records: {:?}",
        endings(records)
    );
    assert_eq!(indexes, (0..count).collect(), "indexes");
}

fn ok(index: u64, attempts: u32) -> (u64, Result<u64, ErrorKind>, u32) {
    (index, Ok(index * index), attempts)
}

#[test]
fn every_input_ends_once_in_input_order() {
    let mut setup = Setup::new(|_, _| Act::Answer);
    setup.builder = setup.builder.workers(3).chunk(Chunk::Fixed(4)).inflight(2);
    let (records, stats, log) = setup.run(50, Order::Input);
    assert_eq!(
        endings(&records),
        (0..50).map(|i| ok(i, 1)).collect::<Vec<_>>()
    );
    assert_eq!((stats.tasks, stats.succeeded, stats.failed), (50, 50, 0));
    assert_eq!(stats.largest_batch, 4);
    assert_eq!(log.started, [(0, 0), (1, 0), (2, 0)]);
}

#[test]
fn a_crash_fails_the_running_task_and_its_queued_ones_run_on_the_replacement() {
    let mut setup = Setup::new(always(1, Act::Crash));
    setup.builder = setup.builder.workers(1).chunk(Chunk::Fixed(3));
    let (records, stats, log) = setup.run(5, Order::Input);
    let crashed = (1, Err(ErrorKind::WorkerCrashed), 1);
    assert_eq!(
        endings(&records),
        [ok(0, 1), crashed, ok(2, 1), ok(3, 1), ok(4, 1)]
    );
    assert_eq!(stats.workers_replaced, 1);
    assert!(records[1]
        .result
        .as_ref()
        .is_err_and(|e| e.message.contains("crashed (mock)")));
    // Task 2 was queued behind the crash: it went to the new runner, first.
    let resent = log
        .batches
        .iter()
        .find(|(_, generation, _)| *generation == 1);
    assert_eq!(resent.map(|b| b.2[0]), Some((2, 1)), "{log:?}");
}

#[test]
fn a_batch_that_cannot_be_sent_to_a_dead_worker_blames_no_task_whose_outcome_was_on_its_way() {
    // Task 0's outcome is still on its way when task 1 cannot be sent: the loss reported
    // after it must not fail (or rerun) task 0. Task 1, sent to the dead worker, is
    // retried on the replacement.
    for (loss_follows_outcomes, task_0) in [(true, ok(0, 1)), (false, ok(0, 2))] {
        let mut setup = Setup::new(only(&[(0, 1)], Act::AnswerThenDie));
        setup.caps.loss_follows_outcomes = loss_follows_outcomes;
        setup.builder = setup.builder.workers(1).inflight(2).retries(1);
        let (records, stats, log) = setup.run(3, Order::Input);
        let endings = endings(&records);
        assert_eq!(endings[0], task_0, "{loss_follows_outcomes}: {endings:?}");
        assert!(endings.iter().all(|e| e.1.is_ok()), "{endings:?}");
        assert_eq!(stats.workers_replaced, 1);
        assert!(!log.killed.is_empty(), "{log:?}");
    }
}

#[test]
fn a_hung_task_times_out_and_its_runner_is_killed_and_replaced() {
    let mut setup = Setup::new(only(&[(2, 1)], Act::Hang));
    setup.builder = setup.builder.timeout(Some(Duration::from_millis(20)));
    let (records, stats, log) = setup.run(4, Order::Input);
    assert_eq!(endings(&records)[2], (2, Err(ErrorKind::Timeout), 1));
    let message = &records[2].result.as_ref().expect_err("timed out").message;
    assert!(message.contains("worker killed and replaced"), "{message}");
    assert_eq!(stats.workers_replaced, 1);
    assert_eq!(log.killed.len(), 1, "{log:?}");
    assert_each_once(&records, 4);
}

#[test]
fn a_timeout_is_retried_and_a_runner_that_cannot_be_killed_is_abandoned() {
    let mut setup = Setup::new(only(&[(0, 1)], Act::Hang));
    setup.caps.kills_runners = false;
    setup.builder = setup
        .builder
        .retries(1)
        .timeout(Some(Duration::from_millis(20)));
    let (records, stats, _) = setup.run(3, Order::Input);
    assert_eq!(endings(&records), [ok(0, 2), ok(1, 1), ok(2, 1)]);
    assert_eq!(stats.retries, 1);

    setup.builder = setup.builder.retries(0);
    let (records, _, _) = setup.run(1, Order::Input);
    let message = &records[0].result.as_ref().expect_err("timed out").message;
    assert!(message.contains("abandoned and replaced"), "{message}");
}

#[test]
fn runners_that_enforce_timeouts_are_not_timed_out_by_the_scheduler() {
    // The runner holds task 0 until the next batch: longer than the timeout, which the
    // runner (a broker's worker) enforces itself.
    let mut setup = Setup::new(always(0, Act::Hold));
    setup.caps.enforces_timeouts = true;
    setup.caps.batches_interleave = true;
    setup.builder = setup
        .builder
        .workers(1)
        .inflight(2)
        .timeout(Some(Duration::from_millis(1)));
    let (records, stats, _) = setup.run(3, Order::Input);
    assert_eq!(endings(&records), [ok(0, 1), ok(1, 1), ok(2, 1)]);
    assert_eq!(stats.workers_replaced, 0);
}

#[test]
fn duplicates_from_an_at_least_once_backend_are_dropped() {
    let mut setup = Setup::new(|i, _| if i % 3 == 0 { Act::Twice } else { Act::Answer });
    setup.caps = at_least_once();
    let (records, stats, _) = setup.run(9, Order::Input);
    assert_eq!(
        endings(&records),
        (0..9).map(|i| ok(i, 1)).collect::<Vec<_>>()
    );
    assert_eq!((stats.duplicates, stats.workers_replaced), (3, 0));
}

#[test]
fn a_duplicate_from_an_in_order_backend_means_a_broken_runner() {
    let mut setup = Setup::new(always(1, Act::Twice));
    setup.builder = setup.builder.workers(1);
    let (records, stats, _) = setup.run(3, Order::Input);
    assert_eq!(endings(&records), [ok(0, 1), ok(1, 1), ok(2, 1)]);
    assert_eq!((stats.duplicates, stats.workers_replaced), (0, 1));
}

#[test]
fn interleaved_batches_are_matched_where_the_backend_may_interleave() {
    let mut setup = Setup::new(always(0, Act::Hold));
    setup.caps = at_least_once();
    setup.builder = setup.builder.workers(1).inflight(2);
    let (records, stats, _) = setup.run(4, Order::Input);
    assert_eq!(
        endings(&records),
        (0..4).map(|i| ok(i, 1)).collect::<Vec<_>>()
    );
    assert_eq!(stats.workers_replaced, 0);
    // In completion order, the held task comes after the one that overtook it.
    let (records, _, _) = setup.run(4, Order::Completion);
    assert_eq!(records[0].index, 1);
    assert_each_once(&records, 4);
}

#[test]
fn interleaved_outcomes_from_an_in_order_backend_mean_a_broken_runner() {
    let mut setup = Setup::new(only(&[(0, 1)], Act::Hold));
    setup.builder = setup.builder.workers(1).inflight(2);
    let (records, stats, _) = setup.run(3, Order::Input);
    // Task 0 was running when its runner answered for task 1: the runner is replaced,
    // task 0 fails, task 1 runs again; the held answer for 0 comes too late to count.
    let crashed = (0, Err(ErrorKind::WorkerCrashed), 1);
    assert_eq!(endings(&records), [crashed, ok(1, 1), ok(2, 1)]);
    assert_eq!(stats.workers_replaced, 1);
}

#[test]
fn a_crash_is_retried_and_late_outcomes_of_the_lost_runner_are_ignored() {
    for (index, act) in [(1, Act::Crash), (2, Act::CrashThenLate)] {
        let script = move |i, a| {
            if (i, a) == (index, 1) {
                act
            } else {
                Act::Answer
            }
        };
        let mut setup = Setup::new(script);
        setup.builder = setup.builder.retries(1);
        let (records, stats, _) = setup.run(4, Order::Input);
        let expected: Vec<_> = (0..4).map(|i| ok(i, 1 + u32::from(i == index))).collect();
        assert_eq!(endings(&records), expected, "{act:?}");
        let counts = (stats.retries, stats.workers_replaced, stats.duplicates);
        assert_eq!(counts, (1, 1, 0), "{act:?}");
    }
}

#[test]
fn transient_failures_are_retried_and_permanent_ones_are_not() {
    let mut setup = Setup::new(|i, a| match (i, a) {
        (5, _) => Act::Fail(ErrorKind::InvalidInput),
        (i, 1) if i % 2 == 0 => Act::Fail(ErrorKind::Network),
        _ => Act::Answer,
    });
    setup.builder = setup.builder.retries(2);
    let (records, stats, _) = setup.run(6, Order::Input);
    let invalid = (5, Err(ErrorKind::InvalidInput), 1);
    let expected = [ok(0, 2), ok(1, 1), ok(2, 2), ok(3, 1), ok(4, 2), invalid];
    assert_eq!(endings(&records), expected);
    assert_eq!((stats.retries, stats.failed), (3, 1));
    assert_eq!(stats.failed_by_kind.get("invalid_input"), Some(&1));
}

#[test]
fn retries_run_out() {
    let mut setup = Setup::new(|_, _| Act::Fail(ErrorKind::Network));
    setup.builder = setup.builder.retries(2);
    let (records, stats, _) = setup.run(2, Order::Input);
    let failed = |i| (i, Err(ErrorKind::Network), 3);
    assert_eq!(endings(&records), [failed(0), failed(1)]);
    assert_eq!(stats.retries, 4);
}

/// The tasks a stop never started are listed without waiting, and the run says so: a
/// caller that hands records on while more are ready does not pay a hand-off per record.
#[test]
fn after_a_stop_the_tasks_never_started_are_ready_one_after_another() {
    let mut setup = Setup::new(|_, _| Act::Answer);
    setup.builder = setup.builder.first(Some(1));
    let (mut pool, _) = setup.pool();
    let mut run = pool.map(0..2000);
    let mut never_started = Vec::new();
    while let Some(record) = run.next() {
        if record.worker.is_none() {
            never_started.push((record.index, run.has_ready()));
        }
    }
    assert!(
        never_started.len() > 1000,
        "{} never started",
        never_started.len()
    );
    // Every one but the last is followed by another without waiting.
    let waited: Vec<u64> = never_started[..never_started.len() - 1]
        .iter()
        .filter(|(_, ready)| !ready)
        .map(|(index, _)| *index)
        .collect();
    assert!(waited.is_empty(), "not ready after tasks {waited:?}");
}

#[test]
fn first_n_stops_the_run_with_exactly_n_successes() {
    let mut setup = Setup::new(|_, _| Act::Answer);
    setup.builder = setup.builder.first(Some(5));
    let (records, stats, _) = setup.run(100, Order::Input);
    assert_each_once(&records, 100);
    let succeeded = records.iter().filter(|r| r.result.is_ok()).count();
    assert_eq!((succeeded, stats.succeeded), (5, 5));
    assert_eq!(stats.cancelled, 95);
    assert_eq!(stats.stopped.as_deref(), Some("--first 5 reached"));
}

#[test]
fn fail_fast_stops_at_the_first_failure() {
    let mut setup = Setup::new(always(3, Act::Fail(ErrorKind::Io)));
    // What a worker has queued when a task fails still runs: two batches here.
    setup.builder = setup.builder.workers(1).inflight(2).fail_fast(true);
    let (records, stats, _) = setup.run(20, Order::Input);
    assert_each_once(&records, 20);
    assert_eq!(endings(&records)[3], (3, Err(ErrorKind::Io), 1));
    assert_eq!((stats.failed, stats.succeeded, stats.cancelled), (1, 3, 16));
    assert!(records[4..].iter().all(|r| r
        .result
        .as_ref()
        .is_err_and(|e| e.kind == ErrorKind::Cancelled)));
}

#[test]
fn an_interrupt_cancels_what_is_left() {
    let setup = Setup::new(|_, _| Act::Answer);
    let (mut pool, _) = setup.pool();
    let interrupter = pool.interrupter();
    let mut run = pool.map(0..1000);
    let first: Vec<_> = run.by_ref().take(10).collect();
    interrupter.interrupt();
    let rest: Vec<_> = run.by_ref().collect();
    let stats = run.stats();
    assert!(stats.interrupted);
    assert_eq!(first.len() + rest.len(), 1000);
    assert!(rest.iter().any(|r| r
        .result
        .as_ref()
        .is_err_and(|e| e.kind == ErrorKind::Cancelled)));
    assert_eq!(stats.succeeded + stats.cancelled, 1000);
}

#[test]
fn a_pool_serves_several_runs() {
    let mut setup = Setup::new(only(&[(1, 1)], Act::Crash));
    setup.builder = setup.builder.retries(1);
    let (mut pool, log) = setup.pool();
    for _ in 0..3 {
        let records: Vec<_> = pool.map(0..5).collect();
        assert_eq!(
            endings(&records),
            [ok(0, 1), ok(1, 2), ok(2, 1), ok(3, 1), ok(4, 1)]
        );
    }
    assert_eq!(pool.workers(), 2);
    drop(pool);
    assert_eq!(lock(&log).started.len(), 2 + 3, "one replacement per run");
}

#[test]
fn when_no_runner_can_be_started_every_task_left_fails() {
    let mut setup = Setup::new(always(2, Act::Crash));
    setup.builder = setup.builder.workers(1);
    setup.no_replacements = true;
    let (records, stats, _) = setup.run(6, Order::Input);
    assert_each_once(&records, 6);
    let ended = endings(&records);
    assert_eq!(&ended[..2], [ok(0, 1), ok(1, 1)]);
    assert!(
        ended[2..]
            .iter()
            .all(|(_, e, _)| *e == Err(ErrorKind::WorkerCrashed)),
        "{ended:?}"
    );
    assert_eq!(stats.failed, 4);
}

/// Tasks each runner, by (slot, generation), was sent over the run.
fn tasks_per_runner(log: &Log) -> std::collections::BTreeMap<(usize, u64), usize> {
    let mut sent = std::collections::BTreeMap::new();
    for (slot, generation, keys) in &log.batches {
        *sent.entry((*slot, *generation)).or_insert(0) += keys.len();
    }
    sent
}

#[test]
fn a_worker_runs_at_most_its_task_limit_then_a_fresh_one_takes_its_slot() {
    for (chunk, inflight) in [(Chunk::Fixed(2), 2), (Chunk::Fixed(5), 1), (Chunk::Auto, 2)] {
        let mut setup = Setup::new(|_, _| Act::Answer);
        setup.builder = setup
            .builder
            .chunk(chunk)
            .inflight(inflight)
            .max_tasks_per_worker(Some(3));
        let (records, stats, log) = setup.run(100, Order::Input);
        assert_eq!(
            endings(&records),
            (0..100).map(|i| ok(i, 1)).collect::<Vec<_>>(),
            "{chunk:?}"
        );
        let sent = tasks_per_runner(&log);
        assert!(sent.values().all(|&n| n <= 3), "{chunk:?}: {sent:?}");
        // Batches are sized to what a worker has left, so none is wasted on a remainder.
        assert!(sent.len() <= 100 / 3 + 2, "{chunk:?}: {sent:?}");
        let retired = stats.workers_retired.get("max_tasks").copied();
        assert_eq!(retired, Some(log.retired.len() as u64), "{chunk:?}");
        assert_eq!(
            log.started.len(),
            2 + log.retired.len(),
            "one fresh worker each"
        );
        assert_eq!((stats.workers_replaced, stats.retries), (0, 0));
    }
}

#[test]
fn retries_count_against_the_task_limit() {
    let mut setup = Setup::new(|i, a| {
        if a == 1 && i % 2 == 0 {
            Act::Fail(ErrorKind::Network)
        } else {
            Act::Answer
        }
    });
    setup.builder = setup.builder.retries(1).max_tasks_per_worker(Some(2));
    let (records, stats, log) = setup.run(10, Order::Input);
    assert_each_once(&records, 10);
    assert_eq!(stats.retries, 5);
    let sent = tasks_per_runner(&log);
    assert!(sent.values().all(|&n| n <= 2), "{sent:?}");
    assert_eq!(
        sent.values().sum::<usize>(),
        15,
        "ten first attempts, five retries"
    );
}

#[test]
fn a_worker_above_the_memory_limit_after_a_batch_is_retired() {
    let mut setup = Setup::new(|_, _| Act::Answer);
    setup.leak_per_task = 1 << 20;
    setup.builder = setup
        .builder
        .chunk(Chunk::Fixed(2))
        .inflight(1)
        .max_worker_rss(Some(5 << 20));
    let (records, stats, log) = setup.run(60, Order::Input);
    assert_each_once(&records, 60);
    assert!(records.iter().all(|r| r.result.is_ok()));
    // Checked after each batch of two: a worker is retired at 6 MiB, never later.
    let sent = tasks_per_runner(&log);
    assert!(sent.values().all(|&n| n <= 6), "{sent:?}");
    assert_eq!(stats.workers_retired.get("max_rss"), Some(&10), "{sent:?}");
    assert_eq!(stats.workers_replaced, 0);
}

#[test]
fn a_worker_that_crashes_while_it_drains_is_an_ordinary_crash() {
    // Task 3 is the last a worker takes before its limit; it dies instead of answering.
    let mut setup = Setup::new(only(&[(3, 1)], Act::HoldThenCrash));
    setup.builder = setup
        .builder
        .workers(1)
        .retries(1)
        .max_tasks_per_worker(Some(4));
    let (records, stats, _) = setup.run(10, Order::Input);
    assert_each_once(&records, 10);
    assert_eq!(
        endings(&records)[3],
        ok(3, 2),
        "retried once, as a crash is"
    );
    assert_eq!(stats.workers_replaced, 1);
    // The second worker ran four tasks (the retry among them) and was retired; the
    // first crashed, and is not counted as retired; the third ran the last three.
    assert_eq!(stats.workers_retired.get("max_tasks"), Some(&1));
}

#[test]
fn a_retiring_worker_whose_task_hangs_times_out() {
    let mut setup = Setup::new(only(&[(1, 1)], Act::Hang));
    setup.builder = setup
        .builder
        .workers(1)
        .inflight(1)
        .max_tasks_per_worker(Some(2))
        .timeout(Some(Duration::from_millis(20)));
    let (records, stats, log) = setup.run(6, Order::Input);
    assert_each_once(&records, 6);
    assert_eq!(endings(&records)[1], (1, Err(ErrorKind::Timeout), 1));
    assert_eq!(stats.workers_replaced, 1);
    assert_eq!(log.killed.len(), 1, "{log:?}");
}

#[test]
fn an_interrupt_cancels_what_a_retiring_worker_holds() {
    let mut setup = Setup::new(always(2, Act::Hang));
    setup.builder = setup.builder.workers(1).max_tasks_per_worker(Some(3));
    let (mut pool, log) = setup.pool();
    let interrupter = pool.interrupter();
    let mut run = pool.map(0..10);
    let first: Vec<_> = run.by_ref().take(2).collect();
    interrupter.interrupt();
    let rest: Vec<_> = run.by_ref().collect();
    let stats = run.stats();
    let mut all = first;
    all.extend(rest);
    assert_each_once(&all, 10);
    assert_eq!(endings(&all)[2], (2, Err(ErrorKind::Cancelled), 1));
    assert_eq!(lock(&log).killed, [0], "the hung retiring worker is killed");
    assert!(
        stats.workers_retired.is_empty(),
        "{:?}",
        stats.workers_retired
    );
}

#[test]
fn recycling_needs_worker_processes() {
    use super::BackendKind;
    for backend in [
        BackendKind::Thread,
        BackendKind::Sequential,
        BackendKind::Redis,
    ] {
        for builder in [
            PoolBuilder::new().max_tasks_per_worker(Some(5)),
            PoolBuilder::new().max_worker_rss(Some(1 << 30)),
        ] {
            let err = builder.backend(backend).build(Square).err();
            let message = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.contains("needs the process backend") && message.contains(backend.as_str()),
                "{backend:?}: {message}"
            );
        }
    }
    let zero = PoolBuilder::new()
        .max_tasks_per_worker(Some(0))
        .build(Square);
    assert!(zero.is_err_and(|e| e.to_string().contains("at least one task")));
}
