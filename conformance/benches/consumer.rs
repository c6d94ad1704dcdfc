//! The consumer without a network, two ways.
//!
//! - `consumer-decode`: the records field of a 1 MiB partition fetch (1 KB records in batches
//!   of about 16 KiB, as Java's producer writes them; CRC checked) turned into
//!   `ConsumerRecord`s as the consumer does it: `decode_batches`, then each record with its
//!   topic, partition and batch fields. Next to it, a memcpy of the same bytes: the ratio of
//!   the two bandwidths says how far decoding is from touching the bytes once.
//! - `consumer-world`: the whole path in memory. A client and the in-memory fake cluster
//!   (`World`), 20,000 records of 1 KB produced once to 6 partitions; each iteration seeks every
//!   partition back to 0 and polls until all of them came back. Fetch requests, the fake
//!   broker's answers (it reads its log and encodes Fetch responses: its work is in the time
//!   too), response decoding, the fetch buffer and polling.
//!
//! `cargo bench -p sansa-conformance --bench consumer` (add `-- --test` for one quick pass).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sansa::consumer::{ConsumerConfig, ConsumerRecord, TopicPartition};
use sansa::producer::{ProducerConfig, ProducerRecord};
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder};
use sansa::protocol::TopicName;
use sansa_conformance::fake_cluster::world::World;
use sansa_conformance::fake_cluster::FakeClusterConfig;

const VALUE_SIZE: usize = 1024;
/// Records per batch: about Java's 16 KiB batch.size.
const PER_BATCH: usize = 15;
/// About max.partition.fetch.bytes (1 MiB) of batches.
const BATCHES: usize = 66;

/// A value of `size` bytes A-Z, as kafka-producer-perf-test makes them (a splitmix64 stream).
fn value(seed: &mut u64, size: usize) -> Vec<u8> {
    (0..size)
        .map(|_| {
            *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            b'A' + ((z ^ (z >> 31)) % 26) as u8
        })
        .collect()
}

/// The records field of one partition's fetch: `BATCHES` batches of `PER_BATCH` records, at
/// consecutive offsets, with checksums.
fn fetched_records() -> Bytes {
    let mut seed = 7;
    let mut out = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    for b in 0..BATCHES {
        let params = BatchParams::new().base_offset((b * PER_BATCH) as i64).partition_leader_epoch(0);
        let mut batch = encoder.begin(&mut out, params).expect("valid params");
        for i in 0..PER_BATCH {
            let v = value(&mut seed, VALUE_SIZE);
            batch.append(1_767_225_600_000 + i as i64, None, Some(&v), &[]).expect("fits");
        }
        batch.finish().expect("encodes");
    }
    out.freeze()
}

/// What the consumer does with a fetched records field: every batch decoded (CRC checked),
/// every record made a ConsumerRecord. Returns the count and the value bytes seen.
fn decode(records: Bytes, topic: &TopicName, options: &DecodeOptions) -> (usize, usize) {
    let (mut n, mut bytes) = (0, 0);
    for batch in decode_batches(records, options) {
        let batch = batch.expect("valid batch");
        let (timestamp_type, epoch) = (batch.timestamp_type(), Some(batch.partition_leader_epoch()));
        for r in batch.into_records() {
            let record = ConsumerRecord {
                topic: topic.clone(),
                partition: 0,
                offset: r.offset,
                timestamp: r.timestamp,
                timestamp_type,
                key: r.key,
                value: r.value,
                headers: r.headers,
                leader_epoch: epoch,
            };
            bytes += record.value.as_ref().map_or(0, |v| v.len());
            n += 1;
            black_box(record);
        }
    }
    (n, bytes)
}

fn decoding(c: &mut Criterion) {
    let wire = fetched_records();
    // As the consumer names its records: one static copy of the name.
    let topic = TopicName::from("bench").interned();
    let options = DecodeOptions::new();
    let records = BATCHES * PER_BATCH;
    assert_eq!(decode(wire.clone(), &topic, &options), (records, records * VALUE_SIZE));

    let mut group = c.benchmark_group("consumer-decode");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("1KB records, CRC checked", |b| b.iter(|| decode(black_box(wire.clone()), &topic, &options)));
    group.bench_function("1KB records, no CRC", |b| {
        let options = DecodeOptions::new().verify_crc(false);
        b.iter(|| decode(black_box(wire.clone()), &topic, &options))
    });
    let mut copy = vec![0u8; wire.len()];
    group.bench_function("memcpy of the same bytes", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&wire[..]));
            black_box(&copy);
        })
    });
    group.finish();
}

/// Records in the world benchmark's topic.
const WORLD_RECORDS: usize = 20_000;
const PARTITIONS: i32 = 6;

fn filled_world() -> World {
    let mut w = World::new(FakeClusterConfig { brokers: 1, ..FakeClusterConfig::default() }, |c| {
        c.with_producer(ProducerConfig::default()).with_consumer(ConsumerConfig::default())
    });
    w.cluster.create_topic("bench", PARTITIONS, 1);
    let mut seed = 3;
    for _ in 0..WORLD_RECORDS {
        w.client.send(w.now, ProducerRecord::new("bench", value(&mut seed, VALUE_SIZE))).expect("room");
        w.pump();
    }
    w.client.flush(w.now);
    assert!(w.run_until(Duration::from_secs(60), |w| w.client.producer_outstanding() == 0), "produced");
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new("bench", p)).collect();
    w.client.assign(w.now, partitions).expect("assigned");
    w
}

/// Seeks every partition to 0 and polls until every record came back; returns the count.
fn consume_all(w: &mut World) -> usize {
    for p in 0..PARTITIONS {
        w.client.seek(w.now, &TopicPartition::new("bench", p), 0).expect("assigned");
    }
    let mut n = 0;
    while n < WORLD_RECORDS {
        w.pump();
        let got = w.client.poll_records(w.now, 500).expect("poll");
        n += got.len();
        black_box(got);
        if !w.client.has_records() {
            w.pump();
            if !w.client.has_records() && !w.step() {
                panic!("stuck after {n} records");
            }
        }
    }
    n
}

fn world(c: &mut Criterion) {
    let mut w = filled_world();
    let start = w.now;
    assert_eq!(consume_all(&mut w), WORLD_RECORDS);
    // Virtual time costs nothing here, but says how long the fetches waited at the broker.
    println!("consumer-world: one pass took {:?} of virtual time", w.now - start);
    let mut group = c.benchmark_group("consumer-world");
    group.throughput(Throughput::Elements(WORLD_RECORDS as u64));
    group.sample_size(20);
    group.bench_function("1KB records, 6 partitions", |b| b.iter(|| consume_all(&mut w)));
    group.finish();
}

criterion_group!(benches, decoding, world);
criterion_main!(benches);
