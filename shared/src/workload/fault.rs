//! Injected faults, for testing what the pool does when a task misbehaves: `noop` tasks can
//! be told to panic, abort, exit, be killed by a signal, or hang.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// `panic!` in the task: caught, reported `panicked`, the runner keeps serving.
    Panic,
    /// `std::process::abort()`: the process dies of SIGABRT.
    Abort,
    /// `std::process::exit(3)`.
    Exit,
    /// The process sends itself SIGKILL.
    Kill,
    /// The task never finishes (sleeps for a day).
    Hang,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic",
            FaultKind::Abort => "abort",
            FaultKind::Exit => "exit",
            FaultKind::Kill => "kill",
            FaultKind::Hang => "hang",
        }
    }

    /// Whether the fault ends the whole process running the task: on the thread or
    /// sequential backend that process is the coordinator.
    pub fn ends_process(self) -> bool {
        matches!(self, FaultKind::Abort | FaultKind::Exit | FaultKind::Kill)
    }
}

/// A fault and the attempts it strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// Strikes attempts `1..=attempts`; 0 means every attempt.
    pub attempts: u32,
}

impl Fault {
    /// Misbehaves if this attempt is struck; returns if not (or after a caught panic).
    pub fn strike(&self, attempt: u32) {
        if self.attempts != 0 && attempt > self.attempts {
            return;
        }
        match self.kind {
            FaultKind::Panic => panic!("injected panic (attempt {attempt})"),
            FaultKind::Abort => std::process::abort(),
            FaultKind::Exit => std::process::exit(3),
            FaultKind::Kill => {
                // SAFETY: raise only delivers a signal to this process.
                unsafe {
                    libc::raise(libc::SIGKILL);
                }
            }
            FaultKind::Hang => std::thread::sleep(Duration::from_secs(86_400)),
        }
    }
}

/// A fault aimed at one task: `KIND@INDEX` (every attempt) or `KIND@INDEX/N` (the first N
/// attempts), e.g. `abort@3`, `hang@0/1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    pub index: u64,
    pub fault: Fault,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "`{text}` is not a fault: use KIND@INDEX or KIND@INDEX/ATTEMPTS, with KIND one \
                 of panic, abort, exit, kill, hang (e.g. abort@3, hang@0/1)"
            )
        };
        let (kind, rest) = text.split_once('@').ok_or_else(usage)?;
        let kind = match kind {
            "panic" => FaultKind::Panic,
            "abort" => FaultKind::Abort,
            "exit" => FaultKind::Exit,
            "kill" => FaultKind::Kill,
            "hang" => FaultKind::Hang,
            _ => return Err(usage()),
        };
        let (index, attempts) = match rest.split_once('/') {
            Some((index, attempts)) => (index, attempts.parse().map_err(|_| usage())?),
            None => (rest, 0),
        };
        Ok(FaultSpec {
            index: index.parse().map_err(|_| usage())?,
            fault: Fault { kind, attempts },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let spec: FaultSpec = "abort@3".parse().unwrap();
        assert_eq!(spec.index, 3);
        assert_eq!(spec.fault.kind, FaultKind::Abort);
        assert_eq!(spec.fault.attempts, 0);
        let spec: FaultSpec = "hang@0/1".parse().unwrap();
        assert_eq!((spec.index, spec.fault.attempts), (0, 1));
        for bad in ["abort", "boom@1", "panic@x", "panic@1/x", "@1"] {
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn strikes_only_the_chosen_attempts() {
        let fault = Fault {
            kind: FaultKind::Panic,
            attempts: 1,
        };
        assert!(std::panic::catch_unwind(|| fault.strike(1)).is_err());
        fault.strike(2); // returns: the second attempt is spared
    }
}
