//! Metadata: live brokers, controller (the lowest live id), topics with ids, partitions with
//! leaders, replicas and ISR (the live replicas). Unknown topics are UNKNOWN_TOPIC_OR_PARTITION
//! (UNKNOWN_TOPIC_ID when asked by id) unless auto-creation is on and the request allows it. An
//! offline partition has leader -1 and LEADER_NOT_AVAILABLE. Injected errors apply per topic.

use sansa::protocol::messages::metadata::response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sansa::protocol::messages::{MetadataRequest, MetadataResponse};
use sansa::protocol::{ApiKey, BrokerId, ErrorCode, StrBytes, TopicName};

use super::FakeCluster;

pub(crate) fn handle(cluster: &mut FakeCluster, broker: i32, version: i16, req: MetadataRequest) -> MetadataResponse {
    let brokers = cluster
        .brokers
        .iter()
        .filter(|(_, b)| b.up)
        .map(|(id, b)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(*id))
                .with_host(StrBytes::from(b.host.as_str()))
                .with_port(i32::from(b.port))
                .with_rack(cluster.rack_of(*id).map(StrBytes::from))
        })
        .collect();
    // v0: an empty list means every topic; v1+: null means every topic.
    let wanted = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let mut topics = Vec::new();
    match wanted {
        None => {
            let names: Vec<String> = cluster.topics.keys().cloned().collect();
            for name in names {
                topics.push(describe(cluster, version, &name));
            }
        }
        Some(requested) => {
            for t in requested {
                let name = match (&t.name, t.topic_id.is_zero()) {
                    (Some(n), _) => n.as_str().to_string(),
                    (None, false) => match cluster.topic_name_by_id(t.topic_id) {
                        Some(n) => n,
                        None => {
                            let mut r = MetadataResponseTopic::default().with_error_code(ErrorCode::UnknownTopicId);
                            if version >= 10 {
                                r.topic_id = t.topic_id;
                            }
                            topics.push(r);
                            continue;
                        }
                    },
                    (None, true) => {
                        topics.push(MetadataResponseTopic::default().with_error_code(ErrorCode::InvalidTopicException));
                        continue;
                    }
                };
                if !cluster.topics.contains_key(&name) {
                    if cluster.config.auto_create_topics && req.allow_auto_topic_creation && !name.is_empty() {
                        let partitions = cluster.config.default_partitions.max(1);
                        cluster.create_topic(&name, partitions, -1);
                    } else {
                        topics.push(
                            MetadataResponseTopic::default()
                                .with_error_code(ErrorCode::UnknownTopicOrPartition)
                                .with_name(Some(TopicName::from(name.as_str()))),
                        );
                        continue;
                    }
                }
                topics.push(describe(cluster, version, &name));
            }
        }
    }
    for t in &mut topics {
        let name = t.name.as_ref().map(|n| n.as_str().to_string()).unwrap_or_default();
        if let Some(code) = cluster.take_partition_error(ApiKey::Metadata, broker, &name, None) {
            t.error_code = code;
            t.partitions.clear();
        }
    }
    let mut resp = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
    if version >= 1 {
        resp.controller_id = BrokerId(cluster.controller_id());
    }
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from(cluster.config.cluster_id.as_str()));
    }
    resp
}

fn describe(cluster: &FakeCluster, version: i16, name: &str) -> MetadataResponseTopic {
    let topic = &cluster.topics[name];
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let nodes: Vec<BrokerId> = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            let isr: Vec<BrokerId> = p.replicas.iter().filter(|r| cluster.is_up(**r)).map(|r| BrokerId(*r)).collect();
            let mut r = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(nodes)
                .with_isr_nodes(isr);
            if p.leader == -1 {
                r.error_code = ErrorCode::LeaderNotAvailable;
            }
            if version >= 7 {
                r.leader_epoch = p.leader_epoch;
            }
            r
        })
        .collect();
    let mut r = MetadataResponseTopic::default().with_name(Some(TopicName::from(name))).with_partitions(partitions);
    if version >= 10 {
        r.topic_id = topic.id;
    }
    r
}
