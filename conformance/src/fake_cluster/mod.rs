//! A sans-IO fake Kafka cluster: brokers, topics and partition logs held in memory, answering
//! real request frames with real response frames through sansa's generated codecs.
//!
//! Whoever carries the bytes (the loopback [`crate::fake_server`], the simulator, a test)
//! registers each client connection with [`FakeCluster::handle_connect`], feeds request frames
//! with [`FakeCluster::handle_frame`], and sends on what [`FakeCluster::poll_output`] returns.
//! Like a broker, the cluster answers one request per connection at a time: a request that
//! waits (a JoinGroup for the rest of its group, a Fetch for `max_wait_ms`, an injected delay)
//! holds back the requests behind it. Timers are virtual: [`FakeCluster::poll_timeout`] says
//! when to call [`FakeCluster::handle_timeout`].
//!
//! Faults ([`Fault`]) and topology changes (brokers down and up, leader moves, offline
//! partitions) can be applied at any time. The advertised ApiVersions follow a Kafka release
//! ([`FakeClusterConfig::release`], 4.3 by default), so older brokers can be emulated.
//! Replication is instant by default; [`Replication::Lagging`] models followers that lag, an
//! ISR, a high watermark and truncating leader elections (see `replication.rs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_request, encode_response};
use sansa::protocol::kafka_release::{advertised_by, ClusterMode, KafkaRelease};
use sansa::protocol::messages::api_versions::response::ApiVersion;
use sansa::protocol::messages::ApiVersionsResponse;
use sansa::protocol::{ApiKey, DecodeError, EncodeError, ErrorCode, RequestBody, ResponseBody, Uuid};

mod add_partitions_to_txn;
mod api_versions;
#[cfg(test)]
mod client_sim;
#[cfg(test)]
mod consumer_tests;
mod create_partitions;
mod create_topics;
#[cfg(test)]
mod data_tests;
mod delete_records;
mod delete_topics;
mod describe_configs;
mod describe_log_dirs;
mod end_txn;
#[cfg(test)]
mod fault_tests;
mod faults;
mod fetch;
mod find_coordinator;
#[cfg(test)]
mod group_member_tests;
mod groups;
#[cfg(test)]
mod groups_tests;
mod init_producer_id;
mod list_offsets;
mod metadata;
pub mod oauth;
mod offset_for_leader_epoch;
mod produce;
#[cfg(test)]
mod producer_tests;
mod records;
mod replication;
#[cfg(test)]
mod replication_tests;
mod security;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
mod topic_config;
pub mod world;

pub use faults::{Fault, FaultAction};
pub use records::StoredRecord;
pub use replication::Replication;

/// The APIs the fake cluster implements. Of these, it advertises those its emulated release
/// has, at that release's versions (clipped to what sansa's codecs know).
pub const IMPLEMENTED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::EndTxn,
    ApiKey::DeleteRecords,
    ApiKey::CreatePartitions,
    ApiKey::DescribeConfigs,
    ApiKey::DescribeLogDirs,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ListGroups,
    ApiKey::DescribeGroups,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::OffsetForLeaderEpoch,
];

/// APIs whose errors live per topic or partition (or whose top-level error is not the one
/// clients act on): an injected `Error` fault is applied by their handlers to each matching
/// entry rather than as a top-level error.
const PER_ENTRY_ERROR_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DeleteRecords,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::DescribeConfigs,
    ApiKey::FindCoordinator,
    ApiKey::OffsetForLeaderEpoch,
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
    /// The Kafka release (KRaft mode) whose ApiVersions the brokers advertise.
    pub release: KafkaRelease,
    /// Wall-clock time, in milliseconds since the epoch, at the first instant the cluster
    /// sees; later wall-clock times (log append times, ListOffsets by time) advance with the
    /// virtual clock. Fixed by default so that runs are reproducible.
    pub start_time_ms: i64,
    /// How long a new classic group waits for more members before its first rebalance
    /// completes (Kafka's `group.initial.rebalance.delay.ms`, 3 s by default there).
    pub group_initial_rebalance_delay: Duration,
    /// How followers keep up: [`Replication::Instant`] by default (no lag, no loss).
    pub replication: Replication,
    /// Each broker's `broker.rack`, broker 1 first (none when shorter). With racks, leaders
    /// act as with `replica.selector.class=RackAwareReplicaSelector`: a consumer that names
    /// its rack (Fetch v11+) and whose leader is in another is sent to an in-sync replica in
    /// its own (KIP-392).
    pub racks: Vec<String>,
    /// SASL on every broker's listener (SASL_PLAINTEXT, or SASL_SSL with [`Self::tls`]):
    /// the users, the mechanisms (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER) and the session
    /// lifetime. `None`: no authentication.
    pub sasl: Option<sansa::security::server::SaslUsers>,
    /// With [`Self::sasl`]: the listener is one of Kafka 0.10-0.11, advertising SaslHandshake
    /// v0 only and no SaslAuthenticate, so the tokens travel raw and a refused login is a
    /// hang-up (see `security.rs`).
    pub legacy_sasl: bool,
    /// TLS on every broker's listener (SSL, or SASL_SSL with [`Self::sasl`]). The cluster
    /// itself sees plaintext frames: whoever carries the bytes wraps each connection with
    /// [`crate::fake_tls::ServerTls`].
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Default for FakeClusterConfig {
    fn default() -> Self {
        FakeClusterConfig {
            brokers: 3,
            cluster_id: "sansa-fake-cluster".to_string(),
            default_partitions: 1,
            auto_create_topics: true,
            release: KafkaRelease::V4_3,
            start_time_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            group_initial_rebalance_delay: Duration::ZERO,
            replication: Replication::Instant,
            racks: Vec::new(),
            sasl: None,
            legacy_sasl: false,
            tls: None,
        }
    }
}

/// One client connection to one broker, named by whoever carries its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FakeConnId(pub u64);

/// What the cluster wants done on its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeOutput {
    /// Write these bytes (one or more complete response frames) to the connection.
    Send {
        /// The connection.
        conn: FakeConnId,
        /// Response frames, size prefixes included.
        bytes: Bytes,
    },
    /// Close the connection; the cluster has forgotten it.
    Close {
        /// The connection.
        conn: FakeConnId,
    },
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The broker is stopped.
    BrokerDown(i32),
    /// No broker has this id.
    UnknownBroker(i32),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::BrokerDown(id) => write!(f, "broker {id} is down"),
            ConnectError::UnknownBroker(id) => write!(f, "no broker with id {id}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why a frame could not be answered. The connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeError {
    /// The frame could not be decoded.
    Decode(DecodeError),
    /// The response could not be encoded (a bug in the fake cluster).
    Encode(EncodeError),
    /// The API is known to sansa but not implemented (nor advertised) by the fake cluster.
    UnsupportedApi(ApiKey),
    /// The API version is outside the advertised range.
    UnsupportedVersion(ApiKey, i16),
    /// The frame was received by a broker id that does not exist.
    UnknownBroker(i32),
    /// The frame arrived on a connection that was never opened or is closed.
    UnknownConnection(FakeConnId),
}

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FakeError::Decode(e) => write!(f, "malformed request: {e}"),
            FakeError::Encode(e) => write!(f, "cannot encode response: {e}"),
            FakeError::UnsupportedApi(k) => write!(f, "API {} is not implemented by the fake cluster", k.name()),
            FakeError::UnsupportedVersion(k, v) => write!(f, "{} version {v} is not advertised", k.name()),
            FakeError::UnknownBroker(id) => write!(f, "no broker with id {id}"),
            FakeError::UnknownConnection(c) => write!(f, "connection {} is not open", c.0),
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

/// Names a response that a handler will give later, with [`FakeCluster::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ticket(u64);

/// What a handler knows about the request it is handling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) now: Instant,
    pub(crate) conn: FakeConnId,
    pub(crate) broker: i32,
    pub(crate) version: i16,
    /// The ticket to keep when answering later ([`Reply::Parked`]).
    pub(crate) ticket: Ticket,
}

/// A handler's answer.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived; boxing every response would cost more
pub(crate) enum Reply {
    /// Answer now.
    Now(ResponseBody),
    /// No response is due (produce with acks=0).
    Silent,
    /// The handler kept `ctx.ticket` and will call [`FakeCluster::complete`] later.
    Parked,
    /// Close the connection without answering (an acks=0 produce that failed).
    Close,
}

impl<T: Into<ResponseBody>> From<T> for Reply {
    fn from(body: T) -> Reply {
        Reply::Now(body.into())
    }
}

#[derive(Debug)]
struct ParkedSlot {
    conn: FakeConnId,
    correlation_id: i32,
    version: i16,
    throttle_ms: Option<i32>,
    /// What becomes of the answer (a `LoseResponse` or `ApplyThenDisconnect` fault).
    fate: Fate,
}

/// What becomes of a handled request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Send,
    /// Dropped; the connection stays blocked, as after `Swallow`.
    Lose,
    /// The connection is closed instead.
    Disconnect,
}

#[derive(Debug)]
enum ConnState {
    Ready,
    /// Waiting for a parked response (or, for a swallowed request, forever).
    Parked,
    /// An injected delay: handle `frame` (without consulting faults or the session again) at
    /// `until`.
    Delayed {
        until: Instant,
        frame: Bytes,
    },
}

#[derive(Debug)]
struct Conn {
    broker: i32,
    state: ConnState,
    /// Frames that arrived while the connection was busy, with when they arrived.
    queued: VecDeque<(Instant, Bytes)>,
    auth: security::ConnAuth,
    /// A forged SCRAM signature went out on it ([`FakeCluster::set_forged_scram_signature`]).
    forged: bool,
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
    /// The leader's log end offset (the high watermark too, with instant replication).
    pub(crate) next_offset: i64,
    pub(crate) batches: Vec<StoredBatch>,
    /// Idempotent and transactional producers that wrote here, by producer id.
    pub(crate) producers: BTreeMap<i64, produce::ProducerEntry>,
    /// Aborted transactions, in marker order.
    pub(crate) aborted: Vec<produce::AbortedTxn>,
    /// Followers, ISR and high watermark; `None` with instant replication.
    pub(crate) repl: Option<replication::ReplicaSet>,
}

impl Partition {
    /// An empty partition on `replicas`, led by the first live one (offline when none is).
    pub(crate) fn new(replicas: Vec<i32>, is_live: impl Fn(i32) -> bool, replication: Replication) -> Partition {
        let leader = replicas.iter().copied().find(|r| is_live(*r)).unwrap_or(-1);
        let repl = replication::ReplicaSet::new(replication, &replicas, leader, &is_live);
        Partition {
            repl,
            leader,
            replicas,
            leader_epoch: 0,
            log_start_offset: 0,
            next_offset: 0,
            batches: Vec::new(),
            producers: BTreeMap::new(),
            aborted: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Topic {
    pub(crate) id: Uuid,
    pub(crate) partitions: Vec<Partition>,
    /// Topic config overrides (from CreateTopics), by name.
    pub(crate) configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) up: bool,
}

/// An in-memory Kafka cluster without IO. See the module documentation for the driving loop.
#[derive(Debug)]
pub struct FakeCluster {
    pub(crate) config: FakeClusterConfig,
    pub(crate) brokers: BTreeMap<i32, Broker>,
    pub(crate) topics: BTreeMap<String, Topic>,
    /// Advertised (min, max) per API.
    advertised: BTreeMap<ApiKey, (i16, i16)>,
    faults: faults::Faults,
    conns: BTreeMap<FakeConnId, Conn>,
    parked: BTreeMap<Ticket, ParkedSlot>,
    next_ticket: u64,
    /// Connections whose parked response was given and may have queued frames to handle.
    runnable: BTreeSet<FakeConnId>,
    outputs: VecDeque<FakeOutput>,
    /// The first instant seen, for wall-clock times.
    origin: Option<Instant>,
    /// Counter behind topic ids.
    uuid_counter: u64,
    /// Rotates the first leader of each new topic.
    leader_rotation: usize,
    /// Producer ids and transactions (the transaction coordinators' state).
    pub(crate) txns: init_producer_id::TxnCoordinator,
    /// Transactions written by [`FakeCluster::write_transaction`], for their producer ids.
    pub(crate) side_txns: u64,
    /// Fetch sessions and fetches waiting for data.
    pub(crate) fetches: fetch::FetchState,
    /// acks=all produces waiting for the ISR.
    pub(crate) produces: produce::ProduceWaits,
    /// Brokers whose followers stopped copying ([`FakeCluster::pause_replication`]).
    pub(crate) paused_followers: BTreeSet<i32>,
    /// Consumer groups and committed offsets.
    pub(crate) groups: groups::Groups,
    /// SCRAM exchanges end with a wrong server signature.
    forge_scram_signature: bool,
    /// Requests other than SASL after a forged signature (see `security.rs`).
    trusted_forgeries: u64,
    /// Counter behind SCRAM server nonces.
    sasl_nonces: u64,
    /// Connections closed for a request that arrived on an expired session.
    expired_sessions_closed: u64,
}

/// Whether a request frame is handled as it arrives or later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handling {
    /// At arrival, or taken from behind a busy connection's earlier request (which arrived
    /// at the instant given): faults are consulted and the session checked now. Kafka reads
    /// the next request of a connection only once the one before is answered, and checks
    /// the session's expiry as it reads it.
    Read { arrived: Instant },
    /// After an injected delay: checked and faulted when it was read.
    Delayed,
}

impl FakeCluster {
    /// Broker `id`'s rack, if the config gives it one.
    pub(crate) fn rack_of(&self, id: i32) -> Option<&str> {
        usize::try_from(id - 1).ok().and_then(|i| self.config.racks.get(i)).map(String::as_str)
    }

    /// A cluster with `config.brokers` brokers (at least one), at `localhost:9092`,
    /// `localhost:9093`, ... until [`FakeCluster::set_address`] says otherwise.
    pub fn new(config: FakeClusterConfig) -> Self {
        let n = config.brokers.max(1);
        let brokers = (1..=n as i32)
            .map(|id| {
                let port = 9091u16.saturating_add(id as u16);
                (id, Broker { host: "localhost".to_string(), port, up: true })
            })
            .collect();
        let advertised = advertised_for(config.release, config.sasl.is_some(), config.legacy_sasl);
        FakeCluster {
            config,
            brokers,
            topics: BTreeMap::new(),
            advertised,
            faults: faults::Faults::default(),
            conns: BTreeMap::new(),
            parked: BTreeMap::new(),
            next_ticket: 0,
            runnable: BTreeSet::new(),
            outputs: VecDeque::new(),
            origin: None,
            uuid_counter: 0,
            leader_rotation: 0,
            txns: init_producer_id::TxnCoordinator::default(),
            side_txns: 0,
            fetches: fetch::FetchState::default(),
            produces: produce::ProduceWaits::default(),
            paused_followers: BTreeSet::new(),
            groups: groups::Groups::default(),
            forge_scram_signature: false,
            trusted_forgeries: 0,
            sasl_nonces: 0,
            expired_sessions_closed: 0,
        }
    }

    /// The configuration the cluster was built with.
    pub fn config(&self) -> &FakeClusterConfig {
        &self.config
    }

    /// Where broker `id` is reachable, advertised in Metadata/FindCoordinator.
    pub fn set_address(&mut self, id: i32, host: &str, port: u16) {
        let up = self.brokers.get(&id).is_none_or(|b| b.up);
        self.brokers.insert(id, Broker { host: host.to_string(), port, up });
    }

    /// The broker ids, ascending, whether up or down.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// The ids of the brokers that are up, ascending.
    pub fn live_broker_ids(&self) -> Vec<i32> {
        self.brokers.iter().filter(|(_, b)| b.up).map(|(id, _)| *id).collect()
    }

    /// Whether broker `id` exists and is up.
    pub fn is_up(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| b.up)
    }

    /// The active controller: the lowest live broker id (-1 when every broker is down).
    pub fn controller_id(&self) -> i32 {
        self.live_broker_ids().first().copied().unwrap_or(-1)
    }

    /// The id of topic `name`, if it exists.
    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.topics.get(name).map(|t| t.id)
    }

    /// The topic names, ascending.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }

    /// The number of partitions of topic `name`, if it exists.
    pub fn partition_count(&self, name: &str) -> Option<usize> {
        self.topics.get(name).map(|t| t.partitions.len())
    }

    /// The leader of a partition (-1 when offline), if the partition exists.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partition(topic, partition).map(|p| p.leader)
    }

    /// The leader epoch of a partition, if it exists.
    pub fn leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partition(topic, partition).map(|p| p.leader_epoch)
    }

    /// The leader's log end offset of a partition, if it exists (also the high watermark
    /// with [`Replication::Instant`]; see [`FakeCluster::high_watermark`]).
    pub fn log_end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partition(topic, partition).map(|p| p.next_offset)
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        self.topics.get(topic)?.partitions.get(usize::try_from(partition).ok()?)
    }

    pub(crate) fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        self.topics.get_mut(topic)?.partitions.get_mut(usize::try_from(partition).ok()?)
    }

    pub(crate) fn topic_name_by_id(&self, id: Uuid) -> Option<String> {
        if id.is_zero() {
            return None;
        }
        self.topics.iter().find(|(_, t)| t.id == id).map(|(n, _)| n.clone())
    }

    /// Wall-clock milliseconds at `now`: the configured start time plus the virtual time
    /// elapsed since the first instant the cluster saw.
    pub(crate) fn wall_clock_ms(&mut self, now: Instant) -> i64 {
        let origin = *self.origin.get_or_insert(now);
        let elapsed = now.saturating_duration_since(origin).as_millis();
        self.config.start_time_ms.saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    /// A random-looking but deterministic topic id; never zero.
    fn next_uuid(&mut self) -> Uuid {
        self.uuid_counter += 1;
        let mut b = id_bytes(self.uuid_counter, TOPIC_IDS);
        if b == [0; 16] {
            b[15] = 1;
        }
        Uuid::from_bytes(b)
    }

    /// Creates a topic (the caller has validated the arguments). Leaders go round-robin over
    /// the brokers; replicas are the leader and the next brokers, `replication_factor` of them
    /// (-1: up to 3). A partition whose preferred leader is down is led by its first live
    /// replica, or is offline.
    pub fn create_topic(&mut self, name: &str, partitions: i32, replication_factor: i16) -> Uuid {
        let id = self.next_uuid();
        self.topics.insert(name.to_string(), Topic { id, partitions: Vec::new(), configs: BTreeMap::new() });
        self.add_partitions(name, partitions, replication_factor);
        id
    }

    /// Appends `count` partitions to an existing topic, placed as [`FakeCluster::create_topic`]
    /// places them.
    pub(crate) fn add_partitions(&mut self, name: &str, count: i32, replication_factor: i16) {
        let ids = self.broker_ids();
        let n = ids.len();
        let rf = if replication_factor <= 0 { n.min(3) } else { (replication_factor as usize).min(n) };
        let start = self.leader_rotation;
        self.leader_rotation = self.leader_rotation.wrapping_add(1);
        let live: BTreeSet<i32> = self.live_broker_ids().into_iter().collect();
        let Some(topic) = self.topics.get_mut(name) else { return };
        let existing = topic.partitions.len();
        for p in existing..existing + count.max(0) as usize {
            let first = (start + p) % n;
            let replicas: Vec<i32> = (0..rf).map(|r| ids[(first + r) % n]).collect();
            topic.partitions.push(Partition::new(replicas, |r| live.contains(&r), self.config.replication));
        }
    }

    // ---- Faults and topology changes ----

    /// Adds a fault rule; rules apply in the order they were added.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Whether any fault rule is left.
    pub fn has_faults(&self) -> bool {
        !self.faults.is_empty()
    }

    /// Restricts (or widens) what the brokers advertise for `api`: `None` removes it from
    /// ApiVersions and refuses its requests, as a broker without it would.
    pub fn set_api_versions(&mut self, api: ApiKey, range: Option<(i16, i16)>) {
        match range {
            Some(r) => self.advertised.insert(api, r),
            None => self.advertised.remove(&api),
        };
    }

    /// Advertises what a broker of `release` does (KRaft mode), for the implemented APIs.
    pub fn emulate_release(&mut self, release: KafkaRelease) {
        self.config.release = release;
        self.advertised = advertised_for(release, self.config.sasl.is_some(), self.config.legacy_sasl);
    }

    /// The advertised (min, max) of `api`, if advertised.
    pub fn advertised_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.advertised.get(&api).copied()
    }

    /// Stops broker `id`: its connections close, new ones are refused, and each partition it
    /// led moves to its first live replica (or goes offline) with a new leader epoch. With
    /// [`Replication::Lagging`] it leaves the ISRs, the new leader is a live ISR member (or,
    /// where unclean election is allowed, any live replica) and longer logs are truncated to
    /// its log end.
    pub fn stop_broker(&mut self, id: i32) {
        let Some(b) = self.brokers.get_mut(&id) else { return };
        if !b.up {
            return;
        }
        b.up = false;
        let doomed: Vec<FakeConnId> = self.conns.iter().filter(|(_, c)| c.broker == id).map(|(k, _)| *k).collect();
        for conn in doomed {
            self.close(conn);
        }
        self.elect_leaders(Some(id));
    }

    /// Restarts broker `id`. Offline partitions it replicates come back with it as leader (with
    /// [`Replication::Lagging`]: if it is their last ISR member, or unclean election is
    /// allowed); the others keep their current leader (no preferred-leader election).
    pub fn start_broker(&mut self, id: i32) {
        let Some(b) = self.brokers.get_mut(&id) else { return };
        if b.up {
            return;
        }
        b.up = true;
        self.elect_leaders(None);
    }

    /// Moves a partition's leadership to `to` (a live replica), bumping the leader epoch. With
    /// [`Replication::Lagging`], `to` must be in the ISR (or the partition offline and unclean
    /// election allowed), and the other replicas are truncated to its log end.
    pub fn move_leader(&mut self, topic: &str, partition: i32, to: i32) -> Result<(), String> {
        self.move_leader_to(topic, partition, to)
    }

    /// Takes a partition offline (no leader, LEADER_NOT_AVAILABLE / NOT_LEADER_OR_FOLLOWER to
    /// clients) until [`FakeCluster::move_leader`] or a broker restart gives it one.
    pub fn set_partition_offline(&mut self, topic: &str, partition: i32) -> Result<(), String> {
        let p = self.partition_mut(topic, partition).ok_or_else(|| format!("no partition {topic}-{partition}"))?;
        if p.leader != -1 {
            p.set_leader(-1);
        }
        fetch::wake(self);
        produce::wake(self);
        Ok(())
    }

    pub(crate) fn take_partition_error(
        &mut self,
        api: ApiKey,
        broker: i32,
        topic: &str,
        partition: Option<i32>,
    ) -> Option<ErrorCode> {
        if self.faults.is_empty() {
            return None;
        }
        self.faults.take_partition_error(api, broker, topic, partition)
    }

    // ---- Connections ----

    /// A client opened connection `conn` to broker `broker`.
    pub fn handle_connect(&mut self, now: Instant, broker: i32, conn: FakeConnId) -> Result<(), ConnectError> {
        self.wall_clock_ms(now);
        match self.brokers.get(&broker) {
            None => Err(ConnectError::UnknownBroker(broker)),
            Some(b) if !b.up => Err(ConnectError::BrokerDown(broker)),
            Some(_) => {
                let auth = security::ConnAuth::new(self.config.sasl.is_some());
                let c = Conn { broker, state: ConnState::Ready, queued: VecDeque::new(), auth, forged: false };
                self.conns.insert(conn, c);
                Ok(())
            }
        }
    }

    /// The client closed `conn` (or it broke). Its pending answers are dropped.
    pub fn handle_disconnect(&mut self, conn: FakeConnId) {
        self.forget(conn);
    }

    /// Whether `conn` is open.
    pub fn is_connected(&self, conn: FakeConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// One request frame (without its size prefix) received on `conn`. Answers are queued for
    /// [`FakeCluster::poll_output`]. A frame that cannot be answered closes the connection
    /// (a `Close` output) and is reported here when it was handled at once.
    pub fn handle_frame(&mut self, now: Instant, conn: FakeConnId, frame: Bytes) -> Result<(), FakeError> {
        let Some(c) = self.conns.get_mut(&conn) else { return Err(FakeError::UnknownConnection(conn)) };
        let result = if matches!(c.state, ConnState::Ready) && c.queued.is_empty() {
            self.process(now, conn, frame, Handling::Read { arrived: now })
        } else {
            c.queued.push_back((now, frame));
            Ok(())
        };
        self.settle_and_run(now);
        result
    }

    /// When [`FakeCluster::handle_timeout`] is next due, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let delays = self.conns.values().filter_map(|c| match c.state {
            ConnState::Delayed { until, .. } => Some(until),
            _ => None,
        });
        delays
            .chain(self.fetches.next_deadline())
            .chain(self.groups.poll_timeout())
            .chain(self.produces.next_deadline())
            .chain(replication::poll_timeout(self))
            .min()
    }

    /// Time has reached `now`: delayed requests are handled, and timers fire.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<FakeConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Delayed { until, .. } if until <= now))
            .map(|(k, _)| *k)
            .collect();
        for conn in due {
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            if let ConnState::Delayed { frame, .. } = std::mem::replace(&mut c.state, ConnState::Ready) {
                let _ = self.process(now, conn, frame, Handling::Delayed);
                self.runnable.insert(conn);
            }
        }
        replication::settle(self, now);
        produce::handle_timeout(self, now);
        fetch::handle_timeout(self, now);
        groups::handle_timeout(self, now);
        self.settle_and_run(now);
    }

    /// The next thing to do on a connection.
    pub fn poll_output(&mut self) -> Option<FakeOutput> {
        self.outputs.pop_front()
    }

    /// Convenience for tests: handles one frame on a fresh connection to `broker` and returns
    /// the bytes sent back at once (`None` when nothing was), then forgets the connection.
    pub fn answer(&mut self, now: Instant, broker: i32, frame: Bytes) -> Result<Option<Bytes>, FakeError> {
        let conn = FakeConnId(u64::MAX - self.next_ticket);
        self.handle_connect(now, broker, conn).map_err(|_| FakeError::UnknownBroker(broker))?;
        let result = self.handle_frame(now, conn, frame);
        let mut answer = BytesMut::new();
        let mut kept = VecDeque::new();
        while let Some(o) = self.outputs.pop_front() {
            match o {
                FakeOutput::Send { conn: c, bytes } if c == conn => answer.extend_from_slice(&bytes),
                FakeOutput::Close { conn: c } if c == conn => {}
                other => kept.push_back(other),
            }
        }
        self.outputs = kept;
        self.forget(conn);
        result?;
        Ok((!answer.is_empty()).then(|| answer.freeze()))
    }

    /// Gives the parked response `ticket`: encodes it for its connection, which then handles
    /// the requests queued behind it. A ticket whose connection has gone is ignored.
    pub(crate) fn complete(&mut self, ticket: Ticket, mut body: ResponseBody) {
        let Some(slot) = self.parked.remove(&ticket) else { return };
        let Some(c) = self.conns.get_mut(&slot.conn) else { return };
        match slot.fate {
            Fate::Send => {}
            // The connection stays parked with nothing left to wake it.
            Fate::Lose => return,
            Fate::Disconnect => return self.close(slot.conn),
        }
        c.state = ConnState::Ready;
        if let Some(ms) = slot.throttle_ms {
            body.set_throttle_time_ms(ms);
        }
        match encode(slot.correlation_id, slot.version, &body) {
            Ok(bytes) => self.outputs.push_back(FakeOutput::Send { conn: slot.conn, bytes }),
            Err(_) => self.close(slot.conn),
        }
        self.runnable.insert(slot.conn);
    }

    /// Whether the parked response `ticket` is still wanted.
    pub(crate) fn is_parked(&self, ticket: Ticket) -> bool {
        self.parked.contains_key(&ticket)
    }

    fn close(&mut self, conn: FakeConnId) {
        if self.forget(conn) {
            self.outputs.push_back(FakeOutput::Close { conn });
        }
    }

    fn forget(&mut self, conn: FakeConnId) -> bool {
        self.parked.retain(|_, slot| slot.conn != conn);
        self.runnable.remove(&conn);
        self.conns.remove(&conn).is_some()
    }

    /// Lets replication catch up with what was just handled, then handles the requests
    /// that answers unblocked, until neither has anything left.
    fn settle_and_run(&mut self, now: Instant) {
        loop {
            replication::settle(self, now);
            if self.runnable.is_empty() {
                return;
            }
            self.run_queued(now);
        }
    }

    fn run_queued(&mut self, now: Instant) {
        while let Some(conn) = self.runnable.pop_first() {
            while let Some(c) = self.conns.get_mut(&conn) {
                if !matches!(c.state, ConnState::Ready) {
                    break;
                }
                let Some((arrived, frame)) = c.queued.pop_front() else { break };
                let _ = self.process(now, conn, frame, Handling::Read { arrived });
            }
        }
    }

    /// Handles one frame on a ready connection.
    fn process(&mut self, now: Instant, conn: FakeConnId, frame: Bytes, handling: Handling) -> Result<(), FakeError> {
        let result = self.try_process(now, conn, frame, handling);
        if result.is_err() {
            self.close(conn);
        }
        result
    }

    fn try_process(
        &mut self,
        now: Instant,
        conn: FakeConnId,
        frame: Bytes,
        handling: Handling,
    ) -> Result<(), FakeError> {
        let Some(broker) = self.conns.get(&conn).map(|c| c.broker) else { return Ok(()) };
        if self.expects_raw_token(conn) {
            // A bare token, not a request: no header, no faults aimed at APIs.
            self.sasl_raw_token(now, conn, frame);
            return Ok(());
        }
        if frame.len() < 8 {
            return Err(DecodeError::Truncated { what: "RequestHeader", needed: 8, remaining: frame.len() }.into());
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let api_key = ApiKey::from_i16(key).ok_or(DecodeError::UnknownApiKey(key))?;
        let advertised = self.advertised.get(&api_key).copied();
        if api_key == ApiKey::ApiVersions && advertised.is_none_or(|(lo, hi)| !(lo..=hi).contains(&version)) {
            // Like Kafka: answer with a v0 body holding the error and the ranges, so that the
            // client can pick a version it shares with us.
            let body = ApiVersionsResponse::default()
                .with_error_code(ErrorCode::UnsupportedVersion)
                .with_api_keys(self.advertised_list());
            let bytes = encode(correlation_id, 0, &ResponseBody::from(body))?;
            self.outputs.push_back(FakeOutput::Send { conn, bytes });
            return Ok(());
        }
        let Some((lo, hi)) = advertised else { return Err(FakeError::UnsupportedApi(api_key)) };
        if !(lo..=hi).contains(&version) {
            return Err(FakeError::UnsupportedVersion(api_key, version));
        }
        let sasl_api = security::SASL_APIS.contains(&api_key);
        if let (Handling::Read { arrived }, Some(c)) = (handling, self.conns.get(&conn)) {
            match c.auth.gate(now, api_key) {
                security::Gate::Pass => {}
                gate => {
                    // A request that waited behind a delayed one from before the expiry is the
                    // race the protocol accepts (the client renews only with nothing in
                    // flight); one that arrived on an expired session is the client's fault.
                    let late = gate == security::Gate::Expired && c.auth.gate(arrived, api_key) == gate;
                    self.expired_sessions_closed += u64::from(late);
                    self.close(conn);
                    return Ok(());
                }
            }
            if c.forged && !sasl_api && api_key != ApiKey::ApiVersions {
                self.trusted_forgeries += 1;
            }
        }
        let mut throttle_ms = None;
        let mut fate = Fate::Send;
        if handling != Handling::Delayed && !self.faults.is_empty() {
            let top_level =
                !PER_ENTRY_ERROR_APIS.contains(&api_key) && ResponseBody::default_for(api_key).error_code().is_some();
            match self.faults.take_request_fault(api_key, broker, top_level) {
                None => {}
                // Brokers answer SASL with errors of its own only; an injected one would be a
                // refused login, which no client retries.
                Some(FaultAction::Error(_) | FaultAction::Throttle(_)) if sasl_api => {}
                Some(FaultAction::Error(code)) => {
                    decode_request(frame)?;
                    let mut body = ResponseBody::default_for(api_key);
                    body.set_error_code(code);
                    let bytes = encode(correlation_id, version, &body)?;
                    self.outputs.push_back(FakeOutput::Send { conn, bytes });
                    return Ok(());
                }
                Some(FaultAction::Delay(d)) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.state = ConnState::Delayed { until: now + d, frame };
                    }
                    return Ok(());
                }
                Some(FaultAction::Disconnect) => {
                    self.close(conn);
                    return Ok(());
                }
                Some(FaultAction::Swallow) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.state = ConnState::Parked;
                    }
                    return Ok(());
                }
                Some(FaultAction::Throttle(d)) => {
                    throttle_ms = Some(i32::try_from(d.as_millis()).unwrap_or(i32::MAX));
                }
                Some(FaultAction::LoseResponse) => fate = Fate::Lose,
                Some(FaultAction::ApplyThenDisconnect) => fate = Fate::Disconnect,
            }
        }
        let (header, body) = decode_request(frame)?;
        self.groups.client_id = header.client_id.as_deref().unwrap_or_default().to_string();
        let ticket = self.new_ticket();
        let ctx = Ctx { now, conn, broker, version, ticket };
        let reply = self.dispatch(ctx, body)?;
        let refused = self.conns.get(&conn).is_some_and(|c| matches!(c.auth, security::ConnAuth::Failed));
        match (reply, fate) {
            (Reply::Close, _) | (Reply::Now(_) | Reply::Silent, Fate::Disconnect) => self.close(conn),
            (Reply::Now(_) | Reply::Silent, Fate::Lose) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.state = ConnState::Parked;
                }
            }
            (Reply::Now(mut body), Fate::Send) => {
                if let Some(ms) = throttle_ms {
                    body.set_throttle_time_ms(ms);
                }
                let bytes = encode(header.correlation_id, version, &body)?;
                self.outputs.push_back(FakeOutput::Send { conn, bytes });
            }
            (Reply::Silent, Fate::Send) => {}
            (Reply::Parked, fate) => {
                let slot = ParkedSlot { conn, correlation_id: header.correlation_id, version, throttle_ms, fate };
                self.parked.insert(ticket, slot);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.state = ConnState::Parked;
                }
            }
        }
        if refused {
            // Like Kafka: the refusal is answered, then the connection closed.
            self.close(conn);
        }
        Ok(())
    }

    fn new_ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    /// One handler module per API.
    fn dispatch(&mut self, ctx: Ctx, body: RequestBody) -> Result<Reply, FakeError> {
        let version = ctx.version;
        let broker = ctx.broker;
        Ok(match body {
            RequestBody::ApiVersions(_) => api_versions::handle(self).into(),
            RequestBody::Metadata(r) => metadata::handle(self, broker, version, r).into(),
            RequestBody::CreateTopics(r) => create_topics::handle(self, broker, version, r).into(),
            RequestBody::DeleteTopics(r) => delete_topics::handle(self, broker, version, r).into(),
            RequestBody::Produce(r) => produce::handle(self, ctx, r),
            RequestBody::Fetch(r) => fetch::handle(self, ctx, r),
            RequestBody::ListOffsets(r) => list_offsets::handle(self, ctx, r).into(),
            RequestBody::InitProducerId(r) => init_producer_id::handle(self, ctx, r).into(),
            RequestBody::AddPartitionsToTxn(r) => add_partitions_to_txn::handle(self, ctx, r).into(),
            RequestBody::EndTxn(r) => end_txn::handle(self, ctx, r).into(),
            RequestBody::DeleteRecords(r) => delete_records::handle(self, ctx, r).into(),
            RequestBody::CreatePartitions(r) => create_partitions::handle(self, ctx, r).into(),
            RequestBody::DescribeConfigs(r) => describe_configs::handle(self, ctx, r).into(),
            RequestBody::FindCoordinator(r) => find_coordinator::handle(self, broker, version, r).into(),
            RequestBody::DescribeLogDirs(r) => describe_log_dirs::handle(self, broker, r).into(),
            RequestBody::JoinGroup(r) => groups::classic::join(self, ctx, r),
            RequestBody::SyncGroup(r) => groups::classic::sync(self, ctx, r),
            RequestBody::Heartbeat(r) => groups::classic::heartbeat(self, ctx, r).into(),
            RequestBody::LeaveGroup(r) => groups::classic::leave(self, ctx, r),
            RequestBody::OffsetCommit(r) => groups::offsets::commit(self, ctx, r).into(),
            RequestBody::OffsetFetch(r) => groups::offsets::fetch(self, ctx, r).into(),
            RequestBody::ListGroups(r) => groups::listing::list(self, ctx, r).into(),
            RequestBody::DescribeGroups(r) => groups::listing::describe(self, ctx, r).into(),
            RequestBody::ConsumerGroupHeartbeat(r) => groups::consumer::heartbeat(self, ctx, r).into(),
            RequestBody::OffsetForLeaderEpoch(r) => offset_for_leader_epoch::handle(self, ctx, r).into(),
            RequestBody::SaslHandshake(r) => self.sasl_handshake(ctx.conn, version, &r).into(),
            RequestBody::SaslAuthenticate(r) => self.sasl_authenticate(ctx.now, ctx.conn, &r).into(),
            other => return Err(FakeError::UnsupportedApi(other.api_key())),
        })
    }

    /// The ApiVersions entries, ascending by key.
    pub(crate) fn advertised_list(&self) -> Vec<ApiVersion> {
        self.advertised
            .iter()
            .map(|(k, (lo, hi))| {
                ApiVersion::default().with_api_key(k.as_i16()).with_min_version(*lo).with_max_version(*hi)
            })
            .collect()
    }
}

/// Streams of [`id_bytes`], so that topic ids and member ids never coincide.
const TOPIC_IDS: u64 = 0;
pub(crate) const MEMBER_IDS: u64 = 0x6a09_e667_f3bc_c908;

/// 16 random-looking bytes, deterministic in (`counter`, `stream`): ids stay the same from run
/// to run, so that simulations replay.
pub(crate) fn id_bytes(counter: u64, stream: u64) -> [u8; 16] {
    let mut rng = sansa::rand::Rng::new(counter.wrapping_mul(2) ^ stream);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    b[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    b
}

/// What a KRaft broker of `release` advertises, restricted to the implemented APIs and to the
/// versions sansa's codecs know.
fn advertised_for(release: KafkaRelease, sasl: bool, legacy_sasl: bool) -> BTreeMap<ApiKey, (i16, i16)> {
    let table = advertised_by(release, ClusterMode::KRaft).unwrap_or_default();
    let mut out = BTreeMap::new();
    let sasl_apis = if sasl { &security::SASL_APIS[..] } else { &[] };
    for api in IMPLEMENTED_APIS.iter().chain(sasl_apis) {
        let Some((_, lo, hi)) = table.iter().find(|(k, _, _)| *k == api.as_i16()) else { continue };
        let ours = api.versions();
        let (lo, hi) = ((*lo).max(ours.min), (*hi).min(ours.max));
        if lo <= hi {
            out.insert(*api, (lo, hi));
        }
    }
    if sasl && legacy_sasl {
        // Kafka 0.10-0.11: raw tokens after SaslHandshake v0.
        out.insert(ApiKey::SaslHandshake, (0, 0));
        out.remove(&ApiKey::SaslAuthenticate);
    }
    out
}

fn encode(correlation_id: i32, version: i16, body: &ResponseBody) -> Result<Bytes, FakeError> {
    let mut buf = BytesMut::new();
    encode_response(&mut buf, correlation_id, version, body)?;
    Ok(buf.freeze())
}
