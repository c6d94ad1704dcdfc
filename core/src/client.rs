//! The client façade: the one type a runtime adapter drives. It is a router: it owns
//! connections (one per broker and [`Role`]), node health and reconnect backoff, target
//! resolution, negotiated versions, the in-flight table and a timer table; the inner machines
//! (metadata, coordinators, the application's requests, version checks) own everything else
//! and trade typed requests and responses with it (see [`crate::machine`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cluster::refresh::MetadataRefresh;
use crate::cluster::ClusterMetadata;
use crate::config::{BrokerAddress, Config};
use crate::connection::{BrokerApiVersions, ConnEvent, Connection, Expiry, LocalClose, Timeouts, VersionError};
use crate::consumer::{
    CommittedOffset, ConsumeError, Consumer, ConsumerRecord, ListedOffset, OffsetSpec, Rebalance, TopicPartition,
};
use crate::coordinator::{CoordinatorKey, Coordinators};
pub use crate::machine::Role;
use crate::machine::{Ctx, Failure, Link, Machine, Outgoing, Owner, Signal, Tag};
use crate::producer::{Delivery, Producer, ProducerRecord, SendId, SendRefused};
use crate::protocol::kafka_release::ReleaseGuess;
use crate::protocol::{
    BrokerId, DecodeError, EncodeError, ErrorCode, GroupId, RequestBody, ResponseBody, TopicName, TransactionalId,
};
use crate::rand::Rng;
use crate::requests::Requests;
use crate::security::TlsError;
use crate::timer::{Deadlines, TimerTable};
use crate::versions::VersionChecks;

/// Identifies one connection attempt. Never reused, so a late event for a closed connection
/// cannot be mistaken for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Identifies a command; its outcome arrives as an [`Event`] carrying the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A broker the client talks to: one of the configured bootstrap addresses (by index) or a
/// broker known from metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// `bootstrap_servers[i]`.
    Bootstrap(usize),
    /// A broker by node id.
    Broker(BrokerId),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Bootstrap(i) => write!(f, "bootstrap server #{i}"),
            Node::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Whichever broker is least loaded (a bootstrap address before metadata is known).
    AnyBroker,
    /// A broker by node id.
    Broker(BrokerId),
    /// A bootstrap address, by its index in the configuration.
    Bootstrap(usize),
    /// The coordinator of a consumer group (looked up with FindCoordinator, then cached).
    GroupCoordinator(GroupId),
    /// The coordinator of a transactional producer.
    TransactionCoordinator(TransactionalId),
    /// The broker that handles controller-bound admin requests.
    Controller,
}

/// Why the driver's socket closed or could not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseCause {
    /// The peer closed the connection.
    #[error("closed by the peer")]
    PeerClosed,
    /// The connection was refused.
    #[error("connection refused")]
    Refused,
    /// The host name did not resolve.
    #[error("host name {0:?} did not resolve")]
    UnknownHost(String),
    /// Connecting took longer than `connection_setup_timeout`.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// Any other I/O error, as the operating system described it.
    #[error("I/O error: {0}")]
    Io(String),
    /// The client closed it: a protocol violation, a request timeout, or idleness.
    #[error("closed by the client: {0}")]
    Local(LocalClose),
}

impl From<&std::io::Error> for CloseCause {
    /// Classifies a socket error the way drivers report it.
    fn from(e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::ConnectionRefused => CloseCause::Refused,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => CloseCause::PeerClosed,
            _ => CloseCause::Io(e.to_string()),
        }
    }
}

/// Inputs from the driver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Input {
    /// The socket for `conn` (requested with [`Transmit::Open`]) is connected.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// Bytes arrived on `conn`.
    Received {
        /// The connection.
        conn: ConnId,
        /// The bytes, in arrival order.
        data: Bytes,
    },
    /// `conn` closed, or could not be opened.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        cause: CloseCause,
    },
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transmit {
    /// Open a TCP connection to `address` (resolving its host name) for `conn`, then report
    /// [`Input::Connected`] or [`Input::Closed`].
    Open {
        /// The new connection.
        conn: ConnId,
        /// Where to.
        address: BrokerAddress,
    },
    /// Write `bytes` to `conn`, in order.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Close `conn`; no [`Input::Closed`] is expected for it.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// A broker's answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Who answered.
    pub node: Node,
    /// The address it was reached at.
    pub address: BrokerAddress,
    /// The version the request was sent at.
    pub version: i16,
    /// The response; `None` only for a produce request with acks=0, which gets no answer.
    pub body: Option<ResponseBody>,
}

/// A broker's API versions and the Kafka release they indicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerVersions {
    /// Who answered.
    pub node: Node,
    /// The address it was reached at.
    pub address: BrokerAddress,
    /// The advertised ranges; empty when the broker did not answer ApiVersions.
    pub api_versions: BrokerApiVersions,
    /// The inferred release.
    pub release: ReleaseGuess,
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No answer within `request_timeout`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The target could not be reached before the timeout; `cause` is the last failure.
    #[error("could not reach {address}: {cause}")]
    Unreachable {
        /// The address tried last.
        address: BrokerAddress,
        /// What went wrong.
        cause: CloseCause,
    },
    /// The connection closed while the request was in flight; it may or may not have been
    /// processed.
    #[error("connection to {address} closed with the request in flight: {cause}")]
    Disconnected {
        /// The broker's address.
        address: BrokerAddress,
        /// Why it closed.
        cause: CloseCause,
    },
    /// The broker cannot take the request at any version sansa speaks.
    #[error("{address}: {error}")]
    Version {
        /// The broker's address.
        address: BrokerAddress,
        /// What is missing.
        error: VersionError,
    },
    /// Metadata does not list the requested broker.
    #[error("unknown broker {0}")]
    UnknownBroker(BrokerId),
    /// No bootstrap address with that index.
    #[error("no bootstrap server #{0}")]
    UnknownBootstrap(usize),
    /// The coordinator lookup failed with a non-retriable error.
    #[error("coordinator lookup failed: {0}")]
    Coordinator(ErrorCode),
    /// The request could not be encoded (a caller mistake).
    #[error("could not encode the request: {0}")]
    Encode(#[from] EncodeError),
    /// The broker's response could not be decoded.
    #[error("{address} sent a response that does not decode: {error}")]
    InvalidResponse {
        /// The broker's address.
        address: BrokerAddress,
        /// Where decoding failed.
        error: DecodeError,
    },
    /// The client is closing and takes no new requests.
    #[error("the client is closing")]
    ClientClosed,
}

/// Something that completed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // each event is moved once, to its waiter; boxing buys nothing
pub enum Event {
    /// The outcome of [`Client::request`].
    Response {
        /// The command.
        id: RequestId,
        /// The answer or the error.
        result: Result<Response, RequestError>,
    },
    /// The outcome of [`Client::refresh_metadata`].
    Metadata {
        /// The command.
        id: RequestId,
        /// The metadata after the refresh.
        result: Result<ClusterMetadata, RequestError>,
    },
    /// The outcome of [`Client::check_version`].
    Versions {
        /// The command.
        id: RequestId,
        /// What the broker advertised.
        result: Result<BrokerVersions, RequestError>,
    },
    /// Records sent with [`Client::send`] were delivered, or failed: one event per batch.
    Delivery(Delivery),
    /// The outcome of [`Client::flush`]: every record sent before it has its outcome.
    Flushed {
        /// The command.
        id: RequestId,
    },
    /// The outcome of [`Client::list_offsets`]: per partition, the offset found (`None`
    /// when no record has a timestamp at or after the one asked for).
    ListedOffsets {
        /// The command.
        id: RequestId,
        /// The offsets, or why the lookup failed.
        result: Result<BTreeMap<TopicPartition, Option<ListedOffset>>, ConsumeError>,
    },
    /// The outcome of [`Client::committed`]: per partition, the group's committed offset.
    CommittedOffsets {
        /// The command.
        id: RequestId,
        /// The offsets (`None`: nothing committed), or why the read failed.
        result: Result<BTreeMap<TopicPartition, Option<CommittedOffset>>, ConsumeError>,
    },
    /// The outcome of [`Client::commit`].
    Committed {
        /// The command.
        id: RequestId,
        /// Success, or why the commit failed.
        result: Result<(), ConsumeError>,
    },
    /// The consumer's group membership changed its partitions.
    Rebalance(Rebalance),
    /// [`Client::close`] finished: every request completed and every connection is closed.
    Closed,
}

/// What a request in flight carries, to route its answer.
#[derive(Debug)]
struct Token {
    owner: Owner,
    tag: Tag,
    deadline: Instant,
    timeout: Duration,
    /// Its entry in the timer table.
    timer: u64,
}

#[derive(Debug)]
struct Slot {
    node: Node,
    role: Role,
    address: BrokerAddress,
    opened: Instant,
    conn: Connection<Token>,
}

/// Consecutive hang-ups on the TLS hello that make a broker's port count as plaintext: the
/// requests waiting for it fail then, with the reason, rather than at their deadline.
const HELLO_HANGUPS_FATAL: u32 = 3;

#[derive(Debug)]
struct Health {
    failures: u32,
    /// Consecutive connections that hung up on the TLS hello without a byte in answer.
    hello_hangups: u32,
    retry_at: Option<Instant>,
    last_failure: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RouterTimer {
    /// A connection's own deadline (connect, handshake, idle).
    Conn(ConnId),
    /// A node's reconnect backoff ends.
    Backoff(Node),
}

enum Resolved {
    Node(Node),
    Wait,
    Fail { error: RequestError, issued_before: Instant },
}

/// The inner machines, in the fixed order the router consults them.
#[derive(Debug)]
struct Machines {
    metadata: MetadataRefresh,
    coordinators: Coordinators,
    requests: Requests,
    versions: VersionChecks,
    producer: Producer,
    consumer: Consumer,
}

impl Machines {
    /// Every machine by owner, so that no pass over them can leave one out.
    fn get_ref(&self, owner: Owner) -> &dyn Machine {
        match owner {
            Owner::Metadata => &self.metadata,
            Owner::Coordinator => &self.coordinators,
            Owner::Requests => &self.requests,
            Owner::Versions => &self.versions,
            Owner::Producer => &self.producer,
            Owner::Consumer => &self.consumer,
        }
    }

    const ORDER: [Owner; 6] =
        [Owner::Metadata, Owner::Coordinator, Owner::Requests, Owner::Versions, Owner::Producer, Owner::Consumer];

    fn get(&mut self, owner: Owner) -> &mut dyn Machine {
        match owner {
            Owner::Metadata => &mut self.metadata,
            Owner::Coordinator => &mut self.coordinators,
            Owner::Requests => &mut self.requests,
            Owner::Versions => &mut self.versions,
            Owner::Producer => &mut self.producer,
            Owner::Consumer => &mut self.consumer,
        }
    }
}

/// A Kafka client as a pure state machine: bytes and timestamps in, bytes and timer requests
/// out. It owns connections, metadata and coordinator lookups; it never blocks, sleeps,
/// spawns, or reads a clock.
///
/// The driver loop (see the crate docs) calls it in four ways:
///
/// - **A — getters** on `&self`: [`Client::metadata`], [`Client::config`], [`Client::is_closed`].
/// - **B — inputs**: [`Client::handle_input`] with what a socket did, and
///   [`Client::handle_timeout`] when the deadline from [`Client::poll_timeout`] passes.
/// - **C — commands** from the application, each returning a [`RequestId`]:
///   [`Client::request`], [`Client::refresh_metadata`], [`Client::check_version`], and
///   [`Client::close`].
/// - **D — outputs**, drained after every B or C call, in this order:
///   [`Client::poll_transmit`] until `None` (open, write, close sockets), then
///   [`Client::poll_timeout`] (when to call `handle_timeout` next), then
///   [`Client::poll_event`] until `None` (completed commands).
///
/// A driver with threads to spare may also take the producer's compression off its own
/// thread: after [`Client::offload_work`], it drains [`Client::poll_work`] with the
/// transmits, runs each [`Work`](crate::Work) anywhere, and feeds the result back
/// with [`Client::handle_work_done`] (a B input).
///
/// Time only moves forward: pass the driver's current `Instant` every time. A spurious
/// `handle_timeout` does nothing.
///
/// Each broker gets up to one connection per [`Role`]: fetches, which the broker may hold for
/// their `max_wait_ms`, travel apart from produce, group, admin and metadata traffic.
/// Randomness comes from [`Config::rng_seed`], forked into one stream per machine.
#[derive(Debug)]
pub struct Client {
    config: Config,
    rng: Rng,
    next_conn: u64,
    next_request: u64,
    next_timer: u64,
    slots: BTreeMap<ConnId, Slot>,
    by_node: BTreeMap<(Node, Role), ConnId>,
    health: BTreeMap<Node, Health>,
    failures: BTreeMap<Node, Failure>,
    last_failure: Option<Failure>,
    timers: TimerTable<RouterTimer>,
    /// Deadlines of requests in flight, by connection and timer id.
    request_deadlines: Deadlines<(ConnId, u64)>,
    /// Set when resolving a target created work (a lookup, a refresh): the pump goes round again.
    work_created: bool,
    /// Events a connection produced on one input, reused.
    conn_events: Vec<ConnEvent<Token>>,
    cluster: ClusterMetadata,
    signals: Vec<Signal>,
    machines: Machines,
    /// Which machine `poll_request` asks first next, so none starves the others.
    first_asked: usize,
    /// The pump's list of wanted targets, reused.
    scratch: Vec<(Target, Role)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    closing: bool,
    closed: bool,
    /// The driver's wall clock (an instant and the Unix ms then), for OAUTHBEARER tokens.
    wall_clock: Option<(Instant, i64)>,
    #[cfg(feature = "plants")]
    plant: Option<crate::plants::Plant>,
}

impl Client {
    /// A client that has not connected anywhere yet; the first command opens connections.
    /// Without [`Config::rng_seed`], random choices start from seed 0: drivers fill the seed
    /// in from the operating system, simulations pin it.
    pub fn new(config: Config, now: Instant) -> Self {
        let seed = config.rng_seed.unwrap_or(0);
        Client {
            rng: Rng::stream(seed, "router"),
            next_conn: 0,
            next_request: 0,
            next_timer: 0,
            slots: BTreeMap::new(),
            by_node: BTreeMap::new(),
            health: BTreeMap::new(),
            failures: BTreeMap::new(),
            last_failure: None,
            timers: TimerTable::default(),
            request_deadlines: Deadlines::default(),
            work_created: false,
            conn_events: Vec::new(),
            cluster: ClusterMetadata::default(),
            signals: Vec::new(),
            machines: Machines {
                metadata: MetadataRefresh::new(now, config.metadata_max_age, seed),
                coordinators: Coordinators::new(seed),
                requests: Requests::default(),
                versions: VersionChecks::default(),
                producer: Producer::new(now, &config),
                consumer: Consumer::new(now, &config),
            },
            first_asked: 0,
            scratch: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            closing: false,
            closed: false,
            wall_clock: None,
            #[cfg(feature = "plants")]
            plant: None,
            config,
        }
    }

    // ---- A: getters ------------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the client knows about the cluster.
    pub fn metadata(&self) -> &ClusterMetadata {
        &self.cluster
    }

    /// Whether [`Event::Closed`] has been emitted.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Arms a deliberate bug (simulator only; see [`crate::plants`]).
    #[cfg(feature = "plants")]
    pub fn plant(&mut self, plant: crate::plants::Plant) {
        self.plant = Some(plant);
        for slot in self.slots.values_mut() {
            slot.conn.swap_owners = plant == crate::plants::Plant::SwapOwners;
        }
    }

    // ---- C: commands -----------------------------------------------------------------

    fn next_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// A new command's id, or `Err(id)` when the client is closing: then the command is
    /// answered at once with the event `refusal` builds from the id.
    fn admit(&mut self, refusal: impl FnOnce(RequestId) -> Event) -> Result<RequestId, RequestId> {
        let id = self.next_id();
        if self.closing {
            self.events.push_back(refusal(id));
            return Err(id);
        }
        Ok(id)
    }

    /// Sends `body` to `target` at the highest version both sides support, or at `version`
    /// when given. The answer arrives as [`Event::Response`]. The request has
    /// `request.timeout.ms` from now, a Fetch its `max_wait_ms` on top, a JoinGroup at least
    /// its rebalance timeout; a Fetch travels on the broker's fetch connection.
    pub fn request(&mut self, now: Instant, target: Target, body: RequestBody, version: Option<i16>) -> RequestId {
        let refused = |id| Event::Response { id, result: Err(RequestError::ClientClosed) };
        let id = match self.admit(refused) {
            Ok(id) => id,
            Err(id) => return id,
        };
        let (machines, ctx) = self.split();
        machines.requests.submit(now, id, target, body, version, &ctx);
        self.settle(now);
        id
    }

    /// Fetches metadata for `topics` (every topic when `None`) and answers with
    /// [`Event::Metadata`]. Named topics are also kept fresh by later periodic refreshes.
    pub fn refresh_metadata(&mut self, now: Instant, topics: Option<Vec<TopicName>>) -> RequestId {
        let id = match self.admit(|id| Event::Metadata { id, result: Err(RequestError::ClientClosed) }) {
            Ok(id) => id,
            Err(id) => return id,
        };
        self.machines.metadata.refresh(now, id, topics, self.config.request_timeout);
        self.settle(now);
        id
    }

    /// Connects to `target` and reports the API versions it advertises and the Kafka release
    /// they indicate, as [`Event::Versions`].
    pub fn check_version(&mut self, now: Instant, target: Target) -> RequestId {
        let id = match self.admit(|id| Event::Versions { id, result: Err(RequestError::ClientClosed) }) {
            Ok(id) => id,
            Err(id) => return id,
        };
        self.machines.versions.submit(now, id, target, self.config.request_timeout);
        self.settle(now);
        id
    }

    /// Takes a record into the producer's buffer, partitions it and appends it to its
    /// partition's batch; its outcome arrives in an [`Event::Delivery`]. Refused, with the
    /// record handed back, when `buffer.memory` is full (send again after deliveries free
    /// room), when the client is closing, or when the producer failed for good. A record
    /// that cannot be produced at all (too large, a partition the topic lacks) is taken and
    /// fails in its delivery. Never blocks: a topic without metadata yet waits up to
    /// `max.block.ms` inside the producer.
    // Inlined so that the record is not copied once more on its way from the driver's lane.
    #[inline]
    pub fn send(&mut self, now: Instant, record: ProducerRecord) -> Result<SendId, SendRefused> {
        if self.closing {
            return Err(SendRefused { reason: crate::producer::RefuseReason::Closed, record: Box::new(record) });
        }
        let (machines, mut ctx) = self.split();
        let batches = machines.producer.batches_waiting();
        let id = machines.producer.send(now, record, &mut ctx)?;
        // Appending to a batch that is not ready changes nothing the router looks at; the
        // pump runs when a batch filled up or the producer asked for something.
        let changed = machines.producer.batches_waiting() != batches || machines.producer.flushing();
        if changed || !self.signals.is_empty() {
            self.settle(now);
        }
        Ok(id)
    }

    /// Answers with [`Event::Flushed`] once every record sent before it has its outcome;
    /// meanwhile every batch is sent without waiting for `linger.ms`.
    pub fn flush(&mut self, now: Instant) -> RequestId {
        let id = self.next_id();
        self.machines.producer.flush(id);
        self.settle(now);
        id
    }

    /// Fails every record not yet delivered with [`crate::producer::ProduceError::Closed`]
    /// and stops the producer: what a close whose time ran out does.
    pub fn abort_producer(&mut self, now: Instant) {
        self.machines.producer.abort(now);
        self.settle(now);
    }

    /// Tells the client the wall-clock time: `unix_ms` milliseconds since the Unix epoch at
    /// `now`. Records sent without a timestamp are stamped from it, OAUTHBEARER tokens
    /// dated, and TLS certificates checked against it. Drivers call it once at start;
    /// without it, time starts at the epoch (deterministic, for simulations; no certificate
    /// is valid then).
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        self.wall_clock = Some((now, unix_ms));
        self.machines.producer.set_wall_clock(now, unix_ms);
    }

    /// Bytes of records in the producer's buffer, not yet delivered.
    pub fn producer_buffered(&self) -> usize {
        self.machines.producer.buffered()
    }

    /// Records sent and not yet delivered or failed.
    pub fn producer_outstanding(&self) -> usize {
        self.machines.producer.outstanding()
    }

    /// The producer's metrics by their Java names (`record-send-rate`, `batch-size-avg`,
    /// `request-latency-max`, ...; see [`crate::producer`]'s metrics table), at `now`.
    pub fn producer_metrics(&self, now: Instant) -> Vec<(&'static str, f64)> {
        self.machines.producer.metrics(now)
    }

    /// With `on`, the client hands its CPU-bound work out through [`Client::poll_work`]:
    /// compressing the producer's gzip and zstd batches (instead of compressing each on the
    /// caller's thread as it leaves), and decompressing the consumer's fetched gzip and zstd
    /// data (instead of as the application polls it). Off by default. A driver that turns it
    /// on must run every [`Work`](crate::Work) and give its result to
    /// [`Client::handle_work_done`]: until then that batch, and the batches behind it in its
    /// partition, wait (and expire at their delivery timeout); and so do that fetched data,
    /// and every record fetched after it, for the application, with no timeout.
    pub fn offload_work(&mut self, on: bool) {
        self.machines.producer.offload(on);
        self.machines.consumer.offload(on);
    }

    /// The next piece of work handed out (see [`Client::offload_work`]); drain it with the
    /// transmits.
    pub fn poll_work(&mut self) -> Option<crate::Work> {
        use crate::work::Kind;
        if let Some(seal) = self.machines.producer.poll_work() {
            return Some(crate::Work(Kind::Seal(seal)));
        }
        self.machines.consumer.poll_work().map(|decode| crate::Work(Kind::Decode(decode)))
    }

    /// A [`Work`](crate::Work) from [`Client::poll_work`] is done: its batch may leave, or
    /// its records be polled.
    pub fn handle_work_done(&mut self, now: Instant, done: crate::WorkDone) {
        match done.0 {
            crate::work::Done::Sealed(sealed) => self.machines.producer.handle_work_done(sealed),
            crate::work::Done::Decoded(decoded) => self.machines.consumer.handle_work_done(decoded),
        }
        self.settle(now);
    }

    /// Whether the producer writes idempotently (the configuration decides).
    pub fn producer_idempotent(&self) -> bool {
        self.machines.producer.is_idempotent()
    }

    // ---- consumer ------------------------------------------------------------------------

    /// Assigns `partitions` to the consumer, replacing its assignment (partitions it keeps
    /// keep their positions). Each new partition starts at the group's committed offset
    /// (with `group.id`) or else where `auto.offset.reset` says.
    pub fn assign(&mut self, now: Instant, partitions: Vec<TopicPartition>) -> Result<(), ConsumeError> {
        let (machines, mut ctx) = self.split();
        let result = machines.consumer.assign(now, partitions, &mut ctx);
        self.settle(now);
        result
    }

    /// Joins the consumer's group (`group.id`, classic protocol) subscribed to `topics`
    /// (replacing the subscription). The group's assignor decides the partitions; each change
    /// comes as an [`Event::Rebalance`]. Needs `group.id`; refused while partitions are
    /// assigned by hand.
    pub fn subscribe(&mut self, now: Instant, topics: Vec<TopicName>) -> Result<(), ConsumeError> {
        let (machines, mut ctx) = self.split();
        let result = machines.consumer.subscribe(now, topics, &mut ctx);
        self.settle(now);
        result
    }

    /// [`Client::subscribe`] to every topic whose whole name matches `pattern` (a regular
    /// expression, as Java's `subscribe(Pattern)`); topics created later that match join the
    /// subscription at the next metadata refresh (`metadata.max.age.ms`). Internal topics are
    /// left out.
    pub fn subscribe_pattern(&mut self, now: Instant, pattern: &str) -> Result<(), ConsumeError> {
        let (machines, mut ctx) = self.split();
        let result = machines.consumer.subscribe_pattern(now, pattern, &mut ctx);
        self.settle(now);
        result
    }

    /// Leaves the group; its partitions are revoked (committed first, with auto-commit).
    pub fn unsubscribe(&mut self, now: Instant) {
        let (machines, mut ctx) = self.split();
        machines.consumer.unsubscribe(now, &mut ctx);
        self.settle(now);
    }

    /// With `on`, partitions a rebalance revokes wait for [`Client::ack_rebalance`]: they
    /// keep their positions (for a commit) and fetch nothing more, and the group member goes
    /// on with the rebalance only then (or after `max.poll.interval.ms`). Off by default.
    pub fn set_rebalance_listener(&mut self, now: Instant, on: bool) {
        let (machines, mut ctx) = self.split();
        machines.consumer.set_rebalance_listener(now, on, &mut ctx);
        self.settle(now);
    }

    /// The application handled the revocation of [`Event::Rebalance`] `id`.
    pub fn ack_rebalance(&mut self, now: Instant, id: crate::consumer::RebalanceId) {
        let (machines, mut ctx) = self.split();
        machines.consumer.ack_rebalance(now, id, &mut ctx);
        self.settle(now);
    }

    /// The topics the consumer subscribes to.
    pub fn subscription(&self) -> Vec<TopicName> {
        self.machines.consumer.subscription()
    }

    /// The consumer's assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.machines.consumer.assignment()
    }

    /// Moves an assigned partition's position to `offset`; records fetched before are
    /// dropped, so the next record polled from it is at `offset` (or the first after it).
    pub fn seek(&mut self, now: Instant, partition: &TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        self.machines.consumer.seek(partition, offset)?;
        self.settle(now);
        Ok(())
    }

    /// Moves an assigned partition's position to the offset `spec` names (looked up now).
    pub fn seek_to(&mut self, now: Instant, partition: &TopicPartition, spec: OffsetSpec) -> Result<(), ConsumeError> {
        self.machines.consumer.seek_to(now, partition, spec)?;
        self.settle(now);
        Ok(())
    }

    /// Stops fetching an assigned partition until [`Client::resume`].
    pub fn pause(&mut self, now: Instant, partition: &TopicPartition) -> Result<(), ConsumeError> {
        self.machines.consumer.pause(partition, true)?;
        self.settle(now);
        Ok(())
    }

    /// Fetches a paused partition again.
    pub fn resume(&mut self, now: Instant, partition: &TopicPartition) -> Result<(), ConsumeError> {
        self.machines.consumer.pause(partition, false)?;
        self.settle(now);
        Ok(())
    }

    /// The next offset the consumer returns for a partition, `None` while it is not known yet.
    pub fn position(&self, partition: &TopicPartition) -> Result<Option<i64>, ConsumeError> {
        self.machines.consumer.position(partition)
    }

    /// Positions of every partition that has one: what committing "all consumed" sends.
    pub fn positions(&self) -> Vec<(TopicPartition, CommittedOffset)> {
        self.machines.consumer.positions()
    }

    /// Whether [`Client::poll_records`] has something to return (records or an error).
    pub fn has_records(&self) -> bool {
        self.machines.consumer.has_records()
    }

    /// Bytes of fetched records waiting to be polled (bounded by `fetch.buffer.memory`).
    pub fn consumer_buffered(&self) -> usize {
        self.machines.consumer.buffered_bytes()
    }

    /// Up to `max` fetched records (and never more than `max.poll.records`), moving
    /// positions past them; empty when nothing is buffered. An error (no offset to start
    /// from, a refused or corrupt partition) is returned by a poll that has no records before
    /// it. Taking records makes room for more fetches.
    pub fn poll_records(&mut self, now: Instant, max: usize) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let before = self.machines.consumer.buffered_bytes();
        let records = self.machines.consumer.poll(now, max);
        if self.machines.consumer.buffered_bytes() != before {
            self.settle(now);
        }
        records
    }

    /// Looks up offsets by `spec` (earliest, latest, or by timestamp) for any partitions;
    /// answers with [`Event::ListedOffsets`] within `default.api.timeout.ms`.
    pub fn list_offsets(&mut self, now: Instant, partitions: Vec<(TopicPartition, OffsetSpec)>) -> RequestId {
        let refused = |id| Event::ListedOffsets { id, result: Err(ConsumeError::Closed) };
        let id = match self.admit(refused) {
            Ok(id) => id,
            Err(id) => return id,
        };
        let (machines, mut ctx) = self.split();
        machines.consumer.list_offsets(now, id, partitions, &mut ctx);
        self.settle(now);
        id
    }

    /// Reads the group's committed offsets for `partitions`; answers with
    /// [`Event::CommittedOffsets`]. Needs `group.id`.
    pub fn committed(&mut self, now: Instant, partitions: Vec<TopicPartition>) -> RequestId {
        let refused = |id| Event::CommittedOffsets { id, result: Err(ConsumeError::Closed) };
        let id = match self.admit(refused) {
            Ok(id) => id,
            Err(id) => return id,
        };
        self.machines.consumer.committed(now, id, partitions);
        self.settle(now);
        id
    }

    /// Commits `offsets` for the group (each the next offset to consume); answers with
    /// [`Event::Committed`]. Needs `group.id`. Without group membership the commit is a
    /// standalone one, which the coordinator takes only while the group has no members.
    pub fn commit(&mut self, now: Instant, offsets: Vec<(TopicPartition, CommittedOffset)>) -> RequestId {
        let refused = |id| Event::Committed { id, result: Err(ConsumeError::Closed) };
        let id = match self.admit(refused) {
            Ok(id) => id,
            Err(id) => return id,
        };
        self.machines.consumer.commit(now, id, offsets);
        self.settle(now);
        id
    }

    /// The consumer's metrics by their Java names (`records-consumed-rate`,
    /// `fetch-latency-avg`, `records-lag-max`, `commit-latency-avg`, `assigned-partitions`,
    /// `last-poll-seconds-ago`, ...; see [`crate::consumer`]'s metrics table), at `now`.
    pub fn consumer_metrics(&self, now: Instant) -> Vec<(&'static str, f64)> {
        self.machines.consumer.metrics(now)
    }

    /// Per positioned partition: its position and the high watermark last seen.
    pub fn consumer_lags(&self) -> Vec<(TopicPartition, i64, i64)> {
        self.machines.consumer.lags()
    }

    /// Stops taking commands; requests already submitted complete or time out, then every
    /// connection closes and [`Event::Closed`] is emitted.
    pub fn close(&mut self, now: Instant) {
        self.closing = true;
        for owner in Machines::ORDER {
            self.machines.get(owner).close(now);
        }
        self.settle(now);
    }

    // ---- B: inputs -------------------------------------------------------------------

    /// Feeds what a socket did.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { conn } => {
                if let Some(slot) = self.slots.get_mut(&conn) {
                    slot.conn.on_connected(now);
                    match slot.conn.tls_start_error().cloned() {
                        Some(e) => self.close_conn(now, conn, CloseCause::Local(LocalClose::Tls(e)), true),
                        None => self.arm_conn_timer(conn),
                    }
                }
            }
            Input::Received { conn, data } => self.on_received(now, conn, data),
            Input::Closed { conn, cause } => {
                let explained =
                    self.slots.get(&conn).and_then(|s| s.conn.explain_close().or_else(|| s.conn.explain_sasl_close()));
                let cause = explained.map_or(cause, CloseCause::Local);
                self.close_conn(now, conn, cause, false)
            }
        }
        self.settle(now);
    }

    /// Advances timers: request and connect timeouts, idle connections, backoff expiry, and
    /// each machine's own (periodic metadata refresh, lookup retries, queued deadlines).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                RouterTimer::Conn(conn) => self.on_conn_timer(now, conn),
                // Passed: no longer a deadline, so a driver never spins on it.
                RouterTimer::Backoff(node) => {
                    if let Some(h) = self.health.get_mut(&node) {
                        h.retry_at = None;
                    }
                }
            }
        }
        while let Some((conn, _)) = self.request_deadlines.pop_due(now) {
            self.expire_in_flight(now, conn);
        }
        for owner in Machines::ORDER {
            let (machines, mut ctx) = self.split();
            machines.get(owner).handle_timeout(now, &mut ctx);
        }
        self.settle(now);
    }

    // ---- D: outputs ------------------------------------------------------------------

    /// The next socket operation for the driver.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        for (id, slot) in &mut self.slots {
            if let Some(bytes) = slot.conn.take_output() {
                return Some(Transmit::Send { conn: *id, bytes });
            }
        }
        None
    }

    /// When [`Client::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let machines = Machines::ORDER.iter().filter_map(|o| self.machines.get_ref(*o).poll_timeout());
        [self.timers.soonest(), self.request_deadlines.soonest()].into_iter().flatten().chain(machines).min()
    }

    /// The next completed command.
    pub fn poll_event(&mut self) -> Option<Event> {
        // Machines hold their own outcomes (moved once, not through a second queue); the
        // router's own (refusals while closing, then `Closed`) come after them.
        for owner in Machines::ORDER {
            if let Some(e) = self.machines.get(owner).poll_event() {
                return Some(e);
            }
        }
        self.events.pop_front()
    }

    // ---- the router ------------------------------------------------------------------

    /// The machines, and a [`Ctx`] over the rest of the router for calling them.
    fn split(&mut self) -> (&mut Machines, Ctx<'_>) {
        let ctx = Ctx {
            config: &self.config,
            cluster: &mut self.cluster,
            failures: &self.failures,
            last_failure: self.last_failure.as_ref(),
            signals: &mut self.signals,
            #[cfg(feature = "plants")]
            plant: self.plant,
        };
        (&mut self.machines, ctx)
    }

    /// After every input or command: apply what machines signalled, send what can go, and
    /// finish closing once nothing is left.
    fn settle(&mut self, now: Instant) {
        self.apply_signals(now);
        self.pump(now);
        self.finish_close();
    }

    fn apply_signals(&mut self, now: Instant) {
        while !self.signals.is_empty() {
            for signal in std::mem::take(&mut self.signals) {
                match signal {
                    Signal::RefreshMetadata => self.want_refresh(now),
                    Signal::CoordinatorStale(key) => self.machines.coordinators.invalidate(&key),
                    Signal::TrackTopic { topic, auto_create } => {
                        self.machines.metadata.track(topic, auto_create);
                        self.want_refresh(now);
                    }
                    Signal::TrackAllTopics => {
                        self.machines.metadata.track_all();
                        self.want_refresh(now);
                    }
                    Signal::MetadataChanged => {
                        let (machines, mut ctx) = self.split();
                        for owner in Machines::ORDER {
                            machines.get(owner).handle_metadata(now, &mut ctx);
                        }
                    }
                    Signal::FailTarget { target, error, issued_before } => {
                        for owner in Machines::ORDER {
                            self.machines.get(owner).fail_target(now, &target, &error, issued_before);
                        }
                    }
                }
            }
        }
    }

    /// A closing client still refreshes when asked: a closing producer's records may wait
    /// for their topic or a moved leader, and the close is to deliver them.
    fn want_refresh(&mut self, now: Instant) {
        self.work_created |= self.machines.metadata.want_refresh(now);
    }

    /// Moves work forward: each round, every machine names the targets it has work for;
    /// each target is resolved to a node, a connection opened if needed, and one request
    /// pulled per ready connection with room. Rounds repeat while requests go out.
    fn pump(&mut self, now: Instant) {
        // A scratch list kept across calls, so a round allocates nothing.
        let mut wanted = std::mem::take(&mut self.scratch);
        loop {
            wanted.clear();
            for owner in Machines::ORDER {
                self.machines.get(owner).wanted(now, &mut wanted);
            }
            if wanted.is_empty() {
                break;
            }
            wanted.sort_unstable();
            wanted.dedup();
            self.work_created = false;
            let mut progress = false;
            for (target, role) in &wanted {
                let node = match self.resolve(now, target, *role) {
                    Resolved::Node(n) => n,
                    Resolved::Wait => continue,
                    Resolved::Fail { error, issued_before } => {
                        self.signals.push(Signal::FailTarget { target: target.clone(), error, issued_before });
                        continue;
                    }
                };
                let Some(conn) = self.ready_connection(now, node, *role) else { continue };
                progress |= self.pull(now, conn, target);
            }
            self.apply_signals(now);
            // Resolving may have created work (a lookup, a refresh): one more round then.
            if !progress && !self.work_created {
                break;
            }
        }
        self.scratch = wanted;
    }

    /// Asks the machines, in turn, for one request for `target` on `conn`; sends it.
    fn pull(&mut self, now: Instant, conn: ConnId, target: &Target) -> bool {
        let n = Machines::ORDER.len();
        for i in 0..n {
            let owner = Machines::ORDER[(self.first_asked + i) % n];
            let Some(slot) = self.slots.get(&conn) else { return false };
            let Some(versions) = slot.conn.versions() else { return false };
            let link = Link { node: slot.node, role: slot.role, address: &slot.address, versions };
            let mut ctx = Ctx {
                config: &self.config,
                cluster: &mut self.cluster,
                failures: &self.failures,
                last_failure: self.last_failure.as_ref(),
                signals: &mut self.signals,
                #[cfg(feature = "plants")]
                plant: self.plant,
            };
            if let Some(out) = self.machines.get(owner).poll_request(now, target, &link, &mut ctx) {
                self.first_asked = (self.first_asked + i + 1) % n;
                self.transmit(now, conn, owner, out);
                return true;
            }
        }
        false
    }

    fn transmit(&mut self, now: Instant, conn: ConnId, owner: Owner, out: Outgoing) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        self.next_timer += 1;
        let timer = self.next_timer;
        let token = Token { owner, tag: out.tag, deadline: out.deadline, timeout: out.timeout, timer };
        let (node, address) = (slot.node, slot.address.clone());
        match slot.conn.send(now, &out.body, out.version, token, out.expects_response) {
            Ok(None) => self.request_deadlines.insert(out.deadline, (conn, timer)),
            Ok(Some(token)) => {
                let response = Response { node, address, version: out.version, body: None };
                self.answer(now, owner, token.tag, Ok(response));
            }
            Err((e, token)) => self.answer(now, owner, token.tag, Err(RequestError::Encode(e))),
        }
        self.arm_conn_timer(conn);
    }

    /// Where requests for `target` go now.
    fn resolve(&mut self, now: Instant, target: &Target, role: Role) -> Resolved {
        match target {
            Target::AnyBroker => self.pick_any(now, role),
            Target::Bootstrap(i) => {
                if *i < self.config.bootstrap_servers.len() {
                    Resolved::Node(Node::Bootstrap(*i))
                } else {
                    Resolved::Fail { error: RequestError::UnknownBootstrap(*i), issued_before: now }
                }
            }
            Target::Broker(id) => {
                if self.cluster.broker(*id).is_some() {
                    return Resolved::Node(Node::Broker(*id));
                }
                // A broker missing from metadata older than a request may have joined (or come
                // back) since: fail only the requests that metadata fetched after them lacks.
                let settled = self.cluster.is_known() && !self.machines.metadata.refresh_pending(now);
                self.want_refresh(now);
                match self.cluster.updated_at {
                    Some(at) if settled => {
                        Resolved::Fail { error: RequestError::UnknownBroker(*id), issued_before: at }
                    }
                    _ => Resolved::Wait,
                }
            }
            Target::Controller => match self.cluster.controller {
                Some(id) if self.cluster.broker(id).is_some() => Resolved::Node(Node::Broker(id)),
                _ => {
                    self.want_refresh(now);
                    Resolved::Wait
                }
            },
            Target::GroupCoordinator(_) | Target::TransactionCoordinator(_) => {
                let Some(key) = CoordinatorKey::of(target) else { return Resolved::Wait };
                let (machines, ctx) = self.split();
                let (found, started) = machines.coordinators.resolve(now, &key, &ctx);
                self.work_created |= started;
                match found {
                    Some(id) if self.cluster.broker(id).is_some() => Resolved::Node(Node::Broker(id)),
                    Some(_) => {
                        self.want_refresh(now);
                        Resolved::Wait
                    }
                    None => Resolved::Wait,
                }
            }
        }
    }

    /// Picks the node for `AnyBroker`: the least loaded ready connection of `role`; otherwise
    /// wait for one being opened; otherwise open one to a known broker, then a bootstrap
    /// address.
    fn pick_any(&mut self, now: Instant, role: Role) -> Resolved {
        let max = self.config.max_in_flight_per_connection;
        let mut opening = None;
        let mut any_full = false;
        let mut best: Option<(usize, Node)> = None;
        for s in self.slots.values().filter(|s| s.role == role) {
            let load = s.conn.in_flight_len();
            if !s.conn.is_ready() {
                opening = opening.or(Some(s.node));
            } else if load >= max {
                any_full = true;
            } else if best.is_none_or(|b| (load, s.node) < b) {
                best = Some((load, s.node));
            }
        }
        if let Some((_, node)) = best {
            return Resolved::Node(node);
        }
        if let Some(node) = opening {
            return Resolved::Node(node);
        }
        if any_full {
            return Resolved::Wait;
        }
        let mut brokers: Vec<Node> = self.cluster.brokers.keys().map(|id| Node::Broker(*id)).collect();
        if !brokers.is_empty() {
            let start = self.rng.below(brokers.len() as u64) as usize;
            brokers.rotate_left(start);
        }
        let bootstrap = (0..self.config.bootstrap_servers.len()).map(Node::Bootstrap);
        match brokers.into_iter().chain(bootstrap).find(|n| !self.in_backoff(*n, now)) {
            Some(n) => Resolved::Node(n),
            None => Resolved::Wait,
        }
    }

    fn in_backoff(&self, node: Node, now: Instant) -> bool {
        self.health.get(&node).and_then(|h| h.retry_at).is_some_and(|t| t > now)
    }

    fn address_of(&self, node: Node) -> Option<BrokerAddress> {
        match node {
            Node::Bootstrap(i) => self.config.bootstrap_servers.get(i).cloned(),
            Node::Broker(id) => self.cluster.broker(id).map(|b| b.address.clone()),
        }
    }

    /// The ready connection to `node` for `role` with room for a request; opens one when
    /// there is none and the node is not backing off.
    fn ready_connection(&mut self, now: Instant, node: Node, role: Role) -> Option<ConnId> {
        #[cfg(feature = "plants")]
        let role = if self.plant == Some(crate::plants::Plant::FetchOnSharedConnection) { Role::General } else { role };
        match self.by_node.get(&(node, role)) {
            Some(id) => {
                let slot = self.slots.get(id)?;
                let room = slot.conn.in_flight_len() < self.config.max_in_flight_per_connection;
                (slot.conn.is_ready() && room).then_some(*id)
            }
            None => {
                if !self.in_backoff(node, now) {
                    self.open(now, node, role);
                }
                None
            }
        }
    }

    fn open(&mut self, now: Instant, node: Node, role: Role) {
        let Some(address) = self.address_of(node) else { return };
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        #[allow(unused_mut)]
        let mut conn = Connection::new(
            now,
            self.config.max_frame_size,
            &self.config.client_id,
            (&self.config.client_software_name, &self.config.client_software_version),
        )
        .with_security(&self.config.security, &address.host, self.config.rng_seed.unwrap_or(0) ^ id.0)
        .with_wall_clock(self.wall_clock);
        #[cfg(feature = "plants")]
        {
            conn.swap_owners = self.plant == Some(crate::plants::Plant::SwapOwners);
        }
        self.slots.insert(id, Slot { node, role, address: address.clone(), opened: now, conn });
        self.by_node.insert((node, role), id);
        self.transmits.push_back(Transmit::Open { conn: id, address });
        self.arm_conn_timer(id);
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.config.connection_setup_timeout,
            handshake: self.config.request_timeout,
            idle: self.config.connections_max_idle,
        }
    }

    fn arm_conn_timer(&mut self, conn: ConnId) {
        let timeouts = self.timeouts();
        match self.slots.get(&conn).and_then(|s| s.conn.poll_timeout(timeouts)) {
            Some((at, _)) => self.timers.set(RouterTimer::Conn(conn), at),
            None => self.timers.cancel(&RouterTimer::Conn(conn)),
        }
    }

    fn on_conn_timer(&mut self, now: Instant, conn: ConnId) {
        let timeouts = self.timeouts();
        let Some(slot) = self.slots.get(&conn) else { return };
        match slot.conn.poll_timeout(timeouts) {
            Some((at, expiry)) if at <= now => {
                let cause = match expiry {
                    Expiry::Connect => CloseCause::ConnectTimeout,
                    Expiry::Handshake => CloseCause::Local(LocalClose::HandshakeTimeout),
                    Expiry::Idle => CloseCause::Local(LocalClose::Idle),
                };
                self.close_conn(now, conn, cause, true);
            }
            _ => self.arm_conn_timer(conn),
        }
    }

    fn on_received(&mut self, now: Instant, conn: ConnId, data: Bytes) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        let (node, opened) = (slot.node, slot.opened);
        let mut events = std::mem::take(&mut self.conn_events);
        let outcome = slot.conn.on_bytes(now, data, &mut events);
        // What completed before a protocol violation still counts.
        for event in events.drain(..) {
            match event {
                // The node is reachable again, unless another of its connections failed since
                // this one was opened: then that one's backoff stands.
                ConnEvent::Ready if self.health.get(&node).is_none_or(|h| h.last_failure <= opened) => {
                    self.health.remove(&node);
                    self.timers.cancel(&RouterTimer::Backoff(node));
                }
                ConnEvent::Ready => {}
                ConnEvent::Response { token, version, result } => {
                    self.request_deadlines.remove(token.deadline, (conn, token.timer));
                    let Some(address) = self.slots.get(&conn).map(|s| s.address.clone()) else { break };
                    let result = match result {
                        Ok(body) => Ok(Response { node, address, version, body: Some(body) }),
                        Err(error) => Err(RequestError::InvalidResponse { address, error }),
                    };
                    self.answer(now, token.owner, token.tag, result);
                }
            }
        }
        self.conn_events = events;
        match outcome {
            Ok(()) => self.arm_conn_timer(conn),
            Err(e) => self.close_conn(now, conn, CloseCause::Local(e.into()), true),
        }
    }

    /// Hands a request's outcome to the machine that owns it.
    fn answer(&mut self, now: Instant, owner: Owner, tag: Tag, result: Result<Response, RequestError>) {
        let (machines, mut ctx) = self.split();
        machines.get(owner).handle_response(now, tag, result, &mut ctx);
    }

    /// A request on `conn` ran out of time: the connection closes, as answers come in order
    /// and the late one would hold up the rest; the others in flight fail as disconnected.
    fn expire_in_flight(&mut self, now: Instant, conn: ConnId) {
        let Some(mut slot) = self.slots.remove(&conn) else { return };
        self.forget_conn(conn, &slot);
        self.transmits.push_back(Transmit::Close { conn });
        let tokens: Vec<Token> = slot.conn.drain_in_flight().map(|f| f.token).collect();
        for token in tokens {
            self.request_deadlines.remove(token.deadline, (conn, token.timer));
            let error = if token.deadline <= now {
                RequestError::Timeout(token.timeout)
            } else {
                let cause = CloseCause::Local(LocalClose::RequestTimeout);
                RequestError::Disconnected { address: slot.address.clone(), cause }
            };
            self.answer(now, token.owner, token.tag, Err(error));
        }
    }

    fn forget_conn(&mut self, conn: ConnId, slot: &Slot) {
        if self.by_node.get(&(slot.node, slot.role)) == Some(&conn) {
            self.by_node.remove(&(slot.node, slot.role));
        }
        self.timers.cancel(&RouterTimer::Conn(conn));
    }

    /// Closes `conn`: fails what was in flight, records the failure for backoff.
    fn close_conn(&mut self, now: Instant, conn: ConnId, cause: CloseCause, tell_driver: bool) {
        let Some(mut slot) = self.slots.remove(&conn) else { return };
        self.forget_conn(conn, &slot);
        if tell_driver {
            self.transmits.push_back(Transmit::Close { conn });
        }
        let idle = cause == CloseCause::Local(LocalClose::Idle);
        // Hung up before answering ApiVersions (as pre-0.10 brokers do); a close during SASL
        // comes after it, and a TLS answer to a plaintext ApiVersions is no old broker.
        let before_handshake = slot.conn.is_open()
            && slot.conn.versions().is_none()
            && !matches!(cause, CloseCause::Local(LocalClose::Tls(_) | LocalClose::ExpectsTls));
        let mut fatal = matches!(&cause, CloseCause::Local(l) if l.is_fatal());
        if !idle {
            let health = self.health.entry(slot.node).or_insert(Health {
                failures: 0,
                hello_hangups: 0,
                retry_at: None,
                last_failure: now,
            });
            health.failures = health.failures.saturating_add(1);
            health.last_failure = now;
            // Kafka hangs up on a TLS hello at once on a plaintext listener. Once could be a
            // restart; three times in a row is the listener.
            if cause == CloseCause::Local(LocalClose::Tls(TlsError::HungUpOnHello)) {
                health.hello_hangups += 1;
                fatal |= health.hello_hangups >= HELLO_HANGUPS_FATAL;
            } else {
                health.hello_hangups = 0;
            }
            let retry_at = now + self.config.reconnect_backoff.delay(health.failures, &mut self.rng);
            health.retry_at = Some(retry_at);
            self.timers.set(RouterTimer::Backoff(slot.node), retry_at);
            let failure = Failure { address: slot.address.clone(), cause: cause.clone(), at: now };
            self.failures.insert(slot.node, failure.clone());
            self.last_failure = Some(failure);
            // The broker may have moved or died: metadata should say.
            #[cfg(feature = "plants")]
            let refresh = self.plant != Some(crate::plants::Plant::NoRefreshOnBrokerLoss);
            #[cfg(not(feature = "plants"))]
            let refresh = true;
            if matches!(slot.node, Node::Broker(_)) && refresh {
                self.want_refresh(now);
            }
        }
        let tokens: Vec<Token> = slot.conn.drain_in_flight().map(|f| f.token).collect();
        for token in tokens {
            self.request_deadlines.remove(token.deadline, (conn, token.timer));
            let error = RequestError::Disconnected { address: slot.address.clone(), cause: cause.clone() };
            self.answer(now, token.owner, token.tag, Err(error));
        }
        for owner in Machines::ORDER {
            self.machines.get(owner).handle_closed(now, slot.node, &slot.address, before_handshake && !idle);
        }
        // Credentials are the same for every broker, so a refusal would recur on each retry:
        // what waits for a connection fails now, not at its deadline.
        if fatal {
            let mut wanted = Vec::new();
            for owner in Machines::ORDER {
                self.machines.get(owner).wanted(now, &mut wanted);
            }
            wanted.sort_unstable();
            wanted.dedup();
            for (target, _) in wanted {
                let error = RequestError::Unreachable { address: slot.address.clone(), cause: cause.clone() };
                self.signals.push(Signal::FailTarget { target, error, issued_before: now });
            }
            self.apply_signals(now);
        }
    }

    /// Once closing and nothing is left, closes every connection and emits `Closed`.
    fn finish_close(&mut self) {
        if !self.closing || self.closed {
            return;
        }
        let idle = Machines::ORDER.iter().all(|o| self.machines.get(*o).is_idle());
        if !idle || self.slots.values().any(|s| s.conn.in_flight_len() > 0) {
            return;
        }
        for (id, _) in std::mem::take(&mut self.slots) {
            self.transmits.push_back(Transmit::Close { conn: id });
        }
        self.by_node.clear();
        self.timers = TimerTable::default();
        self.request_deadlines.clear();
        self.closed = true;
        self.events.push_back(Event::Closed);
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
