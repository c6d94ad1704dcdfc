//! AddPartitionsToTxn: v0-3 (one transaction from a client) and v4+ (batches of transactions;
//! `verify_only` checks membership instead of adding). Checks like Kafka's coordinator:
//! NOT_COORDINATOR, INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED (INVALID_PRODUCER_EPOCH
//! before v2); unknown partitions are UNKNOWN_TOPIC_OR_PARTITION and the rest of that request
//! OPERATION_NOT_ATTEMPTED. Partitions of topics without a leader are still accepted.

use sansa::protocol::messages::add_partitions_to_txn::request::AddPartitionsToTxnTopic;
use sansa::protocol::messages::add_partitions_to_txn::response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use sansa::protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use sansa::protocol::ErrorCode;

use super::init_producer_id::{check_coordinator, fenced, TxnStatus};
use super::{Ctx, FakeCluster};

pub(crate) fn handle(
    cluster: &mut FakeCluster,
    ctx: Ctx,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let tid = req.v3_and_below_transactional_id.as_str().to_string();
        let topics = add(
            cluster,
            ctx,
            &tid,
            *req.v3_and_below_producer_id,
            req.v3_and_below_producer_epoch,
            false,
            req.v3_and_below_topics,
        );
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics);
    }
    let mut results = Vec::new();
    for t in req.transactions {
        let tid = t.transactional_id.as_str().to_string();
        let topics = add(cluster, ctx, &tid, *t.producer_id, t.producer_epoch, t.verify_only, t.topics);
        results.push(
            AddPartitionsToTxnResult::default().with_transactional_id(t.transactional_id).with_topic_results(topics),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

fn add(
    cluster: &mut FakeCluster,
    ctx: Ctx,
    tid: &str,
    pid: i64,
    epoch: i16,
    verify_only: bool,
    topics: Vec<AddPartitionsToTxnTopic>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let whole = check(cluster, ctx, tid, pid, epoch);
    let unknown = |c: &FakeCluster, t: &AddPartitionsToTxnTopic, p: i32| c.partition(t.name.as_str(), p).is_none();
    let any_unknown = topics.iter().any(|t| t.partitions.iter().any(|p| unknown(cluster, t, *p)));
    let mut out = Vec::new();
    for t in &topics {
        let mut parts = Vec::new();
        for &p in &t.partitions {
            let code = if let Some(code) = whole {
                code
            } else if unknown(cluster, t, p) {
                ErrorCode::UnknownTopicOrPartition
            } else if any_unknown {
                ErrorCode::OperationNotAttempted
            } else if verify_only {
                let member = cluster
                    .txns
                    .txns
                    .get(tid)
                    .is_some_and(|m| m.partitions.contains(&(t.name.as_str().to_string(), p)));
                if member {
                    ErrorCode::None
                } else {
                    ErrorCode::InvalidTxnState
                }
            } else {
                if let Some(meta) = cluster.txns.txns.get_mut(tid) {
                    meta.partitions.insert((t.name.as_str().to_string(), p));
                    meta.status = TxnStatus::Ongoing;
                }
                ErrorCode::None
            };
            parts.push(
                AddPartitionsToTxnPartitionResult::default().with_partition_index(p).with_partition_error_code(code),
            );
        }
        out.push(AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(parts));
    }
    out
}

/// The error every partition gets, if the transaction itself is refused.
fn check(cluster: &FakeCluster, ctx: Ctx, tid: &str, pid: i64, epoch: i16) -> Option<ErrorCode> {
    if let Some(code) = check_coordinator(cluster, ctx.broker, tid) {
        return Some(code);
    }
    let Some(meta) = cluster.txns.txns.get(tid) else { return Some(ErrorCode::InvalidProducerIdMapping) };
    if meta.producer_id != pid {
        return Some(ErrorCode::InvalidProducerIdMapping);
    }
    if meta.epoch != epoch {
        return Some(fenced(ctx.version, 2));
    }
    None
}
