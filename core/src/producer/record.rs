//! What the application hands the producer and what it gets back.

use std::time::Duration;

use bytes::Bytes;

use crate::client::RequestError;
use crate::protocol::records::{Header, RECORD_BATCH_OVERHEAD};
use crate::protocol::{ErrorCode, TopicName};

/// Identifies one record given to [`crate::Client::send`]; its outcome arrives in an
/// [`crate::Event::Delivery`]. Ids grow with every send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SendId(pub u64);

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: TopicName,
    /// Partition; `None` lets the partitioner choose (by key when there is one).
    pub partition: Option<i32>,
    /// Key, already serialized.
    pub key: Option<Bytes>,
    /// Value, already serialized.
    pub value: Option<Bytes>,
    /// Headers in order; a key may repeat.
    pub headers: Vec<Header>,
    /// Create time in milliseconds since the Unix epoch; `None` takes the producer's clock
    /// at the send.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value only.
    pub fn new(topic: impl Into<TopicName>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, Some(value.into())));
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Bytes the record holds in the producer's buffer (`buffer.memory`) and counts against
    /// `max.request.size`: an upper bound of its size in a batch of its own, as Java
    /// estimates it (every varint at its longest), cheap enough to take on every send.
    pub fn size_in_buffer(&self) -> usize {
        const VARINT: usize = 5;
        const VARLONG: usize = 10;
        let field = |b: Option<&[u8]>| VARINT + b.map_or(0, <[u8]>::len);
        let headers: usize =
            self.headers.iter().map(|h| field(Some(&h.key)) + field(h.value.as_deref())).sum::<usize>() + VARINT;
        // Length, attributes, timestamp delta, offset delta, key, value, headers.
        RECORD_BATCH_OVERHEAD
            + VARINT
            + 1
            + VARLONG
            + VARINT
            + field(self.key.as_deref())
            + field(self.value.as_deref())
            + headers
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: TopicName,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition; `None` with acks=0 (no answer) or when the broker reported
    /// the batch as a duplicate of one written long before without its offset.
    pub offset: Option<i64>,
    /// The record's create time, or the broker's append time for LogAppendTime topics.
    pub timestamp: i64,
    /// Serialized key size; `None` for a null key.
    pub serialized_key_size: Option<usize>,
    /// Serialized value size; `None` for a null value.
    pub serialized_value_size: Option<usize>,
}

/// Why a record was not delivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The record alone is larger than `max.request.size` or `buffer.memory`.
    #[error("the record is {size} bytes, larger than {limit} ({setting})")]
    RecordTooLarge {
        /// Its size as sent.
        size: usize,
        /// The limit.
        limit: usize,
        /// The setting that sets the limit.
        setting: &'static str,
    },
    /// The record named a partition the topic does not have.
    #[error("partition {partition} is not in the range [0, {count}) of topic {topic}")]
    InvalidPartition {
        /// Topic.
        topic: TopicName,
        /// The partition asked for.
        partition: i32,
        /// Partitions the topic has.
        count: usize,
    },
    /// Metadata for the topic did not arrive within `max.block.ms`.
    #[error("topic {topic} not present in metadata after {waited:?}")]
    TopicNotFound {
        /// Topic.
        topic: TopicName,
        /// How long the producer waited.
        waited: Duration,
        /// The error metadata reported for the topic, if any.
        error: Option<ErrorCode>,
    },
    /// The broker refused the batch with an error that retrying cannot fix.
    #[error("the broker refused the batch: {error:?}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        /// Error code.
        error: ErrorCode,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },
    /// `delivery.timeout.ms` passed before the record was acknowledged.
    #[error("not delivered within delivery.timeout.ms ({timeout:?}){}", last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    DeliveryTimeout {
        /// The delivery timeout.
        timeout: Duration,
        /// What went wrong last, if anything did.
        last: Option<Box<Attempt>>,
    },
    /// `retries` ran out.
    #[error("retries exhausted after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<Attempt>,
    },
    /// The producer hit a fatal error (fenced by a newer instance, not authorized to write
    /// idempotently): it delivers nothing more.
    #[error("the producer failed for good: {0}")]
    Fatal(Box<Attempt>),
    /// The broker cannot take produce requests at a version sansa writes.
    #[error("cannot produce: {0}")]
    Unsupported(Box<RequestError>),
    /// The producer was closed before the record was delivered.
    #[error("the producer closed before the record was delivered")]
    Closed,
    /// The key or value serializer refused.
    #[error("could not serialize the {part}: {error}")]
    Serialize {
        /// `"key"` or `"value"`.
        part: &'static str,
        /// The serializer's reason.
        error: crate::serialization::SerializeError,
    },
    /// No room in `buffer.memory` within `max.block.ms`.
    #[error("no room in buffer.memory within max.block.ms ({waited:?})")]
    BufferExhausted {
        /// How long the send waited.
        waited: Duration,
    },
}

/// What went wrong on one attempt to deliver a batch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Attempt {
    /// The broker answered with an error code.
    #[error("{error:?}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        /// Error code.
        error: ErrorCode,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },
    /// The request failed without an answer.
    #[error("{0}")]
    Request(RequestError),
    /// The partition has no leader in the metadata.
    #[error("the partition has no known leader")]
    NoLeader,
}

/// Why [`crate::Client::send`] did not take a record; the record comes back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct SendRefused {
    /// Why.
    pub reason: RefuseReason,
    /// The record, untouched.
    pub record: Box<ProducerRecord>,
}

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RefuseReason {
    /// `buffer.memory` is full: send again once deliveries free room.
    #[error("buffer.memory is full")]
    BufferFull,
    /// The client is closing.
    #[error("the producer is closing")]
    Closed,
    /// The producer failed for good (the error says so itself).
    #[error("{0}")]
    Fatal(ProduceError),
}

/// One record of a [`Delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveredRecord {
    /// Its send.
    pub id: SendId,
    /// Its create time.
    pub timestamp: i64,
    /// Serialized key size (`None`: null key).
    pub key_size: Option<u32>,
    /// Serialized value size (`None`: null value).
    pub value_size: Option<u32>,
    /// Offset within its batch.
    pub offset_delta: u32,
    /// Bytes it held in the buffer; freed now.
    pub buffer_size: u32,
}

/// The outcome of a batch of records (or of a single record that never reached a batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Topic.
    pub topic: TopicName,
    /// Partition, or -1 for a record that failed before one was chosen.
    pub partition: i32,
    /// The records, in send order.
    pub records: Vec<DeliveredRecord>,
    /// The batch's fate.
    pub result: Result<Ack, ProduceError>,
}

/// A broker's acknowledgement of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Offset of the batch's first record (`None`: acks=0, or a duplicate without offset).
    pub base_offset: Option<i64>,
    /// The broker's append time, for LogAppendTime topics.
    pub log_append_time: Option<i64>,
}

impl Delivery {
    /// Each record's own outcome.
    pub fn outcomes(&self) -> impl Iterator<Item = (SendId, Result<RecordMetadata, ProduceError>)> + '_ {
        self.records.iter().map(move |r| {
            let result = match &self.result {
                Ok(ack) => Ok(self.metadata_of(r, ack)),
                Err(e) => Err(e.clone()),
            };
            (r.id, result)
        })
    }

    /// The metadata of one of its records, given its acknowledgement.
    pub fn metadata_of(&self, r: &DeliveredRecord, ack: &Ack) -> RecordMetadata {
        RecordMetadata {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: ack.base_offset.map(|b| b + i64::from(r.offset_delta)),
            timestamp: ack.log_append_time.unwrap_or(r.timestamp),
            serialized_key_size: r.key_size.map(|s| s as usize),
            serialized_value_size: r.value_size.map(|s| s as usize),
        }
    }

    /// Bytes the batch's records held in the buffer.
    pub fn buffer_size(&self) -> usize {
        self.records.iter().map(|r| r.buffer_size as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::record_encoded_len;

    #[test]
    fn the_buffer_size_bounds_the_encoded_size() {
        let long = vec![b'v'; 70_000];
        let records = [
            ProducerRecord::new("t", ""),
            ProducerRecord::new("t", long.clone()).with_key("k").with_header("h", "v").with_header("h", long),
            ProducerRecord { value: None, ..ProducerRecord::new("t", "") },
        ];
        for r in records {
            let exact = RECORD_BATCH_OVERHEAD
                + record_encoded_len(i32::MAX, i64::MIN, r.key.as_deref(), r.value.as_deref(), &r.headers);
            assert!(r.size_in_buffer() >= exact, "{} < {exact}", r.size_in_buffer());
            assert!(r.size_in_buffer() <= exact + 64, "a close bound");
        }
    }
}
