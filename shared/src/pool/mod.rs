//! The pool: one scheduler over four backends. Scheduling (ordering, batching, retries,
//! back-pressure) is written once in the scheduler; a backend only says how a batch of tasks
//! reaches the code that runs it and how outcomes come back.

mod batching;
#[cfg(feature = "redis")]
mod broker;
mod builder;
#[cfg(test)]
mod mock;
mod process;
mod record;
mod recovery;
mod recycle;
mod reorder;
mod retry;
mod scheduler;
mod sequential;
mod thread;
mod zygote;

use flume::Sender;

use crate::outcome::Arrival;
use crate::protocol::Job;
use crate::{Outcome, Task};

pub use builder::PoolBuilder;
pub use process::{describe_exit, EchoPeer, WorkerBinary};
pub use record::{Phases, Record, Stats};
pub use recycle::{resident_bytes, Recycle};
pub use scheduler::{FirstAttempts, Interrupter, Pool, Run};
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
    /// The backend's name, as `--backend` spells it.
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
    /// This many tasks per message (at most; fewer near the end of the input).
    Fixed(usize),
}

/// Something that went wrong with the pool itself, not with a task.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The worker program is missing or cannot be run.
    #[error("{0}")]
    WorkerBinary(String),
    /// A worker process could not be started.
    #[error("cannot start worker {id}: {reason}")]
    Spawn {
        /// The worker's slot.
        id: u32,
        /// Why.
        reason: String,
    },
    /// A worker did not complete its handshake.
    #[error("worker {id} failed the handshake: {reason}")]
    Handshake {
        /// The worker's slot.
        id: u32,
        /// Why.
        reason: String,
    },
    /// A worker from another build, or serving other task types: starting it again
    /// cannot help.
    #[error("worker {id} cannot serve this coordinator: {reason}")]
    Incompatible {
        /// The worker's slot.
        id: u32,
        /// What differs.
        reason: String,
    },
    #[error(
        "too few file descriptors: the limit (ulimit -n) is {limit}, and -w {workers} needs \
         about {needed}; raise it (`ulimit -n {needed}`) or use fewer workers"
    )]
    /// Too few file descriptors for the worker processes asked for.
    FileDescriptors {
        /// The soft limit.
        limit: u64,
        /// Workers asked for.
        workers: usize,
        /// Descriptors they need.
        needed: u64,
    },
    /// The pool's settings cannot work (a builder setting out of range, a missing broker).
    #[error("{0}")]
    Config(String),
    /// The task or the run's settings cannot be sent to the workers.
    #[error("cannot prepare the workers' settings: {0}")]
    Setup(String),
    /// A thread of the pool could not be started.
    #[error("cannot start thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The broker failed (redis backend).
    #[cfg(feature = "redis")]
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
                | PoolError::Config(_)
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
pub(crate) enum Event<O> {
    Outcomes {
        slot: usize,
        generation: u64,
        outcomes: Vec<Outcome<O>>,
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
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    BackendDown { reason: String },
    /// The backend may have lost batches it had accepted (a broker that restarted):
    /// every batch in flight is sent again; outcomes that then arrive twice are dropped.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Republish,
    /// SIGINT or SIGTERM: stop the run.
    Interrupted,
}

/// When a batch reached an in-process runner, which only the trace of its tasks reads: no
/// clock read per batch when the run is not traced.
fn arrival_if_traced(settings: &crate::protocol::RunSettings) -> Arrival {
    if settings.trace {
        Arrival::now()
    } else {
        Arrival::default()
    }
}

/// Where a runner posts its events.
pub(crate) struct EventSink<O> {
    pub slot: usize,
    pub generation: u64,
    pub events: Sender<Event<O>>,
}

impl<O> Clone for EventSink<O> {
    fn clone(&self) -> Self {
        EventSink {
            slot: self.slot,
            generation: self.generation,
            events: self.events.clone(),
        }
    }
}

impl<O> EventSink<O> {
    pub fn outcomes(&self, outcomes: Vec<Outcome<O>>, arrival: Arrival) -> bool {
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
pub(crate) trait Runner<T: Task>: Send {
    /// The OS process that runs the tasks.
    fn pid(&self) -> u32;
    /// Hands over a batch; it runs after the batches sent before it. Returns when the
    /// batch was encoded (monotonic ns), for runners that encode; the scheduler reads it
    /// only when the run is traced.
    fn send(&mut self, jobs: &[Job<T::Input>]) -> Result<Option<u64>, String>;
    /// Stops the runner now, whatever it is doing, and says how it ended if it had died.
    fn kill(&mut self) -> Option<String>;
    /// Asks the runner to finish and waits for it.
    fn shutdown(&mut self);
    /// Asks the runner to finish, and returns at once; [`Runner::shutdown`] then waits.
    /// A pool asks every runner before it waits for any, so that its worker processes
    /// exit together rather than one after another.
    fn ask_to_stop(&mut self) {}
    /// Asks the runner to exit once it has run and answered every batch sent to it, and
    /// returns at once (a worker being recycled). Only process runners are recycled.
    fn retire(&mut self) {}
    /// The runner's resident memory in bytes, where it has its own.
    fn resident_bytes(&self) -> Option<u64> {
        None
    }
}

/// A runner, or why its start failed.
pub(crate) type Started<T> = Result<Box<dyn Runner<T>>, PoolError>;

/// Where the runners of a pool of task type `T` post their events.
pub(crate) type Events<T> = Sender<Event<<T as Task>::Output>>;

/// What a backend can and cannot do: the scheduler asks these questions, never which
/// backend it is talking to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// The most slots the backend can serve (one, for tasks run in the caller's thread).
    pub max_slots: Option<usize>,
    /// Batches a slot takes at once, if the backend fixes it: one where a batch runs as
    /// it is handed over, or where the slots only bound what waits on a broker whose
    /// workers prefetch on their own.
    pub fixed_depth: Option<usize>,
    /// Whether batching several tasks into one message saves anything (not where a
    /// batch runs in the caller's thread as it is handed over).
    pub batching_helps: bool,
    /// Whether a slot's queued batches may finish in any order, and a batch's outcomes
    /// arrive more than once (a broker's at-least-once delivery), rather than in order.
    pub batches_interleave: bool,
    /// Whether the runners enforce the timeout themselves (the scheduler cannot tell when
    /// a broker's worker started a task).
    pub enforces_timeouts: bool,
    /// Whether a runner can be stopped from outside (a process); a thread can only be
    /// abandoned.
    pub kills_runners: bool,
    /// Whether outcomes come from other threads that a sleeping scheduler would be slow
    /// to hear, so that spinning for a moment pays when a round trip is what a run waits
    /// on (worker processes; threads need the core themselves).
    pub spin_for_outcomes: bool,
    /// Whether a runner that dies is reported lost by an event that comes after every
    /// outcome it had sent (a reader thread that reads its channel until it closes): a
    /// batch that cannot be sent to it then waits for that event, so that a task whose
    /// outcome is still on its way is not blamed for the death.
    pub loss_follows_outcomes: bool,
}

impl Capabilities {
    /// Runners of this process or its children that answer in order, cannot be killed,
    /// and gain from batches: what each backend starts from, saying what it does more.
    pub(crate) const LOCAL: Capabilities = Capabilities {
        max_slots: None,
        fixed_depth: None,
        batching_helps: true,
        batches_interleave: false,
        enforces_timeouts: false,
        kills_runners: false,
        spin_for_outcomes: false,
        loss_follows_outcomes: false,
    };
}

/// Starts runners for one backend.
pub(crate) trait Backend<T: Task> {
    /// What the backend can do; read once when the pool starts.
    fn capabilities(&self) -> Capabilities;
    /// Starts the runners of slots `0..count` concurrently and waits until each is ready;
    /// the scheduler tries the slots that failed again, one by one.
    fn start_all(
        &mut self,
        count: usize,
        events: &Events<T>,
    ) -> Result<Vec<Started<T>>, PoolError> {
        Ok((0..count).map(|slot| self.start(slot, 0, events)).collect())
    }
    /// Starts (or restarts) the runner of one slot.
    fn start(&mut self, slot: usize, generation: u64, events: &Events<T>) -> Started<T>;
    /// A new run over the pool starts: late outcomes of the last one must not count.
    fn begin_run(&mut self) {}
    /// The pool shuts down and starts no runner any more: what starts them (a zygote)
    /// can end now, alongside the runners rather than after them.
    fn stop_starting(&mut self) {}
}

#[cfg(test)]
mod tests {
    /// Events go through a channel by the million on no-op runs: keep them small.
    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<super::Event<Vec<u8>>>() <= 64);
    }
}
