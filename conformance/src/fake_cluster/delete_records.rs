//! DeleteRecords: moves a partition's log start offset up to the requested offset (-1: the
//! high watermark), dropping whole batches below it; the answer's low watermark is the new log
//! start. Offsets beyond the high watermark (or negative other than -1) are
//! OFFSET_OUT_OF_RANGE; off the leader NOT_LEADER_OR_FOLLOWER. Producers left without batches
//! in the log and without an open transaction are forgotten, as Kafka's producer state is.

use sansa::protocol::messages::delete_records::response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use sansa::protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sansa::protocol::{ApiKey, ErrorCode};

use super::{Ctx, FakeCluster};

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut r =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
            let injected = cluster.take_partition_error(
                ApiKey::DeleteRecords,
                ctx.broker,
                t.name.as_str(),
                Some(p.partition_index),
            );
            match (injected, cluster.partition_mut(t.name.as_str(), p.partition_index)) {
                (Some(code), _) => r.error_code = code,
                (None, None) => r.error_code = ErrorCode::UnknownTopicOrPartition,
                (None, Some(part)) if part.leader != ctx.broker => r.error_code = ErrorCode::NotLeaderOrFollower,
                (None, Some(part)) => {
                    let hw = part.high_watermark();
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        r.error_code = ErrorCode::OffsetOutOfRange;
                    } else {
                        if target > part.log_start_offset {
                            part.log_start_offset = target;
                            part.batches.retain(|b| b.next_offset > target);
                            part.aborted.retain(|a| a.last_offset >= target);
                            part.producers.retain(|_, e| {
                                e.txn_first_offset.is_some()
                                    || e.batches.back().is_some_and(|b| b.last_offset >= target)
                            });
                        }
                        r.low_watermark = part.log_start_offset;
                    }
                }
            }
            partitions.push(r);
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
