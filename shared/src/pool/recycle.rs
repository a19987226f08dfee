//! Worker recycling: a worker process is retired, and a fresh one takes its slot, once it
//! has run a set number of tasks or its resident memory has passed a limit (tasks that
//! leak). The scheduler sizes batches to what a worker has left and reads its memory
//! between batches; retiring is graceful (the worker runs and answers what it holds, then
//! exits), so no task is lost, retried or run twice because of it.

/// When a worker process is retired and replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recycle {
    /// A worker runs at most this many tasks (retries included), then is retired.
    pub max_tasks: Option<u64>,
    /// A worker whose resident memory is above this many bytes after a batch is retired.
    pub max_rss_bytes: Option<u64>,
}

impl Recycle {
    /// Whether any limit is set.
    pub fn is_on(&self) -> bool {
        self.max_tasks.is_some() || self.max_rss_bytes.is_some()
    }

    /// The most tasks the next batch may hold for a worker that was sent `sent` tasks,
    /// given the batching policy's `chunk`: never past the task limit.
    pub(crate) fn batch_room(&self, sent: u64, chunk: usize) -> usize {
        match self.max_tasks {
            None => chunk,
            Some(max) => {
                let left = max.saturating_sub(sent);
                chunk.min(usize::try_from(left).unwrap_or(usize::MAX))
            }
        }
    }

    /// Whether a worker that was sent `sent` tasks has used up its task limit.
    pub(crate) fn spent(&self, sent: u64) -> bool {
        self.max_tasks.is_some_and(|max| sent >= max)
    }

    /// Whether `rss_bytes` of resident memory is above the limit.
    pub(crate) fn over_memory(&self, rss_bytes: u64) -> bool {
        self.max_rss_bytes.is_some_and(|max| rss_bytes > max)
    }
}

/// Why a worker was retired: the keys of [`Stats::workers_retired`](super::Stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retirement {
    /// It ran `max_tasks`.
    MaxTasks,
    /// Its memory passed `max_rss_bytes`.
    MaxRss,
}

impl Retirement {
    /// The reason as the summary names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Retirement::MaxTasks => "max_tasks",
            Retirement::MaxRss => "max_rss",
        }
    }
}

/// The resident memory of process `pid`: the second field of `/proc/PID/statm`, in
/// pages. `None` where there is no such file (not Linux, the process is gone).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a configuration value and touches no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|&p| p > 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_pass_the_task_limit() {
        let seven = Recycle {
            max_tasks: Some(7),
            max_rss_bytes: None,
        };
        assert_eq!(seven.batch_room(0, 1024), 7);
        assert_eq!(seven.batch_room(5, 1024), 2);
        assert_eq!(
            seven.batch_room(5, 1),
            1,
            "the policy's chunk is kept below it"
        );
        assert_eq!(seven.batch_room(7, 16), 0);
        assert!(!seven.spent(6) && seven.spent(7));
        let off = Recycle::default();
        assert_eq!(off.batch_room(u64::MAX, 64), 64);
        assert!(!off.spent(u64::MAX) && !off.is_on());
    }

    #[test]
    fn memory_above_the_limit_only() {
        let limit = Recycle {
            max_tasks: None,
            max_rss_bytes: Some(64 << 20),
        };
        assert!(!limit.over_memory(64 << 20));
        assert!(limit.over_memory((64 << 20) + 1));
        assert!(!Recycle::default().over_memory(u64::MAX));
    }

    #[test]
    fn this_process_has_resident_memory() {
        let rss = resident_bytes(std::process::id()).expect("/proc/PID/statm");
        assert!(rss > 0);
        assert_eq!(resident_bytes(0), None);
    }
}
