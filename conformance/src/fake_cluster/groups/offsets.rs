//! OffsetCommit and OffsetFetch.
//!
//! Commits are checked like Kafka checks them: unknown topics or partitions per partition
//! (UNKNOWN_TOPIC_ID by id from v10), metadata over 4096 bytes, and the committer against
//! its group: a classic group wants the current generation and a known member
//! (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS while the group completes a
//! rebalance), a consumer group the member's current epoch (STALE_MEMBER_EPOCH); generation -1
//! from a non-member is a simple commit, accepted while the group is empty (and creating an
//! empty classic group when there is none). Fetching offsets of an unknown group, topic or
//! partition gives offset -1 without an error.

use sansa::protocol::messages::offset_commit::response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use sansa::protocol::messages::offset_fetch::response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use sansa::protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse};
use sansa::protocol::{ApiKey, ErrorCode, GroupId, StrBytes, TopicName, Uuid};

use super::classic::ClassicGroup;
use super::{coordinator_error, Committed, Group};
use crate::fake_cluster::{Ctx, FakeCluster};

/// Kafka's `offset.metadata.max.bytes` default.
const MAX_METADATA: usize = 4096;

pub(crate) fn commit(cluster: &mut FakeCluster, ctx: Ctx, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let v = ctx.version;
    let gid = req.group_id.to_string();
    let group_error = coordinator_error(cluster, ctx.broker, &gid).or_else(|| {
        let delay = cluster.config.group_initial_rebalance_delay;
        validate_commit(cluster, &gid, &req, v, delay).err()
    });
    let commit_time_ms = cluster.wall_clock_ms(ctx.now);
    let mut topics = Vec::new();
    for t in &req.topics {
        let name = if v >= 10 { cluster.topic_name_by_id(t.topic_id) } else { Some(t.name.to_string()) };
        let count = name.as_deref().and_then(|n| cluster.partition_count(n));
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let injected = name.as_deref().and_then(|n| {
                cluster.take_partition_error(ApiKey::OffsetCommit, ctx.broker, n, Some(p.partition_index))
            });
            let code = match (group_error, injected, count) {
                (Some(code), _, _) | (None, Some(code), _) => code,
                (None, None, None) if v >= 10 => ErrorCode::UnknownTopicId,
                (None, None, None) => ErrorCode::UnknownTopicOrPartition,
                (None, None, Some(n)) if p.partition_index < 0 || p.partition_index as usize >= n => {
                    ErrorCode::UnknownTopicOrPartition
                }
                _ if p.committed_metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA) => {
                    ErrorCode::OffsetMetadataTooLarge
                }
                _ => {
                    let committed = Committed {
                        offset: p.committed_offset,
                        leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                        metadata: p.committed_metadata.as_deref().map(str::to_string),
                        commit_time_ms,
                    };
                    let key = (name.clone().unwrap_or_default(), p.partition_index);
                    cluster.groups.offsets.entry(gid.clone()).or_default().insert(key, committed);
                    ErrorCode::None
                }
            };
            partitions.push(
                OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code),
            );
        }
        let mut rt = OffsetCommitResponseTopic::default().with_partitions(partitions);
        if v >= 10 {
            rt.topic_id = t.topic_id;
        } else {
            rt.name = t.name.clone();
        }
        topics.push(rt);
    }
    OffsetCommitResponse::default().with_topics(topics)
}

fn validate_commit(
    cluster: &mut FakeCluster,
    gid: &str,
    req: &OffsetCommitRequest,
    version: i16,
    delay: std::time::Duration,
) -> Result<(), ErrorCode> {
    let generation = req.generation_id_or_member_epoch;
    match cluster.groups.groups.get(gid) {
        None if generation < 0 => {
            cluster.groups.groups.insert(gid.to_string(), Group::Classic(ClassicGroup::new(delay)));
            Ok(())
        }
        None if version >= 9 => Err(ErrorCode::GroupIdNotFound),
        None => Err(ErrorCode::IllegalGeneration),
        Some(Group::Classic(g)) => {
            g.validate_offset_commit(&req.member_id, req.group_instance_id.as_deref(), generation)
        }
        Some(Group::Consumer(g)) => g.validate_offset_commit(&req.member_id, generation, version),
    }
}

/// (partition, committed or not, error)
type FetchedPartition = (i32, Option<Committed>, ErrorCode);

/// One group's answer, before it is shaped for a version.
struct Fetched {
    group_id: GroupId,
    error: ErrorCode,
    /// (name, id, partitions)
    topics: Vec<(String, Uuid, Vec<FetchedPartition>)>,
}

/// (name or id, partitions) as asked; `None` asks for everything committed.
type Asked = Option<Vec<(Option<String>, Uuid, Vec<i32>)>>;

pub(crate) fn fetch(cluster: &mut FakeCluster, ctx: Ctx, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    if v < 8 {
        let asked: Asked = req
            .topics
            .map(|ts| ts.into_iter().map(|t| (Some(t.name.to_string()), Uuid::ZERO, t.partition_indexes)).collect());
        let f = fetch_group(cluster, &ctx, req.group_id, None, -1, asked);
        let topics: Vec<OffsetFetchResponseTopic> = f
            .topics
            .into_iter()
            .map(|(name, _, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(index, c, code)| {
                        let c =
                            c.unwrap_or(Committed { offset: -1, leader_epoch: -1, metadata: None, commit_time_ms: 0 });
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(c.offset)
                            .with_committed_leader_epoch(c.leader_epoch)
                            .with_metadata(Some(StrBytes::from(c.metadata.unwrap_or_default())))
                            .with_error_code(if v < 2 && f.error != ErrorCode::None { f.error } else { code })
                    })
                    .collect();
                OffsetFetchResponseTopic::default().with_name(TopicName::from(name)).with_partitions(partitions)
            })
            .collect();
        let mut r = OffsetFetchResponse::default().with_topics(topics);
        if v >= 2 {
            r.error_code = f.error;
        }
        return r;
    }
    let mut groups = Vec::new();
    for g in req.groups {
        let asked: Asked = g.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (if v >= 10 { None } else { Some(t.name.to_string()) }, t.topic_id, t.partition_indexes))
                .collect()
        });
        let member_id = if v >= 9 { g.member_id.as_deref().map(str::to_string) } else { None };
        let epoch = if v >= 9 { g.member_epoch } else { -1 };
        let f = fetch_group(cluster, &ctx, g.group_id, member_id, epoch, asked);
        let topics = f
            .topics
            .into_iter()
            .map(|(name, id, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(index, c, code)| {
                        let c =
                            c.unwrap_or(Committed { offset: -1, leader_epoch: -1, metadata: None, commit_time_ms: 0 });
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(index)
                            .with_committed_offset(c.offset)
                            .with_committed_leader_epoch(c.leader_epoch)
                            .with_metadata(Some(StrBytes::from(c.metadata.unwrap_or_default())))
                            .with_error_code(code)
                    })
                    .collect();
                let mut t = OffsetFetchResponseTopics::default().with_partitions(partitions);
                if v >= 10 {
                    t.topic_id = id;
                } else {
                    t.name = TopicName::from(name);
                }
                t
            })
            .collect();
        groups.push(
            OffsetFetchResponseGroup::default().with_group_id(f.group_id).with_error_code(f.error).with_topics(topics),
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}

fn fetch_group(
    cluster: &mut FakeCluster,
    ctx: &Ctx,
    group_id: GroupId,
    member_id: Option<String>,
    epoch: i32,
    asked: Asked,
) -> Fetched {
    let gid = group_id.to_string();
    let error = coordinator_error(cluster, ctx.broker, &gid).or_else(|| match cluster.groups.groups.get(&gid) {
        Some(Group::Classic(g)) if g.state == super::classic::ClassicState::Dead => Some(ErrorCode::GroupIdNotFound),
        Some(Group::Consumer(g)) => g.validate_offset_fetch(member_id.as_deref(), epoch).err(),
        _ => None,
    });
    if let Some(error) = error {
        return Fetched { group_id, error, topics: Vec::new() };
    }
    let committed = cluster.groups.offsets.get(&gid).cloned().unwrap_or_default();
    let by_id = ctx.version >= 10;
    let asked = match asked {
        Some(a) => a,
        None => {
            // Everything committed, topic by topic.
            let mut all: Vec<(Option<String>, Uuid, Vec<i32>)> = Vec::new();
            for (topic, p) in committed.keys() {
                match all.last_mut() {
                    Some((Some(n), _, ps)) if n == topic => ps.push(*p),
                    _ => {
                        let id = cluster.topic_id(topic).unwrap_or(Uuid::ZERO);
                        if by_id && id.is_zero() {
                            continue;
                        }
                        all.push((Some(topic.clone()), id, vec![*p]));
                    }
                }
            }
            all
        }
    };
    let mut topics = Vec::new();
    for (name, id, partitions) in asked {
        let name = name.or_else(|| cluster.topic_name_by_id(id));
        let parts = partitions
            .into_iter()
            .map(|p| {
                let Some(n) = name.as_deref() else { return (p, None, ErrorCode::UnknownTopicId) };
                if let Some(code) = cluster.take_partition_error(ApiKey::OffsetFetch, ctx.broker, n, Some(p)) {
                    return (p, None, code);
                }
                (p, committed.get(&(n.to_string(), p)).cloned(), ErrorCode::None)
            })
            .collect();
        topics.push((name.unwrap_or_default(), id, parts));
    }
    Fetched { group_id, error: ErrorCode::None, topics }
}

impl FakeCluster {
    /// The offsets committed for `group`, by topic and partition (empty for an unknown group).
    pub fn committed_offsets(&self, group: &str) -> std::collections::BTreeMap<(String, i32), i64> {
        self.groups
            .offsets
            .get(group)
            .map(|o| o.iter().map(|(k, c)| (k.clone(), c.offset)).collect())
            .unwrap_or_default()
    }
}
