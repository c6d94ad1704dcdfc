//! A sans-IO fake Kafka cluster: brokers, topics and partition logs held in memory, answering
//! real request frames with real response frames through sansa's generated codecs.
//!
//! First cut: ApiVersions, Metadata, CreateTopics, DeleteTopics, Produce, Fetch, ListOffsets
//! and FindCoordinator. Other APIs are not advertised; a request for one is refused like an
//! unknown API (the server closes the connection). Fetch answers at once: `max_wait_ms` and
//! `min_bytes` are ignored. There is no replication, no transactions, no idempotence checks,
//! no fetch sessions (session id 0 is always answered) and no quotas.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_request, encode_response};
use sansa::protocol::messages::api_versions::response::ApiVersion;
use sansa::protocol::messages::ApiVersionsResponse;
use sansa::protocol::{ApiKey, DecodeError, EncodeError, ErrorCode, RequestBody, ResponseBody, Uuid};

mod api_versions;
#[cfg(test)]
mod client_sim;
mod create_topics;
mod delete_topics;
mod fetch;
mod find_coordinator;
mod list_offsets;
mod metadata;
mod produce;
#[cfg(test)]
mod tests;

/// The APIs the fake cluster implements, advertised in ApiVersions.
pub const IMPLEMENTED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
];

/// How to build a [`FakeCluster`].
#[derive(Debug, Clone)]
pub struct FakeClusterConfig {
    /// Number of brokers; their ids are `1..=brokers`.
    pub brokers: usize,
    /// Cluster id reported in Metadata.
    pub cluster_id: String,
    /// Partitions of auto-created topics, and of CreateTopics asking for -1.
    pub default_partitions: i32,
    /// Create unknown topics named in Metadata requests that allow it.
    pub auto_create_topics: bool,
}

impl Default for FakeClusterConfig {
    fn default() -> Self {
        FakeClusterConfig {
            brokers: 3,
            cluster_id: "sansa-fake-cluster".to_string(),
            default_partitions: 1,
            auto_create_topics: true,
        }
    }
}

/// Why a frame could not be answered. The server should close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeError {
    /// The frame could not be decoded.
    Decode(DecodeError),
    /// The response could not be encoded (a bug in the fake cluster).
    Encode(EncodeError),
    /// The API is known to sansa but not implemented (nor advertised) by the fake cluster.
    UnsupportedApi(ApiKey),
    /// The API version is outside the supported range.
    UnsupportedVersion(ApiKey, i16),
    /// The frame was received by a broker id that does not exist.
    UnknownBroker(i32),
}

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FakeError::Decode(e) => write!(f, "malformed request: {e}"),
            FakeError::Encode(e) => write!(f, "cannot encode response: {e}"),
            FakeError::UnsupportedApi(k) => write!(f, "API {} is not implemented by the fake cluster", k.name()),
            FakeError::UnsupportedVersion(k, v) => write!(f, "{} has no version {v}", k.name()),
            FakeError::UnknownBroker(id) => write!(f, "no broker with id {id}"),
        }
    }
}

impl std::error::Error for FakeError {}

impl From<DecodeError> for FakeError {
    fn from(e: DecodeError) -> Self {
        FakeError::Decode(e)
    }
}

impl From<EncodeError> for FakeError {
    fn from(e: EncodeError) -> Self {
        FakeError::Encode(e)
    }
}

/// One stored batch: its bytes with base offset and leader epoch patched in.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub(crate) base_offset: i64,
    /// Offset after the batch's last offset.
    pub(crate) next_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) bytes: Bytes,
}

#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub(crate) leader: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) leader_epoch: i32,
    pub(crate) log_start_offset: i64,
    /// The log end offset, also the high watermark (no replication lag).
    pub(crate) next_offset: i64,
    pub(crate) batches: Vec<StoredBatch>,
}

#[derive(Debug, Clone)]
pub(crate) struct Topic {
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<Partition>,
}

#[derive(Debug, Clone)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// An in-memory Kafka cluster without IO. Feed it request frames with
/// [`FakeCluster::handle_frame`] and send back what it returns.
#[derive(Debug)]
pub struct FakeCluster {
    pub(crate) config: FakeClusterConfig,
    pub(crate) brokers: BTreeMap<i32, Broker>,
    pub(crate) topics: BTreeMap<String, Topic>,
    /// Counter behind topic ids.
    uuid_counter: u64,
    /// Rotates the first leader of each new topic.
    leader_rotation: usize,
}

impl FakeCluster {
    /// A cluster with `config.brokers` brokers (at least one), at `localhost:9092`,
    /// `localhost:9093`, ... until [`FakeCluster::set_address`] says otherwise.
    pub fn new(config: FakeClusterConfig) -> Self {
        let n = config.brokers.max(1);
        let brokers = (1..=n as i32)
            .map(|id| (id, Broker { host: "localhost".to_string(), port: 9091u16.saturating_add(id as u16) }))
            .collect();
        FakeCluster { config, brokers, topics: BTreeMap::new(), uuid_counter: 0, leader_rotation: 0 }
    }

    /// Where broker `id` is reachable, advertised in Metadata/FindCoordinator.
    pub fn set_address(&mut self, id: i32, host: &str, port: u16) {
        self.brokers.insert(id, Broker { host: host.to_string(), port });
    }

    /// The broker ids, ascending.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// The id of topic `name`, if it exists.
    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.topics.get(name).map(|t| t.id)
    }

    /// The leader of a partition, if it exists.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partition(topic, partition).map(|p| p.leader)
    }

    /// The log end offset (high watermark) of a partition, if it exists.
    pub fn log_end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partition(topic, partition).map(|p| p.next_offset)
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        self.topics.get(topic)?.partitions.get(usize::try_from(partition).ok()?)
    }

    pub(crate) fn topic_name_by_id(&self, id: Uuid) -> Option<String> {
        if id.is_zero() {
            return None;
        }
        self.topics.iter().find(|(_, t)| t.id == id).map(|(n, _)| n.clone())
    }

    /// A random-looking but deterministic id (splitmix64 over a counter); never zero.
    fn next_uuid(&mut self) -> Uuid {
        fn mix(mut z: u64) -> u64 {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        self.uuid_counter += 1;
        let hi = mix(self.uuid_counter.wrapping_mul(2));
        let lo = mix(self.uuid_counter.wrapping_mul(2).wrapping_add(1));
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&hi.to_be_bytes());
        b[8..].copy_from_slice(&lo.to_be_bytes());
        if b == [0; 16] {
            b[15] = 1;
        }
        Uuid::from_bytes(b)
    }

    /// Creates a topic (the caller has validated the arguments). Leaders go round-robin over
    /// the brokers; replicas are the leader and the next brokers, `replication_factor` of them
    /// (-1: up to 3).
    pub fn create_topic(&mut self, name: &str, partitions: i32, replication_factor: i16) -> Uuid {
        let ids = self.broker_ids();
        let n = ids.len();
        let rf = if replication_factor <= 0 { n.min(3) } else { (replication_factor as usize).min(n) };
        let start = self.leader_rotation;
        self.leader_rotation = self.leader_rotation.wrapping_add(1);
        let parts = (0..partitions.max(0) as usize)
            .map(|p| {
                let first = (start + p) % n;
                Partition {
                    leader: ids[first],
                    replicas: (0..rf).map(|r| ids[(first + r) % n]).collect(),
                    leader_epoch: 0,
                    log_start_offset: 0,
                    next_offset: 0,
                    batches: Vec::new(),
                }
            })
            .collect();
        let id = self.next_uuid();
        self.topics.insert(name.to_string(), Topic { id, partitions: parts });
        id
    }

    /// One request frame (without its size prefix) received by broker `broker`; returns the
    /// complete response frame (with size prefix) to send back, or `None` when no response is
    /// due (produce with acks=0). Malformed frames return `Err` (the server closes the
    /// connection).
    pub fn handle_frame(&mut self, now: Instant, broker: i32, frame: Bytes) -> Result<Option<Bytes>, FakeError> {
        let _ = now;
        if !self.brokers.contains_key(&broker) {
            return Err(FakeError::UnknownBroker(broker));
        }
        if frame.len() < 8 {
            return Err(DecodeError::Truncated { what: "RequestHeader", needed: 8, remaining: frame.len() }.into());
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let api_key = ApiKey::from_i16(key).ok_or(DecodeError::UnknownApiKey(key))?;
        let range = api_key.versions();
        if api_key == ApiKey::ApiVersions && !(range.min..=range.max).contains(&version) {
            // Like Kafka: answer with a v0 body holding the error and the ranges, so that the
            // client can pick a version it shares with us.
            let body = ApiVersionsResponse::default()
                .with_error_code(ErrorCode::UnsupportedVersion)
                .with_api_keys(advertised());
            return encode(correlation_id, 0, &ResponseBody::from(body)).map(Some);
        }
        if !IMPLEMENTED_APIS.contains(&api_key) {
            return Err(FakeError::UnsupportedApi(api_key));
        }
        if !(range.min..=range.max).contains(&version) {
            return Err(FakeError::UnsupportedVersion(api_key, version));
        }
        let (header, body) = decode_request(frame)?;
        let correlation_id = header.correlation_id;
        let response: Option<ResponseBody> = match body {
            RequestBody::ApiVersions(_) => Some(api_versions::handle().into()),
            RequestBody::Metadata(r) => Some(metadata::handle(self, version, r).into()),
            RequestBody::CreateTopics(r) => Some(create_topics::handle(self, version, r).into()),
            RequestBody::DeleteTopics(r) => Some(delete_topics::handle(self, version, r).into()),
            RequestBody::Produce(r) => produce::handle(self, broker, version, r).map(Into::into),
            RequestBody::Fetch(r) => Some(fetch::handle(self, broker, version, r).into()),
            RequestBody::ListOffsets(r) => Some(list_offsets::handle(self, broker, version, r).into()),
            RequestBody::FindCoordinator(r) => Some(find_coordinator::handle(self, version, r).into()),
            other => return Err(FakeError::UnsupportedApi(other.api_key())),
        };
        match response {
            Some(body) => encode(correlation_id, version, &body).map(Some),
            None => Ok(None),
        }
    }
}

/// The ApiVersions entries: every implemented API at sansa's full range.
pub(crate) fn advertised() -> Vec<ApiVersion> {
    IMPLEMENTED_APIS
        .iter()
        .map(|k| {
            let r = k.versions();
            ApiVersion::default().with_api_key(k.as_i16()).with_min_version(r.min).with_max_version(r.max)
        })
        .collect()
}

fn encode(correlation_id: i32, version: i16, body: &ResponseBody) -> Result<Bytes, FakeError> {
    let mut buf = BytesMut::new();
    encode_response(&mut buf, correlation_id, version, body)?;
    Ok(buf.freeze())
}
