//! The thread backend: each slot is an OS thread of the coordinator fed by a channel.
//!
//! A thread cannot be killed: Rust (like every language with shared memory) offers no safe
//! way to stop a thread from outside, since it may hold locks or be halfway through a write.
//! So "kill" here means abandon: the scheduler stops listening to the thread and starts a
//! replacement, while the abandoned thread finishes its current task and then exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flume::Sender;

use super::{Backend, Capabilities, EventSink, Events, PoolError, Runner, Started};
use crate::outcome::Arrival;
use crate::protocol::{Job, RunSettings};
use crate::{execute, Task};

pub(crate) struct ThreadBackend<T> {
    /// Shared by every thread of the pool.
    pub task: Arc<(T, RunSettings)>,
}

/// Threads of the pool carry this prefix, which the coordinator's panic hook recognises:
/// a task's panic is reported as an outcome, not printed.
pub const THREAD_NAME_PREFIX: &str = "workpool-worker-";

impl<T: Task> Backend<T> for ThreadBackend<T> {
    fn capabilities(&self) -> Capabilities {
        Capabilities::LOCAL
    }

    fn start(&mut self, slot: usize, generation: u64, events: &Events<T>) -> Started<T> {
        let (batches, inbox) = flume::unbounded::<Vec<Job<T::Input>>>();
        let abandoned = Arc::new(AtomicBool::new(false));
        let sink = EventSink {
            slot,
            generation,
            events: events.clone(),
        };
        let task = Arc::clone(&self.task);
        let stop = Arc::clone(&abandoned);
        std::thread::Builder::new()
            .name(format!("{THREAD_NAME_PREFIX}{slot}"))
            .spawn(move || {
                while let Ok(batch) =
                    crate::recv_spinning(&inbox, crate::BRIEF_SPIN, crate::FOREVER)
                {
                    let (task, settings) = &*task;
                    let arrival = super::arrival_if_traced(settings);
                    execute::run_batch(task, settings, batch, arrival, |outcomes| {
                        !stop.load(Ordering::Relaxed) && sink.outcomes(outcomes, Arrival::now())
                    });
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            })
            .map_err(PoolError::Thread)?;
        Ok(Box::new(ThreadRunner {
            batches: Some(batches),
            abandoned,
        }))
    }
}

struct ThreadRunner<I> {
    batches: Option<Sender<Vec<Job<I>>>>,
    abandoned: Arc<AtomicBool>,
}

impl<T: Task> Runner<T> for ThreadRunner<T::Input> {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn send(&mut self, jobs: &[Job<T::Input>]) -> Result<Option<u64>, String> {
        match &self.batches {
            Some(batches) => batches
                .send(jobs.to_vec())
                .map(|()| None)
                .map_err(|_| "worker thread has stopped".to_string()),
            None => Err("worker thread was shut down".to_string()),
        }
    }

    fn kill(&mut self) -> Option<String> {
        self.abandoned.store(true, Ordering::Relaxed);
        self.batches = None;
        None
    }

    fn shutdown(&mut self) {
        // Closing the channel ends the thread's loop once its queue is empty. It is not
        // joined: a thread stuck in a task must not hold up the coordinator's exit.
        self.batches = None;
    }
}
