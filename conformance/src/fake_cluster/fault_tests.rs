//! Fault injection and topology changes, through real frames on registered connections and a
//! virtual clock.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_response, encode_request, FrameDecoder};
use sansa::protocol::kafka_release::{advertised_by, ClusterMode, KafkaRelease};
use sansa::protocol::messages::metadata::request::MetadataRequestTopic;
use sansa::protocol::messages::{ApiVersionsRequest, MetadataRequest, MetadataResponse};
use sansa::protocol::{ApiKey, ErrorCode, RequestBody, ResponseBody, TopicName};

use super::{ConnectError, FakeCluster, FakeClusterConfig, FakeConnId, FakeError, FakeOutput, Fault, FaultAction};

struct Harness {
    cluster: FakeCluster,
    now: Instant,
    next_correlation: i32,
}

impl Harness {
    fn new() -> Harness {
        let mut cluster = FakeCluster::new(FakeClusterConfig { auto_create_topics: false, ..Default::default() });
        cluster.create_topic("t", 3, 3);
        Harness { cluster, now: Instant::now(), next_correlation: 0 }
    }

    fn connect(&mut self, broker: i32, conn: u64) -> FakeConnId {
        let conn = FakeConnId(conn);
        self.cluster.handle_connect(self.now, broker, conn).expect("broker accepts");
        conn
    }

    /// Sends a request; returns its correlation id.
    fn send(&mut self, conn: FakeConnId, version: i16, body: impl Into<RequestBody>) -> Result<i32, FakeError> {
        self.next_correlation += 1;
        let mut buf = BytesMut::new();
        encode_request(&mut buf, self.next_correlation, Some("faults"), version, &body.into()).unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        self.cluster.handle_frame(self.now, conn, frame).map(|()| self.next_correlation)
    }

    fn outputs(&mut self) -> Vec<FakeOutput> {
        std::iter::from_fn(|| self.cluster.poll_output()).collect()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.cluster.handle_timeout(self.now);
    }
}

fn decode(bytes: &Bytes, key: ApiKey, version: i16) -> Vec<(i32, ResponseBody)> {
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    while let Some(frame) = FrameDecoder::default().decode(&mut buf).unwrap() {
        out.push(decode_response(frame, key, version).unwrap());
    }
    out
}

fn metadata_request() -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName::from("t")))]))
}

fn only_metadata(outputs: &[FakeOutput], conn: FakeConnId) -> Vec<(i32, MetadataResponse)> {
    outputs
        .iter()
        .flat_map(|o| match o {
            FakeOutput::Send { conn: c, bytes } if *c == conn => decode(bytes, ApiKey::Metadata, 12),
            other => panic!("unexpected {other:?}"),
        })
        .map(|(corr, body)| match body {
            ResponseBody::Metadata(m) => (corr, m),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn delay_holds_the_answer_and_the_requests_behind_it() {
    let mut h = Harness::new();
    let conn = h.connect(1, 1);
    h.cluster.inject(Fault::new(FaultAction::Delay(Duration::from_millis(100))).on_api(ApiKey::Metadata));
    let first = h.send(conn, 12, metadata_request()).unwrap();
    let second = h.send(conn, 12, metadata_request()).unwrap();
    assert!(h.outputs().is_empty(), "nothing before the delay ends");
    assert_eq!(h.cluster.poll_timeout(), Some(h.now + Duration::from_millis(100)));
    h.advance(Duration::from_millis(99));
    assert!(h.outputs().is_empty());
    h.advance(Duration::from_millis(1));
    let answers = only_metadata(&h.outputs(), conn);
    let order: Vec<i32> = answers.iter().map(|(c, _)| *c).collect();
    assert_eq!(order, vec![first, second], "answers in request order");
    assert!(!h.cluster.has_faults(), "a one-shot rule expires");
}

#[test]
fn disconnect_closes_without_answering() {
    let mut h = Harness::new();
    let conn = h.connect(2, 7);
    h.cluster.inject(Fault::new(FaultAction::Disconnect).on_broker(2).on_api(ApiKey::Metadata));
    h.send(conn, 12, metadata_request()).unwrap();
    assert_eq!(h.outputs(), vec![FakeOutput::Close { conn }]);
    assert!(!h.cluster.is_connected(conn));
    assert_eq!(h.send(conn, 12, metadata_request()), Err(FakeError::UnknownConnection(conn)));
    // Another broker is not affected.
    let other = h.connect(1, 8);
    h.send(other, 12, metadata_request()).unwrap();
    assert_eq!(only_metadata(&h.outputs(), other).len(), 1);
}

#[test]
fn swallow_never_answers_and_blocks_the_connection() {
    let mut h = Harness::new();
    let conn = h.connect(1, 1);
    h.cluster.inject(Fault::new(FaultAction::Swallow).on_api(ApiKey::Metadata));
    h.send(conn, 12, metadata_request()).unwrap();
    h.send(conn, 12, metadata_request()).unwrap();
    h.advance(Duration::from_secs(3600));
    assert!(h.outputs().is_empty());
    assert_eq!(h.cluster.poll_timeout(), None);
    // A fresh connection is served.
    let fresh = h.connect(1, 2);
    h.send(fresh, 12, metadata_request()).unwrap();
    assert_eq!(only_metadata(&h.outputs(), fresh).len(), 1);
}

#[test]
fn throttle_sets_throttle_time_ms() {
    let mut h = Harness::new();
    let conn = h.connect(1, 1);
    h.cluster.inject(Fault::new(FaultAction::Throttle(Duration::from_millis(250))).times(2));
    for expected in [250, 250, 0] {
        h.send(conn, 12, metadata_request()).unwrap();
        let answers = only_metadata(&h.outputs(), conn);
        assert_eq!(answers[0].1.throttle_time_ms, expected);
    }
}

#[test]
fn injected_errors_apply_per_topic_or_top_level() {
    let mut h = Harness::new();
    let conn = h.connect(1, 1);
    h.cluster.inject(Fault::error(ErrorCode::LeaderNotAvailable).on_api(ApiKey::Metadata).on_topic("t"));
    h.send(conn, 12, metadata_request()).unwrap();
    let answers = only_metadata(&h.outputs(), conn);
    assert_eq!(answers[0].1.topics[0].error_code, ErrorCode::LeaderNotAvailable);
    h.send(conn, 12, metadata_request()).unwrap();
    let answers = only_metadata(&h.outputs(), conn);
    assert_eq!(answers[0].1.topics[0].error_code, ErrorCode::None, "the rule was used up");

    // ApiVersions has a top-level error code: the whole answer carries the error.
    h.cluster.inject(Fault::error(ErrorCode::UnknownServerError).on_api(ApiKey::ApiVersions).always());
    for _ in 0..2 {
        h.send(conn, 3, ApiVersionsRequest::default()).unwrap();
        let out = h.outputs();
        let FakeOutput::Send { bytes, .. } = &out[0] else { panic!() };
        let (_, ResponseBody::ApiVersions(r)) = &decode(bytes, ApiKey::ApiVersions, 3)[0] else { panic!() };
        assert_eq!(r.error_code, ErrorCode::UnknownServerError);
    }
    h.cluster.clear_faults();
    assert!(!h.cluster.has_faults());
}

#[test]
fn a_stopped_broker_drops_connections_refuses_new_ones_and_loses_leadership() {
    let mut h = Harness::new();
    let led_by_2: Vec<i32> = (0..3).filter(|p| h.cluster.leader("t", *p) == Some(2)).collect();
    assert!(!led_by_2.is_empty());
    let conn = h.connect(2, 1);
    h.cluster.stop_broker(2);
    assert_eq!(h.outputs(), vec![FakeOutput::Close { conn }]);
    assert_eq!(h.cluster.handle_connect(h.now, 2, FakeConnId(2)), Err(ConnectError::BrokerDown(2)));
    for p in &led_by_2 {
        assert_ne!(h.cluster.leader("t", *p), Some(2));
        assert_eq!(h.cluster.leader_epoch("t", *p), Some(1));
    }
    let c1 = h.connect(1, 3);
    h.send(c1, 12, metadata_request()).unwrap();
    let md = only_metadata(&h.outputs(), c1).remove(0).1;
    let ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(ids, vec![1, 3]);
    for p in &md.topics[0].partitions {
        assert!(!p.isr_nodes.iter().any(|b| b.0 == 2), "a stopped broker is out of the ISR");
        assert_eq!(p.replica_nodes.len(), 3, "but still a replica");
    }
    h.cluster.start_broker(2);
    h.connect(2, 4);
    h.cluster.stop_broker(1);
    assert_eq!(h.cluster.controller_id(), 2, "the lowest live broker controls");
}

#[test]
fn offline_partitions_and_leader_moves() {
    let mut h = Harness::new();
    h.cluster.set_partition_offline("t", 0).unwrap();
    let conn = h.connect(1, 1);
    h.send(conn, 12, metadata_request()).unwrap();
    let md = only_metadata(&h.outputs(), conn).remove(0).1;
    assert_eq!(md.topics[0].partitions[0].leader_id.0, -1);
    assert_eq!(md.topics[0].partitions[0].error_code, ErrorCode::LeaderNotAvailable);
    h.cluster.move_leader("t", 0, 3).unwrap();
    assert_eq!(h.cluster.leader("t", 0), Some(3));
    assert_eq!(h.cluster.leader_epoch("t", 0), Some(2));
    assert!(h.cluster.move_leader("t", 0, 9).is_err());
    h.cluster.stop_broker(2);
    assert!(h.cluster.move_leader("t", 0, 2).is_err(), "a stopped broker cannot lead");
}

#[test]
fn emulated_releases_advertise_their_versions() {
    for release in [KafkaRelease::V2_8, KafkaRelease::V3_9, KafkaRelease::V4_3] {
        let mut h = Harness::new();
        h.cluster.emulate_release(release);
        let table = advertised_by(release, ClusterMode::KRaft).unwrap();
        for (key, lo, hi) in table {
            let Some(api) = ApiKey::from_i16(key) else { continue };
            if let Some((a, b)) = h.cluster.advertised_versions(api) {
                assert_eq!((a, b), (lo.max(api.versions().min), hi.min(api.versions().max)), "{release} {api:?}");
            }
        }
        // Fetch v13 (topic ids) arrived in 3.1: a 2.8 broker refuses it.
        let conn = h.connect(1, 1);
        let max = h.cluster.advertised_versions(ApiKey::Fetch).unwrap().1;
        if release == KafkaRelease::V2_8 {
            assert_eq!(max, 12);
        }
        if max < ApiKey::Fetch.versions().max {
            let r = h.send(conn, max + 1, sansa::protocol::messages::FetchRequest::default());
            assert_eq!(r, Err(FakeError::UnsupportedVersion(ApiKey::Fetch, max + 1)));
            assert_eq!(h.outputs(), vec![FakeOutput::Close { conn }]);
        }
    }
    let mut h = Harness::new();
    h.cluster.set_api_versions(ApiKey::Metadata, None);
    let conn = h.connect(1, 1);
    assert_eq!(h.send(conn, 12, metadata_request()), Err(FakeError::UnsupportedApi(ApiKey::Metadata)));
}

#[test]
fn injected_errors_reach_create_and_delete_topics() {
    use sansa::protocol::messages::create_topics::request::CreatableTopic;
    use sansa::protocol::messages::delete_topics::request::DeleteTopicState;
    use sansa::protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest};
    let mut h = Harness::new();
    let conn = h.connect(1, 1);
    h.cluster.inject(Fault::error(ErrorCode::NotController).on_api(ApiKey::CreateTopics).on_topic("new"));
    let create = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default().with_name(TopicName::from("new")).with_num_partitions(1).with_replication_factor(1),
        CreatableTopic::default().with_name(TopicName::from("other")).with_num_partitions(1).with_replication_factor(1),
    ]);
    h.send(conn, 7, create).unwrap();
    let out = h.outputs();
    let FakeOutput::Send { bytes, .. } = &out[0] else { panic!() };
    let (_, ResponseBody::CreateTopics(r)) = &decode(bytes, ApiKey::CreateTopics, 7)[0] else { panic!() };
    let codes: Vec<ErrorCode> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![ErrorCode::NotController, ErrorCode::None]);
    assert!(h.cluster.topic_id("new").is_none(), "a refused topic is not created");

    h.cluster.inject(Fault::error(ErrorCode::RequestTimedOut).on_api(ApiKey::DeleteTopics));
    let delete = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName::from("other")))]);
    h.send(conn, 6, delete).unwrap();
    let out = h.outputs();
    let FakeOutput::Send { bytes, .. } = &out[0] else { panic!() };
    let (_, ResponseBody::DeleteTopics(r)) = &decode(bytes, ApiKey::DeleteTopics, 6)[0] else { panic!() };
    assert_eq!(r.responses[0].error_code, ErrorCode::RequestTimedOut);
    assert!(h.cluster.topic_id("other").is_some(), "the topic survives");
}
