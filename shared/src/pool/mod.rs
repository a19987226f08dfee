//! The pool: one scheduler over four backends. Scheduling (ordering, batching, retries,
//! back-pressure) is written once in [`scheduler`]; a backend only says how a batch of tasks
//! reaches the code that runs it and how outcomes come back.

mod broker;
mod process;
mod scheduler;
mod sequential;
mod thread;

use std::time::Duration;

use crate::outcome::Arrival;
use crate::{Context, Outcome};
use crossbeam_channel::Sender;

pub use process::{EchoPeer, WorkerBinary};
pub use scheduler::{Interrupter, Phases, Planned, Pool, Record, Stats};
pub use sequential::running_batch;
pub use thread::THREAD_NAME_PREFIX;

/// Which backend runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// One worker OS process per slot (Python's `ProcessPoolExecutor`).
    Process,
    /// One OS thread per slot in the coordinator (Python's `ThreadPoolExecutor`).
    Thread,
    /// Every task in the coordinator's own thread, one after another.
    Sequential,
    /// Batches published to a Redis Streams broker (`--broker`), run by `worker --broker`
    /// processes on any host.
    Redis,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Process => "process",
            BackendKind::Thread => "thread",
            BackendKind::Sequential => "sequential",
            BackendKind::Redis => "redis",
        }
    }
}

/// In which order outcomes are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Input order, like `executor.map`.
    Input,
    /// As each task finishes, like `as_completed`.
    Completion,
}

/// How many tasks travel to a worker in one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Grow batches while tasks are tiny, keep them at one task when tasks are long.
    Auto,
    Fixed(usize),
}

/// Everything the pool needs to know, validated.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub backend: BackendKind,
    pub workers: usize,
    pub order: Order,
    pub chunk: Chunk,
    /// Batches sent to a worker before it has answered the first (None: chosen by the pool).
    pub inflight: Option<usize>,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// Base delay of the exponential backoff between attempts.
    pub backoff: Duration,
    /// Shared task settings, sent to every worker once.
    pub context: Context,
    /// The longest a task may run before its runner is stopped and replaced.
    pub timeout: Option<Duration>,
    /// Stop the run after this many successes.
    pub first: Option<u64>,
    /// Stop the run at the first failure.
    pub fail_fast: bool,
    /// Where the worker binary is (process backend only).
    pub worker_bin: Option<WorkerBinary>,
    /// The broker (redis backend only).
    pub broker: Option<crate::broker::BrokerUrl>,
}

/// Something that went wrong with the pool itself, not with a task.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    WorkerBinary(String),
    #[error("cannot start worker {id}: {reason}")]
    Spawn { id: u32, reason: String },
    #[error("worker {id} failed the handshake: {reason}")]
    Handshake { id: u32, reason: String },
    /// A worker from another build: starting it again cannot help.
    #[error("worker {id} cannot serve this coordinator: {reason}")]
    Incompatible { id: u32, reason: String },
    #[error(
        "too few file descriptors: the limit (ulimit -n) is {limit}, and -w {workers} needs \
         about {needed}; raise it (`ulimit -n {needed}`) or use fewer workers"
    )]
    FileDescriptors {
        limit: u64,
        workers: usize,
        needed: u64,
    },
    #[error("cannot prepare the workers' settings: {0}")]
    Setup(String),
    #[error("cannot start thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
}

impl PoolError {
    /// Whether trying again could help: a worker killed during its start-up is worth
    /// another try, a missing binary or one from another build is not.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            PoolError::WorkerBinary(_)
                | PoolError::Incompatible { .. }
                | PoolError::Setup(_)
                | PoolError::FileDescriptors { .. }
        )
    }
}

/// The most workers (or broker slots) a pool takes: far more than a machine has cores,
/// and few enough that a typo (`-w 100000`) is a clear error rather than a fork storm.
pub const MAX_WORKERS: usize = 1024;

/// What runners report to the scheduler. `generation` tells a replaced runner's late
/// messages from its successor's.
#[derive(Debug)]
pub(crate) enum Event {
    Outcomes {
        slot: usize,
        generation: u64,
        outcomes: Vec<Outcome>,
        /// When the message reached the coordinator and was decoded.
        arrival: Arrival,
        /// The process that ran them, when it is not the slot's own (a broker's worker).
        /// Four bytes, not eight: events are queued by the million.
        pid: Option<std::num::NonZeroU32>,
    },
    /// The runner can no longer be used (process exited, channel closed, corrupt frame).
    Lost {
        slot: usize,
        generation: u64,
        reason: String,
    },
    /// The backend cannot serve any slot any more (the broker is gone): every task not
    /// yet finished fails.
    BackendDown { reason: String },
    /// The backend may have lost batches it had accepted (a broker that restarted):
    /// every batch in flight is sent again; outcomes that then arrive twice are dropped.
    Republish,
    /// SIGINT or SIGTERM: stop the run.
    Interrupted,
}

/// Where a runner posts its events.
#[derive(Clone)]
pub(crate) struct EventSink {
    pub slot: usize,
    pub generation: u64,
    pub events: Sender<Event>,
}

impl EventSink {
    pub fn outcomes(&self, outcomes: Vec<Outcome>, arrival: Arrival) -> bool {
        self.events
            .send(Event::Outcomes {
                slot: self.slot,
                generation: self.generation,
                outcomes,
                arrival,
                pid: None,
            })
            .is_ok()
    }

    pub fn lost(&self, reason: String) {
        let _ = self.events.send(Event::Lost {
            slot: self.slot,
            generation: self.generation,
            reason,
        });
    }
}

/// A running worker (thread or process) as the scheduler sees it.
pub(crate) trait Runner: Send {
    /// The OS process that runs the tasks.
    fn pid(&self) -> u32;
    /// Hands over a batch; it runs after the batches sent before it. Returns when the
    /// batch was encoded (monotonic ns), for runners that encode.
    fn send(&mut self, tasks: &[crate::Task]) -> Result<Option<u64>, String>;
    /// Stops the runner now, whatever it is doing, and says how it ended if it had died.
    fn kill(&mut self) -> Option<String>;
    /// Asks the runner to finish and waits for it.
    fn shutdown(&mut self);
}

/// A runner, or why its start failed.
pub(crate) type Started = Result<Box<dyn Runner>, PoolError>;

/// Starts runners for one backend.
pub(crate) trait Backend {
    fn kind(&self) -> BackendKind;
    /// Starts the runners of slots `0..count` concurrently and waits until each is ready;
    /// the scheduler tries the slots that failed again, one by one.
    fn start_all(
        &mut self,
        count: usize,
        events: &Sender<Event>,
    ) -> Result<Vec<Started>, PoolError> {
        Ok((0..count).map(|slot| self.start(slot, 0, events)).collect())
    }
    /// Starts (or restarts) the runner of one slot.
    fn start(
        &mut self,
        slot: usize,
        generation: u64,
        events: &Sender<Event>,
    ) -> Result<Box<dyn Runner>, PoolError>;
    /// A new run over the pool starts: late outcomes of the last one must not count.
    fn begin_run(&mut self) {}
    /// Whether a runner's queued batches may finish in any order, and a batch's outcomes
    /// arrive more than once (a broker's at-least-once delivery), rather than in order.
    fn batches_interleave(&self) -> bool {
        false
    }
    /// Whether the runners enforce `--timeout` themselves (the scheduler cannot tell when
    /// a broker's worker started a task).
    fn enforces_timeouts(&self) -> bool {
        false
    }
}

pub(crate) fn backend_for(config: &PoolConfig) -> Result<Box<dyn Backend>, PoolError> {
    Ok(match config.backend {
        BackendKind::Process => {
            let bin = config.worker_bin.clone().ok_or_else(|| {
                PoolError::WorkerBinary("no worker binary given to the process backend".into())
            })?;
            Box::new(process::ProcessBackend::new(bin, config.context.clone())?)
        }
        BackendKind::Thread => Box::new(thread::ThreadBackend::new(config.context.clone())),
        BackendKind::Sequential => {
            Box::new(sequential::SequentialBackend::new(config.context.clone()))
        }
        BackendKind::Redis => {
            let url = config
                .broker
                .clone()
                .ok_or_else(|| PoolError::Setup("the redis backend needs --broker URL".into()))?;
            Box::new(broker::RedisBackend::new(
                url,
                config.context.clone(),
                config.timeout,
            )?)
        }
    })
}

#[cfg(test)]
mod tests {
    /// Events go through a channel by the million on no-op runs: keep them small.
    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<super::Event>() <= 64);
    }
}
