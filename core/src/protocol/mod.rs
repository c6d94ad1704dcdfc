//! The Kafka wire protocol: primitives, generated messages and headers, error codes, record
//! batches, and frame handling.

pub mod frame;
pub mod kafka_release;
pub mod message;
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod messages;
pub mod primitives;
pub mod records;
pub mod types;

pub use frame::{FrameDecoder, FrameError, DEFAULT_MAX_FRAME_SIZE};
pub use message::{Codec, Message, Request, Response, VersionRange};
pub use messages::{ApiKey, ErrorCode, RequestBody, ResponseBody};
pub use primitives::{DecodeError, EncodeError, RawTaggedField, Spliced, Splices};
pub use types::{BrokerId, GroupId, InvalidUuid, ProducerId, StrBytes, TopicName, TransactionalId, Uuid};
