//! The record-level history of a run: every record the workload produced, what became of it
//! (acked at a partition and offset, failed with an error), the order it went on the wire,
//! who consumed it, and, at the end, what the fake cluster actually stored.
//!
//! Whatever produces records feeds it through the same calls: today the simulator's raw
//! Produce requests, later the producer machine's delivery reports (`sent` when a record is
//! accepted, `acked` / `failed` per delivery report) and the consumer's records (`consumed`).
//! The data invariants in [`super::invariants`] read only this and the logs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

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

/// The history of a run. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct History {
    records: BTreeMap<RecordId, RecordEntry>,
    consumed: Vec<Consumed>,
    logs: BTreeMap<TopicPartition, Vec<(i64, Option<Bytes>)>>,
    wire_writes: u64,
    /// A fault may have applied a request and then lost its answer, and the producer may
    /// retry: acked records may then be stored more than once.
    pub duplicates_allowed: bool,
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
