//! Produce: validates the v2 batches, assigns offsets by patching each batch's base offset and
//! partition leader epoch (the CRC does not cover them) and appends. Topics by name before v13,
//! by id from v13. acks=0 gets no response. acks is otherwise not checked (no replication).

use bytes::{Bytes, BytesMut};
use sansa::protocol::messages::produce::response::{PartitionProduceResponse, TopicProduceResponse};
use sansa::protocol::messages::{ProduceRequest, ProduceResponse};
use sansa::protocol::records::{decode_batches, DecodeOptions};
use sansa::protocol::{ErrorCode, StrBytes};

use super::{FakeCluster, StoredBatch};

pub(crate) fn handle(
    cluster: &mut FakeCluster,
    broker: i32,
    version: i16,
    req: ProduceRequest,
) -> Option<ProduceResponse> {
    let mut responses = Vec::new();
    for t in req.topic_data {
        let name = if version >= 13 { cluster.topic_name_by_id(t.topic_id) } else { Some(t.name.as_str().to_string()) };
        let unknown = if version >= 13 { ErrorCode::UnknownTopicId } else { ErrorCode::UnknownTopicOrPartition };
        let mut partitions = Vec::new();
        for p in t.partition_data {
            let mut r = PartitionProduceResponse::default().with_index(p.index);
            let Some(partition) = name
                .as_ref()
                .and_then(|n| cluster.topics.get_mut(n))
                .and_then(|topic| usize::try_from(p.index).ok().and_then(|i| topic.partitions.get_mut(i)))
            else {
                r.error_code = if name.as_ref().is_some_and(|n| cluster.topics.contains_key(n)) {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    unknown
                };
                partitions.push(r);
                continue;
            };
            if partition.leader != broker {
                r.error_code = ErrorCode::NotLeaderOrFollower;
                partitions.push(r);
                continue;
            }
            match append(partition, p.records.unwrap_or_default()) {
                Ok(base) => {
                    r.base_offset = base;
                    r.log_start_offset = partition.log_start_offset;
                }
                Err(message) => {
                    r.error_code = ErrorCode::CorruptMessage;
                    if version >= 8 {
                        r.error_message = Some(StrBytes::from(message));
                    }
                }
            }
            partitions.push(r);
        }
        let mut tr = TopicProduceResponse::default().with_partition_responses(partitions);
        if version >= 13 {
            tr.topic_id = t.topic_id;
        } else {
            tr.name = t.name;
        }
        responses.push(tr);
    }
    (req.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// Validates and appends the batches in `records`; returns the first assigned offset.
pub(crate) fn append(partition: &mut super::Partition, records: Bytes) -> Result<i64, String> {
    if records.is_empty() {
        return Err("no record batches".to_string());
    }
    let mut batches = decode_batches(records.clone(), &DecodeOptions::new());
    let mut parsed = Vec::new();
    let mut pos = 0usize;
    for b in batches.by_ref() {
        let b = b.map_err(|e| e.to_string())?;
        if b.magic() != 2 {
            return Err(format!("unsupported magic {}", b.magic()));
        }
        let size = b.size_in_bytes();
        parsed.push((pos, size, b.last_offset_delta(), b.max_timestamp()));
        pos += size;
    }
    if batches.partial().is_some() || pos != records.len() {
        return Err("truncated record batch".to_string());
    }
    let first = partition.next_offset;
    for (start, size, last_delta, max_ts) in parsed {
        let mut bytes = BytesMut::from(&records[start..start + size]);
        let base = partition.next_offset;
        bytes[0..8].copy_from_slice(&base.to_be_bytes());
        bytes[12..16].copy_from_slice(&partition.leader_epoch.to_be_bytes());
        let next = base + i64::from(last_delta) + 1;
        partition.batches.push(StoredBatch {
            base_offset: base,
            next_offset: next,
            max_timestamp: max_ts,
            bytes: bytes.freeze(),
        });
        partition.next_offset = next;
    }
    Ok(first)
}
