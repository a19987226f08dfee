//! The process backend: each slot is a worker OS process (this program, or a worker
//! binary), joined over ipc-channel, that receives bincode task frames and sends bincode
//! outcome frames back.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::marker::PhantomData;

use flume::Sender;
use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::zygote::Zygote;
use super::{Backend, Capabilities, Event, EventSink, Events, PoolError, Runner, Started};
use crate::clock::monotonic_ns;
use crate::codec::{self, Envelope, Inbox, Outbox};
use crate::outcome::Arrival;
use crate::protocol::{
    Bootstrap, Hello, Job, RunSettings, SetupRef, ToCoordinator, ToWorkerRef, PROTOCOL_VERSION,
};
use crate::task::Signature;
use crate::worker::env;
use crate::Task;

/// The environment variable that names the worker binary.
pub const WORKER_ENV: &str = "WORKPOOL_WORKER";

/// How long a new worker has to connect and say hello.
pub(super) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// How long a worker sent SIGTERM has before SIGKILL. A worker holds nothing to save, so
/// this is short: it only spares the kernel a forced kill in the common case.
const KILL_GRACE: Duration = Duration::from_millis(50);

/// How long a worker asked to shut down has before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The executable the process backend starts as its workers.
#[derive(Debug, Clone)]
pub struct WorkerBinary {
    /// Where it is.
    pub path: PathBuf,
    /// How it was found, for messages (`coordinator info` shows it).
    pub source: &'static str,
}

impl WorkerBinary {
    /// This very program: it serves as its own worker when it calls
    /// [`Worker::serve_if_worker`](crate::Worker::serve_if_worker) first thing in `main`.
    pub fn this_program() -> Result<WorkerBinary, PoolError> {
        let path = std::env::current_exe().map_err(|err| {
            PoolError::WorkerBinary(format!("cannot find this executable's path: {err}"))
        })?;
        Ok(WorkerBinary {
            path,
            source: "this program",
        })
    }

    /// Finds the worker: `--worker-bin`, else `$WORKPOOL_WORKER`, else next to this
    /// executable. The error says where it looked and how to build it.
    pub fn locate(explicit: Option<&Path>) -> Result<WorkerBinary, PoolError> {
        let (path, source) = if let Some(path) = explicit {
            (path.to_path_buf(), "--worker-bin")
        } else if let Some(path) = std::env::var_os(WORKER_ENV).filter(|p| !p.is_empty()) {
            (PathBuf::from(path), WORKER_ENV)
        } else {
            let exe = WorkerBinary::this_program()?.path;
            let dir = exe.parent().unwrap_or(Path::new("."));
            (dir.join("worker"), "next to coordinator")
        };
        check_executable(&path, source)?;
        Ok(WorkerBinary { path, source })
    }
}

fn check_executable(path: &Path, source: &str) -> Result<(), PoolError> {
    let hint = "build it with `cargo build --release` (which builds both `coordinator` and \
                `worker`), or point --worker-bin or WORKPOOL_WORKER at it";
    let meta = std::fs::metadata(path).map_err(|err| {
        PoolError::WorkerBinary(format!(
            "worker binary not found at {} ({source}): {err}; {hint}",
            path.display()
        ))
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(PoolError::WorkerBinary(format!(
            "worker binary at {} ({source}) is not an executable file; {hint}",
            path.display()
        )));
    }
    Ok(())
}

pub(crate) struct ProcessBackend<T> {
    bin: WorkerBinary,
    /// The encoded [`crate::protocol::Setup`], sent to every worker as it joins.
    setup: Envelope,
    wanted: Signature,
    /// The run is traced: only then are the clock reads of [`crate::outcome::Trace`] made.
    trace: bool,
    /// Forks the workers, once started; `None` before, and for good once it failed (every
    /// worker is then an exec of its own, as it would be without one).
    zygote: Option<Zygote>,
    /// The zygote, hung up when the pool shuts down: reaped once the workers are.
    ending_zygote: Option<ChildGuard>,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> ProcessBackend<T> {
    pub fn new(bin: WorkerBinary, task: &T, settings: RunSettings) -> Result<Self, PoolError> {
        let setup = codec::encode_envelope(&SetupRef {
            name: T::NAME,
            settings: &settings,
            task,
        })
        .map_err(|err| PoolError::Setup(err.to_string()))?;
        Ok(ProcessBackend {
            bin,
            setup,
            wanted: Signature::of::<T>(),
            trace: settings.trace,
            zygote: None,
            ending_zygote: None,
            task: PhantomData,
        })
    }

    /// Starts the process, without waiting for it to connect: forked by the zygote while
    /// it serves, else spawned.
    fn spawn(&mut self, slot: usize) -> Result<Pending, PoolError> {
        if let Some(zygote) = self.zygote.as_mut() {
            match zygote.fork(slot) {
                Ok(pending) => return Ok(pending),
                Err(_) => self.zygote = None,
            }
        }
        spawn_worker(&self.bin, slot, false)
    }

    /// Completes the handshake of a spawned worker and starts reading its outcomes.
    fn join(
        &self,
        pending: Pending,
        slot: usize,
        generation: u64,
        events: &Sender<Event<T::Output>>,
    ) -> Result<Box<dyn Runner<T>>, PoolError> {
        let Pending {
            id,
            handshake,
            mut child,
        } = pending;
        let fail = |reason: String| PoolError::Handshake { id, reason };
        let bootstrap = handshake.wait(&mut child).map_err(fail)?;
        let version = codec::decode_prefix_u32(&bootstrap.hello)
            .map_err(|err| fail(format!("unreadable hello: {err}")))?;
        if version != PROTOCOL_VERSION {
            return Err(PoolError::Incompatible {
                id,
                reason: format!(
                    "the worker at {} speaks protocol version {version}, this coordinator \
                 version {PROTOCOL_VERSION}; it is from another build: rebuild both with \
                 `cargo build --release`",
                    self.bin.path.display()
                ),
            });
        }
        let hello: Hello = codec::decode(&bootstrap.hello)
            .map_err(|err| fail(format!("unreadable hello: {err}")))?;
        let pid = child.pid();
        if hello.worker_id != id || hello.pid != pid {
            return Err(fail(format!(
                "hello from worker {} pid {} does not match worker {id} pid {pid}",
                hello.worker_id, hello.pid
            )));
        }
        self.check_tasks(id, &hello.tasks)?;
        bootstrap
            .to_worker
            .send(self.setup.clone())
            .map_err(|err| fail(format!("cannot send setup: {err}")))?;
        let sink = EventSink {
            slot,
            generation,
            events: events.clone(),
        };
        let from_worker = bootstrap.from_worker;
        let trace = self.trace;
        std::thread::Builder::new()
            .name(format!("workpool-reader-{slot}"))
            .spawn(move || read_outcomes(from_worker, sink, trace))
            .map_err(PoolError::Thread)?;
        Ok(Box::new(ProcessRunner::<T> {
            child,
            pid,
            to_worker: bootstrap.to_worker,
            outbox: Outbox::new(),
            stopping: false,
            trace: self.trace,
            task: PhantomData,
        }))
    }

    /// Refuses a worker that does not serve this pool's task type as this build has it.
    fn check_tasks(&self, id: u32, served: &[Signature]) -> Result<(), PoolError> {
        match Signature::refusal(served, &self.wanted) {
            None => Ok(()),
            Some(reason) => Err(PoolError::Incompatible {
                id,
                reason: format!(
                    "the worker at {}: {reason} (build both from the same source, with the \
                     task type registered by `Worker::task` in the worker's `main`)",
                    self.bin.path.display()
                ),
            }),
        }
    }
}

/// workpool's own variables a child worker still gets: the test hooks that make a worker
/// misbehave on purpose (`worker`'s `WORKPOOL_TEST_*`), set on a coordinator by the tests,
/// and `WORKPOOL_SPIN`, which must hold at both ends of a round trip.
const CHILD_VARIABLES: [&str; 3] = ["WORKPOOL_TEST_PROTOCOL", "WORKPOOL_TEST_FRAME", env::SPIN];

/// The worker program, to be started with the coordinator's connection in its
/// environment (see [`crate::worker::env`]). Its mode and settings come from those
/// variables alone: every other `WORKPOOL_*` variable of this process (`WORKPOOL_BROKER`
/// would make it a broker worker) stays out of its environment; the rest (PATH, HOME,
/// proxies...) is passed on for the tasks.
pub(super) fn worker_command(bin: &WorkerBinary) -> Command {
    let mut command = Command::new(&bin.path);
    for (key, _) in std::env::vars_os() {
        let own = key.to_str().is_some_and(|k| k.starts_with("WORKPOOL_"));
        if own && !CHILD_VARIABLES.iter().any(|keep| key == *keep) {
            command.env_remove(key);
        }
    }
    command
        .env(env::PARENT, std::process::id().to_string())
        // Workers talk over ipc only: a piped stream nobody reads would block them.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Starts one worker program of its own, and opens the server it will connect to.
fn spawn_worker(bin: &WorkerBinary, slot: usize, echo: bool) -> Result<Pending, PoolError> {
    let id = slot as u32;
    let spawn_err = |reason: String| PoolError::Spawn { id, reason };
    let (server, name) = IpcOneShotServer::<Bootstrap>::new()
        .map_err(|err| spawn_err(format!("cannot open ipc server: {err}")))?;
    let mut command = worker_command(bin);
    if echo {
        command.env(env::ECHO, "1");
    }
    command
        .env(env::CONNECT, &name)
        .env(env::ID, id.to_string());
    let child = command
        .spawn()
        .map_err(|err| spawn_err(format!("cannot run {}: {err}", bin.path.display())))?;
    Ok(Pending {
        id,
        handshake: Handshake::Server { server, name },
        child: ChildGuard::new(child.id()),
    })
}

/// A worker started and not yet joined.
pub(super) struct Pending {
    pub id: u32,
    pub handshake: Handshake,
    pub child: ChildGuard,
}

/// Where a starting worker's [`Bootstrap`] arrives.
pub(super) enum Handshake {
    /// The one-shot server a spawned worker connects to.
    Server {
        server: IpcOneShotServer<Bootstrap>,
        name: String,
    },
    /// The channel whose only sender a forked worker holds: it disconnects if the worker
    /// dies first.
    Channel(IpcReceiver<Bootstrap>),
}

impl Handshake {
    /// Waits for the worker's bootstrap message, at most [`HANDSHAKE_DEADLINE`].
    fn wait(self, child: &mut ChildGuard) -> Result<Bootstrap, String> {
        match self {
            Handshake::Server { server, name } => {
                accept_with_deadline(server, &name, child, HANDSHAKE_DEADLINE)
            }
            Handshake::Channel(receiver) => match receiver.try_recv_timeout(HANDSHAKE_DEADLINE) {
                Ok(bootstrap) => Ok(bootstrap),
                Err(ipc_channel::TryRecvError::Empty) => Err(format!(
                    "no hello within {} s",
                    HANDSHAKE_DEADLINE.as_secs()
                )),
                Err(ipc_channel::TryRecvError::IpcError(ipc_channel::IpcError::Disconnected)) => {
                    Err(match child.kill_and_reap() {
                        Some(status) => {
                            format!("worker {} before connecting", describe_exit(status))
                        }
                        None => "worker closed its channel before connecting".into(),
                    })
                }
                Err(ipc_channel::TryRecvError::IpcError(err)) => {
                    Err(format!("bad bootstrap message: {err}"))
                }
            },
        }
    }
}

impl<T: Task> Backend<T> for ProcessBackend<T> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kills_runners: true,
            spin_for_outcomes: true,
            loss_follows_outcomes: true,
            ..Capabilities::LOCAL
        }
    }

    fn start_all(
        &mut self,
        count: usize,
        events: &Events<T>,
    ) -> Result<Vec<Started<T>>, PoolError> {
        let room_for_zygote = check_fd_limit(count)?;
        // Every process is asked for before the first hello is read, so that they all
        // start up in parallel: the first ones forked by the zygote as it starts, the
        // rest on request; spawned one by one where there is no zygote.
        let mut started = Vec::with_capacity(count);
        if room_for_zygote {
            let zygote = Zygote::start(&self.bin, count, |pending| {
                let slot = started.len();
                started.push(pending.and_then(|p| self.join(p, slot, 0, events)));
            });
            self.zygote = zygote.ok();
        }
        if started.len() < count {
            self.zygote = None;
            let spawned: Vec<_> = (started.len()..count)
                .map(|slot| spawn_worker(&self.bin, slot, false))
                .collect();
            for pending in spawned {
                let slot = started.len();
                started.push(pending.and_then(|p| self.join(p, slot, 0, events)));
            }
        }
        Ok(started)
    }

    fn start(&mut self, slot: usize, generation: u64, events: &Events<T>) -> Started<T> {
        let pending = self.spawn(slot)?;
        self.join(pending, slot, generation, events)
    }

    fn stop_starting(&mut self) {
        if let Some(zygote) = self.zygote.take() {
            self.ending_zygote = Some(zygote.hang_up());
        }
    }
}

/// Descriptors the coordinator holds whatever the pool's size (standard streams, the
/// signal pipe, ipc-channel's own), and what each worker adds while it starts (its
/// channels, the one-shot server, the spawn's pipes), measured with /proc/PID/fd.
const FDS_BASE: u64 = 16;
const FDS_PER_WORKER: u64 = 4;
/// What the zygote adds: its channels and their server while it starts.
const FDS_ZYGOTE: u64 = 4;

/// Makes sure `workers` processes can be started: raises the soft descriptor limit up to
/// the hard one where that is needed, and fails with the numbers when even that is too
/// low (ipc-channel would otherwise panic half-way through the start-up). Says whether
/// there is room for a zygote too: without, the workers are spawned one by one.
fn check_fd_limit(workers: usize) -> Result<bool, PoolError> {
    let needed = FDS_BASE + FDS_PER_WORKER * workers as u64;
    if raise_fd_limit(needed + FDS_ZYGOTE).is_ok() {
        return Ok(true);
    }
    raise_fd_limit(needed)
        .map(|()| false)
        .map_err(|limit| PoolError::FileDescriptors {
            limit,
            workers,
            needed,
        })
}

/// Raises the soft descriptor limit to `needed` where it is lower and the hard one
/// allows; fails with the soft limit when it stays lower.
fn raise_fd_limit(needed: u64) -> Result<(), u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Ok(()); // Cannot tell: let the start-up say what goes wrong.
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max >= needed {
        let raised = libc::rlimit {
            rlim_cur: needed,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(limit.rlim_cur)
}

/// Waits for the worker's bootstrap message, but not forever: `accept` blocks until a
/// client connects (ipc-channel #261), so it runs on a helper thread while this one watches
/// the child and the clock. On failure, a dummy connection releases the helper.
pub(super) fn accept_with_deadline<M>(
    server: IpcOneShotServer<M>,
    name: &str,
    child: &mut ChildGuard,
    deadline: Duration,
) -> Result<M, String>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    let (done, result) = flume::bounded(1);
    std::thread::Builder::new()
        // A pool thread's name keeps the panic hook quiet: ipc-channel panics on some
        // failures (out of descriptors), which are reported as this start-up's error.
        .name(format!("{}accept", super::THREAD_NAME_PREFIX))
        .spawn(move || {
            let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                server.accept().map(|(_, bootstrap)| bootstrap)
            }));
            let _ = done.send(accepted.map_err(|panic| crate::execute::panic_message(&*panic)));
        })
        .map_err(|err| format!("cannot start accept thread: {err}"))?;
    let started = Instant::now();
    let failure = loop {
        match result.recv_timeout(Duration::from_millis(20)) {
            Ok(Ok(Ok(bootstrap))) => return Ok(bootstrap),
            Ok(Ok(Err(err))) => break format!("bad bootstrap message: {err}"),
            Ok(Err(panic)) => break format!("ipc-channel failed: {panic}"),
            Err(flume::RecvTimeoutError::Disconnected) => {
                break "accept thread ended without a result".to_string()
            }
            Err(flume::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = child.try_wait() {
            break format!("worker {} before connecting", describe_exit(status));
        }
        if started.elapsed() > deadline {
            break format!("no hello within {} s", deadline.as_secs());
        }
    };
    if let Ok(sender) = IpcSender::<M>::connect(name.to_string()) {
        drop(sender);
    }
    Err(failure)
}

/// Forwards a worker's outcome frames as events until the channel closes or a frame is
/// corrupt; either way the worker is reported lost, and the scheduler reaps it. When the
/// decoding ended is only read when `trace` is set.
fn read_outcomes<O: DeserializeOwned>(
    from_worker: IpcReceiver<Envelope>,
    sink: EventSink<O>,
    trace: bool,
) {
    // The worker's shared-memory regions, kept mapped for as long as the worker lives.
    let mut inbox = Inbox::new();
    let reason = loop {
        let received = from_worker.recv();
        let received_ns = monotonic_ns();
        match received {
            Ok(frame) => match inbox.decode::<ToCoordinator<O>>(frame) {
                Ok(ToCoordinator::Outcomes(outcomes)) => {
                    if !sink.outcomes(outcomes, Arrival::decoded(received_ns, trace)) {
                        return;
                    }
                }
                Err(err) => {
                    // Never trusted, and worth a line in the log: it is a bug or an attack.
                    crate::diag!(
                        "warning: worker {} sent a corrupt frame ({err}); replacing it",
                        sink.slot
                    );
                    break format!("sent a corrupt frame ({err})");
                }
            },
            Err(ipc_channel::IpcError::Disconnected) => break "closed its channel".into(),
            Err(err) => break format!("channel failed ({err})"),
        }
    };
    sink.lost(reason);
}

struct ProcessRunner<T> {
    child: ChildGuard,
    pid: u32,
    to_worker: IpcSender<Envelope>,
    /// The shared-memory regions bulk task frames are written into, reused batch after
    /// batch; they go with the worker.
    outbox: Outbox,
    /// The worker was asked to exit (retired, or the pool shuts down): once is enough.
    stopping: bool,
    /// The run is traced: only then does `send` read the clock.
    trace: bool,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> Runner<T> for ProcessRunner<T> {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn send(&mut self, jobs: &[Job<T::Input>]) -> Result<Option<u64>, String> {
        let frame = self
            .outbox
            .encode(&ToWorkerRef::Tasks(jobs))
            .map_err(|err| err.to_string())?;
        let encoded_ns = self.trace.then(monotonic_ns);
        self.to_worker
            .send(frame)
            .map(|()| encoded_ns)
            .map_err(|err| format!("cannot send to worker: {err}"))
    }

    fn kill(&mut self) -> Option<String> {
        self.child.kill_and_reap().map(describe_exit)
    }

    fn shutdown(&mut self) {
        self.retire();
        self.child.wait_or_kill(SHUTDOWN_GRACE);
    }

    fn ask_to_stop(&mut self) {
        self.retire();
    }

    fn retire(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        // The worker reads its messages in order: it runs the batches ahead of this first.
        if let Ok(frame) = codec::encode(&ToWorkerRef::<T::Input>::Shutdown) {
            let _ = self.to_worker.send(Envelope::Inline(frame));
        }
    }

    fn resident_bytes(&self) -> Option<u64> {
        super::recycle::resident_bytes(self.pid)
    }
}

/// Owns a child process: dropping it kills and reaps the child, so no error path can leave
/// an orphan or a zombie behind (dropping a `std::process::Child` does neither). It holds
/// a pid rather than a `Child`, since a worker forked by the zygote is this process's
/// child too, but was not spawned by it.
pub(super) struct ChildGuard {
    id: u32,
    /// The child, while it is not reaped.
    pid: Option<libc::pid_t>,
    /// How it ended, once reaped.
    ended: Option<ExitStatus>,
}

impl ChildGuard {
    /// Takes charge of this process's child `pid`.
    pub(super) fn new(pid: u32) -> ChildGuard {
        ChildGuard {
            id: pid,
            pid: libc::pid_t::try_from(pid).ok(),
            ended: None,
        }
    }

    fn pid(&self) -> u32 {
        self.id
    }

    /// How the child ended, if it has; reaps it then.
    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.reap(libc::WNOHANG);
        self.ended
    }

    /// `waitpid` with `options`; forgets the pid once reaped, or once it is no child of
    /// ours any more (reaped elsewhere).
    fn reap(&mut self, options: libc::c_int) {
        let Some(pid) = self.pid else {
            return;
        };
        let mut status = 0;
        loop {
            // SAFETY: waitpid writes the status into our own integer.
            let reaped = unsafe { libc::waitpid(pid, &mut status, options) };
            if reaped == pid {
                self.ended = Some(ExitStatus::from_raw(status));
                self.pid = None;
            } else if reaped < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                self.pid = None;
            }
            return;
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid {
            // SAFETY: kill only sends a signal to our own, not yet reaped, child.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// Stops the child if it still runs (SIGTERM, then SIGKILL after [`KILL_GRACE`]),
    /// reaps it, and returns how it ended.
    fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_some() || self.pid.is_none() {
            return self.ended;
        }
        self.signal(libc::SIGTERM);
        if self.wait_for(KILL_GRACE).is_none() {
            self.signal(libc::SIGKILL);
            self.reap(0);
        }
        self.ended
    }

    /// Waits up to `grace` for the child to exit by itself, then kills it.
    fn wait_or_kill(&mut self, grace: Duration) {
        if self.wait_for(grace).is_none() {
            self.kill_and_reap();
        }
    }

    /// Waits up to `timeout` for the child to end, and reaps it if it did. It sleeps on a
    /// pidfd, which wakes it the moment the child exits: a pool's shutdown waits for each
    /// of its workers in turn, and a sleep of fixed length would add its slack to every
    /// one. It polls the child where there are no pidfds (Linux before 5.3).
    fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let pidfd = self.pid.and_then(|pid| {
            // SAFETY: pidfd_open reads two integers and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
            // SAFETY: the descriptor was just opened here and nothing else owns it.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        });
        while self.try_wait().is_none() && self.pid.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match &pidfd {
                Some(fd) => {
                    let mut ready = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // Rounded up: a timeout of 0 ms would spin.
                    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                    // SAFETY: poll reads and writes the one pollfd we own.
                    unsafe { libc::poll(&mut ready, 1, ms) };
                }
                None => std::thread::sleep(left.min(Duration::from_micros(100))),
            }
        }
        self.ended
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// "exited with code 3", "was killed by signal SIGKILL (9)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exited with code {code}")
    } else if let Some(signal) = status.signal() {
        format!("was killed by signal {} ({signal})", signal_name(signal))
    } else {
        format!("ended with {status}")
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// A worker in echo mode: the bare ipc-channel round trip between two processes, with no
/// pool logic, which `bench` reports as the floor under every process-backend latency.
pub struct EchoPeer {
    _child: ChildGuard,
    to_worker: IpcSender<Envelope>,
    from_worker: IpcReceiver<Envelope>,
}

impl EchoPeer {
    /// Starts `bin` as an echo peer.
    pub fn start(bin: &WorkerBinary) -> Result<EchoPeer, PoolError> {
        let Pending {
            handshake,
            mut child,
            ..
        } = spawn_worker(bin, 0, true)?;
        let bootstrap = handshake
            .wait(&mut child)
            .map_err(|reason| PoolError::Handshake { id: 0, reason })?;
        Ok(EchoPeer {
            _child: child,
            to_worker: bootstrap.to_worker,
            from_worker: bootstrap.from_worker,
        })
    }

    /// Sends `frame` and waits for it to come back.
    pub fn round_trip(&self, frame: &Envelope) -> Result<Envelope, String> {
        self.to_worker
            .send(frame.clone())
            .map_err(|err| format!("cannot send to echo worker: {err}"))?;
        self.from_worker
            .recv()
            .map_err(|err| format!("echo worker did not answer: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The guard reaps the child, not the `Child`: that is what is tested.
    #[allow(clippy::zombie_processes)]
    fn child(seconds: &str) -> ChildGuard {
        let child = Command::new("sleep").arg(seconds).spawn().expect("sleep");
        ChildGuard::new(child.id())
    }

    #[test]
    fn a_wait_ends_when_the_child_exits_and_reaps_it() {
        let mut guard = child("0.05");
        let status = guard.wait_for(Duration::from_secs(30));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        // Reaped: nothing is left to wait for or signal.
        assert_eq!(guard.pid, None);
    }

    #[test]
    fn a_wait_gives_up_at_its_timeout_and_leaves_the_child_running() {
        let mut guard = child("30");
        let started = Instant::now();
        assert_eq!(guard.wait_for(Duration::from_millis(30)), None);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(guard.pid.is_some());
        // Dropping the guard stops and reaps it.
        let status = guard.kill_and_reap();
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    }
}
