//! The `noop` workload: returns at once, echoing its payload back (unless an injected
//! fault strikes first). It measures the pool's own overhead, and its faults test what the
//! pool does when a task misbehaves.

use serde::{Deserialize, Serialize};

use super::fault::Fault;
use crate::{Attempt, Task, TaskError};

/// Echoes each input's payload back.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Noop;

/// One `noop` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoopInput {
    /// Bytes sent to the runner and back.
    #[serde(with = "crate::codec::bytes")]
    pub payload: Vec<u8>,
    /// A fault to strike before returning.
    pub fault: Option<Fault>,
}

/// What a `noop` task returns: its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoopOutput {
    /// The echoed payload.
    #[serde(with = "crate::codec::bytes")]
    pub payload: Vec<u8>,
}

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Input = NoopInput;
    type Output = NoopOutput;

    fn run(&self, input: &NoopInput, attempt: &Attempt) -> Result<NoopOutput, TaskError> {
        self.run_owned(input.clone(), attempt)
    }

    /// A worker process's input is its own: the echo moves it (a MiB payload saves a copy).
    fn run_owned(&self, input: NoopInput, attempt: &Attempt) -> Result<NoopOutput, TaskError> {
        if let Some(fault) = &input.fault {
            fault.strike(attempt.number);
        }
        Ok(NoopOutput {
            payload: input.payload,
        })
    }

    fn input_bytes(input: &NoopInput) -> usize {
        input.payload.len()
    }
}
