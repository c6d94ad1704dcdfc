//! Choosing a partition for a record, the way the Java producer does.
//!
//! In order of precedence (the producer keeps the first, `BuiltInPartitioner::place` does
//! the rest):
//!
//! 1. a partition set on the record is kept;
//! 2. a custom [`Partitioner`] is asked, and its answer kept unless it is `None`;
//! 3. a keyed record, unless `partitioner.ignore.keys` is set, goes to [`partition_for_key`]:
//!    the key's [`murmur2`] hash with the sign bit cleared, modulo the partition count, so keyed
//!    records land where the Java client puts them;
//! 4. anything else goes to the built-in uniform sticky partitioner (KIP-794).
//!
//! # The sticky partitioner
//!
//! Unkeyed records of a topic all go to one partition until about `batch.size` bytes went
//! there, then the partitioner switches, so that records still form full batches without
//! piling onto one partition. With adaptive partitioning (`partitioner.adaptive.partitioning.enable`)
//! the next partition is drawn with a weight of `max queue + 1 - queue` from the batch-queue
//! lengths the accumulator reports, so brokers that drain slowly get less.
//!
//! Per topic:
//!
//! | state | event | next state |
//! |---|---|---|
//! | no sticky partition | `partition` | sticky on a drawn partition, 0 bytes |
//! | sticky on p, b bytes | `handle_append(p, n, switch)`, `b + n < batch.size`, or `switch` off and `b + n < 2 × batch.size` | sticky on p, `b + n` bytes |
//! | sticky on p, b bytes | `handle_append(p, n, switch)`, `b + n ≥ batch.size` and `switch`, or `b + n ≥ 2 × batch.size` | sticky on a new draw, 0 bytes |
//! | any | `handle_queue_sizes` | same sticky partition, new draw weights |
//!
//! A draw uses the load table when there is one; otherwise it is uniform over the partitions
//! whose leader is known, or over all partitions when none is. There is no load table when
//! adaptive partitioning is off, when the topic has fewer than two partitions, when no
//! partition is available, or when every partition is available with the same queue length.
//!
//! `switch` is off while the partition's last batch is not full yet: switching then would
//! leave a small batch behind (with a long `linger.ms`, batches of 12 KiB and 4 KiB instead of
//! 16 KiB). The 2 × `batch.size` cap keeps a topic from sticking forever when keyed records
//! keep opening new, unfull batches on the same partition.

// The accumulator, which calls the crate-private part, lands separately; drop this with it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::protocol::TopicName;
use crate::rand::Rng;

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

/// The queue length of one partition whose leader is available, for adaptive partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueSize {
    pub(crate) partition: u32,
    /// Batches waiting to be sent.
    pub(crate) batches: u32,
}

/// Where [`BuiltInPartitioner::place`] put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Chosen by the custom partitioner or the key's hash.
    Fixed(u32),
    /// The topic's sticky partition: report the append with
    /// [`BuiltInPartitioner::handle_append`].
    Sticky(u32),
}

impl Placement {
    /// The partition, whoever chose it.
    pub(crate) fn partition(self) -> u32 {
        match self {
            Placement::Fixed(p) | Placement::Sticky(p) => p,
        }
    }
}

/// The producer's built-in partitioning: keys hashed as Java does, the uniform sticky
/// partitioner for the rest (see the module docs). The accumulator owns one and calls it
/// while appending and on each readiness check.
#[derive(Debug)]
pub(crate) struct BuiltInPartitioner {
    /// Bytes to send to one partition before switching; at least 1.
    batch_size: usize,
    adaptive: bool,
    /// `partitioner.ignore.keys`: keyed records go to the sticky partition too.
    ignore_keys: bool,
    topics: BTreeMap<TopicName, TopicState>,
}

#[derive(Debug, Default)]
struct TopicState {
    sticky: Option<Sticky>,
    /// Running sums of the draw weights, strictly increasing; empty when draws are uniform.
    /// Kept allocated across readiness checks.
    cumulative: Vec<u64>,
    /// The partition of each entry of `cumulative`.
    ids: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: u32,
    produced: usize,
}

impl BuiltInPartitioner {
    /// `batch_size` is `batch.size` (0 counts as 1, as in Java); `adaptive` is
    /// `partitioner.adaptive.partitioning.enable`.
    pub(crate) fn new(batch_size: usize, adaptive: bool) -> Self {
        BuiltInPartitioner { batch_size: batch_size.max(1), adaptive, ignore_keys: false, topics: BTreeMap::new() }
    }

    /// With `partitioner.ignore.keys`: keys no longer choose the partition (a custom
    /// partitioner still sees them).
    pub(crate) fn ignoring_keys(mut self, ignore: bool) -> Self {
        self.ignore_keys = ignore;
        self
    }

    /// The partition for a record sent without one, in the Java producer's order: `custom`
    /// when it answers, then the key's hash, then the topic's sticky partition. `None` when
    /// the topic has no partitions and `custom` did not answer. A custom answer is not checked
    /// against `partitions.count`: the caller fails the send if it is out of range.
    pub(crate) fn place(
        &mut self,
        custom: Option<&dyn Partitioner>,
        topic: &TopicName,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: &TopicPartitions<'_>,
        rng: &mut Rng,
    ) -> Option<Placement> {
        if let Some(p) = custom.and_then(|c| c.partition(topic, key, value, partitions)) {
            return Some(Placement::Fixed(p));
        }
        match key.filter(|_| !self.ignore_keys) {
            Some(key) => partition_for_key(key, partitions.count).map(Placement::Fixed),
            None => self.partition(topic, partitions, rng).map(Placement::Sticky),
        }
    }

    /// The partition for the next unkeyed record of `topic`, drawing one when the topic has
    /// none yet. `None` when the topic has no partitions.
    ///
    /// Before appending, if every batch queued for that partition is full, call
    /// [`handle_append`](Self::handle_append) with 0 bytes and `switch` on, then ask again:
    /// that completes a switch deferred while the last batch was filling.
    pub(crate) fn partition(
        &mut self,
        topic: &TopicName,
        partitions: &TopicPartitions<'_>,
        rng: &mut Rng,
    ) -> Option<u32> {
        let state = match self.topics.get_mut(topic) {
            Some(s) => s,
            None => self.topics.entry(topic.clone()).or_default(),
        };
        if let Some(sticky) = state.sticky {
            return Some(sticky.partition);
        }
        let partition = state.draw(partitions, rng)?;
        state.sticky = Some(Sticky { partition, produced: 0 });
        Some(partition)
    }

    /// After a record of `bytes` was appended to `partition` as chosen by
    /// [`partition`](Self::partition). `switch` says whether every batch queued for the
    /// partition is full. May move the topic to a new partition; a partition that is not the
    /// topic's sticky one (a keyed record, a stale choice) is ignored.
    pub(crate) fn handle_append(
        &mut self,
        topic: &TopicName,
        partition: u32,
        bytes: usize,
        switch: bool,
        partitions: &TopicPartitions<'_>,
        rng: &mut Rng,
    ) {
        let Some(state) = self.topics.get_mut(topic) else { return };
        let Some(sticky) = state.sticky.as_mut().filter(|s| s.partition == partition) else { return };
        sticky.produced = sticky.produced.saturating_add(bytes);
        let produced = sticky.produced;
        if (switch && produced >= self.batch_size) || produced >= self.batch_size.saturating_mul(2) {
            state.sticky = state.draw(partitions, rng).map(|partition| Sticky { partition, produced: 0 });
        }
    }

    /// The accumulator's readiness check for `topic` found these queue lengths for the
    /// partitions whose leader is available (known, and not stuck past
    /// `partitioner.availability.timeout.ms`), ascending by partition; an empty queue counts
    /// 0. `partition_count` counts all partitions, available or not. `None` when there are no
    /// usable statistics (as in Java, until every partition has had a queue), which makes
    /// draws uniform until the next check.
    pub(crate) fn handle_queue_sizes(
        &mut self,
        topic: &TopicName,
        partition_count: u32,
        available: Option<&[QueueSize]>,
    ) {
        let state = match self.topics.get_mut(topic) {
            Some(s) => s,
            None => self.topics.entry(topic.clone()).or_default(),
        };
        state.cumulative.clear();
        state.ids.clear();
        let Some(queues) = available.filter(|_| self.adaptive) else { return };
        // One partition has nothing to balance; no available partition leaves nothing to weigh.
        let Some(first) = queues.first() else { return };
        if partition_count < 2 {
            return;
        }
        let max = queues.iter().map(|q| q.batches).max().unwrap_or(first.batches);
        let all_equal = queues.iter().all(|q| q.batches == first.batches);
        // All available and equal: a uniform draw does the same. With some left out, equal
        // weights still serve, to keep the draw off those.
        if all_equal && queues.len() as u64 >= u64::from(partition_count) {
            return;
        }
        let mut sum = 0u64;
        for q in queues {
            sum = sum.saturating_add(u64::from(max) + 1 - u64::from(q.batches));
            state.cumulative.push(sum);
            state.ids.push(q.partition);
        }
    }
}

impl TopicState {
    /// A new sticky partition: by load when there is a table, else uniform.
    fn draw(&self, partitions: &TopicPartitions<'_>, rng: &mut Rng) -> Option<u32> {
        if let Some(&total) = self.cumulative.last() {
            return self.weighted(rng.below(total));
        }
        if partitions.available.is_empty() {
            (partitions.count > 0).then(|| rng.below(u64::from(partitions.count)) as u32)
        } else {
            let i = rng.below(partitions.available.len() as u64) as usize;
            partitions.available.get(i).copied()
        }
    }

    /// The partition of the first running sum above `r`, for `r` in `0..total weight`: each
    /// partition owns as many values of `r` as its weight.
    fn weighted(&self, r: u64) -> Option<u32> {
        let i = self.cumulative.partition_point(|&c| c <= r);
        self.ids.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::from(name)
    }

    impl BuiltInPartitioner {
        /// The topic's sticky partition and the bytes sent to it so far.
        fn sticky(&self, topic: &TopicName) -> Option<(u32, usize)> {
            self.topics.get(topic)?.sticky.map(|s| (s.partition, s.produced))
        }

        fn has_load_table(&self, topic: &TopicName) -> bool {
            self.topics.get(topic).is_some_and(|t| !t.cumulative.is_empty())
        }
    }

    fn queues(sizes: &[(u32, u32)]) -> Vec<QueueSize> {
        sizes.iter().map(|&(partition, batches)| QueueSize { partition, batches }).collect()
    }

    /// How often each partition is drawn in `n` forced switches.
    fn draw_counts(p: &mut BuiltInPartitioner, t: &TopicName, parts: &TopicPartitions<'_>, n: usize) -> Vec<usize> {
        let mut rng = Rng::new(42);
        let mut counts = vec![0; parts.count as usize];
        for _ in 0..n {
            let at = p.partition(t, parts, &mut rng).unwrap();
            counts[at as usize] += 1;
            p.handle_append(t, at, p.batch_size, true, parts, &mut rng);
        }
        counts
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
    fn sticks_until_batch_size_bytes_then_switches() {
        let t = topic("t");
        let parts = TopicPartitions::new(4, &[0, 1, 2, 3]);
        let mut rng = Rng::new(1);
        let mut p = BuiltInPartitioner::new(100, false);
        let first = p.partition(&t, &parts, &mut rng).unwrap();
        assert_eq!(p.partition(&t, &parts, &mut rng), Some(first), "asking again keeps it");
        p.handle_append(&t, first, 60, true, &parts, &mut rng);
        assert_eq!(p.sticky(&t), Some((first, 60)));
        // An append the sticky partitioner did not place changes nothing.
        p.handle_append(&t, (first + 1) % 4, 60, true, &parts, &mut rng);
        assert_eq!(p.sticky(&t), Some((first, 60)));
        p.handle_append(&t, first, 39, true, &parts, &mut rng);
        assert_eq!(p.sticky(&t), Some((first, 99)));
        p.handle_append(&t, first, 1, true, &parts, &mut rng);
        let (_, produced) = p.sticky(&t).unwrap();
        assert_eq!(produced, 0, "switched after 100 bytes, to a fresh draw");
        // Over many switches every partition gets its turn.
        assert!(draw_counts(&mut p, &t, &parts, 400).iter().all(|&c| c > 60));
    }

    #[test]
    fn a_deferred_switch_waits_for_a_full_batch_or_twice_the_batch_size() {
        let t = topic("t");
        let parts = TopicPartitions::new(4, &[0, 1, 2, 3]);
        let mut rng = Rng::new(2);
        let mut p = BuiltInPartitioner::new(100, false);
        let at = p.partition(&t, &parts, &mut rng).unwrap();
        p.handle_append(&t, at, 150, false, &parts, &mut rng);
        assert_eq!(p.sticky(&t), Some((at, 150)), "last batch not full: no switch yet");
        p.handle_append(&t, at, 0, true, &parts, &mut rng);
        assert_eq!(p.sticky(&t).unwrap().1, 0, "the batch filled: the deferred switch happens");

        let at = p.partition(&t, &parts, &mut rng).unwrap();
        p.handle_append(&t, at, 199, false, &parts, &mut rng);
        assert_eq!(p.sticky(&t), Some((at, 199)));
        p.handle_append(&t, at, 1, false, &parts, &mut rng);
        assert_eq!(p.sticky(&t).unwrap().1, 0, "2 x batch.size switches regardless");
    }

    #[test]
    fn a_zero_batch_size_counts_as_one_byte() {
        let t = topic("t");
        let parts = TopicPartitions::new(2, &[0, 1]);
        let mut rng = Rng::new(3);
        let mut p = BuiltInPartitioner::new(0, false);
        let at = p.partition(&t, &parts, &mut rng).unwrap();
        p.handle_append(&t, at, 1, true, &parts, &mut rng);
        assert_eq!(p.sticky(&t).unwrap().1, 0);
    }

    #[test]
    fn adaptive_draws_weigh_by_max_queue_plus_one_minus_queue() {
        let t = topic("t");
        let parts = TopicPartitions::new(5, &[0, 1, 2, 3, 4]);
        let mut p = BuiltInPartitioner::new(10, true);
        p.handle_queue_sizes(&t, 5, Some(&queues(&[(0, 5), (1, 0), (2, 3), (3, 0), (4, 1)])));
        // Weights 1 6 3 6 5 out of 21.
        let counts = draw_counts(&mut p, &t, &parts, 21_000);
        for (partition, weight) in [1usize, 6, 3, 6, 5].into_iter().enumerate() {
            let expected = weight * 1000;
            assert!(counts[partition].abs_diff(expected) < expected / 10, "{counts:?}");
        }
    }

    #[test]
    fn weighted_draw_picks_the_first_sum_above_the_number() {
        // Queues 0 3 1: weights 4 1 3, running sums 4 5 8.
        let mut p = BuiltInPartitioner::new(10, true);
        let t = topic("t");
        p.handle_queue_sizes(&t, 3, Some(&queues(&[(10, 0), (11, 3), (12, 1)])));
        let state = &p.topics[&t];
        assert_eq!(state.cumulative, [4, 5, 8]);
        let picks: Vec<_> = (0..9).map(|r| state.weighted(r)).collect();
        let [a, b, c] = [Some(10), Some(11), Some(12)];
        assert_eq!(picks, [a, a, a, a, b, c, c, c, None]);
    }

    #[test]
    fn no_load_table_when_there_is_nothing_to_balance() {
        let t = topic("t");
        let mut p = BuiltInPartitioner::new(10, true);
        p.handle_queue_sizes(&t, 3, Some(&queues(&[(0, 2), (1, 2), (2, 2)])));
        assert!(!p.has_load_table(&t), "all available, all equal");
        p.handle_queue_sizes(&t, 1, Some(&queues(&[(0, 7)])));
        assert!(!p.has_load_table(&t), "one partition");
        p.handle_queue_sizes(&t, 3, Some(&[]));
        assert!(!p.has_load_table(&t), "none available");
        p.handle_queue_sizes(&t, 3, Some(&queues(&[(0, 2), (1, 0), (2, 2)])));
        assert!(p.has_load_table(&t));
        p.handle_queue_sizes(&t, 3, None);
        assert!(!p.has_load_table(&t), "no statistics this round");

        let mut off = BuiltInPartitioner::new(10, false);
        off.handle_queue_sizes(&t, 3, Some(&queues(&[(0, 2), (1, 0), (2, 2)])));
        assert!(!off.has_load_table(&t), "adaptive partitioning off");
    }

    #[test]
    fn unavailable_partitions_are_not_drawn() {
        let t = topic("t");
        // Leaders known for 1, 3 and 4 only: uniform over those.
        let parts = TopicPartitions::new(6, &[1, 3, 4]);
        let mut p = BuiltInPartitioner::new(10, true);
        let counts = draw_counts(&mut p, &t, &parts, 3000);
        assert_eq!([counts[0], counts[2], counts[5]], [0, 0, 0], "{counts:?}");
        assert!([counts[1], counts[3], counts[4]].iter().all(|&c| c > 800), "{counts:?}");

        // Partition 4's leader timed out: equal queues, but the table keeps the draw off it.
        p.handle_queue_sizes(&t, 6, Some(&queues(&[(1, 3), (3, 3)])));
        assert!(p.has_load_table(&t));
        let counts = draw_counts(&mut p, &t, &parts, 2000);
        assert_eq!(counts[4], 0, "{counts:?}");
        assert!(counts[1] > 800 && counts[3] > 800, "{counts:?}");

        // No leader known at all: any partition.
        p.handle_queue_sizes(&t, 3, None);
        let none = TopicPartitions::new(3, &[]);
        let counts = draw_counts(&mut p, &t, &none, 3000);
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");

        let empty = TopicPartitions::new(0, &[]);
        assert_eq!(p.partition(&topic("gone"), &empty, &mut Rng::new(0)), None);
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

    /// Sends records keyed "vip" to partition 0 and leaves the rest to the built-in partitioner.
    #[derive(Debug)]
    struct VipFirst;

    impl Partitioner for VipFirst {
        fn partition(
            &self,
            _topic: &TopicName,
            key: Option<&[u8]>,
            _value: Option<&[u8]>,
            _partitions: &TopicPartitions<'_>,
        ) -> Option<u32> {
            (key == Some(b"vip")).then_some(0)
        }
    }

    #[test]
    fn custom_partitioner_answers_first_and_none_falls_back() {
        let t = topic("t");
        let parts = TopicPartitions::new(1000, &[]);
        let mut rng = Rng::new(9);
        let mut p = BuiltInPartitioner::new(100, false);
        let custom: Option<&dyn Partitioner> = Some(&VipFirst);
        let vip = p.place(custom, &t, Some(b"vip"), None, &parts, &mut rng);
        assert_eq!(vip, Some(Placement::Fixed(0)));
        let keyed = p.place(custom, &t, Some(b"21"), None, &parts, &mut rng);
        assert_eq!(keyed, Some(Placement::Fixed(340)), "None: the key's hash");
        let unkeyed = p.place(custom, &t, None, Some(b"v"), &parts, &mut rng).unwrap();
        assert_eq!(unkeyed, Placement::Sticky(p.sticky(&t).unwrap().0), "None, no key: sticky");
        assert_eq!(p.place(None, &t, Some(b"21"), None, &parts, &mut rng), Some(Placement::Fixed(340)));

        let mut ignoring = BuiltInPartitioner::new(100, false).ignoring_keys(true);
        let placed = ignoring.place(custom, &t, Some(b"21"), None, &parts, &mut rng).unwrap();
        assert_eq!(placed, Placement::Sticky(ignoring.sticky(&t).unwrap().0));
        let vip = ignoring.place(custom, &t, Some(b"vip"), None, &parts, &mut rng);
        assert_eq!(vip, Some(Placement::Fixed(0)), "the custom partitioner still sees keys");
        assert_eq!(vip.map(Placement::partition), Some(0));
    }
}
