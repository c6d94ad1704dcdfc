//! End to end in-process: sansa's sans-IO `Client` against the fake cluster, with a virtual
//! clock and no sockets.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::BytesMut;
use sansa::protocol::frame::FrameDecoder;
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::{CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest};
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder};
use sansa::protocol::{BrokerId, ErrorCode, RequestBody, ResponseBody, TopicName};
use sansa::{
    BrokerAddress, Client, CloseCause, Config, ConnId, Event, Input, RequestError, RequestId, Response, Target,
    Transmit,
};

use super::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput};

struct Sim {
    client: Client,
    cluster: FakeCluster,
    now: Instant,
    by_address: BTreeMap<BrokerAddress, i32>,
    conns: BTreeMap<ConnId, (FakeConnId, BytesMut)>,
    next_conn: u64,
    events: Vec<Event>,
}

impl Sim {
    fn new() -> Self {
        let mut cluster = FakeCluster::new(FakeClusterConfig {
            brokers: 3,
            cluster_id: "sim".into(),
            default_partitions: 1,
            auto_create_topics: false,
            ..FakeClusterConfig::default()
        });
        let mut by_address = BTreeMap::new();
        for id in cluster.broker_ids() {
            let port = 19_091 + id as u16;
            cluster.set_address(id, "127.0.0.1", port);
            by_address.insert(BrokerAddress::new("127.0.0.1", port), id);
        }
        let now = Instant::now();
        let client = Client::new(Config::new("127.0.0.1:19092").unwrap().with_rng_seed(1), now);
        Sim { client, cluster, now, by_address, conns: BTreeMap::new(), next_conn: 0, events: Vec::new() }
    }

    fn run(&mut self) {
        loop {
            let mut inputs = Vec::new();
            while let Some(t) = self.client.poll_transmit(self.now) {
                match t {
                    Transmit::Open { conn, address } => match self.by_address.get(&address) {
                        Some(id) => {
                            self.next_conn += 1;
                            let fake = FakeConnId(self.next_conn);
                            if self.cluster.handle_connect(self.now, *id, fake).is_ok() {
                                self.conns.insert(conn, (fake, BytesMut::new()));
                                inputs.push(Input::Connected { conn });
                            } else {
                                inputs.push(Input::Closed { conn, cause: CloseCause::Refused });
                            }
                        }
                        None => inputs.push(Input::Closed { conn, cause: CloseCause::Refused }),
                    },
                    Transmit::Send { conn, bytes } => {
                        let Some((fake, inbound)) = self.conns.get_mut(&conn) else { continue };
                        inbound.extend_from_slice(&bytes);
                        let fake = *fake;
                        while let Some(frame) = FrameDecoder::default().decode(inbound).unwrap() {
                            self.cluster.handle_frame(self.now, fake, frame).unwrap();
                        }
                        let mut out = BytesMut::new();
                        while let Some(o) = self.cluster.poll_output() {
                            match o {
                                FakeOutput::Send { conn: c, bytes } if c == fake => out.extend_from_slice(&bytes),
                                other => panic!("unexpected output {other:?}"),
                            }
                        }

                        if !out.is_empty() {
                            inputs.push(Input::Received { conn, data: out.freeze() });
                        }
                    }
                    Transmit::Close { conn } => {
                        if let Some((fake, _)) = self.conns.remove(&conn) {
                            self.cluster.handle_disconnect(fake);
                        }
                    }
                    other => panic!("unexpected transmit {other:?}"),
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if inputs.is_empty() {
                return;
            }
            for i in inputs {
                self.client.handle_input(self.now, i);
            }
        }
    }

    #[track_caller]
    fn call(&mut self, target: Target, body: RequestBody) -> Response {
        self.try_call(target, body).expect("no request error")
    }

    #[track_caller]
    fn try_call(&mut self, target: Target, body: RequestBody) -> Result<Response, RequestError> {
        let id: RequestId = self.client.request(self.now, target, body, None);
        self.run();
        // Follow the client's timers (backoffs, refreshes) until the outcome arrives.
        for _ in 0..100 {
            let outcome = self.events.iter().find_map(|e| match e {
                Event::Response { id: i, result } if *i == id => Some(result.clone()),
                _ => None,
            });
            if let Some(outcome) = outcome {
                return outcome;
            }
            let Some(t) = self.client.poll_timeout() else { break };
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
            self.run();
        }
        panic!("no outcome for request {id:?}")
    }

    /// Closes the client's connections that the cluster closed.
    fn deliver_closes(&mut self) {
        while let Some(o) = self.cluster.poll_output() {
            let FakeOutput::Close { conn: fake } = o else { panic!("unexpected output {o:?}") };
            let Some(conn) = self.conns.iter().find(|(_, (f, _))| *f == fake).map(|(c, _)| *c) else { continue };
            self.conns.remove(&conn);
            self.client.handle_input(self.now, Input::Closed { conn, cause: CloseCause::PeerClosed });
        }
        self.run();
    }
}

#[test]
fn client_creates_produces_and_fetches_against_the_fake_cluster() {
    let mut sim = Sim::new();
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName::from("events"))
        .with_num_partitions(2)
        .with_replication_factor(-1)]);
    let r = sim.call(Target::Controller, create.into());
    let Some(ResponseBody::CreateTopics(r)) = r.body else { panic!("{r:?}") };
    assert_eq!(r.topics[0].error_code, ErrorCode::None);

    let md = sim.call(Target::AnyBroker, MetadataRequest::default().with_topics(None).into());
    let Some(ResponseBody::Metadata(md)) = md.body else { panic!() };
    let topic = md.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "events")).unwrap();
    let leader = topic.partitions[0].leader_id;
    let topic_id = topic.topic_id;

    let mut records = BytesMut::new();
    let mut enc = RecordBatchEncoder::new();
    let mut b = enc.begin(&mut records, BatchParams::new()).unwrap();
    b.append(5, None, Some(b"hello"), &[]).unwrap();
    b.append(6, None, Some(b"world"), &[]).unwrap();
    b.finish().unwrap();
    let records = records.freeze();

    // The client picks the highest common version, 13, where topics go by id.
    let produce =
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_topic_id(topic_id)
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])]);
    let produce = sim.call(Target::Broker(leader), produce.into());
    assert_eq!(produce.version, 13);
    let Some(ResponseBody::Produce(p)) = produce.body else { panic!() };
    assert_eq!(p.responses[0].partition_responses[0].error_code, ErrorCode::None);
    assert_eq!(p.responses[0].partition_responses[0].base_offset, 0);

    let fetch = FetchRequest::default().with_max_bytes(1 << 20).with_replica_id(BrokerId(-1)).with_topics(vec![
        FetchTopic::default().with_topic_id(topic_id).with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20)]),
    ]);
    let f = sim.call(Target::Broker(leader), fetch.into());
    assert!(f.version >= 13, "fetch by topic id");
    let Some(ResponseBody::Fetch(f)) = f.body else { panic!() };
    let part = &f.responses[0].partitions[0];
    assert_eq!(part.error_code, ErrorCode::None);
    assert_eq!(part.high_watermark, 2);
    let values: Vec<_> = decode_batches(part.records.clone().unwrap(), &DecodeOptions::new())
        .flat_map(|b| b.unwrap().into_records())
        .map(|r| (r.offset, r.value.unwrap()))
        .collect();
    assert_eq!(values, vec![(0, "hello".into()), (1, "world".into())]);
}

#[test]
fn a_broker_that_left_metadata_is_found_again_after_it_returns() {
    let mut sim = Sim::new();
    let ping = || MetadataRequest::default().with_topics(Some(vec![])).into();
    assert!(sim.try_call(Target::Broker(BrokerId(3)), ping()).is_ok());
    sim.cluster.stop_broker(3);
    sim.deliver_closes();
    // Metadata now lacks broker 3: a request for it fails once metadata newer than it says so.
    let md = sim.call(Target::AnyBroker, MetadataRequest::default().with_topics(None).into());
    let Some(ResponseBody::Metadata(md)) = md.body else { panic!() };
    assert_eq!(md.brokers.len(), 2);
    sim.client.refresh_metadata(sim.now, None);
    sim.run();
    sim.now += std::time::Duration::from_millis(10);
    assert!(matches!(sim.try_call(Target::Broker(BrokerId(3)), ping()), Err(RequestError::UnknownBroker(BrokerId(3)))));
    // Back again: the client's metadata is older than the next request, so it refreshes first.
    sim.cluster.start_broker(3);
    sim.now += std::time::Duration::from_millis(10);
    let r = sim.try_call(Target::Broker(BrokerId(3)), ping()).expect("broker 3 found after a refresh");
    assert_eq!(r.address.port, 19_094);
}

#[test]
fn check_version_reads_the_release_the_fake_cluster_emulates() {
    use sansa::protocol::kafka_release::KafkaRelease;
    for release in [KafkaRelease::V2_8, KafkaRelease::V3_9, KafkaRelease::V4_3] {
        let mut sim = Sim::new();
        sim.cluster.emulate_release(release);
        let id = sim.client.check_version(sim.now, Target::AnyBroker);
        sim.run();
        let versions = sim
            .events
            .iter()
            .find_map(|e| match e {
                Event::Versions { id: i, result } if *i == id => Some(result.clone()),
                _ => None,
            })
            .expect("an outcome")
            .expect("versions");
        assert_eq!(versions.release.to_string(), format!("Apache Kafka {release}"));
    }
}
