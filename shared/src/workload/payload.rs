//! The `noop` workload's payload: bytes that differ from task to task, made and checked
//! at memory speed, so that `run noop --payload` measures the transport rather than the
//! making and checking of its bytes.
//!
//! The payload of task `index` is a sequence of little-endian 64-bit words: the first is
//! a hash of `index`, each next one adds [`STEP`]; a length that is not a multiple of 8
//! ends with the first bytes of the next word. An echo of another task, or one damaged,
//! shifted or cut, differs from it.

/// What each word adds to the one before: odd (so the sequence only repeats after 2^64
/// words) and with its bits spread over every byte (2^64 divided by the golden ratio).
const STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// Words compared before the check looks at the result: the loop over a block has no
/// early exit, so it compiles to vector instructions, while a damaged payload still stops
/// the check within a few KiB.
const BLOCK_WORDS: usize = 512;

fn first_word(index: u64) -> u64 {
    crate::seed::fnv1a(&index.to_le_bytes())
}

/// The payload of `noop` task `index`, `len` bytes long.
pub fn noop_payload(index: u64, len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len];
    let (words, tail) = payload.as_chunks_mut::<8>();
    let mut word = first_word(index);
    for bytes in words {
        *bytes = word.to_le_bytes();
        word = word.wrapping_add(STEP);
    }
    tail.copy_from_slice(&word.to_le_bytes()[..tail.len()]);
    payload
}

/// Whether `payload` is exactly what [`noop_payload`] makes for task `index` at its
/// length, without making a copy to compare with.
pub fn noop_payload_intact(index: u64, payload: &[u8]) -> bool {
    let (words, tail) = payload.as_chunks::<8>();
    let mut word = first_word(index);
    for block in words.chunks(BLOCK_WORDS) {
        let mut differs = 0;
        for bytes in block {
            differs |= u64::from_le_bytes(*bytes) ^ word;
            word = word.wrapping_add(STEP);
        }
        if differs != 0 {
            return false;
        }
    }
    *tail == word.to_le_bytes()[..tail.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths around the word and the block: empty, shorter than a word, a word and a
    /// bit, a block and a bit, and a size that is a multiple of neither.
    const LENGTHS: [usize; 12] = [0, 1, 7, 8, 9, 15, 16, 4095, 4096, 4097, 4103, 100_003];

    #[test]
    fn a_payload_is_intact_at_every_length() {
        for len in LENGTHS {
            for index in [0, 1, 41, u64::MAX] {
                let payload = noop_payload(index, len);
                assert_eq!(payload.len(), len);
                assert!(
                    noop_payload_intact(index, &payload),
                    "index {index} len {len}"
                );
            }
        }
    }

    #[test]
    fn a_shorter_payload_is_the_start_of_a_longer_one() {
        let long = noop_payload(7, 4103);
        for len in LENGTHS.into_iter().filter(|&l| l <= long.len()) {
            assert_eq!(noop_payload(7, len), long[..len], "len {len}");
        }
    }

    #[test]
    fn every_damaged_byte_is_caught() {
        for len in [1, 9, 4103] {
            let payload = noop_payload(3, len);
            for at in 0..len {
                let mut damaged = payload.clone();
                damaged[at] ^= 0x10;
                assert!(!noop_payload_intact(3, &damaged), "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn another_tasks_echo_or_a_cut_or_shifted_one_is_caught() {
        let payload = noop_payload(5, 100);
        assert!(!noop_payload_intact(6, &payload));
        assert!(!noop_payload_intact(4, &payload));
        // Cut or shifted: the bytes no longer start where task 5's do.
        assert!(!noop_payload_intact(5, &payload[1..]));
        assert!(!noop_payload_intact(5, &payload[8..]));
        // Only the empty payload is the same for every task.
        assert!(noop_payload_intact(6, &[]));
        assert_ne!(noop_payload(5, 8), noop_payload(6, 8));
    }

    #[test]
    fn the_pattern_is_fixed_by_its_definition() {
        // The first bytes of task 0: FNV-1a of eight zero bytes, then plus STEP, little
        // endian. A change here changes what every run of earlier builds would check.
        let hash = first_word(0);
        assert_eq!(hash, 0xa8c7_f832_281a_39c5);
        let mut expected = hash.to_le_bytes().to_vec();
        expected.extend_from_slice(&hash.wrapping_add(STEP).to_le_bytes()[..3]);
        assert_eq!(noop_payload(0, 11), expected);
    }
}
