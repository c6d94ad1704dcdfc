//! A partition's fetched data, held until the application polls it, and decoded then:
//! batches one at a time, records as zero-copy slices, aborted transactions and control
//! batches left out under read_committed. Data compressed with a slow codec (gzip, zstd)
//! may instead be decoded whole on another thread ([`Decode`], see [`crate::work`]).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use bytes::Bytes;

use super::record::{ConsumerRecord, TopicPartition};
use crate::protocol::records::{decode_batches, Batches, ControlRecord, ControlRecordType, DecodeOptions, Record};
use crate::protocol::records::{first_batch_codec, RecordBatch, TimestampType};

/// An aborted transaction the broker listed with a fetch (read_committed only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aborted {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One partition's records from one fetch answer.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Names the data when it is handed out to be decoded.
    pub key: u64,
    pub partition: TopicPartition,
    /// The partition's assignment version when it was fetched: a seek since then makes it stale.
    pub version: u64,
    /// Bytes counted against `fetch.buffer.memory`.
    pub size: usize,
    source: Source,
    /// The data, while it may still be handed out whole: compressed with a slow codec, and
    /// nothing read from it yet.
    handable: Option<Bytes>,
    options: DecodeOptions,
    /// Records of the batch being read, with its timestamp type and leader epoch.
    current: std::vec::IntoIter<Record>,
    current_type: TimestampType,
    current_epoch: Option<i32>,
    /// The leader epoch of the batch opened last, which `next_offset` ends.
    next_epoch: Option<i32>,
    /// Aborted transactions not yet reached, by first offset.
    aborted: VecDeque<Aborted>,
    /// Producers whose aborted transaction is open at the current batch.
    aborting: BTreeSet<i64>,
    read_committed: bool,
    /// Offset after the last batch read: where the position goes once this is used up,
    /// skipping control batches and compacted-away offsets.
    next_offset: Option<i64>,
}

/// Where a fetch's batches come from.
#[derive(Debug)]
enum Source {
    /// Decoded here, one batch at a time, as the application reads.
    Lazy(Batches),
    /// Out whole, as a [`Decode`]; nothing is read from it until its result is back.
    Decoding,
    /// Decoded elsewhere.
    Decoded(std::vec::IntoIter<Result<RecordBatch, String>>),
}

/// A partition's fetched data to decode on another thread: decompressed, checked and parsed
/// into records, whole.
pub(crate) struct Decode {
    pub key: u64,
    records: Bytes,
    options: DecodeOptions,
}

/// What [`Decode`] made of the data: its batches, up to the first that does not decode.
pub(crate) struct Decoded {
    pub key: u64,
    batches: Vec<Result<RecordBatch, String>>,
}

impl Decode {
    /// Decodes on this thread.
    pub(crate) fn run(self) -> Decoded {
        let Decode { key, records, options } = self;
        let batches = decode_batches(records, &options).map(|batch| batch.map_err(|e| e.to_string())).collect();
        Decoded { key, batches }
    }
}

impl Decoded {
    /// Decoding failed with `message`: the data reads as a batch that does not decode.
    pub(crate) fn failed(key: u64, message: &str) -> Decoded {
        Decoded { key, batches: vec![Err(format!("decoding the fetched data: {message}"))] }
    }
}

impl fmt::Debug for Decode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decode").field("fetched", &self.key).field("bytes", &self.records.len()).finish()
    }
}

impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded").field("fetched", &self.key).field("batches", &self.batches.len()).finish()
    }
}

/// What reading the next piece of a fetch found.
#[derive(Debug)]
pub(crate) enum Next {
    Record(ConsumerRecord),
    /// A batch ended (or was skipped); the position may move to this offset, written in this
    /// leader epoch.
    Skip(i64, Option<i32>),
    /// A batch that does not decode; the position stays before it.
    Corrupt(String),
    /// The data is being decoded on another thread.
    Decoding,
    Done,
}

impl Fetched {
    pub fn new(
        key: u64,
        partition: TopicPartition,
        version: u64,
        records: Bytes,
        mut aborted: Vec<Aborted>,
        read_committed: bool,
        options: DecodeOptions,
    ) -> Fetched {
        aborted.sort_by_key(|a| a.first_offset);
        Fetched {
            key,
            partition,
            version,
            size: records.len(),
            // Judged by the first batch: a producer writes a partition in one codec.
            handable: first_batch_codec(&records).is_some_and(crate::work::worth_offloading).then(|| records.clone()),
            options,
            source: Source::Lazy(decode_batches(records, &options)),
            current: Vec::new().into_iter(),
            current_type: TimestampType::CreateTime,
            current_epoch: None,
            next_epoch: None,
            aborted: aborted.into(),
            aborting: BTreeSet::new(),
            read_committed,
            next_offset: None,
        }
    }

    /// Whether only the bookkeeping of its last batch is left (no record, no batch).
    pub fn at_end(&self) -> bool {
        self.current.len() == 0
            && match &self.source {
                Source::Lazy(batches) => batches.position() >= self.size,
                Source::Decoding => false,
                Source::Decoded(batches) => batches.len() == 0,
            }
    }

    /// Hands the data out to be decoded on another thread, when its codec is a slow one and
    /// nothing was read from it yet.
    pub fn start_decoding(&mut self) -> Option<Decode> {
        let records = self.handable.take()?;
        self.source = Source::Decoding;
        Some(Decode { key: self.key, records, options: self.options })
    }

    /// Whether the data is out being decoded.
    pub fn is_decoding(&self) -> bool {
        matches!(self.source, Source::Decoding)
    }

    /// The data came back decoded.
    pub fn decoded(&mut self, done: Decoded) {
        if self.is_decoding() {
            self.source = Source::Decoded(done.batches.into_iter());
        }
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
                return Next::Skip(offset, self.next_epoch);
            }
            let batch = match &mut self.source {
                Source::Lazy(batches) => {
                    // Read here from now on: the data is no longer handed out whole.
                    self.handable = None;
                    batches.next().map(|b| b.map_err(|e| e.to_string()))
                }
                Source::Decoding => return Next::Decoding,
                Source::Decoded(batches) => batches.next(),
            };
            match batch {
                None => return Next::Done,
                Some(Err(e)) => return Next::Corrupt(e),
                Some(Ok(batch)) => self.open(batch),
            }
        }
    }

    fn open(&mut self, batch: RecordBatch) {
        self.next_offset = Some(batch.next_offset());
        let epoch = batch.partition_leader_epoch();
        self.next_epoch = (epoch >= 0).then_some(epoch);
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
        self.current_epoch = self.next_epoch;
        self.current = batch.into_records().into_iter();
    }
}

/// The offset after the last whole batch (or legacy message) in `records`: where the next
/// fetch of the partition starts. `None` when not one batch is whole. Reads only the framing
/// (base offset, size and, for v2 batches, the last offset delta); a corrupt batch is
/// reported when the records are decoded.
pub(crate) fn end_offset(records: &[u8]) -> Option<i64> {
    // Framing shared by every format: base offset (8), size (4), then 4 bytes (the v2
    // partition leader epoch, the legacy CRC) and the magic byte at 16.
    const LOG_OVERHEAD: usize = 12;
    const MAGIC_AT: usize = 16;
    const LAST_OFFSET_DELTA_AT: usize = 23;
    let mut rest = records;
    let mut end = None;
    while rest.len() >= LOG_OVERHEAD {
        let base = i64::from_be_bytes(rest[..8].try_into().ok()?);
        let size = i32::from_be_bytes(rest[8..12].try_into().ok()?);
        let total = usize::try_from(size).ok()?.checked_add(LOG_OVERHEAD)?;
        if total <= MAGIC_AT || rest.len() < total {
            break;
        }
        let last = if rest[MAGIC_AT] >= 2 {
            let delta = rest.get(LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4)?;
            base.checked_add(i64::from(i32::from_be_bytes(delta.try_into().ok()?)))?
        } else {
            // A legacy entry's offset is its last (a compressed wrapper carries its last
            // inner offset).
            base
        };
        end = Some(last.checked_add(1)?);
        rest = &rest[total..];
    }
    end
}
