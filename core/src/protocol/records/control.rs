//! Control records: the records of a control batch, written by brokers and coordinators
//! rather than producers. The key is `version int16 | type int16`; for the transaction
//! markers (COMMIT and ABORT) the value is `version int16 | coordinatorEpoch int32`.

use bytes::BytesMut;

use super::batch::Record;
use super::builder::{BatchParams, RecordBatchEncoder};
use super::compression::Compression;
use super::error::RecordsEncodeError;
use super::NO_SEQUENCE;

/// What a control record marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlRecordType {
    /// A transaction was aborted.
    Abort,
    /// A transaction was committed.
    Commit,
    /// KRaft: the quorum leader changed.
    LeaderChange,
    /// KRaft: start of a snapshot.
    SnapshotHeader,
    /// KRaft: end of a snapshot.
    SnapshotFooter,
    /// KRaft: the kraft.version feature level.
    KRaftVersion,
    /// KRaft: the voter set.
    KRaftVoters,
    /// A type this version of sansa does not know; consumers skip these.
    Unknown(i16),
}

impl ControlRecordType {
    /// The type for an id from the key.
    pub const fn from_id(id: i16) -> Self {
        match id {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            2 => ControlRecordType::LeaderChange,
            3 => ControlRecordType::SnapshotHeader,
            4 => ControlRecordType::SnapshotFooter,
            5 => ControlRecordType::KRaftVersion,
            6 => ControlRecordType::KRaftVoters,
            other => ControlRecordType::Unknown(other),
        }
    }

    /// The id written in the key.
    pub const fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
            ControlRecordType::LeaderChange => 2,
            ControlRecordType::SnapshotHeader => 3,
            ControlRecordType::SnapshotFooter => 4,
            ControlRecordType::KRaftVersion => 5,
            ControlRecordType::KRaftVoters => 6,
            ControlRecordType::Unknown(id) => id,
        }
    }
}

/// Why a control record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlRecordError {
    /// The record has a null key.
    #[error("control record has no key")]
    MissingKey,
    /// The key is shorter than version and type.
    #[error("control record key is {len} bytes, needs at least 4")]
    KeyTooShort {
        /// Key length.
        len: usize,
    },
    /// A negative key version, which Kafka reads as corruption.
    #[error("control record key has invalid version {0}")]
    InvalidKeyVersion(i16),
    /// Not a COMMIT or ABORT marker.
    #[error("control record of type {0:?} is not a transaction marker")]
    NotEndTxnMarker(ControlRecordType),
    /// A transaction marker with a null value.
    #[error("transaction marker has no value")]
    MissingValue,
    /// The value is shorter than version and coordinator epoch.
    #[error("transaction marker value is {len} bytes, needs at least 6")]
    ValueTooShort {
        /// Value length.
        len: usize,
    },
    /// A negative value version.
    #[error("transaction marker value has invalid version {0}")]
    InvalidValueVersion(i16),
}

/// The key of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// Key schema version; newer versions are read as version 0, as Kafka does.
    pub version: i16,
    /// What the record marks.
    pub kind: ControlRecordType,
}

impl ControlRecord {
    /// Reads the key of a record from a control batch.
    pub fn parse(record: &Record) -> Result<Self, ControlRecordError> {
        let key = record.key.as_deref().ok_or(ControlRecordError::MissingKey)?;
        Self::parse_key(key)
    }

    /// Reads a control record key.
    pub fn parse_key(key: &[u8]) -> Result<Self, ControlRecordError> {
        let [v0, v1, t0, t1, ..] = *key else {
            return Err(ControlRecordError::KeyTooShort { len: key.len() });
        };
        let version = i16::from_be_bytes([v0, v1]);
        if version < 0 {
            return Err(ControlRecordError::InvalidKeyVersion(version));
        }
        Ok(ControlRecord { version, kind: ControlRecordType::from_id(i16::from_be_bytes([t0, t1])) })
    }

    /// The key bytes for a version 0 key of this type.
    pub fn key_bytes(kind: ControlRecordType) -> [u8; 4] {
        let mut key = [0u8; 4];
        key[2..].copy_from_slice(&kind.id().to_be_bytes());
        key
    }
}

/// A COMMIT or ABORT transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndTxnMarker {
    /// Whether the transaction committed (otherwise it aborted).
    pub committed: bool,
    /// Epoch of the transaction coordinator that wrote it.
    pub coordinator_epoch: i32,
}

impl EndTxnMarker {
    /// A COMMIT marker.
    pub const fn commit(coordinator_epoch: i32) -> Self {
        EndTxnMarker { committed: true, coordinator_epoch }
    }

    /// An ABORT marker.
    pub const fn abort(coordinator_epoch: i32) -> Self {
        EndTxnMarker { committed: false, coordinator_epoch }
    }

    /// The control type it is written as.
    pub const fn kind(&self) -> ControlRecordType {
        if self.committed {
            ControlRecordType::Commit
        } else {
            ControlRecordType::Abort
        }
    }

    /// Reads a marker from a record of a control batch.
    pub fn parse(record: &Record) -> Result<Self, ControlRecordError> {
        let key = ControlRecord::parse(record)?;
        let committed = match key.kind {
            ControlRecordType::Commit => true,
            ControlRecordType::Abort => false,
            other => return Err(ControlRecordError::NotEndTxnMarker(other)),
        };
        let value = record.value.as_deref().ok_or(ControlRecordError::MissingValue)?;
        let [v0, v1, e0, e1, e2, e3, ..] = *value else {
            return Err(ControlRecordError::ValueTooShort { len: value.len() });
        };
        let version = i16::from_be_bytes([v0, v1]);
        if version < 0 {
            return Err(ControlRecordError::InvalidValueVersion(version));
        }
        Ok(EndTxnMarker { committed, coordinator_epoch: i32::from_be_bytes([e0, e1, e2, e3]) })
    }

    /// The record key.
    pub fn key_bytes(&self) -> [u8; 4] {
        ControlRecord::key_bytes(self.kind())
    }

    /// The record value (version 0).
    pub fn value_bytes(&self) -> [u8; 6] {
        let mut value = [0u8; 6];
        value[2..].copy_from_slice(&self.coordinator_epoch.to_be_bytes());
        value
    }

    /// Appends a control batch holding just this marker, as a partition leader writes it.
    /// `params` supplies the base offset, leader epoch and producer id and epoch; the batch
    /// is always transactional, control, uncompressed and without sequence.
    pub fn write_batch(
        &self,
        out: &mut BytesMut,
        params: BatchParams,
        timestamp: i64,
    ) -> Result<usize, RecordsEncodeError> {
        let mut params = params.control(true).transactional(true).compression(Compression::None);
        params.base_sequence = NO_SEQUENCE;
        let mut encoder = RecordBatchEncoder::new();
        let mut batch = encoder.begin(out, params)?;
        batch.append(timestamp, Some(&self.key_bytes()), Some(&self.value_bytes()), &[])?;
        batch.finish()
    }
}
