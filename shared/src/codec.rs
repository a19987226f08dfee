//! The one place messages become bytes and bytes become messages: bincode 2 with a decode
//! size limit, so a corrupt or hostile length prefix is an error, never a huge allocation.
//! Swapping the codec means changing this file only.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest frame either side will decode. Batches are cut well below it (see
/// [`BATCH_BYTES_TARGET`]); anything bigger is treated as corrupt.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// The bulk-data size the coordinator aims a batch at, far below [`MAX_FRAME_BYTES`].
pub const BATCH_BYTES_TARGET: usize = 4 << 20;

/// The largest `noop` payload a single task may carry.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;

const CONFIG: Configuration<LittleEndian, Varint, Limit<MAX_FRAME_BYTES>> =
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>();

/// An encoded message as it crosses the process boundary. `ByteBuf` makes ipc-channel's own
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
