#![warn(missing_docs)]

//! workpool runs *your* tasks on a pool of worker processes, threads, or hosts connected
//! through a Redis broker, with crash isolation, timeouts that kill, retries with backoff,
//! results in input or completion order, and bounded memory over a lazy input.
//!
//! Implement [`Task`] for a type, call [`Worker::serve_if_worker`] first thing in `main`
//! (your program is its own worker), and run inputs on a [`Pool`] built with
//! [`PoolBuilder`]:
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use workpool::{Attempt, BackendKind, PoolBuilder, Task, TaskError, Worker};
//!
//! #[derive(Serialize, Deserialize)]
//! struct WordCount;
//!
//! impl Task for WordCount {
//!     const NAME: &'static str = "word-count";
//!     type Input = String;
//!     type Output = usize;
//!     fn run(&self, text: &String, _: &Attempt) -> Result<usize, TaskError> {
//!         Ok(text.split_whitespace().count())
//!     }
//! }
//!
//! fn main() -> Result<(), workpool::PoolError> {
//!     Worker::new().task::<WordCount>().serve_if_worker();
//!     let mut pool = PoolBuilder::new()
//!         .backend(BackendKind::Process)
//!         .workers(4)
//!         .build(WordCount)?;
//!     let texts = ["one two", "three", "four five six"].map(String::from);
//!     for record in pool.map(texts) {
//!         println!("{}: {:?}", record.index, record.result);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! The same program runs on threads (`BackendKind::Thread`), in its own thread
//! (`BackendKind::Sequential`), or on any host reaching a Redis broker
//! (`BackendKind::Redis`, feature `redis`): started with `WORKPOOL_ROLE=worker` and
//! `WORKPOOL_BROKER=URL`, it serves that broker instead.

#[cfg(feature = "redis")]
pub mod broker;
pub mod clock;
pub mod codec;
#[cfg(feature = "workloads")]
pub mod datagen;
pub mod diag;
pub mod execute;
pub mod interrupt;
pub mod outcome;
pub mod pool;
pub mod protocol;
pub mod seed;
pub mod size;
pub mod task;
pub mod worker;
#[cfg(feature = "workloads")]
pub mod workload;

pub use outcome::{ErrorKind, Outcome, TaskError};
pub use pool::{BackendKind, Chunk, Order, Pool, PoolBuilder, PoolError, Record, Stats};
pub use task::{Attempt, Task};
pub use worker::Worker;

/// What the pool's hand-offs spin for before sleeping: a message that comes
/// within it (a tiny task's outcome, the next batch) saves the wake-up of a sleeping
/// thread, tens of microseconds on a VM; short enough that a thread waiting longer costs
/// the machine next to nothing. A channel's own wait does not do this for us: flume
/// parks at once, and crossbeam-channel, which did spin, also yielded to the scheduler,
/// which under CPU contention cost each hand-off a scheduler tick (4 ms).
pub(crate) const BRIEF_SPIN: std::time::Duration = std::time::Duration::from_micros(10);

/// The timeout of a [`recv_spinning`] that only a message or the channel's end can end.
pub(crate) const FOREVER: std::time::Duration = std::time::Duration::MAX;

/// Receives from `channel`, first spinning for up to `spin` before sleeping. A thread
/// put to sleep takes tens of microseconds to wake on a virtual machine, more than a
/// whole round trip of a tiny task, so a runner that expects its next message soon keeps
/// its core for a moment instead (bounded: an idle pool does not burn CPU). Not with
/// `WORKPOOL_SPIN=off`, to compare.
pub fn recv_spinning<T>(
    channel: &flume::Receiver<T>,
    spin: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<T, flume::RecvTimeoutError> {
    static SPINNING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let spinning =
        *SPINNING.get_or_init(|| std::env::var_os(worker::env::SPIN).is_none_or(|v| v != "off"));
    let limit = if spinning {
        spin.min(timeout)
    } else {
        Default::default()
    };
    if limit.is_zero() {
        return recv_for(channel, timeout);
    }
    // The clock starts at the first poll that finds nothing: a busy pool's runner finds
    // its next batch waiting, once per batch, and reads no clock for it.
    let mut polling_since = None;
    loop {
        match channel.try_recv() {
            Ok(message) => return Ok(message),
            Err(flume::TryRecvError::Disconnected) => {
                return Err(flume::RecvTimeoutError::Disconnected)
            }
            Err(flume::TryRecvError::Empty) => {}
        }
        let polled = polling_since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed();
        if polled >= limit {
            return recv_for(channel, timeout.saturating_sub(polled));
        }
        // Each poll takes the channel's lock, which the sender needs too: polls back to
        // back would make a sender wait for it, so they are a few hundred nanoseconds apart.
        for _ in 0..POLL_GAP {
            std::hint::spin_loop();
        }
    }
}

/// Spin-loop hints between two polls of [`recv_spinning`].
const POLL_GAP: u32 = 32;

/// `channel.recv_timeout(timeout)`, for any timeout: flume's panics when the deadline
/// would overflow the clock, and a timeout that long means no deadline at all.
fn recv_for<T>(
    channel: &flume::Receiver<T>,
    timeout: std::time::Duration,
) -> Result<T, flume::RecvTimeoutError> {
    match std::time::Instant::now().checked_add(timeout) {
        Some(deadline) => channel.recv_deadline(deadline),
        None => channel
            .recv()
            .map_err(|_| flume::RecvTimeoutError::Disconnected),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::recv_spinning;

    #[test]
    fn any_timeout_is_taken_even_one_past_the_end_of_the_clock() {
        for spin in [Duration::ZERO, Duration::from_micros(10)] {
            let (sender, receiver) = flume::unbounded();
            sender.send(7).unwrap();
            assert_eq!(recv_spinning(&receiver, spin, Duration::MAX), Ok(7));
            drop(sender);
            assert_eq!(
                recv_spinning(&receiver, spin, Duration::MAX),
                Err(flume::RecvTimeoutError::Disconnected)
            );
        }
    }

    #[test]
    fn a_wait_with_nothing_to_receive_ends_at_its_timeout() {
        let (_sender, receiver) = flume::unbounded::<u8>();
        let timeout = Duration::from_millis(20);
        let start = std::time::Instant::now();
        assert_eq!(
            recv_spinning(&receiver, Duration::from_micros(10), timeout),
            Err(flume::RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= timeout);
    }
}

/// The "Your own tasks" section of the README, compiled and run as a doctest so that the
/// example a user copies always builds and works.
#[cfg(doctest)]
#[doc = include_str!("../../docs/library.md")]
pub struct YourOwnTasks;
