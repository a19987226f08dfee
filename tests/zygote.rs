//! Process pools built by a program itself, as a library user builds them, several in
//! one program and on several threads.

use std::path::PathBuf;

use workpool::pool::WorkerBinary;
use workpool::workload::{Noop, NoopInput};
use workpool::{BackendKind, Pool, PoolBuilder, Stats};

use crate::chaos::{proc_stat, zygote_children};
use crate::common::WORKER;

/// Held by each test here: they count this program's zygotes, so their pools must not
/// overlap.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn noop_pool(workers: usize) -> Pool<Noop> {
    PoolBuilder::new()
        .backend(BackendKind::Process)
        .workers(workers)
        .worker_program(WorkerBinary {
            path: PathBuf::from(WORKER),
            source: "the test",
        })
        .build(Noop)
        .expect("cannot start the pool")
}

fn inputs(count: usize) -> impl Iterator<Item = NoopInput> {
    (0..count).map(|i| NoopInput {
        payload: vec![i as u8; 16],
        fault: None,
    })
}

/// Runs `count` no-ops on `pool`; every one must succeed with its payload, and no worker
/// may have been lost meanwhile.
#[track_caller]
fn run_noops(pool: &mut Pool<Noop>, count: usize) {
    let stats = run_noops_losing_some(pool, count);
    assert_eq!((stats.workers_replaced, stats.failed_starts), (0, 0));
}

/// Runs `count` no-ops on `pool`; every one must succeed with its payload.
#[track_caller]
fn run_noops_losing_some(pool: &mut Pool<Noop>, count: usize) -> Stats {
    let mut run = pool.map(inputs(count));
    let mut seen = 0;
    for (i, record) in run.by_ref().enumerate() {
        let output = record.result.expect("a no-op failed");
        assert_eq!(output.payload, vec![i as u8; 16]);
        seen += 1;
    }
    assert_eq!(seen, count);
    run.stats()
}

/// A pool's workers outlive other threads: a worker (and the zygote that forks it) dies
/// with the thread that started it (`PR_SET_PDEATHSIG`), so a pool must not fork its
/// workers from a zygote that another pool's thread started. Here that thread ends while
/// a later pool, built on this one, still runs.
#[test]
fn a_pool_keeps_its_workers_when_the_thread_of_an_earlier_pool_ends() {
    let _serial = one_at_a_time();
    let (built, first_built) = flume::bounded(0);
    let (end, ended) = flume::bounded::<()>(0);
    let earlier = std::thread::spawn(move || {
        let mut pool = noop_pool(1);
        run_noops(&mut pool, 5);
        built.send(()).expect("the test is gone");
        let _ = ended.recv();
    });
    first_built
        .recv()
        .expect("the earlier pool's thread panicked");
    let mut pool = noop_pool(2);
    let pids = pool.pids();
    end.send(()).expect("the earlier pool's thread panicked");
    earlier.join().expect("the earlier pool's thread panicked");
    // A worker killed along with that thread is gone by now.
    std::thread::sleep(std::time::Duration::from_millis(100));
    run_noops(&mut pool, 50);
    assert_eq!(pool.pids(), pids, "workers were replaced");
}

/// Each pool forks its workers from a zygote of its own, which ends with the pool, and
/// its workers are this program's own children.
#[test]
fn each_pool_forks_from_a_zygote_of_its_own_that_ends_with_it() {
    let _serial = one_at_a_time();
    let own = std::process::id() as i32;
    let mut first = noop_pool(2);
    run_noops(&mut first, 10);
    let zygotes = zygote_children(own);
    assert_eq!(zygotes.len(), 1, "zygotes during one pool: {zygotes:?}");
    first.shutdown();
    let left = zygote_children(own);
    assert!(left.is_empty(), "the zygote outlived its pool: {left:?}");
    let mut second = noop_pool(3);
    run_noops(&mut second, 10);
    let second_zygotes = zygote_children(own);
    assert_eq!(second_zygotes.len(), 1, "zygotes: {second_zygotes:?}");
    assert_ne!(second_zygotes, zygotes);
    for pid in second.pids() {
        let ppid = proc_stat(pid as i32).map(|(_, _, ppid)| ppid);
        assert_eq!(ppid, Some(own), "worker {pid} is not this program's child");
    }
}

/// A worker that dies while its pool is idle, between two runs, is replaced when the next
/// run starts; that run does not wait for the dead worker.
#[test]
fn a_worker_that_dies_between_runs_is_replaced_by_the_next_run() {
    let _serial = one_at_a_time();
    let (done, finished) = flume::bounded(1);
    // On a thread of its own, so that a hang fails the test rather than blocking the suite.
    std::thread::spawn(move || {
        let mut pool = noop_pool(2);
        run_noops(&mut pool, 10);
        let before = pool.pids();
        // SAFETY: a signal to a worker of this very test.
        unsafe {
            libc::kill(before[0] as i32, libc::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Replaced as the run starts; on a very slow machine the loss may be heard only
        // during the run, which replaces it too.
        run_noops_losing_some(&mut pool, 10);
        let _ = done.send((before, pool.pids()));
    });
    let (before, after) = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the second run hung, or panicked");
    assert_ne!(after[0], before[0], "the dead worker was not replaced");
    assert_eq!(after[1], before[1], "the live worker was replaced");
}
