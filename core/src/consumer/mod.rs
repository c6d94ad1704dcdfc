//! The consumer machine: positions of assigned partitions, the fetcher (one fetch in flight
//! per leader, on its fetch connection, in a fetch session), the buffer of fetched data the
//! application polls from, offset resets with ListOffsets, and committed offsets with
//! OffsetFetch / OffsetCommit at the group coordinator.
//!
//! A partition's way to its first record:
//!
//! | partition | on | next |
//! |---|---|---|
//! | assigned, with `group.id` | OffsetFetch answers an offset | has a position |
//! | assigned, with `group.id` | OffsetFetch answers none | resetting (`auto.offset.reset`) |
//! | assigned, no `group.id` | | resetting (`auto.offset.reset`) |
//! | resetting | ListOffsets answers | has a position |
//! | resetting, `auto.offset.reset=none` | | failed: the next poll reports [`ConsumeError::NoOffset`] |
//! | has a position | not paused, leader known, no fetch of it in flight | fetched from where the last fetch ended |
//! | fetched | records | buffered until polled; each poll moves the position past what it returns |
//! | fetched | OFFSET_OUT_OF_RANGE | resetting (or failed, with `none`) |
//! | fetched | a leader or topic error, or no answer | metadata refreshed, fetched again after `retry.backoff.ms` |
//! | has a position from a record or a commit with a leader epoch | a new leader epoch, or the commit read | validating (KIP-320): what was buffered is dropped |
//! | validating | OffsetForLeaderEpoch: the consumed epoch ends at or after the position | has a position |
//! | validating | the log ends before the position (truncated) | at the divergence point; with `none`, failed with [`ConsumeError::LogTruncation`] |
//! | any | `Consumer::seek` | has the position sought; what was buffered for it is dropped |
//!
//! Each partition carries a version that a seek, a reset or a new assignment bumps; answers
//! and buffered data of an older version are ignored, so nothing fetched before a seek is
//! ever returned after it.
//!
//! Every fetch names all of a leader's fetchable partitions, including those whose data
//! still waits in the buffer (they are fetched from where their buffered data ends). A
//! long poll on a partition that has caught up therefore never holds back another partition
//! of the same leader: the broker answers as soon as any of them has data.
//!
//! Memory: fetched data waits in the buffer until polled. A fetch is sent only while the
//! buffer holds less than `fetch.buffer.memory`, and asks for no more than the room left, so
//! a slow application holds the consumer at that bound (plus at most one batch larger than
//! the room, which brokers return whole).

mod config;
pub(crate) mod fetched;
pub mod group;
pub mod metrics;
mod record;
mod session;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

pub use config::{ConsumerConfig, GroupProtocol, IsolationLevel, OffsetReset};
pub use record::{ConsumeError, ConsumerRecord, Rebalance, RebalanceId, TopicPartition};

use crate::client::{Event, RequestError, RequestId, Response, Target};
use crate::coordinator::CoordinatorKey;
use crate::machine::{Ctx, Link, Machine, Outgoing, Role, Signal, Tag};
use crate::protocol::messages::fetch::request::{FetchPartition, FetchTopic, ForgottenTopic};
use crate::protocol::messages::list_offsets::request::{ListOffsetsPartition, ListOffsetsTopic};
use crate::protocol::messages::offset_commit::request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use crate::protocol::messages::offset_fetch::request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use crate::protocol::messages::offset_for_leader_epoch::request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use crate::protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, OffsetForLeaderEpochRequest,
};
use crate::protocol::records::DecodeOptions;
use crate::protocol::{ApiKey, BrokerId, ErrorCode, GroupId, RequestBody, ResponseBody, StrBytes, TopicName, Uuid};
use crate::timer::Deadlines;
use fetched::{Aborted, Fetched, Next};
use group::classic::{ClassicMember, Settings};
use group::{Change, GroupMember};
use session::{FetchSpec, Session};

/// Where an offset lookup looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the last stable offset under read_committed).
    Latest,
    /// The first offset whose timestamp is at or after this many milliseconds since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// An offset a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset.
    pub offset: i64,
    /// The timestamp of the record there (-1 for earliest / latest).
    pub timestamp: i64,
    /// The leader epoch of that record, when the broker reports one.
    pub leader_epoch: Option<i32>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, when known.
    pub leader_epoch: Option<i32>,
    /// The application's metadata string.
    pub metadata: String,
}

impl CommittedOffset {
    /// An offset with no epoch and empty metadata.
    pub fn new(offset: i64) -> Self {
        CommittedOffset { offset, leader_epoch: None, metadata: String::new() }
    }
}

/// Where a partition's position comes from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// It has a position.
    Positioned,
    /// Waiting for the group's committed offset.
    Committed,
    /// Waiting for an offset lookup.
    Reset(OffsetSpec),
    /// No position and no way to get one (`auto.offset.reset=none`): waits for a seek.
    Failed,
    /// Has a position from before a leader change, to check against the new leader's log.
    Validate,
}

#[derive(Debug)]
struct PartitionState {
    /// The next offset to hand the application.
    position: i64,
    /// The leader epoch of the last record handed out, for commits.
    epoch: Option<i32>,
    start: Start,
    paused: bool,
    version: u64,
    /// A fetch or a lookup for it is in flight.
    busy: bool,
    /// Where the data buffered for this version ends (the next offset to fetch), -1 when
    /// nothing is buffered.
    fetched_to: i64,
    /// After an error, not fetched before this.
    retry_at: Option<Instant>,
    high_watermark: i64,
    log_start_offset: i64,
    last_stable_offset: i64,
    /// The replica the leader asked this consumer to read from (KIP-392, by `client.rack`),
    /// until when: the leader is asked again after `metadata.max.age.ms`, as Java does.
    read_replica: Option<(BrokerId, Instant)>,
}

impl PartitionState {
    /// Moves the position past a batch that gave nothing to return (aborted, a transaction
    /// marker, or used up), taking that batch's leader epoch: a commit of the position then
    /// names the epoch its data was written in. With the epoch of an older leader, a later
    /// validation would find that epoch ended before the position and take it for truncated.
    fn skip_to(&mut self, offset: i64, epoch: Option<i32>) {
        if offset > self.position {
            self.position = offset;
            self.epoch = epoch.or(self.epoch);
        }
    }

    fn new(start: Start, version: u64) -> Self {
        PartitionState {
            position: -1,
            epoch: None,
            start,
            paused: false,
            version,
            busy: false,
            fetched_to: -1,
            retry_at: None,
            high_watermark: -1,
            log_start_offset: -1,
            last_stable_offset: -1,
            read_replica: None,
        }
    }

    /// The offset the next fetch asks for: past what is buffered.
    fn fetch_offset(&self) -> i64 {
        self.position.max(self.fetched_to)
    }

    fn fetchable(&self, now: Instant) -> bool {
        self.start == Start::Positioned && !self.paused && !self.busy && self.retry_at.is_none_or(|t| t <= now)
    }

    /// Whether `fetched` is still wanted: fetched for this assignment version, and the
    /// partition still has a position to read from.
    fn reads(&self, fetched: &Fetched) -> bool {
        self.version == fetched.version && self.start == Start::Positioned
    }
}

/// A job for the group coordinator: read committed offsets, or commit.
#[derive(Debug)]
enum CoordinatorJob {
    /// Committed offsets of `partitions`; `id` is the application's query, `None` when the
    /// consumer asks for starting positions.
    Committed { id: Option<RequestId>, partitions: Vec<(TopicPartition, u64)> },
    /// `id` is the application's commit, `None` for an auto-commit or a commit before a
    /// revoke.
    Commit { id: Option<RequestId>, offsets: Vec<(TopicPartition, CommittedOffset)> },
}

#[derive(Debug)]
struct Job<K> {
    kind: K,
    /// When the last attempt was sent.
    sent: Option<Instant>,
    deadline: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
    in_flight: bool,
    /// The member's generation (or KIP-848 epoch) when the job was made, if in a group.
    generation: Option<i32>,
}

/// A partition a fetch in flight asked for.
#[derive(Debug)]
struct Asked {
    partition: TopicPartition,
    version: u64,
    fetch_offset: i64,
}

/// An offset lookup: the application's, or the consumer's own resets (`id` = `None`).
#[derive(Debug)]
struct Lookup {
    id: Option<RequestId>,
    /// Partitions still to ask, with the spec and (for resets) the partition version.
    pending: BTreeMap<TopicPartition, (OffsetSpec, u64)>,
    /// Partitions asked in a request in flight.
    asked: BTreeSet<TopicPartition>,
    found: BTreeMap<TopicPartition, Option<ListedOffset>>,
    deadline: Option<Instant>,
    retry_at: Option<Instant>,
    failures: u32,
}

#[derive(Debug)]
enum InFlight {
    Member,
    Fetch { broker: BrokerId, partitions: Vec<Asked>, sent: Instant },
    Lookup { lookup: u64, partitions: Vec<TopicPartition> },
    Validate { partitions: Vec<(TopicPartition, u64)> },
    Coordinator { job: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retry,
    Deadline,
    AutoCommit,
    PollInterval,
    /// A revocation not acknowledged within `max.poll.interval.ms` goes through anyway.
    AckDeadline,
    /// The member stops waiting for its commit before a revoke.
    RevokeCommitDeadline,
}

/// With decoding handed out ([`crate::Client::offload_work`]), how many fetched partitions at
/// the front of the buffer may be out or back decoded but unread: enough to keep another
/// core busy while the application reads, few enough that the decoded copies (beyond
/// `fetch.buffer.memory`, which counts the fetched bytes) stay a few partitions' worth.
const DECODE_AHEAD: usize = 4;

/// The consumer machine (see the module docs).
#[derive(Debug)]
pub(crate) struct Consumer {
    config: ConsumerConfig,
    group: Option<GroupId>,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Leader and leader epoch of each assigned partition, from the last metadata.
    leaders: BTreeMap<TopicPartition, (BrokerId, i32)>,
    /// The brokers in the last metadata: a preferred read replica must be one of them.
    brokers: BTreeSet<BrokerId>,
    sessions: BTreeMap<BrokerId, Session>,
    /// Brokers with a fetch in flight, each with the bytes that fetch may bring (its
    /// max_bytes): reserved in the buffer until the answer comes.
    fetching: BTreeMap<BrokerId, usize>,
    /// Fetched data waiting for the application, with the broker that sent it.
    buffer: VecDeque<(BrokerId, Fetched)>,
    /// Bytes of `buffer` each broker sent.
    buffered_from: BTreeMap<BrokerId, usize>,
    /// Record bytes of each broker's last answer to a fetch.
    last_answer: BTreeMap<BrokerId, usize>,
    lookups: BTreeMap<u64, Lookup>,
    jobs: BTreeMap<u64, Job<CoordinatorJob>>,
    in_flight: BTreeMap<Tag, InFlight>,
    /// Reported by the next poll.
    errors: VecDeque<ConsumeError>,
    events: VecDeque<Event>,
    timers: Deadlines<Timer>,
    next_tag: Tag,
    next_key: u64,
    next_version: u64,
    retry_backoff: Duration,
    closing: bool,
    /// Fetched gzip and zstd data is decoded on other threads ([`crate::Client::offload_work`]).
    offload: bool,
    /// The group membership, once subscribed.
    member: Option<Box<dyn GroupMember>>,
    /// Seeds the KIP-848 member id.
    member_seed: u64,
    /// A pattern subscription: topics matching it are subscribed as metadata reveals them.
    pattern: Option<regex::Regex>,
    /// When the application last polled, for `max.poll.interval.ms`.
    last_poll: Option<Instant>,
    /// An auto-commit is queued or in flight.
    auto_committing: Option<u64>,
    /// The newest commit job carrying each partition. The consumer's own commits (auto and
    /// before a revoke) hold positions, which only move forward: an older one still waiting
    /// (for its first attempt or a retry) gives up a partition a newer one carries, so it
    /// can never overwrite a newer commit once the newer is in.
    newest_commit: BTreeMap<TopicPartition, u64>,
    metrics: metrics::Metrics,
    /// Revocations wait for the application's acknowledgement.
    listener: bool,
    /// A revocation waiting for it: its id and the partitions, kept (paused) until then.
    pending_revoke: Option<(RebalanceId, Vec<TopicPartition>)>,
    /// Commits the member waits for before it rejoins or leaves (before a revoke, on close),
    /// each until when it waits.
    awaited_commits: BTreeMap<u64, Instant>,
    /// What the member was last told by [`Consumer::hold_member`].
    member_held: bool,
    next_rebalance: u64,
    /// When the member last left the stable state, for the rebalance latency.
    rebalance_since: Option<Instant>,
    /// The member's deadline that already fired: its request waits for the coordinator's
    /// connection now, which the router drives, so it is not reported again.
    member_fired: Option<Instant>,
    /// The armed plant, copied from the router's context (poll has none).
    #[cfg(feature = "plants")]
    plant: Option<crate::plants::Plant>,
}

impl Consumer {
    pub fn new(now: Instant, config: &crate::Config) -> Self {
        Consumer {
            metrics: metrics::Metrics::new(now),
            listener: false,
            pending_revoke: None,
            awaited_commits: BTreeMap::new(),
            member_held: false,
            next_rebalance: 0,
            rebalance_since: None,
            group: config.consumer.group_id.clone(),
            config: config.consumer.clone(),
            partitions: BTreeMap::new(),
            leaders: BTreeMap::new(),
            sessions: BTreeMap::new(),
            fetching: BTreeMap::new(),
            brokers: BTreeSet::new(),
            buffer: VecDeque::new(),
            buffered_from: BTreeMap::new(),
            last_answer: BTreeMap::new(),
            lookups: BTreeMap::new(),
            jobs: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            errors: VecDeque::new(),
            events: VecDeque::new(),
            timers: Deadlines::default(),
            next_tag: 0,
            next_key: 0,
            next_version: 0,
            retry_backoff: config.retry_backoff.initial,
            closing: false,
            offload: false,
            member: None,
            member_seed: config.rng_seed.unwrap_or(0),
            pattern: None,
            last_poll: None,
            auto_committing: None,
            newest_commit: BTreeMap::new(),
            member_fired: None,
            #[cfg(feature = "plants")]
            plant: None,
        }
    }

    /// Whether plant `p` is armed.
    #[cfg(feature = "plants")]
    fn planted(&self, p: crate::plants::Plant) -> bool {
        self.plant == Some(p)
    }

    // ---- the application's commands ------------------------------------------------------

    /// Replaces the assignment. Partitions kept keep their positions. Refused while
    /// subscribed to a group (Java's rule: one or the other).
    pub fn assign(
        &mut self,
        now: Instant,
        partitions: Vec<TopicPartition>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), ConsumeError> {
        if self.member.as_ref().is_some_and(|m| !m.topics().is_empty()) {
            return Err(ConsumeError::Misuse("assign while subscribed: unsubscribe first"));
        }
        self.set_assignment(now, partitions, ctx);
        self.arm_auto_commit(now);
        Ok(())
    }

    /// Joins the group (`group.id`) with a subscription to `topics`, replacing the last one;
    /// the group's assignor decides which partitions this consumer gets.
    pub fn subscribe(&mut self, now: Instant, topics: Vec<TopicName>, ctx: &mut Ctx<'_>) -> Result<(), ConsumeError> {
        self.pattern = None;
        self.subscribe_topics(now, topics, ctx)
    }

    fn subscribe_topics(
        &mut self,
        now: Instant,
        topics: Vec<TopicName>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), ConsumeError> {
        let Some(group) = self.group.clone() else { return Err(ConsumeError::NoGroup) };
        if self.member.is_none() && !self.partitions.is_empty() {
            return Err(ConsumeError::Misuse("subscribe while partitions are assigned: assign an empty list first"));
        }
        if self.member.is_none() {
            self.member = Some(self.new_member(group));
        }
        let member = self.member.as_mut().expect("set above");
        let topics: BTreeSet<TopicName> = topics.into_iter().collect();
        for topic in &topics {
            ctx.signals
                .push(Signal::TrackTopic { topic: topic.clone(), auto_create: self.config.allow_auto_create_topics });
        }
        member.subscribe(topics);
        self.last_poll.get_or_insert(now);
        self.timers.insert(now + self.config.max_poll_interval, Timer::PollInterval);
        self.apply_changes(now, ctx);
        self.arm_auto_commit(now);
        Ok(())
    }

    fn new_member(&self, group: GroupId) -> Box<dyn GroupMember> {
        match self.config.group_protocol {
            GroupProtocol::Classic => {
                let assignors = self.config.assignors.iter().filter_map(|n| group::assignor::builtin(n)).collect();
                Box::new(ClassicMember::new(Settings {
                    group,
                    instance_id: self.config.group_instance_id.clone(),
                    session_timeout: self.config.session_timeout,
                    rebalance_timeout: self.config.max_poll_interval,
                    heartbeat_interval: self.config.heartbeat_interval,
                    assignors,
                    rack: self.config.client_rack.clone(),
                    retry_backoff: self.retry_backoff,
                }))
            }
            GroupProtocol::Consumer => {
                // KIP-848 v1 lets the client choose its member id: a UUID from the seed.
                let mut rng = crate::rand::Rng::stream(self.member_seed, "member-id");
                let mut bytes = [0u8; 16];
                for chunk in bytes.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
                }
                Box::new(group::next_gen::NextGenMember::new(group::next_gen::Settings {
                    group,
                    instance_id: self.config.group_instance_id.clone(),
                    rebalance_timeout: self.config.max_poll_interval,
                    rack: self.config.client_rack.clone(),
                    server_assignor: self.config.group_remote_assignor.clone(),
                    retry_backoff: self.retry_backoff,
                    member_id: Uuid::from_bytes(bytes).to_string(),
                }))
            }
        }
    }

    /// Subscribes to the topics whose whole name matches `pattern`, now and as they appear.
    pub fn subscribe_pattern(&mut self, now: Instant, pattern: &str, ctx: &mut Ctx<'_>) -> Result<(), ConsumeError> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| ConsumeError::InvalidPattern { pattern: pattern.to_string(), reason: e.to_string() })?;
        let topics = matching_topics(&regex, ctx.cluster);
        self.subscribe_topics(now, topics, ctx)?;
        self.pattern = Some(regex);
        ctx.signals.push(Signal::TrackAllTopics);
        Ok(())
    }

    /// Leaves the group; its partitions are revoked (committed first with auto-commit).
    pub fn unsubscribe(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.pattern = None;
        if let Some(member) = &mut self.member {
            member.unsubscribe();
        }
        self.apply_changes(now, ctx);
    }

    /// The subscribed topics.
    pub fn subscription(&self) -> Vec<TopicName> {
        self.member.as_ref().map(|m| m.topics().iter().cloned().collect()).unwrap_or_default()
    }

    /// Applies what the group member reported: revoked partitions are committed (with
    /// auto-commit) and dropped, lost ones dropped, new ones start at their committed offsets.
    fn apply_changes(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Some(member) = &mut self.member else { return };
        match (member.is_stable(), self.rebalance_since) {
            (true, Some(since)) => {
                self.rebalance_since = None;
                self.metrics.rebalanced(now, now.saturating_duration_since(since));
            }
            (false, None) if !member.topics().is_empty() => self.rebalance_since = Some(now),
            _ => {}
        }
        let changes = member.take_changes();
        if let Some(e) = member.take_error() {
            self.errors.push_back(e);
        }
        for change in changes {
            let Change { assigned, revoked, lost } = change;
            #[cfg(feature = "plants")]
            let skip_commit = self.planted(crate::plants::Plant::ConsumerRevokeSkipsCommit);
            #[cfg(not(feature = "plants"))]
            let skip_commit = false;
            if !revoked.is_empty() && self.config.enable_auto_commit && !skip_commit {
                let offsets: Vec<(TopicPartition, CommittedOffset)> =
                    self.positions().into_iter().filter(|(tp, _)| revoked.contains(tp)).collect();
                if !offsets.is_empty() {
                    // As Java's onJoinPrepare: the member rejoins (or tells the coordinator the
                    // partitions are gone) once this commit is through, so it can be retried
                    // in the generation it belongs to and the next owners start from it.
                    let key = self.add_job(now, CoordinatorJob::Commit { id: None, offsets });
                    let until = now + self.config.max_poll_interval;
                    self.timers.insert(until, Timer::RevokeCommitDeadline);
                    self.awaited_commits.insert(key, until);
                }
            }
            // With a listener, revoked partitions stay (paused, positions kept) until the
            // application acknowledges; the member holds its JoinGroup meanwhile.
            let mut ack = None;
            let mut gone: BTreeSet<TopicPartition> = lost.iter().cloned().collect();
            if self.listener && !revoked.is_empty() {
                let id = match &mut self.pending_revoke {
                    Some((id, pending)) => {
                        pending.extend(revoked.iter().cloned());
                        *id
                    }
                    None => {
                        self.next_rebalance += 1;
                        let id = RebalanceId(self.next_rebalance);
                        self.pending_revoke = Some((id, revoked.clone()));
                        self.timers.insert(now + self.config.max_poll_interval, Timer::AckDeadline);
                        id
                    }
                };
                ack = Some(id);
                for tp in &revoked {
                    let _ = self.pause(tp, true);
                }
            } else {
                gone.extend(revoked.iter().cloned());
            }
            let mut kept: Vec<TopicPartition> =
                self.partitions.keys().filter(|tp| !gone.contains(*tp)).cloned().collect();
            kept.extend(assigned.iter().cloned());
            self.set_assignment(now, kept, ctx);
            self.events.push_back(Event::Rebalance(Rebalance { ack, assigned, revoked, lost }));
        }
        self.hold_member(now);
    }

    /// Holds the member's next JoinGroup (KIP-848: the heartbeat that gives partitions up, or
    /// a leave; a held member keeps heartbeating) while the application handles a revocation
    /// or a commit it waits for is under way: one before a revoke, or a closing member's last.
    /// A commit stops holding it once done, once the member is in another generation (the
    /// commit is then dropped, not retried), or at its time limit: `max.poll.interval.ms`
    /// before a revoke, the rebalance timeout the coordinator waits for the member within;
    /// `default.api.timeout.ms` on close.
    fn hold_member(&mut self, now: Instant) {
        let generation = self.generation();
        let jobs = &self.jobs;
        self.awaited_commits
            .retain(|key, until| now < *until && jobs.get(key).is_some_and(|j| j.generation == generation));
        let held = self.pending_revoke.is_some() || !self.awaited_commits.is_empty();
        if let Some(member) = &mut self.member {
            if held != self.member_held {
                member.hold(held);
            }
        }
        self.member_held = held;
    }

    /// Revocations wait for [`Consumer::ack_rebalance`] (on) or go through at once (off, the
    /// default; turning it off lets a waiting one go).
    pub fn set_rebalance_listener(&mut self, now: Instant, on: bool, ctx: &mut Ctx<'_>) {
        self.listener = on;
        if !on {
            if let Some((id, _)) = self.pending_revoke {
                self.ack_rebalance(now, id, ctx);
            }
        }
    }

    /// The application handled revocation `id`: the partitions go, the rebalance goes on.
    pub fn ack_rebalance(&mut self, now: Instant, id: RebalanceId, ctx: &mut Ctx<'_>) {
        let Some((pending, revoked)) = self.pending_revoke.take() else { return };
        if pending != id {
            self.pending_revoke = Some((pending, revoked));
            return;
        }
        let kept: Vec<TopicPartition> = self.partitions.keys().filter(|tp| !revoked.contains(tp)).cloned().collect();
        self.set_assignment(now, kept, ctx);
        self.hold_member(now);
    }

    fn arm_auto_commit(&mut self, now: Instant) {
        if self.group.is_some() && self.config.enable_auto_commit {
            self.timers.insert(now + self.config.auto_commit_interval, Timer::AutoCommit);
        }
    }

    fn auto_commit(&mut self, now: Instant) {
        let in_progress = self.auto_committing.is_some_and(|k| self.jobs.contains_key(&k));
        if !in_progress {
            let offsets = self.positions();
            let in_group = self.member.as_ref().is_none_or(|m| m.is_stable());
            if !offsets.is_empty() && in_group {
                let key = self.add_job(now, CoordinatorJob::Commit { id: None, offsets });
                self.auto_committing = Some(key);
            }
        }
        self.arm_auto_commit(now);
    }

    fn set_assignment(&mut self, now: Instant, partitions: Vec<TopicPartition>, ctx: &mut Ctx<'_>) {
        let wanted: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        self.partitions.retain(|tp, _| wanted.contains(tp));
        self.drop_buffered(|tp| !wanted.contains(tp));
        let mut fresh = Vec::new();
        for tp in wanted {
            if self.partitions.contains_key(&tp) {
                continue;
            }
            let version = self.bump();
            let start = if self.group.is_some() {
                Start::Committed
            } else {
                Start::Reset(self.reset_spec().unwrap_or(OffsetSpec::Latest))
            };
            let state = PartitionState::new(start, version);
            if self.group.is_none() && self.reset_spec().is_none() {
                fresh.push((tp.clone(), None));
            }
            self.partitions.insert(tp.clone(), state);
        }
        let topics: BTreeSet<TopicName> = self.partitions.keys().map(|tp| tp.topic.clone()).collect();
        for topic in topics {
            ctx.signals.push(Signal::TrackTopic { topic, auto_create: self.config.allow_auto_create_topics });
        }
        if !fresh.is_empty() {
            for (tp, _) in &fresh {
                self.partitions.get_mut(tp).expect("inserted").start = Start::Failed;
            }
            self.errors.push_back(ConsumeError::NoOffset { partitions: fresh });
        }
        self.refresh_leaders(ctx.cluster);
        self.plan_starts(now);
    }

    /// Reads partition leaders again (metadata changed, or the assignment did). Lookups for
    /// the application's own queries name partitions outside the assignment too.
    fn refresh_leaders(&mut self, cluster: &crate::cluster::ClusterMetadata) {
        let lookups = self.lookups.values().flat_map(|l| l.pending.keys());
        let names: BTreeSet<&TopicPartition> = self.partitions.keys().chain(lookups).collect();
        let leaders: BTreeMap<TopicPartition, (BrokerId, i32)> =
            names.into_iter().filter_map(|tp| Some((tp.clone(), leader_of(cluster, tp)?))).collect();
        // A new leader epoch may come with a truncated log: positions taken under an older
        // epoch are checked against the new leader before fetching goes on (KIP-320).
        let mut moved = Vec::new();
        for (tp, state) in &self.partitions {
            let (Some(old), Some(new)) = (self.leaders.get(tp), leaders.get(tp)) else { continue };
            if new.1 > old.1 && state.start == Start::Positioned && state.epoch.is_some() {
                moved.push(tp.clone());
            }
        }
        self.leaders = leaders;
        self.brokers = cluster.brokers.keys().copied().collect();
        for tp in moved {
            self.validate(&tp);
        }
    }

    /// Holds `tp` at its position until the leader confirms it; drops what was fetched.
    fn validate(&mut self, tp: &TopicPartition) {
        let version = self.bump();
        if let Some(state) = self.partitions.get_mut(tp) {
            state.start = Start::Validate;
            state.version = version;
            state.busy = false;
            state.retry_at = None;
        }
        self.drop_buffered(|p| p == tp);
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Moves a partition's position; what was fetched for it before is dropped.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        let version = self.bump();
        let state = self.partitions.get_mut(tp).ok_or_else(|| ConsumeError::NotAssigned(tp.clone()))?;
        state.position = offset;
        state.fetched_to = -1;
        state.epoch = None;
        state.start = Start::Positioned;
        state.version = version;
        state.busy = false;
        state.retry_at = None;
        self.drop_buffered(|p| p == tp);
        self.forget_missing_position(tp);
        Ok(())
    }

    /// A seek gives `tp` a position: a report not yet polled that it had none is withdrawn.
    fn forget_missing_position(&mut self, tp: &TopicPartition) {
        self.errors.retain_mut(|e| match e {
            ConsumeError::NoOffset { partitions } => {
                partitions.retain(|(p, _)| p != tp);
                !partitions.is_empty()
            }
            ConsumeError::LogTruncation { partitions } => {
                partitions.retain(|(p, _, _)| p != tp);
                !partitions.is_empty()
            }
            _ => true,
        });
    }

    /// Looks up the offset `spec` names and moves the position there.
    pub fn seek_to(&mut self, now: Instant, tp: &TopicPartition, spec: OffsetSpec) -> Result<(), ConsumeError> {
        let version = self.bump();
        let state = self.partitions.get_mut(tp).ok_or_else(|| ConsumeError::NotAssigned(tp.clone()))?;
        state.start = Start::Reset(spec);
        state.version = version;
        state.busy = false;
        state.retry_at = None;
        self.drop_buffered(|p| p == tp);
        self.forget_missing_position(tp);
        self.plan_starts(now);
        Ok(())
    }

    /// Stops (`paused`) or resumes fetching a partition; a paused partition's buffered
    /// records are dropped and fetched again on resume.
    pub fn pause(&mut self, tp: &TopicPartition, paused: bool) -> Result<(), ConsumeError> {
        let version = self.bump();
        let state = self.partitions.get_mut(tp).ok_or_else(|| ConsumeError::NotAssigned(tp.clone()))?;
        if state.paused == paused {
            return Ok(());
        }
        state.paused = paused;
        if paused {
            state.version = version;
            state.busy = false;
            self.drop_buffered(|p| p == tp);
        }
        Ok(())
    }

    /// The next offset to be returned for a partition; `None` while it has no position.
    pub fn position(&self, tp: &TopicPartition) -> Result<Option<i64>, ConsumeError> {
        let state = self.partitions.get(tp).ok_or_else(|| ConsumeError::NotAssigned(tp.clone()))?;
        Ok((state.start == Start::Positioned).then_some(state.position))
    }

    /// Positions of every positioned partition, with the epoch of the last record returned:
    /// what a commit of "everything consumed" sends.
    pub fn positions(&self) -> Vec<(TopicPartition, CommittedOffset)> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.start == Start::Positioned)
            .map(|(tp, s)| {
                (tp.clone(), CommittedOffset { offset: s.position, leader_epoch: s.epoch, metadata: String::new() })
            })
            .collect()
    }

    /// Whether a poll would return something now (records or an error), or at least move
    /// past stale data.
    pub fn has_records(&self) -> bool {
        !self.errors.is_empty()
            || self.buffer.front().is_some_and(|(_, f)| {
                !f.is_decoding() || !self.partitions.get(&f.partition).is_some_and(|s| s.reads(f))
            })
    }

    /// Fetched gzip and zstd data is handed out to be decoded elsewhere from now on.
    pub(crate) fn offload(&mut self, on: bool) {
        self.offload = on;
    }

    /// The next fetched data to decode elsewhere: from the front of the buffer, so that it
    /// is back by the time the application reaches it.
    pub(crate) fn poll_work(&mut self) -> Option<fetched::Decode> {
        if !self.offload {
            return None;
        }
        self.buffer.iter_mut().take(DECODE_AHEAD).find_map(|(_, f)| f.start_decoding())
    }

    /// Fetched data came back decoded; data dropped meanwhile (a seek, a revoke) is gone
    /// and so is its result.
    pub(crate) fn handle_work_done(&mut self, done: fetched::Decoded) {
        if let Some((_, f)) = self.buffer.iter_mut().find(|(_, f)| f.key == done.key) {
            f.decoded(done);
        }
    }

    /// Bytes of fetched data waiting for the application.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_from.values().sum()
    }

    /// Up to `max` records (at most `max.poll.records`), in fetch order; positions move past
    /// them. An error is reported on its own, by a poll that would otherwise return nothing
    /// before it.
    pub fn poll(&mut self, now: Instant, max: usize) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        self.last_poll = Some(now);
        if let Some(member) = &mut self.member {
            member.polled();
            // A member that left for a poll timeout joins again: the hold for its commit
            // before the leave belongs to the generation it left.
            self.hold_member(now);
        }
        let max = max.min(self.config.max_poll_records).max(1);
        let mut out = Vec::new();
        let mut decoding = false;
        while out.len() < max && !decoding {
            let Some((_, front)) = self.buffer.front_mut() else { break };
            let Some(state) = self.partitions.get_mut(&front.partition).filter(|s| s.reads(front)) else {
                self.pop_buffer();
                continue;
            };
            // The partition is looked up once for the run of records this fetch gives; a
            // lookup per record (its topic name compared at every step) was a tenth of poll.
            let ended = loop {
                if out.len() == max {
                    break None;
                }
                match front.next() {
                    Next::Record(r) => {
                        if r.offset < state.position {
                            continue;
                        }
                        state.position = r.offset + 1;
                        state.epoch = r.leader_epoch.or(state.epoch);
                        out.push(r);
                        #[cfg(feature = "plants")]
                        if out.len() == max && self.plant == Some(crate::plants::Plant::ConsumerPollSkipsRecord) {
                            state.position += 1;
                        }
                    }
                    Next::Skip(offset, epoch) => {
                        #[cfg(feature = "plants")]
                        if self.plant == Some(crate::plants::Plant::ConsumerStuckAtControlBatch) {
                            continue;
                        }
                        state.skip_to(offset, epoch);
                    }
                    Next::Done => break Some(None),
                    // Records after it, of this partition or another, wait for it: they
                    // come in fetch order.
                    Next::Decoding => {
                        #[cfg(feature = "plants")]
                        if self.plant == Some(crate::plants::Plant::ConsumerReadsPastDecoding) {
                            break Some(None);
                        }
                        decoding = true;
                        break None;
                    }
                    Next::Corrupt(reason) => {
                        let error = ConsumeError::Corrupt {
                            partition: front.partition.clone(),
                            offset: state.position,
                            reason,
                        };
                        state.start = Start::Failed;
                        break Some(Some(error));
                    }
                }
            };
            match ended {
                None => {}
                Some(None) => self.pop_buffer(),
                Some(Some(error)) => {
                    self.pop_buffer();
                    self.errors.push_back(error);
                    break;
                }
            }
        }
        // A used-up fetch leaves at once, so that its partition is fetched again without
        // waiting for the next poll.
        while let Some((_, front)) = self.buffer.front_mut().filter(|(_, f)| f.at_end()) {
            match front.next() {
                #[cfg(feature = "plants")]
                Next::Skip(..) if self.plant == Some(crate::plants::Plant::ConsumerStuckAtControlBatch) => {}
                Next::Skip(offset, epoch) => {
                    if let Some(s) = self.partitions.get_mut(&front.partition).filter(|s| s.version == front.version) {
                        s.skip_to(offset, epoch);
                    }
                }
                _ => self.pop_buffer(),
            }
        }
        let bytes =
            out.iter().map(|r| r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())).sum();
        self.metrics.polled(now, out.len(), bytes);
        if out.is_empty() {
            if let Some(e) = self.errors.pop_front() {
                return Err(e);
            }
        }
        Ok(out)
    }

    /// The consumer's metrics by Java name (see [`metrics`]).
    pub fn metrics(&self, now: Instant) -> Vec<(&'static str, f64)> {
        self.metrics.snapshot(now, self.partitions.len(), self.buffered_bytes())
    }

    /// Queues an offset lookup; answered with [`Event::ListedOffsets`].
    pub fn list_offsets(
        &mut self,
        now: Instant,
        id: RequestId,
        partitions: Vec<(TopicPartition, OffsetSpec)>,
        ctx: &mut Ctx<'_>,
    ) {
        for topic in partitions.iter().map(|(tp, _)| tp.topic.clone()).collect::<BTreeSet<_>>() {
            ctx.signals.push(Signal::TrackTopic { topic, auto_create: false });
        }
        let lookup = Lookup {
            id: Some(id),
            pending: partitions.into_iter().map(|(tp, spec)| (tp, (spec, 0))).collect(),
            asked: BTreeSet::new(),
            found: BTreeMap::new(),
            deadline: Some(now + self.config.default_api_timeout),
            retry_at: None,
            failures: 0,
        };
        self.timers.insert(now + self.config.default_api_timeout, Timer::Deadline);
        let key = self.key();
        if lookup.pending.is_empty() {
            self.events.push_back(Event::ListedOffsets { id, result: Ok(BTreeMap::new()) });
            return;
        }
        self.lookups.insert(key, lookup);
        self.refresh_leaders(ctx.cluster);
    }

    /// Queues a read of the group's committed offsets; answered with
    /// [`Event::CommittedOffsets`].
    pub fn committed(&mut self, now: Instant, id: RequestId, partitions: Vec<TopicPartition>) {
        if self.group.is_none() {
            self.events.push_back(Event::CommittedOffsets { id, result: Err(ConsumeError::NoGroup) });
            return;
        }
        let partitions = partitions.into_iter().map(|tp| (tp, 0)).collect();
        self.add_job(now, CoordinatorJob::Committed { id: Some(id), partitions });
    }

    /// Queues a commit; answered with [`Event::Committed`].
    pub fn commit(&mut self, now: Instant, id: RequestId, offsets: Vec<(TopicPartition, CommittedOffset)>) {
        if self.group.is_none() {
            self.events.push_back(Event::Committed { id, result: Err(ConsumeError::NoGroup) });
            return;
        }
        if offsets.is_empty() {
            self.events.push_back(Event::Committed { id, result: Ok(()) });
            return;
        }
        self.add_job(now, CoordinatorJob::Commit { id: Some(id), offsets });
    }

    /// Lag and position figures per partition: (partition, position, high watermark).
    pub fn lags(&self) -> Vec<(TopicPartition, i64, i64)> {
        self.partitions
            .iter()
            .filter(|(_, s)| s.start == Start::Positioned)
            .map(|(tp, s)| (tp.clone(), s.position, s.high_watermark))
            .collect()
    }

    // ---- internals ----------------------------------------------------------------------

    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    fn reset_spec(&self) -> Option<OffsetSpec> {
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => Some(OffsetSpec::Earliest),
            OffsetReset::Latest => Some(OffsetSpec::Latest),
            OffsetReset::None => None,
        }
    }

    fn add_job(&mut self, now: Instant, kind: CoordinatorJob) -> u64 {
        let deadline = now + self.config.default_api_timeout;
        self.timers.insert(deadline, Timer::Deadline);
        let key = self.key();
        if let CoordinatorJob::Commit { offsets, .. } = &kind {
            for (tp, _) in offsets {
                self.newest_commit.insert(tp.clone(), key);
            }
        }
        self.jobs.insert(
            key,
            Job {
                kind,
                sent: None,
                deadline: Some(deadline),
                retry_at: None,
                failures: 0,
                in_flight: false,
                generation: self.generation(),
            },
        );
        key
    }

    fn drop_buffered(&mut self, mut gone: impl FnMut(&TopicPartition) -> bool) {
        let before = self.buffer.len();
        let buffered_from = &mut self.buffered_from;
        self.buffer.retain(|(from, f)| {
            let keep = !gone(&f.partition);
            if !keep {
                unbuffer(buffered_from, *from, f.size);
            }
            keep
        });
        if self.buffer.len() != before {
            for (tp, state) in &mut self.partitions {
                if gone(tp) {
                    state.fetched_to = -1;
                }
            }
        }
    }

    fn pop_buffer(&mut self) {
        if let Some((from, f)) = self.buffer.pop_front() {
            unbuffer(&mut self.buffered_from, from, f.size);
        }
    }

    /// Whether `broker` may be fetched from again: no more than its last answer's worth of
    /// what it sent is still waiting, so the application reads one answer while the next is
    /// under way. Fetching further ahead would only fill the buffer (up to
    /// `fetch.buffer.memory`) with data read long after it arrived, out of the caches, in
    /// memory touched for the first time. One fetch is in flight per broker at a time
    /// either way, so the broker loses no throughput.
    fn caught_up_with(&self, broker: BrokerId) -> bool {
        let left = self.buffered_from.get(&broker).copied().unwrap_or(0);
        left <= self.last_answer.get(&broker).copied().unwrap_or(0)
    }

    /// Starts lookups for partitions that need a position and have none under way.
    fn plan_starts(&mut self, now: Instant) {
        let mut committed = Vec::new();
        let mut resets = BTreeMap::new();
        for (tp, state) in &mut self.partitions {
            if state.busy {
                continue;
            }
            match state.start {
                Start::Committed => committed.push((tp.clone(), state.version)),
                Start::Reset(spec) => {
                    resets.insert(tp.clone(), (spec, state.version));
                }
                _ => continue,
            }
            state.busy = true;
        }
        if !committed.is_empty() {
            let key = self.key();
            let job = CoordinatorJob::Committed { id: None, partitions: committed };
            self.jobs.insert(
                key,
                Job {
                    kind: job,
                    sent: None,
                    deadline: None,
                    retry_at: None,
                    failures: 0,
                    in_flight: false,
                    generation: self.generation(),
                },
            );
        }
        if !resets.is_empty() {
            let key = self.key();
            let lookup = Lookup {
                id: None,
                pending: resets,
                asked: BTreeSet::new(),
                found: BTreeMap::new(),
                deadline: None,
                retry_at: None,
                failures: 0,
            };
            self.lookups.insert(key, lookup);
        }
        let _ = now;
    }

    /// The partitions to fetch from `broker` now, with what to ask of each.
    fn fetch_plan(&self, now: Instant, broker: BrokerId) -> BTreeMap<TopicPartition, FetchSpec> {
        // The room left in the buffer bounds the whole response (the request's max_bytes);
        // a constant per-partition bound keeps unchanged partitions out of incremental
        // fetches.
        let max_bytes = self.config.max_partition_fetch_bytes.max(1);
        self.partitions
            .iter()
            .filter(|(_, s)| s.fetchable(now))
            .filter(|(tp, s)| self.fetch_node(tp, s, now) == Some(broker))
            .filter_map(|(tp, s)| {
                let (_, leader_epoch) = self.leaders.get(tp).copied()?;
                Some((tp.clone(), FetchSpec { fetch_offset: s.fetch_offset(), max_bytes, leader_epoch }))
            })
            .collect()
    }

    /// The broker to fetch `tp` from: the replica its leader named for this consumer's rack
    /// (KIP-392) while that holds and the broker is known, else the leader.
    fn fetch_node(&self, tp: &TopicPartition, state: &PartitionState, now: Instant) -> Option<BrokerId> {
        match state.read_replica {
            Some((replica, until)) if until > now && self.brokers.contains(&replica) => Some(replica),
            _ => self.leaders.get(tp).map(|l| l.0),
        }
    }

    /// The buffer's room for more fetched data: `fetch.buffer.memory` less what is buffered and
    /// what the fetches in flight may still bring.
    fn fetch_room(&self) -> usize {
        let reserved: usize = self.fetching.values().sum();
        self.config.fetch_buffer_memory.saturating_sub(self.buffered_bytes() + reserved)
    }

    /// The leaders with a partition to fetch now and no fetch in flight.
    fn brokers_to_fetch(&self, now: Instant) -> BTreeSet<BrokerId> {
        if self.fetch_room() == 0 || self.closing {
            return BTreeSet::new();
        }
        self.partitions
            .iter()
            .filter(|(_, s)| s.fetchable(now))
            .filter_map(|(tp, s)| self.fetch_node(tp, s, now))
            .filter(|b| !self.fetching.contains_key(b) && self.caught_up_with(*b))
            .collect()
    }

    /// What a fetch to one leader may bring: the room left, and no more than an even share
    /// of the whole buffer among the leaders fetched from, so that one leader that long-polls
    /// with nothing to send never holds the room the others need.
    fn fetch_max_bytes(&self, now: Instant) -> usize {
        let leaders = self.brokers_to_fetch(now).len() + self.fetching.len();
        let share = self.config.fetch_buffer_memory / leaders.max(1);
        (self.config.fetch_max_bytes.max(0) as usize).min(share).min(self.fetch_room())
    }

    fn build_fetch(&mut self, now: Instant, broker: BrokerId, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        if self.fetching.contains_key(&broker) || self.fetch_room() == 0 || !self.caught_up_with(broker) {
            return None;
        }
        let wanted = self.fetch_plan(now, broker);
        if wanted.is_empty() {
            return None;
        }
        let mut version = match negotiate(link, ApiKey::Fetch) {
            Ok(v) => v,
            Err(error) => {
                self.errors.push_back(error);
                for tp in wanted.keys() {
                    if let Some(s) = self.partitions.get_mut(tp) {
                        s.retry_at = Some(now + Duration::from_secs(1));
                    }
                }
                self.timers.insert(now + Duration::from_secs(1), Timer::Retry);
                return None;
            }
        };
        let id_of = |topic: &TopicName| ctx.cluster.topics.get(topic).map_or(Uuid::default(), |t| t.id);
        if version >= 13 && wanted.keys().any(|tp| id_of(&tp.topic) == Uuid::default()) {
            version = 12;
        }
        let session = self.sessions.entry(broker).or_default();
        let plan = session.plan(&wanted, version >= 7);
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (tp, spec) in &plan.send {
            if topics.last().is_none_or(|t| t.topic != tp.topic) {
                topics.push(FetchTopic::default().with_topic(tp.topic.clone()).with_topic_id(id_of(&tp.topic)));
            }
            let p = FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(spec.leader_epoch)
                .with_fetch_offset(spec.fetch_offset)
                .with_partition_max_bytes(spec.max_bytes);
            topics.last_mut().expect("pushed").partitions.push(p);
        }
        let mut forgotten: Vec<ForgottenTopic> = Vec::new();
        for tp in &plan.forget {
            if forgotten.last().is_none_or(|t| t.topic != tp.topic) {
                forgotten.push(ForgottenTopic::default().with_topic(tp.topic.clone()).with_topic_id(id_of(&tp.topic)));
            }
            forgotten.last_mut().expect("pushed").partitions.push(tp.partition);
        }
        // The broker may pass max_bytes by one batch (KIP-74), so the bound holds to within a
        // batch per leader.
        let max_bytes = self.fetch_max_bytes(now).max(1);
        let body = FetchRequest::default()
            .with_max_wait_ms(self.config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(self.config.fetch_min_bytes)
            .with_max_bytes(max_bytes.min(i32::MAX as usize) as i32)
            .with_isolation_level(self.config.isolation_level.wire())
            .with_session_id(plan.session_id)
            .with_session_epoch(plan.epoch)
            .with_topics(topics)
            .with_forgotten_topics_data(forgotten)
            .with_rack_id(StrBytes::from(self.config.client_rack.clone().unwrap_or_default()));
        let mut partitions = Vec::with_capacity(wanted.len());
        for (tp, spec) in wanted {
            let state = self.partitions.get_mut(&tp).expect("planned from it");
            state.busy = true;
            partitions.push(Asked { partition: tp, version: state.version, fetch_offset: spec.fetch_offset });
        }
        self.fetching.insert(broker, max_bytes);
        let tag = self.tag();
        self.in_flight.insert(tag, InFlight::Fetch { broker, partitions, sent: now });
        let timeout = ctx.config.request_timeout + self.config.fetch_max_wait;
        Some(Outgoing {
            body: RequestBody::Fetch(body),
            version,
            tag,
            deadline: now + timeout,
            timeout,
            expects_response: true,
        })
    }

    fn tag(&mut self) -> Tag {
        self.next_tag += 1;
        self.next_tag
    }

    fn handle_fetch(
        &mut self,
        now: Instant,
        broker: BrokerId,
        partitions: Vec<Asked>,
        sent: Instant,
        result: Result<Response, RequestError>,
        ctx: &mut Ctx<'_>,
    ) {
        self.fetching.remove(&broker);
        let mut asked: BTreeMap<TopicPartition, (u64, i64)> = BTreeMap::new();
        for a in partitions {
            if let Some(s) = self.partitions.get_mut(&a.partition).filter(|s| s.version == a.version) {
                s.busy = false;
                asked.insert(a.partition, (a.version, a.fetch_offset));
            }
        }
        let response = match result.map(|r| r.body) {
            Ok(Some(ResponseBody::Fetch(r))) => r,
            _ => {
                // No answer: the session's state at the broker is unknown, and a read
                // replica that does not answer is left for the leader.
                self.sessions.entry(broker).or_default().reset();
                for tp in asked.keys() {
                    if let Some(s) = self.partitions.get_mut(tp) {
                        s.read_replica = None;
                    }
                }
                self.back_off(now, asked.keys());
                ctx.signals.push(Signal::RefreshMetadata);
                return;
            }
        };
        let FetchResponse { error_code, session_id, responses, throttle_time_ms, .. } = response;
        let bytes: usize =
            responses.iter().flat_map(|t| &t.partitions).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
        let session = self.sessions.entry(broker).or_default();
        if error_code != ErrorCode::None {
            session.reset();
            if !matches!(error_code, ErrorCode::FetchSessionIdNotFound | ErrorCode::InvalidFetchSessionEpoch) {
                self.back_off(now, asked.keys());
            }
            return;
        }
        session.answered(session_id);
        self.last_answer.insert(broker, bytes);
        let ids: BTreeMap<Uuid, TopicName> = ctx.cluster.topics.values().map(|t| (t.id, t.name.clone())).collect();
        let options = DecodeOptions::new().verify_crc(self.config.check_crcs);
        let mut refresh = false;
        let mut out_of_range = Vec::new();
        for topic in responses {
            let name = if topic.topic.as_str().is_empty() {
                match ids.get(&topic.topic_id) {
                    Some(n) => n.clone(),
                    None => continue,
                }
            } else {
                topic.topic
            };
            // The name records carry, made once per topic that brought data.
            let mut interned: Option<TopicName> = None;
            for p in topic.partitions {
                let tp = TopicPartition { topic: name.clone(), partition: p.partition_index };
                let Some(&(version, fetch_offset)) = asked.get(&tp) else { continue };
                let from_replica = self.leaders.get(&tp).is_some_and(|l| l.0 != broker);
                let state = self.partitions.get_mut(&tp).expect("asked");
                if p.preferred_read_replica.0 >= 0 && p.preferred_read_replica != broker {
                    // The leader names a replica nearer to this consumer and sends no data.
                    state.read_replica = Some((p.preferred_read_replica, now + ctx.config.metadata_max_age));
                } else if from_replica && p.error_code != ErrorCode::None {
                    // A replica that cannot serve the partition (not a replica any more, not
                    // caught up to the offset...): the leader is asked again, at once.
                    state.read_replica = None;
                    if p.error_code == ErrorCode::OffsetOutOfRange {
                        continue;
                    }
                }
                if p.high_watermark >= 0 {
                    state.high_watermark = p.high_watermark;
                }
                state.log_start_offset = p.log_start_offset;
                state.last_stable_offset = p.last_stable_offset;
                match p.error_code {
                    ErrorCode::None => {
                        let Some(records) = p.records.filter(|r| !r.is_empty()) else { continue };
                        // Only whole batches count; without one the partition is fetched
                        // again from the same offset.
                        let Some(end) = fetched::end_offset(&records).filter(|&end| end > fetch_offset) else {
                            continue;
                        };
                        state.fetched_to = end;
                        let aborted = p
                            .aborted_transactions
                            .unwrap_or_default()
                            .into_iter()
                            .map(|a| Aborted { producer_id: a.producer_id.0, first_offset: a.first_offset })
                            .collect();
                        let read_committed = self.config.isolation_level == IsolationLevel::ReadCommitted;
                        let key = self.key();
                        // Copied into every record: a static copy costs no reference count
                        // per record. Only names the consumer asked for are interned (the
                        // set is bounded, and shared by the process).
                        let topic = interned.get_or_insert_with(|| name.interned()).clone();
                        let tp = TopicPartition { topic, partition: tp.partition };
                        let fetched = Fetched::new(key, tp, version, records, aborted, read_committed, options);
                        *self.buffered_from.entry(broker).or_default() += fetched.size;
                        self.buffer.push_back((broker, fetched));
                    }
                    // Settled below: the partition's buffered data goes first.
                    ErrorCode::OffsetOutOfRange => out_of_range.push((tp, fetch_offset)),
                    // Only what no retry changes stops a partition: Java keeps fetching after
                    // any other error (an unknown server error, a broker not available), and a
                    // partition given up here would stay unread for as long as it is owned.
                    error @ (ErrorCode::TopicAuthorizationFailed
                    | ErrorCode::CorruptMessage
                    | ErrorCode::UnsupportedCompressionType
                    | ErrorCode::UnsupportedVersion) => {
                        state.start = Start::Failed;
                        self.errors.push_back(ConsumeError::Partition { partition: tp, error });
                    }
                    _ => {
                        refresh = true;
                        state.retry_at = Some(now + self.retry_backoff);
                        self.timers.insert(now + self.retry_backoff, Timer::Retry);
                    }
                }
            }
        }
        for (tp, fetch_offset) in out_of_range {
            self.out_of_range(tp, fetch_offset);
        }
        if refresh {
            ctx.signals.push(Signal::RefreshMetadata);
        }
        let lag = asked
            .keys()
            .filter_map(|tp| self.partitions.get(tp))
            .filter(|s| s.high_watermark >= 0 && s.start == Start::Positioned)
            .map(|s| s.high_watermark - s.position)
            .max();
        self.metrics.fetched(now, now.saturating_duration_since(sent), bytes, throttle_time_ms, lag);
        self.plan_starts(now);
    }

    /// The broker has no offset `fetch_offset` for `tp`. Past buffered data, only the
    /// fetch ahead was out of range: the buffered data goes and the partition is fetched
    /// again from its position. At the position, the position resets (`auto.offset.reset`)
    /// or fails.
    fn out_of_range(&mut self, tp: TopicPartition, fetch_offset: i64) {
        let version = self.bump();
        let reset = self.reset_spec();
        let Some(state) = self.partitions.get_mut(&tp) else { return };
        state.version = version;
        if fetch_offset == state.position {
            match reset {
                Some(spec) => state.start = Start::Reset(spec),
                None => {
                    state.start = Start::Failed;
                    let position = state.position;
                    self.errors.push_back(ConsumeError::NoOffset { partitions: vec![(tp.clone(), Some(position))] });
                }
            }
        }
        self.drop_buffered(|p| *p == tp);
    }

    fn back_off<'a>(&mut self, now: Instant, partitions: impl Iterator<Item = &'a TopicPartition>) {
        let at = now + self.retry_backoff;
        for tp in partitions {
            if let Some(s) = self.partitions.get_mut(tp) {
                s.retry_at = Some(at);
            }
        }
        self.timers.insert(at, Timer::Retry);
    }

    // ---- position validation after a leader change (KIP-320) -----------------------------

    fn needs_validation(&self, now: Instant) -> impl Iterator<Item = (&TopicPartition, &PartitionState)> {
        self.partitions
            .iter()
            .filter(move |(_, s)| s.start == Start::Validate && !s.busy && s.retry_at.is_none_or(|t| t <= now))
    }

    fn validation_brokers(&self, now: Instant) -> BTreeSet<BrokerId> {
        self.needs_validation(now).filter_map(|(tp, _)| self.leaders.get(tp).map(|l| l.0)).collect()
    }

    fn build_validation(
        &mut self,
        now: Instant,
        broker: BrokerId,
        link: &Link<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outgoing> {
        let asked: Vec<(TopicPartition, i32, i32)> = self
            .needs_validation(now)
            .filter_map(|(tp, s)| {
                let (leader, current) = self.leaders.get(tp).copied()?;
                (leader == broker).then(|| (tp.clone(), current, s.epoch.unwrap_or(-1)))
            })
            .collect();
        if asked.is_empty() {
            return None;
        }
        // Brokers without the consumer's form of the request (v3) cannot validate: the
        // position is taken as it is, as the Java client does.
        let version = negotiate(link, ApiKey::OffsetForLeaderEpoch).ok().filter(|&v| v >= 3);
        let Some(version) = version else {
            for (tp, _, _) in &asked {
                if let Some(s) = self.partitions.get_mut(tp) {
                    s.start = Start::Positioned;
                }
            }
            return None;
        };
        let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
        for (tp, current, epoch) in &asked {
            if topics.last().is_none_or(|t| t.topic != tp.topic) {
                topics.push(OffsetForLeaderTopic::default().with_topic(tp.topic.clone()));
            }
            topics.last_mut().expect("pushed").partitions.push(
                OffsetForLeaderPartition::default()
                    .with_partition(tp.partition)
                    .with_current_leader_epoch(*current)
                    .with_leader_epoch(*epoch),
            );
        }
        let mut partitions = Vec::with_capacity(asked.len());
        for (tp, _, _) in asked {
            let state = self.partitions.get_mut(&tp).expect("asked from it");
            state.busy = true;
            partitions.push((tp, state.version));
        }
        // Kafka's replica id for consumers.
        let body = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-2)).with_topics(topics);
        let tag = self.tag();
        self.in_flight.insert(tag, InFlight::Validate { partitions });
        let timeout = ctx.config.request_timeout;
        Some(Outgoing {
            body: RequestBody::OffsetForLeaderEpoch(body),
            version,
            tag,
            deadline: now + timeout,
            timeout,
            expects_response: true,
        })
    }

    fn handle_validation(
        &mut self,
        now: Instant,
        partitions: Vec<(TopicPartition, u64)>,
        result: Result<Response, RequestError>,
        ctx: &mut Ctx<'_>,
    ) {
        let mut asked: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for (tp, version) in partitions {
            if let Some(s) = self.partitions.get_mut(&tp).filter(|s| s.version == version) {
                s.busy = false;
                asked.insert(tp, version);
            }
        }
        let response = match result.map(|r| r.body) {
            Ok(Some(ResponseBody::OffsetForLeaderEpoch(r))) => r,
            _ => {
                self.back_off(now, asked.keys());
                ctx.signals.push(Signal::RefreshMetadata);
                return;
            }
        };
        let reset = self.reset_spec();
        let mut truncated = Vec::new();
        let mut refresh = false;
        for topic in response.topics {
            for p in topic.partitions {
                let tp = TopicPartition { topic: topic.topic.clone(), partition: p.partition };
                if asked.remove(&tp).is_none() {
                    continue;
                }
                let state = self.partitions.get_mut(&tp).expect("asked");
                match p.error_code {
                    ErrorCode::None => {
                        let unknown = p.end_offset < 0 || p.leader_epoch < 0;
                        if !unknown && p.end_offset >= state.position {
                            state.start = Start::Positioned;
                        } else if reset.is_some() && !unknown {
                            // Where the logs diverge: the first offset the new leader's log
                            // does not share with what was consumed.
                            state.position = p.end_offset;
                            state.fetched_to = -1;
                            state.epoch = Some(p.leader_epoch);
                            state.start = Start::Positioned;
                        } else if let Some(spec) = reset {
                            state.start = Start::Reset(spec);
                        } else {
                            state.start = Start::Failed;
                            truncated.push((tp, state.position, (!unknown).then_some(p.end_offset)));
                        }
                    }
                    // Refused for good: report it and stop fetching the partition.
                    error @ (ErrorCode::TopicAuthorizationFailed | ErrorCode::ClusterAuthorizationFailed) => {
                        state.start = Start::Failed;
                        self.errors.push_back(ConsumeError::Partition { partition: tp, error });
                    }
                    // Anything else (a leader change, a broker not available, an unexpected
                    // error) is asked again after fresh metadata, as Java's client does: a
                    // partition given up here would stay unread for as long as it is owned.
                    _ => {
                        refresh = true;
                        state.retry_at = Some(now + self.retry_backoff);
                        self.timers.insert(now + self.retry_backoff, Timer::Retry);
                    }
                }
            }
        }
        // Partitions the answer left out are asked again.
        if !asked.is_empty() {
            self.back_off(now, asked.keys());
        }
        if !truncated.is_empty() {
            self.errors.push_back(ConsumeError::LogTruncation { partitions: truncated });
        }
        if refresh {
            ctx.signals.push(Signal::RefreshMetadata);
        }
        self.plan_starts(now);
    }

    // ---- offset lookups -----------------------------------------------------------------

    fn lookup_brokers(&self, now: Instant) -> BTreeSet<BrokerId> {
        self.lookups
            .values()
            .filter(|l| l.retry_at.is_none_or(|t| t <= now))
            .flat_map(|l| l.pending.keys().filter(|tp| !l.asked.contains(*tp)))
            .filter_map(|tp| self.leaders.get(tp).copied().map(|l| l.0))
            .collect()
    }

    fn build_lookup(&mut self, now: Instant, broker: BrokerId, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        let (key, asked) = self.lookups.iter().find_map(|(key, l)| {
            if l.retry_at.is_some_and(|t| t > now) {
                return None;
            }
            let asked: Vec<(TopicPartition, OffsetSpec, i32)> = l
                .pending
                .iter()
                .filter(|(tp, _)| !l.asked.contains(*tp))
                .filter_map(|(tp, (spec, _))| {
                    let (leader, epoch) = self.leaders.get(tp).copied()?;
                    (leader == broker).then(|| (tp.clone(), *spec, epoch))
                })
                .collect();
            (!asked.is_empty()).then_some((*key, asked))
        })?;
        let version = match negotiate(link, ApiKey::ListOffsets) {
            Ok(v) => v,
            Err(error) => {
                self.fail_lookup(key, error);
                return None;
            }
        };
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for (tp, spec, epoch) in &asked {
            if topics.last().is_none_or(|t| t.name != tp.topic) {
                topics.push(ListOffsetsTopic::default().with_name(tp.topic.clone()));
            }
            topics.last_mut().expect("pushed").partitions.push(
                ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_current_leader_epoch(*epoch)
                    .with_timestamp(spec.wire()),
            );
        }
        let timeout = ctx.config.request_timeout;
        let body = ListOffsetsRequest::default()
            .with_isolation_level(self.config.isolation_level.wire())
            .with_topics(topics)
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        let lookup = self.lookups.get_mut(&key).expect("found");
        let partitions: Vec<TopicPartition> = asked.into_iter().map(|(tp, _, _)| tp).collect();
        lookup.asked.extend(partitions.iter().cloned());
        let tag = self.tag();
        self.in_flight.insert(tag, InFlight::Lookup { lookup: key, partitions });
        Some(Outgoing {
            body: RequestBody::ListOffsets(body),
            version,
            tag,
            deadline: now + timeout,
            timeout,
            expects_response: true,
        })
    }

    fn handle_lookup(
        &mut self,
        now: Instant,
        key: u64,
        partitions: Vec<TopicPartition>,
        result: Result<Response, RequestError>,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(lookup) = self.lookups.get_mut(&key) else { return };
        for tp in &partitions {
            lookup.asked.remove(tp);
        }
        let response = match result.map(|r| r.body) {
            Ok(Some(ResponseBody::ListOffsets(r))) => r,
            Ok(_) => return,
            Err(e) => {
                lookup.failures += 1;
                lookup.retry_at = Some(now + self.retry_backoff);
                self.timers.insert(now + self.retry_backoff, Timer::Retry);
                ctx.signals.push(Signal::RefreshMetadata);
                if lookup.id.is_some() && lookup.deadline.is_some_and(|d| d <= now) {
                    self.fail_lookup(key, ConsumeError::Request(e));
                }
                return;
            }
        };
        let ListOffsetsResponse { topics, .. } = response;
        let mut retry = false;
        let mut fatal = None;
        for topic in topics {
            for p in topic.partitions {
                let tp = TopicPartition { topic: topic.name.clone(), partition: p.partition_index };
                if !partitions.contains(&tp) {
                    continue;
                }
                match p.error_code {
                    ErrorCode::None => {
                        let Some((_, version)) = lookup.pending.remove(&tp) else { continue };
                        let found = (p.offset >= 0).then_some(ListedOffset {
                            offset: p.offset,
                            timestamp: p.timestamp,
                            leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                        });
                        lookup.found.insert(tp.clone(), found);
                        if lookup.id.is_none() {
                            if let Some(s) = self.partitions.get_mut(&tp).filter(|s| s.version == version) {
                                s.busy = false;
                                s.retry_at = None;
                                match found {
                                    Some(f) => {
                                        s.position = f.offset;
                                        s.fetched_to = -1;
                                        s.epoch = f.leader_epoch;
                                        s.start = Start::Positioned;
                                    }
                                    // No record at or after the timestamp: the end.
                                    None => s.start = Start::Reset(OffsetSpec::Latest),
                                }
                            }
                        }
                    }
                    // As in Java, a lookup retries every error but an authorization failure
                    // or a format the broker cannot search: any other (an unknown server
                    // error, a broker not available) may pass, and a reset that gave up would
                    // leave its partition unread for good.
                    error @ (ErrorCode::TopicAuthorizationFailed | ErrorCode::UnsupportedForMessageFormat) => {
                        fatal = Some(ConsumeError::Partition { partition: tp, error })
                    }
                    _ => retry = true,
                }
            }
        }
        if retry {
            lookup.failures += 1;
            lookup.retry_at = Some(now + self.retry_backoff);
            self.timers.insert(now + self.retry_backoff, Timer::Retry);
            ctx.signals.push(Signal::RefreshMetadata);
        }
        if let Some(e) = fatal {
            if lookup.id.is_some() {
                self.fail_lookup(key, e);
            } else {
                // A reset that cannot succeed: report it and stop fetching the partition.
                if let ConsumeError::Partition { partition, .. } = &e {
                    lookup.pending.remove(partition);
                    if let Some(s) = self.partitions.get_mut(partition) {
                        s.start = Start::Failed;
                        s.busy = false;
                    }
                }
                self.errors.push_back(e);
            }
            return;
        }
        self.finish_lookup(key);
        self.plan_starts(now);
    }

    fn finish_lookup(&mut self, key: u64) {
        let done = self.lookups.get(&key).is_some_and(|l| l.pending.is_empty() && l.asked.is_empty());
        if done {
            let lookup = self.lookups.remove(&key).expect("present");
            if let Some(id) = lookup.id {
                self.events.push_back(Event::ListedOffsets { id, result: Ok(lookup.found) });
            }
        }
    }

    fn fail_lookup(&mut self, key: u64, error: ConsumeError) {
        if let Some(lookup) = self.lookups.remove(&key) {
            match lookup.id {
                Some(id) => self.events.push_back(Event::ListedOffsets { id, result: Err(error) }),
                None => {
                    for tp in lookup.pending.keys() {
                        if let Some(s) = self.partitions.get_mut(tp) {
                            s.busy = false;
                            s.start = Start::Failed;
                        }
                    }
                    self.errors.push_back(error);
                }
            }
        }
    }

    // ---- the group coordinator ----------------------------------------------------------

    fn job_ready(&self, now: Instant) -> Option<u64> {
        self.jobs
            .iter()
            .find(|(key, j)| !j.in_flight && j.retry_at.is_none_or(|t| t <= now) && !self.reads_unsettled(**key, j))
            .map(|(k, _)| *k)
    }

    /// A lookup of committed offsets made while an earlier commit of the consumer's to one of
    /// its partitions is unsettled waits for it: the two may travel on different connections
    /// to the coordinator, and a lookup answered first would miss the commit (a partition
    /// assigned again would then start from the reset position and commit it, behind the
    /// offset just committed). Java's consumer reads its own commits through one connection.
    fn reads_unsettled(&self, key: u64, job: &Job<CoordinatorJob>) -> bool {
        let CoordinatorJob::Committed { partitions, .. } = &job.kind else { return false };
        self.jobs.range(..key).any(|(_, earlier)| match &earlier.kind {
            CoordinatorJob::Commit { offsets, .. } => {
                offsets.iter().any(|(tp, _)| partitions.iter().any(|(asked, _)| asked == tp))
            }
            CoordinatorJob::Committed { .. } => false,
        })
    }

    /// The member's generation (KIP-848: epoch) that commits are stamped with, if in a group.
    fn generation(&self) -> Option<i32> {
        self.member.as_ref().and_then(|m| m.commit_identity()).map(|(generation, ..)| generation)
    }

    /// The consumer's own commit `key` without the partitions a newer commit carries; false
    /// when none is left, and the job is gone. One made in an earlier generation is dropped
    /// whole: stamped with the current one, the coordinator would take it over what the
    /// partitions' owners since committed (Java commits before it rejoins, and never after).
    fn prune_superseded(&mut self, key: u64) -> bool {
        let generation = self.generation();
        let Some(Job { kind: CoordinatorJob::Commit { id: None, offsets }, generation: made_in, .. }) =
            self.jobs.get_mut(&key)
        else {
            return true;
        };
        offsets.retain(|(tp, _)| self.newest_commit.get(tp).is_none_or(|newest| *newest == key));
        if !offsets.is_empty() && *made_in == generation {
            return true;
        }
        self.jobs.remove(&key);
        false
    }

    fn build_job(&mut self, now: Instant, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        let key = loop {
            let key = self.job_ready(now)?;
            if self.prune_superseded(key) {
                break key;
            }
        };
        let group = self.group.clone()?;
        let ids: BTreeMap<TopicName, Uuid> = ctx.cluster.topics.iter().map(|(n, t)| (n.clone(), t.id)).collect();
        let job = self.jobs.get_mut(&key).expect("ready");
        let timeout = ctx.config.request_timeout;
        let (body, version) = match &job.kind {
            CoordinatorJob::Committed { partitions, .. } => {
                let mut version = match negotiate(link, ApiKey::OffsetFetch) {
                    Ok(v) => v,
                    Err(error) => {
                        self.fail_job(key, error);
                        return None;
                    }
                };
                // v10 names topics by id only: without every id, ask by name.
                if version >= 10 && partitions.iter().any(|(tp, _)| ids.get(&tp.topic).is_none_or(Uuid::is_zero)) {
                    version = 9;
                }
                let mut by_topic: BTreeMap<TopicName, Vec<i32>> = BTreeMap::new();
                for (tp, _) in partitions {
                    by_topic.entry(tp.topic.clone()).or_default().push(tp.partition);
                }
                let stable = self.config.isolation_level == IsolationLevel::ReadCommitted || version >= 7;
                let body = if version >= 8 {
                    let topics = by_topic
                        .into_iter()
                        .map(|(name, parts)| {
                            let id = ids.get(&name).copied().unwrap_or_default();
                            OffsetFetchRequestTopics::default()
                                .with_name(name)
                                .with_topic_id(id)
                                .with_partition_indexes(parts)
                        })
                        .collect();
                    OffsetFetchRequest::default()
                        .with_groups(vec![OffsetFetchRequestGroup::default()
                            .with_group_id(group)
                            .with_topics(Some(topics))])
                        .with_require_stable(stable)
                } else {
                    let topics = by_topic
                        .into_iter()
                        .map(|(name, parts)| {
                            OffsetFetchRequestTopic::default().with_name(name).with_partition_indexes(parts)
                        })
                        .collect();
                    OffsetFetchRequest::default()
                        .with_group_id(group)
                        .with_topics(Some(topics))
                        .with_require_stable(stable && version >= 7)
                };
                (RequestBody::OffsetFetch(body), version)
            }
            CoordinatorJob::Commit { offsets, .. } => {
                let mut version = match negotiate(link, ApiKey::OffsetCommit) {
                    Ok(v) => v,
                    Err(error) => {
                        self.fail_job(key, error);
                        return None;
                    }
                };
                // v10 names topics by id only: without every id, commit by name.
                if version >= 10 && offsets.iter().any(|(tp, _)| ids.get(&tp.topic).is_none_or(Uuid::is_zero)) {
                    version = 9;
                }
                let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
                for (tp, o) in offsets {
                    if topics.last().is_none_or(|t| t.name != tp.topic) {
                        let id = ids.get(&tp.topic).copied().unwrap_or_default();
                        topics.push(OffsetCommitRequestTopic::default().with_name(tp.topic.clone()).with_topic_id(id));
                    }
                    topics.last_mut().expect("pushed").partitions.push(
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(tp.partition)
                            .with_committed_offset(o.offset)
                            .with_committed_leader_epoch(o.leader_epoch.unwrap_or(-1))
                            .with_committed_metadata(Some(StrBytes::from(o.metadata.clone()))),
                    );
                }
                let (generation, member, instance) = match self.member.as_ref().and_then(|m| m.commit_identity()) {
                    Some((g, m, i)) => (g, m.to_string(), i.map(|i| StrBytes::from(i.to_string()))),
                    None => (-1, String::new(), None),
                };
                let body = OffsetCommitRequest::default()
                    .with_group_id(group)
                    .with_generation_id_or_member_epoch(generation)
                    .with_member_id(StrBytes::from(member))
                    .with_group_instance_id(instance)
                    .with_topics(topics);
                (RequestBody::OffsetCommit(body), version)
            }
        };
        let job = self.jobs.get_mut(&key).expect("ready");
        job.in_flight = true;
        job.sent = Some(now);
        let tag = self.tag();
        self.in_flight.insert(tag, InFlight::Coordinator { job: key });
        Some(Outgoing { body, version, tag, deadline: now + timeout, timeout, expects_response: true })
    }

    fn handle_job(&mut self, now: Instant, key: u64, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        let Some(job) = self.jobs.get_mut(&key) else { return };
        job.in_flight = false;
        let group = self.group.clone().expect("jobs need a group");
        let names: BTreeMap<Uuid, TopicName> = ctx.cluster.topics.values().map(|t| (t.id, t.name.clone())).collect();
        let outcome = match result.map(|r| r.body) {
            Err(e) => Err((true, ConsumeError::Request(e))),
            Ok(Some(ResponseBody::OffsetFetch(r))) => read_committed_offsets(r, &names),
            Ok(Some(ResponseBody::OffsetCommit(r))) => read_commit(r),
            Ok(_) => Err((false, ConsumeError::Group { error: ErrorCode::UnknownServerError })),
        };
        match outcome {
            Ok(found) => {
                let job = self.jobs.remove(&key).expect("present");
                if let (CoordinatorJob::Commit { .. }, Some(sent)) = (&job.kind, job.sent) {
                    self.metrics.committed(now, now.saturating_duration_since(sent));
                }
                match job.kind {
                    CoordinatorJob::Commit { id: Some(id), .. } => {
                        self.events.push_back(Event::Committed { id, result: Ok(()) })
                    }
                    CoordinatorJob::Commit { id: None, .. } => {}
                    CoordinatorJob::Committed { id: Some(id), partitions } => {
                        let result = partitions
                            .into_iter()
                            .map(|(tp, _)| {
                                let o = found.get(&tp).cloned().flatten();
                                (tp, o)
                            })
                            .collect();
                        self.events.push_back(Event::CommittedOffsets { id, result: Ok(result) });
                    }
                    CoordinatorJob::Committed { id: None, partitions } => {
                        for (tp, version) in partitions {
                            let Some(s) = self.partitions.get_mut(&tp).filter(|s| s.version == version) else {
                                continue;
                            };
                            s.busy = false;
                            match found.get(&tp).cloned().flatten() {
                                Some(o) => {
                                    s.position = o.offset;
                                    s.fetched_to = -1;
                                    s.epoch = o.leader_epoch;
                                    // A commit with its epoch may predate a truncation: the
                                    // leader checks it first, as for a leader change.
                                    s.start =
                                        if o.leader_epoch.is_some() { Start::Validate } else { Start::Positioned };
                                }
                                None => match self.config.auto_offset_reset {
                                    OffsetReset::Earliest => s.start = Start::Reset(OffsetSpec::Earliest),
                                    OffsetReset::Latest => s.start = Start::Reset(OffsetSpec::Latest),
                                    OffsetReset::None => {
                                        s.start = Start::Failed;
                                        self.errors.push_back(ConsumeError::NoOffset { partitions: vec![(tp, None)] });
                                    }
                                },
                            }
                        }
                        self.plan_starts(now);
                    }
                }
            }
            Err((mut retriable, error)) => {
                if let ConsumeError::Group { error: code } = &error {
                    if matches!(code, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable) {
                        ctx.signals.push(Signal::CoordinatorStale(CoordinatorKey::Group(group)));
                    }
                    // A commit from a member outside the current generation fails for good;
                    // the member rejoins.
                    if matches!(
                        code,
                        ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId | ErrorCode::RebalanceInProgress
                    ) {
                        retriable = false;
                        if let Some(member) = &mut self.member {
                            member.commit_fenced(*code);
                        }
                    }
                }
                let job = self.jobs.get_mut(&key).expect("present");
                // Starting positions have no caller to fail: without them the partitions are
                // never fetched, so the read goes on (as Java's poll retries it) unless it is
                // refused for good.
                let denied = matches!(
                    error,
                    ConsumeError::Group {
                        error: ErrorCode::GroupAuthorizationFailed | ErrorCode::TopicAuthorizationFailed
                    }
                );
                if matches!(job.kind, CoordinatorJob::Committed { id: None, .. }) && !denied {
                    retriable = true;
                }
                let expired = job.deadline.is_some_and(|d| d <= now);
                if retriable && !expired {
                    job.failures += 1;
                    let at = now + self.retry_backoff;
                    job.retry_at = Some(at);
                    self.timers.insert(at, Timer::Retry);
                } else {
                    self.fail_job(key, error);
                }
            }
        }
    }

    fn fail_job(&mut self, key: u64, error: ConsumeError) {
        let Some(job) = self.jobs.remove(&key) else { return };
        match job.kind {
            CoordinatorJob::Commit { id: Some(id), .. } => {
                self.events.push_back(Event::Committed { id, result: Err(error) })
            }
            // An auto-commit that failed: the next one, or the application's, tries again.
            CoordinatorJob::Commit { id: None, .. } => {}
            CoordinatorJob::Committed { id: Some(id), .. } => {
                self.events.push_back(Event::CommittedOffsets { id, result: Err(error) })
            }
            CoordinatorJob::Committed { id: None, partitions } => {
                for (tp, version) in partitions {
                    if let Some(s) = self.partitions.get_mut(&tp).filter(|s| s.version == version) {
                        s.busy = false;
                        s.start = Start::Failed;
                    }
                }
                self.errors.push_back(error);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.in_flight && j.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            let timeout = self.config.default_api_timeout;
            self.fail_job(key, ConsumeError::Request(RequestError::Timeout(timeout)));
        }
        let expired: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.asked.is_empty() && l.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            let timeout = self.config.default_api_timeout;
            self.fail_lookup(key, ConsumeError::Request(RequestError::Timeout(timeout)));
        }
    }
}

impl Consumer {
    fn joining(&self) -> bool {
        self.member.as_ref().is_some_and(|m| m.joining())
    }

    fn build_member_request(&mut self, now: Instant, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        let member = self.member.as_mut()?;
        let (body, version, extra) = member.request(now, &|api| link.versions.negotiate(api).ok(), ctx.cluster)?;
        let tag = self.tag();
        self.in_flight.insert(tag, InFlight::Member);
        let timeout = ctx.config.request_timeout + extra;
        Some(Outgoing { body, version, tag, deadline: now + timeout, timeout, expects_response: true })
    }

    fn handle_member(&mut self, now: Instant, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        let Some(member) = self.member.as_mut() else { return };
        let body = result.ok().and_then(|r| r.body);
        if let Some(ResponseBody::Heartbeat(r)) = &body {
            if r.error_code == ErrorCode::None {
                self.metrics.heartbeat(now);
            }
        }
        if let Some(ResponseBody::ConsumerGroupHeartbeat(r)) = &body {
            if r.error_code == ErrorCode::None {
                self.metrics.heartbeat(now);
            }
        }
        #[cfg(feature = "plants")]
        if ctx.planted(crate::plants::Plant::ConsumerHeartbeatAfterLeave) {
            member.plant_heartbeat_after_leave();
        }
        let before = member.commit_identity().map(|(epoch, id, _)| (epoch, id.to_owned()));
        let coordinator_error = member.handle_response(now, body, ctx.cluster);
        let raised = match (before, member.commit_identity()) {
            (Some((old, old_id)), Some((new, id, _))) if new > old && id == old_id => Some((old, new)),
            _ => None,
        };
        if let Some(e) = coordinator_error {
            if matches!(e, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable) {
                ctx.signals.push(Signal::CoordinatorStale(CoordinatorKey::Group(member.group().clone())));
            }
        }
        if let Some((old, new)) = raised.filter(|_| self.config.group_protocol == GroupProtocol::Consumer) {
            // A KIP-848 coordinator raises a member's epoch only once nothing it holds is
            // waiting to be revoked, and an awaited commit's partitions are not yet reported
            // gone: they are still the member's in the new epoch, so the commit follows it
            // (the coordinator refuses one with the old epoch), as Java's commits take the
            // latest epoch. Classic generations move partitions; their commits stay behind.
            for key in self.awaited_commits.keys() {
                if let Some(job) = self.jobs.get_mut(key).filter(|j| j.generation == Some(old)) {
                    job.generation = Some(new);
                }
            }
        }
        self.apply_changes(now, ctx);
    }

    /// The application has not polled for `max.poll.interval.ms`: the member leaves.
    fn check_poll_interval(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let Some(member) = &mut self.member else { return };
        let last = self.last_poll.unwrap_or(now);
        let due = last + self.config.max_poll_interval;
        if due <= now {
            member.poll_timeout_expired();
            self.apply_changes(now, ctx);
        } else {
            self.timers.insert(due, Timer::PollInterval);
        }
    }
}

/// The highest version of `api` both sides speak, or the error that says why there is none.
fn negotiate(link: &Link<'_>, api: ApiKey) -> Result<i16, ConsumeError> {
    link.versions
        .negotiate(api)
        .map_err(|error| ConsumeError::Request(RequestError::Version { address: link.address.clone(), error }))
}

/// Non-internal topics whose name the pattern matches, as metadata lists them.
fn matching_topics(regex: &regex::Regex, cluster: &crate::cluster::ClusterMetadata) -> Vec<TopicName> {
    cluster.topics.values().filter(|t| !t.internal && regex.is_match(t.name.as_str())).map(|t| t.name.clone()).collect()
}

/// A partition's leader and its epoch, from metadata.
fn leader_of(cluster: &crate::cluster::ClusterMetadata, tp: &TopicPartition) -> Option<(BrokerId, i32)> {
    let topic = cluster.topics.get(&tp.topic)?;
    let p = topic.partitions.get(usize::try_from(tp.partition).ok()?).filter(|p| p.index == tp.partition)?;
    Some((p.leader?, p.leader_epoch))
}

type Committed = BTreeMap<TopicPartition, Option<CommittedOffset>>;

/// A retriable flag and the error, for a job that failed.
type JobError = (bool, ConsumeError);

fn group_error(error: ErrorCode) -> JobError {
    let retriable =
        error.is_retriable() || matches!(error, ErrorCode::NotCoordinator | ErrorCode::UnstableOffsetCommit);
    (retriable, ConsumeError::Group { error })
}

fn read_committed_offsets(r: OffsetFetchResponse, names: &BTreeMap<Uuid, TopicName>) -> Result<Committed, JobError> {
    let mut out = BTreeMap::new();
    let mut add = |tp: TopicPartition, offset: i64, epoch: i32, metadata: Option<StrBytes>, error: ErrorCode| {
        if error != ErrorCode::None {
            return Err(group_error(error));
        }
        let found = (offset >= 0).then(|| CommittedOffset {
            offset,
            leader_epoch: (epoch >= 0).then_some(epoch),
            metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
        });
        out.insert(tp, found);
        Ok(())
    };
    if let Some(group) = r.groups.into_iter().next() {
        if group.error_code != ErrorCode::None {
            return Err(group_error(group.error_code));
        }
        for t in group.topics {
            // From v10 topics come by id.
            let name = match names.get(&t.topic_id) {
                Some(n) if t.name.as_str().is_empty() => n.clone(),
                _ => t.name.clone(),
            };
            for p in t.partitions {
                let tp = TopicPartition { topic: name.clone(), partition: p.partition_index };
                add(tp, p.committed_offset, p.committed_leader_epoch, p.metadata, p.error_code)?;
            }
        }
    } else {
        if r.error_code != ErrorCode::None {
            return Err(group_error(r.error_code));
        }
        for t in r.topics {
            for p in t.partitions {
                let tp = TopicPartition { topic: t.name.clone(), partition: p.partition_index };
                add(tp, p.committed_offset, p.committed_leader_epoch, p.metadata, p.error_code)?;
            }
        }
    }
    Ok(out)
}

fn read_commit(r: OffsetCommitResponse) -> Result<Committed, JobError> {
    for t in r.topics {
        for p in t.partitions {
            if p.error_code != ErrorCode::None {
                return Err(group_error(p.error_code));
            }
        }
    }
    Ok(BTreeMap::new())
}

impl Machine for Consumer {
    fn wanted(&self, now: Instant, out: &mut Vec<(Target, Role)>) {
        for b in self.brokers_to_fetch(now) {
            out.push((Target::Broker(b), Role::Fetch));
        }
        for b in self.lookup_brokers(now).into_iter().chain(self.validation_brokers(now)) {
            out.push((Target::Broker(b), Role::General));
        }
        let member = self.member.as_ref().is_some_and(|m| m.wants(now));
        let job = self.job_ready(now).is_some();
        if let (Some(group), true) = (&self.group, member || job) {
            let role = if self.joining() { Role::General } else { Role::Coordinator };
            out.push((Target::GroupCoordinator(group.clone()), role));
        }
    }

    fn poll_request(&mut self, now: Instant, target: &Target, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        match (target, link.role) {
            (Target::Broker(b), Role::Fetch) => self.build_fetch(now, *b, link, ctx),
            (Target::Broker(b), Role::General) => {
                self.build_lookup(now, *b, link, ctx).or_else(|| self.build_validation(now, *b, link, ctx))
            }
            (Target::GroupCoordinator(_), Role::Coordinator) if !self.joining() => {
                // Commits first: a commit before an eager rebalance's JoinGroup must reach the
                // coordinator ahead of it, under the old generation.
                let job = self.build_job(now, link, ctx);
                // Building may drop a job (superseded, or from another generation) that the
                // member waited for.
                self.hold_member(now);
                job.or_else(|| self.build_member_request(now, link, ctx))
            }
            // Behind a JoinGroup, a commit would wait for the next generation and be refused;
            // on the general connection it arrives while the group still prepares, under the
            // generation it belongs to.
            (Target::GroupCoordinator(_), Role::General) if self.joining() => {
                let job = self.build_job(now, link, ctx);
                self.hold_member(now);
                job
            }
            _ => None,
        }
    }

    fn handle_response(&mut self, now: Instant, tag: Tag, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        #[cfg(feature = "plants")]
        {
            self.plant = ctx.plant;
        }
        match self.in_flight.remove(&tag) {
            Some(InFlight::Fetch { broker, partitions, sent }) => {
                self.handle_fetch(now, broker, partitions, sent, result, ctx)
            }
            Some(InFlight::Lookup { lookup, partitions }) => self.handle_lookup(now, lookup, partitions, result, ctx),
            Some(InFlight::Validate { partitions }) => self.handle_validation(now, partitions, result, ctx),
            Some(InFlight::Coordinator { job }) => {
                self.handle_job(now, job, result, ctx);
                self.apply_changes(now, ctx);
            }
            Some(InFlight::Member) => self.handle_member(now, result, ctx),
            None => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if let Some(due) = self.member.as_ref().and_then(|m| m.poll_timeout()).filter(|t| *t <= now) {
            self.member_fired = Some(due);
        }
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Retry => {}
                Timer::Deadline => self.expire(now),
                Timer::AutoCommit => self.auto_commit(now),
                Timer::PollInterval => self.check_poll_interval(now, ctx),
                Timer::AckDeadline => {
                    if let Some((id, _)) = self.pending_revoke {
                        self.ack_rebalance(now, id, ctx);
                    }
                }
                Timer::RevokeCommitDeadline => {}
            }
        }
        // A commit before a revoke may have failed at its deadline or waited long enough.
        self.hold_member(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // A due member deadline is reported once: reported again while its request waits
        // for a connection, it would spin the driver at one instant.
        let member = self.member.as_ref().and_then(|m| m.poll_timeout()).filter(|t| Some(*t) != self.member_fired);
        [self.timers.soonest(), member].into_iter().flatten().min()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn fail_target(&mut self, now: Instant, target: &Target, error: &RequestError, _issued_before: Instant) {
        // The coordinator cannot be found: coordinator jobs past their deadline fail.
        if matches!(target, Target::GroupCoordinator(_)) {
            let expired: Vec<u64> = self
                .jobs
                .iter()
                .filter(|(_, j)| !j.in_flight && j.deadline.is_some_and(|d| d <= now))
                .map(|(k, _)| *k)
                .collect();
            for key in expired {
                self.fail_job(key, ConsumeError::Request(error.clone()));
            }
            self.hold_member(now);
        }
    }

    fn handle_closed(
        &mut self,
        _now: Instant,
        node: crate::client::Node,
        _address: &crate::config::BrokerAddress,
        _before_handshake: bool,
    ) {
        if let crate::client::Node::Broker(b) = node {
            if let Some(s) = self.sessions.get_mut(&b) {
                s.reset();
            }
        }
    }

    fn handle_metadata(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.refresh_leaders(ctx.cluster);
        if let (Some(regex), Some(member)) = (&self.pattern, &mut self.member) {
            let topics: BTreeSet<TopicName> = matching_topics(regex, ctx.cluster).into_iter().collect();
            if &topics != member.topics() && !topics.is_empty() {
                member.subscribe(topics);
            }
        }
        if let Some(member) = &mut self.member {
            member.handle_metadata(ctx.cluster);
        }
        self.apply_changes(now, ctx);
    }

    fn close(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        self.closing = true;
        // Java's close: commit what was consumed (with auto-commit), then leave the group.
        if self.group.is_some() && self.config.enable_auto_commit {
            let offsets = self.positions();
            let in_group = self.member.as_ref().is_none_or(|m| m.is_stable());
            if !offsets.is_empty() && in_group {
                // The leave waits for it, as Java's close commits before it leaves: a commit
                // retried after the leave would be refused.
                let key = self.add_job(now, CoordinatorJob::Commit { id: None, offsets });
                self.awaited_commits.insert(key, now + self.config.default_api_timeout);
            }
        }
        if let Some(member) = &mut self.member {
            member.close();
        }
        self.hold_member(now);
    }

    fn is_idle(&self) -> bool {
        let member_idle =
            self.member.as_ref().is_none_or(|m| m.is_idle() || self.closing && !m.has_in_flight() && !m.wants_leave());
        self.jobs.is_empty() && self.lookups.iter().all(|(_, l)| l.id.is_none()) && member_idle
    }
}

/// Takes `size` bytes `from` a broker off the buffer's count.
fn unbuffer(buffered_from: &mut BTreeMap<BrokerId, usize>, from: BrokerId, size: usize) {
    if let Some(left) = buffered_from.get_mut(&from) {
        *left -= size;
        if *left == 0 {
            buffered_from.remove(&from);
        }
    }
}

#[cfg(test)]
mod tests;
