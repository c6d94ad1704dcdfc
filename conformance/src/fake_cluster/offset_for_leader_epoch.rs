//! OffsetForLeaderEpoch: the end offset of a leader epoch on the partition's leader, from the
//! leader epoch cache ([`super::Partition::epoch_starts`]), as Kafka's leader computes it: the
//! current epoch ends at the log end; an older epoch ends where the next known epoch starts,
//! answered with the largest known epoch not above it (the requested one when it is older
//! than all); an unknown newer epoch or -1 is (-1, -1). Consumers use it to detect truncation
//! after a leader change (KIP-320).
//!
//! NOT_LEADER_OR_FOLLOWER off the leader; `current_leader_epoch` (v2+) older than the leader's
//! is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH. Errors carry epoch and offset -1.

use sansa::protocol::messages::offset_for_leader_epoch::response::{EpochEndOffset, OffsetForLeaderTopicResult};
use sansa::protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use sansa::protocol::{ApiKey, ErrorCode};

use super::{Ctx, FakeCluster, Partition};

pub(crate) fn handle(
    cluster: &mut FakeCluster,
    ctx: Ctx,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut r = EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
            let current = if ctx.version >= 2 { p.current_leader_epoch } else { -1 };
            let injected = cluster.take_partition_error(
                ApiKey::OffsetForLeaderEpoch,
                ctx.broker,
                t.topic.as_str(),
                Some(p.partition),
            );
            match (injected, cluster.partition(t.topic.as_str(), p.partition)) {
                (Some(code), _) => r.error_code = code,
                (None, None) => r.error_code = ErrorCode::UnknownTopicOrPartition,
                (None, Some(part)) if part.leader != ctx.broker => r.error_code = ErrorCode::NotLeaderOrFollower,
                (None, Some(part)) if current >= 0 && current < part.leader_epoch => {
                    r.error_code = ErrorCode::FencedLeaderEpoch
                }
                (None, Some(part)) if current > part.leader_epoch => r.error_code = ErrorCode::UnknownLeaderEpoch,
                (None, Some(part)) => {
                    let (epoch, end) = end_offset_for(part, p.leader_epoch);
                    r.leader_epoch = epoch;
                    r.end_offset = end;
                }
            }
            partitions.push(r);
        }
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// (epoch, end offset) for `requested` on the leader of `part`.
pub(crate) fn end_offset_for(part: &Partition, requested: i32) -> (i32, i64) {
    let epochs = part.epoch_starts();
    if requested < 0 {
        return (-1, -1);
    }
    if epochs.last().is_some_and(|(e, _)| *e == requested) {
        return (requested, part.next_offset);
    }
    let Some((_, next_start)) = epochs.iter().find(|(e, _)| *e > requested) else { return (-1, -1) };
    match epochs.iter().rev().find(|(e, _)| *e <= requested) {
        Some((floor, _)) => (*floor, *next_start),
        None => (requested, *next_start),
    }
}
