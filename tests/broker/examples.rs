//! An example program on the redis backend: the program starts two copies of itself as
//! broker workers (WORKPOOL_ROLE=worker), which serve its own task type.

use super::fixtures::{RedisServer, Worker};
use crate::common::{assert_contains, stderr, stdout};
use crate::examples::{assert_flaky, run_example};

/// Runs the `flaky` example through the broker at `url`, with `local` broker workers of
/// its own, and `extra` arguments.
fn flaky_on(url: &str, local: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--backend",
        "redis",
        "--broker",
        url,
        "--local-workers",
        local,
    ];
    args.extend_from_slice(extra);
    run_example("flaky", &args)
}

#[test]
fn flaky_on_redis_served_by_copies_of_itself() {
    let server = RedisServer::start();
    let url = server.url();
    let out = flaky_on(&url, "2", &["--timeout-ms", "300"]);
    assert_flaky(&out, 20, false);
}

/// A broker worker that does not serve a run's task type refuses it, and says which
/// types it serves: the run fails with that reason instead of waiting for ever.
#[test]
fn a_broker_worker_refuses_a_task_type_it_does_not_serve() {
    let server = RedisServer::start();
    let url = server.url();
    // The `worker` binary serves the built-in workloads only.
    let worker = Worker::start(&url, "builtin-only", 1);
    let out = flaky_on(&url, "0", &["--count", "3"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert_contains(
        &said,
        "serves the task types [noop, io, cpu, fetch, files], not `flaky-square`",
        "the run's output",
    );
    drop(worker);
}
