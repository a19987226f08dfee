//! What is in the broker cannot stop the redis backend: entries of the tasks stream that
//! workpool did not write, run settings overwritten during a run, and a coordinator killed
//! before it first renewed its run (whose keys must expire all the same).

use std::collections::BTreeSet;

use workpool::broker::{DEAD_STREAM, GROUP, TASKS_STREAM};

use super::fixtures::*;
use crate::common::assert_every_index_once;

/// Appends an entry with the given fields to the tasks stream.
fn add_entry(con: &mut redis::Connection, fields: &[(&str, &[u8])]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(TASKS_STREAM).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query(con).expect("XADD")
}

/// How many entries `key` (a stream) holds.
fn stream_len(con: &mut redis::Connection, key: &str) -> usize {
    redis::cmd("XLEN").arg(key).query(con).expect("XLEN")
}

/// Entries workpool could never have written, read by a worker as new and (the first
/// three) claimed from a consumer that died holding them: each is logged without its
/// bytes, moved to the dead-letter stream and acknowledged, and the worker goes on
/// serving. Before, the first one made every worker exit, and each restarted worker
/// claimed it and exited again.
#[test]
fn unreadable_task_entries_are_moved_aside_and_the_worker_serves_on() {
    let server = RedisServer::start();
    let url = server.url();
    let mut con = connect(&url);
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut con)
        .expect("XGROUP CREATE");
    // A megabyte of noise (a fixed linear congruential sequence).
    let mut state = 12345u32;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 16) as u8
        })
        .collect();
    let claimed: [&[u8]; 3] = [b"garbage", b"", b"1"];
    for frame in claimed {
        add_entry(&mut con, &[("f", frame)]);
    }
    take_unacknowledged(&mut con, "ghost");
    assert_eq!(pending(&mut con), 3);

    let worker = Worker::start(&url, "w", 2);
    add_entry(&mut con, &[("f", b"\xff\xfe\xff")]);
    add_entry(&mut con, &[("f", &noise)]);
    add_entry(&mut con, &[("x", b"y")]);

    let run = run_on(&url, 0, &["noop", "--count", "20"]);
    assert_every_index_once(&run, 20);
    assert_eq!(run.succeeded(), 20);
    assert_eq!(pids_of(&run), BTreeSet::from([worker.pid()]));

    // The claimed ones wait out their lease (1 s) first.
    let started = std::time::Instant::now();
    while pending(&mut con) > 0 || stream_len(&mut con, DEAD_STREAM) < 6 {
        assert!(
            started.elapsed() < RUN_LIMIT,
            "{} entries still pending, {} moved aside\n--- worker ---\n{}",
            pending(&mut con),
            stream_len(&mut con, DEAD_STREAM),
            worker.stderr()
        );
        std::thread::sleep(POLL);
    }
    assert_eq!(stream_len(&mut con, TASKS_STREAM), 0);
    assert_eq!(stream_len(&mut con, DEAD_STREAM), 6);
    let ttl: i64 = redis::cmd("TTL")
        .arg(DEAD_STREAM)
        .query(&mut con)
        .expect("TTL");
    assert!(ttl > 0, "the dead-letter stream should expire, TTL {ttl}");
    let log = worker.stderr();
    assert_eq!(log.matches("gave up entry").count(), 6, "{log}");
    assert!(
        !log.contains("garbage"),
        "the log shows an entry's bytes:\n{log}"
    );
    assert!(
        is_running(worker.pid()),
        "the worker died:\n{}",
        worker.stderr()
    );
    // And it still serves.
    let again = run_on(&url, 0, &["noop", "--count", "5"]);
    assert_eq!(again.succeeded(), 5);
}

/// A run's settings key overwritten during the run (garbage, or another type): its
/// coordinator fails the run at once with a message naming the key, rather than waiting
/// for ever, whether a worker tells it or (with no worker left) it finds out itself; the
/// worker lives on and serves the next run.
#[test]
fn overwritten_run_settings_fail_the_run_and_not_the_worker() {
    let server = RedisServer::start();
    let url = server.url();
    let mut con = connect(&url);
    let mut worker = Worker::start(&url, "w", 2);
    let args = ["io", "--count", "40", "--ms", "200", "--chunk", "1"];
    for overwrite in ["string", "hash"] {
        let mut run = Background::start(&on_broker(&args, &url));
        let spec = wait_for_run_key(&mut con);
        run.wait_for_lines(2);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(&spec).ignore();
        match overwrite {
            "string" => pipe.cmd("SET").arg(&spec).arg("garbage"),
            _ => pipe.cmd("HSET").arg(&spec).arg("a").arg("b"),
        };
        pipe.ignore()
            .query::<()>(&mut con)
            .expect("overwrite the run's settings");
        let done = run.finish(1);
        assert!(done.succeeded() < 40, "{overwrite}: the run went on");
        let log = run.stderr();
        assert!(
            log.contains(&spec) && log.contains("cannot serve this run"),
            "{overwrite}: no clear error\n{log}"
        );
        assert!(
            is_running(worker.pid()),
            "{overwrite}: the worker died\n{}",
            worker.stderr()
        );
    }
    let again = run_on(&url, 0, &["noop", "--count", "5"]);
    assert_eq!(pids_of(&again), BTreeSet::from([worker.pid()]));

    // No worker left to tell: the coordinator checks its settings as it renews them.
    worker.kill();
    let mut run = Background::start(&on_broker(&args, &url));
    let spec = wait_for_run_key(&mut con);
    let _: () = redis::cmd("SET")
        .arg(&spec)
        .arg("garbage")
        .arg("KEEPTTL")
        .query(&mut con)
        .expect("SET");
    run.finish(1);
    let log = run.stderr();
    assert!(
        log.contains(&spec) && log.contains("no longer holds this run's settings"),
        "{log}"
    );
}

/// A coordinator SIGKILLed right after its first outcomes, well before its first renewal
/// of the run (5 s in): every key of the run already has a TTL, the results stream a
/// worker created included.
#[test]
fn every_key_of_a_run_expires_from_its_creation() {
    let server = RedisServer::start();
    let url = server.url();
    let _worker = Worker::start(&url, "w", 2);
    let args = ["io", "--count", "100", "--ms", "100", "--chunk", "1"];
    let mut run = Background::start(&on_broker(&args, &url));
    run.wait_for_lines(1);
    run.kill();
    let mut con = connect(&url);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("workpool:run:*")
        .query(&mut con)
        .expect("KEYS");
    assert!(
        keys.iter().any(|k| k.ends_with(":results")),
        "no results stream: {keys:?}"
    );
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con).expect("PTTL");
        assert!(ttl > 0, "{key} has no expiry (PTTL {ttl})");
    }
}
