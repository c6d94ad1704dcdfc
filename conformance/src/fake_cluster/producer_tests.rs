//! The producer machine against the fake cluster, in memory with a virtual clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sansa::producer::partitioner::partition_for_key;
use sansa::producer::{Acks, ProduceError, ProducerConfig, ProducerRecord, RecordMetadata, SendId};
use sansa::protocol::records::Compression;
use sansa::protocol::{ApiKey, ErrorCode, TopicName};
use sansa::{Config, Event};

use super::world::{DispatcherWorld, World};
use super::{FakeClusterConfig, Fault, FaultAction, Replication};

fn world(producer: impl FnOnce(&mut ProducerConfig)) -> World {
    let mut p = ProducerConfig::default();
    producer(&mut p);
    World::new(FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() }, |c: Config| {
        c.with_producer(p)
    })
}

/// Every record's outcome so far, by send id.
fn outcomes(w: &World) -> BTreeMap<SendId, Result<RecordMetadata, ProduceError>> {
    let mut out = BTreeMap::new();
    for e in &w.events {
        if let Event::Delivery(d) = e {
            for (id, r) in d.outcomes() {
                assert!(out.insert(id, r).is_none(), "{id:?} has two outcomes");
            }
        }
    }
    out
}

fn send_all(w: &mut World, records: impl IntoIterator<Item = ProducerRecord>) -> Vec<SendId> {
    let ids: Vec<SendId> = records.into_iter().map(|r| w.client.send(w.now, r).expect("taken")).collect();
    w.pump();
    ids
}

fn settle(w: &mut World, ids: &[SendId], limit: Duration) -> BTreeMap<SendId, Result<RecordMetadata, ProduceError>> {
    let all = |w: &World| {
        let out = outcomes(w);
        ids.iter().all(|id| out.contains_key(id))
    };
    let done = w.run_until(limit, all);
    let out = outcomes(w);
    assert!(done, "{} of {} records have an outcome; buffered {}", out.len(), ids.len(), w.client.producer_buffered());
    out
}

/// A world with a one-partition topic `topic` whose first record is acked, so that the
/// producer's batches there pipeline; the client's timeouts are shortened to `request_timeout`
/// and `delivery_timeout`, and `producer` adjusts the rest.
fn warmed(
    topic: &str,
    request_timeout: Duration,
    delivery_timeout: Duration,
    producer: impl FnOnce(&mut ProducerConfig),
) -> World {
    let mut p = ProducerConfig::default();
    p.delivery_timeout = delivery_timeout;
    producer(&mut p);
    let cluster = FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() };
    let mut w = World::new(cluster, |c: Config| c.with_request_timeout(request_timeout).with_producer(p));
    w.cluster.create_topic(topic, 1, 3);
    let warm = send_all(&mut w, [ProducerRecord::new(topic, "warm")]);
    settle(&mut w, &warm, Duration::from_secs(5));
    w
}

/// (key, value) pairs of a partition's log, in offset order.
fn log(w: &World, topic: &str, partition: i32) -> Vec<(Option<Bytes>, Option<Bytes>, i64)> {
    log_of(&w.cluster, topic, partition)
}

fn log_of(cluster: &super::FakeCluster, topic: &str, partition: i32) -> Vec<(Option<Bytes>, Option<Bytes>, i64)> {
    cluster.partition_log(topic, partition).unwrap().map(|r| (r.key, r.value, r.offset)).collect()
}

#[test]
fn keyed_records_land_where_java_puts_them_once_each_in_order() {
    let mut w = world(|_| {});
    w.cluster.create_topic("orders", 6, 3);
    let records: Vec<ProducerRecord> = (0..3000)
        .map(|i| {
            ProducerRecord::new("orders", format!("value-{i}"))
                .with_key(format!("key-{}", i % 97))
                .with_header("h", format!("{i}"))
        })
        .collect();
    let ids = send_all(&mut w, records);
    let out = settle(&mut w, &ids, Duration::from_secs(10));
    assert!(w.client.producer_idempotent());
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    // Deliveries name the topic with its one static copy, not the records' own copies.
    let interned = TopicName::from("orders").interned();
    for (i, id) in ids.iter().enumerate() {
        let m = out[id].as_ref().expect("delivered");
        assert_eq!(m.topic.as_bytes().as_ptr(), interned.as_bytes().as_ptr());
        let key = format!("key-{}", i % 97);
        assert_eq!(m.partition as u32, partition_for_key(key.as_bytes(), 6).unwrap(), "record {i}");
        assert_eq!(m.serialized_key_size, Some(key.len()));
        per_partition.entry(m.partition).or_default().push(m.offset.unwrap());
    }
    for (p, offsets) in per_partition {
        // Offsets grow in send order, and the log holds each record once, in that order.
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {p}");
        let stored = log(&w, "orders", p);
        assert_eq!(stored.len(), offsets.len());
        let values: Vec<usize> = stored
            .iter()
            .map(|(_, v, _)| std::str::from_utf8(v.as_ref().unwrap()).unwrap()[6..].parse().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "partition {p} out of order");
    }
    let first = w.cluster.partition_log("orders", 0).unwrap().next().unwrap();
    assert!(first.producer_id >= 0 && first.sequence == 0, "idempotent batches carry a producer id and sequences");
    assert_eq!(w.client.producer_buffered(), 0);
}

#[test]
fn every_codec_round_trips_and_unkeyed_records_spread() {
    for compression in
        [Compression::None, Compression::gzip(), Compression::snappy(), Compression::lz4(), Compression::zstd()]
    {
        let mut w = world(|p| p.compression = compression);
        w.cluster.create_topic("c", 3, 1);
        let ids = send_all(&mut w, (0..2000).map(|i| ProducerRecord::new("c", format!("{i:0>90}"))));
        let out = settle(&mut w, &ids, Duration::from_secs(10));
        assert!(out.values().all(|r| r.is_ok()), "{compression:?}");
        let total: usize = (0..3).map(|p| log(&w, "c", p).len()).sum();
        assert_eq!(total, 2000, "{compression:?}");
        let used = (0..3).filter(|p| !log(&w, "c", *p).is_empty()).count();
        assert!(used >= 2, "sticky partitioning moves on after a batch ({compression:?})");
    }
}

#[test]
fn an_oversized_record_fails_alone() {
    let mut w = world(|p| p.max_request_size = 10_000);
    w.cluster.create_topic("t", 1, 1);
    let big = ProducerRecord::new("t", vec![b'x'; 20_000]);
    let ids = send_all(&mut w, [ProducerRecord::new("t", "a"), big, ProducerRecord::new("t", "b")]);
    let out = settle(&mut w, &ids, Duration::from_secs(5));
    assert!(out[&ids[0]].is_ok() && out[&ids[2]].is_ok());
    assert!(
        matches!(out[&ids[1]], Err(ProduceError::RecordTooLarge { setting: "max.request.size", .. })),
        "{:?}",
        out[&ids[1]]
    );
    assert_eq!(log(&w, "t", 0).len(), 2);
}

#[test]
fn a_missing_topic_fails_after_max_block() {
    let mut w = world(|p| p.max_block = Duration::from_secs(3));
    let start = w.now;
    let ids = send_all(&mut w, [ProducerRecord::new("nope", "x")]);
    let out = settle(&mut w, &ids, Duration::from_secs(10));
    match &out[&ids[0]] {
        Err(ProduceError::TopicNotFound { waited, .. }) => assert!(*waited >= Duration::from_secs(3)),
        other => panic!("{other:?}"),
    }
    let took = w.now - start;
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(4), "{took:?}");
}

#[test]
fn records_waiting_for_a_topic_each_fail_at_their_own_max_block() {
    let mut w = world(|p| p.max_block = Duration::from_secs(3));
    let start = w.now;
    let first = send_all(&mut w, [ProducerRecord::new("nope", "a"), ProducerRecord::new("nope", "b")]);
    w.run_until(Duration::from_secs(1), |_| false);
    let second = send_all(&mut w, [ProducerRecord::new("nope", "c")]);
    let out = settle(&mut w, &first, Duration::from_secs(10));
    assert!(!out.contains_key(&second[0]), "the later record failed with the earlier ones");
    let first_done = w.now - start;
    assert!(first_done >= Duration::from_secs(3) && first_done < Duration::from_secs(4), "{first_done:?}");
    let out = settle(&mut w, &second, Duration::from_secs(10));
    let second_done = w.now - start;
    assert!(second_done >= Duration::from_secs(4) && second_done < Duration::from_secs(5), "{second_done:?}");
    for id in first.iter().chain(&second) {
        assert!(matches!(out[id], Err(ProduceError::TopicNotFound { .. })), "{:?}", out[id]);
    }
    assert_eq!(w.client.producer_buffered(), 0);
}

#[test]
fn a_topic_created_while_records_wait_gets_them() {
    let mut w = world(|_| {});
    let ids = send_all(&mut w, [ProducerRecord::new("later", "x")]);
    w.run_until(Duration::from_millis(500), |_| false);
    w.cluster.create_topic("later", 1, 1);
    let out = settle(&mut w, &ids, Duration::from_secs(5));
    assert!(out[&ids[0]].is_ok(), "{:?}", out[&ids[0]]);
}

#[test]
fn records_move_to_a_new_leader() {
    let mut w = world(|_| {});
    w.cluster.create_topic("m", 1, 3);
    let first = send_all(&mut w, (0..100).map(|i| ProducerRecord::new("m", format!("{i}"))));
    settle(&mut w, &first, Duration::from_secs(5));
    let leader = w.cluster.leader("m", 0).unwrap();
    let other = w.cluster.broker_ids().into_iter().find(|b| *b != leader).unwrap();
    w.cluster.move_leader("m", 0, other).unwrap();
    let second = send_all(&mut w, (100..200).map(|i| ProducerRecord::new("m", format!("{i}"))));
    let out = settle(&mut w, &second, Duration::from_secs(10));
    assert!(out.values().all(|r| r.is_ok()));
    let values: Vec<usize> = log(&w, "m", 0)
        .iter()
        .map(|(_, v, _)| std::str::from_utf8(v.as_ref().unwrap()).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values, (0..200).collect::<Vec<_>>());
}

#[test]
fn lost_answers_are_retried_without_duplicates() {
    let mut w = world(|_| {});
    w.cluster.create_topic("d", 2, 3);
    w.cluster.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce).times(3));
    w.cluster.inject(Fault::new(FaultAction::ApplyThenDisconnect).on_api(ApiKey::Produce).times(2));
    let ids =
        send_all(&mut w, (0..1000).map(|i| ProducerRecord::new("d", format!("{i}")).with_key(format!("{}", i % 2))));
    let out = settle(&mut w, &ids, Duration::from_secs(120));
    assert!(out.values().all(|r| r.is_ok()), "{:?}", out.values().find(|r| r.is_err()));
    let total: usize = (0..2).map(|p| log(&w, "d", p).len()).sum();
    assert_eq!(total, 1000, "each acked record once");
}

#[test]
fn retriable_errors_are_retried_and_fatal_ones_fail_the_batch() {
    let mut w = world(|_| {});
    w.cluster.create_topic("r", 1, 3);
    w.cluster.inject(Fault::error(ErrorCode::NotEnoughReplicas).on_api(ApiKey::Produce).times(2));
    let ids = send_all(&mut w, [ProducerRecord::new("r", "x")]);
    let out = settle(&mut w, &ids, Duration::from_secs(10));
    assert!(out[&ids[0]].is_ok());
    w.cluster.inject(Fault::error(ErrorCode::TopicAuthorizationFailed).on_api(ApiKey::Produce));
    let ids = send_all(&mut w, [ProducerRecord::new("r", "y")]);
    let out = settle(&mut w, &ids, Duration::from_secs(10));
    assert!(matches!(&out[&ids[0]], Err(ProduceError::Broker { error: ErrorCode::TopicAuthorizationFailed, .. })));
}

#[test]
fn with_every_broker_down_records_fail_at_the_delivery_timeout() {
    let mut w = world(|p| {
        p.delivery_timeout = Duration::from_secs(40);
    });
    w.cluster.create_topic("x", 2, 3);
    let warm = send_all(&mut w, [ProducerRecord::new("x", "warm")]);
    settle(&mut w, &warm, Duration::from_secs(5));
    let sent_at = w.now;
    for b in w.cluster.broker_ids() {
        w.stop_broker(b);
    }
    let ids = send_all(&mut w, (0..50).map(|i| ProducerRecord::new("x", format!("{i}"))));
    let out = settle(&mut w, &ids, Duration::from_secs(120));
    for r in out.values().skip(1) {
        assert!(matches!(r, Err(ProduceError::DeliveryTimeout { .. })), "{r:?}");
    }
    let took = w.now - sent_at;
    assert!(took <= Duration::from_secs(41), "{took:?}");
    assert_eq!(w.client.producer_buffered(), 0);
}

#[test]
fn acks_zero_completes_without_offsets() {
    let mut w = world(|p| p.acks = Acks::None);
    assert!(!w.client.producer_idempotent());
    w.cluster.create_topic("z", 1, 1);
    let ids = send_all(&mut w, (0..10).map(|i| ProducerRecord::new("z", format!("{i}"))));
    let out = settle(&mut w, &ids, Duration::from_secs(5));
    assert!(out.values().all(|r| r.as_ref().is_ok_and(|m| m.offset.is_none())));
    assert_eq!(log(&w, "z", 0).len(), 10);
}

#[test]
fn flush_answers_once_everything_before_it_is_delivered() {
    let mut w = world(|p| p.linger = Duration::from_secs(30));
    w.cluster.create_topic("f", 1, 1);
    let ids = send_all(&mut w, (0..5).map(|i| ProducerRecord::new("f", format!("{i}"))));
    let flush = w.client.flush(w.now);
    let start = w.now;
    assert!(w.run_until(Duration::from_secs(5), |w| w
        .events
        .iter()
        .any(|e| matches!(e, Event::Flushed { id } if *id == flush))));
    assert!(w.now - start < Duration::from_secs(1), "flush does not wait for linger.ms");
    assert_eq!(outcomes(&w).len(), ids.len());
}

#[test]
fn the_buffer_refuses_past_buffer_memory_and_frees_on_delivery() {
    let mut w = world(|p| {
        p.buffer_memory = 50_000;
        p.linger = Duration::from_secs(1);
    });
    w.cluster.create_topic("b", 1, 1);
    let mut taken = 0;
    let refused = loop {
        match w.client.send(w.now, ProducerRecord::new("b", vec![b'v'; 1000])) {
            Ok(_) => taken += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(refused.reason, sansa::producer::RefuseReason::BufferFull));
    assert!(w.client.producer_buffered() <= 50_000);
    assert!((40..=50).contains(&taken), "{taken}");
    w.run_until(Duration::from_secs(5), |w| w.client.producer_buffered() == 0);
    assert!(w.client.send(w.now, *refused.record).is_ok());
}

#[test]
fn metrics_count_what_the_producer_did_under_java_names() {
    let mut w = world(|p| p.compression = Compression::lz4());
    w.cluster.create_topic("m", 2, 1);
    w.cluster.inject(Fault::error(ErrorCode::NotLeaderOrFollower).on_api(ApiKey::Produce).times(1));
    let ids = send_all(&mut w, (0..500).map(|i| ProducerRecord::new("m", format!("{i:0>200}"))));
    settle(&mut w, &ids, Duration::from_secs(10));
    let bad = send_all(&mut w, [ProducerRecord::new("m", "x").with_partition(9)]);
    settle(&mut w, &bad, Duration::from_secs(1));
    let m: BTreeMap<&str, f64> = w.client.producer_metrics(w.now).into_iter().collect();
    assert_eq!(m["record-send-total"], 500.0);
    assert!(m["record-retry-total"] >= 1.0, "{m:?}");
    assert_eq!(m["record-error-total"], 1.0);
    assert!(m["compression-rate-avg"] < 0.5, "zero-padded values compress: {}", m["compression-rate-avg"]);
    assert!(m["batch-size-avg"] > 0.0 && m["batch-size-max"] >= m["batch-size-avg"]);
    assert!(m["records-per-request-avg"] >= 1.0);
    assert!(m["request-latency-avg"] >= 0.0 && m["response-total"] >= m["request-total"] - 0.5);
    assert_eq!(m["buffer-available-bytes"], m["buffer-total-bytes"]);
    assert!(m["record-send-rate"] > 0.0);
}

/// A broker with no state for a producer id takes any sequence (Kafka does, since KIP-360).
/// When the first batch of a fresh producer id on a partition is refused with a retriable
/// error, the batches pipelined behind it must not be written before it: found by the
/// simulator (seed 11 of the first producer sweep), where the retried first batch then
/// came back OUT_OF_ORDER_SEQUENCE_NUMBER, the epoch was bumped, and it landed after them.
#[test]
fn a_refused_first_batch_is_not_overtaken_by_the_batches_behind_it() {
    let mut w = world(|p| {
        p.batch_size = 200;
        p.linger = Duration::from_millis(1);
    });
    w.cluster.create_topic("o", 1, 3);
    let warm = send_all(&mut w, [ProducerRecord::new("o", "warm").with_partition(0)]);
    settle(&mut w, &warm, Duration::from_secs(5));
    // A new topic: the producer's id has written nothing there yet.
    w.cluster.create_topic("fresh", 1, 3);
    w.cluster.inject(Fault::error(ErrorCode::NotEnoughReplicas).on_api(ApiKey::Produce).times(1));
    let ids = send_all(&mut w, (0..40).map(|i| ProducerRecord::new("fresh", format!("{i:0>20}"))));
    let out = settle(&mut w, &ids, Duration::from_secs(30));
    assert!(out.values().all(|r| r.is_ok()), "{out:?}");
    let values: Vec<usize> = log(&w, "fresh", 0)
        .iter()
        .map(|(_, v, _)| std::str::from_utf8(v.as_ref().unwrap()).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values, (0..40).collect::<Vec<_>>(), "each record once, in send order");
}

/// A batch whose earlier attempt may have been written (its answer was lost) and whose retry
/// is refused with OUT_OF_ORDER_SEQUENCE_NUMBER is retried as it is: renumbering it under a
/// bumped epoch would write it a second time. Found by the simulator (seed 6074), where the
/// refusal was injected on a retry after a lost answer.
#[test]
fn a_gap_refusal_of_a_batch_that_may_be_written_does_not_renumber_it() {
    let mut w = world(|p| p.delivery_timeout = Duration::from_secs(60));
    w.cluster.create_topic("g", 1, 3);
    let warm = send_all(&mut w, [ProducerRecord::new("g", "warm")]);
    settle(&mut w, &warm, Duration::from_secs(5));
    w.cluster.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce).times(1));
    let ids = send_all(&mut w, [ProducerRecord::new("g", "once")]);
    // The first attempt is written and its answer lost; the retry is refused as a gap.
    w.run_until(Duration::from_secs(1), |_| false);
    assert_eq!(log(&w, "g", 0).len(), 2);
    w.cluster.inject(Fault::error(ErrorCode::OutOfOrderSequenceNumber).on_api(ApiKey::Produce).times(1));
    let out = settle(&mut w, &ids, Duration::from_secs(120));
    assert_eq!(out[&ids[0]].as_ref().map(|m| m.offset), Ok(Some(1)), "{out:?}");
    let values: Vec<Bytes> = log(&w, "g", 0).into_iter().filter_map(|(_, v, _)| v).collect();
    assert_eq!(values, [Bytes::from("warm"), Bytes::from("once")], "stored once");
}

/// A batch that expired while its request was in flight may or may not be in the log. A
/// new batch for its partition waits for that request's end before it is numbered and sent,
/// as Java's producer does with an unresolved sequence: sent behind it on a connection that
/// answers nothing, it would come back as maybe written too, and its gap refusal would then
/// not be taken as the gap it is, leaving the partition stuck until the new batch's delivery
/// timeout. Found by the simulator (seed 143485).
#[test]
fn a_batch_behind_one_expired_in_flight_waits_for_its_request_to_end() {
    let mut w = warmed("u", Duration::from_secs(10), Duration::from_secs(12), |_| {});
    // Refused for 4 s, then swallowed: it expires in flight, seconds before its request
    // times out.
    w.cluster.inject(Fault::error(ErrorCode::NotEnoughReplicas).on_api(ApiKey::Produce).times(1_000));
    let sent = w.now;
    let expired = send_all(&mut w, [ProducerRecord::new("u", "expired")]);
    w.run_until(Duration::from_secs(4), |_| false);
    w.cluster.clear_faults();
    w.cluster.inject(Fault::new(FaultAction::Swallow).on_api(ApiKey::Produce));
    w.run_until(Duration::from_secs(13), |w| outcomes(w).contains_key(&expired[0]));
    let out = outcomes(&w);
    assert!(matches!(out[&expired[0]], Err(ProduceError::DeliveryTimeout { .. })), "{out:?}");
    let expired_after = w.now - sent;
    assert!(expired_after < Duration::from_secs(12) + Duration::from_millis(100), "{expired_after:?}");
    let ids = send_all(&mut w, [ProducerRecord::new("u", "after")]);
    let out = settle(&mut w, &ids, Duration::from_secs(30));
    assert!(out[&ids[0]].is_ok(), "{out:?}");
    let took = out[&ids[0]].as_ref().map(|_| w.now - sent).unwrap();
    // The swallowed request was sent by 5 s and ends at its 10 s timeout; then a gap
    // refusal, the epoch bump and the resend, a second or two. (Held behind a batch that
    // may be written, "after" failed at its own delivery timeout, 24 s.)
    assert!(took < Duration::from_secs(18), "acked {took:?} after the first send");
    let values: Vec<Bytes> = log(&w, "u", 0).into_iter().filter_map(|(_, v, _)| v).collect();
    assert_eq!(values, [Bytes::from("warm"), Bytes::from("after")]);
}

/// A batch refused outright (INVALID_RECORD) is not in the log, so the broker takes nothing
/// numbered after it. The last numbered, its sequence is given to the next batch, as Java's
/// producer adjusts sequences after a failed batch: no gap, no epoch bump. Before, the next
/// batch was numbered past the gap; when its first answer was lost it might be in the log,
/// so its gap refusals were not taken as a gap, and it failed at its delivery timeout.
/// Found by the simulator (seed 257207).
#[test]
fn the_sequence_of_a_batch_refused_outright_is_given_to_the_next() {
    let mut w = warmed("v", Duration::from_secs(5), Duration::from_secs(30), |_| {});
    w.cluster.inject(Fault::error(ErrorCode::InvalidRecord).on_api(ApiKey::Produce));
    let refused = send_all(&mut w, [ProducerRecord::new("v", "refused")]);
    let out = settle(&mut w, &refused, Duration::from_secs(5));
    assert!(matches!(out[&refused[0]], Err(ProduceError::Broker { error: ErrorCode::InvalidRecord, .. })), "{out:?}");
    w.cluster.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce));
    let sent = w.now;
    let ids = send_all(&mut w, [ProducerRecord::new("v", "next")]);
    let out = settle(&mut w, &ids, Duration::from_secs(60));
    assert!(out[&ids[0]].is_ok(), "{out:?}");
    // The lost answer costs a request timeout (5 s), then the retry is answered.
    assert!(w.now - sent < Duration::from_secs(7), "acked {:?} after it was sent", w.now - sent);
    let stored: Vec<(Option<Bytes>, i16, i32)> =
        w.cluster.partition_log("v", 0).unwrap().map(|r| (r.value, r.producer_epoch, r.sequence)).collect();
    assert_eq!(stored, [(Some(Bytes::from("warm")), 0, 0), (Some(Bytes::from("next")), 0, 1)]);
}

/// A batch refused outright with a later batch of its partition already numbered leaves a
/// certain gap: the producer bumps its epoch at once. The later batch, refused as past the
/// gap with its answer lost, might be in the log as far as its own attempts tell, yet it
/// cannot be, so it is renumbered under the new epoch and acked (before: retried as it was,
/// refused each time, until its delivery timeout).
#[test]
fn a_batch_refused_outright_with_one_numbered_behind_it_bumps_the_epoch_at_once() {
    let mut w = warmed("b", Duration::from_secs(5), Duration::from_secs(30), |p| p.batch_size = 100);
    w.cluster.inject(Fault::error(ErrorCode::InvalidRecord).on_api(ApiKey::Produce));
    w.cluster.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce).after(1));
    // One record per batch; both batches leave before the first answer.
    let ids = send_all(&mut w, [ProducerRecord::new("b", "a".repeat(60)), ProducerRecord::new("b", "b".repeat(60))]);
    let out = settle(&mut w, &ids, Duration::from_secs(60));
    assert!(matches!(out[&ids[0]], Err(ProduceError::Broker { error: ErrorCode::InvalidRecord, .. })), "{out:?}");
    assert!(out[&ids[1]].is_ok(), "{out:?}");
    let stored: Vec<((i64, i16), i32)> =
        w.cluster.partition_log("b", 0).unwrap().map(|r| ((r.producer_id, r.producer_epoch), r.sequence)).collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_ne!(stored[0].0, stored[1].0, "the second batch renumbered under a new epoch: {stored:?}");
    assert_eq!(stored[1].1, 0, "{stored:?}");
}

/// A batch refused outright behind one still pending leaves a gap that becomes certain only
/// once the earlier batch is acked. A third batch, numbered past the gap and refused as
/// such with its answer lost, cannot be in the log: once it is the first pending batch, its
/// refusal bumps the epoch and it is renumbered (before: retried as it was, refused each
/// time, until its delivery timeout).
#[test]
fn a_batch_numbered_past_a_certain_gap_is_renumbered_though_its_answer_was_lost() {
    let mut w = warmed("c", Duration::from_secs(5), Duration::from_secs(30), |p| p.batch_size = 100);
    // Three batches leave at once: the first is refused for now, the second for good, the
    // third (past the second's gap) is refused with its answer lost.
    w.cluster.inject(Fault::error(ErrorCode::NotEnoughReplicas).on_api(ApiKey::Produce));
    w.cluster.inject(Fault::error(ErrorCode::InvalidRecord).on_api(ApiKey::Produce));
    w.cluster.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce).after(2));
    let ids = send_all(&mut w, ["a", "b", "c"].map(|v| ProducerRecord::new("c", v.repeat(60))));
    let out = settle(&mut w, &ids, Duration::from_secs(60));
    assert!(out[&ids[0]].is_ok(), "{out:?}");
    assert!(matches!(out[&ids[1]], Err(ProduceError::Broker { error: ErrorCode::InvalidRecord, .. })), "{out:?}");
    assert!(out[&ids[2]].is_ok(), "{out:?}");
    let stored: Vec<(Option<Bytes>, (i64, i16))> =
        w.cluster.partition_log("c", 0).unwrap().map(|r| (r.value, (r.producer_id, r.producer_epoch))).collect();
    let values: Vec<&str> = stored.iter().map(|(v, _)| std::str::from_utf8(v.as_ref().unwrap()).unwrap()).collect();
    assert_eq!(values, ["warm".to_string(), "a".repeat(60), "c".repeat(60)], "each once");
    assert_ne!(stored[0].1, stored[2].1, "the third renumbered under a new epoch");
}

/// An acks=all batch waits at the leader for its followers; when leadership moves meanwhile,
/// the answer is NOT_LEADER_OR_FOLLOWER although the batch was appended, and the new leader
/// may hold it. Such a batch may be in the log: a gap refusal of its retry must not renumber
/// it. Found by the simulator (seed 6331, a partition taken offline under a parked produce).
#[test]
fn a_batch_answered_not_leader_after_its_append_is_never_renumbered() {
    let mut p = ProducerConfig::default();
    p.delivery_timeout = Duration::from_secs(60);
    let cluster = FakeClusterConfig {
        auto_create_topics: false,
        replication: Replication::lagging(Duration::from_millis(10)),
        ..FakeClusterConfig::default()
    };
    let mut w = World::new(cluster, |c: Config| c.with_producer(p));
    w.cluster.create_topic("l", 1, 3);
    let warm = send_all(&mut w, [ProducerRecord::new("l", "warm")]);
    settle(&mut w, &warm, Duration::from_secs(5));
    let leader = w.cluster.leader("l", 0).unwrap();
    let followers: Vec<i32> = w.cluster.broker_ids().into_iter().filter(|b| *b != leader).collect();
    // One follower copies, the other is stuck: the produce waits for the high watermark.
    w.cluster.pause_replication(followers[1]);
    let ids = send_all(&mut w, [ProducerRecord::new("l", "once")]);
    let first = followers[0];
    let copied =
        w.run_until(Duration::from_secs(1), |w| w.cluster.replica_log_end_offsets("l", 0).unwrap()[&first] == 2);
    assert!(copied, "copied by the first follower");
    assert!(!outcomes(&w).contains_key(&ids[0]), "still waiting for the stuck follower");
    // Leadership moves to the follower that has the batch; the retry is refused as a gap.
    w.cluster.inject(Fault::error(ErrorCode::OutOfOrderSequenceNumber).on_api(ApiKey::Produce).times(1));
    w.cluster.move_leader("l", 0, followers[0]).unwrap();
    w.cluster.resume_replication(followers[1]);
    let out = settle(&mut w, &ids, Duration::from_secs(120));
    assert_eq!(out[&ids[0]].as_ref().map(|m| m.offset), Ok(Some(1)), "{out:?}");
    let values: Vec<Bytes> = log(&w, "l", 0).into_iter().filter_map(|(_, v, _)| v).collect();
    assert_eq!(values, [Bytes::from("warm"), Bytes::from("once")], "stored once");
}

/// Records batched for a partition whose leader is unknown make the producer look at
/// metadata again, as Java's does, instead of waiting for `metadata.max.age.ms` (5 min, past
/// the 2 min delivery timeout). Found live: a broker that had not yet applied a new topic
/// answered metadata without it, which wiped the topic's leaders from the client's view.
#[test]
fn batches_without_a_leader_refresh_metadata_until_they_have_one() {
    let mut w = world(|p| p.linger = Duration::from_millis(500));
    w.cluster.create_topic("t", 1, 2);
    let ids = send_all(&mut w, (0..10).map(|i| ProducerRecord::new("t", format!("v{i}")).with_partition(0)));
    assert!(w.run_until(Duration::from_millis(100), |w| w.client.metadata().topics.contains_key(&"t".into())));
    // One answer without the topic, while the batch lingers.
    w.cluster.inject(Fault::error(ErrorCode::UnknownTopicOrPartition).on_api(ApiKey::Metadata).on_topic("t").times(1));
    w.client.refresh_metadata(w.now, Some(vec!["t".into()]));
    w.pump();
    let t = "t".into();
    assert!(w.client.metadata().topics.get(&t).is_none_or(|t| t.partitions.is_empty()), "the view lost the topic");
    let start = w.now;
    let out = settle(&mut w, &ids, Duration::from_secs(150));
    assert!(out.values().all(|r| r.is_ok()), "{out:?}");
    assert!(w.now - start < Duration::from_secs(5), "delivered {:?} later", w.now - start);
}

/// Runs every piece of work the client handed out so far, the newest first (a driver's
/// threads may finish them in any order); returns how many.
fn finish_work_newest_first(w: &mut World) -> usize {
    let mut n = 0;
    loop {
        let work: Vec<_> = std::iter::from_fn(|| w.client.poll_work()).collect();
        if work.is_empty() {
            return n;
        }
        n += work.len();
        for piece in work.into_iter().rev() {
            let done = piece.run();
            w.client.handle_work_done(w.now, done);
        }
        w.pump();
    }
}

#[test]
fn offloaded_compression_holds_batches_back_and_keeps_order_and_idempotence() {
    for compression in [Compression::gzip(), Compression::zstd()] {
        let mut w = world(|p| {
            p.compression = compression;
            p.batch_size = 1_000;
        });
        w.client.offload_work(true);
        w.cluster.create_topic("o", 2, 3);
        w.cluster.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce).times(3));
        let value = |i: u32| format!("{i:0>60}");
        let ids =
            send_all(&mut w, (0..1500).map(|i| ProducerRecord::new("o", value(i)).with_key(format!("{}", i % 2))));
        // Nothing leaves while its compression is out: every batch waits, linger or not.
        let until = w.now + Duration::from_millis(200);
        while [w.client.poll_timeout(), w.cluster.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .is_some_and(|t| t <= until)
        {
            w.step();
        }
        assert!((0..2).all(|p| log(&w, "o", p).is_empty()), "{compression:?}: a batch left uncompressed");
        let mut handed_out = 0;
        let end = w.now + Duration::from_secs(120);
        loop {
            handed_out += finish_work_newest_first(&mut w);
            let out = outcomes(&w);
            if ids.iter().all(|id| out.contains_key(id)) || w.now > end {
                break;
            }
            w.step();
        }
        let out = outcomes(&w);
        assert_eq!(out.len(), ids.len(), "{compression:?}: every record has its outcome");
        assert!(out.values().all(|r| r.is_ok()), "{compression:?}: {:?}", out.values().find(|r| r.is_err()));
        assert!(handed_out > 10, "{compression:?}: batches were compressed as work ({handed_out})");
        for p in 0..2 {
            let values: Vec<Bytes> = log(&w, "o", p).into_iter().filter_map(|(_, v, _)| v).collect();
            let expected: Vec<Bytes> = (0..1500).filter(|i| i % 2 == p as u32).map(|i| value(i).into()).collect();
            assert_eq!(values, expected, "{compression:?}: partition {p} holds each record once, in send order");
        }
    }
}

#[test]
fn a_batch_whose_work_never_returns_times_out_and_a_late_result_is_ignored() {
    let mut w = world(|p| {
        p.compression = Compression::zstd();
        p.delivery_timeout = Duration::from_secs(40);
    });
    w.client.offload_work(true);
    w.cluster.create_topic("late", 1, 1);
    let ids = send_all(&mut w, (0..20).map(|i| ProducerRecord::new("late", format!("{i}"))));
    w.run_until(Duration::from_millis(100), |w| w.client.producer_buffered() == 0);
    let held: Vec<_> = std::iter::from_fn(|| w.client.poll_work()).collect();
    assert_eq!(held.len(), 1, "the lingered batch went out as work");
    let out = settle(&mut w, &ids, Duration::from_secs(60));
    assert!(out.values().all(|r| matches!(r, Err(ProduceError::DeliveryTimeout { .. }))), "{:?}", out.values().next());
    for piece in held {
        let done = piece.run();
        w.client.handle_work_done(w.now, done);
    }
    w.pump();
    assert_eq!(outcomes(&w).len(), 20, "no second outcome");
    assert!(log(&w, "late", 0).is_empty());
    assert_eq!(w.client.producer_buffered(), 0);
}

/// A dispatcher producing with `compression` (batches of `batch_size`) to a fresh
/// `partitions`-partition topic, handing its jobs to the returned list, at most `parallel`
/// at a time.
fn offloading_dispatcher(
    compression: Compression,
    batch_size: usize,
    topic: &str,
    partitions: i32,
    parallel: usize,
) -> (DispatcherWorld, Arc<Mutex<Vec<sansa::driver::Job>>>) {
    let cluster = FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() };
    let mut w = DispatcherWorld::new(cluster, |c| {
        let mut p = ProducerConfig::default();
        p.compression = compression;
        p.batch_size = batch_size;
        c.with_producer(p)
    });
    w.cluster.create_topic(topic, partitions, 1);
    let jobs: Arc<Mutex<Vec<sansa::driver::Job>>> = Arc::default();
    let handed = Arc::clone(&jobs);
    w.dispatcher.offload_with(parallel, move |job| handed.lock().unwrap().push(job));
    (w, jobs)
}

/// Sends `record` through the world's handle; its callback counts it in `acked`, and any
/// failure fails the test.
fn send_counted(w: &DispatcherWorld, record: ProducerRecord, acked: &Arc<AtomicUsize>) {
    let acked = Arc::clone(acked);
    let callback = move |r: Result<RecordMetadata, ProduceError>| match r {
        Ok(_) => drop(acked.fetch_add(1, Ordering::SeqCst)),
        Err(e) => panic!("{e:?}"),
    };
    w.handle.as_ref().expect("the handle is kept").send_with_callback_blocking(record, callback).expect("buffered");
}

#[test]
fn a_dispatcher_hands_out_at_most_its_jobs_and_takes_their_results_from_its_intake() {
    let (mut w, jobs) = offloading_dispatcher(Compression::zstd(), 1_000, "j", 2, 2);
    let acked = Arc::new(AtomicUsize::new(0));
    let value = |i: u32| format!("{i:0>60}");
    for i in 0..600u32 {
        send_counted(&w, ProducerRecord::new("j", value(i)).with_key(format!("{}", i % 2)), &acked);
    }
    let (mut most, mut finished) = (0, 0);
    let end = w.now + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < 600 && w.now < end {
        w.pump();
        let job = {
            let mut jobs = jobs.lock().unwrap();
            most = most.max(jobs.len());
            jobs.pop()
        };
        // The newest first; the third is dropped unrun, as an executor shutting down would.
        if let Some(job) = job {
            finished += 1;
            if finished == 3 {
                drop(job);
            } else {
                job.run();
            }
        } else if !w.step() {
            break;
        }
    }
    assert_eq!(acked.load(Ordering::SeqCst), 600, "every record delivered");
    assert_eq!(most, 2, "two jobs out at once, never more");
    assert!(finished > 10, "batches went out as jobs ({finished})");
    for p in 0..2 {
        let values: Vec<Bytes> = log_of(&w.cluster, "j", p).into_iter().filter_map(|(_, v, _)| v).collect();
        let expected: Vec<Bytes> = (0..600).filter(|i| i % 2 == p as u32).map(|i| value(i).into()).collect();
        assert_eq!(values, expected, "partition {p} in send order, once each");
    }
}

#[test]
fn with_every_handle_gone_a_dispatcher_compresses_on_its_own_thread() {
    let (mut w, jobs) = offloading_dispatcher(Compression::gzip(), 16_384, "g", 1, 1);
    let acked = Arc::new(AtomicUsize::new(0));
    for i in 0..50u32 {
        send_counted(&w, ProducerRecord::new("g", format!("{i}")), &acked);
    }
    // The application is gone before the driver saw its records: closing sends them, and no
    // job could bring its result back through the closed intake.
    w.handle = None;
    let end = w.now + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < 50 && w.now < end {
        w.pump();
        if !w.step() {
            break;
        }
    }
    assert_eq!(acked.load(Ordering::SeqCst), 50);
    assert!(jobs.lock().unwrap().is_empty(), "nothing handed out once the intake closed");
    assert_eq!(log_of(&w.cluster, "g", 0).len(), 50);
}

#[test]
fn a_dispatcher_runs_its_work_on_threads_of_the_adapters_or_without_them_on_its_own() {
    for with_thread in [true, false] {
        let cluster = FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() };
        let mut w = DispatcherWorld::new(cluster, |c| {
            let mut p = ProducerConfig::default();
            p.compression = Compression::zstd();
            p.batch_size = 1_000;
            c.with_producer(p)
        });
        w.cluster.create_topic("w", 2, 1);
        // At most two threads; without them, as when an adapter cannot start one.
        let threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
        let started = Arc::clone(&threads);
        w.dispatcher.offload_to_threads(2, move |queue| {
            if with_thread {
                started.lock().unwrap().push(std::thread::spawn(move || queue.run()));
            }
            with_thread
        });
        w.pump();
        assert!(threads.lock().unwrap().is_empty(), "no thread before there is work");
        let acked = Arc::new(AtomicUsize::new(0));
        let value = |i: u32| format!("{i:0>60}");
        for i in 0..300u32 {
            send_counted(&w, ProducerRecord::new("w", value(i)).with_key(format!("{}", i % 2)), &acked);
        }
        // The thread's results arrive in real time: the world's clock moves on only after
        // 20 ms of real time without a delivery, so no batch times out while compressed.
        let end = std::time::Instant::now() + Duration::from_secs(30);
        let mut idle = 0;
        while acked.load(Ordering::SeqCst) < 300 && std::time::Instant::now() < end {
            let before = acked.load(Ordering::SeqCst);
            w.pump();
            if acked.load(Ordering::SeqCst) != before {
                idle = 0;
            } else if idle < 20 {
                idle += 1;
                std::thread::sleep(Duration::from_millis(1));
            } else {
                idle = 0;
                w.step();
            }
        }
        assert_eq!(acked.load(Ordering::SeqCst), 300, "every record delivered (thread: {with_thread})");
        for p in 0..2 {
            let values: Vec<Bytes> = log_of(&w.cluster, "w", p).into_iter().filter_map(|(_, v, _)| v).collect();
            let expected: Vec<Bytes> = (0..300).filter(|i| i % 2 == p as u32).map(|i| value(i).into()).collect();
            assert_eq!(values, expected, "partition {p} in send order, once each (thread: {with_thread})");
        }
        let started = threads.lock().unwrap().len();
        assert!(!with_thread || (1..=2).contains(&started), "{started} threads");
        drop(w);
        for thread in threads.lock().unwrap().drain(..) {
            thread.join().expect("the thread ends once the dispatcher is gone");
        }
    }
}

#[test]
fn a_close_right_after_the_sends_still_looks_the_topic_up_and_delivers_them() {
    let mut w = world(|_| {});
    w.cluster.create_topic("c", 2, 1);
    let ids: Vec<SendId> =
        (0..10).map(|i| w.client.send(w.now, ProducerRecord::new("c", format!("{i}"))).expect("taken")).collect();
    w.client.close(w.now);
    let out = settle(&mut w, &ids, Duration::from_secs(30));
    assert!(out.values().all(|r| r.is_ok()), "{:?}", out.values().find(|r| r.is_err()));
    assert!(w.run_until(Duration::from_secs(30), |w| w.client.is_closed()), "the close completes");
}
