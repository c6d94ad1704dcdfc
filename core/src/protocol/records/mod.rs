//! Record batches: RecordBatch v2, legacy MessageSet v0/v1, compression and checksums.
//!
//! Decoding: [`decode_batches`] walks a `records` field (from a fetch response or a produce
//! request) and yields one [`RecordBatch`] per batch, whatever its format. Keys, values and
//! header values are `Bytes` slices of the input, or of the decompressed block for compressed
//! batches. A batch cut off at the end of the input ends the iteration quietly and is
//! reported by [`Batches::partial`]; anything malformed is a [`RecordsError`], never a panic.
//!
//! Encoding: a [`RecordBatchEncoder`] holds reusable buffers; [`RecordBatchEncoder::begin`]
//! gives a [`RecordBatchBuilder`] that writes records straight into the caller's `BytesMut`
//! and fills in the header on [`RecordBatchBuilder::finish`].
//!
//! ```
//! use bytes::BytesMut;
//! use sansa::protocol::records::{decode_batches, BatchParams, Compression, DecodeOptions, RecordBatchEncoder};
//!
//! let mut out = BytesMut::new();
//! let mut encoder = RecordBatchEncoder::new();
//! let mut batch = encoder.begin(&mut out, BatchParams::new().compression(Compression::lz4())).unwrap();
//! batch.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]).unwrap();
//! batch.finish().unwrap();
//!
//! let batches: Vec<_> = decode_batches(out.freeze(), &DecodeOptions::new()).collect::<Result<_, _>>().unwrap();
//! assert_eq!(batches[0].records()[0].value.as_deref(), Some(&b"value"[..]));
//! ```

mod batch;
mod builder;
mod compression;
mod control;
mod crc;
mod error;
mod legacy;

pub(crate) use batch::first_batch_codec;
pub use batch::{decode_batches, Batches, DecodeOptions, Header, PartialBatch, Record, RecordBatch, TimestampType};
pub use builder::{
    record_encoded_len, rewrite_producer_state, write_empty_batch, BatchParams, OpenBatch, RecordBatchBuilder,
    RecordBatchEncoder,
};
pub use compression::{Compression, CompressionType, UnknownCompressionName};
pub use control::{ControlRecord, ControlRecordError, ControlRecordType, EndTxnMarker};
pub use error::{Location, RecordsEncodeError, RecordsError};
pub use legacy::{LegacyBuilder, LegacyParams};

/// Magic byte of the original message format.
pub const MAGIC_V0: i8 = 0;
/// Magic byte of the message format with timestamps (Kafka 0.10).
pub const MAGIC_V1: i8 = 1;
/// Magic byte of record batches (Kafka 0.11 and later).
pub const MAGIC_V2: i8 = 2;

/// Bytes of a v2 batch header, up to and including the record count.
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// Timestamp of a record that has none.
pub const NO_TIMESTAMP: i64 = -1;
/// Producer id of a batch from a producer without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of a batch from a producer without idempotence.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Base sequence of a batch without sequence numbers.
pub const NO_SEQUENCE: i32 = -1;
/// Leader epoch of a batch the broker has not stamped.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
const ATTR_DELETE_HORIZON: i16 = 0x40;

#[cfg(test)]
mod tests;

/// `len` bytes that no codec can compress and every checksum path sees all values of: a
/// fixed xorshift stream, the same on every run.
#[cfg(test)]
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
