//! The sequential backend: tasks run in the coordinator's own thread, one at a time, at the
//! moment they are handed over. The baseline every speedup is measured against.
//!
//! Nothing can stop a task running in the coordinator's own thread, so this backend takes
//! no `--timeout`, and an interrupt that finds a task stuck here ends the process instead
//! of waiting for it (see [`running_batch`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::outcome::Arrival;
use crate::{workload, Context, Task};
use crossbeam_channel::Sender;

use super::{Backend, BackendKind, Event, EventSink, PoolError, Runner};

/// Batches begun by inline runners in this process, and the number of the one running
/// now (0: none). Two relaxed stores per batch: nothing measurable next to a task.
static BEGUN: AtomicU64 = AtomicU64::new(0);
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// The number of the batch that the sequential backend is running in the coordinator's own
/// thread, if any. Seeing the same number at an interrupt and a moment later means that
/// thread is stuck in a task and the run cannot stop by itself.
pub fn running_batch() -> Option<u64> {
    match RUNNING.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

pub(crate) struct SequentialBackend {
    context: Context,
}

impl SequentialBackend {
    pub fn new(context: Context) -> Self {
        SequentialBackend { context }
    }
}

impl Backend for SequentialBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sequential
    }

    fn start(
        &mut self,
        slot: usize,
        generation: u64,
        events: &Sender<Event>,
    ) -> Result<Box<dyn Runner>, PoolError> {
        Ok(Box::new(InlineRunner {
            context: self.context.clone(),
            sink: EventSink {
                slot,
                generation,
                events: events.clone(),
            },
        }))
    }
}

struct InlineRunner {
    context: Context,
    sink: EventSink,
}

impl Runner for InlineRunner {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn send(&mut self, tasks: &[Task]) -> Result<Option<u64>, String> {
        RUNNING.store(BEGUN.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
        workload::run_batch(&self.context, tasks, Arrival::now(), |outcomes| {
            self.sink.outcomes(outcomes, Arrival::now())
        });
        RUNNING.store(0, Ordering::Relaxed);
        Ok(None)
    }

    fn kill(&mut self) -> Option<String> {
        None
    }

    fn shutdown(&mut self) {}
}
