//! Recovery of a lost runner (a crashed or killed worker, an abandoned thread): what it
//! leaves behind, how its loss is told, and starting its replacement.

use std::collections::VecDeque;
use std::time::Duration;

use flume::Sender;

use super::{Backend, Event, PoolError, Runner};
use crate::Task;

/// Starting a replacement runner is tried this often before its slot is given up...
pub(crate) const RESTART_TRIES: u32 = 5;
/// ...with this pause after the first failure, doubled after each further one.
pub(crate) const RESTART_PAUSE: Duration = Duration::from_millis(10);

/// Starts the runner of `slot`, trying again with growing pauses when it fails to start
/// (killed during its handshake, the machine out of processes for a moment). Each failure
/// is counted; an error that another try cannot mend is returned at once.
pub(crate) fn start_with_retries<T: Task>(
    backend: &mut dyn Backend<T>,
    slot: usize,
    generation: u64,
    events: &Sender<Event<T::Output>>,
    failed_starts: &mut u64,
) -> Result<Box<dyn Runner<T>>, PoolError> {
    let mut pause = RESTART_PAUSE;
    let mut tries = 0;
    loop {
        match backend.start(slot, generation, events) {
            Ok(runner) => return Ok(runner),
            Err(err) if err.is_permanent() => return Err(err),
            Err(err) => {
                *failed_starts += 1;
                tries += 1;
                if tries == RESTART_TRIES {
                    return Err(err);
                }
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
    }
}

/// What a lost runner leaves: the task it was running, and those it had not started.
#[derive(Debug, PartialEq)]
pub(crate) struct Leftovers<J> {
    /// The head of its oldest batch: a runner runs its batches in order. It ends with the
    /// loss's error (or is retried).
    pub running: Option<J>,
    /// The rest, in their original order: they go first in line again.
    pub queued: VecDeque<J>,
}

/// Splits a lost runner's batches, oldest first, into [`Leftovers`].
pub(crate) fn leftovers<J>(batches: impl IntoIterator<Item = VecDeque<J>>) -> Leftovers<J> {
    let mut queued: VecDeque<J> = batches.into_iter().flatten().collect();
    Leftovers {
        running: queued.pop_front(),
        queued,
    }
}

/// How a runner's loss is told in its running task's error: which worker, and how it
/// ended when that is known and says more than `reason` (not for a timeout, whose kill
/// is the pool's own doing).
pub(crate) fn loss_message(
    slot: usize,
    pid: u32,
    timed_out: bool,
    exit: Option<String>,
    reason: &str,
) -> String {
    match exit.filter(|_| !timed_out) {
        None => format!("worker {slot} (pid {pid}): {reason}"),
        Some(exit) => format!("worker {slot} (pid {pid}) {exit} ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Capabilities;
    use crate::protocol::Job;

    #[test]
    fn the_oldest_task_was_running_and_the_rest_go_back_in_order() {
        let batches = vec![VecDeque::from([3, 4]), VecDeque::from([7]), VecDeque::new()];
        assert_eq!(
            leftovers(batches),
            Leftovers {
                running: Some(3),
                queued: VecDeque::from([4, 7]),
            }
        );
        assert_eq!(
            leftovers(Vec::<VecDeque<u8>>::new()),
            Leftovers {
                running: None,
                queued: VecDeque::new(),
            }
        );
    }

    #[test]
    fn a_loss_names_the_worker_and_how_it_ended() {
        let crash = loss_message(
            2,
            99,
            false,
            Some("was killed by signal SIGKILL (9)".into()),
            "closed its channel",
        );
        assert_eq!(
            crash,
            "worker 2 (pid 99) was killed by signal SIGKILL (9) (closed its channel)"
        );
        let timeout = loss_message(0, 7, true, Some("exited".into()), "ran too long");
        assert_eq!(timeout, "worker 0 (pid 7): ran too long");
        assert_eq!(
            loss_message(1, 5, false, None, "gone"),
            "worker 1 (pid 5): gone"
        );
    }

    /// A backend whose first `failures` starts fail, transiently or not.
    struct FailingStarts {
        failures: u32,
        permanent: bool,
        tries: u32,
    }

    struct Idle;

    impl Runner<Unit> for Idle {
        fn pid(&self) -> u32 {
            1
        }
        fn send(&mut self, _: &[Job<()>]) -> Result<Option<u64>, String> {
            Ok(None)
        }
        fn kill(&mut self) -> Option<String> {
            None
        }
        fn shutdown(&mut self) {}
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Unit;

    impl Task for Unit {
        const NAME: &'static str = "unit";
        type Input = ();
        type Output = ();
        fn run(&self, _: &(), _: &crate::Attempt) -> Result<(), crate::TaskError> {
            Ok(())
        }
    }

    impl Backend<Unit> for FailingStarts {
        fn capabilities(&self) -> Capabilities {
            Capabilities::LOCAL
        }
        fn start(
            &mut self,
            slot: usize,
            _: u64,
            _: &Sender<Event<()>>,
        ) -> Result<Box<dyn Runner<Unit>>, PoolError> {
            self.tries += 1;
            if self.tries > self.failures {
                return Ok(Box::new(Idle));
            }
            let reason = "killed during its handshake".to_string();
            Err(if self.permanent {
                PoolError::Incompatible {
                    id: slot as u32,
                    reason,
                }
            } else {
                PoolError::Handshake {
                    id: slot as u32,
                    reason,
                }
            })
        }
    }

    fn start(failures: u32, permanent: bool) -> (bool, u32, u64) {
        let mut backend = FailingStarts {
            failures,
            permanent,
            tries: 0,
        };
        let (events, _) = flume::unbounded();
        let mut failed = 0;
        let started = start_with_retries(&mut backend, 0, 1, &events, &mut failed).is_ok();
        (started, backend.tries, failed)
    }

    #[test]
    fn a_replacement_that_fails_to_start_is_tried_again_a_few_times() {
        assert_eq!(start(0, false), (true, 1, 0));
        assert_eq!(
            start(2, false),
            (true, 3, 2),
            "two failures counted, then started"
        );
        let tries = RESTART_TRIES;
        assert_eq!(
            start(10, false),
            (false, tries, u64::from(tries)),
            "given up"
        );
    }

    #[test]
    fn a_permanent_failure_is_not_tried_again() {
        assert_eq!(start(1, true), (false, 1, 0));
    }
}
