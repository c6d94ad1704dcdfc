//! Large allocations that records are sliced from, back from those records once the last is
//! dropped, to be filled again. A fresh allocation of a megabyte or so per Fetch answer or
//! per decompressed batch cost a page fault per 4 KiB, the kernel zeroing every page and
//! unmapping them again when freed: a fifth of a consumer's CPU time at 1 KB records.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::{Bytes, BytesMut};

/// An allocation a pool can hand out again: emptied, it keeps its room.
pub(crate) trait Reusable: AsRef<[u8]> + Send + Sync + 'static {
    fn with_room(len: usize) -> Self;
    fn room(&self) -> usize;
    fn empty(&mut self);
}

impl Reusable for Vec<u8> {
    fn with_room(len: usize) -> Self {
        Vec::with_capacity(len)
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn empty(&mut self) {
        self.clear();
    }
}

/// A producer's batches are written through `BytesMut`; kept as such, a sealed batch
/// needs no conversion (which would move its bytes) on its way into or out of the pool.
impl Reusable for BytesMut {
    fn with_room(len: usize) -> Self {
        BytesMut::with_capacity(len)
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn empty(&mut self) {
        self.clear();
    }
}

/// A few kept allocations; cloned handles share them.
#[derive(Debug)]
pub(crate) struct BufferPool<B: Reusable = Vec<u8>>(Arc<Kept<B>>);

impl<B: Reusable> Clone for BufferPool<B> {
    fn clone(&self) -> Self {
        BufferPool(Arc::clone(&self.0))
    }
}

#[derive(Debug)]
struct Kept<B> {
    /// Oldest first.
    idle: Mutex<VecDeque<B>>,
    max_buffers: usize,
    max_bytes: usize,
}

/// A connection's pool of frame allocations: one frame is read while the one before is
/// consumed.
impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(2, 8 << 20)
    }
}

impl<B: Reusable> BufferPool<B> {
    /// A pool that keeps at most `max_buffers` allocations of at most `max_bytes` in all;
    /// larger allocations are freed as usual.
    pub(crate) fn new(max_buffers: usize, max_bytes: usize) -> Self {
        BufferPool(Arc::new(Kept { idle: Mutex::new(VecDeque::new()), max_buffers, max_bytes }))
    }

    /// An empty allocation for `len` bytes: the smallest kept one that is large enough and
    /// at most a quarter larger, else a new one with a sixteenth more room, so that the next
    /// buffers, of about the same size, fit in it too. A much larger one would stay alive
    /// with the records sliced from it, as memory the consumer's prefetch bound (which counts
    /// frames) does not see.
    pub(crate) fn take(&self, len: usize) -> B {
        let mut idle = self.0.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let fits = |room: usize| room >= len && room - len <= len / 4;
        let fit = (0..idle.len()).filter(|&i| fits(idle[i].room())).min_by_key(|&i| idle[i].room());
        fit.and_then(|i| idle.remove(i)).unwrap_or_else(|| B::with_room(len.saturating_add(len / 16)))
    }

    /// `buffer` as `Bytes`, whose allocation comes back here when the last slice of it is
    /// dropped (unless the pool is gone by then).
    pub(crate) fn freeze(&self, buffer: B) -> Bytes {
        Bytes::from_owner(Returning { buffer: Some(buffer), pool: Arc::downgrade(&self.0) })
    }

    /// Keeps `buffer` for a later [`BufferPool::take`], if there is room for it.
    pub(crate) fn give_back(&self, buffer: B) {
        self.0.keep(buffer);
    }
}

impl<B: Reusable> Kept<B> {
    fn keep(&self, mut buffer: B) {
        if buffer.room() == 0 || buffer.room() > self.max_bytes {
            return;
        }
        buffer.empty();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.push_back(buffer);
        // The oldest go first: the pool follows the sizes buffers have lately.
        while idle.len() > self.max_buffers || idle.iter().map(B::room).sum::<usize>() > self.max_bytes {
            idle.pop_front();
        }
    }
}

/// An allocation on its way back to its pool.
struct Returning<B: Reusable> {
    buffer: Option<B>,
    pool: Weak<Kept<B>>,
}

impl<B: Reusable> AsRef<[u8]> for Returning<B> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], AsRef::as_ref)
    }
}

impl<B: Reusable> Drop for Returning<B> {
    fn drop(&mut self) {
        if let (Some(pool), Some(buffer)) = (self.pool.upgrade(), self.buffer.take()) {
            pool.keep(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL_BYTES: usize = 8 << 20;

    #[test]
    fn the_pool_keeps_a_few_allocations_for_frames_of_about_their_size() {
        const MIB: usize = 1 << 20;
        let pool = BufferPool::default();
        let idle = |pool: &BufferPool| pool.0.idle.lock().unwrap().iter().map(Vec::capacity).collect::<Vec<_>>();
        assert_eq!(pool.take(MIB).capacity(), MIB + MIB / 16, "room for frames a little larger");
        let frames: Vec<Bytes> = [MIB, 2 * MIB, 3 * MIB].map(|c| pool.freeze(Vec::with_capacity(c))).into();
        drop(frames);
        assert_eq!(idle(&pool), [2 * MIB, 3 * MIB], "the oldest goes first");
        drop(pool.freeze(Vec::with_capacity(POOL_BYTES + 1)));
        assert_eq!(idle(&pool), [2 * MIB, 3 * MIB], "too large to keep");
        // The smallest that fits is taken, never one more than a quarter larger than the frame.
        assert_eq!(pool.take(2 * MIB - 1000).capacity(), 2 * MIB);
        assert_eq!(pool.take(2 * MIB).capacity(), 2 * MIB + 2 * MIB / 16, "3 MiB kept for 2 MiB");
        assert_eq!(pool.take(MIB).capacity(), MIB + MIB / 16, "3 MiB kept for 1 MiB");
        assert_eq!(idle(&pool), [3 * MIB]);
        // Kept allocations stay within the pool's bytes.
        drop(pool.freeze(Vec::with_capacity(POOL_BYTES - 2 * MIB)));
        assert_eq!(idle(&pool), [POOL_BYTES - 2 * MIB], "within the pool's bytes");
        // Frames that outlive their pool are freed.
        let orphan = pool.freeze(pool.take(10));
        drop(pool);
        drop(orphan);
    }
}
