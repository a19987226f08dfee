//! The workloads: the code a task runs, identical in a thread and in a worker process.

mod cpu;
mod gil;
pub mod fetch;
pub mod files;

pub use cpu::{cpu_closed_form, sum_of_squares};

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::{Context, ErrorKind, Input, Outcome, Task, TaskError, Value};

/// Runs one task, catching a panic in its code so that it becomes a `panicked` outcome and
/// the thread or process that ran it keeps serving.
pub fn execute(ctx: &Context, task: &Task) -> Outcome {
    let start = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(ctx, task)))
        .unwrap_or_else(|panic| Err(TaskError::new(ErrorKind::Panicked, panic_message(&panic))));
    Outcome {
        index: task.index,
        attempt: task.attempt,
        result,
        run_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

fn run(ctx: &Context, task: &Task) -> Result<Value, TaskError> {
    match &task.input {
        Input::Noop { payload } => Ok(Value::Noop {
            payload: payload.clone(),
        }),
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
        Input::File { path } => {
            files::summarize(std::path::Path::new(path), &ctx.files).map(Value::FileStats)
        }
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
