//! Decoded record batches and the iterator over a `records` field.
//!
//! The v2 layout (all integers big-endian):
//!
//! ```text
//! baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 (2)
//! | crc uint32 (CRC32C of everything after it) | attributes int16 | lastOffsetDelta int32
//! | baseTimestamp int64 | maxTimestamp int64 | producerId int64 | producerEpoch int16
//! | baseSequence int32 | recordCount int32 | records (compressed as one block if compressed)
//!
//! record: length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
//!         | keyLength varint | key | valueLength varint | value | headerCount varint
//!         | headers: keyLength varint | key | valueLength varint | value
//! ```
//!
//! Legacy messages (magic 0/1) put their magic at the same byte, so the iterator tells the
//! two formats apart per entry and presents both as [`RecordBatch`].

use bytes::{Buf, Bytes};

use super::compression::{self, CompressionType, DecompressError};
use super::crc::crc32c;
use super::error::{Location, RecordsError};
use super::legacy;
use super::{
    ATTR_COMPRESSION_MASK, ATTR_CONTROL, ATTR_DELETE_HORIZON, ATTR_TIMESTAMP_TYPE, ATTR_TRANSACTIONAL, MAGIC_V2,
    NO_SEQUENCE, RECORD_BATCH_OVERHEAD,
};
use crate::protocol::primitives::{get_i16, get_i32, get_i64, get_i8, get_u32};
use crate::protocol::DecodeError;

/// Bytes before the batch-specific header: base offset and size.
pub(crate) const LOG_OVERHEAD: usize = 12;
/// Where the magic byte sits in every format.
const MAGIC_OFFSET: usize = 16;
/// The smallest entry of any format (a v0 message with empty key and value).
const MIN_ENTRY_SIZE: i32 = 14;
/// Where the v2 checksummed region starts (the attributes).
const CRC_START: usize = 21;
/// The fewest bytes one v2 record can take; bounds pre-allocation by the bytes present.
const MIN_RECORD_LEN: usize = 7;

/// The codec of the v2 batch that `records` starts with, from its header alone (nothing is
/// checked); `None` for older formats, an unknown codec or too few bytes.
pub(crate) fn first_batch_codec(records: &[u8]) -> Option<CompressionType> {
    if records.get(MAGIC_OFFSET).map(|&m| m as i8) != Some(MAGIC_V2) {
        return None;
    }
    let attributes = i16::from_be_bytes(records.get(CRC_START..CRC_START + 2)?.try_into().ok()?);
    CompressionType::from_id((attributes & ATTR_COMPRESSION_MASK) as u8)
}

/// How the timestamps of a batch were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimestampType {
    /// Magic 0 messages carry no timestamp.
    NoTimestamp,
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// A record header. Keys are strings in Kafka's API, but like Kafka's own clients sansa
/// does not reject a record over a key that is not UTF-8; [`Header::key_str`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Header key.
    pub key: Bytes,
    /// Header value; `None` is null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header from a key and an optional value.
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Header { key: key.into(), value }
    }

    /// The key as UTF-8.
    pub fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.key)
    }
}

/// One decoded record. Offset and timestamp are absolute; under
/// [`TimestampType::LogAppendTime`] every record reports the batch's append time, as Kafka's
/// clients do. Keys, values and header values share the received (or decompressed) buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in milliseconds, or -1 for none.
    pub timestamp: i64,
    /// Key; `None` is null.
    pub key: Option<Bytes>,
    /// Value; `None` is null (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers in wire order (always empty before magic 2).
    pub headers: Vec<Header>,
}

/// What to check and allow while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Check CRC32C (v2) and CRC32 (v0/v1). Turning it off saves the pass over the bytes
    /// for consumers that trust their brokers; every other check stays on.
    pub verify_crc: bool,
    /// Most bytes one compressed batch may decompress to; past it decoding fails.
    pub max_decompressed_size: usize,
}

impl DecodeOptions {
    /// Default for [`DecodeOptions::max_decompressed_size`]: 128 MiB.
    pub const DEFAULT_MAX_DECOMPRESSED_SIZE: usize = 128 << 20;

    /// Checksums verified, decompression capped at 128 MiB per batch.
    pub const fn new() -> Self {
        DecodeOptions { verify_crc: true, max_decompressed_size: Self::DEFAULT_MAX_DECOMPRESSED_SIZE }
    }

    /// Sets [`DecodeOptions::verify_crc`].
    pub const fn verify_crc(mut self, verify: bool) -> Self {
        self.verify_crc = verify;
        self
    }

    /// Sets [`DecodeOptions::max_decompressed_size`].
    pub const fn max_decompressed_size(mut self, limit: usize) -> Self {
        self.max_decompressed_size = limit;
        self
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A decoded batch: every header field and its records. Legacy magic 0/1 entries appear as
/// batches too, one per top-level message (a compressed wrapper's inner messages are its
/// records); they have no producer state, so those fields read -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    pub(crate) base_offset: i64,
    pub(crate) batch_length: i32,
    pub(crate) partition_leader_epoch: i32,
    pub(crate) magic: i8,
    pub(crate) crc: u32,
    pub(crate) attributes: i16,
    pub(crate) compression: CompressionType,
    pub(crate) last_offset_delta: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) records: Vec<Record>,
}

impl RecordBatch {
    /// Offset of the first record (as the header says; compaction may have removed it).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset of the last record the batch was written with.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset a consumer continues from after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// `lastOffsetDelta` from the header.
    pub fn last_offset_delta(&self) -> i32 {
        self.last_offset_delta
    }

    /// The size field: bytes after the base offset and the size itself.
    pub fn batch_length(&self) -> i32 {
        self.batch_length
    }

    /// Bytes the batch took on the wire.
    pub fn size_in_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Leader epoch stamped by the broker, -1 if unknown (and for legacy messages).
    pub fn partition_leader_epoch(&self) -> i32 {
        self.partition_leader_epoch
    }

    /// Format version: 2, or 0/1 for legacy messages.
    pub fn magic(&self) -> i8 {
        self.magic
    }

    /// Checksum from the header: CRC32C for v2, CRC32 of the top-level message for v0/v1.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Raw attributes (for legacy messages, the message's attributes byte).
    pub fn attributes(&self) -> i16 {
        self.attributes
    }

    /// Codec the records were compressed with.
    pub fn compression(&self) -> CompressionType {
        self.compression
    }

    /// How timestamps were assigned.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.magic == 0 {
            TimestampType::NoTimestamp
        } else if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.magic >= MAGIC_V2 && self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (see [`super::ControlRecord`]).
    pub fn is_control(&self) -> bool {
        self.magic >= MAGIC_V2 && self.attributes & ATTR_CONTROL != 0
    }

    /// When compaction may drop this batch's tombstones and markers, if the log cleaner has
    /// set it (it then replaces the base timestamp).
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.magic >= MAGIC_V2 && self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    /// `baseTimestamp` from the header.
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// `maxTimestamp` from the header (the append time under log-append time).
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Producer id, -1 if none.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// Producer epoch, -1 if none.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }

    /// Sequence number of the first record, -1 if none.
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }

    /// Sequence number of the last record, -1 if none. Sequences wrap from `i32::MAX` to 0.
    pub fn last_sequence(&self) -> i32 {
        sequence_after(self.base_sequence, self.last_offset_delta)
    }

    /// Sequence number of a record of this batch, -1 if the batch has none.
    pub fn sequence_of(&self, record: &Record) -> i32 {
        let delta = record.offset.wrapping_sub(self.base_offset);
        sequence_after(self.base_sequence, delta.clamp(0, i64::from(i32::MAX)) as i32)
    }

    /// The records.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Takes the records out.
    pub fn into_records(self) -> Vec<Record> {
        self.records
    }
}

fn sequence_after(base: i32, delta: i32) -> i32 {
    if base == NO_SEQUENCE {
        return NO_SEQUENCE;
    }
    // Kafka wraps sequences to 0 after i32::MAX.
    let next = i64::from(base) + i64::from(delta);
    (next % (i64::from(i32::MAX) + 1)) as i32
}

/// A batch cut off by the end of the input, which brokers send when a fetch size limit
/// falls inside a batch. It is not an error: fetch again from its offset, with a larger
/// limit if no complete batch came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialBatch {
    /// Byte position within the input.
    pub position: usize,
    /// Its base offset, if the first 8 bytes arrived.
    pub base_offset: Option<i64>,
    /// Its full size in bytes, if the size field arrived.
    pub size: Option<usize>,
    /// Bytes present.
    pub available: usize,
}

/// Decodes the batches of a `records` field (a fetch response's or a produce request's),
/// one at a time. See [`Batches`].
pub fn decode_batches(records: Bytes, options: &DecodeOptions) -> Batches {
    Batches { rest: records, position: 0, options: *options, partial: None, done: false }
}

/// Iterator over the batches of a `records` field.
///
/// Yields each complete batch. A batch cut off at the end ends the iteration without an
/// error and is described by [`Batches::partial`]. After an error the iterator yields
/// nothing more, since the framing of what follows cannot be trusted.
#[derive(Debug, Clone)]
pub struct Batches {
    rest: Bytes,
    position: usize,
    options: DecodeOptions,
    partial: Option<PartialBatch>,
    done: bool,
}

impl Batches {
    /// The cut-off batch at the end of the input, once iteration has reached it.
    pub fn partial(&self) -> Option<PartialBatch> {
        self.partial
    }

    /// Byte position of the next batch within the input.
    pub fn position(&self) -> usize {
        self.position
    }

    fn fail(&mut self, e: RecordsError) -> Option<Result<RecordBatch, RecordsError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl std::iter::FusedIterator for Batches {}

impl Iterator for Batches {
    type Item = Result<RecordBatch, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let available = self.rest.len();
        if available == 0 {
            self.done = true;
            return None;
        }
        let head = &self.rest[..];
        let base_offset = head.get(..8).map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default()));
        if available < LOG_OVERHEAD {
            self.partial = Some(PartialBatch { position: self.position, base_offset, size: None, available });
            self.done = true;
            return None;
        }
        let base_offset = base_offset.unwrap_or_default();
        let at = Location { position: self.position, base_offset, record: None };
        let size = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        // Every format's minimum is checked before looking for a partial batch, so a
        // corrupt size is reported rather than mistaken for a cut-off batch.
        if size < MIN_ENTRY_SIZE {
            return self.fail(RecordsError::BatchTooSmall { at, size, min: MIN_ENTRY_SIZE as usize });
        }
        let magic = head.get(MAGIC_OFFSET).map(|&m| m as i8);
        if let Some(magic) = magic {
            if !(0..=MAGIC_V2).contains(&magic) {
                return self.fail(RecordsError::UnsupportedMagic { at, magic });
            }
        }
        let total = LOG_OVERHEAD + size as usize;
        if available < total {
            self.partial = Some(PartialBatch {
                position: self.position,
                base_offset: Some(base_offset),
                size: Some(total),
                available,
            });
            self.done = true;
            return None;
        }
        let entry = self.rest.split_to(total);
        self.position += total;
        let result = match magic {
            Some(MAGIC_V2) => decode_v2(entry, at, &self.options),
            _ => legacy::decode_entry(entry, at, &self.options),
        };
        match result {
            Ok(batch) => Some(Ok(batch)),
            Err(e) => self.fail(e),
        }
    }
}

/// Decodes one complete v2 batch (`entry` starts at the base offset and ends at its end).
fn decode_v2(entry: Bytes, at: Location, options: &DecodeOptions) -> Result<RecordBatch, RecordsError> {
    let batch_length = (entry.len() - LOG_OVERHEAD) as i32;
    if entry.len() < RECORD_BATCH_OVERHEAD {
        return Err(RecordsError::BatchTooSmall { at, size: batch_length, min: RECORD_BATCH_OVERHEAD - LOG_OVERHEAD });
    }
    let malformed = |source| RecordsError::Malformed { at, source };
    // Checksummed before `entry` becomes the read cursor: a clone of it would cost a
    // reference-count round trip per batch.
    let computed = options.verify_crc.then(|| crc32c(&entry[CRC_START..]));
    let mut buf = entry;
    buf.advance(LOG_OVERHEAD);
    let partition_leader_epoch = get_i32(&mut buf, "RecordBatch.PartitionLeaderEpoch").map_err(malformed)?;
    let magic = get_i8(&mut buf, "RecordBatch.Magic").map_err(malformed)?;
    let crc = get_u32(&mut buf, "RecordBatch.Crc").map_err(malformed)?;
    if let Some(computed) = computed.filter(|&c| c != crc) {
        return Err(RecordsError::CrcMismatch { at, stored: crc, computed });
    }
    let attributes = get_i16(&mut buf, "RecordBatch.Attributes").map_err(malformed)?;
    let last_offset_delta = get_i32(&mut buf, "RecordBatch.LastOffsetDelta").map_err(malformed)?;
    let base_timestamp = get_i64(&mut buf, "RecordBatch.BaseTimestamp").map_err(malformed)?;
    let max_timestamp = get_i64(&mut buf, "RecordBatch.MaxTimestamp").map_err(malformed)?;
    let producer_id = get_i64(&mut buf, "RecordBatch.ProducerId").map_err(malformed)?;
    let producer_epoch = get_i16(&mut buf, "RecordBatch.ProducerEpoch").map_err(malformed)?;
    let base_sequence = get_i32(&mut buf, "RecordBatch.BaseSequence").map_err(malformed)?;
    let count = get_i32(&mut buf, "RecordBatch.RecordCount").map_err(malformed)?;

    let codec_id = (attributes & ATTR_COMPRESSION_MASK) as u8;
    let compression =
        CompressionType::from_id(codec_id).ok_or(RecordsError::UnknownCompression { at, codec: codec_id })?;
    if count < 0 {
        return Err(RecordsError::InvalidRecordCount { at, count });
    }
    let data =
        if compression == CompressionType::None { buf } else { decompress(compression, &buf, at, options, magic)? };
    let log_append_time = (attributes & ATTR_TIMESTAMP_TYPE != 0).then_some(max_timestamp);
    let records = decode_records(data, count, at.base_offset, base_timestamp, log_append_time, at)?;
    Ok(RecordBatch {
        base_offset: at.base_offset,
        batch_length,
        partition_leader_epoch,
        magic,
        crc,
        attributes,
        compression,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        records,
    })
}

/// Decompresses a batch's (or wrapper's) payload under the options' limit.
pub(crate) fn decompress(
    codec: CompressionType,
    data: &[u8],
    at: Location,
    options: &DecodeOptions,
    magic: i8,
) -> Result<Bytes, RecordsError> {
    let limit = options.max_decompressed_size;
    match compression::decompress(codec, data, limit, magic) {
        Ok(out) => Ok(compression::freeze(out)),
        Err(DecompressError::TooLarge) => Err(RecordsError::DecompressedTooLarge { at, codec, limit }),
        Err(DecompressError::Corrupt(reason)) => Err(RecordsError::Decompress { at, codec, reason }),
    }
}

/// Decodes exactly `count` v2 records filling all of `data`.
fn decode_records(
    data: Bytes,
    count: i32,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    at: Location,
) -> Result<Vec<Record>, RecordsError> {
    // `count` comes from the wire: allocate for no more records than the bytes could hold.
    let mut records = Vec::with_capacity((count as usize).min(data.len() / MIN_RECORD_LEN));
    let mut cursor = Cursor { bytes: &data, pos: 0 };
    for index in 0..count as usize {
        if cursor.remaining() == 0 {
            return Err(RecordsError::RecordCountMismatch { at, declared: count, found: index });
        }
        let rat = at.record(index);
        let malformed = |source| RecordsError::Malformed { at: rat, source };
        let len = cursor.varint("Record.Length").map_err(malformed)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= cursor.remaining())
            .ok_or_else(|| malformed(DecodeError::InvalidLength { what: "Record.Length", len: i64::from(len) }))?;
        // Fields are read up to the end of `data`, not of the record: a record whose fields
        // overrun its length is caught by the size check below.
        let start = cursor.pos;
        let record =
            decode_record(&mut cursor, &data, base_offset, base_timestamp, log_append_time).map_err(malformed)?;
        let used = cursor.pos - start;
        if used != len {
            return Err(RecordsError::RecordSizeMismatch { at: rat, declared: len, used });
        }
        records.push(record);
    }
    if cursor.remaining() != 0 {
        return Err(RecordsError::TrailingBytes { at, remaining: cursor.remaining() });
    }
    Ok(records)
}

/// A read position in a batch's records. The per-record loop reads a plain slice by index,
/// which stays in registers, and slices `Bytes` only for keys, values and headers: reading
/// through `&mut Bytes` updated its pointer and length at every byte. Errors are those of
/// the `Bytes` readers in `primitives`.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    #[inline]
    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated { what, needed: 1, remaining: 0 })?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn uvarlong(&mut self, what: &'static str, max_bytes: u32) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.byte(what)?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong { what })
    }

    #[inline]
    fn varint(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let v = u32::try_from(self.uvarlong(what, 5)?).map_err(|_| DecodeError::VarintTooLong { what })?;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    #[inline]
    fn varlong(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let v = self.uvarlong(what, 10)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// The next `len` bytes, as a slice of `data` (which `bytes` views).
    #[inline]
    fn take(&mut self, data: &Bytes, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::InvalidLength { what, len: len as i64 });
        }
        self.pos += len;
        Ok(data.slice(self.pos - len..self.pos))
    }

    /// A varint length (-1 = null) and that many bytes.
    #[inline]
    fn nullable(&mut self, data: &Bytes, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        match self.varint(what)? {
            -1 => Ok(None),
            len if len < 0 => Err(DecodeError::InvalidLength { what, len: i64::from(len) }),
            len => self.take(data, len as usize, what).map(Some),
        }
    }
}

fn decode_record(
    cursor: &mut Cursor<'_>,
    data: &Bytes,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
) -> Result<Record, DecodeError> {
    let _attributes = cursor.byte("Record.Attributes")?; // unused by every Kafka version so far
    let timestamp_delta = cursor.varlong("Record.TimestampDelta")?;
    let offset_delta = cursor.varint("Record.OffsetDelta")?;
    let key = cursor.nullable(data, "Record.Key")?;
    let value = cursor.nullable(data, "Record.Value")?;
    let header_count = cursor.varint("Record.Headers")?;
    // Each header takes at least two bytes (two zero lengths).
    let header_count = usize::try_from(header_count)
        .ok()
        .filter(|&n| n <= cursor.remaining() / 2)
        .ok_or(DecodeError::InvalidLength { what: "Record.Headers", len: i64::from(header_count) })?;
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let key_len = cursor.varint("Header.Key")?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| DecodeError::InvalidLength { what: "Header.Key", len: i64::from(key_len) })?;
        let key = cursor.take(data, key_len, "Header.Key")?;
        let value = cursor.nullable(data, "Header.Value")?;
        headers.push(Header { key, value });
    }
    Ok(Record {
        offset: base_offset.wrapping_add(i64::from(offset_delta)),
        timestamp: log_append_time.unwrap_or(base_timestamp.wrapping_add(timestamp_delta)),
        key,
        value,
        headers,
    })
}
