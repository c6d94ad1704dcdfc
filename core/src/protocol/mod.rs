//! The Kafka wire protocol: primitives, generated messages and headers, error codes, record
//! batches, and frame handling.

pub mod primitives;
pub mod records;
pub mod types;

pub use primitives::{DecodeError, EncodeError, RawTaggedField};
pub use types::{BrokerId, GroupId, ProducerId, StrBytes, TopicName, TransactionalId, Uuid};
