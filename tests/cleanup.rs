//! When `coordinator` exits, every worker process it started is gone: neither running
//! nor a zombie.

use crate::common::{run_jsonl, WORKER};

/// What is left of a process after its coordinator exited, judged from `/proc`.
#[derive(Debug, PartialEq)]
pub(crate) enum Leftover {
    /// No such process (or one that is not ours: the pid was reused).
    Gone,
    /// A worker of ours still running.
    Running,
    /// A worker of ours that exited and was never reaped.
    Zombie,
}

pub(crate) fn leftover(pid: i32) -> Leftover {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    if unsafe { libc::kill(pid, 0) } == -1 {
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ESRCH),
            "kill({pid}, 0): {err}"
        );
        return Leftover::Gone;
    }
    // The pid exists: is it still our worker, or a new process that reused the pid? A
    // zombie has no cmdline any more, so it is recognised by its name in `stat`.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let (name, state) = match (stat.find('('), stat.rfind(')')) {
        (Some(open), Some(close)) => (
            &stat[open + 1..close],
            stat[close + 1..].split_whitespace().next().unwrap_or(""),
        ),
        _ => return Leftover::Gone, // It exited while we looked.
    };
    if state == "Z" && name == "worker" {
        return Leftover::Zombie;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(WORKER) {
        Leftover::Running
    } else {
        Leftover::Gone
    }
}

#[test]
fn no_worker_outlives_its_run() {
    let run = run_jsonl(&["io", "--count", "4", "--ms", "50", "-w", "4"]);
    let mut pids = run.pids();
    pids.sort();
    pids.dedup();
    assert!(!pids.is_empty());
    assert_no_worker_left(pids);
}

/// Every one of `pids` (workers of a run that has ended) is gone, not even a zombie.
#[track_caller]
pub(crate) fn assert_no_worker_left(pids: impl IntoIterator<Item = u64>) {
    for pid in pids {
        let pid = i32::try_from(pid).expect("pid out of range");
        assert_eq!(
            leftover(pid),
            Leftover::Gone,
            "worker pid {pid} after the run"
        );
    }
}
