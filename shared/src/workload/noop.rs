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
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// A fault to strike before returning.
    pub fault: Option<Fault>,
}

/// What a `noop` task returns: its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoopOutput {
    /// The echoed payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Input = NoopInput;
    type Output = NoopOutput;

    fn run(&self, input: &NoopInput, attempt: &Attempt) -> Result<NoopOutput, TaskError> {
        if let Some(fault) = &input.fault {
            fault.strike(attempt.number);
        }
        Ok(NoopOutput {
            payload: input.payload.clone(),
        })
    }

    fn input_bytes(input: &NoopInput) -> usize {
        input.payload.len()
    }
}

/// The payload of `noop` task `index`: bytes that differ from task to task, so an echo
/// that came back for the wrong task, or damaged, is caught.
pub fn noop_payload(index: u64, len: usize) -> Vec<u8> {
    let mut state = crate::seed::fnv1a(&index.to_le_bytes());
    (0..len)
        .map(|_| {
            // xorshift64: cheap, and enough to make every task's bytes distinct.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
