//! The `redis` backend against a real broker: each test starts its own `redis-server` on a
//! free loopback port and its own `worker --broker` processes, so the tests run in
//! parallel, and every process it started is killed and reaped on every path.
//!
//! `redis-server` must be installed (Debian: `apt-get install redis-server`); without it
//! these tests fail rather than skip, so a missing install step cannot go unnoticed.

mod examples;
mod fixtures;
mod garbage;
mod recovery;
mod settle;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fixtures::*;
use workpool::broker::{GROUP, TASKS_STREAM};

use crate::common::{
    assert_contains, assert_every_index_once, assert_exit, assert_stopped_by_first,
    assert_usage_error, coordinator, output, parse_jsonl, stderr, stdout, WORKER,
};

/// Same seeds, same outcomes: a run on two broker workers gives, task by task, what the
/// process backend gives (values, error kinds, attempts with retries); in input order,
/// each index once, and both workers take part.
#[test]
fn redis_backend_gives_the_same_outcomes_as_processes_and_uses_every_worker() {
    let server = RedisServer::start();
    let url = server.url();
    let a = Worker::start(&url, "a", 2);
    let b = Worker::start(&url, "b", 2);

    // 30 tickers with a 50% transient failure rate and one retry: some succeed on the
    // first attempt, some on the second, some fail for good; BAD is a permanent failure.
    let tickers = format!("{},BAD", tickers("T", 30));
    let args = [
        "fetch",
        "--tickers",
        &tickers,
        "--seed",
        "8",
        "--fail-rate",
        "0.5",
        "--retries",
        "1",
        "--backoff-ms",
        "0",
        "--latency-ms",
        "0..20",
        "--chunk",
        "1",
    ];
    let expected = run_on_processes(1, &args);
    let got = run_on(&url, 1, &args);
    let (expected, got_by_index) = (outcomes_by_index(&expected), outcomes_by_index(&got));
    assert_eq!(got_by_index.len(), 31, "one outcome per ticker");
    let kinds: BTreeSet<&str> = expected
        .values()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    let retried = expected.values().filter(|o| o["attempts"] == 2).count();
    assert!(
        kinds.contains("network") && kinds.contains("invalid_input") && retried > 0,
        "the reference run should mix successes, retries and both kinds of failure (pick \
         another --seed if the workload changed): kinds {kinds:?}, {retried} retried"
    );
    for (index, want) in &expected {
        assert_eq!(
            &got_by_index[index], want,
            "task {index} on redis vs process"
        );
    }
    assert_eq!(
        got.indices(),
        (0..31).collect::<Vec<_>>(),
        "input order by default"
    );
    assert_eq!(got.summary["backend"], "redis", "summary: {}", got.summary);
    assert_eq!(got.summary_u64("tasks"), 31);

    // Enough tasks of some length that both workers must take some.
    let run = run_on(
        &url,
        0,
        &["io", "--count", "40", "--ms", "50", "--chunk", "1"],
    );
    assert_eq!(
        run.indices(),
        (0..40).collect::<Vec<_>>(),
        "each index once, in input order"
    );
    run.values();
    let pids = pids_of(&run);
    assert_eq!(
        pids,
        BTreeSet::from([a.pid(), b.pid()]),
        "the pids that ran tasks should be exactly the two workers'"
    );
    assert_eq!(run.summary_u64("succeeded"), 40);
    assert_eq!(run.summary_u64("failed"), 0);
    // Each record says when its outcome arrived: after the task's 50 ms sleep, within the run.
    let wall_ms = run.summary["wall_ms"].as_f64().unwrap();
    for finished in run.finished_ms() {
        assert!(
            (50.0..=wall_ms).contains(&finished),
            "finished_ms {finished} outside 50..={wall_ms}"
        );
    }
}

/// A worker SIGKILLed in the middle of a run loses nothing: once its lease runs out, the
/// other worker claims the batches it held, and every task ends ok exactly once.
#[test]
fn batches_of_a_sigkilled_worker_are_claimed_by_another() {
    let server = RedisServer::start();
    let url = server.url();
    let mut a = Worker::start(&url, "a", 2);
    let b = Worker::start(&url, "b", 2);
    let mut run = io_in_completion_order(&url, 40);
    // Both workers are busy by the time the first outcomes are in, and the run has
    // seconds to go: A holds batches when it dies.
    run.wait_for_lines(4);
    let before_kill = lines_in(&run.stdout);
    let killed = Instant::now();
    a.kill();
    // Not yet claimed: the lease has a second to run.
    let held = pending_of(&url, "a");
    run.wait();
    eprintln!(
        "broker: the run ended {:.2?} after worker a was SIGKILLed (lease 1s)",
        killed.elapsed()
    );
    let run = run.finish(0);
    assert_every_index_once(&run, 40);
    run.values();
    assert_eq!(run.summary_u64("succeeded"), 40);
    assert!(
        before_kill < 40,
        "the run was over before the kill: the test proves nothing"
    );
    let pids = pids_of(&run);
    assert!(
        pids.is_subset(&BTreeSet::from([a.pid(), b.pid()])),
        "pids {pids:?} are not those of the workers"
    );
    let after: Vec<u64> = run.pids()[before_kill..].to_vec();
    assert!(
        after.contains(&b.pid()),
        "worker b should finish the run after a died; pids after the kill: {after:?}"
    );
    assert!(
        held > 0,
        "worker a held no batch when it was killed: the test proves nothing"
    );
    assert_eq!(
        pending_of(&url, "a"),
        0,
        "batches still pending on the dead worker a after the run"
    );
    eprintln!("broker: worker a held {held} batch(es) when it was killed");
}

/// `count` sleeps of 200 ms, one per batch, in completion order, in the background.
fn io_in_completion_order(url: &str, count: u64) -> Background {
    let count = count.to_string();
    let args = ["io", "--count", &count, "--ms", "200", "--chunk", "1"];
    Background::start(&on_broker(
        &[&args[..], &["--order", "completion"]].concat(),
        url,
    ))
}

/// How many entries of the tasks stream `consumer` has taken and not acknowledged.
fn pending_of(url: &str, consumer: &str) -> usize {
    let client = redis::Client::open(url).expect("cannot parse the broker URL");
    let mut con = client
        .get_connection_with_timeout(START_LIMIT)
        .expect("cannot connect to the broker");
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .arg(consumer)
        .query(&mut con)
        .expect("XPENDING");
    pending.len()
}

/// A worker that joins a run already going takes a share of its work.
#[test]
fn a_worker_started_during_a_run_takes_work() {
    let server = RedisServer::start();
    let url = server.url();
    let first = Worker::start(&url, "first", 1);
    let args = ["io", "--count", "30", "--ms", "100", "--chunk", "1"];
    let mut run = Background::start(&on_broker(&args, &url));
    run.wait_for_lines(1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        run.poll().is_none(),
        "the run ended before the second worker joined"
    );
    let late = Worker::start(&url, "late", 1);
    let run = run.finish(0);
    assert_eq!(run.indices(), (0..30).collect::<Vec<_>>());
    run.values();
    let pids = pids_of(&run);
    assert!(
        pids.contains(&late.pid()),
        "the late worker ran nothing: pids {pids:?}\n--- its stderr ---\n{}",
        late.stderr()
    );
    assert!(pids.contains(&first.pid()), "pids {pids:?}");
}

/// At-least-once delivery, exactly-once outcomes: a worker stalled (SIGSTOP) past its
/// lease has its batches claimed and run by the other; when it resumes and publishes them
/// too, the late copies are dropped and counted as `duplicates`, never reported twice.
#[test]
fn late_outcomes_of_a_stalled_worker_are_dropped_as_duplicates() {
    let server = RedisServer::start();
    let url = server.url();
    let a = Worker::start(&url, "a", 2);
    let _b = Worker::start(&url, "b", 2);
    let mut run = io_in_completion_order(&url, 60);
    run.wait_for_lines(4);
    a.signal(libc::SIGSTOP);
    let held = pending_of(&url, "a");
    // Past the 1 s lease, a claim (every 250 ms) and the claimed 200 ms tasks.
    std::thread::sleep(Duration::from_millis(2500));
    let still_running = run.poll().is_none();
    a.signal(libc::SIGCONT);
    let run = run.finish(0);
    assert!(
        held > 0 && still_running,
        "worker a held {held} batches when stopped, run still going at resume: {still_running}; the test proves nothing"
    );
    assert_every_index_once(&run, 60);
    run.values();
    assert_eq!(run.summary_u64("succeeded"), 60);
    let duplicates = run.summary_u64("duplicates");
    eprintln!("broker: worker a held {held} batch(es) when stopped; {duplicates} duplicates");
    assert!(
        duplicates >= 1,
        "worker a's late outcomes should have been dropped as duplicates: {}",
        run.summary
    );
}

/// Runs `cmd` and checks it ends within [`ERROR_LIMIT`].
#[track_caller]
fn quick_output(cmd: &mut assert_cmd::Command) -> Output {
    let started = Instant::now();
    let out = output(cmd.timeout(ERROR_LIMIT * 3));
    let took = started.elapsed();
    assert!(
        took < ERROR_LIMIT,
        "took {took:?}, more than {ERROR_LIMIT:?}\n--- stderr ---\n{}",
        stderr(&out)
    );
    out
}

/// `coordinator run noop --count 3 --backend redis --broker URL`.
#[track_caller]
fn quick_run(url: &str) -> Output {
    quick_output(
        coordinator()
            .env_remove("WORKPOOL_BROKER")
            .args(["run", "noop", "--count", "3"])
            .args(["--backend", "redis", "--broker", url, "--format", "jsonl"]),
    )
}

/// `worker --broker URL`, which should exit at once: it cannot serve.
#[track_caller]
fn quick_worker(url: &str) -> Output {
    let mut cmd = assert_cmd::Command::new(WORKER);
    cmd.env_remove("WORKPOOL_BROKER")
        .args(["--broker", url, "--lease", "1s"]);
    quick_output(&mut cmd)
}

/// Asserts `out` never shows `secret`, on stdout or stderr.
#[track_caller]
fn assert_never_shows(out: &Output, secret: &str) {
    for (what, text) in [("stdout", stdout(out)), ("stderr", stderr(out))] {
        assert!(
            !text.contains(secret),
            "{what} shows the password {secret:?}:\n{text}"
        );
    }
}

/// A refused password is a set-up error (exit 2, at once) for the coordinator and the
/// worker alike, and no output ever shows the password; the right one works.
#[test]
fn a_wrong_password_is_a_setup_error_that_never_shows_the_password() {
    let server = RedisServer::with_password("s3cret-right");
    let port = server.port();
    for url in [
        format!("redis://:{WRONG_PASSWORD}@127.0.0.1:{port}"),
        format!("redis://default:{WRONG_PASSWORD}@127.0.0.1:{port}/0"),
    ] {
        let out = quick_run(&url);
        assert_usage_error(&out, &["refused the credentials"]);
        assert_never_shows(&out, WRONG_PASSWORD);
        let out = quick_worker(&url);
        assert_usage_error(&out, &["refused the credentials"]);
        assert_never_shows(&out, WRONG_PASSWORD);
    }
    // No password at all, where one is needed.
    let no_password = format!("redis://127.0.0.1:{port}");
    assert_usage_error(&quick_run(&no_password), &["refused the credentials"]);
    assert_usage_error(&quick_worker(&no_password), &["refused the credentials"]);

    // The right password, given the recommended way: in $WORKPOOL_BROKER.
    let url = server.url();
    let worker = Worker::start(&url, "w", 2);
    assert!(
        !worker.stderr().contains("s3cret-right"),
        "the worker shows its password:\n{}",
        worker.stderr()
    );
    let out = output(
        coordinator()
            .env("WORKPOOL_BROKER", &url)
            .args(["run", "noop", "--count", "5", "--backend", "redis"])
            .args(["--format", "jsonl"]),
    );
    assert_exit(&out, 0);
    assert_never_shows(&out, "s3cret-right");
    let run = parse_jsonl(&stdout(&out));
    assert_every_index_once(&run, 5);
    assert_eq!(pids_of(&run), BTreeSet::from([worker.pid()]));
}

/// A password that breaks the URL's syntax (an unencoded `/`, `?` or `#`, common in
/// base64 secrets), or a bare password given as the URL: `run`, `worker` and `bench` each
/// refuse it as a usage error that says to percent-encode, and none ever shows the secret.
#[test]
fn a_password_that_breaks_the_url_is_never_shown() {
    const SECRET: &str = "Zm9vYmFy";
    let urls = [
        format!("redis://:{SECRET}/x+y==@127.0.0.1:1"),
        format!("redis://:ab?{SECRET}@127.0.0.1:1"),
        format!("redis://default:12#{SECRET}@127.0.0.1:1/0"),
        format!("rediss://:{SECRET}/q@127.0.0.1:1"),
        format!("redis://:{SECRET}"),
        SECRET.to_string(),
    ];
    for url in &urls {
        let run = quick_run(url);
        let worker = quick_worker(url);
        let bench = quick_output(
            coordinator()
                .env_remove("WORKPOOL_BROKER")
                .args(["bench", "--quick", "--suite", "broker", "--broker", url]),
        );
        for out in [&run, &worker, &bench] {
            assert_usage_error(out, &["invalid broker URL"]);
            assert_never_shows(out, SECRET);
        }
        let hint = if url.contains("://") {
            "percent-encode"
        } else {
            "not a URL"
        };
        assert_contains(&stderr(&run), hint, "stderr");
    }
    // Through $WORKPOOL_BROKER as well.
    let out = quick_output(coordinator().env("WORKPOOL_BROKER", &urls[0]).args([
        "run",
        "noop",
        "--count",
        "1",
        "--backend",
        "redis",
    ]));
    assert_usage_error(&out, &["percent-encode"]);
    assert_never_shows(&out, SECRET);
}

/// The worker's numbers are bounded and checked: zero, or above the maximum its help
/// gives, is a usage error naming the flag, as is an empty name; nothing is coerced.
#[test]
fn worker_flags_out_of_range_are_usage_errors() {
    let closed = format!("redis://127.0.0.1:{}", free_port());
    for (flag, value) in [
        ("--concurrency", "0"),
        ("--concurrency", "1025"),
        ("--lease", "0s"),
        ("--lease", "50ms"),
        ("--lease", "2h"),
        ("--max-deliveries", "0"),
        ("--max-deliveries", "1001"),
        ("--name", ""),
    ] {
        let mut cmd = assert_cmd::Command::new(WORKER);
        cmd.env_remove("WORKPOOL_BROKER")
            .args(["--broker", &closed, flag, value]);
        let out = quick_output(&mut cmd);
        assert_usage_error(&out, &[flag]);
    }
    // The maxima themselves are accepted: the worker gets as far as the broker.
    let mut cmd = assert_cmd::Command::new(WORKER);
    cmd.env_remove("WORKPOOL_BROKER")
        .args([
            "--broker",
            &closed,
            "--concurrency",
            "1024",
            "--lease",
            "1h",
        ])
        .args(["--max-deliveries", "1000", "--name", "n"]);
    assert_usage_error(&quick_output(&mut cmd), &["cannot reach the broker"]);
}

/// A broker nobody answers at is a set-up error within a few seconds, not a hang: a
/// closed port, a port that takes connections and never answers, and an address that
/// drops packets (the connect timeout is 3 s).
#[test]
fn an_unreachable_broker_is_a_setup_error_within_seconds() {
    let closed = format!("redis://127.0.0.1:{}", free_port());
    assert_usage_error(&quick_run(&closed), &["cannot reach the broker"]);
    assert_usage_error(&quick_worker(&closed), &["cannot reach the broker"]);

    // A listener that never accepts: the kernel completes the handshake, then nothing
    // ever answers.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind");
    let silent = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().expect("local_addr").port()
    );
    let unroutable = "redis://10.255.255.1:6379";
    // Each of these may take seconds to give up: all at once.
    let [silent_run, silent_worker, unroutable_run, unroutable_worker] = std::thread::scope(|s| {
        [
            s.spawn(|| quick_run(&silent)),
            s.spawn(|| quick_worker(&silent)),
            s.spawn(|| quick_run(unroutable)),
            s.spawn(|| quick_worker(unroutable)),
        ]
        .map(|thread| thread.join().expect("a check panicked"))
    });
    assert_usage_error(&silent_run, &["cannot reach the broker"]);
    assert_usage_error(&silent_worker, &["cannot reach the broker"]);
    // Where a proxy answers for any address, the message differs; the exit code does not.
    assert_usage_error(&unroutable_run, &["broker", "10.255.255.1"]);
    assert_usage_error(&unroutable_worker, &["broker", "10.255.255.1"]);
}

/// `--backend redis` needs a broker URL, from the flag or the environment.
#[test]
fn the_redis_backend_without_a_broker_is_a_usage_error() {
    let out = output(coordinator().env_remove("WORKPOOL_BROKER").args([
        "run",
        "noop",
        "--count",
        "1",
        "--backend",
        "redis",
    ]));
    assert_usage_error(&out, &["--broker"]);
}

/// `--timeout` on the redis backend: the worker reports the overrunning task `timeout`
/// and goes on serving the rest.
#[test]
fn a_task_past_its_timeout_is_reported_by_the_broker_worker() {
    let server = RedisServer::start();
    let url = server.url();
    let worker = Worker::start(&url, "w", 2);
    let args = [
        "noop",
        "--count",
        "10",
        "--fault",
        "hang@3",
        "--timeout",
        "500ms",
    ];
    let run = run_on(&url, 1, &args);
    assert_every_index_once(&run, 10);
    for record in &run.records {
        if record["index"] == 3 {
            assert_eq!(kind(record), "timeout", "{record}");
        } else {
            assert_eq!(record["ok"], true, "{record}");
        }
    }
    assert_eq!(run.summary_u64("failed"), 1);
    // The worker goes on serving with a replacement thread.
    let run = run_on(&url, 0, &["noop", "--count", "4"]);
    assert_every_index_once(&run, 4);
    assert_eq!(pids_of(&run), BTreeSet::from([worker.pid()]));
}

/// `--first N` and `--fail-fast` on the redis backend stop the run as on processes: what
/// was not done is `cancelled`, every index once, and the summary says why it stopped.
#[test]
fn first_and_fail_fast_stop_a_redis_run() {
    let server = RedisServer::start();
    let url = server.url();
    let _a = Worker::start(&url, "a", 2);
    let _b = Worker::start(&url, "b", 2);

    // Reaching the goal is success.
    let run = run_on(
        &url,
        0,
        &["io", "--count", "50", "--ms", "100", "--first", "5"],
    );
    assert_stopped_by_first(&run, 5, 50);

    // A permanent failure among slow fetches: the rest are cancelled.
    let tickers = format!("AAPL,BAD,{}", tickers("T", 20));
    let args = [
        "fetch",
        "--tickers",
        &tickers,
        "--latency-ms",
        "200",
        "--chunk",
        "1",
        "--fail-fast",
    ];
    let run = run_on(&url, 1, &args);
    assert_every_index_once(&run, 22);
    assert_eq!(kind(&run.records[1]), "invalid_input", "{}", run.records[1]);
    for record in &run.records {
        assert!(
            record["ok"] == true || ["invalid_input", "cancelled"].contains(&kind(record)),
            "{record}"
        );
    }
    assert!(
        run.records.iter().any(|r| kind(r) == "cancelled"),
        "nothing was cancelled"
    );
    assert_contains(
        run.summary["stopped"].as_str().unwrap_or_default(),
        "--fail-fast",
        "summary.stopped",
    );

    // A panic is a failure too.
    let run = run_on(
        &url,
        1,
        &["noop", "--count", "10", "--fault", "panic@2", "--fail-fast"],
    );
    assert_every_index_once(&run, 10);
    assert_eq!(kind(&run.records[2]), "panicked", "{}", run.records[2]);
    assert_contains(
        run.summary["stopped"].as_str().unwrap_or_default(),
        "--fail-fast",
        "summary.stopped",
    );
}

/// Two runs at once on one broker and its workers: each gets its own tasks' outcomes,
/// exactly those it gets alone, and nothing of the other's.
#[test]
fn concurrent_runs_on_one_broker_do_not_mix() {
    let server = RedisServer::start();
    let url = server.url();
    let _a = Worker::start(&url, "a", 2);
    let _b = Worker::start(&url, "b", 2);
    let (tickers_x, tickers_y) = (tickers("X", 30), tickers("Y", 40));
    let (x_args, y_args) = (fetch_args(&tickers_x, "11"), fetch_args(&tickers_y, "12"));

    // Each alone: its exit code (1 if a fetch failed for good) and outcomes.
    let alone = |args: &[&str]| {
        let out = output(
            coordinator()
                .env_remove("WORKPOOL_BROKER")
                .arg("run")
                .args(on_broker(args, &url)),
        );
        (
            out.status.code(),
            outcomes_by_index(&parse_jsonl(&stdout(&out))),
        )
    };
    let x_alone = alone(&x_args);
    let y_alone = alone(&y_args);
    assert_eq!(x_alone.1.len(), 30);
    assert_eq!(y_alone.1.len(), 40);

    let mut x = Background::start(&on_broker(&x_args, &url));
    let mut y = Background::start(&on_broker(&y_args, &url));
    let x_run = x.finish(x_alone.0.expect("exit code"));
    let y_run = y.finish(y_alone.0.expect("exit code"));
    for (name, run, alone, count) in [("x", &x_run, &x_alone.1, 30), ("y", &y_run, &y_alone.1, 40)]
    {
        assert_every_index_once(run, count);
        let together = outcomes_by_index(run);
        for (index, want) in alone {
            assert_eq!(&together[index], want, "run {name}, task {index}");
        }
        assert_eq!(run.summary_u64("duplicates"), 0, "run {name}");
    }
}

/// Fetches of `tickers` with `seed`: transient failures, retries and latency enough that
/// two runs at once interleave on the workers.
fn fetch_args<'a>(tickers: &'a str, seed: &'a str) -> Vec<&'a str> {
    vec![
        "fetch",
        "--tickers",
        tickers,
        "--seed",
        seed,
        "--fail-rate",
        "0.3",
        "--retries",
        "1",
        "--backoff-ms",
        "0",
        "--latency-ms",
        "10..60",
        "--chunk",
        "1",
    ]
}

/// Network namespace `wp-test-PID-N` with a veth pair to the host, removed on drop.
struct Netns {
    name: String,
    host_if: String,
    /// The host's address on the pair; the namespace has `.2`.
    host_ip: String,
}

impl Netns {
    /// Sets it up, or says why it cannot be.
    fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let subnet = free_subnet()?;
        let ns = Netns {
            name: format!("wp-test-{pid}-{subnet}"),
            host_if: format!("wph{pid}"),
            host_ip: format!("10.213.{subnet}.1"),
        };
        let ns_if = format!("wpn{pid}");
        let ns_ip = format!("10.213.{subnet}.2/24");
        let host_cidr = format!("{}/24", ns.host_ip);
        ip(&["netns", "add", &ns.name])?;
        // From here on, dropping `ns` removes whatever was made.
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        ip(&["addr", "add", &host_cidr, "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = ["netns", "exec", &ns.name, "ip"];
        ip(&[&inside[..], &["addr", "add", &ns_ip, "dev", &ns_if]].concat())?;
        ip(&[&inside[..], &["link", "set", &ns_if, "up"]].concat())?;
        ip(&[&inside[..], &["link", "set", "lo", "up"]].concat())?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end inside it, and with it the pair.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A `10.213.X.0/24` no interface of the host uses yet, as X.
fn free_subnet() -> Result<u32, String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|err| format!("cannot run ip: {err}"))?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = std::process::id() % 250;
    (0..250)
        .map(|i| (start + i) % 250 + 1)
        .find(|x| !used.contains(&format!("10.213.{x}.")))
        .ok_or_else(|| "no free 10.213.X.0/24".to_string())
}

/// `ip ARGS`, its failure as a message.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| format!("cannot run ip: {err}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A worker on a second host (a network namespace joined to this one by a veth pair)
/// serves a run started here. Skipped where network namespaces cannot be made (not root).
#[test]
fn a_worker_on_another_host_serves_the_run() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(reason) => {
            skip_loudly(
                "a_worker_on_another_host_serves_the_run",
                &format!("cannot make a network namespace (that needs root): {reason}"),
            );
            return;
        }
    };
    let server = RedisServer::start_with(None, &[&ns.host_ip]);
    let remote_url = server.url_on(&ns.host_ip);
    let remote = Worker::start_in(&["ip", "netns", "exec", &ns.name], &remote_url, "remote", 2);
    let run = run_on(
        &server.url(),
        0,
        &["io", "--count", "12", "--ms", "20", "--chunk", "1"],
    );
    assert_every_index_once(&run, 12);
    run.values();
    assert_eq!(
        pids_of(&run),
        BTreeSet::from([remote.pid()]),
        "the only worker is the one in namespace {}",
        ns.name
    );
}

/// Back-pressure: the coordinator never has more than `-w` batches waiting on the broker
/// or held by workers, however long the input; it publishes as outcomes come back.
#[test]
fn publishing_is_bounded_by_the_slots() {
    let server = RedisServer::start();
    let url = server.url();
    let _worker = Worker::start(&url, "w", 2);
    let args = [
        "io", "--count", "60", "--ms", "20", "--chunk", "1", "-w", "4",
    ];
    let mut run = Background::start(&on_broker(&args, &url));
    let client = redis::Client::open(url.as_str()).expect("cannot parse the broker URL");
    let mut con = client
        .get_connection_with_timeout(START_LIMIT)
        .expect("cannot connect to the broker");
    let mut most = 0;
    let mut looks = 0;
    while run.poll().is_none() {
        // Entries still in the stream: waiting, or taken and not yet finished.
        let entries: usize = tasks_queued(&mut con);
        most = most.max(entries);
        looks += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let run = run.finish(0);
    assert_every_index_once(&run, 60);
    assert!(
        looks > 20,
        "the run was over too soon to watch ({looks} looks)"
    );
    assert!(most >= 1, "never saw a batch on the broker");
    assert!(
        most <= 4,
        "{most} batches were on the broker at once, more than the 4 slots"
    );
}

/// A live worker renews the lease of a batch that runs longer than the lease, so no other
/// worker takes it over: each long task runs once.
#[test]
fn long_tasks_keep_their_lease() {
    let server = RedisServer::start();
    let url = server.url();
    let a = Worker::start(&url, "a", 1);
    let b = Worker::start(&url, "b", 1);
    // Three leases long (the fixture's lease is 1 s).
    let run = run_on(
        &url,
        0,
        &["io", "--count", "2", "--ms", "3000", "--chunk", "1"],
    );
    assert_every_index_once(&run, 2);
    assert_eq!(run.summary_u64("duplicates"), 0, "{}", run.summary);
    for worker in [&a, &b] {
        let log = worker.stderr();
        assert!(
            !log.contains("took over"),
            "a live worker's batch was taken over:\n{log}"
        );
    }
}

/// `bench --broker` measures the redis backend beside processes and threads, and the
/// broker's floor; nothing here looks at the speeds measured.
#[test]
fn bench_measures_the_broker_beside_the_local_backends() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("cannot create temp dir");
    let json = dir.path().join("bench.json");
    let out = output(
        coordinator()
            .env_remove("WORKPOOL_BROKER")
            .args(["bench", "--quick", "--runs", "1", "--warmup", "0"])
            .args(["--suite", "broker", "--broker", &server.url()])
            .arg("--export-json")
            .arg(&json),
    );
    assert_exit(&out, 0);
    assert!(
        !stderr(&out).contains("warning: suite"),
        "the suite failed:\n{}",
        stderr(&out)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("no JSON export"))
            .expect("the JSON export parses");
    let measured = |case: &str, runtime: &str| {
        report["measurements"]
            .as_array()
            .expect("measurements")
            .iter()
            .find(|m| m["case"] == case && m["runtime"] == runtime)
            .unwrap_or_else(|| panic!("no {case} / {runtime} in {report:#}"))
            .clone()
    };
    for case in [
        "pool ready",
        "noop round trip",
        "noop throughput",
        "io speedup",
    ] {
        for runtime in ["redis", "process", "thread"] {
            assert!(
                measured(case, runtime)["stats"]["median"]
                    .as_f64()
                    .unwrap_or(0.0)
                    > 0.0
            );
        }
        let ratio = &measured(case, "redis")["ratios"]["redis/process"];
        assert!(ratio.as_f64().is_some(), "{case}: no redis/process ratio");
    }
    assert!(measured("echo round trip", "floor-redis")["stats"]["median"].is_number());
    assert!(measured("noop round trip", "redis")["ratios"]["x floor"].is_number());
    assert!(measured("kill to run complete", "redis")["stats"]["median"].is_number());
}

/// `bench --suite broker` killed (SIGKILL) or interrupted (SIGINT, as Ctrl-C) while its
/// `worker --broker` processes run: they die with it instead of living on under init.
#[test]
fn bench_workers_die_with_the_bench() {
    let server = RedisServer::start();
    for signal in [libc::SIGKILL, libc::SIGINT] {
        let dir = tempfile::tempdir().expect("cannot create temp dir");
        let log = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let mut cmd = Command::new(crate::common::COORDINATOR);
        cmd.env("WORKPOOL_WORKER", WORKER)
            .env_remove("WORKPOOL_BROKER")
            .args(["bench", "--runs", "1", "--warmup", "0", "--suite", "broker"])
            .args(["--broker", &server.url()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        // SAFETY: signal() only resets a disposition in the child. A shell starts
        // background jobs with SIGINT ignored, and the bench would inherit that; Ctrl-C
        // reaches a foreground program with the default action.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut bench = die_with_parent(&mut cmd)
            .spawn()
            .expect("cannot start bench");
        let bench_pid = u64::from(bench.id());
        let started = Instant::now();
        let workers = loop {
            let workers = children_of(bench_pid);
            if workers.len() >= 2 {
                break workers;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "the bench started no workers"
            );
            std::thread::sleep(POLL);
        };
        let pid = i32::try_from(bench.id()).expect("pid out of range");
        // SAFETY: kill only sends a signal, to our own child that is not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = bench.wait().expect("wait on bench");
        // Ctrl-C is the bench's own to handle: it keeps what it measured and exits 130.
        let expected = if signal == libc::SIGINT {
            status.code() == Some(130)
        } else {
            status.signal() == Some(signal)
        };
        assert!(expected, "after signal {signal}: {status}");
        let started = Instant::now();
        while workers.iter().any(|&w| is_running(w)) {
            if started.elapsed() > ERROR_LIMIT {
                for pid in workers.iter().filter_map(|&w| i32::try_from(w).ok()) {
                    // SAFETY: kill only sends a signal, to the bench's workers, seen
                    // running a moment ago (no test outlives them, so pids are not reused).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                panic!("signal {signal}: bench workers {workers:?} outlived it");
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The `worker --broker` processes whose parent is `parent`.
fn children_of(parent: u64) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u64>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains("--lease")
        })
        .collect()
}
