//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3: the last batch's base offset
//! and max timestamp, approximate) and by timestamp (first record at or after it).

use sansa::protocol::messages::list_offsets::response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use sansa::protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sansa::protocol::records::{decode_batches, DecodeOptions};
use sansa::protocol::ErrorCode;

use super::{FakeCluster, Partition};

pub(crate) fn handle(cluster: &FakeCluster, broker: i32, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let topic = cluster.topics.get(t.name.as_str());
        let partitions = t
            .partitions
            .into_iter()
            .map(|p| {
                let mut r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                let part =
                    topic.and_then(|tp| usize::try_from(p.partition_index).ok().and_then(|i| tp.partitions.get(i)));
                match part {
                    None => r.error_code = ErrorCode::UnknownTopicOrPartition,
                    Some(part) if part.leader != broker => r.error_code = ErrorCode::NotLeaderOrFollower,
                    Some(part) => {
                        let (offset, timestamp) = lookup(part, p.timestamp);
                        r.offset = offset;
                        r.timestamp = timestamp;
                        if version >= 4 && offset >= 0 {
                            r.leader_epoch = part.leader_epoch;
                        }
                    }
                }
                r
            })
            .collect();
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(part: &Partition, timestamp: i64) -> (i64, i64) {
    match timestamp {
        -2 => (part.log_start_offset, -1),
        -1 => (part.next_offset, -1),
        -3 => part.batches.last().map_or((-1, -1), |b| (b.base_offset, b.max_timestamp)),
        ts => {
            for b in part.batches.iter().filter(|b| b.max_timestamp >= ts) {
                for batch in decode_batches(b.bytes.clone(), &DecodeOptions::new()).flatten() {
                    if let Some(rec) = batch.records().iter().find(|r| r.timestamp >= ts) {
                        return (rec.offset, rec.timestamp);
                    }
                }
            }
            (-1, -1)
        }
    }
}
