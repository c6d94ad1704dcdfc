//! Consumer groups (KIP-848): ConsumerGroupHeartbeat.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::fake_cluster::FakeCluster;

/// The topics the assignor sees: name to (id, partition count).
#[derive(Debug, Default)]
pub(crate) struct TopicView(BTreeMap<String, (sansa::protocol::Uuid, i32)>);

impl TopicView {
    pub(crate) fn of(cluster: &FakeCluster) -> Self {
        TopicView(cluster.topics.iter().map(|(n, t)| (n.clone(), (t.id, t.partitions.len() as i32))).collect())
    }
}

#[derive(Debug, Default)]
pub(crate) struct ConsumerGroup {
    pub(crate) members: BTreeMap<String, ()>,
}

impl ConsumerGroup {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        None
    }

    pub(crate) fn handle_timeout(&mut self, _now: Instant, _topics: &TopicView) {}
}
