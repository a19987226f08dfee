//! The one place messages become bytes and bytes become messages: bincode 2 with a decode
//! size limit, so a corrupt or hostile length prefix is an error, never a huge allocation.
//! Swapping the codec means changing this file only (and its `regions` module, the shared
//! memory).

pub mod bytes;
mod regions;

pub use regions::{Inbox, Outbox, RegionFrame, MAX_REGIONS, MAX_REGION_FRAME_BYTES};

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::enc::write::SizeWriter;
use ipc_channel::ipc::IpcSharedMemory;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest frame either side will decode. Batches are cut well below it (see
/// [`BATCH_BYTES_TARGET`]); anything bigger is treated as corrupt.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// The bulk-data size the coordinator aims a batch at, far below [`MAX_FRAME_BYTES`].
pub const BATCH_BYTES_TARGET: usize = 4 << 20;

/// The largest `noop` payload a single task may carry.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;

const CONFIG: Configuration<LittleEndian, Varint, Limit<MAX_FRAME_BYTES>> =
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>();

/// The frame size from which [`encode_envelope`] carries a frame in shared memory. Below
/// it, ipc-channel's inline copies cost less than creating and mapping a memfd; above it,
/// the socket's fragmenting and reassembly of the inline path costs more.
pub const SHARED_MEMORY_THRESHOLD: usize = 64 << 10;

/// An encoded message, as bytes. `ByteBuf` makes ipc-channel's own
/// serializer copy it as one block of bytes instead of element by element.
pub type Frame = serde_bytes::ByteBuf;

/// Why a message could not become a frame, or a frame a message.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // The fields are what the messages show.
pub enum CodecError {
    /// The message cannot be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    // The cause is part of the message and deliberately not a `source`, so that printing
    // the chain with `{:#}` does not say it twice.
    /// The frame is not a message of the expected type.
    #[error("corrupt frame ({len} bytes): {cause}")]
    Decode {
        len: usize,
        cause: bincode::error::DecodeError,
    },
    /// The frame holds more than one message.
    #[error("corrupt frame ({len} bytes): {trailing} bytes left over after the message")]
    Trailing { len: usize, trailing: usize },
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge { len: usize },
    /// A frame said to be in a shared-memory region that cannot hold it.
    #[error("corrupt frame: {len} bytes in shared-memory region {id}: {reason}")]
    Region {
        id: u32,
        len: u32,
        reason: &'static str,
    },
}

/// A frame as it crosses an ipc channel. Bulk frames travel in shared memory: the sender
/// encodes straight into a region the receiver maps, instead of ipc-channel copying the
/// bytes through its own serializer and the socket in fragments. Read one with an
/// [`Inbox`], which knows the sender's regions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Envelope {
    /// A frame below [`SHARED_MEMORY_THRESHOLD`], copied through the socket.
    Inline(Frame),
    /// A frame of at least [`SHARED_MEMORY_THRESHOLD`] bytes in a memory of its own, mapped
    /// by the receiver: what [`encode_envelope`] makes, and an [`Outbox`] when its regions
    /// are all busy or the frame is bigger than [`MAX_REGION_FRAME_BYTES`]. Its size is the
    /// sender's to choose; [`decode`] refuses one beyond [`MAX_FRAME_BYTES`].
    Shared(IpcSharedMemory),
    /// A frame of at least [`SHARED_MEMORY_THRESHOLD`] bytes in one of the sender's
    /// reused regions (see [`Outbox`]).
    Region(RegionFrame),
}

impl From<Frame> for Envelope {
    fn from(frame: Frame) -> Envelope {
        Envelope::Inline(frame)
    }
}

/// The length of a message's frame, counted without writing it.
fn frame_len<T: Serialize>(message: &T) -> Result<usize, CodecError> {
    let mut size = SizeWriter::default();
    bincode::serde::encode_into_writer(message, &mut size, CONFIG)?;
    let len = size.bytes_written;
    if len > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { len });
    }
    Ok(len)
}

/// Encodes one message for an ipc channel on its own: inline when small, else directly
/// into a memory of its own (sized by a first pass that only counts), so bulk bytes are
/// copied once. For a stream of messages, an [`Outbox`] reuses its memory instead.
pub fn encode_envelope<T: Serialize>(message: &T) -> Result<Envelope, CodecError> {
    encode_envelope_of_len(message, frame_len(message)?)
}

/// [`encode_envelope`] of a message whose frame is `len` bytes long.
fn encode_envelope_of_len<T: Serialize>(message: &T, len: usize) -> Result<Envelope, CodecError> {
    if len < SHARED_MEMORY_THRESHOLD {
        // The length is counted already: one exact allocation, where `encode` grows one.
        let mut bytes = Vec::with_capacity(len);
        bincode::serde::encode_into_std_write(message, &mut bytes, CONFIG)?;
        debug_assert_eq!(bytes.len(), len);
        return Ok(Envelope::Inline(Frame::from(bytes)));
    }
    let mut memory = IpcSharedMemory::from_byte(0, len);
    // SAFETY: the memory was created just above and is neither cloned nor sent yet, so
    // this is its only reader or writer.
    let written =
        bincode::serde::encode_into_slice(message, unsafe { memory.deref_mut() }, CONFIG)?;
    debug_assert_eq!(written, len);
    Ok(Envelope::Shared(memory))
}

/// Encodes one message into a frame.
pub fn encode<T: Serialize>(message: &T) -> Result<Frame, CodecError> {
    let bytes = bincode::serde::encode_to_vec(message, CONFIG)?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    Ok(Frame::from(bytes))
}

/// Decodes one message from a frame; the frame must hold exactly one message.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    let len = frame.len();
    if len > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { len });
    }
    let (message, used) = bincode::serde::decode_from_slice(frame, CONFIG)
        .map_err(|cause| CodecError::Decode { len, cause })?;
    if used != len {
        return Err(CodecError::Trailing {
            len,
            trailing: len - used,
        });
    }
    Ok(message)
}

/// Decodes only the leading `u32` of a frame: the protocol version, which every hello
/// starts with, so a peer of another version is recognised whatever the rest looks like.
pub fn decode_prefix_u32(frame: &[u8]) -> Result<u32, CodecError> {
    decode_prefix(frame)
}

/// Decodes the leading fields of a frame, ignoring whatever follows them: the part of a
/// message that every version lays out alike.
pub fn decode_prefix<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    bincode::serde::decode_from_slice(frame, CONFIG)
        .map(|(v, _)| v)
        .map_err(|cause| CodecError::Decode {
            len: frame.len(),
            cause,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::ByteBuf;

    /// Bulk bytes whose frame is exactly `frame_len` long (a length prefix, then the bytes).
    pub(super) fn bytes_with_frame_len(frame_len: usize) -> ByteBuf {
        let mut len = frame_len.saturating_sub(9);
        while encode(&ByteBuf::from(vec![0u8; len])).unwrap().len() < frame_len {
            len += 1;
        }
        let bytes = ByteBuf::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>());
        assert_eq!(encode(&bytes).unwrap().len(), frame_len);
        bytes
    }

    /// The frame an envelope carries, read as a receiver does.
    fn frame_of(envelope: Envelope) -> Vec<u8> {
        Inbox::new()
            .read(envelope, |frame| Ok(frame.to_vec()))
            .unwrap()
    }

    #[test]
    fn envelopes_carry_every_size_intact_inline_below_the_threshold_shared_above() {
        let sizes = [
            1,
            SHARED_MEMORY_THRESHOLD - 1,
            SHARED_MEMORY_THRESHOLD,
            SHARED_MEMORY_THRESHOLD + 1,
            MAX_PAYLOAD_BYTES + 4,
        ];
        for frame_len in sizes {
            let bytes = bytes_with_frame_len(frame_len);
            let envelope = encode_envelope(&bytes).unwrap();
            assert_eq!(
                matches!(envelope, Envelope::Shared(_)),
                frame_len >= SHARED_MEMORY_THRESHOLD,
                "frame of {frame_len} bytes"
            );
            let frame = frame_of(envelope.clone());
            assert_eq!(frame.len(), frame_len);
            assert_eq!(frame, *encode(&bytes).unwrap(), "{frame_len} bytes");
            assert_eq!(Inbox::new().decode::<ByteBuf>(envelope).unwrap(), bytes);
        }
        let empty = encode_envelope(&ByteBuf::new()).unwrap();
        assert!(matches!(empty, Envelope::Inline(_)));
        assert!(Inbox::new().decode::<ByteBuf>(empty).unwrap().is_empty());
    }

    #[test]
    fn envelopes_round_trip_through_an_ipc_channel() {
        let (tx, rx) = ipc_channel::ipc::channel::<Envelope>().unwrap();
        let mut inbox = Inbox::new();
        for frame_len in [1, SHARED_MEMORY_THRESHOLD, MAX_PAYLOAD_BYTES + 4] {
            let bytes = bytes_with_frame_len(frame_len);
            tx.send(encode_envelope(&bytes).unwrap()).unwrap();
            let received = rx.recv().unwrap();
            assert_eq!(inbox.decode::<ByteBuf>(received).unwrap(), bytes);
        }
    }

    #[test]
    fn a_shared_frame_beyond_the_limit_is_refused_before_decoding() {
        // The sender sizes the shared memory; the receiver maps it whatever its size.
        let hostile = Envelope::Shared(IpcSharedMemory::from_byte(0, MAX_FRAME_BYTES + 1));
        assert!(matches!(
            Inbox::new().decode::<ByteBuf>(hostile.clone()),
            Err(CodecError::TooLarge { len }) if len == MAX_FRAME_BYTES + 1
        ));
        // Not even a reader that only copies the frame out is handed it.
        let copied = Inbox::new().read(hostile, |_| -> Result<(), CodecError> {
            panic!("handed a frame beyond the limit")
        });
        assert!(matches!(copied, Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn messages_beyond_the_limit_are_not_put_in_shared_memory() {
        let bytes = ByteBuf::from(vec![0u8; MAX_FRAME_BYTES]);
        assert!(matches!(
            encode_envelope(&bytes),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
