//! The reorder buffer: records that finished before an earlier one wait here, so that
//! input order hands each out as soon as it and every earlier one are known.

use std::collections::BTreeMap;

/// Records by task index, waiting for the ones before them.
pub(crate) struct ReorderBuffer<R> {
    /// The index of the next record to hand out.
    next: u64,
    waiting: BTreeMap<u64, R>,
}

impl<R> ReorderBuffer<R> {
    pub fn new() -> Self {
        ReorderBuffer {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// The index of the next record to hand out: every earlier one has been.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Whether the record of `index` is next in line and can skip the buffer (the common
    /// case: then [`ReorderBuffer::skip`] says it was handed out).
    pub fn is_next(&self, index: u64) -> bool {
        index == self.next
    }

    /// The next record in line was handed out without entering the buffer.
    pub fn skip(&mut self) {
        self.next += 1;
    }

    /// Keeps the record of `index` until every earlier one is handed out.
    pub fn insert(&mut self, index: u64, record: R) {
        self.waiting.insert(index, record);
    }

    /// The next record in line, if it has arrived.
    pub fn pop_ready(&mut self) -> Option<R> {
        let record = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(record)
    }

    /// Records waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out what `arrivals` make ready, as the scheduler does.
    fn replay(arrivals: &[u64]) -> Vec<u64> {
        let mut buffer = ReorderBuffer::new();
        let mut out = Vec::new();
        for &index in arrivals {
            if buffer.is_next(index) {
                out.push(index);
                buffer.skip();
            } else {
                buffer.insert(index, index);
            }
            while let Some(index) = buffer.pop_ready() {
                out.push(index);
            }
        }
        assert_eq!(buffer.len(), 0, "records left waiting");
        out
    }

    #[test]
    fn in_order_arrivals_pass_straight_through() {
        assert_eq!(replay(&[0, 1, 2, 3]), [0, 1, 2, 3]);
    }

    #[test]
    fn late_records_release_the_ones_waiting_behind_them() {
        assert_eq!(replay(&[2, 1, 3, 0, 5, 4]), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn nothing_is_handed_out_before_its_predecessors() {
        let mut buffer = ReorderBuffer::new();
        buffer.insert(1, "b");
        buffer.insert(2, "c");
        assert_eq!(buffer.pop_ready(), None);
        assert_eq!(buffer.next_index(), 0);
        buffer.insert(0, "a");
        assert_eq!(buffer.pop_ready(), Some("a"));
        assert_eq!(buffer.pop_ready(), Some("b"));
        assert_eq!(buffer.pop_ready(), Some("c"));
        assert_eq!(buffer.pop_ready(), None);
        assert_eq!(buffer.next_index(), 3);
    }

    #[test]
    fn an_empty_buffer_is_waiting_for_index_zero() {
        let mut buffer: ReorderBuffer<()> = ReorderBuffer::new();
        assert!(buffer.is_next(0));
        assert_eq!(buffer.pop_ready(), None);
    }
}
