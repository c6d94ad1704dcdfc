//! `LowWaterMark::read_blocking` on real sockets, as sansa-blocking's connection threads
//! read: whole frames, in order, handed over once their last bytes come; a close inside a
//! frame hands over what came. On Linux, where the receive low-water mark is kept.
#![cfg(target_os = "linux")]

use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use sansa::driver::ReadBuffer;
use sansa::CloseCause;
use sansa_socket::LowWaterMark;

/// A Kafka frame: a 4-byte size, then `body_len` bytes of `fill`.
fn frame(body_len: usize, fill: u8) -> Vec<u8> {
    let mut f = (body_len as u32).to_be_bytes().to_vec();
    f.resize(4 + body_len, fill);
    f
}

/// Reads with `LowWaterMark::read_blocking` what a peer sends in the pieces given
/// (`sent` bytes in all), pausing between them; then the peer closes, or keeps its end
/// open. The frames read, and the close if any. The reader runs on a thread of its own
/// and must be done in 10 s.
fn read_blocking_from(pieces: Vec<Vec<u8>>, sent: usize, close: bool) -> (Vec<Bytes>, Option<CloseCause>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (hold, held) = mpsc::channel::<()>();
    let peer = thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        for piece in pieces {
            socket.write_all(&piece).unwrap();
            thread::sleep(Duration::from_millis(50));
        }
        if !close {
            let _ = held.recv();
        }
    });
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let stream = TcpStream::connect(address).unwrap();
        let (mut buf, mut low_water) = (ReadBuffer::new(), LowWaterMark::new());
        let mut frames = Vec::new();
        loop {
            let Some((data, end)) = low_water.read_blocking(&stream, &mut buf) else { continue };
            frames.extend(data);
            // Without a close to wait for, done once the sent bytes all came.
            if end.is_some() || (!close && frames.iter().map(Bytes::len).sum::<usize>() == sent) {
                let _ = done.send((frames, end));
                return;
            }
        }
    });
    let read = result.recv_timeout(Duration::from_secs(10)).expect("the reader stalled");
    drop(hold);
    peer.join().unwrap();
    read
}

#[test]
fn blocking_reads_of_large_frames_end_when_their_last_bytes_come() {
    // Each large frame comes in two pieces: the first holds more than a read takes before
    // the frame's size is known, so most of the frame waits in the socket when the
    // low-water mark is set; the second (50 KB) is far less than the mark. (A blocking
    // read that waits at the mark stalls a consumer reading from Kafka, which the live
    // scenario `reads_a_backlog_of_large_fetch_answers` catches, but not here: on
    // loopback, written this way, the kernel still woke it.)
    let below_cap = frame(1_500_000, 7);
    let above_cap = frame(3 << 20, 8);
    let small = [frame(1000, 1), frame(1000, 2)].concat();
    let sent = [below_cap.clone(), above_cap.clone(), small.clone()].concat();
    let (cut_below, cut_above) = (below_cap.len() - 50_000, above_cap.len() - 50_000);
    let pieces = vec![
        below_cap[..cut_below].to_vec(),
        below_cap[cut_below..].to_vec(),
        above_cap[..cut_above].to_vec(),
        above_cap[cut_above..].to_vec(),
        small,
    ];
    let (frames, end) = read_blocking_from(pieces, sent.len(), false);
    assert_eq!(frames.concat(), sent, "every byte in order");
    let whole = |mut b: &[u8]| {
        while b.len() >= 4 {
            b = &b[(4 + u32::from_be_bytes(b[..4].try_into().unwrap()) as usize).min(b.len() + 1)..];
        }
        b.is_empty()
    };
    assert!(frames.iter().all(|f| whole(f)), "whole frames only");
    assert!(end.is_none());
}

#[test]
fn a_peer_closing_inside_a_large_frame_gives_what_came_then_the_close() {
    let large = frame(2 << 20, 9);
    let (frames, end) = read_blocking_from(vec![large[..300_000].to_vec()], 300_000, true);
    assert_eq!(frames.concat(), large[..300_000], "the partial frame is handed over");
    assert!(matches!(end, Some(CloseCause::PeerClosed)), "{end:?}");
}
