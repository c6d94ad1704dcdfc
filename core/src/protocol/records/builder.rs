//! Writing v2 record batches.
//!
//! A builder reserves the 61-byte header in the output, writes each record straight after it
//! (or, for a compressed batch, into the encoder's scratch buffer), and on `finish`
//! compresses if needed, fills in the header and computes the CRC32C over it in place.
//! Appending a record allocates nothing beyond growing those buffers.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::Header;
use super::compression::{self, Compression, Compressors};
use super::crc::crc32c;
use super::error::RecordsEncodeError;
use super::legacy::{LegacyBuilder, LegacyParams};
use super::{
    ATTR_CONTROL, ATTR_DELETE_HORIZON, ATTR_TIMESTAMP_TYPE, ATTR_TRANSACTIONAL, MAGIC_V2, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP, RECORD_BATCH_OVERHEAD,
};
use crate::buffer_pool::BufferPool;
use crate::protocol::primitives::{put_varint, put_varlong, varint_len, varlong_len};

/// Header fields of a v2 batch that the writer chooses; start from [`BatchParams::new`].
/// The rest (length, CRC, offsets and timestamps, count) follow from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchParams {
    /// Offset of the first record (producers send 0; the broker assigns real offsets).
    pub base_offset: i64,
    /// Leader epoch; -1 from producers.
    pub partition_leader_epoch: i32,
    /// Producer id, -1 without idempotence.
    pub producer_id: i64,
    /// Producer epoch, -1 without idempotence.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 without idempotence.
    pub base_sequence: i32,
    /// Part of a transaction.
    pub transactional: bool,
    /// Holds control records.
    pub control: bool,
    /// Marks the batch as stamped with this broker append time, which becomes its max
    /// timestamp.
    pub log_append_time: Option<i64>,
    /// Delete horizon set by the log cleaner; replaces the base timestamp.
    pub delete_horizon_ms: Option<i64>,
    /// Codec and level.
    pub compression: Compression,
}

impl BatchParams {
    /// A plain uncompressed batch at offset 0 with no producer state, as a
    /// non-idempotent producer sends.
    pub const fn new() -> Self {
        BatchParams {
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
            log_append_time: None,
            delete_horizon_ms: None,
            compression: Compression::None,
        }
    }

    /// Sets [`BatchParams::base_offset`].
    pub const fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Sets [`BatchParams::partition_leader_epoch`].
    pub const fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Sets the idempotent producer's id, epoch and first sequence.
    pub const fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets [`BatchParams::transactional`].
    pub const fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Sets [`BatchParams::control`].
    pub const fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Sets [`BatchParams::log_append_time`].
    pub const fn log_append_time(mut self, time: Option<i64>) -> Self {
        self.log_append_time = time;
        self
    }

    /// Sets [`BatchParams::delete_horizon_ms`].
    pub const fn delete_horizon_ms(mut self, horizon: Option<i64>) -> Self {
        self.delete_horizon_ms = horizon;
        self
    }

    /// Sets [`BatchParams::compression`].
    pub const fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    fn attributes(&self) -> i16 {
        let mut a = i16::from(self.compression.codec().id());
        if self.log_append_time.is_some() {
            a |= ATTR_TIMESTAMP_TYPE;
        }
        if self.transactional {
            a |= ATTR_TRANSACTIONAL;
        }
        if self.control {
            a |= ATTR_CONTROL;
        }
        if self.delete_horizon_ms.is_some() {
            a |= ATTR_DELETE_HORIZON;
        }
        a
    }
}

impl Default for BatchParams {
    fn default() -> Self {
        Self::new()
    }
}

/// Reusable state for writing batches: the scratch buffer compressed batches are assembled
/// in and codec contexts. Keep one per producer (or connection) and start each batch with
/// [`RecordBatchEncoder::begin`].
#[derive(Debug, Default)]
pub struct RecordBatchEncoder {
    pub(crate) scratch: BytesMut,
    pub(crate) compressors: Compressors,
}

impl RecordBatchEncoder {
    /// An encoder with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a v2 batch at the end of `out`.
    pub fn begin<'a>(
        &'a mut self,
        out: &'a mut BytesMut,
        params: BatchParams,
    ) -> Result<RecordBatchBuilder<'a>, RecordsEncodeError> {
        params.compression.validate()?;
        self.scratch.clear();
        let start = out.len();
        out.put_bytes(0, RECORD_BATCH_OVERHEAD);
        Ok(RecordBatchBuilder {
            enc: self,
            out,
            start,
            params,
            count: 0,
            last_offset_delta: -1,
            base_timestamp: params.delete_horizon_ms,
            max_timestamp: NO_TIMESTAMP,
            finished: false,
        })
    }

    /// Starts a legacy (magic 0 or 1) message set at the end of `out`.
    pub fn begin_legacy<'a>(
        &'a mut self,
        out: &'a mut BytesMut,
        params: LegacyParams,
    ) -> Result<LegacyBuilder<'a>, RecordsEncodeError> {
        LegacyBuilder::new(self, out, params)
    }
}

/// Writes one v2 batch; made by [`RecordBatchEncoder::begin`]. Dropping it without calling
/// [`RecordBatchBuilder::finish`] removes what it wrote from the output.
#[derive(Debug)]
pub struct RecordBatchBuilder<'a> {
    enc: &'a mut RecordBatchEncoder,
    out: &'a mut BytesMut,
    start: usize,
    params: BatchParams,
    count: i32,
    last_offset_delta: i32,
    /// Set by the first record, or by the delete horizon.
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    finished: bool,
}

impl RecordBatchBuilder<'_> {
    /// Appends a record at the next offset and returns its offset delta.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<i32, RecordsEncodeError> {
        let delta = self.last_offset_delta.checked_add(1).ok_or(RecordsEncodeError::TooManyRecords)?;
        self.append_with_offset_delta(delta, timestamp, key, value, headers)?;
        Ok(delta)
    }

    /// Appends a record at an explicit offset delta, which must exceed the previous one
    /// (gaps are allowed, as in compacted batches).
    pub fn append_with_offset_delta(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), RecordsEncodeError> {
        if offset_delta <= self.last_offset_delta {
            return Err(RecordsEncodeError::OffsetOutOfOrder { previous: self.last_offset_delta, given: offset_delta });
        }
        if self.count == i32::MAX {
            return Err(RecordsEncodeError::TooManyRecords);
        }
        let base = *self.base_timestamp.get_or_insert(timestamp);
        // Wrapping like Kafka's Java long arithmetic; decoding adds it back the same way.
        let timestamp_delta = timestamp.wrapping_sub(base);
        let dst = if self.params.compression == Compression::None { &mut *self.out } else { &mut self.enc.scratch };
        write_record(dst, offset_delta, timestamp_delta, key, value, headers)?;
        self.count += 1;
        self.last_offset_delta = offset_delta;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// Records appended so far.
    pub fn record_count(&self) -> usize {
        self.count as usize
    }

    /// Batch size so far before compression, header included; what a producer compares
    /// with `batch.size`.
    pub fn uncompressed_size(&self) -> usize {
        (self.out.len() - self.start) + self.enc.scratch.len()
    }

    /// Completes the batch: compresses, fills in the header and checksum, and returns the
    /// batch's size in bytes.
    pub fn finish(mut self) -> Result<usize, RecordsEncodeError> {
        if self.count == 0 {
            return Err(RecordsEncodeError::EmptyBatch);
        }
        if self.params.compression != Compression::None {
            compression::compress(
                self.params.compression,
                &self.enc.scratch,
                self.out,
                MAGIC_V2,
                &mut self.enc.compressors,
            )?;
        }
        let start = self.start;
        let total = self.out.len() - start;
        let length =
            i32::try_from(total - 12).map_err(|_| RecordsEncodeError::TooLong { field: "batch", len: total })?;
        let max_timestamp = self.params.log_append_time.unwrap_or(self.max_timestamp);
        let fields = HeaderFields {
            length,
            last_offset_delta: self.last_offset_delta,
            base_timestamp: self.base_timestamp.unwrap_or(NO_TIMESTAMP),
            max_timestamp,
            count: self.count,
        };
        write_header(self.out, start, &self.params, &fields);
        self.finished = true;
        Ok(total)
    }
}

impl Drop for RecordBatchBuilder<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.truncate(self.start);
        }
    }
}

/// The header fields that follow from the records.
struct HeaderFields {
    length: i32,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
}

/// Fills in the header reserved at `start` and then the CRC32C over everything after it.
fn write_header(out: &mut BytesMut, start: usize, p: &BatchParams, f: &HeaderFields) {
    let mut h = [0u8; RECORD_BATCH_OVERHEAD];
    let mut w = &mut h[..];
    w.put_i64(p.base_offset);
    w.put_i32(f.length);
    w.put_i32(p.partition_leader_epoch);
    w.put_i8(MAGIC_V2);
    w.put_u32(0); // crc, computed below over what follows it
    w.put_i16(p.attributes());
    w.put_i32(f.last_offset_delta);
    w.put_i64(f.base_timestamp);
    w.put_i64(f.max_timestamp);
    w.put_i64(p.producer_id);
    w.put_i16(p.producer_epoch);
    w.put_i32(p.base_sequence);
    w.put_i32(f.count);
    debug_assert!(w.is_empty());
    out[start..start + RECORD_BATCH_OVERHEAD].copy_from_slice(&h);
    let crc = crc32c(&out[start + 21..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

/// Appends a batch with no records, as the log cleaner leaves behind to keep a producer's
/// last offset and sequence after compacting all its records away. `last_offset_delta` says
/// which offsets the batch still covers; `timestamp` becomes both timestamps. Compression in
/// `params` is ignored: there is nothing to compress.
pub fn write_empty_batch(out: &mut BytesMut, params: BatchParams, last_offset_delta: i32, timestamp: i64) -> usize {
    let params = params.compression(Compression::None);
    let start = out.len();
    out.put_bytes(0, RECORD_BATCH_OVERHEAD);
    let fields = HeaderFields {
        length: (RECORD_BATCH_OVERHEAD - 12) as i32,
        last_offset_delta,
        base_timestamp: params.delete_horizon_ms.unwrap_or(timestamp),
        max_timestamp: params.log_append_time.unwrap_or(timestamp),
        count: 0,
    };
    write_header(out, start, &params, &fields);
    RECORD_BATCH_OVERHEAD
}

/// Bytes one v2 record takes in a batch, length prefix included. Producers use it to decide
/// whether a record still fits a batch before appending.
pub fn record_encoded_len(
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    let body = body_len(offset_delta, timestamp_delta, key, value, headers);
    varint_len(body.min(i32::MAX as usize) as i32) + body
}

fn nullable_len(field: Option<&[u8]>) -> usize {
    match field {
        None => varint_len(-1),
        Some(b) => varint_len(b.len().min(i32::MAX as usize) as i32) + b.len(),
    }
}

fn body_len(
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    let mut len = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta) + nullable_len(key) + nullable_len(value);
    len += varint_len(headers.len().min(i32::MAX as usize) as i32);
    for h in headers {
        len += nullable_len(Some(&h.key)) + nullable_len(h.value.as_deref());
    }
    len
}

fn check_len(len: usize, field: &'static str) -> Result<(), RecordsEncodeError> {
    if len > i32::MAX as usize {
        return Err(RecordsEncodeError::TooLong { field, len });
    }
    Ok(())
}

fn write_record(
    dst: &mut BytesMut,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Result<(), RecordsEncodeError> {
    check_len(key.map_or(0, <[u8]>::len), "key")?;
    check_len(value.map_or(0, <[u8]>::len), "value")?;
    check_len(headers.len(), "headers")?;
    for h in headers {
        check_len(h.key.len(), "header key")?;
        check_len(h.value.as_ref().map_or(0, |v| v.len()), "header value")?;
    }
    let body = body_len(offset_delta, timestamp_delta, key, value, headers);
    check_len(body, "record")?;
    dst.reserve(varint_len(body as i32) + body);
    put_varint(dst, body as i32);
    dst.put_i8(0); // record attributes: none defined
    put_varlong(dst, timestamp_delta);
    put_varint(dst, offset_delta);
    put_nullable(dst, key);
    put_nullable(dst, value);
    put_varint(dst, headers.len() as i32);
    for h in headers {
        put_nullable(dst, Some(&h.key));
        put_nullable(dst, h.value.as_deref());
    }
    Ok(())
}

fn put_nullable(dst: &mut BytesMut, field: Option<&[u8]>) {
    match field {
        None => put_varint(dst, -1),
        Some(b) => {
            put_varint(dst, b.len() as i32);
            dst.put_slice(b);
        }
    }
}

/// A v2 batch a producer fills over time and seals when it is sent: it owns its buffer, so
/// it can stay open across calls, unlike [`RecordBatchBuilder`]. The header space is kept at
/// the front, so sealing an uncompressed batch copies nothing. Producer id, epoch and base
/// sequence are chosen at sealing time, when the batch is drained.
#[derive(Debug)]
pub struct OpenBatch {
    pub(super) buf: BytesMut,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
}

impl OpenBatch {
    /// An empty batch whose buffer starts with room for `capacity` bytes of records.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::in_buffer(BytesMut::with_capacity(RECORD_BATCH_OVERHEAD + capacity))
    }

    /// An empty batch in an allocation from `pool` with room for `capacity` bytes of records.
    pub(crate) fn pooled(capacity: usize, pool: &BufferPool<BytesMut>) -> Self {
        Self::in_buffer(pool.take(RECORD_BATCH_OVERHEAD + capacity))
    }

    fn in_buffer(mut buf: BytesMut) -> Self {
        buf.put_bytes(0, RECORD_BATCH_OVERHEAD);
        OpenBatch { buf, count: 0, base_timestamp: None, max_timestamp: NO_TIMESTAMP }
    }

    /// Appends a record at the next offset delta.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), RecordsEncodeError> {
        if self.count == i32::MAX {
            return Err(RecordsEncodeError::TooManyRecords);
        }
        let base = *self.base_timestamp.get_or_insert(timestamp);
        write_record(&mut self.buf, self.count, timestamp.wrapping_sub(base), key, value, headers)?;
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// The bytes one more record would add.
    pub fn next_record_len(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let delta = self.base_timestamp.map_or(0, |b| timestamp.wrapping_sub(b));
        record_encoded_len(self.count, delta, key, value, headers)
    }

    /// Records appended.
    pub fn record_count(&self) -> usize {
        self.count as usize
    }

    /// Size before compression, header included.
    pub fn uncompressed_size(&self) -> usize {
        self.buf.len()
    }

    /// Completes the batch with `params` (compression, producer state; `base_offset` is 0)
    /// and returns its bytes. Compressed batches are assembled in `encoder`'s buffers.
    pub fn seal(self, params: BatchParams, encoder: &mut RecordBatchEncoder) -> Result<BytesMut, RecordsEncodeError> {
        self.seal_into(params, encoder, BytesMut::with_capacity).map(|(sealed, _)| sealed)
    }

    /// [`OpenBatch::seal`] with the compressed output taken from `pool`; the sealed batch's
    /// allocation, and a compressed batch's uncompressed one at once, go back to `pool`.
    pub(crate) fn seal_pooled(
        self,
        params: BatchParams,
        encoder: &mut RecordBatchEncoder,
        pool: &BufferPool<BytesMut>,
    ) -> Result<Bytes, RecordsEncodeError> {
        self.seal_in_pool(params, encoder, pool).map(|sealed| pool.freeze(sealed))
    }

    /// [`OpenBatch::seal_pooled`], left unfrozen: the producer state can still be written
    /// in place ([`rewrite_producer_state`]) before it goes back to `pool` with `freeze`.
    pub(crate) fn seal_in_pool(
        self,
        params: BatchParams,
        encoder: &mut RecordBatchEncoder,
        pool: &BufferPool<BytesMut>,
    ) -> Result<BytesMut, RecordsEncodeError> {
        let (sealed, spare) = self.seal_into(params, encoder, |len| pool.take(len))?;
        if let Some(spare) = spare {
            pool.give_back(spare);
        }
        Ok(sealed)
    }

    /// The sealed batch, and the uncompressed records' buffer if they were compressed into
    /// another, taken from `output`.
    fn seal_into(
        self,
        params: BatchParams,
        encoder: &mut RecordBatchEncoder,
        output: impl FnOnce(usize) -> BytesMut,
    ) -> Result<(BytesMut, Option<BytesMut>), RecordsEncodeError> {
        if self.count == 0 {
            return Err(RecordsEncodeError::EmptyBatch);
        }
        params.compression.validate()?;
        let (mut out, spare) = if params.compression == Compression::None {
            (self.buf, None)
        } else {
            let records = self.buf.len() - RECORD_BATCH_OVERHEAD;
            let bound = compression::max_compressed_len(params.compression, records);
            let mut out = output(RECORD_BATCH_OVERHEAD + bound);
            out.put_bytes(0, RECORD_BATCH_OVERHEAD);
            compression::compress(
                params.compression,
                &self.buf[RECORD_BATCH_OVERHEAD..],
                &mut out,
                MAGIC_V2,
                &mut encoder.compressors,
            )?;
            (out, Some(self.buf))
        };
        let total = out.len();
        let length =
            i32::try_from(total - 12).map_err(|_| RecordsEncodeError::TooLong { field: "batch", len: total })?;
        let fields = HeaderFields {
            length,
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp.unwrap_or(NO_TIMESTAMP),
            max_timestamp: params.log_append_time.unwrap_or(self.max_timestamp),
            count: self.count,
        };
        write_header(&mut out, 0, &params, &fields);
        Ok((out, spare))
    }
}

/// Rewrites the producer id, epoch and base sequence of a sealed v2 batch (a producer whose
/// epoch was bumped re-sequences what it had not yet got written) and its checksum.
pub fn rewrite_producer_state(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    if batch.len() < RECORD_BATCH_OVERHEAD {
        return;
    }
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}
