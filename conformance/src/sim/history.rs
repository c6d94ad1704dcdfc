//! The record-level history of a run: every record the workload produced, what became of it
//! (acked at a partition and offset, failed with an error), the order it went on the wire,
//! who consumed it, and, at the end, what the fake cluster actually stored.
//!
//! Records come from two places. The simulator's raw Produce requests ([`RecordId`],
//! `sent` / `acked` / `failed`) and the producer machine ([`SendKey`]: `send_taken` or
//! `send_refused` when [`sansa::Client::send`] answers, `send_outcome` per record of each
//! delivery report), with what each producer's buffer held. The data invariants in
//! [`super::invariants`] read only this and the logs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use sansa::producer::{Acks, SendId};

use super::harness::CmdId;

/// A record the workload made, named by its value `c{client}-{seq}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// The client that produced it.
    pub client: usize,
    /// Its number within that client.
    pub seq: u64,
}

impl RecordId {
    /// The record's value on the wire.
    pub fn value(&self) -> String {
        self.to_string()
    }

    /// The record a value names, if it is one of ours.
    pub fn parse(value: &[u8]) -> Option<RecordId> {
        let s = std::str::from_utf8(value).ok()?.strip_prefix('c')?;
        let (client, seq) = s.split_once('-')?;
        Some(RecordId { client: client.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}-{}", self.client, self.seq)
    }
}

/// A record sent through [`sansa::Client::send`], named by its value `p{client}-{seq}`
/// (padding may follow a `:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SendKey {
    /// The client that sent it.
    pub client: usize,
    /// Its number among that client's sends.
    pub seq: u64,
}

impl SendKey {
    /// The record's value without padding.
    pub fn value(&self) -> String {
        self.to_string()
    }

    /// The send a value names, if it is one of ours.
    pub fn parse(value: &[u8]) -> Option<SendKey> {
        let s = std::str::from_utf8(value).ok()?.strip_prefix('p')?;
        let s = s.split(':').next()?;
        let (client, seq) = s.split_once('-')?;
        Some(SendKey { client: client.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl fmt::Display for SendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}-{}", self.client, self.seq)
    }
}

/// The outcome of one sent record: acked at (partition, offset), or failed with the error.
pub type SendOutcome = Result<(i32, Option<i64>), String>;

/// Everything known about one record sent through the producer machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendEntry {
    /// Its topic.
    pub topic: String,
    /// Its key, if keyed.
    pub key: Option<String>,
    /// The partition the record named, if it named one.
    pub partition: Option<i32>,
    /// When it was handed to `Client::send`.
    pub sent: Duration,
    /// The id `send` gave it; `None` when the send was refused.
    pub id: Option<SendId>,
    /// Why `send` refused it.
    pub refused: Option<String>,
    /// Whether its producer writes idempotently.
    pub idempotent: bool,
    /// Its producer's acks.
    pub acks: Acks,
    /// Its outcome is due by then: the send, `max.block.ms` when its topic's metadata was
    /// still unknown, and `delivery.timeout.ms`.
    pub deadline: Duration,
    /// Sent once the faults were over, to a partition with a leader: it must be acked.
    pub must_ack: bool,
    /// Every outcome reported for it, with its time (exactly one is right).
    pub outcomes: Vec<(Duration, SendOutcome)>,
}

impl SendEntry {
    /// Where it was acked, if it was (first outcome).
    pub fn ack(&self) -> Option<(i32, Option<i64>)> {
        match self.outcomes.first() {
            Some((_, Ok(a))) => Some(*a),
            _ => None,
        }
    }
}

/// What one client's producer held in its buffer over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStats {
    /// Its `buffer.memory`.
    pub buffer_memory: usize,
    /// The most `producer_buffered()` reported after any step, and when.
    pub peak: usize,
    /// When the peak was first seen.
    pub peak_at: Duration,
    /// `producer_buffered()` when the logs were read at the end.
    pub buffered_at_end: usize,
    /// `producer_outstanding()` when the logs were read at the end.
    pub outstanding_at_end: usize,
}

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// Everything known about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    /// Where it was sent.
    pub topic: String,
    /// The partition it was sent to.
    pub partition: i32,
    /// When it was handed to the client.
    pub sent: Duration,
    /// The command that carried it, when it went as a raw request.
    pub cmd: Option<CmdId>,
    /// The first time it was written to a connection: the connection (the simulator's
    /// namespaced id) and a global write order.
    pub wire: Option<(u64, u64)>,
    /// Acks: when, partition, offset. Exactly one is right.
    pub acks: Vec<(Duration, i32, i64)>,
    /// Failures: when, and the error's kind. An ack or a failure, never both, never twice.
    pub failures: Vec<(Duration, String)>,
}

impl RecordEntry {
    /// How many outcomes it got.
    pub fn outcomes(&self) -> usize {
        self.acks.len() + self.failures.len()
    }
}

/// One record read by a consumer (or the workload's Fetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// When.
    pub at: Duration,
    /// By which client.
    pub client: usize,
    /// From where.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The value read.
    pub value: Option<Bytes>,
}

/// A topic partition and an offset in it.
pub type Place = (String, i32, i64);

/// One record a group member's poll handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// When.
    pub at: Duration,
    /// Which client.
    pub client: usize,
    /// From where.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Which of the client's ownerships of the partition (a count of the rebalances that
    /// assigned it): within one, offsets must follow the log without a gap.
    pub session: u64,
}

/// Partitions a member gave up in a rebalance, with the last offset it handed out from each
/// (what its commit on revoke covers), to compare with where the next owner starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// When the revocation was reported.
    pub at: Duration,
    /// The member that gave the partition up.
    pub client: usize,
    /// The partition.
    pub topic: String,
    /// Its index.
    pub partition: i32,
    /// The last offset the member handed out from it in this ownership.
    pub last: Option<i64>,
    /// The network was calm and the member commits on revoke: the next owner must start
    /// after `last`.
    pub checked: bool,
}

/// A member that crashed, with the partitions it owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// When.
    pub at: Duration,
    /// Which client.
    pub client: usize,
    /// What it owned then.
    pub owned: Vec<(String, i32)>,
    /// Each of those must be assigned to a live member within this long (`None`: not
    /// checked, the crash happened under faults).
    pub bound: Option<Duration>,
}

/// What the history knows of one consumer client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerInfo {
    /// Its group.
    pub group: String,
    /// It reads with isolation.level=read_committed.
    pub read_committed: bool,
    /// It commits what it handed out when partitions are revoked (auto-commit, or the
    /// harness's commit before acknowledging).
    pub commits_on_revoke: bool,
    /// Its `fetch.buffer.memory`.
    pub buffer_memory: usize,
    /// What one fetch may bring past it: a batch larger than the room left, which brokers
    /// return whole (at most `max.partition.fetch.bytes` of one partition here).
    pub slack: usize,
    /// The most it buffered after any step, and when.
    pub peak: usize,
    /// When the peak was first seen.
    pub peak_at: Duration,
}

/// What group members did: deliveries, rebalances, commits as the coordinator stored them.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHistory {
    /// Every record handed out, in order.
    pub deliveries: Vec<Delivery>,
    /// Revocations, by time.
    pub handovers: Vec<Handover>,
    /// Assignments: when, client, partition.
    pub assigned: Vec<(Duration, usize, (String, i32))>,
    /// Crashed members.
    pub crashes: Vec<Crash>,
    /// The consumer clients.
    pub consumers: BTreeMap<usize, ConsumerInfo>,
    /// Each group's committed offsets as the coordinator stored them, as they changed:
    /// (group, topic, partition) -> (when, offset).
    pub committed: BTreeMap<(String, String, i32), Vec<(Duration, i64)>>,
    /// Each group's subscribed partitions at the end.
    pub subscribed: BTreeMap<String, Vec<(String, i32)>>,
    /// Each group's live members' assignments once the group settled at the end (`None`
    /// while not checked).
    pub settled: BTreeMap<String, BTreeMap<usize, Vec<(String, i32)>>>,
    /// Groups that did not catch up with the log end at the end, and why.
    pub behind: Vec<String>,
    /// Records of aborted transactions.
    pub aborted: std::collections::BTreeSet<Place>,
}

/// The history of a run. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// What group members did.
    pub consumer: ConsumerHistory,
    records: BTreeMap<RecordId, RecordEntry>,
    consumed: Vec<Consumed>,
    logs: BTreeMap<TopicPartition, Vec<(i64, Option<Bytes>)>>,
    wire_writes: u64,
    /// A fault may have applied a request and then lost its answer, and the producer may
    /// retry: acked records may then be stored more than once.
    pub duplicates_allowed: bool,
    sends: BTreeMap<SendKey, SendEntry>,
    stray_deliveries: Vec<(Duration, String)>,
    producers: BTreeMap<usize, ProducerStats>,
    /// Followers lag (the replication is not instant): a leader change, even a clean one,
    /// truncates what followers had not copied, acks=1 records included.
    pub acks1_may_be_lost: bool,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// A record was handed to the client for `topic`/`partition`.
    pub fn sent(&mut self, at: Duration, id: RecordId, topic: &str, partition: i32, cmd: Option<CmdId>) {
        self.records.insert(
            id,
            RecordEntry {
                topic: topic.to_string(),
                partition,
                sent: at,
                cmd,
                wire: None,
                acks: Vec::new(),
                failures: Vec::new(),
            },
        );
    }

    /// A record's value was written to connection `conn`; only the first write counts (a
    /// retry keeps the record's place).
    pub fn on_wire(&mut self, conn: u64, value: &[u8]) {
        let Some(id) = RecordId::parse(value) else { return };
        let Some(r) = self.records.get_mut(&id) else { return };
        if r.wire.is_none() {
            self.wire_writes += 1;
            r.wire = Some((conn, self.wire_writes));
        }
    }

    /// The cluster acknowledged `id` at `partition`/`offset`.
    pub fn acked(&mut self, at: Duration, id: RecordId, partition: i32, offset: i64) {
        if let Some(r) = self.records.get_mut(&id) {
            r.acks.push((at, partition, offset));
        }
    }

    /// `id` failed with an error of kind `error`.
    pub fn failed(&mut self, at: Duration, id: RecordId, error: &str) {
        if let Some(r) = self.records.get_mut(&id) {
            r.failures.push((at, error.to_string()));
        }
    }

    /// A client read a record.
    pub fn consumed(&mut self, c: Consumed) {
        self.consumed.push(c);
    }

    /// What the cluster stores in `topic`/`partition`: offset and value, ascending.
    pub fn set_log(&mut self, topic: &str, partition: i32, log: Vec<(i64, Option<Bytes>)>) {
        self.logs.insert((topic.to_string(), partition), log);
    }

    /// `Client::send` took a record (`entry.id` is set) or refused it (`entry.refused`).
    pub fn send_taken(&mut self, key: SendKey, entry: SendEntry) {
        self.sends.insert(key, entry);
    }

    /// A delivery report gave `key` an outcome.
    pub fn send_outcome(&mut self, at: Duration, key: SendKey, outcome: SendOutcome) {
        if let Some(e) = self.sends.get_mut(&key) {
            e.outcomes.push((at, outcome));
        }
    }

    /// A delivery report named a send id no send returned.
    pub fn stray_delivery(&mut self, at: Duration, what: String) {
        self.stray_deliveries.push((at, what));
    }

    /// Client `client`'s producer holds `buffered` bytes at `at`, of `buffer_memory`.
    pub fn producer_sample(&mut self, client: usize, buffer_memory: usize, buffered: usize, at: Duration) {
        let s = self.producers.entry(client).or_default();
        s.buffer_memory = buffer_memory;
        if buffered > s.peak {
            s.peak = buffered;
            s.peak_at = at;
        }
    }

    /// What client `client`'s producer still holds at the end of the run.
    pub fn producer_end(&mut self, client: usize, buffered: usize, outstanding: usize) {
        let s = self.producers.entry(client).or_default();
        s.buffered_at_end = buffered;
        s.outstanding_at_end = outstanding;
    }

    /// Every record sent through the producer machine.
    pub fn sends(&self) -> &BTreeMap<SendKey, SendEntry> {
        &self.sends
    }

    /// Delivery reports for ids no send returned.
    pub fn stray_deliveries(&self) -> &[(Duration, String)] {
        &self.stray_deliveries
    }

    /// Each producing client's buffer use.
    pub fn producers(&self) -> &BTreeMap<usize, ProducerStats> {
        &self.producers
    }

    /// Where each record sent through the producer machine is stored.
    pub fn stored_send_places(&self) -> BTreeMap<SendKey, Vec<(String, i32, i64)>> {
        let mut places: BTreeMap<SendKey, Vec<(String, i32, i64)>> = BTreeMap::new();
        for ((t, p), log) in &self.logs {
            for (o, v) in log {
                if let Some(k) = v.as_deref().and_then(SendKey::parse) {
                    places.entry(k).or_default().push((t.clone(), *p, *o));
                }
            }
        }
        places
    }

    /// Every record, by id.
    pub fn records(&self) -> &BTreeMap<RecordId, RecordEntry> {
        &self.records
    }

    /// Every record read.
    pub fn consumed_records(&self) -> &[Consumed] {
        &self.consumed
    }

    /// The stored logs, as last read.
    pub fn logs(&self) -> &BTreeMap<TopicPartition, Vec<(i64, Option<Bytes>)>> {
        &self.logs
    }

    /// The value stored at `offset`, if the log holds that offset.
    pub fn stored_at(&self, topic: &str, partition: i32, offset: i64) -> Option<&Option<Bytes>> {
        let log = self.logs.get(&(topic.to_string(), partition))?;
        log.binary_search_by_key(&offset, |(o, _)| *o).ok().map(|i| &log[i].1)
    }

    /// Where each of our records is stored: every (topic, partition, offset) holding it.
    pub fn stored_places(&self) -> BTreeMap<RecordId, Vec<(String, i32, i64)>> {
        let mut places: BTreeMap<RecordId, Vec<(String, i32, i64)>> = BTreeMap::new();
        for ((t, p), log) in &self.logs {
            for (o, v) in log {
                if let Some(id) = v.as_deref().and_then(RecordId::parse) {
                    places.entry(id).or_default().push((t.clone(), *p, *o));
                }
            }
        }
        places
    }
}
