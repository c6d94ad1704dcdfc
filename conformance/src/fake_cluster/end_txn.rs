//! EndTxn: commits or aborts the transactional id's open transaction by writing COMMIT or ABORT
//! control batches to each of its partitions at once (markers are synchronous here, so the
//! PREPARE states are never seen). Checks like Kafka's coordinator: NOT_COORDINATOR,
//! INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2),
//! INVALID_TXN_STATE for ending a transaction that is not open, and success for a retried end.
//! From v5 (transactions v2) the epoch is bumped with the markers and returned.

use sansa::protocol::messages::{EndTxnRequest, EndTxnResponse};
use sansa::protocol::records::{BatchParams, EndTxnMarker};
use sansa::protocol::{ErrorCode, ProducerId};

use bytes::BytesMut;

use super::init_producer_id::{check_coordinator, fenced, TxnStatus};
use super::produce::{append_batch, AbortedTxn};
use super::{fetch, Ctx, FakeCluster};

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: EndTxnRequest) -> EndTxnResponse {
    let tid = req.transactional_id.as_str().to_string();
    let code = end(cluster, ctx, &tid, *req.producer_id, req.producer_epoch, req.committed);
    let mut r = EndTxnResponse::default().with_error_code(code);
    if ctx.version >= 5 {
        let meta = cluster.txns.txns.get(&tid).filter(|_| code == ErrorCode::None);
        r.producer_id = ProducerId(meta.map_or(-1, |m| m.producer_id));
        r.producer_epoch = meta.map_or(-1, |m| m.epoch);
    }
    r
}

fn end(cluster: &mut FakeCluster, ctx: Ctx, tid: &str, pid: i64, epoch: i16, commit: bool) -> ErrorCode {
    if let Some(code) = check_coordinator(cluster, ctx.broker, tid) {
        return code;
    }
    let Some(meta) = cluster.txns.txns.get_mut(tid) else { return ErrorCode::InvalidProducerIdMapping };
    if pid != meta.producer_id {
        return ErrorCode::InvalidProducerIdMapping;
    }
    let tv2_retry = ctx.version >= 5 && epoch == meta.prev_epoch && meta.prev_producer_id == pid;
    if epoch != meta.epoch && !tv2_retry {
        return fenced(ctx.version, 2);
    }
    match (meta.status, commit) {
        (TxnStatus::Ongoing, _) if !tv2_retry => {}
        (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => return ErrorCode::None,
        (TxnStatus::Empty, false) if ctx.version >= 5 => {
            // Transactions v2 lets a client abort an empty transaction (it still bumps).
        }
        _ => return ErrorCode::InvalidTxnState,
    }
    if ctx.version >= 5 {
        meta.prev_producer_id = meta.producer_id;
        meta.prev_epoch = meta.epoch;
        meta.epoch = meta.epoch.saturating_add(1);
    }
    let now_ms = cluster.wall_clock_ms(ctx.now);
    write_markers(cluster, tid, commit, now_ms);
    ErrorCode::None
}

/// Writes the end markers of `tid`'s transaction to its partitions and closes it.
pub(crate) fn write_markers(cluster: &mut FakeCluster, tid: &str, commit: bool, now_ms: i64) {
    let Some(meta) = cluster.txns.txns.get_mut(tid) else { return };
    let partitions = std::mem::take(&mut meta.partitions);
    meta.status = if commit { TxnStatus::CompleteCommit } else { TxnStatus::CompleteAbort };
    let (pid, epoch) = (meta.producer_id, meta.epoch);
    let marker = if commit { EndTxnMarker::commit(0) } else { EndTxnMarker::abort(0) };
    for (topic, index) in partitions {
        let Some(p) = cluster.partition_mut(&topic, index) else { continue };
        let mut out = BytesMut::new();
        let params = BatchParams::new().producer(pid, epoch, -1);
        if marker.write_batch(&mut out, params, now_ms).is_err() {
            continue;
        }
        let offset = append_batch(p, &out, 0, now_ms, None);
        let entry = p.producers.entry(pid).or_default();
        entry.epoch = entry.epoch.max(epoch);
        if let Some(first) = entry.txn_first_offset.take() {
            if !commit {
                p.aborted.push(AbortedTxn { producer_id: pid, first_offset: first, last_offset: offset });
            }
        }
    }
    fetch::wake(cluster);
}

impl FakeCluster {
    /// Writes a whole transaction to one partition at once, as another application's
    /// transactional producer would (a fresh producer id, the records, then the COMMIT or
    /// ABORT marker), for tests of read_committed consumers. Returns the offsets of the first
    /// record and of the marker; `None` when the partition does not exist or has no leader.
    /// Meant for instant replication: the records and the marker are never split by a
    /// truncating election.
    pub fn write_transaction(
        &mut self,
        now: std::time::Instant,
        topic: &str,
        partition: i32,
        values: &[&[u8]],
        commit: bool,
    ) -> Option<(i64, i64)> {
        if values.is_empty() || self.partition(topic, partition).is_none_or(|p| p.leader < 0) {
            return None;
        }
        let now_ms = self.wall_clock_ms(now);
        self.side_txns += 1;
        // Far above the ids InitProducerId hands out, so never one of theirs.
        let pid = (1 << 40) + self.side_txns as i64;
        let mut data = BytesMut::new();
        let mut enc = sansa::protocol::records::RecordBatchEncoder::new();
        let mut b = enc.begin(&mut data, BatchParams::new().producer(pid, 0, 0).transactional(true)).ok()?;
        for v in values {
            b.append(now_ms, None, Some(v), &[]).ok()?;
        }
        b.finish().ok()?;
        let marker = if commit { EndTxnMarker::commit(0) } else { EndTxnMarker::abort(0) };
        let mut control = BytesMut::new();
        marker.write_batch(&mut control, BatchParams::new().producer(pid, 0, -1), now_ms).ok()?;
        let p = self.partition_mut(topic, partition)?;
        let first = append_batch(p, &data, values.len() as i32 - 1, now_ms, None);
        let last = append_batch(p, &control, 0, now_ms, None);
        if !commit {
            p.aborted.push(AbortedTxn { producer_id: pid, first_offset: first, last_offset: last });
        }
        fetch::wake(self);
        Some((first, last))
    }
}
