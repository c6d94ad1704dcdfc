//! The consumer machine against the fake cluster, in memory with a virtual clock.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sansa::consumer::{
    CommittedOffset, ConsumeError, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, OffsetSpec,
    TopicPartition,
};
use sansa::producer::{ProducerConfig, ProducerRecord};
use sansa::protocol::records::Compression;
use sansa::protocol::{ApiKey, ErrorCode, TopicName};
use sansa::{Config, Event};

use super::world::{DispatcherWorld, World};
use super::{FakeClusterConfig, Fault, FaultAction, Replication};

fn world(consumer: impl FnOnce(ConsumerConfig) -> ConsumerConfig) -> World {
    let c = consumer(ConsumerConfig::default().with_auto_offset_reset(OffsetReset::Earliest));
    World::new(FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() }, |config: Config| {
        config.with_consumer(c)
    })
}

/// Produces `n` records to `topic` (keys `k{i}`, values `v{i}`, a header) and waits for them.
fn produce(w: &mut World, topic: &str, n: usize, from: usize) {
    for i in from..from + n {
        let r = ProducerRecord::new(topic, format!("v{i}")).with_key(format!("k{i}")).with_header("i", format!("{i}"));
        w.client.send(w.now, r).expect("taken");
    }
    w.pump();
    assert!(w.run_until(Duration::from_secs(10), |w| w.client.producer_outstanding() == 0));
}

/// Polls until `n` records came or `limit` of virtual time passed.
fn consume(w: &mut World, n: usize, limit: Duration) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let end = w.now + limit;
    loop {
        let got = match w.client.poll_records(w.now, 500) {
            Ok(records) => records,
            Err(e) => panic!("poll failed: {e}"),
        };
        let polled = !got.is_empty();
        out.extend(got);
        w.pump();
        if out.len() >= n || w.now > end {
            return out;
        }
        if !polled && !w.client.has_records() && !w.step() {
            return out;
        }
    }
}

fn tps(topic: &str, partitions: i32) -> Vec<TopicPartition> {
    (0..partitions).map(|p| TopicPartition::new(topic, p)).collect()
}

/// Checks `records` against the cluster's logs: per partition, the log's records from
/// `from` on, in order, each once, with key, value, headers and timestamp.
fn matches_log(w: &World, records: &[ConsumerRecord], from: i64) {
    let mut by_partition: BTreeMap<(String, i32), Vec<&ConsumerRecord>> = BTreeMap::new();
    for r in records {
        by_partition.entry((r.topic.to_string(), r.partition)).or_default().push(r);
    }
    for ((topic, partition), got) in by_partition {
        let log: Vec<_> = w.cluster.partition_log(&topic, partition).unwrap().filter(|r| r.offset >= from).collect();
        assert_eq!(got.len(), log.len(), "{topic}-{partition}: consumed {} of {}", got.len(), log.len());
        for (g, l) in got.iter().zip(&log) {
            let headers: Vec<(Bytes, Option<Bytes>)> =
                g.headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect();
            assert_eq!(
                (g.offset, &g.key, &g.value, &headers, g.timestamp),
                (l.offset, &l.key, &l.value, &l.headers, l.timestamp)
            );
        }
    }
}

#[test]
fn every_record_comes_once_in_order_with_keys_headers_and_timestamps() {
    let mut w = world(|c| c);
    w.cluster.create_topic("t", 3, 3);
    produce(&mut w, "t", 3000, 0);
    w.client.assign(w.now, tps("t", 3)).unwrap();
    let records = consume(&mut w, 3000, Duration::from_secs(30));
    assert_eq!(records.len(), 3000);
    matches_log(&w, &records, 0);
    // Every record names its topic with the one static copy of the name, which costs no
    // reference count per record.
    let interned = TopicName::from("t").interned();
    assert!(records.iter().all(|r| r.topic.as_bytes().as_ptr() == interned.as_bytes().as_ptr()));
    for tp in tps("t", 3) {
        assert_eq!(w.client.position(&tp).unwrap(), w.cluster.log_end_offset("t", tp.partition));
    }
    let metrics: BTreeMap<&str, f64> = w.client.consumer_metrics(w.now).into_iter().collect();
    assert_eq!(metrics["records-consumed-total"], 3000.0);
    assert!(metrics["bytes-consumed-total"] > 3000.0 * 6.0);
    assert!(metrics["fetch-total"] >= 3.0);
    assert_eq!(metrics["assigned-partitions"], 3.0);
    assert!(metrics["records-consumed-rate"] > 0.0);
    assert_eq!(metrics["buffered-bytes"], 0.0);
    assert!(metrics["last-poll-seconds-ago"] >= 0.0);
    // Nothing more arrives; a later record does.
    assert!(consume(&mut w, 1, Duration::from_secs(2)).is_empty());
    produce(&mut w, "t", 1, 3000);
    let late = consume(&mut w, 1, Duration::from_secs(5));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].value.as_deref(), Some(&b"v3000"[..]));
}

/// A world whose client produces with `compression` in small batches and fetches little per
/// partition, so that a partition's data comes in many answers.
fn compressed_world(compression: Compression) -> World {
    let consumer =
        ConsumerConfig::default().with_auto_offset_reset(OffsetReset::Earliest).with_max_partition_fetch_bytes(500);
    World::new(FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() }, |config: Config| {
        let mut producer = ProducerConfig::default();
        producer.compression = compression;
        producer.batch_size = 1_000;
        config.with_consumer(consumer).with_producer(producer)
    })
}

/// Polls until `n` records came or `limit` of virtual time passed, as [`consume`] does;
/// work the client hands out is held for a poll, then done newest first. Returns the
/// records and how many pieces of work there were.
fn consume_with_work(w: &mut World, n: usize, limit: Duration) -> (Vec<ConsumerRecord>, usize) {
    let (mut out, mut held, mut handed_out) = (Vec::new(), Vec::<sansa::Work>::new(), 0);
    let end = w.now + limit;
    loop {
        // Taken before the poll, as a driver hands work out as soon as data arrives.
        let fresh: Vec<sansa::Work> = std::iter::from_fn(|| w.client.poll_work()).collect();
        handed_out += fresh.len();
        out.extend(w.client.poll_records(w.now, 500).expect("polled"));
        for piece in std::mem::replace(&mut held, fresh).into_iter().rev() {
            let done = piece.run();
            w.client.handle_work_done(w.now, done);
        }
        w.pump();
        if out.len() >= n || w.now > end {
            return (out, handed_out);
        }
        if held.is_empty() && !w.client.has_records() && !w.step() {
            return (out, handed_out);
        }
    }
}

#[test]
fn data_decoded_elsewhere_comes_once_and_in_order_and_a_seek_drops_what_was_out() {
    for compression in [Compression::gzip(), Compression::zstd()] {
        let mut w = compressed_world(compression);
        w.cluster.create_topic("z", 3, 1);
        produce(&mut w, "z", 1500, 0);
        w.client.offload_work(true);
        w.client.assign(w.now, tps("z", 3)).unwrap();
        let (records, handed_out) = consume_with_work(&mut w, 1500, Duration::from_secs(30));
        assert!(handed_out > 20, "{compression:?}: fetched data went out to be decoded ({handed_out})");
        matches_log(&w, &records, 0);

        // Seeks while data is out: what comes back for it is dropped, and each partition
        // reads on from where it was sent.
        for tp in tps("z", 3) {
            w.client.seek(w.now, &tp, 0).unwrap();
        }
        let mut out = Vec::new();
        let end = w.now + Duration::from_secs(5);
        while out.len() < 2 && w.now < end {
            out.extend(std::iter::from_fn(|| w.client.poll_work()));
            w.step();
        }
        assert!(out.len() >= 2, "data went out to be decoded after the seek");
        for tp in tps("z", 3) {
            w.client.seek(w.now, &tp, 100).unwrap();
        }
        for piece in out {
            let done = piece.run();
            w.client.handle_work_done(w.now, done);
        }
        let (records, _) = consume_with_work(&mut w, 1500 - 300, Duration::from_secs(30));
        matches_log(&w, &records, 100);
    }
}

#[test]
fn latest_starts_at_the_end_and_none_reports_the_partitions() {
    let mut w = world(|c| c.with_auto_offset_reset(OffsetReset::Latest));
    w.cluster.create_topic("t", 2, 1);
    produce(&mut w, "t", 100, 0);
    w.client.assign(w.now, tps("t", 2)).unwrap();
    assert!(w.run_until(Duration::from_secs(5), |w| tps("t", 2).iter().all(|tp| w
        .client
        .position(tp)
        .unwrap()
        .is_some())));
    produce(&mut w, "t", 10, 100);
    let records = consume(&mut w, 10, Duration::from_secs(5));
    let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(values.len(), 10);
    assert!(values.iter().all(|v| v.as_ref() >= &b"v100"[..]));

    let mut w = world(|c| c.with_auto_offset_reset(OffsetReset::None));
    w.cluster.create_topic("t", 2, 1);
    w.client.assign(w.now, tps("t", 2)).unwrap();
    match w.client.poll_records(w.now, 10) {
        Err(ConsumeError::NoOffset { partitions }) => assert_eq!(partitions.len(), 2),
        other => panic!("expected NoOffset, got {other:?}"),
    }
    // A seek gives the partitions a position.
    produce(&mut w, "t", 4, 0);
    for tp in tps("t", 2) {
        w.client.seek(w.now, &tp, 0).unwrap();
    }
    assert_eq!(consume(&mut w, 4, Duration::from_secs(5)).len(), 4);
}

#[test]
fn seek_pause_and_resume_move_what_comes_next() {
    let mut w = world(|c| c);
    w.cluster.create_topic("t", 1, 1);
    produce(&mut w, "t", 1000, 0);
    let tp = TopicPartition::new("t", 0);
    w.client.assign(w.now, vec![tp.clone()]).unwrap();
    let first = consume(&mut w, 10, Duration::from_secs(5));
    assert_eq!(first[0].offset, 0);
    // Back to 5: records 5.. come again, none fetched before the seek leaks through.
    w.client.seek(w.now, &tp, 5).unwrap();
    let again = consume(&mut w, 1000 - 5, Duration::from_secs(10));
    let offsets: Vec<i64> = again.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (5..1000).collect::<Vec<i64>>());
    // Paused: nothing comes; resumed: the next record does.
    w.client.pause(w.now, &tp).unwrap();
    produce(&mut w, "t", 5, 1000);
    assert!(consume(&mut w, 1, Duration::from_secs(3)).is_empty());
    w.client.resume(w.now, &tp).unwrap();
    let resumed = consume(&mut w, 5, Duration::from_secs(5));
    assert_eq!(resumed.iter().map(|r| r.offset).collect::<Vec<_>>(), (1000..1005).collect::<Vec<_>>());
    // seek_to earliest and latest.
    w.client.seek_to(w.now, &tp, OffsetSpec::Earliest).unwrap();
    assert_eq!(consume(&mut w, 1, Duration::from_secs(5))[0].offset, 0);
    w.client.seek_to(w.now, &tp, OffsetSpec::Latest).unwrap();
    assert!(w.run_until(Duration::from_secs(5), |w| w.client.position(&tp).unwrap() == Some(1005)));
    assert!(matches!(w.client.seek(w.now, &TopicPartition::new("t", 9), 0), Err(ConsumeError::NotAssigned(_))));
}

/// Bytes of a partition's fetch answer at most, in [`peak_while_unpolled`].
const PARTITION_FETCH_BYTES: usize = 16 * 1024;

/// The most a consumer with `fetch.buffer.memory` at `bound` holds of 20,000 records in four
/// partitions while the application does not poll; the world is then read to the end.
fn peak_while_unpolled(bound: usize) -> usize {
    let mut w =
        world(|c| c.with_fetch_buffer_memory(bound).with_max_partition_fetch_bytes(PARTITION_FETCH_BYTES as i32));
    w.cluster.create_topic("t", 4, 1);
    produce(&mut w, "t", 20_000, 0);
    w.client.assign(w.now, tps("t", 4)).unwrap();
    let mut peak = 0;
    for _ in 0..200 {
        peak = peak.max(w.client.consumer_buffered());
        if !w.step() {
            break;
        }
    }
    let records = consume(&mut w, 20_000, Duration::from_secs(60));
    assert_eq!(records.len(), 20_000);
    matches_log(&w, &records, 0);
    peak
}

#[test]
fn a_slow_application_holds_the_consumer_at_its_buffer_bound() {
    let bound = 64 * 1024;
    let peak = peak_while_unpolled(bound);
    // Fetching stops at the bound (plus at most one batch per partition that the broker
    // returns whole).
    assert!(peak > 0, "fetched something");
    assert!(peak <= bound + 4 * PARTITION_FETCH_BYTES, "buffered {peak} bytes against a bound of {bound}");
}

/// The consumer reads ahead of the application by about one answer of each broker, not by
/// the whole of `fetch.buffer.memory`: an application that does not poll holds two answers,
/// the one it would read and the next, and the rest waits at the broker.
#[test]
fn the_consumer_reads_one_answer_ahead_of_the_application() {
    let peak = peak_while_unpolled(64 << 20);
    // An answer holds at most 16 KiB per partition, or one batch that the broker returns whole.
    let two_answers = 2 * 4 * 2 * PARTITION_FETCH_BYTES;
    assert!(peak > 4 * PARTITION_FETCH_BYTES, "read ahead {peak} bytes: not even one answer");
    assert!(peak <= two_answers, "read ahead {peak} bytes, more than two answers ({two_answers})");
}

/// A partition that has caught up long-polls at the broker; that must not hold back another
/// partition of the same leader whose next data is already there. The consumer once fetched
/// only partitions with nothing buffered, so each refetch of the busy partition waited behind
/// the idle one's `fetch.max.wait.ms`.
#[test]
fn a_caught_up_partition_never_holds_back_another_on_the_same_leader() {
    let c = ConsumerConfig::default()
        .with_auto_offset_reset(OffsetReset::Earliest)
        .with_max_partition_fetch_bytes(16 * 1024)
        .with_fetch_max_wait(Duration::from_millis(500));
    let cluster = FakeClusterConfig { brokers: 1, auto_create_topics: false, ..FakeClusterConfig::default() };
    let mut w = World::new(cluster, |config: Config| config.with_consumer(c));
    w.cluster.create_topic("t", 2, 1);
    w.client.send(w.now, ProducerRecord::new("t", "alone").with_partition(0)).expect("taken");
    for i in 0..2000 {
        let r = ProducerRecord::new("t", vec![b'x'; 1000]).with_key(format!("k{i}")).with_partition(1);
        w.client.send(w.now, r).expect("taken");
    }
    w.pump();
    assert!(w.run_until(Duration::from_secs(10), |w| w.client.producer_outstanding() == 0));
    w.client.assign(w.now, tps("t", 2)).unwrap();
    let start = w.now;
    let records = consume(&mut w, 2001, Duration::from_secs(600));
    assert_eq!(records.len(), 2001);
    matches_log(&w, &records, 0);
    // About 125 fetches of partition 1; one wait of 500 ms each would take a minute.
    let took = w.now - start;
    assert!(took < Duration::from_secs(2), "consuming took {took:?} of virtual time");
}

/// An unclean election truncates a log the consumer had read past; the new leader appends
/// other records at the same offsets. After the leader change the consumer checks its
/// position with OffsetForLeaderEpoch (KIP-320): with a reset policy it goes on from where the
/// logs diverge and reads the new records once; with `none` it reports the truncation.
fn truncated_under_a_consumer(reset: OffsetReset) -> (World, TopicPartition) {
    let c = ConsumerConfig::default().with_auto_offset_reset(reset);
    let mut p = sansa::producer::ProducerConfig::default();
    p.acks = sansa::producer::Acks::Leader;
    p.enable_idempotence = Some(false);
    let cluster = FakeClusterConfig {
        brokers: 2,
        auto_create_topics: false,
        replication: Replication::Lagging {
            delay: Duration::from_millis(10),
            lag_time_max: Duration::from_secs(1),
            unclean_election: true,
        },
        ..FakeClusterConfig::default()
    };
    let mut w = World::new(cluster, |config: Config| config.with_consumer(c).with_producer(p));
    w.cluster.create_topic("t", 1, 2);
    let tp = TopicPartition::new("t", 0);
    let leader = w.cluster.leader("t", 0).unwrap();
    // Brokers 1 and 2.
    let follower = 3 - leader;
    produce(&mut w, "t", 100, 0);
    assert!(w.run_until(Duration::from_secs(5), |w| w.cluster.high_watermark("t", 0) == Some(100)));
    w.cluster.pause_replication(follower);
    produce(&mut w, "t", 100, 100);
    // The follower leaves the ISR and the high watermark passes it.
    assert!(w.run_until(Duration::from_secs(10), |w| w.cluster.high_watermark("t", 0) == Some(200)));
    w.client.assign(w.now, vec![tp.clone()]).unwrap();
    w.client.seek(w.now, &tp, 0).unwrap();
    assert_eq!(consume(&mut w, 200, Duration::from_secs(10)).len(), 200);
    w.cluster.stop_broker(leader);
    w.cluster.resume_replication(follower);
    assert_eq!(w.cluster.leader("t", 0), Some(follower));
    assert_eq!(w.cluster.log_end_offset("t", 0), Some(100), "the unclean election truncated the log");
    produce(&mut w, "t", 50, 1000);
    (w, tp)
}

#[test]
fn a_truncated_log_is_detected_and_consumption_goes_on_where_the_logs_diverge() {
    let (mut w, tp) = truncated_under_a_consumer(OffsetReset::Earliest);
    let records = consume(&mut w, 50, Duration::from_secs(30));
    let got: Vec<(i64, Option<Bytes>)> = records.iter().map(|r| (r.offset, r.value.clone())).collect();
    let want: Vec<(i64, Option<Bytes>)> =
        (0..50).map(|i| (100 + i, Some(Bytes::from(format!("v{}", 1000 + i))))).collect();
    assert_eq!(got, want, "the new leader's records, each once");
    assert!(consume(&mut w, 1, Duration::from_secs(2)).is_empty());
    assert_eq!(w.client.position(&tp).unwrap(), Some(150));
}

#[test]
fn a_truncated_log_without_a_reset_policy_is_reported() {
    let (mut w, tp) = truncated_under_a_consumer(OffsetReset::None);
    let end = w.now + Duration::from_secs(30);
    let error = loop {
        match w.client.poll_records(w.now, 500) {
            Err(e) => break e,
            Ok(records) => assert!(records.is_empty(), "nothing is read past a truncation"),
        }
        w.pump();
        assert!(w.now < end && w.step(), "no error reported");
    };
    match &error {
        ConsumeError::LogTruncation { partitions } => assert_eq!(partitions, &vec![(tp.clone(), 200, Some(100))]),
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("t-0 (position 200, log ends at 100)"), "{error}");
    // A seek recovers.
    w.client.seek(w.now, &tp, 100).unwrap();
    assert_eq!(consume(&mut w, 50, Duration::from_secs(10)).len(), 50);
}

/// `allow.auto.create.topics` (on by default, as in Java): a subscription to a missing topic
/// creates it where the broker allows it; off, the topic stays missing.
#[test]
fn subscribing_creates_a_missing_topic_unless_told_not_to() {
    for allow in [true, false] {
        let mut c = ConsumerConfig::default().with_group_id("g");
        c.allow_auto_create_topics = allow;
        let cluster = FakeClusterConfig { auto_create_topics: true, ..FakeClusterConfig::default() };
        let mut w = World::new(cluster, |config: Config| config.with_consumer(c));
        w.client.subscribe(w.now, vec!["fresh".into()]).unwrap();
        let created = w.run_until(Duration::from_secs(10), |w| !w.client.assignment().is_empty());
        assert_eq!(created, allow, "allow.auto.create.topics={allow}");
        assert_eq!(w.cluster.leader("fresh", 0).is_some(), allow);
    }
}

#[test]
fn commits_are_read_back_and_where_a_new_consumer_starts() {
    let mut w = world(|c| c.with_group_id("g"));
    w.cluster.create_topic("t", 2, 1);
    produce(&mut w, "t", 200, 0);
    w.client.assign(w.now, tps("t", 2)).unwrap();
    let records = consume(&mut w, 200, Duration::from_secs(10));
    assert_eq!(records.len(), 200);
    let positions = w.client.positions();
    let id = w.client.commit(w.now, positions.clone());
    assert!(w.run_until(Duration::from_secs(5), |w| w
        .events
        .iter()
        .any(|e| matches!(e, Event::Committed { id: i, .. } if *i == id))));
    assert!(w.events.iter().any(|e| matches!(e, Event::Committed { id: i, result: Ok(()) } if *i == id)));
    let id = w.client.committed(w.now, tps("t", 2));
    assert!(w.run_until(Duration::from_secs(5), |w| w
        .events
        .iter()
        .any(|e| matches!(e, Event::CommittedOffsets { id: i, .. } if *i == id))));
    let found = w.events.iter().find_map(|e| match e {
        Event::CommittedOffsets { id: i, result } if *i == id => Some(result.clone().unwrap()),
        _ => None,
    });
    let found = found.unwrap();
    for (tp, offset) in &positions {
        assert_eq!(found[tp].as_ref().map(|c| c.offset), Some(offset.offset));
    }

    // A second consumer of the group starts at the committed offsets; one partition has a
    // commit in the middle.
    let mut w2 = World::new(FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() }, |c| {
        c.with_consumer(ConsumerConfig::default().with_group_id("g2").with_auto_offset_reset(OffsetReset::Earliest))
    });
    w2.cluster.create_topic("t", 1, 1);
    produce(&mut w2, "t", 50, 0);
    let tp = TopicPartition::new("t", 0);
    let id = w2.client.commit(w2.now, vec![(tp.clone(), CommittedOffset::new(30))]);
    assert!(w2.run_until(Duration::from_secs(5), |w| w
        .events
        .iter()
        .any(|e| matches!(e, Event::Committed { id: i, .. } if *i == id))));
    w2.client.assign(w2.now, vec![tp.clone()]).unwrap();
    let rest = consume(&mut w2, 20, Duration::from_secs(5));
    assert_eq!(rest.first().map(|r| r.offset), Some(30));
    assert_eq!(rest.len(), 20);
}

/// A lookup of committed offsets made after a commit of the same partition, still unsettled,
/// sees that commit: it waits for it (found by the simulator, seed 374365, where a member
/// given a partition back while its commit before the revoke was retried read no offset,
/// started from the reset position and committed it, behind the offset just committed).
#[test]
fn a_lookup_after_an_unsettled_commit_of_its_partition_reads_that_commit() {
    let mut w = world(|c| c.with_group_id("g"));
    w.cluster.create_topic("t", 1, 1);
    produce(&mut w, "t", 50, 0);
    let tp = TopicPartition::new("t", 0);
    // The commit's first attempt is refused; the lookup is ready while it waits to retry.
    w.cluster.inject(Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit));
    let commit = w.client.commit(w.now, vec![(tp.clone(), CommittedOffset::new(30))]);
    let lookup = w.client.committed(w.now, vec![tp.clone()]);
    assert!(w.run_until(Duration::from_secs(10), |w| w
        .events
        .iter()
        .any(|e| matches!(e, Event::CommittedOffsets { id, .. } if *id == lookup))));
    assert!(w.events.iter().any(|e| matches!(e, Event::Committed { id, result: Ok(()) } if *id == commit)));
    let found = w.events.iter().find_map(|e| match e {
        Event::CommittedOffsets { id, result } if *id == lookup => Some(result.clone().unwrap()),
        _ => None,
    });
    assert_eq!(found.unwrap()[&tp].as_ref().map(|c| c.offset), Some(30));
}

#[test]
fn offsets_are_listed_by_earliest_latest_and_timestamp() {
    let mut w = world(|c| c);
    w.cluster.create_topic("t", 1, 1);
    produce(&mut w, "t", 10, 0);
    let tp = TopicPartition::new("t", 0);
    let log: Vec<_> = w.cluster.partition_log("t", 0).unwrap().collect();
    let ask = vec![(tp.clone(), OffsetSpec::Earliest)];
    let id = w.client.list_offsets(w.now, ask);
    let done =
        |id| move |w: &World| w.events.iter().any(|e| matches!(e, Event::ListedOffsets { id: i, .. } if *i == id));
    assert!(w.run_until(Duration::from_secs(5), done(id)));
    let listed = |w: &World, id| {
        w.events
            .iter()
            .find_map(|e| match e {
                Event::ListedOffsets { id: i, result } if *i == id => Some(result.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(listed(&w, id).unwrap()[&tp].unwrap().offset, 0);
    let id = w.client.list_offsets(w.now, vec![(tp.clone(), OffsetSpec::Latest)]);
    assert!(w.run_until(Duration::from_secs(5), done(id)));
    assert_eq!(listed(&w, id).unwrap()[&tp].unwrap().offset, 10);
    let id = w.client.list_offsets(w.now, vec![(tp.clone(), OffsetSpec::Timestamp(log[0].timestamp))]);
    assert!(w.run_until(Duration::from_secs(5), done(id)));
    assert_eq!(listed(&w, id).unwrap()[&tp].unwrap().offset, 0);
    let id = w.client.list_offsets(w.now, vec![(tp.clone(), OffsetSpec::Timestamp(i64::MAX / 2))]);
    assert!(w.run_until(Duration::from_secs(5), done(id)));
    assert_eq!(listed(&w, id).unwrap()[&tp], None);
}

#[test]
fn leader_moves_broker_loss_and_session_errors_lose_and_repeat_nothing() {
    let mut w = world(|c| c);
    w.cluster.create_topic("t", 3, 3);
    produce(&mut w, "t", 3000, 0);
    w.client.assign(w.now, tps("t", 3)).unwrap();
    let mut records = consume(&mut w, 500, Duration::from_secs(10));
    // A fetch session the broker forgot, an error that moves nothing, then a leader that
    // moves and a broker that dies.
    w.cluster.inject(Fault::error(ErrorCode::FetchSessionIdNotFound).on_api(ApiKey::Fetch));
    records.extend(consume(&mut w, 200, Duration::from_secs(5)));
    w.cluster.inject(Fault::new(FaultAction::Disconnect).on_api(ApiKey::Fetch));
    records.extend(consume(&mut w, 200, Duration::from_secs(5)));
    let leader = w.cluster.leader("t", 0).unwrap();
    let other = w.cluster.broker_ids().into_iter().find(|b| *b != leader).unwrap();
    w.cluster.move_leader("t", 0, other).unwrap();
    records.extend(consume(&mut w, 300, Duration::from_secs(10)));
    let leader = w.cluster.leader("t", 1).unwrap();
    w.stop_broker(leader);
    records.extend(consume(&mut w, 3000 - records.len(), Duration::from_secs(60)));
    assert_eq!(records.len(), 3000);
    matches_log(&w, &records, 0);
}

#[test]
fn brokers_without_fetch_sessions_are_served_by_full_fetches() {
    let mut w = world(|c| c);
    w.cluster.set_fetch_session_slots(0);
    w.cluster.create_topic("t", 2, 1);
    produce(&mut w, "t", 500, 0);
    w.client.assign(w.now, tps("t", 2)).unwrap();
    let records = consume(&mut w, 500, Duration::from_secs(10));
    matches_log(&w, &records, 0);
}

/// Brokers 1, 2 and 3 in racks a, b and c, a 3-replica topic `t` of one partition led by
/// broker 1, and a consumer in `rack`, if any.
fn racked_world(rack: Option<&str>) -> World {
    let racks = vec!["rack-a".to_string(), "rack-b".to_string(), "rack-c".to_string()];
    let cluster = FakeClusterConfig { auto_create_topics: false, racks, ..FakeClusterConfig::default() };
    let mut consumer = ConsumerConfig::default().with_auto_offset_reset(OffsetReset::Earliest);
    consumer.client_rack = rack.map(str::to_string);
    let mut w = World::new(cluster, |config: Config| config.with_consumer(consumer));
    w.cluster.create_topic("t", 1, 3);
    assert_eq!(w.cluster.leader("t", 0), Some(1), "broker 1 (rack-a) leads; the replica placement changed");
    w
}

/// KIP-392: a consumer with `client.rack` reads from the in-sync replica in its rack that the
/// leader names, and goes back to the leader when that replica stops.
#[test]
fn a_consumer_reads_from_the_replica_in_its_rack_and_falls_back_to_the_leader() {
    let mut w = racked_world(Some("rack-b"));
    produce(&mut w, "t", 500, 0);
    w.client.assign(w.now, tps("t", 1)).unwrap();
    let records = consume(&mut w, 500, Duration::from_secs(30));
    matches_log(&w, &records, 0);
    assert_eq!(w.cluster.fetch_session_count(2), 1, "the rack-b replica serves the fetches");
    // The replica stops: the consumer reads on from the leader.
    w.stop_broker(2);
    produce(&mut w, "t", 200, 500);
    let late = consume(&mut w, 200, Duration::from_secs(60));
    assert_eq!(late.len(), 200, "the leader serves what the stopped replica cannot");
    matches_log(&w, &[records, late].concat(), 0);
}

/// Without `client.rack`, or in the leader's rack, the leader serves the consumer.
#[test]
fn a_consumer_without_a_rack_or_in_the_leaders_reads_from_the_leader() {
    for rack in [None, Some("rack-a")] {
        let mut w = racked_world(rack);
        produce(&mut w, "t", 100, 0);
        w.client.assign(w.now, tps("t", 1)).unwrap();
        let records = consume(&mut w, 100, Duration::from_secs(30));
        matches_log(&w, &records, 0);
        assert_eq!(w.cluster.fetch_session_count(1), 1, "{rack:?}");
        assert_eq!(w.cluster.fetch_session_count(2) + w.cluster.fetch_session_count(3), 0, "{rack:?}");
    }
}

/// Polls `future` once with a waker that does nothing, then lets the dispatcher take what
/// the poll put on its intake.
fn poll_once<F: std::future::Future>(w: &mut DispatcherWorld, future: &mut std::pin::Pin<Box<F>>) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = future.as_mut().poll(&mut cx);
    w.pump();
    let polled = if polled.is_pending() { future.as_mut().poll(&mut cx) } else { polled };
    match polled {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn a_waiting_poll_is_not_answered_by_a_fetch_of_markers_only() {
    let consumer = ConsumerConfig::default()
        .with_auto_offset_reset(OffsetReset::Earliest)
        .with_isolation_level(IsolationLevel::ReadCommitted);
    let cluster = FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() };
    let mut w = DispatcherWorld::new(cluster, |config: Config| config.with_consumer(consumer));
    w.cluster.create_topic("m", 1, 1);
    // An aborted transaction only: its records and marker, nothing a read_committed poll returns.
    w.cluster.write_transaction(w.now, "m", 0, &[b"aborted"], false).expect("written");
    let handle = w.handle.clone().expect("the handle is kept");
    let mut assign = Box::pin(handle.assign(tps("m", 1)));
    assert!(matches!(poll_once(&mut w, &mut assign), Some(Ok(()))));
    let started = w.now;
    let mut poll = Box::pin(handle.poll(100, Duration::from_secs(30)));
    assert!(poll_once(&mut w, &mut poll).is_none(), "markers alone are no answer");
    // Fetches (the markers, then long polls that find nothing) for ten seconds, well before
    // the poll's own deadline: the clock moves only to deadlines before then.
    let until = w.now + Duration::from_secs(10);
    while w.next_deadline().is_some_and(|t| t <= until) {
        w.step();
    }
    assert!(w.now > started + Duration::from_secs(5), "fetches went on");
    assert!(poll_once(&mut w, &mut poll).is_none(), "still waiting after ten seconds of empty fetches");
    // A committed transaction: the fetch waiting at the broker brings it, and the poll is
    // answered with its records.
    w.cluster.write_transaction(w.now, "m", 0, &[b"c1", b"c2"], true).expect("written");
    let records = loop {
        if let Some(answer) = poll_once(&mut w, &mut poll) {
            break answer.expect("records");
        }
        assert!(
            w.next_deadline().is_some_and(|t| t < started + Duration::from_secs(30)),
            "answered before its deadline"
        );
        w.step();
    };
    let values: Vec<Bytes> = records.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(values, [Bytes::from_static(b"c1"), Bytes::from_static(b"c2")]);
}

/// A consumer of group `g` that auto-commits every `interval` and retries after `backoff`,
/// and topic `t` (one partition) with 50 records.
fn auto_committing(
    interval: Duration,
    backoff: Duration,
    more: impl FnOnce(ConsumerConfig) -> ConsumerConfig,
) -> World {
    let cluster = FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() };
    let mut w = World::new(cluster, |config: Config| {
        let mut c = ConsumerConfig::default()
            .with_group_id("g")
            .with_auto_offset_reset(OffsetReset::Earliest)
            .with_auto_commit(true);
        c.auto_commit_interval = interval;
        config.with_retry_backoff(backoff, backoff).with_consumer(more(c))
    });
    w.cluster.create_topic("t", 1, 1);
    produce(&mut w, "t", 50, 0);
    w
}

/// The consumer's own commits hold its positions: an auto-commit that was refused and waits
/// to retry gives up the partitions a newer commit carries, so the group's committed offset
/// never goes back (simulator seed 9548 committed 23 after 29).
#[test]
fn a_retried_auto_commit_never_overwrites_a_newer_commit() {
    let mut w = auto_committing(Duration::from_secs(1), Duration::from_secs(3), |c| c);
    let tp = TopicPartition::new("t", 0);
    w.client.assign(w.now, vec![tp.clone()]).unwrap();
    assert_eq!(consume(&mut w, 50, Duration::from_secs(5)).len(), 50);
    // The next auto-commit, at 50, is refused once with a retriable error: it waits 3 s.
    w.cluster.inject(Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit).times(1));
    w.run_until(Duration::from_millis(1500), |_| false);
    assert_eq!(w.cluster.committed_offsets("g").get(&("t".to_string(), 0)), None, "refused");
    produce(&mut w, "t", 50, 50);
    assert_eq!(consume(&mut w, 50, Duration::from_secs(1)).len(), 50);
    let id = w.client.commit(w.now, w.client.positions());
    assert!(w.run_until(Duration::from_secs(1), |w| w
        .events
        .iter()
        .any(|e| matches!(e, Event::Committed { id: i, result: Ok(()) } if *i == id))));
    assert_eq!(w.cluster.committed_offsets("g").get(&("t".to_string(), 0)), Some(&100));
    // The refused auto-commit's retry comes due: it must not take the group back to 50, not
    // even until the next auto-commit.
    for _ in 0..50 {
        w.run_until(Duration::from_millis(100), |_| false);
        assert_eq!(w.cluster.committed_offsets("g").get(&("t".to_string(), 0)), Some(&100));
    }
}

/// A member that lost its partitions (fenced) does not commit them afterwards: its
/// auto-commit waiting to retry was made in the generation it lost, and is dropped. Stamped
/// with the generation the member rejoined in, the retry would be accepted over what the
/// partitions' new owners committed.
#[test]
fn a_fenced_member_forgets_its_pending_auto_commit() {
    let mut w = auto_committing(Duration::from_secs(30), Duration::from_secs(12), |mut c| {
        c.session_timeout = Duration::from_secs(6);
        c.heartbeat_interval = Duration::from_secs(2);
        c
    });
    w.client.subscribe(w.now, vec!["t".into()]).unwrap();
    assert_eq!(consume(&mut w, 50, Duration::from_secs(10)).len(), 50);
    // The auto-commit (at 50) is refused once with a retriable error: it waits 12 s.
    w.cluster.inject(Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit).times(1));
    let refused = |w: &World| !w.cluster.has_faults();
    assert!(w.run_until(Duration::from_secs(31), refused));
    let at = w.now;
    // Then the coordinator forgets the member: its partitions are lost, and it rejoins (a
    // new generation) once its old session ends, before the retry is due.
    w.cluster.inject(Fault::error(ErrorCode::UnknownMemberId).on_api(ApiKey::Heartbeat).times(1));
    while w.now < at + Duration::from_secs(11) {
        w.run_until(Duration::from_millis(200), |_| false);
    }
    assert!(!w.client.assignment().is_empty(), "rejoined");
    while w.now < at + Duration::from_secs(20) {
        w.run_until(Duration::from_millis(200), |_| false);
        assert_eq!(w.cluster.committed_offsets("g").get(&("t".to_string(), 0)), None, "committed since the loss");
    }
}

/// [`auto_committing`] (retries after 12 s) and topic `u`: the member consumes `t` to 50,
/// then subscribes to `t` and `u`, so it revokes `t-0` (eager) and commits 50 first; that
/// commit is refused once with a retriable error and is due again 12 s later.
fn revoking_with_a_refused_commit(more: impl FnOnce(ConsumerConfig) -> ConsumerConfig) -> World {
    let mut w = auto_committing(Duration::from_secs(60), Duration::from_secs(12), more);
    w.cluster.create_topic("u", 1, 1);
    w.client.subscribe(w.now, vec!["t".into()]).unwrap();
    assert_eq!(consume(&mut w, 50, Duration::from_secs(10)).len(), 50);
    w.cluster.inject(Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit).times(1));
    w.client.subscribe(w.now, vec!["t".into(), "u".into()]).unwrap();
    let refused = |w: &World| !w.cluster.has_faults();
    assert!(w.run_until(Duration::from_secs(5), refused));
    w
}

/// As Java's onJoinPrepare: a member that revokes its partitions (eager) rejoins only once
/// its commit of them is through, retrying it in the generation it belongs to, so the
/// partitions' next owner starts where it stopped.
#[test]
fn a_member_rejoins_once_its_commit_before_a_revoke_is_through() {
    let mut w = revoking_with_a_refused_commit(|c| c);
    let at = w.now;
    // Each step: no partition is taken until the commit is in.
    let mut early = None;
    let rejoined = |w: &World| {
        let committed = w.cluster.committed_offsets("g").get(&("t".to_string(), 0)).copied();
        if !w.client.assignment().is_empty() && committed.is_none() {
            early.get_or_insert(w.now);
        }
        w.client.assignment().len() == 2
    };
    assert!(w.run_until(Duration::from_secs(20), rejoined));
    assert_eq!(early, None, "rejoined before its commit was through");
    assert!(w.now >= at + Duration::from_secs(11), "the rejoin waited for the retry");
    assert_eq!(w.cluster.committed_offsets("g").get(&("t".to_string(), 0)), Some(&50));
    // The partition's next owner (the member itself) goes on from the commit.
    produce(&mut w, "t", 10, 50);
    let records = consume(&mut w, 10, Duration::from_secs(10));
    let offsets: Vec<i64> = records.iter().filter(|r| r.topic.as_str() == "t").map(|r| r.offset).collect();
    assert_eq!(offsets, (50..60).collect::<Vec<i64>>());
}

/// A commit before a revoke that a newer commit of the same partitions supersedes is dropped
/// when its retry comes due, and the member rejoins then, not at some later event.
#[test]
fn a_member_rejoins_when_its_superseded_commit_before_a_revoke_is_dropped() {
    let mut w = revoking_with_a_refused_commit(|mut c| {
        c.session_timeout = Duration::from_secs(30);
        c.heartbeat_interval = Duration::from_secs(8);
        c
    });
    let at = w.now;
    // The application commits the same position meanwhile, which lands at once.
    w.client.commit(w.now, vec![(TopicPartition::new("t", 0), CommittedOffset::new(50))]);
    assert!(
        w.run_until(Duration::from_secs(1), |w| w.cluster.committed_offsets("g").contains_key(&("t".to_string(), 0)))
    );
    // The JoinGroup goes when the superseded retry is dropped (12 s), not at the member's
    // next heartbeat answer (up to 8 s later).
    let joined = |w: &World| w.client.assignment().len() == 2;
    assert!(w.run_until(Duration::from_secs(30), joined));
    assert!(w.now < at + Duration::from_millis(12_500), "rejoined {:?} after the refusal", w.now - at);
}

/// A commit the consumer made before a revoke is stamped with the generation it was made
/// in: when the member is fenced while the commit waits to be retried, it rejoins at once
/// and the commit is dropped rather than stamped with the new generation, since the
/// partitions may have new owners by then (simulator seed 70988: the new owner reset to 0,
/// then the retry stored 6, then the owner stored 0 again).
#[test]
fn a_commit_before_a_revoke_is_not_retried_in_the_next_generation() {
    let mut w = revoking_with_a_refused_commit(|mut c| {
        c.session_timeout = Duration::from_secs(6);
        c.heartbeat_interval = Duration::from_secs(1);
        c
    });
    // The coordinator forgets the member (fenced) long before the retry is due.
    w.cluster.inject(Fault::error(ErrorCode::UnknownMemberId).on_api(ApiKey::Heartbeat).times(1));
    let at = w.now;
    let rejoined = |w: &World| w.client.assignment().len() == 2;
    // The coordinator waits for the forgotten member's session (6 s) to end, well before
    // the retry is due.
    assert!(w.run_until(Duration::from_secs(10), rejoined), "rejoined once fenced");
    assert!(w.now < at + Duration::from_secs(11), "the rejoin did not wait for the retry");
    while w.now < at + Duration::from_secs(20) {
        w.run_until(Duration::from_millis(200), |_| false);
        assert_eq!(w.cluster.committed_offsets("g").get(&("t".to_string(), 0)), None, "committed after the rejoin");
    }
}
