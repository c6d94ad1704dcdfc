//! The simulator proper: one thread, one virtual clock, one seeded random stream, driving a
//! [`sansa::Client`] against a [`FakeCluster`] through the [`Netem`] network.
//!
//! [`Sim::step`] advances to the earliest of: a scheduled [`Action`] (a workload command or a
//! fault), a network delivery, the cluster's timer, the client's timer; applies it; then drains
//! the client (transmits, then events) and the cluster (outputs). Ties go in that order, so a
//! run is a pure function of its configuration. Every step lands in the [`Trace`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::backoff::Backoff;
use sansa::protocol::frame::FrameDecoder;
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::list_offsets::request::{ListOffsetsPartition, ListOffsetsTopic};
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::{
    CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
};
use sansa::protocol::records::{BatchParams, RecordBatchEncoder};
use sansa::protocol::{BrokerId, GroupId, RequestBody, TopicName};
use sansa::rand::Rng;
use sansa::{
    BrokerAddress, Client, CloseCause, Config, ConnId, Event, Input, RequestError, RequestId, Target, Transmit,
};

use super::netem::{DropKind, LinkProfile, NetEvent, Netem};
use super::trace::{Trace, TraceEvent};
use crate::fake_cluster::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput, Fault};

/// Steps at one virtual instant before the run counts as a livelock.
pub const LIVELOCK_STEPS: u64 = 20_000;

/// How to set a simulation up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random choice: the client's, the network's and the simulator's.
    pub seed: u64,
    /// Number of brokers (ids `1..=brokers`), reachable at `broker-<id>:9092`.
    pub brokers: usize,
    /// Topics created before the run: name and partition count.
    pub topics: Vec<(String, i32)>,
    /// Brokers reached through the bootstrap aliases `bootstrap-<i>:9092`, in order.
    pub bootstrap: Vec<i32>,
    /// Profile of every link.
    pub profile: LinkProfile,
    /// The client's `request.timeout.ms`.
    pub request_timeout: Duration,
    /// The client's `socket.connection.setup.timeout.ms`.
    pub connection_setup_timeout: Duration,
    /// The client's `reconnect.backoff.ms` and `reconnect.backoff.max.ms`.
    pub reconnect_backoff: (Duration, Duration),
    /// The client's `retry.backoff.ms` and `retry.backoff.max.ms`.
    pub retry_backoff: (Duration, Duration),
    /// The client's `metadata.max.age.ms`.
    pub metadata_max_age: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            brokers: 3,
            topics: vec![("events".into(), 3), ("logs".into(), 2)],
            bootstrap: vec![1],
            profile: LinkProfile::default(),
            request_timeout: Duration::from_secs(10),
            connection_setup_timeout: Duration::from_secs(3),
            reconnect_backoff: (Duration::from_millis(50), Duration::from_millis(1000)),
            retry_backoff: (Duration::from_millis(100), Duration::from_millis(1000)),
            metadata_max_age: Duration::from_secs(60),
        }
    }
}

/// A command of the workload. Commands that name a partition pick it when issued, by index
/// over the topics that exist then, and go to its current leader.
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
    /// Produce one batch to a partition's leader.
    Produce { pick: u64 },
    /// Fetch from a partition's leader.
    Fetch { pick: u64 },
    /// ListOffsets (latest) at a partition's leader.
    ListOffsets { pick: u64 },
    /// A Metadata request routed to a group's coordinator (looked up with FindCoordinator).
    Coordinator { group: String },
}

/// Something scheduled: a command, a fault or a topology change.
#[derive(Debug, Clone)]
pub enum Action {
    /// Issue a command.
    Issue(Work),
    /// Cut the client off from a broker.
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
    /// Drop one of the client's open connections.
    Drop { pick: u64, kind: DropKind },
    /// Change the links to one broker (`None`: back to the default).
    Profile { broker: i32, profile: Option<LinkProfile> },
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

/// One command of the workload and what became of it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// What was asked, for humans.
    pub what: String,
    /// The broker it was addressed to, for `Target::Broker` commands.
    pub broker: Option<i32>,
    /// When it was issued.
    pub issued: Duration,
    /// Every outcome reported for it (exactly one is right), with its time.
    pub outcomes: Vec<(Duration, Event)>,
}

impl RequestRecord {
    /// The first outcome, if any.
    pub fn outcome(&self) -> Option<&Event> {
        self.outcomes.first().map(|(_, e)| e)
    }
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
}

/// A simulation run. See the module docs.
#[derive(Debug)]
pub struct Sim {
    origin: Instant,
    now: Duration,
    client: Client,
    cluster: FakeCluster,
    net: Netem,
    rng: Rng,
    addresses: BTreeMap<BrokerAddress, i32>,
    actions: BTreeMap<(Duration, u64), Action>,
    seq: u64,
    trace: Trace,
    requests: BTreeMap<RequestId, RequestRecord>,
    stray: Vec<(Duration, String)>,
    violations: Vec<Violation>,
    addr_state: BTreeMap<BrokerAddress, AddrState>,
    conn_track: BTreeMap<ConnId, ConnTrack>,
    reconnect: Backoff,
    request_timeout: Duration,
    steps: u64,
    stalled: u64,
    faults_over: bool,
    decoder: FrameDecoder,
}

impl Sim {
    /// Builds the cluster, its topics, the network and the client; nothing runs yet.
    pub fn new(cfg: &SimConfig) -> Self {
        // The one real clock reading: an origin that every virtual time is an offset from.
        // Nothing observable (trace, hash, choices) depends on its value.
        let origin = Instant::now();
        let mut cluster = FakeCluster::new(FakeClusterConfig {
            brokers: cfg.brokers,
            cluster_id: "sim".into(),
            auto_create_topics: false,
            ..FakeClusterConfig::default()
        });
        let mut addresses = BTreeMap::new();
        for id in cluster.broker_ids() {
            let host = format!("broker-{id}");
            cluster.set_address(id, &host, 9092);
            addresses.insert(BrokerAddress::new(host, 9092), id);
        }
        let mut bootstrap = Vec::new();
        for (i, id) in cfg.bootstrap.iter().enumerate() {
            let address = BrokerAddress::new(format!("bootstrap-{i}"), 9092);
            bootstrap.push(address.to_string());
            addresses.insert(address, *id);
        }
        for (name, partitions) in &cfg.topics {
            cluster.create_topic(name, *partitions, -1);
        }
        let config = Config::new(&bootstrap.join(","))
            .expect("bootstrap aliases parse")
            .with_rng_seed(cfg.seed)
            .with_request_timeout(cfg.request_timeout)
            .with_connection_setup_timeout(cfg.connection_setup_timeout)
            .with_reconnect_backoff(cfg.reconnect_backoff.0, cfg.reconnect_backoff.1)
            .with_retry_backoff(cfg.retry_backoff.0, cfg.retry_backoff.1)
            .with_metadata_max_age(cfg.metadata_max_age);
        let reconnect = config.reconnect_backoff;
        let client = Client::new(config, origin);
        Sim {
            origin,
            now: Duration::ZERO,
            client,
            cluster,
            net: Netem::new(cfg.seed ^ 0x6e65_7465_6d00_0000, cfg.profile),
            rng: Rng::new(cfg.seed ^ 0x0073_696d_0000_0000),
            addresses,
            actions: BTreeMap::new(),
            seq: 0,
            trace: Trace::default(),
            requests: BTreeMap::new(),
            stray: Vec::new(),
            violations: Vec::new(),
            addr_state: BTreeMap::new(),
            conn_track: BTreeMap::new(),
            reconnect,
            request_timeout: cfg.request_timeout,
            steps: 0,
            stalled: 0,
            faults_over: false,
            decoder: FrameDecoder::new(64 << 20),
        }
    }

    // ---- getters ----

    /// Virtual time since the origin.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
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

    /// Every command issued, by id.
    pub fn requests(&self) -> &BTreeMap<RequestId, RequestRecord> {
        &self.requests
    }

    /// One command's record.
    pub fn record(&self, id: RequestId) -> Option<&RequestRecord> {
        self.requests.get(&id)
    }

    /// Commands without an outcome yet.
    pub fn outstanding(&self) -> usize {
        self.requests.values().filter(|r| r.outcomes.is_empty()).count()
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

    /// The client's request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Whether [`Action::EndFaults`] ran.
    pub fn faults_over(&self) -> bool {
        self.faults_over
    }

    fn instant(&self) -> Instant {
        self.origin + self.now
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

    /// Issues a command now.
    pub fn issue(&mut self, work: Work) -> RequestId {
        let now = self.instant();
        let what = format!("{work:?}");
        let (id, broker) = match work {
            Work::RefreshMetadata => (self.client.refresh_metadata(now, None), None),
            Work::CheckVersion(b) => {
                let target = b.map_or(Target::AnyBroker, |b| Target::Broker(BrokerId(b)));
                (self.client.check_version(now, target), b)
            }
            other => {
                let (target, body) = self.build(&other);
                let broker = match &target {
                    Target::Broker(b) => Some(b.0),
                    _ => None,
                };
                (self.client.request(now, target, body, None), broker)
            }
        };
        let what = match broker {
            Some(b) => format!("{what} -> broker {b}"),
            None => what,
        };
        self.trace.push(self.now, TraceEvent::Issue { id: id.0, what: what.clone() });
        self.requests.insert(id, RequestRecord { what, broker, issued: self.now, outcomes: Vec::new() });
        self.drain();
        id
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

    fn build(&mut self, work: &Work) -> (Target, RequestBody) {
        let all_topics = || MetadataRequest::default().with_topics(None).into();
        match work {
            Work::Metadata => (Target::AnyBroker, all_topics()),
            Work::ToBroker(b) => (Target::Broker(BrokerId(*b)), all_topics()),
            Work::Coordinator { group } => (
                Target::GroupCoordinator(GroupId::from(group.as_str())),
                MetadataRequest::default().with_topics(Some(vec![])).into(),
            ),
            Work::CreateTopic { name, partitions } => {
                let req =
                    CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![CreatableTopic::default()
                        .with_name(TopicName::from(name.as_str()))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(-1)]);
                (Target::Controller, req.into())
            }
            Work::Produce { pick } | Work::Fetch { pick } | Work::ListOffsets { pick } => {
                let Some((topic, partition, leader)) = self.pick_partition(*pick) else {
                    return (Target::AnyBroker, all_topics());
                };
                let id = self.cluster.topic_id(&topic).unwrap_or_default();
                let body: RequestBody = match work {
                    Work::Produce { .. } => {
                        let mut records = BytesMut::new();
                        let mut enc = RecordBatchEncoder::new();
                        if let Ok(mut b) = enc.begin(&mut records, BatchParams::new()) {
                            let value = format!("v{}", self.rng.next_u64());
                            let _ = b.append(1_700_000_000_000, None, Some(value.as_bytes()), &[]);
                            let _ = b.finish();
                        }
                        ProduceRequest::default()
                            .with_acks(-1)
                            .with_timeout_ms(5_000)
                            .with_topic_data(vec![TopicProduceData::default().with_topic_id(id).with_partition_data(
                                vec![PartitionProduceData::default()
                                    .with_index(partition)
                                    .with_records(Some(records.freeze()))],
                            )])
                            .into()
                    }
                    Work::Fetch { .. } => FetchRequest::default()
                        .with_max_bytes(1 << 20)
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![FetchTopic::default().with_topic_id(id).with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20),
                        ])])
                        .into(),
                    _ => ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![ListOffsetsTopic::default()
                            .with_name(TopicName::from(topic.as_str()))
                            .with_partitions(vec![ListOffsetsPartition::default()
                                .with_partition_index(partition)
                                .with_timestamp(-1)])])
                        .into(),
                };
                (Target::Broker(BrokerId(leader)), body)
            }
            Work::RefreshMetadata | Work::CheckVersion(_) => (Target::AnyBroker, all_topics()),
        }
    }

    // ---- running ----

    /// Advances to the next thing that happens and applies it. `Ok(false)` when nothing is
    /// left to happen at all.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let action_t = self.actions.keys().next().map(|k| k.0);
        let net_t = self.net.next_time();
        let cluster_t = self.cluster.poll_timeout().map(|t| self.offset(t));
        let client_t = self.client.poll_timeout().map(|t| self.offset(t));
        let Some(next) = [action_t, net_t, cluster_t, client_t].into_iter().flatten().min() else {
            return Ok(false);
        };
        let t = next.max(self.now);
        if t > self.now {
            self.now = t;
            self.stalled = 0;
        } else {
            self.stalled += 1;
            if self.stalled > LIVELOCK_STEPS {
                return Err(SimError::Livelock { at: self.now, steps: self.stalled });
            }
        }
        self.steps += 1;
        let now = self.instant();
        if action_t == Some(next) {
            if let Some((_, action)) = self.actions.pop_first() {
                self.apply_action(action);
            }
        } else if net_t == Some(next) {
            if let Some(e) = self.net.pop_due(self.now) {
                self.apply_net(e);
            }
        } else if cluster_t == Some(next) {
            self.trace.push(self.now, TraceEvent::ClusterTimeout);
            self.cluster.handle_timeout(now);
        } else {
            self.trace.push(self.now, TraceEvent::ClientTimeout);
            self.client.handle_timeout(now);
        }
        self.drain();
        self.check_reconnect_deadlines();
        Ok(true)
    }

    /// Runs every step due up to `until`, then sets the clock to `until`.
    pub fn drive(&mut self, until: Duration) -> Result<(), SimError> {
        loop {
            let next = [
                self.actions.keys().next().map(|k| k.0),
                self.net.next_time(),
                self.cluster.poll_timeout().map(|t| self.offset(t)),
                self.client.poll_timeout().map(|t| self.offset(t)),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => {
                    self.step()?;
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Steps until every command has its outcome and no action is scheduled; at most
    /// `max_steps` steps. Returns the steps taken.
    pub fn drive_bounded(&mut self, max_steps: u64) -> Result<u64, SimError> {
        let mut n = 0;
        while self.outstanding() > 0 || !self.actions.is_empty() {
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

    /// Drains the client and the cluster until neither has anything to say.
    fn drain(&mut self) {
        let now = self.instant();
        loop {
            let mut progressed = false;
            while let Some(t) = self.client.poll_transmit(now) {
                progressed = true;
                self.apply_transmit(t);
            }
            while let Some(e) = self.client.poll_event() {
                progressed = true;
                self.record_event(e);
            }
            while let Some(o) = self.cluster.poll_output() {
                progressed = true;
                match o {
                    FakeOutput::Send { conn, bytes } => self.net.send(self.now, ConnId(conn.0), bytes, false),
                    FakeOutput::Close { conn } => {
                        self.trace.push(self.now, TraceEvent::ServerClose { conn: conn.0 });
                        self.net.server_close(self.now, ConnId(conn.0));
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn record_event(&mut self, e: Event) {
        let (id, outcome) = match &e {
            Event::Response { id, result } => {
                (*id, summarize(result.as_ref().map(|r| r.body.as_ref().and_then(|b| b.error_code()))))
            }
            Event::Metadata { id, result } => (*id, summarize(result.as_ref().map(|_| None))),
            Event::Versions { id, result } => (*id, summarize(result.as_ref().map(|_| None))),
            _ => return,
        };
        self.trace.push(self.now, TraceEvent::Outcome { id: id.0, outcome: outcome.clone() });
        match self.requests.get_mut(&id) {
            Some(r) => r.outcomes.push((self.now, e)),
            None => self.stray.push((self.now, format!("#{} {outcome}", id.0))),
        }
    }

    fn apply_transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Open { conn, address } => {
                self.trace.push(self.now, TraceEvent::Open { conn: conn.0, address: address.to_string() });
                self.on_open(conn, &address);
                let broker = self.addresses.get(&address).copied();
                self.net.open(self.now, conn, broker, &address.host);
            }
            Transmit::Send { conn, bytes } => {
                self.trace.push(self.now, TraceEvent::Send { conn: conn.0, len: bytes.len() });
                let ok = self.net.link(conn).is_some_and(|l| l.client_open && l.connected);
                if !ok {
                    self.violate("no-send-on-dead-connection", format!("Send on c{} which is not open", conn.0));
                }
                self.net.send(self.now, conn, bytes, true);
            }
            Transmit::Close { conn } => {
                self.trace.push(self.now, TraceEvent::ClientClose { conn: conn.0 });
                if self.net.link(conn).is_some_and(|l| l.client_open) {
                    self.on_gone(conn, false);
                }
                self.net.client_close(self.now, conn);
            }
            _ => {}
        }
    }

    /// Tells the client that `conn` closed.
    fn close_client_side(&mut self, conn: ConnId, cause: CloseCause) {
        let Some(link) = self.net.link_mut(conn) else { return };
        if !link.client_open {
            return;
        }
        link.client_open = false;
        self.trace.push(self.now, TraceEvent::Closed { conn: conn.0, cause: cause.to_string() });
        self.on_gone(conn, true);
        self.client.handle_input(self.origin + self.now, Input::Closed { conn, cause });
    }

    fn close_server_side(&mut self, conn: ConnId) {
        let Some(link) = self.net.link_mut(conn) else { return };
        if !link.server_open {
            return;
        }
        link.server_open = false;
        self.trace.push(self.now, TraceEvent::ServerGone { conn: conn.0 });
        self.cluster.handle_disconnect(FakeConnId(conn.0));
    }

    fn apply_net(&mut self, e: NetEvent) {
        let now = self.instant();
        match e {
            NetEvent::ConnectDone { conn, broker } => {
                let Some(link) = self.net.link(conn) else { return };
                if !link.client_open || self.net.is_partitioned(broker) {
                    return;
                }
                match self.cluster.handle_connect(now, broker, FakeConnId(conn.0)) {
                    Ok(()) => {
                        if let Some(link) = self.net.link_mut(conn) {
                            link.server_open = true;
                            link.connected = true;
                        }
                        if let Some(c) = self.conn_track.get_mut(&conn) {
                            c.connected = true;
                        }
                        self.trace.push(self.now, TraceEvent::Connected { conn: conn.0 });
                        self.client.handle_input(now, Input::Connected { conn });
                    }
                    Err(_) => self.close_client_side(conn, CloseCause::Refused),
                }
            }
            NetEvent::ConnectFailed { conn, cause } => self.close_client_side(conn, cause),
            NetEvent::ToServer { conn, bytes } => {
                let Some(link) = self.net.link_mut(conn) else { return };
                if link.doomed || !link.server_open {
                    return;
                }
                link.server_buf.extend_from_slice(&bytes);
                let mut buf = std::mem::take(&mut link.server_buf);
                self.trace.push(self.now, TraceEvent::ToServer { conn: conn.0, len: bytes.len() });
                let fake = FakeConnId(conn.0);
                loop {
                    match self.decoder.decode(&mut buf) {
                        Ok(Some(frame)) => {
                            let _ = self.cluster.handle_frame(now, fake, frame);
                            if !self.cluster.is_connected(fake) {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            // Not Kafka: the broker hangs up.
                            self.cluster.handle_disconnect(fake);
                            self.net.server_close(self.now, conn);
                            break;
                        }
                    }
                }
                if let Some(link) = self.net.link_mut(conn) {
                    link.server_buf = buf;
                }
            }
            NetEvent::ToClient { conn, bytes } => {
                let Some(link) = self.net.link(conn) else { return };
                if link.doomed || !link.client_open {
                    return;
                }
                self.trace.push(self.now, TraceEvent::ToClient { conn: conn.0, len: bytes.len() });
                self.on_client_bytes(conn, &bytes);
                self.client.handle_input(now, Input::Received { conn, data: bytes });
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
        if self.faults_over && !matches!(action, Action::Issue(_) | Action::EndFaults) {
            return;
        }
        match action {
            Action::Issue(work) => {
                self.issue(work);
            }
            Action::Partition(b) => {
                self.fault(format!("partition client | broker {b}"));
                self.net.partition(self.now, b);
            }
            Action::Heal(b) => {
                self.fault(format!("heal client | broker {b}"));
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
                self.fault(format!("links to broker {broker}: {profile:?}"));
                self.net.set_profile(broker, profile);
            }
            Action::EndFaults => self.end_faults(),
        }
    }

    /// Ends every fault now.
    pub fn end_faults(&mut self) {
        self.fault("faults end".into());
        self.faults_over = true;
        for b in self.net.partitions() {
            self.net.heal(b);
        }
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

    /// A value in `0..n` from the simulator's own random stream.
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    // ---- reconnect bookkeeping (invariants c and d) ----

    /// The least delay after `failures` consecutive failures, jitter included.
    fn backoff_floor(&self, failures: u32) -> Duration {
        let b = self.reconnect;
        let max = b.max.max(b.initial);
        let exp = failures.saturating_sub(1).min(30);
        let base = b.initial.saturating_mul(1u32 << exp).min(max);
        base.mul_f64(0.8).saturating_sub(Duration::from_micros(1))
    }

    fn on_open(&mut self, conn: ConnId, address: &BrokerAddress) {
        let floor = {
            let st = self.addr_state.entry(address.clone()).or_default();
            st.last_failure.map(|t| (t, st.failures))
        };
        if let Some((t, failures)) = floor {
            let lo = self.backoff_floor(failures);
            if self.now < t + lo {
                self.violate(
                    "reconnect-backoff-min",
                    format!(
                        "c{} opens {address} {:?} after failure #{failures} at {:.6}s; the backoff is at least {lo:?}",
                        conn.0,
                        self.now - t,
                        t.as_secs_f64()
                    ),
                );
            }
        }
        if let Some(st) = self.addr_state.get_mut(address) {
            st.live.insert(conn);
        }
        self.conn_track.insert(
            conn,
            ConnTrack { address: address.clone(), connected: false, ready: false, inbound: BytesMut::new() },
        );
    }

    fn on_client_bytes(&mut self, conn: ConnId, bytes: &Bytes) {
        let Some(c) = self.conn_track.get_mut(&conn) else { return };
        if c.ready {
            return;
        }
        c.inbound.extend_from_slice(bytes);
        if c.inbound.len() >= 4 {
            let size = i32::from_be_bytes([c.inbound[0], c.inbound[1], c.inbound[2], c.inbound[3]]);
            if size >= 0 && c.inbound.len() >= 4 + size as usize {
                c.ready = true;
                c.inbound = BytesMut::new();
                let address = c.address.clone();
                if let Some(st) = self.addr_state.get_mut(&address) {
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
    fn on_gone(&mut self, conn: ConnId, told: bool) {
        let Some(c) = self.conn_track.remove(&conn) else { return };
        let now = self.now;
        let st = self.addr_state.entry(c.address).or_default();
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
        let b = self.reconnect;
        let hi = b.max.max(b.initial).mul_f64(1.2) + Duration::from_millis(1);
        let mut found = Vec::new();
        for (id, r) in &self.requests {
            let Some(broker) = r.broker else { continue };
            if !r.outcomes.is_empty() {
                continue;
            }
            let Some(known) = self.client.metadata().broker(BrokerId(broker)) else { continue };
            let Some(st) = self.addr_state.get(&known.address) else { continue };
            if !st.live.is_empty() {
                continue;
            }
            if let Some(t) = st.last_close {
                if self.now > t + hi && r.issued < self.now {
                    found.push((known.address.clone(), t, id.0));
                }
            }
        }
        for (address, t, id) in found {
            self.violate(
                "reconnect-backoff-max",
                format!(
                    "#{id} waits for {address}, which closed at {:.6}s and has not been reopened {:?} later",
                    t.as_secs_f64(),
                    self.now - t
                ),
            );
            if let Some(st) = self.addr_state.get_mut(&address) {
                st.last_close = None;
            }
        }
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
