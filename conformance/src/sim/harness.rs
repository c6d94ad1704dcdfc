//! The simulator proper: one thread, one virtual clock, seeded random streams, driving one or
//! more [`sansa::Client`]s against one [`FakeCluster`] through the [`Netem`] network.
//!
//! Each client has its own connection namespace: its `ConnId` `c` becomes the network's and
//! the cluster's connection `client << 32 | c` ([`wire_conn`]), so the clients never collide.
//!
//! [`Sim::step`] advances to the earliest of: a scheduled [`Action`] (a workload command, a
//! probe retry or a fault), a network delivery, the cluster's timer, each client's timer;
//! applies it; then drains every client (transmits, then events) and the cluster (outputs).
//! Ties go in that order, clients by index, so a run is a pure function of its configuration.
//! Every step lands in the [`Trace`]; records produced and consumed land in the [`History`].
//!
//! Clients with a [`ClientConfig::producer`] also send identifiable records through
//! [`sansa::Client::send`] ([`Action::Send`]) and flush ([`Work::Flush`]); each delivery
//! report lands in the history, and after every step the harness notes what each producer's
//! buffer holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::backoff::Backoff;
use sansa::plants::Plant;
use sansa::producer::{ProducerConfig, ProducerRecord, SendId};
use sansa::protocol::frame::{decode_request, FrameDecoder};
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::list_offsets::request::{ListOffsetsPartition, ListOffsetsTopic};
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::{
    CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, ProduceRequest,
};
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder};
use sansa::protocol::{ApiKey, BrokerId, ErrorCode, GroupId, RequestBody, ResponseBody, TopicName, Uuid};
use sansa::rand::Rng;
use sansa::{
    BrokerAddress, Client, CloseCause, Config, ConnId, Event, Input, RequestError, RequestId, Target, Transmit,
};

use super::consumers::{ConsumerOp, ConsumerSpec, GROUP, POLL_EVERY};
use super::history::{Consumed, ConsumerInfo, Crash, Delivery, Handover, History, RecordId, SendEntry, SendKey};
use super::netem::{DropKind, LinkProfile, NetEvent, Netem};
use super::trace::{Trace, TraceEvent};
use crate::fake_cluster::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput, Fault, Replication};
use crate::fake_tls::ServerTls;
use sansa::consumer::TopicPartition;
use sansa::security::server::SaslUsers;
use sansa::security::{SaslMechanism, SecurityConfig};

/// Steps at one virtual instant before the run counts as a livelock.
pub const LIVELOCK_STEPS: u64 = 20_000;

/// The OffsetFetch version the workload pins: the last one with a top-level error code, so
/// that NOT_COORDINATOR is where the client's raw-request path looks for it.
pub const OFFSET_FETCH_VERSION: i16 = 7;

/// Pause between a failed probe attempt and the next.
pub const PROBE_RETRY: Duration = Duration::from_millis(100);

/// Per connection (its network id, [`wire_conn`]), every API it carried and when that API
/// first went out on it.
pub type ConnectionApis = BTreeMap<u64, BTreeMap<ApiKey, Duration>>;

/// The network's and the cluster's id for client `client`'s connection `conn`.
pub fn wire_conn(client: usize, conn: ConnId) -> u64 {
    ((client as u64) << 32) | (conn.0 & 0xffff_ffff)
}

/// The client and its `ConnId` behind a network connection id.
pub fn split_conn(wire: u64) -> (usize, ConnId) {
    ((wire >> 32) as usize, ConnId(wire & 0xffff_ffff))
}

/// One client's configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Brokers reached through the bootstrap aliases `bootstrap-<i>:9092`, in order.
    pub bootstrap: Vec<i32>,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`.
    pub connection_setup_timeout: Duration,
    /// `reconnect.backoff.ms` and `reconnect.backoff.max.ms`.
    pub reconnect_backoff: (Duration, Duration),
    /// `retry.backoff.ms` and `retry.backoff.max.ms`.
    pub retry_backoff: (Duration, Duration),
    /// `metadata.max.age.ms`.
    pub metadata_max_age: Duration,
    /// The producer's settings when this client sends records through `Client::send`
    /// ([`Action::Send`]); `None`: it does not.
    pub producer: Option<ProducerConfig>,
    /// The consumer's settings when this client is a group member ([`Action::Consumer`]).
    pub consumer: Option<ConsumerSpec>,
    /// How it authenticates; `None`: as [`SimConfig::security`] says every client does.
    pub security: Option<SecurityConfig>,
    /// The client hands its compression and decompression out as work
    /// (`Client::offload_work`), each piece done up to this long after it was handed out, in
    /// any order; `None`: it does them inline.
    pub offload_work: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: vec![1],
            request_timeout: Duration::from_secs(10),
            connection_setup_timeout: Duration::from_secs(3),
            reconnect_backoff: (Duration::from_millis(50), Duration::from_millis(1000)),
            retry_backoff: (Duration::from_millis(100), Duration::from_millis(1000)),
            metadata_max_age: Duration::from_secs(60),
            producer: None,
            consumer: None,
            security: None,
            offload_work: None,
        }
    }
}

/// How to set a simulation up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random choice: the clients', the network's and the simulator's.
    pub seed: u64,
    /// Number of brokers (ids `1..=brokers`), reachable at `broker-<id>:9092`.
    pub brokers: usize,
    /// Topics created before the run: name and partition count.
    pub topics: Vec<(String, i32)>,
    /// Profile of every link.
    pub profile: LinkProfile,
    /// One entry per client; client `i` has index `i` everywhere.
    pub clients: Vec<ClientConfig>,
    /// A deliberate bug armed on every client.
    pub plant: Option<Plant>,
    /// A produce command carries 1 to this many records.
    pub max_records_per_produce: u64,
    /// How followers copy leaders: at once, or lagging (then acks=all answers wait for the
    /// in-sync replicas, consumers see only what is below the high watermark, and a leader
    /// change truncates what the new leader never had).
    pub replication: Replication,
    /// The brokers' listener: TLS, SASL, both, or (`None`) plaintext.
    pub security: Option<SimSecurity>,
}

/// The brokers' listener security in a simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimSecurity {
    /// The mechanism every client logs in with as [`SIM_USER`]; `None`: no SASL (SSL).
    pub mechanism: Option<SaslMechanism>,
    /// TLS on every connection (with the test CA, host names checked).
    pub tls: bool,
    /// The brokers' session lifetime (KIP-368's `connections.max.reauth.ms`): a connection
    /// whose client does not re-authenticate in time is closed at its next request.
    pub session_lifetime: Option<Duration>,
    /// With a mechanism: the brokers are of Kafka 0.10-0.11 (SaslHandshake v0 only, raw
    /// tokens, a refused login is a hang-up, no session lifetime).
    pub legacy: bool,
}

/// The user every simulated client logs in as, and its password.
pub const SIM_USER: (&str, &str) = ("sim", "sim-secret");

/// The brokers' users: [`SIM_USER`], its SCRAM keys derived once per process (PBKDF2 is the
/// slow part of a login).
fn sim_users() -> SaslUsers {
    static USERS: std::sync::OnceLock<SaslUsers> = std::sync::OnceLock::new();
    USERS.get_or_init(|| SaslUsers::new().with_user(SIM_USER.0, SIM_USER.1)).clone()
}

impl SimSecurity {
    /// A client's settings for this listener, logging in with `password`.
    pub fn client(&self, password: &str, tls: Option<&sansa::security::TlsSettings>) -> SecurityConfig {
        let base = match self.mechanism {
            Some(m) => SecurityConfig::sasl_plaintext(m, SIM_USER.0, password),
            None => SecurityConfig::default(),
        };
        match tls.filter(|_| self.tls) {
            Some(t) => base.with_tls(t.clone()),
            None => base,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            brokers: 3,
            topics: vec![("events".into(), 3), ("logs".into(), 2)],
            profile: LinkProfile::default(),
            clients: vec![ClientConfig::default()],
            plant: None,
            max_records_per_produce: 3,
            replication: Replication::Instant,
            security: None,
        }
    }
}

impl SimConfig {
    /// Sets every client's request timeout.
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        for c in &mut self.clients {
            c.request_timeout = d;
        }
        self
    }

    /// `n` clients with the first one's configuration.
    pub fn with_clients(mut self, n: usize) -> Self {
        let first = self.clients.first().cloned().unwrap_or_default();
        self.clients = vec![first; n.max(1)];
        self
    }
}

/// A command of the workload. Commands that name a partition pick it when issued, by index
/// over the topics that exist then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A Metadata request for every topic, to any broker.
    Metadata,
    /// `Client::refresh_metadata` for every topic.
    RefreshMetadata,
    /// `Client::check_version`, to any broker or to one.
    CheckVersion(Option<i32>),
    /// A Metadata request to one broker.
    ToBroker(i32),
    /// CreateTopics to the controller.
    CreateTopic { name: String, partitions: i32 },
    /// Produce one batch of identifiable records (`c{client}-{seq}`) to a partition's
    /// current leader in the cluster.
    Produce { pick: u64 },
    /// Like [`Work::Produce`], but to the leader the client's own metadata names, as a
    /// producer would (the cluster's leader when the client knows none).
    ProduceViaMetadata { pick: u64 },
    /// Fetch a partition from offset 0 at its leader; what it reads is recorded as consumed.
    Fetch { pick: u64 },
    /// A long poll: Fetch at the log end with `max_wait_ms`, which the broker holds.
    LongPoll { pick: u64, wait_ms: i32 },
    /// ListOffsets (latest) at a partition's leader.
    ListOffsets { pick: u64 },
    /// A Metadata request routed to a group's coordinator (looked up with FindCoordinator).
    Coordinator { group: String },
    /// OffsetFetch for a group at its coordinator, which answers NOT_COORDINATOR when it is not.
    OffsetFetch { group: String },
    /// `Client::flush`: answered once every record the client sent before has its outcome.
    Flush,
}

/// How the records of one [`SendWork`] are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keying {
    /// No key: the partitioner picks (sticky).
    Unkeyed,
    /// Keys from a small set of this many (`k0`, `k1`, ...), partitioned by murmur2.
    Keyed(u32),
    /// The partition the pick names, given explicitly.
    Partition,
}

/// A burst of records sent through `Client::send` at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWork {
    /// The topic (and for [`Keying::Partition`] the partition), by index over the
    /// partitions that exist when sent.
    pub pick: u64,
    /// How many records.
    pub count: u32,
    /// How they are placed.
    pub keying: Keying,
    /// Bytes of padding after each value's name, so batches fill at different rates.
    pub pad: u32,
    /// Sent after the faults ended: each record must be acked.
    pub must_ack: bool,
}

impl Work {
    /// The probe kinds liveness checks: one request of each kind the workload has.
    pub fn kinds(pick: u64) -> Vec<Work> {
        vec![
            Work::Metadata,
            Work::RefreshMetadata,
            Work::CheckVersion(None),
            Work::ProduceViaMetadata { pick },
            Work::Fetch { pick },
            Work::ListOffsets { pick },
            Work::OffsetFetch { group: "live".into() },
        ]
    }
}

/// Something scheduled: a command, a fault or a topology change.
#[derive(Debug, Clone)]
pub enum Action {
    /// A client issues a command.
    Issue { client: usize, work: Work },
    /// A producing client sends records through `Client::send`.
    Send { client: usize, send: SendWork },
    /// A probe tries again.
    RetryProbe(usize),
    /// Cut every client off from a broker.
    Partition(i32),
    /// Undo [`Action::Partition`].
    Heal(i32),
    /// Stop a broker.
    StopBroker(i32),
    /// Restart a broker.
    StartBroker(i32),
    /// Move a partition's leadership to another live replica.
    MoveLeader { pick: u64 },
    /// Take a partition offline.
    Offline { pick: u64 },
    /// Add a fault rule to the cluster.
    Inject(Fault),
    /// Drop one of the clients' open connections.
    Drop { pick: u64, kind: DropKind },
    /// Change the links to one broker (`None`: back to the default).
    Profile { broker: i32, profile: Option<LinkProfile> },
    /// A group member subscribes, leaves, stalls or crashes.
    Consumer { client: usize, op: ConsumerOp },
    /// Another application writes a whole transaction (`count` records, then the marker) to
    /// the partition `pick` names.
    Txn { pick: u64, count: u32, commit: bool },
    /// A client's offloaded work ([`ClientConfig::offload_work`]) is done.
    FinishWork { client: usize, work: u64 },
    /// Every fault ends: partitions heal, brokers restart, offline partitions get a leader,
    /// fault rules go, links get their default profile.
    EndFaults,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// When it was noticed (since the origin).
    pub at: Duration,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] at {:.6}s: {}", self.invariant, self.at.as_secs_f64(), self.detail)
    }
}

/// Why driving stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// Too many steps without the clock moving.
    Livelock { at: Duration, steps: u64 },
    /// The step cap was reached with work still pending.
    StepCap { at: Duration, steps: u64, outstanding: usize },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Livelock { at, steps } => {
                write!(f, "livelock: {steps} steps at {:.6}s without the clock moving", at.as_secs_f64())
            }
            SimError::StepCap { at, steps, outstanding } => write!(
                f,
                "step cap of {steps} reached at {:.6}s with {outstanding} commands outstanding",
                at.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for SimError {}

/// A command of one client: the client's index and its request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CmdId {
    /// Which client.
    pub client: usize,
    /// The id that client gave it.
    pub id: RequestId,
}

impl fmt::Display for CmdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.client, self.id.0)
    }
}

/// What a request was about, to check its answer against (a swapped answer has the wrong
/// type or names the wrong partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The API of the request.
    pub api: ApiKey,
    /// The one partition it named, with the topic's id.
    pub partition: Option<(String, Uuid, i32)>,
}

/// One command of the workload and what became of it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// What was asked, for humans.
    pub what: String,
    /// The broker it was addressed to, for `Target::Broker` commands.
    pub broker: Option<i32>,
    /// When it was issued.
    pub issued: Duration,
    /// How long after `issued` it must resolve: the client's request timeout, plus the
    /// broker's hold for a long poll.
    pub deadline: Duration,
    /// For raw requests: the API and partition asked about.
    pub asked: Option<Asked>,
    /// The records it carried.
    pub records: Vec<RecordId>,
    /// The probe it is an attempt of.
    pub probe: Option<usize>,
    /// It must succeed within this long of being issued (a request that must not wait
    /// behind another one).
    pub latency_bound: Option<Duration>,
    /// Every outcome reported for it (exactly one is right), with its time.
    pub outcomes: Vec<(Duration, Event)>,
}

impl RequestRecord {
    /// The first outcome, if any.
    pub fn outcome(&self) -> Option<&Event> {
        self.outcomes.first().map(|(_, e)| e)
    }
}

/// A request that must succeed within a bound: retried on failure (after a metadata refresh
/// when the answer says the client's view is stale, as a producer would) until it succeeds
/// or the bound has passed.
#[derive(Debug, Clone)]
pub struct ProbeRecord {
    /// Why it exists (`liveness`, `coordinator moved`, ...).
    pub why: String,
    /// Which client.
    pub client: usize,
    /// What it asks.
    pub work: Work,
    /// When it started.
    pub started: Duration,
    /// It must succeed by `started + bound`.
    pub bound: Duration,
    /// Every attempt, with its outcome kind once known.
    pub attempts: Vec<(CmdId, Option<String>)>,
    /// When it succeeded.
    pub succeeded: Option<Duration>,
}

/// Per-address view of reconnects, derived from what crosses the client's API.
#[derive(Debug, Default)]
struct AddrState {
    /// Consecutive failures the client surely counted since its last handshake.
    failures: u32,
    /// The last such failure.
    last_failure: Option<Duration>,
    /// The last time a connection to it ended, for any reason.
    last_close: Option<Duration>,
    /// The client's current connections to it (one per role: fetches travel apart).
    live: BTreeSet<ConnId>,
}

#[derive(Debug)]
struct ConnTrack {
    address: BrokerAddress,
    connected: bool,
    /// A whole response frame reached the client: the ApiVersions handshake is done.
    ready: bool,
    inbound: BytesMut,
    /// Bytes the client wrote, not yet a whole request frame.
    outbound: BytesMut,
    /// Over TLS: bytes received so far, and the length of the stream up to the end of the
    /// first response (then the connection is ready).
    received: u64,
    ready_at: Option<u64>,
}

/// One client and the simulator's bookkeeping about it.
#[derive(Debug)]
struct Slot {
    client: Client,
    config: ClientConfig,
    reconnect: Backoff,
    addr_state: BTreeMap<BrokerAddress, AddrState>,
    conn_track: BTreeMap<ConnId, ConnTrack>,
    next_record: u64,
    /// The next [`SendKey::seq`], and which send each id the client returned stands for.
    next_send: u64,
    send_ids: BTreeMap<SendId, u64>,
    /// It crashed: it takes no more steps and hears nothing.
    dead: bool,
    /// Its life as a group member, when it is one.
    member: Option<Member>,
}

/// A partition no member has read to the end: topic, partition, its owner with the owner's
/// position, and the log end.
type Lagging = (String, i32, Option<(usize, Option<i64>)>, i64);

/// A group member's state as the harness drives it.
#[derive(Debug)]
struct Member {
    spec: ConsumerSpec,
    subscribed: bool,
    stalled_until: Option<Duration>,
    last_poll: Duration,
    /// The ownership count of each partition it was assigned ([`Delivery::session`]).
    sessions: BTreeMap<(String, i32), u64>,
    next_session: u64,
    /// The last offset handed out per partition in its current ownership.
    last_out: BTreeMap<(String, i32), i64>,
    /// After an explicit unsubscribe: whether the leave request went out.
    leave: Option<bool>,
}

/// A simulation run. See the module docs.
#[derive(Debug)]
pub struct Sim {
    origin: Instant,
    now: Duration,
    slots: Vec<Slot>,
    cluster: FakeCluster,
    net: Netem,
    rng: Rng,
    max_records_per_produce: u64,
    addresses: BTreeMap<BrokerAddress, i32>,
    actions: BTreeMap<(Duration, u64), Action>,
    seq: u64,
    trace: Trace,
    requests: BTreeMap<CmdId, RequestRecord>,
    unresolved: BTreeSet<CmdId>,
    stray: Vec<(Duration, String)>,
    violations: Vec<Violation>,
    probes: Vec<ProbeRecord>,
    history: History,
    connection_apis: ConnectionApis,
    steps: u64,
    stalled: u64,
    faults_over: bool,
    /// When the faults last ended.
    faults_ended: Option<Duration>,
    convergence: Option<String>,
    decoder: FrameDecoder,
    seed: u64,
    plant: Option<Plant>,
    /// Transactions may be written ([`Action::Txn`]): replication is instant.
    transactions: bool,
    /// The network is calm and every member polls: group assignments are checked for
    /// overlaps after every step.
    calm: bool,
    overlap_seen: bool,
    next_txn: u64,
    /// Each TLS connection's server side, by network id.
    tls: BTreeMap<u64, ServerTls>,
    /// The security of clients added during the run (as [`SimConfig::security`] says).
    security: Option<SecurityConfig>,
    /// The listener's security.
    listener: Option<SimSecurity>,
    /// Work clients handed out, by id, until its [`Action::FinishWork`].
    offloaded: BTreeMap<u64, sansa::Work>,
    next_work: u64,
}

/// Client `index`'s `Client`, and its reconnect backoff.
fn make_client(seed: u64, index: usize, cc: &ClientConfig, plant: Option<Plant>, origin: Instant) -> (Client, Backoff) {
    let bootstrap: Vec<String> =
        (0..cc.bootstrap.len()).map(|i| BrokerAddress::new(format!("bootstrap-{i}"), 9092).to_string()).collect();
    // Client 0 keeps the seed itself, so a one-client run draws as it always did.
    let seed = seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let config = Config::new(&bootstrap.join(","))
        .expect("bootstrap aliases parse")
        .with_rng_seed(seed)
        .with_request_timeout(cc.request_timeout)
        .with_connection_setup_timeout(cc.connection_setup_timeout)
        .with_reconnect_backoff(cc.reconnect_backoff.0, cc.reconnect_backoff.1)
        .with_retry_backoff(cc.retry_backoff.0, cc.retry_backoff.1)
        .with_metadata_max_age(cc.metadata_max_age);
    let config = match &cc.producer {
        Some(p) => config.with_producer(p.clone()),
        None => config,
    };
    let config = match &cc.consumer {
        Some(c) => config.with_consumer(c.config.clone()),
        None => config,
    };
    let config = match &cc.security {
        Some(s) => config.with_security(s.clone()),
        None => config,
    };
    config.validate().expect("the scenario draws valid client configurations");
    let reconnect = config.reconnect_backoff;
    let tls = config.security.tls.is_some();
    let mut client = Client::new(config, origin);
    client.offload_work(cc.offload_work.is_some());
    if let Some(p) = plant {
        client.plant(p);
    }
    // TLS checks certificates against the wall clock: the fake cluster's. Runs without TLS
    // keep none, as the regression seeds were found without one.
    if tls {
        client.set_wall_clock(origin, FakeClusterConfig::default().start_time_ms);
    }
    (client, reconnect)
}

fn new_slot(client: Client, cc: &ClientConfig, reconnect: Backoff) -> Slot {
    Slot {
        client,
        config: cc.clone(),
        reconnect,
        addr_state: BTreeMap::new(),
        conn_track: BTreeMap::new(),
        next_record: 0,
        next_send: 0,
        send_ids: BTreeMap::new(),
        dead: false,
        member: cc.consumer.clone().map(|spec| Member {
            spec,
            subscribed: false,
            stalled_until: None,
            last_poll: Duration::ZERO,
            sessions: BTreeMap::new(),
            next_session: 0,
            last_out: BTreeMap::new(),
            leave: None,
        }),
    }
}

fn consumer_info(spec: &ConsumerSpec) -> ConsumerInfo {
    ConsumerInfo {
        group: GROUP.to_string(),
        read_committed: spec.config.isolation_level == sansa::consumer::IsolationLevel::ReadCommitted,
        commits_on_revoke: spec.commits_on_revoke(),
        buffer_memory: spec.config.fetch_buffer_memory,
        // The consumer reserves each fetch's max_bytes until its answer comes, and a broker
        // passes max_bytes by at most one batch (KIP-74): one batch per leader, of which the
        // simulator has at most five.
        slack: spec.config.max_partition_fetch_bytes.max(0) as usize * 5,
        peak: 0,
        peak_at: Duration::ZERO,
    }
}

impl Sim {
    /// Builds the cluster, its topics, the network and the clients; nothing runs yet.
    pub fn new(cfg: &SimConfig) -> Self {
        // The one real clock reading: an origin that every virtual time is an offset from.
        // Nothing observable (trace, hash, choices) depends on its value.
        let origin = Instant::now();
        sansa::plants::arm_on_thread(cfg.plant);
        // TLS settings are made per run, never shared: a session cache shared by runs would
        // let one run's tickets change another's handshakes. Both ends draw their randomness
        // from the run's seed and read the virtual clock, so a session replays byte for byte.
        let client_tls = cfg.security.filter(|s| s.tls).map(|_| {
            crate::fake_tls::replay::reset(cfg.seed);
            crate::fake_tls::replayable_client_tls()
        });
        let security = cfg.security.map(|s| s.client(SIM_USER.1, client_tls.as_ref()));
        let mut cluster = FakeCluster::new(FakeClusterConfig {
            brokers: cfg.brokers,
            cluster_id: "sim".into(),
            auto_create_topics: false,
            replication: cfg.replication,
            sasl: cfg.security.filter(|s| s.mechanism.is_some()).map(|s| {
                let mut users = sim_users();
                users.session_lifetime = s.session_lifetime;
                users
            }),
            legacy_sasl: cfg.security.is_some_and(|s| s.legacy),
            tls: cfg.security.filter(|s| s.tls).map(|_| crate::fake_tls::replayable_server_config()),
            ..FakeClusterConfig::default()
        });
        let mut addresses = BTreeMap::new();
        for id in cluster.broker_ids() {
            let host = format!("broker-{id}");
            cluster.set_address(id, &host, 9092);
            addresses.insert(BrokerAddress::new(host, 9092), id);
        }
        for (name, partitions) in &cfg.topics {
            cluster.create_topic(name, *partitions, -1);
        }
        let mut slots = Vec::new();
        let mut history = History::new();
        for (index, cc) in cfg.clients.iter().enumerate() {
            for (i, id) in cc.bootstrap.iter().enumerate() {
                // Every client's alias `bootstrap-i` names the same broker: the first
                // client's choice wins, later clients reuse the aliases in their own order.
                addresses.entry(BrokerAddress::new(format!("bootstrap-{i}"), 9092)).or_insert(*id);
            }
            let mut cc = cc.clone();
            if cc.security.is_none() {
                cc.security.clone_from(&security);
            }
            let (client, reconnect) = make_client(cfg.seed, index, &cc, cfg.plant, origin);
            if let Some(spec) = &cc.consumer {
                history.consumer.consumers.insert(index, consumer_info(spec));
            }
            slots.push(new_slot(client, &cc, reconnect));
        }
        let sim = Sim {
            origin,
            now: Duration::ZERO,
            slots,
            cluster,
            net: Netem::new(cfg.seed ^ 0x6e65_7465_6d00_0000, cfg.profile),
            rng: Rng::new(cfg.seed ^ 0x0073_696d_0000_0000),
            max_records_per_produce: cfg.max_records_per_produce.max(1),
            addresses,
            actions: BTreeMap::new(),
            seq: 0,
            trace: Trace::default(),
            requests: BTreeMap::new(),
            unresolved: BTreeSet::new(),
            stray: Vec::new(),
            violations: Vec::new(),
            probes: Vec::new(),
            history,
            connection_apis: BTreeMap::new(),
            steps: 0,
            stalled: 0,
            faults_over: false,
            faults_ended: None,
            convergence: None,
            decoder: FrameDecoder::new(64 << 20),
            seed: cfg.seed,
            plant: cfg.plant,
            transactions: cfg.replication == Replication::Instant,
            calm: false,
            overlap_seen: false,
            next_txn: 0,
            tls: BTreeMap::new(),
            security,
            listener: cfg.security,
            offloaded: BTreeMap::new(),
            next_work: 0,
        };
        sim.tell_tls_the_time();
        sim
    }

    // ---- getters ----

    /// Virtual time since the origin.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Client 0.
    pub fn client(&self) -> &Client {
        &self.slots[0].client
    }

    /// Client `i`.
    pub fn client_at(&self, i: usize) -> &Client {
        &self.slots[i].client
    }

    /// How many clients there are.
    pub fn clients(&self) -> usize {
        self.slots.len()
    }

    /// Client `i`'s configuration.
    pub fn client_config(&self, i: usize) -> &ClientConfig {
        &self.slots[i].config
    }

    /// The cluster.
    pub fn cluster(&self) -> &FakeCluster {
        &self.cluster
    }

    /// The cluster, to change directly (prefer scheduled [`Action`]s, which are traced).
    pub fn cluster_mut(&mut self) -> &mut FakeCluster {
        &mut self.cluster
    }

    /// The network.
    pub fn net(&self) -> &Netem {
        &self.net
    }

    /// The network, to change directly.
    pub fn net_mut(&mut self) -> &mut Netem {
        &mut self.net
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The stable hash of the trace.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Connections the brokers closed because a request came after their SASL session
    /// expired: a client that did not re-authenticate in time (KIP-368).
    pub fn expired_sessions_closed(&self) -> u64 {
        self.cluster.expired_sessions_closed()
    }

    /// Every command issued, by id.
    pub fn requests(&self) -> &BTreeMap<CmdId, RequestRecord> {
        &self.requests
    }

    /// One command's record.
    pub fn record(&self, id: CmdId) -> Option<&RequestRecord> {
        self.requests.get(&id)
    }

    /// Commands without an outcome yet.
    pub fn outstanding(&self) -> usize {
        self.unresolved.len()
    }

    /// Outcomes for ids never issued.
    pub fn stray_outcomes(&self) -> &[(Duration, String)] {
        &self.stray
    }

    /// Violations noticed while running.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Records a violation found outside the run loop.
    pub fn violate(&mut self, invariant: &'static str, detail: String) {
        self.violations.push(Violation { invariant, at: self.now, detail });
    }

    /// The probes, by index.
    pub fn probes(&self) -> &[ProbeRecord] {
        &self.probes
    }

    /// The APIs each connection carried, with when each first went out.
    pub fn connection_apis(&self) -> &ConnectionApis {
        &self.connection_apis
    }

    /// The record-level history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The history, to record into (the workload's producers and consumers do).
    pub fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    /// Client 0's request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.slots[0].config.request_timeout
    }

    /// Whether [`Action::EndFaults`] ran.
    pub fn faults_over(&self) -> bool {
        self.faults_over
    }

    /// When the faults last ended ([`Sim::end_faults`]), if they did.
    pub fn faults_ended_at(&self) -> Option<Duration> {
        self.faults_ended
    }

    /// Why metadata did not converge after the faults, once that was checked.
    pub fn convergence(&self) -> Option<&str> {
        self.convergence.as_deref()
    }

    /// Records the outcome of the convergence check.
    pub fn set_convergence(&mut self, failure: Option<String>) {
        self.convergence = failure;
    }

    fn instant(&self) -> Instant {
        self.origin + self.now
    }

    /// TLS on both ends reads the virtual wall clock ([`crate::fake_tls::replay`]).
    fn tell_tls_the_time(&self) {
        if self.listener.is_some_and(|l| l.tls) {
            let ms = i64::try_from(self.now.as_millis()).unwrap_or(i64::MAX);
            crate::fake_tls::replay::set_time(self.cluster.config().start_time_ms.saturating_add(ms));
        }
    }

    fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.origin)
    }

    // ---- scheduling and commands ----

    /// Schedules `action` at `at` (since the origin); actions at one time run in the order
    /// they were scheduled.
    pub fn at(&mut self, at: Duration, action: Action) {
        self.seq += 1;
        self.actions.insert((at, self.seq), action);
    }

    /// Client 0 issues a command now.
    pub fn issue(&mut self, work: Work) -> CmdId {
        self.issue_on(0, work)
    }

    /// Client `client` issues a command now.
    pub fn issue_on(&mut self, client: usize, work: Work) -> CmdId {
        self.issue_full(client, work, None, None)
    }

    /// Issues a command that must succeed within `bound` of now.
    pub fn issue_bounded(&mut self, client: usize, work: Work, bound: Duration) -> CmdId {
        self.issue_full(client, work, None, Some(bound))
    }

    fn issue_full(&mut self, client: usize, work: Work, probe: Option<usize>, bound: Option<Duration>) -> CmdId {
        let now = self.instant();
        let what = format!("{work:?}");
        let mut deadline = self.slots[client].config.request_timeout;
        let (id, broker, asked, records) = match work {
            Work::RefreshMetadata => (self.slots[client].client.refresh_metadata(now, None), None, None, Vec::new()),
            Work::CheckVersion(b) => {
                let target = b.map_or(Target::AnyBroker, |b| Target::Broker(BrokerId(b)));
                (self.slots[client].client.check_version(now, target), b, None, Vec::new())
            }
            Work::Flush => {
                // Due once the last record sent before it is due.
                let due = self
                    .history
                    .sends()
                    .iter()
                    .filter(|(k, e)| k.client == client && e.id.is_some() && e.outcomes.is_empty())
                    .map(|(_, e)| e.deadline)
                    .max()
                    .unwrap_or(self.now);
                deadline = due.saturating_sub(self.now);
                (self.slots[client].client.flush(now), None, None, Vec::new())
            }
            other => {
                let built = self.build(client, &other);
                if let Work::LongPoll { wait_ms, .. } = other {
                    deadline += Duration::from_millis(wait_ms.max(0) as u64);
                }
                let broker = match &built.target {
                    Target::Broker(b) => Some(b.0),
                    _ => None,
                };
                let asked = Asked { api: built.body.api_key(), partition: built.partition.clone() };
                let id = self.slots[client].client.request(now, built.target, built.body, built.version);
                (id, broker, Some(asked), built.records)
            }
        };
        let cmd = CmdId { client, id };
        let what = match broker {
            Some(b) => format!("{what} -> broker {b}"),
            None => what,
        };
        if let Some((topic, _, partition)) = asked.as_ref().and_then(|a| a.partition.clone()) {
            for r in &records {
                self.history.sent(self.now, *r, &topic, partition, Some(cmd));
            }
        }
        self.trace.push(self.now, TraceEvent::Issue { id: wire_conn(client, ConnId(id.0)), what: what.clone() });
        self.requests.insert(
            cmd,
            RequestRecord {
                what,
                broker,
                issued: self.now,
                deadline,
                asked,
                records,
                probe,
                latency_bound: bound,
                outcomes: Vec::new(),
            },
        );
        self.unresolved.insert(cmd);
        self.drain();
        cmd
    }

    /// Starts a probe: `work` on `client`, retried until it succeeds, which it must within
    /// `bound`.
    pub fn probe(&mut self, why: &str, client: usize, work: Work, bound: Duration) -> usize {
        let index = self.probes.len();
        self.probes.push(ProbeRecord {
            why: why.to_string(),
            client,
            work: work.clone(),
            started: self.now,
            bound,
            attempts: Vec::new(),
            succeeded: None,
        });
        self.probe_attempt(index);
        index
    }

    fn probe_attempt(&mut self, index: usize) {
        let (client, work) = (self.probes[index].client, self.probes[index].work.clone());
        let cmd = self.issue_full(client, work, Some(index), None);
        if !self.probes[index].attempts.iter().any(|(c, _)| *c == cmd) {
            self.probes[index].attempts.push((cmd, None));
        }
    }

    /// Probes that have not succeeded yet and may still.
    pub fn probes_pending(&self) -> usize {
        self.probes.iter().filter(|p| p.succeeded.is_none() && self.now <= p.started + p.bound).count()
    }

    /// A partition by index over every partition that exists now, with its leader (or a
    /// replica when it has none).
    fn pick_partition(&self, pick: u64) -> Option<(String, i32, i32)> {
        let all: Vec<(String, i32)> = self
            .cluster
            .topic_names()
            .into_iter()
            .flat_map(|t| {
                let n = self.cluster.partition_count(&t).unwrap_or(0) as i32;
                (0..n).map(move |p| (t.clone(), p))
            })
            .collect();
        if all.is_empty() {
            return None;
        }
        let (t, p) = all[(pick % all.len() as u64) as usize].clone();
        let leader = self.cluster.leader(&t, p).unwrap_or(-1);
        let leader = if leader >= 0 { leader } else { 1 + (pick % self.cluster.broker_ids().len() as u64) as i32 };
        Some((t, p, leader))
    }

    /// The leader of `topic`/`partition` as client `client` believes it.
    fn believed_leader(&self, client: usize, topic: &str, partition: i32) -> Option<i32> {
        let md = self.slots[client].client.metadata();
        let t = md.topic(topic)?;
        t.partitions.iter().find(|p| p.index == partition).and_then(|p| p.leader).map(|l| l.0)
    }

    fn build(&mut self, client: usize, work: &Work) -> Built {
        let all_topics = || MetadataRequest::default().with_topics(None).into();
        let plain = |target, body| Built { target, body, version: None, partition: None, records: Vec::new() };
        match work {
            Work::Metadata => plain(Target::AnyBroker, all_topics()),
            Work::ToBroker(b) => plain(Target::Broker(BrokerId(*b)), all_topics()),
            Work::Coordinator { group } => plain(
                Target::GroupCoordinator(GroupId::from(group.as_str())),
                MetadataRequest::default().with_topics(Some(vec![])).into(),
            ),
            Work::OffsetFetch { group } => {
                // v7 names the group at the top (the per-group list is v8+).
                let body = OffsetFetchRequest::default().with_group_id(GroupId::from(group.as_str())).with_topics(None);
                Built {
                    target: Target::GroupCoordinator(GroupId::from(group.as_str())),
                    body: body.into(),
                    version: Some(OFFSET_FETCH_VERSION),
                    partition: None,
                    records: Vec::new(),
                }
            }
            Work::CreateTopic { name, partitions } => {
                let req =
                    CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![CreatableTopic::default()
                        .with_name(TopicName::from(name.as_str()))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(-1)]);
                plain(Target::Controller, req.into())
            }
            Work::Produce { pick }
            | Work::ProduceViaMetadata { pick }
            | Work::Fetch { pick }
            | Work::LongPoll { pick, .. }
            | Work::ListOffsets { pick } => {
                let Some((topic, partition, leader)) = self.pick_partition(*pick) else {
                    return plain(Target::AnyBroker, all_topics());
                };
                let leader = match work {
                    Work::ProduceViaMetadata { .. } => {
                        self.believed_leader(client, &topic, partition).filter(|l| *l >= 0).unwrap_or(leader)
                    }
                    _ => leader,
                };
                let id = self.cluster.topic_id(&topic).unwrap_or_default();
                let mut records = Vec::new();
                let fetch = |offset: i64, wait: i32| -> RequestBody {
                    FetchRequest::default()
                        .with_max_bytes(1 << 20)
                        .with_max_wait_ms(wait)
                        .with_min_bytes(1)
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![FetchTopic::default()
                            .with_topic(TopicName::from(topic.as_str()))
                            .with_topic_id(id)
                            .with_partitions(vec![FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(1 << 20)])])
                        .into()
                };
                let body: RequestBody = match work {
                    Work::Produce { .. } | Work::ProduceViaMetadata { .. } => {
                        let n = 1 + self.rng.below(self.max_records_per_produce);
                        let slot = &mut self.slots[client];
                        for _ in 0..n {
                            records.push(RecordId { client, seq: slot.next_record });
                            slot.next_record += 1;
                        }
                        let mut bytes = BytesMut::new();
                        let mut enc = RecordBatchEncoder::new();
                        if let Ok(mut b) = enc.begin(&mut bytes, BatchParams::new()) {
                            for r in &records {
                                let _ = b.append(1_700_000_000_000, None, Some(r.value().as_bytes()), &[]);
                            }
                            let _ = b.finish();
                        }
                        ProduceRequest::default()
                            .with_acks(-1)
                            .with_timeout_ms(5_000)
                            .with_topic_data(vec![TopicProduceData::default()
                                .with_name(TopicName::from(topic.as_str()))
                                .with_topic_id(id)
                                .with_partition_data(vec![PartitionProduceData::default()
                                    .with_index(partition)
                                    .with_records(Some(bytes.freeze()))])])
                            .into()
                    }
                    Work::Fetch { .. } => fetch(0, 0),
                    Work::LongPoll { wait_ms, .. } => {
                        fetch(self.cluster.log_end_offset(&topic, partition).unwrap_or(0), *wait_ms)
                    }
                    _ => ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![ListOffsetsTopic::default()
                            .with_name(TopicName::from(topic.as_str()))
                            .with_partitions(vec![ListOffsetsPartition::default()
                                .with_partition_index(partition)
                                .with_timestamp(-1)])])
                        .into(),
                };
                Built {
                    target: Target::Broker(BrokerId(leader)),
                    body,
                    version: None,
                    partition: Some((topic, id, partition)),
                    records,
                }
            }
            Work::RefreshMetadata | Work::CheckVersion(_) | Work::Flush => plain(Target::AnyBroker, all_topics()),
        }
    }

    /// Client `client` sends the records of `work` through `Client::send` now; a client
    /// without a producer configuration sends nothing. Returns the sends.
    pub fn send_on(&mut self, client: usize, work: &SendWork) -> Vec<SendKey> {
        let Some(config) = self.slots[client].config.producer.clone() else { return Vec::new() };
        let Some((topic, partition, _)) = self.pick_partition(work.pick) else { return Vec::new() };
        let now = self.instant();
        let idempotent = self.slots[client].client.producer_idempotent();
        // A record for a topic the client has no metadata for waits up to max.block.ms for it,
        // and its delivery timeout starts once it has a partition.
        let known = self.slots[client].client.metadata().topic(&topic).is_some_and(|t| !t.partitions.is_empty());
        let wait = if known { Duration::ZERO } else { config.max_block };
        let mut keys = Vec::new();
        for i in 0..work.count {
            let slot = &mut self.slots[client];
            let key = SendKey { client, seq: slot.next_send };
            slot.next_send += 1;
            let mut value = key.value();
            if work.pad > 0 {
                value.push(':');
                value.push_str(&".".repeat(work.pad as usize));
            }
            let mut record = ProducerRecord::new(topic.as_str(), value);
            let mut record_key = None;
            match work.keying {
                Keying::Unkeyed => {}
                Keying::Keyed(n) => {
                    let k = format!("k{}", (work.pick / 7 + u64::from(i)) % u64::from(n.max(1)));
                    record = record.with_key(k.clone());
                    record_key = Some(k);
                }
                Keying::Partition => record = record.with_partition(partition),
            }
            let result = slot.client.send(now, record);
            let (id, refused) = match result {
                Ok(id) => {
                    slot.send_ids.insert(id, key.seq);
                    (Some(id), None)
                }
                Err(e) => {
                    let reason = match &e.reason {
                        sansa::producer::RefuseReason::Fatal(f) => produce_error_kind(f),
                        other => other.to_string(),
                    };
                    (None, Some(reason))
                }
            };
            let what = format!(
                "send {key} to {topic}{} {}",
                match work.keying {
                    Keying::Partition => format!("-{partition}"),
                    _ => String::new(),
                },
                refused.as_deref().map_or("taken".to_string(), |r| format!("refused: {r}"))
            );
            self.trace.push(self.now, TraceEvent::Issue { id: wire_conn(client, ConnId(u64::from(u32::MAX))), what });
            self.history.send_taken(
                key,
                SendEntry {
                    topic: topic.clone(),
                    key: record_key,
                    partition: (work.keying == Keying::Partition).then_some(partition),
                    sent: self.now,
                    id,
                    refused,
                    idempotent,
                    acks: config.acks,
                    deadline: self.now + wait + config.delivery_timeout,
                    must_ack: work.must_ack,
                    outcomes: Vec::new(),
                },
            );
            keys.push(key);
            // Deliveries the send caused (a record too large fails at once) come out now.
            self.drain();
        }
        keys
    }

    /// Sends not yet resolved, and the latest time one of them is due.
    pub fn sends_pending(&self) -> (usize, Duration) {
        let mut n = 0;
        let mut due = Duration::ZERO;
        for e in self.history.sends().values().filter(|e| e.id.is_some() && e.outcomes.is_empty()) {
            n += 1;
            due = due.max(e.deadline);
        }
        (n, due)
    }

    // ---- running ----

    /// The next time something is due, and what: 0 an action, 1 the network, 2 the cluster,
    /// 3 + i client i. Ties go to the lowest.
    fn next_due(&self) -> Option<(Duration, usize)> {
        let mut best: Option<(Duration, usize)> = None;
        let mut consider = |t: Option<Duration>, who: usize| {
            if let Some(t) = t {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, who));
                }
            }
        };
        consider(self.actions.keys().next().map(|k| k.0), 0);
        consider(self.net.next_time(), 1);
        consider(self.cluster.poll_timeout().map(|t| self.offset(t)), 2);
        for (i, s) in self.slots.iter().enumerate().filter(|(_, s)| !s.dead) {
            consider(s.client.poll_timeout().map(|t| self.offset(t)), 3 + i);
        }
        best
    }

    /// Advances to the next thing that happens and applies it. `Ok(false)` when nothing is
    /// left to happen at all.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let Some((next, who)) = self.next_due() else {
            return Ok(false);
        };
        let t = next.max(self.now);
        if t > self.now {
            self.now = t;
            self.stalled = 0;
            self.tell_tls_the_time();
        } else {
            self.stalled += 1;
            if self.stalled > LIVELOCK_STEPS {
                return Err(SimError::Livelock { at: self.now, steps: self.stalled });
            }
        }
        self.steps += 1;
        let now = self.instant();
        match who {
            0 => {
                if let Some((_, action)) = self.actions.pop_first() {
                    self.apply_action(action);
                }
            }
            1 => {
                if let Some(e) = self.net.pop_due(self.now) {
                    self.apply_net(e);
                }
            }
            2 => {
                self.trace.push(self.now, TraceEvent::ClusterTimeout);
                self.cluster.handle_timeout(now);
            }
            i => {
                self.trace.push(self.now, TraceEvent::ClientTimeout { client: i - 3 });
                self.slots[i - 3].client.handle_timeout(now);
            }
        }
        self.drain();
        self.poll_consumers();
        if self.calm {
            self.check_overlaps();
        }
        self.check_reconnect_deadlines();
        Ok(true)
    }

    /// Runs every step due up to `until`, then sets the clock to `until`.
    pub fn drive(&mut self, until: Duration) -> Result<(), SimError> {
        while let Some((t, _)) = self.next_due() {
            if t > until {
                break;
            }
            self.step()?;
        }
        self.now = self.now.max(until);
        self.tell_tls_the_time();
        Ok(())
    }

    /// Steps until every command has its outcome, every record sent has its outcome (or is
    /// past its due time by a second: then it never will) and no action is scheduled; at most
    /// `max_steps` steps. Returns the steps taken.
    pub fn drive_bounded(&mut self, max_steps: u64) -> Result<u64, SimError> {
        let mut n = 0;
        let sends_waiting = |sim: &Sim| {
            let (pending, due) = sim.sends_pending();
            pending > 0 && sim.now <= due + Duration::from_secs(1)
        };
        while !self.unresolved.is_empty() || !self.actions.is_empty() || sends_waiting(self) {
            if n >= max_steps {
                return Err(SimError::StepCap { at: self.now, steps: n, outstanding: self.outstanding() });
            }
            if !self.step()? {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Drains every client and the cluster until none has anything to say.
    fn drain(&mut self) {
        let now = self.instant();
        loop {
            let mut progressed = false;
            for i in 0..self.slots.len() {
                if self.slots[i].dead {
                    continue;
                }
                while let Some(t) = self.slots[i].client.poll_transmit(now) {
                    progressed = true;
                    self.apply_transmit(i, t);
                }
                while let Some(work) = self.slots[i].client.poll_work() {
                    let most = self.slots[i].config.offload_work.unwrap_or_default();
                    let after = Duration::from_micros(self.rng.below(most.as_micros() as u64 + 1));
                    self.next_work += 1;
                    self.offloaded.insert(self.next_work, work);
                    self.at(self.now + after, Action::FinishWork { client: i, work: self.next_work });
                }
                while let Some(e) = self.slots[i].client.poll_event() {
                    progressed = true;
                    self.record_event(i, e);
                }
            }
            while let Some(o) = self.cluster.poll_output() {
                progressed = true;
                match o {
                    FakeOutput::Send { conn, bytes } => {
                        let bytes = match self.tls.get_mut(&conn.0) {
                            None => bytes,
                            Some(tls) => {
                                tls.send(&bytes);
                                let out = tls.take_output().unwrap_or_default();
                                let (client, c) = split_conn(conn.0);
                                if let Some(track) = self.slots[client].conn_track.get_mut(&c) {
                                    track.ready_at.get_or_insert(tls.written());
                                }
                                Bytes::from(out)
                            }
                        };
                        if !bytes.is_empty() {
                            self.net.send(self.now, ConnId(conn.0), bytes, false);
                        }
                    }
                    FakeOutput::Close { conn } => {
                        self.tls.remove(&conn.0);
                        self.trace.push(self.now, TraceEvent::ServerClose { conn: conn.0 });
                        self.net.server_close(self.now, ConnId(conn.0));
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(p) = &slot.config.producer {
                self.history.producer_sample(i, p.buffer_memory, slot.client.producer_buffered(), self.now);
            }
            if slot.member.is_some() && !slot.dead {
                let buffered = slot.client.consumer_buffered();
                if let Some(info) = self.history.consumer.consumers.get_mut(&i) {
                    if buffered > info.peak {
                        info.peak = buffered;
                        info.peak_at = self.now;
                    }
                }
            }
        }
    }

    fn record_event(&mut self, client: usize, e: Event) {
        let (id, outcome) = match &e {
            Event::Response { id, result } => {
                (*id, summarize(result.as_ref().map(|r| r.body.as_ref().and_then(|b| b.error_code()))))
            }
            Event::Metadata { id, result } => (*id, summarize(result.as_ref().map(|_| None))),
            Event::Versions { id, result } => (*id, summarize(result.as_ref().map(|_| None))),
            Event::Flushed { id } => (*id, "flushed".to_string()),
            Event::Delivery(d) => return self.on_delivery(client, d),
            Event::Rebalance(r) => return self.on_rebalance(client, r),
            Event::Committed { id, result } => {
                let outcome = format!("commit #{}: {result:?}", id.0);
                let id = wire_conn(client, ConnId(u64::from(u32::MAX) - 1));
                self.trace.push(self.now, TraceEvent::Outcome { id, outcome });
                return;
            }
            _ => return,
        };
        let cmd = CmdId { client, id };
        self.trace
            .push(self.now, TraceEvent::Outcome { id: wire_conn(client, ConnId(id.0)), outcome: outcome.clone() });
        let Some(r) = self.requests.get_mut(&cmd) else {
            self.stray.push((self.now, format!("{cmd} {outcome}")));
            return;
        };
        r.outcomes.push((self.now, e));
        if r.outcomes.len() > 1 {
            return;
        }
        self.unresolved.remove(&cmd);
        let (records, asked, probe) = (r.records.clone(), r.asked.clone(), r.probe);
        let event = &r.outcomes[0].1;
        let verdict = verdict(event, asked.as_ref());
        self.learn(client, &records, asked.as_ref(), cmd);
        if let Some(index) = probe {
            self.on_probe_outcome(index, cmd, verdict);
        }
    }

    /// A delivery report: each record's outcome goes to the history.
    fn on_delivery(&mut self, client: usize, d: &sansa::producer::Delivery) {
        let outcome = match &d.result {
            Ok(ack) => format!("acked at {}-{}@{:?}", d.topic, d.partition, ack.base_offset),
            Err(e) => format!("failed: {}", produce_error_kind(e)),
        };
        let what = format!("delivery of {} records: {outcome}", d.records.len());
        self.trace
            .push(self.now, TraceEvent::Outcome { id: wire_conn(client, ConnId(u64::from(u32::MAX))), outcome: what });
        for (id, result) in d.outcomes() {
            let Some(seq) = self.slots[client].send_ids.get(&id).copied() else {
                self.history.stray_delivery(self.now, format!("client {client} send {id:?}"));
                continue;
            };
            let result = result.map(|m| (m.partition, m.offset)).map_err(|e| produce_error_kind(&e).to_string());
            self.history.send_outcome(self.now, SendKey { client, seq }, result);
        }
    }

    /// Feeds the history from a command's outcome: acks and failures of the records it
    /// carried, records a Fetch read.
    fn learn(&mut self, client: usize, records: &[RecordId], asked: Option<&Asked>, cmd: CmdId) {
        let Some(r) = self.requests.get(&cmd) else { return };
        let Some((_, event)) = r.outcomes.first() else { return };
        let now = self.now;
        let Some(Asked { partition: Some((topic, id, partition)), .. }) = asked else { return };
        match event {
            Event::Response { result: Ok(resp), .. } => match &resp.body {
                Some(ResponseBody::Produce(p)) if !records.is_empty() => {
                    let answer = p
                        .responses
                        .iter()
                        .filter(|t| t.topic_id == *id || t.name.as_str() == topic)
                        .flat_map(|t| &t.partition_responses)
                        .find(|x| x.index == *partition);
                    for (i, rec) in records.iter().enumerate() {
                        match answer {
                            Some(a) if a.error_code == ErrorCode::None => {
                                self.history.acked(now, *rec, a.index, a.base_offset + i as i64)
                            }
                            Some(a) => self.history.failed(now, *rec, &format!("{:?}", a.error_code)),
                            None => self.history.failed(now, *rec, "no answer for the partition"),
                        }
                    }
                }
                Some(ResponseBody::Fetch(f)) => {
                    let mut read = Vec::new();
                    for t in f.responses.iter().filter(|t| t.topic_id == *id || t.topic.as_str() == topic) {
                        for p in &t.partitions {
                            let Some(bytes) = p.records.clone() else { continue };
                            // Transaction markers are not records the log lists.
                            for batch in
                                decode_batches(bytes, &DecodeOptions::new()).flatten().filter(|b| !b.is_control())
                            {
                                for rec in batch.records() {
                                    read.push((p.partition_index, rec.offset, rec.value.clone()));
                                }
                            }
                        }
                    }
                    for (p, offset, value) in read {
                        self.history.consumed(Consumed {
                            at: now,
                            client,
                            topic: topic.clone(),
                            partition: p,
                            offset,
                            value,
                        });
                    }
                }
                _ => {
                    for rec in records {
                        self.history.failed(now, *rec, "answer of another kind");
                    }
                }
            },
            Event::Response { result: Err(e), .. } => {
                for rec in records {
                    self.history.failed(now, *rec, error_kind(e));
                }
            }
            _ => {}
        }
    }

    fn on_probe_outcome(&mut self, index: usize, cmd: CmdId, verdict: Verdict) {
        let now = self.now;
        let p = &mut self.probes[index];
        // An attempt may resolve while it is being issued, before the probe lists it.
        match p.attempts.iter_mut().find(|(c, _)| *c == cmd) {
            Some(a) => a.1 = Some(format!("{verdict:?}")),
            None => p.attempts.push((cmd, Some(format!("{verdict:?}")))),
        }
        if p.succeeded.is_some() {
            return;
        }
        if verdict == Verdict::Success {
            p.succeeded = Some(now);
            return;
        }
        if now + PROBE_RETRY > p.started + p.bound {
            return;
        }
        let client = p.client;
        if verdict == Verdict::StaleView {
            // What a producer does on NOT_LEADER / UNKNOWN_TOPIC: ask for fresh metadata.
            self.at(now, Action::Issue { client, work: Work::RefreshMetadata });
        }
        self.at(now + PROBE_RETRY, Action::RetryProbe(index));
    }

    fn apply_transmit(&mut self, client: usize, t: Transmit) {
        match t {
            Transmit::Open { conn, address } => {
                let wire = wire_conn(client, conn);
                self.trace.push(self.now, TraceEvent::Open { conn: wire, address: address.to_string() });
                self.on_open(client, conn, &address);
                let broker = self.addresses.get(&address).copied();
                self.net.open(self.now, ConnId(wire), broker, &address.host);
            }
            Transmit::Send { conn, bytes } => {
                let wire = ConnId(wire_conn(client, conn));
                self.trace.push(self.now, TraceEvent::Send { conn: wire.0, len: bytes.len() });
                let ok = self.net.link(wire).is_some_and(|l| l.client_open && l.connected);
                if !ok {
                    self.violate("no-send-on-dead-connection", format!("Send on c{} which is not open", wire.0));
                }
                if !self.listener.is_some_and(|l| l.tls) {
                    // Over TLS the requests are read where the server decrypts them.
                    self.observe_requests(client, conn, &bytes);
                }
                self.net.send(self.now, wire, bytes, true);
            }
            Transmit::Close { conn } => {
                let wire = ConnId(wire_conn(client, conn));
                self.trace.push(self.now, TraceEvent::ClientClose { conn: wire.0 });
                if self.net.link(wire).is_some_and(|l| l.client_open) {
                    self.on_gone(client, conn, false);
                }
                self.net.client_close(self.now, wire);
            }
            _ => {}
        }
    }

    /// Reads the request frames a client writes, to note the order its records go out in.
    fn observe_requests(&mut self, client: usize, conn: ConnId, bytes: &Bytes) {
        let Some(track) = self.slots[client].conn_track.get_mut(&conn) else { return };
        track.outbound.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = self.decoder.decode(&mut track.outbound) {
            frames.push(frame);
        }
        for frame in frames {
            self.observe_frame(client, conn, frame);
        }
    }

    /// Notes one request frame a client sent (its API, and a Produce's records).
    fn observe_frame(&mut self, client: usize, conn: ConnId, frame: Bytes) {
        let wire = wire_conn(client, conn);
        {
            // The API key leads the request header; only a Produce needs its body decoded.
            let Some(api) = frame.get(..2).and_then(|k| ApiKey::from_i16(i16::from_be_bytes([k[0], k[1]]))) else {
                return;
            };
            self.connection_apis.entry(wire).or_default().entry(api).or_insert(self.now);
            self.after_leave(client, api, &frame);
            if api != ApiKey::Produce {
                return;
            }
            let Ok((_, RequestBody::Produce(p))) = decode_request(frame) else { return };
            for t in &p.topic_data {
                for part in &t.partition_data {
                    let Some(records) = part.records.clone() else { continue };
                    for batch in decode_batches(records, &DecodeOptions::new()).flatten() {
                        let sends: Vec<SendKey> = batch
                            .records()
                            .iter()
                            .filter_map(|r| r.value.as_deref().and_then(SendKey::parse))
                            .collect();
                        if let (Some(first), Some(last)) = (sends.first(), sends.last()) {
                            let topic = match t.name.as_str() {
                                "" => self.cluster.topic_name_by_id(t.topic_id).unwrap_or_default(),
                                name => name.to_string(),
                            };
                            let what = format!(
                                "{topic}-{} pid {} epoch {} seq {} {first}..{last}",
                                part.index,
                                batch.producer_id(),
                                batch.producer_epoch(),
                                batch.base_sequence()
                            );
                            self.trace.push(self.now, TraceEvent::Batch { conn: wire, what });
                        }
                        for r in batch.records() {
                            if let Some(v) = &r.value {
                                self.history.on_wire(wire, v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Tells the client that `conn` (a network id) closed.
    fn close_client_side(&mut self, wire: ConnId, cause: CloseCause) {
        let Some(link) = self.net.link_mut(wire) else { return };
        if !link.client_open {
            return;
        }
        link.client_open = false;
        let (client, conn) = split_conn(wire.0);
        if self.slots[client].dead {
            return;
        }
        self.trace.push(self.now, TraceEvent::Closed { conn: wire.0, cause: cause.to_string() });
        self.on_gone(client, conn, true);
        self.slots[client].client.handle_input(self.origin + self.now, Input::Closed { conn, cause });
    }

    fn close_server_side(&mut self, wire: ConnId) {
        let Some(link) = self.net.link_mut(wire) else { return };
        if !link.server_open {
            return;
        }
        link.server_open = false;
        self.trace.push(self.now, TraceEvent::ServerGone { conn: wire.0 });
        self.tls.remove(&wire.0);
        self.cluster.handle_disconnect(FakeConnId(wire.0));
    }

    fn apply_net(&mut self, e: NetEvent) {
        let now = self.instant();
        match e {
            NetEvent::ConnectDone { conn: wire, broker } => {
                let Some(link) = self.net.link(wire) else { return };
                if !link.client_open || self.net.is_partitioned(broker) || self.slots[split_conn(wire.0).0].dead {
                    return;
                }
                match self.cluster.handle_connect(now, broker, FakeConnId(wire.0)) {
                    Ok(()) => {
                        if let Some(link) = self.net.link_mut(wire) {
                            link.server_open = true;
                            link.connected = true;
                        }
                        if let Some(config) = self.cluster.config().tls.clone() {
                            self.tls.insert(wire.0, ServerTls::new(config));
                        }
                        let (client, conn) = split_conn(wire.0);
                        if let Some(c) = self.slots[client].conn_track.get_mut(&conn) {
                            c.connected = true;
                        }
                        self.trace.push(self.now, TraceEvent::Connected { conn: wire.0 });
                        self.slots[client].client.handle_input(now, Input::Connected { conn });
                    }
                    Err(_) => self.close_client_side(wire, CloseCause::Refused),
                }
            }
            NetEvent::ConnectFailed { conn, cause } => self.close_client_side(conn, cause),
            NetEvent::ToServer { conn: wire, bytes } => {
                let Some(link) = self.net.link(wire) else { return };
                if link.doomed || !link.server_open {
                    return;
                }
                let fake = FakeConnId(wire.0);
                let (tls_len, bytes) = match self.tls.get_mut(&wire.0) {
                    // The server side of a TLS connection is gone: nobody reads.
                    None if self.listener.is_some_and(|l| l.tls) => return,
                    None => (None, bytes),
                    Some(tls) => {
                        let plain = tls.receive(&bytes);
                        if let Some(out) = tls.take_output() {
                            self.net.send(self.now, wire, Bytes::from(out), false);
                        }
                        match plain {
                            Ok(p) => (Some(bytes.len()), Bytes::from(p)),
                            Err(e) => {
                                // A broken TLS session: the alert went out, the broker hangs up.
                                self.trace.push(self.now, TraceEvent::Fault { what: format!("c{} TLS: {e}", wire.0) });
                                self.tls.remove(&wire.0);
                                self.cluster.handle_disconnect(fake);
                                self.net.server_close(self.now, wire);
                                return;
                            }
                        }
                    }
                };
                let Some(link) = self.net.link_mut(wire) else { return };
                link.server_buf.extend_from_slice(&bytes);
                let mut buf = std::mem::take(&mut link.server_buf);
                self.trace.push(self.now, TraceEvent::ToServer { conn: wire.0, len: tls_len.unwrap_or(bytes.len()) });
                let mut commits = false;
                loop {
                    match self.decoder.decode(&mut buf) {
                        Ok(Some(frame)) => {
                            commits |= frame.get(..2) == Some(&(ApiKey::OffsetCommit as i16).to_be_bytes()[..]);
                            if tls_len.is_some() {
                                let (client, conn) = split_conn(wire.0);
                                self.observe_frame(client, conn, frame.clone());
                            }
                            let _ = self.cluster.handle_frame(now, fake, frame);
                            if !self.cluster.is_connected(fake) {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            // Not Kafka: the broker hangs up.
                            self.cluster.handle_disconnect(fake);
                            self.net.server_close(self.now, wire);
                            break;
                        }
                    }
                }
                if let Some(link) = self.net.link_mut(wire) {
                    link.server_buf = buf;
                }
                if commits {
                    self.sample_commits();
                }
            }
            NetEvent::ToClient { conn: wire, bytes } => {
                let Some(link) = self.net.link(wire) else { return };
                if link.doomed || !link.client_open || self.slots[split_conn(wire.0).0].dead {
                    return;
                }
                self.trace.push(self.now, TraceEvent::ToClient { conn: wire.0, len: bytes.len() });
                let (client, conn) = split_conn(wire.0);
                self.on_client_bytes(client, conn, &bytes);
                self.slots[client].client.handle_input(now, Input::Received { conn, data: bytes });
            }
            NetEvent::ServerFin { conn } => {
                if self.net.link(conn).is_some_and(|l| !l.doomed) {
                    self.close_client_side(conn, CloseCause::PeerClosed);
                }
            }
            NetEvent::ClientFin { conn } => self.close_server_side(conn),
            NetEvent::Die { conn, cause } => {
                self.close_server_side(conn);
                self.close_client_side(conn, cause);
            }
        }
    }

    fn fault(&mut self, what: String) {
        self.trace.push(self.now, TraceEvent::Fault { what });
    }

    fn apply_action(&mut self, action: Action) {
        if self.faults_over
            && !matches!(
                action,
                Action::Issue { .. }
                    | Action::Send { .. }
                    | Action::RetryProbe(_)
                    | Action::EndFaults
                    | Action::Consumer { .. }
                    | Action::Txn { .. }
                    | Action::FinishWork { .. }
            )
        {
            return;
        }
        match action {
            Action::FinishWork { client, work } => {
                let Some(work) = self.offloaded.remove(&work) else { return };
                if !self.slots[client].dead {
                    self.trace.push(self.now, TraceEvent::WorkDone { client });
                    let now = self.instant();
                    let done = work.run();
                    self.slots[client].client.handle_work_done(now, done);
                }
            }
            Action::Issue { client, work } => {
                self.issue_on(client, work);
            }
            Action::Send { client, send } => {
                self.send_on(client, &send);
            }
            Action::RetryProbe(index) => self.probe_attempt(index),
            Action::Partition(b) => {
                self.fault(format!("partition clients | broker {b}"));
                self.net.partition(self.now, b);
            }
            Action::Heal(b) => {
                self.fault(format!("heal clients | broker {b}"));
                self.net.heal(b);
            }
            Action::StopBroker(b) => {
                self.fault(format!("stop broker {b}"));
                self.cluster.stop_broker(b);
            }
            Action::StartBroker(b) => {
                self.fault(format!("start broker {b}"));
                self.cluster.start_broker(b);
            }
            Action::MoveLeader { pick } => {
                let Some((t, p, leader)) = self.pick_partition(pick) else { return };
                let live = self.cluster.live_broker_ids();
                let candidates: Vec<i32> = live.into_iter().filter(|b| *b != leader).collect();
                if candidates.is_empty() {
                    return;
                }
                let to = candidates[(pick / 7 % candidates.len() as u64) as usize];
                if self.cluster.move_leader(&t, p, to).is_ok() {
                    self.fault(format!("move leader of {t}-{p} from {leader} to {to}"));
                }
            }
            Action::Offline { pick } => {
                let Some((t, p, _)) = self.pick_partition(pick) else { return };
                if self.cluster.set_partition_offline(&t, p).is_ok() {
                    self.fault(format!("{t}-{p} offline"));
                }
            }
            Action::Inject(f) => {
                self.fault(format!("inject {f:?}"));
                self.cluster.inject(f);
            }
            Action::Drop { pick, kind } => {
                let conns: Vec<ConnId> = self
                    .net
                    .client_conns()
                    .into_iter()
                    .filter(|c| self.net.link(*c).is_some_and(|l| l.server_open && !l.doomed))
                    .collect();
                if conns.is_empty() {
                    return;
                }
                let conn = conns[(pick % conns.len() as u64) as usize];
                self.fault(format!("drop c{} ({kind:?})", conn.0));
                if kind == DropKind::BrokerClose {
                    self.close_server_side(conn);
                }
                self.net.drop_conn(self.now, conn, kind);
            }
            Action::Profile { broker, profile } => {
                // KIP-368 accepts that a request sent before the client's renewal point (85-95%
                // of the session, from when the client learned it) arrives after the expiry when
                // the network takes longer than the remaining 5% both ways (seed 106653: 1.7 s
                // of a 20.4 s session). With sessions, each way stays within 2% of one.
                let life = self.listener.and_then(|l| l.session_lifetime);
                let profile = profile.map(|p| life.map_or(p, |life| p.capped(life / 50)));
                self.fault(format!("links to broker {broker}: {profile:?}"));
                self.net.set_profile(broker, profile);
            }
            Action::EndFaults => self.end_faults(),
            Action::Consumer { client, op } => self.consumer_op(client, op),
            Action::Txn { pick, count, commit } => {
                let Some((t, p, _)) = self.pick_partition(pick) else { return };
                self.next_txn += 1;
                let values: Vec<String> = (0..count).map(|i| format!("x{}-{i}", self.next_txn)).collect();
                let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
                let now = self.instant();
                if let Some((first, marker)) = self.cluster.write_transaction(now, &t, p, &refs, commit) {
                    let how = if commit { "committed" } else { "aborted" };
                    self.fault(format!("transaction {how} at {t}-{p}@{first}..{marker}"));
                }
            }
        }
    }

    /// Ends every fault now.
    pub fn end_faults(&mut self) {
        self.fault("faults end".into());
        self.faults_over = true;
        self.faults_ended = Some(self.now);
        for b in self.net.partitions() {
            self.net.heal(b);
        }
        self.net.kill_doomed(self.now);
        for b in self.cluster.broker_ids() {
            self.cluster.start_broker(b);
        }
        self.cluster.clear_faults();
        self.net.clear_profiles();
        for t in self.cluster.topic_names() {
            for p in 0..self.cluster.partition_count(&t).unwrap_or(0) as i32 {
                if self.cluster.leader(&t, p) == Some(-1) {
                    for b in self.cluster.broker_ids() {
                        if self.cluster.move_leader(&t, p, b).is_ok() {
                            break;
                        }
                    }
                }
            }
        }
        self.drain();
    }

    /// Lets faults happen again after [`Sim::end_faults`] (for a scripted episode after the
    /// random ones).
    pub fn resume_faults(&mut self) {
        self.faults_over = false;
    }

    /// A value in `0..n` from the simulator's own random stream.
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// Reads every partition's log from the cluster into the history.
    ///
    /// Only records below the high watermark count: that is what Kafka keeps through a clean
    /// leader change and what consumers may read, and every record acked with acks=all is
    /// below it once acked. Records above it (lagging replication) may still be truncated,
    /// so they prove neither a loss nor a duplicate. This is what the history saw when the
    /// logs were read with consumer Fetch requests.
    pub fn read_logs(&mut self) {
        for topic in self.cluster.topic_names() {
            for partition in 0..self.cluster.partition_count(&topic).unwrap_or(0) as i32 {
                let mut aborted = Vec::new();
                let log: Vec<(i64, Option<Bytes>)> = self
                    .cluster
                    .partition_log(&topic, partition)
                    .map(|records| {
                        records
                            .filter(|r| r.committed)
                            .inspect(|r| {
                                if r.aborted {
                                    aborted.push(r.offset);
                                }
                            })
                            .map(|r| (r.offset, r.value))
                            .collect()
                    })
                    .unwrap_or_default();
                for o in aborted {
                    self.history.consumer.aborted.insert((topic.clone(), partition, o));
                }
                self.history.set_log(&topic, partition, log);
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.config.producer.is_some() {
                self.history.producer_end(i, slot.client.producer_buffered(), slot.client.producer_outstanding());
            }
        }
    }

    // ---- reconnect bookkeeping (invariants c and d) ----

    /// The least delay after `failures` consecutive failures, jitter included.
    fn backoff_floor(&self, client: usize, failures: u32) -> Duration {
        let b = self.slots[client].reconnect;
        let max = b.max.max(b.initial);
        let exp = failures.saturating_sub(1).min(30);
        let base = b.initial.saturating_mul(1u32 << exp).min(max);
        base.mul_f64(0.8).saturating_sub(Duration::from_micros(1))
    }

    fn on_open(&mut self, client: usize, conn: ConnId, address: &BrokerAddress) {
        let floor = {
            let st = self.slots[client].addr_state.entry(address.clone()).or_default();
            st.last_failure.map(|t| (t, st.failures))
        };
        if let Some((t, failures)) = floor {
            let lo = self.backoff_floor(client, failures);
            if self.now < t + lo {
                self.violate(
                    "reconnect-backoff-min",
                    format!(
                        "client {client} c{} opens {address} {:?} after failure #{failures} at {:.6}s; the backoff is at least {lo:?}",
                        conn.0,
                        self.now - t,
                        t.as_secs_f64()
                    ),
                );
            }
        }
        let slot = &mut self.slots[client];
        if let Some(st) = slot.addr_state.get_mut(address) {
            st.live.insert(conn);
        }
        slot.conn_track.insert(
            conn,
            ConnTrack {
                address: address.clone(),
                connected: false,
                ready: false,
                inbound: BytesMut::new(),
                outbound: BytesMut::new(),
                received: 0,
                ready_at: None,
            },
        );
    }

    fn on_client_bytes(&mut self, client: usize, conn: ConnId, bytes: &Bytes) {
        let slot = &mut self.slots[client];
        let Some(c) = slot.conn_track.get_mut(&conn) else { return };
        if c.ready {
            return;
        }
        if self.listener.is_some_and(|l| l.tls) {
            // Ciphertext: ready once the stream reaches the end of the first response.
            c.received += bytes.len() as u64;
            if c.ready_at.is_some_and(|at| c.received >= at) {
                c.ready = true;
                if let Some(st) = slot.addr_state.get_mut(&c.address) {
                    st.failures = 0;
                    st.last_failure = None;
                }
            }
            return;
        }
        c.inbound.extend_from_slice(bytes);
        if c.inbound.len() >= 4 {
            let size = i32::from_be_bytes([c.inbound[0], c.inbound[1], c.inbound[2], c.inbound[3]]);
            if size >= 0 && c.inbound.len() >= 4 + size as usize {
                c.ready = true;
                c.inbound = BytesMut::new();
                let address = c.address.clone();
                if let Some(st) = slot.addr_state.get_mut(&address) {
                    st.failures = 0;
                    st.last_failure = None;
                }
            }
        }
    }

    /// The client's connection `conn` ended: told by the network (`told`) or closed by the
    /// client itself. A connection that ends before its handshake is surely a failure the
    /// client backs off from; one closed by the client after it may be idleness or a request
    /// timeout, which it does not back off from.
    fn on_gone(&mut self, client: usize, conn: ConnId, told: bool) {
        let slot = &mut self.slots[client];
        let Some(c) = slot.conn_track.remove(&conn) else { return };
        let now = self.now;
        let st = slot.addr_state.entry(c.address).or_default();
        st.live.remove(&conn);
        st.last_close = Some(now);
        if told || !c.ready {
            st.failures = if c.ready { 1 } else { st.failures + 1 };
            st.last_failure = Some(now);
        } else {
            st.failures = 0;
            st.last_failure = None;
        }
    }

    /// A command addressed to one broker the client knows must get a connection attempt
    /// within the largest backoff of the last connection's end.
    fn check_reconnect_deadlines(&mut self) {
        let mut found = Vec::new();
        for cmd in &self.unresolved {
            let Some(r) = self.requests.get(cmd) else { continue };
            let Some(broker) = r.broker else { continue };
            let slot = &self.slots[cmd.client];
            let b = slot.reconnect;
            let hi = b.max.max(b.initial).mul_f64(1.2) + Duration::from_millis(1);
            let Some(known) = slot.client.metadata().broker(BrokerId(broker)) else { continue };
            let Some(st) = slot.addr_state.get(&known.address) else { continue };
            if !st.live.is_empty() {
                continue;
            }
            if let Some(t) = st.last_close {
                if self.now > t + hi && r.issued < self.now {
                    found.push((cmd.client, known.address.clone(), t, *cmd));
                }
            }
        }
        for (client, address, t, cmd) in found {
            self.violate(
                "reconnect-backoff-max",
                format!(
                    "{cmd} waits for {address}, which closed at {:.6}s and has not been reopened {:?} later",
                    t.as_secs_f64(),
                    self.now - t
                ),
            );
            if let Some(st) = self.slots[client].addr_state.get_mut(&address) {
                st.last_close = None;
            }
        }
    }
}

/// A request ready for `Client::request`, with what the history needs to know about it.
struct Built {
    target: Target,
    body: RequestBody,
    version: Option<i16>,
    partition: Option<(String, Uuid, i32)>,
    records: Vec<RecordId>,
}

/// How an outcome counts for a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request did what it asked, without an error anywhere in the answer.
    Success,
    /// The answer says the client's metadata is stale (NOT_LEADER, UNKNOWN_TOPIC, ...).
    StaleView,
    /// Any other error.
    Failure,
}

/// Judges an outcome: a transport error, a top-level error code, or an error code on the
/// partition asked about all count against it.
pub fn verdict(e: &Event, asked: Option<&Asked>) -> Verdict {
    let code = match e {
        Event::Metadata { result: Ok(_), .. } | Event::Versions { result: Ok(_), .. } => return Verdict::Success,
        Event::Response { result: Ok(r), .. } => match &r.body {
            None => return Verdict::Success,
            Some(body) => {
                if asked.is_some_and(|a| a.api != body.api_key()) {
                    return Verdict::Failure;
                }
                body.error_code().filter(|c| *c != ErrorCode::None).or_else(|| partition_error(body))
            }
        },
        // The client's metadata names a leader it has no address for: a producer asks for
        // fresh metadata then.
        Event::Response { result: Err(RequestError::UnknownBroker(_)), .. } => return Verdict::StaleView,
        _ => return Verdict::Failure,
    };
    match code {
        None => Verdict::Success,
        Some(
            ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch,
        ) => Verdict::StaleView,
        Some(_) => Verdict::Failure,
    }
}

/// The first error code on a partition of a data answer.
fn partition_error(body: &ResponseBody) -> Option<ErrorCode> {
    let codes: Vec<ErrorCode> = match body {
        ResponseBody::Produce(p) => {
            p.responses.iter().flat_map(|t| &t.partition_responses).map(|x| x.error_code).collect()
        }
        ResponseBody::Fetch(f) => f.responses.iter().flat_map(|t| &t.partitions).map(|x| x.error_code).collect(),
        ResponseBody::ListOffsets(l) => l.topics.iter().flat_map(|t| &t.partitions).map(|x| x.error_code).collect(),
        ResponseBody::OffsetFetch(o) => o.groups.iter().map(|g| g.error_code).collect(),
        _ => Vec::new(),
    };
    codes.into_iter().find(|c| *c != ErrorCode::None)
}

/// The partitions an answer names: (topic name, topic id, partition).
pub fn answered_partitions(body: &ResponseBody) -> Vec<(String, Uuid, i32)> {
    match body {
        ResponseBody::Produce(p) => p
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|x| (t.name.to_string(), t.topic_id, x.index)))
            .collect(),
        ResponseBody::Fetch(f) => f
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|x| (t.topic.to_string(), t.topic_id, x.partition_index)))
            .collect(),
        ResponseBody::ListOffsets(l) => l
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|x| (t.name.to_string(), Uuid::default(), x.partition_index)))
            .collect(),
        _ => Vec::new(),
    }
}
/// A short, stable description of an outcome: `ok` with the response's error code, or the
/// error's kind.
fn summarize(result: Result<Option<sansa::protocol::ErrorCode>, &RequestError>) -> String {
    match result {
        Ok(code) => format!("ok {}", code.map_or(0, |c| c.code())),
        Err(e) => error_kind(e).to_string(),
    }
}

/// The kind of a produce error, without the details that vary.
pub fn produce_error_kind(e: &sansa::producer::ProduceError) -> String {
    use sansa::producer::ProduceError as E;
    match e {
        E::RecordTooLarge { .. } => "record-too-large".into(),
        E::InvalidPartition { .. } => "invalid-partition".into(),
        E::TopicNotFound { .. } => "topic-not-found".into(),
        E::Broker { error, .. } => format!("broker {error:?}"),
        E::DeliveryTimeout { .. } => "delivery-timeout".into(),
        E::RetriesExhausted { .. } => "retries-exhausted".into(),
        // Java's producer fails for good on the same broker errors (see `ProducerRecovers`).
        E::Fatal(a) => match &**a {
            sansa::producer::Attempt::Broker { error, .. } if !error.is_retriable() => {
                format!("fatal-broker {error:?}")
            }
            a => format!("fatal {a}"),
        },
        E::Unsupported(_) => "unsupported".into(),
        E::Closed => "closed".into(),
        E::BufferExhausted { .. } => "buffer-exhausted".into(),
        _ => "other".into(),
    }
}

/// The kind of a request error, without the details that vary (addresses, messages).
pub fn error_kind(e: &RequestError) -> &'static str {
    match e {
        RequestError::Timeout(_) => "timeout",
        RequestError::Unreachable { .. } => "unreachable",
        RequestError::Disconnected { .. } => "disconnected",
        RequestError::Version { .. } => "version",
        RequestError::UnknownBroker(_) => "unknown-broker",
        RequestError::UnknownBootstrap(_) => "unknown-bootstrap",
        RequestError::Coordinator(_) => "coordinator",
        RequestError::Encode(_) => "encode",
        RequestError::InvalidResponse { .. } => "invalid-response",
        RequestError::ClientClosed => "client-closed",
        _ => "other",
    }
}

// ---- group members ----------------------------------------------------------------------

impl Sim {
    /// Whether any client is a group member.
    pub fn has_consumers(&self) -> bool {
        self.slots.iter().any(|s| s.member.is_some())
    }

    /// Whether client `i` crashed.
    pub fn is_dead(&self, i: usize) -> bool {
        self.slots[i].dead
    }

    /// The clients that did not crash.
    pub fn live_clients(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|i| !self.slots[*i].dead).collect()
    }

    /// Live, subscribed group members.
    pub fn live_members(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| !self.slots[*i].dead && self.slots[*i].member.as_ref().is_some_and(|m| m.subscribed))
            .collect()
    }

    /// Client `i`'s member settings, if it is one.
    pub fn consumer_spec(&self, i: usize) -> Option<&ConsumerSpec> {
        self.slots[i].member.as_ref().map(|m| &m.spec)
    }

    /// Transactions may be written (replication is instant).
    pub fn transactions_allowed(&self) -> bool {
        self.transactions
    }

    /// Calm (on): the network is quiet and every member polls, so group assignments are
    /// checked for overlaps after every step.
    pub fn set_calm(&mut self, on: bool) {
        self.calm = on;
    }

    /// Every stalled member polls again.
    pub fn unstall_consumers(&mut self) {
        for slot in &mut self.slots {
            if let Some(m) = &mut slot.member {
                m.stalled_until = None;
            }
        }
    }

    /// A new member with `spec`, not subscribed yet; returns its index.
    pub fn add_consumer(&mut self, spec: ConsumerSpec) -> usize {
        let index = self.slots.len();
        // Every other member hands its decompression out, each piece done up to 20 ms later.
        let offload_work = (index % 2 == 1).then_some(Duration::from_millis(20));
        let cc = ClientConfig {
            consumer: Some(spec.clone()),
            security: self.security.clone(),
            offload_work,
            ..ClientConfig::default()
        };
        let (client, reconnect) = make_client(self.seed, index, &cc, self.plant, self.origin);
        self.history.consumer.consumers.insert(index, consumer_info(&spec));
        self.slots.push(new_slot(client, &cc, reconnect));
        self.fault(format!("client {index} starts"));
        index
    }

    /// A client joins the run now with `cc` (its security as [`SimConfig::security`] says
    /// unless `cc` has its own); returns its index.
    pub fn add_client(&mut self, mut cc: ClientConfig) -> usize {
        let index = self.slots.len();
        if cc.security.is_none() {
            cc.security.clone_from(&self.security);
        }
        let (client, reconnect) = make_client(self.seed, index, &cc, self.plant, self.origin);
        self.slots.push(new_slot(client, &cc, reconnect));
        self.fault(format!("client {index} starts"));
        index
    }

    /// Client `client` leaves the run quietly: its connections close and its commands are
    /// forgotten (a client whose episode is over, not a crash to check).
    pub fn retire_client(&mut self, client: usize) {
        if self.slots[client].dead {
            return;
        }
        self.fault(format!("client {client} retires"));
        self.slots[client].dead = true;
        self.drop_client(client);
    }

    /// Closes every connection of a client that is gone (a crash or a retirement), and
    /// forgets its own commands, which die with it.
    fn drop_client(&mut self, client: usize) {
        let conns: Vec<ConnId> = self.net.client_conns().into_iter().filter(|c| split_conn(c.0).0 == client).collect();
        for conn in conns {
            self.close_server_side(conn);
            if let Some(link) = self.net.link_mut(conn) {
                link.client_open = false;
                link.doomed = true;
            }
        }
        self.unresolved.retain(|c| c.client != client);
        self.requests.retain(|c, _| c.client != client);
        self.probes.retain(|p| p.client != client);
    }

    /// The listener's security, if any.
    pub fn listener(&self) -> Option<SimSecurity> {
        self.listener
    }

    /// Member `client` does `op` now.
    pub fn consumer_op(&mut self, client: usize, op: ConsumerOp) {
        let now = self.instant();
        let slot = &mut self.slots[client];
        if slot.dead {
            return;
        }
        let Some(m) = &mut slot.member else { return };
        self.trace.push(self.now, TraceEvent::Fault { what: format!("member {client}: {op:?}") });
        match op {
            ConsumerOp::Subscribe => {
                let topics = m.spec.topics.iter().map(|t| TopicName::from(t.as_str())).collect();
                if m.spec.listener {
                    slot.client.set_rebalance_listener(now, true);
                }
                if slot.client.subscribe(now, topics).is_ok() {
                    m.subscribed = true;
                    m.leave = None;
                    m.last_poll = self.now;
                }
            }
            ConsumerOp::Unsubscribe => {
                slot.client.unsubscribe(now);
                m.subscribed = false;
                m.leave = Some(false);
            }
            ConsumerOp::Stall(d) => m.stalled_until = Some(self.now + d),
            ConsumerOp::Crash => {
                let calm = self.calm;
                self.crash_member(client, calm);
                return;
            }
        }
        self.drain();
    }

    /// Member `client` crashes now: it hears and says nothing more, the cluster sees its
    /// connections close. With `checked`, its partitions must move within its bound.
    pub fn crash_member(&mut self, client: usize, checked: bool) {
        let slot = &self.slots[client];
        if slot.dead {
            return;
        }
        let owned = slot.client.assignment().into_iter().map(|tp| (tp.topic.to_string(), tp.partition)).collect();
        let bound = slot.member.as_ref().filter(|_| checked).map(|m| m.spec.crash_bound());
        self.history.consumer.crashes.push(Crash { at: self.now, client, owned, bound });
        self.fault(format!("client {client} crashes"));
        self.slots[client].dead = true;
        if let Some(m) = &mut self.slots[client].member {
            m.subscribed = false;
        }
        self.drop_client(client);
    }

    /// Polls every live, subscribed, unstalled member that has something or has not polled
    /// for [`POLL_EVERY`], as an application's loop would; records what it hands out.
    fn poll_consumers(&mut self) {
        let now = self.instant();
        let mut polled = false;
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if slot.dead {
                continue;
            }
            let Some(m) = &mut slot.member else { continue };
            if !m.subscribed {
                continue;
            }
            if let Some(until) = m.stalled_until {
                if self.now < until {
                    continue;
                }
                m.stalled_until = None;
            }
            if !slot.client.has_records() && self.now < m.last_poll + POLL_EVERY {
                continue;
            }
            m.last_poll = self.now;
            polled = true;
            let max = m.spec.config.max_poll_records;
            for _ in 0..16 {
                let records = match slot.client.poll_records(now, max) {
                    Ok(r) => r,
                    Err(e) => {
                        self.trace.push(self.now, TraceEvent::Fault { what: format!("member {i} poll: {e}") });
                        break;
                    }
                };
                if records.is_empty() {
                    break;
                }
                for r in records {
                    let tp = (r.topic.to_string(), r.partition);
                    let session = m.sessions.get(&tp).copied().unwrap_or(0);
                    m.last_out.insert(tp.clone(), r.offset);
                    self.history.consumer.deliveries.push(Delivery {
                        at: self.now,
                        client: i,
                        topic: tp.0.clone(),
                        partition: tp.1,
                        offset: r.offset,
                        session,
                    });
                    self.history.consumed(Consumed {
                        at: self.now,
                        client: i,
                        topic: tp.0,
                        partition: tp.1,
                        offset: r.offset,
                        value: r.value,
                    });
                }
                if !slot.client.has_records() {
                    break;
                }
            }
        }
        if polled {
            self.drain();
        }
    }

    /// A rebalance reported to member `client`: new ownerships, handovers; with a listener,
    /// the harness commits what was handed out of the revoked partitions, then acknowledges.
    fn on_rebalance(&mut self, client: usize, r: &sansa::consumer::Rebalance) {
        let now = self.instant();
        let calm = self.calm;
        let slot = &mut self.slots[client];
        let Some(m) = &mut slot.member else { return };
        for tp in &r.assigned {
            let key = (tp.topic.to_string(), tp.partition);
            m.next_session += 1;
            m.sessions.insert(key.clone(), m.next_session);
            m.last_out.remove(&key);
            self.history.consumer.assigned.push((self.now, client, key));
        }
        for tp in &r.revoked {
            let key = (tp.topic.to_string(), tp.partition);
            self.history.consumer.handovers.push(Handover {
                at: self.now,
                client,
                topic: key.0.clone(),
                partition: key.1,
                last: m.last_out.remove(&key),
                checked: calm && m.spec.commits_on_revoke(),
            });
        }
        for tp in &r.lost {
            m.last_out.remove(&(tp.topic.to_string(), tp.partition));
        }
        self.trace.push(
            self.now,
            TraceEvent::Outcome {
                id: wire_conn(client, ConnId(u64::from(u32::MAX) - 1)),
                outcome: format!(
                    "rebalance: +{} -{} lost {}{}",
                    r.assigned.len(),
                    r.revoked.len(),
                    r.lost.len(),
                    if r.ack.is_some() { ", waits for the ack" } else { "" }
                ),
            },
        );
        if let Some(id) = r.ack {
            let revoked: BTreeSet<&TopicPartition> = r.revoked.iter().collect();
            let offsets: Vec<_> = slot.client.positions().into_iter().filter(|(tp, _)| revoked.contains(tp)).collect();
            if !offsets.is_empty() {
                slot.client.commit(now, offsets);
            }
            slot.client.ack_rebalance(now, id);
        }
    }

    /// After an explicit unsubscribe, the member sends its leave and then nothing of a
    /// member: no heartbeat, JoinGroup or SyncGroup (`consumer-no-heartbeat-after-leave`).
    fn after_leave(&mut self, client: usize, api: ApiKey, frame: &Bytes) {
        let Some(m) = &mut self.slots[client].member else { return };
        let Some(sent) = m.leave else { return };
        let member_api = matches!(
            api,
            ApiKey::Heartbeat
                | ApiKey::JoinGroup
                | ApiKey::SyncGroup
                | ApiKey::LeaveGroup
                | ApiKey::ConsumerGroupHeartbeat
        );
        if !member_api {
            return;
        }
        let leaving = match api {
            ApiKey::LeaveGroup => true,
            ApiKey::ConsumerGroupHeartbeat => matches!(
                decode_request(frame.clone()),
                Ok((_, RequestBody::ConsumerGroupHeartbeat(r))) if r.member_epoch < 0
            ),
            _ => false,
        };
        if !sent {
            m.leave = Some(leaving);
            return;
        }
        if !leaving {
            self.violate(
                "consumer-no-heartbeat-after-leave",
                format!("client {client} sent {} after it left the group", api.name()),
            );
            if let Some(m) = &mut self.slots[client].member {
                m.leave = None;
            }
        }
    }

    /// Notes the group's committed offsets as the coordinator now stores them.
    fn sample_commits(&mut self) {
        if !self.has_consumers() {
            return;
        }
        for ((t, p), o) in self.cluster.committed_offsets(GROUP) {
            let series = self.history.consumer.committed.entry((GROUP.to_string(), t, p)).or_default();
            if series.last().is_none_or(|(_, last)| *last != o) {
                series.push((self.now, o));
            }
        }
    }

    /// No partition is owned by two live members at once (checked while calm).
    fn check_overlaps(&mut self) {
        if self.overlap_seen {
            return;
        }
        let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        for i in self.live_members() {
            for tp in self.slots[i].client.assignment() {
                if let Some(other) = owner.insert(tp.clone(), i) {
                    self.overlap_seen = true;
                    self.violate(
                        "consumer-assignment-disjoint",
                        format!("{tp} owned by clients {other} and {i} at once"),
                    );
                    return;
                }
            }
        }
    }

    /// The partitions the members subscribe to, as the cluster has them.
    fn subscribed_partitions(&self) -> Vec<(String, i32)> {
        let topics: BTreeSet<&String> =
            self.slots.iter().filter_map(|s| s.member.as_ref()).flat_map(|m| m.spec.topics.iter()).collect();
        topics
            .into_iter()
            .flat_map(|t| (0..self.cluster.partition_count(t).unwrap_or(0) as i32).map(move |p| (t.clone(), p)))
            .collect()
    }

    /// Each subscribed partition that no live member owns at the log end: (partition, owner
    /// and position).
    fn lagging(&self) -> Vec<Lagging> {
        let members = self.live_members();
        let mut out = Vec::new();
        for (t, p) in self.subscribed_partitions() {
            let end = self.cluster.high_watermark(&t, p).unwrap_or(0);
            let tp = TopicPartition::new(t.as_str(), p);
            let owner = members
                .iter()
                .find(|i| self.slots[**i].client.assignment().contains(&tp))
                .map(|i| (*i, self.slots[*i].client.position(&tp).ok().flatten()));
            if owner.is_none_or(|(_, pos)| pos != Some(end)) {
                out.push((t, p, owner, end));
            }
        }
        out
    }

    /// Every subscribed partition is owned by a live member whose position is the log end.
    pub fn consumers_caught_up(&self) -> bool {
        self.lagging().is_empty()
    }

    /// Records the group's settled state: its subscribed partitions, each live member's
    /// assignment, and (unless it `caught_up`) what lags.
    pub fn settle_consumers(&mut self, caught_up: bool) {
        let subscribed = self.subscribed_partitions();
        let members: BTreeMap<usize, Vec<(String, i32)>> = self
            .live_members()
            .into_iter()
            .map(|i| {
                let owned =
                    self.slots[i].client.assignment().into_iter().map(|tp| (tp.topic.to_string(), tp.partition));
                (i, owned.collect())
            })
            .collect();
        if !caught_up && !members.is_empty() {
            let lagging = self.lagging();
            self.history.consumer.behind.push(format!(
                "group {GROUP} did not catch up with the log end: {} partitions behind, first {:?}",
                lagging.len(),
                lagging.first()
            ));
        }
        self.history.consumer.subscribed.insert(GROUP.to_string(), subscribed);
        self.history.consumer.settled.insert(GROUP.to_string(), members);
    }
}
