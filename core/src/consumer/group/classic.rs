//! A member of a classic consumer group: JoinGroup, SyncGroup (the leader runs the assignor),
//! Heartbeat and LeaveGroup, eager or cooperative (KIP-429), dynamic or static
//! (`group.instance.id`). It builds request bodies and reads answers; the consumer machine
//! sends them to the group coordinator and applies the assignment changes it reports.
//!
//! | state | on | next |
//! |---|---|---|
//! | idle | subscribe | joining (after the consumer revoked what eager rebalancing revokes) |
//! | joining | MEMBER_ID_REQUIRED | joining, with the id the coordinator gave |
//! | joining | joined, as leader | syncing with the assignor's result |
//! | joining | joined, as follower | syncing with nothing |
//! | syncing | an assignment | stable; cooperative: if partitions were revoked, joining again |
//! | stable | heartbeat due | heartbeat in flight, stable |
//! | stable | REBALANCE_IN_PROGRESS, metadata of the leader's topics changed | joining |
//! | any | UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION | partitions lost, joining afresh |
//! | any | a coordinator error or no answer | the same request again after a backoff |
//! | any | FENCED_INSTANCE_ID, an authorization or protocol error | failed (reported by poll) |
//! | stable | `max.poll.interval.ms` without a poll | leaving; joins again at the next poll |
//! | any | unsubscribe or close | leaving (static members do not leave on close) |

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::assignor::protocol::{decode_assignment, decode_subscription, encode_assignment, encode_subscription};
use super::assignor::{
    Assignor, Member, MemberId, PartitionCounts, PreviousAssignment, RebalanceProtocol, Subscription,
};
use super::retriable_coordinator;
use crate::cluster::ClusterMetadata;
use crate::consumer::{ConsumeError, TopicPartition};
use crate::protocol::messages::heartbeat::request::HeartbeatRequest;
use crate::protocol::messages::join_group::request::{JoinGroupRequest, JoinGroupRequestProtocol};
use crate::protocol::messages::leave_group::request::{LeaveGroupRequest, MemberIdentity};
use crate::protocol::messages::sync_group::request::{SyncGroupRequest, SyncGroupRequestAssignment};
use crate::protocol::messages::{HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, SyncGroupResponse};
use crate::protocol::{ApiKey, ErrorCode, GroupId, RequestBody, ResponseBody, StrBytes, TopicName};

const PROTOCOL_TYPE: &str = "consumer";

/// The group settings a member needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub group: GroupId,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub assignors: Vec<&'static dyn Assignor>,
    pub rack: Option<String>,
    pub retry_backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not in the group and not trying to be.
    Idle,
    /// Ready to send JoinGroup.
    Join,
    Joining,
    /// Ready to send SyncGroup (the leader's assignments are kept beside).
    Sync,
    Syncing,
    Stable,
    /// Ready to send LeaveGroup, or it is in flight.
    Leaving,
    Failed,
}

/// What happened to the member's partitions, for the consumer to apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Change {
    /// Newly assigned.
    pub assigned: Vec<TopicPartition>,
    /// Given up in a rebalance: the consumer commits them first (auto-commit).
    pub revoked: Vec<TopicPartition>,
    /// Taken away without a chance to commit (the member was dropped from the group).
    pub lost: Vec<TopicPartition>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.assigned.is_empty() && self.revoked.is_empty() && self.lost.is_empty()
    }
}

/// Which request a member has in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Join,
    Sync,
    Heartbeat,
    Leave,
}

/// A classic group member (see the module docs).
#[derive(Debug)]
pub(crate) struct ClassicMember {
    settings: Settings,
    topics: BTreeSet<TopicName>,
    member_id: String,
    generation: i32,
    protocol: Option<&'static dyn Assignor>,
    rebalance: RebalanceProtocol,
    owned: Vec<TopicPartition>,
    state: State,
    in_flight: Option<Kind>,
    /// Not before this (a backoff after an error).
    retry_at: Option<Instant>,
    next_heartbeat: Option<Instant>,
    /// The leader's assignments for the coming SyncGroup.
    assignments: Vec<SyncGroupRequestAssignment>,
    /// The leader's view of partition counts when it assigned; a change means a rebalance.
    assigned_counts: Option<PartitionCounts>,
    /// Left after `max.poll.interval.ms` without a poll: join again at the next poll.
    left_for_poll_timeout: bool,
    /// The application has not yet acknowledged a revocation: no JoinGroup before it does.
    held: bool,
    error: Option<ConsumeError>,
    changes: Vec<Change>,
    /// [`crate::plants::Plant::ConsumerHeartbeatAfterLeave`] is armed.
    #[cfg(feature = "plants")]
    zombie: bool,
}

impl ClassicMember {
    pub fn new(settings: Settings) -> Self {
        let rebalance = common_protocol(&settings.assignors);
        ClassicMember {
            settings,
            topics: BTreeSet::new(),
            member_id: String::new(),
            generation: -1,
            protocol: None,
            rebalance,
            owned: Vec::new(),
            state: State::Idle,
            in_flight: None,
            retry_at: None,
            next_heartbeat: None,
            assignments: Vec::new(),
            assigned_counts: None,
            left_for_poll_timeout: false,
            held: false,
            error: None,
            changes: Vec::new(),
            #[cfg(feature = "plants")]
            zombie: false,
        }
    }

    pub fn group(&self) -> &GroupId {
        &self.settings.group
    }

    pub fn topics(&self) -> &BTreeSet<TopicName> {
        &self.topics
    }

    /// The generation and member id a commit carries, or `None` outside a stable group.
    pub fn commit_identity(&self) -> Option<(i32, &str, Option<&str>)> {
        (self.generation >= 0).then_some((
            self.generation,
            self.member_id.as_str(),
            self.settings.instance_id.as_deref(),
        ))
    }

    pub fn is_stable(&self) -> bool {
        self.state == State::Stable
    }

    /// Whether it holds requests the coordinator must still see (a leave on close).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle | State::Failed | State::Stable) && self.in_flight.is_none()
    }

    /// Whether a LeaveGroup is waiting to be sent.
    pub fn wants_leave(&self) -> bool {
        self.state == State::Leaving
    }

    /// The fatal error, once.
    pub fn take_error(&mut self) -> Option<ConsumeError> {
        self.error.take()
    }

    /// Assignment changes since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Subscribes to `topics` (replacing the subscription); the member (re)joins.
    pub fn subscribe(&mut self, topics: BTreeSet<TopicName>) {
        if topics.is_empty() {
            return self.unsubscribe();
        }
        let changed = topics != self.topics;
        self.topics = topics;
        match self.state {
            State::Idle | State::Leaving => self.rejoin(),
            State::Stable if changed => self.rejoin(),
            _ => {}
        }
    }

    /// Leaves the group and gives up every partition.
    pub fn unsubscribe(&mut self) {
        self.topics.clear();
        let owned = std::mem::take(&mut self.owned);
        if !owned.is_empty() {
            self.changes.push(Change { revoked: owned, ..Change::default() });
        }
        if self.member_id.is_empty() || self.state == State::Failed {
            self.state = State::Idle;
        } else {
            self.state = State::Leaving;
        }
    }

    /// Closing: dynamic members leave; static ones keep their place for the session timeout.
    pub fn close(&mut self) {
        if self.settings.instance_id.is_some() || self.member_id.is_empty() || self.state == State::Failed {
            self.state = State::Idle;
        } else if self.state != State::Idle {
            self.state = State::Leaving;
        }
    }

    /// The application polled: a member that left for not polling joins again.
    pub fn polled(&mut self) {
        // Only a member still out of the group joins: one that subscribed again meanwhile is
        // already back.
        if self.left_for_poll_timeout && !self.topics.is_empty() && matches!(self.state, State::Idle | State::Leaving) {
            self.rejoin();
        }
        self.left_for_poll_timeout = false;
    }

    /// The application did not poll for `max.poll.interval.ms`: leave, as Java does.
    pub fn poll_timeout_expired(&mut self) {
        if matches!(self.state, State::Stable | State::Join | State::Sync) {
            let owned = std::mem::take(&mut self.owned);
            if !owned.is_empty() {
                self.changes.push(Change { revoked: owned, ..Change::default() });
            }
            self.left_for_poll_timeout = true;
            self.state = State::Leaving;
        }
    }

    /// Starts a rejoin; eager rebalancing revokes everything first.
    fn rejoin(&mut self) {
        if self.rebalance == RebalanceProtocol::Eager {
            let owned = std::mem::take(&mut self.owned);
            if !owned.is_empty() {
                self.changes.push(Change { revoked: owned, ..Change::default() });
            }
        }
        self.state = State::Join;
        self.left_for_poll_timeout = false;
        // A member that holds its JoinGroup for the application keeps heartbeating, so the
        // coordinator does not take it for dead meanwhile.
        self.next_heartbeat = self.next_heartbeat.filter(|_| self.generation >= 0);
    }

    /// Whether it heartbeats while holding its JoinGroup for the application.
    fn heartbeats_while_held(&self) -> bool {
        self.held && self.generation >= 0 && matches!(self.state, State::Join | State::Leaving)
    }

    /// Drops the member's identity and partitions (the coordinator no longer knows it).
    fn reset(&mut self, keep_member_id: bool) {
        let owned = std::mem::take(&mut self.owned);
        if !owned.is_empty() {
            self.changes.push(Change { lost: owned, ..Change::default() });
        }
        if !keep_member_id && self.settings.instance_id.is_none() {
            self.member_id.clear();
        }
        self.generation = -1;
        if self.state == State::Leaving {
            // Fenced while its leave waited (for a commit, say): out of the group already, it
            // must not join again on its way out.
            self.state = State::Idle;
        } else {
            self.rejoin();
        }
    }

    fn fail(&mut self, error: ConsumeError) {
        let owned = std::mem::take(&mut self.owned);
        if !owned.is_empty() {
            self.changes.push(Change { lost: owned, ..Change::default() });
        }
        self.state = State::Failed;
        self.error = Some(error);
    }

    fn back_off(&mut self, now: Instant) {
        self.retry_at = Some(now + self.settings.retry_backoff);
    }

    /// When it next wants to act.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.held && matches!(self.state, State::Join | State::Leaving) {
            return self.next_heartbeat.filter(|_| self.heartbeats_while_held());
        }
        match self.state {
            State::Stable => self.next_heartbeat,
            State::Join | State::Sync | State::Leaving => self.retry_at,
            _ => None,
        }
    }

    /// Whether it has a request ready for the coordinator at `now`.
    pub fn wants(&self, now: Instant) -> bool {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|t| t > now) {
            return false;
        }
        if self.heartbeats_while_held() {
            return self.next_heartbeat.is_some_and(|t| t <= now);
        }
        match self.state {
            State::Join | State::Leaving => !self.held,
            State::Sync => true,
            State::Stable => self.next_heartbeat.is_some_and(|t| t <= now),
            _ => false,
        }
    }

    /// Holds back (or lets go) the next JoinGroup while the application handles a revocation.
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    /// The next request, for the coordinator's negotiated `version` of its API, with how long
    /// its answer may take.
    pub fn request(
        &mut self,
        now: Instant,
        version_of: &dyn Fn(ApiKey) -> Option<i16>,
    ) -> Option<(RequestBody, ApiKey, i16, Duration)> {
        if !self.wants(now) {
            return None;
        }
        let group = self.settings.group.clone();
        let instance = self.settings.instance_id.clone().map(StrBytes::from);
        let member = StrBytes::from(self.member_id.clone());
        let state = if self.heartbeats_while_held() { State::Stable } else { self.state };
        let (body, api, extra, kind) = match state {
            State::Join => {
                let protocols = self.protocols();
                let body = JoinGroupRequest::default()
                    .with_group_id(group)
                    .with_session_timeout_ms(ms(self.settings.session_timeout))
                    .with_rebalance_timeout_ms(ms(self.settings.rebalance_timeout))
                    .with_member_id(member)
                    .with_group_instance_id(instance)
                    .with_protocol_type(StrBytes::from(PROTOCOL_TYPE.to_string()))
                    .with_protocols(protocols);
                // The coordinator holds a JoinGroup until the group rebalanced.
                (RequestBody::JoinGroup(body), ApiKey::JoinGroup, self.settings.rebalance_timeout, Kind::Join)
            }
            State::Sync => {
                let body = SyncGroupRequest::default()
                    .with_group_id(group)
                    .with_generation_id(self.generation)
                    .with_member_id(member)
                    .with_group_instance_id(instance)
                    .with_protocol_type(Some(StrBytes::from(PROTOCOL_TYPE.to_string())))
                    .with_protocol_name(self.protocol.map(|p| StrBytes::from(p.name().to_string())))
                    .with_assignments(std::mem::take(&mut self.assignments));
                (RequestBody::SyncGroup(body), ApiKey::SyncGroup, self.settings.rebalance_timeout, Kind::Sync)
            }
            State::Stable => {
                let body = HeartbeatRequest::default()
                    .with_group_id(group)
                    .with_generation_id(self.generation)
                    .with_member_id(member)
                    .with_group_instance_id(instance);
                (RequestBody::Heartbeat(body), ApiKey::Heartbeat, Duration::ZERO, Kind::Heartbeat)
            }
            State::Leaving => {
                let version = version_of(ApiKey::LeaveGroup).unwrap_or(0);
                let body = if version >= 3 {
                    LeaveGroupRequest::default().with_group_id(group).with_members(vec![MemberIdentity::default()
                        .with_member_id(member)
                        .with_group_instance_id(instance)])
                } else {
                    LeaveGroupRequest::default().with_group_id(group).with_member_id(member)
                };
                (RequestBody::LeaveGroup(body), ApiKey::LeaveGroup, Duration::ZERO, Kind::Leave)
            }
            _ => return None,
        };
        let version = version_of(api)?;
        self.in_flight = Some(kind);
        self.state = match kind {
            Kind::Join => State::Joining,
            Kind::Sync => State::Syncing,
            _ => self.state,
        };
        Some((body, api, version, extra))
    }

    fn protocols(&self) -> Vec<JoinGroupRequestProtocol> {
        let topics: Vec<TopicName> = self.topics.iter().cloned().collect();
        let previous = (!self.owned.is_empty() || self.generation >= 0)
            .then(|| PreviousAssignment { partitions: self.owned.clone(), generation: self.generation });
        self.settings
            .assignors
            .iter()
            .filter_map(|a| {
                let sub = Subscription {
                    topics: topics.clone(),
                    user_data: a.subscription_user_data(previous.as_ref()),
                    owned_partitions: self.owned.clone(),
                    generation_id: (self.generation >= 0).then_some(self.generation),
                    rack_id: self.settings.rack.clone(),
                };
                let metadata = encode_subscription(&sub).ok()?;
                Some(
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from(a.name().to_string()))
                        .with_metadata(metadata),
                )
            })
            .collect()
    }

    /// The request in flight got no answer: try again after a backoff.
    pub fn handle_failure(&mut self, now: Instant) {
        let Some(kind) = self.in_flight.take() else { return };
        self.back_off(now);
        match kind {
            Kind::Join => self.state = State::Join,
            // The leader's assignments are gone with the request: the group rebalances.
            Kind::Sync => self.rejoin(),
            Kind::Heartbeat => self.next_heartbeat = Some(now + self.settings.retry_backoff),
            // Out of the group either way; unless the application polled again meanwhile and
            // the member is joining anew.
            Kind::Leave if self.state == State::Leaving => self.state = State::Idle,
            Kind::Leave => {}
        }
    }

    /// Reads a JoinGroup answer; `counts` gives the partitions of the topics the members
    /// subscribe to, for the leader's assignment.
    pub fn handle_join(
        &mut self,
        now: Instant,
        r: JoinGroupResponse,
        counts: impl Fn(&TopicName) -> Option<u32>,
    ) -> Result<(), ErrorCode> {
        self.in_flight = None;
        if self.state != State::Joining {
            return Ok(());
        }
        match r.error_code {
            ErrorCode::None => {}
            ErrorCode::MemberIdRequired => {
                self.member_id = r.member_id.to_string();
                self.state = State::Join;
                return Ok(());
            }
            ErrorCode::UnknownMemberId => {
                self.reset(false);
                return Ok(());
            }
            ErrorCode::IllegalGeneration | ErrorCode::RebalanceInProgress => {
                self.state = State::Join;
                return Ok(());
            }
            e if retriable_coordinator(e) => {
                self.state = State::Join;
                self.back_off(now);
                return Err(e);
            }
            e => {
                self.fail(ConsumeError::Group { error: e });
                return Ok(());
            }
        }
        self.generation = r.generation_id;
        self.member_id = r.member_id.to_string();
        let name = r.protocol_name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        self.protocol = self.settings.assignors.iter().copied().find(|a| a.name() == name);
        let Some(assignor) = self.protocol else {
            self.fail(ConsumeError::Group { error: ErrorCode::InconsistentGroupProtocol });
            return Ok(());
        };
        self.assignments.clear();
        if r.leader.as_str() == self.member_id && !r.skip_assignment {
            let mut members = Vec::new();
            let mut topics = BTreeSet::new();
            for m in &r.members {
                let Ok(subscription) = decode_subscription(&m.metadata) else {
                    self.fail(ConsumeError::Group { error: ErrorCode::InconsistentGroupProtocol });
                    return Ok(());
                };
                topics.extend(subscription.topics.iter().cloned());
                members.push(Member {
                    id: MemberId(m.member_id.to_string()),
                    group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                    subscription,
                });
            }
            let partitions: PartitionCounts = topics.iter().filter_map(|t| Some((t.clone(), counts(t)?))).collect();
            match assignor.assign(&partitions, &members) {
                Ok(result) => {
                    for (id, assignment) in result {
                        let Ok(bytes) = encode_assignment(&assignment) else { continue };
                        self.assignments.push(
                            SyncGroupRequestAssignment::default()
                                .with_member_id(StrBytes::from(id.0))
                                .with_assignment(bytes),
                        );
                    }
                    self.assigned_counts = Some(partitions);
                }
                Err(e) => {
                    let _ = e;
                    self.fail(ConsumeError::Group { error: ErrorCode::InconsistentGroupProtocol });
                    return Ok(());
                }
            }
        } else {
            self.assigned_counts = None;
        }
        self.state = State::Sync;
        Ok(())
    }

    /// Reads a SyncGroup answer.
    pub fn handle_sync(&mut self, now: Instant, r: SyncGroupResponse) -> Result<(), ErrorCode> {
        self.in_flight = None;
        if self.state != State::Syncing {
            return Ok(());
        }
        match r.error_code {
            ErrorCode::None => {}
            ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration => {
                self.reset(false);
                return Ok(());
            }
            ErrorCode::RebalanceInProgress => {
                self.rejoin();
                return Ok(());
            }
            e if retriable_coordinator(e) => {
                self.rejoin();
                self.back_off(now);
                return Err(e);
            }
            e => {
                self.fail(ConsumeError::Group { error: e });
                return Ok(());
            }
        }
        let assignment = if r.assignment.is_empty() {
            Default::default()
        } else {
            match decode_assignment(&r.assignment) {
                Ok(a) => a,
                Err(_) => {
                    self.fail(ConsumeError::Group { error: ErrorCode::InconsistentGroupProtocol });
                    return Ok(());
                }
            }
        };
        let new: Vec<TopicPartition> = assignment.iter().collect();
        let new_set: BTreeSet<&TopicPartition> = new.iter().collect();
        let old_set: BTreeSet<&TopicPartition> = self.owned.iter().collect();
        let revoked: Vec<TopicPartition> = self.owned.iter().filter(|tp| !new_set.contains(tp)).cloned().collect();
        let assigned: Vec<TopicPartition> = new.iter().filter(|tp| !old_set.contains(tp)).cloned().collect();
        let change = Change { assigned, revoked: revoked.clone(), lost: Vec::new() };
        if !change.is_empty() {
            self.changes.push(change);
        }
        self.owned = new;
        self.state = State::Stable;
        self.next_heartbeat = Some(now + self.settings.heartbeat_interval);
        // KIP-429: partitions given up in a cooperative rebalance go to their new owner in the
        // next one.
        if self.rebalance == RebalanceProtocol::Cooperative && !revoked.is_empty() {
            self.rejoin();
        }
        Ok(())
    }

    /// Reads a Heartbeat answer.
    pub fn handle_heartbeat(&mut self, now: Instant, r: HeartbeatResponse) -> Result<(), ErrorCode> {
        self.in_flight = None;
        let holding = self.heartbeats_while_held();
        if self.state != State::Stable && !holding {
            return Ok(());
        }
        match r.error_code {
            ErrorCode::None => self.next_heartbeat = Some(now + self.settings.heartbeat_interval),
            // Already rejoining while the application finishes: keep the member alive.
            ErrorCode::RebalanceInProgress if holding => {
                self.next_heartbeat = Some(now + self.settings.heartbeat_interval)
            }
            ErrorCode::RebalanceInProgress => self.rejoin(),
            ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration => self.reset(false),
            e if retriable_coordinator(e) => {
                self.next_heartbeat = Some(now + self.settings.retry_backoff);
                return Err(e);
            }
            e => self.fail(ConsumeError::Group { error: e }),
        }
        Ok(())
    }

    /// Reads a LeaveGroup answer (whatever it says, the member is out).
    pub fn handle_leave(&mut self, _r: LeaveGroupResponse) {
        self.in_flight = None;
        #[cfg(feature = "plants")]
        if self.zombie && self.state == State::Leaving {
            // The planted bug: out of the group, yet still heartbeating as a member.
            self.state = State::Stable;
            return;
        }
        if self.state == State::Leaving {
            self.state = State::Idle;
        }
        if self.settings.instance_id.is_none() {
            self.member_id.clear();
        }
        self.generation = -1;
    }

    /// Metadata changed: a leader whose topics changed partition counts rebalances.
    pub fn handle_metadata(&mut self, counts: impl Fn(&TopicName) -> Option<u32>) {
        if self.state != State::Stable {
            return;
        }
        let Some(assigned) = &self.assigned_counts else { return };
        let changed = self.topics.iter().any(|t| assigned.get(t) != counts(t));
        if changed {
            self.rejoin();
        }
    }

    /// A commit was refused because the member is not in the group's current generation.
    pub fn commit_fenced(&mut self, error: ErrorCode) {
        match error {
            ErrorCode::RebalanceInProgress if self.state == State::Stable => self.rejoin(),
            ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration if self.state == State::Stable => {
                self.reset(false)
            }
            _ => {}
        }
    }
}

/// Cooperative when every assignor supports it (Java's rule), else eager.
fn common_protocol(assignors: &[&'static dyn Assignor]) -> RebalanceProtocol {
    let cooperative = !assignors.is_empty()
        && assignors.iter().all(|a| a.supported_protocols().contains(&RebalanceProtocol::Cooperative));
    if cooperative {
        RebalanceProtocol::Cooperative
    } else {
        RebalanceProtocol::Eager
    }
}

fn ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

impl super::GroupMember for ClassicMember {
    fn group(&self) -> &GroupId {
        ClassicMember::group(self)
    }

    fn topics(&self) -> &BTreeSet<TopicName> {
        ClassicMember::topics(self)
    }

    fn commit_identity(&self) -> Option<(i32, &str, Option<&str>)> {
        ClassicMember::commit_identity(self)
    }

    fn is_stable(&self) -> bool {
        ClassicMember::is_stable(self)
    }

    fn is_idle(&self) -> bool {
        ClassicMember::is_idle(self)
    }

    fn wants_leave(&self) -> bool {
        ClassicMember::wants_leave(self)
    }

    fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    fn joining(&self) -> bool {
        self.in_flight == Some(Kind::Join)
    }

    fn take_error(&mut self) -> Option<ConsumeError> {
        ClassicMember::take_error(self)
    }

    fn take_changes(&mut self) -> Vec<Change> {
        ClassicMember::take_changes(self)
    }

    fn subscribe(&mut self, topics: BTreeSet<TopicName>) {
        ClassicMember::subscribe(self, topics)
    }

    fn unsubscribe(&mut self) {
        ClassicMember::unsubscribe(self)
    }

    fn close(&mut self) {
        ClassicMember::close(self)
    }

    fn polled(&mut self) {
        ClassicMember::polled(self)
    }

    fn poll_timeout_expired(&mut self) {
        ClassicMember::poll_timeout_expired(self)
    }

    fn hold(&mut self, held: bool) {
        ClassicMember::hold(self, held)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        ClassicMember::poll_timeout(self)
    }

    fn wants(&self, now: Instant) -> bool {
        ClassicMember::wants(self, now)
    }

    fn request(
        &mut self,
        now: Instant,
        version_of: &dyn Fn(ApiKey) -> Option<i16>,
        _cluster: &ClusterMetadata,
    ) -> Option<(RequestBody, i16, Duration)> {
        ClassicMember::request(self, now, version_of).map(|(body, _, version, extra)| (body, version, extra))
    }

    fn handle_response(
        &mut self,
        now: Instant,
        body: Option<ResponseBody>,
        cluster: &ClusterMetadata,
    ) -> Option<ErrorCode> {
        let counts = |t: &TopicName| partition_count(cluster, t);
        match body {
            Some(ResponseBody::JoinGroup(r)) => self.handle_join(now, r, counts).err(),
            Some(ResponseBody::SyncGroup(r)) => self.handle_sync(now, r).err(),
            Some(ResponseBody::Heartbeat(r)) => self.handle_heartbeat(now, r).err(),
            Some(ResponseBody::LeaveGroup(r)) => {
                self.handle_leave(r);
                None
            }
            _ => {
                self.handle_failure(now);
                Some(ErrorCode::CoordinatorNotAvailable)
            }
        }
    }

    fn handle_metadata(&mut self, cluster: &ClusterMetadata) {
        ClassicMember::handle_metadata(self, |t| partition_count(cluster, t))
    }

    #[cfg(feature = "plants")]
    fn plant_heartbeat_after_leave(&mut self) {
        self.zombie = true;
    }

    fn commit_fenced(&mut self, error: ErrorCode) {
        ClassicMember::commit_fenced(self, error)
    }
}

/// A topic's partition count as metadata knows it, for the leader's assignment.
fn partition_count(cluster: &ClusterMetadata, topic: &TopicName) -> Option<u32> {
    let t = cluster.topics.get(topic)?;
    (t.error == ErrorCode::None && !t.partitions.is_empty()).then_some(t.partitions.len() as u32)
}
