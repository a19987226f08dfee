//! What the coordinator and its workers agree on: the task and outcome types, the wire
//! protocol and its codec, and the workloads themselves, so that a thread and a worker
//! process run exactly the same code.

pub mod clock;
pub mod codec;
pub mod datagen;
pub mod outcome;
pub mod protocol;
pub mod seed;
pub mod task;
pub mod workload;

pub use outcome::{ErrorKind, Outcome, TaskError, Value};
pub use task::{Context, Input, Task};
