//! Chaos: workers SIGKILLed in the middle of a run, a SIGKILLed coordinator, and SIGINT or
//! SIGTERM to the coordinator. Each test drives the real binaries with
//! `std::process::Command` (it must signal them while they run), waits with deadlines
//! only, and kills and reaps every process it started on every path.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::cleanup::{leftover, Leftover};
use crate::common::{parse_jsonl, u64_field, Run, COORDINATOR, WORKER};

/// How often waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Once the coordinator is SIGKILLed, every worker must exit within a
/// second (PR_SET_PDEATHSIG).
const ORPHAN_DEADLINE: Duration = Duration::from_secs(1);

/// A `coordinator` started by a test. Dropping it kills and reaps the process if it still
/// runs, so a failed assertion or a timeout never leaves it (or, through it, its workers)
/// behind.
pub(crate) struct Coordinator {
    child: Child,
    /// Set once the process has been reaped: its pid may then belong to someone else.
    status: Option<ExitStatus>,
    stderr: PathBuf,
}

impl Coordinator {
    /// `coordinator run ARGS`, its standard output going to `stdout`, its standard error
    /// to `DIR/stderr` (a file: nobody has to read it while it runs, and failures show it).
    pub(crate) fn start(args: &[&str], stdout: Stdio, dir: &Path) -> Coordinator {
        Coordinator::start_with_worker(args, stdout, dir, Path::new(WORKER))
    }

    /// Like [`Coordinator::start`], with `WORKPOOL_WORKER` set to `worker`.
    pub(crate) fn start_with_worker(
        args: &[&str],
        stdout: Stdio,
        dir: &Path,
        worker: &Path,
    ) -> Coordinator {
        let stderr = dir.join("stderr");
        let stderr_file = File::create(&stderr).expect("cannot create stderr file");
        let child = Command::new(COORDINATOR)
            .env("WORKPOOL_WORKER", worker)
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr_file)
            .spawn()
            .expect("cannot start coordinator");
        Coordinator {
            child,
            status: None,
            stderr,
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid out of range")
    }

    /// Its exit status if it has exited (reaping it), else `None`.
    pub(crate) fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on coordinator");
        }
        self.status
    }

    /// Waits for it to exit; after `limit`, kills it and fails the test.
    #[track_caller]
    pub(crate) fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.poll() {
                return status;
            }
            if started.elapsed() > limit {
                self.kill();
                panic!(
                    "coordinator still running after {limit:?}; killed it\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal`, unless it was reaped already (its pid could be reused by then).
    pub(crate) fn signal(&mut self, signal: libc::c_int) {
        if self.poll().is_none() {
            // SAFETY: kill only sends a signal, to our own child that is not yet reaped.
            let sent = unsafe { libc::kill(self.pid(), signal) };
            assert_eq!(
                sent,
                0,
                "kill({}, {signal}): {}",
                self.pid(),
                std::io::Error::last_os_error()
            );
        }
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What `/proc/PID/stat` says: the command name, the state letter and the parent pid.
pub(crate) fn proc_stat(pid: i32) -> Option<(String, char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may itself contain spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((stat[open + 1..close].to_string(), state, ppid))
}

/// Whether `pid` runs our worker binary (a zombie has no command line any more).
fn runs_worker(pid: i32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    // A pool's worker is started with its coordinator's server in its environment, or
    // forked by the pool's zygote, whose environment it shows; the zygote itself, which
    // runs no task, goes by a name of its own.
    String::from_utf8_lossy(&cmdline).contains(WORKER)
        && environ.split(|&b| b == 0).any(|var| {
            var.starts_with(b"WORKPOOL_CONNECT=") || var.starts_with(b"WORKPOOL_ZYGOTE=")
        })
        && proc_stat(pid).is_some_and(|(name, ..)| name != "workpool-zygote")
}

/// The live worker processes whose parent is `parent`, ascending: children running the
/// worker binary, neither zombies nor dead.
fn worker_children(parent: i32) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .expect("cannot list /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            matches!(proc_stat(pid), Some((_, state, ppid))
                if ppid == parent && !matches!(state, 'Z' | 'X' | 'x'))
                && runs_worker(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The zygotes (see `workpool::worker::zygote`) whose parent is `parent`: the process
/// that forks a pool's workers.
pub(crate) fn zygote_children(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("cannot list /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            matches!(proc_stat(pid), Some((name, state, ppid))
                if ppid == parent && name == "workpool-zygote" && state != 'Z')
        })
        .collect()
}

/// Complete lines written to `path` so far (0 while it does not exist).
fn lines_in(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count())
}

/// Waits until `path` holds at least `lines` complete lines, or the coordinator exited
/// (the assertions after it then say what went wrong); fails after `limit`.
#[track_caller]
pub(crate) fn wait_for_lines(
    path: &Path,
    lines: usize,
    coordinator: &mut Coordinator,
    limit: Duration,
) {
    let started = Instant::now();
    while lines_in(path) < lines && coordinator.poll().is_none() {
        assert!(
            started.elapsed() < limit,
            "fewer than {lines} lines in {} after {limit:?}\n--- stderr ---\n{}",
            path.display(),
            coordinator.stderr()
        );
        std::thread::sleep(POLL);
    }
}

/// Waits until `coordinator` has `count` live worker children and returns their pids.
#[track_caller]
fn wait_for_workers(coordinator: &mut Coordinator, count: usize, limit: Duration) -> Vec<i32> {
    let started = Instant::now();
    loop {
        let pids = worker_children(coordinator.pid());
        if pids.len() >= count {
            return pids;
        }
        assert!(
            coordinator.poll().is_none(),
            "coordinator exited before {count} workers were up\n--- stderr ---\n{}",
            coordinator.stderr()
        );
        assert!(
            started.elapsed() < limit,
            "only {} of {count} workers up after {limit:?}: {pids:?}",
            pids.len()
        );
        std::thread::sleep(POLL);
    }
}

/// Asserts every index 0..count appears exactly once.
#[track_caller]
fn assert_each_index_once(run: &Run, count: usize) {
    assert_eq!(run.records.len(), count, "number of records");
    let mut seen = vec![false; count];
    for index in run.indices() {
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| seen.get_mut(i))
            .unwrap_or_else(|| panic!("index {index} out of range 0..{count}"));
        assert!(!*slot, "index {index} reported twice");
        *slot = true;
    }
    // With `count` records, no index out of range and none twice, every index is there.
}

/// A tiny xorshift64 generator: reproducible choices without a new dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[test]
fn chaos_sigkilled_workers_lose_and_double_nothing() {
    // A run of about 6 s in a debug build on 2 cores without kills; a kill every 20-80 ms
    // gives some 60 kills or more (65-75 measured), far above the 5 required below.
    const COUNT: usize = 50_000;
    const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let out = dir.path().join("out.jsonl");
    let count = COUNT.to_string();
    let out_arg = out.to_str().expect("temp path is not UTF-8");
    let args = [
        "noop",
        "--count",
        &count,
        "--payload",
        "16",
        "-w",
        "2",
        "--inflight",
        "1",
        "--chunk",
        "1",
        "--retries",
        "1000",
        "--backoff-ms",
        "0",
        "--format",
        "jsonl",
        "-o",
        out_arg,
    ];
    let mut coordinator = Coordinator::start(&args, Stdio::null(), dir.path());
    let coordinator_pid = coordinator.pid();
    let mut rng = XorShift(SEED);
    let started = Instant::now();
    let limit = Duration::from_secs(180);
    // Kills of a live worker while the run still had outcomes to produce.
    let mut kills = 0u64;
    // Kills that landed once every record was written: the pool was shutting down.
    let mut late_kills = 0u64;
    let mut killed: HashSet<i32> = HashSet::new();
    let mut most_workers = 0;
    let status = loop {
        if let Some(status) = coordinator.poll() {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "chaos run still going after {limit:?} ({kills} kills)\n--- stderr ---\n{}",
            coordinator.stderr()
        );
        std::thread::sleep(Duration::from_millis(rng.between(20, 80)));
        let workers: Vec<i32> = worker_children(coordinator_pid)
            .into_iter()
            .filter(|pid| !killed.contains(pid))
            .collect();
        // A lost worker is reaped before its replacement starts: never more than -w 2.
        most_workers = most_workers.max(workers.len());
        if workers.is_empty() {
            continue;
        }
        let finished = lines_in(&out) >= COUNT;
        let victim = workers[rng.next() as usize % workers.len()];
        // SAFETY: kill only sends a signal. The victim is a worker child of a coordinator
        // we have not reaped, looked up just now: its pid cannot have been reused since.
        if unsafe { libc::kill(victim, libc::SIGKILL) } == 0 {
            killed.insert(victim);
            if finished {
                late_kills += 1;
            } else {
                kills += 1;
            }
        }
    };
    let elapsed = started.elapsed();
    let stderr = coordinator.stderr();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status\n--- stderr ---\n{stderr}"
    );
    let text = std::fs::read_to_string(&out).expect("cannot read the output file");
    let run = parse_jsonl(&text);
    let retries = run.summary_u64("retries");
    let replaced = run.summary_u64("workers_replaced");
    eprintln!(
        "chaos: {} records in {elapsed:.1?}, seed {SEED:#x}: {kills} kills during the run \
         (+{late_kills} after its last outcome), summary retries {retries}, \
         workers_replaced {replaced}",
        run.records.len()
    );
    assert_each_index_once(&run, COUNT);
    for record in &run.records {
        assert_eq!(record["ok"], Json::Bool(true), "task failed: {record}");
        assert_eq!(
            record["value"]["payload_intact"],
            Json::Bool(true),
            "payload damaged: {record}"
        );
        assert_eq!(
            record["value"]["payload_bytes"],
            Json::from(16),
            "payload size: {record}"
        );
    }
    assert_eq!(run.summary_u64("tasks"), COUNT as u64, "summary tasks");
    assert_eq!(
        run.summary_u64("succeeded"),
        COUNT as u64,
        "summary succeeded"
    );
    assert_eq!(run.summary_u64("failed"), 0, "summary failed");
    assert!(
        kills >= 5,
        "only {kills} kills happened: the test proves nothing"
    );
    assert!(
        most_workers <= 2,
        "saw {most_workers} live workers at once with -w 2"
    );
    // Every kill during the run is a worker to replace, or a replacement killed during
    // its handshake, which the pool starts again. The last one may land in the instant
    // the final outcome arrives (from the other worker), when nothing is left to replace,
    // hence the one kill of slack.
    let failed_starts = run.summary_u64("failed_starts");
    assert!(
        replaced + failed_starts + 1 >= kills,
        "{kills} workers killed, only {replaced} replaced ({failed_starts} failed starts)\n\
         --- stderr ---\n{stderr}"
    );
    // Nothing but our kills may cost a worker.
    assert!(
        replaced <= kills + late_kills,
        "{replaced} workers replaced, but only {} killed",
        kills + late_kills
    );
    // Each replacement retries at most the one task its worker was running, and every
    // retry shows in the attempts of its record.
    assert!(
        retries <= replaced,
        "{retries} retries for {replaced} lost workers"
    );
    let extra_attempts: u64 = run
        .records
        .iter()
        .map(|r| u64_field(r, "attempts") - 1)
        .sum();
    assert_eq!(
        extra_attempts, retries,
        "attempts beyond the first in the records vs summary retries"
    );
}

#[test]
fn sigkilled_coordinator_leaves_no_worker_behind() {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let args = ["io", "--count", "100", "--ms", "1000", "-w", "4"];
    let mut coordinator = Coordinator::start(&args, Stdio::null(), dir.path());
    let mut workers = wait_for_workers(&mut coordinator, 4, Duration::from_secs(10));
    assert_eq!(workers.len(), 4, "workers of a -w 4 run: {workers:?}");
    // The zygote that forked them must go too.
    workers.extend(zygote_children(coordinator.pid()));
    assert_eq!(workers.len(), 5, "workers and zygote: {workers:?}");
    coordinator.signal(libc::SIGKILL);
    coordinator.wait(Duration::from_secs(10));
    // The orphans are reparented to init or a subreaper, which may not have reaped them
    // yet: a zombie has exited, and counts as gone here.
    let reaped = Instant::now();
    let left = loop {
        let left: Vec<(i32, Leftover)> = workers
            .iter()
            .map(|&pid| (pid, leftover(pid)))
            .filter(|(_, l)| *l == Leftover::Running)
            .collect();
        if left.is_empty() || reaped.elapsed() > ORPHAN_DEADLINE {
            break left;
        }
        std::thread::sleep(POLL);
    };
    eprintln!(
        "orphans: {} workers, {} still running {:.1?} after the coordinator was reaped",
        workers.len(),
        left.len(),
        reaped.elapsed()
    );
    assert!(
        left.is_empty(),
        "workers still running {ORPHAN_DEADLINE:?} after their coordinator was SIGKILLed: \
         {left:?}"
    );
}

/// Starts `coordinator run ARGS --format jsonl`, waits for its first two outcomes,
/// sends `signal`, and checks the interrupted run's output. The tasks are chosen so that
/// the run cannot finish by itself for a minute: the signal always finds work to cancel.
fn interrupt_run(signal: libc::c_int, count: usize, ms: &str) {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let out = dir.path().join("out.jsonl");
    let stdout = File::create(&out).expect("cannot create output file");
    let count_arg = count.to_string();
    let args = [
        "io", "--count", &count_arg, "--ms", ms, "-w", "2", "--format", "jsonl",
    ];
    let mut coordinator = Coordinator::start(&args, Stdio::from(stdout), dir.path());
    let mut workers = wait_for_workers(&mut coordinator, 2, Duration::from_secs(10));
    wait_for_lines(&out, 2, &mut coordinator, Duration::from_secs(10));
    workers.extend(worker_children(coordinator.pid()));
    let signalled = Instant::now();
    coordinator.signal(signal);
    let status = coordinator.wait(Duration::from_secs(30));
    let stopped_in = signalled.elapsed();
    let stderr = coordinator.stderr();
    assert_eq!(
        status.code(),
        Some(130),
        "exit status\n--- stderr ---\n{stderr}"
    );
    let mut text = String::new();
    File::open(&out)
        .and_then(|mut f| f.read_to_string(&mut text))
        .expect("cannot read output");
    let run = parse_jsonl(&text);
    assert_each_index_once(&run, count);
    let ok = run.succeeded();
    let cancelled = run.failed_with("cancelled");
    eprintln!(
        "signal {signal}: {ok} ok, {cancelled} cancelled of {count}; exited {stopped_in:.1?} \
         after the signal"
    );
    assert!(ok >= 1, "no task finished before the signal:\n{text}");
    assert!(cancelled >= 1, "no task was cancelled:\n{text}");
    assert_eq!(
        ok + cancelled,
        count,
        "every task either finished or was cancelled:\n{text}"
    );
    assert_eq!(run.summary["interrupted"], true, "summary: {}", run.summary);
    assert_eq!(
        run.summary["stopped"], "interrupted",
        "summary: {}",
        run.summary
    );
    // Cancelled records ran nowhere: they have no pid.
    workers.extend(
        run.records
            .iter()
            .filter_map(|r| r["pid"].as_u64())
            .map(|pid| i32::try_from(pid).expect("pid out of range")),
    );
    workers.sort_unstable();
    workers.dedup();
    for pid in workers {
        assert_eq!(
            leftover(pid),
            Leftover::Gone,
            "worker pid {pid} after the interrupted run"
        );
    }
}

#[test]
fn sigint_reports_what_finished_and_cancels_the_rest() {
    // Per 5 tasks, 4 of 300 ms and one of a minute: the first outcomes come quickly, then
    // both workers are stuck in minute-long tasks.
    interrupt_run(libc::SIGINT, 20, "300,300,300,300,60000");
}

#[test]
fn sigterm_behaves_like_sigint() {
    interrupt_run(libc::SIGTERM, 6, "200,200,60000");
}

/// Once the zygote is gone, a lost worker's replacement is spawned as a worker of its own:
/// a one-worker pool finishes its run.
#[test]
fn a_pool_whose_zygote_died_still_replaces_its_workers() {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let out = dir.path().join("out.jsonl");
    let stdout = File::create(&out).expect("cannot create output file");
    let args = [
        "io",
        "--count",
        "6",
        "--ms",
        "300",
        "-w",
        "1",
        "--retries",
        "2",
        "--format",
        "jsonl",
    ];
    let mut coordinator = Coordinator::start(&args, Stdio::from(stdout), dir.path());
    // Past its handshake (it ran a task): the worker is lost, rather than failing to
    // start. Its pid is the one its first record names.
    wait_for_lines(&out, 1, &mut coordinator, Duration::from_secs(10));
    let text = std::fs::read_to_string(&out).expect("cannot read output");
    let first = text.lines().next().expect("a first record");
    let record: Json = serde_json::from_str(first).expect("a JSON record");
    let worker = i32::try_from(u64_field(&record, "pid")).expect("pid out of range");
    let zygotes = zygote_children(coordinator.pid());
    assert_eq!(zygotes.len(), 1, "zygotes: {zygotes:?}");
    for pid in [zygotes[0], worker] {
        // SAFETY: a signal to a child of the coordinator this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
        std::thread::sleep(POLL);
    }
    let run = succeeded(coordinator, &out);
    assert_each_index_once(&run, 6);
    assert!(run.summary_u64("workers_replaced") >= 1, "{}", run.summary);
}

/// A replacement worker that dies before its handshake (here: its start-up fails once;
/// in the chaos test above: a SIGKILL that lands within its first milliseconds) must not
/// cost the pool its slot for the rest of the run. With one worker, the run must still
/// finish every task, since `--retries` allows it.
#[test]
fn replacement_that_dies_before_its_handshake_is_replaced_again() {
    // Forked by the zygote (start 1 of the script): the first worker runs, the second
    // (the first replacement) dies before it connects, every later one runs.
    replacement_dies_before_its_handshake("export WORKPOOL_TEST_FORK_DIES=2");
    // Spawned one by one, as when the zygote (start 1) fails: start 2 runs the real
    // worker, start 3 (the first replacement) exits before it connects, every later
    // start runs the real worker.
    replacement_dies_before_its_handshake("if [ $n = 1 ] || [ $n = 3 ]; then exit 1; fi");
}

fn replacement_dies_before_its_handshake(script_body: &str) {
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let script = crate::common::worker_script(dir.path(), script_body);
    let out = dir.path().join("out.jsonl");
    let stdout = File::create(&out).expect("cannot create output file");
    let args = [
        "noop",
        "--count",
        "10",
        "-w",
        "1",
        "--fault",
        "kill@5/1",
        "--retries",
        "3",
        "--backoff-ms",
        "0",
        "--format",
        "jsonl",
    ];
    let coordinator =
        Coordinator::start_with_worker(&args, Stdio::from(stdout), dir.path(), &script);
    let run = succeeded(coordinator, &out);
    assert_each_index_once(&run, 10);
    run.values();
}

/// Waits for a run that must succeed, and reads the JSON Lines it wrote to `out`.
fn succeeded(mut coordinator: Coordinator, out: &Path) -> Run {
    let status = coordinator.wait(Duration::from_secs(30));
    let stderr = coordinator.stderr();
    let text = std::fs::read_to_string(out).expect("cannot read output");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status\n--- stdout ---\n{text}\n--- stderr ---\n{stderr}"
    );
    parse_jsonl(&text)
}
