//! Standard streams that misbehave: a reader that goes away (`| head`), a standard error
//! that cannot be written (`2>/dev/full`), and an interrupt while the coordinator's own
//! thread is stuck in a task. None may cost a panic or the meaning of the exit code.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{COORDINATOR, WORKER};

/// Hang guard for one coordinator; no run here comes near it.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// `coordinator run ARGS` with stdout piped and stderr as given.
fn spawn_run(args: &[&str], stderr: Stdio) -> Child {
    Command::new(COORDINATOR)
        .env("WORKPOOL_WORKER", WORKER)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("cannot run coordinator")
}

/// What an exited `child` wrote to its piped standard error.
fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut err).expect("cannot read stderr");
    }
    err
}

/// Waits for `child`, killing it (and failing) if it outlives [`HANG_GUARD`].
fn wait(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = child.try_wait().expect("cannot wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the coordinator hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dev_full() -> Stdio {
    Stdio::from(
        File::options()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

/// Twenty fetches of 100 ms, one at a time: the run is still going when the reader of its
/// output leaves after the first line. With `failing`, the first ticker is rejected.
fn slow_fetches(failing: bool) -> Vec<String> {
    let mut tickers: Vec<String> = (0..20).map(|i| format!("T{i}")).collect();
    if failing {
        tickers[0] = "BAD".into();
    }
    [
        "fetch",
        "--latency-ms",
        "100",
        "-w",
        "1",
        "--tickers",
        &tickers.join(","),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_reader_that_goes_away_ends_the_run_with_the_code_of_the_tasks_that_ended() {
    for format in ["table", "csv", "json", "jsonl"] {
        for quiet in [false, true] {
            for (failing, code) in [(true, 1), (false, 0)] {
                let what = format!("--format {format} quiet={quiet} failing={failing}");
                let mut args = slow_fetches(failing);
                args.extend(["--format".into(), format.into()]);
                if quiet {
                    args.push("-q".into());
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut child = spawn_run(&args, Stdio::piped());
                let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
                let mut first = String::new();
                reader.read_line(&mut first).expect("first line");
                assert!(!first.is_empty(), "{what}: no output at all");
                drop(reader); // `| head -1`
                let status = wait(&mut child, &what);
                let err = stderr_of(&mut child);
                assert_eq!(status.code(), Some(code), "{what}\nstderr: {err}");
                assert!(
                    !err.contains("error"),
                    "{what}: a closed pipe is no error: {err}"
                );
                assert!(!err.contains("panicked"), "{what}: {err}");
            }
        }
    }
}

#[test]
fn a_full_standard_error_costs_no_panic_and_keeps_the_exit_code() {
    // csv: the summary goes to stderr; a failed task; a set-up error.
    let cases: [(&[&str], i32); 4] = [
        (&["noop", "--count", "3", "--format", "csv"], 0),
        (
            &[
                "noop",
                "--count",
                "3",
                "--format",
                "csv",
                "--fault",
                "panic@1",
                "--backend",
                "thread",
            ],
            1,
        ),
        (
            &[
                "noop",
                "--count",
                "3",
                "--worker-bin",
                "/nonexistent/worker",
            ],
            2,
        ),
        (&["noop", "--count", "3", "--chunk", "0"], 2),
    ];
    for (args, code) in cases {
        let mut child = spawn_run(args, dev_full());
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .unwrap();
        let status = wait(&mut child, &args.join(" "));
        assert_eq!(status.code(), Some(code), "{args:?}\nstdout: {out}");
        if code != 2 {
            assert_eq!(out.lines().count(), 4, "{args:?}: header and rows\n{out}");
        }
    }
}

#[test]
fn an_interrupt_ends_a_run_stuck_in_the_coordinators_own_thread() {
    let mut child = spawn_run(
        &[
            "noop",
            "--count",
            "3",
            "--fault",
            "hang@1",
            "--backend",
            "sequential",
            "--format",
            "jsonl",
        ],
        Stdio::piped(),
    );
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("first line");
    assert!(
        first.contains("\"index\":0"),
        "task 0 is written before 1 hangs: {first}"
    );
    // Task 1 now hangs for a day in the coordinator's main thread.
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill only sends a signal, to our own child that is not yet reaped.
    let sent = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(sent, 0);
    let status = wait(&mut child, "interrupted sequential run");
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("cannot be stopped"), "says why: {err}");
}

#[test]
fn info_into_a_full_standard_output_is_an_error_not_a_panic() {
    let out = Command::new(COORDINATOR)
        .arg("info")
        .stdout(dev_full())
        .output()
        .expect("cannot run coordinator");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("cannot write standard output"), "{err}");
}

/// Each record is written the moment its task ends, not when the run does: on every
/// backend, in every format, the first of two tasks (one short, one of a minute) must be
/// readable while the run is still going.
#[test]
fn a_record_is_written_while_the_run_goes_on() {
    for backend in ["process", "thread", "sequential"] {
        for format in ["jsonl", "csv", "table", "json"] {
            let mut child = spawn_run(
                &[
                    "io",
                    "--ms",
                    "10,60000",
                    "--count",
                    "2",
                    "-w",
                    "2",
                    "--backend",
                    backend,
                    "--format",
                    format,
                ],
                Stdio::null(),
            );
            let mut stdout = child.stdout.take().expect("piped stdout");
            // The first task's record, past any header. (A JSON document's record is
            // followed by its comma only when the next one comes: no whole line yet.)
            let is_first = |text: &str| {
                text.contains("{\"index\":0,")
                    || text.lines().any(|line| {
                        line.starts_with("0,") || line.split_whitespace().next() == Some("0")
                    })
            };
            let mut text = String::new();
            let mut chunk = [0u8; 4096];
            while !is_first(&text) {
                match stdout.read(&mut chunk).expect("cannot read stdout") {
                    0 => break,
                    n => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
            let still_running = child.try_wait().expect("cannot poll coordinator").is_none();
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                is_first(&text),
                "{backend} {format}: no record of task 0 in {text}"
            );
            assert!(still_running, "{backend} {format}: the run ended first");
        }
    }
}

/// What `pid` holds in memory now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Records waiting for a slow reader are bounded in bytes, not only in number: a run of
/// 16 MiB payloads whose output nobody reads for a while keeps only a few of them.
#[test]
fn records_waiting_for_a_slow_reader_stay_within_a_memory_bound() {
    let mut child = spawn_run(
        &[
            "noop",
            "--payload",
            "16777216",
            "--count",
            "100",
            "-w",
            "2",
            "--backend",
            "thread",
            "--format",
            "jsonl",
        ],
        Stdio::null(),
    );
    let mut stdout = child.stdout.take().expect("piped stdout");
    // A small pipe fills after a few records: from then on the writer waits for us.
    // SAFETY: fcntl on a pipe this test owns; a failure only leaves the pipe larger.
    unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(rss_kib(child.id()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut text = String::new();
    stdout
        .read_to_string(&mut text)
        .expect("cannot read stdout");
    let status = wait(&mut child, "records for a slow reader");
    assert!(status.success(), "exit {status}");
    let intact = text.matches("\"payload_intact\":true").count();
    assert_eq!(intact, 100, "every payload came back: {text}");
    assert!(
        peak < 400 << 10,
        "peak RSS {peak} KiB while the output waited"
    );
}
