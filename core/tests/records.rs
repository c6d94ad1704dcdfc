//! The records API as a producer, a consumer and a broker-side writer use it.

use bytes::{Bytes, BytesMut};
use sansa::protocol::records::{
    decode_batches, BatchParams, Compression, CompressionType, ControlRecord, ControlRecordType, DecodeOptions,
    EndTxnMarker, Header, LegacyParams, RecordBatchEncoder, RecordsError, TimestampType,
};

const CODECS: [Compression; 5] =
    [Compression::None, Compression::gzip(), Compression::snappy(), Compression::lz4(), Compression::zstd()];

#[test]
fn producer_batches_reach_the_consumer_intact() {
    let mut encoder = RecordBatchEncoder::new();
    let mut wire = BytesMut::new();
    let mut next_offset = 0;
    for (i, compression) in CODECS.into_iter().enumerate() {
        let params =
            BatchParams::new().base_offset(next_offset).producer(4242, 0, next_offset as i32).compression(compression);
        let mut batch = encoder.begin(&mut wire, params).unwrap();
        for n in 0..100 {
            let value = format!("batch {i} record {n} ").repeat(n % 5 + 1);
            let headers = [Header::new(Bytes::from_static(b"n"), Some(Bytes::from(n.to_string())))];
            batch.append(1_000 + n as i64, Some(format!("k{n}").as_bytes()), Some(value.as_bytes()), &headers).unwrap();
        }
        batch.finish().unwrap();
        next_offset += 100;
    }

    let wire = wire.freeze();
    let mut batches = decode_batches(wire.clone(), &DecodeOptions::new());
    let mut expected_offset = 0;
    for (i, batch) in batches.by_ref().enumerate() {
        let batch = batch.unwrap();
        assert_eq!(batch.compression(), CODECS[i].codec());
        assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(batch.producer_id(), 4242);
        for (n, record) in batch.records().iter().enumerate() {
            assert_eq!(record.offset, expected_offset);
            assert_eq!(record.timestamp, 1_000 + n as i64);
            assert_eq!(record.key.as_deref(), Some(format!("k{n}").as_bytes()));
            let value = format!("batch {i} record {n} ").repeat(n % 5 + 1);
            assert_eq!(record.value.as_deref(), Some(value.as_bytes()));
            assert_eq!(record.headers[0].key_str().unwrap(), "n");
            assert_eq!(batch.sequence_of(record), expected_offset as i32);
            expected_offset += 1;
        }
    }
    assert_eq!(expected_offset, 500);
    assert_eq!(batches.partial(), None);
    assert_eq!(batches.position(), wire.len());
}

#[test]
fn a_fetch_cut_inside_a_batch_yields_the_complete_ones() {
    let mut encoder = RecordBatchEncoder::new();
    let mut wire = BytesMut::new();
    for base in [0i64, 10] {
        let mut batch = encoder.begin(&mut wire, BatchParams::new().base_offset(base)).unwrap();
        for n in 0..10 {
            batch.append(n, None, Some(&[n as u8; 50]), &[]).unwrap();
        }
        batch.finish().unwrap();
    }
    let cut = wire.len() - 100;
    let mut batches = decode_batches(wire.freeze().slice(..cut), &DecodeOptions::new());
    assert_eq!(batches.by_ref().count(), 1);
    let partial = batches.partial().unwrap();
    assert_eq!(partial.base_offset, Some(10));
    assert!(partial.size.unwrap() > partial.available);
}

#[test]
fn read_committed_consumer_sees_markers() {
    let mut wire = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    let params = BatchParams::new().producer(7, 1, 0).transactional(true);
    let mut batch = encoder.begin(&mut wire, params).unwrap();
    batch.append(5, None, Some(b"in a transaction"), &[]).unwrap();
    batch.finish().unwrap();
    EndTxnMarker::abort(3).write_batch(&mut wire, BatchParams::new().base_offset(1).producer(7, 1, -1), 6).unwrap();

    let batches: Vec<_> = decode_batches(wire.freeze(), &DecodeOptions::new()).collect::<Result<_, _>>().unwrap();
    assert!(batches[0].is_transactional() && !batches[0].is_control());
    assert!(batches[1].is_control());
    let marker = &batches[1].records()[0];
    assert_eq!(ControlRecord::parse(marker).unwrap().kind, ControlRecordType::Abort);
    assert_eq!(EndTxnMarker::parse(marker).unwrap(), EndTxnMarker::abort(3));
}

#[test]
fn old_brokers_message_sets_decode() {
    let mut encoder = RecordBatchEncoder::new();
    for magic in [0, 1] {
        for compression in [Compression::None, Compression::gzip(), Compression::snappy(), Compression::lz4()] {
            let mut wire = BytesMut::new();
            let mut set = encoder
                .begin_legacy(&mut wire, LegacyParams::new(magic).base_offset(30).compression(compression))
                .unwrap();
            for n in 0..5 {
                set.append(100 + n, if n == 0 { None } else { Some(b"key") }, Some(b"value")).unwrap();
            }
            set.finish().unwrap();
            let records: Vec<_> = decode_batches(wire.freeze(), &DecodeOptions::new())
                .map(|b| b.unwrap())
                .flat_map(|b| b.into_records())
                .collect();
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [30, 31, 32, 33, 34], "magic {magic} {compression:?}");
            assert_eq!(records[0].key, None);
            let expected_ts = if magic == 0 { -1 } else { 104 };
            assert_eq!(records[4].timestamp, expected_ts);
        }
    }
}

#[test]
fn errors_say_what_and_where() {
    let mut encoder = RecordBatchEncoder::new();
    let mut wire = BytesMut::new();
    for base in [0i64, 1] {
        let mut batch = encoder.begin(&mut wire, BatchParams::new().base_offset(base)).unwrap();
        batch.append(0, None, Some(b"v"), &[]).unwrap();
        batch.finish().unwrap();
    }
    let second = wire.len() / 2;
    let last = wire.len() - 1;
    wire[last] ^= 0xff;
    let results: Vec<_> = decode_batches(wire.freeze(), &DecodeOptions::new()).collect();
    assert!(results[0].is_ok());
    let err = results[1].clone().unwrap_err();
    assert!(matches!(err, RecordsError::CrcMismatch { .. }));
    assert_eq!(err.location().position, second);
    assert_eq!(err.location().base_offset, 1);
    assert!(err.to_string().contains("base offset 1"), "{err}");
    assert_eq!(results.len(), 2);
    assert_eq!("lz4".parse::<CompressionType>().unwrap(), CompressionType::Lz4);
}
