//! The messages between the coordinator and a worker process, and how a worker joins.
//!
//! Bootstrap: the pool starts the worker program once as a zygote that forks the workers
//! (see [`crate::worker`]); a forked worker sends its [`Bootstrap`] on a channel the zygote
//! made for it alone. Where there is no zygote, the coordinator opens an
//! `IpcOneShotServer` and starts each worker with the server's name, and the worker
//! connects and sends the same [`Bootstrap`]: its hello frame plus the ends the
//! coordinator keeps. The coordinator checks the hello (protocol version, task types) and
//! sends a [`Setup`] naming the task type of the run; from then on every message is one
//! bincode frame in an [`Envelope`] (inline; or, when bulky, in a shared-memory region the
//! sender reuses, or a one-off one) on a typed ipc channel, which keeps
//! `try_recv_timeout` and select. Every message is generic over the task type, so a batch
//! is encoded and decoded with no dispatch.

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

use crate::codec::{Envelope, Frame};
use crate::task::Signature;
use crate::Outcome;

/// Bumped whenever a message's layout changes; both sides refuse a peer of another version.
pub const PROTOCOL_VERSION: u32 = 5;

/// What a worker sends through the one-shot server when it connects.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bootstrap {
    /// An encoded [`Hello`].
    pub hello: Frame,
    /// Where the coordinator sends [`ToWorker`] frames.
    pub to_worker: IpcSender<Envelope>,
    /// Where the coordinator receives [`ToCoordinator`] frames.
    pub from_worker: IpcReceiver<Envelope>,
}

/// A worker's introduction. `protocol` comes first so that it can be read on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the worker's build.
    pub protocol: u32,
    /// The slot the coordinator started the worker for.
    pub worker_id: u32,
    /// The worker's process id.
    pub pid: u32,
    /// The task types the worker serves.
    pub tasks: Vec<Signature>,
}

/// One task as it crosses the process boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job<I> {
    /// Position of the task in the input; the key of every outcome.
    pub index: u64,
    /// 1 for the first try, incremented by each retry.
    pub attempt: u32,
    /// What to do.
    pub input: I,
}

/// Settings of a run that are the pool's, not the task's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Seed every random quantity of the run derives from.
    pub seed: u64,
    /// Send each outcome as soon as its task ends instead of batching them (the pool sets
    /// it when it enforces a timeout, to tell which task of a batch overran).
    pub report_each_task: bool,
    /// Timestamp every task's journey (see [`crate::outcome::Trace`]), for `bench`.
    pub trace: bool,
}

/// The first message after the handshake: which task type the worker runs, its value,
/// and the run's settings. `name` comes first so a worker can find the type before it
/// decodes the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup<T> {
    /// The task type's [`crate::Task::NAME`].
    pub name: String,
    /// The run's settings.
    pub settings: RunSettings,
    /// The task value every task of the run is run with.
    pub task: T,
}

/// [`Setup`] by reference, for encoding without copying (same frame).
#[derive(Debug, Serialize)]
pub struct SetupRef<'a, T> {
    /// See [`Setup::name`].
    pub name: &'a str,
    /// See [`Setup::settings`].
    pub settings: &'a RunSettings,
    /// See [`Setup::task`].
    pub task: &'a T,
}

/// Coordinator -> worker, after the [`Setup`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker<I> {
    /// A batch of tasks, run in order; their outcomes may come back in several batches.
    Tasks(Vec<Job<I>>),
    /// Finish the current batch, then exit.
    Shutdown,
}

/// [`ToWorker`] by reference, for encoding without copying a batch: serde gives both
/// the same variants in the same order, so their frames are byte for byte the same.
#[derive(Debug, Serialize)]
pub enum ToWorkerRef<'a, I> {
    /// See [`ToWorker::Tasks`].
    Tasks(&'a [Job<I>]),
    /// See [`ToWorker::Shutdown`].
    Shutdown,
}

/// Worker -> coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToCoordinator<O> {
    /// Outcomes of tasks, in the order the worker ran them.
    Outcomes(Vec<Outcome<O>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, decode, encode, CodecError, MAX_FRAME_BYTES};
    use crate::{ErrorKind, TaskError};
    use rand::{Rng, SeedableRng};

    /// An input with bulk bytes and an enum, like a real task's.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Input {
        Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
        Sleep { ms: u64 },
    }

    type Tasks = ToWorker<Input>;
    /// Outputs of bulk bytes, whose length prefix the limit tests forge.
    type Outcomes = ToCoordinator<serde_bytes::ByteBuf>;

    fn sample_tasks() -> Tasks {
        ToWorker::Tasks(vec![
            Job {
                index: 0,
                attempt: 1,
                input: Input::Bytes(vec![1, 2, 3]),
            },
            Job {
                index: u64::MAX,
                attempt: 7,
                input: Input::Sleep { ms: 300 },
            },
        ])
    }

    fn sample_outcomes() -> Outcomes {
        ToCoordinator::Outcomes(vec![
            Outcome {
                index: 0,
                attempt: 1,
                result: Ok(vec![9; 1000].into()),
                run_us: 3,
                trace: None,
            },
            Outcome {
                index: 1,
                attempt: 2,
                result: Ok(vec![].into()),
                run_us: 10,
                trace: Some(crate::outcome::Trace {
                    received_ns: 1,
                    decoded_ns: 2,
                    started_ns: 3,
                    finished_ns: u64::MAX,
                }),
            },
            Outcome {
                index: 5,
                attempt: 3,
                result: Err(TaskError::new(ErrorKind::Network, "connection reset")),
                run_us: 0,
                trace: None,
            },
        ])
    }

    fn hello(protocol: u32) -> Hello {
        Hello {
            protocol,
            worker_id: 3,
            pid: 4242,
            tasks: vec![Signature {
                name: "t".into(),
                types: ["a".into(), "b".into(), "c".into()],
            }],
        }
    }

    #[test]
    fn every_message_round_trips() {
        let hello = hello(PROTOCOL_VERSION);
        assert_eq!(decode::<Hello>(&encode(&hello).unwrap()).unwrap(), hello);
        let setup = Setup {
            name: "t".to_string(),
            settings: RunSettings {
                seed: 7,
                ..RunSettings::default()
            },
            task: 5u8,
        };
        assert_eq!(
            decode::<Setup<u8>>(&encode(&setup).unwrap()).unwrap(),
            setup
        );
        for msg in [sample_tasks(), ToWorker::Shutdown] {
            assert_eq!(decode::<Tasks>(&encode(&msg).unwrap()).unwrap(), msg);
        }
        let msg = sample_outcomes();
        assert_eq!(decode::<Outcomes>(&encode(&msg).unwrap()).unwrap(), msg);
    }

    #[test]
    fn borrowed_messages_encode_like_owned_ones() {
        let ToWorker::Tasks(tasks) = sample_tasks() else {
            unreachable!()
        };
        let settings = RunSettings {
            seed: 9,
            trace: true,
            ..RunSettings::default()
        };
        let owned_setup = Setup {
            name: "t".to_string(),
            settings: settings.clone(),
            task: 1u32,
        };
        let borrowed_setup = SetupRef {
            name: "t",
            settings: &settings,
            task: &1u32,
        };
        assert_eq!(
            encode(&borrowed_setup).unwrap(),
            encode(&owned_setup).unwrap()
        );
        assert_eq!(
            encode(&ToWorkerRef::Tasks(&tasks)).unwrap(),
            encode(&ToWorker::Tasks(tasks.clone())).unwrap()
        );
        assert_eq!(
            encode(&ToWorkerRef::<Input>::Shutdown).unwrap(),
            encode(&ToWorker::<Input>::Shutdown).unwrap()
        );
    }

    #[test]
    fn hello_version_and_setup_name_readable_alone() {
        let frame = encode(&hello(99)).unwrap();
        assert_eq!(codec::decode_prefix_u32(&frame).unwrap(), 99);
        let setup = SetupRef {
            name: "hash",
            settings: &RunSettings::default(),
            task: &vec![1u8; 10],
        };
        let frame = encode(&setup).unwrap();
        assert_eq!(codec::decode_prefix::<String>(&frame).unwrap(), "hash");
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let frame = encode(&sample_outcomes()).unwrap();
        for cut in 0..frame.len() {
            assert!(
                decode::<Outcomes>(&frame[..cut]).is_err(),
                "a frame cut to {cut} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut frame = encode(&ToWorker::<Input>::Shutdown).unwrap().into_vec();
        frame.push(0);
        assert!(matches!(
            decode::<Tasks>(&frame),
            Err(CodecError::Trailing { trailing: 1, .. })
        ));
    }

    #[test]
    fn length_prefix_beyond_the_limit_is_rejected_without_allocating() {
        // ToCoordinator::Outcomes (variant 0), one outcome, index 0, attempt 1, Ok (0),
        // then an output length of u64::MAX as a varint (0xFD marks 8 bytes).
        let mut frame = vec![0u8, 1, 0, 1, 0, 0xFD];
        frame.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = decode::<Outcomes>(&frame).unwrap_err();
        assert!(
            err.to_string().contains("limit") || err.to_string().contains("Limit"),
            "unexpected error: {err}"
        );
        // A length just past the limit is refused too, not only absurd ones.
        let mut frame = vec![0u8, 1, 0, 1, 0, 0xFC];
        frame.extend_from_slice(&((MAX_FRAME_BYTES as u32) + 1).to_le_bytes());
        assert!(decode::<Outcomes>(&frame).is_err());
    }

    #[test]
    fn random_garbage_is_rejected_without_panicking() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.random_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Some short byte strings are valid messages (e.g. [1] is Shutdown); what
            // matters is that nothing panics or allocates without bound.
            if decode::<Tasks>(&bytes).is_ok() {
                accepted += 1;
            }
            let _ = decode::<Outcomes>(&bytes);
            let _ = decode::<Hello>(&bytes);
        }
        assert!(
            accepted < 2_000,
            "{accepted} random frames decoded as messages"
        );
    }

    #[test]
    fn oversized_frames_are_refused_before_decoding() {
        let frame = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            decode::<Tasks>(&frame),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
