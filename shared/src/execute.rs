//! Running tasks: one attempt, caught if it panics, and a batch, with its outcomes handed
//! on in groups. Every runner (thread, inline, worker process) shares this code.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::outcome::{Arrival, Trace};
use crate::protocol::{Job, RunSettings};
use crate::{Attempt, ErrorKind, Outcome, Task, TaskError};

/// Runs one task, catching a panic in its code so that it becomes a `panicked` outcome and
/// the thread or process that ran it keeps serving.
pub fn execute<T: Task>(
    task: &T,
    settings: &RunSettings,
    job: &Job<T::Input>,
    arrival: Arrival,
) -> Outcome<T::Output> {
    execute_from(task, settings, job, arrival, Instant::now()).0
}

/// A job as a runner holds it: lent ([`Task::run`]) by a runner that shares the pool's
/// copy, which a retry needs again (the sequential backend), or given
/// ([`Task::run_owned`]) by one whose copy is for this attempt alone (a worker process
/// decoded it, a worker thread was sent a clone of the batch).
pub trait RunnableJob<T: Task> {
    /// The task's position in the run's input.
    fn index(&self) -> u64;
    /// Which attempt this is, from 1.
    fn attempt(&self) -> u32;
    /// Runs the task's code on the input.
    fn run(self, task: &T, attempt: &Attempt) -> Result<T::Output, TaskError>;
}

impl<T: Task> RunnableJob<T> for &Job<T::Input> {
    fn index(&self) -> u64 {
        self.index
    }
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn run(self, task: &T, attempt: &Attempt) -> Result<T::Output, TaskError> {
        task.run(&self.input, attempt)
    }
}

impl<T: Task> RunnableJob<T> for Job<T::Input> {
    fn index(&self) -> u64 {
        self.index
    }
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn run(self, task: &T, attempt: &Attempt) -> Result<T::Output, TaskError> {
        task.run_owned(self.input, attempt)
    }
}

/// [`execute`] for a task that started at `start`, returning when it ended too: in a batch
/// one task's end is the next one's start, so a tiny task costs one clock read, not two
/// (the clock was an eighth of a worker's time on no-ops, measured with perf).
fn execute_from<T: Task>(
    task: &T,
    settings: &RunSettings,
    job: impl RunnableJob<T>,
    arrival: Arrival,
    start: Instant,
) -> (Outcome<T::Output>, Instant) {
    let started_ns = settings.trace.then(crate::clock::monotonic_ns);
    let attempt = Attempt {
        index: job.index(),
        number: job.attempt(),
        seed: settings.seed,
    };
    let result =
        panic::catch_unwind(AssertUnwindSafe(|| job.run(task, &attempt))).unwrap_or_else(|panic| {
            Err(TaskError::new(
                ErrorKind::Panicked,
                panic_message(panic.as_ref()),
            ))
        });
    let end = Instant::now();
    let outcome = Outcome {
        index: attempt.index,
        attempt: attempt.number,
        result,
        run_us: u64::try_from((end - start).as_micros()).unwrap_or(u64::MAX),
        trace: started_ns.map(|started_ns| Trace {
            received_ns: arrival.received_ns,
            decoded_ns: arrival.decoded_ns,
            started_ns,
            finished_ns: crate::clock::monotonic_ns(),
        }),
    };
    (outcome, end)
}

/// How long a runner may hold finished outcomes before sending them, so that tiny tasks
/// travel in batches while a slow task's outcome is never held back behind the next one.
pub const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// Runs a batch in order, handing outcomes to `flush` in groups: whenever [`FLUSH_AFTER`]
/// has passed since the last flush, and at the end. `flush` returns false when nobody wants
/// the rest (the runner was abandoned), which stops the batch. Every runner shares this:
/// with `&batch` the tasks borrow their inputs, with `batch` they own them (see
/// [`RunnableJob`]).
pub fn run_batch<T: Task, J: RunnableJob<T>>(
    task: &T,
    settings: &RunSettings,
    jobs: impl IntoIterator<Item = J>,
    arrival: Arrival,
    mut flush: impl FnMut(Vec<Outcome<T::Output>>) -> bool,
) {
    let jobs = jobs.into_iter();
    let mut pending = Vec::with_capacity(jobs.size_hint().0.min(1024));
    let mut last_flush = Instant::now();
    let mut start = last_flush;
    for job in jobs {
        let (outcome, end) = execute_from(task, settings, job, arrival, start);
        pending.push(outcome);
        start = end;
        if settings.report_each_task || end - last_flush >= FLUSH_AFTER {
            if !flush(std::mem::take(&mut pending)) {
                return;
            }
            // The flush (a send) is not any task's run time.
            start = Instant::now();
            last_flush = start;
        }
    }
    if !pending.is_empty() {
        flush(pending);
    }
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_batch_runs_run_and_a_given_one_run_owned() {
        use crate::task::tests::{pattern, Bytes, Scribble};
        let jobs: Vec<Job<Bytes>> = (0..3)
            .map(|index| Job {
                index,
                attempt: 1,
                input: Bytes(pattern(index as usize * 1000)),
            })
            .collect();
        let task = Scribble { fail_first: false };
        let settings = RunSettings::default();
        let run = |given: bool| {
            let mut outcomes = Vec::new();
            let flush = |done: Vec<_>| {
                outcomes.extend(done);
                true
            };
            if given {
                run_batch(&task, &settings, jobs.clone(), Arrival::default(), flush);
            } else {
                run_batch(&task, &settings, &jobs, Arrival::default(), flush);
            }
            outcomes
        };
        for given in [false, true] {
            let outcomes = run(given);
            assert_eq!(outcomes.len(), jobs.len());
            for (outcome, job) in outcomes.into_iter().zip(&jobs) {
                assert_eq!(outcome.index, job.index);
                let echoed = outcome.result.unwrap();
                assert_eq!(echoed.owned, given);
                assert_eq!(echoed.bytes, job.input);
            }
        }
    }

    #[test]
    fn panic_messages_are_recovered() {
        let payload = std::panic::catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "formatted 7");
        let payload = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "plain");
    }
}
