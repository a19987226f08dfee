//! The built-in workloads of the workpool command line, each a [`Task`](crate::Task)
//! implemented exactly as a user implements theirs: one file per workload, nothing in the
//! pool, the protocol or the worker knows them.

pub mod cpu;
pub mod fault;
pub mod fetch;
pub mod files;
mod gil;
pub mod io;
pub mod noop;
mod payload;

pub use cpu::{cpu_closed_form, sum_of_squares, Cpu, CpuInput};
pub use fetch::{Fetch, FetchInput};
pub use files::{FilePath, Files};
pub use io::{Io, IoInput};
pub use noop::{Noop, NoopInput, NoopOutput};
pub use payload::{noop_payload, noop_payload_intact};

/// Adds every built-in workload to a worker: what the `worker` binary serves.
pub fn register(worker: crate::Worker) -> crate::Worker {
    worker
        .task::<Noop>()
        .task::<Io>()
        .task::<Cpu>()
        .task::<Fetch>()
        .task::<Files>()
}
