//! What a run hands out: one [`Record`] per task, the [`Stats`] of the run (the public
//! JSON schema of the command line's summary), and where a traced task's time went
//! ([`Phases`]).

use std::collections::BTreeMap;

use crate::TaskError;

/// The final outcome of one task, as the user sees it: `I` is the task type's input and
/// `O` its output.
#[derive(Debug, Clone)]
pub struct Record<I, O> {
    /// Position in the input.
    pub index: u64,
    /// The task's input, given back.
    pub input: I,
    /// What the last attempt produced, or why the task has no output.
    pub result: Result<O, TaskError>,
    /// Attempts made, the last one included.
    pub attempts: u32,
    /// The slot of the worker that produced the final attempt's outcome.
    pub worker: Option<u32>,
    /// The OS process that ran the final attempt.
    pub pid: Option<u32>,
    /// Run time of the final attempt, measured where it ran.
    pub elapsed_ms: f64,
    /// When the outcome reached the coordinator, since the run started.
    pub finished_ms: f64,
    /// Where the round trip went, when the run traces (boxed: records are moved often and
    /// almost never carry one).
    pub phases: Option<Box<Phases>>,
}

impl<I, O> Record<I, O> {
    /// The same record with its input and output converted (a move, no copy).
    pub fn map<I2, O2>(
        self,
        input: impl FnOnce(I) -> I2,
        output: impl FnOnce(O) -> O2,
    ) -> Record<I2, O2> {
        Record {
            index: self.index,
            input: input(self.input),
            result: self.result.map(output),
            attempts: self.attempts,
            worker: self.worker,
            pid: self.pid,
            elapsed_ms: self.elapsed_ms,
            finished_ms: self.finished_ms,
            phases: self.phases,
        }
    }
}

/// Counters of one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Tasks taken from the input.
    pub tasks: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that ended with an error, cancelled ones not included.
    pub failed: u64,
    /// Failed tasks by error kind (snake_case names).
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    /// Tasks reported `cancelled` because the run stopped early before they ended.
    pub cancelled: u64,
    /// Tasks that succeeded after `--first` had been reached (they were already running):
    /// reported `cancelled`, so that exactly `--first` records are successes.
    pub succeeded_beyond_first: u64,
    /// After an interrupt: inputs never read and not listed (at most 100,000 are listed),
    /// when the input's length is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_started: Option<u64>,
    /// Attempts beyond the first, over all tasks.
    pub retries: u64,
    /// Workers that died or were killed (a crash, a timeout), each replaced by a fresh
    /// one; a worker that dies while it is being retired counts here, not as retired.
    pub workers_replaced: u64,
    /// Workers retired and replaced after they answered everything they held, by reason:
    /// `max_tasks` (they ran `--max-tasks-per-worker`), `max_rss` (their memory passed
    /// `--max-worker-rss`).
    pub workers_retired: BTreeMap<&'static str, u64>,
    /// Replacements that failed to start and were tried again (one killed during its
    /// handshake, say).
    pub failed_starts: u64,
    /// Outcomes dropped because their task had already been settled: a broker delivers
    /// at least once, so a batch redelivered after its worker died may be answered twice.
    pub duplicates: u64,
    /// Messages sent to runners.
    pub batches: u64,
    /// The most tasks sent in one message (`--chunk auto` grows it for tiny tasks).
    pub largest_batch: usize,
    /// Why the run stopped early, if it did (`--first`, `--fail-fast`, an interrupt).
    pub stopped: Option<String>,
    /// Whether the run was stopped by SIGINT or SIGTERM.
    pub interrupted: bool,
}

impl Stats {
    /// A worker has answered everything it held and counts as retired.
    pub(crate) fn count_retired(&mut self, reason: super::recycle::Retirement) {
        *self.workers_retired.entry(reason.as_str()).or_insert(0) += 1;
    }
}

/// Where one task's round trip went, in microseconds, when the run traces
/// ([`PoolBuilder::trace`](super::PoolBuilder::trace)). The phases add up to `total_us` by construction: each is the gap
/// between two consecutive timestamps on one clock shared by both processes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Phases {
    /// From the start of the run until the task was sent (meaningful when tasks are run
    /// one at a time, as `bench` does).
    pub queued_us: f64,
    /// Encoding the batch frame (process backend).
    pub encode_us: f64,
    /// Writing it into the channel until the runner has received it.
    pub transfer_to_us: f64,
    /// Decoding the frame in the worker.
    pub decode_us: f64,
    /// From decoded to the task's code starting (a hand-off between the worker's threads,
    /// or tasks ahead of it in the batch).
    pub worker_wait_us: f64,
    /// The task's own code.
    pub run_us: f64,
    /// Encoding the outcome and carrying it back until the coordinator has received it.
    pub transfer_back_us: f64,
    /// Decoding the outcome frame in the coordinator.
    pub decode_result_us: f64,
    /// From decoded until the scheduler took the outcome (a hand-off between threads).
    pub coordinator_wait_us: f64,
    /// Waiting in the reorder buffer for earlier tasks (input order).
    pub reorder_us: f64,
    /// All of the above.
    pub total_us: f64,
    /// When the outcome was settled, to measure `reorder_us` from.
    #[serde(skip)]
    pub(crate) settled_ns: u64,
}
