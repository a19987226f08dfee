//! The workloads: the code a task runs, identical in a thread and in a worker process.

mod cpu;
pub mod fault;
pub mod fetch;
pub mod files;
mod gil;
mod payload;

pub use cpu::{cpu_closed_form, sum_of_squares};
pub use payload::{noop_payload, noop_payload_intact};

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::outcome::{Arrival, Trace};
use crate::{Context, ErrorKind, Input, Outcome, Task, TaskError, Value};

/// Runs one task, catching a panic in its code so that it becomes a `panicked` outcome and
/// the thread or process that ran it keeps serving.
pub fn execute(ctx: &Context, task: &Task, arrival: Arrival) -> Outcome {
    execute_from(ctx, task, arrival, Instant::now()).0
}

/// [`execute`] for a task that started at `start`, returning when it ended too: in a batch
/// one task's end is the next one's start, so a tiny task costs one clock read, not two
/// (the clock was an eighth of a worker's time on no-ops, measured with perf).
fn execute_from(
    ctx: &Context,
    task: &Task,
    arrival: Arrival,
    start: Instant,
) -> (Outcome, Instant) {
    let started_ns = ctx.trace.then(crate::clock::monotonic_ns);
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(ctx, task))).unwrap_or_else(|panic| {
        Err(TaskError::new(
            ErrorKind::Panicked,
            panic_message(panic.as_ref()),
        ))
    });
    let end = Instant::now();
    let outcome = Outcome {
        index: task.index,
        attempt: task.attempt,
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

fn run(ctx: &Context, task: &Task) -> Result<Value, TaskError> {
    match &task.input {
        Input::Noop { payload, fault } => {
            if let Some(fault) = fault {
                fault.strike(task.attempt);
            }
            Ok(Value::Noop {
                payload: payload.clone(),
            })
        }
        Input::Io { ms } => {
            std::thread::sleep(Duration::from_millis(*ms));
            Ok(Value::Io { slept_ms: *ms })
        }
        Input::Cpu { iters } => {
            let _gil = gil::hold(ctx.gil);
            Ok(Value::Cpu {
                total: sum_of_squares(*iters),
            })
        }
        Input::Fetch { ticker } => {
            fetch::fetch(ctx.seed, &ctx.fetch, ticker, task.attempt).map(Value::Quote)
        }
        Input::File { path } => files::summarize(path.as_path(), &ctx.files).map(Value::FileStats),
    }
}

/// How long a runner may hold finished outcomes before sending them, so that tiny tasks
/// travel in batches while a slow task's outcome is never held back behind the next one.
pub const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// Runs a batch in order, handing outcomes to `flush` in groups: whenever [`FLUSH_AFTER`]
/// has passed since the last flush, and at the end. `flush` returns false when nobody wants
/// the rest (the runner was abandoned), which stops the batch. Every runner shares this.
pub fn run_batch(
    ctx: &Context,
    tasks: &[Task],
    arrival: Arrival,
    mut flush: impl FnMut(Vec<Outcome>) -> bool,
) {
    let mut pending = Vec::with_capacity(tasks.len().min(1024));
    let mut last_flush = Instant::now();
    let mut start = last_flush;
    for task in tasks {
        let (outcome, end) = execute_from(ctx, task, arrival, start);
        pending.push(outcome);
        start = end;
        if ctx.report_each_task || end - last_flush >= FLUSH_AFTER {
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
    fn panic_messages_are_recovered() {
        let payload = std::panic::catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "formatted 7");
        let payload = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "plain");
    }
}
