//! Stopping a run early without memory in proportion to the tasks left: `--first`, an
//! interrupt on a billion-task run, and inputs read lazily; and a pool that starts only the
//! workers it can use, within the descriptors it has, through a worker that fails once.

use std::fs::File;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::chaos::{wait_for_lines, Coordinator};
use crate::common::{
    assert_every_index_once, assert_exit, assert_usage_error, coordinator, output, parse_jsonl,
    run_output, stderr, stdout, worker_script, WORKER,
};

/// A generous cap on the coordinator's peak memory while it stops: a few MiB are used;
/// the stop used to allocate per task left (gigabytes).
const PEAK_MIB_CAP: f64 = 64.0;

/// A row of the summary table, as text: `│ name ┆ value │`.
#[track_caller]
fn table_row(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|line| {
            let mut cells = line.split('┆');
            let key = cells
                .next()?
                .trim_matches(|c: char| c == '│' || c.is_whitespace());
            let value = cells
                .next()?
                .trim_matches(|c: char| c == '│' || c.is_whitespace());
            (key == name).then(|| value.to_string())
        })
        .unwrap_or_else(|| panic!("no `{name}` row in:\n{text}"))
}

/// The `coordinator peak memory` row in MiB.
#[track_caller]
fn peak_mib(text: &str) -> f64 {
    let row = table_row(text, "coordinator peak memory");
    row.trim_end_matches(" MiB")
        .parse()
        .unwrap_or_else(|_| panic!("peak memory row `{row}` is not `N MiB`"))
}

#[test]
fn first_n_on_millions_of_tasks_reports_exactly_n_with_flat_memory() {
    let out = run_output(&["noop", "--count", "5000000", "--first", "3", "-q"]);
    // Reaching --first is the goal: success.
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert_eq!(table_row(&text, "succeeded"), "3");
    assert_eq!(table_row(&text, "cancelled"), "4999997");
    let peak = peak_mib(&text);
    assert!(peak < PEAK_MIB_CAP, "peak memory {peak} MiB:\n{text}");
}

#[test]
fn first_n_records_exactly_n_successes_though_more_ran() {
    // Batches of 256 on two workers: when the third success arrives, hundreds more have
    // already run. The records honour N; the summary says how many more succeeded.
    let out = run_output(&[
        "noop", "--count", "20000", "--first", "3", "--chunk", "256", "-w", "2", "--format",
        "jsonl",
    ]);
    assert_exit(&out, 0);
    let run = parse_jsonl(&stdout(&out));
    assert_every_index_once(&run, 20000);
    assert_eq!(run.succeeded(), 3, "successes among the records");
    assert_eq!(run.failed_with("cancelled"), 20000 - 3);
    assert_eq!(run.summary_u64("succeeded"), 3);
    assert_eq!(run.summary_u64("failed"), 0);
    assert_eq!(run.summary_u64("cancelled"), 20000 - 3);
    let late = run.summary_u64("succeeded_beyond_first");
    let said_late = run
        .records
        .iter()
        .filter(|r| {
            r["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("succeeded after")
        })
        .count() as u64;
    assert_eq!(late, said_late, "late successes counted as reported");
    assert!(
        late >= 1,
        "a batch of 256 left no late success: {}",
        run.summary
    );
}

#[test]
fn interrupt_stops_a_billion_task_run_promptly_with_flat_memory() {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let out = dir.path().join("out.txt");
    let stdout = File::create(&out).expect("cannot create output file");
    let args = ["noop", "--count", "1000000000", "-q", "-w", "2"];
    let mut run = Coordinator::start(&args, Stdio::from(stdout), dir.path());
    // Let it get going: tasks in flight, a window of them read ahead.
    std::thread::sleep(Duration::from_millis(1500));
    run.signal(libc::SIGINT);
    // Listing a billion cancelled tasks would take many minutes; stopping takes well under
    // a second (the limit only guards against a hang).
    let status = run.wait(Duration::from_secs(60));
    let text = std::fs::read_to_string(&out).expect("cannot read output");
    assert_eq!(status.code(), Some(130), "{text}\n{}", run.stderr());
    let not_started: u64 = table_row(&text, "not started, not listed")
        .parse()
        .expect("a count");
    let tasks: u64 = table_row(&text, "tasks").parse().expect("a count");
    assert_eq!(tasks + not_started, 1_000_000_000, "{text}");
    let peak = peak_mib(&text);
    assert!(peak < PEAK_MIB_CAP, "peak memory {peak} MiB:\n{text}");
}

#[test]
fn tickers_file_is_read_lazily() {
    // A FIFO the test writes two tickers into and keeps open: read whole, the file would
    // end only when the writer closes it, and no task would run before. (One task per
    // batch, one batch in flight: more would wait for their tickers to arrive.)
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let fifo = dir.path().join("tickers");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo reads the NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let out = dir.path().join("out.jsonl");
    let stdout = File::create(&out).expect("cannot create output file");
    let fifo_arg = fifo.to_string_lossy().into_owned();
    let args = [
        "fetch",
        "--tickers-file",
        &fifo_arg,
        "--latency-ms",
        "0",
        "-w",
        "1",
        "--chunk",
        "1",
        "--inflight",
        "1",
        "--order",
        "completion",
        "--format",
        "jsonl",
    ];
    let mut run = Coordinator::start(&args, Stdio::from(stdout), dir.path());
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("cannot open the fifo for writing");
    writer.write_all(b"AAPL\nMSFT\n").expect("write tickers");
    writer.flush().expect("flush");
    wait_for_lines(&out, 2, &mut run, Duration::from_secs(30));
    assert!(run.poll().is_none(), "the run ended before its input did");
    writer
        .write_all(b"NVDA # a comment\n")
        .expect("write tickers");
    drop(writer);
    let status = run.wait(Duration::from_secs(30));
    let text = std::fs::read_to_string(&out).expect("cannot read output");
    assert_eq!(status.code(), Some(0), "{text}\n{}", run.stderr());
    let records = parse_jsonl(&text);
    assert_every_index_once(&records, 3);
}

#[test]
fn tickers_file_with_an_endless_line_is_refused() {
    let out = run_output(&["fetch", "--tickers-file", "/dev/zero", "--latency-ms", "0"]);
    assert_usage_error(&out, &["/dev/zero", "line 1", "longer than"]);
    // A bad line later in the file: the tickers before it run, then the run fails.
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let path = dir.path().join("tickers.txt");
    let long = "X".repeat(100);
    std::fs::write(&path, format!("AAPL\nMSFT\n{long}\nNVDA\n")).expect("write");
    let out = run_output(&[
        "fetch",
        "--tickers-file",
        &path.to_string_lossy(),
        "--latency-ms",
        "0",
        "--format",
        "jsonl",
    ]);
    assert_usage_error(&out, &["line 3", "longer than 64 bytes"]);
    let run = parse_jsonl(&stdout(&out));
    assert_every_index_once(&run, 2);
}

#[test]
fn workers_are_capped_and_never_outnumber_the_tasks() {
    let out = run_output(&["noop", "-w", "100000", "--count", "5"]);
    assert_usage_error(&out, &["--workers 100000", "1024"]);
    let out = run_output(&["noop", "-w", "200", "--count", "5", "--format", "jsonl"]);
    assert_exit(&out, 0);
    let run = parse_jsonl(&stdout(&out));
    assert_eq!(run.summary_u64("workers"), 5);
}

#[test]
fn too_few_descriptors_is_a_clear_error() {
    // `ulimit -n` in a shell sets both limits: the coordinator cannot raise its own.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 12 && exec \"$0\" run noop -w 4 --count 10")
        .arg(crate::common::COORDINATOR)
        .env("WORKPOOL_WORKER", WORKER)
        .output()
        .expect("cannot run sh");
    assert_usage_error(&out, &["file descriptors", "ulimit -n", "-w 4 needs about"]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "a panic:\n{err}");
    // Enough for one worker: the same limit runs it.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 20 && exec \"$0\" run noop -w 1 --count 10 -q")
        .arg(crate::common::COORDINATOR)
        .env("WORKPOOL_WORKER", WORKER)
        .output()
        .expect("cannot run sh");
    assert_exit(&out, 0);
}

#[test]
fn a_worker_that_fails_to_start_once_is_started_again() {
    // The third of four workers the zygote forks dies before its handshake, as if
    // SIGKILLed at start-up.
    fails_to_start_once("export WORKPOOL_TEST_FORK_DIES=3");
    // Without a zygote (start 1 is the zygote, SIGKILLed), workers are spawned one by
    // one: the second of them (start 3) dies so.
    fails_to_start_once("if [ $n = 1 ] || [ $n = 3 ]; then kill -9 $$; fi");
}

fn fails_to_start_once(script_body: &str) {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let script = worker_script(dir.path(), script_body);
    let out = output(coordinator().env("WORKPOOL_WORKER", &script).args([
        "run", "noop", "--count", "100", "-w", "4", "--format", "jsonl",
    ]));
    assert_exit(&out, 0);
    let run = parse_jsonl(&stdout(&out));
    run.values();
    assert_eq!(run.summary_u64("workers"), 4);
    assert_eq!(run.summary_u64("failed_starts"), 1, "{}", run.summary);
}

#[test]
fn a_worker_that_never_starts_is_a_set_up_error() {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let script = worker_script(dir.path(), "exit 3");
    let out = output(
        coordinator()
            .env("WORKPOOL_WORKER", &script)
            .args(["run", "noop", "--count", "10", "-w", "2"]),
    );
    assert_usage_error(&out, &["cannot start the pool", "exited with code 3"]);
}
