//! `Outbox` on real sockets, as sansa-blocking's driver and writer threads share one: bytes
//! arrive whole and in the order handed over, whether the driver wrote them itself or the
//! socket was full and the writer thread did; closing ends the writer thread.

use std::io::{IoSlice, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use sansa::driver::{Outbox, WriteQueue};
use sansa_socket::send_nonblocking;

/// The blocking driver's direct write into `socket`.
fn direct(socket: &TcpStream) -> Option<impl FnMut(&[IoSlice<'_>]) -> std::io::Result<usize> + '_> {
    Some(move |slices: &[IoSlice<'_>]| send_nonblocking(socket, slices))
}

/// A connected pair: the sending end and the receiving end.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sending = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (receiving, _) = listener.accept().unwrap();
    (sending, receiving)
}

#[test]
fn bytes_arrive_in_order_whoever_writes_them() {
    // 48 MiB in passes of three pieces each, from 1 byte to 64 KiB, every byte numbered:
    // more than the socket holds while the reader waits, so passes go both ways.
    let (mut passes, mut total, mut size) = (Vec::new(), 0usize, 1usize);
    while total < 48 << 20 {
        let pass: Vec<Bytes> = (0..3)
            .map(|_| {
                let piece: Vec<u8> = (total..total + size).map(|i| (i % 251) as u8).collect();
                total += size;
                size = size * 7 % 65_537 + 1;
                Bytes::from(piece)
            })
            .collect();
        passes.push(pass);
    }
    let (sending, mut receiving) = pair();
    let (outbox, socket) = (Arc::new(Outbox::default()), Arc::new(sending));
    let writer = {
        let (outbox, socket) = (Arc::clone(&outbox), Arc::clone(&socket));
        thread::spawn(move || outbox.write_until_closed(&*socket))
    };
    // A slow reader: the socket fills, then has room a little at a time, while the driver
    // keeps sending and the writer thread holds bytes.
    let reader = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        let mut all = vec![0u8; total];
        for (i, chunk) in all.chunks_mut(4096).enumerate() {
            receiving.read_exact(chunk)?;
            if i % 32 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        Ok::<_, std::io::Error>(all)
    });
    for pieces in passes {
        let mut pass = WriteQueue::new();
        pieces.into_iter().for_each(|p| pass.push(p));
        outbox.send(direct(&socket), &mut pass).expect("the socket takes the bytes");
        assert!(pass.is_empty(), "every piece written or handed to the writer");
    }
    let received = reader.join().unwrap().expect("every byte arrives");
    assert!(received.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8), "bytes in the order handed over");
    outbox.close();
    writer.join().unwrap().expect("the writer wrote everything");
}

#[test]
fn closing_ends_the_writer_and_drops_what_comes_after() {
    let (sending, _receiving) = pair();
    let (outbox, socket) = (Arc::new(Outbox::default()), Arc::new(sending));
    let writer = {
        let (outbox, socket) = (Arc::clone(&outbox), Arc::clone(&socket));
        thread::spawn(move || outbox.write_until_closed(&*socket))
    };
    outbox.close();
    writer.join().unwrap().expect("closed, not failed");
    let mut late = WriteQueue::new();
    late.push(Bytes::from_static(b"late"));
    outbox.send(direct(&socket), &mut late).unwrap();
    assert!(late.is_empty(), "dropped once closed");
}

#[test]
fn before_the_socket_is_connected_bytes_wait_for_the_writer() {
    let (sending, mut receiving) = pair();
    let outbox = Arc::new(Outbox::default());
    let mut early = WriteQueue::new();
    early.push(Bytes::from_static(b"sent before "));
    outbox.send(None::<fn(&[IoSlice<'_>]) -> std::io::Result<usize>>, &mut early).unwrap();
    let socket = Arc::new(sending);
    let writer = {
        let (outbox, socket) = (Arc::clone(&outbox), Arc::clone(&socket));
        thread::spawn(move || outbox.write_until_closed(&*socket))
    };
    let mut later = WriteQueue::new();
    later.push(Bytes::from_static(b"the connection"));
    outbox.send(direct(&socket), &mut later).unwrap();
    let mut got = [0u8; 26];
    receiving.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"sent before the connection");
    outbox.close();
    writer.join().unwrap().unwrap();
}
