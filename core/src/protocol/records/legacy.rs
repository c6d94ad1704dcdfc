//! Legacy message sets, magic 0 and 1 (Kafka before 0.11), decoded and encoded.
//!
//! ```text
//! entry:   offset int64 | size int32 | message
//! message: crc uint32 (CRC32 of everything after it) | magic int8 | attributes int8
//!          | timestamp int64 (magic 1 only) | key bytes (int32 length, -1 null) | value bytes
//! ```
//!
//! A compressed message is a wrapper whose value is a whole message set, compressed. Inside a
//! magic 1 wrapper the inner offsets count from 0 and the wrapper carries the absolute offset
//! of the last one; inside a magic 0 wrapper they are absolute.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{decompress, DecodeOptions, Record, RecordBatch, LOG_OVERHEAD};
use super::builder::RecordBatchEncoder;
use super::compression::{self, Compression, CompressionType};
use super::error::{Location, RecordsEncodeError, RecordsError};
use super::{
    ATTR_COMPRESSION_MASK, ATTR_TIMESTAMP_TYPE, MAGIC_V0, MAGIC_V1, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    NO_TIMESTAMP,
};
use crate::protocol::primitives::{get_i32, get_i64, get_i8, get_nullable_bytes, get_u32};
use crate::protocol::DecodeError;

/// Bytes from the start of an entry to the checksummed region (offset, size, crc).
const CRC_END: usize = 16;

fn min_message_size(magic: i8) -> usize {
    // crc, magic, attributes, [timestamp], key length, value length
    if magic == MAGIC_V0 {
        14
    } else {
        22
    }
}

/// One parsed legacy message.
struct Message {
    offset: i64,
    size: i32,
    crc: u32,
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// Parses an entry holding exactly one message (offset and size included).
fn parse_message(entry: Bytes, at: Location, options: &DecodeOptions) -> Result<Message, RecordsError> {
    let malformed = |source| RecordsError::Malformed { at, source };
    let mut buf = entry.clone();
    let offset = get_i64(&mut buf, "Message.Offset").map_err(malformed)?;
    let size = get_i32(&mut buf, "Message.Size").map_err(malformed)?;
    let crc = get_u32(&mut buf, "Message.Crc").map_err(malformed)?;
    let magic = get_i8(&mut buf, "Message.Magic").map_err(malformed)?;
    if !(MAGIC_V0..=MAGIC_V1).contains(&magic) {
        return Err(RecordsError::UnsupportedMagic { at, magic });
    }
    let min = min_message_size(magic);
    if (size as usize) < min {
        return Err(RecordsError::BatchTooSmall { at, size, min });
    }
    if options.verify_crc {
        let computed = crc32fast::hash(&entry[CRC_END..]);
        if computed != crc {
            return Err(RecordsError::CrcMismatch { at, stored: crc, computed });
        }
    }
    let attributes = get_i8(&mut buf, "Message.Attributes").map_err(malformed)?;
    let timestamp =
        if magic == MAGIC_V1 { get_i64(&mut buf, "Message.Timestamp").map_err(malformed)? } else { NO_TIMESTAMP };
    let key = get_nullable_bytes(&mut buf, false, "Message.Key").map_err(malformed)?;
    let value = get_nullable_bytes(&mut buf, false, "Message.Value").map_err(malformed)?;
    if !buf.is_empty() {
        return Err(RecordsError::TrailingBytes { at, remaining: buf.len() });
    }
    Ok(Message { offset, size, crc, magic, attributes, timestamp, key, value })
}

/// Decodes one top-level legacy entry (already framed by the batch iterator) into a batch:
/// one record for a plain message, the inner messages for a compressed wrapper.
pub(crate) fn decode_entry(entry: Bytes, at: Location, options: &DecodeOptions) -> Result<RecordBatch, RecordsError> {
    let wrapper = parse_message(entry, at, options)?;
    let codec_id = wrapper.attributes as u8 & ATTR_COMPRESSION_MASK as u8;
    let compression =
        CompressionType::from_id(codec_id).ok_or(RecordsError::UnknownCompression { at, codec: codec_id })?;
    let log_append_time = wrapper.magic == MAGIC_V1 && i16::from(wrapper.attributes) & ATTR_TIMESTAMP_TYPE != 0;

    let records = match compression {
        CompressionType::None => {
            vec![Record {
                offset: wrapper.offset,
                timestamp: wrapper.timestamp,
                key: wrapper.key,
                value: wrapper.value,
                headers: Vec::new(),
            }]
        }
        CompressionType::Zstd => {
            return Err(RecordsError::CompressionNotSupported { at, codec: compression, magic: wrapper.magic });
        }
        _ => {
            let Some(value) = &wrapper.value else {
                return Err(RecordsError::InvalidWrapper { at, reason: "compressed wrapper has a null value" });
            };
            let data = decompress(compression, value, at, options, wrapper.magic)?;
            let inner = parse_inner(data, at, options)?;
            let Some(last) = inner.last() else {
                return Err(RecordsError::InvalidWrapper { at, reason: "compressed wrapper holds no messages" });
            };
            // Magic 1 inner offsets are relative; the wrapper holds the last absolute offset.
            // Some producers (old librdkafka) leave the wrapper offset at 0, which Kafka reads
            // as "already absolute".
            let base = if wrapper.magic == MAGIC_V1 && wrapper.offset != 0 {
                if wrapper.offset < last.offset {
                    return Err(RecordsError::InvalidWrapper {
                        at,
                        reason: "wrapper offset is below the last inner offset",
                    });
                }
                wrapper.offset.wrapping_sub(last.offset)
            } else {
                0
            };
            inner
                .into_iter()
                .map(|m| Record {
                    offset: base.wrapping_add(m.offset),
                    timestamp: if log_append_time { wrapper.timestamp } else { m.timestamp },
                    key: m.key,
                    value: m.value,
                    headers: Vec::new(),
                })
                .collect()
        }
    };

    let first = records.first().map_or(wrapper.offset, |r| r.offset);
    let last = records.last().map_or(wrapper.offset, |r| r.offset);
    Ok(RecordBatch {
        base_offset: first,
        batch_length: wrapper.size,
        partition_leader_epoch: -1,
        magic: wrapper.magic,
        crc: wrapper.crc,
        attributes: i16::from(wrapper.attributes as u8),
        compression,
        last_offset_delta: last.wrapping_sub(first).clamp(0, i64::from(i32::MAX)) as i32,
        base_timestamp: wrapper.timestamp,
        max_timestamp: wrapper.timestamp,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
        records,
    })
}

/// Parses the decompressed message set of a wrapper. Unlike the top level, a cut-off message
/// here is corruption, not a fetch limit.
fn parse_inner(mut data: Bytes, at: Location, options: &DecodeOptions) -> Result<Vec<Message>, RecordsError> {
    let mut messages = Vec::new();
    while !data.is_empty() {
        let iat = at.record(messages.len());
        if data.len() < LOG_OVERHEAD {
            let source = DecodeError::Truncated { what: "Message", needed: LOG_OVERHEAD, remaining: data.len() };
            return Err(RecordsError::Malformed { at: iat, source });
        }
        let size = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if size < min_message_size(MAGIC_V0) as i32 {
            return Err(RecordsError::BatchTooSmall { at: iat, size, min: min_message_size(MAGIC_V0) });
        }
        let total = LOG_OVERHEAD + size as usize;
        if data.len() < total {
            let source = DecodeError::Truncated { what: "Message", needed: total, remaining: data.len() };
            return Err(RecordsError::Malformed { at: iat, source });
        }
        let message = parse_message(data.split_to(total), iat, options)?;
        if message.attributes as u8 & ATTR_COMPRESSION_MASK as u8 != 0 {
            return Err(RecordsError::InvalidWrapper { at: iat, reason: "inner message is itself compressed" });
        }
        messages.push(message);
    }
    Ok(messages)
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Settings for a legacy message set; start from [`LegacyParams::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegacyParams {
    /// 0 or 1.
    pub magic: i8,
    /// Offset of the first message (producers send 0; the broker assigns real offsets).
    pub base_offset: i64,
    /// Codec; zstd is not available before magic 2.
    pub compression: Compression,
    /// Marks the messages as stamped with this broker append time (magic 1 only).
    pub log_append_time: Option<i64>,
}

impl LegacyParams {
    /// Uncompressed messages of the given magic starting at offset 0.
    pub const fn new(magic: i8) -> Self {
        LegacyParams { magic, base_offset: 0, compression: Compression::None, log_append_time: None }
    }

    /// Sets [`LegacyParams::base_offset`].
    pub const fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Sets [`LegacyParams::compression`].
    pub const fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets [`LegacyParams::log_append_time`].
    pub const fn log_append_time(mut self, time: Option<i64>) -> Self {
        self.log_append_time = time;
        self
    }
}

/// Writes a legacy message set into a buffer; made by [`RecordBatchEncoder::begin_legacy`].
///
/// Uncompressed messages go straight into the output. Compressed ones are gathered in the
/// encoder's scratch buffer and written as one wrapper by [`LegacyBuilder::finish`]. Dropping
/// the builder without finishing removes what it wrote.
#[derive(Debug)]
pub struct LegacyBuilder<'a> {
    enc: &'a mut RecordBatchEncoder,
    out: &'a mut BytesMut,
    start: usize,
    params: LegacyParams,
    count: i64,
    max_timestamp: i64,
    finished: bool,
}

impl<'a> LegacyBuilder<'a> {
    pub(crate) fn new(
        enc: &'a mut RecordBatchEncoder,
        out: &'a mut BytesMut,
        params: LegacyParams,
    ) -> Result<Self, RecordsEncodeError> {
        if !(MAGIC_V0..=MAGIC_V1).contains(&params.magic) {
            return Err(RecordsEncodeError::InvalidMagic(params.magic));
        }
        params.compression.validate()?;
        if params.compression.codec() == CompressionType::Zstd {
            return Err(RecordsEncodeError::CompressionNotSupported {
                codec: CompressionType::Zstd,
                magic: params.magic,
            });
        }
        enc.scratch.clear();
        let start = out.len();
        Ok(LegacyBuilder { enc, out, start, params, count: 0, max_timestamp: NO_TIMESTAMP, finished: false })
    }

    /// Appends a message and returns the offset it was given. `timestamp` is ignored by
    /// magic 0, and replaced by the append time when one is set.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<i64, RecordsEncodeError> {
        let magic = self.params.magic;
        let offset = self.params.base_offset.checked_add(self.count).ok_or(RecordsEncodeError::TooManyRecords)?;
        let timestamp = match (magic, self.params.log_append_time) {
            (MAGIC_V0, _) => NO_TIMESTAMP,
            (_, Some(t)) => t,
            (_, None) => timestamp,
        };
        let attributes = self.timestamp_attribute();
        if self.params.compression == Compression::None {
            write_message(self.out, offset, magic, attributes, timestamp, key, value)?;
        } else {
            // Magic 1 inner offsets are relative to the wrapper; magic 0 ones absolute.
            let inner_offset = if magic == MAGIC_V1 { self.count } else { offset };
            write_message(&mut self.enc.scratch, inner_offset, magic, attributes, timestamp, key, value)?;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.count += 1;
        Ok(offset)
    }

    /// Messages appended so far.
    pub fn record_count(&self) -> usize {
        self.count as usize
    }

    /// Bytes written so far, before compression.
    pub fn uncompressed_size(&self) -> usize {
        (self.out.len() - self.start) + self.enc.scratch.len()
    }

    /// Completes the message set and returns how many bytes it added to the output.
    pub fn finish(mut self) -> Result<usize, RecordsEncodeError> {
        if self.count == 0 {
            return Err(RecordsEncodeError::EmptyBatch);
        }
        if self.params.compression != Compression::None {
            self.write_wrapper()?;
        }
        self.finished = true;
        Ok(self.out.len() - self.start)
    }

    fn timestamp_attribute(&self) -> i8 {
        if self.params.magic == MAGIC_V1 && self.params.log_append_time.is_some() {
            ATTR_TIMESTAMP_TYPE as i8
        } else {
            0
        }
    }

    fn write_wrapper(&mut self) -> Result<(), RecordsEncodeError> {
        let magic = self.params.magic;
        let attributes = self.params.compression.codec().id() as i8 | self.timestamp_attribute();
        let out = &mut *self.out;
        let start = out.len();
        out.put_i64(self.params.base_offset + self.count - 1);
        out.put_i32(0); // size, patched below
        out.put_u32(0); // crc, patched below
        out.put_i8(magic);
        out.put_i8(attributes);
        if magic == MAGIC_V1 {
            out.put_i64(self.params.log_append_time.unwrap_or(self.max_timestamp));
        }
        out.put_i32(-1); // null key
        let value_len_at = out.len();
        out.put_i32(0); // value length, patched below
        compression::compress(self.params.compression, &self.enc.scratch, out, magic, &mut self.enc.compressors)?;
        let value_len = out.len() - value_len_at - 4;
        let size = out.len() - start - LOG_OVERHEAD;
        let size = i32::try_from(size).map_err(|_| RecordsEncodeError::TooLong { field: "message", len: size })?;
        out[value_len_at..value_len_at + 4].copy_from_slice(&(value_len as i32).to_be_bytes());
        out[start + 8..start + 12].copy_from_slice(&size.to_be_bytes());
        let crc = crc32fast::hash(&out[start + CRC_END..]);
        out[start + 12..start + CRC_END].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }
}

impl Drop for LegacyBuilder<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.truncate(self.start);
        }
    }
}

/// Writes one complete legacy message, checksum included.
fn write_message(
    dst: &mut BytesMut,
    offset: i64,
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), RecordsEncodeError> {
    let key_len = checked_len(key, "key")?;
    let value_len = checked_len(value, "value")?;
    let size = min_message_size(magic) + key_len + value_len;
    let size = i32::try_from(size).map_err(|_| RecordsEncodeError::TooLong { field: "message", len: size })?;
    dst.reserve(LOG_OVERHEAD + size as usize);
    let start = dst.len();
    dst.put_i64(offset);
    dst.put_i32(size);
    dst.put_u32(0); // crc, patched below
    dst.put_i8(magic);
    dst.put_i8(attributes);
    if magic == MAGIC_V1 {
        dst.put_i64(timestamp);
    }
    for field in [key, value] {
        match field {
            None => dst.put_i32(-1),
            Some(b) => {
                dst.put_i32(b.len() as i32);
                dst.put_slice(b);
            }
        }
    }
    let crc = crc32fast::hash(&dst[start + CRC_END..]);
    dst[start + 12..start + CRC_END].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn checked_len(field: Option<&[u8]>, name: &'static str) -> Result<usize, RecordsEncodeError> {
    let len = field.map_or(0, <[u8]>::len);
    if len > i32::MAX as usize {
        return Err(RecordsEncodeError::TooLong { field: name, len });
    }
    Ok(len)
}
