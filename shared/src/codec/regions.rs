//! Shared-memory regions reused from message to message. A fresh memfd per bulk frame
//! costs more than the copy it saves: the sender faults in and zeroes every page, the
//! receiver maps and faults them again, and both unmap them. Instead each sender keeps a
//! few regions ([`Outbox`]), hands a region's handle to the receiver once, and from then
//! on names it by id and length; the receiver keeps its mappings ([`Inbox`]).
//!
//! A region starts with a state word that the receiver sets back to free once it has
//! decoded the frame, so a region returns to its sender without a message of its own.
//! A sender writes only into a region that is free, and falls back to a one-off memfd
//! when none is; a receiver checks every id and length it is given.
//!
//! What this does not guard against: a peer that shrinks a region's memfd it was handed
//! makes the other side's next access to it fault (SIGBUS). ipc-channel's memfds cannot be
//! sealed; one-off memfds had the same exposure. The pool's peers are its own workers.

use std::sync::atomic::{AtomicU32, Ordering};

use ipc_channel::ipc::IpcSharedMemory;
use serde::{Deserialize, Serialize};

use super::{frame_len, CodecError, Envelope, CONFIG, MAX_FRAME_BYTES, SHARED_MEMORY_THRESHOLD};

/// The most regions one sender keeps. One suffices while a single message is in flight;
/// more cover the few batches a pipeline has queued before the reader takes them.
pub const MAX_REGIONS: usize = 4;

/// The largest frame a region carries (a batch cut at [`super::BATCH_BYTES_TARGET`], or one
/// task of [`super::MAX_PAYLOAD_BYTES`]); a bigger one travels in a one-off memfd, so
/// regions, which stay mapped, never hold more than this each.
pub const MAX_REGION_FRAME_BYTES: usize = super::MAX_PAYLOAD_BYTES + (1 << 20);

/// The smallest region made: frames from the threshold up to this size share one.
const MIN_REGION_BYTES: usize = 256 << 10;

/// Region sizes are multiples of this, so frames a few bytes apart share a region size.
const REGION_ALIGN: usize = 64 << 10;

/// Bytes before a region's frame: its state word, alone on its cache line.
const HEADER_BYTES: usize = 64;

/// The state word of a region the receiver is done with (a new memfd reads as zero).
const FREE: u32 = 0;
/// The state word of a region whose frame the receiver has not decoded yet.
const IN_USE: u32 = 1;

/// A frame in one of the sender's regions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionFrame {
    /// The region, below [`MAX_REGIONS`].
    pub id: u32,
    /// The frame's length; the frame starts after the region's header.
    pub len: u32,
    /// The region itself, when the receiver has not seen it yet (its first use, or a
    /// bigger region replacing the one of this id).
    pub region: Option<IpcSharedMemory>,
}

/// The state word of a region mapped by this process.
fn state(region: &mut IpcSharedMemory) -> &AtomicU32 {
    // SAFETY: the mapping is this process's own and is only touched through this word and
    // through frames that the state word hands over; the pointer is page aligned (mmap),
    // the region is at least `HEADER_BYTES` long (checked by both sides before this is
    // called), and the peer accesses the word only atomically too.
    unsafe { AtomicU32::from_ptr(region.deref_mut().as_mut_ptr().cast::<u32>()) }
}

/// The regions a sender writes its bulk frames into.
#[derive(Debug, Default)]
pub struct Outbox {
    /// By id. Created on demand, so a sender of small frames holds none.
    regions: Vec<IpcSharedMemory>,
}

impl Outbox {
    /// An outbox with no region yet.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Encodes one message for an ipc channel: inline when small, else into a free region
    /// (made or grown when none fits), else into a one-off memfd.
    pub fn encode<T: Serialize>(&mut self, message: &T) -> Result<Envelope, CodecError> {
        let len = frame_len(message)?;
        if !(SHARED_MEMORY_THRESHOLD..=MAX_REGION_FRAME_BYTES).contains(&len) {
            return super::encode_envelope_of_len(message, len);
        }
        let Some((id, announce)) = self.region_for(HEADER_BYTES + len) else {
            return super::encode_envelope_of_len(message, len);
        };
        let region = &mut self.regions[id];
        // SAFETY: the region's state word said free: the receiver is done reading it, and
        // this process has no other mapping of it (an announced copy is dropped once sent).
        let bytes = unsafe { region.deref_mut() };
        let written = bincode::serde::encode_into_slice(
            message,
            &mut bytes[HEADER_BYTES..HEADER_BYTES + len],
            CONFIG,
        )?;
        debug_assert_eq!(written, len);
        state(region).store(IN_USE, Ordering::Relaxed);
        Ok(Envelope::Region(RegionFrame {
            id: id as u32,
            len: len as u32,
            region: announce.then(|| region.clone()),
        }))
    }

    /// A free region of at least `needed` bytes, and whether the receiver has yet to see
    /// it: an existing one that fits, else a free one replaced by a bigger one, else a
    /// new one while there are fewer than [`MAX_REGIONS`].
    fn region_for(&mut self, needed: usize) -> Option<(usize, bool)> {
        let mut too_small = None;
        for (id, region) in self.regions.iter_mut().enumerate() {
            if state(region).load(Ordering::Acquire) != FREE {
                continue;
            }
            if region.len() >= needed {
                return Some((id, false));
            }
            too_small.get_or_insert(id);
        }
        let (id, grown_from) = match too_small {
            Some(id) => (id, self.regions[id].len()),
            None if self.regions.len() < MAX_REGIONS => (self.regions.len(), 0),
            None => return None,
        };
        let capacity = region_capacity(needed, grown_from);
        // Filling it faults every page in now, once, rather than on each first use.
        let region = IpcSharedMemory::from_byte(0, capacity);
        if id == self.regions.len() {
            self.regions.push(region);
        } else {
            self.regions[id] = region;
        }
        Some((id, true))
    }
}

/// The size of a region for `needed` bytes replacing one of `old` bytes: at least double
/// the old one, so a run of growing frames replaces a region only a few times, and never
/// beyond what the largest region frame needs.
fn region_capacity(needed: usize, old: usize) -> usize {
    let wanted = needed.max(old.saturating_mul(2)).max(MIN_REGION_BYTES);
    let rounded = wanted.div_ceil(REGION_ALIGN) * REGION_ALIGN;
    rounded
        .min((HEADER_BYTES + MAX_REGION_FRAME_BYTES).next_multiple_of(REGION_ALIGN))
        .max(needed)
}

/// Hands `read` a frame of its own, unless it is beyond [`MAX_FRAME_BYTES`].
fn read_whole<R>(
    frame: &[u8],
    read: impl FnOnce(&[u8]) -> Result<R, CodecError>,
) -> Result<R, CodecError> {
    match frame.len() {
        len if len > MAX_FRAME_BYTES => Err(CodecError::TooLarge { len }),
        _ => read(frame),
    }
}

/// A receiver's mappings of its peer's regions.
#[derive(Debug, Default)]
pub struct Inbox {
    /// By id; `None` until the peer sends the region.
    regions: Vec<Option<IpcSharedMemory>>,
}

impl Inbox {
    /// An inbox that knows no region yet.
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// Decodes the message an envelope carries; its region, if any, goes back to the
    /// sender.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        envelope: Envelope,
    ) -> Result<T, CodecError> {
        self.read(envelope, super::decode)
    }

    /// Hands `read` the frame an envelope carries, then gives its region, if any, back
    /// to the sender: `read` must copy out whatever it keeps. An unknown region, or a
    /// length beyond the region or [`MAX_FRAME_BYTES`], is an error, never a panic.
    pub fn read<R>(
        &mut self,
        envelope: Envelope,
        read: impl FnOnce(&[u8]) -> Result<R, CodecError>,
    ) -> Result<R, CodecError> {
        match envelope {
            Envelope::Inline(frame) => read_whole(&frame, read),
            Envelope::Shared(memory) => read_whole(&memory, read),
            Envelope::Region(frame) => self.read_region(frame, read),
        }
    }

    fn read_region<R>(
        &mut self,
        frame: RegionFrame,
        read: impl FnOnce(&[u8]) -> Result<R, CodecError>,
    ) -> Result<R, CodecError> {
        let RegionFrame { id, len, region } = frame;
        let bad = |reason| CodecError::Region { id, len, reason };
        let index = usize::try_from(id)
            .ok()
            .filter(|&i| i < MAX_REGIONS)
            .ok_or(bad("no such region"))?;
        if self.regions.len() <= index {
            self.regions.resize_with(index + 1, || None);
        }
        let slot = &mut self.regions[index];
        if let Some(region) = region {
            if region.len() < HEADER_BYTES {
                return Err(bad("region smaller than its header"));
            }
            *slot = Some(region);
        }
        let region = slot.as_mut().ok_or(bad("region not sent yet"))?;
        let len = len as usize;
        if len > MAX_FRAME_BYTES || len > region.len() - HEADER_BYTES {
            return Err(bad("frame beyond the region"));
        }
        let result = read(&region[HEADER_BYTES..HEADER_BYTES + len]);
        state(region).store(FREE, Ordering::Release);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::bytes_with_frame_len;
    use crate::codec::{encode, MAX_PAYLOAD_BYTES};
    use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
    use serde_bytes::ByteBuf;

    /// A sender and a receiver joined by a real ipc channel, as the two processes are.
    struct Link {
        outbox: Outbox,
        inbox: Inbox,
        tx: IpcSender<Envelope>,
        rx: IpcReceiver<Envelope>,
    }

    impl Link {
        fn new() -> Link {
            let (tx, rx) = ipc::channel().unwrap();
            Link {
                outbox: Outbox::new(),
                inbox: Inbox::new(),
                tx,
                rx,
            }
        }

        /// Sends `bytes` and returns what went over the channel, not decoded yet.
        fn send(&mut self, bytes: &ByteBuf) -> Envelope {
            self.tx.send(self.outbox.encode(bytes).unwrap()).unwrap();
            self.rx.recv().unwrap()
        }

        fn round_trip(&mut self, bytes: &ByteBuf) -> Envelope {
            let envelope = self.send(bytes);
            let copy = envelope.clone();
            assert_eq!(&self.inbox.decode::<ByteBuf>(envelope).unwrap(), bytes);
            copy
        }
    }

    /// Whether an envelope hands over a region's handle (as opposed to naming one the
    /// receiver has).
    fn announces(envelope: &Envelope) -> bool {
        matches!(
            envelope,
            Envelope::Region(RegionFrame {
                region: Some(_),
                ..
            })
        )
    }

    #[test]
    fn one_region_carries_many_frames_of_varying_size_interleaved_with_small_ones() {
        let mut link = Link::new();
        let sizes = [
            SHARED_MEMORY_THRESHOLD - 1,
            SHARED_MEMORY_THRESHOLD,
            SHARED_MEMORY_THRESHOLD + 1,
            0,
            1 << 20,
            300,
            100_000,
            (1 << 20) + 5,
            SHARED_MEMORY_THRESHOLD,
            MAX_PAYLOAD_BYTES + 4,
            70_000,
            1,
            (3 << 20) + 17,
        ];
        let mut announced = 0;
        for round in 0..20 {
            for frame_len in sizes {
                let bytes = bytes_with_frame_len(frame_len.max(1));
                let envelope = link.round_trip(&bytes);
                let kind = match &envelope {
                    Envelope::Inline(_) => "inline",
                    Envelope::Shared(_) => "shared",
                    Envelope::Region(_) => "region",
                };
                let expected = if frame_len < SHARED_MEMORY_THRESHOLD {
                    "inline"
                } else {
                    "region"
                };
                assert_eq!(kind, expected, "round {round}, frame of {frame_len} bytes");
                announced += usize::from(announces(&envelope));
            }
        }
        // Each message is read before the next is sent: one region serves them all,
        // handed over once and again only when it grows (to 256 KiB, 1 and 16 MiB).
        assert_eq!(link.outbox.regions.len(), 1);
        assert!(announced <= 4, "region sent {announced} times");
    }

    #[test]
    fn busy_regions_are_not_overwritten_and_the_overflow_goes_in_one_off_memory() {
        let mut link = Link::new();
        let frames: Vec<ByteBuf> = (0..MAX_REGIONS + 2)
            .map(|i| bytes_with_frame_len(SHARED_MEMORY_THRESHOLD + 1000 * i))
            .collect();
        // Nothing decoded yet: every region stays busy.
        let sent: Vec<Envelope> = frames.iter().map(|bytes| link.send(bytes)).collect();
        for (i, envelope) in sent.iter().enumerate() {
            match envelope {
                Envelope::Region(frame) => assert_eq!(frame.id as usize, i),
                Envelope::Shared(_) => assert!(i >= MAX_REGIONS, "message {i} not in a region"),
                Envelope::Inline(_) => panic!("message {i} inline"),
            }
        }
        for (envelope, bytes) in sent.into_iter().zip(&frames) {
            assert_eq!(&link.inbox.decode::<ByteBuf>(envelope).unwrap(), bytes);
        }
        // Decoded, the regions are free again and no new one is made.
        for bytes in &frames {
            let envelope = link.round_trip(bytes);
            assert!(
                matches!(envelope, Envelope::Region(RegionFrame { region: None, .. })),
                "{envelope:?}"
            );
        }
        assert_eq!(link.outbox.regions.len(), MAX_REGIONS);
    }

    #[test]
    fn frames_beyond_the_region_limit_go_in_one_off_memory() {
        let mut link = Link::new();
        let bytes = bytes_with_frame_len(MAX_REGION_FRAME_BYTES + 1);
        assert!(matches!(link.round_trip(&bytes), Envelope::Shared(_)));
        assert!(link.outbox.regions.is_empty());
    }

    #[test]
    fn a_region_grows_when_a_frame_does_not_fit() {
        for (needed, old) in [
            (100, 0),
            (1 << 20, 256 << 10),
            (5 << 20, 4 << 20),
            (MAX_REGION_FRAME_BYTES + 64, 16 << 20),
        ] {
            let capacity = region_capacity(needed, old);
            assert!(capacity >= needed, "{needed} {old}");
            assert!(
                capacity >= 2 * old || capacity >= MAX_REGION_FRAME_BYTES,
                "{needed} {old}"
            );
            assert!(capacity <= HEADER_BYTES + MAX_REGION_FRAME_BYTES + REGION_ALIGN);
        }
    }

    /// A region of `len` bytes announced to an inbox, as a peer would.
    fn announce(
        inbox: &mut Inbox,
        id: u32,
        len: u32,
        region_bytes: usize,
    ) -> Result<Vec<u8>, CodecError> {
        let envelope = Envelope::Region(RegionFrame {
            id,
            len,
            region: Some(IpcSharedMemory::from_byte(0, region_bytes)),
        });
        inbox.read(envelope, |frame| Ok(frame.to_vec()))
    }

    #[test]
    fn hostile_region_ids_and_lengths_are_refused() {
        let mut inbox = Inbox::new();
        let refused = |result: Result<Vec<u8>, CodecError>, what: &str| match result {
            Err(CodecError::Region { .. }) => {}
            other => panic!("{what}: {other:?}"),
        };
        refused(
            announce(&mut inbox, MAX_REGIONS as u32, 1, 4096),
            "id past the last",
        );
        refused(announce(&mut inbox, u32::MAX, 1, 4096), "id u32::MAX");
        refused(
            announce(&mut inbox, 0, 1, 16),
            "region smaller than its header",
        );
        refused(
            inbox.read(
                Envelope::Region(RegionFrame {
                    id: 1,
                    len: 1,
                    region: None,
                }),
                |frame| Ok(frame.to_vec()),
            ),
            "region never sent",
        );
        refused(
            announce(&mut inbox, 0, 4096, 4096),
            "frame past the region's end",
        );
        refused(announce(&mut inbox, 0, u32::MAX, 4096), "length u32::MAX");
        // The largest frame the region holds is fine, and the region is then known.
        let frame = announce(&mut inbox, 0, 4096 - HEADER_BYTES as u32, 4096).unwrap();
        assert_eq!(frame.len(), 4096 - HEADER_BYTES);
        let known = Envelope::Region(RegionFrame {
            id: 0,
            len: 10,
            region: None,
        });
        assert_eq!(inbox.read(known, |frame| Ok(frame.len())).unwrap(), 10);
    }

    #[test]
    fn a_region_frame_decodes_like_the_inline_one() {
        let mut link = Link::new();
        for frame_len in [SHARED_MEMORY_THRESHOLD, MAX_PAYLOAD_BYTES + 4] {
            let bytes = bytes_with_frame_len(frame_len);
            let envelope = link.send(&bytes);
            let frame = link
                .inbox
                .read(envelope, |frame| Ok(frame.to_vec()))
                .unwrap();
            assert_eq!(frame, *encode(&bytes).unwrap());
        }
    }
}
