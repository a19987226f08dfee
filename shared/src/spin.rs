//! Spinning for a message, and knowing when not to.
//!
//! A thread put to sleep takes tens of microseconds to wake on a virtual machine, more
//! than a whole round trip of a tiny task, so a receiver that expects its next message
//! soon keeps its core for a moment instead. That only pays while a core is idle: on a
//! busy machine the spinning core is one the sender needed, and every round trip then
//! waits for the scheduler's time slice (milliseconds). [`Spinner`] therefore spins only
//! while recent spins have caught their message and the machine has a spare core.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

/// How long a receiver spins for its next message before sleeping, when it does: longer
/// than a tiny task's round trip, short enough that an idle pool does not burn a core.
pub const SPIN: Duration = Duration::from_micros(50);

/// Overrides the policy, to measure what it gains: `off` never spins, `always` spins every
/// time (as before the policy existed); unset or anything else, the policy decides. Read
/// once per process, and passed on to worker processes.
pub const SPIN_ENV: &str = "WORKPOOL_SPIN";

/// After this many spins in a row that ended without their message, spinning stops
/// (it is only burning a core the sender may need) ...
const MISSES_TO_BACK_OFF: u32 = 3;
/// ... for this many receives, after which one spin tries again.
const RECEIVES_BACKED_OFF: u32 = 64;
/// How often the machine's run queue is looked at: reading it costs a few microseconds,
/// and load changes over milliseconds.
const LOAD_CHECK_EVERY: Duration = Duration::from_millis(20);

/// A receiver's spinning policy: spins for up to `limit` while it pays, sleeps at once
/// when it does not. One per receiving thread (it keeps that thread's recent history).
#[derive(Debug)]
pub struct Spinner {
    limit: Duration,
    /// [`SPIN_ENV`] is `always`: spin whatever the history and the load.
    always: bool,
    /// Spins in a row that ended without their message.
    misses: u32,
    /// Receives left to make without spinning, after spins kept missing.
    backed_off: u32,
    /// Whether the machine had no idle core when last looked at, and when that was.
    busy: bool,
    checked: Option<Instant>,
}

impl Spinner {
    /// A spinner that spins for up to `limit` while it pays.
    pub fn new(limit: Duration) -> Spinner {
        let mode = Mode::from_env();
        Spinner {
            limit: if mode == Mode::Off {
                Duration::ZERO
            } else {
                limit
            },
            always: mode == Mode::Always,
            misses: 0,
            backed_off: 0,
            busy: false,
            checked: None,
        }
    }

    /// Receives from `channel` within `timeout`, spinning first when that is likely to
    /// catch the message sooner than a sleep would.
    pub fn recv<T>(
        &mut self,
        channel: &Receiver<T>,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        // A message already waiting needs no policy.
        match channel.try_recv() {
            Ok(message) => return Ok(message),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {}
        }
        if self.limit.is_zero() || !self.worth_spinning() {
            return channel.recv_timeout(timeout);
        }
        let start = Instant::now();
        let limit = self.limit.min(timeout);
        loop {
            match channel.try_recv() {
                Ok(message) => {
                    self.misses = 0;
                    return Ok(message);
                }
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            if start.elapsed() >= limit {
                self.missed();
                return channel.recv_timeout(timeout.saturating_sub(start.elapsed()));
            }
            std::hint::spin_loop();
        }
    }

    fn worth_spinning(&mut self) -> bool {
        if self.always {
            return true;
        }
        if self.backed_off > 0 {
            self.backed_off -= 1;
            return false;
        }
        let now = Instant::now();
        if self
            .checked
            .is_none_or(|at| now.duration_since(at) >= LOAD_CHECK_EVERY)
        {
            self.checked = Some(now);
            self.busy = machine_is_busy();
        }
        !self.busy
    }

    fn missed(&mut self) {
        self.misses += 1;
        if self.misses >= MISSES_TO_BACK_OFF {
            self.misses = 0;
            self.backed_off = RECEIVES_BACKED_OFF;
        }
    }
}

/// What [`SPIN_ENV`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Adaptive,
    Off,
    Always,
}

impl Mode {
    fn from_env() -> Mode {
        static MODE: OnceLock<Mode> = OnceLock::new();
        *MODE.get_or_init(|| match std::env::var(SPIN_ENV).as_deref() {
            Ok("off") => Mode::Off,
            Ok("always") => Mode::Always,
            _ => Mode::Adaptive,
        })
    }
}

/// Whether more threads are runnable right now than the machine has cores (this one
/// included), so that a spinning thread would take a core from another. Linux's
/// `/proc/loadavg` says so in its fourth field (`running/total`); elsewhere the answer
/// is "no", and the misses alone decide.
fn machine_is_busy() -> bool {
    let Ok(loadavg) = std::fs::read_to_string("/proc/loadavg") else {
        return false;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    more_runnable_than(&loadavg, cores)
}

/// Whether `/proc/loadavg` (`0.52 0.58 0.59 3/241 12345`) counts more runnable threads
/// than `cores`; an unreadable line counts as not busy.
fn more_runnable_than(loadavg: &str, cores: usize) -> bool {
    loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|field| field.split('/').next())
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|running| running > cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_message_is_taken_at_once() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send(7).unwrap();
        let mut spinner = Spinner::new(Duration::from_micros(50));
        assert_eq!(spinner.recv(&rx, Duration::from_secs(1)), Ok(7));
    }

    #[test]
    fn spins_that_keep_missing_stop_spinning_for_a_while() {
        let (_tx, rx) = crossbeam_channel::unbounded::<u8>();
        let mut spinner = Spinner::new(Duration::from_micros(50));
        // As if the machine had just been seen idle, so that the spins happen.
        spinner.checked = Some(Instant::now());
        for _ in 0..MISSES_TO_BACK_OFF {
            assert_eq!(
                spinner.recv(&rx, Duration::from_micros(100)),
                Err(RecvTimeoutError::Timeout)
            );
        }
        assert_eq!(spinner.backed_off, RECEIVES_BACKED_OFF);
        assert_eq!(
            spinner.recv(&rx, Duration::from_micros(100)),
            Err(RecvTimeoutError::Timeout)
        );
        assert_eq!(spinner.backed_off, RECEIVES_BACKED_OFF - 1);
    }

    #[test]
    fn the_run_queue_says_whether_a_core_is_idle() {
        assert!(!more_runnable_than("0.52 0.58 0.59 2/241 12345\n", 2));
        assert!(more_runnable_than("4.10 3.58 2.59 5/241 12345\n", 2));
        assert!(!more_runnable_than("5/241", 2));
        assert!(!more_runnable_than("", 2));
    }

    #[test]
    fn a_busy_machine_stops_spinning_without_a_miss() {
        let (_tx, rx) = crossbeam_channel::unbounded::<u8>();
        let mut spinner = Spinner::new(Duration::from_micros(50));
        spinner.checked = Some(Instant::now());
        spinner.busy = true;
        assert_eq!(
            spinner.recv(&rx, Duration::from_micros(100)),
            Err(RecvTimeoutError::Timeout)
        );
        assert_eq!(spinner.misses, 0, "it slept without spinning");
    }

    #[test]
    fn a_hung_up_sender_ends_the_wait() {
        let (tx, rx) = crossbeam_channel::unbounded::<u8>();
        drop(tx);
        let mut spinner = Spinner::new(Duration::from_micros(50));
        assert_eq!(
            spinner.recv(&rx, Duration::from_secs(60)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
