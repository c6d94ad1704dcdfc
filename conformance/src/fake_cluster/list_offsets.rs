//! ListOffsets: earliest (-2), latest (-1; the last stable offset for read_committed), max
//! timestamp (-3, v7+: the first record holding the largest timestamp), earliest local (-4,
//! v8+: the log start, there being no tiered storage), latest tiered (-5, v9+: -1, nothing is
//! tiered) and by timestamp (the first record at or after it, below the high watermark or
//! last stable offset; -1 when none). Answers carry the leader epoch the offset was written in
//! (v4+). Latest and lookups by time stop at the high watermark. NOT_LEADER_OR_FOLLOWER off the leader; FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH
//! against `current_leader_epoch`.

use sansa::protocol::messages::list_offsets::response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use sansa::protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sansa::protocol::records::{decode_batches, DecodeOptions};
use sansa::protocol::{ApiKey, ErrorCode};

use super::replication::batch_epoch;
use super::{Ctx, FakeCluster, Partition};

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let version = ctx.version;
    let read_committed = version >= 2 && req.isolation_level == 1;
    let mut topics = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let injected =
                cluster.take_partition_error(ApiKey::ListOffsets, ctx.broker, t.name.as_str(), Some(p.partition_index));
            match (injected, cluster.partition(t.name.as_str(), p.partition_index)) {
                (Some(code), _) => r.error_code = code,
                (None, None) => r.error_code = ErrorCode::UnknownTopicOrPartition,
                (None, Some(part)) if part.leader != ctx.broker => r.error_code = ErrorCode::NotLeaderOrFollower,
                (None, Some(part))
                    if version >= 4 && p.current_leader_epoch >= 0 && p.current_leader_epoch < part.leader_epoch =>
                {
                    r.error_code = ErrorCode::FencedLeaderEpoch
                }
                (None, Some(part)) if version >= 4 && p.current_leader_epoch > part.leader_epoch => {
                    r.error_code = ErrorCode::UnknownLeaderEpoch
                }
                (None, Some(part)) => {
                    let (offset, timestamp, epoch) = lookup(part, p.timestamp, read_committed);
                    r.offset = offset;
                    r.timestamp = timestamp;
                    if version >= 4 {
                        r.leader_epoch = epoch;
                    }
                }
            }
            partitions.push(r);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The leader epoch of the batch holding `offset`, or the current one past the last batch.
fn epoch_at(part: &Partition, offset: i64) -> i32 {
    part.batches
        .iter()
        .find(|b| b.next_offset > offset && b.base_offset <= offset)
        .map_or(part.leader_epoch, |b| batch_epoch(&b.bytes))
}

/// (offset, timestamp, leader epoch) for one lookup.
fn lookup(part: &Partition, timestamp: i64, read_committed: bool) -> (i64, i64, i32) {
    let fetchable = if read_committed { part.last_stable_offset() } else { part.high_watermark() };
    match timestamp {
        -2 | -4 => (part.log_start_offset, -1, epoch_at(part, part.log_start_offset)),
        -1 => (fetchable, -1, part.leader_epoch),
        -5 => (-1, -1, -1),
        -3 => {
            let mut best: Option<(i64, i64)> = None;
            let max = part.batches.iter().map(|b| b.max_timestamp).max().unwrap_or(-1);
            for (offset, ts) in records(part, max) {
                if best.is_none_or(|(_, t)| ts > t) {
                    best = Some((offset, ts));
                }
            }
            best.map_or((-1, -1, -1), |(o, t)| (o, t, epoch_at(part, o)))
        }
        ts => {
            let found = records(part, ts).find(|(_, t)| *t >= ts);
            match found {
                Some((o, t)) if o < fetchable => (o, t, epoch_at(part, o)),
                _ => (-1, -1, -1),
            }
        }
    }
}

/// (offset, timestamp) of the data records at or after the log start, in offset order, of the
/// batches whose max timestamp reaches `min_ts`.
fn records(part: &Partition, min_ts: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
    let start = part.log_start_offset;
    part.batches.iter().filter(move |b| b.next_offset > start && b.max_timestamp >= min_ts).flat_map(move |b| {
        decode_batches(b.bytes.clone(), &DecodeOptions::new())
            .flatten()
            .filter(|batch| !batch.is_control())
            .flat_map(|batch| batch.into_records().into_iter().map(|r| (r.offset, r.timestamp)))
            .filter(move |(o, _)| *o >= start)
            .collect::<Vec<_>>()
    })
}
