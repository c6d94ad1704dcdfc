//! A partition's fetched data, held until the application polls it, and decoded then:
//! batches one at a time, records as zero-copy slices, aborted transactions and control
//! batches left out under read_committed.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use super::record::{ConsumerRecord, TopicPartition};
use crate::protocol::records::{decode_batches, Batches, ControlRecord, ControlRecordType, DecodeOptions, Record};
use crate::protocol::records::{RecordBatch, TimestampType};

/// An aborted transaction the broker listed with a fetch (read_committed only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aborted {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One partition's records from one fetch answer.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub partition: TopicPartition,
    /// The partition's assignment version when it was fetched: a seek since then makes it stale.
    pub version: u64,
    /// Bytes counted against `fetch.buffer.memory`.
    pub size: usize,
    batches: Batches,
    /// Records of the batch being read, with its timestamp type and leader epoch.
    current: std::vec::IntoIter<Record>,
    current_type: TimestampType,
    current_epoch: Option<i32>,
    /// Aborted transactions not yet reached, by first offset.
    aborted: VecDeque<Aborted>,
    /// Producers whose aborted transaction is open at the current batch.
    aborting: BTreeSet<i64>,
    read_committed: bool,
    /// Offset after the last batch read: where the position goes once this is used up,
    /// skipping control batches and compacted-away offsets.
    next_offset: Option<i64>,
}

/// What reading the next piece of a fetch found.
#[derive(Debug)]
pub(crate) enum Next {
    Record(ConsumerRecord),
    /// A batch ended (or was skipped); the position may move to this offset.
    Skip(i64),
    /// A batch that does not decode; the position stays before it.
    Corrupt(String),
    Done,
}

impl Fetched {
    pub fn new(
        partition: TopicPartition,
        version: u64,
        records: Bytes,
        mut aborted: Vec<Aborted>,
        read_committed: bool,
        options: DecodeOptions,
    ) -> Fetched {
        aborted.sort_by_key(|a| a.first_offset);
        Fetched {
            partition,
            version,
            size: records.len(),
            batches: decode_batches(records, &options),
            current: Vec::new().into_iter(),
            current_type: TimestampType::CreateTime,
            current_epoch: None,
            aborted: aborted.into(),
            aborting: BTreeSet::new(),
            read_committed,
            next_offset: None,
        }
    }

    /// Whether only the bookkeeping of its last batch is left (no record, no batch).
    pub fn at_end(&self) -> bool {
        self.current.len() == 0 && self.batches.position() >= self.size
    }

    /// The next record, or why there is none here.
    pub fn next(&mut self) -> Next {
        loop {
            if let Some(r) = self.current.next() {
                return Next::Record(ConsumerRecord {
                    topic: self.partition.topic.clone(),
                    partition: self.partition.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    timestamp_type: self.current_type,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    leader_epoch: self.current_epoch,
                });
            }
            if let Some(offset) = self.next_offset.take() {
                return Next::Skip(offset);
            }
            match self.batches.next() {
                None => return Next::Done,
                Some(Err(e)) => return Next::Corrupt(e.to_string()),
                Some(Ok(batch)) => self.open(batch),
            }
        }
    }

    fn open(&mut self, batch: RecordBatch) {
        self.next_offset = Some(batch.next_offset());
        if self.read_committed {
            while self.aborted.front().is_some_and(|a| a.first_offset <= batch.last_offset()) {
                let a = self.aborted.pop_front().expect("checked");
                self.aborting.insert(a.producer_id);
            }
            if batch.is_control() {
                // An abort marker closes its producer's aborted transaction.
                let abort = batch
                    .records()
                    .first()
                    .and_then(|r| ControlRecord::parse(r).ok())
                    .is_some_and(|c| c.kind == ControlRecordType::Abort);
                if abort {
                    self.aborting.remove(&batch.producer_id());
                }
                return;
            }
            if batch.is_transactional() && self.aborting.contains(&batch.producer_id()) {
                return;
            }
        }
        if batch.is_control() {
            return;
        }
        self.current_type = batch.timestamp_type();
        let epoch = batch.partition_leader_epoch();
        self.current_epoch = (epoch >= 0).then_some(epoch);
        self.current = batch.into_records().into_iter();
    }
}
