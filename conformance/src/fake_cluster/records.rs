//! Read access to the stored logs, for invariant checks: every data record of a partition's
//! leader log with the producer fields of its batch.

use bytes::Bytes;
use sansa::protocol::records::{decode_batches, DecodeOptions};

use super::replication::batch_epoch;
use super::FakeCluster;

/// One data record as stored in a partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    /// The record's timestamp (the append time on LogAppendTime topics).
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header keys and values, in wire order.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// -1 for a producer without idempotence.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The record's own sequence number (the batch's base sequence plus its offset delta);
    /// -1 without idempotence.
    pub sequence: i32,
    /// The leader epoch the record was written in.
    pub leader_epoch: i32,
    pub transactional: bool,
    /// Part of an aborted transaction (read_committed consumers never see it).
    pub aborted: bool,
    /// Below the high watermark: visible to consumers and safe from truncation by a clean
    /// election.
    pub committed: bool,
}

impl FakeCluster {
    /// The data records of a partition's log (the leader's, from the log start, including
    /// those above the high watermark; transaction markers left out), in offset order.
    /// `None` when the partition does not exist.
    pub fn partition_log(&self, topic: &str, partition: i32) -> Option<impl Iterator<Item = StoredRecord> + '_> {
        let part = self.partition(topic, partition)?;
        let start = part.log_start_offset;
        let hw = part.high_watermark();
        let records = part.batches.iter().filter(move |b| b.next_offset > start).flat_map(move |stored| {
            let leader_epoch = batch_epoch(&stored.bytes);
            decode_batches(stored.bytes.clone(), &DecodeOptions::new())
                .flatten()
                .filter(|b| !b.is_control())
                .flat_map(move |b| {
                    let (pid, epoch, base_seq) = (b.producer_id(), b.producer_epoch(), b.base_sequence());
                    let (base, transactional) = (b.base_offset(), b.is_transactional());
                    b.into_records().into_iter().map(move |r| {
                        let sequence = if base_seq < 0 {
                            -1
                        } else {
                            // Sequences wrap at i32::MAX, as Kafka's do.
                            let delta = i32::try_from(r.offset - base).unwrap_or(0);
                            ((i64::from(base_seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
                        };
                        let aborted = transactional
                            && part.aborted.iter().any(|a| {
                                a.producer_id == pid && a.first_offset <= r.offset && r.offset < a.last_offset
                            });
                        StoredRecord {
                            offset: r.offset,
                            timestamp: r.timestamp,
                            headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                            key: r.key,
                            value: r.value,
                            producer_id: pid,
                            producer_epoch: epoch,
                            sequence,
                            leader_epoch,
                            transactional,
                            aborted,
                            committed: r.offset < hw,
                        }
                    })
                })
                .filter(move |r| r.offset >= start)
                .collect::<Vec<_>>()
        });
        Some(records)
    }
}
