//! The zygote: a worker process that a pool starts once and that forks ready workers on
//! request, as Python's forkserver does. A fork skips what an exec costs every worker
//! (loading and linking the binary, the runtime's start-up, the page faults of a fresh
//! address space), which on a small machine is most of a pool's start-up and of a
//! replacement's.
//!
//! The zygote is single-threaded, so forking it is safe. It forks with `CLONE_PARENT`:
//! each worker is the coordinator's own child, which reaps it, reads how it ended, and is
//! the parent it dies with (`PR_SET_PDEATHSIG`), exactly as for a worker it started itself.

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

use super::{die_with_parent, env, quiet_panics, Worker};
use crate::protocol::Bootstrap;

/// The name the zygote gives itself (`/proc/PID/comm`, `ps`): it is no worker. The
/// workers it forks take back the program's own name.
pub const PROCESS_NAME: &str = "workpool-zygote";

/// What the zygote sends its coordinator once it is up.
#[derive(Serialize, Deserialize)]
pub(crate) struct ZygoteBootstrap {
    /// Where the coordinator asks for workers.
    pub requests: IpcSender<ForkRequest>,
    /// Where it learns the pid of each, in the order asked.
    pub forked: IpcReceiver<Forked>,
}

/// Asks the zygote for one worker.
#[derive(Serialize, Deserialize)]
pub(crate) struct ForkRequest {
    /// The worker's slot.
    pub id: u32,
    /// Where the new worker sends its [`Bootstrap`], as an exec'd one would to the
    /// coordinator's one-shot server. Only this worker holds it, so the coordinator's end
    /// disconnects the moment the worker dies.
    pub bootstrap: IpcSender<Bootstrap>,
}

/// The new worker's pid, or why it could not be forked.
pub(crate) type Forked = Result<u32, String>;

/// Serves as the zygote of the coordinator whose one-shot server is `server`, then exits:
/// 0 when the coordinator hangs up, 1 if it cannot be reached. The workers it forks return
/// from [`Worker::serve`] and exit here too.
pub(super) fn serve(worker: &Worker, server: String, parent: Option<u32>) -> ! {
    quiet_panics();
    die_with_parent(parent);
    // Single-threaded still: nothing reads the environment meanwhile. A task that starts
    // this program again must not make it a zygote.
    std::env::remove_var(env::ZYGOTE);
    let fork_dies: Option<u64> = std::env::var(env::TEST_FORK_DIES)
        .ok()
        .and_then(|v| v.parse().ok());
    let own_name = process_name();
    set_process_name(PROCESS_NAME);
    let (forked, incoming) = match join(&server) {
        Ok(channels) => channels,
        Err(err) => {
            crate::diag!("worker zygote: {err}");
            std::process::exit(1);
        }
    };
    let mut count = 0u64;
    while let Ok(ForkRequest { id, bootstrap }) = incoming.recv() {
        count += 1;
        match fork_to_parent() {
            Ok(0) => {
                drop(incoming);
                drop(forked);
                set_process_name(&own_name);
                if fork_dies == Some(count) {
                    // SAFETY: a signal to this very process.
                    unsafe {
                        libc::raise(libc::SIGKILL);
                    }
                }
                die_with_parent(parent);
                let code = match worker.serve_over(bootstrap, id, false) {
                    Ok(()) => 0,
                    Err(err) => {
                        crate::diag!("worker {id}: {err}");
                        1
                    }
                };
                std::process::exit(code);
            }
            Ok(pid) => {
                drop(bootstrap);
                if forked.send(Ok(pid)).is_err() {
                    break;
                }
            }
            Err(err) => {
                drop(bootstrap);
                if forked.send(Err(format!("fork failed: {err}"))).is_err() {
                    break;
                }
            }
        }
    }
    std::process::exit(0);
}

/// Connects to the coordinator and hands it the zygote's channels; returns the zygote's
/// ends: where it answers, and where requests come in.
fn join(server: &str) -> Result<(IpcSender<Forked>, IpcReceiver<ForkRequest>), String> {
    let connect = IpcSender::<ZygoteBootstrap>::connect(server.to_string())
        .map_err(|err| format!("cannot connect to coordinator at {server}: {err}"))?;
    let (requests, incoming) =
        ipc::channel::<ForkRequest>().map_err(|err| format!("cannot create channel: {err}"))?;
    let (forked, answers) =
        ipc::channel::<Forked>().map_err(|err| format!("cannot create channel: {err}"))?;
    connect
        .send(ZygoteBootstrap {
            requests,
            forked: answers,
        })
        .map_err(|err| format!("handshake with coordinator failed: {err}"))?;
    Ok((forked, incoming))
}

/// Forks this process as a child of its parent (`CLONE_PARENT`); 0 in the child.
fn fork_to_parent() -> std::io::Result<u32> {
    #[cfg(target_os = "linux")]
    {
        let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
        // SAFETY: a fork (no new stack, no shared memory) of a process that has one
        // thread, so no lock can be held by a thread the child lacks. glibc's fork
        // handlers do not run, and need not: nothing in this process registered one, and
        // the child asks the kernel for its pid rather than reading a cached one.
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
        u32::try_from(pid).map_err(|_| std::io::Error::last_os_error())
    }
    #[cfg(not(target_os = "linux"))]
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// This thread's name as the kernel has it (the process's, in a single-threaded one).
fn process_name() -> Vec<u8> {
    #[cfg(target_os = "linux")]
    {
        let mut name = [0u8; 16];
        // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into the buffer.
        if unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) } == 0 {
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            return name[..len].to_vec();
        }
    }
    Vec::new()
}

fn set_process_name(name: impl AsRef<[u8]>) {
    #[cfg(target_os = "linux")]
    {
        let mut buf = [0u8; 16];
        let name = name.as_ref();
        let len = name.len().min(15);
        buf[..len].copy_from_slice(&name[..len]);
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, buf.as_ptr());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}
