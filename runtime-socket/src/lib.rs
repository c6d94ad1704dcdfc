//! The socket calls sansa's runtime adapters share and that std does not offer: keeping a
//! socket's receive low-water mark ([`LowWaterMark`]), reading a blocking socket at it, and
//! a vectored write that never blocks ([`send_nonblocking`]). They live here rather than in
//! the `sansa` core, which touches no socket: the core decides what the mark should be
//! ([`ReadBuffer::low_water_mark`]) and in which order bytes go ([`sansa::driver::Outbox`]);
//! the system calls are made by the adapters, through this crate.
//!
//! Linux only, where they were measured to pay; elsewhere each is a no-op or a plain call.

use std::io::{self, IoSlice};
use std::net::TcpStream;

#[cfg(target_os = "linux")]
use bytes::BufMut;
use bytes::Bytes;
use sansa::driver::ReadBuffer;
use sansa::CloseCause;

/// Keeps a socket's receive low-water mark (`SO_RCVLOWAT`) at what its [`ReadBuffer`]'s frame
/// under way still needs, up to 2 MiB, so that while a large frame comes in, the kernel
/// reports the socket readable once per that many bytes rather than once per segment: reading
/// a 1 KB records consumer's Fetch answers took less than half the reads and wake-ups.
///
/// Only for reads made once readiness says so (tokio and async-io wait for it; blocking
/// sockets through [`LowWaterMark::read_blocking`]): readiness counts every byte queued, and
/// the mark never asks for more than the frame still needs, so it is always reached. A
/// blocking read must not wait with it: once it has taken part of a frame and sleeps, Linux
/// wakes it only when as many *new* bytes as the mark arrived, which the rest of the frame
/// may not hold (measured: a consumer stalled). The kernel also reports a socket readable
/// at the end of the stream and when its receive buffer is full. Set on Linux; elsewhere a
/// no-op.
#[derive(Debug)]
pub struct LowWaterMark {
    set: usize,
    /// The socket refused the option once: not asked again.
    refused: bool,
}

impl Default for LowWaterMark {
    fn default() -> Self {
        LowWaterMark { set: 1, refused: false }
    }
}

impl LowWaterMark {
    /// A socket's mark as the kernel starts it: 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `socket`'s mark to what `buf` needs, when that changed; call before each read
    /// (and so before each wait for the socket to be readable).
    #[cfg(unix)]
    pub fn update(&mut self, socket: &impl std::os::fd::AsFd, buf: &ReadBuffer) {
        let wanted = buf.low_water_mark();
        if wanted == self.set || self.refused {
            return;
        }
        match set_receive_low_water_mark(socket.as_fd(), wanted) {
            Ok(()) => self.set = wanted,
            Err(_) => self.refused = true,
        }
    }

    /// No socket option elsewhere.
    #[cfg(not(unix))]
    pub fn update<S>(&mut self, _socket: &S, _buf: &ReadBuffer) {}

    /// One read of a blocking socket that a thread of its own reads, into memory nobody
    /// zeroed first, with the mark kept as [`LowWaterMark::update`] keeps it. While the mark
    /// is above 1 (a large frame under way), it takes what is queued without blocking and,
    /// when nothing is, sleeps in `poll` until the socket is readable at the mark: a blocking
    /// read itself must not wait with a mark (see the type's doc). Without the mark, reading
    /// 1,000,000 x 1 KB records took a read per 170 KB or so and a third more CPU than on
    /// tokio. `None`: nothing was read; call again. Elsewhere than on Linux, a plain read.
    #[cfg(target_os = "linux")]
    pub fn read_blocking(
        &mut self,
        socket: &std::net::TcpStream,
        buf: &mut ReadBuffer,
    ) -> Option<(Option<Bytes>, Option<CloseCause>)> {
        let fd = std::os::fd::AsFd::as_fd(socket);
        self.update(&fd, buf);
        let waits_at_mark = self.set > 1;
        // At a mark, what is already queued is taken first, as a read made on readiness
        // takes it: waiting for the mark while part of the frame sat unread kept the broker
        // waiting on the receive window, 8-12 ms before many Fetch answers (measured).
        let flags = if waits_at_mark { libc::MSG_DONTWAIT } else { 0 };
        let read = receive(fd, &mut buf.spare(), flags);
        if read.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock) {
            if waits_at_mark && wait_readable(fd).is_err() {
                // Without a wait the mark cannot be used safely: given up for good.
                let _ = set_receive_low_water_mark(fd, 1);
                (self.set, self.refused) = (1, true);
            }
            return None;
        }
        Some(buf.finish_read(read))
    }

    /// [`LowWaterMark::read_blocking`] where the mark is not kept: a plain blocking read,
    /// which never returns `None` (the socket has no read timeout).
    #[cfg(not(target_os = "linux"))]
    pub fn read_blocking(
        &mut self,
        socket: &std::net::TcpStream,
        buf: &mut ReadBuffer,
    ) -> Option<(Option<Bytes>, Option<CloseCause>)> {
        buf.read_from(socket)
    }
}

/// Sleeps until `socket` is readable (at its low-water mark), at its end, or in error.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // poll(2): std has no readiness wait for its blocking sockets
fn wait_readable(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut wanted = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one live pollfd for an open (borrowed) descriptor, and a count of 1.
        if unsafe { libc::poll(&raw mut wanted, 1, -1) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `recv(2)` into `into`'s spare room, which it then counts as filled.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // std's sockets take neither flags nor uninitialised memory
fn receive(socket: std::os::fd::BorrowedFd<'_>, into: &mut impl BufMut, flags: libc::c_int) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let room = into.chunk_mut();
    // SAFETY: the descriptor is open for the call; `room` is writable for `room.len()`
    // bytes, and recv writes only bytes, never reads them.
    let got = unsafe { libc::recv(socket.as_raw_fd(), room.as_mut_ptr().cast(), room.len(), flags) };
    let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: recv initialised the first `got` bytes of the room it was given.
    unsafe { into.advance_mut(got) };
    Ok(got)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // the one system call the standard library and socket2 do not wrap
fn set_receive_low_water_mark(socket: std::os::fd::BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is borrowed, so open, for the call; the option value points to a
    // live c_int and `size` is its size, which is what SO_RCVLOWAT takes.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast::<libc::c_void>(),
            size,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn set_receive_low_water_mark(_socket: std::os::fd::BorrowedFd<'_>, _bytes: usize) -> io::Result<()> {
    Ok(())
}

/// One vectored write that never blocks (`sendmsg(2)` with `MSG_DONTWAIT`): the blocking
/// driver's direct write, given to [`sansa::driver::Outbox::send`]. `WouldBlock` when the
/// socket takes nothing now.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // std's sockets take no flags, and this one must not block
pub fn send_nonblocking(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero msghdr is valid (no address, no control data); the iovec array is
    // `slices` (IoSlice is ABI-compatible with iovec), alive and unmodified for the call.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = slices.as_ptr().cast_mut().cast();
    header.msg_iovlen = slices.len() as _;
    // SAFETY: the descriptor is open while `socket` is borrowed; sendmsg only reads the
    // buffers `header` points to.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Elsewhere nothing is written this way: every byte goes through the writer thread.
#[cfg(not(target_os = "linux"))]
pub fn send_nonblocking(_socket: &TcpStream, _slices: &[IoSlice<'_>]) -> io::Result<usize> {
    Err(io::ErrorKind::WouldBlock.into())
}
