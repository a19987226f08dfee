//! Usage and set-up errors: exit code 2 and a message that names the culprit and, where
//! there is one, the fix.

use crate::common::{assert_usage_error, coordinator, output, run_output, stderr};

#[test]
fn missing_worker_from_env_is_a_setup_error() {
    let out = output(
        coordinator()
            .env("WORKPOOL_WORKER", "/nonexistent/worker")
            .args(["run", "noop", "--count", "1"]),
    );
    assert_usage_error(&out, &["/nonexistent/worker", "cargo build"]);
}

#[test]
fn missing_worker_from_flag_is_a_setup_error() {
    let out = run_output(&["noop", "--count", "1", "--worker-bin", "/nonexistent"]);
    assert_usage_error(&out, &["/nonexistent", "cargo build"]);
}

#[test]
fn zero_workers_is_a_usage_error() {
    for backend in ["process", "thread"] {
        let out = run_output(&[
            "noop",
            "--count",
            "1",
            "--workers",
            "0",
            "--backend",
            backend,
        ]);
        assert_usage_error(&out, &["--workers"]);
    }
}

#[test]
fn bad_chunk_is_a_usage_error() {
    for chunk in ["0", "abc", "-1"] {
        // `--chunk=-1`, so that clap does not take `-1` for a flag of its own.
        let out = run_output(&["noop", "--count", "1", &format!("--chunk={chunk}")]);
        assert_usage_error(&out, &["--chunk", chunk]);
    }
}

#[test]
fn unknown_workload_is_a_usage_error() {
    let out = run_output(&["bogus", "--count", "1"]);
    assert_usage_error(&out, &["bogus"]);
}

#[test]
fn unwritable_output_names_the_path() {
    let out = run_output(&[
        "noop",
        "--count",
        "1",
        "--format",
        "jsonl",
        "-o",
        "/nonexistent-dir/x.jsonl",
    ]);
    assert_usage_error(&out, &["/nonexistent-dir/x.jsonl"]);
    assert!(out.stdout.is_empty(), "records printed despite the error");
}

#[test]
fn worker_of_another_protocol_version_is_refused_not_waited_for() {
    let out = output(
        coordinator()
            .env("WORKPOOL_TEST_PROTOCOL", "999")
            .args(["run", "noop", "--count", "1"]),
    );
    assert_usage_error(&out, &["protocol version 999", "rebuild"]);
}

#[test]
fn worker_that_exits_before_connecting_is_reported() {
    // `false` is executable and exits at once with code 1, without ever connecting.
    let out = run_output(&["noop", "--count", "1", "--worker-bin", "/bin/false"]);
    assert_usage_error(&out, &["exited with code 1 before connecting"]);
}

#[test]
fn worker_binary_that_is_not_executable_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker");
    std::fs::write(&path, "not a program").unwrap();
    let path = path.to_string_lossy().into_owned();
    let out = run_output(&["noop", "--count", "1", "--worker-bin", &path]);
    assert_usage_error(&out, &[&path, "not an executable"]);
}

#[test]
fn write_errors_name_the_output() {
    for (path, cause) in [
        ("/dev/full", "No space left on device"),
        ("/proc/version", "/proc/version"),
    ] {
        let out = run_output(&["noop", "--count", "3", "-o", path]);
        assert_usage_error(&out, &[&format!("cannot write {path}"), cause]);
    }
}

#[test]
fn gen_data_errors_name_the_file_and_say_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    // A ticker's file that is a directory: the write fails on that path.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("AAPL.csv")).unwrap();
    for (target, culprit) in [(&blocker, blocker.clone()), (&data, data.join("AAPL.csv"))] {
        let target = target.to_string_lossy();
        let out = output(coordinator().args(["gen-data", "--dir", &target]));
        let culprit = culprit.to_string_lossy();
        assert_usage_error(&out, &[&culprit]);
        let err = crate::common::stderr(&out);
        assert_eq!(err.matches("os error").count(), 1, "the cause once: {err}");
    }
}

#[test]
fn broker_on_the_command_line_selects_the_redis_backend() {
    // Nothing listens on port 1: the redis backend is the one that fails.
    let out = run_output(&["noop", "--count", "1", "--broker", "redis://127.0.0.1:1"]);
    assert_usage_error(&out, &["broker", "127.0.0.1:1"]);
    let out = run_output(&[
        "noop",
        "--count",
        "1",
        "--broker",
        "redis://127.0.0.1:1",
        "--backend",
        "thread",
    ]);
    assert_usage_error(&out, &["--broker", "--backend thread"]);
    // From the environment, the URL waits for --backend redis.
    let out = output(
        coordinator()
            .env("WORKPOOL_BROKER", "redis://127.0.0.1:1")
            .args(["run", "noop", "--count", "1", "--backend", "thread"]),
    );
    crate::common::assert_exit(&out, 0);
}

/// `worker` started by a person without flags points at `--broker`, the way a person
/// starts one, rather than at the coordinator's own `--connect`.
#[test]
fn a_worker_started_alone_points_at_broker() {
    let out = std::process::Command::new(crate::common::WORKER)
        .env_remove("WORKPOOL_BROKER")
        .env_remove("WORKPOOL_CONNECT")
        .output()
        .expect("cannot run worker");
    assert_usage_error(&out, &["--broker URL", "WORKPOOL_BROKER"]);
    assert!(!stderr(&out).contains("--connect"), "{}", stderr(&out));
}
