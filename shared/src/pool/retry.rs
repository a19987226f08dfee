//! The retry queue: tasks waiting out their backoff before another attempt, and the
//! backoff itself (exponential, jittered, capped).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::Rng;

/// The longest backoff between two attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The delay before attempt `attempt + 1` of task `index`: `base * 2^(attempt-1)`, times
/// a factor in [0.5, 1.5) drawn from the run's seed, so that tasks failing together do not
/// retry in lockstep, and a run repeated with the same seed waits the same; at most
/// [`MAX_BACKOFF`].
pub(crate) fn backoff(base: Duration, seed: u64, index: u64, attempt: u32) -> Duration {
    if base.is_zero() {
        return Duration::ZERO;
    }
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let jitter =
        crate::seed::rng(seed, &index.to_le_bytes(), u64::from(attempt)).random_range(0.5..1.5);
    exp.mul_f64(jitter).min(MAX_BACKOFF)
}

/// Tasks waiting for their next attempt, soonest first.
pub(crate) struct RetryQueue<J> {
    heap: BinaryHeap<Reverse<Delayed<J>>>,
}

struct Delayed<J> {
    at: Instant,
    job: J,
}

impl<J> PartialEq for Delayed<J> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<J> Eq for Delayed<J> {}
impl<J> PartialOrd for Delayed<J> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<J> Ord for Delayed<J> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl<J> RetryQueue<J> {
    pub fn new() -> Self {
        RetryQueue {
            heap: BinaryHeap::new(),
        }
    }

    /// Queues `job` until `at`.
    pub fn push(&mut self, at: Instant, job: J) {
        self.heap.push(Reverse(Delayed { at, job }));
    }

    /// The next task whose time has come by `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<J> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        self.heap.pop().map(|Reverse(d)| d.job)
    }

    /// When the next task's time comes.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|d| d.0.at)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Every waiting task, in no particular order, leaving the queue empty.
    pub fn drain(&mut self) -> impl Iterator<Item = J> + '_ {
        self.heap.drain().map(|Reverse(d)| d.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_come_out_when_due_soonest_first() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut queue = RetryQueue::new();
        queue.push(now + ms(30), "c");
        queue.push(now + ms(10), "a");
        queue.push(now + ms(20), "b");
        assert_eq!(queue.next_due(), Some(now + ms(10)));
        assert_eq!(queue.pop_due(now), None, "nothing is due yet");
        assert_eq!(queue.pop_due(now + ms(25)), Some("a"));
        assert_eq!(queue.pop_due(now + ms(25)), Some("b"));
        assert_eq!(queue.pop_due(now + ms(25)), None);
        assert!(!queue.is_empty());
        assert_eq!(queue.drain().collect::<Vec<_>>(), ["c"]);
        assert!(queue.is_empty());
        assert_eq!(queue.next_due(), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=6 {
            let exp = base * (1 << (attempt - 1));
            for index in 0..50 {
                let delay = backoff(base, 7, index, attempt);
                assert!(
                    delay >= exp / 2 && delay < exp * 3 / 2,
                    "attempt {attempt}: {delay:?} outside [{:?}, {:?})",
                    exp / 2,
                    exp * 3 / 2
                );
            }
        }
        assert_eq!(backoff(base, 7, 1, 40), MAX_BACKOFF, "capped");
        assert_eq!(backoff(Duration::ZERO, 7, 1, 3), Duration::ZERO);
    }

    #[test]
    fn backoff_is_repeatable_and_differs_between_tasks() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1, 5, 2), backoff(base, 1, 5, 2));
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|index| backoff(base, 1, index, 2)).collect();
        assert!(delays.len() > 10, "tasks retry in lockstep: {delays:?}");
    }
}
