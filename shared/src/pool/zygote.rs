//! The coordinator's side of the zygote (see [`crate::worker::zygote`]): a worker program
//! that forks the pool's workers, which then join the pool as a spawned worker would.
//!
//! One zygote is kept for the whole process, as Python's forkserver is: only a program's
//! first process pool pays for its exec, and later pools, and every replacement, fork
//! from it. It ends with the process (an `atexit` hook hangs it up and reaps it), or when
//! a pool needs one that its workers would inherit another environment from.

use std::ffi::OsString;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};

use super::process::{
    accept_with_deadline, worker_command, ChildGuard, Handshake, Pending, WorkerBinary,
    HANDSHAKE_DEADLINE,
};
use super::PoolError;
use crate::worker::env;
use crate::worker::zygote::{FirstWorker, ForkRequest, Forked, ZygoteBootstrap};

/// This process's zygote, once a pool started one.
static KEPT: Mutex<Option<Kept>> = Mutex::new(None);

struct Kept {
    made_for: Inherited,
    zygote: Zygote,
}

/// What a zygote's workers inherit from it rather than from the pool that asks for them:
/// a zygote started before any of it changed would start workers that differ from the
/// ones a spawn would start.
#[derive(PartialEq)]
struct Inherited {
    program: PathBuf,
    environment: Vec<(OsString, OsString)>,
    directory: Option<PathBuf>,
}

impl Inherited {
    fn now(bin: &WorkerBinary) -> Inherited {
        Inherited {
            program: bin.path.clone(),
            environment: std::env::vars_os().collect(),
            directory: std::env::current_dir().ok(),
        }
    }
}

fn kept() -> MutexGuard<'static, Option<Kept>> {
    // A pool that panicked while forking left nothing half-done that matters here.
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Forks the workers of slots `0..count` from this process's zygote, starting one first
/// if there is none for `bin` and this environment, and hands each to `each` in slot order
/// as soon as it is forked. Returns how many it handed over: up to where the zygote
/// failed, if it did; the caller spawns the rest itself.
pub(super) fn fork_workers(
    bin: &WorkerBinary,
    count: usize,
    mut each: impl FnMut(Result<Pending, PoolError>),
) -> usize {
    let made_for = Inherited::now(bin);
    let mut kept = kept();
    if let Some(ready) = kept.as_mut().filter(|k| k.made_for == made_for) {
        let mut handed = 0;
        match ready.zygote.fork_all(0..count, |pending| {
            handed += 1;
            each(Ok(pending))
        }) {
            Ok(()) => return count,
            // Gone (killed, say): start another for the rest.
            Err(_) if handed == 0 => *kept = None,
            Err(_) => {
                *kept = None;
                return handed;
            }
        }
    }
    *kept = None; // One made for another environment: hang it up and reap it.
    let mut handed = 0;
    let Ok(mut zygote) = Zygote::start(bin, count, |pending| {
        handed += 1;
        each(pending)
    }) else {
        return handed;
    };
    // A zygote that fails here no longer serves: it is not kept.
    if zygote
        .fork_all(handed..count, |pending| {
            handed += 1;
            each(Ok(pending))
        })
        .is_ok()
    {
        *kept = Some(Kept { made_for, zygote });
        reap_at_exit();
    }
    handed
}

/// Forks the worker of `slot` from this process's zygote, if it has one that serves `bin`
/// in this environment.
pub(super) fn fork_worker(bin: &WorkerBinary, slot: usize) -> Option<Pending> {
    let made_for = Inherited::now(bin);
    let mut kept = kept();
    let ready = kept.as_mut().filter(|k| k.made_for == made_for)?;
    let mut forked = None;
    if ready
        .zygote
        .fork_all(slot..slot + 1, |pending| forked = Some(pending))
        .is_err()
    {
        *kept = None;
    }
    forked
}

/// Registers, once, the `atexit` hook that ends the zygote with this process, so that
/// an exit leaves no process behind, not even a zombie for init to reap.
fn reap_at_exit() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        extern "C" fn end_zygote() {
            // Never wait on a lock at exit: a pool that is forking keeps its zygote.
            if let Ok(mut kept) = KEPT.try_lock() {
                kept.take();
            }
        }
        // SAFETY: registers a function without arguments that only locks and drops.
        unsafe {
            libc::atexit(end_zygote);
        }
    });
}

/// Starts `command` from a thread that lives as long as this process. A worker dies with
/// the thread that started it (`PR_SET_PDEATHSIG` follows the parent thread, not the
/// parent process), so one started by whichever thread built a pool would die when that
/// thread ends, though the pool, or the zygote, lives on.
pub(super) fn spawn(command: Command) -> io::Result<Child> {
    type Request = (Command, crossbeam_channel::Sender<io::Result<Child>>);
    static STARTER: OnceLock<Option<crossbeam_channel::Sender<Request>>> = OnceLock::new();
    let starter = STARTER.get_or_init(|| {
        let (requests, incoming) = crossbeam_channel::unbounded::<Request>();
        std::thread::Builder::new()
            .name(format!("{}starter", super::THREAD_NAME_PREFIX))
            .spawn(move || {
                for (mut command, answer) in incoming {
                    let _ = answer.send(command.spawn());
                }
            })
            .ok()
            .map(|_| requests)
    });
    let (answer, answered) = crossbeam_channel::bounded(1);
    match starter {
        Some(starter) => match starter.send((command, answer)) {
            Ok(()) => answered
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("the starter thread is gone"))),
            Err(crossbeam_channel::SendError((mut command, _))) => command.spawn(),
        },
        // No thread to spare: started from this one, it dies with this one.
        None => {
            let mut command = command;
            command.spawn()
        }
    }
}

/// A running zygote. Dropping it hangs up, which ends it; its guard reaps it.
pub(super) struct Zygote {
    requests: IpcSender<ForkRequest>,
    forked: IpcReceiver<Forked>,
    _child: ChildGuard,
}

impl Zygote {
    /// Starts the worker program as a zygote that forks the workers of slots `0..first`
    /// at once, and hands each to `each` as soon as it is forked: the first ones join
    /// while the zygote forks the next. The error says why it did not start or stopped;
    /// the caller then spawns the workers it did not get.
    fn start(
        bin: &WorkerBinary,
        first: usize,
        mut each: impl FnMut(Result<Pending, PoolError>),
    ) -> Result<Zygote, String> {
        let (server, name) = IpcOneShotServer::<ZygoteBootstrap>::new()
            .map_err(|err| format!("cannot open ipc server: {err}"))?;
        let mut command = worker_command(bin);
        command
            .env(env::ZYGOTE, &name)
            .env(env::ZYGOTE_WORKERS, first.to_string());
        let child =
            spawn(command).map_err(|err| format!("cannot run {}: {err}", bin.path.display()))?;
        let mut child = ChildGuard::new(child.id());
        let bootstrap = accept_with_deadline(server, &name, &mut child, HANDSHAKE_DEADLINE)?;
        for id in 0..first as u32 {
            let FirstWorker { forked, bootstrap } = bootstrap
                .first
                .try_recv_timeout(HANDSHAKE_DEADLINE)
                .map_err(|err| format!("zygote gone: {err}"))?;
            each(match forked {
                Ok(pid) => Ok(Pending {
                    id,
                    handshake: Handshake::Channel(bootstrap),
                    child: ChildGuard::new(pid),
                }),
                Err(reason) => Err(PoolError::Spawn { id, reason }),
            });
        }
        Ok(Zygote {
            requests: bootstrap.requests,
            forked: bootstrap.forked,
            _child: child,
        })
    }

    /// Forks the workers of `slots` and hands each to `each`: every request goes out
    /// before the first answer is read, so the workers start up, and join, while the
    /// zygote forks the next ones. An error means the zygote no longer serves.
    fn fork_all(
        &mut self,
        slots: Range<usize>,
        mut each: impl FnMut(Pending),
    ) -> Result<(), String> {
        let mut handshakes = Vec::with_capacity(slots.len());
        for slot in slots {
            let (bootstrap, receiver) = ipc::channel().map_err(|err| err.to_string())?;
            let id = slot as u32;
            self.requests
                .send(ForkRequest { id, bootstrap })
                .map_err(|err| format!("zygote gone: {err}"))?;
            handshakes.push((id, receiver));
        }
        for (id, receiver) in handshakes {
            let pid = self
                .forked
                .try_recv_timeout(HANDSHAKE_DEADLINE)
                .map_err(|err| format!("zygote gone: {err}"))??;
            each(Pending {
                id,
                handshake: Handshake::Channel(receiver),
                child: ChildGuard::new(pid),
            });
        }
        Ok(())
    }
}
