//! Record decoding: `records::decode_batches` over RecordBatch v2 and legacy magic 0/1 message
//! sets, every codec, with CRC verification on and off and a decompression cap.
//!
//! Input: `[options byte][records buffer ...]`. Options bits 0..=2 pick the decompression cap
//! from `CAPS`; bit 3 skips the re-encoding check.
//!
//! Invariants: no panic; every key, value and header is readable; with CRC verification off,
//! decoding yields the same batches as with it on, up to the first CRC mismatch; batch sizes
//! add up to the iterator's position; a partial batch sits at that position; a v2 batch that
//! the encoder accepts back decodes to the same records.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sansa::protocol::records::{
    decode_batches, BatchParams, Compression, ControlRecord, DecodeOptions, EndTxnMarker, RecordBatch,
    RecordBatchEncoder, RecordsError, TimestampType,
};

const CAPS: [usize; 8] = [0, 16, 256, 4096, 64 << 10, 1 << 20, 4 << 20, 16 << 20];

fn touch(batch: &RecordBatch) -> u64 {
    let mut acc = 0u64;
    acc = acc
        .wrapping_add(batch.base_offset() as u64)
        .wrapping_add(batch.last_offset() as u64)
        .wrapping_add(batch.next_offset() as u64)
        .wrapping_add(batch.size_in_bytes() as u64)
        .wrapping_add(batch.partition_leader_epoch() as u64)
        .wrapping_add(batch.crc() as u64)
        .wrapping_add(batch.base_timestamp() as u64)
        .wrapping_add(batch.max_timestamp() as u64)
        .wrapping_add(batch.producer_id() as u64)
        .wrapping_add(batch.producer_epoch() as u64)
        .wrapping_add(batch.last_sequence() as u64)
        .wrapping_add(batch.delete_horizon_ms().unwrap_or(0) as u64)
        .wrapping_add(batch.compression().id() as u64)
        .wrapping_add(matches!(batch.timestamp_type(), TimestampType::LogAppendTime) as u64)
        .wrapping_add(batch.is_transactional() as u64 + batch.is_control() as u64);
    for r in batch.records() {
        acc = acc.wrapping_add(r.offset as u64).wrapping_add(r.timestamp as u64);
        acc = acc.wrapping_add(batch.sequence_of(r) as u64);
        if let Some(k) = &r.key {
            acc = acc.wrapping_add(k.iter().map(|&b| b as u64).sum::<u64>());
        }
        if let Some(v) = &r.value {
            acc = acc.wrapping_add(v.iter().map(|&b| b as u64).sum::<u64>());
        }
        for h in &r.headers {
            acc = acc.wrapping_add(h.key.iter().map(|&b| b as u64).sum::<u64>());
            acc = acc.wrapping_add(h.key_str().map_or(0, |s| s.len() as u64));
            if let Some(v) = &h.value {
                acc = acc.wrapping_add(v.iter().map(|&b| b as u64).sum::<u64>());
            }
        }
        if batch.is_control() {
            acc = acc.wrapping_add(ControlRecord::parse(r).map_or(0, |c| c.kind.id() as u64));
            acc = acc.wrapping_add(EndTxnMarker::parse(r).map_or(0, |m| m.coordinator_epoch as u64));
        }
    }
    acc
}

struct Run {
    batches: Vec<Result<RecordBatch, RecordsError>>,
}

fn decode(input: &Bytes, options: &DecodeOptions) -> Run {
    let mut it = decode_batches(input.clone(), options);
    let mut batches = Vec::new();
    let mut consumed = 0usize;
    let mut failed = false;
    while let Some(b) = it.next() {
        assert!(!failed, "a batch after an error");
        match &b {
            Ok(batch) => {
                std::hint::black_box(touch(batch));
                consumed += batch.size_in_bytes();
                assert_eq!(consumed, it.position(), "batch sizes do not add up to the position");
            }
            Err(_) => failed = true,
        }
        batches.push(b);
    }
    assert!(it.next().is_none(), "iterator resumed after the end");
    if let Some(p) = it.partial() {
        assert!(!failed, "partial batch after an error");
        assert_eq!(p.position, it.position(), "partial batch not at the position");
        assert_eq!(p.position + p.available, input.len(), "partial batch does not run to the end");
        if let Some(size) = p.size {
            assert!(size > p.available, "a complete batch reported as partial");
        }
    } else if !failed {
        assert_eq!(it.position(), input.len(), "input not consumed");
    }
    Run { batches }
}

/// Writes a decoded v2 batch back with the encoder and checks that it decodes to the same.
fn reencode(batch: &RecordBatch) {
    if batch.magic() != 2 || batch.records().is_empty() {
        return;
    }
    let mut params = BatchParams::new()
        .base_offset(batch.base_offset())
        .partition_leader_epoch(batch.partition_leader_epoch())
        .producer(batch.producer_id(), batch.producer_epoch(), batch.base_sequence())
        .transactional(batch.is_transactional())
        .control(batch.is_control())
        .delete_horizon_ms(batch.delete_horizon_ms())
        .compression(Compression::from_type(batch.compression()));
    if batch.timestamp_type() == TimestampType::LogAppendTime {
        params = params.log_append_time(Some(batch.max_timestamp()));
    }
    let mut out = BytesMut::new();
    let mut enc = RecordBatchEncoder::new();
    let Ok(mut b) = enc.begin(&mut out, params) else { return };
    for r in batch.records() {
        let delta = r.offset.wrapping_sub(batch.base_offset());
        let Ok(delta) = i32::try_from(delta) else { return };
        if b.append_with_offset_delta(delta, r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers).is_err() {
            return;
        }
    }
    if b.finish().is_err() {
        return;
    }
    let out = out.freeze();
    let again: Vec<_> = decode_batches(out.clone(), &DecodeOptions::new().max_decompressed_size(64 << 20)).collect();
    assert_eq!(again.len(), 1, "re-encoded batch: {again:?}\nbytes: {out:02x?}");
    let b2 = match &again[0] {
        Ok(b2) => b2,
        Err(e) => panic!("re-encoded batch fails to decode: {e:?}\noriginal: {batch:?}\nbytes: {out:02x?}"),
    };
    assert_eq!(b2.records(), batch.records(), "re-encoded batch has different records");
    assert_eq!(
        (b2.base_offset(), b2.partition_leader_epoch(), b2.producer_id(), b2.producer_epoch(), b2.base_sequence()),
        (batch.base_offset(), batch.partition_leader_epoch(), batch.producer_id(), batch.producer_epoch(), batch.base_sequence()),
    );
    assert_eq!(
        (b2.is_transactional(), b2.is_control(), b2.compression(), b2.timestamp_type(), b2.delete_horizon_ms()),
        (batch.is_transactional(), batch.is_control(), batch.compression(), batch.timestamp_type(), batch.delete_horizon_ms()),
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else { return };
    let cap = CAPS[(opts & 7) as usize];
    let input = Bytes::copy_from_slice(rest);

    let checked = decode(&input, &DecodeOptions::new().max_decompressed_size(cap));
    let unchecked = decode(&input, &DecodeOptions::new().verify_crc(false).max_decompressed_size(cap));

    // Identical up to the first CRC mismatch of the checked run.
    for (i, c) in checked.batches.iter().enumerate() {
        match c {
            Ok(b) => assert_eq!(Some(b), unchecked.batches.get(i).and_then(|u| u.as_ref().ok()), "batch {i} differs without CRC checks"),
            Err(RecordsError::CrcMismatch { .. }) => break,
            Err(e) => {
                let u = unchecked.batches.get(i).map(|u| u.as_ref().err());
                assert!(matches!(u, Some(Some(_))), "batch {i}: {e:?} with CRC checks, {u:?} without");
            }
        }
    }
    if checked.batches.iter().all(|b| b.is_ok()) {
        assert_eq!(checked.batches.len(), unchecked.batches.len());
    }

    if opts & 8 == 0 {
        for b in unchecked.batches.iter().flatten() {
            reencode(b);
        }
    }
});
