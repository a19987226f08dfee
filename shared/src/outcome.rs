//! An outcome: what became of one task. Failures are data, never panics.

use serde::{Deserialize, Serialize};

/// The result of one attempt at one task, as a worker reports it; `O` is the task type's
/// output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome<O> {
    /// The task's position in the input.
    pub index: u64,
    /// Which attempt this was (1 = first).
    pub attempt: u32,
    /// The value, or why there is none.
    pub result: Result<O, TaskError>,
    /// Time spent running the task's code, in microseconds.
    pub run_us: u64,
    /// Where the time went on the runner's side, when the run asked for it.
    pub trace: Option<Trace>,
}

/// A task's journey through its runner, on the shared monotonic clock
/// ([`crate::clock::monotonic_ns`]), in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// The message carrying the task was received (worker) or taken (thread).
    pub received_ns: u64,
    /// The message was decoded (equal to `received_ns` where nothing is decoded).
    pub decoded_ns: u64,
    /// The task's code started.
    pub started_ns: u64,
    /// The task's code returned.
    pub finished_ns: u64,
}

/// When the message carrying a batch arrived at its runner, for [`Trace`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrival {
    /// The message was received.
    pub received_ns: u64,
    /// The message was decoded.
    pub decoded_ns: u64,
}

impl Arrival {
    /// A message received at `received_ns` and decoded just now: the second clock read
    /// is made only for a trace, which alone shows the decoding.
    pub(crate) fn decoded(received_ns: u64, trace: bool) -> Arrival {
        Arrival {
            received_ns,
            decoded_ns: if trace {
                crate::clock::monotonic_ns()
            } else {
                received_ns
            },
        }
    }

    /// A batch handed over in memory: nothing to decode.
    pub fn now() -> Arrival {
        let now = crate::clock::monotonic_ns();
        Arrival {
            received_ns: now,
            decoded_ns: now,
        }
    }
}

/// Why a task has no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TaskError {
    /// What went wrong, and so whether it is retried.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

impl TaskError {
    /// An error of `kind`, explained by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        TaskError {
            kind,
            message: message.into(),
        }
    }
}

/// The kinds of failure a task can end with. [`ErrorKind::is_transient`] says which are
/// retried; a task's own code returns the kind that says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The input can never succeed; never retried.
    InvalidInput,
    /// A (simulated) network failure; transient.
    Network,
    /// Reading or writing a file failed.
    Io,
    /// A file's content could not be parsed.
    Parse,
    /// The task ran longer than `--timeout`.
    Timeout,
    /// The task's code panicked.
    Panicked,
    /// The worker process running the task died.
    WorkerCrashed,
    /// The run stopped before the task finished.
    Cancelled,
}

impl ErrorKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::InvalidInput,
        ErrorKind::Network,
        ErrorKind::Io,
        ErrorKind::Parse,
        ErrorKind::Timeout,
        ErrorKind::Panicked,
        ErrorKind::WorkerCrashed,
        ErrorKind::Cancelled,
    ];

    /// Whether another attempt may succeed, so `--retries` applies.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Network | ErrorKind::Timeout | ErrorKind::WorkerCrashed
        )
    }

    /// The snake_case name used in every export.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Network => "network",
            ErrorKind::Io => "io",
            ErrorKind::Parse => "parse",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Panicked => "panicked",
            ErrorKind::WorkerCrashed => "worker_crashed",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
