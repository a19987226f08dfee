//! The batching policy: how many tasks travel in one message (`chunk`), and how many
//! messages a runner may have queued (`depth`), from the settings, what the backend can
//! do, and the run time of the tasks measured so far.

use super::{Capabilities, Chunk};

/// The largest batch `Chunk::Auto` makes.
pub(crate) const MAX_AUTO_CHUNK: usize = 1024;
/// `Chunk::Auto` aims a batch at this much run time: long enough to amortise a round trip
/// (tens of microseconds), short enough to keep outcomes streaming and the load balanced.
const AUTO_BATCH_TARGET_US: f64 = 2_000.0;
/// Tasks longer than this go one batch per worker at a time: prefetching would only hold
/// them back from an idle worker.
const PIPELINE_BELOW_US: f64 = 5_000.0;
/// Work a runner keeps queued when a fixed chunk makes its batches short: enough to cover
/// the coordinator's turnaround (a round trip, longer on a busy machine), so that a worker
/// taking one task per message never waits for its next one. Small enough that a queue
/// left behind at the end of a run, or by a crash, is a millisecond of work.
const PIPELINE_QUEUE_US: f64 = 1_000.0;
/// The deepest queue that [`PIPELINE_QUEUE_US`] sets: each queued batch is a message
/// and a bookkeeping entry, and beyond this the rate no longer grows much.
const MAX_PIPELINE_DEPTH: usize = 64;
/// The input bytes that a queue deeper than two batches may hold: short tasks with bulky
/// inputs must not multiply their memory by the depth.
const PIPELINE_QUEUE_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

/// Decides batch sizes and queue depths for one run.
#[derive(Debug, Clone)]
pub(crate) struct BatchPolicy {
    chunk: Chunk,
    inflight: Option<usize>,
    fixed_depth: Option<usize>,
    batching_helps: bool,
    /// Exponential moving average of task run time.
    mean_run_us: Option<f64>,
    /// Exponential moving average of a batch's input bytes.
    mean_batch_bytes: Option<f64>,
}

impl BatchPolicy {
    pub fn new(chunk: Chunk, inflight: Option<usize>, caps: &Capabilities) -> Self {
        BatchPolicy {
            chunk,
            inflight,
            fixed_depth: caps.fixed_depth,
            batching_helps: caps.batching_helps,
            mean_run_us: None,
            mean_batch_bytes: None,
        }
    }

    /// A batch of `bytes` input bytes was sent.
    pub fn sent(&mut self, bytes: usize) {
        let bytes = bytes as f64;
        self.mean_batch_bytes = Some(
            self.mean_batch_bytes
                .map_or(bytes, |m| m * 0.9 + bytes * 0.1),
        );
    }

    /// A task ran for `run_us`.
    pub fn observe(&mut self, run_us: f64) {
        self.mean_run_us = Some(match self.mean_run_us {
            None => run_us,
            Some(mean) => mean * 0.9 + run_us * 0.1,
        });
    }

    /// Batches a runner may have queued at once.
    pub fn depth(&self) -> usize {
        if let Some(n) = self.inflight {
            return n.max(1);
        }
        if let Some(depth) = self.fixed_depth {
            return depth;
        }
        match self.mean_run_us {
            Some(us) if us < PIPELINE_BELOW_US => match self.chunk {
                // Auto batches are already long enough that two cover a turnaround.
                Chunk::Auto => 2,
                Chunk::Fixed(n) => {
                    let batch_us = (n.max(1) as f64 * us).max(1.0);
                    let by_time = PIPELINE_QUEUE_US / batch_us;
                    let by_bytes =
                        PIPELINE_QUEUE_BYTES / self.mean_batch_bytes.unwrap_or(0.0).max(1.0);
                    (by_time.min(by_bytes).ceil() as usize).clamp(2, MAX_PIPELINE_DEPTH)
                }
            },
            Some(_) => 1,
            // Nothing measured yet: fixed chunks are taken to be for short tasks.
            None => match self.chunk {
                Chunk::Fixed(_) => 2,
                Chunk::Auto => 1,
            },
        }
    }

    /// Tasks in the next batch, with `remaining` inputs left (if known) over `slots`.
    pub fn chunk_size(&self, remaining: Option<usize>, slots: usize) -> usize {
        let wanted = match self.chunk {
            Chunk::Fixed(n) => return n.max(1),
            // Where a batch buys nothing, one task at a time keeps outcomes streaming.
            Chunk::Auto if !self.batching_helps => return 1,
            Chunk::Auto => match self.mean_run_us {
                None => 1,
                Some(us) => (AUTO_BATCH_TARGET_US / us.max(0.05)) as usize,
            },
        };
        // Near the end, smaller batches keep every worker busy until the last task.
        let balance = match remaining {
            Some(left) => left / (slots * 2).max(1),
            None => MAX_AUTO_CHUNK,
        };
        wanted.min(balance).clamp(1, MAX_AUTO_CHUNK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(fixed_depth: Option<usize>, batching_helps: bool) -> Capabilities {
        Capabilities {
            fixed_depth,
            batching_helps,
            ..Capabilities::LOCAL
        }
    }

    fn auto() -> BatchPolicy {
        BatchPolicy::new(Chunk::Auto, None, &caps(None, true))
    }

    #[test]
    fn auto_starts_with_one_task_and_grows_for_tiny_ones() {
        let mut policy = auto();
        assert_eq!(policy.chunk_size(None, 2), 1, "nothing measured yet");
        assert_eq!(policy.depth(), 1);
        policy.observe(2.0); // 2 µs tasks: a 2 ms batch is 1000 of them
        assert_eq!(policy.chunk_size(None, 2), 1000);
        assert_eq!(policy.depth(), 2, "short tasks are pipelined");
        policy.observe(0.0);
        assert_eq!(policy.chunk_size(None, 2), MAX_AUTO_CHUNK, "capped");
    }

    #[test]
    fn short_fixed_batches_queue_a_millisecond_of_work() {
        let fixed = |n, us| {
            let mut policy = BatchPolicy::new(Chunk::Fixed(n), None, &caps(None, true));
            assert_eq!(policy.depth(), 2, "nothing measured yet");
            policy.observe(us);
            policy.depth()
        };
        assert_eq!(
            fixed(1, 0.1),
            MAX_PIPELINE_DEPTH,
            "no-ops: as deep as allowed"
        );
        assert_eq!(fixed(1, 100.0), 10);
        assert_eq!(fixed(10, 100.0), 2, "a 1 ms batch needs only the usual two");
        assert_eq!(fixed(1, 4_000.0), 2);
        assert_eq!(fixed(1, 50_000.0), 1, "long tasks are not prefetched");
        assert_eq!(
            fixed(usize::MAX, 1.0),
            2,
            "never fewer than two, no overflow"
        );
    }

    #[test]
    fn bulky_inputs_keep_the_queue_short() {
        let mut policy = BatchPolicy::new(Chunk::Fixed(1), None, &caps(None, true));
        policy.observe(0.1);
        for _ in 0..100 {
            policy.sent(1 << 20);
        }
        assert_eq!(policy.depth(), 4, "4 MiB queued");
        for _ in 0..100 {
            policy.sent(64 << 20);
        }
        assert_eq!(policy.depth(), 2);
    }

    #[test]
    fn long_tasks_go_one_at_a_time_without_prefetch() {
        let mut policy = auto();
        policy.observe(50_000.0);
        assert_eq!(policy.chunk_size(None, 4), 1);
        assert_eq!(policy.depth(), 1);
    }

    #[test]
    fn batches_shrink_near_the_end_to_keep_every_worker_busy() {
        let mut policy = auto();
        policy.observe(1.0);
        assert_eq!(policy.chunk_size(Some(100), 5), 10);
        assert_eq!(policy.chunk_size(Some(3), 5), 1, "never zero");
    }

    #[test]
    fn settings_and_capabilities_win_over_measurements() {
        let mut fixed = BatchPolicy::new(Chunk::Fixed(64), Some(3), &caps(None, true));
        fixed.observe(1_000_000.0);
        assert_eq!(fixed.chunk_size(Some(1), 8), 64, "a fixed chunk is fixed");
        assert_eq!(fixed.depth(), 3, "an explicit inflight is kept");
        let zero = BatchPolicy::new(Chunk::Fixed(0), Some(0), &caps(None, true));
        assert_eq!((zero.chunk_size(None, 1), zero.depth()), (1, 1));
        // A backend that runs a batch as it is handed over, or fixes its depth.
        let mut inline = BatchPolicy::new(Chunk::Auto, None, &caps(Some(1), false));
        inline.observe(1.0);
        assert_eq!((inline.chunk_size(None, 1), inline.depth()), (1, 1));
        let broker = BatchPolicy::new(Chunk::Fixed(16), None, &caps(Some(1), true));
        assert_eq!(broker.depth(), 1);
    }
}
