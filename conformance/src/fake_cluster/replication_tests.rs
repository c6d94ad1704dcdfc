//! Answers lost after the work is done, and lagging replication (high watermark, ISR,
//! acks=all, truncation on failover, unclean elections, OffsetForLeaderEpoch), through real
//! frames on a virtual clock.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_response, encode_request, FrameDecoder};
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::fetch::response::PartitionData;
use sansa::protocol::messages::list_offsets::request::{ListOffsetsPartition, ListOffsetsTopic};
use sansa::protocol::messages::offset_for_leader_epoch::request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use sansa::protocol::messages::offset_for_leader_epoch::response::EpochEndOffset;
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::produce::response::PartitionProduceResponse;
use sansa::protocol::messages::*;
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder};
use sansa::protocol::{ApiKey, ErrorCode, RequestBody, ResponseBody, TopicName};

use super::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput, Fault, FaultAction, Replication};

const DELAY: Duration = Duration::from_millis(100);
const LAG_MAX: Duration = Duration::from_secs(30);

struct H {
    c: FakeCluster,
    now: Instant,
    next_conn: u64,
}

impl H {
    fn new(replication: Replication) -> H {
        let c = FakeCluster::new(FakeClusterConfig {
            auto_create_topics: false,
            replication,
            ..FakeClusterConfig::default()
        });
        H { c, now: Instant::now(), next_conn: 0 }
    }

    fn lagging() -> H {
        H::new(Replication::lagging(DELAY))
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.handle_timeout(self.now);
    }

    fn connect(&mut self, broker: i32) -> FakeConnId {
        self.next_conn += 1;
        let conn = FakeConnId(self.next_conn);
        self.c.handle_connect(self.now, broker, conn).unwrap();
        conn
    }

    fn send(&mut self, conn: FakeConnId, version: i16, body: impl Into<RequestBody>) {
        let mut buf = BytesMut::new();
        encode_request(&mut buf, 3, Some("t"), version, &body.into()).unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        self.c.handle_frame(self.now, conn, frame).unwrap();
    }

    /// What the cluster put out for `conn`: decoded answers, `Err(())` for a close.
    fn outputs(&mut self, conn: FakeConnId, key: ApiKey, version: i16) -> Vec<Result<ResponseBody, ()>> {
        let mut out = Vec::new();
        while let Some(o) = self.c.poll_output() {
            match o {
                FakeOutput::Send { conn: c, bytes } if c == conn => out.push(Ok(decode(bytes, key, version))),
                FakeOutput::Close { conn: c } if c == conn => out.push(Err(())),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    fn call(&mut self, broker: i32, version: i16, body: impl Into<RequestBody>) -> ResponseBody {
        let body = body.into();
        let key = body.api_key();
        let mut buf = BytesMut::new();
        encode_request(&mut buf, 7, Some("t"), version, &body).unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        let answer = self.c.answer(self.now, broker, frame).unwrap().expect("a response");
        decode(answer, key, version)
    }

    fn produce(&mut self, topic: &str, acks: i16, records: Bytes) -> PartitionProduceResponse {
        let leader = self.leader(topic);
        let ResponseBody::Produce(r) = self.call(leader, 9, produce_req(topic, acks, 1000, records)) else { panic!() };
        r.responses[0].partition_responses[0].clone()
    }

    /// Sends a produce on a fresh connection to the leader; returns the connection.
    fn produce_on_conn(&mut self, topic: &str, acks: i16, timeout_ms: i32, records: Bytes) -> FakeConnId {
        let leader = self.leader(topic);
        let conn = self.connect(leader);
        self.send(conn, 9, produce_req(topic, acks, timeout_ms, records));
        conn
    }

    fn produce_answers(&mut self, conn: FakeConnId) -> Vec<PartitionProduceResponse> {
        self.outputs(conn, ApiKey::Produce, 9)
            .into_iter()
            .map(|o| match o {
                Ok(ResponseBody::Produce(r)) => r.responses[0].partition_responses[0].clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn fetch(&mut self, topic: &str, offset: i64) -> PartitionData {
        let leader = self.leader(topic);
        let req = FetchRequest::default().with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
            .with_topic(TopicName::from(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
        let ResponseBody::Fetch(r) = self.call(leader, 12, req) else { panic!() };
        r.responses[0].partitions[0].clone()
    }

    fn latest_offset(&mut self, topic: &str) -> i64 {
        let leader = self.leader(topic);
        let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName::from(topic))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
        let ResponseBody::ListOffsets(r) = self.call(leader, 9, req) else { panic!() };
        r.topics[0].partitions[0].offset
    }

    fn epoch_end(&mut self, broker: i32, topic: &str, current: i32, epoch: i32) -> EpochEndOffset {
        let req = OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName::from(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)])]);
        let ResponseBody::OffsetForLeaderEpoch(r) = self.call(broker, 4, req) else { panic!() };
        r.topics[0].partitions[0].clone()
    }

    fn leader(&self, topic: &str) -> i32 {
        self.c.leader(topic, 0).unwrap()
    }

    fn followers(&self, topic: &str) -> Vec<i32> {
        let leader = self.leader(topic);
        self.c.replica_log_end_offsets(topic, 0).unwrap().into_keys().filter(|r| *r != leader).collect()
    }

    fn log_values(&self, topic: &str) -> Vec<(i64, String)> {
        self.c
            .partition_log(topic, 0)
            .unwrap()
            .map(|r| (r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()))
            .collect()
    }
}

fn decode(bytes: Bytes, key: ApiKey, version: i16) -> ResponseBody {
    let mut answer = BytesMut::from(&bytes[..]);
    let frame = FrameDecoder::default().decode(&mut answer).unwrap().unwrap();
    decode_response(frame, key, version).unwrap().1
}

fn batch_with(params: BatchParams, values: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    let mut enc = RecordBatchEncoder::new();
    let mut b = enc.begin(&mut out, params).unwrap();
    for (i, v) in values.iter().enumerate() {
        b.append(1_000 + i as i64, Some(b"k"), Some(v.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap();
    out.freeze()
}

fn batch(values: &[&str]) -> Bytes {
    batch_with(BatchParams::new(), values)
}

fn produce_req(topic: &str, acks: i16, timeout_ms: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName::from(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))]),
    ])
}

/// Values of the records in a fetched partition.
fn fetched(p: &PartitionData) -> Vec<String> {
    decode_batches(p.records.clone().unwrap_or_default(), &DecodeOptions::new())
        .map(|b| b.unwrap())
        .flat_map(|b| b.into_records())
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

// ---- Answers lost after the work ----

#[test]
fn lose_response_appends_and_an_idempotent_retry_gets_the_original_offset() {
    let mut h = H::new(Replication::Instant);
    h.c.create_topic("t", 1, 3);
    h.c.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce));
    let idem = batch_with(BatchParams::new().producer(4000, 0, 0), &["a", "b"]);
    let conn = h.produce_on_conn("t", -1, 1000, idem.clone());
    assert!(h.produce_answers(conn).is_empty(), "the answer is lost");
    assert!(h.c.is_connected(conn), "the connection stays open");
    h.send(conn, 9, produce_req("t", -1, 1000, batch(&["behind"])));
    assert!(h.produce_answers(conn).is_empty(), "nothing is answered after the lost answer");
    assert_eq!(h.log_values("t"), vec![(0, "a".into()), (1, "b".into())], "the lost produce was applied");

    // The client times out, reconnects and retries the same batch: a duplicate.
    h.c.handle_disconnect(conn);
    let retry = h.produce("t", -1, idem);
    assert_eq!((retry.error_code, retry.base_offset), (ErrorCode::None, 0));
    assert_eq!(h.log_values("t").len(), 2, "not appended twice");
    let stored: Vec<(i64, i16, i32)> =
        h.c.partition_log("t", 0).unwrap().map(|r| (r.producer_id, r.producer_epoch, r.sequence)).collect();
    assert_eq!(stored, vec![(4000, 0, 0), (4000, 0, 1)]);
}

#[test]
fn lose_response_then_a_plain_retry_appends_a_duplicate() {
    let mut h = H::new(Replication::Instant);
    h.c.create_topic("t", 1, 3);
    h.c.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce));
    let conn = h.produce_on_conn("t", 1, 1000, batch(&["once"]));
    assert!(h.produce_answers(conn).is_empty());
    h.c.handle_disconnect(conn);
    let retry = h.produce("t", 1, batch(&["once"]));
    assert_eq!(retry.base_offset, 1);
    assert_eq!(h.log_values("t"), vec![(0, "once".into()), (1, "once".into())]);
    assert!(h.c.partition_log("t", 0).unwrap().all(|r| r.producer_id == -1 && r.sequence == -1));
}

#[test]
fn apply_then_disconnect_closes_after_appending() {
    let mut h = H::new(Replication::Instant);
    h.c.create_topic("t", 1, 3);
    h.c.inject(Fault::new(FaultAction::ApplyThenDisconnect).on_api(ApiKey::Produce));
    let conn = h.produce_on_conn("t", 1, 1000, batch(&["x"]));
    assert_eq!(h.outputs(conn, ApiKey::Produce, 9), vec![Err(())]);
    assert!(!h.c.is_connected(conn));
    assert_eq!(h.log_values("t"), vec![(0, "x".into())]);
}

#[test]
fn lose_response_on_a_waiting_acks_all_produce_drops_the_late_answer() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    h.c.inject(Fault::new(FaultAction::LoseResponse).on_api(ApiKey::Produce));
    let conn = h.produce_on_conn("t", -1, 5000, batch(&["x"]));
    h.advance(DELAY);
    assert_eq!(h.c.high_watermark("t", 0), Some(1), "replicated");
    assert!(h.produce_answers(conn).is_empty(), "the answer due now is lost");
    assert!(h.c.is_connected(conn));
}

// ---- Lagging replication ----

#[test]
fn instant_replication_keeps_everything_in_sync() {
    let mut h = H::new(Replication::Instant);
    h.c.create_topic("t", 1, 3);
    h.produce("t", 1, batch(&["a"]));
    assert_eq!(h.c.high_watermark("t", 0), Some(1));
    assert_eq!(h.c.isr("t", 0).unwrap().len(), 3);
    assert!(h.c.replica_log_end_offsets("t", 0).unwrap().values().all(|leo| *leo == 1));
    assert_eq!(h.c.poll_timeout(), None, "no replication timers");
}

#[test]
fn lagging_followers_hold_the_high_watermark_back_from_consumers() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let r = h.produce("t", 1, batch(&["a", "b"]));
    assert_eq!((r.error_code, r.base_offset), (ErrorCode::None, 0), "acks=1 answers after the leader append");
    assert_eq!(h.c.log_end_offset("t", 0), Some(2));
    assert_eq!(h.c.high_watermark("t", 0), Some(0));
    let p = h.fetch("t", 0);
    assert_eq!((p.error_code, p.high_watermark), (ErrorCode::None, 0));
    assert!(fetched(&p).is_empty(), "nothing above the high watermark");
    assert_eq!(h.latest_offset("t"), 0);
    assert!(h.c.partition_log("t", 0).unwrap().all(|r| !r.committed));
    assert_eq!(h.c.poll_timeout(), Some(h.now + DELAY));

    h.advance(DELAY - Duration::from_millis(1));
    assert_eq!(h.c.high_watermark("t", 0), Some(0));
    h.advance(Duration::from_millis(1));
    assert_eq!(h.c.high_watermark("t", 0), Some(2));
    assert!(h.c.replica_log_end_offsets("t", 0).unwrap().values().all(|leo| *leo == 2));
    assert_eq!(fetched(&h.fetch("t", 0)), vec!["a", "b"]);
    assert_eq!(h.latest_offset("t"), 2);
}

#[test]
fn a_waiting_fetch_is_answered_when_the_high_watermark_moves() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let leader = h.leader("t");
    let conn = h.connect(leader);
    let req =
        FetchRequest::default().with_max_bytes(1 << 20).with_min_bytes(1).with_max_wait_ms(5000).with_topics(vec![
            FetchTopic::default().with_topic(TopicName::from("t")).with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)]),
        ]);
    h.send(conn, 12, req);
    h.produce("t", 1, batch(&["a"]));
    assert!(h.outputs(conn, ApiKey::Fetch, 12).is_empty(), "the append alone is not readable");
    h.advance(DELAY);
    let out = h.outputs(conn, ApiKey::Fetch, 12);
    let Some(Ok(ResponseBody::Fetch(f))) = out.first() else { panic!("{out:?}") };
    assert_eq!(fetched(&f.responses[0].partitions[0]), vec!["a"]);
}

#[test]
fn acks_all_waits_for_the_isr_and_times_out_without_it() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let conn = h.produce_on_conn("t", -1, 1000, batch(&["a"]));
    assert!(h.produce_answers(conn).is_empty(), "parked until the followers copy");
    h.advance(DELAY);
    let answers = h.produce_answers(conn);
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].error_code, answers[0].base_offset), (ErrorCode::None, 0));

    // With every follower stuck, the ISR shrinks only after lag_time_max: the request times
    // out first, with its base offset (the records are in the leader's log).
    for f in h.followers("t") {
        h.c.pause_replication(f);
    }
    let conn = h.produce_on_conn("t", -1, 1000, batch(&["b"]));
    h.advance(Duration::from_millis(999));
    assert!(h.produce_answers(conn).is_empty());
    h.advance(Duration::from_millis(1));
    let answers = h.produce_answers(conn);
    assert_eq!((answers[0].error_code, answers[0].base_offset), (ErrorCode::RequestTimedOut, 1));
}

#[test]
fn acks_all_fails_when_leadership_moves_while_waiting() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let follower = h.followers("t")[0];
    let conn = h.produce_on_conn("t", -1, 5000, batch(&["a"]));
    h.c.move_leader("t", 0, follower).unwrap();
    let answers = h.produce_answers(conn);
    assert_eq!(answers[0].error_code, ErrorCode::NotLeaderOrFollower);
}

#[test]
fn isr_shrinks_after_lag_time_max_and_grows_back_when_caught_up() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let leader = h.leader("t");
    let (stuck, ok) = (h.followers("t")[0], h.followers("t")[1]);
    h.c.pause_replication(stuck);
    h.produce("t", 1, batch(&["a"]));
    h.advance(DELAY);
    assert_eq!(h.c.high_watermark("t", 0), Some(0), "the stuck follower is still in the ISR");
    assert_eq!(h.c.isr("t", 0).unwrap().len(), 3);
    h.advance(LAG_MAX - DELAY - Duration::from_millis(1));
    assert_eq!(h.c.isr("t", 0).unwrap().len(), 3);
    h.advance(Duration::from_millis(1));
    let mut isr = h.c.isr("t", 0).unwrap();
    isr.sort_unstable();
    let mut want = vec![leader, ok];
    want.sort_unstable();
    assert_eq!(isr, want, "the stuck follower left the ISR");
    assert_eq!(h.c.high_watermark("t", 0), Some(1), "and the high watermark moved on without it");

    // min.insync.replicas counts the real ISR.
    h.c.topics.get_mut("t").unwrap().configs.insert("min.insync.replicas".into(), "3".into());
    assert_eq!(h.produce("t", -1, batch(&["b"])).error_code, ErrorCode::NotEnoughReplicas);

    h.c.resume_replication(stuck);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.c.isr("t", 0).unwrap().len(), 3, "caught up, it rejoins");
    assert_eq!(h.c.replica_log_end_offsets("t", 0).unwrap()[&stuck], 1);
}

#[test]
fn acks_one_records_are_lost_on_failover_and_offset_for_leader_epoch_shows_the_truncation() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let old = h.leader("t");
    let conn = h.produce_on_conn("t", -1, 1000, batch(&["safe"]));
    h.advance(DELAY);
    assert_eq!(h.produce_answers(conn)[0].error_code, ErrorCode::None);
    let r = h.produce("t", 1, batch(&["doomed1", "doomed2"]));
    assert_eq!((r.error_code, r.base_offset), (ErrorCode::None, 1), "acked by the leader alone");
    assert_eq!(h.epoch_end(old, "t", 0, 0).end_offset, 3, "the old leader's epoch 0 ends at its log end");

    h.c.stop_broker(old);
    let new = h.leader("t");
    assert!(new != -1 && new != old, "a clean election among the ISR");
    assert_eq!(h.c.leader_epoch("t", 0), Some(1));
    assert_eq!(h.log_values("t"), vec![(0, "safe".into())], "the unreplicated records are gone");
    assert_eq!(h.c.log_end_offset("t", 0), Some(1));
    assert!(!h.c.isr("t", 0).unwrap().contains(&old));

    // A consumer that had read to offset 3 in epoch 0 asks where epoch 0 ends: at 1, so it
    // must truncate its position (KIP-320).
    let e = h.epoch_end(new, "t", 1, 0);
    assert_eq!((e.error_code, e.leader_epoch, e.end_offset), (ErrorCode::None, 0, 1));
    let p = h.fetch("t", 3);
    assert_eq!(p.error_code, ErrorCode::OffsetOutOfRange);

    // New records land in epoch 1 at the truncated offsets; the old leader comes back
    // truncated and catches up.
    assert_eq!(h.produce("t", 1, batch(&["new"])).base_offset, 1);
    h.c.start_broker(old);
    assert_eq!(h.leader("t"), new, "no preferred-leader election");
    assert!(h.c.replica_log_end_offsets("t", 0).unwrap()[&old] <= 1);
    h.advance(DELAY);
    assert_eq!(h.c.replica_log_end_offsets("t", 0).unwrap()[&old], 2);
    assert!(h.c.isr("t", 0).unwrap().contains(&old));
    let epochs: Vec<i32> = h.c.partition_log("t", 0).unwrap().map(|r| r.leader_epoch).collect();
    assert_eq!(epochs, vec![0, 1]);
}

#[test]
fn idempotent_state_is_rebuilt_after_truncation() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let old = h.leader("t");
    let first = batch_with(BatchParams::new().producer(9, 0, 0), &["s0"]);
    h.produce("t", 1, first);
    h.advance(DELAY);
    let lost = batch_with(BatchParams::new().producer(9, 0, 1), &["s1"]);
    assert_eq!(h.produce("t", 1, lost.clone()).base_offset, 1);
    h.c.stop_broker(old);
    // The retry of the truncated batch is appended again rather than taken for a duplicate.
    let retry = h.produce("t", 1, lost);
    assert_eq!((retry.error_code, retry.base_offset), (ErrorCode::None, 1));
    assert_eq!(h.log_values("t"), vec![(0, "s0".into()), (1, "s1".into())]);
}

/// Stops the leader of a partition whose only follower is out of the ISR; returns the
/// leader afterwards and what the log holds.
fn fail_over_with_a_stale_follower(unclean: Option<&str>, cluster_wide: bool) -> (i32, Vec<(i64, String)>, i32) {
    let mut h = H::new(Replication::Lagging { delay: DELAY, lag_time_max: LAG_MAX, unclean_election: cluster_wide });
    h.c.create_topic("t", 1, 2);
    if let Some(v) = unclean {
        h.c.topics.get_mut("t").unwrap().configs.insert("unclean.leader.election.enable".into(), v.into());
    }
    let old = h.leader("t");
    let follower = h.followers("t")[0];
    h.produce("t", 1, batch(&["a"]));
    h.advance(DELAY);
    h.c.pause_replication(follower);
    h.produce("t", 1, batch(&["b"]));
    h.advance(LAG_MAX);
    assert_eq!(h.c.isr("t", 0).unwrap(), vec![old]);
    h.c.stop_broker(old);
    let leader = h.c.leader("t", 0).unwrap();
    (leader, h.log_values("t"), old)
}

#[test]
fn a_clean_election_keeps_the_partition_offline_and_an_unclean_one_loses_more() {
    let (leader, log, old) = fail_over_with_a_stale_follower(None, false);
    assert_eq!(leader, -1, "no in-sync replica is live");
    assert_eq!(log.len(), 2, "nothing truncated while offline");
    let _ = old;

    let (leader, log, old) = fail_over_with_a_stale_follower(Some("true"), false);
    assert!(leader != -1 && leader != old, "the stale follower leads");
    assert_eq!(log, vec![(0, "a".to_string())], "records in the old ISR's high watermark are lost too");

    let (leader, _, _) = fail_over_with_a_stale_follower(None, true);
    assert!(leader != -1, "cluster-wide setting");
    let (leader, _, _) = fail_over_with_a_stale_follower(Some("false"), true);
    assert_eq!(leader, -1, "the topic config overrides the cluster-wide setting");
}

#[test]
fn the_last_isr_member_comes_back_as_leader_with_its_log() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 2);
    let old = h.leader("t");
    let follower = h.followers("t")[0];
    h.c.pause_replication(follower);
    h.produce("t", 1, batch(&["a"]));
    h.advance(LAG_MAX);
    h.c.stop_broker(old);
    assert_eq!(h.leader("t"), -1);
    assert_eq!(h.c.move_leader("t", 0, follower).map_err(|_| ()), Err(()), "not in sync");
    h.c.start_broker(old);
    assert_eq!(h.leader("t"), old);
    assert_eq!(h.log_values("t"), vec![(0, "a".into())]);
    assert_eq!(h.c.high_watermark("t", 0), Some(1));
}

/// A partition created while all its replicas are down is offline, and led by the first of
/// them to come back: its ISR is never empty (found by the simulator, seed 139457, where such
/// a partition stayed offline for good and no client could produce to it).
#[test]
fn a_partition_created_with_every_replica_down_is_led_by_the_first_back() {
    let mut h = H::lagging();
    let ids = h.c.broker_ids();
    for b in &ids {
        h.c.stop_broker(*b);
    }
    h.c.create_topic("t", 1, 2);
    assert_eq!(h.leader("t"), -1);
    let replicas = h.c.isr("t", 0).unwrap();
    assert_eq!(replicas.len(), 2, "every replica in sync");
    let replica = replicas[1];
    h.c.start_broker(replica);
    assert_eq!(h.leader("t"), replica);
    h.produce("t", 1, batch(&["a"]));
    assert_eq!(h.log_values("t"), vec![(0, "a".into())]);
}

/// Records appended just before their partition went offline are copied once it has a leader
/// again, even one that leads it as before (found by the simulator, seed 257207: the high
/// watermark stayed below them until the next append, and acks=all produces waited).
#[test]
fn records_not_yet_copied_when_the_partition_went_offline_are_copied_after() {
    let mut h = H::lagging();
    h.c.create_topic("t", 1, 3);
    let leader = h.leader("t");
    h.produce("t", 1, batch(&["a"]));
    h.c.set_partition_offline("t", 0).unwrap();
    h.advance(DELAY * 2);
    h.c.move_leader("t", 0, leader).unwrap();
    // The copy is scheduled at the next input and done a replication delay later.
    h.advance(DELAY);
    h.advance(DELAY * 2);
    assert_eq!(h.c.high_watermark("t", 0), Some(1));
    assert!(h.c.replica_log_end_offsets("t", 0).unwrap().values().all(|leo| *leo == 1));
}

#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_starts() {
    let mut h = H::new(Replication::Instant);
    h.c.create_topic("t", 1, 3);
    let first = h.leader("t");
    h.produce("t", 1, batch(&["a", "b"]));
    let second = h.followers("t")[0];
    h.c.move_leader("t", 0, second).unwrap();
    h.c.move_leader("t", 0, first).unwrap(); // epoch 2 from offset 2, epoch 1 left empty
    h.produce("t", 1, batch(&["c", "d", "e"]));
    assert_eq!(h.c.leader_epoch("t", 0), Some(2));
    let ends = |h: &mut H, epoch: i32| {
        let e = h.epoch_end(first, "t", 2, epoch);
        (e.error_code, e.leader_epoch, e.end_offset)
    };
    assert_eq!(ends(&mut h, 0), (ErrorCode::None, 0, 2));
    assert_eq!(ends(&mut h, 1), (ErrorCode::None, 0, 2), "an epoch without records ends where the next starts");
    assert_eq!(ends(&mut h, 2), (ErrorCode::None, 2, 5), "the current epoch ends at the log end");
    assert_eq!(ends(&mut h, 3), (ErrorCode::None, -1, -1));
    assert_eq!(ends(&mut h, -1), (ErrorCode::None, -1, -1));
    assert_eq!(h.epoch_end(first, "t", 1, 0).error_code, ErrorCode::FencedLeaderEpoch);
    assert_eq!(h.epoch_end(first, "t", 3, 0).error_code, ErrorCode::UnknownLeaderEpoch);
    let e = h.epoch_end(second, "t", -1, 0);
    assert_eq!((e.error_code, e.end_offset), (ErrorCode::NotLeaderOrFollower, -1));
    assert_eq!(h.epoch_end(first, "nope", -1, 0).error_code, ErrorCode::UnknownTopicOrPartition);
    h.c.inject(Fault::error(ErrorCode::KafkaStorageError).on_api(ApiKey::OffsetForLeaderEpoch));
    assert_eq!(h.epoch_end(first, "t", -1, 0).error_code, ErrorCode::KafkaStorageError);
}
