//! Group coordinator tests: real encoded frames on several connections, a virtual clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_response, encode_request, FrameDecoder};
use sansa::protocol::messages::join_group::request::JoinGroupRequestProtocol;
use sansa::protocol::messages::leave_group::request::MemberIdentity;
use sansa::protocol::messages::sync_group::request::SyncGroupRequestAssignment;
use sansa::protocol::messages::*;
use sansa::protocol::{ApiKey, ErrorCode, GroupId, RequestBody, ResponseBody, StrBytes, TopicName};

use super::find_coordinator::coordinator_for;
use super::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput, Fault};

const GROUP: &str = "g1";

/// A cluster, a virtual clock and client connections that remember what they asked.
struct Net {
    c: FakeCluster,
    now: Instant,
    next_conn: u64,
    asked: BTreeMap<FakeConnId, VecDeque<(ApiKey, i16)>>,
    inbox: BTreeMap<FakeConnId, BytesMut>,
    /// Protocol preferences of members, by id, for rejoins.
    prefs: BTreeMap<String, &'static [&'static str]>,
}

fn prefs(n: &Net, member: &str) -> &'static [&'static str] {
    n.prefs[member]
}

impl Net {
    fn new(delay: Duration) -> Net {
        let c = FakeCluster::new(FakeClusterConfig {
            brokers: 3,
            default_partitions: 1,
            auto_create_topics: false,
            group_initial_rebalance_delay: delay,
            ..FakeClusterConfig::default()
        });
        Net {
            c,
            now: Instant::now(),
            next_conn: 1,
            asked: BTreeMap::new(),
            inbox: BTreeMap::new(),
            prefs: BTreeMap::new(),
        }
    }

    fn coordinator(&self) -> i32 {
        coordinator_for(&self.c, GROUP).unwrap()
    }

    fn connect(&mut self, broker: i32) -> FakeConnId {
        let conn = FakeConnId(self.next_conn);
        self.next_conn += 1;
        self.c.handle_connect(self.now, broker, conn).unwrap();
        conn
    }

    /// A connection to the coordinator of `GROUP`.
    fn member_conn(&mut self) -> FakeConnId {
        let b = self.coordinator();
        self.connect(b)
    }

    fn send(&mut self, conn: FakeConnId, version: i16, body: impl Into<RequestBody>) {
        let body = body.into();
        self.asked.entry(conn).or_default().push_back((body.api_key(), version));
        let mut buf = BytesMut::new();
        encode_request(&mut buf, 1, Some("client-a"), version, &body).unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        self.c.handle_frame(self.now, conn, frame).unwrap();
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.c.poll_output() {
            match o {
                FakeOutput::Send { conn, bytes } => self.inbox.entry(conn).or_default().extend_from_slice(&bytes),
                FakeOutput::Close { conn } => {
                    self.inbox.remove(&conn);
                }
            }
        }
    }

    /// The next answer on `conn`, if one came.
    fn recv(&mut self, conn: FakeConnId) -> Option<ResponseBody> {
        self.drain();
        let buf = self.inbox.get_mut(&conn)?;
        let frame = FrameDecoder::default().decode(buf).unwrap()?;
        let (key, version) = self.asked.get_mut(&conn).unwrap().pop_front().unwrap();
        Some(decode_response(frame, key, version).unwrap().1)
    }

    fn call(&mut self, conn: FakeConnId, version: i16, body: impl Into<RequestBody>) -> ResponseBody {
        self.send(conn, version, body);
        self.recv(conn).expect("an answer at once")
    }

    /// Moves the clock to `d` later, firing every timer due on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.c.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.c.handle_timeout(self.now);
        }
        self.now = end;
        self.c.handle_timeout(self.now);
        self.drain();
    }
}

fn protocols(names: &[&str]) -> Vec<JoinGroupRequestProtocol> {
    names
        .iter()
        .map(|n| {
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from(*n))
                .with_metadata(Bytes::from(format!("meta-{n}")))
        })
        .collect()
}

fn join_req(member: &str, instance: Option<&str>, names: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId::from(GROUP))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from(member))
        .with_group_instance_id(instance.map(StrBytes::from))
        .with_protocol_type(StrBytes::from("consumer"))
        .with_protocols(protocols(names))
}

fn join_resp(b: ResponseBody) -> JoinGroupResponse {
    match b {
        ResponseBody::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

fn sync_resp(b: ResponseBody) -> SyncGroupResponse {
    match b {
        ResponseBody::SyncGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

fn sync_req(member: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId::from(GROUP))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from(*m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        )
}

fn heartbeat(n: &mut Net, conn: FakeConnId, member: &str, generation: i32) -> ErrorCode {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId::from(GROUP))
        .with_member_id(StrBytes::from(member))
        .with_generation_id(generation);
    match n.call(conn, 4, req) {
        ResponseBody::Heartbeat(r) => r.error_code,
        other => panic!("{other:?}"),
    }
}

/// A v9 join: MEMBER_ID_REQUIRED first, then the real join, which may wait.
fn join_v9(n: &mut Net, conn: FakeConnId, names: &[&str]) -> String {
    let r = join_resp(n.call(conn, 9, join_req("", None, names)));
    assert_eq!(r.error_code, ErrorCode::MemberIdRequired);
    assert!(r.member_id.starts_with("client-a-"), "{:?}", r.member_id);
    n.send(conn, 9, join_req(&r.member_id, None, names));
    r.member_id.to_string()
}

/// Two members in a stable generation: (net, conns, member ids, generation), leader first.
fn stable_pair() -> (Net, [FakeConnId; 2], [String; 2], i32) {
    let mut n = Net::new(Duration::from_secs(3));
    let (c1, c2) = (n.member_conn(), n.member_conn());
    let m1 = join_v9(&mut n, c1, &["range", "roundrobin"]);
    let m2 = join_v9(&mut n, c2, &["roundrobin", "range"]);
    n.prefs.insert(m1.clone(), &["range", "roundrobin"]);
    n.prefs.insert(m2.clone(), &["roundrobin", "range"]);
    assert!(n.recv(c1).is_none() && n.recv(c2).is_none(), "the initial delay holds the join");
    // At 3 s a member has arrived since the delay began, so Kafka waits one more delay.
    n.advance(Duration::from_secs(3));
    assert!(n.recv(c1).is_none());
    n.advance(Duration::from_secs(3));
    let (r1, r2) = (join_resp(n.recv(c1).unwrap()), join_resp(n.recv(c2).unwrap()));
    assert_eq!((r1.error_code, r2.error_code), (ErrorCode::None, ErrorCode::None));
    assert_eq!(r1.generation_id, 1);
    assert_eq!(r1.generation_id, r2.generation_id);
    assert_eq!(r1.leader, r2.leader);
    let (leader, follower, lc, fc, lr) =
        if r1.leader.as_str() == m1 { (m1, m2, c1, c2, r1) } else { (m2, m1, c2, c1, r2) };
    assert_eq!(lr.members.len(), 2);
    let preferred = prefs(&n, &leader)[0];
    assert_eq!(lr.protocol_name.as_deref(), Some(preferred), "a tie goes to the leader's preference");
    let gen = lr.generation_id;
    n.send(fc, 5, sync_req(&follower, gen, &[]));
    assert!(n.recv(fc).is_none(), "the follower waits for the leader");
    n.send(lc, 5, sync_req(&leader, gen, &[(&leader, "A"), (&follower, "B")]));
    let (sl, sf) = (sync_resp(n.recv(lc).unwrap()), sync_resp(n.recv(fc).unwrap()));
    assert_eq!((sl.error_code, sf.error_code), (ErrorCode::None, ErrorCode::None));
    assert_eq!((&sl.assignment[..], &sf.assignment[..]), (&b"A"[..], &b"B"[..]));
    assert_eq!(sl.protocol_name.as_deref(), Some(preferred));
    (n, [lc, fc], [leader, follower], gen)
}

#[test]
fn two_members_join_one_generation_and_sync() {
    let (mut n, [lc, fc], [leader, follower], gen) = stable_pair();
    assert_eq!(heartbeat(&mut n, lc, &leader, gen), ErrorCode::None);
    assert_eq!(heartbeat(&mut n, fc, &follower, gen), ErrorCode::None);
    // A follower rejoining with the same metadata gets the current generation back.
    let r = join_resp(n.call(fc, 9, join_req(&follower, None, prefs(&n, &follower))));
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (ErrorCode::None, gen, 0));
}

#[test]
fn first_join_without_delay_answers_at_once_and_v3_needs_no_member_id() {
    let mut n = Net::new(Duration::ZERO);
    let c = n.member_conn();
    let r = join_resp(n.call(c, 3, join_req("", None, &["range"])));
    assert_eq!((r.error_code, r.generation_id), (ErrorCode::None, 1));
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 1);
    // Protocol type mismatch and no common protocol.
    let c2 = n.member_conn();
    let other = join_req("", None, &["range"]).with_protocol_type(StrBytes::from("connect"));
    assert_eq!(join_resp(n.call(c2, 3, other)).error_code, ErrorCode::InconsistentGroupProtocol);
    assert_eq!(
        join_resp(n.call(c2, 3, join_req("", None, &["sticky"]))).error_code,
        ErrorCode::InconsistentGroupProtocol
    );
    // Session timeout out of bounds.
    let bad = join_req("", None, &["range"]).with_session_timeout_ms(1_000);
    assert_eq!(join_resp(n.call(c2, 9, bad)).error_code, ErrorCode::InvalidSessionTimeout);
}

#[test]
fn session_expiry_triggers_a_rebalance_without_the_dead_member() {
    let (mut n, [lc, fc], [leader, follower], gen) = stable_pair();
    // Only the leader heartbeats; the follower's 10 s session runs out.
    for _ in 0..4 {
        n.advance(Duration::from_secs(3));
        let code = heartbeat(&mut n, lc, &leader, gen);
        if code == ErrorCode::RebalanceInProgress {
            break;
        }
        assert_eq!(code, ErrorCode::None);
    }
    assert_eq!(heartbeat(&mut n, lc, &leader, gen), ErrorCode::RebalanceInProgress);
    assert_eq!(heartbeat(&mut n, fc, &follower, gen), ErrorCode::UnknownMemberId);
    // The leader rejoins: it is alone, so the join completes at once.
    let r = join_resp(n.call(lc, 9, join_req(&leader, None, &["range"])));
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (ErrorCode::None, gen + 1, 1));
    assert_eq!(heartbeat(&mut n, lc, &leader, gen), ErrorCode::IllegalGeneration);
    assert_eq!(heartbeat(&mut n, lc, &leader, gen + 1), ErrorCode::None);
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let (mut n, [lc, fc], [leader, follower], gen) = stable_pair();
    // The leader rejoins (forcing a rebalance); the follower keeps heartbeating but never rejoins.
    n.send(lc, 9, join_req(&leader, None, &["range"]));
    assert!(n.recv(lc).is_none());
    assert_eq!(heartbeat(&mut n, fc, &follower, gen), ErrorCode::RebalanceInProgress);
    let sync = sync_req(&follower, gen, &[]);
    assert_eq!(sync_resp(n.call(fc, 5, sync)).error_code, ErrorCode::RebalanceInProgress);
    n.advance(Duration::from_secs(9));
    assert_eq!(heartbeat(&mut n, fc, &follower, gen), ErrorCode::RebalanceInProgress);
    n.advance(Duration::from_secs(22));
    let r = join_resp(n.recv(lc).expect("the join completes at the rebalance timeout"));
    assert_eq!((r.generation_id, r.members.len()), (gen + 1, 1));
    assert_eq!(heartbeat(&mut n, fc, &follower, gen), ErrorCode::UnknownMemberId);
}

#[test]
fn heartbeat_errors() {
    let (mut n, [lc, _], [leader, _], gen) = stable_pair();
    assert_eq!(heartbeat(&mut n, lc, "nobody", gen), ErrorCode::UnknownMemberId);
    assert_eq!(heartbeat(&mut n, lc, &leader, gen + 7), ErrorCode::IllegalGeneration);
    let req = HeartbeatRequest::default().with_group_id(GroupId::from("unknown")).with_member_id(StrBytes::from("x"));
    let b = coordinator_for(&n.c, "unknown").unwrap();
    let conn = n.connect(b);
    let ResponseBody::Heartbeat(r) = n.call(conn, 4, req) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::UnknownMemberId);
}

#[test]
fn leave_group_rebalances_and_batch_leave_by_instance_id() {
    let (mut n, [lc, fc], [leader, follower], gen) = stable_pair();
    let req = LeaveGroupRequest::default()
        .with_group_id(GroupId::from(GROUP))
        .with_member_id(StrBytes::from(follower.as_str()));
    let ResponseBody::LeaveGroup(r) = n.call(fc, 1, req) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::None);
    assert_eq!(heartbeat(&mut n, lc, &leader, gen), ErrorCode::RebalanceInProgress);
    let r = join_resp(n.call(lc, 9, join_req(&leader, None, &["range"])));
    assert_eq!((r.generation_id, r.members.len()), (gen + 1, 1));

    // v3+: a batch, by member id and by instance id, with per-member errors.
    let s = n.member_conn();
    n.send(s, 9, join_req("", Some("inst-1"), &["range"]));
    let req = LeaveGroupRequest::default().with_group_id(GroupId::from(GROUP)).with_members(vec![
        MemberIdentity::default().with_group_instance_id(Some(StrBytes::from("inst-1"))),
        MemberIdentity::default().with_member_id(StrBytes::from("ghost")),
        MemberIdentity::default().with_member_id(StrBytes::from(leader.as_str())),
    ]);
    let ResponseBody::LeaveGroup(r) = n.call(lc, 5, req) else { panic!() };
    let codes: Vec<ErrorCode> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![ErrorCode::None, ErrorCode::UnknownMemberId, ErrorCode::None]);
    // The static member's parked join is answered with UNKNOWN_MEMBER_ID; the group is empty.
    assert_eq!(join_resp(n.recv(s).unwrap()).error_code, ErrorCode::UnknownMemberId);
    assert_eq!(heartbeat(&mut n, lc, &leader, gen + 1), ErrorCode::UnknownMemberId);
}

#[test]
fn static_member_rejoins_without_rebalance_and_old_id_is_fenced() {
    let mut n = Net::new(Duration::ZERO);
    let (c1, c2) = (n.member_conn(), n.member_conn());
    let r1 = join_resp(n.call(c1, 9, join_req("", Some("i1"), &["range"])));
    assert_eq!((r1.error_code, r1.generation_id), (ErrorCode::None, 1));
    assert!(r1.member_id.starts_with("i1-"));
    let old = r1.member_id.to_string();
    let s = sync_resp(n.call(c1, 5, sync_req(&old, 1, &[(&old, "P0")])));
    assert_eq!(&s.assignment[..], b"P0");

    // The same instance restarts: new member id, same generation, no rebalance, and (v9) the
    // leader is told to skip the assignment.
    let r2 = join_resp(n.call(c2, 9, join_req("", Some("i1"), &["range"])));
    assert_eq!((r2.error_code, r2.generation_id), (ErrorCode::None, 1));
    assert_ne!(r2.member_id.as_str(), old);
    assert!(r2.skip_assignment);
    let new = r2.member_id.to_string();
    let s = sync_resp(n.call(c2, 5, sync_req(&new, 1, &[])));
    assert_eq!((s.error_code, &s.assignment[..]), (ErrorCode::None, &b"P0"[..]));
    // The old incarnation is fenced.
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId::from(GROUP))
        .with_member_id(StrBytes::from(old.as_str()))
        .with_group_instance_id(Some(StrBytes::from("i1")))
        .with_generation_id(1);
    let ResponseBody::Heartbeat(r) = n.call(c1, 4, hb) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::FencedInstanceId);
    let r = join_resp(n.call(c1, 9, join_req(&old, Some("i1"), &["range"])));
    assert_eq!(r.error_code, ErrorCode::FencedInstanceId);
    assert_eq!(heartbeat(&mut n, c2, &new, 1), ErrorCode::None);
}

#[test]
fn wrong_broker_gets_not_coordinator_and_injected_faults_apply() {
    let mut n = Net::new(Duration::ZERO);
    let coord = n.coordinator();
    let other = n.c.live_broker_ids().into_iter().find(|b| *b != coord).unwrap();
    let c = n.connect(other);
    assert_eq!(join_resp(n.call(c, 9, join_req("", None, &["range"]))).error_code, ErrorCode::NotCoordinator);
    assert_eq!(heartbeat(&mut n, c, "m", 1), ErrorCode::NotCoordinator);

    let c = n.member_conn();
    n.c.inject(Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::JoinGroup));
    assert_eq!(
        join_resp(n.call(c, 9, join_req("", None, &["range"]))).error_code,
        ErrorCode::CoordinatorLoadInProgress
    );
    assert_eq!(join_resp(n.call(c, 9, join_req("", None, &["range"]))).error_code, ErrorCode::MemberIdRequired);

    // Every broker down but one that is not... stop all: no coordinator.
    for b in n.c.broker_ids() {
        if b != other {
            n.c.stop_broker(b);
        }
    }
    let c = n.connect(other);
    let code = join_resp(n.call(c, 9, join_req("", None, &["range"]))).error_code;
    assert_eq!(code, ErrorCode::MemberIdRequired, "the coordinator moved to the last live broker");
}

fn commit_req(member: &str, generation: i32, topic: &str, partition: i32, offset: i64) -> OffsetCommitRequest {
    use sansa::protocol::messages::offset_commit::request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    OffsetCommitRequest::default()
        .with_group_id(GroupId::from(GROUP))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from(member))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName::from(topic)).with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(3)
                .with_committed_metadata(Some(StrBytes::from("meta"))),
        ])])
}

fn commit(n: &mut Net, conn: FakeConnId, version: i16, req: OffsetCommitRequest) -> ErrorCode {
    match n.call(conn, version, req) {
        ResponseBody::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn offsets_commit_and_fetch_with_generation_checks() {
    let (mut n, [lc, fc], [leader, follower], gen) = stable_pair();
    n.c.create_topic("t", 2, 1);
    assert_eq!(commit(&mut n, lc, 8, commit_req(&leader, gen, "t", 0, 42)), ErrorCode::None);
    assert_eq!(commit(&mut n, fc, 8, commit_req(&follower, gen + 1, "t", 1, 7)), ErrorCode::IllegalGeneration);
    assert_eq!(commit(&mut n, fc, 8, commit_req("ghost", gen, "t", 1, 7)), ErrorCode::UnknownMemberId);
    assert_eq!(commit(&mut n, fc, 8, commit_req("", -1, "t", 1, 7)), ErrorCode::UnknownMemberId, "group not empty");
    assert_eq!(commit(&mut n, fc, 8, commit_req(&follower, gen, "nope", 0, 7)), ErrorCode::UnknownTopicOrPartition);
    assert_eq!(commit(&mut n, fc, 8, commit_req(&follower, gen, "t", 9, 7)), ErrorCode::UnknownTopicOrPartition);
    n.c.inject(Fault::error(ErrorCode::UnstableOffsetCommit).on_api(ApiKey::OffsetCommit).on_partition("t", 1));
    assert_eq!(commit(&mut n, fc, 8, commit_req(&follower, gen, "t", 1, 7)), ErrorCode::UnstableOffsetCommit);
    assert_eq!(commit(&mut n, fc, 2, commit_req(&follower, gen, "t", 1, 7)), ErrorCode::None);

    // v7: one group, topics by name; null topics means all.
    use sansa::protocol::messages::offset_fetch::request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic};
    let req = OffsetFetchRequest::default().with_group_id(GroupId::from(GROUP)).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName::from("t")).with_partition_indexes(vec![0, 1]),
        OffsetFetchRequestTopic::default().with_name(TopicName::from("u")).with_partition_indexes(vec![0]),
    ]));
    let ResponseBody::OffsetFetch(r) = n.call(lc, 7, req) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::None);
    let p0 = &r.topics[0].partitions[0];
    assert_eq!((p0.committed_offset, p0.committed_leader_epoch, p0.metadata.as_deref()), (42, 3, Some("meta")));
    assert_eq!(r.topics[0].partitions[1].committed_offset, 7);
    assert_eq!(r.topics[0].partitions[1].committed_leader_epoch, -1, "v2 carries no leader epoch");
    assert_eq!(r.topics[1].partitions[0].committed_offset, -1);

    // v8: a batch of groups, including an unknown one; an injected per-partition error.
    n.c.inject(Fault::error(ErrorCode::UnstableOffsetCommit).on_api(ApiKey::OffsetFetch).on_partition("t", 1));
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId::from(GROUP)).with_topics(None),
        OffsetFetchRequestGroup::default().with_group_id(GroupId::from("elsewhere")).with_topics(None),
    ]);
    let ResponseBody::OffsetFetch(r) = n.call(lc, 8, req) else { panic!() };
    let all: Vec<(i32, i64, ErrorCode)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset, p.error_code))
        .collect();
    assert_eq!(all, vec![(0, 42, ErrorCode::None), (1, -1, ErrorCode::UnstableOffsetCommit)]);
    let other = &r.groups[1];
    let expect = if coordinator_for(&n.c, "elsewhere") == Some(n.coordinator()) {
        ErrorCode::None
    } else {
        ErrorCode::NotCoordinator
    };
    assert_eq!(other.error_code, expect);

    // Once everybody left, a simple commit (generation -1) is accepted; unknown groups get one.
    for (c, m) in [(lc, &leader), (fc, &follower)] {
        let req =
            LeaveGroupRequest::default().with_group_id(GroupId::from(GROUP)).with_member_id(StrBytes::from(m.as_str()));
        n.call(c, 1, req);
    }
    assert_eq!(commit(&mut n, fc, 8, commit_req("", -1, "t", 1, 9)), ErrorCode::None);
    assert_eq!(commit(&mut n, fc, 9, commit_req("x", 3, "t", 1, 9).with_group_id(GroupId::from("zz"))), {
        if coordinator_for(&n.c, "zz") == Some(n.coordinator()) {
            ErrorCode::GroupIdNotFound
        } else {
            ErrorCode::NotCoordinator
        }
    });
}

#[test]
fn list_and_describe_groups() {
    let (mut n, [lc, _], [leader, follower], _) = stable_pair();
    let ResponseBody::ListGroups(r) = n.call(lc, 5, ListGroupsRequest::default()) else { panic!() };
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert_eq!((g.group_id.as_str(), g.protocol_type.as_str()), (GROUP, "consumer"));
    assert_eq!((g.group_state.as_str(), g.group_type.as_str()), ("Stable", "classic"));
    let req = ListGroupsRequest::default().with_states_filter(vec![StrBytes::from("empty")]);
    let ResponseBody::ListGroups(r) = n.call(lc, 4, req) else { panic!() };
    assert!(r.groups.is_empty());
    let req = ListGroupsRequest::default().with_types_filter(vec![StrBytes::from("Consumer")]);
    let ResponseBody::ListGroups(r) = n.call(lc, 5, req) else { panic!() };
    assert!(r.groups.is_empty());
    // Another broker lists nothing.
    let other = n.c.live_broker_ids().into_iter().find(|b| *b != n.coordinator()).unwrap();
    let oc = n.connect(other);
    let ResponseBody::ListGroups(r) = n.call(oc, 5, ListGroupsRequest::default()) else { panic!() };
    assert!(r.groups.is_empty());

    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId::from(GROUP), GroupId::from("ghost")]);
    let ResponseBody::DescribeGroups(r) = n.call(lc, 6, req) else { panic!() };
    let g = &r.groups[0];
    assert_eq!(
        (g.error_code, g.group_state.as_str(), g.protocol_type.as_str()),
        (ErrorCode::None, "Stable", "consumer")
    );
    assert_eq!(g.protocol_data.as_str(), prefs(&n, &leader)[0]);
    let ids: Vec<&str> = g.members.iter().map(|m| m.member_id.as_str()).collect();
    assert!(ids.contains(&leader.as_str()) && ids.contains(&follower.as_str()));
    let lm = g.members.iter().find(|m| m.member_id.as_str() == leader).unwrap();
    assert_eq!((&lm.member_assignment[..], lm.client_id.as_str()), (&b"A"[..], "client-a"));
    assert_eq!(lm.member_metadata, Bytes::from(format!("meta-{}", prefs(&n, &leader)[0])));
    let ghost = &r.groups[1];
    if coordinator_for(&n.c, "ghost") == Some(n.coordinator()) {
        assert_eq!((ghost.error_code, ghost.group_state.as_str()), (ErrorCode::GroupIdNotFound, "Dead"));
    } else {
        assert_eq!(ghost.error_code, ErrorCode::NotCoordinator);
    }

    // A rebalance shows in the state, without metadata.
    n.send(lc, 9, join_req(&leader, None, prefs(&n, &leader)));
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId::from(GROUP)]);
    let mc = n.member_conn();
    let ResponseBody::DescribeGroups(r) = n.call(mc, 5, req) else { panic!() };
    assert_eq!(r.groups[0].group_state.as_str(), "PreparingRebalance");
    assert!(r.groups[0].members.iter().all(|m| m.member_metadata.is_empty()));
}

fn cgh(
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
    owned: Option<Vec<(sansa::protocol::Uuid, Vec<i32>)>>,
) -> ConsumerGroupHeartbeatRequest {
    use sansa::protocol::messages::consumer_group_heartbeat::request::TopicPartitions;
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId::from(GROUP))
        .with_member_id(StrBytes::from(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 20_000 } else { -1 })
        .with_subscribed_topic_names(topics.map(|t| t.iter().map(|n| TopicName::from(*n)).collect()))
        .with_topic_partitions(owned.map(|o| {
            o.into_iter().map(|(id, ps)| TopicPartitions::default().with_topic_id(id).with_partitions(ps)).collect()
        }))
}

fn cg(n: &mut Net, conn: FakeConnId, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    match n.call(conn, 1, req) {
        ResponseBody::ConsumerGroupHeartbeat(r) => r,
        other => panic!("{other:?}"),
    }
}

fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    r.assignment.as_ref().map(|a| a.topic_partitions.iter().flat_map(|t| t.partitions.iter().copied()).collect())
}

#[test]
fn consumer_group_heartbeat_join_assign_revoke_leave_and_fence() {
    let mut n = Net::new(Duration::ZERO);
    let t = n.c.create_topic("t", 4, 1);
    let (c1, c2) = (n.member_conn(), n.member_conn());
    let r = cg(&mut n, c1, cgh("m1", 0, Some(&["t"]), Some(vec![])));
    assert_eq!(r.error_code, ErrorCode::None, "{:?}", r.error_message);
    assert_eq!((r.member_epoch, r.heartbeat_interval_ms), (1, 5_000));
    assert_eq!(assigned(&r), Some(vec![0, 1, 2, 3]));

    // A second member: epoch 2; it must wait for m1 to revoke what moves to it.
    let r = cg(&mut n, c2, cgh("m2", 0, Some(&["t"]), Some(vec![])));
    assert_eq!((r.member_epoch, assigned(&r)), (2, Some(vec![])));
    let r = cg(&mut n, c1, cgh("m1", 1, None, None));
    assert_eq!((r.member_epoch, assigned(&r)), (1, Some(vec![0, 2])), "revoke 1 and 3 first");
    let r = cg(&mut n, c1, cgh("m1", 1, None, Some(vec![(t, vec![0, 2])])));
    assert_eq!((r.member_epoch, assigned(&r)), (2, None), "revoked: epoch 2, nothing new to tell");
    let r = cg(&mut n, c2, cgh("m2", 2, None, None));
    assert_eq!((r.member_epoch, assigned(&r)), (2, Some(vec![1, 3])));
    let state = |n: &mut Net| {
        let mc = n.member_conn();
        let ResponseBody::ListGroups(r) = n.call(mc, 5, ListGroupsRequest::default()) else { panic!() };
        (r.groups[0].group_state.to_string(), r.groups[0].group_type.to_string())
    };
    assert_eq!(state(&mut n), ("Stable".to_string(), "consumer".to_string()));

    // Fencing and unknown members.
    assert_eq!(cg(&mut n, c1, cgh("m1", 5, None, None)).error_code, ErrorCode::FencedMemberEpoch);
    assert_eq!(cg(&mut n, c1, cgh("m9", 2, None, None)).error_code, ErrorCode::UnknownMemberId);
    assert_eq!(cg(&mut n, c1, cgh("", 0, Some(&["t"]), Some(vec![]))).error_code, ErrorCode::InvalidRequest);

    // Commits need the member's current epoch.
    n.c.create_topic("t2", 1, 1);
    assert_eq!(commit(&mut n, c1, 9, commit_req("m1", 1, "t", 0, 5)), ErrorCode::StaleMemberEpoch);
    assert_eq!(commit(&mut n, c1, 9, commit_req("m1", 2, "t", 0, 5)), ErrorCode::None);

    // m2 leaves: m1 gets everything at epoch 3.
    let r = cg(&mut n, c2, cgh("m2", -1, None, None));
    assert_eq!((r.error_code, r.member_epoch), (ErrorCode::None, -1));
    let r = cg(&mut n, c1, cgh("m1", 2, None, None));
    assert_eq!((r.member_epoch, assigned(&r)), (3, Some(vec![0, 1, 2, 3])));

    // m1 stops heartbeating: after the session timeout the group is empty.
    n.advance(Duration::from_secs(46));
    assert_eq!(cg(&mut n, c1, cgh("m1", 3, None, None)).error_code, ErrorCode::UnknownMemberId);
    assert_eq!(state(&mut n).0, "Empty");
    // A classic join on a non-empty consumer group is refused.
    cg(&mut n, c1, cgh("m3", 0, Some(&["t"]), Some(vec![])));
    assert_eq!(
        join_resp(n.call(c2, 9, join_req("", None, &["range"]))).error_code,
        ErrorCode::InconsistentGroupProtocol
    );
}

#[test]
fn consumer_group_static_member_leaves_and_returns_with_its_partitions() {
    let mut n = Net::new(Duration::ZERO);
    n.c.create_topic("t", 2, 1);
    let c = n.member_conn();
    let join = |m: &str| cgh(m, 0, Some(&["t"]), Some(vec![])).with_instance_id(Some(StrBytes::from("i1")));
    let r = cg(&mut n, c, join("a"));
    assert_eq!((r.member_epoch, assigned(&r)), (1, Some(vec![0, 1])));
    // Still in use: another incarnation cannot join.
    assert_eq!(cg(&mut n, c, join("b")).error_code, ErrorCode::UnreleasedInstanceId);
    let r = cg(&mut n, c, cgh("a", -2, None, None).with_instance_id(Some(StrBytes::from("i1"))));
    assert_eq!(r.member_epoch, -2);
    let r = cg(&mut n, c, join("b"));
    assert_eq!((r.error_code, r.member_epoch, assigned(&r)), (ErrorCode::None, 1, Some(vec![0, 1])), "no rebalance");
    let r = cg(&mut n, c, cgh("a", 1, None, None).with_instance_id(Some(StrBytes::from("i1"))));
    assert_eq!(r.error_code, ErrorCode::FencedInstanceId);
}
