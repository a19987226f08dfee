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
    /// Where the coordinator asks for more workers.
    pub requests: IpcSender<ForkRequest>,
    /// Where it learns the pid of each, in the order asked.
    pub forked: IpcReceiver<Forked>,
    /// The workers of slots `0..` asked for in the zygote's environment
    /// ([`env::ZYGOTE_WORKERS`]), each sent as soon as it is forked: the pool's first
    /// workers wait for no round trip with the coordinator, and the coordinator joins
    /// each while the zygote forks the next.
    pub first: IpcReceiver<FirstWorker>,
}

/// A worker forked without a request, as the zygote starts.
#[derive(Serialize, Deserialize)]
pub(crate) struct FirstWorker {
    /// Its pid, or why it could not be forked.
    pub forked: Forked,
    /// Where it sends its [`Bootstrap`].
    pub bootstrap: IpcReceiver<Bootstrap>,
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
/// 0 when the coordinator hangs up, 1 if it cannot be reached. The workers it forks serve
/// and exit here too.
pub(super) fn serve(worker: &Worker, server: String, parent: Option<u32>) -> ! {
    // First, so that `ps` and the tests tell it from its workers as early as can be.
    let own_name = process_name();
    set_process_name(PROCESS_NAME);
    quiet_panics();
    die_with_parent(parent);
    if let Some(threads) = threads().filter(|&n| n > 1) {
        // A fork takes only this thread along: a lock another one holds would stay held
        // in every worker for good. Its coordinator then starts each worker itself.
        crate::diag!(
            "warning: this program runs {threads} threads when it calls \
             `Worker::serve_if_worker`, so it cannot fork the pool's workers; they are \
             started one by one instead (call it first thing in `main`)"
        );
        std::process::exit(1);
    }
    let first = std::env::var(env::ZYGOTE_WORKERS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0usize);
    // Single-threaded still: nothing reads the environment meanwhile. A task that starts
    // this program again must not make it a zygote.
    std::env::remove_var(env::ZYGOTE);
    std::env::remove_var(env::ZYGOTE_WORKERS);
    let mut zygote = Zygote {
        worker,
        parent,
        fork_dies: std::env::var(env::TEST_FORK_DIES)
            .ok()
            .and_then(|v| v.parse().ok()),
        own_name,
        forks: 0,
        held: Held::default(),
    };
    if let Err(err) = zygote.join(&server, first) {
        crate::diag!("worker zygote: {err}");
        std::process::exit(1);
    }
    while let Some(Ok(ForkRequest { id, bootstrap })) =
        zygote.held.incoming.as_ref().map(IpcReceiver::recv)
    {
        let forked = zygote.fork(id, bootstrap);
        let answered = zygote.held.forked.as_ref().map(|f| f.send(forked));
        if !matches!(answered, Some(Ok(()))) {
            break;
        }
    }
    std::process::exit(0);
}

/// The zygote's state.
struct Zygote<'a> {
    worker: &'a Worker,
    parent: Option<u32>,
    /// [`env::TEST_FORK_DIES`].
    fork_dies: Option<u64>,
    /// The program's name, which the workers take back.
    own_name: Vec<u8>,
    /// Workers forked so far.
    forks: u64,
    held: Held,
}

/// The zygote's channel ends: a worker closes them all as it starts.
#[derive(Default)]
struct Held {
    incoming: Option<IpcReceiver<ForkRequest>>,
    forked: Option<IpcSender<Forked>>,
    first: Option<IpcSender<FirstWorker>>,
    /// The coordinator's end of the next worker's bootstrap channel, until it is sent.
    next_first: Option<IpcReceiver<Bootstrap>>,
}

impl Zygote<'_> {
    /// Connects to the coordinator and hands it the zygote's channels, then forks the
    /// first `first` workers, sending each one's channel as soon as it is forked.
    fn join(&mut self, server: &str, first: usize) -> Result<(), String> {
        let channel_err = |err: std::io::Error| format!("cannot create channel: {err}");
        let (requests, incoming) = ipc::channel().map_err(channel_err)?;
        let (forked, answers) = ipc::channel().map_err(channel_err)?;
        let (first_sender, first_receiver) = ipc::channel().map_err(channel_err)?;
        self.held.incoming = Some(incoming);
        self.held.forked = Some(forked);
        self.held.first = Some(first_sender);
        IpcSender::<ZygoteBootstrap>::connect(server.to_string())
            .map_err(|err| format!("cannot connect to coordinator at {server}: {err}"))?
            .send(ZygoteBootstrap {
                requests,
                forked: answers,
                first: first_receiver,
            })
            .map_err(|err| format!("handshake with coordinator failed: {err}"))?;
        for id in 0..first {
            let (bootstrap, receiver) = ipc::channel().map_err(channel_err)?;
            // Held during the fork, so that the worker closes its copy too.
            self.held.next_first = Some(receiver);
            let forked = self.fork(id as u32, bootstrap);
            let (Some(bootstrap), Some(sender)) = (self.held.next_first.take(), &self.held.first)
            else {
                break;
            };
            sender
                .send(FirstWorker { forked, bootstrap })
                .map_err(|err| format!("coordinator gone: {err}"))?;
        }
        self.held.first = None; // Tells the coordinator there are no more.
        Ok(())
    }

    /// Forks the worker of slot `id`, which serves over `bootstrap` and exits; returns
    /// its pid here.
    fn fork(&mut self, id: u32, bootstrap: IpcSender<Bootstrap>) -> Forked {
        self.forks += 1;
        match fork_to_parent() {
            Ok(0) => self.become_worker(id, bootstrap),
            Ok(pid) => Ok(pid),
            Err(err) => Err(format!("fork failed: {err}")),
        }
    }

    /// In a forked child: closes the zygote's channels, then serves as worker `id`.
    fn become_worker(&mut self, id: u32, bootstrap: IpcSender<Bootstrap>) -> ! {
        self.held = Held::default();
        set_process_name(&self.own_name);
        if self.fork_dies == Some(self.forks) {
            // SAFETY: a signal to this very process.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
        die_with_parent(self.parent);
        let code = match self.worker.serve_over(bootstrap, id, false) {
            Ok(()) => 0,
            Err(err) => {
                crate::diag!("worker {id}: {err}");
                1
            }
        };
        std::process::exit(code);
    }
}

/// How many threads this process runs, where the system says.
fn threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Threads:"))?;
    line.trim().parse().ok()
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
