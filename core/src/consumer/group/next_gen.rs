//! A member of a KIP-848 consumer group (`group.protocol=consumer`): one request,
//! ConsumerGroupHeartbeat, carries the subscription and the partitions the member owns; the
//! coordinator runs the assignor and answers with the member's target assignment, which the
//! member reaches by revoking first and then taking what is new.
//!
//! | state | on | next |
//! |---|---|---|
//! | idle | subscribe | joining: a heartbeat with epoch 0 and the whole subscription |
//! | joining, stable | an answer with an epoch and maybe a target assignment | stable; partitions to give up are revoked, new ones taken once nothing is left to revoke, and the next heartbeat tells the coordinator |
//! | stable | `heartbeat.interval` (the coordinator's) passed, or the owned set changed | a heartbeat with only what changed |
//! | any | FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID | partitions lost; joining with epoch 0 |
//! | any | a coordinator error or no answer | the same heartbeat, in full, after a backoff |
//! | any | an authorization, assignor or instance-id error | failed (reported by poll) |
//! | stable | `max.poll.interval.ms` without a poll | leaving (epoch -1); joins again at the next poll |
//! | any | unsubscribe or close | leaving: epoch -1, or -2 for a static member closing |
//! | leaving | held (a revocation or the commit before it under way) | plain heartbeats at the interval, keeping the session; the leave goes once let go |

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::classic::Change;
use super::GroupMember;
use crate::cluster::ClusterMetadata;
use crate::consumer::{ConsumeError, TopicPartition};
use crate::protocol::messages::consumer_group_heartbeat::request::{
    ConsumerGroupHeartbeatRequest, TopicPartitions as OwnedPartitions,
};
use crate::protocol::messages::ConsumerGroupHeartbeatResponse;
use crate::protocol::{ApiKey, ErrorCode, GroupId, RequestBody, ResponseBody, StrBytes, TopicName, Uuid};

/// What a KIP-848 member needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub group: GroupId,
    pub instance_id: Option<String>,
    pub rebalance_timeout: Duration,
    pub rack: Option<String>,
    /// `group.remote.assignor`: the coordinator's assignor to use, or its default.
    pub server_assignor: Option<String>,
    pub retry_backoff: Duration,
    /// A member id of our own (v1 of the API lets the client choose it): from the seeded RNG.
    pub member_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Joining,
    Stable,
    Leaving,
    Failed,
}

/// A KIP-848 group member (see the module docs).
#[derive(Debug)]
pub(crate) struct NextGenMember {
    settings: Settings,
    topics: BTreeSet<TopicName>,
    member_id: String,
    epoch: i32,
    state: State,
    owned: BTreeSet<TopicPartition>,
    /// The coordinator's latest target, by topic id, until reached.
    target: Option<BTreeMap<Uuid, Vec<i32>>>,
    heartbeat_interval: Duration,
    next_heartbeat: Option<Instant>,
    in_flight: bool,
    /// The heartbeat in flight is a leave (epoch -1 or -2): its answer is not a join's, even
    /// if the member started joining again meanwhile.
    leave_in_flight: bool,
    /// The next heartbeat carries everything (after joining or an error), not just changes.
    send_full: bool,
    /// What the last heartbeat told the coordinator, to send only changes.
    sent_topics: Option<BTreeSet<TopicName>>,
    sent_owned: Option<BTreeSet<TopicPartition>>,
    held: bool,
    left_for_poll_timeout: bool,
    closing: bool,
    error: Option<ConsumeError>,
    changes: Vec<Change>,
}

impl NextGenMember {
    pub fn new(settings: Settings) -> Self {
        NextGenMember {
            member_id: settings.member_id.clone(),
            settings,
            topics: BTreeSet::new(),
            epoch: 0,
            state: State::Idle,
            owned: BTreeSet::new(),
            target: None,
            heartbeat_interval: Duration::from_secs(5),
            next_heartbeat: None,
            in_flight: false,
            leave_in_flight: false,
            send_full: true,
            sent_topics: None,
            sent_owned: None,
            held: false,
            left_for_poll_timeout: false,
            closing: false,
            error: None,
            changes: Vec::new(),
        }
    }

    fn join(&mut self) {
        self.left_for_poll_timeout = false;
        self.state = State::Joining;
        self.epoch = 0;
        self.send_full = true;
        self.next_heartbeat = None;
    }

    /// Out of the group: the next join starts from epoch 0 and says everything again.
    fn forget_membership(&mut self) {
        self.epoch = 0;
        self.sent_owned = None;
        self.sent_topics = None;
    }

    fn lose_all(&mut self) {
        let lost: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        if !lost.is_empty() {
            self.changes.push(Change { lost, ..Change::default() });
        }
        self.target = None;
    }

    fn fail(&mut self, error: ConsumeError) {
        self.lose_all();
        self.state = State::Failed;
        self.error = Some(error);
    }

    /// Moves the owned set toward the target: revoke first (held while the application
    /// acknowledges), then take the new partitions whose topics metadata names.
    fn reconcile(&mut self, cluster: &ClusterMetadata) {
        let Some(target) = &self.target else { return };
        if self.held {
            return;
        }
        let names: BTreeMap<Uuid, TopicName> = cluster.topics.values().map(|t| (t.id, t.name.clone())).collect();
        let mut wanted = BTreeSet::new();
        let mut unresolved = false;
        for (id, partitions) in target {
            match names.get(id) {
                Some(name) => {
                    wanted.extend(partitions.iter().map(|p| TopicPartition { topic: name.clone(), partition: *p }))
                }
                None => unresolved = true,
            }
        }
        let revoked: Vec<TopicPartition> = self.owned.iter().filter(|tp| !wanted.contains(*tp)).cloned().collect();
        if !revoked.is_empty() {
            for tp in &revoked {
                self.owned.remove(tp);
            }
            self.changes.push(Change { revoked, ..Change::default() });
            // New partitions come once the coordinator knows these are gone.
            return;
        }
        let assigned: Vec<TopicPartition> = wanted.iter().filter(|tp| !self.owned.contains(*tp)).cloned().collect();
        if !assigned.is_empty() {
            self.owned.extend(assigned.iter().cloned());
            self.changes.push(Change { assigned, ..Change::default() });
        }
        if !unresolved {
            self.target = None;
        }
    }

    fn schedule(&mut self, now: Instant) {
        self.next_heartbeat = Some(now + self.heartbeat_interval);
    }

    /// The id the coordinator gave (version 0 of the API), if it gave one.
    fn take_member_id(&mut self, id: Option<StrBytes>) {
        // Every answer repeats the id; copy it only when it changes.
        if let Some(id) = id.filter(|id| !id.as_str().is_empty() && id.as_str() != self.member_id) {
            self.member_id = id.to_string();
        }
    }

    /// A held leave keeps the member's session with plain heartbeats; only a member in the
    /// group has one. Not one that left for a poll timeout: its application is not polling,
    /// and, as Java's stale member, it lets its session end rather than keep the partitions.
    fn keeps_alive(&self) -> bool {
        self.epoch > 0 && !self.left_for_poll_timeout
    }

    /// The answer to a plain heartbeat of a leaving member. The assignment is not taken (the
    /// member gives everything up); a fenced member is out of the group already.
    fn handle_held_answer(&mut self, now: Instant, r: ConsumerGroupHeartbeatResponse) -> Option<ErrorCode> {
        match r.error_code {
            ErrorCode::None => {
                self.take_member_id(r.member_id);
                self.epoch = r.member_epoch;
                if r.heartbeat_interval_ms > 0 {
                    self.heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms as u64);
                }
                self.schedule(now);
                None
            }
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
                self.lose_all();
                self.forget_membership();
                self.state = State::Idle;
                None
            }
            e if super::retriable_coordinator(e) => {
                self.next_heartbeat = Some(now + self.settings.retry_backoff);
                Some(e)
            }
            e => {
                self.fail(ConsumeError::Group { error: e });
                None
            }
        }
    }
}

impl GroupMember for NextGenMember {
    fn group(&self) -> &GroupId {
        &self.settings.group
    }

    fn topics(&self) -> &BTreeSet<TopicName> {
        &self.topics
    }

    fn commit_identity(&self) -> Option<(i32, &str, Option<&str>)> {
        (self.epoch > 0).then_some((self.epoch, self.member_id.as_str(), self.settings.instance_id.as_deref()))
    }

    fn is_stable(&self) -> bool {
        self.state == State::Stable && self.target.is_none()
    }

    fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle | State::Failed | State::Stable) && !self.in_flight
    }

    fn wants_leave(&self) -> bool {
        self.state == State::Leaving
    }

    fn has_in_flight(&self) -> bool {
        self.in_flight
    }

    fn joining(&self) -> bool {
        false // heartbeats are answered at once
    }

    fn take_error(&mut self) -> Option<ConsumeError> {
        self.error.take()
    }

    fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    fn subscribe(&mut self, topics: BTreeSet<TopicName>) {
        if topics.is_empty() {
            return self.unsubscribe();
        }
        self.topics = topics;
        match self.state {
            State::Idle | State::Leaving | State::Failed => self.join(),
            // The next heartbeat carries the new subscription.
            _ => self.next_heartbeat = None,
        }
    }

    fn unsubscribe(&mut self) {
        self.topics.clear();
        let revoked: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        if !revoked.is_empty() {
            self.changes.push(Change { revoked, ..Change::default() });
        }
        self.target = None;
        self.state = if self.epoch > 0 { State::Leaving } else { State::Idle };
    }

    fn close(&mut self) {
        self.closing = true;
        if self.epoch > 0 && matches!(self.state, State::Stable | State::Joining) {
            self.state = State::Leaving;
        } else if self.state != State::Leaving {
            self.state = State::Idle;
        }
    }

    fn polled(&mut self) {
        // Only a member still out of the group joins: one that subscribed again meanwhile is
        // already back.
        if self.left_for_poll_timeout && !self.topics.is_empty() && matches!(self.state, State::Idle | State::Leaving) {
            self.join();
        }
        self.left_for_poll_timeout = false;
    }

    fn poll_timeout_expired(&mut self) {
        if matches!(self.state, State::Stable | State::Joining) {
            let revoked: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
            if !revoked.is_empty() {
                self.changes.push(Change { revoked, ..Change::default() });
            }
            self.target = None;
            self.left_for_poll_timeout = true;
            self.state = State::Leaving;
        }
    }

    fn hold(&mut self, held: bool) {
        self.held = held;
        if !held {
            // Tell the coordinator what was given up.
            self.next_heartbeat = None;
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight {
            return None;
        }
        match self.state {
            State::Joining | State::Stable | State::Leaving => self.next_heartbeat,
            _ => None,
        }
    }

    fn wants(&self, now: Instant) -> bool {
        if self.in_flight {
            return false;
        }
        match self.state {
            State::Joining | State::Stable => self.next_heartbeat.is_none_or(|t| t <= now),
            // Held, the member keeps its session with plain heartbeats; let go, it leaves at
            // once, as Java's leaving member does, without waiting for the interval.
            State::Leaving if self.held => self.keeps_alive() && self.next_heartbeat.is_none_or(|t| t <= now),
            State::Leaving => true,
            _ => false,
        }
    }

    fn request(
        &mut self,
        now: Instant,
        version_of: &dyn Fn(ApiKey) -> Option<i16>,
        cluster: &ClusterMetadata,
    ) -> Option<(RequestBody, i16, Duration)> {
        if !self.wants(now) {
            return None;
        }
        let version = version_of(ApiKey::ConsumerGroupHeartbeat)?;
        let keep_alive = self.state == State::Leaving && self.held;
        let leaving = self.state == State::Leaving && !keep_alive;
        let epoch = match (leaving, self.settings.instance_id.is_some() && self.closing) {
            (true, true) => -2,
            (true, false) => -1,
            _ => self.epoch,
        };
        // Version 0 lets the coordinator choose the id of a joining member.
        let member_id =
            if version == 0 && self.epoch == 0 && !leaving { String::new() } else { self.member_id.clone() };
        let mut body = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(self.settings.group.clone())
            .with_member_id(StrBytes::from(member_id))
            .with_member_epoch(epoch);
        if keep_alive {
            // Nothing changed as far as the coordinator knows: the partitions given up stay
            // ours until the leave, and an emptied subscription is not sent.
            body = body.with_instance_id(self.settings.instance_id.clone().map(StrBytes::from));
        } else if !leaving {
            let full = self.send_full || self.epoch == 0;
            body = body.with_instance_id(self.settings.instance_id.clone().map(StrBytes::from));
            if full {
                body = body
                    .with_rack_id(self.settings.rack.clone().map(StrBytes::from))
                    .with_rebalance_timeout_ms(self.settings.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32)
                    .with_server_assignor(self.settings.server_assignor.clone().map(StrBytes::from));
            }
            if full || self.sent_topics.as_ref() != Some(&self.topics) {
                body = body.with_subscribed_topic_names(Some(self.topics.iter().cloned().collect()));
                self.sent_topics = Some(self.topics.clone());
            }
            // While the application handles a revocation (or its commit is under way), the
            // coordinator still counts the revoked partitions as ours. A joining member
            // (epoch 0) holds nothing back, and must say what it owns (nothing).
            let joining = self.epoch == 0;
            if (joining || !self.held) && (full || self.sent_owned.as_ref() != Some(&self.owned)) {
                let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
                for tp in &self.owned {
                    let id = cluster.topics.get(&tp.topic).map(|t| t.id).unwrap_or_default();
                    by_topic.entry(id).or_default().push(tp.partition);
                }
                let owned = by_topic
                    .into_iter()
                    .map(|(id, partitions)| OwnedPartitions::default().with_topic_id(id).with_partitions(partitions))
                    .collect();
                body = body.with_topic_partitions(Some(owned));
                self.sent_owned = Some(self.owned.clone());
            }
            self.send_full = false;
        }
        self.in_flight = true;
        self.leave_in_flight = leaving;
        Some((RequestBody::ConsumerGroupHeartbeat(body), version, Duration::ZERO))
    }

    fn handle_response(
        &mut self,
        now: Instant,
        body: Option<ResponseBody>,
        cluster: &ClusterMetadata,
    ) -> Option<ErrorCode> {
        self.in_flight = false;
        let left = std::mem::take(&mut self.leave_in_flight);
        let Some(ResponseBody::ConsumerGroupHeartbeat(r)) = body else {
            // No answer: say everything again, after a backoff.
            self.send_full = true;
            self.next_heartbeat = Some(now + self.settings.retry_backoff);
            // A leave is best effort; a plain heartbeat of a held leave is sent again.
            if left && self.state == State::Leaving {
                self.state = State::Idle;
            }
            return Some(ErrorCode::CoordinatorNotAvailable);
        };
        if left {
            // Out of the group, whatever the answer says. A member that started joining
            // again while its leave was in flight joins from scratch now.
            self.forget_membership();
            if self.state == State::Leaving {
                self.state = State::Idle;
            } else {
                self.send_full = true;
                self.next_heartbeat = None;
            }
            return None;
        }
        if self.state == State::Leaving {
            // A heartbeat sent while the leave was held, or before the member decided to
            // leave: the leave goes next (once let go).
            return self.handle_held_answer(now, r);
        }
        if self.state == State::Idle {
            // Unsubscribed or closed while its join was in flight: taken in, it leaves at
            // once, its assignment unread (it would own partitions with no subscription, or
            // stay in the group after the client closed).
            if r.error_code == ErrorCode::None && r.member_epoch > 0 {
                self.take_member_id(r.member_id);
                self.epoch = r.member_epoch;
                self.state = State::Leaving;
            }
            return None;
        }
        let ConsumerGroupHeartbeatResponse {
            error_code,
            member_id,
            member_epoch,
            heartbeat_interval_ms,
            assignment,
            ..
        } = r;
        match error_code {
            ErrorCode::None => {}
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
                self.lose_all();
                self.join();
                return None;
            }
            e if super::retriable_coordinator(e) => {
                self.send_full = true;
                self.next_heartbeat = Some(now + self.settings.retry_backoff);
                return Some(e);
            }
            e => {
                self.fail(ConsumeError::Group { error: e });
                return None;
            }
        }
        self.take_member_id(member_id);
        self.epoch = member_epoch;
        if heartbeat_interval_ms > 0 {
            self.heartbeat_interval = Duration::from_millis(heartbeat_interval_ms as u64);
        }
        self.state = State::Stable;
        if let Some(a) = assignment {
            self.target = Some(a.topic_partitions.into_iter().map(|t| (t.topic_id, t.partitions)).collect());
        }
        let before = self.owned.clone();
        self.reconcile(cluster);
        self.schedule(now);
        if self.owned != before {
            // Acknowledge the new owned set at once.
            self.next_heartbeat = Some(now);
        }
        None
    }

    fn handle_metadata(&mut self, cluster: &ClusterMetadata) {
        if self.target.is_some() {
            let before = self.owned.clone();
            self.reconcile(cluster);
            if self.owned != before {
                self.next_heartbeat = None;
            }
        }
    }

    fn commit_fenced(&mut self, error: ErrorCode) {
        if matches!(error, ErrorCode::StaleMemberEpoch | ErrorCode::UnknownMemberId) {
            // The next heartbeat sorts it out.
            self.next_heartbeat = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member of group `g` that has not joined.
    fn member() -> NextGenMember {
        NextGenMember::new(Settings {
            group: GroupId(StrBytes::from_static_str("g")),
            instance_id: None,
            rebalance_timeout: Duration::from_secs(30),
            rack: None,
            server_assignor: None,
            retry_backoff: Duration::from_millis(100),
            member_id: "m".into(),
        })
    }

    fn heartbeat(member: &mut NextGenMember, now: Instant) -> Option<ConsumerGroupHeartbeatRequest> {
        let cluster = ClusterMetadata::default();
        let (body, ..) = member.request(now, &|_| Some(1), &cluster)?;
        let RequestBody::ConsumerGroupHeartbeat(h) = body else { panic!("a heartbeat") };
        Some(h)
    }

    /// A member asked to hold (a revocation or the commit before it is under way) that joins
    /// afresh still says what it owns, nothing: the coordinator refuses a join without it
    /// (simulator seed 1069: a member polled again while its leave waited for a commit joined
    /// without it and failed for good).
    #[test]
    fn a_join_says_it_owns_nothing_even_while_held() {
        let mut member = member();
        member.subscribe(BTreeSet::from([TopicName::from("t")]));
        member.hold(true);
        let now = crate::test_origin();
        let (body, ..) = member.request(now, &|_| Some(1), &ClusterMetadata::default()).expect("a join");
        let RequestBody::ConsumerGroupHeartbeat(join) = body else { panic!("a heartbeat") };
        assert_eq!(join.member_epoch, 0);
        assert_eq!(join.topic_partitions, Some(Vec::new()));
    }

    /// Held, a leaving member sends plain heartbeats at the interval (its epoch, nothing
    /// changed: not the emptied subscription); let go, it leaves at once.
    #[test]
    fn a_held_leave_keeps_the_session_and_goes_at_once_when_let_go() {
        let now = crate::test_origin();
        let mut member = held_leave(now);
        let later = now + Duration::from_secs(1);
        assert!(heartbeat(&mut member, later).is_none(), "nothing before the interval");
        let due = now + Duration::from_secs(5);
        let kept = heartbeat(&mut member, due).expect("a plain heartbeat at the interval");
        assert_eq!(kept.member_epoch, 3);
        assert_eq!((kept.subscribed_topic_names, kept.topic_partitions), (None, None));
        answer(&mut member, due, ErrorCode::None);
        assert!(member.wants_leave());
        member.hold(false);
        let leave = heartbeat(&mut member, due + Duration::from_millis(1)).expect("the leave, at once");
        assert_eq!(leave.member_epoch, -1);
    }

    /// The coordinator's answer at `at`: epoch 3, heartbeats every 5 s, or `error`.
    fn answer(member: &mut NextGenMember, at: Instant, error: ErrorCode) {
        let r = ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error)
            .with_member_epoch(3)
            .with_heartbeat_interval_ms(5000);
        member.handle_response(at, Some(ResponseBody::ConsumerGroupHeartbeat(r)), &ClusterMetadata::default());
    }

    /// A stable member in the group (epoch 3), its next heartbeat 5 s away.
    fn stable_member(now: Instant) -> NextGenMember {
        let mut member = member();
        member.subscribe(BTreeSet::from([TopicName::from("t")]));
        heartbeat(&mut member, now).expect("a join");
        answer(&mut member, now, ErrorCode::None);
        member
    }

    /// A stable member (see [`stable_member`]) that unsubscribed, its leave held.
    fn held_leave(now: Instant) -> NextGenMember {
        let mut member = stable_member(now);
        member.unsubscribe();
        member.hold(true);
        member
    }

    /// Not held, a leave goes at once, not at the next heartbeat's time.
    #[test]
    fn a_leave_does_not_wait_for_the_heartbeat_interval() {
        let now = crate::test_origin();
        let mut member = stable_member(now);
        let soon = now + Duration::from_secs(1);
        assert!(heartbeat(&mut member, soon).is_none(), "the next heartbeat is 5 s away");
        member.unsubscribe();
        assert_eq!(heartbeat(&mut member, soon).map(|h| h.member_epoch), Some(-1));
    }

    /// The answers to a held leave's plain heartbeat: none (sent again after the backoff, the
    /// leave still to come), and fenced (out of the group: no leave left to send).
    #[test]
    fn a_held_leaves_heartbeat_unanswered_is_sent_again_and_fenced_ends_the_leave() {
        let now = crate::test_origin();
        let mut member = held_leave(now);
        let due = now + Duration::from_secs(5);
        assert!(heartbeat(&mut member, due).is_some());
        member.handle_response(due, None, &ClusterMetadata::default());
        assert!(member.wants_leave(), "still leaving");
        assert!(heartbeat(&mut member, due + Duration::from_millis(50)).is_none(), "backing off");
        let again = due + Duration::from_millis(100);
        assert_eq!(heartbeat(&mut member, again).map(|h| h.member_epoch), Some(3));
        answer(&mut member, again, ErrorCode::FencedMemberEpoch);
        assert!(!member.wants_leave() && member.commit_identity().is_none(), "out of the group");
        member.hold(false);
        assert!(heartbeat(&mut member, again + Duration::from_secs(10)).is_none(), "nothing left to send");
    }

    /// A member that unsubscribes or closes while its join is in flight leaves once the
    /// coordinator took it in, without taking the assignment.
    #[test]
    fn a_member_that_stops_while_its_join_is_in_flight_leaves_once_in() {
        for closing in [false, true] {
            let now = crate::test_origin();
            let mut member = member();
            member.subscribe(BTreeSet::from([TopicName::from("t")]));
            heartbeat(&mut member, now).expect("a join");
            if closing {
                member.close();
            } else {
                member.unsubscribe();
            }
            let assignment = crate::protocol::messages::consumer_group_heartbeat::response::Assignment::default()
                .with_topic_partitions(vec![Default::default()]);
            let r = ConsumerGroupHeartbeatResponse::default()
                .with_member_epoch(3)
                .with_heartbeat_interval_ms(5000)
                .with_assignment(Some(assignment));
            member.handle_response(now, Some(ResponseBody::ConsumerGroupHeartbeat(r)), &ClusterMetadata::default());
            assert!(member.wants_leave() && member.take_changes().is_empty() && !member.is_stable(), "{closing}");
            assert_eq!(heartbeat(&mut member, now).map(|h| h.member_epoch), Some(-1), "{closing}");
        }
    }

    /// A member that left for a poll timeout lets its session end while its leave is held.
    #[test]
    fn a_leave_for_a_poll_timeout_sends_no_heartbeat_while_held() {
        let now = crate::test_origin();
        let mut member = stable_member(now);
        member.poll_timeout_expired();
        member.hold(true);
        assert!(heartbeat(&mut member, now + Duration::from_secs(60)).is_none());
        member.hold(false);
        assert_eq!(heartbeat(&mut member, now + Duration::from_secs(60)).map(|h| h.member_epoch), Some(-1));
    }
}
