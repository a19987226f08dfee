//! What the redis backend survives beyond a worker's death: the broker itself restarting
//! (with and without persistence), its coordinator being killed, tasks that crash or hang
//! in a worker that isolates them in child processes, and a TLS broker.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use workpool::broker::spec_key;

use super::fixtures::*;
use crate::common::{
    assert_contains, assert_every_index_once, assert_exit, coordinator, output, parse_jsonl,
    stderr, stdout,
};

/// Restarts the broker in the middle of a run and checks nothing is lost or doubled.
fn survives_a_broker_restart(server: &mut RedisServer) -> crate::common::Run {
    let url = server.url();
    let _a = Worker::start(&url, "a", 3);
    let _b = Worker::start(&url, "b", 3);
    // Six threads, 60 tasks of 300 ms: about 3 s, restarted about a tenth of the way in.
    let args = ["io", "--count", "60", "--ms", "300", "--chunk", "1"];
    let mut run = Background::start(&on_broker(&args, &url));
    run.wait_for_lines(3);
    assert!(run.poll().is_none(), "the run ended before the restart");
    server.restart();
    let done = run.finish(0);
    assert_every_index_once(&done, 60);
    done.values();
    assert_eq!(done.summary_u64("succeeded"), 60);
    assert!(
        done.summary_u64("batches") > 60,
        "the batches in flight should have been published again: {}",
        done.summary
    );
    done
}

/// A broker restarted without persistence has forgotten the stream, the group, the run and
/// every pending entry: the coordinator registers the run again and republishes what was
/// in flight, the workers join a new group, and every task still ends exactly once.
#[test]
fn a_broker_restarted_without_persistence_loses_no_task() {
    let mut server = RedisServer::start();
    let run = survives_a_broker_restart(&mut server);
    eprintln!(
        "broker: restarted without persistence; {} duplicates dropped",
        run.summary_u64("duplicates")
    );
}

/// A broker with an append-only file (fsync always) keeps everything acknowledged; the
/// coordinator republishes its batches in flight anyway, and the copies are de-duplicated.
#[test]
fn a_broker_restarted_with_aof_loses_no_task() {
    let extra = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = RedisServer::start_custom(None, &[], &extra);
    let run = survives_a_broker_restart(&mut server);
    eprintln!(
        "broker: restarted with AOF; {} duplicates dropped",
        run.summary_u64("duplicates")
    );
}

/// A coordinator killed mid-run leaves nothing behind for long: its run's keys carry a
/// TTL (renewed while it lives), and once the run is gone the workers drop its remaining
/// entries without running them.
#[test]
fn a_killed_coordinator_leaves_nothing_behind() {
    let server = RedisServer::start();
    let url = server.url();
    let _worker = Worker::start(&url, "w", 1);
    let args = ["io", "--count", "20", "--ms", "1000", "--chunk", "1"];
    let mut run = Background::start(&on_broker(&args, &url));
    let mut con = connect(&url);
    let spec = wait_for_run_key(&mut con);
    // Killed once its batches are out (they stay in the stream until run and finished).
    let started = Instant::now();
    loop {
        let entries: usize = tasks_queued(&mut con);
        if entries >= 15 {
            break;
        }
        assert!(
            started.elapsed() < START_LIMIT,
            "only {entries} batches published"
        );
        std::thread::sleep(POLL);
    }
    run.kill();
    let ttl: i64 = redis::cmd("TTL").arg(&spec).query(&mut con).expect("TTL");
    assert!(
        (1..=30).contains(&ttl),
        "the run's key should expire within 30 s of its coordinator's death, TTL {ttl}"
    );
    // What the TTL does in 30 s, done now: the run is over for the workers.
    let _: i64 = redis::cmd("DEL").arg(&spec).query(&mut con).expect("DEL");
    // 19 one-second tasks are left: running them would take 19 s, dropping them a moment.
    let started = Instant::now();
    loop {
        let left: usize = tasks_queued(&mut con);
        let taken = pending(&mut con);
        if left == 0 && taken == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{left} entries and {taken} pending left 8 s after the run ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended: Vec<String> = redis::cmd("KEYS")
        .arg(spec_key("*"))
        .query(&mut con)
        .expect("KEYS");
    assert!(
        ended.iter().all(|k| k.ends_with(":results")),
        "keys left: {ended:?}"
    );
}

/// `worker --isolate process` runs each batch in a child worker: a task that aborts, is
/// killed or hangs past `--timeout` ends only that child; the worker itself serves on.
#[test]
fn an_isolating_worker_survives_tasks_that_crash_or_hang() {
    let server = RedisServer::start();
    let url = server.url();
    let worker = Worker::start_extra(&url, "iso", 2, &["--isolate", "process"], &[]);
    let args = [
        "noop",
        "--count",
        "10",
        "--fault",
        "abort@2,kill@4,hang@6,panic@8",
        "--timeout",
        "1s",
    ];
    let run = run_on(&url, 1, &args);
    assert_every_index_once(&run, 10);
    let kinds: Vec<&str> = run.records.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "",
            "",
            "worker_crashed",
            "",
            "worker_crashed",
            "",
            "timeout",
            "",
            "panicked",
            ""
        ],
        "{:#?}",
        run.records
    );
    assert!(
        run.pids().iter().all(|&pid| pid == worker.pid()),
        "every outcome comes from the broker worker"
    );
    // The worker is still there and serving after all of that.
    let again = run_on(&url, 0, &["noop", "--count", "5"]);
    assert_every_index_once(&again, 5);
    let status = Command::new("kill")
        .args(["-0", &worker.pid().to_string()])
        .status()
        .expect("kill -0");
    assert!(status.success(), "the worker died\n{}", worker.stderr());
}

/// Writes a CA and a server certificate for localhost/127.0.0.1 with the openssl tool.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed for the TLS test: apt-get install openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("cannot write the extension file");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=workpool test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

/// `rediss://`: a run through a TLS broker whose certificate is checked against the CA in
/// `WORKPOOL_BROKER_CA`; without that CA the certificate is refused, a set-up error.
#[test]
fn a_tls_broker_is_reached_with_its_ca_and_refused_without() {
    let certs = tempfile::tempdir().expect("cannot create temp dir");
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let tls_port = free_port().to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let extra = [
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ];
    let server = RedisServer::start_custom(Some("tls-s3cret"), &[], &extra);
    let url = format!("rediss://:tls-s3cret@localhost:{tls_port}");
    let _worker = Worker::start_extra(&url, "tls", 2, &[], &[("WORKPOOL_BROKER_CA", &ca)]);
    let out = output(
        coordinator()
            .env("WORKPOOL_BROKER_CA", &ca)
            .args(["run", "fetch", "--format", "jsonl", "--backend", "redis"])
            .args(["--broker", &url]),
    );
    assert_exit(&out, 0);
    let run = parse_jsonl(&stdout(&out));
    assert_eq!(run.summary_u64("succeeded"), 16);
    assert_eq!(
        run.summary["broker"],
        format!("rediss://:***@localhost:{tls_port}")
    );
    assert!(!stdout(&out).contains("tls-s3cret") && !stderr(&out).contains("tls-s3cret"));

    let refused = output(coordinator().env_remove("WORKPOOL_BROKER_CA").args([
        "run",
        "noop",
        "--backend",
        "redis",
        "--broker",
        &url,
    ]));
    assert_exit(&refused, 2);
    assert_contains(&stderr(&refused), "certificate", "stderr");
    drop(server);
}

/// A batch whose every holder dies is given up after `--max-deliveries`: its task ends
/// `worker_crashed` instead of killing workers for ever, and the rest of the run is fine.
#[test]
fn a_batch_that_kills_its_workers_is_given_up() {
    let server = RedisServer::start();
    let url = server.url();
    let limit = ["--max-deliveries", "1"];
    let _a = Worker::start_extra(&url, "a", 1, &limit, &[]);
    let _b = Worker::start_extra(&url, "b", 1, &limit, &[]);
    let run = run_on(
        &url,
        1,
        &["noop", "--count", "2", "--fault", "kill@1", "--chunk", "1"],
    );
    assert_every_index_once(&run, 2);
    assert_eq!(run.records[0]["ok"], true, "{:#?}", run.records);
    assert_eq!(kind(&run.records[1]), "worker_crashed");
    assert_contains(
        run.records[1]["error"]["message"]
            .as_str()
            .unwrap_or_default(),
        "given up after 2 deliveries",
        "the error message",
    );
}

/// Ctrl-C on a redis run: exit 130, every task reported once (the unfinished ones
/// `cancelled`), and the run's batches withdrawn from the broker.
#[test]
fn an_interrupted_redis_run_cancels_and_withdraws_its_batches() {
    let server = RedisServer::start();
    let url = server.url();
    let _worker = Worker::start(&url, "w", 2);
    let args = [
        "io", "--count", "40", "--ms", "300", "--chunk", "1", "-w", "8",
    ];
    let mut run = Background::start(&on_broker(&args, &url));
    run.wait_for_lines(2);
    run.signal(libc::SIGINT);
    let run = run.finish(130);
    assert_every_index_once(&run, 40);
    let cancelled = run.failed_with("cancelled");
    assert!(
        cancelled > 20,
        "only {cancelled} of 40 cancelled: {}",
        run.summary
    );
    assert_eq!(run.summary["interrupted"], true);
    let mut con = connect(&url);
    let started = Instant::now();
    loop {
        let left: usize = tasks_queued(&mut con);
        if left == 0 {
            break;
        }
        // The worker finishes what it holds (a 300 ms task each), the rest is withdrawn.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{left} entries of the interrupted run still on the broker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM stops a worker gracefully: it takes nothing more, finishes and publishes the
/// batches it holds, and exits 0; another worker does the rest.
#[test]
fn a_worker_told_to_stop_finishes_what_it_holds() {
    let server = RedisServer::start();
    let url = server.url();
    let mut leaving = Worker::start(&url, "leaving", 2);
    let args = ["io", "--count", "12", "--ms", "500", "--chunk", "1"];
    let mut run = Background::start(&on_broker(&args, &url));
    let mut con = connect(&url);
    let started = Instant::now();
    while pending(&mut con) < 2 {
        assert!(started.elapsed() < START_LIMIT, "the worker took nothing");
        std::thread::sleep(POLL);
    }
    leaving.signal(libc::SIGTERM);
    let status = leaving.wait_exit();
    assert!(status.success(), "{status}\n{}", leaving.stderr());
    assert_eq!(
        pending(&mut con),
        0,
        "the stopped worker left batches pending"
    );
    assert!(run.poll().is_none(), "the run ended with the first worker");
    let staying = Worker::start(&url, "staying", 4);
    let run = run.finish(0);
    assert_every_index_once(&run, 12);
    run.values();
    let by_leaving = run.pids().iter().filter(|&&p| p == leaving.pid()).count();
    assert!(
        by_leaving >= 2,
        "the stopped worker finished {by_leaving} tasks"
    );
    assert!(run.pids().contains(&staying.pid()));
}

/// `worker --isolate process` configured through $WORKPOOL_BROKER, and a coordinator on
/// the process backend with $WORKPOOL_BROKER set: their child workers must not inherit
/// the variable (it made each child a broker worker too, which clap refuses alongside
/// --connect, so every task failed).
#[test]
fn child_workers_do_not_inherit_the_broker_url() {
    let server = RedisServer::start();
    let url = server.url();
    let worker = Worker::start_extra(
        &url,
        "iso",
        2,
        &["--isolate", "process"],
        &[("WORKPOOL_BROKER", &url)],
    );
    let run = run_on(&url, 0, &["noop", "--count", "10"]);
    assert_every_index_once(&run, 10);
    assert_eq!(run.succeeded(), 10, "{}", worker.stderr());

    let out = output(
        coordinator()
            .env("WORKPOOL_BROKER", &url)
            .args(["run", "noop", "--count", "10", "--backend", "process"])
            .args(["--workers", "2", "--format", "jsonl"]),
    );
    assert_exit(&out, 0);
    assert_every_index_once(&parse_jsonl(&stdout(&out)), 10);
}
