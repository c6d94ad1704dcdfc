//! Round trips through the real codecs: encode a request, strip the size prefix, feed the
//! cluster, decode the answer.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_response, encode_request, FrameDecoder};
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::list_offsets::request::{ListOffsetsPartition, ListOffsetsTopic};
use sansa::protocol::messages::metadata::request::MetadataRequestTopic;
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::*;
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder};
use sansa::protocol::{ApiKey, ErrorCode, RequestBody, ResponseBody, StrBytes, TopicName, Uuid};

use super::{FakeCluster, FakeClusterConfig, FakeError};

fn cluster() -> FakeCluster {
    FakeCluster::new(FakeClusterConfig {
        brokers: 3,
        cluster_id: "test".into(),
        default_partitions: 2,
        auto_create_topics: false,
        ..FakeClusterConfig::default()
    })
}

fn call_raw(c: &mut FakeCluster, broker: i32, version: i16, body: RequestBody) -> Result<Option<Bytes>, FakeError> {
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 7, Some("test"), version, &body).unwrap();
    let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    c.answer(Instant::now(), broker, frame)
}

fn call(c: &mut FakeCluster, broker: i32, version: i16, body: impl Into<RequestBody>) -> ResponseBody {
    let body = body.into();
    let key = body.api_key();
    let mut answer = BytesMut::from(&call_raw(c, broker, version, body).unwrap().expect("a response")[..]);
    let frame = FrameDecoder::default().decode(&mut answer).unwrap().unwrap();
    assert!(answer.is_empty());
    let (corr, body) = decode_response(frame, key, version).unwrap();
    assert_eq!(corr, 7);
    body
}

fn create(c: &mut FakeCluster, version: i16, name: &str, partitions: i32, rf: i16) -> CreateTopicsResponse {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName::from(name))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)]);
    match call(c, 1, version, req) {
        ResponseBody::CreateTopics(r) => r,
        other => panic!("{other:?}"),
    }
}

fn metadata(c: &mut FakeCluster, version: i16, topics: Option<Vec<&str>>) -> MetadataResponse {
    let topics = topics
        .map(|t| t.into_iter().map(|n| MetadataRequestTopic::default().with_name(Some(TopicName::from(n)))).collect());
    match call(c, 2, version, MetadataRequest::default().with_topics(topics)) {
        ResponseBody::Metadata(r) => r,
        other => panic!("{other:?}"),
    }
}

fn batch(values: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    let mut enc = RecordBatchEncoder::new();
    let mut b = enc.begin(&mut out, BatchParams::new()).unwrap();
    for (i, v) in values.iter().enumerate() {
        b.append(1_000 + i as i64, Some(b"k"), Some(v.as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap();
    out.freeze()
}

fn produce_req(version: i16, name: &str, id: Uuid, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    let mut t = TopicProduceData::default()
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))]);
    if version >= 13 {
        t.topic_id = id;
    } else {
        t.name = TopicName::from(name);
    }
    ProduceRequest::default().with_acks(acks).with_timeout_ms(1000).with_topic_data(vec![t])
}

fn fetch_req(version: i16, name: &str, id: Uuid, partition: i32, offset: i64) -> FetchRequest {
    let mut t = FetchTopic::default().with_partitions(vec![FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)]);
    if version >= 13 {
        t.topic_id = id;
    } else {
        t.topic = TopicName::from(name);
    }
    FetchRequest::default().with_max_bytes(1 << 20).with_topics(vec![t])
}

#[test]
fn api_versions_advertises_implemented_apis_and_downgrades() {
    let mut c = cluster();
    let max = c.advertised_versions(ApiKey::ApiVersions).unwrap().1;
    let ResponseBody::ApiVersions(r) = call(&mut c, 1, max, ApiVersionsRequest::default()) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::None);
    assert_eq!(r.api_keys.len(), super::IMPLEMENTED_APIS.len());
    // Kafka 4.3's ranges by default.
    let fetch = r.api_keys.iter().find(|k| k.api_key == ApiKey::Fetch.as_i16()).unwrap();
    assert_eq!((fetch.min_version, fetch.max_version), (4, 18));
    let produce = r.api_keys.iter().find(|k| k.api_key == ApiKey::Produce.as_i16()).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 13));

    // A version from the future: the header is read as far as the correlation id, the answer
    // is a v0 body.
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&(max + 1).to_be_bytes());
    frame.extend_from_slice(&42i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0, 0, 0]);
    let mut answer = BytesMut::from(&c.answer(Instant::now(), 1, frame.freeze()).unwrap().unwrap()[..]);
    let f = FrameDecoder::default().decode(&mut answer).unwrap().unwrap();
    let (corr, ResponseBody::ApiVersions(r)) = decode_response(f, ApiKey::ApiVersions, 0).unwrap() else { panic!() };
    assert_eq!(corr, 42);
    assert_eq!(r.error_code, ErrorCode::UnsupportedVersion);
    assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Metadata.as_i16()));
}

#[test]
fn create_metadata_produce_fetch_list_offsets() {
    for (produce_v, fetch_v) in [(13, 18), (12, 12), (3, 4)] {
        let mut c = cluster();
        let created = create(&mut c, 7, "orders", 3, -1);
        assert_eq!(created.topics[0].error_code, ErrorCode::None);
        let id = created.topics[0].topic_id;
        assert!(!id.is_zero());
        assert_eq!(c.topic_id("orders"), Some(id));

        let md = metadata(&mut c, 13, Some(vec!["orders"]));
        assert_eq!(md.brokers.len(), 3);
        assert_eq!(*md.controller_id, 1);
        assert_eq!(md.cluster_id.as_deref(), Some("test"));
        let t = &md.topics[0];
        assert_eq!(t.error_code, ErrorCode::None);
        assert_eq!(t.topic_id, id);
        assert_eq!(t.partitions.len(), 3);
        let leaders: Vec<i32> = t.partitions.iter().map(|p| *p.leader_id).collect();
        let mut sorted = leaders.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 2, 3], "round-robin leaders");
        assert!(t.partitions.iter().all(|p| p.replica_nodes.len() == 3 && p.isr_nodes.len() == 3));
        let leader = leaders[0];

        for (round, values) in [vec!["a", "b"], vec!["c", "d", "e"]].into_iter().enumerate() {
            let ResponseBody::Produce(r) =
                call(&mut c, leader, produce_v, produce_req(produce_v, "orders", id, 0, -1, batch(&values)))
            else {
                panic!()
            };
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, ErrorCode::None, "v{produce_v}");
            assert_eq!(p.base_offset, if round == 0 { 0 } else { 2 });
        }
        assert_eq!(c.log_end_offset("orders", 0), Some(5));

        // From offset 3: the whole second batch (offsets 2..5) comes back.
        let ResponseBody::Fetch(r) = call(&mut c, leader, fetch_v, fetch_req(fetch_v, "orders", id, 0, 3)) else {
            panic!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, ErrorCode::None);
        assert_eq!(p.high_watermark, 5);
        if fetch_v >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let batches: Vec<_> =
            decode_batches(p.records.clone().unwrap(), &DecodeOptions::new()).collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].base_offset(), 2);
        assert_eq!(batches[0].partition_leader_epoch(), 0);
        let recs: Vec<(i64, Bytes)> =
            batches[0].records().iter().map(|r| (r.offset, r.value.clone().unwrap())).collect();
        assert_eq!(recs, vec![(2, Bytes::from("c")), (3, Bytes::from("d")), (4, Bytes::from("e"))]);

        // From 0: both batches.
        let ResponseBody::Fetch(r) = call(&mut c, leader, fetch_v, fetch_req(fetch_v, "orders", id, 0, 0)) else {
            panic!()
        };
        let n: usize = decode_batches(r.responses[0].partitions[0].records.clone().unwrap(), &DecodeOptions::new())
            .map(|b| b.unwrap().records().len())
            .sum();
        assert_eq!(n, 5);

        // At the end: empty; beyond: OFFSET_OUT_OF_RANGE.
        let ResponseBody::Fetch(r) = call(&mut c, leader, fetch_v, fetch_req(fetch_v, "orders", id, 0, 5)) else {
            panic!()
        };
        assert_eq!(r.responses[0].partitions[0].error_code, ErrorCode::None);
        assert!(r.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
        let ResponseBody::Fetch(r) = call(&mut c, leader, fetch_v, fetch_req(fetch_v, "orders", id, 0, 6)) else {
            panic!()
        };
        assert_eq!(r.responses[0].partitions[0].error_code, ErrorCode::OffsetOutOfRange);

        let lo = |ts| {
            ListOffsetsTopic::default()
                .with_name(TopicName::from("orders"))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts)])
        };
        for (ts, want) in [(-2, 0), (-1, 5), (1_001, 1)] {
            let req = ListOffsetsRequest::default().with_topics(vec![lo(ts)]);
            let ResponseBody::ListOffsets(r) = call(&mut c, leader, 9, req) else { panic!() };
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.error_code, p.offset), (ErrorCode::None, want), "timestamp {ts}");
        }
    }
}

#[test]
fn produce_errors_and_acks_zero() {
    let mut c = cluster();
    let id = create(&mut c, 7, "t", 1, 1).topics[0].topic_id;
    let leader = c.leader("t", 0).unwrap();
    let other = c.broker_ids().into_iter().find(|b| *b != leader).unwrap();

    let ResponseBody::Produce(r) = call(&mut c, other, 12, produce_req(12, "t", id, 0, 1, batch(&["x"]))) else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, ErrorCode::NotLeaderOrFollower);

    let ResponseBody::Produce(r) = call(&mut c, leader, 12, produce_req(12, "nope", id, 0, 1, batch(&["x"]))) else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, ErrorCode::UnknownTopicOrPartition);
    let ResponseBody::Produce(r) = call(&mut c, leader, 12, produce_req(12, "t", id, 5, 1, batch(&["x"]))) else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, ErrorCode::UnknownTopicOrPartition);
    let ResponseBody::Produce(r) =
        call(&mut c, leader, 13, produce_req(13, "", Uuid::from_bytes([9; 16]), 0, 1, batch(&["x"])))
    else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, ErrorCode::UnknownTopicId);

    let mut corrupt = BytesMut::from(&batch(&["x"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let ResponseBody::Produce(r) = call(&mut c, leader, 12, produce_req(12, "t", id, 0, 1, corrupt.freeze())) else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, ErrorCode::CorruptMessage);

    let none = call_raw(&mut c, leader, 12, produce_req(12, "t", id, 0, 0, batch(&["x"])).into()).unwrap();
    assert!(none.is_none());
    assert_eq!(c.log_end_offset("t", 0), Some(1));
}

#[test]
fn unknown_topics_and_auto_create() {
    let mut c = cluster();
    let md = metadata(&mut c, 12, Some(vec!["missing"]));
    assert_eq!(md.topics[0].error_code, ErrorCode::UnknownTopicOrPartition);
    let ResponseBody::Fetch(r) = call(&mut c, 1, 12, fetch_req(12, "missing", Uuid::ZERO, 0, 0)) else { panic!() };
    assert_eq!(r.responses[0].partitions[0].error_code, ErrorCode::UnknownTopicOrPartition);

    let mut auto = FakeCluster::new(FakeClusterConfig { auto_create_topics: true, ..FakeClusterConfig::default() });
    let md = {
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName::from("new")))]));
        let ResponseBody::Metadata(r) = call(&mut auto, 1, 12, req) else { panic!() };
        r
    };
    assert_eq!(md.topics[0].error_code, ErrorCode::None);
    assert_eq!(md.topics[0].partitions.len(), 1);
    // All topics with a null list.
    assert_eq!(metadata(&mut auto, 12, None).topics.len(), 1);
}

#[test]
fn create_topic_errors_and_delete() {
    let mut c = cluster();
    assert_eq!(create(&mut c, 7, "a", 1, 1).topics[0].error_code, ErrorCode::None);
    assert_eq!(create(&mut c, 7, "a", 1, 1).topics[0].error_code, ErrorCode::TopicAlreadyExists);
    assert_eq!(create(&mut c, 7, "b", 0, 1).topics[0].error_code, ErrorCode::InvalidPartitions);
    assert_eq!(create(&mut c, 2, "b", 1, 4).topics[0].error_code, ErrorCode::InvalidReplicationFactor);

    let req = DeleteTopicsRequest::default().with_topic_names(vec![TopicName::from("a"), TopicName::from("zz")]);
    let ResponseBody::DeleteTopics(r) = call(&mut c, 1, 5, req) else { panic!() };
    assert_eq!(r.responses[0].error_code, ErrorCode::None);
    assert_eq!(r.responses[1].error_code, ErrorCode::UnknownTopicOrPartition);
    assert!(c.topic_id("a").is_none());
}

#[test]
fn find_coordinator_is_deterministic_single_and_batched() {
    let mut c = cluster();
    c.set_address(2, "h2", 1234);
    let expect = super::find_coordinator::coordinator_for(&c, "group-x").unwrap();
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from("group-x"));
    let ResponseBody::FindCoordinator(r) = call(&mut c, 1, 3, req) else { panic!() };
    assert_eq!(*r.node_id, expect);
    let req = FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![StrBytes::from("group-x"), StrBytes::from("group-y")]);
    let ResponseBody::FindCoordinator(r) = call(&mut c, 1, 6, req) else { panic!() };
    assert_eq!(*r.coordinators[0].node_id, expect);
    assert_eq!(r.coordinators.len(), 2);
    for co in &r.coordinators {
        let want_host = if *co.node_id == 2 { "h2" } else { "localhost" };
        assert_eq!(co.host.as_str(), want_host);
    }
}

#[test]
fn unimplemented_api_and_malformed_frames_are_errors() {
    let mut c = cluster();
    let err = call_raw(&mut c, 1, 2, DescribeDelegationTokenRequest::default().into()).unwrap_err();
    assert_eq!(err, FakeError::UnsupportedApi(ApiKey::DescribeDelegationToken));
    assert!(c.answer(Instant::now(), 1, Bytes::from_static(&[0, 3, 0])).is_err());
    assert!(c.answer(Instant::now(), 9, Bytes::from_static(&[0, 3, 0, 12, 0, 0, 0, 1])).is_err());
}

#[test]
fn describe_log_dirs_reports_the_replicas_each_broker_hosts() {
    let mut c = cluster();
    let id = create(&mut c, 7, "sized", 3, 1).topics[0].topic_id;
    let leader = c.leader("sized", 0).unwrap();
    let records = batch(&["a", "bb", "ccc"]);
    let ResponseBody::Produce(_) = call(&mut c, leader, 9, produce_req(9, "sized", id, 0, -1, records.clone())) else {
        panic!()
    };
    for broker in c.broker_ids() {
        let ResponseBody::DescribeLogDirs(r) =
            call(&mut c, broker, 4, DescribeLogDirsRequest::default().with_topics(None))
        else {
            panic!()
        };
        assert_eq!(r.results.len(), 1);
        let dir = &r.results[0];
        let hosted: Vec<(i32, i64)> = dir
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.partition_size)))
            .collect();
        let expected: Vec<(i32, i64)> = (0..3)
            .filter(|p| c.leader("sized", *p) == Some(broker))
            .map(|p| (p, if p == 0 { records.len() as i64 } else { 0 }))
            .collect();
        assert_eq!(hosted, expected, "broker {broker}");
        assert_eq!(dir.total_bytes - dir.usable_bytes, expected.iter().map(|(_, s)| s).sum::<i64>());
    }
}
