//! `--order input` keeps the input order whatever the completion order; `--order
//! completion` prints outcomes as they finish. Sleeps are far apart so that which task
//! finishes first does not depend on the machine's speed.

use crate::common::{assert_distinct, run_jsonl};

/// Four sleeps, longest first, on four workers: they finish in reverse input order.
fn input_order_is_kept(backend: &str) {
    let run = run_jsonl(&[
        "io",
        "--count",
        "4",
        "--ms",
        "400,300,200,100",
        "-w",
        "4",
        "--backend",
        backend,
    ]);
    assert_eq!(run.indices(), [0, 1, 2, 3], "outcomes out of input order");
    let slept: Vec<u64> = run
        .values()
        .iter()
        .map(|v| v["slept_ms"].as_u64().expect("slept_ms"))
        .collect();
    assert_eq!(slept, [400, 300, 200, 100], "each index kept its own input");
    // The premise: the tasks really did run side by side and finish in another order.
    assert_distinct(&run.workers(), "workers");
    let finished = run.finished_ms();
    assert!(
        finished[3] < finished[0],
        "the 100 ms task should finish before the 400 ms one: finished_ms {finished:?}"
    );
}

/// A long task then a short one on two workers: the short one is printed first.
fn completion_order_is_finish_order(backend: &str) {
    let run = run_jsonl(&[
        "io",
        "--count",
        "2",
        "--ms",
        "600,50",
        "-w",
        "2",
        "--order",
        "completion",
        "--backend",
        backend,
    ]);
    assert_eq!(
        run.indices(),
        [1, 0],
        "the 50 ms task should be printed before the 600 ms one"
    );
    let finished = run.finished_ms();
    assert!(
        finished.windows(2).all(|w| w[0] <= w[1]),
        "finished_ms should not decrease in completion order: {finished:?}"
    );
    assert_eq!(run.summary["order"], "completion");
}

#[test]
fn input_order_is_kept_by_processes() {
    input_order_is_kept("process");
}

#[test]
fn input_order_is_kept_by_threads() {
    input_order_is_kept("thread");
}

#[test]
fn completion_order_by_processes() {
    completion_order_is_finish_order("process");
}

#[test]
fn completion_order_by_threads() {
    completion_order_is_finish_order("thread");
}
