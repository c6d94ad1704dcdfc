//! What the client knows about the cluster: brokers, topics, partitions with their leaders,
//! and group/transaction coordinators. Built from Metadata and FindCoordinator responses.

pub(crate) mod refresh;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::BrokerAddress;
use crate::protocol::messages::MetadataResponse;
use crate::protocol::{BrokerId, ErrorCode, TopicName, Uuid};

/// A broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Node id.
    pub id: BrokerId,
    /// Advertised address.
    pub address: BrokerAddress,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Partition index.
    pub index: i32,
    /// Current leader; `None` while the partition has no leader.
    pub leader: Option<BrokerId>,
    /// Leader epoch, or -1 when the broker does not report it.
    pub leader_epoch: i32,
    /// Replica brokers.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas.
    pub isr: Vec<BrokerId>,
    /// Replicas that are offline.
    pub offline_replicas: Vec<BrokerId>,
    /// Partition-level error, e.g. LEADER_NOT_AVAILABLE.
    pub error: ErrorCode,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Topic name.
    pub name: TopicName,
    /// Topic id (zero when the broker does not report ids).
    pub id: Uuid,
    /// Whether the topic is internal (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Topic-level error, e.g. UNKNOWN_TOPIC_OR_PARTITION.
    pub error: ErrorCode,
    /// Partitions by index.
    pub partitions: Vec<Partition>,
}

/// A snapshot of cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Cluster id, when the broker reports it.
    pub cluster_id: Option<String>,
    /// The broker admin requests go to.
    pub controller: Option<BrokerId>,
    /// Brokers by id.
    pub brokers: BTreeMap<BrokerId, Broker>,
    /// Topics by name.
    pub topics: BTreeMap<TopicName, Topic>,
    /// When this snapshot was last updated.
    pub updated_at: Option<Instant>,
}

impl ClusterMetadata {
    /// A broker by id.
    pub fn broker(&self, id: BrokerId) -> Option<&Broker> {
        self.brokers.get(&id)
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|(n, _)| n.as_str() == name).map(|(_, t)| t)
    }

    /// Whether any metadata has been received.
    pub fn is_known(&self) -> bool {
        self.updated_at.is_some()
    }

    /// Applies a Metadata response: the broker list and controller are replaced; the topics
    /// in the response are replaced; other topics are kept, unless `all_topics` says the
    /// response lists every topic, in which case topics absent from it are dropped.
    pub(crate) fn apply(&mut self, now: Instant, response: &MetadataResponse, all_topics: bool) {
        self.brokers = response
            .brokers
            .iter()
            .filter_map(|b| {
                let port = u16::try_from(b.port).ok()?;
                let broker = Broker {
                    id: b.node_id,
                    address: BrokerAddress::new(b.host.as_str(), port),
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                Some((b.node_id, broker))
            })
            .collect();
        self.controller = (response.controller_id.0 >= 0).then_some(response.controller_id);
        if let Some(id) = &response.cluster_id {
            self.cluster_id = Some(id.to_string());
        }
        if all_topics {
            self.topics.clear();
        }
        for t in &response.topics {
            let Some(name) = t.name.clone() else { continue };
            let mut partitions: Vec<Partition> = t
                .partitions
                .iter()
                .map(|p| Partition {
                    index: p.partition_index,
                    leader: (p.leader_id.0 >= 0).then_some(p.leader_id),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.clone(),
                    isr: p.isr_nodes.clone(),
                    offline_replicas: p.offline_replicas.clone(),
                    error: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            let topic =
                Topic { name: name.clone(), id: t.topic_id, internal: t.is_internal, error: t.error_code, partitions };
            self.topics.insert(name, topic);
        }
        self.updated_at = Some(now);
    }
}

/// Errors in a metadata answer that mean it is not settled yet and should be fetched again
/// soon (a leader election in progress, a topic still being created).
pub(crate) fn needs_quick_refresh(response: &MetadataResponse) -> bool {
    response.topics.iter().any(|t| {
        matches!(t.error_code, ErrorCode::LeaderNotAvailable)
            || t.partitions.iter().any(|p| {
                matches!(p.error_code, ErrorCode::LeaderNotAvailable | ErrorCode::NotLeaderOrFollower)
                    || p.leader_id.0 < 0
            })
    })
}
