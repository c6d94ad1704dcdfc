//! The fetched-data reader on hand-built logs: transactions, control batches, corrupt data.
//! The machine itself is tested against the fake cluster
//! (`conformance/src/fake_cluster/consumer_tests.rs`).

use bytes::BytesMut;

use super::fetched::{Aborted, Fetched, Next};
use super::record::TopicPartition;
use super::{PartitionState, Start};
use crate::protocol::records::{BatchParams, Compression, DecodeOptions, EndTxnMarker, RecordBatchEncoder};

/// Appends a batch of `n` records at `base` (values `"{base + i}"`), transactional for
/// producer `pid` when given.
fn batch(out: &mut BytesMut, base: i64, n: i64, pid: Option<i64>) {
    compressed_batch(out, base, n, pid, Compression::None);
}

/// [`batch`], compressed.
fn compressed_batch(out: &mut BytesMut, base: i64, n: i64, pid: Option<i64>, compression: Compression) {
    let mut params = BatchParams::new().base_offset(base).compression(compression);
    if let Some(pid) = pid {
        params = params.producer(pid, 0, 0).transactional(true);
    }
    let mut enc = RecordBatchEncoder::new();
    let mut b = enc.begin(out, params).unwrap();
    for i in 0..n {
        b.append(0, None, Some((base + i).to_string().as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap();
}

fn marker(out: &mut BytesMut, offset: i64, pid: i64, committed: bool) {
    let m = if committed { EndTxnMarker::commit(0) } else { EndTxnMarker::abort(0) };
    m.write_batch(out, BatchParams::new().base_offset(offset).producer(pid, 0, -1), 0).unwrap();
}

/// Offsets `fetched` yields, and the offsets it says the position may skip to.
fn read(mut fetched: Fetched) -> (Vec<i64>, Vec<i64>) {
    let (mut records, mut skips) = (Vec::new(), Vec::new());
    loop {
        match fetched.next() {
            Next::Record(r) => records.push(r.offset),
            Next::Skip(o, _) => skips.push(o),
            Next::Done => return (records, skips),
            Next::Corrupt(e) => panic!("{e}"),
            Next::Decoding => panic!("read while out being decoded"),
        }
    }
}

/// [`read`], after decoding the data whole as another thread would.
fn read_offloaded(mut fetched: Fetched) -> (Vec<i64>, Vec<i64>) {
    let decode = fetched.start_decoding().expect("gzip and zstd data is handed out");
    assert!(fetched.start_decoding().is_none(), "handed out once");
    assert!(matches!(fetched.next(), Next::Decoding) && !fetched.at_end());
    fetched.decoded(decode.run());
    read(fetched)
}

/// [`log`] with its record batches compressed (markers never are).
fn compressed_log(compression: Compression) -> (BytesMut, Vec<Aborted>) {
    let mut out = BytesMut::new();
    compressed_batch(&mut out, 0, 3, Some(1), compression);
    marker(&mut out, 3, 1, true);
    compressed_batch(&mut out, 4, 2, Some(2), compression);
    compressed_batch(&mut out, 6, 2, Some(1), compression);
    marker(&mut out, 8, 2, false);
    marker(&mut out, 9, 1, true);
    compressed_batch(&mut out, 10, 1, None, compression);
    (out, vec![Aborted { producer_id: 2, first_offset: 4 }])
}

/// Producer 1 commits offsets 0-2 (marker at 3); producer 2 aborts 4-5 (marker at 8),
/// interleaved with producer 1's next transaction 6-7, committed at 9.
fn log() -> (BytesMut, Vec<Aborted>) {
    let mut out = BytesMut::new();
    batch(&mut out, 0, 3, Some(1));
    marker(&mut out, 3, 1, true);
    batch(&mut out, 4, 2, Some(2));
    batch(&mut out, 6, 2, Some(1));
    marker(&mut out, 8, 2, false);
    marker(&mut out, 9, 1, true);
    batch(&mut out, 10, 1, None);
    (out, vec![Aborted { producer_id: 2, first_offset: 4 }])
}

/// Skipping an aborted transaction and its marker, written after a leader change, moves
/// the position into the new leader's epoch: a commit of it must not name the epoch the
/// position had before, which ended before it (a later validation would take the skipped
/// offsets for truncated and go back).
#[test]
fn skipped_batches_carry_their_leader_epoch() {
    let mut out = BytesMut::new();
    let mut enc = RecordBatchEncoder::new();
    let params = BatchParams::new().base_offset(0).partition_leader_epoch(7).producer(2, 0, 0).transactional(true);
    let mut b = enc.begin(&mut out, params).unwrap();
    b.append(0, None, Some(b"aborted"), &[]).unwrap();
    b.finish().unwrap();
    EndTxnMarker::abort(0)
        .write_batch(&mut out, BatchParams::new().base_offset(1).partition_leader_epoch(7).producer(2, 0, -1), 0)
        .unwrap();
    let aborted = vec![Aborted { producer_id: 2, first_offset: 0 }];
    let mut fetched =
        Fetched::new(0, TopicPartition::new("t", 0), 0, out.freeze(), aborted, true, DecodeOptions::new());
    let mut skips = Vec::new();
    loop {
        match fetched.next() {
            Next::Skip(o, epoch) => skips.push((o, epoch)),
            Next::Done => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(skips, [(1, Some(7)), (2, Some(7))]);
    let mut state = PartitionState::new(Start::Positioned, 0);
    state.position = 0;
    state.epoch = Some(6);
    for (o, e) in skips {
        state.skip_to(o, e);
    }
    assert_eq!((state.position, state.epoch), (2, Some(7)));
    // A skip behind the position changes neither.
    state.skip_to(1, Some(5));
    assert_eq!((state.position, state.epoch), (2, Some(7)));
}

#[test]
fn read_committed_hides_aborted_records_and_every_control_batch() {
    let (bytes, aborted) = log();
    let tp = TopicPartition::new("t", 0);
    let f = Fetched::new(0, tp.clone(), 1, bytes.clone().freeze(), aborted.clone(), true, DecodeOptions::new());
    let (records, skips) = read(f);
    assert_eq!(records, vec![0, 1, 2, 6, 7, 10]);
    // The position moves past markers and the aborted batch too.
    assert_eq!(skips.last(), Some(&11));
    assert!(skips.contains(&4) && skips.contains(&10));

    // read_uncommitted shows the aborted records but never a control record.
    let f = Fetched::new(0, tp, 1, bytes.freeze(), aborted, false, DecodeOptions::new());
    assert_eq!(read(f).0, vec![0, 1, 2, 4, 5, 6, 7, 10]);
}

#[test]
fn a_corrupt_batch_is_reported_after_the_good_ones() {
    // Read here, uncompressed; and zstd, decoded here or as another thread would.
    for (compression, elsewhere) in
        [(Compression::None, false), (Compression::zstd(), false), (Compression::zstd(), true)]
    {
        let mut out = BytesMut::new();
        compressed_batch(&mut out, 0, 2, None, compression);
        compressed_batch(&mut out, 2, 2, None, compression);
        let last = out.len() - 1;
        out[last] ^= 0xff;
        let tp = TopicPartition::new("t", 0);
        let mut f = Fetched::new(3, tp, 1, out.freeze(), Vec::new(), false, DecodeOptions::new());
        if elsewhere {
            let decode = f.start_decoding().expect("zstd is handed out");
            f.decoded(decode.run());
        }
        let mut seen = Vec::new();
        let corrupt = loop {
            match f.next() {
                Next::Record(r) => seen.push(r.offset),
                Next::Skip(..) => {}
                Next::Corrupt(e) => break e,
                Next::Done | Next::Decoding => panic!("the flipped byte went unnoticed"),
            }
        };
        assert_eq!(seen, vec![0, 1], "{compression:?}, elsewhere: {elsewhere}");
        assert!(corrupt.to_lowercase().contains("crc") || corrupt.contains("checksum"), "{corrupt}");
    }
}

#[test]
fn end_offset_reads_past_the_last_whole_batch_and_control_batches() {
    let mut log = BytesMut::new();
    assert_eq!(super::fetched::end_offset(&log), None);
    batch(&mut log, 10, 5, None);
    let first = log.len();
    assert_eq!(super::fetched::end_offset(&log), Some(15));
    batch(&mut log, 15, 3, Some(7));
    marker(&mut log, 18, 7, false);
    assert_eq!(super::fetched::end_offset(&log), Some(19));
    // A batch cut off by the fetch's byte limit does not count.
    let whole = log.len();
    batch(&mut log, 19, 4, None);
    assert_eq!(super::fetched::end_offset(&log[..whole + 20]), Some(19));
    assert_eq!(super::fetched::end_offset(&log[..first - 1]), None);
}

#[test]
fn data_decoded_on_another_thread_reads_as_data_decoded_here() {
    for compression in [Compression::gzip(), Compression::zstd()] {
        for read_committed in [true, false] {
            let (bytes, aborted) = compressed_log(compression);
            let fetched = || {
                let tp = TopicPartition::new("t", 0);
                Fetched::new(7, tp, 1, bytes.clone().freeze(), aborted.clone(), read_committed, DecodeOptions::new())
            };
            let here = read(fetched());
            assert_eq!(read_offloaded(fetched()), here, "{compression:?}, read_committed {read_committed}");
            assert_eq!(here.1.last(), Some(&11));
        }
    }
}

#[test]
fn only_slow_codecs_are_handed_out_and_only_before_a_read() {
    let fetched = |compression| {
        let mut out = BytesMut::new();
        compressed_batch(&mut out, 0, 3, None, compression);
        compressed_batch(&mut out, 3, 3, None, compression);
        Fetched::new(1, TopicPartition::new("t", 0), 1, out.freeze(), Vec::new(), false, DecodeOptions::new())
    };
    for compression in [Compression::None, Compression::lz4(), Compression::snappy()] {
        assert!(fetched(compression).start_decoding().is_none(), "{compression:?} is read here");
    }
    let mut f = fetched(Compression::zstd());
    assert!(matches!(f.next(), Next::Record(r) if r.offset == 0));
    assert!(f.start_decoding().is_none(), "a read began here: the rest is read here too");
    assert_eq!(read(f).0, vec![1, 2, 3, 4, 5]);
}
