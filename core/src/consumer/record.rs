//! What the consumer hands the application: records, and the errors polling reports.

use std::fmt;

use bytes::Bytes;

use crate::client::RequestError;
use crate::protocol::records::{Header, TimestampType};
use crate::protocol::{ErrorCode, TopicName};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: TopicName,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A partition of `topic`.
    pub fn new(topic: impl Into<TopicName>, partition: i32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic.as_str(), self.partition)
    }
}

/// One consumed record. Key, value and header values are slices of the fetched (or
/// decompressed) batch: no copy per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: TopicName,
    /// The partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch, or -1 for none.
    pub timestamp: i64,
    /// Who set the timestamp.
    pub timestamp_type: TimestampType,
    /// The key; `None` is null.
    pub key: Option<Bytes>,
    /// The value; `None` is null (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in the order they were written; keys may repeat.
    pub headers: Vec<Header>,
    /// The leader epoch of the batch, when the broker recorded one.
    pub leader_epoch: Option<i32>,
}

impl ConsumerRecord {
    /// Bytes of the key as written, or -1 for a null key (Java's `serializedKeySize`).
    pub fn serialized_key_size(&self) -> i32 {
        self.key.as_ref().map_or(-1, |k| k.len() as i32)
    }

    /// Bytes of the value as written, or -1 for a null value.
    pub fn serialized_value_size(&self) -> i32 {
        self.value.as_ref().map_or(-1, |v| v.len() as i32)
    }
}

/// Identifies a rebalance that waits for the application's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RebalanceId(pub u64);

/// How a rebalance changed the consumer's partitions ([`crate::Event::Rebalance`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rebalance {
    /// With a rebalance listener on ([`crate::Client::set_rebalance_listener`]) and
    /// partitions revoked: the consumer keeps their positions, fetches nothing more for them,
    /// and does not go on with the rebalance until [`crate::Client::ack_rebalance`] gets this
    /// id (or `max.poll.interval.ms` passes), so the application can commit first.
    pub ack: Option<RebalanceId>,
    /// Newly assigned; they start at the group's committed offsets.
    pub assigned: Vec<TopicPartition>,
    /// Given up in a rebalance (committed first with auto-commit).
    pub revoked: Vec<TopicPartition>,
    /// Taken away without a chance to commit: the member fell out of the group.
    pub lost: Vec<TopicPartition>,
}

/// Why a poll, a commit or an offset lookup failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// Partitions without a valid position, and `auto.offset.reset=none`: seek them.
    #[error("no offset to start from for {} (auto.offset.reset=none): seek them first", list(partitions))]
    NoOffset {
        /// The partitions, with the offset that was out of range when there was one.
        partitions: Vec<(TopicPartition, Option<i64>)>,
    },
    /// After a leader change the log no longer holds what was consumed (an unclean leader
    /// election truncated it; KIP-320), and `auto.offset.reset=none`: seek them. With a
    /// reset policy the consumer moves to where the logs diverge instead.
    #[error("log truncation detected for {}: seek them", truncated(partitions))]
    LogTruncation {
        /// The partitions, with the position and where the log now diverges from what was
        /// consumed (`None` when the broker knows no end for the consumed epoch).
        partitions: Vec<(TopicPartition, i64, Option<i64>)>,
    },
    /// The broker refused a partition with an error that retrying does not cure
    /// (authorization, an unsupported format, ...).
    #[error("{partition}: {error:?}")]
    Partition {
        /// The partition.
        partition: TopicPartition,
        /// The broker's error.
        error: ErrorCode,
    },
    /// A fetched batch failed to decode or its checksum did not match; the position stays
    /// at `offset` (seek past it to skip it).
    #[error("{partition}: corrupt records at offset {offset}: {reason}")]
    Corrupt {
        /// The partition.
        partition: TopicPartition,
        /// The position the bad data starts at.
        offset: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A partition not assigned to this consumer.
    #[error("{0} is not assigned to this consumer")]
    NotAssigned(TopicPartition),
    /// A subscription pattern that is not a valid regular expression.
    #[error("invalid topic pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation needs `group.id`.
    #[error("this needs a group.id")]
    NoGroup,
    /// The group coordinator refused the request.
    #[error("group coordinator: {error:?}")]
    Group {
        /// The error.
        error: ErrorCode,
    },
    /// A request failed (unreachable cluster, timeout, unsupported version).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A call that contradicts an earlier one (assign while subscribed, ...).
    #[error("{0}")]
    Misuse(&'static str),
    /// The consumer is closing or closed.
    #[error("the consumer is closed")]
    Closed,
}

fn truncated(partitions: &[(TopicPartition, i64, Option<i64>)]) -> String {
    let one = |(tp, position, end): &(TopicPartition, i64, Option<i64>)| match end {
        Some(end) => format!("{tp} (position {position}, log ends at {end})"),
        None => format!("{tp} (position {position}, its epoch unknown to the leader)"),
    };
    partitions.iter().map(one).collect::<Vec<_>>().join(", ")
}

fn list(partitions: &[(TopicPartition, Option<i64>)]) -> String {
    partitions.iter().map(|(tp, _)| tp.to_string()).collect::<Vec<_>>().join(", ")
}
