//! The `range` assignor: each topic on its own, its partitions cut into consecutive ranges, one
//! per subscribed member in member order, the first `count % members` ranges one longer.

use std::collections::BTreeMap;

use super::{check_members, member_info_cmp, AssignError, Assignment, Assignor, Member, MemberId, PartitionCounts};
use crate::protocol::TopicName;

/// Java's `RangeAssignor` (without rack awareness).
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[Member],
    ) -> Result<BTreeMap<MemberId, Assignment>, AssignError> {
        check_members(members)?;
        // Each topic's subscribers, ordered as Java orders them (static members first).
        let mut subscribers: BTreeMap<&TopicName, Vec<&Member>> = BTreeMap::new();
        for m in members {
            for topic in &m.subscription.topics {
                let list = subscribers.entry(topic).or_default();
                if !list.iter().any(|x| x.id == m.id) {
                    list.push(m);
                }
            }
        }
        let mut out: BTreeMap<MemberId, Assignment> =
            members.iter().map(|m| (m.id.clone(), Assignment::default())).collect();
        for (topic, mut list) in subscribers {
            let Some(count) = partitions.get(topic) else { continue };
            list.sort_by(|a, b| member_info_cmp(a, b));
            let n = list.len() as u32;
            let (each, extra) = (count / n, count % n);
            let mut next = 0;
            for (i, m) in list.iter().enumerate() {
                let len = each + u32::from((i as u32) < extra);
                if len == 0 {
                    break;
                }
                let range = (next..next + len).map(|p| p as i32);
                if let Some(a) = out.get_mut(&m.id) {
                    a.partitions.entry(topic.clone()).or_default().extend(range);
                }
                next += len;
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
    fn ranges_per_topic_longer_first() {
        let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        let out = RangeAssignor.assign(&counts(&[("t0", 3), ("t1", 3)]), &members).unwrap();
        assert_eq!(flat(&out["c0"]), ["t0-0", "t0-1", "t1-0", "t1-1"]);
        assert_eq!(flat(&out["c1"]), ["t0-2", "t1-2"]);
    }

    #[test]
    fn static_members_come_first_and_unknown_topics_are_skipped() {
        let mut z = member("a-dynamic", &["t", "gone"]);
        let mut s = member("z-static", &["t"]);
        s.group_instance_id = Some("instance".into());
        z.group_instance_id = None;
        let out = RangeAssignor.assign(&counts(&[("t", 3)]), &[z, s]).unwrap();
        assert_eq!(flat(&out["z-static"]), ["t-0", "t-1"]);
        assert_eq!(flat(&out["a-dynamic"]), ["t-2"]);
    }
}
