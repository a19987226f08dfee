//! Worker recycling: workers retired after a task limit or above a memory limit, replaced
//! at once, with every task run exactly once, through crashes, timeouts and interrupts.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use crate::chaos::Coordinator;
use crate::cleanup::assert_no_worker_left;
use crate::common::{assert_every_index_once, assert_exit, assert_usage_error, parse_jsonl};
use crate::common::{run_output, stdout, Run};

/// Tasks per worker pid, from the records of the tasks that reached a worker.
fn tasks_per_pid(run: &Run) -> BTreeMap<u64, u64> {
    let mut tasks = BTreeMap::new();
    for record in &run.records {
        if let Some(pid) = record["pid"].as_u64() {
            *tasks.entry(pid).or_insert(0) += 1;
        }
    }
    tasks
}

/// The summary's `workers_retired` count for `reason`.
fn retired(run: &Run, reason: &str) -> u64 {
    run.summary["workers_retired"][reason].as_u64().unwrap_or(0)
}

/// Processes whose parent is `parent`, zombies included, from `/proc/*/stat`.
fn children_of(parent: i32) -> Vec<(i32, String)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the name: state, ppid, ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().unwrap_or("").to_string();
        if fields.next().and_then(|p| p.parse().ok()) == Some(parent) {
            children.push((pid, state));
        }
    }
    children
}

#[test]
fn twenty_thousand_noops_on_two_workers_with_seven_tasks_each() {
    let out = run_output(&[
        "noop",
        "--count",
        "20000",
        "-w",
        "2",
        "--max-tasks-per-worker",
        "7",
        "--format",
        "jsonl",
    ]);
    assert_exit(&out, 0);
    let run = parse_jsonl(&stdout(&out));
    assert_every_index_once(&run, 20000);
    assert_eq!(run.succeeded(), 20000);
    let per_pid = tasks_per_pid(&run);
    let most = per_pid.values().max().copied().unwrap_or(0);
    assert!(most <= 7, "a worker ran {most} tasks");
    // Batches fit what a worker has left: nearly every worker ran all seven.
    let full = per_pid.values().filter(|&&n| n == 7).count() as u64;
    assert!(full >= 20000 / 7 - 2, "{full} workers ran seven tasks");
    assert!(retired(&run, "max_tasks") >= full, "{}", run.summary);
    assert_eq!(run.summary_u64("workers_replaced"), 0);
    assert_eq!(run.summary_u64("retries"), 0);
    assert_no_worker_left(per_pid.into_keys());
}

#[test]
fn leaking_tasks_retire_workers_above_the_memory_limit() {
    const LEAK_MIB: u64 = 4;
    const LIMIT_MIB: u64 = 48;
    let out = run_output(&[
        "noop",
        "--count",
        "300",
        "-w",
        "2",
        "--fault",
        "leak:4MiB@*",
        "--max-worker-rss",
        "48MiB",
        "--format",
        "jsonl",
    ]);
    assert_exit(&out, 0);
    let run = parse_jsonl(&stdout(&out));
    assert_every_index_once(&run, 300);
    assert_eq!(run.succeeded(), 300, "a retirement costs no task");
    assert!(retired(&run, "max_rss") >= 10, "{}", run.summary);
    assert_eq!(run.summary_u64("workers_replaced"), 0);
    // What a worker leaked is its task count times the leak: at most the limit plus the
    // batches queued to it when its memory was read (two, of at most `largest_batch`).
    let per_pid = tasks_per_pid(&run);
    let batch = run.summary_u64("largest_batch");
    let most = per_pid.values().max().copied().unwrap_or(0);
    assert!(
        most * LEAK_MIB <= LIMIT_MIB + 2 * batch * LEAK_MIB,
        "a worker leaked {} MiB: {per_pid:?}",
        most * LEAK_MIB
    );
    // And none was retired long before the limit.
    let mut counts: Vec<u64> = per_pid.values().copied().collect();
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    assert!(median * LEAK_MIB >= LIMIT_MIB / 2, "{per_pid:?}");
    assert_no_worker_left(per_pid.into_keys());
}

#[test]
fn retirements_racing_crashes_and_timeouts_still_run_each_task_once() {
    let args = |retries: &'static str| {
        [
            "noop",
            "--count",
            "400",
            "-w",
            "2",
            "--chunk",
            "3",
            "--max-tasks-per-worker",
            "5",
            // A task that kills its worker, one that aborts, one that hangs: the last ones
            // each worker takes before its limit, and others.
            "--fault",
            "kill@4/1,abort@29/1,hang@57/1,kill@123/1",
            "--timeout",
            "1s",
            "--retries",
            retries,
            "--format",
            "jsonl",
        ]
    };
    // With a retry, every task succeeds: exit code 0.
    let out = run_output(&args("1"));
    assert_exit(&out, 0);
    let run = parse_jsonl(&stdout(&out));
    assert_every_index_once(&run, 400);
    assert_eq!(run.succeeded(), 400);
    // Each fault struck once and its task's second attempt succeeded. (A batch sent to a
    // worker that has just died can make the pool blame the task before the one that
    // killed it, whose outcome was still on its way: then a fifth task is retried.)
    for index in [4, 29, 57, 123] {
        assert_eq!(run.records[index]["attempts"], 2, "{}", run.records[index]);
    }
    let replaced = run.summary_u64("workers_replaced");
    assert!((4..=6).contains(&replaced), "{}", run.summary);
    assert_eq!(run.summary_u64("retries"), replaced);
    assert!(retired(&run, "max_tasks") >= 60, "{}", run.summary);
    let per_pid = tasks_per_pid(&run);
    assert!(per_pid.values().all(|&n| n <= 5), "{per_pid:?}");
    assert_no_worker_left(per_pid.into_keys());

    // Without one, the four fail as crashes and a timeout, once each: exit code 1.
    let out = run_output(&args("0"));
    assert_exit(&out, 1);
    let run = parse_jsonl(&stdout(&out));
    assert_every_index_once(&run, 400);
    assert_eq!(run.failed_with("timeout"), 1);
    let crashed = run.failed_with("worker_crashed");
    assert!((3..=5).contains(&crashed), "{}", run.summary);
    assert_eq!(run.succeeded(), 399 - crashed);
}

#[test]
fn an_interrupt_while_workers_retire_reaps_them_all() {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let out = dir.path().join("out.jsonl");
    let file = std::fs::File::create(&out).expect("cannot create output file");
    let args = [
        "noop",
        "--count",
        "1000000",
        "-w",
        "2",
        "--max-tasks-per-worker",
        "3",
        "--format",
        "jsonl",
    ];
    let mut coordinator = Coordinator::start(&args, Stdio::from(file), dir.path());
    std::thread::sleep(Duration::from_millis(1500));
    // Hundreds of workers were retired by now: each was reaped, none is left waiting.
    let children = children_of(coordinator.pid());
    assert!(
        children.len() <= 8,
        "the coordinator has {} children: {children:?}",
        children.len()
    );
    coordinator.signal(libc::SIGINT);
    let status = coordinator.wait(Duration::from_secs(60));
    let text = std::fs::read_to_string(&out).expect("cannot read output");
    assert_eq!(status.code(), Some(130), "{}", coordinator.stderr());
    let run = parse_jsonl(&text);
    let mut indices = run.indices();
    let listed = indices.len() as u64;
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len() as u64, listed, "a task reported twice");
    let not_started = run.summary_u64("not_started");
    assert_eq!(listed + not_started, 1_000_000, "{}", run.summary);
    assert!(retired(&run, "max_tasks") >= 10, "{}", run.summary);
    let per_pid = tasks_per_pid(&run);
    assert!(per_pid.values().all(|&n| n <= 3), "{per_pid:?}");
    assert_no_worker_left(per_pid.into_keys());
}

#[test]
fn recycling_is_a_usage_error_where_workers_are_not_processes() {
    for backend in ["thread", "sequential"] {
        for flag in [
            ["--max-tasks-per-worker", "10"],
            ["--max-worker-rss", "64MiB"],
        ] {
            let out = run_output(&[
                "noop",
                "--count",
                "3",
                "--backend",
                backend,
                flag[0],
                flag[1],
            ]);
            assert_usage_error(&out, &["needs the process backend", backend, "memory"]);
        }
    }
    let out = run_output(&["noop", "--max-worker-rss", "64 parsecs"]);
    assert_usage_error(&out, &["--max-worker-rss", "not a size"]);
    let out = run_output(&["noop", "--max-tasks-per-worker", "0"]);
    assert_usage_error(&out, &["--max-tasks-per-worker"]);
}
