//! The `roundrobin` assignor: every subscribed partition, topics in name order, dealt in turn to
//! the members in member order, skipping members not subscribed to the partition's topic.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    check_members, java, member_info_cmp, AssignError, Assignment, Assignor, Member, MemberId, PartitionCounts,
};
use crate::protocol::TopicName;

/// Java's `RoundRobinAssignor`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[Member],
    ) -> Result<BTreeMap<MemberId, Assignment>, AssignError> {
        check_members(members)?;
        let mut order: Vec<&Member> = members.iter().collect();
        order.sort_by(|a, b| member_info_cmp(a, b));
        let mut topics: Vec<&TopicName> =
            members.iter().flat_map(|m| &m.subscription.topics).collect::<BTreeSet<_>>().into_iter().collect();
        topics.sort_by(|a, b| java::cmp(a.as_str(), b.as_str()));

        let mut out: BTreeMap<MemberId, Assignment> =
            members.iter().map(|m| (m.id.clone(), Assignment::default())).collect();
        let mut next = 0;
        for topic in topics {
            let Some(count) = partitions.get(topic) else { continue };
            for p in 0..count {
                // Some member subscribes to `topic`, so this finds one within a lap.
                while !order[next % order.len()].subscription.topics.contains(topic) {
                    next += 1;
                }
                let m = order[next % order.len()];
                next += 1;
                if let Some(a) = out.get_mut(&m.id) {
                    a.partitions.entry(topic.clone()).or_default().push(p as i32);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn deals_in_turn_skipping_unsubscribed() {
        let members = [member("c0", &["t0"]), member("c1", &["t0", "t1"]), member("c2", &["t0", "t1", "t2"])];
        let out = RoundRobinAssignor.assign(&counts(&[("t0", 1), ("t1", 2), ("t2", 3)]), &members).unwrap();
        assert_eq!(flat(&out["c0"]), ["t0-0"]);
        assert_eq!(flat(&out["c1"]), ["t1-0"]);
        assert_eq!(flat(&out["c2"]), ["t1-1", "t2-0", "t2-1", "t2-2"]);
    }
}
