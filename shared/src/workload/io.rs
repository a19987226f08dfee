//! The `io` workload: the notebook's `io_bound_task`, a sleep standing in for waiting on
//! a disk or a network.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Attempt, Task, TaskError};

/// Sleeps for each input's duration.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Io;

/// Returns how long it slept, in milliseconds.
impl Task for Io {
    const NAME: &'static str = "io";
    type Input = IoInput;
    type Output = u64;

    fn run(&self, input: &IoInput, _: &Attempt) -> Result<u64, TaskError> {
        std::thread::sleep(Duration::from_millis(input.ms));
        Ok(input.ms)
    }
}

/// One `io` task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoInput {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
}
