//! Injected faults, for testing what the pool does when a task misbehaves: `noop` tasks can
//! be told to panic, abort, exit, be killed by a signal, hang, or leak memory.

use std::collections::HashMap;
use std::fmt;
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
    /// The task allocates this many bytes, touches every page, and never frees them (a
    /// leak that worker recycling by memory is for).
    Leak {
        /// Bytes kept, at most [`MAX_LEAK_BYTES`].
        bytes: u64,
    },
}

/// The most one task may leak: a typo (`leak:4T`) should not take the machine's memory.
pub const MAX_LEAK_BYTES: u64 = 1 << 30;

impl FaultKind {
    /// The kind's name, as `--fault` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic",
            FaultKind::Abort => "abort",
            FaultKind::Exit => "exit",
            FaultKind::Kill => "kill",
            FaultKind::Hang => "hang",
            FaultKind::Leak { .. } => "leak",
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
    /// What goes wrong.
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
            FaultKind::Leak { bytes } => {
                leak(bytes);
            }
        }
    }
}

/// Allocates `bytes`, writes to every page so that they are resident, and keeps them.
fn leak(bytes: u64) -> &'static [u8] {
    let len = usize::try_from(bytes.min(MAX_LEAK_BYTES)).unwrap_or(0);
    let kept: &'static mut [u8] = Vec::leak(vec![0u8; len]);
    for page in kept.chunks_mut(4096) {
        page[0] = 1;
    }
    // The region need not start on a page: its last page may hold no chunk's start.
    if let Some(last) = kept.last_mut() {
        *last = 1;
    }
    // The writes must happen although nothing reads them.
    std::hint::black_box(kept)
}

/// The most attempts `KIND@INDEX/N` can name; as many as the coordinator's `--retries`
/// allows, and more than that would mean "every attempt", which `KIND@INDEX` says.
pub const MAX_STRUCK_ATTEMPTS: u32 = 1000;

/// A fault aimed at one task or every task: `KIND@INDEX` (every attempt) or
/// `KIND@INDEX/N` (the first N attempts, N from 1 to [`MAX_STRUCK_ATTEMPTS`]), with INDEX a
/// task's index or `*` for every task, e.g. `abort@3`, `hang@0/1`, `leak:4MiB@*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSpec {
    /// The task it strikes; `None` for every task (`*`).
    pub index: Option<u64>,
    /// What it does.
    pub fault: Fault,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "`{text}` is not a fault: use KIND@INDEX or KIND@INDEX/ATTEMPTS, with KIND one \
                 of panic, abort, exit, kill, hang, leak:SIZE and INDEX a task or * (e.g. \
                 abort@3, hang@0/1, leak:4MiB@*)"
            )
        };
        let (kind, rest) = text.split_once('@').ok_or_else(usage)?;
        let kind = match kind.split_once(':') {
            Some(("leak", size)) => FaultKind::Leak {
                bytes: crate::size::parse_size(size, MAX_LEAK_BYTES)
                    .map_err(|err| format!("`{text}`: {err}"))?,
            },
            Some(_) => return Err(usage()),
            None => match kind {
                "panic" => FaultKind::Panic,
                "abort" => FaultKind::Abort,
                "exit" => FaultKind::Exit,
                "kill" => FaultKind::Kill,
                "hang" => FaultKind::Hang,
                _ => return Err(usage()),
            },
        };
        let (index, attempts) = match rest.split_once('/') {
            Some((index, attempts)) => match attempts.parse::<u32>() {
                Ok(n @ 1..=MAX_STRUCK_ATTEMPTS) => (index, n),
                // `/0` would read as "no attempt" but `attempts: 0` means every attempt.
                _ => {
                    return Err(format!(
                        "`{text}`: ATTEMPTS is a number from 1 to {MAX_STRUCK_ATTEMPTS} \
                         (leave out /ATTEMPTS to strike every attempt)"
                    ))
                }
            },
            None => (rest, 0),
        };
        let index = match index {
            "*" => None,
            index => Some(index.parse().map_err(|_| usage())?),
        };
        Ok(FaultSpec {
            index,
            fault: Fault { kind, attempts },
        })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fault.kind.as_str())?;
        if let FaultKind::Leak { bytes } = self.fault.kind {
            write!(f, ":{bytes}")?;
        }
        match self.index {
            Some(index) => write!(f, "@{index}")?,
            None => write!(f, "@*")?,
        }
        if self.fault.attempts != 0 {
            write!(f, "/{}", self.fault.attempts)?;
        }
        Ok(())
    }
}

/// Why a run's `--fault` list cannot be used as given.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // The fields are what the messages show.
pub enum FaultPlanError {
    /// A fault aimed past the last task.
    #[error(
        "--fault {spec}: there is no task {index} in --count {count} (tasks are numbered from 0)"
    )]
    NoSuchTask {
        spec: FaultSpec,
        index: u64,
        count: u64,
    },
    /// Two faults aimed at one task, or two at every task.
    #[error("--fault {first} and {second} aim at the same task: give each task one fault")]
    SameTask { first: FaultSpec, second: FaultSpec },
}

/// The faults of a run: by task index, and one for every other task (`*`).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    by_index: HashMap<u64, Fault>,
    every: Option<Fault>,
}

impl FaultPlan {
    /// The fault of task `index`: its own, else the one for every task.
    pub fn for_task(&self, index: u64) -> Option<Fault> {
        self.by_index.get(&index).copied().or(self.every)
    }
}

/// The faults of a run of `count` tasks. A fault aimed at one task wins over the one for
/// every task (`*`). Refuses a fault aimed past the last task (it would silently do
/// nothing) and two faults aimed at one task, or two at every task (only one could strike).
pub fn by_index(specs: &[FaultSpec], count: u64) -> Result<FaultPlan, FaultPlanError> {
    let mut faults: HashMap<u64, FaultSpec> = HashMap::with_capacity(specs.len());
    let mut every: Option<FaultSpec> = None;
    for spec in specs {
        let earlier = match spec.index {
            Some(index) if index >= count => {
                return Err(FaultPlanError::NoSuchTask {
                    spec: *spec,
                    index,
                    count,
                })
            }
            Some(index) => faults.insert(index, *spec),
            None => every.replace(*spec),
        };
        if let Some(first) = earlier {
            return Err(FaultPlanError::SameTask {
                first,
                second: *spec,
            });
        }
    }
    Ok(FaultPlan {
        by_index: faults
            .into_iter()
            .map(|(i, spec)| (i, spec.fault))
            .collect(),
        every: every.map(|spec| spec.fault),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let spec: FaultSpec = "abort@3".parse().unwrap();
        assert_eq!(spec.index, Some(3));
        assert_eq!(spec.fault.kind, FaultKind::Abort);
        assert_eq!(spec.fault.attempts, 0);
        let spec: FaultSpec = "hang@0/1".parse().unwrap();
        assert_eq!((spec.index, spec.fault.attempts), (Some(0), 1));
        let spec: FaultSpec = "leak:4MiB@*/2".parse().unwrap();
        assert_eq!(spec.index, None);
        assert_eq!(spec.fault.kind, FaultKind::Leak { bytes: 4 << 20 });
        assert_eq!(spec.fault.attempts, 2);
        for bad in [
            "abort",
            "boom@1",
            "panic@x",
            "panic@1/x",
            "@1",
            "kill@1/0",
            "kill@1/1001",
            "leak@1",
            "leak:@1",
            "leak:2G@1",
            "panic:1@1",
            "hang@**",
        ] {
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
        }
        for text in [
            "abort@3",
            "hang@0/1",
            "kill@7/1000",
            "leak:4096@*",
            "panic@*/2",
        ] {
            let spec: FaultSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn faults_past_the_last_task_or_on_one_task_twice_are_refused() {
        let specs = |texts: &[&str]| -> Vec<FaultSpec> {
            texts.iter().map(|t| t.parse().unwrap()).collect()
        };
        let faults = by_index(&specs(&["panic@0", "hang@2/1", "leak:1k@*"]), 3).unwrap();
        assert_eq!(faults.for_task(0).map(|f| f.kind), Some(FaultKind::Panic));
        assert_eq!(faults.for_task(2).map(|f| f.attempts), Some(1));
        let leak = Some(FaultKind::Leak { bytes: 1024 });
        assert_eq!(
            faults.for_task(1).map(|f| f.kind),
            leak,
            "the one for every task"
        );
        assert!(by_index(&[], 3).unwrap().for_task(0).is_none());
        assert!(matches!(
            by_index(&specs(&["leak:1k@*", "panic@*"]), 3),
            Err(FaultPlanError::SameTask { .. })
        ));
        assert!(matches!(
            by_index(&specs(&["panic@3"]), 3),
            Err(FaultPlanError::NoSuchTask { count: 3, .. })
        ));
        let err = by_index(&specs(&["hang@1", "panic@1"]), 3).unwrap_err();
        assert!(matches!(err, FaultPlanError::SameTask { .. }));
        let message = err.to_string();
        assert!(
            message.contains("hang@1") && message.contains("panic@1"),
            "{message}"
        );
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

    #[test]
    fn a_leak_stays_resident() {
        // Asked of the pages themselves (the process's RSS moves with every other test
        // running beside this one).
        let kept = leak(8 << 20);
        assert_eq!(kept.len(), 8 << 20);
        // SAFETY: sysconf reads a constant of the system.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let start = kept.as_ptr() as usize & !(page - 1);
        let len = kept.as_ptr() as usize + kept.len() - start;
        let mut resident = vec![0u8; len.div_ceil(page)];
        // SAFETY: mincore reads the page table for a range of our own mapped memory and
        // writes one byte per page into `resident`, which has room for every page.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, len, resident.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        assert!(
            resident.iter().all(|b| b & 1 == 1),
            "a page of the leak is not resident"
        );
    }
}
