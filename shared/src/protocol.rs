//! The messages between the coordinator and a worker process, and how a worker joins.
//!
//! Bootstrap: the coordinator opens an `IpcOneShotServer` and starts `worker --connect NAME
//! --id N`. The worker creates its two channels, connects, and sends a [`Bootstrap`]: its
//! hello frame plus the ends the coordinator keeps. From then on every message is one
//! bincode [`Frame`] on a typed ipc channel, which keeps `try_recv_timeout` and select.

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

use crate::codec::Frame;
use crate::{Context, Outcome, Task};

/// Bumped whenever a message's layout changes; both sides refuse a peer of another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// What a worker sends through the one-shot server when it connects.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bootstrap {
    /// An encoded [`Hello`].
    pub hello: Frame,
    /// Where the coordinator sends [`ToWorker`] frames.
    pub to_worker: IpcSender<Frame>,
    /// Where the coordinator receives [`ToCoordinator`] frames.
    pub from_worker: IpcReceiver<Frame>,
}

/// A worker's introduction. `protocol` comes first so that it can be read on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub worker_id: u32,
    pub pid: u32,
}

/// Coordinator -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// The run's shared settings; sent once, before any task.
    Setup(Context),
    /// A batch of tasks, run in order; their outcomes may come back in several batches.
    Tasks(Vec<Task>),
    /// Finish the current batch, then exit.
    Shutdown,
}

/// [`ToWorker`] by reference, for encoding without copying a batch: serde gives both
/// the same variants in the same order, so their frames are byte for byte the same.
#[derive(Debug, Serialize)]
pub enum ToWorkerRef<'a> {
    Setup(&'a Context),
    Tasks(&'a [Task]),
    Shutdown,
}

/// Worker -> coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToCoordinator {
    /// Outcomes of tasks, in the order the worker ran them.
    Outcomes(Vec<Outcome>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, decode, encode, CodecError, MAX_FRAME_BYTES};
    use crate::{ErrorKind, Input, TaskError, Value};
    use rand::{Rng, SeedableRng};

    fn sample_tasks() -> ToWorker {
        ToWorker::Tasks(vec![
            Task {
                index: 0,
                attempt: 1,
                input: Input::Noop {
                    payload: vec![1, 2, 3],
                    fault: Some(crate::workload::fault::Fault {
                        kind: crate::workload::fault::FaultKind::Hang,
                        attempts: 2,
                    }),
                },
            },
            Task {
                index: u64::MAX,
                attempt: 7,
                input: Input::Io { ms: 300 },
            },
            Task {
                index: 2,
                attempt: 1,
                input: Input::Cpu { iters: 1 << 40 },
            },
        ])
    }

    fn sample_outcomes() -> ToCoordinator {
        ToCoordinator::Outcomes(vec![
            Outcome {
                index: 0,
                attempt: 1,
                result: Ok(Value::Noop {
                    payload: vec![9; 1000],
                }),
                run_us: 3,
                trace: None,
            },
            Outcome {
                index: 1,
                attempt: 2,
                result: Ok(Value::Cpu { total: 12345 }),
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

    #[test]
    fn every_message_round_trips() {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            worker_id: 3,
            pid: 4242,
        };
        assert_eq!(decode::<Hello>(&encode(&hello).unwrap()).unwrap(), hello);
        for msg in [
            ToWorker::Setup(Context {
                seed: 7,
                ..Context::default()
            }),
            sample_tasks(),
            ToWorker::Shutdown,
        ] {
            assert_eq!(decode::<ToWorker>(&encode(&msg).unwrap()).unwrap(), msg);
        }
        let msg = sample_outcomes();
        assert_eq!(
            decode::<ToCoordinator>(&encode(&msg).unwrap()).unwrap(),
            msg
        );
    }

    #[test]
    fn borrowed_messages_encode_like_owned_ones() {
        let ToWorker::Tasks(tasks) = sample_tasks() else {
            unreachable!()
        };
        let context = Context {
            seed: 9,
            gil: true,
            ..Context::default()
        };
        let pairs = [
            (
                encode(&ToWorkerRef::Tasks(&tasks)),
                encode(&ToWorker::Tasks(tasks.clone())),
            ),
            (
                encode(&ToWorkerRef::Setup(&context)),
                encode(&ToWorker::Setup(context.clone())),
            ),
            (encode(&ToWorkerRef::Shutdown), encode(&ToWorker::Shutdown)),
        ];
        for (borrowed, owned) in pairs {
            assert_eq!(borrowed.unwrap(), owned.unwrap());
        }
    }

    #[test]
    fn hello_version_readable_alone() {
        let frame = encode(&Hello {
            protocol: 99,
            worker_id: 1,
            pid: 2,
        })
        .unwrap();
        assert_eq!(codec::decode_prefix_u32(&frame).unwrap(), 99);
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let frame = encode(&sample_outcomes()).unwrap();
        for cut in 0..frame.len() {
            assert!(
                decode::<ToCoordinator>(&frame[..cut]).is_err(),
                "a frame cut to {cut} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut frame = encode(&ToWorker::Shutdown).unwrap().into_vec();
        frame.push(0);
        assert!(matches!(
            decode::<ToWorker>(&frame),
            Err(CodecError::Trailing { trailing: 1, .. })
        ));
    }

    #[test]
    fn length_prefix_beyond_the_limit_is_rejected_without_allocating() {
        // ToCoordinator::Outcomes (variant 0), one outcome, index 0, attempt 1, Ok (0),
        // Value::Noop (0), then a payload length of u64::MAX as a varint (0xFD marks 8 bytes).
        let mut frame = vec![0u8, 1, 0, 1, 0, 0, 0xFD];
        frame.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = decode::<ToCoordinator>(&frame).unwrap_err();
        assert!(
            err.to_string().contains("limit") || err.to_string().contains("Limit"),
            "unexpected error: {err}"
        );
        // A length just past the limit is refused too, not only absurd ones.
        let mut frame = vec![0u8, 1, 0, 1, 0, 0, 0xFC];
        frame.extend_from_slice(&((MAX_FRAME_BYTES as u32) + 1).to_le_bytes());
        assert!(decode::<ToCoordinator>(&frame).is_err());
    }

    #[test]
    fn random_garbage_is_rejected_without_panicking() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.random_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Some short byte strings are valid messages (e.g. [2] is Shutdown); what
            // matters is that nothing panics or allocates without bound.
            if decode::<ToWorker>(&bytes).is_ok() {
                accepted += 1;
            }
            let _ = decode::<ToCoordinator>(&bytes);
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
            decode::<ToWorker>(&frame),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
