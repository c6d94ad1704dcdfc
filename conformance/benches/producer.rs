//! The producer machine alone: append, seal and encode 100-byte records into Produce frames,
//! with no network. A client is connected to the in-memory fake cluster once (handshake,
//! metadata); then, with acks=0, every frame it writes is dropped unread, so what is timed is
//! the producer's own work per record: partitioning, encoding into the batch, sealing, the
//! request and its frame.
//!
//! `cargo bench -p sansa-conformance --bench producer`; the goal is at least five
//! million records per second on one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sansa::producer::{Acks, ProducerConfig, ProducerRecord};
use sansa::protocol::records::Compression;
use sansa::protocol::TopicName;
use sansa_conformance::fake_cluster::world::World;
use sansa_conformance::fake_cluster::FakeClusterConfig;

const RECORDS: u64 = 100_000;

fn connected(compression: Compression) -> World {
    let mut p = ProducerConfig::default();
    p.acks = Acks::None;
    p.compression = compression;
    // One broker, so the single warm-up connection is the only one the records need.
    let mut w = World::new(FakeClusterConfig { brokers: 1, ..FakeClusterConfig::default() }, |c| c.with_producer(p));
    w.cluster.create_topic("bench", 6, 1);
    w.client.send(w.now, ProducerRecord::new("bench", "warm-up")).expect("taken");
    w.client.flush(w.now);
    assert!(w.run_until(Duration::from_secs(5), |w| w.client.producer_outstanding() == 0), "connected");
    w
}

/// Sends `n` records and drains every frame the client writes, unread.
fn produce(w: &mut World, topic: &TopicName, value: &Bytes, n: u64) -> usize {
    let mut written = 0;
    let now = w.now;
    for _ in 0..n {
        let record = ProducerRecord {
            topic: topic.clone(),
            partition: None,
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp: Some(1_767_225_600_000),
        };
        w.client.send(now, record).expect("room in the buffer");
        while let Some(t) = w.client.poll_transmit(now) {
            if let sansa::Transmit::Send { bytes, .. } = t {
                written += bytes.len();
            }
        }
        while w.client.poll_event().is_some() {}
    }
    w.client.flush(now);
    while let Some(t) = w.client.poll_transmit(now) {
        black_box(t);
    }
    while w.client.poll_event().is_some() {}
    written
}

fn bench(c: &mut Criterion) {
    let value = Bytes::from(vec![b'x'; 100]);
    let topic = TopicName::from("bench");
    let mut group = c.benchmark_group("producer");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(20);
    for (name, compression) in [("100B none", Compression::None), ("100B lz4", Compression::lz4())] {
        let mut w = connected(compression);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(produce(&mut w, &topic, &value, RECORDS));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
