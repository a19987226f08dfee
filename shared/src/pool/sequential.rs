//! The sequential backend: tasks run in the coordinator's own thread, one at a time, at the
//! moment they are handed over. The baseline every speedup is measured against.
//!
//! Nothing can stop a task running in the coordinator's own thread, so this backend takes
//! no `--timeout`, and an interrupt that finds a task stuck here ends the process instead
//! of waiting for it (see [`running_batch`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Backend, Capabilities, EventSink, Events, Runner, Started};
use crate::outcome::Arrival;
use crate::protocol::{Job, RunSettings};
use crate::{execute, Task};

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

pub(crate) struct SequentialBackend<T> {
    /// Shared with the runner of each generation.
    pub task: Arc<(T, RunSettings)>,
}

impl<T: Task> Backend<T> for SequentialBackend<T> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_slots: Some(1),
            fixed_depth: Some(1),
            batching_helps: false,
            ..Capabilities::LOCAL
        }
    }

    fn start(&mut self, slot: usize, generation: u64, events: &Events<T>) -> Started<T> {
        Ok(Box::new(InlineRunner {
            task: Arc::clone(&self.task),
            sink: EventSink {
                slot,
                generation,
                events: events.clone(),
            },
        }))
    }
}

struct InlineRunner<T: Task> {
    task: Arc<(T, RunSettings)>,
    sink: EventSink<T::Output>,
}

impl<T: Task> Runner<T> for InlineRunner<T> {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn send(&mut self, jobs: &[Job<T::Input>]) -> Result<Option<u64>, String> {
        RUNNING.store(BEGUN.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
        let (task, settings) = &*self.task;
        let arrival = super::arrival_if_traced(settings);
        execute::run_batch(task, settings, jobs, arrival, |outcomes| {
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
