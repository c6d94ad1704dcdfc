//! Tests of the records layer: byte-exact fixtures built from the format definitions,
//! round trips for every format and codec, and hostile input.

use bytes::{Bytes, BytesMut};

use super::compression::XERIAL_MAGIC;
use super::*;
use crate::protocol::DecodeError;

// ---------------------------------------------------------------------------------------
// Helpers

/// Bit-at-a-time CRC32C, independent of the `crc32c` crate, for the fixtures.
fn crc32c_reference(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Bit-at-a-time CRC32 (IEEE), independent of `crc32fast`, for the legacy fixtures.
fn crc32_reference(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Recomputes a v2 batch's CRC after a test edited it.
fn fix_crc(batch: &mut [u8]) {
    let crc = super::crc::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn decode_all(bytes: impl Into<Bytes>, options: &DecodeOptions) -> Result<Vec<RecordBatch>, RecordsError> {
    decode_batches(bytes.into(), options).collect()
}

fn decode_one(bytes: impl Into<Bytes>) -> RecordBatch {
    let mut batches = decode_all(bytes, &DecodeOptions::new()).unwrap();
    assert_eq!(batches.len(), 1);
    batches.remove(0)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Compressible but varied text.
fn payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = ["alpha ", "broker ", "commit ", "delta ", "epoch ", "fetch ", "group ", "hello "];
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
        if rng.below(5) == 0 {
            v.extend_from_slice(format!("{} ", rng.next() % 100_000).as_bytes());
        }
    }
    v.truncate(len);
    v
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip { level: Compression::GZIP_DEFAULT_LEVEL },
    Compression::Snappy,
    Compression::Lz4 { level: Compression::LZ4_DEFAULT_LEVEL },
    Compression::Zstd { level: Compression::ZSTD_DEFAULT_LEVEL },
];

/// Input records for round trips: (timestamp, key, value, headers).
type Input = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>);

fn sample_records(seed: u64, n: usize) -> Vec<Input> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let key = match i % 4 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("key-{i}").into_bytes()),
            };
            let len = rng.below(300);
            let value = if i % 7 == 3 { None } else { Some(payload(&mut rng, len)) };
            let headers = (0..i % 3)
                .map(|h| {
                    Header::new(
                        format!("h{h}").into_bytes(),
                        if h == 1 { None } else { Some(Bytes::from(payload(&mut rng, 10))) },
                    )
                })
                .collect();
            (1_700_000_000_000 + (i as i64 * 37) % 500 - 100, key, value, headers)
        })
        .collect()
}

fn encode_v2(params: BatchParams, records: &[Input]) -> BytesMut {
    let mut out = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    let mut b = encoder.begin(&mut out, params).unwrap();
    for (ts, k, v, h) in records {
        b.append(*ts, k.as_deref(), v.as_deref(), h).unwrap();
    }
    let len = b.finish().unwrap();
    assert_eq!(len, out.len());
    out
}

fn encode_legacy(params: LegacyParams, records: &[Input]) -> BytesMut {
    let mut out = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    let mut b = encoder.begin_legacy(&mut out, params).unwrap();
    for (ts, k, v, _) in records {
        b.append(*ts, k.as_deref(), v.as_deref()).unwrap();
    }
    b.finish().unwrap();
    out
}

fn assert_records_match(decoded: &[Record], input: &[Input], base_offset: i64, with_headers: bool) {
    assert_eq!(decoded.len(), input.len());
    for (i, (r, (ts, k, v, h))) in decoded.iter().zip(input).enumerate() {
        assert_eq!(r.offset, base_offset + i as i64, "record {i}");
        assert_eq!(r.timestamp, *ts, "record {i}");
        assert_eq!(r.key.as_deref(), k.as_deref(), "record {i}");
        assert_eq!(r.value.as_deref(), v.as_deref(), "record {i}");
        if with_headers {
            assert_eq!(&r.headers, h, "record {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures

#[test]
fn reference_checksums_are_right() {
    assert_eq!(crc32c_reference(b"123456789"), 0xE306_9283);
    assert_eq!(crc32_reference(b"123456789"), 0xCBF4_3926);
}

/// A v2 batch of two records, written out field by field from the format definition.
fn v2_fixture() -> Vec<u8> {
    let records: &[u8] = &[
        // record 0: 16-byte body
        0x20, // length 16 (zig-zag)
        0x00, // attributes
        0x00, // timestamp delta 0
        0x00, // offset delta 0
        0x02, b'k', // key "k"
        0x0a, b'h', b'e', b'l', b'l', b'o', // value "hello"
        0x02, // one header
        0x02, b'h', // header key "h"
        0x02, b'v', // header value "v"
        // record 1: 6-byte body
        0x0c, // length 6
        0x00, // attributes
        0x0a, // timestamp delta 5
        0x02, // offset delta 1
        0x01, // null key (-1)
        0x00, // empty value
        0x00, // no headers
    ];
    let mut b = Vec::new();
    b.extend_from_slice(&42i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((61 - 12 + records.len()) as i32).to_be_bytes()); // batch length
    b.extend_from_slice(&7i32.to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, filled below
    b.extend_from_slice(&0x0010i16.to_be_bytes()); // attributes: transactional
    b.extend_from_slice(&1i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&1_000i64.to_be_bytes()); // base timestamp
    b.extend_from_slice(&1_005i64.to_be_bytes()); // max timestamp
    b.extend_from_slice(&9i64.to_be_bytes()); // producer id
    b.extend_from_slice(&1i16.to_be_bytes()); // producer epoch
    b.extend_from_slice(&3i32.to_be_bytes()); // base sequence
    b.extend_from_slice(&2i32.to_be_bytes()); // record count
    b.extend_from_slice(records);
    let crc = crc32c_reference(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn v2_fixture_encodes_byte_for_byte() {
    let params = BatchParams::new().base_offset(42).partition_leader_epoch(7).producer(9, 1, 3).transactional(true);
    let mut out = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    let mut b = encoder.begin(&mut out, params).unwrap();
    b.append(1_000, Some(b"k"), Some(b"hello"), &[Header::new(&b"h"[..], Some(Bytes::from_static(b"v")))]).unwrap();
    b.append(1_005, None, Some(b""), &[]).unwrap();
    b.finish().unwrap();
    assert_eq!(out[..], v2_fixture()[..]);
}

#[test]
fn v2_fixture_decodes_every_field() {
    let fixture = v2_fixture();
    let batch = decode_one(fixture.clone());
    assert_eq!(batch.base_offset(), 42);
    assert_eq!(batch.batch_length() as usize, fixture.len() - 12);
    assert_eq!(batch.size_in_bytes(), fixture.len());
    assert_eq!(batch.partition_leader_epoch(), 7);
    assert_eq!(batch.magic(), 2);
    assert_eq!(batch.crc(), crc32c_reference(&fixture[21..]));
    assert_eq!(batch.attributes(), 0x10);
    assert_eq!(batch.compression(), CompressionType::None);
    assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
    assert!(batch.is_transactional());
    assert!(!batch.is_control());
    assert_eq!(batch.delete_horizon_ms(), None);
    assert_eq!(batch.last_offset_delta(), 1);
    assert_eq!(batch.last_offset(), 43);
    assert_eq!(batch.next_offset(), 44);
    assert_eq!(batch.base_timestamp(), 1_000);
    assert_eq!(batch.max_timestamp(), 1_005);
    assert_eq!(batch.producer_id(), 9);
    assert_eq!(batch.producer_epoch(), 1);
    assert_eq!(batch.base_sequence(), 3);
    assert_eq!(batch.last_sequence(), 4);
    let r = batch.records();
    assert_eq!(r.len(), 2);
    assert_eq!(batch.sequence_of(&r[1]), 4);
    assert_eq!(
        r[0],
        Record {
            offset: 42,
            timestamp: 1_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![Header::new(&b"h"[..], Some(Bytes::from_static(b"v")))],
        }
    );
    assert_eq!(r[0].headers[0].key_str().unwrap(), "h");
    assert_eq!(r[1], Record { offset: 43, timestamp: 1_005, key: None, value: Some(Bytes::new()), headers: vec![] });
}

#[test]
fn decoded_values_share_the_input_buffer() {
    let input = Bytes::from(v2_fixture());
    let batch = decode_one(input.clone());
    let value = batch.records()[0].value.as_ref().unwrap();
    let range = input.as_ptr_range();
    assert!(range.contains(&value.as_ptr()), "value was copied");
}

#[test]
fn legacy_v0_fixture_encodes_and_decodes() {
    let mut m = Vec::new();
    m.extend_from_slice(&5i64.to_be_bytes()); // offset
    m.extend_from_slice(&16i32.to_be_bytes()); // size: crc 4 + magic 1 + attributes 1 + key 4+1 + value 4+1
    m.extend_from_slice(&[0; 4]); // crc, filled below
    m.push(0); // magic
    m.push(0); // attributes
    m.extend_from_slice(&1i32.to_be_bytes());
    m.push(b'k');
    m.extend_from_slice(&1i32.to_be_bytes());
    m.push(b'v');
    let crc = crc32_reference(&m[16..]);
    m[12..16].copy_from_slice(&crc.to_be_bytes());

    let out =
        encode_legacy(LegacyParams::new(0).base_offset(5), &[(123, Some(b"k".to_vec()), Some(b"v".to_vec()), vec![])]);
    assert_eq!(out[..], m[..]);

    let batch = decode_one(m);
    assert_eq!(batch.magic(), 0);
    assert_eq!(batch.base_offset(), 5);
    assert_eq!(batch.crc(), crc);
    assert_eq!(batch.timestamp_type(), TimestampType::NoTimestamp);
    assert_eq!(batch.producer_id(), NO_PRODUCER_ID);
    assert_eq!(batch.base_sequence(), NO_SEQUENCE);
    assert_eq!(
        batch.records(),
        &[Record {
            offset: 5,
            timestamp: NO_TIMESTAMP,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![]
        }]
    );
}

#[test]
fn legacy_v1_fixture_encodes_and_decodes() {
    let mut m = Vec::new();
    m.extend_from_slice(&7i64.to_be_bytes()); // offset
    m.extend_from_slice(&25i32.to_be_bytes()); // size: 4 + 1 + 1 + timestamp 8 + key 4 + value 4+3
    m.extend_from_slice(&[0; 4]); // crc
    m.push(1); // magic
    m.push(0); // attributes: create time, uncompressed
    m.extend_from_slice(&1_600_000_000_000i64.to_be_bytes());
    m.extend_from_slice(&(-1i32).to_be_bytes()); // null key
    m.extend_from_slice(&3i32.to_be_bytes());
    m.extend_from_slice(b"abc");
    let crc = crc32_reference(&m[16..]);
    m[12..16].copy_from_slice(&crc.to_be_bytes());

    let out =
        encode_legacy(LegacyParams::new(1).base_offset(7), &[(1_600_000_000_000, None, Some(b"abc".to_vec()), vec![])]);
    assert_eq!(out[..], m[..]);

    let batch = decode_one(m);
    assert_eq!(batch.magic(), 1);
    assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(batch.max_timestamp(), 1_600_000_000_000);
    let r = &batch.records()[0];
    assert_eq!(
        (r.offset, r.timestamp, r.key.clone(), r.value.as_deref()),
        (7, 1_600_000_000_000, None, Some(&b"abc"[..]))
    );
}

// ---------------------------------------------------------------------------------------
// Round trips

#[test]
fn v2_round_trips_with_every_codec() {
    let input = sample_records(1, 300);
    for c in CODECS {
        let params = BatchParams::new().base_offset(1_000).producer(77, 3, 500).compression(c);
        let out = encode_v2(params, &input);
        let batch = decode_one(out.clone());
        assert_eq!(batch.compression(), c.codec(), "{c:?}");
        assert_eq!(batch.producer_id(), 77);
        assert_eq!(batch.base_sequence(), 500);
        assert_eq!(batch.last_offset_delta(), 299);
        assert_eq!(batch.base_timestamp(), input[0].0);
        assert_eq!(batch.max_timestamp(), input.iter().map(|r| r.0).max().unwrap());
        assert_records_match(batch.records(), &input, 1_000, true);
        if c != Compression::None {
            let plain = encode_v2(BatchParams::new(), &input);
            assert!(out.len() < plain.len(), "{c:?} did not shrink the batch");
        }
    }
}

#[test]
fn records_with_the_longest_varints_round_trip() {
    // Timestamp deltas of ten-byte varlongs both ways, keys and values with multi-byte
    // lengths, absent and empty ones: every varint of a record's framing at its widest.
    let big = payload(&mut Rng(7), 20_000);
    let input: Vec<Input> = vec![
        (0, None, Some(big.clone()), vec![]),
        (i64::MAX, Some(big[..300].to_vec()), None, vec![Header::new(b"h".to_vec(), None)]),
        (i64::MIN, Some(Vec::new()), Some(Vec::new()), vec![]),
        (-1, Some(big.clone()), Some(big[..128].to_vec()), vec![Header::new(Vec::new(), Some(Bytes::new()))]),
    ];
    let batch = decode_one(encode_v2(BatchParams::new(), &input));
    assert_records_match(batch.records(), &input, 0, true);
}

#[test]
fn compressed_values_share_the_decompressed_buffer() {
    let input = sample_records(2, 20);
    let batch = decode_one(encode_v2(BatchParams::new().compression(Compression::zstd()), &input));
    let values: Vec<&Bytes> =
        batch.records().iter().filter_map(|r| r.value.as_ref()).filter(|v| !v.is_empty()).collect();
    // All values are slices of the one decompressed block, whose size is that of the
    // uncompressed records.
    let block = encode_v2(BatchParams::new(), &input).len() - RECORD_BATCH_OVERHEAD;
    let lo = values.iter().map(|v| v.as_ptr() as usize).min().unwrap();
    let hi = values.iter().map(|v| v.as_ptr() as usize + v.len()).max().unwrap();
    assert!(hi - lo <= block, "values span {} bytes, block is {block}", hi - lo);
}

#[test]
fn legacy_round_trips_with_every_codec() {
    let input: Vec<Input> = sample_records(3, 50).into_iter().map(|(t, k, v, _)| (t, k, v, vec![])).collect();
    for magic in [0i8, 1] {
        for c in CODECS.into_iter().filter(|c| c.codec() != CompressionType::Zstd) {
            let out = encode_legacy(LegacyParams::new(magic).base_offset(200).compression(c), &input);
            let batches = decode_all(out, &DecodeOptions::new()).unwrap();
            let records: Vec<Record> = batches.iter().flat_map(|b| b.records().iter().cloned()).collect();
            let expected: Vec<Input> = if magic == 0 {
                input.iter().map(|(_, k, v, h)| (NO_TIMESTAMP, k.clone(), v.clone(), h.clone())).collect()
            } else {
                input.clone()
            };
            assert_records_match(&records, &expected, 200, false);
            if c == Compression::None {
                assert_eq!(batches.len(), input.len());
            } else {
                assert_eq!(batches.len(), 1, "one wrapper");
                let b = &batches[0];
                assert_eq!(
                    (b.magic(), b.compression(), b.base_offset(), b.last_offset()),
                    (magic, c.codec(), 200, 249)
                );
            }
        }
    }
}

#[test]
fn legacy_v1_wrapper_uses_relative_inner_offsets() {
    let input = sample_records(4, 3);
    let out = encode_legacy(LegacyParams::new(1).base_offset(10).compression(Compression::gzip()), &input);
    // Wrapper offset is the last absolute offset.
    assert_eq!(i64::from_be_bytes(out[..8].try_into().unwrap()), 12);
    // Inner messages count from zero.
    let value_at = 12 + 4 + 1 + 1 + 8 + 4 + 4;
    let mut inner = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[value_at..]), &mut inner).unwrap();
    let mut offsets = Vec::new();
    let mut rest = &inner[..];
    while !rest.is_empty() {
        offsets.push(i64::from_be_bytes(rest[..8].try_into().unwrap()));
        let size = i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize;
        rest = &rest[12 + size..];
    }
    assert_eq!(offsets, [0, 1, 2]);

    // A wrapper offset of 0 (written by some old producers) means the inner offsets stand.
    let mut zeroed = out.to_vec();
    zeroed[..8].copy_from_slice(&0i64.to_be_bytes());
    let crc = crc32fast::hash(&zeroed[16..]);
    zeroed[12..16].copy_from_slice(&crc.to_be_bytes());
    let offsets: Vec<i64> = decode_one(zeroed).records().iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2]);
}

#[test]
fn legacy_log_append_time_overrides_inner_timestamps() {
    let input = sample_records(5, 4);
    let out = encode_legacy(LegacyParams::new(1).compression(Compression::snappy()).log_append_time(Some(99)), &input);
    let batch = decode_one(out);
    assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
    assert!(batch.records().iter().all(|r| r.timestamp == 99));
}

#[test]
fn v2_log_append_time_and_delete_horizon() {
    let input = sample_records(6, 5);
    let out = encode_v2(BatchParams::new().log_append_time(Some(5_000)), &input);
    let batch = decode_one(out);
    assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(batch.max_timestamp(), 5_000);
    assert!(batch.records().iter().all(|r| r.timestamp == 5_000));

    let out = encode_v2(BatchParams::new().delete_horizon_ms(Some(1_000)), &input);
    let batch = decode_one(out);
    assert_eq!(batch.delete_horizon_ms(), Some(1_000));
    assert_eq!(batch.base_timestamp(), 1_000);
    assert_records_match(batch.records(), &input, 0, true);
}

#[test]
fn offset_gaps_are_kept() {
    let mut out = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    let mut b = encoder.begin(&mut out, BatchParams::new().base_offset(100)).unwrap();
    b.append_with_offset_delta(0, 1, None, Some(b"a"), &[]).unwrap();
    b.append_with_offset_delta(5, 2, None, Some(b"b"), &[]).unwrap();
    assert_eq!(
        b.append_with_offset_delta(5, 3, None, None, &[]),
        Err(RecordsEncodeError::OffsetOutOfOrder { previous: 5, given: 5 })
    );
    assert_eq!(b.append(3, None, Some(b"c"), &[]).unwrap(), 6);
    b.finish().unwrap();
    let batch = decode_one(out);
    assert_eq!(batch.records().iter().map(|r| r.offset).collect::<Vec<_>>(), [100, 105, 106]);
    assert_eq!(batch.last_offset(), 106);
}

#[test]
fn empty_batches_left_by_compaction_round_trip() {
    let mut out = BytesMut::new();
    let params = BatchParams::new().base_offset(300).producer(5, 2, 40);
    assert_eq!(write_empty_batch(&mut out, params, 9, 777), RECORD_BATCH_OVERHEAD);
    let batch = decode_one(out);
    assert!(batch.records().is_empty());
    assert_eq!((batch.base_offset(), batch.last_offset(), batch.next_offset()), (300, 309, 310));
    assert_eq!(
        (batch.producer_id(), batch.producer_epoch(), batch.base_sequence(), batch.last_sequence()),
        (5, 2, 40, 49)
    );
    assert_eq!((batch.base_timestamp(), batch.max_timestamp()), (777, 777));
}

#[test]
fn builder_rejects_bad_use_and_cleans_up() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let mut encoder = RecordBatchEncoder::new();
    {
        let mut b = encoder.begin(&mut out, BatchParams::new()).unwrap();
        b.append(1, None, Some(b"x"), &[]).unwrap();
        // dropped unfinished
    }
    assert_eq!(&out[..], b"prefix");
    let b = encoder.begin(&mut out, BatchParams::new()).unwrap();
    assert_eq!(b.finish(), Err(RecordsEncodeError::EmptyBatch));
    assert_eq!(&out[..], b"prefix");
    assert!(matches!(
        encoder.begin(&mut out, BatchParams::new().compression(Compression::Zstd { level: 99 })),
        Err(RecordsEncodeError::InvalidCompressionLevel { .. })
    ));
    assert!(matches!(
        encoder.begin_legacy(&mut out, LegacyParams::new(1).compression(Compression::zstd())),
        Err(RecordsEncodeError::CompressionNotSupported { .. })
    ));
    assert!(matches!(encoder.begin_legacy(&mut out, LegacyParams::new(2)), Err(RecordsEncodeError::InvalidMagic(2))));
    assert_eq!(&out[..], b"prefix");
}

#[test]
fn builder_reports_sizes() {
    let mut out = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    let mut b = encoder.begin(&mut out, BatchParams::new().compression(Compression::gzip())).unwrap();
    let headers = [Header::new(&b"trace"[..], Some(Bytes::from_static(b"abc")))];
    b.append(10, Some(b"key"), Some(&[7; 100]), &headers).unwrap();
    let expected = RECORD_BATCH_OVERHEAD + record_encoded_len(0, 0, Some(b"key"), Some(&[7; 100]), &headers);
    assert_eq!(b.uncompressed_size(), expected);
    assert_eq!(b.record_count(), 1);
    let len = b.finish().unwrap();
    assert!(len < expected);
}

#[test]
fn batches_of_mixed_formats_decode_in_order() {
    let input = sample_records(7, 3);
    let mut all = BytesMut::new();
    all.extend_from_slice(&encode_legacy(LegacyParams::new(0).base_offset(0).compression(Compression::gzip()), &input));
    all.extend_from_slice(&encode_legacy(LegacyParams::new(1).base_offset(3), &input));
    all.extend_from_slice(&encode_v2(BatchParams::new().base_offset(6).compression(Compression::lz4()), &input));
    let batches = decode_all(all, &DecodeOptions::new()).unwrap();
    let magics: Vec<i8> = batches.iter().map(RecordBatch::magic).collect();
    assert_eq!(magics, [0, 1, 1, 1, 2]);
    let offsets: Vec<i64> = batches.iter().flat_map(|b| b.records().iter().map(|r| r.offset)).collect();
    assert_eq!(offsets, (0..9).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------
// Control records

#[test]
fn transaction_markers_round_trip() {
    let mut out = BytesMut::new();
    let params = BatchParams::new().base_offset(50).producer(12, 4, 0).partition_leader_epoch(3);
    EndTxnMarker::commit(17).write_batch(&mut out, params, 1_234).unwrap();
    EndTxnMarker::abort(18).write_batch(&mut out, params.base_offset(51), 1_235).unwrap();
    let batches = decode_all(out, &DecodeOptions::new()).unwrap();
    for (batch, (committed, epoch)) in batches.iter().zip([(true, 17), (false, 18)]) {
        assert!(batch.is_control() && batch.is_transactional());
        assert_eq!(batch.producer_id(), 12);
        assert_eq!(batch.base_sequence(), NO_SEQUENCE);
        let record = &batch.records()[0];
        let key = ControlRecord::parse(record).unwrap();
        assert_eq!(key.version, 0);
        assert_eq!(key.kind, if committed { ControlRecordType::Commit } else { ControlRecordType::Abort });
        assert_eq!(EndTxnMarker::parse(record).unwrap(), EndTxnMarker { committed, coordinator_epoch: epoch });
    }
    // The exact key and value bytes from the format definition.
    assert_eq!(EndTxnMarker::commit(0x0102_0304).key_bytes(), [0, 0, 0, 1]);
    assert_eq!(EndTxnMarker::abort(0x0102_0304).key_bytes(), [0, 0, 0, 0]);
    assert_eq!(EndTxnMarker::abort(0x0102_0304).value_bytes(), [0, 0, 1, 2, 3, 4]);
}

#[test]
fn bad_control_records_are_errors() {
    let record = |key: Option<&'static [u8]>, value: Option<&'static [u8]>| Record {
        offset: 0,
        timestamp: 0,
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        headers: vec![],
    };
    assert_eq!(ControlRecord::parse(&record(None, None)), Err(ControlRecordError::MissingKey));
    assert_eq!(ControlRecord::parse(&record(Some(&[0, 0, 0]), None)), Err(ControlRecordError::KeyTooShort { len: 3 }));
    assert_eq!(
        ControlRecord::parse(&record(Some(&[0xff, 0xff, 0, 1]), None)),
        Err(ControlRecordError::InvalidKeyVersion(-1))
    );
    assert_eq!(ControlRecord::parse(&record(Some(&[0, 0, 0, 9]), None)).unwrap().kind, ControlRecordType::Unknown(9));
    assert_eq!(
        EndTxnMarker::parse(&record(Some(&[0, 0, 0, 2]), Some(&[0; 6]))),
        Err(ControlRecordError::NotEndTxnMarker(ControlRecordType::LeaderChange))
    );
    assert_eq!(EndTxnMarker::parse(&record(Some(&[0, 0, 0, 1]), None)), Err(ControlRecordError::MissingValue));
    assert_eq!(
        EndTxnMarker::parse(&record(Some(&[0, 0, 0, 1]), Some(&[0, 0, 0]))),
        Err(ControlRecordError::ValueTooShort { len: 3 })
    );
    // A newer key version still parses, as in Kafka.
    assert_eq!(
        EndTxnMarker::parse(&record(Some(&[0, 1, 0, 1, 9]), Some(&[0, 1, 0, 0, 0, 5, 9]))).unwrap().coordinator_epoch,
        5
    );
}

// ---------------------------------------------------------------------------------------
// Damaged input

#[test]
fn crc_mismatch_is_detected_and_can_be_skipped() {
    let mut fixture = v2_fixture();
    let last = fixture.len() - 1;
    fixture[last - 15] ^= 0x01; // inside "hello": still parses
    let err = decode_all(fixture.clone(), &DecodeOptions::new()).unwrap_err();
    assert!(matches!(err, RecordsError::CrcMismatch { .. }), "{err}");
    assert_eq!(err.location().position, 0);
    let batches = decode_all(fixture, &DecodeOptions::new().verify_crc(false)).unwrap();
    assert_eq!(batches[0].records().len(), 2);

    // Legacy: CRC32 of the message.
    let mut legacy = encode_legacy(LegacyParams::new(1), &sample_records(8, 1)).to_vec();
    let last = legacy.len() - 1;
    legacy[last] ^= 0x40;
    assert!(matches!(decode_all(legacy.clone(), &DecodeOptions::new()), Err(RecordsError::CrcMismatch { .. })));
    assert!(decode_all(legacy, &DecodeOptions::new().verify_crc(false)).is_ok());
}

#[test]
fn partial_trailing_batch_ends_iteration_quietly() {
    let input = sample_records(9, 10);
    let one = encode_v2(BatchParams::new(), &input);
    let mut all = BytesMut::new();
    for i in 0..3 {
        all.extend_from_slice(&encode_v2(
            BatchParams::new().base_offset(i * 10).compression(Compression::snappy()),
            &input,
        ));
    }
    let full = all.freeze();
    let second_end = full.len() - (full.len() / 3);
    for cut in [second_end + 1, second_end + 8, second_end + 11, second_end + 12, second_end + 17, full.len() - 1] {
        let mut it = decode_batches(full.slice(..cut), &DecodeOptions::new());
        assert_eq!(it.by_ref().map(|b| b.unwrap().base_offset()).collect::<Vec<_>>(), [0, 10], "cut {cut}");
        let partial = it.partial().expect("partial batch reported");
        assert_eq!(partial.position, second_end);
        assert_eq!(partial.available, cut - second_end);
        if cut - second_end >= 8 {
            assert_eq!(partial.base_offset, Some(20));
        }
        if cut - second_end >= 12 {
            assert_eq!(partial.size, Some(full.len() - second_end));
        }
    }
    // Only a partial batch: nothing, no error.
    let mut it = decode_batches(one.freeze().slice(..30), &DecodeOptions::new());
    assert!(it.next().is_none());
    assert!(it.partial().is_some());
}

#[test]
fn record_count_must_match_the_records() {
    let fixture = v2_fixture();
    // Declares three records but holds two.
    let mut more = fixture.clone();
    more[57..61].copy_from_slice(&3i32.to_be_bytes());
    fix_crc(&mut more);
    assert!(matches!(
        decode_all(more, &DecodeOptions::new()),
        Err(RecordsError::RecordCountMismatch { declared: 3, found: 2, .. })
    ));
    // Declares one record but holds two.
    let mut fewer = fixture.clone();
    fewer[57..61].copy_from_slice(&1i32.to_be_bytes());
    fix_crc(&mut fewer);
    assert!(matches!(decode_all(fewer, &DecodeOptions::new()), Err(RecordsError::TrailingBytes { .. })));
    // A negative count.
    let mut negative = fixture;
    negative[57..61].copy_from_slice(&(-5i32).to_be_bytes());
    fix_crc(&mut negative);
    assert!(matches!(
        decode_all(negative, &DecodeOptions::new()),
        Err(RecordsError::InvalidRecordCount { count: -5, .. })
    ));
}

#[test]
fn negative_lengths_other_than_null_are_errors() {
    let mut fixture = v2_fixture();
    // Key length of record 0 (byte 61 + 4) from 1 to -2.
    assert_eq!(fixture[65], 0x02);
    fixture[65] = 0x03;
    fix_crc(&mut fixture);
    let err = decode_all(fixture, &DecodeOptions::new()).unwrap_err();
    match err {
        RecordsError::Malformed { at, source: DecodeError::InvalidLength { what: "Record.Key", len: -2 } } => {
            assert_eq!(at.record, Some(0));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn record_length_must_match_its_fields() {
    let mut fixture = v2_fixture();
    // Record 1 claims 7 bytes instead of 6 and the batch gains one byte to match.
    let pos = 61 + 17;
    assert_eq!(fixture[pos], 0x0c);
    fixture[pos] = 0x0e;
    fixture.push(0);
    let len = (fixture.len() - 12) as i32;
    fixture[8..12].copy_from_slice(&len.to_be_bytes());
    fix_crc(&mut fixture);
    assert!(matches!(
        decode_all(fixture, &DecodeOptions::new()),
        Err(RecordsError::RecordSizeMismatch { declared: 7, used: 6, .. })
    ));
}

#[test]
fn framing_errors_are_reported() {
    let mut small = v2_fixture();
    small[8..12].copy_from_slice(&3i32.to_be_bytes());
    assert!(matches!(decode_all(small, &DecodeOptions::new()), Err(RecordsError::BatchTooSmall { size: 3, .. })));
    let mut magic = v2_fixture();
    magic[16] = 7;
    assert!(matches!(decode_all(magic, &DecodeOptions::new()), Err(RecordsError::UnsupportedMagic { magic: 7, .. })));
    let mut codec = v2_fixture();
    codec[22] |= 0x06;
    fix_crc(&mut codec);
    assert!(matches!(decode_all(codec, &DecodeOptions::new()), Err(RecordsError::UnknownCompression { codec: 6, .. })));
}

#[test]
fn legacy_zstd_and_nested_compression_are_rejected() {
    // A magic 1 wrapper claiming zstd.
    let mut out = encode_legacy(LegacyParams::new(1).compression(Compression::gzip()), &sample_records(10, 2)).to_vec();
    out[17] = (out[17] & !0x07) | 4;
    let crc = crc32fast::hash(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode_all(out, &DecodeOptions::new()),
        Err(RecordsError::CompressionNotSupported { codec: CompressionType::Zstd, magic: 1, .. })
    ));

    // A wrapper whose inner message is itself a compressed wrapper.
    let inner = encode_legacy(LegacyParams::new(1).compression(Compression::gzip()), &sample_records(11, 2));
    let mut compressed = BytesMut::new();
    super::compression::compress(Compression::gzip(), &inner, &mut compressed, 1, &mut Default::default()).unwrap();
    let mut m = Vec::new();
    m.extend_from_slice(&1i64.to_be_bytes());
    m.extend_from_slice(&((22 + compressed.len()) as i32).to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&0i64.to_be_bytes());
    m.extend_from_slice(&(-1i32).to_be_bytes());
    m.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
    m.extend_from_slice(&compressed);
    let crc = crc32fast::hash(&m[16..]);
    m[12..16].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(decode_all(m, &DecodeOptions::new()), Err(RecordsError::InvalidWrapper { .. })));
}

#[test]
fn decompression_bombs_are_stopped_by_the_limit() {
    let big = vec![0u8; 8 << 20];
    for c in CODECS.into_iter().skip(1) {
        let out = encode_v2(BatchParams::new().compression(c), &[(0, None, Some(big.clone()), vec![])]);
        assert!(out.len() < (1 << 20), "{c:?}: {} bytes", out.len());
        let limited = DecodeOptions::new().max_decompressed_size(1 << 20);
        match decode_all(out.clone(), &limited) {
            Err(RecordsError::DecompressedTooLarge { codec, limit, .. }) => {
                assert_eq!((codec, limit), (c.codec(), 1 << 20));
            }
            other => panic!("{c:?}: {other:?}"),
        }
        assert_eq!(decode_one(out).records()[0].value.as_ref().unwrap().len(), 8 << 20);
    }
    // Legacy wrappers obey the same limit.
    let out = encode_legacy(LegacyParams::new(1).compression(Compression::gzip()), &[(0, None, Some(big), vec![])]);
    assert!(matches!(
        decode_all(out, &DecodeOptions::new().max_decompressed_size(1 << 20)),
        Err(RecordsError::DecompressedTooLarge { .. })
    ));
}

#[test]
fn raw_and_xerial_snappy_batches_both_decode() {
    let input = sample_records(12, 40);
    let xerial = encode_v2(BatchParams::new().compression(Compression::snappy()), &input);
    assert_eq!(xerial[61..69], XERIAL_MAGIC, "the Java client's framing");
    // The same batch with the records as one raw snappy block, as librdkafka and Go clients send.
    let plain = encode_v2(BatchParams::new(), &input);
    let raw = snap::raw::Encoder::new().compress_vec(&plain[61..]).unwrap();
    let mut batch = plain[..61].to_vec();
    batch.extend_from_slice(&raw);
    let len = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    batch[22] |= 2;
    fix_crc(&mut batch);
    for bytes in [xerial.to_vec(), batch] {
        let decoded = decode_one(bytes);
        assert_eq!(decoded.compression(), CompressionType::Snappy);
        assert_records_match(decoded.records(), &input, 0, true);
    }
}

/// Feeds truncations and random byte changes of valid input of every kind to the decoder.
/// Any result is fine; a panic fails the test.
#[test]
fn damaged_input_never_panics() {
    let input = sample_records(13, 12);
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for c in CODECS {
        samples.push(encode_v2(BatchParams::new().producer(1, 2, 3).compression(c), &input).to_vec());
        if c.codec() != CompressionType::Zstd {
            for magic in [0, 1] {
                samples.push(encode_legacy(LegacyParams::new(magic).compression(c), &input).to_vec());
            }
        }
    }
    let mut marker = BytesMut::new();
    EndTxnMarker::commit(1).write_batch(&mut marker, BatchParams::new(), 0).unwrap();
    samples.push(marker.to_vec());
    let mut mixed = samples[0].clone();
    mixed.extend_from_slice(&samples[2]);
    samples.push(mixed);

    let options = [DecodeOptions::new(), DecodeOptions::new().verify_crc(false).max_decompressed_size(1 << 16)];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let exercise = |bytes: Vec<u8>| {
        let bytes = Bytes::from(bytes);
        for o in &options {
            for batch in decode_batches(bytes.clone(), o).flatten() {
                for r in batch.records() {
                    let _ = ControlRecord::parse(r);
                    let _ = EndTxnMarker::parse(r);
                }
            }
        }
    };
    for sample in &samples {
        for cut in 0..sample.len() {
            exercise(sample[..cut].to_vec());
        }
        for _ in 0..400 {
            let mut m = sample.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                m[i] = match rng.below(4) {
                    0 => m[i] ^ (1 << rng.below(8)),
                    1 => 0xff,
                    2 => 0,
                    _ => rng.next() as u8,
                };
            }
            if rng.below(3) == 0 {
                m.truncate(rng.below(m.len()));
            }
            exercise(m);
        }
    }
}

/// A producer's batches are written in pooled allocations: a sealed batch's comes back once
/// its last reference is dropped, a compressed batch's uncompressed one at sealing, and the
/// next batch of about the same size is written in it, never while a reference lives.
#[test]
fn pooled_batches_reuse_allocations_no_longer_referenced() {
    use crate::buffer_pool::BufferPool;
    let pool: BufferPool<BytesMut> = BufferPool::new(4, 8 << 20);
    let input = sample_records(9, 200);
    let fill = |batch: &mut OpenBatch| {
        for (ts, key, value, headers) in &input {
            batch.append(*ts, key.as_deref(), value.as_deref(), headers).unwrap();
        }
    };
    let mut encoder = RecordBatchEncoder::new();
    let capacity = 64 * 1024;
    let mut first = OpenBatch::pooled(capacity, &pool);
    fill(&mut first);
    let sealed = first.seal_pooled(BatchParams::new(), &mut encoder, &pool).unwrap();
    let sealed_at = sealed.as_ptr();
    assert_records_match(decode_one(sealed.clone()).records(), &input, 0, true);
    // While the sealed batch lives, the next batch gets another allocation.
    let mut second = OpenBatch::pooled(capacity, &pool);
    fill(&mut second);
    let plain = second.seal_pooled(BatchParams::new(), &mut encoder, &pool).unwrap();
    assert_ne!(plain.as_ptr(), sealed_at);
    let copy = sealed.slice(100..200);
    drop(sealed);
    let mut third = OpenBatch::pooled(capacity, &pool);
    fill(&mut third);
    let third_at = third.seal_pooled(BatchParams::new(), &mut encoder, &pool).unwrap().as_ptr();
    assert_ne!(third_at, sealed_at, "a slice lives");
    drop(copy);
    let fourth = OpenBatch::pooled(capacity, &pool);
    assert!([sealed_at, third_at].contains(&fourth.buf.as_ptr()), "a kept allocation");
    // Compressed: the records' buffer goes back at sealing, before the output is dropped.
    let pool: BufferPool<BytesMut> = BufferPool::new(4, 8 << 20);
    let zstd = BatchParams::new().compression(Compression::Zstd { level: 3 });
    let mut fifth = OpenBatch::pooled(capacity, &pool);
    fill(&mut fifth);
    let records_at = fifth.buf.as_ptr();
    let compressed = fifth.seal_pooled(zstd, &mut encoder, &pool).unwrap();
    assert_records_match(decode_one(compressed.clone()).records(), &input, 0, true);
    assert_eq!(OpenBatch::pooled(capacity, &pool).buf.as_ptr(), records_at);
    drop(pool);
    drop(compressed);
}
