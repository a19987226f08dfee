//! The wire protocol, tested by playing the coordinator's side against the real `worker`
//! binary: the bootstrap handshake, a batch and its outcomes, shutdown, and what a worker
//! does with a frame it cannot read or a task type it does not serve.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use workpool::codec::{self, Envelope, Frame, Inbox, Outbox, RegionFrame};
use workpool::protocol::{
    Bootstrap, Hello, Job, RunSettings, SetupRef, ToCoordinator, ToWorker, PROTOCOL_VERSION,
};
use workpool::task::Signature;
use workpool::workload::{noop_payload, Cpu, CpuInput, Noop, NoopInput, NoopOutput};
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
    /// The shared-memory regions our bulk frames go in, as the pool's.
    outbox: Outbox,
    /// The worker's regions, as the pool's outcome reader keeps them.
    inbox: Inbox,
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
            outbox: Outbox::new(),
            inbox: Inbox::new(),
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

    /// Sends a message as the pool does: inline when small, else in a reused region.
    fn send(&mut self, message: &impl serde::Serialize) -> Envelope {
        let envelope = self.outbox.encode(message).expect("encode");
        self.send_envelope(envelope.clone());
        envelope
    }

    fn send_envelope(&self, envelope: Envelope) {
        self.to_worker
            .send(envelope)
            .expect("cannot send to the worker");
    }

    /// Receives outcomes until `count` have arrived (a batch may come back in parts),
    /// with the envelopes they came in.
    fn recv_outcomes_in<O: serde::de::DeserializeOwned>(
        &mut self,
        count: usize,
    ) -> (Vec<Outcome<O>>, Vec<Envelope>) {
        let mut outcomes = Vec::new();
        let mut envelopes = Vec::new();
        while outcomes.len() < count {
            let envelope = self
                .from_worker
                .try_recv_timeout(DEADLINE)
                .unwrap_or_else(|err| panic!("no outcomes from the worker: {err:?}"));
            envelopes.push(envelope.clone());
            match self
                .inbox
                .decode::<ToCoordinator<O>>(envelope)
                .expect("outcome frame does not decode")
            {
                ToCoordinator::Outcomes(batch) => outcomes.extend(batch),
            }
        }
        (outcomes, envelopes)
    }

    fn recv_outcomes(&mut self, count: usize) -> Vec<Outcome<u64>> {
        self.recv_outcomes_in(count).0
    }

    /// Tells the worker the run is of the `cpu` task type.
    fn set_up_cpu(&mut self) {
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

/// Whether an envelope hands over a shared-memory region rather than naming a known one.
fn announces_a_region(envelope: &Envelope) -> bool {
    matches!(
        envelope,
        Envelope::Region(RegionFrame {
            region: Some(_),
            ..
        })
    )
}

/// Many bulk frames of varying sizes, interleaved with small ones, one at a time and then
/// several in flight: every echo comes back intact, and both sides reuse a few regions
/// instead of a memory per frame.
#[test]
fn bulk_frames_reuse_a_few_regions_both_ways_and_come_back_intact() {
    let mut peer = Peer::start(4);
    peer.send(&SetupRef {
        name: Noop::NAME,
        settings: &RunSettings::default(),
        task: &Noop,
    });
    let threshold = codec::SHARED_MEMORY_THRESHOLD;
    let sizes = [
        1 << 20,
        0,
        threshold - 100,
        threshold + 100,
        100,
        3 << 20,
        70_000,
        codec::MAX_PAYLOAD_BYTES,
        5,
        1 << 20,
    ];
    let job = |index: u64, len: usize| Job {
        index,
        attempt: 1,
        input: NoopInput {
            payload: noop_payload(index, len),
            fault: None,
        },
    };
    let check = |outcomes: &[Outcome<NoopOutput>], index: u64, len: usize| {
        assert_eq!(outcomes.len(), 1);
        let outcome = &outcomes[0];
        assert_eq!(outcome.index, index);
        let payload = &outcome.result.as_ref().expect("noop failed").payload;
        assert_eq!(payload.len(), len, "task {index}");
        assert!(
            workpool::workload::noop_payload_intact(index, payload),
            "task {index}"
        );
    };
    let (mut ours, mut theirs, mut in_regions) = (0, 0, 0);
    let mut index = 0;
    for _round in 0..5 {
        for len in sizes {
            let sent = peer.send(&ToWorker::Tasks(vec![job(index, len)]));
            let (outcomes, envelopes) = peer.recv_outcomes_in::<NoopOutput>(1);
            check(&outcomes, index, len);
            ours += usize::from(announces_a_region(&sent));
            theirs += envelopes.iter().filter(|e| announces_a_region(e)).count();
            in_regions += envelopes
                .iter()
                .filter(|e| matches!(e, Envelope::Region(_)))
                .count();
            index += 1;
        }
    }
    // Frames of 1 MiB and more went both ways in regions; each side made one region and
    // replaced it only as it grew (to about 1, 3 and 16 MiB), never once per frame.
    assert!(
        in_regions >= 5 * 4,
        "{in_regions} outcome frames in regions"
    );
    assert!(ours <= 4, "our region sent {ours} times");
    assert!(theirs <= 4, "the worker's region sent {theirs} times");

    // Several batches in flight at once: each needs a region of its own.
    let first = index;
    for i in 0..8 {
        peer.send(&ToWorker::Tasks(vec![job(
            first + i,
            (1 << 20) + i as usize,
        )]));
    }
    for i in 0..8 {
        let (outcomes, _) = peer.recv_outcomes_in::<NoopOutput>(1);
        check(&outcomes, first + i, (1 << 20) + i as usize);
    }

    peer.send(&ToWorker::<NoopInput>::Shutdown);
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
    peer.send_envelope(Envelope::Inline(Frame::from(bytes)));
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
fn worker_refuses_a_region_it_was_never_sent_or_a_length_past_its_end() {
    let hostile = [
        RegionFrame {
            id: 9,
            len: 16,
            region: None,
        },
        RegionFrame {
            id: 0,
            len: 16,
            region: None,
        },
        RegionFrame {
            id: 0,
            len: 4096,
            region: Some(ipc_channel::ipc::IpcSharedMemory::from_byte(0, 4096)),
        },
    ];
    for frame in hostile {
        let mut peer = Peer::start(5);
        peer.set_up_cpu();
        peer.send_envelope(Envelope::Region(frame.clone()));
        let status = peer
            .child
            .wait_with_deadline("after a hostile region frame");
        let stderr = peer.stderr();
        assert!(
            !status.success(),
            "{frame:?}: worker ended with {status}; stderr: {stderr}"
        );
        assert!(
            stderr.contains("corrupt frame") && stderr.contains("shared-memory region"),
            "{frame:?}: stderr should say why: {stderr}"
        );
    }
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
