//! Usage and set-up errors: exit code 2 and a message that names the culprit and, where
//! there is one, the fix.

use crate::common::{assert_usage_error, coordinator, output, run_output};

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
