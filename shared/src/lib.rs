//! What the coordinator and its workers agree on: the task and outcome types, the wire
//! protocol and its codec, and the workloads themselves, so that a thread and a worker
//! process run exactly the same code.

#[cfg(feature = "redis")]
pub mod broker;
pub mod clock;
pub mod codec;
#[cfg(feature = "workloads")]
pub mod datagen;
pub mod diag;
pub mod interrupt;
pub mod outcome;
pub mod pool;
pub mod protocol;
pub mod seed;
pub mod task;
pub mod workload;

pub use outcome::{ErrorKind, Outcome, TaskError, Value};
pub use task::{Context, Input, Task};

/// Receives from `channel`, first spinning for up to `spin` before sleeping. A thread
/// put to sleep takes tens of microseconds to wake on a virtual machine, more than a
/// whole round trip of a tiny task, so a runner that expects its next message soon keeps
/// its core for a moment instead (bounded: an idle pool does not burn CPU).
pub fn recv_spinning<T>(
    channel: &crossbeam_channel::Receiver<T>,
    spin: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<T, crossbeam_channel::RecvTimeoutError> {
    let start = std::time::Instant::now();
    let limit = spin.min(timeout);
    loop {
        match channel.try_recv() {
            Ok(message) => return Ok(message),
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                return Err(crossbeam_channel::RecvTimeoutError::Disconnected)
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        if start.elapsed() >= limit {
            return channel.recv_timeout(timeout.saturating_sub(start.elapsed()));
        }
        std::hint::spin_loop();
    }
}
