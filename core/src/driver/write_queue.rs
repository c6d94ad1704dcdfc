//! Where an adapter keeps a connection's bytes waiting to be written: the pieces the client
//! hands out ([`crate::Transmit::Send`]), written several at a time with one vectored write.
//!
//! A Produce request comes out in pieces (its head, then each large record set from the
//! memory it was sealed in, then what follows): written one call each, every request would
//! cost several system calls and, with `TCP_NODELAY`, several small segments.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// Most pieces given to one vectored write (Linux takes up to 1024).
pub const MAX_GATHER: usize = 64;

/// One connection's pieces waiting to be written, oldest first.
#[derive(Debug, Default)]
pub struct WriteQueue {
    pieces: VecDeque<Bytes>,
}

impl WriteQueue {
    /// An empty queue.
    pub fn new() -> WriteQueue {
        WriteQueue::default()
    }

    /// Queues `bytes` behind what waits.
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.pieces.push_back(bytes);
        }
    }

    /// Queues what `next` yields, until it yields nothing or a write's worth of pieces
    /// ([`MAX_GATHER`]) waits: the pieces already handed over go out in the same write.
    pub fn gather(&mut self, mut next: impl FnMut() -> Option<Bytes>) {
        while self.pieces.len() < MAX_GATHER {
            match next() {
                Some(bytes) => self.push(bytes),
                None => return,
            }
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// How many pieces wait.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// The first pieces (up to [`MAX_GATHER`]), for one vectored write.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.pieces.iter().take(MAX_GATHER).map(|b| IoSlice::new(b)).collect()
    }

    /// Drops the first `written` bytes: what a write reported taking.
    pub fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.pieces.front_mut() else { return };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.pieces.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_of_any_size_take_the_pieces_in_order() {
        let pieces: Vec<Bytes> = (1..=9u8).map(|n| Bytes::from(vec![n; usize::from(n) * 3])).collect();
        let all: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
        for step in [1, 2, 5, 7, 30, 1000] {
            let mut queue = WriteQueue::new();
            pieces.iter().cloned().for_each(|b| queue.push(b));
            queue.push(Bytes::new());
            assert_eq!(queue.len(), 9, "empty pieces are not queued");
            let mut written = Vec::new();
            while !queue.is_empty() {
                let offered: Vec<u8> = queue.slices().iter().flat_map(|s| s.iter().copied()).collect();
                let n = step.min(offered.len());
                written.extend_from_slice(&offered[..n]);
                queue.advance(n);
            }
            assert!(written == all, "step {step}");
        }
    }

    #[test]
    fn one_write_offers_at_most_max_gather_pieces() {
        let mut queue = WriteQueue::new();
        let mut left = MAX_GATHER + 5;
        queue.gather(|| {
            (left > 0).then(|| {
                left -= 1;
                Bytes::from_static(b"ab")
            })
        });
        assert_eq!((queue.len(), left), (MAX_GATHER, 5), "gathering stops at a write's worth");
        (0..5).for_each(|_| queue.push(Bytes::from_static(b"ab")));
        assert_eq!(queue.slices().len(), MAX_GATHER);
        queue.advance(2 * MAX_GATHER + 1);
        assert_eq!(queue.len(), 5);
        assert_eq!(&*queue.slices()[0], b"b");
    }
}
