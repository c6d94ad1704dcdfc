//! The producer machine: partitioning, the accumulator (per-partition batches with linger,
//! batch size and buffer memory), delivery with retries and timeouts, and idempotence.
//!
//! Records arrive through [`crate::Client::send`]; each is partitioned and appended to its
//! partition's open batch at once (encoded straight into the batch buffer), so a record costs
//! one copy. Batches leave through the router's pull: when a connection to a partition leader
//! is ready and has room, the producer seals the ready batches of the partitions that broker
//! leads (at most one per partition per request, up to `max.request.size`) and builds the
//! Produce request then, with sequence numbers assigned at that moment.
//!
//! | batch | on | next |
//! |---|---|---|
//! | open | full, `linger.ms` passed, flush or close | ready |
//! | ready | its leader's connection pulls it (in order; see idempotence) | in flight |
//! | in flight | success, or a duplicate of a written batch | done: delivered |
//! | in flight | retriable error, attempts and time left | waiting `retry.backoff.ms`, then ready (in its place) |
//! | in flight | MESSAGE_TOO_LARGE with several records | split into smaller batches, ready |
//! | in flight | other error, or retries exhausted | done: failed |
//! | any | `delivery.timeout.ms` after its first record | done: failed (an answer that comes later is only read for sequence bookkeeping) |
//!
//! **Idempotence** (on by default with acks=all): the producer gets an id and epoch with
//! InitProducerId before any batch leaves; each partition numbers its records from 0. A batch
//! keeps its sequence across retries, and a partition resends a numbered batch only when none
//! of its batches is in flight, so retries go out in sequence order. A partition pipelines
//! batches only once one of them was acknowledged under the current id and epoch: a broker
//! that holds no state for the producer takes any sequence, so before that a batch could be
//! written ahead of an earlier one refused with a retriable error. The broker answers a
//! resent batch it already wrote with the original offset.
//!
//! A batch failed to the application that is certainly not in the log (each attempt refused
//! before any write) gives its sequences to the partition's next batch when it was the
//! last numbered, as Java's producer adjusts sequences. Otherwise a gap is left, and once it
//! is certain the producer bumps its epoch (KIP-360), after every batch that might be in the
//! log has been resolved: every partition restarts at sequence 0 and batches not known to be
//! written are renumbered. A gap is certain when such a failed batch had nothing before it
//! unresolved, or when the partition's first unresolved batch is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID and none of its attempts may have been
//! written, or it is numbered past a sequence certainly missing. A batch that may have been
//! written and expired shows its gap through the next batch's refusal, so no new batch leaves
//! behind an expired one still in flight. The broker never accepts a later sequence past a
//! gap, so renumbering duplicates nothing that was acknowledged.

mod config;
pub mod metrics;
pub(crate) mod offload;
pub mod partitioner;
mod record;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub(crate) use config::Levels;
pub use config::{Acks, PartitionerChoice, ProducerConfig};
pub use record::{
    Ack, Attempt, DeliveredRecord, Delivery, ProduceError, ProducerRecord, RecordMetadata, RefuseReason, SendId,
    SendRefused,
};

use crate::buffer_pool::BufferPool;
use crate::client::{Event, RequestError, RequestId, Response, Target};
use crate::cluster::ClusterMetadata;
use crate::connection::VersionError;
use crate::machine::{Ctx, Link, Machine, Outgoing, Role, Signal, Tag};
use crate::protocol::messages::init_producer_id::request::InitProducerIdRequest;
use crate::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use crate::protocol::messages::{ProduceRequest, ProduceResponse};
use crate::protocol::records::{rewrite_producer_state, BatchParams, Compression, OpenBatch, RecordBatchEncoder};
use crate::protocol::{ApiKey, BrokerId, ErrorCode, ProducerId, RequestBody, ResponseBody, TopicName};
use crate::rand::Rng;
use crate::timer::Deadlines;
use partitioner::{BuiltInPartitioner, Partitioner, Placement, QueueSize, RoundRobin, TopicPartitions};

/// Orders batches within a partition: creation order, then the pieces of a split batch.
type BatchKey = (u64, u32);

#[derive(Debug)]
struct Batch {
    key: BatchKey,
    topic: TopicName,
    partition: i32,
    records: Vec<DeliveredRecord>,
    body: Body,
    /// Uncompressed size, header included.
    size: usize,
    /// Buffer bytes its records hold.
    buffered: usize,
    created: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
    /// Base sequence and the epoch generation it was numbered under.
    sequence: Option<(u32, i32)>,
    /// The last attempt ended without an answer (disconnect, timeout): it may be in the log.
    maybe_written: bool,
    last_error: Option<Attempt>,
    in_flight: bool,
    /// Failed to the application while in flight; the answer only settles sequences.
    abandoned: bool,
}

/// A batch's bytes, stage by stage.
#[derive(Debug)]
enum Body {
    /// Taking records.
    Open(OpenBatch),
    /// Its compression is out as a [`crate::Work`]: it cannot leave until the [`crate::WorkDone`] is back.
    Compressing,
    /// Compressed by a [`crate::Work`], without producer state yet (written when it leaves).
    Compressed(BytesMut),
    /// The wire bytes.
    Sealed(Bytes),
}

impl Batch {
    fn deadline(&self, timeout: Duration) -> Instant {
        self.created + timeout
    }

    fn builder(&mut self) -> &mut OpenBatch {
        match &mut self.body {
            Body::Open(builder) => builder,
            _ => unreachable!("only a batch taking records is appended to"),
        }
    }
}

impl TopicState {
    /// A batch of the topic was compressed from `uncompressed` bytes to `sent`.
    fn note_compression(&mut self, sent: usize, uncompressed: usize) {
        if uncompressed > 0 {
            self.compression_ratio = (sent as f64 / uncompressed as f64).clamp(0.05, 1.0);
        }
    }
}

/// Batch compression handed out as [`crate::Work`] (see [`crate::Client::offload_work`]).
#[derive(Debug, Default)]
struct Offload {
    on: bool,
    work: VecDeque<offload::Seal>,
}

impl Offload {
    /// Hands `batch`'s compression out when the driver takes it and the codec is worth
    /// another thread ([`crate::work::worth_offloading`]). The batch stays where it is,
    /// unable to leave until its result is back.
    fn start(&mut self, batch: &mut Batch, compression: Compression, pool: &BufferPool<BytesMut>) -> bool {
        if !self.on || !crate::work::worth_offloading(compression.codec()) || !matches!(batch.body, Body::Open(_)) {
            return false;
        }
        let Body::Open(open) = std::mem::replace(&mut batch.body, Body::Compressing) else { return false };
        self.work.push_back(offload::Seal { key: batch.key, open, compression, pool: pool.clone() });
        true
    }
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Accepting records.
    open: Option<Batch>,
    /// Sealed or waiting batches, in key order; each key names a batch in `batches`.
    queue: VecDeque<BatchKey>,
    in_flight: u32,
    /// Of those in flight, batches already failed to the application (expired): whether
    /// they are in the log is unknown until their request ends.
    unresolved: u32,
    /// Next sequence to number a batch with.
    next_sequence: i32,
    /// Sequences numbered and not yet resolved (acked, or failed to the application).
    pending_sequences: BTreeSet<i32>,
    /// Frozen until the epoch bump: its numbered batches are not in the log.
    needs_bump: bool,
    /// The lowest sequence of this generation certainly not in the log (its batch was
    /// refused and failed): the broker holds nothing numbered above it.
    gap: Option<i32>,
    /// A batch numbered under the current producer id and epoch was acknowledged here, so
    /// the broker holds this producer's state for the partition. Until then its batches go
    /// one at a time: a broker without state takes any sequence, so a batch behind one
    /// refused with a retriable error would be written before it.
    confirmed: bool,
}

#[derive(Debug)]
struct TopicState {
    /// The topic's name as its batches and deliveries carry it: one static copy (see
    /// `TopicName::interned`), so a delivery's metadata takes no reference count per record.
    name: TopicName,
    partitions: Vec<PartitionState>,
    /// Partitions with a known leader, ascending.
    available: Vec<u32>,
    /// Names the topic in its `Timer::Waiting`.
    serial: u64,
    /// Records sent before the topic's metadata was known, with when they arrived. One timer,
    /// at the front record's `max.block.ms`, stands for them all: they arrive in time order.
    waiting: VecDeque<(SendId, ProducerRecord, Instant)>,
    /// The error metadata last reported for the topic.
    error: Option<ErrorCode>,
    /// Compressed over uncompressed size of the last sealed batch, to size batches.
    compression_ratio: f64,
}

impl TopicState {
    fn new(name: &TopicName, serial: u64) -> Self {
        TopicState {
            name: name.interned(),
            serial,
            partitions: Vec::new(),
            available: Vec::new(),
            waiting: VecDeque::new(),
            error: None,
            compression_ratio: 1.0,
        }
    }

    fn known(&self) -> bool {
        !self.partitions.is_empty()
    }
}

/// The producer id state of an idempotent producer.
#[derive(Debug, Clone, PartialEq)]
enum Identity {
    /// Idempotence is off.
    Disabled,
    /// Not asked for yet (no record sent).
    Unknown,
    /// InitProducerId is wanted (at `at`), `bump` carrying the id and epoch to bump.
    Wanted {
        at: Instant,
        bump: Option<(ProducerId, i16)>,
        failures: u32,
    },
    /// InitProducerId is in flight.
    Requesting {
        tag: Tag,
        bump: Option<(ProducerId, i16)>,
        failures: u32,
    },
    Ready {
        id: ProducerId,
        epoch: i16,
    },
    Fatal(ProduceError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Linger(u64),
    Expire(u64, u32),
    Retry(u64, u32),
    /// The front of a topic's waiting records (by `TopicState::serial`) reaches `max.block.ms`.
    Waiting(u64),
    Identity,
    /// Records wait for a topic's metadata: ask again.
    Metadata,
}

#[derive(Debug)]
struct InFlight {
    batches: Vec<BatchKey>,
    sent: Instant,
}

#[derive(Debug)]
struct Flush {
    id: RequestId,
    upto: SendId,
    remaining: usize,
}

/// The producer machine (see the module docs).
#[derive(Debug)]
pub(crate) struct Producer {
    config: ProducerConfig,
    idempotent: bool,
    identity: Identity,
    /// Bumped with each epoch, so batches numbered under an older one are recognised.
    generation: u32,
    bump_wanted: bool,
    topics: BTreeMap<TopicName, TopicState>,
    /// Partitions by leader, rebuilt when metadata changes.
    leaders: BTreeMap<BrokerId, Vec<(TopicName, i32)>>,
    /// Where each broker's next drain starts, so every partition gets its turn.
    drain_start: BTreeMap<BrokerId, usize>,
    /// Sealed batches by key, wherever they wait.
    batches: BTreeMap<BatchKey, Batch>,
    requests: BTreeMap<Tag, InFlight>,
    timers: Deadlines<Timer>,
    next_send: u64,
    next_batch: u64,
    next_topic: u64,
    next_tag: Tag,
    /// Buffer bytes held by records not yet delivered.
    buffered: usize,
    /// Records not yet delivered.
    outstanding: usize,
    flushes: VecDeque<Flush>,
    closing: bool,
    /// Unix time in milliseconds at `clock_anchor`, for records without a timestamp.
    unix_ms_at_anchor: i64,
    clock_anchor: Instant,
    /// The last instant stamped and its Unix time: a drain of many sends passes one `now`.
    last_stamp: (Instant, i64),
    events: VecDeque<Event>,
    partitioner: BuiltInPartitioner,
    metrics: metrics::Metrics,
    /// The latest `now` seen, for bookkeeping deep in calls that do not carry it.
    clock: Instant,
    /// When each broker last took a batch, for `partitioner.availability.timeout.ms`.
    last_drain: BTreeMap<BrokerId, Instant>,
    round_robin: RoundRobin,
    encoder: RecordBatchEncoder,
    /// Allocations batches are written in, kept for the next batches: a fresh one of a
    /// megabyte cost a page fault per 4 KiB written, the kernel zeroing every page.
    batch_buffers: BufferPool<BytesMut>,
    offload: Offload,
    rng: Rng,
}

/// Batch allocations kept idle at most: a few batches' worth, within a quarter of
/// `buffer.memory`.
const KEPT_BATCH_BUFFERS: usize = 16;
const KEPT_BATCH_BYTES: usize = 8 << 20;

/// Extra room a batch keeps for the estimate of compressed size to be off.
const COMPRESSION_MARGIN: f64 = 1.05;

impl Producer {
    pub fn new(now: Instant, config: &crate::Config) -> Self {
        let p = config.producer.clone();
        let idempotent = p.idempotent(config.max_in_flight_per_connection);
        Producer {
            partitioner: BuiltInPartitioner::new(p.batch_size, p.adaptive_partitioning).ignoring_keys(p.ignore_keys),
            last_drain: BTreeMap::new(),
            metrics: metrics::Metrics::new(now),
            clock: now,
            idempotent,
            identity: if idempotent { Identity::Unknown } else { Identity::Disabled },
            generation: 0,
            bump_wanted: false,
            topics: BTreeMap::new(),
            leaders: BTreeMap::new(),
            drain_start: BTreeMap::new(),
            batches: BTreeMap::new(),
            requests: BTreeMap::new(),
            timers: Deadlines::default(),
            next_send: 0,
            next_batch: 0,
            next_topic: 0,
            next_tag: 0,
            buffered: 0,
            outstanding: 0,
            flushes: VecDeque::new(),
            closing: false,
            unix_ms_at_anchor: 0,
            clock_anchor: now,
            last_stamp: (now, 0),
            events: VecDeque::new(),
            round_robin: RoundRobin::default(),
            encoder: RecordBatchEncoder::new(),
            batch_buffers: BufferPool::new(KEPT_BATCH_BUFFERS, KEPT_BATCH_BYTES.min(p.buffer_memory / 4)),
            offload: Offload::default(),
            rng: Rng::stream(config.rng_seed.unwrap_or(0), "producer"),
            config: p,
        }
    }

    /// Whether batches carry producer ids and sequences.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// Buffer bytes held by records not yet delivered.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Records sent and not yet delivered or failed.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Sealed batches not yet sent (a cheap change detector for the router).
    pub fn batches_waiting(&self) -> usize {
        self.batches.len()
    }

    /// Whether a flush is in progress (every batch is ready then).
    pub fn flushing(&self) -> bool {
        !self.flushes.is_empty() || self.closing
    }

    /// Sets the wall clock: `unix_ms` is the Unix time in milliseconds at `now`.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        self.clock_anchor = now;
        self.unix_ms_at_anchor = unix_ms;
        self.last_stamp = (now, unix_ms);
    }

    fn unix_ms(&mut self, now: Instant) -> i64 {
        if self.last_stamp.0 != now {
            let since = now.saturating_duration_since(self.clock_anchor).as_millis() as i64;
            self.last_stamp = (now, self.unix_ms_at_anchor + since);
        }
        self.last_stamp.1
    }

    // ---- sending -------------------------------------------------------------------------

    /// Takes a record into the buffer, or refuses it (buffer full, closing, failed).
    pub fn send(&mut self, now: Instant, record: ProducerRecord, ctx: &mut Ctx<'_>) -> Result<SendId, SendRefused> {
        self.clock = now;
        let refuse = |reason, record| Err(SendRefused { reason, record: Box::new(record) });
        if self.closing {
            return refuse(RefuseReason::Closed, record);
        }
        if let Identity::Fatal(e) = &self.identity {
            return refuse(RefuseReason::Fatal(e.clone()), record);
        }
        let size = record.size_in_buffer();
        if size <= self.config.buffer_memory && self.buffered + size > self.config.buffer_memory {
            return refuse(RefuseReason::BufferFull, record);
        }
        self.next_send += 1;
        let id = SendId(self.next_send);
        self.outstanding += 1;
        let limit = if size > self.config.max_request_size {
            Some((self.config.max_request_size, "max.request.size"))
        } else if size > self.config.buffer_memory {
            Some((self.config.buffer_memory, "buffer.memory"))
        } else {
            None
        };
        if let Some((limit, setting)) = limit {
            let error = ProduceError::RecordTooLarge { size, limit, setting };
            self.fail_alone(id, &record, now, error);
            return Ok(id);
        }
        if self.identity == Identity::Unknown {
            self.identity = Identity::Wanted { at: now, bump: None, failures: 0 };
        }
        self.buffered += size;
        let topic = match self.topics.get_mut(&record.topic) {
            Some(t) => t,
            None => {
                let auto_create = self.config.allow_auto_create_topics;
                ctx.signals.push(Signal::TrackTopic { topic: record.topic.clone(), auto_create });
                self.next_topic += 1;
                let mut t = TopicState::new(&record.topic, self.next_topic);
                refresh_topic(&mut t, &record.topic, ctx.cluster);
                // Keyed by the record's own copy: later records with clones of it are found
                // without reading the name (`StrBytes` compares views first).
                self.topics.entry(record.topic.clone()).or_insert(t)
            }
        };
        if !topic.known() || !topic.waiting.is_empty() {
            if topic.waiting.is_empty() {
                self.timers.insert(now + self.config.max_block, Timer::Waiting(topic.serial));
            }
            topic.waiting.push_back((id, record, now));
            ctx.signals.push(Signal::RefreshMetadata);
            return Ok(id);
        }
        self.place(now, id, &record, size);
        Ok(id)
    }

    /// Fails a record that never reached a batch.
    fn fail_alone(&mut self, id: SendId, record: &ProducerRecord, now: Instant, error: ProduceError) {
        let entry = DeliveredRecord {
            id,
            timestamp: record.timestamp.unwrap_or_else(|| self.unix_ms(now)),
            key_size: record.key.as_ref().map(|k| k.len() as u32),
            value_size: record.value.as_ref().map(|v| v.len() as u32),
            offset_delta: 0,
            buffer_size: record.size_in_buffer() as u32,
        };
        let delivery = Delivery {
            topic: record.topic.clone(),
            partition: record.partition.unwrap_or(-1),
            records: vec![entry],
            result: Err(error),
        };
        self.finish(delivery);
    }

    /// Partitions a record of a known topic and appends it to that partition's open batch.
    /// Appends `record` to its partition's open batch; its bytes are copied in, so a reference
    /// does (the caller drops the record).
    fn place(&mut self, now: Instant, id: SendId, record: &ProducerRecord, size: usize) {
        let timestamp = record.timestamp.unwrap_or_else(|| self.unix_ms(now));
        let Some(topic) = self.topics.get_mut(&record.topic) else { return };
        let count = topic.partitions.len() as u32;
        let view = TopicPartitions::new(count, &topic.available);
        let placement = match record.partition {
            Some(p) => u32::try_from(p).ok().map(Placement::Fixed),
            None => {
                let custom: Option<&dyn Partitioner> = match &self.config.partitioner {
                    PartitionerChoice::Default => None,
                    PartitionerChoice::RoundRobin => Some(&self.round_robin),
                    PartitionerChoice::Custom(p) => Some(p.as_ref()),
                };
                let key = record.key.as_deref();
                let mut placed =
                    self.partitioner.place(custom, &record.topic, key, record.value.as_deref(), &view, &mut self.rng);
                if let Some(Placement::Sticky(p)) = placed {
                    // A switch deferred while the partition's last batch filled up is due now.
                    if topic.partitions[p as usize].open.is_none() {
                        self.partitioner.handle_append(&record.topic, p, 0, true, &view, &mut self.rng);
                        placed = self.partitioner.partition(&record.topic, &view, &mut self.rng).map(Placement::Sticky);
                    }
                }
                placed
            }
        };
        let partition = match placement.map(Placement::partition) {
            Some(p) if p < count => p,
            other => {
                let partition = other.map_or(-1, |p| p.min(i32::MAX as u32) as i32);
                let partition = record.partition.unwrap_or(partition);
                let error =
                    ProduceError::InvalidPartition { topic: record.topic.clone(), partition, count: count as usize };
                self.buffered -= size;
                return self.fail_alone(id, record, now, error);
            }
        };
        let ratio = topic.compression_ratio;
        let state = &mut topic.partitions[partition as usize];
        let batch_limit = self.config.batch_size;
        // Seal the open batch when this record would take it past batch.size.
        if let Some(open) = &state.open {
            // The upper bound, not the exact length: one length computation per record less.
            let next = size - crate::protocol::records::RECORD_BATCH_OVERHEAD;
            let estimated = ((open.size + next) as f64 * ratio * COMPRESSION_MARGIN) as usize;
            if estimated > batch_limit || open.size + next > self.config.max_request_size {
                let mut batch = state.open.take().expect("checked above");
                state.queue.push_back(batch.key);
                self.offload.start(&mut batch, self.config.compression, &self.batch_buffers);
                self.batches.insert(batch.key, batch);
            }
        }
        if state.open.is_none() {
            self.next_batch += 1;
            let key = (self.next_batch, 0);
            // Compressed batches hold about batch.size over the ratio before compression.
            let expected = (batch_limit as f64 / (ratio * COMPRESSION_MARGIN)) as usize;
            let capacity = expected.max(size);
            state.open = Some(Batch {
                key,
                topic: topic.name.clone(),
                partition: partition as i32,
                // Room for the records a full batch is expected to hold, so the vector does
                // not grow (and copy) record by record.
                records: Vec::with_capacity(((batch_limit as f64 / ratio) as usize / size).clamp(1, 4096)),
                body: Body::Open(OpenBatch::pooled(capacity.min(self.config.max_request_size), &self.batch_buffers)),
                size: crate::protocol::records::RECORD_BATCH_OVERHEAD,
                buffered: 0,
                created: now,
                attempts: 0,
                retry_at: None,
                sequence: None,
                maybe_written: false,
                last_error: None,
                in_flight: false,
                abandoned: false,
            });
            self.timers.insert(now + self.config.linger, Timer::Linger(self.next_batch));
            self.timers.insert(now + self.config.delivery_timeout, Timer::Expire(self.next_batch, 0));
        }
        let batch = state.open.as_mut().expect("created above");
        let builder = batch.builder();
        let before = builder.uncompressed_size();
        let offset_delta = builder.record_count() as u32;
        if builder.append(timestamp, record.key.as_deref(), record.value.as_deref(), &record.headers).is_err() {
            // Lengths past i32 cannot be encoded; the size checks make this unreachable in
            // practice, but a record is never dropped silently.
            self.buffered -= size;
            let error = ProduceError::RecordTooLarge { size, limit: i32::MAX as usize, setting: "the record format" };
            return self.fail_alone(id, record, now, error);
        }
        let added = builder.uncompressed_size() - before;
        batch.size += added;
        batch.buffered += size;
        self.metrics.record_appended(now, size);
        batch.records.push(DeliveredRecord {
            id,
            timestamp,
            key_size: record.key.as_ref().map(|k| k.len() as u32),
            value_size: record.value.as_ref().map(|v| v.len() as u32),
            offset_delta,
            buffer_size: size as u32,
        });
        let is_full = (batch.size as f64 * ratio * COMPRESSION_MARGIN) >= batch_limit as f64;
        if is_full {
            // A full batch is ready at once (Java's `isFull`): into the queue with it.
            let mut batch = state.open.take().expect("appended above");
            state.queue.push_back(batch.key);
            self.offload.start(&mut batch, self.config.compression, &self.batch_buffers);
            self.batches.insert(batch.key, batch);
        }
        if let Some(Placement::Sticky(_)) = placement {
            // Java lets the sticky partition move on once its batch is full.
            let view = TopicPartitions::new(count, &topic.available);
            self.partitioner.handle_append(&record.topic, partition, added, is_full, &view, &mut self.rng);
        }
    }

    /// Compression is handed out as [`crate::Work`] from now on (see [`crate::Client::offload_work`]).
    pub fn offload(&mut self, on: bool) {
        self.offload.on = on;
    }

    /// The next batch to compress elsewhere.
    pub(crate) fn poll_work(&mut self) -> Option<offload::Seal> {
        self.offload.work.pop_front()
    }

    /// A batch's compression is done: it may leave. Batches that expired or failed
    /// meanwhile are gone; their result is dropped.
    pub(crate) fn handle_work_done(&mut self, done: offload::Sealed) {
        let offload::Sealed { key, result } = done;
        let Some(batch) = self.batches.get_mut(&key).filter(|b| matches!(b.body, Body::Compressing)) else { return };
        match result {
            Ok(compressed) => {
                if let Some(topic) = self.topics.get_mut(&batch.topic) {
                    topic.note_compression(compressed.len(), batch.size);
                }
                batch.body = Body::Compressed(compressed);
            }
            Err(message) => self.fail_unsealable(key, message),
        }
    }

    /// A batch whose records could not be sealed fails, wherever it waits.
    fn fail_unsealable(&mut self, key: BatchKey, message: String) {
        let Some(mut b) = self.batches.remove(&key) else { return };
        if let Some(state) = self.partition_mut(&b.topic, b.partition) {
            state.queue.retain(|k| *k != key);
        }
        b.last_error = None;
        self.fail_batch(b, ProduceError::Broker { error: ErrorCode::UnknownServerError, message: Some(message) });
    }

    /// Completes when every record sent so far is delivered or failed.
    pub fn flush(&mut self, id: RequestId) {
        if self.outstanding == 0 {
            self.events.push_back(Event::Flushed { id });
            return;
        }
        self.flushes.push_back(Flush { id, upto: SendId(self.next_send), remaining: self.outstanding });
    }

    /// The producer's metrics by their Java names (see [`metrics`]).
    pub fn metrics(&self, now: Instant) -> Vec<(&'static str, f64)> {
        self.metrics.snapshot(now, self.requests.len(), self.config.buffer_memory, self.buffered)
    }

    /// Fails everything not yet delivered (a close that ran out of time).
    pub fn abort(&mut self, now: Instant) {
        self.clock = now;
        self.closing = true;
        for (_, topic) in std::mem::take(&mut self.topics) {
            for (id, record, _) in topic.waiting {
                self.buffered -= record.size_in_buffer();
                self.fail_alone(id, &record, now, ProduceError::Closed);
            }
            for mut p in topic.partitions {
                if let Some(b) = p.open.take() {
                    self.fail_batch(b, ProduceError::Closed);
                }
            }
        }
        for (_, b) in std::mem::take(&mut self.batches) {
            if !b.abandoned {
                self.fail_batch(b, ProduceError::Closed);
            }
        }
        self.requests.clear();
        self.timers.clear();
    }

    // ---- metadata --------------------------------------------------------------------------

    /// Metadata changed: partitions and leaders are read again, waiting records placed.
    fn refresh(&mut self, now: Instant, cluster: &ClusterMetadata) {
        self.rebuild_leaders(cluster);
        let names: Vec<TopicName> =
            self.topics.iter().filter(|(_, t)| !t.waiting.is_empty()).map(|(n, _)| n.clone()).collect();
        for name in names {
            let topic = self.topics.get_mut(&name).expect("listed above");
            let fatal = topic.error.filter(|e| !e.is_retriable());
            if !topic.known() && fatal.is_none() {
                continue;
            }
            let waiting = std::mem::take(&mut topic.waiting);
            for (id, record, since) in waiting {
                let size = record.size_in_buffer();
                match fatal {
                    None => self.place(now, id, &record, size),
                    Some(error) => {
                        self.buffered -= size;
                        let waited = now.saturating_duration_since(since);
                        let e = ProduceError::TopicNotFound { topic: name.clone(), waited, error: Some(error) };
                        self.fail_alone(id, &record, now, e);
                    }
                }
            }
        }
    }

    // ---- draining --------------------------------------------------------------------------

    /// Whether a partition's next batch may leave now.
    fn partition_ready(&self, now: Instant, state: &PartitionState) -> bool {
        if state.needs_bump {
            return false;
        }
        let front = state.queue.iter().find_map(|k| self.batches.get(k).filter(|b| !b.in_flight));
        match front {
            Some(b) => self.batch_may_leave(now, state, b),
            None => match &state.open {
                Some(b) => {
                    let lingered = now >= b.created + self.config.linger;
                    (lingered || self.closing || !self.flushes.is_empty()) && self.batch_may_leave(now, state, b)
                }
                None => false,
            },
        }
    }

    fn batch_may_leave(&self, now: Instant, state: &PartitionState, b: &Batch) -> bool {
        if matches!(b.body, Body::Compressing) || b.retry_at.is_some_and(|t| t > now) {
            return false;
        }
        if !self.idempotent {
            return true;
        }
        match b.sequence {
            // A numbered batch goes again only once its partition has nothing in flight.
            Some(_) => state.in_flight == 0,
            // Not behind an expired batch still in flight, as Java's producer holds new
            // batches while a sequence is unresolved. Were that batch not written, the new
            // one's refusal shows the gap only if no attempt of it may be in the log (see
            // `sequence_gap`); sent on the same stalled connection, it would be.
            None => {
                matches!(self.identity, Identity::Ready { .. })
                    && !self.bump_wanted
                    && state.unresolved == 0
                    && (state.confirmed || state.in_flight == 0)
            }
        }
    }

    /// Takes the next batch of a partition to send, sealing it if needed.
    fn take_batch(&mut self, topic: &TopicName, partition: i32) -> Option<BatchKey> {
        let state = &mut self.topics.get_mut(topic)?.partitions[partition as usize];
        while let Some(k) = state.queue.front() {
            match self.batches.get(k) {
                None => {
                    state.queue.pop_front();
                }
                Some(b) if b.in_flight => return None,
                Some(_) => return state.queue.pop_front(),
            }
        }
        let batch = state.open.take()?;
        let key = batch.key;
        self.batches.insert(key, batch);
        Some(key)
    }

    /// Seals and numbers a batch about to leave; `None` if it cannot be encoded.
    fn prepare(&mut self, key: BatchKey) -> Option<Bytes> {
        let (pid, epoch) = match self.identity {
            Identity::Ready { id, epoch } => (id.0, epoch),
            _ => (-1, -1),
        };
        let generation = self.generation;
        let batch = self.batches.get_mut(&key)?;
        let topic = self.topics.get_mut(&batch.topic)?;
        let state = &mut topic.partitions[batch.partition as usize];
        let mut renumbered = false;
        if self.idempotent && batch.sequence.is_none() {
            let count = batch.records.len() as i32;
            let base = state.next_sequence;
            state.next_sequence = sequence_after(base, count);
            state.pending_sequences.insert(base);
            batch.sequence = Some((generation, base));
            renumbered = true;
        }
        let (sequence_pid, sequence_epoch, base) = match batch.sequence {
            Some((_, base)) => (pid, epoch, base),
            None => (-1, -1, -1),
        };
        batch.body = match std::mem::replace(&mut batch.body, Body::Compressing) {
            Body::Open(open) => {
                let uncompressed = open.uncompressed_size();
                let params = BatchParams::new().compression(self.config.compression).producer(
                    sequence_pid,
                    sequence_epoch,
                    base,
                );
                match open.seal_pooled(params, &mut self.encoder, &self.batch_buffers) {
                    Ok(bytes) => {
                        topic.note_compression(bytes.len(), uncompressed);
                        Body::Sealed(bytes)
                    }
                    Err(e) => {
                        self.fail_unsealable(key, e.to_string());
                        return None;
                    }
                }
            }
            Body::Compressed(mut compressed) => {
                if batch.sequence.is_some() {
                    rewrite_producer_state(&mut compressed, sequence_pid, sequence_epoch, base);
                }
                Body::Sealed(self.batch_buffers.freeze(compressed))
            }
            Body::Sealed(bytes) if renumbered => {
                let mut fresh = BytesMut::from(&bytes[..]);
                rewrite_producer_state(&mut fresh, sequence_pid, sequence_epoch, base);
                Body::Sealed(fresh.freeze())
            }
            body => body,
        };
        match &batch.body {
            Body::Sealed(bytes) => Some(bytes.clone()),
            _ => None,
        }
    }

    fn build_request(
        &mut self,
        now: Instant,
        broker: BrokerId,
        link: &Link<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Option<Outgoing> {
        let partitions = self.leaders.get(&broker)?.clone();
        if partitions.is_empty() {
            return None;
        }
        // Record batches (magic 2) travel in Produce v3 and later.
        let ours = ApiKey::Produce.versions();
        let ours = crate::protocol::VersionRange { min: ours.min.max(3), max: ours.max };
        let version = match link.versions.get(ApiKey::Produce.as_i16()) {
            Some(theirs) if !ours.intersect(theirs).is_empty() => ours.intersect(theirs).max,
            theirs => {
                let error = match theirs {
                    None => VersionError::ApiNotSupported(ApiKey::Produce),
                    Some(broker) => VersionError::NoCommonVersion { api: ApiKey::Produce, broker, sansa: ours },
                };
                let error = RequestError::Version { address: link.address.clone(), error };
                self.fail_broker(broker, ProduceError::Unsupported(Box::new(error)));
                return None;
            }
        };
        let start = self.drain_start.get(&broker).copied().unwrap_or(0) % partitions.len();
        let mut taken: Vec<BatchKey> = Vec::new();
        let mut size = 0usize;
        let mut data: BTreeMap<TopicName, Vec<PartitionProduceData>> = BTreeMap::new();
        for i in 0..partitions.len() {
            let (topic, partition) = &partitions[(start + i) % partitions.len()];
            let ready = self
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(*partition as usize))
                .is_some_and(|s| self.partition_ready(now, s));
            if !ready {
                continue;
            }
            let next_size = self.peek_size(topic, *partition);
            if !taken.is_empty() && size + next_size > self.config.max_request_size {
                break;
            }
            let Some(key) = self.take_batch(topic, *partition) else { continue };
            let compressing = match self.batches.get_mut(&key) {
                Some(batch) => self.offload.start(batch, self.config.compression, &self.batch_buffers),
                None => false,
            };
            if compressing {
                // Back in its place; it leaves once compressed.
                if let Some(state) = self.partition_mut(topic, *partition) {
                    let at = state.queue.partition_point(|k| *k < key);
                    state.queue.insert(at, key);
                }
                continue;
            }
            #[cfg(feature = "plants")]
            let before = self.partition_mut(topic, *partition).map(|s| s.next_sequence);
            #[cfg(feature = "plants")]
            let offloaded = self.batches.get(&key).is_some_and(|b| matches!(b.body, Body::Compressed(_)));
            let Some(bytes) = self.prepare(key) else { continue };
            #[cfg(feature = "plants")]
            let bytes = if offloaded && ctx.planted(crate::plants::Plant::ProducerOffloadedWithoutState) {
                let mut stateless = BytesMut::from(&bytes[..]);
                rewrite_producer_state(&mut stateless, -1, -1, -1);
                let stateless = stateless.freeze();
                self.batches.get_mut(&key).expect("prepared above").body = Body::Sealed(stateless.clone());
                stateless
            } else {
                bytes
            };
            #[cfg(feature = "plants")]
            if ctx.planted(crate::plants::Plant::ProducerSequenceNotAdvanced) {
                if let (Some(before), Some(state)) = (before, self.partition_mut(topic, *partition)) {
                    state.next_sequence = before;
                }
            }
            size += bytes.len();
            let batch = self.batches.get_mut(&key).expect("prepared above");
            batch.in_flight = true;
            batch.attempts += 1;
            let age = now.saturating_duration_since(batch.created);
            self.metrics.batch_sent(now, batch.records.len(), bytes.len(), batch.size, age, batch.attempts > 1);
            let state = &mut self.topics.get_mut(topic).expect("listed").partitions[*partition as usize];
            state.in_flight += 1;
            data.entry(topic.clone())
                .or_default()
                .push(PartitionProduceData::default().with_index(*partition).with_records(Some(bytes)));
            taken.push(key);
        }
        self.drain_start.insert(broker, start + 1);
        if taken.is_empty() {
            return None;
        }
        self.last_drain.insert(broker, now);
        let topic_data = data
            .into_iter()
            .map(|(name, partition_data)| {
                let id = ctx.cluster.topics.get(&name).map(|t| t.id).unwrap_or_default();
                TopicProduceData::default().with_name(name).with_topic_id(id).with_partition_data(partition_data)
            })
            .collect();
        let timeout = ctx.config.request_timeout;
        let body = ProduceRequest::default()
            .with_acks(self.config.acks.wire())
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(topic_data);
        self.next_tag += 1;
        let tag = self.next_tag;
        let records: usize = taken.iter().filter_map(|k| self.batches.get(k)).map(|b| b.records.len()).sum();
        self.metrics.request_sent(now, records);
        self.requests.insert(tag, InFlight { batches: taken, sent: now });
        Some(Outgoing {
            body: RequestBody::Produce(body),
            version,
            tag,
            deadline: now + timeout,
            timeout,
            expects_response: self.config.acks != Acks::None,
        })
    }

    fn peek_size(&self, topic: &TopicName, partition: i32) -> usize {
        let Some(state) = self.topics.get(topic).and_then(|t| t.partitions.get(partition as usize)) else { return 0 };
        state.queue.iter().find_map(|k| self.batches.get(k)).or(state.open.as_ref()).map_or(0, |b| match &b.body {
            Body::Sealed(sealed) => sealed.len(),
            Body::Compressed(compressed) => compressed.len(),
            Body::Open(_) | Body::Compressing => b.size,
        })
    }

    /// Fails every waiting batch led by `broker` (it cannot take produce requests at all).
    fn fail_broker(&mut self, broker: BrokerId, error: ProduceError) {
        let partitions = self.leaders.get(&broker).cloned().unwrap_or_default();
        for (topic, partition) in partitions {
            while let Some(key) = self.take_batch(&topic, partition) {
                if let Some(b) = self.batches.remove(&key) {
                    self.fail_batch(b, error.clone());
                }
            }
        }
    }

    // ---- answers -------------------------------------------------------------------------

    fn handle_produce(&mut self, now: Instant, tag: Tag, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        let Some(request) = self.requests.remove(&tag) else { return };
        let response = match result {
            Ok(Response { body: Some(ResponseBody::Produce(r)), .. }) => r,
            Ok(Response { body: None, .. }) => {
                // acks=0: written to the socket, which is all the broker will say.
                for key in request.batches {
                    self.complete(key, Ack { base_offset: None, log_append_time: None });
                }
                return;
            }
            Ok(_) => {
                // The answer of another API: what the broker did with the batches is unknown.
                for key in request.batches {
                    let attempt = Attempt::Broker {
                        error: ErrorCode::UnknownServerError,
                        message: Some("answered with another API's response".into()),
                    };
                    self.retry_or_fail(now, key, attempt, true, ctx);
                }
                return;
            }
            Err(e) => {
                // Only errors raised before the request was sent say it was not processed.
                let maybe_written = !matches!(
                    e,
                    RequestError::Unreachable { .. }
                        | RequestError::Version { .. }
                        | RequestError::UnknownBroker(_)
                        | RequestError::UnknownBootstrap(_)
                        | RequestError::Coordinator(_)
                        | RequestError::Encode(_)
                );
                let refresh = !matches!(e, RequestError::ClientClosed);
                if refresh {
                    ctx.signals.push(Signal::RefreshMetadata);
                }
                for key in request.batches {
                    self.retry_or_fail(now, key, Attempt::Request(e.clone()), maybe_written, ctx);
                }
                return;
            }
        };
        self.metrics.response(now, now.saturating_duration_since(request.sent), response.throttle_time_ms);
        self.apply_leader_hints(&response, ctx);
        if self.config.adaptive_partitioning {
            let mut topics: Vec<TopicName> = Vec::new();
            for key in &request.batches {
                if let Some(b) = self.batches.get(key) {
                    if topics.last() != Some(&b.topic) {
                        topics.push(b.topic.clone());
                    }
                }
            }
            topics.dedup();
            for t in topics {
                self.update_load(now, &t);
            }
        }
        for key in request.batches {
            let Some(batch) = self.batches.get(&key) else { continue };
            let answer = find_partition(&response, &batch.topic, ctx.cluster, batch.partition);
            match answer {
                None => self.retry_or_fail(
                    now,
                    key,
                    Attempt::Broker {
                        error: ErrorCode::UnknownServerError,
                        message: Some("partition missing from the answer".into()),
                    },
                    true,
                    ctx,
                ),
                Some(p) => self.handle_partition(now, key, p, ctx),
            }
        }
    }

    fn handle_partition(&mut self, now: Instant, key: BatchKey, p: PartitionAnswer, ctx: &mut Ctx<'_>) {
        let ack = Ack {
            base_offset: (p.base_offset >= 0).then_some(p.base_offset),
            log_append_time: (p.log_append_time >= 0).then_some(p.log_append_time),
        };
        match p.error {
            ErrorCode::None => self.complete(key, ack),
            ErrorCode::DuplicateSequenceNumber => self.complete(key, ack),
            ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge
                if self.batches.get(&key).is_some_and(|b| b.records.len() > 1) =>
            {
                self.split(key);
            }
            ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId if self.idempotent => {
                let attempt = Attempt::Broker { error: p.error, message: p.message };
                self.sequence_gap(now, key, attempt, ctx);
            }
            ErrorCode::InvalidProducerEpoch
            | ErrorCode::ProducerFenced
            | ErrorCode::ClusterAuthorizationFailed
            | ErrorCode::TransactionalIdAuthorizationFailed
                if self.idempotent =>
            {
                let error = ProduceError::Fatal(Box::new(Attempt::Broker { error: p.error, message: p.message }));
                self.go_fatal(error);
            }
            code if code.is_retriable() => {
                if invalidates_metadata(code) {
                    ctx.signals.push(Signal::RefreshMetadata);
                }
                let hinted = p.new_leader;
                let appended = may_follow_append(code);
                self.retry_or_fail(now, key, Attempt::Broker { error: code, message: p.message }, appended, ctx);
                if hinted {
                    // The answer named the new leader (KIP-951): go there without waiting.
                    if let Some(b) = self.batches.get_mut(&key) {
                        b.retry_at = None;
                    }
                }
            }
            code => {
                let Some(b) = self.take_out(key) else { return };
                self.fail_batch(b, ProduceError::Broker { error: code, message: p.message });
            }
        }
    }

    /// KIP-951: a Produce answer may name a partition's new leader and its address.
    fn apply_leader_hints(&mut self, response: &ProduceResponse, ctx: &mut Ctx<'_>) {
        let mut changed = false;
        for e in &response.node_endpoints {
            if ctx.cluster.brokers.contains_key(&e.node_id) {
                continue;
            }
            let Ok(port) = u16::try_from(e.port) else { continue };
            let broker = crate::cluster::Broker {
                id: e.node_id,
                address: crate::config::BrokerAddress::new(e.host.as_str(), port),
                rack: e.rack.as_ref().map(|r| r.to_string()),
            };
            ctx.cluster.brokers.insert(e.node_id, broker);
        }
        for t in &response.responses {
            let name = topic_name(t, ctx.cluster);
            let Some(name) = name else { continue };
            for p in &t.partition_responses {
                let hint = &p.current_leader;
                if hint.leader_id.0 < 0 || !ctx.cluster.brokers.contains_key(&hint.leader_id) {
                    continue;
                }
                let Some(topic) = ctx.cluster.topics.get_mut(&name) else { continue };
                let Some(part) = topic.partitions.iter_mut().find(|x| x.index == p.index) else { continue };
                if hint.leader_epoch > part.leader_epoch {
                    part.leader = Some(hint.leader_id);
                    part.leader_epoch = hint.leader_epoch;
                    changed = true;
                }
            }
        }
        if changed {
            self.rebuild_leaders(ctx.cluster);
        }
    }

    /// Tells the partitioner each available partition's queue length (adaptive
    /// partitioning); a partition whose leader took nothing for
    /// `partitioner.availability.timeout.ms` while it had batches waiting is left out.
    fn update_load(&mut self, now: Instant, topic: &TopicName) {
        let Some(t) = self.topics.get(topic) else { return };
        let timeout = self.config.partition_availability_timeout;
        let mut sizes = Vec::with_capacity(t.available.len());
        for &p in &t.available {
            let Some(state) = t.partitions.get(p as usize) else { continue };
            // Every queued key names a live batch (`expire` takes its key out): counting the
            // queue is one read, where looking each key up cost a scan per produce answer.
            let queued = state.queue.len() + usize::from(state.open.is_some());
            if !timeout.is_zero() && queued > 0 {
                let leader = self.leaders.iter().find(|(_, ps)| ps.iter().any(|(n, i)| n == topic && *i == p as i32));
                let stuck = leader.is_some_and(|(b, _)| {
                    self.last_drain.get(b).is_some_and(|at| now.saturating_duration_since(*at) > timeout)
                });
                if stuck {
                    continue;
                }
            }
            sizes.push(QueueSize { partition: p, batches: queued as u32 });
        }
        let count = t.partitions.len() as u32;
        self.partitioner.handle_queue_sizes(topic, count, Some(&sizes));
    }

    /// Whether records wait for metadata: for their topic, or for a leader of the partition
    /// they are batched for. As in Java, the latter asks for a refresh too; otherwise they
    /// would wait for `metadata.max.age.ms`, which may be past their delivery timeout.
    fn needs_metadata(&self) -> bool {
        if self.topics.values().any(|t| !t.waiting.is_empty()) {
            return true;
        }
        let led: BTreeSet<(&TopicName, i32)> = self.leaders.values().flatten().map(|(t, p)| (t, *p)).collect();
        let open = self.topics.iter().flat_map(|(name, t)| {
            t.partitions.iter().enumerate().filter(|(_, p)| p.open.is_some()).map(move |(i, _)| (name, i as i32))
        });
        let queued = self.batches.values().filter(|b| !b.in_flight).map(|b| (&b.topic, b.partition));
        open.chain(queued).any(|tp| !led.contains(&tp))
    }

    /// Reads every topic's partitions and leaders from metadata again.
    fn rebuild_leaders(&mut self, cluster: &ClusterMetadata) {
        self.leaders.clear();
        for (name, topic) in &mut self.topics {
            refresh_topic(topic, name, cluster);
            if let Some(t) = cluster.topics.get(name) {
                for p in &t.partitions {
                    if let (Some(leader), true) = (p.leader, (p.index as usize) < topic.partitions.len()) {
                        self.leaders.entry(leader).or_default().push((name.clone(), p.index));
                    }
                }
            }
        }
    }

    /// Removes a batch from wherever it is tracked as in flight.
    fn take_out(&mut self, key: BatchKey) -> Option<Batch> {
        let mut b = self.batches.remove(&key)?;
        if b.in_flight {
            b.in_flight = false;
            if let Some(state) = self.partition_mut(&b.topic, b.partition) {
                state.in_flight = state.in_flight.saturating_sub(1);
                if b.abandoned {
                    state.unresolved = state.unresolved.saturating_sub(1);
                }
            }
        }
        Some(b)
    }

    fn partition_mut(&mut self, topic: &TopicName, partition: i32) -> Option<&mut PartitionState> {
        self.topics.get_mut(topic)?.partitions.get_mut(partition as usize)
    }

    fn complete(&mut self, key: BatchKey, ack: Ack) {
        let Some(b) = self.take_out(key) else { return };
        self.cancel_expiry(&b);
        if let Some((generation, base)) = b.sequence {
            if generation == self.generation {
                if let Some(state) = self.partition_mut(&b.topic, b.partition) {
                    state.pending_sequences.remove(&base);
                    state.confirmed = true;
                }
            }
        }
        if b.abandoned {
            return;
        }
        let delivery = Delivery { topic: b.topic, partition: b.partition, records: b.records, result: Ok(ack) };
        self.release(b.buffered);
        self.finish(delivery);
    }

    fn release(&mut self, bytes: usize) {
        self.buffered = self.buffered.saturating_sub(bytes);
    }

    /// A batch failed on an attempt: retry it if it may, else fail it.
    fn retry_or_fail(&mut self, now: Instant, key: BatchKey, attempt: Attempt, maybe_written: bool, ctx: &mut Ctx<'_>) {
        let Some(mut b) = self.take_out(key) else { return };
        b.maybe_written |= maybe_written;
        let deadline = b.deadline(self.config.delivery_timeout);
        if b.abandoned {
            // Already failed to the application; nothing more to do.
            return;
        }
        if b.attempts > self.config.retries {
            let error = ProduceError::RetriesExhausted { attempts: b.attempts, last: Box::new(attempt) };
            return self.fail_batch(b, error);
        }
        if now >= deadline {
            let error =
                ProduceError::DeliveryTimeout { timeout: self.config.delivery_timeout, last: Some(Box::new(attempt)) };
            return self.fail_batch(b, error);
        }
        #[cfg(feature = "plants")]
        if ctx.planted(crate::plants::Plant::ProducerDropOnRetry) {
            return self.release(b.buffered);
        }
        let delay = ctx.config.retry_backoff.delay(b.attempts, &mut self.rng);
        b.retry_at = Some(now + delay);
        b.last_error = Some(attempt);
        self.timers.insert(now + delay, Timer::Retry(key.0, key.1));
        #[cfg(feature = "plants")]
        let place = (b.topic.clone(), b.partition);
        self.requeue(b);
        #[cfg(feature = "plants")]
        if ctx.planted(crate::plants::Plant::ProducerRetryOutOfOrder) {
            if let Some(state) = self.partition_mut(&place.0, place.1) {
                state.queue.retain(|k| *k != key);
                state.queue.push_back(key);
            }
        }
    }

    /// Puts a batch back in its partition's queue, in its place.
    fn requeue(&mut self, b: Batch) {
        let key = b.key;
        let (topic, partition) = (b.topic.clone(), b.partition);
        self.batches.insert(key, b);
        if let Some(state) = self.partition_mut(&topic, partition) {
            let at = state.queue.partition_point(|k| *k < key);
            state.queue.insert(at, key);
        }
    }

    /// OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID for a numbered batch.
    fn sequence_gap(&mut self, now: Instant, key: BatchKey, attempt: Attempt, ctx: &mut Ctx<'_>) {
        let Some(b) = self.batches.get(&key) else { return };
        // The gap is certain when nothing before the batch is pending and no attempt of it
        // can be in the log: none may have been written, or it is numbered past a sequence
        // certainly missing (the broker takes nothing past one). Otherwise an earlier
        // attempt that may have been written contradicts the refusal; renumbering the batch
        // could store it twice, so it is retried as it is (a broker that has it answers the
        // retry as a duplicate; one that truly lost track keeps refusing it until its
        // delivery timeout).
        let base = b.sequence.filter(|(g, _)| *g == self.generation).map(|(_, s)| s);
        let maybe_written = b.maybe_written;
        let (topic, partition) = (b.topic.clone(), b.partition);
        let first = match (base, self.partition_mut(&topic, partition)) {
            (Some(base), Some(state)) => {
                let past_gap = state.gap.is_some_and(|g| g < base);
                (!maybe_written || past_gap) && state.pending_sequences.first() == Some(&base)
            }
            _ => false,
        };
        #[cfg(feature = "plants")]
        let first = first && !ctx.planted(crate::plants::Plant::ProducerNoEpochBump);
        if first {
            // Nothing before it is pending: the broker does not have it, nor anything after.
            if let Some(state) = self.partition_mut(&topic, partition) {
                state.needs_bump = true;
            }
            self.want_bump();
        }
        self.retry_or_fail(now, key, attempt, false, ctx);
        if first {
            if let Some(b) = self.batches.get_mut(&key) {
                b.retry_at = None;
            }
        }
    }

    /// The bump starts from `maybe_bump` once the call at hand is done: in the middle of an
    /// answer, the batches after this one are not yet marked as maybe written.
    fn want_bump(&mut self) {
        self.bump_wanted = true;
    }

    /// Starts the epoch bump once nothing that might be in the log is unresolved.
    fn maybe_bump(&mut self, now: Instant) {
        if !self.bump_wanted || !self.requests.is_empty() {
            return;
        }
        let Identity::Ready { id, epoch } = self.identity else { return };
        let generation = self.generation;
        let blocked = self.batches.values().any(|b| {
            b.maybe_written
                && b.sequence.is_some_and(|(g, _)| g == generation)
                && self.topics.get(&b.topic).is_some_and(|t| !t.partitions[b.partition as usize].needs_bump)
        });
        if blocked {
            return;
        }
        self.identity = Identity::Wanted { at: now, bump: Some((id, epoch)), failures: 0 };
        // Due now, so that a driver between inputs (this may run while requests are built)
        // asks for a connection for it.
        self.timers.insert(now, Timer::Identity);
    }

    /// Epoch bumped: every partition restarts at 0; batches not in the log are renumbered.
    fn start_generation(&mut self) {
        self.generation += 1;
        self.bump_wanted = false;
        for topic in self.topics.values_mut() {
            for state in &mut topic.partitions {
                state.next_sequence = 0;
                state.pending_sequences.clear();
                state.needs_bump = false;
                state.gap = None;
                state.confirmed = false;
            }
        }
        for b in self.batches.values_mut() {
            if !b.in_flight {
                b.sequence = None;
                b.maybe_written = false;
            }
        }
    }

    fn split(&mut self, key: BatchKey) {
        let Some(b) = self.take_out(key) else { return };
        let Body::Sealed(sealed) = &b.body else { return };
        let sealed = sealed.clone();
        let options = crate::protocol::records::DecodeOptions::new();
        let decoded: Vec<_> = crate::protocol::records::decode_batches(sealed, &options).collect();
        let records: Vec<crate::protocol::records::Record> = match decoded.into_iter().next() {
            Some(Ok(batch)) => batch.into_records(),
            _ => {
                return self.fail_batch(
                    b,
                    ProduceError::Broker { error: ErrorCode::MessageTooLarge, message: Some("cannot split".into()) },
                )
            }
        };
        if let Some((_, base)) = b.sequence {
            if let Some(state) = self.partition_mut(&b.topic, b.partition) {
                state.pending_sequences.remove(&base);
                state.needs_bump = true;
            }
            self.want_bump();
        }
        // Pieces of about half the refused batch each.
        let half = (b.size / 2).max(1);
        let mut pieces: Vec<Batch> = Vec::new();
        let mut current: Option<Batch> = None;
        for (r, entry) in records.iter().zip(b.records.iter()) {
            if current.as_ref().is_some_and(|c| c.size >= half) {
                pieces.extend(current.take());
            }
            let piece = current.get_or_insert_with(|| Batch {
                key: (b.key.0, b.key.1 * 64 + pieces.len() as u32 + 1),
                topic: b.topic.clone(),
                partition: b.partition,
                records: Vec::new(),
                body: Body::Open(OpenBatch::with_capacity(half)),
                size: crate::protocol::records::RECORD_BATCH_OVERHEAD,
                buffered: 0,
                created: b.created,
                attempts: b.attempts,
                retry_at: None,
                sequence: None,
                maybe_written: false,
                last_error: b.last_error.clone(),
                in_flight: false,
                abandoned: false,
            });
            let builder = piece.builder();
            let before = builder.uncompressed_size();
            // These records were encoded once already, so appending them again cannot fail.
            let _ = builder.append(entry.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers);
            piece.size += builder.uncompressed_size() - before;
            piece.buffered += entry.buffer_size as usize;
            let mut e = *entry;
            e.offset_delta = (piece.records.len()) as u32;
            piece.records.push(e);
        }
        pieces.extend(current);
        for p in pieces {
            let (k0, k1) = p.key;
            self.timers.insert(p.created + self.config.delivery_timeout, Timer::Expire(k0, k1));
            self.requeue(p);
        }
    }

    /// A finished batch's expiry timer goes, so it never sends `expire` looking for it.
    fn cancel_expiry(&mut self, b: &Batch) {
        let (k0, k1) = b.key;
        self.timers.remove(b.deadline(self.config.delivery_timeout), Timer::Expire(k0, k1));
    }

    fn fail_batch(&mut self, mut b: Batch, error: ProduceError) {
        self.cancel_expiry(&b);
        if b.abandoned {
            // Failed to the application when it expired; its late answer changes nothing.
            return;
        }
        // Its sequence is settled as far as ordering goes: later batches may be the first
        // pending one now (see `sequence_gap`).
        if let Some((generation, base)) = b.sequence {
            if generation == self.generation {
                let count = b.records.len() as i32;
                let not_written = !b.in_flight && !b.maybe_written;
                let mut bump = false;
                if let Some(state) = self.partition_mut(&b.topic, b.partition) {
                    let first = state.pending_sequences.first() == Some(&base);
                    state.pending_sequences.remove(&base);
                    if not_written && !state.needs_bump {
                        // Certainly not in the log, so the broker takes nothing numbered after
                        // it. As the last numbered, its sequences are given again; else, with
                        // nothing before it unresolved, the gap is certain now and the epoch
                        // is bumped at once, rather than when the next batch is refused (which,
                        // sent where its answer may be lost, could not show the gap).
                        if state.next_sequence == sequence_after(base, count) {
                            state.next_sequence = base;
                        } else {
                            state.gap = Some(state.gap.map_or(base, |g| g.min(base)));
                            if first {
                                state.needs_bump = true;
                                bump = true;
                            }
                        }
                    }
                }
                if bump {
                    self.want_bump();
                }
            }
        }
        if b.in_flight {
            // Its answer is still coming; keep it to settle sequences, tell the application now.
            b.abandoned = true;
            if let Some(state) = self.partition_mut(&b.topic, b.partition) {
                state.unresolved += 1;
            }
            let delivery = Delivery {
                topic: b.topic.clone(),
                partition: b.partition,
                records: std::mem::take(&mut b.records),
                result: Err(error),
            };
            self.release(b.buffered);
            b.buffered = 0;
            self.batches.insert(b.key, b);
            self.finish(delivery);
            return;
        }
        let delivery = Delivery { topic: b.topic, partition: b.partition, records: b.records, result: Err(error) };
        self.release(b.buffered);
        self.finish(delivery);
    }

    fn go_fatal(&mut self, error: ProduceError) {
        self.identity = Identity::Fatal(error.clone());
        let keys: Vec<BatchKey> = self.batches.iter().filter(|(_, b)| !b.abandoned).map(|(k, _)| *k).collect();
        for key in keys {
            // Out of the in-flight count too: nothing of this producer is sent any more.
            if let Some(b) = self.take_out(key) {
                self.fail_batch(b, error.clone());
            }
        }
        let opens: Vec<Batch> =
            self.topics.values_mut().flat_map(|t| t.partitions.iter_mut().filter_map(|p| p.open.take())).collect();
        for b in opens {
            self.fail_batch(b, error.clone());
        }
        for t in self.topics.values_mut() {
            t.partitions.iter_mut().for_each(|p| p.queue.clear());
        }
        self.requests.clear();
    }

    /// Emits a delivery and settles flushes.
    fn finish(&mut self, delivery: Delivery) {
        let n = delivery.records.len();
        if delivery.result.is_err() {
            self.metrics.failed(self.clock, n);
        }
        self.outstanding = self.outstanding.saturating_sub(n);
        for f in &mut self.flushes {
            let before = delivery.records.partition_point(|r| r.id <= f.upto);
            f.remaining = f.remaining.saturating_sub(before);
        }
        // The delivery goes first, so a flush answered by it never overtakes its records.
        self.events.push_back(Event::Delivery(delivery));
        while self.flushes.front().is_some_and(|f| f.remaining == 0) {
            let f = self.flushes.pop_front().expect("checked");
            self.events.push_back(Event::Flushed { id: f.id });
        }
    }

    fn expire(&mut self, now: Instant, key: BatchKey) {
        let timeout = self.config.delivery_timeout;
        if let Some(b) = self.batches.get(&key) {
            if b.abandoned || now < b.deadline(timeout) {
                return;
            }
            let last = b.last_error.clone().map(Box::new);
            let error = ProduceError::DeliveryTimeout { timeout, last };
            let b = self.batches.remove(&key).expect("checked");
            if let Some(state) = self.partition_mut(&b.topic, b.partition) {
                state.queue.retain(|k| *k != key);
            }
            self.fail_batch(b, error);
            return;
        }
        // Still the open batch of its partition?
        let found = self.topics.iter().find_map(|(name, t)| {
            t.partitions.iter().position(|p| p.open.as_ref().is_some_and(|b| b.key == key)).map(|i| (name.clone(), i))
        });
        if let Some((name, i)) = found {
            let state = &mut self.topics.get_mut(&name).expect("found").partitions[i];
            let b = state.open.take().expect("found");
            let last = b.last_error.clone().map(Box::new);
            let reason = if self.leaders.values().any(|v| v.iter().any(|(t, p)| *t == name && *p == i as i32)) {
                last
            } else {
                Some(Box::new(Attempt::NoLeader))
            };
            self.fail_batch(b, ProduceError::DeliveryTimeout { timeout, last: reason });
        }
    }

    /// Fails a topic's waiting records that have waited `max.block.ms`, and sets the timer for
    /// the next one. A timer left from records placed since finds none due, which is harmless.
    fn expire_waiting(&mut self, now: Instant, serial: u64) {
        let max_block = self.config.max_block;
        let Some(topic) = self.topics.values_mut().find(|t| t.serial == serial) else { return };
        let mut expired = Vec::new();
        while topic.waiting.front().is_some_and(|(_, _, since)| *since + max_block <= now) {
            expired.extend(topic.waiting.pop_front());
        }
        if let Some((_, _, since)) = topic.waiting.front() {
            self.timers.insert(*since + max_block, Timer::Waiting(serial));
        }
        let error = topic.error;
        for (sid, record, since) in expired {
            self.buffered -= record.size_in_buffer();
            let waited = now.saturating_duration_since(since);
            let topic = record.topic.clone();
            self.fail_alone(sid, &record, now, ProduceError::TopicNotFound { topic, waited, error });
        }
    }

    // ---- producer id -------------------------------------------------------------------------

    fn identity_wanted(&self, now: Instant) -> bool {
        matches!(self.identity, Identity::Wanted { at, .. } if at <= now)
    }

    fn build_init(&mut self, now: Instant, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        let Identity::Wanted { bump, failures, .. } = self.identity.clone() else { return None };
        let version = match link.versions.negotiate(ApiKey::InitProducerId) {
            Ok(v) => v,
            Err(error) => {
                let e = RequestError::Version { address: link.address.clone(), error };
                self.go_fatal(ProduceError::Unsupported(Box::new(e)));
                return None;
            }
        };
        // KIP-360 bumps keep the id when the broker supports it (v3+) and the epoch has room.
        let (id, epoch) = match bump {
            Some((id, epoch)) if version >= 3 && epoch < i16::MAX - 1 => (id, epoch),
            _ => (ProducerId(-1), -1),
        };
        self.next_tag += 1;
        let tag = self.next_tag;
        self.identity = Identity::Requesting { tag, bump, failures };
        let timeout = ctx.config.request_timeout;
        let body = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(i32::MAX)
            .with_producer_id(id)
            .with_producer_epoch(epoch);
        Some(Outgoing {
            body: RequestBody::InitProducerId(body),
            version,
            tag,
            deadline: now + timeout,
            timeout,
            expects_response: true,
        })
    }

    fn handle_init(&mut self, now: Instant, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        let Identity::Requesting { bump, failures, .. } = self.identity.clone() else { return };
        // Anything but a clean answer (no answer, another body, a retriable code) is retried
        // after the backoff.
        if let Ok(Response { body: Some(ResponseBody::InitProducerId(r)), .. }) = result {
            if r.error_code == ErrorCode::None {
                self.identity = Identity::Ready { id: r.producer_id, epoch: r.producer_epoch };
                if bump.is_some() {
                    self.start_generation();
                }
                return;
            }
            if !r.error_code.is_retriable() && r.error_code != ErrorCode::UnknownServerError {
                let error = ProduceError::Fatal(Box::new(Attempt::Broker { error: r.error_code, message: None }));
                return self.go_fatal(error);
            }
            ctx.signals.push(Signal::RefreshMetadata);
        }
        let failures = failures + 1;
        let at = now + ctx.config.retry_backoff.delay(failures, &mut self.rng);
        self.identity = Identity::Wanted { at, bump, failures };
        self.timers.insert(at, Timer::Identity);
    }
}

/// A Produce answer for one partition, as the producer reads it.
#[derive(Debug)]
struct PartitionAnswer {
    error: ErrorCode,
    message: Option<String>,
    base_offset: i64,
    log_append_time: i64,
    /// The answer named a newer leader.
    new_leader: bool,
}

fn topic_name(
    t: &crate::protocol::messages::produce::response::TopicProduceResponse,
    cluster: &ClusterMetadata,
) -> Option<TopicName> {
    if !t.name.is_empty() {
        return Some(t.name.clone());
    }
    cluster.topics.iter().find(|(_, x)| x.id == t.topic_id).map(|(n, _)| n.clone())
}

fn find_partition(
    response: &ProduceResponse,
    topic: &TopicName,
    cluster: &ClusterMetadata,
    partition: i32,
) -> Option<PartitionAnswer> {
    let t = response.responses.iter().find(|t| topic_name(t, cluster).as_ref() == Some(topic))?;
    let p = t.partition_responses.iter().find(|p| p.index == partition)?;
    let mut message = p.error_message.as_ref().map(|m| m.to_string());
    if let Some(first) = p.record_errors.first() {
        let detail = first.batch_index_error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        message = Some(format!("record {} of the batch: {}", first.batch_index, detail));
    }
    Some(PartitionAnswer {
        error: p.error_code,
        message,
        base_offset: p.base_offset,
        log_append_time: p.log_append_time_ms,
        new_leader: p.current_leader.leader_id.0 >= 0,
    })
}

/// The sequence after `count` records numbered from `base`: sequences wrap to 0 past
/// i32::MAX, as the broker expects.
fn sequence_after(base: i32, count: i32) -> i32 {
    base.wrapping_add(count) & i32::MAX
}

/// Retriable errors a broker may answer after it appended the batch: an acks=all produce
/// waits for the in-sync replicas after the append and ends with REQUEST_TIMED_OUT when
/// they are slow, NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank, or
/// NOT_LEADER_OR_FOLLOWER when leadership moved meanwhile (and the new leader may hold the
/// batch), UNKNOWN_TOPIC_OR_PARTITION or KAFKA_STORAGE_ERROR when the partition went away or
/// its log failed meanwhile. The batch may be in the log then.
fn may_follow_append(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::RequestTimedOut
            | ErrorCode::NotEnoughReplicasAfterAppend
            | ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::KafkaStorageError
    )
}

/// Errors after which the producer's metadata is refreshed (Java's InvalidMetadataException).
fn invalidates_metadata(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::KafkaStorageError
            | ErrorCode::UnknownTopicId
            | ErrorCode::InconsistentTopicId
            | ErrorCode::NotEnoughReplicas
    )
}

/// Reads a topic's partition count and leaders from metadata; partitions only grow.
fn refresh_topic(topic: &mut TopicState, name: &TopicName, cluster: &ClusterMetadata) {
    let Some(t) = cluster.topics.get(name) else { return };
    topic.error = (t.error != ErrorCode::None).then_some(t.error);
    if t.error != ErrorCode::None && t.partitions.is_empty() {
        return;
    }
    let count = t.partitions.iter().map(|p| p.index + 1).max().unwrap_or(0).max(0) as usize;
    while topic.partitions.len() < count {
        topic.partitions.push(PartitionState::default());
    }
    topic.available =
        t.partitions.iter().filter(|p| p.leader.is_some() && p.index >= 0).map(|p| p.index as u32).collect();
}

impl Machine for Producer {
    fn wanted(&self, now: Instant, out: &mut Vec<(Target, Role)>) {
        if self.identity_wanted(now) {
            out.push((Target::AnyBroker, Role::General));
        }
        for (broker, partitions) in &self.leaders {
            let ready = partitions.iter().any(|(topic, partition)| {
                self.topics
                    .get(topic)
                    .and_then(|t| t.partitions.get(*partition as usize))
                    .is_some_and(|s| self.partition_ready(now, s))
            });
            if ready {
                out.push((Target::Broker(*broker), Role::General));
            }
        }
    }

    fn poll_request(&mut self, now: Instant, target: &Target, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        if link.role != Role::General {
            return None;
        }
        let out = match target {
            Target::AnyBroker if self.identity_wanted(now) => self.build_init(now, link, ctx),
            Target::Broker(id) => self.build_request(now, *id, link, ctx),
            _ => None,
        };
        // A batch that failed to seal may want a bump.
        self.maybe_bump(now);
        out
    }

    fn handle_response(&mut self, now: Instant, tag: Tag, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        self.clock = now;
        if matches!(self.identity, Identity::Requesting { tag: t, .. } if t == tag) {
            self.handle_init(now, result, ctx);
        } else {
            self.handle_produce(now, tag, result, ctx);
        }
        self.maybe_bump(now);
    }

    fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.clock = now;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                // Due now: `wanted` sees the batch or the request.
                Timer::Linger(_) | Timer::Retry(..) | Timer::Identity => {}
                Timer::Expire(a, b) => self.expire(now, (a, b)),
                Timer::Waiting(id) => self.expire_waiting(now, id),
                Timer::Metadata => {
                    if self.needs_metadata() {
                        ctx.signals.push(Signal::RefreshMetadata);
                    }
                }
            }
        }
        self.maybe_bump(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.soonest()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn fail_target(&mut self, _now: Instant, _target: &Target, _error: &RequestError, _issued_before: Instant) {
        // Batches wait for their leader until their delivery timeout; InitProducerId retries.
    }

    fn handle_metadata(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.refresh(now, ctx.cluster);
        if self.needs_metadata() {
            // A topic not there yet (being created, or a typo), or batches whose partition
            // has no known leader: look again after a backoff.
            self.timers.insert(now + ctx.config.retry_backoff.initial, Timer::Metadata);
        }
    }

    fn close(&mut self, _now: Instant) {
        self.closing = true;
    }

    fn is_idle(&self) -> bool {
        self.outstanding == 0 && !matches!(self.identity, Identity::Requesting { .. })
    }
}

#[cfg(test)]
mod tests;
