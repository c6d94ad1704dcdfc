//! Produce: validates the v2 batch of each partition, checks the producer's epoch and
//! sequence like Kafka's producer state, assigns offsets by patching the batch's base offset
//! and partition leader epoch (outside the CRC) and appends. Topics by name before v13, by id
//! from v13.
//!
//! - acks must be -1, 0 or 1 (INVALID_REQUIRED_ACKS); acks=0 gets no response, and a failed
//!   acks=0 request closes the connection as Kafka does.
//! - acks=-1 needs `min.insync.replicas` in-sync replicas (NOT_ENOUGH_REPLICAS; the live
//!   replicas with instant replication). acks=1 answers after the leader's append; acks=-1
//!   once the high watermark covers the records (at once with instant replication), else it
//!   waits for the ISR ([`ProduceWaits`]) up to `timeout_ms`: REQUEST_TIMED_OUT then,
//!   NOT_LEADER_OR_FOLLOWER if leadership moved meanwhile, NOT_ENOUGH_REPLICAS_AFTER_APPEND
//!   if the ISR shrank below `min.insync.replicas`. A retried duplicate waits the same way.
//! - One batch per partition (INVALID_RECORD otherwise); a batch over `max.message.bytes` is
//!   MESSAGE_TOO_LARGE, a partition's records over `segment.bytes` RECORD_LIST_TOO_LARGE.
//! - `message.timestamp.type=LogAppendTime` stamps the batch (attribute and max timestamp,
//!   CRC recomputed) with the broker's wall clock. Timestamps are not range-checked.
//! - Idempotence: per (partition, producer id) the epoch and the last five batches. A retried
//!   batch (same epoch and sequence range) answers with its first offset and is not appended;
//!   an older epoch is INVALID_PRODUCER_EPOCH; a new epoch must start at sequence 0 and a known
//!   epoch must continue it, else OUT_OF_ORDER_SEQUENCE_NUMBER. A producer with no state may
//!   start at any sequence (Kafka since KIP-360 no longer answers UNKNOWN_PRODUCER_ID here).
//! - Transactions: a transactional batch opens a transaction on the partition (and joins the
//!   partition to its producer's transaction, as with transactions v2); a non-transactional
//!   batch while one is open is INVALID_TXN_STATE. Partition membership is not verified.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::messages::produce::response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use sansa::protocol::messages::{ProduceRequest, ProduceResponse};
use sansa::protocol::records::{decode_batches, DecodeOptions, RecordBatch};
use sansa::protocol::{ApiKey, BrokerId, ErrorCode, StrBytes};

use super::{fetch, topic_config, Ctx, FakeCluster, Partition, Reply, StoredBatch, Ticket};

/// How many batches per producer are remembered for duplicate detection (Kafka's value).
pub(crate) const DEDUP_WINDOW: usize = 5;

/// What a partition remembers of one idempotent or transactional producer.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    /// The last appended batches, oldest first.
    pub(crate) batches: VecDeque<BatchMeta>,
    /// First offset of the producer's open transaction on this partition.
    pub(crate) txn_first_offset: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchMeta {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    /// The batch's max timestamp as stored (the append time for LogAppendTime topics); Kafka
    /// answers a duplicate with it as the log append time.
    pub(crate) timestamp: i64,
}

/// An aborted transaction on a partition, for read_committed fetches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AbortedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    /// Offset of the ABORT marker.
    pub(crate) last_offset: i64,
}

impl Partition {
    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.producers.values().filter_map(|p| p.txn_first_offset).min().map_or(hw, |o| o.min(hw))
    }
}

/// Why a partition's records were refused.
struct Refused {
    code: ErrorCode,
    message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refused {
    Refused { code, message: message.into() }
}

/// What an accepted append did.
struct Appended {
    base_offset: i64,
    log_append_time: i64,
    /// Offset after the batch's last record: the high watermark acks=all waits for.
    end: i64,
    min_isr: i64,
}

/// acks=all produces waiting for the ISR to hold their records.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProduceWaits {
    parked: Vec<ParkedProduce>,
}

impl ProduceWaits {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.parked.iter().map(|p| p.deadline).min()
    }
}

#[derive(Debug, Clone)]
struct ParkedProduce {
    ticket: Ticket,
    deadline: Instant,
    /// The answer, with the partitions still waiting marked in `waits`.
    body: ProduceResponse,
    waits: Vec<Wait>,
}

/// One partition of a parked produce.
#[derive(Debug, Clone)]
struct Wait {
    /// Indexes into the answer's topics and their partitions.
    at: (usize, usize),
    topic: String,
    partition: i32,
    /// Leadership when appended; a change ends the wait.
    leader: i32,
    leader_epoch: i32,
    end: i64,
    min_isr: i64,
}

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: ProduceRequest) -> Reply {
    let version = ctx.version;
    let valid_acks = matches!(req.acks, -1..=1);
    // Like Kafka, transactional records need the request to name their transactional id;
    // otherwise every partition is refused, as an authorization failure.
    let unauthorized = req.transactional_id.is_none()
        && req
            .topic_data
            .iter()
            .flat_map(|t| &t.partition_data)
            .any(|p| p.records.as_ref().is_some_and(is_transactional));
    let mut responses = Vec::new();
    let mut failed = false;
    let mut appended = false;
    let mut leaders = Vec::new();
    let mut waits = Vec::new();
    for t in req.topic_data {
        let name = if version >= 13 { cluster.topic_name_by_id(t.topic_id) } else { Some(t.name.as_str().to_string()) };
        let mut partitions = Vec::new();
        for p in t.partition_data {
            let mut r = PartitionProduceResponse::default().with_index(p.index);
            let result = if unauthorized {
                Err(refuse(ErrorCode::TransactionalIdAuthorizationFailed, ""))
            } else if valid_acks {
                produce_one(cluster, ctx, name.as_deref(), p.index, req.acks, p.records.unwrap_or_default())
            } else {
                Err(refuse(ErrorCode::InvalidRequiredAcks, ""))
            };
            match result {
                Ok(a) => {
                    r.base_offset = a.base_offset;
                    r.log_append_time_ms = a.log_append_time;
                    if let Some(part) = name.as_deref().and_then(|n| cluster.partition(n, p.index)) {
                        r.log_start_offset = part.log_start_offset;
                        if req.acks == -1 && part.high_watermark() < a.end {
                            waits.push(Wait {
                                at: (responses.len(), partitions.len()),
                                topic: name.clone().unwrap_or_default(),
                                partition: p.index,
                                leader: part.leader,
                                leader_epoch: part.leader_epoch,
                                end: a.end,
                                min_isr: a.min_isr,
                            });
                        }
                    }
                    appended = true;
                }
                Err(e) => {
                    failed = true;
                    r.error_code = e.code;
                    r.base_offset = -1;
                    r.log_start_offset = -1;
                    // Producer-state refusals come from the log itself: Kafka reports its start
                    // offset and no message. It explains invalid records, not corrupt ones.
                    let from_log = matches!(
                        e.code,
                        ErrorCode::OutOfOrderSequenceNumber
                            | ErrorCode::InvalidProducerEpoch
                            | ErrorCode::InvalidTxnState
                    );
                    if from_log {
                        if let Some(part) = name.as_deref().and_then(|n| cluster.partition(n, p.index)) {
                            r.log_start_offset = part.log_start_offset;
                        }
                    }
                    if version >= 8 && !e.message.is_empty() && e.code != ErrorCode::CorruptMessage && !from_log {
                        r.error_message = Some(StrBytes::from(e.message));
                    }
                    if e.code == ErrorCode::NotLeaderOrFollower && version >= 10 {
                        if let Some(part) = name.as_deref().and_then(|n| cluster.partition(n, p.index)) {
                            r.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(part.leader))
                                .with_leader_epoch(part.leader_epoch);
                            leaders.push(part.leader);
                        }
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
    if appended {
        fetch::wake(cluster);
    }
    if req.acks == 0 {
        return if failed { Reply::Close } else { Reply::Silent };
    }
    let mut body = ProduceResponse::default().with_responses(responses);
    if version >= 10 {
        body.node_endpoints = node_endpoints(cluster, leaders);
    }
    if waits.is_empty() {
        return body.into();
    }
    // Kafka starts each waiting partition as timed out and clears it when the ISR has it.
    for w in &waits {
        set_error(&mut body, w.at, ErrorCode::RequestTimedOut);
    }
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    cluster.produces.parked.push(ParkedProduce { ticket: ctx.ticket, deadline: ctx.now + timeout, body, waits });
    Reply::Parked
}

fn set_error(body: &mut ProduceResponse, (t, p): (usize, usize), code: ErrorCode) {
    if let Some(r) = body.responses.get_mut(t).and_then(|t| t.partition_responses.get_mut(p)) {
        r.error_code = code;
    }
}

/// Replication or leadership changed: answers the parked acks=all produces that are done.
pub(crate) fn wake(cluster: &mut FakeCluster) {
    complete_parked(cluster, None);
}

/// Answers the parked acks=all produces whose timeout has passed at `now`.
pub(crate) fn handle_timeout(cluster: &mut FakeCluster, now: Instant) {
    complete_parked(cluster, Some(now));
}

fn complete_parked(cluster: &mut FakeCluster, now: Option<Instant>) {
    if cluster.produces.parked.is_empty() {
        return;
    }
    let live: BTreeSet<i32> = cluster.live_broker_ids().into_iter().collect();
    for mut p in std::mem::take(&mut cluster.produces.parked) {
        if !cluster.is_parked(p.ticket) {
            continue;
        }
        let mut waiting = Vec::new();
        for w in std::mem::take(&mut p.waits) {
            let outcome = match cluster.partition(&w.topic, w.partition) {
                Some(part) if part.leader == w.leader && part.leader_epoch == w.leader_epoch => {
                    if part.high_watermark() < w.end {
                        None
                    } else if (part.in_sync(&live).len() as i64) < w.min_isr {
                        Some(ErrorCode::NotEnoughReplicasAfterAppend)
                    } else {
                        Some(ErrorCode::None)
                    }
                }
                _ => Some(ErrorCode::NotLeaderOrFollower),
            };
            match outcome {
                Some(code) => set_error(&mut p.body, w.at, code),
                None => waiting.push(w),
            }
        }
        p.waits = waiting;
        if p.waits.is_empty() || now.is_some_and(|n| n >= p.deadline) {
            cluster.complete(p.ticket, p.body.into());
        } else {
            cluster.produces.parked.push(p);
        }
    }
}

/// Endpoints of these brokers (KIP-951 hints), ascending and without duplicates.
pub(crate) fn node_endpoints(cluster: &FakeCluster, mut ids: Vec<i32>) -> Vec<NodeEndpoint> {
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let b = cluster.brokers.get(&id).filter(|b| b.up)?;
            Some(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from(b.host.as_str()))
                    .with_port(i32::from(b.port)),
            )
        })
        .collect()
}

fn produce_one(
    cluster: &mut FakeCluster,
    ctx: Ctx,
    name: Option<&str>,
    index: i32,
    acks: i16,
    records: Bytes,
) -> Result<Appended, Refused> {
    let Some(name) = name else {
        let code = if ctx.version >= 13 { ErrorCode::UnknownTopicId } else { ErrorCode::UnknownTopicOrPartition };
        return Err(refuse(code, ""));
    };
    if let Some(code) = cluster.take_partition_error(ApiKey::Produce, ctx.broker, name, Some(index)) {
        return Err(refuse(code, ""));
    }
    let live: BTreeSet<i32> = cluster.live_broker_ids().into_iter().collect();
    let now_ms = cluster.wall_clock_ms(ctx.now);
    let Some(topic) = cluster.topics.get_mut(name) else {
        return Err(refuse(ErrorCode::UnknownTopicOrPartition, ""));
    };
    let configs = &topic.configs;
    let max_message = topic_config::number(configs, "max.message.bytes");
    let segment = topic_config::number(configs, "segment.bytes");
    let min_isr = topic_config::number(configs, "min.insync.replicas");
    let log_append_time = topic_config::value(configs, "message.timestamp.type") == Some("LogAppendTime");
    let Some(partition) = usize::try_from(index).ok().and_then(|i| topic.partitions.get_mut(i)) else {
        return Err(refuse(ErrorCode::UnknownTopicOrPartition, ""));
    };
    if partition.leader != ctx.broker {
        return Err(refuse(ErrorCode::NotLeaderOrFollower, ""));
    }
    let batch = single_batch(&records)?;
    let size = records.len() as i64;
    if size > segment {
        return Err(refuse(
            ErrorCode::RecordListTooLarge,
            format!(
                "Message batch size is {size} bytes which exceeds the maximum configured segment size of {segment}."
            ),
        ));
    }
    if size > max_message {
        return Err(refuse(
            ErrorCode::MessageTooLarge,
            format!("The batch size is {size} bytes, larger than max.message.bytes {max_message}."),
        ));
    }
    if batch.is_control() {
        return Err(refuse(ErrorCode::InvalidRecord, "Clients may not write control batches."));
    }
    if acks == -1 {
        let isr = partition.in_sync(&live).len() as i64;
        if isr < min_isr {
            return Err(refuse(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {isr} is insufficient to satisfy the min.isr requirement of {min_isr}"
                ),
            ));
        }
    }
    if let Some(mut duplicate) = check_producer(partition, &batch)? {
        duplicate.min_isr = min_isr;
        return Ok(duplicate);
    }
    let stamp = log_append_time.then_some(now_ms);
    let base = append_batch(partition, &records, batch.last_offset_delta(), batch.max_timestamp(), stamp);
    record_producer(partition, &batch, base, stamp.unwrap_or(batch.max_timestamp()));
    if batch.is_transactional() && batch.producer_id() >= 0 {
        cluster.txns.join_on_produce(batch.producer_id(), name, index);
    }
    let end = partition.next_offset;
    if let Some(r) = &mut partition.repl {
        // A leader alone in the ISR moves the high watermark itself.
        if r.isr.len() <= 1 {
            r.high_watermark = end;
        }
    }
    Ok(Appended { base_offset: base, log_append_time: stamp.unwrap_or(-1), end, min_isr })
}

/// Whether `records` starts with a transactional v2 batch (attributes bit 4).
fn is_transactional(records: &Bytes) -> bool {
    records.len() >= 23 && records[16] == 2 && i16::from_be_bytes([records[21], records[22]]) & 0x10 != 0
}

/// The one v2 batch a Produce (v3+) partition must carry.
fn single_batch(records: &Bytes) -> Result<RecordBatch, Refused> {
    if records.is_empty() {
        return Err(refuse(ErrorCode::InvalidRecord, "Produce requests must carry exactly one record batch."));
    }
    let mut batches = decode_batches(records.clone(), &DecodeOptions::new());
    let first = match batches.next() {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(refuse(ErrorCode::CorruptMessage, e.to_string())),
        None => return Err(refuse(ErrorCode::CorruptMessage, "truncated record batch")),
    };
    if first.magic() != 2 {
        return Err(refuse(ErrorCode::InvalidRecord, format!("Unsupported magic {}.", first.magic())));
    }
    if first.size_in_bytes() != records.len() {
        return Err(refuse(ErrorCode::InvalidRecord, "Produce requests must carry exactly one record batch."));
    }
    // Offsets must run from the base without gaps, as Kafka's validator requires; this also
    // keeps a hostile `last_offset_delta` from moving the log end backwards.
    let count = first.records().len();
    let sequential = first.records().iter().enumerate().all(|(i, r)| r.offset == first.base_offset() + i as i64);
    if count == 0 || !sequential || i64::from(first.last_offset_delta()) != count as i64 - 1 {
        return Err(refuse(ErrorCode::InvalidRecord, "Record offsets in the batch are not sequential."));
    }
    Ok(first)
}

/// Kafka's producer-state checks. `Ok(Some(appended))` is a duplicate of an appended batch.
fn check_producer(partition: &Partition, batch: &RecordBatch) -> Result<Option<Appended>, Refused> {
    let pid = batch.producer_id();
    if pid < 0 {
        return Ok(None);
    }
    let epoch = batch.producer_epoch();
    let (first, last) = (batch.base_sequence(), batch.last_sequence());
    let Some(entry) = partition.producers.get(&pid) else { return Ok(None) };
    if epoch < entry.epoch {
        return Err(refuse(
            ErrorCode::InvalidProducerEpoch,
            format!("Epoch of producer {pid} is {epoch}, which is smaller than the last seen epoch {}", entry.epoch),
        ));
    }
    if epoch == entry.epoch {
        if let Some(dup) = entry.batches.iter().find(|b| b.first_seq == first && b.last_seq == last) {
            return Ok(Some(Appended {
                base_offset: dup.base_offset,
                log_append_time: dup.timestamp,
                end: dup.last_offset + 1,
                min_isr: 1,
            }));
        }
    }
    if epoch != entry.epoch {
        if first != 0 {
            return Err(refuse(
                ErrorCode::OutOfOrderSequenceNumber,
                format!("Invalid sequence number for new epoch {epoch} of producer {pid}: {first} (must be 0)"),
            ));
        }
    } else if let Some(prev) = entry.batches.back() {
        let in_sequence = i64::from(first) == i64::from(prev.last_seq) + 1 || (first == 0 && prev.last_seq == i32::MAX);
        if !in_sequence {
            return Err(refuse(
                ErrorCode::OutOfOrderSequenceNumber,
                format!(
                    "Out of order sequence number for producer {pid}: {first} (incoming), {} (current end)",
                    prev.last_seq
                ),
            ));
        }
    }
    if entry.txn_first_offset.is_some() && !batch.is_transactional() {
        return Err(refuse(ErrorCode::InvalidTxnState, format!("Expected a transactional write from producer {pid}")));
    }
    Ok(None)
}

fn record_producer(partition: &mut Partition, batch: &RecordBatch, base: i64, timestamp: i64) {
    let pid = batch.producer_id();
    if pid < 0 {
        return;
    }
    let entry = partition.producers.entry(pid).or_default();
    if entry.epoch != batch.producer_epoch() {
        entry.epoch = batch.producer_epoch();
        entry.batches.clear();
    }
    entry.batches.push_back(BatchMeta {
        first_seq: batch.base_sequence(),
        last_seq: batch.last_sequence(),
        base_offset: base,
        last_offset: base + i64::from(batch.last_offset_delta()),
        timestamp,
    });
    while entry.batches.len() > DEDUP_WINDOW {
        entry.batches.pop_front();
    }
    if batch.is_transactional() && entry.txn_first_offset.is_none() {
        entry.txn_first_offset = Some(base);
    }
}

/// Appends one validated v2 batch at the log end; returns its base offset. With
/// `log_append_time`, the batch is stamped with it (attributes, max timestamp, CRC).
pub(crate) fn append_batch(
    partition: &mut Partition,
    batch: &[u8],
    last_offset_delta: i32,
    max_timestamp: i64,
    log_append_time: Option<i64>,
) -> i64 {
    let mut bytes = BytesMut::from(batch);
    let base = partition.next_offset;
    bytes[0..8].copy_from_slice(&base.to_be_bytes());
    bytes[12..16].copy_from_slice(&partition.leader_epoch.to_be_bytes());
    let mut max_ts = max_timestamp;
    if let Some(t) = log_append_time {
        let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | 0x08;
        bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
        bytes[35..43].copy_from_slice(&t.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        max_ts = t;
    }
    let next = base + i64::from(last_offset_delta) + 1;
    partition.batches.push(StoredBatch {
        base_offset: base,
        next_offset: next,
        max_timestamp: max_ts,
        bytes: bytes.freeze(),
    });
    partition.next_offset = next;
    base
}
