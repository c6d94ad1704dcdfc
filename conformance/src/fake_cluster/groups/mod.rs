//! The group coordinator: classic groups (JoinGroup, SyncGroup, Heartbeat, LeaveGroup),
//! consumer groups (KIP-848 ConsumerGroupHeartbeat), committed offsets (OffsetCommit,
//! OffsetFetch) and the listing APIs (ListGroups, DescribeGroups).
//!
//! Every group lives in one [`Groups`] table, whatever broker coordinates it; a request
//! reaching a broker that [`coordinator_for`] does not name gets NOT_COORDINATOR, and
//! COORDINATOR_NOT_AVAILABLE when every broker is down. The state survives a coordinator
//! move, as if the new coordinator had loaded it from `__consumer_offsets`.
//!
//! State machines, with Kafka's state names:
//!
//! ```text
//! classic:  Empty -> PreparingRebalance -> CompletingRebalance -> Stable
//!             ^            ^   (all joined or          |  (leader's SyncGroup)
//!             |            |    rebalance timeout)     |
//!             +------------+---------------------------+  (join, leave, expiry)
//! consumer: Empty -> Assigning / Reconciling -> Stable   (per heartbeat, by member epochs)
//! ```
//!
//! Timers (all virtual, read by [`Groups::poll_timeout`]): the join phase's deadline (rebalance
//! timeout, or the initial rebalance delay of a new group), the sync deadline (members that
//! got a JoinGroup answer but never sent SyncGroup), each member's session, and for consumer
//! groups each member's revocation deadline (rebalance timeout).
//!
//! Simplifications (each observable at most as noted):
//! - Group state is never written to a log: no `__consumer_offsets` topic, no load delay.
//! - No maximum group size, no offset retention/expiry, no transactional offsets, no
//!   DeleteGroups/OffsetDelete, no ConsumerGroupDescribe.
//! - Member ids are `<client id or instance id>-<uuid>` with a deterministic uuid;
//!   `client_host` reads `/127.0.0.1`.
//! - No online migration between protocols: a classic JoinGroup to a non-empty consumer group
//!   gets INCONSISTENT_GROUP_PROTOCOL, its SyncGroup/Heartbeat/LeaveGroup UNKNOWN_MEMBER_ID;
//!   a ConsumerGroupHeartbeat to a non-empty classic group gets GROUP_ID_NOT_FOUND.
//! - Consumer groups: one server assignor (`uniform`, also answering to `range`), not sticky;
//!   no regex subscriptions (INVALID_REQUEST); a fixed 45 s session and 5 s heartbeat interval.
//! - A zero initial rebalance delay completes a new group's first join at once (Kafka fires
//!   a zero-length timer).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sansa::protocol::{ErrorCode, ResponseBody};

use super::find_coordinator::coordinator_for;
use super::{Ctx, FakeCluster, Reply, Ticket};

pub(crate) mod classic;
pub(crate) mod consumer;
pub(crate) mod listing;
pub(crate) mod offsets;

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms` defaults.
const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(1_800_000);
/// How long a new classic member may wait in its first JoinGroup (Kafka's fixed 5 minutes).
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Kafka's `group.consumer.session.timeout.ms` and `group.consumer.heartbeat.interval.ms`.
const CONSUMER_SESSION_TIMEOUT: Duration = Duration::from_millis(45_000);
const CONSUMER_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(5_000);

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: Option<String>,
    pub(crate) commit_time_ms: i64,
}

#[derive(Debug)]
pub(crate) enum Group {
    Classic(classic::ClassicGroup),
    Consumer(consumer::ConsumerGroup),
}

impl Group {
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Group::Classic(g) => g.members.is_empty() && g.pending.is_empty(),
            Group::Consumer(g) => g.members.is_empty(),
        }
    }
}

/// All groups and their committed offsets.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pub(crate) groups: BTreeMap<String, Group>,
    /// Committed offsets by group, then (topic, partition).
    pub(crate) offsets: BTreeMap<String, BTreeMap<(String, i32), Committed>>,
    /// Parked answers that are now due, given by [`finish`] or [`handle_timeout`].
    outbox: Vec<(Ticket, ResponseBody)>,
    /// The client id of the request being handled (set by the dispatcher).
    pub(crate) client_id: String,
    id_counter: u64,
}

impl Groups {
    /// The earliest group deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.groups
            .values()
            .filter_map(|g| match g {
                Group::Classic(g) => g.next_deadline(),
                Group::Consumer(g) => g.next_deadline(),
            })
            .min()
    }

    /// A fresh member id: `prefix-<uuid>`, the uuid deterministic.
    pub(crate) fn new_member_id(&mut self, prefix: &str) -> String {
        format!("{prefix}-{}", self.uuid_string())
    }

    /// 16 deterministic, random-looking bytes.
    pub(crate) fn uuid_bytes(&mut self) -> [u8; 16] {
        self.id_counter += 1;
        super::id_bytes(self.id_counter, super::MEMBER_IDS)
    }

    /// A deterministic UUID in Java's textual form.
    pub(crate) fn uuid_string(&mut self) -> String {
        let h: String = self.uuid_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

/// The error for a group request reaching `broker`, if it is not the group's coordinator.
pub(crate) fn coordinator_error(cluster: &FakeCluster, broker: i32, group_id: &str) -> Option<ErrorCode> {
    match coordinator_for(cluster, group_id) {
        None => Some(ErrorCode::CoordinatorNotAvailable),
        Some(b) if b != broker => Some(ErrorCode::NotCoordinator),
        Some(_) => None,
    }
}

/// Gives the parked answers the state machines produced; the request being handled gets its
/// own answer back as the reply when it is among them (or when `own` is set).
pub(crate) fn finish(cluster: &mut FakeCluster, ctx: &Ctx, own: Option<ResponseBody>) -> Reply {
    let mut own = own;
    for (ticket, body) in std::mem::take(&mut cluster.groups.outbox) {
        if ticket == ctx.ticket {
            own = Some(body);
        } else {
            cluster.complete(ticket, body);
        }
    }
    match own {
        Some(body) => Reply::Now(body),
        None => Reply::Parked,
    }
}

/// Fires the group timers due at `now`.
pub(crate) fn handle_timeout(cluster: &mut FakeCluster, now: Instant) {
    let g = &mut cluster.groups;
    let mut outbox = std::mem::take(&mut g.outbox);
    for group in g.groups.values_mut() {
        match group {
            Group::Classic(c) => c.handle_timeout(now, &mut outbox),
            Group::Consumer(c) => c.handle_timeout(now),
        }
    }
    for (ticket, body) in outbox {
        cluster.complete(ticket, body);
    }
}

/// Milliseconds of a duration, saturated to `i32`.
pub(crate) fn ms_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// A non-negative millisecond count from the wire as a duration (negatives read as zero).
pub(crate) fn ms(v: i32) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}
