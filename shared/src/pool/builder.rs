//! The pool's settings, set one by one from documented defaults and checked once.

use std::sync::Arc;
use std::time::Duration;

use super::{process, sequential, thread, Backend, BackendKind, Chunk, Order, Pool, PoolError};
use super::{Recycle, WorkerBinary, MAX_WORKERS};
use crate::protocol::RunSettings;
use crate::Task;

/// How to build a [`Pool`]: every setting has a default, so set only what matters.
///
/// ```no_run
/// # use workpool::{Attempt, BackendKind, PoolBuilder, Task, TaskError};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Sleep;
/// # impl Task for Sleep {
/// #     const NAME: &'static str = "sleep";
/// #     type Input = u64;
/// #     type Output = ();
/// #     fn run(&self, ms: &u64, _: &Attempt) -> Result<(), TaskError> {
/// #         Ok(std::thread::sleep(std::time::Duration::from_millis(*ms)))
/// #     }
/// # }
/// let pool = PoolBuilder::new()
///     .backend(BackendKind::Thread)
///     .workers(8)
///     .retries(2)
///     .build(Sleep)?;
/// # Ok::<(), workpool::PoolError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    pub(crate) backend: BackendKind,
    pub(crate) workers: usize,
    pub(crate) order: Order,
    pub(crate) chunk: Chunk,
    pub(crate) inflight: Option<usize>,
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) first: Option<u64>,
    pub(crate) fail_fast: bool,
    pub(crate) seed: u64,
    pub(crate) trace: bool,
    pub(crate) worker: Option<WorkerBinary>,
    pub(crate) recycle: Recycle,
    #[cfg(feature = "redis")]
    pub(crate) broker: Option<crate::broker::BrokerUrl>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            backend: BackendKind::Process,
            workers: 0,
            order: Order::Input,
            chunk: Chunk::Auto,
            inflight: None,
            retries: 0,
            backoff: Duration::from_millis(100),
            timeout: None,
            first: None,
            fail_fast: false,
            seed: 0,
            trace: false,
            worker: None,
            recycle: Recycle::default(),
            #[cfg(feature = "redis")]
            broker: None,
        }
    }
}

/// Writes setters that each set the field of their name and return the builder.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $type:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $name: $type) -> Self {
                self.$name = $name;
                self
            }
        )*
    };
}

impl PoolBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Where tasks run [default: [`BackendKind::Process`]].
        backend: BackendKind;
        /// Worker processes or threads, or broker slots; 0 chooses [default: 0, the logical
        /// CPUs, at most [`MAX_WORKERS`]].
        workers: usize;
        /// The order [`Pool::run`] hands records out in [default: [`Order::Input`]];
        /// [`Pool::map`] and [`Pool::as_completed`] choose their own.
        order: Order;
        /// Tasks per message to a worker [default: [`Chunk::Auto`]].
        chunk: Chunk;
        /// Further attempts at a task after a transient failure [default: 0].
        retries: u32;
        /// Base delay of the exponential backoff between attempts, jittered [default: 100ms].
        backoff: Duration;
        /// The longest a task may run: its worker is killed (a thread abandoned) and
        /// replaced, and the task ends `timeout` (retried if retries are left) [default:
        /// none].
        timeout: Option<Duration>;
        /// Stop a run after this many successes [default: none].
        first: Option<u64>;
        /// Stop a run at its first failure [default: false].
        fail_fast: bool;
        /// The seed tasks see in [`Attempt::seed`](crate::Attempt::seed), and the backoff's
        /// jitter derives from [default: 0].
        seed: u64;
        /// Timestamp every task's journey into [`Record::phases`](crate::Record::phases)
        /// [default: false].
        trace: bool;
    }

    /// Batches queued at a worker before it answers the first; 0 chooses [default: 0].
    pub fn inflight(mut self, batches: usize) -> Self {
        self.inflight = (batches > 0).then_some(batches);
        self
    }

    /// The program the process backend starts as its workers [default: this program,
    /// which must call [`Worker::serve_if_worker`](crate::Worker::serve_if_worker)
    /// first thing in `main`].
    pub fn worker_program(mut self, program: WorkerBinary) -> Self {
        self.worker = Some(program);
        self
    }

    /// Retire a worker process once it has run this many tasks (retries included), and
    /// start a fresh one in its slot; batches sent to it are sized to fit what it has
    /// left [default: none]. Process backend only.
    pub fn max_tasks_per_worker(mut self, tasks: Option<u64>) -> Self {
        self.recycle.max_tasks = tasks;
        self
    }

    /// Retire a worker process whose resident memory is above this many bytes after a
    /// batch, and start a fresh one in its slot: checked between batches, so a worker
    /// may pass it by what the batches already queued to it add [default: none]. Process
    /// backend only.
    pub fn max_worker_rss(mut self, bytes: Option<u64>) -> Self {
        self.recycle.max_rss_bytes = bytes;
        self
    }

    /// Both recycling limits at once (see [`PoolBuilder::max_tasks_per_worker`] and
    /// [`PoolBuilder::max_worker_rss`]).
    pub fn recycle(mut self, recycle: Recycle) -> Self {
        self.recycle = recycle;
        self
    }

    /// The Redis broker of the redis backend.
    #[cfg(feature = "redis")]
    pub fn broker(mut self, url: crate::broker::BrokerUrl) -> Self {
        self.broker = Some(url);
        self
    }

    /// The backend this builder asks for.
    pub fn backend_kind(&self) -> BackendKind {
        self.backend
    }

    /// The broker's URL without its password, if the builder has one.
    pub fn broker_redacted(&self) -> Option<String> {
        #[cfg(feature = "redis")]
        return self.broker.as_ref().map(|url| url.redacted());
        #[cfg(not(feature = "redis"))]
        None
    }

    /// The worker count this builder asks for, 0 resolved.
    pub fn resolved_workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(MAX_WORKERS)
    }

    /// Starts every worker of a pool running `task`, and waits until each has answered.
    pub fn build<T: Task>(&self, task: T) -> Result<Pool<T>, PoolError> {
        if self.workers > MAX_WORKERS {
            return Err(PoolError::Config(format!(
                "{} workers is more than the {MAX_WORKERS} a pool can have",
                self.workers
            )));
        }
        if self.backend == BackendKind::Sequential && self.timeout.is_some() {
            return Err(PoolError::Config(
                "a timeout cannot stop a task of the sequential backend, which runs in the \
                 caller's own thread: use the thread backend with one worker"
                    .into(),
            ));
        }
        self.check_recycle()?;
        Pool::start(self.clone(), task)
    }

    /// Recycling needs workers that are processes of their own: a thread's tasks and
    /// memory are its caller's, and a broker's workers are on other hosts. [`build`]
    /// checks it too; a command line can check it before it opens its output.
    ///
    /// [`build`]: PoolBuilder::build
    pub fn check_recycle(&self) -> Result<(), PoolError> {
        if self.recycle.max_tasks == Some(0) {
            return Err(PoolError::Config(
                "a worker must be allowed at least one task before it is retired".into(),
            ));
        }
        let why = match self.backend {
            _ if !self.recycle.is_on() => return Ok(()),
            BackendKind::Process => return Ok(()),
            BackendKind::Thread => {
                "a thread's memory is the caller's own process's, and a thread cannot be \
                 retired alone"
            }
            BackendKind::Sequential => {
                "its tasks run in the caller's own thread, whose memory is the caller's"
            }
            BackendKind::Redis => {
                "its workers are processes on other hosts: give `worker --broker --isolate \
                 process` its own recycling limits"
            }
        };
        Err(PoolError::Config(format!(
            "worker recycling (a task or memory limit per worker) needs the process backend, \
             not the {} backend: {why}",
            self.backend.as_str()
        )))
    }

    /// What every runner of the pool needs besides the task.
    pub(crate) fn run_settings(&self) -> RunSettings {
        RunSettings {
            seed: self.seed,
            // With a timeout that the scheduler enforces, a runner reports each task as
            // it ends: an outcome held back for batching would make it blame the wrong
            // task of a batch for a hang.
            report_each_task: self.timeout.is_some(),
            trace: self.trace,
        }
    }

    /// The backend this builder asks for, ready to start runners.
    pub(crate) fn backend_for<T: Task>(&self, task: T) -> Result<Box<dyn Backend<T>>, PoolError> {
        let settings = self.run_settings();
        Ok(match self.backend {
            BackendKind::Process => {
                let program = match &self.worker {
                    Some(program) => program.clone(),
                    None => WorkerBinary::this_program()?,
                };
                Box::new(process::ProcessBackend::new(program, &task, settings)?)
            }
            BackendKind::Thread => Box::new(thread::ThreadBackend {
                task: Arc::new((task, settings)),
            }),
            BackendKind::Sequential => Box::new(sequential::SequentialBackend {
                task: Arc::new((task, settings)),
            }),
            #[cfg(feature = "redis")]
            BackendKind::Redis => {
                let url = self.broker.clone().ok_or_else(|| {
                    PoolError::Config("the redis backend needs a broker URL".into())
                })?;
                Box::new(super::broker::RedisBackend::new(
                    url,
                    &task,
                    settings,
                    self.timeout,
                )?)
            }
            #[cfg(not(feature = "redis"))]
            BackendKind::Redis => {
                return Err(PoolError::Config(
                    "the redis backend needs workpool's `redis` feature".into(),
                ))
            }
        })
    }
}
