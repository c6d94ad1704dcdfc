//! Fetch: whole stored batches from the one containing `fetch_offset`, within
//! `partition_max_bytes` and `max_bytes` (always at least one batch, as Kafka does). Topics by
//! name before v13, by id from v13.
//!
//! - Waiting: when fewer than `min_bytes` are readable, no partition has an error and
//!   `max_wait_ms` > 0, the request is parked until an append (or a leader change) makes
//!   enough bytes readable, or `max_wait_ms` passes; it is answered with what is there then.
//!   Requests queued behind a fetch answered by a topology change run at the next input.
//! - Sessions (KIP-227, v7+): epoch 0 opens a session (replacing the named one), epoch -1
//!   fetches without one (closing the named one), higher epochs are incremental: partitions in
//!   the request are added or updated, forgotten ones dropped, and the answer holds only the
//!   partitions with records, an error, or a changed high watermark, last stable offset or log
//!   start offset. Unknown session: FETCH_SESSION_ID_NOT_FOUND; wrong epoch:
//!   INVALID_FETCH_SESSION_EPOCH. Each broker keeps [`FetchState`]'s slot count of sessions
//!   (Kafka's 1000 by default); when full, a session idle for two minutes is evicted, else the
//!   new fetch gets no session (id 0). Simplified: no eviction by size or privilege.
//! - read_committed reads up to the last stable offset and lists the aborted transactions
//!   overlapping the returned data; read_uncommitted reads to the high watermark (which lags
//!   the log end with [`super::Replication::Lagging`]; past the log end is OFFSET_OUT_OF_RANGE).
//! - `current_leader_epoch` (v9+) older than the leader's is FENCED_LEADER_EPOCH, newer is
//!   UNKNOWN_LEADER_EPOCH; NOT_LEADER_OR_FOLLOWER carries the leader (v12+) and its endpoint
//!   (v16+). No diverging-epoch detection.
//! - Nearest replica (KIP-392, v11+): with racks configured, a leader asked by a consumer in
//!   another rack names an in-sync replica in the consumer's rack in `preferred_read_replica`
//!   and sends no records for that partition; followers serve consumers up to the high
//!   watermark they hold.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sansa::protocol::messages::fetch::response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use sansa::protocol::messages::{FetchRequest, FetchResponse};
use sansa::protocol::{ApiKey, BrokerId, ErrorCode, ProducerId, TopicName, Uuid};

use super::{Ctx, FakeCluster, Reply, Ticket};

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
const DEFAULT_SESSION_SLOTS: usize = 1000;
/// How long a session must be idle before a new one may evict it (Kafka's value).
const SESSION_EVICTION_IDLE: Duration = Duration::from_secs(120);

/// A partition as a session or a fetch names it: topic name as resolved (empty when the
/// id is unknown), topic id (zero before v13), partition.
type PartKey = (String, Uuid, i32);

#[derive(Debug, Clone)]
struct SessionPartition {
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    /// What the last answer told the client, to leave unchanged partitions out.
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug, Clone)]
struct Session {
    /// The epoch the next incremental request must carry.
    epoch: i32,
    partitions: BTreeMap<PartKey, SessionPartition>,
    last_used: Instant,
}

/// One partition of a fetch being answered.
#[derive(Debug, Clone)]
struct PlanPart {
    key: PartKey,
    /// The topic name as the request spelled it (v12 and before).
    wire_name: TopicName,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    /// An injected error, taken when the request arrived.
    injected: Option<ErrorCode>,
}

/// What a fetch will read, kept while it is parked.
#[derive(Debug, Clone)]
struct Plan {
    broker: i32,
    version: i16,
    read_committed: bool,
    max_bytes: i32,
    min_bytes: i32,
    /// The consumer's `client.rack` (v11+), when it names one.
    rack: Option<String>,
    parts: Vec<PlanPart>,
    /// How the answer relates to a session.
    session: SessionMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionMode {
    /// No session; the answer carries session id 0.
    None,
    /// A full request opening a session (created when answered, as Kafka does).
    Open,
    /// An incremental request in this session.
    Incremental(i32),
}

#[derive(Debug, Clone)]
struct ParkedFetch {
    ticket: Ticket,
    deadline: Instant,
    plan: Plan,
}

/// Fetch sessions per broker and the fetches waiting for data.
#[derive(Debug, Clone)]
pub(crate) struct FetchState {
    sessions: BTreeMap<i32, BTreeMap<i32, Session>>,
    next_session_id: i32,
    slots: usize,
    parked: Vec<ParkedFetch>,
}

impl Default for FetchState {
    fn default() -> Self {
        FetchState { sessions: BTreeMap::new(), next_session_id: 0, slots: DEFAULT_SESSION_SLOTS, parked: Vec::new() }
    }
}

impl FetchState {
    /// The earliest deadline of a parked fetch.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.parked.iter().map(|p| p.deadline).min()
    }
}

impl FakeCluster {
    /// How many fetch sessions each broker keeps (Kafka's
    /// `max.incremental.fetch.session.cache.slots`, 1000 by default). Existing sessions stay.
    pub fn set_fetch_session_slots(&mut self, slots: usize) {
        self.fetches.slots = slots;
    }

    /// The number of fetch sessions broker `broker` holds.
    pub fn fetch_session_count(&self, broker: i32) -> usize {
        self.fetches.sessions.get(&broker).map_or(0, BTreeMap::len)
    }
}

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: FetchRequest) -> Reply {
    let version = ctx.version;
    let mut requested = Vec::new();
    for t in &req.topics {
        let name = if version >= 13 {
            cluster.topic_name_by_id(t.topic_id).unwrap_or_default()
        } else {
            t.topic.as_str().to_string()
        };
        let id = if version >= 13 { t.topic_id } else { Uuid::ZERO };
        for p in &t.partitions {
            let key = (name.clone(), id, p.partition);
            let injected = if name.is_empty() {
                None
            } else {
                cluster.take_partition_error(ApiKey::Fetch, ctx.broker, &name, Some(p.partition))
            };
            requested.push(PlanPart {
                key,
                wire_name: t.topic.clone(),
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: if version >= 9 { p.current_leader_epoch } else { -1 },
                injected,
            });
        }
    }
    let (session_id, epoch) = if version >= 7 { (req.session_id, req.session_epoch) } else { (0, -1) };
    let sessions = cluster.fetches.sessions.entry(ctx.broker).or_default();
    let (parts, mode) = match epoch {
        -1 | 0 => {
            if session_id != 0 {
                sessions.remove(&session_id);
            }
            (requested, if epoch == 0 { SessionMode::Open } else { SessionMode::None })
        }
        _ => {
            let Some(session) = sessions.get_mut(&session_id) else {
                return session_error(ErrorCode::FetchSessionIdNotFound);
            };
            if session.epoch != epoch {
                return session_error(ErrorCode::InvalidFetchSessionEpoch);
            }
            session.epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
            session.last_used = ctx.now;
            for f in &req.forgotten_topics_data {
                let (name, id) = if version >= 13 {
                    (cluster_name(&session.partitions, f.topic_id), f.topic_id)
                } else {
                    (f.topic.as_str().to_string(), Uuid::ZERO)
                };
                for p in &f.partitions {
                    session.partitions.remove(&(name.clone(), id, *p));
                }
            }
            let mut injected = BTreeMap::new();
            for p in requested {
                let entry = session.partitions.entry(p.key.clone()).or_insert(SessionPartition {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                });
                entry.fetch_offset = p.fetch_offset;
                entry.max_bytes = p.max_bytes;
                entry.current_leader_epoch = p.current_leader_epoch;
                injected.insert(p.key.clone(), (p.injected, p.wire_name));
            }
            let parts = session
                .partitions
                .iter()
                .map(|(key, sp)| {
                    let (injected, wire_name) = injected.remove(key).unwrap_or((None, TopicName::from(key.0.as_str())));
                    PlanPart {
                        key: key.clone(),
                        wire_name,
                        fetch_offset: sp.fetch_offset,
                        max_bytes: sp.max_bytes,
                        current_leader_epoch: sp.current_leader_epoch,
                        injected,
                    }
                })
                .collect();
            (parts, SessionMode::Incremental(session_id))
        }
    };
    let plan = Plan {
        broker: ctx.broker,
        version,
        read_committed: version >= 4 && req.isolation_level == 1,
        max_bytes: req.max_bytes,
        min_bytes: req.min_bytes,
        rack: Some(req.rack_id.to_string()).filter(|r| version >= 11 && !r.is_empty()),
        parts,
        session: mode,
    };
    let read = read(cluster, &plan);
    let ready = req.max_wait_ms <= 0
        || plan.parts.is_empty()
        || read.answer_now
        || read.bytes >= usize::try_from(req.min_bytes).unwrap_or(0);
    if ready {
        return finish(cluster, ctx.now, &plan, read.parts).into();
    }
    let deadline = ctx.now + Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
    cluster.fetches.parked.push(ParkedFetch { ticket: ctx.ticket, deadline, plan });
    Reply::Parked
}

/// The name a session knows topic id `id` by (the topic may be gone since).
fn cluster_name(partitions: &BTreeMap<PartKey, SessionPartition>, id: Uuid) -> String {
    partitions.keys().find(|k| k.1 == id).map(|k| k.0.clone()).unwrap_or_default()
}

fn session_error(code: ErrorCode) -> Reply {
    FetchResponse::default().with_error_code(code).with_session_id(0).into()
}

/// Data and appends have changed: answers the parked fetches that now have enough bytes or
/// an error, and drops those whose connection has gone.
pub(crate) fn wake(cluster: &mut FakeCluster) {
    complete_parked(cluster, None);
}

/// Answers the parked fetches whose `max_wait_ms` has passed at `now`.
pub(crate) fn handle_timeout(cluster: &mut FakeCluster, now: Instant) {
    complete_parked(cluster, Some(now));
}

fn complete_parked(cluster: &mut FakeCluster, now: Option<Instant>) {
    if cluster.fetches.parked.is_empty() {
        return;
    }
    let parked = std::mem::take(&mut cluster.fetches.parked);
    for p in parked {
        if !cluster.is_parked(p.ticket) {
            continue;
        }
        let read = read(cluster, &p.plan);
        let expired = now.is_some_and(|n| n >= p.deadline);
        if expired || read.answer_now || read.bytes >= usize::try_from(p.plan.min_bytes).unwrap_or(0) {
            let body = finish(cluster, now.unwrap_or(p.deadline), &p.plan, read.parts);
            cluster.complete(p.ticket, body.into());
        } else {
            cluster.fetches.parked.push(p);
        }
    }
}

struct Read {
    parts: Vec<PartitionData>,
    bytes: usize,
    /// A partition has an error or names a preferred read replica: answered at once, as
    /// Kafka does.
    answer_now: bool,
}

/// Reads every partition of the plan without changing any state.
fn read(cluster: &FakeCluster, plan: &Plan) -> Read {
    let mut budget = if plan.max_bytes <= 0 { usize::MAX } else { plan.max_bytes as usize };
    let mut out = Read { parts: Vec::new(), bytes: 0, answer_now: false };
    for pp in &plan.parts {
        let r = read_partition(cluster, plan, pp, &mut budget, out.bytes == 0);
        if r.error_code != ErrorCode::None || r.preferred_read_replica.0 >= 0 {
            out.answer_now = true;
        }
        out.bytes += r.records.as_ref().map_or(0, |b| b.len());
        out.parts.push(r);
    }
    out
}

fn read_partition(cluster: &FakeCluster, plan: &Plan, pp: &PlanPart, budget: &mut usize, first: bool) -> PartitionData {
    let version = plan.version;
    let (name, _, index) = &pp.key;
    // Like Kafka, an error answer carries -1 offsets and no aborted-transaction list.
    let mut r = PartitionData::default()
        .with_partition_index(*index)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(None);
    if let Some(code) = pp.injected {
        r.error_code = code;
        return r;
    }
    let Some(topic) = cluster.topics.get(name) else {
        r.error_code = if version >= 13 { ErrorCode::UnknownTopicId } else { ErrorCode::UnknownTopicOrPartition };
        return r;
    };
    let Some(part) = usize::try_from(*index).ok().and_then(|i| topic.partitions.get(i)) else {
        r.error_code = ErrorCode::UnknownTopicOrPartition;
        return r;
    };
    let leader_hint = |mut r: PartitionData, code: ErrorCode| {
        r.error_code = code;
        if version >= 12 {
            r.current_leader =
                LeaderIdAndEpoch::default().with_leader_id(BrokerId(part.leader)).with_leader_epoch(part.leader_epoch);
        }
        r
    };
    // Consumers may read from followers since KIP-392 (Fetch v11), up to what the follower
    // holds.
    let follower_read = version >= 11 && part.leader != -1 && part.replicas.contains(&plan.broker);
    if part.leader != plan.broker && !follower_read {
        return leader_hint(r, ErrorCode::NotLeaderOrFollower);
    }
    if pp.current_leader_epoch >= 0 {
        if pp.current_leader_epoch < part.leader_epoch {
            return leader_hint(r, ErrorCode::FencedLeaderEpoch);
        }
        if pp.current_leader_epoch > part.leader_epoch {
            r.error_code = ErrorCode::UnknownLeaderEpoch;
            return r;
        }
    }
    let log_end = part.replica_log_end(plan.broker);
    if pp.fetch_offset < part.log_start_offset || pp.fetch_offset > log_end {
        r.error_code = ErrorCode::OffsetOutOfRange;
        return r;
    }
    // Consumers read below the high watermark only, as on a Kafka broker.
    let hw = part.high_watermark().min(log_end);
    let lso = part.last_stable_offset().min(hw);
    r.high_watermark = hw;
    r.last_stable_offset = if version >= 4 { lso } else { -1 };
    r.log_start_offset = if version >= 5 { part.log_start_offset } else { -1 };
    if let Some(replica) = nearer_replica(cluster, plan, part) {
        r.preferred_read_replica = BrokerId(replica);
        r.records = Some(BytesMut::new().freeze());
        return r;
    }
    let upper = if plan.read_committed { lso } else { hw };
    let limit = if pp.max_bytes <= 0 { usize::MAX } else { pp.max_bytes as usize };
    let mut records = BytesMut::new();
    let mut end = pp.fetch_offset;
    for b in part.batches.iter().filter(|b| b.next_offset > pp.fetch_offset && b.base_offset < upper) {
        let fits = records.len() + b.bytes.len() <= limit && b.bytes.len() <= *budget;
        if !(fits || records.is_empty() && first) {
            break;
        }
        records.extend_from_slice(&b.bytes);
        *budget = budget.saturating_sub(b.bytes.len());
        end = b.next_offset;
    }
    if plan.read_committed {
        let aborted = part
            .aborted
            .iter()
            .filter(|a| !records.is_empty() && a.last_offset >= pp.fetch_offset && a.first_offset < end)
            .map(|a| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(a.producer_id))
                    .with_first_offset(a.first_offset)
            })
            .collect();
        r.aborted_transactions = Some(aborted);
    } else {
        r.aborted_transactions = None;
    }
    r.records = Some(records.freeze());
    r
}

/// The in-sync replica, in the consumer's rack, that a leader in another rack sends the
/// consumer to (Kafka's RackAwareReplicaSelector); `None` to serve it here.
fn nearer_replica(cluster: &FakeCluster, plan: &Plan, part: &super::Partition) -> Option<i32> {
    let rack = plan.rack.as_deref()?;
    if part.leader != plan.broker || cluster.rack_of(plan.broker) == Some(rack) {
        return None;
    }
    let live = cluster.brokers.iter().filter(|(_, b)| b.up).map(|(id, _)| *id).collect();
    part.in_sync(&live).into_iter().find(|&r| r != part.leader && cluster.rack_of(r) == Some(rack))
}

/// Builds the answer: updates (or opens) the session and leaves unchanged partitions out of
/// incremental answers.
fn finish(cluster: &mut FakeCluster, now: Instant, plan: &Plan, data: Vec<PartitionData>) -> FetchResponse {
    let version = plan.version;
    let mut session_id = 0;
    let mut kept: Vec<(&PlanPart, PartitionData)> = Vec::new();
    match plan.session {
        SessionMode::None => kept = plan.parts.iter().zip(data).collect(),
        SessionMode::Open => {
            let mut partitions = BTreeMap::new();
            for (pp, r) in plan.parts.iter().zip(data) {
                partitions.insert(pp.key.clone(), session_partition(pp, &r));
                kept.push((pp, r));
            }
            if let Some(id) = open_session(cluster, plan.broker, now) {
                session_id = id;
                if let Some(s) = cluster.fetches.sessions.get_mut(&plan.broker).and_then(|m| m.get_mut(&id)) {
                    s.partitions = partitions;
                }
            }
        }
        SessionMode::Incremental(id) => {
            session_id = id;
            let session = cluster.fetches.sessions.get_mut(&plan.broker).and_then(|m| m.get_mut(&id));
            for (pp, r) in plan.parts.iter().zip(data) {
                let changed = match session.as_ref().and_then(|s| s.partitions.get(&pp.key)) {
                    None => true,
                    Some(sp) => {
                        r.error_code != ErrorCode::None
                            || r.preferred_read_replica.0 >= 0
                            || r.records.as_ref().is_some_and(|b| !b.is_empty())
                            || sp.high_watermark != r.high_watermark
                            || sp.last_stable_offset != r.last_stable_offset
                            || sp.log_start_offset != r.log_start_offset
                    }
                };
                if changed {
                    kept.push((pp, r));
                }
            }
            if let Some(s) = cluster.fetches.sessions.get_mut(&plan.broker).and_then(|m| m.get_mut(&id)) {
                for (pp, r) in &kept {
                    if let Some(sp) = s.partitions.get_mut(&pp.key) {
                        sp.high_watermark = r.high_watermark;
                        sp.last_stable_offset = r.last_stable_offset;
                        sp.log_start_offset = r.log_start_offset;
                    }
                }
            }
        }
    }
    let mut leaders = Vec::new();
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (pp, r) in kept {
        if r.current_leader.leader_id.0 >= 0 && r.error_code != ErrorCode::None {
            leaders.push(r.current_leader.leader_id.0);
        }
        let same =
            responses.last().is_some_and(
                |t| {
                    if version >= 13 {
                        t.topic_id == pp.key.1
                    } else {
                        t.topic == pp.wire_name
                    }
                },
            );
        if !same {
            let mut t = FetchableTopicResponse::default();
            if version >= 13 {
                t.topic_id = pp.key.1;
            } else {
                t.topic = pp.wire_name.clone();
            }
            responses.push(t);
        }
        if let Some(t) = responses.last_mut() {
            t.partitions.push(r);
        }
    }
    let mut body = FetchResponse::default().with_responses(responses).with_session_id(session_id);
    if version >= 16 {
        body.node_endpoints = endpoints(cluster, leaders);
    }
    body
}

fn session_partition(pp: &PlanPart, r: &PartitionData) -> SessionPartition {
    SessionPartition {
        fetch_offset: pp.fetch_offset,
        max_bytes: pp.max_bytes,
        current_leader_epoch: pp.current_leader_epoch,
        high_watermark: r.high_watermark,
        last_stable_offset: r.last_stable_offset,
        log_start_offset: r.log_start_offset,
    }
}

/// A new session id on `broker`, or `None` when its cache is full of recently used sessions.
fn open_session(cluster: &mut FakeCluster, broker: i32, now: Instant) -> Option<i32> {
    let slots = cluster.fetches.slots;
    let sessions = cluster.fetches.sessions.entry(broker).or_default();
    if slots == 0 {
        return None;
    }
    if sessions.len() >= slots {
        let stale = sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) >= SESSION_EVICTION_IDLE)
            .min_by_key(|(id, s)| (s.last_used, **id))
            .map(|(id, _)| *id)?;
        sessions.remove(&stale);
    }
    let state = &mut cluster.fetches;
    let mut id = state.next_session_id;
    loop {
        id = if id == i32::MAX { 1 } else { id + 1 };
        if !state.sessions.values().any(|m| m.contains_key(&id)) {
            break;
        }
    }
    state.next_session_id = id;
    state
        .sessions
        .entry(broker)
        .or_default()
        .insert(id, Session { epoch: 1, partitions: BTreeMap::new(), last_used: now });
    Some(id)
}

fn endpoints(cluster: &FakeCluster, ids: Vec<i32>) -> Vec<NodeEndpoint> {
    super::produce::node_endpoints(cluster, ids)
        .into_iter()
        .map(|e| NodeEndpoint::default().with_node_id(e.node_id).with_host(e.host).with_port(e.port))
        .collect()
}
