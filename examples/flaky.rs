//! Calls a flaky function on a pool, the way a program calls a remote service: some calls
//! fail with a transient error, some hang. The pool retries the first, kills (or, on
//! threads, abandons) the second once they pass the timeout and retries them too.
//!
//!     cargo run --release --example flaky -- --backend process
//!
//! With `--crash`, some calls also panic (a `panicked` outcome, never retried) and some
//! abort the process running them (its worker is replaced, the call retried): process and
//! redis backends only, as on threads an abort would end this very program.
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
    /// Also panic on some calls and abort the process on others.
    crash: bool,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky-square";
    type Input = u64;
    type Output = u64;

    fn run(&self, n: &u64, attempt: &Attempt) -> Result<u64, TaskError> {
        if self.crash {
            match (n % 7, attempt.number) {
                (5, _) => panic!("the service panicked on {n}"),
                (6, 1) => std::process::abort(),
                _ => {}
            }
        }
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

/// How call `n` ends: its value, or the kind of its error, and after how many attempts.
fn expected(n: u64, crash: bool) -> (Result<u64, ErrorKind>, u32) {
    match (crash, n % 7, n % 5) {
        (true, 5, _) => (Err(ErrorKind::Panicked), 1),
        // The abort costs one attempt; then the usual rules apply from attempt 2 on.
        (true, 6, 3) => (Ok(n * n), 3),
        (true, 6, _) => (Ok(n * n), 2),
        (_, _, 1 | 2) => (Ok(n * n), 2),
        (_, _, 3) => (Ok(n * n), 3),
        _ => (Ok(n * n), 1),
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
    /// Also make some calls panic and some abort their process.
    #[arg(long)]
    crash: bool,
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
            crash: args.crash,
        })?;
    let mut unexpected = 0;
    for record in pool.as_completed(0..args.count) {
        let n = record.input;
        let ended = record.result.as_ref().map(|v| *v).map_err(|e| e.kind);
        let as_expected = (ended, record.attempts) == expected(n, args.crash);
        unexpected += u32::from(!as_expected);
        let outcome = match &record.result {
            Ok(value) => format!("ok {value}"),
            Err(err) => err.to_string(),
        };
        println!(
            "{n:>3}: {outcome} after {} attempt(s){}",
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
