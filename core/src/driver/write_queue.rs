//! Where an adapter keeps a connection's bytes waiting to be written: the pieces the client
//! hands out ([`crate::Transmit::Send`]), written several at a time with one vectored write.
//!
//! A Produce request comes out in pieces (its head, then each large record set from the
//! memory it was sealed in, then what follows): written one call each, every request would
//! cost several system calls and, with `TCP_NODELAY`, several small segments.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

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

/// A connection's bytes between a blocking driver and the connection's writer thread. The
/// driver writes what it has itself when the writer is idle and the socket takes the bytes
/// without blocking (the common case: one system call, no thread woken); what the socket does
/// not take at once goes to the writer thread, which may block on it. Bytes leave in the
/// order they were handed over.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    more: Condvar,
}

#[derive(Debug, Default)]
struct OutboxState {
    /// Bytes for the writer thread.
    queue: WriteQueue,
    /// The writer thread holds bytes taken from `queue`.
    writing: bool,
    closed: bool,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The driver's side: sends `pieces` (emptied) after whatever waits, writing them at once
    /// with `write_now` when the writer thread has nothing. `write_now` must never block:
    /// `WouldBlock` or `Ok(0)` leaves the rest to the writer thread (`None`: every byte goes
    /// to it). An error is that write's, and the connection's end. The adapter owns the
    /// socket and the system call (sansa-socket's `send_nonblocking`); this only keeps order.
    pub fn send(
        &self,
        write_now: Option<impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>>,
        pieces: &mut WriteQueue,
    ) -> io::Result<()> {
        let mut state = self.lock();
        if state.closed {
            *pieces = WriteQueue::new();
            return Ok(());
        }
        if let Some(mut write_now) = write_now.filter(|_| !state.writing && state.queue.is_empty()) {
            // Only this side queues bytes, so the writer stays idle while the lock is off.
            drop(state);
            while !pieces.is_empty() {
                match write_now(&pieces.slices()) {
                    // Nothing taken: the writer thread waits for room instead of this thread.
                    Ok(0) => break,
                    Ok(written) => pieces.advance(written),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if pieces.is_empty() {
                return Ok(());
            }
            state = self.lock();
        }
        state.queue.pieces.append(&mut pieces.pieces);
        drop(state);
        self.more.notify_one();
        Ok(())
    }

    /// The writer thread's side: writes what the driver hands over, blocking while the
    /// socket is full, until [`Outbox::close`]; returns early with a write's error.
    pub fn write_until_closed(&self, mut socket: impl Write) -> io::Result<()> {
        loop {
            let mut taken = {
                let mut state = self.lock();
                while state.queue.is_empty() && !state.closed {
                    state.writing = false;
                    state = self.more.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                if state.closed {
                    return Ok(());
                }
                state.writing = true;
                std::mem::take(&mut state.queue)
            };
            while !taken.is_empty() {
                match socket.write_vectored(&taken.slices()) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the socket accepted no bytes")),
                    Ok(written) => taken.advance(written),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Ends the writer thread's loop; bytes not yet written are dropped with the connection.
    pub fn close(&self) {
        self.lock().closed = true;
        self.more.notify_one();
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

    /// The socket an [`Outbox`] test writes to: what it took, and how many more bytes a
    /// write that must not block may put there.
    #[derive(Default)]
    struct Wire {
        taken: Mutex<(Vec<u8>, usize)>,
    }

    impl Wire {
        fn write_now(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut wire = self.taken.lock().unwrap();
            let all: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
            let n = all.len().min(wire.1);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            wire.0.extend_from_slice(&all[..n]);
            wire.1 -= n;
            Ok(n)
        }
    }

    /// The writer thread's end of the wire: each write announces itself, then waits for a go.
    struct Gated<'a> {
        wire: &'a Wire,
        called: std::sync::mpsc::Sender<()>,
        go: std::sync::mpsc::Receiver<()>,
    }

    impl Write for Gated<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        /// Takes every piece at once.
        fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
            let _ = self.called.send(());
            self.go.recv().map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            let mut wire = self.wire.taken.lock().unwrap();
            slices.iter().for_each(|s| wire.0.extend_from_slice(s));
            Ok(slices.iter().map(|s| s.len()).sum())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pass(bytes: &'static [u8]) -> WriteQueue {
        let mut q = WriteQueue::new();
        q.push(Bytes::from_static(bytes));
        q
    }

    #[test]
    fn the_driver_writes_itself_only_while_the_writer_thread_holds_nothing() {
        let (outbox, wire) = (Outbox::default(), Wire::default());
        std::thread::scope(|s| {
            // Made here, so that a failed assertion drops `go` and the writer thread ends.
            let (called_tx, called) = std::sync::mpsc::channel();
            let (go, go_rx) = std::sync::mpsc::channel();
            let (outbox, wire) = (&outbox, &wire);
            let writer = s.spawn(move || outbox.write_until_closed(Gated { wire, called: called_tx, go: go_rx }));
            let now = |w: &[IoSlice<'_>]| wire.write_now(w);
            // Room for 5 bytes: the driver writes them, and the rest goes to the writer.
            wire.taken.lock().unwrap().1 = 5;
            outbox.send(Some(now), &mut pass(b"abcdefgh")).unwrap();
            called.recv().unwrap();
            // The writer holds "fgh" and the socket has room again: the driver must not
            // write past it, nor while bytes wait for it.
            wire.taken.lock().unwrap().1 = 100;
            outbox.send(Some(now), &mut pass(b"ij")).unwrap();
            outbox.send(None::<fn(&[IoSlice<'_>]) -> io::Result<usize>>, &mut pass(b"kl")).unwrap();
            assert_eq!(wire.taken.lock().unwrap().0, b"abcde", "nothing written past the writer's bytes");
            go.send(()).unwrap();
            called.recv().unwrap();
            go.send(()).unwrap();
            // Idle again, the writer leaves the next pass to the driver.
            while outbox.lock().writing || !outbox.lock().queue.is_empty() {
                std::thread::yield_now();
            }
            outbox.send(Some(now), &mut pass(b"mn")).unwrap();
            assert_eq!(wire.taken.lock().unwrap().0, b"abcdefghijklmn");
            outbox.close();
            writer.join().unwrap().unwrap();
        });
    }
}
