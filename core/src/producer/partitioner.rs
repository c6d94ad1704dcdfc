//! Partitioners (interim; the Java-checked version replaces this module).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::protocol::TopicName;
use crate::rand::Rng;

/// Kafka's murmur2 hash (`Utils.murmur2`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client gives `key` among `num_partitions`.
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % num_partitions.max(1)
}

/// What a partitioner may look at for one topic.
#[derive(Debug, Clone, Copy)]
pub struct TopicPartitions<'a> {
    /// Partitions the topic has.
    pub count: u32,
    /// Partitions whose leader is known, ascending.
    pub available: &'a [u32],
}

/// An application's partitioner.
pub trait Partitioner: Send + Sync + std::fmt::Debug {
    /// The partition for a record, or `None` to let the built-in partitioner choose.
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
    ) -> Option<u32>;
}

/// Each record to the next available partition in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    counters: Mutex<BTreeMap<String, u32>>,
}

impl Partitioner for RoundRobin {
    fn partition(&self, topic: &str, _: Option<&[u8]>, _: Option<&[u8]>, p: &TopicPartitions<'_>) -> Option<u32> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let n = counters.entry(topic.to_string()).or_insert(0);
        let i = *n;
        *n = n.wrapping_add(1);
        if p.available.is_empty() {
            Some(i % p.count.max(1))
        } else {
            Some(p.available[(i as usize) % p.available.len()])
        }
    }
}

#[derive(Debug, Default)]
struct Sticky {
    partition: Option<u32>,
    produced: usize,
}

/// The built-in partitioner for unkeyed records.
#[derive(Debug)]
pub(crate) struct BuiltinPartitioner {
    batch_size: usize,
    topics: BTreeMap<TopicName, Sticky>,
}

impl BuiltinPartitioner {
    pub fn new(batch_size: usize, _adaptive: bool) -> Self {
        BuiltinPartitioner { batch_size, topics: BTreeMap::new() }
    }

    /// The topic's current sticky partition.
    pub fn partition(&mut self, topic: &TopicName, p: &TopicPartitions<'_>, rng: &mut Rng) -> u32 {
        let s = self.topics.entry(topic.clone()).or_default();
        match s.partition {
            Some(x) if x < p.count => x,
            _ => {
                let x = pick(p, rng);
                s.partition = Some(x);
                s.produced = 0;
                x
            }
        }
    }

    /// After `bytes` went to `partition`.
    pub fn appended(
        &mut self,
        topic: &TopicName,
        partition: u32,
        bytes: usize,
        p: &TopicPartitions<'_>,
        rng: &mut Rng,
    ) {
        let Some(s) = self.topics.get_mut(topic) else { return };
        if s.partition != Some(partition) {
            return;
        }
        s.produced += bytes;
        if s.produced >= self.batch_size {
            s.partition = Some(pick(p, rng));
            s.produced = 0;
        }
    }
}

fn pick(p: &TopicPartitions<'_>, rng: &mut Rng) -> u32 {
    if p.available.is_empty() {
        rng.below(u64::from(p.count.max(1))) as u32
    } else {
        p.available[rng.below(p.available.len() as u64) as usize]
    }
}
