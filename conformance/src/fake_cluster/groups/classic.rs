//! Classic groups: JoinGroup, SyncGroup, Heartbeat and LeaveGroup.
//!
//! | state               | JoinGroup                              | SyncGroup                   | Heartbeat            |
//! |---------------------|----------------------------------------|-----------------------------|----------------------|
//! | Empty               | add member, start the (initial) join   | UNKNOWN_MEMBER_ID           | UNKNOWN_MEMBER_ID    |
//! | PreparingRebalance  | park until all joined or timeout       | REBALANCE_IN_PROGRESS       | REBALANCE_IN_PROGRESS|
//! | CompletingRebalance | same metadata: current generation      | park until the leader syncs | ok                   |
//! | Stable              | leader or new metadata: rebalance      | the member's assignment     | ok                   |
//!
//! A v4+ JoinGroup without a member id gets MEMBER_ID_REQUIRED and a pending member id. A
//! static member (group.instance.id) rejoining without its member id takes over its old
//! member; in Stable with the same selected protocol the group does not rebalance, and the
//! old member id is fenced (FENCED_INSTANCE_ID).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansa::protocol::messages::join_group::response::JoinGroupResponseMember;
use sansa::protocol::messages::leave_group::request::MemberIdentity;
use sansa::protocol::messages::leave_group::response::MemberResponse;
use sansa::protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};
use sansa::protocol::{ErrorCode, ResponseBody, StrBytes};

use super::{
    coordinator_error, finish, ms, Group, Groups, MAX_SESSION_TIMEOUT, MIN_SESSION_TIMEOUT, NEW_MEMBER_JOIN_TIMEOUT,
};
use crate::fake_cluster::{Ctx, FakeCluster, Reply, Ticket};

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl ClassicState {
    /// The name Kafka reports in ListGroups and DescribeGroups.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
            ClassicState::Dead => "Dead",
        }
    }
}

/// A parked JoinGroup or SyncGroup.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    ticket: Ticket,
    version: i16,
}

#[derive(Debug)]
pub(crate) struct ClassicMember {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    rebalance_timeout: Duration,
    session_timeout: Duration,
    /// (name, metadata) in the member's order of preference.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    join: Option<Waiter>,
    sync: Option<Waiter>,
    /// Joined but never got a JoinGroup answer: its session runs even while it waits.
    is_new: bool,
    session_deadline: Option<Instant>,
}

impl ClassicMember {
    fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == name)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[derive(Debug)]
struct InitialDelay {
    delay: Duration,
    remaining: Duration,
    new_member_added: bool,
}

#[derive(Debug)]
pub(crate) struct ClassicGroup {
    pub(crate) state: ClassicState,
    previous_state: ClassicState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, ClassicMember>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their session deadline.
    pub(crate) pending: BTreeMap<String, Instant>,
    /// group.instance.id to member id.
    static_members: BTreeMap<String, String>,
    /// Members that got a JoinGroup answer and owe a SyncGroup.
    pending_sync: BTreeSet<String>,
    join_deadline: Option<Instant>,
    initial: Option<InitialDelay>,
    sync_deadline: Option<Instant>,
    initial_rebalance_delay: Duration,
}

/// What a JoinGroup asks, read from the request.
struct Join {
    member_id: String,
    /// The id a member without one gets.
    new_member_id: String,
    instance_id: Option<String>,
    client_id: String,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    waiter: Waiter,
}

type Outbox = Vec<(Ticket, ResponseBody)>;

fn s(v: &str) -> StrBytes {
    StrBytes::from(v)
}

/// A JoinGroup answer carrying only an error.
fn join_error(version: i16, code: ErrorCode, member_id: &str) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default().with_error_code(code).with_member_id(s(member_id));
    r.generation_id = -1;
    r.protocol_name = if version >= 7 { None } else { Some(StrBytes::new()) };
    r
}

/// A SyncGroup answer with an assignment.
fn synced(
    protocol_type: &Option<String>,
    protocol_name: &Option<String>,
    version: i16,
    assignment: Bytes,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default().with_assignment(assignment);
    if version >= 5 {
        r.protocol_type = protocol_type.as_deref().map(s);
        r.protocol_name = protocol_name.as_deref().map(s);
    }
    r
}

fn sync_error(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code)
}

impl ClassicGroup {
    pub(crate) fn new(initial_rebalance_delay: Duration) -> Self {
        ClassicGroup {
            state: ClassicState::Empty,
            previous_state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline: None,
            initial: None,
            sync_deadline: None,
            initial_rebalance_delay,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let members = self.members.values().filter_map(|m| m.session_deadline);
        let pending = self.pending.values().copied();
        members.chain(pending).chain(self.join_deadline).chain(self.sync_deadline).min()
    }

    fn transition(&mut self, to: ClassicState) {
        self.previous_state = self.state;
        self.state = to;
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default()
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join.is_some())
    }

    /// Kafka's rule: an empty group takes any non-empty protocol list; otherwise the type must
    /// match and one of the protocols must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == ClassicState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| self.members.values().all(|m| m.supports(n)))
    }

    /// Each member votes for its most preferred protocol among those all members support;
    /// the most votes win (a tie goes to the leader's preference).
    fn select_protocol(&self) -> Option<String> {
        let mut votes: Vec<(String, usize)> = Vec::new();
        for m in self.members.values() {
            let Some((name, _)) = m.protocols.iter().find(|(n, _)| self.members.values().all(|o| o.supports(n))) else {
                continue;
            };
            match votes.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c += 1,
                None => votes.push((name.clone(), 1)),
            }
        }
        let best = votes.iter().map(|(_, c)| *c).max()?;
        let tied: Vec<String> = votes.into_iter().filter(|(_, c)| *c == best).map(|(n, _)| n).collect();
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
        let by_leader = leader.and_then(|l| l.protocols.iter().find(|(n, _)| tied.contains(n)).map(|(n, _)| n.clone()));
        by_leader.or_else(|| tied.into_iter().next())
    }

    /// Validates a member id against the instance id it claims, like Kafka's `validateMember`.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(inst) = instance_id {
            match self.static_members.get(inst) {
                None => return Err(ErrorCode::UnknownMemberId),
                Some(id) if id != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        }
    }

    fn join_response(&self, member_id: &str, version: i16, with_members: bool, skip: bool) -> JoinGroupResponse {
        let mut r = JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_member_id(s(member_id))
            .with_leader(s(self.leader.as_deref().unwrap_or("")));
        r.protocol_name = match (&self.protocol_name, version >= 7) {
            (Some(p), _) => Some(s(p)),
            (None, true) => None,
            (None, false) => Some(StrBytes::new()),
        };
        if version >= 7 {
            r.protocol_type = self.protocol_type.as_deref().map(s);
        }
        r.skip_assignment = skip && version >= 9;
        if with_members {
            let protocol = self.protocol_name.clone().unwrap_or_default();
            r.members = self
                .members
                .values()
                .map(|m| {
                    let mut jm = JoinGroupResponseMember::default()
                        .with_member_id(s(&m.id))
                        .with_metadata(m.metadata(&protocol));
                    if version >= 5 {
                        jm.group_instance_id = m.instance_id.as_deref().map(s);
                    }
                    jm
                })
                .collect();
        }
        r
    }

    fn join(&mut self, now: Instant, a: Join, out: &mut Outbox) -> Option<JoinGroupResponse> {
        let v = a.waiter.version;
        if self.state == ClassicState::Dead {
            return Some(join_error(v, ErrorCode::CoordinatorNotAvailable, &a.member_id));
        }
        if !self.supports_protocols(&a.protocol_type, &a.protocols) {
            return Some(join_error(v, ErrorCode::InconsistentGroupProtocol, &a.member_id));
        }
        if a.member_id.is_empty() {
            if let Some(inst) = a.instance_id.clone() {
                if let Some(old) = self.static_members.get(&inst).cloned() {
                    return self.replace_static(now, &old, a, out);
                }
                let id = a.new_member_id.clone();
                self.add_member(now, id, a, out);
                return None;
            }
            if v >= 4 {
                self.pending.insert(a.new_member_id.clone(), now + a.session_timeout);
                return Some(join_error(v, ErrorCode::MemberIdRequired, &a.new_member_id));
            }
            let id = a.new_member_id.clone();
            self.add_member(now, id, a, out);
            return None;
        }
        if self.pending.contains_key(&a.member_id) {
            let id = a.member_id.clone();
            self.add_member(now, id, a, out);
            return None;
        }
        if let Err(code) = self.validate_member(&a.member_id, a.instance_id.as_deref()) {
            return Some(join_error(v, code, &a.member_id));
        }
        let id = a.member_id.clone();
        let same = self.members.get(&id).is_some_and(|m| m.protocols == a.protocols);
        match self.state {
            ClassicState::PreparingRebalance => self.update_member(now, a, out),
            ClassicState::CompletingRebalance if same => {
                let leader = self.leader.as_deref() == Some(id.as_str());
                return Some(self.join_response(&id, v, leader, false));
            }
            ClassicState::Stable if same && self.leader.as_deref() != Some(id.as_str()) => {
                return Some(self.join_response(&id, v, false, false));
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => self.update_member(now, a, out),
            ClassicState::Empty | ClassicState::Dead => {
                return Some(join_error(v, ErrorCode::UnknownMemberId, &id));
            }
        }
        None
    }

    fn add_member(&mut self, now: Instant, id: String, a: Join, out: &mut Outbox) {
        if self.state == ClassicState::PreparingRebalance && self.previous_state == ClassicState::Empty {
            if let Some(i) = &mut self.initial {
                i.new_member_added = true;
            }
        }
        if self.members.is_empty() {
            self.protocol_type = Some(a.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if let Some(inst) = &a.instance_id {
            self.static_members.insert(inst.clone(), id.clone());
        }
        self.pending.remove(&id);
        self.members.insert(
            id.clone(),
            ClassicMember {
                id,
                instance_id: a.instance_id,
                client_id: a.client_id,
                rebalance_timeout: a.rebalance_timeout,
                session_timeout: a.session_timeout,
                protocols: a.protocols,
                assignment: Bytes::new(),
                join: Some(a.waiter),
                sync: None,
                is_new: true,
                session_deadline: Some(now + NEW_MEMBER_JOIN_TIMEOUT),
            },
        );
        self.maybe_prepare_or_complete(now, out);
    }

    fn update_member(&mut self, now: Instant, a: Join, out: &mut Outbox) {
        if let Some(m) = self.members.get_mut(&a.member_id) {
            m.protocols = a.protocols;
            m.rebalance_timeout = a.rebalance_timeout;
            m.session_timeout = a.session_timeout;
            m.join = Some(a.waiter);
        }
        self.maybe_prepare_or_complete(now, out);
    }

    /// A static member rejoining without a member id takes over its old member.
    fn replace_static(&mut self, now: Instant, old_id: &str, a: Join, out: &mut Outbox) -> Option<JoinGroupResponse> {
        let Some(mut m) = self.members.remove(old_id) else {
            return Some(join_error(a.waiter.version, ErrorCode::UnknownMemberId, ""));
        };
        if let Some(w) = m.join.take() {
            out.push((w.ticket, join_error(w.version, ErrorCode::FencedInstanceId, old_id).into()));
        }
        if let Some(w) = m.sync.take() {
            out.push((w.ticket, sync_error(ErrorCode::FencedInstanceId).into()));
        }
        let new_id = a.new_member_id.clone();
        if let Some(inst) = &m.instance_id {
            self.static_members.insert(inst.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        m.id = new_id.clone();
        m.session_deadline = Some(now + m.session_timeout);
        m.protocols = a.protocols;
        m.rebalance_timeout = a.rebalance_timeout;
        m.session_timeout = a.session_timeout;
        m.client_id = a.client_id;
        m.join = Some(a.waiter);
        self.members.insert(new_id.clone(), m);
        match self.state {
            ClassicState::Stable => {
                if self.protocol_name.is_some() && self.select_protocol() == self.protocol_name {
                    // Nothing a rebalance would change: answer with the current generation.
                    // From v9 the leader gets the members and is told to skip the assignment.
                    let v = a.waiter.version;
                    if let Some(m) = self.members.get_mut(&new_id) {
                        m.join = None;
                    }
                    let leader = self.leader.as_deref() == Some(new_id.as_str());
                    return Some(self.join_response(&new_id, v, leader && v >= 9, leader));
                }
                self.maybe_prepare_or_complete(now, out);
            }
            ClassicState::CompletingRebalance => self.prepare_rebalance(now, out),
            _ => self.maybe_complete_join(now, out),
        }
        None
    }

    fn maybe_prepare_or_complete(&mut self, now: Instant, out: &mut Outbox) {
        match self.state {
            ClassicState::Empty | ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(now, out)
            }
            _ => self.maybe_complete_join(now, out),
        }
    }

    fn maybe_complete_join(&mut self, now: Instant, out: &mut Outbox) {
        if self.state == ClassicState::PreparingRebalance
            && self.previous_state != ClassicState::Empty
            && self.all_joined()
        {
            self.complete_join(now, out);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, out: &mut Outbox) {
        if self.state == ClassicState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync.take() {
                    out.push((w.ticket, sync_error(ErrorCode::RebalanceInProgress).into()));
                    m.session_deadline = Some(now + m.session_timeout);
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let initial = self.state == ClassicState::Empty;
        self.transition(ClassicState::PreparingRebalance);
        if initial {
            let delay = self.initial_rebalance_delay;
            if delay.is_zero() {
                // Kafka fires a zero-length timer here; answering at once looks the same.
                self.complete_join(now, out);
            } else {
                let remaining = self.rebalance_timeout().saturating_sub(delay);
                self.initial = Some(InitialDelay { delay, remaining, new_member_added: false });
                self.join_deadline = Some(now + delay);
            }
        } else if self.all_joined() {
            self.complete_join(now, out);
        } else {
            self.join_deadline = Some(now + self.rebalance_timeout());
        }
    }

    fn complete_join(&mut self, now: Instant, out: &mut Outbox) {
        self.join_deadline = None;
        self.initial = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        if self.state == ClassicState::Dead {
            return;
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined: wait another rebalance timeout for sessions to expire.
            self.join_deadline = Some(now + self.rebalance_timeout());
            return;
        }
        self.generation += 1;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(ClassicState::Empty);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(ClassicState::CompletingRebalance);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let leader = self.leader.as_deref() == Some(id.as_str());
            let waiter = self.members.get(&id).and_then(|m| m.join);
            if let Some(w) = waiter {
                out.push((w.ticket, self.join_response(&id, w.version, leader, false).into()));
            }
            if let Some(m) = self.members.get_mut(&id) {
                m.join = None;
                m.is_new = false;
                m.session_deadline = Some(now + m.session_timeout);
            }
            self.pending_sync.insert(id);
        }
        self.sync_deadline = Some(now + self.rebalance_timeout());
    }

    /// Keeps the leader if it rejoined, else picks the first member that did.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = &self.leader else { return false };
        if self.members.get(leader).is_some_and(|m| m.join.is_some()) {
            return true;
        }
        match self.members.values().find(|m| m.join.is_some()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    fn remove_member(&mut self, id: &str) -> Option<ClassicMember> {
        self.pending.remove(id);
        self.pending_sync.remove(id);
        let m = self.members.remove(id)?;
        if let Some(inst) = &m.instance_id {
            if self.static_members.get(inst).is_some_and(|x| x == id) {
                self.static_members.remove(inst);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(m)
    }

    /// Removes a member that left or failed, answering its parked requests, and moves the
    /// group on (a rebalance, or the end of the join phase).
    fn evict(&mut self, now: Instant, id: &str, out: &mut Outbox) {
        let Some(mut m) = self.remove_member(id) else { return };
        if let Some(w) = m.join.take() {
            out.push((w.ticket, join_error(w.version, ErrorCode::UnknownMemberId, "").into()));
        }
        if let Some(w) = m.sync.take() {
            out.push((w.ticket, sync_error(ErrorCode::UnknownMemberId).into()));
        }
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => self.maybe_prepare_or_complete(now, out),
            ClassicState::PreparingRebalance if self.all_joined() => self.complete_join(now, out),
            _ => {}
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        let expired: Vec<String> = self.pending.iter().filter(|(_, d)| **d <= now).map(|(k, _)| k.clone()).collect();
        for id in expired {
            self.pending.remove(&id);
            if self.state == ClassicState::PreparingRebalance && self.all_joined() {
                self.complete_join(now, out);
            }
        }
        let due: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in due {
            let Some(m) = self.members.get_mut(&id) else { continue };
            if !m.is_new && (m.join.is_some() || m.sync.is_some()) {
                // Waiting on the group counts as alive; the session restarts with the answer.
                m.session_deadline = None;
            } else {
                self.evict(now, &id, out);
            }
        }
        if self.join_deadline.is_some_and(|d| d <= now) {
            self.join_deadline = None;
            match &mut self.initial {
                Some(i) if i.new_member_added && !i.remaining.is_zero() => {
                    // New members keep arriving: wait a little longer, within the rebalance timeout.
                    let next = i.delay.min(i.remaining);
                    i.remaining = i.remaining.saturating_sub(i.delay);
                    i.new_member_added = false;
                    self.join_deadline = Some(now + next);
                }
                _ => self.complete_join(now, out),
            }
        }
        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            let late: Vec<String> = self.pending_sync.iter().cloned().collect();
            if matches!(self.state, ClassicState::CompletingRebalance | ClassicState::Stable) && !late.is_empty() {
                for id in &late {
                    self.remove_member(id);
                }
                self.prepare_rebalance(now, out);
            }
        }
    }

    fn sync(
        &mut self,
        now: Instant,
        req: &SyncGroupRequest,
        waiter: Waiter,
        out: &mut Outbox,
    ) -> Option<SyncGroupResponse> {
        if self.state == ClassicState::Dead {
            return Some(sync_error(ErrorCode::CoordinatorNotAvailable));
        }
        let member_id = req.member_id.as_str();
        if let Err(code) = self.validate_member(member_id, req.group_instance_id.as_deref()) {
            return Some(sync_error(code));
        }
        if req.generation_id != self.generation {
            return Some(sync_error(ErrorCode::IllegalGeneration));
        }
        let inconsistent = |asked: &Option<StrBytes>, ours: &Option<String>| match (asked, ours) {
            (Some(a), Some(o)) => a.as_str() != o,
            _ => false,
        };
        if inconsistent(&req.protocol_type, &self.protocol_type)
            || inconsistent(&req.protocol_name, &self.protocol_name)
        {
            return Some(sync_error(ErrorCode::InconsistentGroupProtocol));
        }
        match self.state {
            ClassicState::PreparingRebalance => Some(sync_error(ErrorCode::RebalanceInProgress)),
            ClassicState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync = Some(waiter);
                }
                self.pending_sync.remove(member_id);
                if self.pending_sync.is_empty() {
                    self.sync_deadline = None;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let given: BTreeMap<&str, &Bytes> =
                        req.assignments.iter().map(|a| (a.member_id.as_str(), &a.assignment)).collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.get(m.id.as_str()).map(|b| (*b).clone()).unwrap_or_default();
                    }
                    self.transition(ClassicState::Stable);
                    let (pt, pn) = (self.protocol_type.clone(), self.protocol_name.clone());
                    for m in self.members.values_mut() {
                        if let Some(w) = m.sync.take() {
                            let r = synced(&pt, &pn, w.version, m.assignment.clone());
                            out.push((w.ticket, r.into()));
                            m.session_deadline = Some(now + m.session_timeout);
                        }
                    }
                }
                None
            }
            ClassicState::Stable => {
                self.pending_sync.remove(member_id);
                let assignment = self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                Some(synced(&self.protocol_type, &self.protocol_name, waiter.version, assignment))
            }
            ClassicState::Empty | ClassicState::Dead => Some(sync_error(ErrorCode::UnknownMemberId)),
        }
    }

    /// Kafka's checks of a (non-transactional) OffsetCommit against a classic group.
    pub(crate) fn validate_offset_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if self.state == ClassicState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == ClassicState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ErrorCode::IllegalGeneration);
            }
        } else if self.state != ClassicState::Empty {
            return Err(ErrorCode::UnknownMemberId);
        }
        if self.state == ClassicState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    fn heartbeat(&mut self, now: Instant, req: &HeartbeatRequest) -> ErrorCode {
        if self.state == ClassicState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if let Err(code) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return code;
        }
        if req.generation_id != self.generation {
            return ErrorCode::IllegalGeneration;
        }
        let code = match self.state {
            ClassicState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            ClassicState::CompletingRebalance | ClassicState::Stable => ErrorCode::None,
            ClassicState::Empty | ClassicState::Dead => return ErrorCode::UnknownMemberId,
        };
        if let Some(m) = self.members.get_mut(req.member_id.as_str()) {
            m.session_deadline = Some(now + m.session_timeout);
        }
        code
    }

    fn leave(&mut self, now: Instant, who: &[MemberIdentity], out: &mut Outbox) -> Vec<MemberResponse> {
        let mut answers = Vec::new();
        let mut any = false;
        for w in who {
            let inst = w.group_instance_id.as_deref();
            let code = if w.member_id.is_empty() {
                match inst.and_then(|i| self.static_members.get(i).cloned()) {
                    Some(id) => {
                        self.leave_one(&id, out);
                        ErrorCode::None
                    }
                    None => ErrorCode::UnknownMemberId,
                }
            } else if self.pending.remove(w.member_id.as_str()).is_some() {
                ErrorCode::None
            } else {
                match self.validate_member(&w.member_id, inst) {
                    Ok(()) => {
                        self.leave_one(&w.member_id, out);
                        ErrorCode::None
                    }
                    Err(code) => code,
                }
            };
            any |= code == ErrorCode::None;
            answers.push(
                MemberResponse::default()
                    .with_member_id(w.member_id.clone())
                    .with_group_instance_id(w.group_instance_id.clone())
                    .with_error_code(code),
            );
        }
        if any {
            match self.state {
                ClassicState::Stable | ClassicState::CompletingRebalance => self.maybe_prepare_or_complete(now, out),
                ClassicState::PreparingRebalance => self.maybe_complete_join(now, out),
                _ => {}
            }
        }
        answers
    }

    fn leave_one(&mut self, id: &str, out: &mut Outbox) {
        if let Some(mut m) = self.remove_member(id) {
            if let Some(w) = m.join.take() {
                out.push((w.ticket, join_error(w.version, ErrorCode::UnknownMemberId, "").into()));
            }
            if let Some(w) = m.sync.take() {
                out.push((w.ticket, sync_error(ErrorCode::UnknownMemberId).into()));
            }
        }
    }
}

// ---- Handlers ----

pub(crate) fn join(cluster: &mut FakeCluster, ctx: Ctx, req: JoinGroupRequest) -> Reply {
    let v = ctx.version;
    let member_id = req.member_id.to_string();
    let fail = |code| Reply::Now(join_error(v, code, &member_id).into());
    if let Some(code) = coordinator_error(cluster, ctx.broker, &req.group_id) {
        return fail(code);
    }
    if req.group_id.is_empty() {
        return fail(ErrorCode::InvalidGroupId);
    }
    let session_timeout = ms(req.session_timeout_ms);
    if req.session_timeout_ms < 0 || !(MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&session_timeout) {
        return fail(ErrorCode::InvalidSessionTimeout);
    }
    // v0 has no rebalance timeout: the session timeout serves.
    let rebalance_timeout =
        if v == 0 || req.rebalance_timeout_ms < 0 { session_timeout } else { ms(req.rebalance_timeout_ms) };
    let delay = cluster.config.group_initial_rebalance_delay;
    let groups: &mut Groups = &mut cluster.groups;
    let gid = req.group_id.to_string();
    match groups.groups.get(&gid) {
        Some(Group::Consumer(c)) if !c.members.is_empty() => return fail(ErrorCode::InconsistentGroupProtocol),
        Some(Group::Classic(_)) => {}
        Some(Group::Consumer(_)) | None if member_id.is_empty() => {
            groups.groups.insert(gid.clone(), Group::Classic(ClassicGroup::new(delay)));
        }
        _ => return fail(ErrorCode::UnknownMemberId),
    }
    let instance_id = req.group_instance_id.as_deref().map(str::to_string);
    let client_id = groups.client_id.clone();
    let prefix = instance_id.clone().unwrap_or_else(|| client_id.clone());
    let new_member_id = if member_id.is_empty() { groups.new_member_id(&prefix) } else { String::new() };
    let a = Join {
        member_id,
        new_member_id,
        instance_id,
        client_id,
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        session_timeout,
        rebalance_timeout,
        waiter: Waiter { ticket: ctx.ticket, version: v },
    };
    let mut outbox = std::mem::take(&mut groups.outbox);
    let own = match groups.groups.get_mut(&gid) {
        Some(Group::Classic(g)) => g.join(ctx.now, a, &mut outbox),
        _ => Some(join_error(v, ErrorCode::UnknownMemberId, "")),
    };
    cluster.groups.outbox = outbox;
    finish(cluster, &ctx, own.map(Into::into))
}

pub(crate) fn sync(cluster: &mut FakeCluster, ctx: Ctx, req: SyncGroupRequest) -> Reply {
    if let Some(code) = coordinator_error(cluster, ctx.broker, &req.group_id) {
        return sync_error(code).into();
    }
    let waiter = Waiter { ticket: ctx.ticket, version: ctx.version };
    let groups = &mut cluster.groups;
    let mut outbox = std::mem::take(&mut groups.outbox);
    let own = match groups.groups.get_mut(req.group_id.as_str()) {
        Some(Group::Classic(g)) if !g.members.is_empty() => g.sync(ctx.now, &req, waiter, &mut outbox),
        _ => Some(sync_error(ErrorCode::UnknownMemberId)),
    };
    cluster.groups.outbox = outbox;
    finish(cluster, &ctx, own.map(Into::into))
}

pub(crate) fn heartbeat(cluster: &mut FakeCluster, ctx: Ctx, req: HeartbeatRequest) -> HeartbeatResponse {
    if let Some(code) = coordinator_error(cluster, ctx.broker, &req.group_id) {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let code = match cluster.groups.groups.get_mut(req.group_id.as_str()) {
        Some(Group::Classic(g)) => g.heartbeat(ctx.now, &req),
        _ => ErrorCode::UnknownMemberId,
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub(crate) fn leave(cluster: &mut FakeCluster, ctx: Ctx, req: LeaveGroupRequest) -> Reply {
    let v = ctx.version;
    if let Some(code) = coordinator_error(cluster, ctx.broker, &req.group_id) {
        return LeaveGroupResponse::default().with_error_code(code).into();
    }
    let who = if v >= 3 { req.members } else { vec![MemberIdentity::default().with_member_id(req.member_id)] };
    let groups = &mut cluster.groups;
    let mut outbox = std::mem::take(&mut groups.outbox);
    let answer = match groups.groups.get_mut(req.group_id.as_str()) {
        Some(Group::Classic(g)) if g.state == ClassicState::Dead => {
            LeaveGroupResponse::default().with_error_code(ErrorCode::CoordinatorNotAvailable)
        }
        Some(Group::Classic(g)) => {
            let members = g.leave(ctx.now, &who, &mut outbox);
            if v >= 3 {
                LeaveGroupResponse::default().with_members(members)
            } else {
                let code = members.first().map_or(ErrorCode::None, |m| m.error_code);
                LeaveGroupResponse::default().with_error_code(code)
            }
        }
        _ => LeaveGroupResponse::default().with_error_code(ErrorCode::UnknownMemberId),
    };
    cluster.groups.outbox = outbox;
    finish(cluster, &ctx, Some(answer.into()))
}
