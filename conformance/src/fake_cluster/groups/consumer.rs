//! Consumer groups (KIP-848): ConsumerGroupHeartbeat.
//!
//! The group epoch rises when a member joins, leaves or changes its subscription, or when a
//! subscribed topic appears or grows; the next heartbeat then computes a new target
//! assignment (at that epoch). Each member moves towards its target on its own heartbeats:
//!
//! | member state         | moves on when                                  | then                      |
//! |----------------------|------------------------------------------------|---------------------------|
//! | Stable               | its epoch is behind the target epoch           | revoke, or take new ones  |
//! | UnrevokedPartitions  | it reports owning none of the revoked ones     | take the free new ones    |
//! | UnreleasedPartitions | partitions it waits for are released by others | Stable                    |
//!
//! The member epoch jumps to the target epoch once nothing is left to revoke. A member that
//! does not revoke within its rebalance timeout, or misses its session (45 s), is removed.
//! Epoch -1 leaves; -2 (static members) leaves for now, keeping the assignment until the
//! session expires or the instance rejoins.
//!
//! Simplified: the target assignment is not sticky (partitions go round-robin over each
//! topic's subscribers, by member id order, topic by topic).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sansa::protocol::messages::consumer_group_heartbeat::request::TopicPartitions as OwnedPartitions;
use sansa::protocol::messages::consumer_group_heartbeat::response::{Assignment, TopicPartitions};
use sansa::protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use sansa::protocol::{ErrorCode, StrBytes, Uuid};

use super::{coordinator_error, ms, ms_i32, Group, CONSUMER_HEARTBEAT_INTERVAL, CONSUMER_SESSION_TIMEOUT};
use crate::fake_cluster::{Ctx, FakeCluster};

/// Partitions by topic name.
pub(crate) type Partitions = BTreeMap<String, BTreeSet<i32>>;

/// The topics the assignor sees: name to (id, partition count).
#[derive(Debug, Default, PartialEq, Eq, Clone)]
pub(crate) struct TopicView(BTreeMap<String, (Uuid, i32)>);

impl TopicView {
    pub(crate) fn of(cluster: &FakeCluster) -> Self {
        let view =
            cluster.topics.iter().map(|(n, t)| (n.clone(), (t.id, i32::try_from(t.partitions.len()).unwrap_or(0))));
        TopicView(view.collect())
    }

    fn name(&self, id: Uuid) -> Option<&str> {
        self.0.iter().find(|(_, (i, _))| *i == id).map(|(n, _)| n.as_str())
    }

    /// Only the topics in `names`.
    fn restricted(&self, names: &BTreeSet<String>) -> TopicView {
        TopicView(self.0.iter().filter(|(n, _)| names.contains(*n)).map(|(n, v)| (n.clone(), *v)).collect())
    }
}

const ASSIGNORS: &[&str] = &["uniform", "range"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) epoch: i32,
    previous_epoch: i32,
    rebalance_timeout: Duration,
    pub(crate) subscribed: BTreeSet<String>,
    state: MemberState,
    pub(crate) assigned: Partitions,
    revoking: Partitions,
    session_deadline: Instant,
    revoke_deadline: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct ConsumerGroup {
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    static_members: BTreeMap<String, String>,
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    target: BTreeMap<String, Partitions>,
    /// The subscribed topics as the last epoch saw them.
    seen_topics: TopicView,
}

fn overlaps(a: &Partitions, b: &Partitions) -> bool {
    a.iter().any(|(t, ps)| b.get(t).is_some_and(|qs| !ps.is_disjoint(qs)))
}

fn minus(a: &Partitions, b: &Partitions) -> Partitions {
    let mut out = Partitions::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = ps.iter().filter(|p| !b.get(t).is_some_and(|q| q.contains(p))).copied().collect();
        if !rest.is_empty() {
            out.insert(t.clone(), rest);
        }
    }
    out
}

fn union(a: &Partitions, b: &Partitions) -> Partitions {
    let mut out = a.clone();
    for (t, ps) in b {
        out.entry(t.clone()).or_default().extend(ps.iter().copied());
    }
    out
}

fn is_subset(a: &Partitions, b: &Partitions) -> bool {
    minus(a, b).is_empty()
}

impl ConsumerGroup {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.members.values().flat_map(|m| [Some(m.session_deadline), m.revoke_deadline]).flatten().min()
    }

    /// Kafka's consumer group state names.
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| m.subscribed.iter().cloned()).collect()
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.static_members.get(inst).is_some_and(|x| x == id) {
                    self.static_members.remove(inst);
                }
            }
            self.target.remove(id);
            self.group_epoch += 1;
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in due {
            self.remove_member(&id);
        }
    }

    /// Round-robin of each subscribed topic's partitions over its subscribers.
    fn compute_target(&mut self, topics: &TopicView) {
        let mut target: BTreeMap<String, Partitions> =
            self.members.keys().map(|k| (k.clone(), Partitions::new())).collect();
        let mut cursor = 0usize;
        for (name, (_, count)) in &topics.0 {
            let subs: Vec<&String> =
                self.members.values().filter(|m| m.subscribed.contains(name)).map(|m| &m.id).collect();
            if subs.is_empty() {
                continue;
            }
            for p in 0..*count {
                let owner = subs[cursor % subs.len()];
                cursor += 1;
                target.entry(owner.clone()).or_default().entry(name.clone()).or_default().insert(p);
            }
        }
        self.target = target;
        self.assignment_epoch = self.group_epoch;
    }

    /// Partitions held (assigned or being revoked) by members other than `id`.
    fn held_by_others(&self, id: &str) -> Partitions {
        let mut out = Partitions::new();
        for m in self.members.values().filter(|m| m.id != id) {
            out = union(&out, &union(&m.assigned, &m.revoking));
        }
        out
    }

    /// Moves member `id` towards its target (see the module table).
    fn reconcile(&mut self, now: Instant, id: &str, owned: Option<&Partitions>) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let others = self.held_by_others(id);
        let epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(id) else { return };
        match m.state {
            MemberState::UnrevokedPartitions => match owned {
                Some(owned) if !overlaps(owned, &m.revoking) => {
                    m.revoking.clear();
                    m.revoke_deadline = None;
                }
                _ => return,
            },
            MemberState::Stable if m.epoch == epoch => return,
            _ => {}
        }
        let revoke = minus(&m.assigned, &target);
        if !revoke.is_empty() {
            m.assigned = minus(&m.assigned, &revoke);
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline = Some(now + m.rebalance_timeout);
            return;
        }
        let wanted = minus(&target, &m.assigned);
        let free = minus(&wanted, &others);
        m.assigned = union(&m.assigned, &free);
        if m.epoch != epoch {
            m.previous_epoch = m.epoch;
            m.epoch = epoch;
        }
        m.state = if free == wanted { MemberState::Stable } else { MemberState::UnreleasedPartitions };
    }

    /// Offset commits: a simple commit (epoch < 0) needs an empty group; members commit at
    /// their current epoch, with OffsetCommit v9+.
    pub(crate) fn validate_offset_commit(&self, member_id: &str, epoch: i32, version: i16) -> Result<(), ErrorCode> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let m = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if version < 9 {
            return Err(ErrorCode::UnsupportedVersion);
        }
        if epoch != m.epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }

    pub(crate) fn validate_offset_fetch(&self, member_id: Option<&str>, epoch: i32) -> Result<(), ErrorCode> {
        if member_id.is_none() && epoch < 0 {
            return Ok(());
        }
        let m = self.members.get(member_id.unwrap_or_default()).ok_or(ErrorCode::UnknownMemberId)?;
        if epoch != m.epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }

    fn response_assignment(&self, id: &str, topics: &TopicView) -> Assignment {
        let assigned = self.members.get(id).map(|m| m.assigned.clone()).unwrap_or_default();
        let tps = assigned
            .iter()
            .filter_map(|(name, ps)| {
                let (tid, _) = topics.0.get(name)?;
                Some(TopicPartitions::default().with_topic_id(*tid).with_partitions(ps.iter().copied().collect()))
            })
            .collect();
        Assignment::default().with_topic_partitions(tps)
    }
}

fn fail(code: ErrorCode, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_error_message(Some(StrBytes::from(message)))
}

/// Kafka's request checks, before the group is looked at.
fn validate(version: i16, req: &ConsumerGroupHeartbeatRequest) -> Result<(), (ErrorCode, &'static str)> {
    let invalid = |m: &'static str| Err((ErrorCode::InvalidRequest, m));
    let empty = |v: &Option<StrBytes>| v.as_ref().is_some_and(|s| s.is_empty());
    if req.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if empty(&req.instance_id) || empty(&req.rack_id) {
        return invalid("InstanceId and RackId can't be empty.");
    }
    if req.subscribed_topic_regex.is_some() {
        return invalid("SubscribedTopicRegex is not supported by the fake cluster.");
    }
    if version >= 1 && req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if req.subscribed_topic_names.as_ref().is_none_or(|t| t.is_empty()) {
                return invalid("SubscribedTopicNames must be set in first request.");
            }
        }
        e if e > 0 || e == -1 => {
            if req.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
        }
        -2 => {
            if req.member_id.is_empty() || req.instance_id.is_none() {
                return invalid("MemberId and InstanceId must be set to leave temporarily.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if let Some(a) = &req.server_assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Err((ErrorCode::UnsupportedAssignor, "ServerAssignor is not supported."));
        }
    }
    Ok(())
}

fn owned_partitions(owned: &[OwnedPartitions], topics: &TopicView) -> Partitions {
    let mut out = Partitions::new();
    for tp in owned {
        if let Some(name) = topics.name(tp.topic_id) {
            out.entry(name.to_string()).or_default().extend(tp.partitions.iter().copied());
        }
    }
    out
}

pub(crate) fn heartbeat(
    cluster: &mut FakeCluster,
    ctx: Ctx,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if let Err((code, message)) = validate(ctx.version, &req) {
        return fail(code, message);
    }
    if let Some(code) = coordinator_error(cluster, ctx.broker, &req.group_id) {
        return ConsumerGroupHeartbeatResponse::default().with_error_code(code);
    }
    let now = ctx.now;
    let topics = TopicView::of(cluster);
    let groups = &mut cluster.groups;
    let gid = req.group_id.to_string();
    let epoch = req.member_epoch;
    match groups.groups.get(&gid) {
        Some(Group::Consumer(_)) => {}
        Some(g @ Group::Classic(_)) if epoch == 0 && g.is_empty() => {
            groups.groups.insert(gid.clone(), Group::Consumer(ConsumerGroup::default()));
        }
        None if epoch == 0 => {
            groups.groups.insert(gid.clone(), Group::Consumer(ConsumerGroup::default()));
        }
        _ => return fail(ErrorCode::GroupIdNotFound, "Group is not a consumer group."),
    }
    let member_id = if req.member_id.is_empty() {
        Uuid::from_bytes(groups.uuid_bytes()).to_string()
    } else {
        req.member_id.to_string()
    };
    let client_id = groups.client_id.clone();
    let Some(Group::Consumer(g)) = groups.groups.get_mut(&gid) else {
        return fail(ErrorCode::GroupIdNotFound, "Group is not a consumer group.");
    };
    let instance = req.instance_id.as_deref().map(str::to_string);
    let owned = req.topic_partitions.as_deref().map(|o| owned_partitions(o, &topics));

    // Leaving.
    if epoch < 0 {
        let existing = match &instance {
            Some(inst) => match g.static_members.get(inst) {
                None => return fail(ErrorCode::UnknownMemberId, "Unknown static member."),
                Some(id) if *id != member_id => return fail(ErrorCode::FencedInstanceId, "Fenced instance id."),
                Some(id) => id.clone(),
            },
            None if g.members.contains_key(&member_id) => member_id.clone(),
            None => return fail(ErrorCode::UnknownMemberId, "Unknown member."),
        };
        if epoch == -2 {
            if let Some(m) = g.members.get_mut(&existing) {
                m.epoch = -2;
            }
        } else {
            g.remove_member(&existing);
        }
        return ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from(member_id.as_str())))
            .with_member_epoch(epoch);
    }

    let session_deadline = now + CONSUMER_SESSION_TIMEOUT;
    let mut bump = false;
    if epoch == 0 {
        let previous = instance.as_ref().and_then(|i| g.static_members.get(i).cloned());
        match previous {
            Some(old) if old != member_id => {
                let Some(prev) = g.members.get(&old) else {
                    return fail(ErrorCode::UnknownMemberId, "Unknown member.");
                };
                if prev.epoch != -2 {
                    return fail(ErrorCode::UnreleasedInstanceId, "The instance id is still in use.");
                }
                // The instance comes back: the new member takes over the old one's assignment.
                let mut m = prev.clone();
                g.members.remove(&old);
                if let Some(t) = g.target.remove(&old) {
                    g.target.insert(member_id.clone(), t);
                }
                m.id = member_id.clone();
                m.epoch = 0;
                m.previous_epoch = 0;
                m.state = MemberState::Stable;
                g.members.insert(member_id.clone(), m);
            }
            _ => {
                if g.members.remove(&member_id).is_some() {
                    // A member rejoining from scratch owns nothing any more.
                    g.target.remove(&member_id);
                }
                g.members.insert(
                    member_id.clone(),
                    ConsumerMember {
                        id: member_id.clone(),
                        instance_id: None,
                        rack_id: None,
                        client_id: String::new(),
                        epoch: 0,
                        previous_epoch: 0,
                        rebalance_timeout: Duration::ZERO,
                        subscribed: BTreeSet::new(),
                        state: MemberState::Stable,
                        assigned: Partitions::new(),
                        revoking: Partitions::new(),
                        session_deadline,
                        revoke_deadline: None,
                    },
                );
                bump = true;
            }
        }
        if let Some(inst) = &instance {
            g.static_members.insert(inst.clone(), member_id.clone());
        }
    } else {
        if let Some(inst) = &instance {
            match g.static_members.get(inst) {
                None => return fail(ErrorCode::UnknownMemberId, "Unknown static member."),
                Some(id) if *id != member_id => return fail(ErrorCode::FencedInstanceId, "Fenced instance id."),
                Some(_) => {}
            }
        }
        let Some(m) = g.members.get(&member_id) else { return fail(ErrorCode::UnknownMemberId, "Unknown member.") };
        let lost_answer =
            epoch == m.previous_epoch && owned.as_ref().is_some_and(|o| is_subset(o, &union(&m.assigned, &m.revoking)));
        if epoch > m.epoch || (epoch < m.epoch && !lost_answer) {
            return fail(ErrorCode::FencedMemberEpoch, "The member epoch is not the current one.");
        }
    }

    let Some(m) = g.members.get_mut(&member_id) else { return fail(ErrorCode::UnknownMemberId, "Unknown member.") };
    let before = m.assigned.clone();
    m.instance_id = instance;
    m.client_id = client_id;
    if req.rack_id.is_some() {
        m.rack_id = req.rack_id.as_deref().map(str::to_string);
    }
    if req.rebalance_timeout_ms >= 0 {
        m.rebalance_timeout = ms(req.rebalance_timeout_ms);
    }
    if let Some(names) = &req.subscribed_topic_names {
        let names: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        if names != m.subscribed {
            m.subscribed = names;
            bump = true;
        }
    }
    m.session_deadline = session_deadline;
    let seen = topics.restricted(&g.subscribed_topics());
    if seen != g.seen_topics {
        g.seen_topics = seen;
        bump = true;
    }
    if bump {
        g.group_epoch += 1;
    }
    if g.group_epoch > g.assignment_epoch {
        let view = g.seen_topics.clone();
        g.compute_target(&view);
    }
    g.reconcile(now, &member_id, owned.as_ref());
    let Some(m) = g.members.get(&member_id) else { return fail(ErrorCode::UnknownMemberId, "Unknown member.") };
    let full = epoch == 0
        || (req.rebalance_timeout_ms != -1 && req.subscribed_topic_names.is_some() && req.topic_partitions.is_some());
    let mut r = ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(StrBytes::from(member_id.as_str())))
        .with_member_epoch(m.epoch)
        .with_heartbeat_interval_ms(ms_i32(CONSUMER_HEARTBEAT_INTERVAL));
    if full || m.assigned != before {
        r.assignment = Some(g.response_assignment(&member_id, &topics));
    }
    r
}
