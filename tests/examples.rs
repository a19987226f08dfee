//! The example programs, run as a user runs them (`--backend process|thread`): every
//! outcome they print is checked here against what the test computes on its own, and a
//! user's task that panics, aborts its process, hangs past the timeout or fails
//! transiently is shown to end exactly as the built-in `noop` faults do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value as Json;

use crate::common::{assert_exit, parse_jsonl, run_output, stdout};

/// A hung example fails its test instead of blocking the suite.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The example binary `name`, built by cargo next to this test binary (`cargo test`
/// builds the examples; a filtered run builds the one it needs).
pub(crate) fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let profile = deps
        .parent()
        .and_then(Path::parent)
        .expect("target/PROFILE/deps");
    let path = profile.join("examples").join(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cannot run cargo");
        assert!(status.success(), "cargo build --example {name}: {status}");
    }
    path
}

/// Runs example `name` with `args`, whatever its exit code.
pub(crate) fn run_example(name: &str, args: &[&str]) -> Output {
    Command::new(example(name))
        .args(args)
        .env_remove("WORKPOOL_BROKER")
        .timeout(EXAMPLE_TIMEOUT)
        .output()
        .expect("cannot run the example")
}

/// FNV-1a, 64 bits: what `hash_files` prints, computed independently.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |state, &b| {
        (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A directory of files to hash: nested, of several sizes (one empty, one over the
/// example's read block), with a hidden file and a `target` directory it must skip.
fn tree() -> (tempfile::TempDir, BTreeMap<PathBuf, Vec<u8>>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = BTreeMap::new();
    for (name, len) in [
        ("a.txt", 10usize),
        ("empty", 0),
        ("sub/b.bin", 200_000),
        ("sub/deeper/c", 3),
    ] {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + name.len()) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        files.insert(path, bytes);
    }
    for skipped in [".hidden", "target/skipped"] {
        let path = dir.path().join(skipped);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, b"not hashed").expect("write");
    }
    (dir, files)
}

fn hash_files_on(backend: &str) {
    let (dir, files) = tree();
    let root = dir.path().to_str().expect("utf-8 temp dir");
    let out = run_example(
        "hash_files",
        &["--backend", backend, "-w", "2", "--dir", root],
    );
    assert_exit(&out, 0);
    let printed: Vec<(PathBuf, u64, u64)> = stdout(&out)
        .lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let hash = u64::from_str_radix(fields.next().expect("hash"), 16).expect("hex");
            let bytes = fields.next().expect("size").parse().expect("size");
            (PathBuf::from(fields.next().expect("path")), bytes, hash)
        })
        .collect();
    // Input order is the order of the walk, which is by name: the map's order.
    let expected: Vec<(PathBuf, u64, u64)> = files
        .iter()
        .map(|(path, bytes)| (path.clone(), bytes.len() as u64, fnv1a(bytes)))
        .collect();
    assert_eq!(printed, expected, "{}", stdout(&out));
}

#[test]
fn hash_files_on_processes() {
    hash_files_on("process");
}

#[test]
fn hash_files_on_threads() {
    hash_files_on("thread");
}

/// How the `flaky` example's call `n` must end, by its documented rules: `ok` and the
/// value, or the error kind, and the attempts it takes.
fn flaky_expected(n: u64, crash: bool) -> (String, u32) {
    let ok = format!("ok {}", n * n);
    if crash && n % 7 == 5 {
        return ("panicked".into(), 1);
    }
    // An abort costs the first attempt; a transient error or a hang costs one more each.
    let aborted = u32::from(crash && n % 7 == 6);
    let failed = match n % 5 {
        1 | 2 => 1,
        3 => 2,
        _ => 0,
    };
    (ok, 1 + aborted.max(failed))
}

/// Every line `flaky` printed, by call: how it ended (`ok V` or the error kind) and after
/// how many attempts.
pub(crate) fn flaky_outcomes(out: &Output) -> BTreeMap<u64, (String, u32)> {
    let mut outcomes = BTreeMap::new();
    for line in stdout(out).lines() {
        let (n, rest) = line.split_once(':').expect("N: OUTCOME");
        let (outcome, attempts) = rest.rsplit_once(" after ").expect("after K attempt(s)");
        let attempts = attempts
            .trim_end_matches(" attempt(s)")
            .parse()
            .expect("attempts");
        let outcome = outcome.trim();
        let ended = match outcome.split_once(':') {
            Some((kind, _)) => kind.to_string(), // "panicked: the service panicked on 5"
            None => outcome.to_string(),         // "ok 25"
        };
        let n: u64 = n.trim().parse().expect("call number");
        assert!(
            outcomes.insert(n, (ended, attempts)).is_none(),
            "call {n} reported twice:\n{}",
            stdout(out)
        );
    }
    outcomes
}

/// Checks a `flaky` run of calls `0..count`: each reported once, as its rules say.
pub(crate) fn assert_flaky(out: &Output, count: u64, crash: bool) {
    assert_exit(out, 0);
    let outcomes = flaky_outcomes(out);
    let expected: BTreeMap<u64, (String, u32)> =
        (0..count).map(|n| (n, flaky_expected(n, crash))).collect();
    assert_eq!(outcomes, expected, "{}", stdout(out));
}

#[test]
fn flaky_on_processes_and_threads() {
    for backend in ["process", "thread"] {
        let args = ["--backend", backend, "-w", "2", "--timeout-ms", "300"];
        assert_flaky(&run_example("flaky", &args), 20, false);
    }
}

/// The built-in `noop` task with a fault at each of the first four indexes, on the same
/// pool settings as `flaky`: how each ends, and after how many attempts.
fn builtin_faults() -> Vec<(String, u32)> {
    let out = run_output(&[
        "noop",
        "--count",
        "4",
        "--fault",
        "panic@0",
        "--fault",
        "abort@1/1",
        "--fault",
        "hang@2/1",
        "-w",
        "2",
        "--retries",
        "3",
        "--timeout",
        "300ms",
        "--format",
        "jsonl",
    ]);
    // The panic is a failure of its task: exit code 1.
    assert_exit(&out, 1);
    parse_jsonl(&stdout(&out))
        .records
        .iter()
        .map(|r| {
            let ended = match &r["error"] {
                Json::Null => "ok".to_string(),
                error => error["kind"].as_str().expect("error kind").to_string(),
            };
            (ended, r["attempts"].as_u64().expect("attempts") as u32)
        })
        .collect()
}

#[test]
fn a_user_task_that_panics_aborts_hangs_or_fails_ends_as_builtin_faults_do() {
    let out = run_example(
        "flaky",
        &[
            "--backend",
            "process",
            "-w",
            "2",
            "--timeout-ms",
            "300",
            "--crash",
        ],
    );
    assert_flaky(&out, 20, true);
    let user = flaky_outcomes(&out);
    let kind = |n: u64| {
        let (ended, attempts) = &user[&n];
        let ended = if ended.starts_with("ok") { "ok" } else { ended };
        (ended.to_string(), *attempts)
    };
    let builtin = builtin_faults();
    // A panic: `panicked`, never retried.
    assert_eq!(kind(5), builtin[0], "panic: user call 5 vs noop panic@0");
    // An abort of the process: the worker is replaced and the task retried.
    assert_eq!(kind(6), builtin[1], "abort: user call 6 vs noop abort@1/1");
    // A hang past the timeout: the worker is killed and the task retried.
    assert_eq!(kind(2), builtin[2], "hang: user call 2 vs noop hang@2/1");
    // A transient error is retried; the built-in has one in `fetch`, whose attempts are
    // counted the same way (tests/faults.rs); here the user's shows it directly.
    assert_eq!(kind(1), ("ok".to_string(), 2), "transient: user call 1");
}
