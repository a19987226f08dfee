//! `#[serde(with = "workpool::codec::bytes")]` on a `Vec<u8>`: the same bytes on the wire
//! as `serde_bytes`, decoded with one copy instead of two. `serde_bytes` asks for an owned
//! buffer, which bincode makes by zeroing a new vector and then copying into it; asking
//! for the bytes themselves lets bincode lend the frame's bytes, copied out once.

use std::fmt;

use serde::de::{Deserializer, Error, SeqAccess, Visitor};
use serde::Serializer;

/// Serializes the bytes as one block, as `serde_bytes` does.
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Deserializes the bytes from whatever form the format offers them in.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_bytes(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte array")
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Vec<u8>, E> {
        Ok(text.as_bytes().to_vec())
    }

    fn visit_string<E: Error>(self, text: String) -> Result<Vec<u8>, E> {
        Ok(text.into_bytes())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The size hint comes from the input: trust it only up to a bound.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::codec::{decode, encode};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ours(#[serde(with = "super")] Vec<u8>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Theirs(#[serde(with = "serde_bytes")] Vec<u8>);

    #[test]
    fn the_wire_is_serde_bytes_one_both_ways() {
        for len in [0, 1, 127, 128, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let ours = encode(&Ours(bytes.clone())).unwrap();
            assert_eq!(ours, encode(&Theirs(bytes.clone())).unwrap(), "{len} bytes");
            assert_eq!(decode::<Theirs>(&ours).unwrap().0, bytes);
            assert_eq!(decode::<Ours>(&ours).unwrap().0, bytes);
        }
    }

    #[test]
    fn a_self_describing_format_may_offer_a_sequence_or_a_string() {
        use serde::de::value::{Error, SeqDeserializer, StrDeserializer};
        let seq = SeqDeserializer::<_, Error>::new([1u8, 2, 255].into_iter());
        assert_eq!(super::deserialize(seq).unwrap(), [1, 2, 255]);
        let text = StrDeserializer::<Error>::new("ab");
        assert_eq!(super::deserialize(text).unwrap(), b"ab");
    }

    #[test]
    fn a_length_beyond_the_frame_is_refused() {
        // A length prefix of 1000 (0xFB, then a u16) with 3 bytes after it.
        let frame = [0xFB, 0xE8, 0x03, 1, 2, 3];
        assert!(decode::<Ours>(&frame).is_err());
    }
}
