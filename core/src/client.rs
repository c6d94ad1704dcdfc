//! The client façade: the one type a runtime adapter drives.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cluster::{needs_quick_refresh, ClusterMetadata};
use crate::config::{BrokerAddress, Config};
use crate::connection::{BrokerApiVersions, ConnEvent, Connection, ConnectionError, VersionError};
use crate::protocol::kafka_release::{infer_release, ReleaseGuess};
use crate::protocol::messages::find_coordinator::request::FindCoordinatorRequest;
use crate::protocol::messages::metadata::request::MetadataRequestTopic;
use crate::protocol::messages::MetadataRequest;
use crate::protocol::{
    ApiKey, BrokerId, DecodeError, EncodeError, ErrorCode, GroupId, RequestBody, ResponseBody, StrBytes, TopicName,
    TransactionalId,
};
use crate::rand::Rng;

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
    Local(String),
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
    /// [`Client::close`] finished: every request completed and every connection is closed.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CoordinatorKey {
    Group(GroupId),
    Transaction(TransactionalId),
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // most work is user requests; boxing would allocate for each
enum Work {
    User {
        body: RequestBody,
        version: Option<i16>,
    },
    CheckVersion,
    /// `user` is set when the application asked; `None` for the client's own refreshes.
    Metadata {
        topics: Option<Vec<TopicName>>,
        user: Option<RequestId>,
    },
    FindCoordinator(CoordinatorKey),
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    target: Target,
    work: Work,
    /// When the application (or the client itself) asked for it.
    issued: Instant,
    deadline: Instant,
    not_before: Option<Instant>,
    last_failure: Option<(BrokerAddress, CloseCause)>,
}

impl Pending {
    /// Work asked for at `now`, due within `timeout`.
    fn new(id: RequestId, target: Target, work: Work, now: Instant, timeout: Duration) -> Pending {
        Pending { id, target, work, issued: now, deadline: now + timeout, not_before: None, last_failure: None }
    }
}

/// What a response in flight belongs to.
#[derive(Debug)]
struct Token {
    pending: Pending,
    deadline: Instant,
}

#[derive(Debug)]
struct Slot {
    node: Node,
    address: BrokerAddress,
    created: Instant,
    conn: Connection<Token>,
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
    last_failure: Option<CloseCause>,
}

#[derive(Debug)]
struct MetadataSchedule {
    next_refresh: Instant,
    in_flight: bool,
    failures: u32,
    /// When the last metadata answer arrived.
    updated_at: Option<Instant>,
}

enum Resolved {
    Node(Node),
    Wait,
    Fail(RequestError),
}

/// A Kafka client as a pure state machine: bytes and timestamps in, bytes and timer requests
/// out. It owns connections, metadata and coordinator lookups; it never blocks, sleeps,
/// spawns, or reads a clock.
///
/// The driver loop (see the crate docs) calls it in four ways:
///
/// - **A — getters** on `&self`: [`Client::metadata`], [`Client::config`].
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
/// Time only moves forward: pass the driver's current `Instant` every time. A spurious
/// `handle_timeout` does nothing.
#[derive(Debug)]
pub struct Client {
    config: Config,
    rng: Rng,
    next_conn: u64,
    next_request: u64,
    slots: BTreeMap<ConnId, Slot>,
    by_node: BTreeMap<Node, ConnId>,
    health: BTreeMap<Node, Health>,
    pending: VecDeque<Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    cluster: ClusterMetadata,
    schedule: MetadataSchedule,
    tracked_topics: BTreeSet<TopicName>,
    coordinators: BTreeMap<CoordinatorKey, BrokerId>,
    closing: bool,
    closed: bool,
    #[cfg(feature = "plants")]
    plant: Option<crate::plants::Plant>,
}

impl Client {
    /// A client that has not connected anywhere yet; the first command opens connections.
    /// Without [`Config::rng_seed`], random choices start from seed 0: drivers fill the seed
    /// in from the operating system, simulations pin it.
    pub fn new(config: Config, now: Instant) -> Self {
        Client {
            rng: Rng::new(config.rng_seed.unwrap_or(0)),
            next_conn: 0,
            next_request: 0,
            slots: BTreeMap::new(),
            by_node: BTreeMap::new(),
            health: BTreeMap::new(),
            pending: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cluster: ClusterMetadata::default(),
            schedule: MetadataSchedule {
                next_refresh: now + config.metadata_max_age,
                in_flight: false,
                failures: 0,
                updated_at: None,
            },
            tracked_topics: BTreeSet::new(),
            coordinators: BTreeMap::new(),
            closing: false,
            closed: false,
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
    }

    // ---- C: commands -----------------------------------------------------------------

    fn next_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn submit(&mut self, now: Instant, target: Target, work: Work) -> RequestId {
        let id = self.next_id();
        self.submit_as(now, id, target, work);
        id
    }

    /// Queues `work` under an id already taken (work that carries its own id).
    fn submit_as(&mut self, now: Instant, id: RequestId, target: Target, work: Work) {
        if self.closing {
            self.complete(id, &work, Err(RequestError::ClientClosed));
            return;
        }
        self.pending.push_back(Pending::new(id, target, work, now, self.config.request_timeout));
        self.pump(now);
    }

    /// Sends `body` to `target` at the highest version both sides support, or at `version`
    /// when given. The answer arrives as [`Event::Response`].
    pub fn request(&mut self, now: Instant, target: Target, body: RequestBody, version: Option<i16>) -> RequestId {
        self.submit(now, target, Work::User { body, version })
    }

    /// Fetches metadata for `topics` (every topic when `None`) and answers with
    /// [`Event::Metadata`]. Named topics are also kept fresh by later periodic refreshes.
    pub fn refresh_metadata(&mut self, now: Instant, topics: Option<Vec<TopicName>>) -> RequestId {
        if let Some(t) = &topics {
            self.tracked_topics.extend(t.iter().cloned());
        }
        let id = self.next_id();
        self.submit_as(now, id, Target::AnyBroker, Work::Metadata { topics, user: Some(id) });
        id
    }

    /// Connects to `target` and reports the API versions it advertises and the Kafka release
    /// they indicate, as [`Event::Versions`].
    pub fn check_version(&mut self, now: Instant, target: Target) -> RequestId {
        self.submit(now, target, Work::CheckVersion)
    }

    /// Stops taking commands; requests already submitted complete or time out, then every
    /// connection closes and [`Event::Closed`] is emitted.
    pub fn close(&mut self, now: Instant) {
        self.closing = true;
        // The client's own metadata refreshes have no one waiting for them.
        self.pending.retain(|p| !matches!(p.work, Work::Metadata { user: None, .. }));
        self.schedule.in_flight = false;
        self.pump(now);
    }

    // ---- B: inputs -------------------------------------------------------------------

    /// Feeds what a socket did.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { conn } => {
                if let Some(slot) = self.slots.get_mut(&conn) {
                    slot.conn.on_connected(now);
                }
            }
            Input::Received { conn, data } => {
                let Some(slot) = self.slots.get_mut(&conn) else { return };
                match slot.conn.on_bytes(now, &data) {
                    Ok(events) => {
                        let node = slot.node;
                        for e in events {
                            self.on_conn_event(now, conn, node, e);
                        }
                    }
                    Err(e) => self.close_conn(now, conn, CloseCause::Local(protocol_violation(&e)), true),
                }
            }
            Input::Closed { conn, cause } => self.close_conn(now, conn, cause, false),
        }
        self.pump(now);
    }

    /// Advances timers: request and connect timeouts, idle connections, backoff expiry and
    /// periodic metadata refresh.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Requests that ran out of time while waiting to be sent.
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline <= now {
                if let Some(p) = self.pending.remove(i) {
                    let err = match p.last_failure.clone() {
                        Some((address, cause)) => RequestError::Unreachable { address, cause },
                        None => RequestError::Timeout(self.config.request_timeout),
                    };
                    self.fail_pending(now, p, err);
                }
            } else {
                i += 1;
            }
        }
        // Connections: setup timeouts, handshake and request timeouts, idleness.
        let ids: Vec<ConnId> = self.slots.keys().copied().collect();
        for id in ids {
            let Some(slot) = self.slots.get(&id) else { continue };
            let setup_expired =
                slot.conn.opened_at.is_none() && slot.created + self.config.connection_setup_timeout <= now;
            let handshake_expired =
                !slot.conn.is_ready() && slot.conn.opened_at.is_some_and(|t| t + self.config.request_timeout <= now);
            let request_expired = slot.conn.in_flight_tokens().any(|t| t.deadline <= now);
            let idle = slot.conn.is_ready()
                && slot.conn.in_flight_len() == 0
                && slot.conn.last_activity + self.config.connections_max_idle <= now;
            if setup_expired {
                self.close_conn(now, id, CloseCause::ConnectTimeout, true);
            } else if handshake_expired {
                self.close_conn(now, id, CloseCause::Local("no answer to ApiVersions".into()), true);
            } else if request_expired {
                self.expire_in_flight(now, id);
            } else if idle {
                self.close_conn(now, id, CloseCause::Local("idle".into()), true);
            }
        }
        if now >= self.schedule.next_refresh && !self.schedule.in_flight && !self.closing {
            self.schedule_refresh(now);
        }
        // A backoff that has run out is no deadline any more: left in place, `poll_timeout`
        // would keep answering this instant and the driver would spin.
        for h in self.health.values_mut() {
            if h.retry_at.is_some_and(|t| t <= now) {
                h.retry_at = None;
            }
        }
        self.pump(now);
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
        let mut soonest: Option<Instant> = None;
        let mut consider = |t: Instant| soonest = Some(soonest.map_or(t, |s| s.min(t)));
        for p in &self.pending {
            consider(p.deadline);
            if let Some(t) = p.not_before {
                consider(t);
            }
        }
        for slot in self.slots.values() {
            match slot.conn.opened_at {
                None => consider(slot.created + self.config.connection_setup_timeout),
                Some(t) if !slot.conn.is_ready() => consider(t + self.config.request_timeout),
                Some(_) => {}
            }
            // Deadlines run from submission, so a later request may expire first.
            if let Some(deadline) = slot.conn.in_flight_tokens().map(|t| t.deadline).min() {
                consider(deadline);
            } else if slot.conn.is_ready() {
                consider(slot.conn.last_activity + self.config.connections_max_idle);
            }
        }
        if !self.pending.is_empty() {
            for h in self.health.values() {
                if let Some(t) = h.retry_at {
                    consider(t);
                }
            }
        }
        if !self.closing && !self.schedule.in_flight {
            consider(self.schedule.next_refresh);
        }
        soonest
    }

    /// The next completed command.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- internals -------------------------------------------------------------------

    fn schedule_refresh(&mut self, now: Instant) {
        self.schedule.in_flight = true;
        let id = self.next_id();
        let topics = Some(self.tracked_topics.iter().cloned().collect());
        let work = Work::Metadata { topics, user: None };
        self.pending.push_back(Pending::new(id, Target::AnyBroker, work, now, self.config.request_timeout));
    }

    /// Asks for a metadata refresh soon unless one is already under way.
    fn want_refresh(&mut self, now: Instant) {
        if !self.schedule.in_flight && !self.closing {
            self.schedule_refresh(now);
        }
    }

    fn address_of(&self, node: Node) -> Option<BrokerAddress> {
        match node {
            Node::Bootstrap(i) => self.config.bootstrap_servers.get(i).cloned(),
            Node::Broker(id) => self.cluster.broker(id).map(|b| b.address.clone()),
        }
    }

    fn in_backoff(&self, node: Node, now: Instant) -> bool {
        self.health.get(&node).and_then(|h| h.retry_at).is_some_and(|t| t > now)
    }

    /// Picks the node for `AnyBroker`: the least loaded ready connection; otherwise wait for
    /// one being opened; otherwise open one to a known broker, then a bootstrap address.
    fn pick_any(&mut self, now: Instant) -> Resolved {
        let max = self.config.max_in_flight_per_connection;
        let best = self
            .slots
            .values()
            .filter(|s| s.conn.is_ready() && s.conn.in_flight_len() < max)
            .min_by_key(|s| (s.conn.in_flight_len(), s.node))
            .map(|s| s.node);
        if let Some(node) = best {
            return Resolved::Node(node);
        }
        if self.slots.values().any(|s| !s.conn.is_ready() || s.conn.in_flight_len() >= max) {
            // A connection is opening, or every ready one is full: wait for it.
            if let Some(s) = self.slots.values().find(|s| !s.conn.is_ready()) {
                return Resolved::Node(s.node);
            }
            return Resolved::Wait;
        }
        let mut brokers: Vec<Node> = self.cluster.brokers.keys().map(|id| Node::Broker(*id)).collect();
        if !brokers.is_empty() {
            let start = self.rng.below(brokers.len() as u64) as usize;
            brokers.rotate_left(start);
        }
        let bootstrap = (0..self.config.bootstrap_servers.len()).map(Node::Bootstrap);
        let candidates: Vec<Node> = brokers.into_iter().chain(bootstrap).collect();
        match candidates.iter().find(|n| !self.in_backoff(**n, now)) {
            Some(n) => Resolved::Node(*n),
            None => Resolved::Wait,
        }
    }

    /// Where a request issued at `issued` should go now.
    fn resolve(&mut self, now: Instant, target: &Target, issued: Instant) -> Resolved {
        match target {
            Target::AnyBroker => self.pick_any(now),
            Target::Bootstrap(i) => {
                if *i < self.config.bootstrap_servers.len() {
                    Resolved::Node(Node::Bootstrap(*i))
                } else {
                    Resolved::Fail(RequestError::UnknownBootstrap(*i))
                }
            }
            Target::Broker(id) => {
                // A broker missing from metadata older than the request may have joined (or
                // come back) since: fail only once metadata fetched after the request lacks it.
                let fresh = self.schedule.updated_at.is_some_and(|t| t >= issued);
                if self.cluster.broker(*id).is_some() {
                    Resolved::Node(Node::Broker(*id))
                } else if self.cluster.is_known() && !self.schedule.in_flight && fresh {
                    Resolved::Fail(RequestError::UnknownBroker(*id))
                } else {
                    self.want_refresh(now);
                    Resolved::Wait
                }
            }
            Target::Controller => match self.cluster.controller {
                Some(id) if self.cluster.broker(id).is_some() => Resolved::Node(Node::Broker(id)),
                _ => {
                    self.want_refresh(now);
                    Resolved::Wait
                }
            },
            Target::GroupCoordinator(g) => self.resolve_coordinator(now, CoordinatorKey::Group(g.clone())),
            Target::TransactionCoordinator(t) => self.resolve_coordinator(now, CoordinatorKey::Transaction(t.clone())),
        }
    }

    fn resolve_coordinator(&mut self, now: Instant, key: CoordinatorKey) -> Resolved {
        if let Some(id) = self.coordinators.get(&key) {
            if self.cluster.broker(*id).is_some() {
                return Resolved::Node(Node::Broker(*id));
            }
            self.want_refresh(now);
            return Resolved::Wait;
        }
        let looking = self.pending.iter().any(|p| matches!(&p.work, Work::FindCoordinator(k) if *k == key))
            || self
                .slots
                .values()
                .any(|s| s.conn.has_in_flight(|t| matches!(&t.pending.work, Work::FindCoordinator(k) if *k == key)));
        if !looking {
            let id = self.next_id();
            let work = Work::FindCoordinator(key);
            self.pending.push_back(Pending::new(id, Target::AnyBroker, work, now, self.config.request_timeout));
        }
        Resolved::Wait
    }

    /// Moves pending work forward: resolves targets, opens connections, sends what can go.
    fn pump(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].not_before.is_some_and(|t| t > now) {
                i += 1;
                continue;
            }
            // Passed: no longer a deadline for `poll_timeout`, even if the item has to wait.
            self.pending[i].not_before = None;
            let target = self.pending[i].target.clone();
            let node = match self.resolve(now, &target, self.pending[i].issued) {
                Resolved::Node(n) => n,
                Resolved::Wait => {
                    i += 1;
                    continue;
                }
                Resolved::Fail(e) => {
                    if let Some(p) = self.pending.remove(i) {
                        self.fail_pending(now, p, e);
                    }
                    continue;
                }
            };
            match self.by_node.get(&node).copied() {
                None => {
                    if !self.in_backoff(node, now) {
                        self.open(now, node);
                    } else if let Some((addr, cause)) = self.last_failure_of(node) {
                        self.pending[i].last_failure = Some((addr, cause));
                    }
                    i += 1;
                }
                Some(conn) => {
                    let (ready, full) = match self.slots.get(&conn) {
                        Some(s) => {
                            (s.conn.is_ready(), s.conn.in_flight_len() >= self.config.max_in_flight_per_connection)
                        }
                        None => (false, true),
                    };
                    if !ready || full {
                        i += 1;
                        continue;
                    }
                    if let Some(p) = self.pending.remove(i) {
                        self.dispatch(now, conn, p);
                    }
                }
            }
        }
        if self.closing
            && !self.closed
            && self.pending.is_empty()
            && self.slots.values().all(|s| s.conn.in_flight_len() == 0)
        {
            let ids: Vec<ConnId> = self.slots.keys().copied().collect();
            for id in ids {
                self.slots.remove(&id);
                self.transmits.push_back(Transmit::Close { conn: id });
            }
            self.by_node.clear();
            self.closed = true;
            self.events.push_back(Event::Closed);
        }
    }

    fn last_failure_of(&self, node: Node) -> Option<(BrokerAddress, CloseCause)> {
        let cause = self.health.get(&node)?.last_failure.clone()?;
        Some((self.address_of(node)?, cause))
    }

    fn open(&mut self, now: Instant, node: Node) {
        let Some(address) = self.address_of(node) else { return };
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let conn = Connection::new(
            now,
            self.config.max_frame_size,
            &self.config.client_id,
            (&self.config.client_software_name, &self.config.client_software_version),
        );
        self.slots.insert(id, Slot { node, address: address.clone(), created: now, conn });
        self.by_node.insert(node, id);
        self.transmits.push_back(Transmit::Open { conn: id, address });
    }

    /// Sends a pending item on a ready connection.
    fn dispatch(&mut self, now: Instant, conn: ConnId, mut p: Pending) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        let address = slot.address.clone();
        let node = slot.node;
        let Some(versions) = slot.conn.versions().cloned() else { return };
        let (api, pinned) = match &p.work {
            Work::CheckVersion => {
                let release = infer_release(&versions.iter().map(|(k, r)| (k, r.min, r.max)).collect::<Vec<_>>());
                let result = Ok(BrokerVersions { node, address, api_versions: versions, release });
                self.complete(p.id, &p.work, result.map(VersionsOrResponse::Versions));
                return;
            }
            Work::User { body, version } => (body.api_key(), *version),
            Work::Metadata { .. } => (ApiKey::Metadata, None),
            Work::FindCoordinator(_) => (ApiKey::FindCoordinator, None),
        };
        let version = match pinned {
            Some(v) => versions.check(api, v),
            None => versions.negotiate(api),
        };
        let version = match version {
            Ok(v) => v,
            Err(error) => return self.fail_pending(now, p, RequestError::Version { address, error }),
        };
        let body = match &mut p.work {
            // The token only routes the answer, so the body moves out instead of being copied.
            Work::User { body, .. } => std::mem::replace(body, RequestBody::default_for(api)),
            Work::Metadata { topics, .. } => metadata_request(topics.as_deref()),
            Work::FindCoordinator(key) => find_coordinator_request(key, version),
            Work::CheckVersion => return,
        };
        // The timeout runs from submission, as `Config::request_timeout` says: time spent waiting
        // for a connection counts.
        let deadline = p.deadline;
        let fire_and_forget = slot.conn.send(now, &body, version, Token { pending: p, deadline });
        match fire_and_forget {
            Ok(None) => {}
            Ok(Some(token)) => {
                let result = Ok(Response { node, address, version, body: None });
                self.complete(token.pending.id, &token.pending.work, result.map(VersionsOrResponse::Response));
            }
            Err((e, token)) => self.fail_pending(now, token.pending, RequestError::Encode(e)),
        }
    }

    fn on_conn_event(&mut self, now: Instant, conn: ConnId, node: Node, event: ConnEvent<Token>) {
        match event {
            ConnEvent::Ready => {
                self.health.remove(&node);
            }
            ConnEvent::Response { token, version, result } => {
                let address =
                    self.slots.get(&conn).map(|s| s.address.clone()).unwrap_or_else(|| BrokerAddress::new("?", 0));
                let p = token.pending;
                let body = match result {
                    Ok(b) => b,
                    Err(error) => {
                        self.fail_pending(now, p, RequestError::InvalidResponse { address, error });
                        return;
                    }
                };
                match &p.work {
                    Work::User { .. } => {
                        if let (Some(code), Some(key)) = (body.error_code(), coordinator_key(&p.target)) {
                            if matches!(code, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable) {
                                self.coordinators.remove(&key);
                            }
                        }
                        let result = Ok(Response { node, address, version, body: Some(body) });
                        self.complete(p.id, &p.work, result.map(VersionsOrResponse::Response));
                    }
                    Work::Metadata { topics, user } => {
                        let ResponseBody::Metadata(m) = body else { return };
                        self.cluster.apply(now, &m, topics.is_none());
                        self.schedule.updated_at = Some(now);
                        if user.is_none() {
                            self.schedule.in_flight = false;
                            self.schedule.failures = 0;
                            self.schedule.next_refresh = now + self.config.metadata_max_age;
                        }
                        if needs_quick_refresh(&m) {
                            let delay = self.config.retry_backoff.delay(1, &mut self.rng);
                            self.schedule.next_refresh = self.schedule.next_refresh.min(now + delay);
                        }
                        if let Some(id) = user {
                            self.events.push_back(Event::Metadata { id: *id, result: Ok(self.cluster.clone()) });
                        }
                    }
                    Work::FindCoordinator(key) => {
                        let ResponseBody::FindCoordinator(r) = body else { return };
                        // v4+ answers per key; older versions answer at the top level.
                        let (error, node_id) = match r.coordinators.first() {
                            Some(c) => (c.error_code, c.node_id),
                            None => (r.error_code, r.node_id),
                        };
                        if error.is_ok() {
                            self.coordinators.insert(key.clone(), node_id);
                            if self.cluster.broker(node_id).is_none() {
                                self.want_refresh(now);
                            }
                        } else if error.is_retriable() || error == ErrorCode::CoordinatorNotAvailable {
                            self.retry_later(now, p);
                        } else {
                            let err = RequestError::Coordinator(error);
                            self.fail_waiters(now, key, err);
                        }
                    }
                    Work::CheckVersion => {}
                }
            }
        }
    }

    /// Fails every pending request waiting for the coordinator `key`.
    fn fail_waiters(&mut self, now: Instant, key: &CoordinatorKey, err: RequestError) {
        let mut i = 0;
        while i < self.pending.len() {
            if coordinator_key(&self.pending[i].target).as_ref() == Some(key) {
                if let Some(p) = self.pending.remove(i) {
                    self.fail_pending(now, p, err.clone());
                }
            } else {
                i += 1;
            }
        }
    }

    fn retry_later(&mut self, now: Instant, mut p: Pending) {
        let delay = self.config.retry_backoff.delay(1 + self.schedule.failures, &mut self.rng);
        p.not_before = Some(now + delay);
        if p.deadline <= now + delay {
            p.deadline = now + delay + self.config.request_timeout;
        }
        self.pending.push_back(p);
    }

    /// Times out the requests on `conn` whose deadline passed; the connection closes, as responses come in
    /// order and the late one would block the rest.
    fn expire_in_flight(&mut self, now: Instant, conn: ConnId) {
        let Some(slot) = self.slots.get_mut(&conn) else { return };
        let expired: Vec<Token> = slot.conn.drain_in_flight().map(|f| f.token).collect();
        let address = slot.address.clone();
        self.slots.remove(&conn);
        self.transmits.push_back(Transmit::Close { conn });
        self.forget_conn(conn);
        for token in expired {
            let err = if token.deadline <= now {
                RequestError::Timeout(self.config.request_timeout)
            } else {
                RequestError::Disconnected {
                    address: address.clone(),
                    cause: CloseCause::Local("request timed out".into()),
                }
            };
            self.fail_pending(now, token.pending, err);
        }
    }

    fn forget_conn(&mut self, conn: ConnId) {
        self.by_node.retain(|_, c| *c != conn);
    }

    /// Closes `conn`: fails what was in flight, records the failure for backoff.
    fn close_conn(&mut self, now: Instant, conn: ConnId, cause: CloseCause, tell_driver: bool) {
        let Some(mut slot) = self.slots.remove(&conn) else { return };
        self.forget_conn(conn);
        if tell_driver {
            self.transmits.push_back(Transmit::Close { conn });
        }
        let idle = matches!(&cause, CloseCause::Local(r) if r == "idle");
        let opened_without_handshake = slot.conn.opened_at.is_some() && !slot.conn.is_ready();
        if !idle {
            let health = self.health.entry(slot.node).or_default();
            health.failures = health.failures.saturating_add(1);
            let delay = self.config.reconnect_backoff.delay(health.failures, &mut self.rng);
            health.retry_at = Some(now + delay);
            health.last_failure = Some(cause.clone());
            // The broker may have moved or died: metadata should say.
            if matches!(slot.node, Node::Broker(_)) {
                self.want_refresh(now);
            }
        }
        let address = slot.address.clone();
        let in_flight: Vec<Token> = slot.conn.drain_in_flight().map(|f| f.token).collect();
        for token in in_flight {
            let err = RequestError::Disconnected { address: address.clone(), cause: cause.clone() };
            self.fail_pending(now, token.pending, err);
        }
        // Waiting requests learn why their broker is unreachable; a broker that hangs up on
        // ApiVersions is older than Kafka 0.10, which check_version reports as such.
        let mut i = 0;
        while i < self.pending.len() {
            let targets_node = match &self.pending[i].target {
                Target::Bootstrap(b) => Node::Bootstrap(*b) == slot.node,
                Target::Broker(id) => Node::Broker(*id) == slot.node,
                Target::AnyBroker => true,
                _ => false,
            };
            if !targets_node {
                i += 1;
                continue;
            }
            if opened_without_handshake && matches!(self.pending[i].work, Work::CheckVersion) && !idle {
                if let Some(p) = self.pending.remove(i) {
                    let versions = BrokerVersions {
                        node: slot.node,
                        address: address.clone(),
                        api_versions: BrokerApiVersions::default(),
                        release: ReleaseGuess::OlderThan0_10,
                    };
                    self.complete(p.id, &p.work, Ok(VersionsOrResponse::Versions(versions)));
                }
                continue;
            }
            self.pending[i].last_failure = Some((address.clone(), cause.clone()));
            i += 1;
        }
    }

    /// Fails a pending item: internal work is retried with backoff until its deadline; the
    /// application's commands get the error.
    fn fail_pending(&mut self, now: Instant, p: Pending, err: RequestError) {
        match &p.work {
            Work::Metadata { user: None, .. } => {
                self.schedule.failures = self.schedule.failures.saturating_add(1);
                self.schedule.in_flight = false;
                let delay = self.config.retry_backoff.delay(self.schedule.failures, &mut self.rng);
                self.schedule.next_refresh = now + delay;
            }
            Work::FindCoordinator(key) => {
                if p.deadline > now && !matches!(err, RequestError::Version { .. }) {
                    self.retry_later(now, p);
                } else {
                    let key = key.clone();
                    self.fail_waiters(now, &key, err);
                }
            }
            _ => self.complete(p.id, &p.work, Err(err)),
        }
    }

    fn complete(&mut self, id: RequestId, work: &Work, result: Result<VersionsOrResponse, RequestError>) {
        let event = match work {
            Work::User { .. } => Event::Response {
                id,
                result: result.and_then(|r| match r {
                    VersionsOrResponse::Response(r) => Ok(r),
                    VersionsOrResponse::Versions(_) => Err(RequestError::ClientClosed),
                }),
            },
            Work::CheckVersion => Event::Versions {
                id,
                result: result.and_then(|r| match r {
                    VersionsOrResponse::Versions(v) => Ok(v),
                    VersionsOrResponse::Response(_) => Err(RequestError::ClientClosed),
                }),
            },
            Work::Metadata { user: Some(uid), .. } => {
                Event::Metadata { id: *uid, result: result.map(|_| self.cluster.clone()) }
            }
            Work::Metadata { user: None, .. } | Work::FindCoordinator(_) => return,
        };
        self.events.push_back(event);
    }
}

#[allow(clippy::large_enum_variant)] // lives for one call
enum VersionsOrResponse {
    Response(Response),
    Versions(BrokerVersions),
}

fn coordinator_key(target: &Target) -> Option<CoordinatorKey> {
    match target {
        Target::GroupCoordinator(g) => Some(CoordinatorKey::Group(g.clone())),
        Target::TransactionCoordinator(t) => Some(CoordinatorKey::Transaction(t.clone())),
        _ => None,
    }
}

fn protocol_violation(e: &ConnectionError) -> String {
    format!("protocol violation: {e}")
}

fn metadata_request(topics: Option<&[TopicName]>) -> RequestBody {
    let topics =
        topics.map(|t| t.iter().map(|name| MetadataRequestTopic::default().with_name(Some(name.clone()))).collect());
    MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false).into()
}

/// FindCoordinator names one key (`Key`) before v4 and a list (`CoordinatorKeys`) from v4.
fn find_coordinator_request(key: &CoordinatorKey, version: i16) -> RequestBody {
    let (key_type, name): (i8, StrBytes) = match key {
        CoordinatorKey::Group(g) => (0, g.0.clone()),
        CoordinatorKey::Transaction(t) => (1, t.0.clone()),
    };
    let req = FindCoordinatorRequest::default().with_key_type(key_type);
    if version >= 4 {
        req.with_coordinator_keys(vec![name]).into()
    } else {
        req.with_key(name).into()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
