//! The wire protocol, tested by playing the coordinator's side against the real `worker`
//! binary: the bootstrap handshake, a batch and its outcomes, shutdown, and what a worker
//! does with a frame it cannot read or a task type it does not serve.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use workpool::codec::{self, Envelope, Frame, Inbox};
use workpool::protocol::{
    Bootstrap, Hello, Job, RunSettings, SetupRef, ToCoordinator, ToWorker, PROTOCOL_VERSION,
};
use workpool::task::Signature;
use workpool::workload::{Cpu, CpuInput};
use workpool::{Outcome, Task};

use crate::common::WORKER;

/// How long any step may take before the test gives up on the worker.
const DEADLINE: Duration = Duration::from_secs(10);

/// Owns the worker process: a failing test kills and reaps it rather than leaking it.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Waits for the worker to exit by itself; kills it and fails after [`DEADLINE`].
    #[track_caller]
    fn wait_with_deadline(&mut self, what: &str) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            if started.elapsed() > DEADLINE {
                let _ = self.0.kill();
                let _ = self.0.wait();
                panic!("worker did not exit within {DEADLINE:?} {what}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The coordinator's end of one connected worker.
struct Peer {
    child: ChildGuard,
    hello: Hello,
    to_worker: IpcSender<Envelope>,
    from_worker: IpcReceiver<Envelope>,
}

impl Peer {
    /// Starts the real worker as `worker --connect NAME --id ID` and accepts its bootstrap,
    /// watching the child and the clock: `accept` alone would block forever if the worker
    /// died before connecting (ipc-channel #261).
    fn start(id: u32) -> Peer {
        let (server, name) = IpcOneShotServer::<Bootstrap>::new().expect("one-shot server");
        let child = Command::new(WORKER)
            .args(["--connect", &name, "--id", &id.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Read only after the worker exits: it writes at most a line of diagnostics.
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the worker binary");
        let mut child = ChildGuard(child);
        let (done, accepted) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(server.accept().map_err(|err| err.to_string()));
        });
        let started = Instant::now();
        let bootstrap = loop {
            match accepted.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok((_, bootstrap))) => break bootstrap,
                Ok(Err(err)) => panic!("bad bootstrap: {err}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("accept thread died"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let failure = match child.0.try_wait().expect("try_wait") {
                Some(status) => format!("worker exited ({status}) before connecting"),
                None if started.elapsed() > DEADLINE => format!("no bootstrap in {DEADLINE:?}"),
                None => continue,
            };
            // Release the accept thread before failing.
            let _ = IpcSender::<Bootstrap>::connect(name);
            panic!("{failure}");
        };
        let hello = codec::decode::<Hello>(&bootstrap.hello).expect("hello does not decode");
        Peer {
            child,
            hello,
            to_worker: bootstrap.to_worker,
            from_worker: bootstrap.from_worker,
        }
    }

    /// What the worker wrote to stderr, once it has exited.
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.0.stderr.take() {
            std::io::Read::read_to_string(&mut stderr, &mut text).expect("read stderr");
        }
        text
    }

    fn send(&self, message: &impl serde::Serialize) {
        let frame = codec::encode_envelope(message).expect("encode");
        self.to_worker
            .send(frame)
            .expect("cannot send to the worker");
    }

    /// Receives outcomes until `count` have arrived (a batch may come back in parts).
    fn recv_outcomes(&self, count: usize) -> Vec<Outcome<u64>> {
        let mut inbox = Inbox::new();
        let mut outcomes = Vec::new();
        while outcomes.len() < count {
            let frame = self
                .from_worker
                .try_recv_timeout(DEADLINE)
                .unwrap_or_else(|err| panic!("no outcomes from the worker: {err:?}"));
            match inbox
                .decode::<ToCoordinator<u64>>(frame)
                .expect("outcome frame does not decode")
            {
                ToCoordinator::Outcomes(batch) => outcomes.extend(batch),
            }
        }
        outcomes
    }

    /// Tells the worker the run is of the `cpu` task type.
    fn set_up_cpu(&self) {
        self.send(&SetupRef {
            name: Cpu::NAME,
            settings: &RunSettings::default(),
            task: &Cpu::default(),
        });
    }
}

#[test]
fn worker_handshake_task_and_shutdown() {
    let mut peer = Peer::start(7);
    let Hello {
        protocol,
        worker_id,
        pid,
        tasks,
    } = &peer.hello;
    assert_eq!(
        (*protocol, *worker_id, *pid),
        (PROTOCOL_VERSION, 7, peer.child.0.id())
    );
    // The worker binary serves every built-in workload, as this build has them.
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["noop", "io", "cpu", "fetch", "files"]);
    assert!(tasks.contains(&Signature::of::<Cpu>()), "{tasks:?}");
    peer.set_up_cpu();
    peer.send(&ToWorker::Tasks(vec![Job {
        index: 0,
        attempt: 1,
        input: CpuInput { iters: 10 },
    }]));
    let outcomes = peer.recv_outcomes(1);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let outcome = &outcomes[0];
    assert_eq!((outcome.index, outcome.attempt), (0, 1), "{outcome:?}");
    // 0 + 1 + 4 + ... + 81
    assert_eq!(outcome.result, Ok(285));

    peer.send(&ToWorker::<CpuInput>::Shutdown);
    let status = peer.child.wait_with_deadline("after Shutdown");
    assert!(
        status.success(),
        "worker ended with {status} after Shutdown"
    );
}

#[test]
fn worker_exits_with_an_error_on_a_corrupt_frame() {
    let mut peer = Peer::start(1);
    peer.set_up_cpu();
    // Fixed pseudo-random bytes, so a failure can be replayed.
    let bytes = workpool::workload::noop_payload(0x9E37_79B9_7F4A_7C15, 64);
    assert!(
        codec::decode::<ToWorker<CpuInput>>(&bytes).is_err(),
        "the garbage decodes as a message; pick another seed"
    );
    peer.to_worker
        .send(Envelope::Inline(Frame::from(bytes)))
        .expect("cannot send to the worker");
    // Our ends of the channels stay open: the worker must not wait for a disconnect.
    let status = peer.child.wait_with_deadline("after a corrupt frame");
    let stderr = peer.stderr();
    assert!(
        !status.success(),
        "worker ended with {status} after a corrupt frame; stderr: {stderr}"
    );
    assert!(
        stderr.contains("corrupt"),
        "stderr should say why: {stderr}"
    );
}

#[test]
fn worker_exits_when_the_coordinator_hangs_up() {
    let Peer {
        mut child,
        to_worker,
        from_worker,
        ..
    } = Peer::start(2);
    drop(to_worker);
    drop(from_worker);
    let status = child.wait_with_deadline("after the coordinator closed its channels");
    assert!(
        status.success(),
        "worker ended with {status} after a hang-up"
    );
}

#[test]
fn worker_refuses_a_task_type_it_does_not_serve() {
    let mut peer = Peer::start(3);
    peer.send(&SetupRef {
        name: "hash-files",
        settings: &RunSettings::default(),
        task: &(),
    });
    let status = peer
        .child
        .wait_with_deadline("after a setup of an unknown task type");
    let stderr = peer.stderr();
    assert!(
        !status.success(),
        "worker ended with {status}; stderr: {stderr}"
    );
    assert!(
        stderr.contains("hash-files") && stderr.contains("noop, io, cpu, fetch, files"),
        "stderr should name what it serves and what was asked: {stderr}"
    );
}
