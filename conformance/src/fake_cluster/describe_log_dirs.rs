//! DescribeLogDirs: each broker has one log directory, `/var/lib/kafka/broker-<id>`, holding
//! the replicas it hosts; a partition's size is the bytes of its stored batches (the same on
//! every replica, since the fake cluster replicates instantly, so the offset lag is 0). The
//! directory's total and usable bytes are fixed at 1 TiB and 1 TiB minus what is stored.
//! `topics: null` describes every replica on the broker.

use std::collections::BTreeMap;

use sansa::protocol::messages::describe_log_dirs::response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use sansa::protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use sansa::protocol::{StrBytes, TopicName};

use super::FakeCluster;

const TOTAL_BYTES: i64 = 1 << 40;

pub(crate) fn handle(cluster: &FakeCluster, broker: i32, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // Which partitions to describe, by topic; `None` for every partition of the topic.
    let wanted: Option<BTreeMap<String, Vec<i32>>> =
        req.topics.map(|topics| topics.into_iter().map(|t| (t.topic.as_str().to_string(), t.partitions)).collect());
    let mut topics = Vec::new();
    let mut stored = 0i64;
    for (name, topic) in &cluster.topics {
        let filter = match &wanted {
            None => None,
            Some(w) => match w.get(name) {
                Some(p) => Some(p),
                None => continue,
            },
        };
        let partitions: Vec<DescribeLogDirsPartition> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| p.replicas.contains(&broker) && filter.is_none_or(|f| f.contains(&(*i as i32))))
            .map(|(i, p)| {
                let size: i64 = p.batches.iter().map(|b| b.bytes.len() as i64).sum();
                stored += size;
                DescribeLogDirsPartition::default().with_partition_index(i as i32).with_partition_size(size)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default().with_name(TopicName::from(name.as_str())).with_partitions(partitions),
            );
        }
    }
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from(format!("/var/lib/kafka/broker-{broker}")))
        .with_topics(topics)
        .with_total_bytes(TOTAL_BYTES)
        .with_usable_bytes(TOTAL_BYTES - stored);
    DescribeLogDirsResponse::default().with_results(vec![dir])
}
