//! InitProducerId, and the transaction coordinators' state shared with AddPartitionsToTxn and
//! EndTxn.
//!
//! - Without a transactional id: a fresh producer id at epoch 0 from any broker (Kafka does the
//!   same; idempotent producers bump their own epoch on KIP-360 recovery).
//! - With one: only its coordinator answers (NOT_COORDINATOR elsewhere); the first call gets
//!   a fresh id, later calls bump the epoch, fencing older producers (PRODUCER_FENCED, or
//!   INVALID_PRODUCER_EPOCH before v4). A request naming its current id and epoch (KIP-360)
//!   must match them (or the previous ones, for a retried bump). An open transaction is
//!   aborted first and the call answers CONCURRENT_TRANSACTIONS, as Kafka does; the client
//!   retries. An exhausted epoch moves to a new producer id.
//! - Simplified: coordinator state survives broker restarts and moves with the coordinator;
//!   transaction timeouts are validated but never expire a transaction; no 2PC (v6 flags).

use std::collections::{BTreeMap, BTreeSet};

use sansa::protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use sansa::protocol::{ErrorCode, ProducerId};

use super::{end_txn, find_coordinator, Ctx, FakeCluster};

/// Kafka's `transaction.max.timeout.ms` default.
pub(crate) const MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;

/// Where a transactional id's transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnStatus {
    Empty,
    Ongoing,
    CompleteCommit,
    CompleteAbort,
}

/// One transactional id's state at its coordinator.
#[derive(Debug, Clone)]
pub(crate) struct TxnMeta {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    /// The id and epoch before the last InitProducerId, so that its retry is recognised.
    pub(crate) prev_producer_id: i64,
    pub(crate) prev_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) status: TxnStatus,
    /// Partitions in the open transaction.
    pub(crate) partitions: BTreeSet<(String, i32)>,
}

/// Producer id allocation and the transactional ids, cluster-wide.
#[derive(Debug, Clone)]
pub(crate) struct TxnCoordinator {
    next_producer_id: i64,
    pub(crate) txns: BTreeMap<String, TxnMeta>,
}

impl Default for TxnCoordinator {
    fn default() -> Self {
        TxnCoordinator { next_producer_id: 1000, txns: BTreeMap::new() }
    }
}

impl TxnCoordinator {
    pub(crate) fn new_producer_id(&mut self) -> i64 {
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        id
    }

    /// A transactional batch was appended: its partition joins the producer's transaction.
    pub(crate) fn join_on_produce(&mut self, producer_id: i64, topic: &str, partition: i32) {
        if let Some(meta) = self.txns.values_mut().find(|m| m.producer_id == producer_id) {
            meta.partitions.insert((topic.to_string(), partition));
            meta.status = TxnStatus::Ongoing;
        }
    }
}

/// PRODUCER_FENCED as versions before `modern` spell it.
pub(crate) fn fenced(version: i16, modern: i16) -> ErrorCode {
    if version < modern {
        ErrorCode::InvalidProducerEpoch
    } else {
        ErrorCode::ProducerFenced
    }
}

/// The coordinator check for a transactional id: `Some(error)` when this broker may not
/// answer for it.
pub(crate) fn check_coordinator(cluster: &FakeCluster, broker: i32, transactional_id: &str) -> Option<ErrorCode> {
    match find_coordinator::coordinator_for(cluster, transactional_id) {
        None => Some(ErrorCode::CoordinatorNotAvailable),
        Some(b) if b != broker => Some(ErrorCode::NotCoordinator),
        Some(_) => None,
    }
}

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let reply = |code: ErrorCode, pid: i64, epoch: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    };
    let Some(tid) = req.transactional_id.as_ref().map(|t| t.as_str().to_string()) else {
        let pid = cluster.txns.new_producer_id();
        return reply(ErrorCode::None, pid, 0);
    };
    if tid.is_empty() {
        return reply(ErrorCode::InvalidRequest, -1, -1);
    }
    if let Some(code) = check_coordinator(cluster, ctx.broker, &tid) {
        return reply(code, -1, -1);
    }
    if req.transaction_timeout_ms <= 0 || req.transaction_timeout_ms > MAX_TRANSACTION_TIMEOUT_MS {
        return reply(ErrorCode::InvalidTransactionTimeout, -1, -1);
    }
    let expected = (*req.producer_id >= 0 && ctx.version >= 3).then_some((*req.producer_id, req.producer_epoch));
    let Some(meta) = cluster.txns.txns.get(&tid).cloned() else {
        if expected.is_some() {
            // Kafka: an id and epoch for a transactional id it has no state for.
            return reply(ErrorCode::InvalidProducerIdMapping, -1, -1);
        }
        let pid = cluster.txns.new_producer_id();
        cluster.txns.txns.insert(
            tid,
            TxnMeta {
                producer_id: pid,
                epoch: 0,
                prev_producer_id: -1,
                prev_epoch: -1,
                timeout_ms: req.transaction_timeout_ms,
                status: TxnStatus::Empty,
                partitions: BTreeSet::new(),
            },
        );
        return reply(ErrorCode::None, pid, 0);
    };
    if let Some((pid, epoch)) = expected {
        let current = pid == meta.producer_id && epoch == meta.epoch;
        let retried = pid == meta.prev_producer_id && epoch == meta.prev_epoch;
        if retried && meta.status != TxnStatus::Ongoing {
            return reply(ErrorCode::None, meta.producer_id, meta.epoch);
        }
        if !current {
            return reply(fenced(ctx.version, 4), -1, -1);
        }
    }
    if meta.status == TxnStatus::Ongoing {
        // Fence the producer and abort its transaction; the client retries.
        let now_ms = cluster.wall_clock_ms(ctx.now);
        bump(cluster, &tid, req.transaction_timeout_ms);
        end_txn::write_markers(cluster, &tid, false, now_ms);
        return reply(ErrorCode::ConcurrentTransactions, -1, -1);
    }
    let (pid, epoch) = bump(cluster, &tid, req.transaction_timeout_ms);
    reply(ErrorCode::None, pid, epoch)
}

/// Bumps a transactional id's epoch (a new producer id when exhausted); returns the new pair.
fn bump(cluster: &mut FakeCluster, tid: &str, timeout_ms: i32) -> (i64, i16) {
    let fresh = cluster.txns.next_producer_id;
    let Some(meta) = cluster.txns.txns.get_mut(tid) else { return (-1, -1) };
    meta.prev_producer_id = meta.producer_id;
    meta.prev_epoch = meta.epoch;
    meta.timeout_ms = timeout_ms;
    if meta.epoch >= i16::MAX - 1 {
        meta.producer_id = fresh;
        meta.epoch = 0;
        cluster.txns.next_producer_id += 1;
    } else {
        meta.epoch += 1;
    }
    (meta.producer_id, meta.epoch)
}
