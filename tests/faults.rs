//! Faults injected into real workers and threads: timeouts, crashes of every kind, panics,
//! early stops and corrupt frames. Every task still ends with exactly one outcome.

use serde_json::Value as Json;

use crate::cleanup::{leftover, Leftover};
use crate::common::{
    assert_contains, assert_every_index_once, assert_exit, assert_stopped_by_first,
    assert_usage_error, coordinator, output, parse_jsonl, run_jsonl, run_output, stderr, stdout,
    Run,
};

/// A run expected to end with exit code `code`, parsed from its jsonl output.
fn run_expecting(code: i32, args: &[&str]) -> Run {
    let out = run_output(&[args, &["--format", "jsonl"]].concat());
    assert_exit(&out, code);
    parse_jsonl(&stdout(&out))
}

fn kind(record: &Json) -> &str {
    record["error"]["kind"].as_str().unwrap_or("")
}

fn message(record: &Json) -> &str {
    record["error"]["message"].as_str().unwrap_or("")
}

#[test]
fn timeout_kills_the_worker_and_a_new_one_serves_the_rest() {
    let run = run_expecting(
        1,
        &[
            "io",
            "--count",
            "4",
            "--ms",
            "60000,20,20,20",
            "-w",
            "1",
            "--timeout",
            "300ms",
        ],
    );
    let late = &run.records[0];
    assert_eq!(kind(late), "timeout", "{late}");
    assert_contains(message(late), "killed and replaced", "the timeout message");
    let old_pid = late["pid"].as_u64().unwrap();
    for record in &run.records[1..] {
        assert_eq!(record["ok"], true, "{record}");
        assert_ne!(
            record["pid"].as_u64().unwrap(),
            old_pid,
            "the killed worker served {record}"
        );
    }
    assert_eq!(
        leftover(old_pid as i32),
        Leftover::Gone,
        "the timed-out worker is gone"
    );
    assert_eq!(run.summary_u64("workers_replaced"), 1);
}

#[test]
fn timeout_on_threads_abandons_the_thread_and_keeps_the_pool_at_strength() {
    let run = run_expecting(
        1,
        &[
            "io",
            "--count",
            "4",
            "--ms",
            "60000,20,20,20",
            "-w",
            "1",
            "--timeout",
            "300ms",
            "--backend",
            "thread",
        ],
    );
    assert_eq!(kind(&run.records[0]), "timeout");
    assert_contains(
        message(&run.records[0]),
        "cannot be killed",
        "the timeout message",
    );
    for record in &run.records[1..] {
        assert_eq!(
            record["ok"], true,
            "the replacement thread serves: {record}"
        );
    }
}

#[test]
fn a_timed_out_task_is_retried_when_retries_allow() {
    let run = run_jsonl(&[
        "noop",
        "--count",
        "3",
        "--fault",
        "hang@1/1",
        "--timeout",
        "300ms",
        "--retries",
        "1",
        "--backoff-ms",
        "0",
        "-w",
        "1",
    ]);
    assert_eq!(run.records[1]["attempts"], 2, "{}", run.records[1]);
    assert_eq!(run.summary_u64("retries"), 1);
}

#[test]
fn each_kind_of_worker_crash_is_reported_and_the_pool_goes_on() {
    for (fault, says) in [
        ("abort", "SIGABRT"),
        ("exit", "exited with code 3"),
        ("kill", "SIGKILL"),
    ] {
        let spec = format!("{fault}@1");
        let run = run_expecting(1, &["noop", "--count", "6", "--fault", &spec, "-w", "2"]);
        assert_every_index_once(&run, 6);
        for record in &run.records {
            if record["index"] == 1 {
                assert_eq!(kind(record), "worker_crashed", "{record}");
                assert_contains(message(record), says, "the crash message");
            } else {
                assert_eq!(record["ok"], true, "{fault}: {record}");
            }
        }
        assert_eq!(run.summary_u64("workers_replaced"), 1, "{fault}");
    }
}

#[test]
fn a_crashed_task_is_retried_on_a_new_worker() {
    let run = run_jsonl(&[
        "noop",
        "--count",
        "4",
        "--fault",
        "abort@2/1",
        "--retries",
        "1",
        "--backoff-ms",
        "0",
        "-w",
        "1",
    ]);
    assert_eq!(run.records[2]["attempts"], 2, "{}", run.records[2]);
    let pids = run.pids();
    assert_ne!(pids[0], pids[2], "the retry ran on the replacement worker");
}

#[test]
fn a_task_that_crashes_every_worker_is_not_retried_forever() {
    let run = run_expecting(
        1,
        &[
            "noop",
            "--count",
            "3",
            "--fault",
            "kill@1",
            "--retries",
            "3",
            "--backoff-ms",
            "0",
            "-w",
            "2",
        ],
    );
    let record = &run.records[1];
    assert_eq!(
        (kind(record), record["attempts"].as_u64()),
        ("worker_crashed", Some(4))
    );
    assert_eq!(run.summary_u64("workers_replaced"), 4);
    assert_eq!(run.records[0]["ok"], true);
    assert_eq!(run.records[2]["ok"], true);
}

#[test]
fn a_panic_on_the_thread_backend_is_an_outcome_and_the_thread_keeps_serving() {
    let run = run_expecting(
        1,
        &[
            "noop",
            "--count",
            "4",
            "--fault",
            "panic@1",
            "--backend",
            "thread",
            "-w",
            "1",
        ],
    );
    assert_eq!(kind(&run.records[1]), "panicked");
    assert_contains(
        message(&run.records[1]),
        "injected panic",
        "the panic message",
    );
    for i in [0, 2, 3] {
        assert_eq!(run.records[i]["ok"], true, "{}", run.records[i]);
    }
    assert_eq!(
        run.summary_u64("workers_replaced"),
        0,
        "a panic costs no thread"
    );
}

#[test]
fn process_ending_faults_are_refused_where_they_would_end_the_coordinator() {
    for backend in ["thread", "sequential"] {
        let out = run_output(&["noop", "--fault", "abort@1", "--backend", backend]);
        assert_usage_error(&out, &["--backend process"]);
    }
}

#[test]
fn first_n_stops_after_n_successes_and_cancels_the_rest() {
    // Reaching the goal is success.
    let run = run_expecting(
        0,
        &[
            "io", "--count", "12", "--ms", "30", "-w", "2", "--first", "3",
        ],
    );
    assert_stopped_by_first(&run, 3, 12);
}

#[test]
fn fail_fast_stops_at_the_first_failure() {
    let run = run_expecting(
        1,
        &[
            "fetch",
            "--tickers",
            "AAPL,BAD,MSFT,GOOGL",
            "--latency-ms",
            "0",
            "--backend",
            "sequential",
            "--fail-fast",
        ],
    );
    let kinds: Vec<&str> = run.records.iter().map(kind).collect();
    assert_eq!(kinds, ["", "invalid_input", "cancelled", "cancelled"]);
    assert_contains(
        run.summary["stopped"].as_str().unwrap(),
        "--fail-fast",
        "summary.stopped",
    );
}

#[test]
fn corrupt_frames_mark_the_worker_crashed_and_are_never_trusted() {
    let corruptions = [
        "garbage",
        "truncated",
        "oversized",
        "region-id",
        "region-length",
    ];
    for corruption in corruptions {
        let out = output(coordinator().env("WORKPOOL_TEST_FRAME", corruption).args([
            "run", "noop", "--count", "3", "-w", "1", "--format", "jsonl",
        ]));
        assert_exit(&out, 1);
        assert_contains(&stderr(&out), "sent a corrupt frame", "stderr");
        let run = parse_jsonl(&stdout(&out));
        assert_every_index_once(&run, 3);
        for record in &run.records {
            assert_eq!(kind(record), "worker_crashed", "{corruption}: {record}");
            assert_contains(message(record), "corrupt frame", "the crash message");
        }
    }
}

#[test]
fn bad_durations_and_unreadable_inputs_are_usage_errors() {
    for bad in ["soon", "0s", "-1s"] {
        let out = run_output(&["noop", &format!("--timeout={bad}")]);
        assert_usage_error(&out, &["--timeout"]);
    }
    let out = run_output(&["fetch", "--tickers-file", "/nonexistent/tickers.txt"]);
    assert_usage_error(&out, &["/nonexistent/tickers.txt"]);
    let out = run_output(&["noop", "--first", "0"]);
    assert_usage_error(&out, &["--first"]);
}

#[test]
fn fault_specs_that_would_silently_do_something_else_are_refused() {
    for (faults, needles) in [
        // `/0` read as "no attempt" but struck every one.
        ("kill@1/0", &["kill@1/0", "from 1 to"][..]),
        // An index past --count struck nothing.
        ("panic@100", &["panic@100", "--count 3"][..]),
        // The second fault on a task replaced the first.
        ("hang@1,panic@1", &["hang@1", "panic@1", "same task"][..]),
    ] {
        let out = run_output(&["noop", "--count", "3", "--fault", faults]);
        assert_usage_error(&out, needles);
    }
}

#[test]
fn timeout_is_refused_where_a_task_runs_in_the_coordinators_own_thread() {
    let out = run_output(&[
        "noop",
        "--count",
        "3",
        "--fault",
        "hang@1",
        "--timeout",
        "1s",
        "--backend",
        "sequential",
    ]);
    assert_usage_error(&out, &["--timeout", "--backend thread"]);
}
