//! Data-plane and admin APIs through real frames on a virtual clock: produce with
//! idempotence, transactions, fetch waiting and sessions, ListOffsets, DeleteRecords,
//! CreatePartitions, DescribeConfigs.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_response, encode_request, FrameDecoder};
use sansa::protocol::messages::add_partitions_to_txn::request::AddPartitionsToTxnTopic;
use sansa::protocol::messages::create_partitions::request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use sansa::protocol::messages::create_topics::request::{CreatableTopic, CreatableTopicConfig};
use sansa::protocol::messages::delete_records::request::{DeleteRecordsPartition, DeleteRecordsTopic};
use sansa::protocol::messages::describe_configs::request::DescribeConfigsResource;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic, ForgottenTopic};
use sansa::protocol::messages::fetch::response::PartitionData;
use sansa::protocol::messages::list_offsets::request::{ListOffsetsPartition, ListOffsetsTopic};
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::*;
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder, TimestampType};
use sansa::protocol::{
    ApiKey, BrokerId, ErrorCode, ProducerId, RequestBody, ResponseBody, StrBytes, TopicName, TransactionalId,
};

use super::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput, Fault};

/// A cluster and a virtual clock.
struct H {
    c: FakeCluster,
    now: Instant,
    next_conn: u64,
}

impl H {
    fn new() -> H {
        let c = FakeCluster::new(FakeClusterConfig {
            brokers: 3,
            cluster_id: "data".into(),
            default_partitions: 1,
            auto_create_topics: false,
            ..FakeClusterConfig::default()
        });
        H { c, now: Instant::now(), next_conn: 0 }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.c.handle_timeout(self.now);
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

    fn connect(&mut self, broker: i32) -> FakeConnId {
        self.next_conn += 1;
        let conn = FakeConnId(self.next_conn);
        self.c.handle_connect(self.now, broker, conn).unwrap();
        conn
    }

    fn send(&mut self, conn: FakeConnId, version: i16, body: impl Into<RequestBody>) {
        let mut buf = BytesMut::new();
        encode_request(&mut buf, 9, Some("t"), version, &body.into()).unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        self.c.handle_frame(self.now, conn, frame).unwrap();
    }

    /// Everything the cluster has put out, decoded as `key` responses for `conn`.
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

    fn create(&mut self, name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> CreateTopicsResponse {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default().with_name(StrBytes::from(*k)).with_value(Some(StrBytes::from(*v)))
            })
            .collect();
        let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(TopicName::from(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(configs)]);
        let ResponseBody::CreateTopics(r) = self.call(1, 7, req) else { panic!() };
        r
    }

    fn produce(
        &mut self,
        broker: i32,
        version: i16,
        topic: &str,
        partition: i32,
        acks: i16,
        records: Bytes,
    ) -> PartitionProduceResponse {
        let ResponseBody::Produce(r) = self.call(broker, version, produce_req(topic, partition, acks, records)) else {
            panic!()
        };
        r.responses[0].partition_responses[0].clone()
    }

    fn leader(&self, topic: &str, partition: i32) -> i32 {
        self.c.leader(topic, partition).unwrap()
    }

    fn fetch(&mut self, broker: i32, version: i16, req: FetchRequest) -> FetchResponse {
        let ResponseBody::Fetch(r) = self.call(broker, version, req) else { panic!() };
        r
    }

    fn list_offsets(&mut self, broker: i32, topic: &str, ts: i64, isolation: i8) -> ListOffsetsPartitionResponse {
        let req =
            ListOffsetsRequest::default()
                .with_isolation_level(isolation)
                .with_topics(vec![ListOffsetsTopic::default().with_name(TopicName::from(topic)).with_partitions(
                    vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts)],
                )]);
        let ResponseBody::ListOffsets(r) = self.call(broker, 9, req) else { panic!() };
        r.topics[0].partitions[0].clone()
    }
}

use sansa::protocol::messages::list_offsets::response::ListOffsetsPartitionResponse;
use sansa::protocol::messages::produce::response::PartitionProduceResponse;

fn decode(bytes: Bytes, key: ApiKey, version: i16) -> ResponseBody {
    let mut answer = BytesMut::from(&bytes[..]);
    let frame = FrameDecoder::default().decode(&mut answer).unwrap().unwrap();
    decode_response(frame, key, version).unwrap().1
}

/// A batch of `values` with timestamps 1000, 1001, ... and the given producer fields.
fn batch_with(params: BatchParams, values: &[&str], timestamps: Option<&[i64]>) -> Bytes {
    let mut out = BytesMut::new();
    let mut enc = RecordBatchEncoder::new();
    let mut b = enc.begin(&mut out, params).unwrap();
    for (i, v) in values.iter().enumerate() {
        let ts = timestamps.map_or(1_000 + i as i64, |t| t[i]);
        b.append(ts, Some(b"k"), Some(v.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap();
    out.freeze()
}

fn batch(values: &[&str]) -> Bytes {
    batch_with(BatchParams::new(), values, None)
}

fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let values: Vec<String> = (0..n).map(|i| format!("v{}", seq as usize + i)).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    batch_with(BatchParams::new().producer(pid, epoch, seq), &refs, None)
}

fn produce_req(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(1000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName::from(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))])])
}

fn fetch_part(partition: i32, offset: i64) -> FetchPartition {
    FetchPartition::default().with_partition(partition).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)
}

fn fetch_req(topic: &str, parts: Vec<FetchPartition>) -> FetchRequest {
    let topics = if parts.is_empty() {
        Vec::new()
    } else {
        vec![FetchTopic::default().with_topic(TopicName::from(topic)).with_partitions(parts)]
    };
    FetchRequest::default().with_max_bytes(1 << 20).with_topics(topics)
}

/// (offset, value) of every data record in a fetched partition.
fn values(p: &PartitionData) -> Vec<(i64, String)> {
    decode_batches(p.records.clone().unwrap_or_default(), &DecodeOptions::new())
        .map(|b| b.unwrap())
        .filter(|b| !b.is_control())
        .flat_map(|b| b.into_records())
        .map(|r| (r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()))
        .collect()
}

fn init_pid(
    h: &mut H,
    broker: i32,
    version: i16,
    tid: Option<&str>,
    expected: Option<(i64, i16)>,
) -> InitProducerIdResponse {
    let mut req = InitProducerIdRequest::default()
        .with_transactional_id(tid.map(|t| TransactionalId(StrBytes::from(t))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some((pid, epoch)) = expected {
        req = req.with_producer_id(ProducerId(pid)).with_producer_epoch(epoch);
    }
    let ResponseBody::InitProducerId(r) = h.call(broker, version, req) else { panic!() };
    r
}

fn txn_coordinator(h: &H, tid: &str) -> i32 {
    super::find_coordinator::coordinator_for(&h.c, tid).unwrap()
}

#[test]
fn produce_acks_limits_offline_and_injected_errors() {
    let mut h = H::new();
    h.create("t", 2, 2, &[("max.message.bytes", "200"), ("min.insync.replicas", "2")]);
    let leader = h.leader("t", 0);

    assert_eq!(h.produce(leader, 12, "t", 0, 2, batch(&["x"])).error_code, ErrorCode::InvalidRequiredAcks);
    let big = "x".repeat(300);
    let r = h.produce(leader, 12, "t", 0, -1, batch(&[&big]));
    assert_eq!(r.error_code, ErrorCode::MessageTooLarge);
    assert!(r.error_message.is_some());
    let mut two = BytesMut::from(&batch(&["a"])[..]);
    two.extend_from_slice(&batch(&["b"]));
    assert_eq!(h.produce(leader, 12, "t", 0, -1, two.freeze()).error_code, ErrorCode::InvalidRecord);
    // A batch whose last offset delta disagrees with its records.
    let mut lying = BytesMut::from(&batch(&["a", "b"])[..]);
    lying[23..27].copy_from_slice(&(-5i32).to_be_bytes());
    let crc = crc32c::crc32c(&lying[21..]);
    lying[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(h.produce(leader, 12, "t", 0, -1, lying.freeze()).error_code, ErrorCode::InvalidRecord);
    assert_eq!(h.produce(leader, 12, "t", 0, -1, batch(&["ok"])).error_code, ErrorCode::None);

    // An injected error hits one partition of the request only.
    h.c.inject(Fault::error(ErrorCode::KafkaStorageError).on_api(ApiKey::Produce).on_partition("t", 1));
    let leader1 = h.leader("t", 1);
    let req = ProduceRequest::default().with_acks(-1).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName::from("t"))
        .with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(batch(&["p0"]))),
            PartitionProduceData::default().with_index(1).with_records(Some(batch(&["p1"]))),
        ])]);
    let ResponseBody::Produce(r) = h.call(leader1, 12, req) else { panic!() };
    let codes: Vec<ErrorCode> = r.responses[0].partition_responses.iter().map(|p| p.error_code).collect();
    let want0 = if leader1 == leader { ErrorCode::None } else { ErrorCode::NotLeaderOrFollower };
    assert_eq!(codes, vec![want0, ErrorCode::KafkaStorageError]);
    assert!(!h.c.has_faults());

    // acks=all needs min.insync.replicas live replicas; acks=1 does not.
    let replicas = h.c.partition("t", 0).unwrap().replicas.clone();
    let follower = *replicas.iter().find(|r| **r != leader).unwrap();
    h.c.stop_broker(follower);
    assert_eq!(h.produce(leader, 12, "t", 0, -1, batch(&["y"])).error_code, ErrorCode::NotEnoughReplicas);
    assert_eq!(h.produce(leader, 12, "t", 0, 1, batch(&["y"])).error_code, ErrorCode::None);
    h.c.start_broker(follower);

    // A moved leader: v10+ answers carry the new leader and its endpoint.
    h.c.move_leader("t", 0, follower).unwrap();
    let ResponseBody::Produce(r) = h.call(leader, 12, produce_req("t", 0, 1, batch(&["z"]))) else { panic!() };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower);
    assert_eq!((*p.current_leader.leader_id, p.current_leader.leader_epoch), (follower, 1));
    assert_eq!(r.node_endpoints.len(), 1);
    assert_eq!(*r.node_endpoints[0].node_id, follower);

    // Offline partition.
    h.c.set_partition_offline("t", 0).unwrap();
    assert_eq!(h.produce(follower, 12, "t", 0, 1, batch(&["z"])).error_code, ErrorCode::NotLeaderOrFollower);

    // acks=0: no answer when it works, the connection closes when it does not.
    let leader1 = h.leader("t", 1);
    let conn = h.connect(leader1);
    h.send(conn, 12, produce_req("t", 1, 0, batch(&["quiet"])));
    assert!(h.outputs(conn, ApiKey::Produce, 12).is_empty());
    h.send(conn, 12, produce_req("t", 0, 0, batch(&["lost"])));
    assert_eq!(h.outputs(conn, ApiKey::Produce, 12), vec![Err(())]);
    assert!(!h.c.is_connected(conn));
}

#[test]
fn log_append_time_stamps_batches() {
    let mut h = H::new();
    h.create("lat", 1, 1, &[("message.timestamp.type", "LogAppendTime")]);
    let leader = h.leader("lat", 0);
    h.advance(Duration::from_secs(5));
    let start = h.c.config().start_time_ms;
    let r = h.produce(leader, 12, "lat", 0, 1, batch(&["a", "b"]));
    assert_eq!(r.error_code, ErrorCode::None);
    assert_eq!(r.log_append_time_ms, start + 5_000);
    let f = h.fetch(leader, 12, fetch_req("lat", vec![fetch_part(0, 0)]));
    let b = decode_batches(f.responses[0].partitions[0].records.clone().unwrap(), &DecodeOptions::new())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(b.max_timestamp(), start + 5_000);
    assert!(b.records().iter().all(|r| r.timestamp == start + 5_000));
}

#[test]
fn idempotent_duplicates_gaps_and_epochs() {
    let mut h = H::new();
    h.create("i", 1, 1, &[]);
    let leader = h.leader("i", 0);
    let r = init_pid(&mut h, 2, 4, None, None);
    assert_eq!((r.error_code, r.producer_epoch), (ErrorCode::None, 0));
    let pid = *r.producer_id;
    assert_ne!(*init_pid(&mut h, 3, 4, None, None).producer_id, pid, "a fresh id each time");

    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 0, 0, 3)).base_offset, 0);
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 0, 3, 2)).base_offset, 3);
    // Retries of either batch: the original offsets, nothing appended.
    let dup = h.produce(leader, 12, "i", 0, -1, idem(pid, 0, 0, 3));
    assert_eq!((dup.error_code, dup.base_offset), (ErrorCode::None, 0));
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 0, 3, 2)).base_offset, 3);
    assert_eq!(h.c.log_end_offset("i", 0), Some(5));
    // A gap, and an overlap that is not a retry.
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 0, 7, 1)).error_code, ErrorCode::OutOfOrderSequenceNumber);
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 0, 1, 1)).error_code, ErrorCode::OutOfOrderSequenceNumber);
    // A new epoch starts at 0.
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 1, 5, 1)).error_code, ErrorCode::OutOfOrderSequenceNumber);
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 1, 0, 1)).base_offset, 5);
    // The old epoch is fenced.
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 0, 5, 1)).error_code, ErrorCode::InvalidProducerEpoch);
    // Only the last five batches are remembered.
    for seq in 1..=5 {
        assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 1, seq, 1)).error_code, ErrorCode::None);
    }
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 1, 1, 1)).base_offset, 6, "oldest kept batch");
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(pid, 1, 0, 1)).error_code, ErrorCode::OutOfOrderSequenceNumber);
    // A producer without state may start anywhere (no UNKNOWN_PRODUCER_ID since KIP-360).
    assert_eq!(h.produce(leader, 12, "i", 0, -1, idem(4242, 3, 17, 1)).error_code, ErrorCode::None);
}

#[test]
fn init_producer_id_transactional_fencing() {
    let mut h = H::new();
    let tid = "tx-1";
    let coord = txn_coordinator(&h, tid);
    let other = h.c.broker_ids().into_iter().find(|b| *b != coord).unwrap();
    assert_eq!(init_pid(&mut h, other, 4, Some(tid), None).error_code, ErrorCode::NotCoordinator);

    let first = init_pid(&mut h, coord, 4, Some(tid), None);
    assert_eq!((first.error_code, first.producer_epoch), (ErrorCode::None, 0));
    let pid = *first.producer_id;
    let second = init_pid(&mut h, coord, 4, Some(tid), None);
    assert_eq!((*second.producer_id, second.producer_epoch), (pid, 1));
    // KIP-360: the caller's id and epoch must be current (or the previous, for a retry).
    assert_eq!(init_pid(&mut h, coord, 4, Some(tid), Some((pid, 1))).producer_epoch, 2);
    assert_eq!(init_pid(&mut h, coord, 4, Some(tid), Some((pid, 1))).producer_epoch, 2, "retried bump");
    assert_eq!(init_pid(&mut h, coord, 4, Some(tid), Some((pid, 0))).error_code, ErrorCode::ProducerFenced);
    assert_eq!(init_pid(&mut h, coord, 3, Some(tid), Some((pid, 0))).error_code, ErrorCode::InvalidProducerEpoch);
    assert_eq!(
        init_pid(&mut h, coord, 4, Some("never-seen-but-here"), Some((pid, 2))).error_code,
        if txn_coordinator(&h, "never-seen-but-here") == coord {
            ErrorCode::InvalidProducerIdMapping
        } else {
            ErrorCode::NotCoordinator
        }
    );
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from(tid))))
        .with_transaction_timeout_ms(900_001);
    let ResponseBody::InitProducerId(r) = h.call(coord, 4, req) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::InvalidTransactionTimeout);
}

fn add_partitions(h: &mut H, coord: i32, tid: &str, pid: i64, epoch: i16, topic: &str) -> ErrorCode {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from(tid)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName::from(topic))
            .with_partitions(vec![0])]);
    let ResponseBody::AddPartitionsToTxn(r) = h.call(coord, 3, req) else { panic!() };
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn end_txn(h: &mut H, coord: i32, tid: &str, pid: i64, epoch: i16, commit: bool) -> ErrorCode {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from(tid)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let ResponseBody::EndTxn(r) = h.call(coord, 4, req) else { panic!() };
    r.error_code
}

#[test]
fn transactions_read_committed_and_aborted_list() {
    let mut h = H::new();
    h.create("tx", 1, 1, &[]);
    let leader = h.leader("tx", 0);
    let tid = "app";
    let coord = txn_coordinator(&h, tid);
    let r = init_pid(&mut h, coord, 4, Some(tid), None);
    let (pid, epoch) = (*r.producer_id, r.producer_epoch);

    assert_eq!(add_partitions(&mut h, coord, tid, pid, epoch + 1, "tx"), ErrorCode::ProducerFenced);
    assert_eq!(add_partitions(&mut h, coord, tid, pid, epoch, "nope"), ErrorCode::UnknownTopicOrPartition);
    assert_eq!(add_partitions(&mut h, coord, tid, pid, epoch, "tx"), ErrorCode::None);
    let txb =
        |seq, vals: &[&str]| batch_with(BatchParams::new().producer(pid, epoch, seq).transactional(true), vals, None);
    // Transactional records must name their transactional id in the request.
    let refused = h.produce(leader, 12, "tx", 0, -1, txb(0, &["t0", "t1"]));
    assert_eq!(refused.error_code, ErrorCode::TransactionalIdAuthorizationFailed);
    let txp = |h: &mut H, records| {
        let req = produce_req("tx", 0, -1, records).with_transactional_id(Some(TransactionalId::from(tid)));
        let ResponseBody::Produce(r) = h.call(leader, 12, req) else { panic!() };
        r.responses[0].partition_responses[0].clone()
    };
    assert_eq!(txp(&mut h, txb(0, &["t0", "t1"])).base_offset, 0);
    assert_eq!(h.produce(leader, 12, "tx", 0, -1, batch(&["plain"])).base_offset, 2);

    let rc = |parts| fetch_req("tx", parts).with_isolation_level(1);
    let f = h.fetch(leader, 12, rc(vec![fetch_part(0, 0)]));
    let p = &f.responses[0].partitions[0];
    assert_eq!((p.high_watermark, p.last_stable_offset), (3, 0));
    assert!(values(p).is_empty());
    assert_eq!(h.list_offsets(leader, "tx", -1, 1).offset, 0);
    assert_eq!(h.list_offsets(leader, "tx", -1, 0).offset, 3);
    let f = h.fetch(leader, 12, fetch_req("tx", vec![fetch_part(0, 0)]));
    assert_eq!(values(&f.responses[0].partitions[0]).len(), 3);
    assert!(f.responses[0].partitions[0].aborted_transactions.is_none());

    assert_eq!(end_txn(&mut h, coord, tid, pid, epoch, true), ErrorCode::None);
    // The commit above ended it; abort of a committed transaction is refused, commit retried is fine.
    assert_eq!(end_txn(&mut h, coord, tid, pid, epoch, false), ErrorCode::InvalidTxnState);
    assert_eq!(end_txn(&mut h, coord, tid, pid, epoch, true), ErrorCode::None);
    let f = h.fetch(leader, 12, rc(vec![fetch_part(0, 0)]));
    let p = &f.responses[0].partitions[0];
    assert_eq!((p.high_watermark, p.last_stable_offset), (4, 4));
    assert_eq!(values(p).len(), 3);
    assert_eq!(p.aborted_transactions.as_deref().map(<[_]>::len), Some(0));

    // An aborted transaction shows up in the aborted list.
    assert_eq!(add_partitions(&mut h, coord, tid, pid, epoch, "tx"), ErrorCode::None);
    assert_eq!(txp(&mut h, txb(2, &["gone"])).base_offset, 4);
    // A non-transactional write from the same producer meanwhile is refused.
    let plain = batch_with(BatchParams::new().producer(pid, epoch, 3), &["x"], None);
    assert_eq!(h.produce(leader, 12, "tx", 0, -1, plain).error_code, ErrorCode::InvalidTxnState);
    assert_eq!(end_txn(&mut h, coord, tid, pid, epoch, false), ErrorCode::None);
    let f = h.fetch(leader, 12, rc(vec![fetch_part(0, 4)]));
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.last_stable_offset, 6);
    let aborted = p.aborted_transactions.clone().unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!((*aborted[0].producer_id, aborted[0].first_offset), (pid, 4));
    let markers = decode_batches(p.records.clone().unwrap(), &DecodeOptions::new())
        .filter(|b| b.as_ref().unwrap().is_control())
        .count();
    assert_eq!(markers, 1);

    // InitProducerId during an open transaction aborts it and asks for a retry.
    assert_eq!(add_partitions(&mut h, coord, tid, pid, epoch, "tx"), ErrorCode::None);
    assert_eq!(txp(&mut h, txb(3, &["open"])).error_code, ErrorCode::None);
    assert_eq!(init_pid(&mut h, coord, 4, Some(tid), None).error_code, ErrorCode::ConcurrentTransactions);
    assert_eq!(h.list_offsets(leader, "tx", -1, 1).offset, h.c.log_end_offset("tx", 0).unwrap());
    let again = init_pid(&mut h, coord, 4, Some(tid), None);
    assert_eq!(again.error_code, ErrorCode::None);
    assert!(again.producer_epoch > epoch + 1);
    // The old epoch is fenced on the partition too.
    assert_eq!(txp(&mut h, txb(4, &["zombie"])).error_code, ErrorCode::InvalidProducerEpoch);
}

#[test]
fn fetch_waits_for_data_and_expires() {
    let mut h = H::new();
    h.create("w", 1, 1, &[]);
    let leader = h.leader("w", 0);
    let consumer = h.connect(leader);
    let producer = h.connect(leader);
    let waiting = fetch_req("w", vec![fetch_part(0, 0)]).with_max_wait_ms(500).with_min_bytes(1);

    h.send(consumer, 12, waiting.clone());
    assert!(h.outputs(consumer, ApiKey::Fetch, 12).is_empty());
    assert_eq!(h.c.poll_timeout(), Some(h.now + Duration::from_millis(500)));
    h.advance(Duration::from_millis(100));
    h.send(producer, 12, produce_req("w", 0, 1, batch(&["hello"])));
    // The produce answer goes to the producer, the woken fetch to the consumer.
    let mut consumer_answers = Vec::new();
    while let Some(o) = h.c.poll_output() {
        if let FakeOutput::Send { conn, bytes } = o {
            if conn == consumer {
                consumer_answers.push(decode(bytes, ApiKey::Fetch, 12));
            }
        }
    }
    let [ResponseBody::Fetch(f)] = &consumer_answers[..] else { panic!("{consumer_answers:?}") };
    assert_eq!(values(&f.responses[0].partitions[0]), vec![(0, "hello".to_string())]);
    assert_eq!(h.c.poll_timeout(), None);

    // Nothing arrives: the empty answer comes at max_wait_ms and not before.
    h.send(consumer, 12, waiting.with_topics(fetch_req("w", vec![fetch_part(0, 1)]).topics));
    h.advance(Duration::from_millis(499));
    assert!(h.outputs(consumer, ApiKey::Fetch, 12).is_empty());
    h.advance(Duration::from_millis(1));
    let out = h.outputs(consumer, ApiKey::Fetch, 12);
    let [Ok(ResponseBody::Fetch(f))] = &out[..] else { panic!("{out:?}") };
    assert_eq!(f.responses[0].partitions[0].error_code, ErrorCode::None);
    assert!(values(&f.responses[0].partitions[0]).is_empty());

    // A leader move answers a waiting fetch at once with NOT_LEADER_OR_FOLLOWER.
    h.send(consumer, 12, fetch_req("w", vec![fetch_part(0, 1)]).with_max_wait_ms(500).with_min_bytes(1));
    assert!(h.outputs(consumer, ApiKey::Fetch, 12).is_empty());
    let to = h.c.partition("w", 0).unwrap().replicas.iter().copied().find(|r| *r != leader);
    assert!(to.is_none(), "rf 1 has no other replica");
    h.c.set_partition_offline("w", 0).unwrap();
    let out = h.outputs(consumer, ApiKey::Fetch, 12);
    let [Ok(ResponseBody::Fetch(f))] = &out[..] else { panic!("{out:?}") };
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower);
    assert_eq!((*p.current_leader.leader_id, p.current_leader.leader_epoch), (-1, 1));
}

fn session_fetch(
    h: &mut H,
    broker: i32,
    id: i32,
    epoch: i32,
    parts: Vec<FetchPartition>,
    forget: &[i32],
) -> FetchResponse {
    let mut req = fetch_req("s", parts).with_session_id(id).with_session_epoch(epoch);
    if !forget.is_empty() {
        req.forgotten_topics_data =
            vec![ForgottenTopic::default().with_topic(TopicName::from("s")).with_partitions(forget.to_vec())];
    }
    h.fetch(broker, 12, req)
}

fn partitions_of(f: &FetchResponse) -> Vec<i32> {
    f.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.partition_index)).collect()
}

#[test]
fn fetch_sessions_full_incremental_forget_and_errors() {
    let mut h = H::new();
    h.create("s", 2, 3, &[]);
    h.c.move_leader("s", 1, h.leader("s", 0)).unwrap();
    let leader = h.leader("s", 0);

    let f = session_fetch(&mut h, leader, 0, 0, vec![fetch_part(0, 0), fetch_part(1, 0)], &[]);
    let id = f.session_id;
    assert_ne!(id, 0);
    assert_eq!(partitions_of(&f), vec![0, 1]);
    assert_eq!(h.c.fetch_session_count(leader), 1);

    // Nothing changed: an empty incremental answer.
    let f = session_fetch(&mut h, leader, id, 1, vec![], &[]);
    assert_eq!((f.error_code, f.session_id), (ErrorCode::None, id));
    assert!(partitions_of(&f).is_empty());

    // New data on partition 0 only.
    h.produce(leader, 12, "s", 0, 1, batch(&["a"]));
    let f = session_fetch(&mut h, leader, id, 2, vec![], &[]);
    assert_eq!(partitions_of(&f), vec![0]);
    assert_eq!(values(&f.responses[0].partitions[0]), vec![(0, "a".to_string())]);
    // The client moves its offset; the high watermark is as last told, so nothing comes back.
    let f = session_fetch(&mut h, leader, id, 3, vec![fetch_part(0, 1)], &[]);
    assert!(partitions_of(&f).is_empty());

    // Wrong epoch, unknown session.
    assert_eq!(session_fetch(&mut h, leader, id, 3, vec![], &[]).error_code, ErrorCode::InvalidFetchSessionEpoch);
    assert_eq!(session_fetch(&mut h, leader, id + 100, 1, vec![], &[]).error_code, ErrorCode::FetchSessionIdNotFound);

    // Forget partition 1: its new data no longer shows.
    let f = session_fetch(&mut h, leader, id, 4, vec![], &[1]);
    assert!(partitions_of(&f).is_empty());
    h.produce(leader, 12, "s", 1, 1, batch(&["b"]));
    assert!(partitions_of(&session_fetch(&mut h, leader, id, 5, vec![], &[])).is_empty());
    // And re-adding it brings it back.
    let f = session_fetch(&mut h, leader, id, 6, vec![fetch_part(1, 0)], &[]);
    assert_eq!(partitions_of(&f), vec![1]);

    // The final epoch closes the session and fetches without one.
    let f = session_fetch(&mut h, leader, id, -1, vec![fetch_part(0, 0)], &[]);
    assert_eq!(f.session_id, 0);
    assert_eq!(h.c.fetch_session_count(leader), 0);

    // A full cache: new sessions are refused until the oldest has been idle for two minutes.
    h.c.set_fetch_session_slots(1);
    let first = session_fetch(&mut h, leader, 0, 0, vec![fetch_part(0, 0)], &[]).session_id;
    assert_ne!(first, 0);
    assert_eq!(session_fetch(&mut h, leader, 0, 0, vec![fetch_part(0, 0)], &[]).session_id, 0);
    h.advance(Duration::from_secs(120));
    let second = session_fetch(&mut h, leader, 0, 0, vec![fetch_part(0, 0)], &[]).session_id;
    assert!(second != 0 && second != first);
    assert_eq!(session_fetch(&mut h, leader, first, 1, vec![], &[]).error_code, ErrorCode::FetchSessionIdNotFound);
}

#[test]
fn fetch_leader_epochs_and_hints() {
    let mut h = H::new();
    h.create("e", 1, 3, &[]);
    let leader = h.leader("e", 0);
    let other = h.c.broker_ids().into_iter().find(|b| *b != leader).unwrap();
    h.c.move_leader("e", 0, other).unwrap();
    let with_epoch = |e| fetch_req("e", vec![fetch_part(0, 0).with_current_leader_epoch(e)]);
    let code = |f: FetchResponse| f.responses[0].partitions[0].error_code;
    assert_eq!(code(h.fetch(other, 12, with_epoch(0))), ErrorCode::FencedLeaderEpoch);
    assert_eq!(code(h.fetch(other, 12, with_epoch(2))), ErrorCode::UnknownLeaderEpoch);
    assert_eq!(code(h.fetch(other, 12, with_epoch(1))), ErrorCode::None);
    assert_eq!(code(h.fetch(other, 12, with_epoch(-1))), ErrorCode::None);

    // The old leader is still a replica: consumers may read from it (KIP-392).
    assert_eq!(code(h.fetch(leader, 12, with_epoch(-1))), ErrorCode::None);

    // By topic id at v16+: a broker without a replica points at the leader, with its endpoint.
    h.create("f", 1, 2, &[]);
    let leader = h.leader("f", 0);
    let outsider = h.c.broker_ids().into_iter().find(|b| !h.c.partition("f", 0).unwrap().replicas.contains(b)).unwrap();
    let id = h.c.topic_id("f").unwrap();
    let req = FetchRequest::default()
        .with_topics(vec![FetchTopic::default().with_topic_id(id).with_partitions(vec![fetch_part(0, 0)])]);
    let f = h.fetch(outsider, 17, req);
    let other = leader;
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower);
    assert_eq!(*p.current_leader.leader_id, other);
    assert_eq!(f.node_endpoints.iter().map(|n| *n.node_id).collect::<Vec<_>>(), vec![other]);
    assert_eq!(f.responses[0].topic_id, id);

    // An injected per-partition error.
    h.c.inject(Fault::error(ErrorCode::KafkaStorageError).on_api(ApiKey::Fetch).on_partition("e", 0));
    assert_eq!(code(h.fetch(other, 12, with_epoch(-1))), ErrorCode::KafkaStorageError);
    assert_eq!(code(h.fetch(other, 12, with_epoch(-1))), ErrorCode::None);
}

#[test]
fn list_offsets_special_timestamps() {
    let mut h = H::new();
    h.create("lo", 1, 3, &[]);
    let leader = h.leader("lo", 0);
    assert_eq!(h.list_offsets(leader, "lo", -3, 0).offset, -1, "empty log has no max timestamp");
    h.produce(leader, 12, "lo", 0, 1, batch_with(BatchParams::new(), &["a", "b"], Some(&[1_000, 1_001])));
    let other = h.c.broker_ids().into_iter().find(|b| *b != leader).unwrap();
    h.c.move_leader("lo", 0, other).unwrap();
    h.produce(other, 12, "lo", 0, 1, batch_with(BatchParams::new(), &["c", "d"], Some(&[5_000, 2_000])));

    let at = |h: &mut H, ts| {
        let r = h.list_offsets(other, "lo", ts, 0);
        assert_eq!(r.error_code, ErrorCode::None, "ts {ts}");
        (r.offset, r.timestamp, r.leader_epoch)
    };
    assert_eq!(at(&mut h, -2), (0, -1, 0));
    assert_eq!(at(&mut h, -1), (4, -1, 1));
    assert_eq!(at(&mut h, -3), (2, 5_000, 1));
    assert_eq!(at(&mut h, -4), (0, -1, 0));
    assert_eq!(at(&mut h, 1_001), (1, 1_001, 0));
    assert_eq!(at(&mut h, 1_500), (2, 5_000, 1));
    assert_eq!(at(&mut h, 6_000), (-1, -1, -1));

    assert_eq!(h.list_offsets(leader, "lo", -1, 0).error_code, ErrorCode::NotLeaderOrFollower);
    assert_eq!(h.list_offsets(other, "missing", -1, 0).error_code, ErrorCode::UnknownTopicOrPartition);
    h.c.inject(Fault::error(ErrorCode::KafkaStorageError).on_api(ApiKey::ListOffsets).on_topic("lo"));
    assert_eq!(h.list_offsets(other, "lo", -1, 0).error_code, ErrorCode::KafkaStorageError);
}

fn delete_records(h: &mut H, broker: i32, topic: &str, offset: i64) -> (ErrorCode, i64) {
    let req = DeleteRecordsRequest::default().with_timeout_ms(1000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName::from(topic))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)])]);
    let ResponseBody::DeleteRecords(r) = h.call(broker, 2, req) else { panic!() };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

#[test]
fn delete_records_then_fetch_below_start() {
    let mut h = H::new();
    h.create("d", 1, 1, &[]);
    let leader = h.leader("d", 0);
    for v in ["a", "b", "c"] {
        h.produce(leader, 12, "d", 0, 1, batch(&[v]));
    }
    assert_eq!(delete_records(&mut h, leader, "d", 2), (ErrorCode::None, 2));
    assert_eq!(delete_records(&mut h, leader, "d", 1), (ErrorCode::None, 2), "never moves back");
    assert_eq!(delete_records(&mut h, leader, "d", 4).0, ErrorCode::OffsetOutOfRange);
    let other = h.c.broker_ids().into_iter().find(|b| *b != leader).unwrap();
    assert_eq!(delete_records(&mut h, other, "d", 2).0, ErrorCode::NotLeaderOrFollower);
    assert_eq!(delete_records(&mut h, leader, "nope", 2).0, ErrorCode::UnknownTopicOrPartition);

    let f = h.fetch(leader, 12, fetch_req("d", vec![fetch_part(0, 0)]));
    let p = &f.responses[0].partitions[0];
    // Like Kafka, an out-of-range answer carries -1 offsets; ListOffsets tells the new start.
    assert_eq!((p.error_code, p.log_start_offset, p.high_watermark), (ErrorCode::OffsetOutOfRange, -1, -1));
    let f = h.fetch(leader, 12, fetch_req("d", vec![fetch_part(0, 2)]));
    assert_eq!(values(&f.responses[0].partitions[0]), vec![(2, "c".to_string())]);
    assert_eq!(h.list_offsets(leader, "d", -2, 0).offset, 2);

    assert_eq!(delete_records(&mut h, leader, "d", -1), (ErrorCode::None, 3));
    let f = h.fetch(leader, 12, fetch_req("d", vec![fetch_part(0, 3)]));
    assert!(values(&f.responses[0].partitions[0]).is_empty());
}

fn create_partitions(
    h: &mut H,
    topic: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> ErrorCode {
    let assignments = assignments.map(|a| {
        a.into_iter()
            .map(|ids| CreatePartitionsAssignment::default().with_broker_ids(ids.into_iter().map(BrokerId).collect()))
            .collect()
    });
    let req = CreatePartitionsRequest::default().with_validate_only(validate_only).with_topics(vec![
        CreatePartitionsTopic::default()
            .with_name(TopicName::from(topic))
            .with_count(count)
            .with_assignments(assignments),
    ]);
    let ResponseBody::CreatePartitions(r) = h.call(2, 3, req) else { panic!() };
    r.results[0].error_code
}

#[test]
fn create_partitions_grows_only() {
    let mut h = H::new();
    h.create("cp", 1, 2, &[]);
    assert_eq!(create_partitions(&mut h, "cp", 3, None, true), ErrorCode::None);
    assert_eq!(h.c.partition_count("cp"), Some(1), "validate only");
    assert_eq!(create_partitions(&mut h, "cp", 3, None, false), ErrorCode::None);
    assert_eq!(h.c.partition_count("cp"), Some(3));
    assert_eq!(h.c.partition("cp", 2).unwrap().replicas.len(), 2, "the topic's replication factor");
    assert_eq!(create_partitions(&mut h, "cp", 3, None, false), ErrorCode::InvalidPartitions);
    assert_eq!(create_partitions(&mut h, "cp", 2, None, false), ErrorCode::InvalidPartitions);
    assert_eq!(create_partitions(&mut h, "missing", 2, None, false), ErrorCode::UnknownTopicOrPartition);
    assert_eq!(create_partitions(&mut h, "cp", 5, Some(vec![vec![1]]), false), ErrorCode::InvalidReplicaAssignment);
    assert_eq!(create_partitions(&mut h, "cp", 4, Some(vec![vec![9]]), false), ErrorCode::InvalidReplicaAssignment);
    assert_eq!(create_partitions(&mut h, "cp", 4, Some(vec![vec![3, 1]]), false), ErrorCode::None);
    assert_eq!(h.c.leader("cp", 3), Some(3));
    let leader = h.leader("cp", 3);
    assert_eq!(h.produce(leader, 12, "cp", 3, 1, batch(&["new"])).error_code, ErrorCode::None);
}

fn describe(h: &mut H, broker: i32, kind: i8, name: &str, keys: Option<Vec<&str>>) -> DescribeConfigsResponse {
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from(name))
            .with_configuration_keys(keys.map(|k| k.into_iter().map(StrBytes::from).collect()))]);
    let ResponseBody::DescribeConfigs(r) = h.call(broker, 4, req) else { panic!() };
    r
}

#[test]
fn describe_configs_defaults_overrides_and_validation() {
    let mut h = H::new();
    let r = h.create("bad", 1, 1, &[("no.such.config", "1")]);
    assert_eq!(r.topics[0].error_code, ErrorCode::InvalidConfig);
    assert!(h.c.topic_id("bad").is_none());
    assert_eq!(
        h.create("bad", 1, 1, &[("message.timestamp.type", "Whenever")]).topics[0].error_code,
        ErrorCode::InvalidConfig
    );
    assert_eq!(h.create("bad", 1, 1, &[("retention.ms", "soon")]).topics[0].error_code, ErrorCode::InvalidConfig);

    let r = h.create("cfg", 1, 1, &[("retention.ms", "1000"), ("cleanup.policy", "compact")]);
    assert_eq!(r.topics[0].error_code, ErrorCode::None);
    let listed = r.topics[0].configs.clone().unwrap();
    assert!(listed.iter().any(|c| c.name.as_str() == "retention.ms" && c.value.as_deref() == Some("1000")));

    let d = describe(&mut h, 3, 2, "cfg", None);
    let res = &d.results[0];
    assert_eq!(res.error_code, ErrorCode::None);
    let get = |n: &str| res.configs.iter().find(|c| c.name.as_str() == n).unwrap().clone();
    let retention = get("retention.ms");
    assert_eq!((retention.value.as_deref(), retention.config_source, retention.read_only), (Some("1000"), 1, false));
    assert_eq!(retention.synonyms.len(), 2);
    assert_eq!(retention.synonyms[1].name.as_str(), "log.retention.ms");
    assert_eq!(retention.config_type, 5);
    assert!(retention.documentation.is_some());
    let max = get("max.message.bytes");
    assert_eq!((max.value.as_deref(), max.config_source), (Some("1048588"), 5));
    assert_eq!(get("message.timestamp.type").value.as_deref(), Some("CreateTime"));
    assert_eq!(get("min.insync.replicas").value.as_deref(), Some("1"));
    assert_eq!(get("segment.bytes").value.as_deref(), Some("1073741824"));
    assert_eq!(get("cleanup.policy").value.as_deref(), Some("compact"));
    assert_eq!(h.c.topic_config("cfg", "retention.ms").as_deref(), Some("1000"));

    let d = describe(&mut h, 3, 2, "cfg", Some(vec!["retention.ms", "nope"]));
    assert_eq!(d.results[0].configs.len(), 1);
    assert_eq!(describe(&mut h, 3, 2, "missing", None).results[0].error_code, ErrorCode::UnknownTopicOrPartition);

    let d = describe(&mut h, 2, 4, "2", Some(vec!["broker.id", "num.partitions", "message.max.bytes"]));
    let res = &d.results[0];
    assert_eq!(res.error_code, ErrorCode::None);
    let names: Vec<(&str, Option<&str>)> = res.configs.iter().map(|c| (c.name.as_str(), c.value.as_deref())).collect();
    assert_eq!(
        names,
        vec![("broker.id", Some("2")), ("message.max.bytes", Some("1048588")), ("num.partitions", Some("1"))]
    );
    assert_eq!(describe(&mut h, 2, 4, "", None).results[0].error_code, ErrorCode::None);
    assert_eq!(describe(&mut h, 2, 4, "3", None).results[0].error_code, ErrorCode::InvalidRequest);

    h.c.inject(Fault::error(ErrorCode::PolicyViolation).on_api(ApiKey::DescribeConfigs).on_topic("cfg"));
    assert_eq!(describe(&mut h, 1, 2, "cfg", None).results[0].error_code, ErrorCode::PolicyViolation);
}
