//! Errors of the records layer: one enum for what a broker sent (decoding), one for what a
//! caller asked for (encoding).

use std::fmt;

use super::compression::CompressionType;
use crate::protocol::primitives::DecodeError;

/// Where in a `records` field a decoding problem sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Byte position of the batch (or legacy message) within the decoded input.
    pub position: usize,
    /// The base offset its header declares (for legacy messages, the message's own offset).
    pub base_offset: i64,
    /// Index of the record within the batch, when the problem is inside one record.
    pub record: Option<usize>,
}

impl Location {
    pub(crate) fn record(self, index: usize) -> Self {
        Location { record: Some(index), ..self }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch at byte {} (base offset {})", self.position, self.base_offset)?;
        if let Some(i) = self.record {
            write!(f, ", record {i}")?;
        }
        Ok(())
    }
}

/// Why record data could not be decoded. Every variant says where, via [`Location`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// The size field is smaller than the fixed part of the format.
    #[error("{at}: size {size} is below the minimum of {min} bytes")]
    BatchTooSmall {
        /// Where.
        at: Location,
        /// Size as declared (bytes after the size field).
        size: i32,
        /// Smallest valid size for the format.
        min: usize,
    },
    /// A magic byte other than 0, 1 or 2.
    #[error("{at}: unsupported magic {magic}")]
    UnsupportedMagic {
        /// Where.
        at: Location,
        /// Magic found.
        magic: i8,
    },
    /// The stored checksum does not match the data.
    #[error("{at}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch {
        /// Where.
        at: Location,
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the bytes received.
        computed: u32,
    },
    /// The attributes name a codec Kafka does not define.
    #[error("{at}: unknown compression codec {codec}")]
    UnknownCompression {
        /// Where.
        at: Location,
        /// Codec id from the attributes.
        codec: u8,
    },
    /// A codec the message format cannot carry (zstd in magic 0/1).
    #[error("{at}: {codec} is not allowed with magic {magic}")]
    CompressionNotSupported {
        /// Where.
        at: Location,
        /// Codec.
        codec: CompressionType,
        /// Format version.
        magic: i8,
    },
    /// The codec rejected the compressed data.
    #[error("{at}: {codec} decompression failed: {reason}")]
    Decompress {
        /// Where.
        at: Location,
        /// Codec.
        codec: CompressionType,
        /// The codec's message.
        reason: String,
    },
    /// Decompressing would produce more than [`DecodeOptions::max_decompressed_size`].
    ///
    /// [`DecodeOptions::max_decompressed_size`]: super::DecodeOptions::max_decompressed_size
    #[error("{at}: {codec} data decompresses to more than the {limit}-byte limit")]
    DecompressedTooLarge {
        /// Where.
        at: Location,
        /// Codec.
        codec: CompressionType,
        /// The limit in force.
        limit: usize,
    },
    /// A negative record count.
    #[error("{at}: invalid record count {count}")]
    InvalidRecordCount {
        /// Where.
        at: Location,
        /// Count from the header.
        count: i32,
    },
    /// The data ended before the declared number of records.
    #[error("{at}: header declares {declared} records but only {found} are present")]
    RecordCountMismatch {
        /// Where.
        at: Location,
        /// Count from the header.
        declared: i32,
        /// Records decoded before the data ran out.
        found: usize,
    },
    /// Bytes left over after the last declared record (or inside a legacy message).
    #[error("{at}: {remaining} bytes left after the declared records")]
    TrailingBytes {
        /// Where.
        at: Location,
        /// Bytes left over.
        remaining: usize,
    },
    /// A record's fields did not fill exactly its declared length.
    #[error("{at}: record declares {declared} bytes but its fields take {used}")]
    RecordSizeMismatch {
        /// Where.
        at: Location,
        /// Length prefix of the record.
        declared: usize,
        /// Bytes its fields took.
        used: usize,
    },
    /// A field could not be read: truncated, a bad length, an overlong varint.
    #[error("{at}: {source}")]
    Malformed {
        /// Where.
        at: Location,
        /// The field-level problem.
        #[source]
        source: DecodeError,
    },
    /// A legacy compressed wrapper that breaks the format's rules.
    #[error("{at}: invalid compressed wrapper: {reason}")]
    InvalidWrapper {
        /// Where.
        at: Location,
        /// What is wrong.
        reason: &'static str,
    },
}

impl RecordsError {
    /// Where the problem is.
    pub fn location(&self) -> Location {
        match self {
            RecordsError::BatchTooSmall { at, .. }
            | RecordsError::UnsupportedMagic { at, .. }
            | RecordsError::CrcMismatch { at, .. }
            | RecordsError::UnknownCompression { at, .. }
            | RecordsError::CompressionNotSupported { at, .. }
            | RecordsError::Decompress { at, .. }
            | RecordsError::DecompressedTooLarge { at, .. }
            | RecordsError::InvalidRecordCount { at, .. }
            | RecordsError::RecordCountMismatch { at, .. }
            | RecordsError::TrailingBytes { at, .. }
            | RecordsError::RecordSizeMismatch { at, .. }
            | RecordsError::Malformed { at, .. }
            | RecordsError::InvalidWrapper { at, .. } => *at,
        }
    }
}

/// Why records could not be encoded. These are caller mistakes, or a codec failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsEncodeError {
    /// A compression level outside the codec's range.
    #[error("{codec} does not support compression level {level}")]
    InvalidCompressionLevel {
        /// Codec.
        codec: CompressionType,
        /// Level asked for.
        level: i32,
    },
    /// A codec the message format cannot carry (zstd in magic 0/1).
    #[error("{codec} cannot be used with magic {magic}")]
    CompressionNotSupported {
        /// Codec.
        codec: CompressionType,
        /// Format version.
        magic: i8,
    },
    /// A legacy builder was asked for a magic other than 0 or 1.
    #[error("legacy message sets have magic 0 or 1, not {0}")]
    InvalidMagic(i8),
    /// Offsets within a batch must increase.
    #[error("offset delta {given} does not follow {previous}")]
    OffsetOutOfOrder {
        /// Last offset delta written.
        previous: i32,
        /// Offset delta asked for.
        given: i32,
    },
    /// The batch already spans the largest offset delta an int32 can hold.
    #[error("too many records for one batch")]
    TooManyRecords,
    /// A key, value, header or the whole batch is longer than its int32 length can say.
    #[error("{field} is too long to encode ({len} bytes)")]
    TooLong {
        /// What was too long.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// `finish` on a builder with no records.
    #[error("a batch needs at least one record")]
    EmptyBatch,
    /// The codec failed.
    #[error("{codec} compression failed: {reason}")]
    Compress {
        /// Codec.
        codec: CompressionType,
        /// The codec's message.
        reason: String,
    },
}
