//! Choosing a partition for a record, the way the Java producer does.
//!
//! In order of precedence:
//!
//! 1. a partition set on the record is kept;
//! 2. a custom [`Partitioner`] is asked, and its answer kept unless it is `None`;
//! 3. a keyed record, unless `partitioner.ignore.keys` is set, goes to [`partition_for_key`]:
//!    the key's [`murmur2`] hash with the sign bit cleared, modulo the partition count, so keyed
//!    records land where the Java client puts them;
//! 4. anything else goes to the built-in uniform sticky partitioner (KIP-794).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::protocol::TopicName;

/// Kafka's 32-bit murmur2 hash (seed `0x9747b28c`), bit for bit as the Java client's
/// `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    // Java arrays are shorter than 2^31 bytes; the length is mixed in as Java's int would be.
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client gives a record with this key: `murmur2(key)` with the sign
/// bit cleared, modulo `num_partitions`. `None` when the topic has no partitions.
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> Option<u32> {
    // Clearing the sign bit, not taking the absolute value, is what Java's toPositive does.
    (murmur2(key) as u32 & 0x7fff_ffff).checked_rem(num_partitions)
}

/// What a partitioner may look at for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicPartitions<'a> {
    /// How many partitions the topic has; they are numbered `0..count`.
    pub count: u32,
    /// The partitions whose leader is known, ascending.
    pub available: &'a [u32],
}

impl<'a> TopicPartitions<'a> {
    /// A topic of `count` partitions of which `available` (ascending) have a known leader.
    pub fn new(count: u32, available: &'a [u32]) -> Self {
        TopicPartitions { count, available }
    }
}

/// A custom partitioner (`partitioner.class` in the Java client).
///
/// It is asked once for every record sent without an explicit partition, keyed or not.
pub trait Partitioner: Send + Sync + fmt::Debug {
    /// The partition for a record of `topic`, or `None` to leave the choice to the built-in
    /// one (the key's hash for keyed records, else the sticky partitioner). A partition
    /// outside `0..partitions.count` fails the send.
    fn partition(
        &self,
        topic: &TopicName,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
    ) -> Option<u32>;
}

/// Spreads records over the partitions in turn, whatever their key, like the Java client's
/// `RoundRobinPartitioner`: a counter per topic, taken modulo the available partitions, or all
/// partitions when none is available.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Mutex<BTreeMap<TopicName, u32>>,
}

impl RoundRobin {
    /// A round-robin partitioner whose counters all start at 0.
    pub fn new() -> Self {
        RoundRobin::default()
    }
}

impl Partitioner for RoundRobin {
    fn partition(
        &self,
        topic: &TopicName,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
    ) -> Option<u32> {
        // A panic elsewhere while holding the lock leaves the counters valid.
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = match next.get_mut(topic) {
            Some(c) => c,
            None => next.entry(topic.clone()).or_insert(0),
        };
        // Java's counter is an int that wraps and has its sign bit cleared.
        let turn = *counter & 0x7fff_ffff;
        *counter = counter.wrapping_add(1);
        if partitions.available.is_empty() {
            turn.checked_rem(partitions.count)
        } else {
            let i = turn as usize % partitions.available.len();
            partitions.available.get(i).copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::from(name)
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values written by Kafka's Utils.murmur2 (see conformance/vectors/partitions.tsv).
        let known: [(&[u8], i32); 10] = [
            (b"", 275_646_681),
            (b"a", -1_563_381_124),
            (b"ab", 316_155_434),
            (b"abc", 479_470_107),
            (b"abcd", -1_323_649_548),
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-longer-string", -1_486_304_829),
            ("café".as_bytes(), -1_358_007_374),
            ("\u{1f980}".as_bytes(), 1_309_741_855),
        ];
        for (key, hash) in known {
            assert_eq!(murmur2(key), hash, "{key:?}");
        }
    }

    #[test]
    fn key_partition_clears_the_sign_bit() {
        // murmur2("21") is negative: cleared sign bit gives 1173551340, not its absolute value.
        assert_eq!(partition_for_key(b"21", 1000), Some(340));
        assert_eq!(partition_for_key(b"21", 1), Some(0));
        assert_eq!(partition_for_key(b"21", 0), None);
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let rr = RoundRobin::new();
        let (a, b) = (topic("a"), topic("b"));
        let some = TopicPartitions::new(6, &[0, 2, 5]);
        let turns: Vec<_> = (0..6).map(|_| rr.partition(&a, Some(b"k"), None, &some).unwrap()).collect();
        assert_eq!(turns, [0, 2, 5, 0, 2, 5], "over the available partitions, keys ignored");
        let all = TopicPartitions::new(3, &[]);
        let turns: Vec<_> = (0..4).map(|_| rr.partition(&b, None, None, &all).unwrap()).collect();
        assert_eq!(turns, [0, 1, 2, 0], "over all partitions when none is available, own counter");
        // Topic a's counter went on at 6.
        assert_eq!(rr.partition(&a, None, None, &all), Some(0));
        assert_eq!(rr.partition(&b, None, None, &TopicPartitions::new(0, &[])), None);
    }

    #[test]
    fn round_robin_counter_wraps_like_a_java_int() {
        let rr = RoundRobin::new();
        let t = topic("t");
        rr.next.lock().unwrap().insert(t.clone(), 0x7fff_ffff);
        let all = TopicPartitions::new(3, &[]);
        assert_eq!(rr.partition(&t, None, None, &all), Some(0x7fff_ffff % 3));
        // Integer.MIN_VALUE with the sign bit cleared is 0.
        assert_eq!(rr.partition(&t, None, None, &all), Some(0));
        assert_eq!(rr.partition(&t, None, None, &all), Some(1));
    }
}
