//! The vocabulary the tests speak: a `coordinator()` command that finds the freshly built
//! worker, runs parsed from `jsonl` into records and a summary, and assertions whose
//! failure messages show what the binary printed.

use std::fmt::Debug;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value as Json;

/// The binaries cargo built for this test run.
pub const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");
pub const WORKER: &str = env!("CARGO_BIN_EXE_worker");

/// The statistics a `files` record's value holds, beside its row counts.
pub const FILE_STATS: [&str; 6] = [
    "start_price",
    "end_price",
    "total_return_pct",
    "volatility_pct",
    "avg_volume",
    "sharpe",
];

/// A hung run fails its test instead of blocking the suite; no test comes near this.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// `coordinator` with `WORKPOOL_WORKER` pointing at the worker built alongside it.
pub fn coordinator() -> Command {
    let mut cmd = Command::new(COORDINATOR);
    cmd.env("WORKPOOL_WORKER", WORKER).timeout(RUN_TIMEOUT);
    cmd
}

/// Runs a prepared command and returns what it printed, whatever its exit code.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("cannot run coordinator")
}

/// Runs `coordinator run ARGS` and returns what it printed, whatever its exit code.
pub fn run_output(args: &[&str]) -> Output {
    output(coordinator().arg("run").args(args))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything a failed assertion should show about a run.
fn describe(out: &Output) -> String {
    const SHOWN: usize = 4000;
    let mut stdout: String = stdout(out).chars().take(SHOWN + 1).collect();
    if stdout.chars().count() > SHOWN {
        stdout = stdout.chars().take(SHOWN).collect();
        stdout.push_str("\n[... cut]");
    }
    format!(
        "status: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        stderr(out)
    )
}

/// Asserts the process exited with `code`.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit code {code}\n{}",
        describe(out)
    );
}

/// Asserts `text` contains `needle`, naming what `text` is.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str, what: &str) {
    assert!(
        text.contains(needle),
        "{what} should mention {needle:?}, but is:\n{text}"
    );
}

/// Asserts a usage or set-up error: exit code 2 and a message on stderr mentioning every
/// one of `needles`.
#[track_caller]
pub fn assert_usage_error(out: &Output, needles: &[&str]) {
    assert_exit(out, 2);
    let err = stderr(out);
    for needle in needles {
        assert_contains(&err, needle, "stderr");
    }
}

/// Asserts the items are pairwise distinct.
#[track_caller]
pub fn assert_distinct<T: Ord + Debug + Clone>(items: &[T], what: &str) {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        items.len(),
        "expected {} distinct {what}, got {items:?}",
        items.len()
    );
}

/// A finished run, from its `jsonl` output.
pub struct Run {
    /// One object per outcome, in the order printed.
    pub records: Vec<Json>,
    /// The object inside the closing `{"summary": ...}` line.
    pub summary: Json,
}

impl Run {
    /// The `index` of each record, in the order printed.
    /// How many records succeeded.
    pub fn succeeded(&self) -> usize {
        self.records.iter().filter(|r| r["ok"] == true).count()
    }

    /// How many records failed with error kind `kind`.
    pub fn failed_with(&self, kind: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r["error"]["kind"] == kind)
            .count()
    }

    pub fn indices(&self) -> Vec<u64> {
        self.u64s("index")
    }

    /// The `pid` of each record, in the order printed.
    pub fn pids(&self) -> Vec<u64> {
        self.u64s("pid")
    }

    /// The `worker` id of each record, in the order printed.
    pub fn workers(&self) -> Vec<u64> {
        self.u64s("worker")
    }

    /// The `finished_ms` of each record, in the order printed.
    pub fn finished_ms(&self) -> Vec<f64> {
        self.records
            .iter()
            .map(|r| f64_field(r, "finished_ms"))
            .collect()
    }

    /// The value of each record, asserting every task succeeded.
    #[track_caller]
    pub fn values(&self) -> Vec<&Json> {
        self.records
            .iter()
            .map(|r| {
                assert_eq!(r["ok"], Json::Bool(true), "task failed: {r}");
                r.get("value")
                    .unwrap_or_else(|| panic!("successful record has no value: {r}"))
            })
            .collect()
    }

    /// `summary[key]` as an integer.
    #[track_caller]
    pub fn summary_u64(&self, key: &str) -> u64 {
        u64_field(&self.summary, key)
    }

    fn u64s(&self, key: &str) -> Vec<u64> {
        self.records.iter().map(|r| u64_field(r, key)).collect()
    }
}

/// `object[key]` as an integer, or a failure that shows the object.
#[track_caller]
pub fn u64_field(object: &Json, key: &str) -> u64 {
    object[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {object}"))
}

/// `object[key]` as a number, or a failure that shows the object.
#[track_caller]
pub fn f64_field(object: &Json, key: &str) -> f64 {
    object[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {object}"))
}

/// Splits `jsonl` output into records and the summary, asserting its shape: every line
/// one JSON object, the last and only the last a `{"summary": {...}}`.
#[track_caller]
pub fn parse_jsonl(text: &str) -> Run {
    let mut lines: Vec<Json> = text
        .lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("line {} is not JSON ({err}): {line}", n + 1))
        })
        .collect();
    let last = lines
        .pop()
        .expect("no output at all: expected a summary line");
    let summary = match last {
        Json::Object(mut map) if map.len() == 1 && map.contains_key("summary") => {
            map.remove("summary").expect("checked above")
        }
        other => panic!("the last line should be {{\"summary\": ...}}, is {other}"),
    };
    for record in &lines {
        assert!(
            record.get("index").is_some() && record.get("summary").is_none(),
            "not an outcome record: {record}"
        );
    }
    Run {
        records: lines,
        summary,
    }
}

/// `coordinator run ARGS --format jsonl`, expected to succeed (exit 0), parsed.
#[track_caller]
pub fn run_jsonl(args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--format", "jsonl"]);
    let out = run_output(&all);
    assert_exit(&out, 0);
    parse_jsonl(&stdout(&out))
}

/// Asserts a run stopped by `--first n` over `count` tasks: every index once, exactly `n`
/// successes, every other task `cancelled` (some of them), and the summary says why.
#[track_caller]
pub fn assert_stopped_by_first(run: &Run, n: usize, count: u64) {
    assert_every_index_once(run, count);
    let ok = run.succeeded();
    let cancelled = run.failed_with("cancelled");
    assert_eq!(ok, n, "exactly {n} successes");
    assert_eq!(
        ok + cancelled,
        count as usize,
        "everything else is cancelled"
    );
    assert!(cancelled >= 1);
    assert_contains(
        run.summary["stopped"].as_str().unwrap_or_default(),
        &format!("--first {n}"),
        "summary.stopped",
    );
}

/// Asserts every index `0..count` appears exactly once, whatever the order.
#[track_caller]
pub fn assert_every_index_once(run: &Run, count: u64) {
    let mut indices = run.indices();
    indices.sort_unstable();
    assert_eq!(
        indices,
        (0..count).collect::<Vec<_>>(),
        "indices of the run"
    );
}

/// Writes an executable `worker.sh` into `dir` that counts its starts and runs `body`
/// (shell; `$n` is this start's number, from 1), then the real worker.
pub fn worker_script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let starts = dir.join("starts");
    std::fs::create_dir(&starts).expect("cannot create dir");
    let script = dir.join("worker.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             n=1; while ! mkdir '{s}/'$n 2>/dev/null; do n=$((n+1)); done\n\
             {body}\n\
             exec '{w}' \"$@\"\n",
            s = starts.display(),
            w = WORKER
        ),
    )
    .expect("cannot write worker script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("cannot make the script executable");
    script
}
