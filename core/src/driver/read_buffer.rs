//! Where an adapter reads a connection's bytes: a buffer sized to the Kafka frame coming in,
//! so that each frame reaches the client in one piece, read straight from the socket into
//! the memory its records will be sliced from.
//!
//! Reading in fixed chunks, a large Fetch answer arrived in dozens of pieces that the
//! connection copied into a frame-sized buffer: one more pass over every byte consumed (an
//! eighth of the consumer's CPU time at 1 KB records), and page faults on top. This buffer
//! reads the size prefix, makes room for the whole frame at once and hands over complete
//! frames only.
//!
//! A frame larger than the buffer is read into an allocation of its own, which comes back to
//! the buffer's pool when the last record sliced from it is dropped. A fresh
//! allocation per frame cost a page fault per 4 KiB received, the kernel zeroing every page
//! and unmapping it again when freed: 18% of the consumer's CPU time at 1 KB records.
//!
//! Anything that does not look like a Kafka frame (a TLS record, an HTTP answer, a size past
//! [`MAX_FRAMED`]) switches the buffer to passing bytes on as they are read, for good: the
//! client's connection decides what they are. Handing over bytes is always correct in any
//! split; only the copy is saved.

use std::io;

use bytes::buf::Limit;
use bytes::{BufMut, Bytes, BytesMut};

use crate::buffer_pool::BufferPool;
use crate::client::CloseCause;
use crate::protocol::FrameDecoder;

/// Room given to a read when no larger frame is expected: small answers arrive several at
/// a time.
pub const MIN_READ: usize = 64 * 1024;

/// Most bytes a reader asks the kernel to gather before waking it
/// ([`ReadBuffer::low_water_mark`]): large enough that a big frame arrives in a few reads. Linux caps the mark at half the receive
/// buffer's limit (`tcp_rmem`'s maximum, or `SO_RCVBUF` when set) and grows the buffer to
/// hold it. Raised from 256 KiB: reading 1,000,000 x 1 KB records (Fetch answers of several
/// MiB) on tokio took 0.37-0.44 CPU s per million against 0.49-0.53 (2026-12-03; 4 MiB
/// measured no better than 2), most of it system time spent in fewer wake-ups and reads.
const MAX_LOW_WATER: usize = 2 * 1024 * 1024;

/// Largest frame the buffer makes room for at once: the client's default limit on frames.
/// A larger announced size (or a TLS record, whose first bytes read as hundreds of MiB)
/// makes the buffer pass bytes on as read.
pub const MAX_FRAMED: usize = crate::protocol::DEFAULT_MAX_FRAME_SIZE;

/// One connection's read buffer. Read into [`ReadBuffer::unfilled`], give the read's result
/// to [`ReadBuffer::finish_read`], hand the bytes it returns to the client as
/// `Input::Received`, then the close, if it returns one, as `Input::Closed`. With a
/// `std::io::Read` source, [`ReadBuffer::read_from`] does both steps.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    /// `buf[..filled]` is data read and not yet handed over; the rest is zeroed room, so it
    /// can be given to `std::io::Read`-style reads as an initialised slice.
    buf: BytesMut,
    filled: usize,
    passthrough: bool,
    /// A frame too large for `buf`'s allocation, read by [`ReadBuffer::read_from`] straight
    /// into memory nobody zeroed; empty otherwise. It holds the whole frame received so far,
    /// and `buf` holds nothing meanwhile.
    frame: Vec<u8>,
    /// The length of the frame in `frame`, size prefix included.
    frame_len: usize,
    /// Where `frame` comes from, and goes back to once handed over and dropped.
    pool: BufferPool,
}

impl ReadBuffer {
    /// An empty buffer; it allocates on the first [`ReadBuffer::unfilled`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Where to read next: all the room the buffer has, grown if need be to the rest of the
    /// frame being received (up to `MAX_FRAMED`), or to `MIN_READ` bytes when no frame
    /// is under way. Room is zeroed once, when it is first offered.
    pub fn unfilled(&mut self) -> &mut [u8] {
        self.settle();
        let wanted = self.wanted(self.buf.len());
        if self.buf.len() < wanted {
            if self.buf.capacity() < wanted {
                // Only the data moves to a new allocation, never the zeroed room.
                self.buf.truncate(self.filled);
                self.buf.reserve(wanted - self.filled);
            }
            self.buf.resize(wanted, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// [`ReadBuffer::unfilled`] for reads that can fill memory nobody initialised (tokio's
    /// `read_buf`): the same room, as spare capacity after the data, so that it is never
    /// zeroed first. Zeroing it was a memset of every byte a consumer receives. Give the
    /// read's result to [`ReadBuffer::finish_read`] as well.
    pub fn spare(&mut self) -> Limit<&mut (dyn BufMut + Send)> {
        if self.frame.is_empty() {
            self.enter_large_frame();
        }
        if !self.frame.is_empty() {
            let rest = self.frame_len - self.frame.len();
            return (&mut self.frame as &mut (dyn BufMut + Send)).limit(rest);
        }
        // Room offered zeroed by an earlier `unfilled` is given up, not read into twice.
        self.buf.truncate(self.filled);
        // Between frames, no more than a MIN_READ of the allocation's leftover, as zeroed room
        // would offer: a frame announced by what it reads moves to a frame-sized allocation,
        // and all of that read moves with it.
        let wanted = self.wanted(self.buf.capacity().min(self.filled + MIN_READ));
        if self.buf.capacity() < wanted {
            self.buf.reserve(wanted - self.filled);
        }
        (&mut self.buf as &mut (dyn BufMut + Send)).limit(wanted - self.filled)
    }

    /// Bytes still missing from the frame under way; 0 between frames, before a frame's size
    /// is known, and when the buffer passes bytes on as read.
    fn missing(&self) -> usize {
        if !self.frame.is_empty() {
            return self.frame_len - self.frame.len();
        }
        self.frame_under_way().map_or(0, |len| len - self.filled)
    }

    /// How many bytes a read should wait for: what the frame under way still needs, up to
    /// [`MAX_LOW_WATER`]; 1 (any byte) otherwise. A read never waits past the frame's end.
    /// An adapter keeps its socket's receive low-water mark (`SO_RCVLOWAT`) here, so that
    /// while a large frame comes in, the kernel reports the socket readable once per that
    /// many bytes rather than once per segment (sansa-socket's `LowWaterMark`).
    pub fn low_water_mark(&self) -> usize {
        self.missing().clamp(1, MAX_LOW_WATER)
    }

    /// Reads from `src` once and takes the result as [`ReadBuffer::finish_read`] does, for
    /// sources behind `std::io::Read` (std's sockets, blocking or not), which take only
    /// initialised slices. A frame that does not fit the buffer's allocation is read through
    /// `Read::read_to_end`, which std's sockets fill without zeroing the room first: zeroing
    /// is a memset of every byte a consumer receives. `None`: the source would block and
    /// nothing was read; call again once it is readable.
    ///
    /// On a blocking source a large frame is read to its end before this returns.
    pub fn read_from(&mut self, mut src: impl io::Read) -> Option<(Option<Bytes>, Option<CloseCause>)> {
        if self.frame.is_empty() && !self.enter_large_frame() {
            let read = src.read(self.unfilled());
            if read.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock) {
                return None;
            }
            return Some(self.finish_read(read));
        }
        let before = self.frame.len();
        let rest = (self.frame_len - before) as u64;
        let read = io::Read::read_to_end(&mut io::Read::take(&mut src, rest), &mut self.frame);
        // read_to_end keeps what it read before an error.
        let progress = self.frame.len() - before;
        match read {
            Ok(_) if progress == 0 => Some((self.take_rest(), Some(CloseCause::PeerClosed))),
            Ok(_) => Some((self.take_frame(), None)),
            // read_to_end retries interrupted reads itself.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => (progress > 0).then(|| (self.take_frame(), None)),
            Err(e) => Some((self.take_rest(), Some(CloseCause::from(&e)))),
        }
    }

    /// If a frame under way is larger than the buffer's allocation, moves what came of it to
    /// an allocation from the pool, where the rest is read. Only the frame's first bytes move;
    /// zeroed room stays in `buf` for later reads.
    fn enter_large_frame(&mut self) -> bool {
        let Some(len) = self.frame_under_way().filter(|&len| len > self.buf.capacity()) else { return false };
        self.frame = self.pool.take(len);
        self.frame.extend_from_slice(&self.buf[..self.filled]);
        bytes::Buf::advance(&mut self.buf, self.filled);
        self.filled = 0;
        self.frame_len = len;
        true
    }

    /// The length of the frame at the front of the data, if the buffer frames and the frame
    /// is not complete yet.
    fn frame_under_way(&self) -> Option<usize> {
        match prefix(&self.buf[..self.filled]) {
            Prefix::Frame(len) if !self.passthrough && len > self.filled => Some(len),
            _ => None,
        }
    }

    /// The frame read straight into `frame`, once whole.
    fn take_frame(&mut self) -> Option<Bytes> {
        (self.frame.len() == self.frame_len).then(|| self.pool.freeze(std::mem::take(&mut self.frame)))
    }

    /// Puts a frame under way in `frame` back into `buf`, for reads through
    /// [`ReadBuffer::unfilled`] or [`ReadBuffer::spare`].
    fn settle(&mut self) {
        if !self.frame.is_empty() {
            // `buf` holds only zeroed room meanwhile. A copy: no adapter mixes the two ways.
            let mut buf = BytesMut::with_capacity(self.frame_len);
            buf.extend_from_slice(&std::mem::take(&mut self.frame));
            self.filled = buf.len();
            self.buf = buf;
        }
    }

    /// How far the buffer should reach for the next read, given how far its room reaches now:
    /// to the end of the frame being received, else at least a quarter of [`MIN_READ`].
    fn wanted(&self, reach: usize) -> usize {
        let rest = self.frame_under_way().map_or(0, |len| len - self.filled);
        // Never more than the frame's rest: growing past it near the end of a large frame
        // would move the whole frame to a new allocation. Between frames (and for TLS), a
        // quarter of MIN_READ left over is room enough, so small reads share one allocation.
        match rest {
            0 if reach - self.filled >= MIN_READ / 4 => reach,
            0 => self.filled + MIN_READ,
            rest => self.filled + rest,
        }
    }

    /// Takes the result of a read into [`ReadBuffer::unfilled`]: the bytes for the client, if
    /// any, and why the connection ended, if it did. At the end of the stream or on an error,
    /// whatever was read and not handed over comes first, complete frame or not; an
    /// interrupted read gives nothing.
    pub fn finish_read(&mut self, read: io::Result<usize>) -> (Option<Bytes>, Option<CloseCause>) {
        match read {
            Ok(0) => (self.take_rest(), Some(CloseCause::PeerClosed)),
            // A read into the frame's own allocation (through `spare`) grew it already.
            Ok(_) if !self.frame.is_empty() => (self.take_frame(), None),
            Ok(n) => {
                self.filled(n);
                (self.take(), None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => (None, None),
            Err(e) => (self.take_rest(), Some(CloseCause::from(&e))),
        }
    }

    /// Records that a read put `n` bytes at the front of [`ReadBuffer::unfilled`] (or, through
    /// [`ReadBuffer::spare`], already grew the buffer by them).
    fn filled(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.buf.len());
    }

    /// The complete frames read so far, in one piece; `None` while the first is incomplete.
    /// Once passing through, everything read.
    fn take(&mut self) -> Option<Bytes> {
        let mut end = 0;
        while !self.passthrough {
            match prefix(&self.buf[end..self.filled]) {
                Prefix::Foreign => self.passthrough = true,
                Prefix::Frame(len) if end + len <= self.filled => end += len,
                _ => break,
            }
        }
        if self.passthrough {
            end = self.filled;
        }
        self.split(end)
    }

    /// Everything read and not yet handed over, complete or not: for the end of the stream,
    /// so that the client sees the last bytes before the close.
    fn take_rest(&mut self) -> Option<Bytes> {
        if !self.frame.is_empty() {
            return Some(self.pool.freeze(std::mem::take(&mut self.frame)));
        }
        self.split(self.filled)
    }

    fn split(&mut self, end: usize) -> Option<Bytes> {
        if end == 0 {
            return None;
        }
        self.filled -= end;
        Some(self.buf.split_to(end).freeze())
    }
}

/// What the bytes at the front of a buffer say of the frame they start.
enum Prefix {
    /// Fewer than the four bytes of a size prefix.
    Short,
    /// A frame of this many bytes, prefix included.
    Frame(usize),
    /// No Kafka frame within [`MAX_FRAMED`] starts like this.
    Foreign,
}

fn prefix(bytes: &[u8]) -> Prefix {
    if bytes.len() < 4 {
        return Prefix::Short;
    }
    FrameDecoder::new(MAX_FRAMED).announced_len(bytes).map_or(Prefix::Foreign, Prefix::Frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body_len: usize, fill: u8) -> Vec<u8> {
        let mut f = (body_len as i32).to_be_bytes().to_vec();
        f.extend(std::iter::repeat_n(fill, body_len));
        f
    }

    /// Frames larger and smaller than [`MIN_READ`], an empty one among them.
    fn mixed_stream() -> Vec<u8> {
        let mut stream = frame(300_000, 1);
        stream.extend(frame(10, 2));
        stream.extend(frame(0, 3));
        stream.extend(frame(200_000, 4));
        stream
    }

    /// Feeds `stream` through a buffer, at most `step` bytes per read; returns what was
    /// handed over, piece by piece, and the largest room offered.
    fn feed(stream: &[u8], step: usize) -> (Vec<Bytes>, usize) {
        let mut rb = ReadBuffer::new();
        let (mut out, mut largest, mut at) = (Vec::new(), 0, 0);
        while at < stream.len() {
            let room = rb.unfilled();
            largest = largest.max(room.len());
            let n = room.len().min(step).min(stream.len() - at);
            room[..n].copy_from_slice(&stream[at..at + n]);
            at += n;
            rb.filled(n);
            out.extend(rb.take());
        }
        out.extend(rb.take_rest());
        (out, largest)
    }

    /// [`feed`] through [`ReadBuffer::spare`], as tokio's `read_buf` fills it; every
    /// `mix`-th read goes through [`ReadBuffer::unfilled`] instead.
    fn feed_spare(stream: &[u8], step: usize, mix: usize) -> (Vec<Bytes>, usize) {
        use bytes::BufMut;
        let mut rb = ReadBuffer::new();
        let (mut out, mut largest, mut at, mut reads) = (Vec::new(), 0, 0, 0);
        while at < stream.len() {
            reads += 1;
            let read = if reads % mix == 0 {
                let room = rb.unfilled();
                largest = largest.max(room.len());
                let n = room.len().min(step).min(stream.len() - at);
                room[..n].copy_from_slice(&stream[at..at + n]);
                n
            } else {
                let mut room = rb.spare();
                largest = largest.max(room.remaining_mut());
                let n = room.remaining_mut().min(step).min(stream.len() - at);
                room.put_slice(&stream[at..at + n]);
                n
            };
            at += read;
            let (data, end) = rb.finish_read(Ok(read));
            assert!(end.is_none());
            out.extend(data);
        }
        out.extend(rb.take_rest());
        (out, largest)
    }

    /// A `std::io::Read` source that gives at most `step` bytes per read and, if `stalls`,
    /// answers WouldBlock before every read that would give bytes, as a nonblocking socket
    /// with nothing waiting does. At the end of `stream` it ends, unless `open`: then it
    /// would block.
    struct Trickle<'a> {
        stream: &'a [u8],
        step: usize,
        stalls: bool,
        stalled: bool,
        open: bool,
    }

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.open && self.stream.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if self.stalls && !self.stalled && !self.stream.is_empty() && !buf.is_empty() {
                self.stalled = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.stalled = false;
            let n = buf.len().min(self.step).min(self.stream.len());
            buf[..n].copy_from_slice(&self.stream[..n]);
            self.stream = &self.stream[n..];
            Ok(n)
        }
    }

    /// [`feed`] through [`ReadBuffer::read_from`]; also returns the most zeroed room the
    /// buffer ever held.
    fn feed_from(stream: &[u8], step: usize, stalls: bool) -> (Vec<Bytes>, usize) {
        let mut rb = ReadBuffer::new();
        let mut src = Trickle { stream, step, stalls, stalled: false, open: false };
        let (mut out, mut zeroed) = (Vec::new(), 0);
        loop {
            let Some((data, end)) = rb.read_from(&mut src) else { continue };
            zeroed = zeroed.max(rb.buf.len() - rb.filled);
            out.extend(data);
            match end {
                Some(CloseCause::PeerClosed) => return (out, zeroed),
                Some(other) => panic!("{other:?}"),
                None => {}
            }
        }
    }

    #[test]
    fn reads_from_a_source_give_the_same_frames_as_zeroed_room() {
        let mut stream = mixed_stream();
        stream.extend(frame(40_000, 5));
        stream.extend(&frame(90_000, 6)[..70_000]);
        for step in [1, 3, 5, 1000, 65_536, 300_004, 1 << 20] {
            for stalls in [false, true] {
                if step < 1000 && stalls {
                    continue; // slow, and nothing more to see
                }
                let (out, zeroed) = feed_from(&stream, step, stalls);
                let (expected, _) = feed(&stream, step);
                assert!(out == expected, "step {step}, stalls {stalls}: other pieces");
                // Frames larger than the buffer went around it, unzeroed.
                assert!(zeroed <= MIN_READ, "step {step}, stalls {stalls}: {zeroed} bytes zeroed");
            }
        }
    }

    #[test]
    fn a_frame_read_from_a_source_can_be_finished_through_zeroed_room() {
        let stream = frame(200_000, 9);
        let mut rb = ReadBuffer::new();
        let mut src = Trickle { stream: &stream[..150_000], step: 50_000, stalls: false, stalled: false, open: true };
        // Zeroed room for the first read, then the frame's own allocation.
        assert_eq!(rb.read_from(&mut src), Some((None, None)));
        assert_eq!(rb.read_from(&mut src), Some((None, None)));
        assert_eq!(rb.read_from(&mut src), None, "nothing more to read yet");
        let room = rb.unfilled();
        assert_eq!(room.len(), 50_004, "the rest of the frame");
        room.copy_from_slice(&stream[150_000..]);
        let (data, end) = rb.finish_read(Ok(50_004));
        assert!(data.as_deref() == Some(&stream[..]) && end.is_none(), "not the frame");
    }

    #[test]
    fn a_source_failing_inside_a_large_frame_hands_over_what_came_then_the_error() {
        struct Failing<'a>(&'a [u8]);
        impl io::Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::ErrorKind::ConnectionReset.into());
                }
                let n = buf.len().min(self.0.len()).min(40_000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let stream = frame(500_000, 8);
        let mut rb = ReadBuffer::new();
        let mut src = Failing(&stream[..120_000]);
        assert_eq!(rb.read_from(&mut src), Some((None, None)));
        let (data, end) = rb.read_from(&mut src).expect("read");
        assert!(data.as_deref() == Some(&stream[..120_000]), "not the bytes read");
        assert!(matches!(end, Some(CloseCause::PeerClosed)), "{end:?}");
    }

    /// Puts `bytes` into `rb` as reads would, and returns what it handed over.
    fn put(rb: &mut ReadBuffer, bytes: &[u8]) -> Vec<Bytes> {
        let (mut out, mut at) = (Vec::new(), 0);
        while at < bytes.len() {
            let room = rb.unfilled();
            let n = room.len().min(bytes.len() - at);
            room[..n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            let (data, end) = rb.finish_read(Ok(n));
            assert!(end.is_none(), "{end:?}");
            out.extend(data);
        }
        out
    }

    #[test]
    fn the_low_water_mark_is_what_the_frame_under_way_still_needs() {
        let (first, second) = (frame(3_000_000, 1), frame(10_000, 2));
        let mut rb = ReadBuffer::new();
        assert_eq!(rb.low_water_mark(), 1, "nothing read yet");
        put(&mut rb, &first[..2]);
        assert_eq!(rb.low_water_mark(), 1, "half a size: the frame's length is not known");
        put(&mut rb, &first[2..100_000]);
        assert_eq!(rb.missing(), 2_900_004);
        assert_eq!(rb.low_water_mark(), MAX_LOW_WATER);
        put(&mut rb, &first[100_000..2_999_004]);
        assert_eq!(rb.low_water_mark(), 1_000, "never past the frame's end");
        assert_eq!(put(&mut rb, &first[2_999_004..]), vec![Bytes::from(first.clone())]);
        assert_eq!(rb.low_water_mark(), 1, "between frames");
        put(&mut rb, &second[..4_004]);
        assert_eq!(rb.low_water_mark(), 6_000, "a frame smaller than the buffer");

        let mut tls = ReadBuffer::new();
        put(&mut tls, &[0x16, 0x03, 0x03, 0x00, 0x40, 1, 2, 3]);
        assert_eq!(tls.low_water_mark(), 1, "bytes passed on as read wait for nothing");
    }

    #[test]
    fn spare_room_gives_the_same_frames_as_zeroed_room() {
        let stream = mixed_stream();
        for step in [1, 3, 5, 1000, 65_536, 300_004, 1 << 20] {
            for mix in [usize::MAX, 2, 3] {
                let (out, largest) = feed_spare(&stream, step, mix);
                let (zeroed, _) = feed(&stream, step);
                assert_eq!(out, zeroed, "step {step}, mix {mix}: other pieces");
                assert!(largest <= 300_004, "step {step}, mix {mix}: room past the first frame");
            }
        }
    }

    #[test]
    fn frames_arrive_whole_whatever_the_read_size() {
        let stream = mixed_stream();
        for step in [1, 3, 4, 5, 1000, 65_536, 300_004, 1 << 20] {
            let (out, _) = feed(&stream, step);
            assert_eq!(out.concat(), stream, "step {step}");
            // Every piece is whole frames: a large frame never comes in parts.
            for piece in &out {
                let mut rest = &piece[..];
                while !rest.is_empty() {
                    let Prefix::Frame(len) = prefix(rest) else { panic!("step {step}: not a frame") };
                    assert!(len <= rest.len(), "step {step}: a cut frame");
                    rest = &rest[len..];
                }
            }
        }
    }

    #[test]
    fn room_covers_the_frame_being_read() {
        let stream = frame(5 << 20, 7);
        let (out, largest) = feed(&stream, 1 << 30);
        // After the first read showed the prefix, the rest of the frame fits in one read.
        assert!(largest >= (5 << 20) + 4 - MIN_READ, "largest room {largest}");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), (5 << 20) + 4);
    }

    #[test]
    fn a_large_frame_is_read_into_one_allocation() {
        let stream = frame(3 << 20, 5);
        let mut rb = ReadBuffer::new();
        let (mut at, mut bases) = (0, std::collections::BTreeSet::new());
        let mut out = None;
        while at < stream.len() {
            let filled = rb.filled;
            let room = rb.unfilled();
            if at > 0 {
                // Room never reaches past the frame, which would move it to a larger buffer.
                assert!(filled + room.len() <= stream.len(), "room past the frame at {at}");
            }
            let n = room.len().min(90_001).min(stream.len() - at);
            room[..n].copy_from_slice(&stream[at..at + n]);
            let base = room.as_ptr() as usize - filled;
            at += n;
            rb.filled(n);
            if at > 4 {
                bases.insert(base);
            }
            out = out.or(rb.take());
        }
        // The first read (before the size was known) may sit elsewhere; after it, one buffer.
        assert!(bases.len() <= 2, "{} allocations", bases.len());
        assert_eq!(out.as_deref(), Some(&stream[..]));
    }

    #[test]
    fn small_reads_share_one_allocation() {
        let mut rb = ReadBuffer::new();
        let (mut bases, mut handed) = (std::collections::BTreeSet::new(), Vec::new());
        // Eight answers of 1,000 bytes, one per read: all fit in one MIN_READ buffer.
        for i in 0..8u8 {
            let f = frame(996, i);
            let room = rb.unfilled();
            bases.insert(room.as_ptr() as usize - usize::from(i) * 1000);
            room[..f.len()].copy_from_slice(&f);
            rb.filled(f.len());
            handed.extend(rb.take());
        }
        assert_eq!(bases.len(), 1, "a new buffer for a small read");
        assert_eq!(handed.len(), 8);
    }

    /// Reads `stream` through [`ReadBuffer::read_from`] (or, if `spare`, through
    /// [`ReadBuffer::spare`] as tokio does) in reads of 100,000 bytes; returns the frames.
    fn read_frames(rb: &mut ReadBuffer, stream: &[u8], spare: bool) -> Vec<Bytes> {
        let mut src = Trickle { stream, step: 100_000, stalls: false, stalled: false, open: true };
        let mut out = Vec::new();
        loop {
            let (data, end) = if spare {
                let mut room = rb.spare();
                let n = room.remaining_mut().min(src.step).min(src.stream.len());
                if n == 0 {
                    break;
                }
                room.put_slice(&src.stream[..n]);
                src.stream = &src.stream[n..];
                rb.finish_read(Ok(n))
            } else {
                let Some(read) = rb.read_from(&mut src) else { break };
                read
            };
            assert!(end.is_none(), "{end:?}");
            out.extend(data);
        }
        out
    }

    #[test]
    fn a_large_frame_is_read_into_the_allocation_of_one_dropped_before() {
        for spare in [false, true] {
            let mut rb = ReadBuffer::new();
            let first = read_frames(&mut rb, &frame(3 << 20, 1), spare);
            assert_eq!(first.len(), 1);
            let at = first[0].as_ptr();
            // While a slice of the first frame lives, its allocation is not read into.
            let kept = first[0].slice(1000..2000);
            drop(first);
            let second = read_frames(&mut rb, &frame(3 << 20, 2), spare);
            assert!(second[0][4..].iter().all(|&b| b == 2) && kept.iter().all(|&b| b == 1), "spare {spare}");
            assert_ne!(second[0].as_ptr(), at, "spare {spare}: read into memory still in use");
            drop(kept);
            // Dropped, the first frame's allocation takes the next frame of about its size.
            let third = read_frames(&mut rb, &frame((3 << 20) - 100_000, 3), spare);
            assert_eq!(third[0].as_ptr(), at, "spare {spare}: a new allocation");
            assert_eq!(third[0], frame((3 << 20) - 100_000, 3));
        }
    }

    #[test]
    fn tls_and_oversized_prefixes_pass_through_as_read() {
        // A TLS handshake record: 0x16 0x03 0x03 reads as a size of about 369 MB.
        let mut tls = vec![0x16, 0x03, 0x03, 0x00, 0x31];
        tls.extend([9u8; 0x31]);
        let (out, largest) = feed(&tls, 2);
        assert_eq!(out.concat(), tls);
        assert!(out.len() > 1, "handed over as read, not held for a frame");
        assert_eq!(largest, MIN_READ);
        let negative = [0xff, 0xff, 0xff, 0xfe, 1, 2, 3];
        let (out, _) = feed(&negative, 5);
        assert_eq!(out.concat(), negative);
    }

    #[test]
    fn reads_end_with_what_was_left_then_the_close() {
        let mut rb = ReadBuffer::new();
        let f = frame(10, 1);
        rb.unfilled()[..6].copy_from_slice(&f[..6]);
        assert_eq!(rb.finish_read(Ok(6)), (None, None), "a partial frame waits");
        let interrupted = io::Error::from(io::ErrorKind::Interrupted);
        assert_eq!(rb.finish_read(Err(interrupted)), (None, None));
        let failed = io::Error::other("disk on fire");
        let (data, end) = rb.finish_read(Err(failed));
        assert_eq!(data.as_deref(), Some(&f[..6]));
        assert!(matches!(end, Some(CloseCause::Io(_))), "{end:?}");
        assert_eq!(rb.finish_read(Ok(0)), (None, Some(CloseCause::PeerClosed)));
    }

    #[test]
    fn a_partial_frame_is_handed_over_at_the_end() {
        let mut stream = frame(100, 1);
        stream.extend(&frame(50, 2)[..20]);
        let (out, _) = feed(&stream, 7);
        assert_eq!(out.concat(), stream);
        assert_eq!(out.last().map(|b| b.len()), Some(20));
    }
}
