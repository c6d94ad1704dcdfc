//! Fetch: whole stored batches from the one containing `fetch_offset`, within
//! `partition_max_bytes` and `max_bytes` (always at least one batch, as Kafka does). Topics by
//! name before v13, by id from v13. Answers at once: `max_wait_ms` and `min_bytes` are ignored
//! in this first cut, so an empty answer comes back immediately. No fetch sessions: the
//! response's session id is always 0, so clients send full requests.

use bytes::BytesMut;
use sansa::protocol::messages::fetch::response::{FetchableTopicResponse, PartitionData};
use sansa::protocol::messages::{FetchRequest, FetchResponse};
use sansa::protocol::ErrorCode;

use super::FakeCluster;

pub(crate) fn handle(cluster: &FakeCluster, broker: i32, version: i16, req: FetchRequest) -> FetchResponse {
    let mut budget = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    let mut responses = Vec::new();
    for t in req.topics {
        let name =
            if version >= 13 { cluster.topic_name_by_id(t.topic_id) } else { Some(t.topic.as_str().to_string()) };
        let topic = name.as_ref().and_then(|n| cluster.topics.get(n));
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut r = PartitionData::default().with_partition_index(p.partition);
            let Some(topic) = topic else {
                r.error_code =
                    if version >= 13 { ErrorCode::UnknownTopicId } else { ErrorCode::UnknownTopicOrPartition };
                partitions.push(r);
                continue;
            };
            let Some(part) = usize::try_from(p.partition).ok().and_then(|i| topic.partitions.get(i)) else {
                r.error_code = ErrorCode::UnknownTopicOrPartition;
                partitions.push(r);
                continue;
            };
            if part.leader != broker {
                r.error_code = ErrorCode::NotLeaderOrFollower;
                partitions.push(r);
                continue;
            }
            r.high_watermark = part.next_offset;
            r.last_stable_offset = part.next_offset;
            r.log_start_offset = part.log_start_offset;
            if p.fetch_offset < part.log_start_offset || p.fetch_offset > part.next_offset {
                r.error_code = ErrorCode::OffsetOutOfRange;
                partitions.push(r);
                continue;
            }
            let limit = if p.partition_max_bytes <= 0 { usize::MAX } else { p.partition_max_bytes as usize };
            let mut out = BytesMut::new();
            for b in part.batches.iter().filter(|b| b.next_offset > p.fetch_offset) {
                let fits = out.len() + b.bytes.len() <= limit && b.bytes.len() <= budget;
                if !out.is_empty() && !fits {
                    break;
                }
                if out.is_empty() && !fits && !responses_empty(&responses, &partitions) {
                    break;
                }
                out.extend_from_slice(&b.bytes);
                budget = budget.saturating_sub(b.bytes.len());
            }
            r.records = Some(out.freeze());
            partitions.push(r);
        }
        let mut tr = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            tr.topic_id = t.topic_id;
        } else {
            tr.topic = t.topic;
        }
        responses.push(tr);
    }
    FetchResponse::default().with_responses(responses)
}

/// Whether nothing has been returned yet in this response, in which case one oversized batch
/// is still returned so the consumer can make progress.
fn responses_empty(done: &[FetchableTopicResponse], current: &[PartitionData]) -> bool {
    let empty = |p: &PartitionData| p.records.as_ref().is_none_or(|r| r.is_empty());
    done.iter().all(|t| t.partitions.iter().all(empty)) && current.iter().all(empty)
}
