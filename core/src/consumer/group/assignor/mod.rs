//! Classic consumer group assignors: the group leader's pure function from the members'
//! subscriptions to each member's partitions.
//!
//! Four assignors, each giving the assignment Apache Kafka's Java client gives for the same
//! input (proven against vectors the Java client computes, `conformance/vectors/assignors.tsv`):
//!
//! | name | type | protocols |
//! |---|---|---|
//! | `range` | [`RangeAssignor`] | eager |
//! | `roundrobin` | [`RoundRobinAssignor`] | eager |
//! | `sticky` | [`StickyAssignor`] | eager |
//! | `cooperative-sticky` | [`CooperativeStickyAssignor`] | cooperative, eager |
//!
//! The leader calls [`Assignor::assign`] with the partition counts of the subscribed topics and
//! the members **in the order the JoinGroup response lists them**, and sends each member its
//! [`Assignment`] (encoded by [`protocol::encode_assignment`]) in SyncGroup. Every member calls
//! [`Assignor::subscription_user_data`] before it joins and puts the result in its
//! [`Subscription`] (encoded by [`protocol::encode_subscription`]).
//!
//! Why the member order matters: the Java leader keeps subscriptions in a `java.util.HashMap`,
//! and the sticky assignors' tie-breaks follow that map's iteration order (bucket of the member
//! id's `String.hashCode`, then insertion order). We reproduce that order from the ids and the
//! join order, so no `HashMap` of ours ever decides anything.
//!
//! Rack-aware assignment (KIP-881) is not implemented: [`PartitionCounts`] carries no replica
//! racks, and with no racks on the partitions the Java assignors ignore the members' rack ids too.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use bytes::Bytes;

use crate::protocol::TopicName;

pub mod protocol;
mod range;
mod round_robin;
mod sticky;

pub use range::RangeAssignor;
pub use round_robin::RoundRobinAssignor;
pub use sticky::{CooperativeStickyAssignor, StickyAssignor};

/// A group member's id, given by the coordinator.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MemberId(pub String);

impl From<&str> for MemberId {
    fn from(s: &str) -> Self {
        MemberId(s.to_owned())
    }
}

impl std::borrow::Borrow<str> for MemberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub use crate::consumer::TopicPartition;

/// What a member asks for, as the consumer protocol carries it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Subscription {
    /// Subscribed topics, in the order they arrived (Java writes them sorted).
    pub topics: Vec<TopicName>,
    /// The assignor's own data ([`Assignor::subscription_user_data`]).
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now, in the order they arrived.
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation the member last joined, `None` when it has none (-1 on the wire).
    pub generation_id: Option<i32>,
    /// The member's `client.rack`, `None` when unset or empty.
    pub rack_id: Option<String>,
}

/// A member as the JoinGroup response describes it to the leader.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Member {
    /// The member id.
    pub id: MemberId,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The decoded subscription ([`protocol::decode_subscription`]).
    pub subscription: Subscription,
}

/// The partitions one member gets.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Assignment {
    /// Partitions by topic, ascending within a topic. Members with nothing get an empty map.
    pub partitions: BTreeMap<TopicName, Vec<i32>>,
    /// Assignor data for the member; none of the built-in assignors sends any.
    pub user_data: Option<Bytes>,
}

impl Assignment {
    fn from_list(list: &[TopicPartition]) -> Assignment {
        let mut partitions: BTreeMap<TopicName, Vec<i32>> = BTreeMap::new();
        for tp in list {
            partitions.entry(tp.topic.clone()).or_default().push(tp.partition);
        }
        for ps in partitions.values_mut() {
            ps.sort_unstable();
        }
        Assignment { partitions, user_data: None }
    }

    /// Every assigned partition, by topic then partition.
    pub fn iter(&self) -> impl Iterator<Item = TopicPartition> + '_ {
        self.partitions.iter().flat_map(|(t, ps)| ps.iter().map(move |p| TopicPartition::new(t.clone(), *p)))
    }
}

/// The cluster as the assignors see it: how many partitions each topic has.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PartitionCounts(BTreeMap<TopicName, u32>);

impl PartitionCounts {
    /// No topics.
    pub fn new() -> Self {
        PartitionCounts::default()
    }

    /// Sets `topic`'s partition count. A topic with zero partitions counts as unknown.
    pub fn insert(&mut self, topic: impl Into<TopicName>, partitions: u32) {
        self.0.insert(topic.into(), partitions);
    }

    /// `topic`'s partition count, `None` when it is unknown or has no partitions.
    pub fn get(&self, topic: &TopicName) -> Option<u32> {
        self.0.get(topic).copied().filter(|n| *n > 0)
    }
}

impl<T: Into<TopicName>> FromIterator<(T, u32)> for PartitionCounts {
    fn from_iter<I: IntoIterator<Item = (T, u32)>>(iter: I) -> Self {
        PartitionCounts(iter.into_iter().map(|(t, n)| (t.into(), n)).collect())
    }
}

/// How members give up partitions in a rebalance.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum RebalanceProtocol {
    /// Every member revokes everything before it rejoins.
    Eager,
    /// Members keep what they own; a partition that changes owner is first revoked (KIP-429).
    Cooperative,
}

/// A member's last assignment, which sticky assignors put in the subscription's user data.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PreviousAssignment {
    /// The partitions, in the order the assignment listed them.
    pub partitions: Vec<TopicPartition>,
    /// The generation the assignment came with.
    pub generation: i32,
}

/// Why an assignment could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssignError {
    /// Caller misuse: the same member id twice.
    #[error("member {0} is listed twice")]
    DuplicateMember(MemberId),
    /// The members' claims lead the sticky algorithm into a state the Java assignor fails in
    /// too (Java throws); the group cannot be assigned with this assignor as it stands.
    #[error("sticky assignment failed: {0}")]
    Inconsistent(&'static str),
}

/// A classic (client-side) partition assignor.
pub trait Assignor: std::fmt::Debug + Send + Sync {
    /// The protocol name members announce in JoinGroup.
    fn name(&self) -> &'static str;

    /// Rebalance protocols this assignor supports, preferred first.
    fn supported_protocols(&self) -> &'static [RebalanceProtocol] {
        &[RebalanceProtocol::Eager]
    }

    /// The user data a member puts in its subscription, given what it was last assigned
    /// (`None` before its first assignment). Call it each time the member (re)joins.
    fn subscription_user_data(&self, previous: Option<&PreviousAssignment>) -> Option<Bytes> {
        let _ = previous;
        None
    }

    /// The leader's assignment: every member of `members` (in JoinGroup response order) gets an
    /// entry, possibly empty. Topics missing from `partitions` are left out.
    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[Member],
    ) -> Result<BTreeMap<MemberId, Assignment>, AssignError>;
}

/// The built-in assignor announced as `name`, if any.
pub fn builtin(name: &str) -> Option<&'static dyn Assignor> {
    match name {
        "range" => Some(&RangeAssignor),
        "roundrobin" => Some(&RoundRobinAssignor),
        "sticky" => Some(&StickyAssignor),
        "cooperative-sticky" => Some(&CooperativeStickyAssignor),
        _ => None,
    }
}

/// Checks member ids are unique; the common first step of every assignor.
fn check_members(members: &[Member]) -> Result<(), AssignError> {
    let mut seen = std::collections::BTreeSet::new();
    for m in members {
        if !seen.insert(&m.id) {
            return Err(AssignError::DuplicateMember(m.id.clone()));
        }
    }
    Ok(())
}

/// Java's ordering of members (`AbstractPartitionAssignor.MemberInfo`): static members first, by
/// `group.instance.id`, then dynamic members by member id.
fn member_info_cmp(a: &Member, b: &Member) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => java::cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => java::cmp(&a.id.0, &b.id.0),
    }
}

/// What Java's collections do, reproduced where its results depend on them.
mod java {
    use std::cmp::Ordering;

    /// `String.compareTo`: UTF-16 code units, which differs from UTF-8 byte order above U+FFFF.
    pub(super) fn cmp(a: &str, b: &str) -> Ordering {
        a.encode_utf16().cmp(b.encode_utf16())
    }

    /// `String.hashCode`.
    pub(super) fn string_hash(s: &str) -> i32 {
        s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
    }

    /// `TopicPartition.hashCode`.
    pub(super) fn topic_partition_hash(topic_hash: i32, partition: i32) -> i32 {
        31i32.wrapping_add(partition).wrapping_mul(31).wrapping_add(topic_hash)
    }

    /// The bucket `HashMap` puts a key with this hash in, for a table of `capacity` (a power of two).
    pub(super) fn bucket(hash: i32, capacity: usize) -> usize {
        let h = hash as u32;
        ((h ^ (h >> 16)) as usize) & (capacity - 1)
    }

    /// The table size of a `new HashMap<>()` after `len` insertions (it doubles past 3/4 full).
    pub(super) fn capacity_for(len: usize) -> usize {
        let mut capacity = 16;
        while len > capacity / 4 * 3 {
            capacity *= 2;
        }
        capacity
    }

    /// The iteration order of a `new HashMap<>()` into which keys with these hashes were put in
    /// this order: by bucket, then by insertion. (Bins long enough to become trees — 9 keys in one
    /// bucket of a table of 64 or more — are not modelled.)
    pub(super) fn iteration_order(hashes: &[i32]) -> Vec<usize> {
        let capacity = capacity_for(hashes.len());
        let mut order: Vec<usize> = (0..hashes.len()).collect();
        order.sort_by_key(|&i| (bucket(hashes[i], capacity), i));
        order
    }
}

#[cfg(test)]
mod test_util {
    use super::*;

    pub(super) fn member(id: &str, topics: &[&str]) -> Member {
        let topics = topics.iter().map(|t| TopicName::from(*t)).collect();
        Member {
            id: id.into(),
            group_instance_id: None,
            subscription: Subscription { topics, ..Subscription::default() },
        }
    }

    pub(super) fn counts(topics: &[(&str, u32)]) -> PartitionCounts {
        topics.iter().map(|(t, n)| (*t, *n)).collect()
    }

    /// `topic-partition` strings, by topic then partition.
    pub(super) fn flat(a: &Assignment) -> Vec<String> {
        a.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_string_hash_and_order() {
        assert_eq!(java::string_hash(""), 0);
        assert_eq!(java::string_hash("a"), 97);
        assert_eq!(java::string_hash("hello"), 99162322);
        // Overflow wraps as in Java.
        assert_eq!(
            java::string_hash("consumer-1-7f3c"),
            "consumer-1-7f3c".encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
        );
        // A surrogate pair (0xD83D..) sorts before U+FF5E in UTF-16, after it in UTF-8.
        assert_eq!(java::cmp("\u{1F600}", "\u{FF5E}"), Ordering::Less);
        assert_eq!("\u{1F600}".cmp("\u{FF5E}"), Ordering::Greater);
    }

    #[test]
    fn hash_map_order_follows_buckets_then_insertion() {
        // "b" (98) and "a" (97) land in buckets 2 and 1; "q" (113) lands in bucket 1 after "a".
        let order = java::iteration_order(&[java::string_hash("b"), java::string_hash("a"), java::string_hash("q")]);
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(java::capacity_for(12), 16);
        assert_eq!(java::capacity_for(13), 32);
    }

    #[test]
    fn builtins_by_name() {
        for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
            assert_eq!(builtin(name).map(|a| a.name()), Some(name));
        }
        assert!(builtin("uniform").is_none());
        assert_eq!(
            builtin("cooperative-sticky").map(|a| a.supported_protocols()),
            Some(&[RebalanceProtocol::Cooperative, RebalanceProtocol::Eager][..])
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        let m = Member { id: "a".into(), group_instance_id: None, subscription: Subscription::default() };
        for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
            let a = builtin(name).unwrap();
            assert_eq!(
                a.assign(&PartitionCounts::new(), &[m.clone(), m.clone()]),
                Err(AssignError::DuplicateMember("a".into()))
            );
        }
    }
}
