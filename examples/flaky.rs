//! Calls a flaky function on a pool, the way a program calls a remote service: some calls
//! fail with a transient error, some hang. The pool retries the first, kills (or, on
//! threads, abandons) the second once they pass the timeout and retries them too.
//!
//!     cargo run --release --example flaky -- --backend process
//!
//! Prints each result as it completes and exits 0 when every call ended as expected.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use workpool::{Attempt, ErrorKind, Task, TaskError, Worker};

/// The task: square a number through an unreliable service. Its settings (how long a
/// hung call hangs) travel to every worker once.
#[derive(Serialize, Deserialize)]
struct Flaky {
    hang_ms: u64,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky-square";
    type Input = u64;
    type Output = u64;

    fn run(&self, n: &u64, attempt: &Attempt) -> Result<u64, TaskError> {
        match (n % 5, attempt.number) {
            // A network error: transient, so the pool tries again.
            (1, 1) | (3, 1 | 2) => Err(TaskError::new(
                ErrorKind::Network,
                format!("connection reset while squaring {n}"),
            )),
            // A call that never answers: only the timeout ends it.
            (2, 1) => {
                std::thread::sleep(Duration::from_millis(self.hang_ms));
                Ok(n * n)
            }
            _ => Ok(n * n),
        }
    }
}

/// The attempts call `n` takes: the ones `run` fails, plus the one that succeeds.
fn expected_attempts(n: u64) -> u32 {
    match n % 5 {
        1 | 2 => 2,
        3 => 3,
        _ => 1,
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backend: common::Backend,
    /// Calls to make.
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// How long a call may run before it is stopped and retried, in milliseconds.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
}

fn main() -> anyhow::Result<ExitCode> {
    // Started by the pool as one of its workers, this program serves there and exits.
    Worker::new().task::<Flaky>().serve_if_worker();

    let args = Args::parse();
    let (builder, _local) = args.backend.builder()?;
    let mut pool = builder
        .retries(3)
        .backoff(Duration::from_millis(20))
        .timeout(Some(Duration::from_millis(args.timeout_ms)))
        .build(Flaky {
            hang_ms: args.timeout_ms * 10,
        })?;
    let mut unexpected = 0;
    for record in pool.as_completed(0..args.count) {
        let n = record.input;
        let as_expected = record.result == Ok(n * n) && record.attempts == expected_attempts(n);
        unexpected += u32::from(!as_expected);
        println!(
            "{n:>3}: {:?} after {} attempt(s){}",
            record.result,
            record.attempts,
            if as_expected { "" } else { "  <- unexpected" }
        );
    }
    Ok(if unexpected == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{unexpected} call(s) did not end as expected");
        ExitCode::FAILURE
    })
}
