//! The async-io driver against a scripted broker on a loopback TCP socket, every scenario
//! under both async-std and smol.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{join_all, Exec};
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::{DescribeClusterRequest, ListGroupsRequest, MetadataRequest, ProduceRequest};
use sansa::protocol::{ApiKey, BrokerId, ResponseBody};
use sansa::{CloseCause, Config, ConfigError, RequestError, Target};
use sansa_async_std::{Driver, KafkaClient};
use sansa_conformance::loopback::{refusing_address, ScriptedBroker, TRICKLED_GROUPS};

fn broker(silent: bool) -> ScriptedBroker {
    ScriptedBroker::start(silent)
}

fn config(addr: impl ToString, timeout: Duration) -> Config {
    Config::new(&addr.to_string()).expect("address").with_request_timeout(timeout)
}

fn empty_metadata() -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(vec![]))
}

const SLACK: Duration = Duration::from_millis(1500);

/// Each scenario becomes a module with one test per executor.
macro_rules! under_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn async_std() {
                super::$name(super::Exec::AsyncStd);
            }
            #[test]
            fn smol() {
                super::$name(super::Exec::Smol);
            }
        }
    )*};
}

under_both!(
    check_version_metadata_requests_and_close,
    many_clones_at_once,
    large_requests_are_written_whole,
    a_large_answer_written_slowly_arrives_whole,
    dropping_every_handle_ends_the_driver,
    refused_connection_is_typed_and_timely,
    unknown_host_is_typed_and_timely,
    silent_peer_times_out,
);

#[test]
fn handles_and_driver_are_send() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    fn check_send<T: Send>(_: &T) {}
    fn check_static<T: Send + 'static>(_: &T) {}
    check::<KafkaClient>();
    let (client, driver) = KafkaClient::connect(config("127.0.0.1:9", Duration::from_secs(1))).expect("config");
    check_static::<Driver>(&driver);
    check_send(&client.request(Target::AnyBroker, empty_metadata()));
    check_send(&client.metadata(None));
    check_send(&client.close());
}

fn check_version_metadata_requests_and_close(exec: Exec) {
    let b = broker(false);
    let (client, driver) = KafkaClient::connect(config(b.addr, Duration::from_secs(10))).expect("config");
    let driver = exec.spawn(driver);
    exec.block_on(async {
        let v = client.check_version(Target::AnyBroker).await.expect("versions");
        assert!(v.api_versions.get(ApiKey::Produce.as_i16()).is_some());

        let md = client.metadata(None).await.expect("metadata");
        assert_eq!(md.cluster_id.as_deref(), Some("loopback"));
        assert_eq!(md.controller, Some(BrokerId(1)));
        assert_eq!(md.brokers.len(), 1);

        let r = client.request(Target::Broker(BrokerId(1)), DescribeClusterRequest::default()).await.expect("request");
        assert!(matches!(r.body, Some(ResponseBody::DescribeCluster(_))), "{r:?}");
        let r = client.request_version(Target::Controller, empty_metadata(), 4).await.expect("pinned version");
        assert_eq!(r.version, 4);

        // 200 requests submitted before any is awaited.
        let futures = (0..200).map(|_| client.request(Target::AnyBroker, empty_metadata())).collect();
        for r in join_all(futures).await {
            assert!(matches!(r.expect("pipelined request").body, Some(ResponseBody::Metadata(_))));
        }

        let other = client.clone();
        client.close().await;
        driver.await; // the driver finishes once closed
        b.closed.recv_timeout(Duration::from_secs(5)).expect("connection closed by close()");
        assert_eq!(other.metadata(None).await, Err(RequestError::ClientClosed));
        assert!(matches!(other.request(Target::AnyBroker, empty_metadata()).await, Err(RequestError::ClientClosed)));
        other.close().await; // a second close returns at once
    });
}

fn many_clones_at_once(exec: Exec) {
    let b = broker(false);
    let client = exec.connect(config(b.addr, Duration::from_secs(10))).expect("config");
    exec.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let c = client.clone();
                exec.spawn(async move {
                    for _ in 0..25 {
                        let r = c.request(Target::AnyBroker, empty_metadata()).await.expect("request");
                        assert!(matches!(r.body, Some(ResponseBody::Metadata(_))));
                    }
                    if i % 2 == 0 {
                        c.check_version(Target::Broker(BrokerId(1))).await.expect("versions");
                    } else {
                        c.metadata(None).await.expect("metadata");
                    }
                })
            })
            .collect();
        join_all(tasks).await;
        client.close().await;
    });
}

/// Requests far larger than the socket buffers: writes go out in pieces without stalling
/// the driver.
fn large_requests_are_written_whole(exec: Exec) {
    let b = broker(false);
    let client = exec.connect(config(b.addr, Duration::from_secs(20))).expect("config");
    let records = Bytes::from(vec![7u8; 8 << 20]);
    let produce = ProduceRequest::default().with_acks(-1).with_topic_data(vec![TopicProduceData::default()
        .with_name("t".into())
        .with_partition_data(vec![PartitionProduceData::default().with_records(Some(records))])]);
    exec.block_on(async {
        let mut futures = vec![];
        for _ in 0..3 {
            futures.push(client.request(Target::AnyBroker, produce.clone()));
        }
        let small = client.metadata(None);
        let (results, md) = futures_lite::future::zip(join_all(futures), small).await;
        md.expect("metadata between large requests");
        for r in results {
            assert!(matches!(r.expect("produce").body, Some(ResponseBody::Produce(_))));
        }
        client.close().await;
    });
}

/// An answer of about a megabyte that the broker writes in pieces, with pauses, arrives
/// whole: while a frame comes in, the read waits for the rest of it, never for more.
fn a_large_answer_written_slowly_arrives_whole(exec: Exec) {
    let b = ScriptedBroker::start_trickling();
    let client = exec.connect(config(b.addr, Duration::from_secs(20))).expect("config");
    exec.block_on(async {
        let r = client.request(Target::AnyBroker, ListGroupsRequest::default()).await.expect("list groups");
        let Some(ResponseBody::ListGroups(listed)) = r.body else { panic!("{:?}", r.body) };
        assert_eq!(listed.groups.len(), TRICKLED_GROUPS);
        client.close().await;
    });
}

fn dropping_every_handle_ends_the_driver(exec: Exec) {
    let b = broker(false);
    let (client, driver) = KafkaClient::connect(config(b.addr, Duration::from_secs(10))).expect("config");
    let driver = exec.spawn(driver);
    exec.block_on(async {
        let second = client.clone();
        client.check_version(Target::AnyBroker).await.expect("versions");
        second.request(Target::AnyBroker, empty_metadata()).await.expect("request");
        drop(client);
        drop(second);
        driver.await;
    });
    b.closed.recv_timeout(Duration::from_secs(5)).expect("connection closed");
}

fn refused_connection_is_typed_and_timely(exec: Exec) {
    let addr = refusing_address();
    let timeout = Duration::from_secs(2);
    let client = exec.connect(config(addr, timeout)).expect("config");
    exec.block_on(async {
        let started = Instant::now();
        let err = client.metadata(None).await.expect_err("nothing listens there");
        assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::Refused, .. }), "{err:?}");
        assert!(started.elapsed() <= timeout + SLACK, "took {:?}", started.elapsed());
        client.close().await;
    });
}

fn unknown_host_is_typed_and_timely(exec: Exec) {
    let timeout = Duration::from_secs(2);
    let client = exec.connect(config("no-such-host.invalid:9092", timeout)).expect("config");
    exec.block_on(async {
        let started = Instant::now();
        let err = client.check_version(Target::AnyBroker).await.expect_err("does not resolve");
        assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::UnknownHost(_), .. }), "{err:?}");
        assert!(started.elapsed() <= timeout + SLACK, "took {:?}", started.elapsed());
        client.close().await;
    });
}

fn silent_peer_times_out(exec: Exec) {
    let b = broker(true);
    let timeout = Duration::from_secs(1);
    let client = exec.connect(config(b.addr, timeout)).expect("config");
    exec.block_on(async {
        let started = Instant::now();
        let err = client.metadata(None).await.expect_err("the peer never answers");
        assert!(
            matches!(err, RequestError::Timeout(_) | RequestError::Unreachable { cause: CloseCause::Local(_), .. }),
            "{err:?}"
        );
        assert!(started.elapsed() >= timeout, "took {:?}", started.elapsed());
        assert!(started.elapsed() <= timeout + SLACK, "took {:?}", started.elapsed());
        client.close().await;
    });
}

#[test]
fn bad_config_is_an_error() {
    assert_eq!(KafkaClient::connect(Config::default()).err(), Some(ConfigError::NoBootstrapServers));
    let err = KafkaClient::from_properties([("bootstrap.servers", "localhost:9092"), ("request.timeout.ms", "soon")]);
    assert!(matches!(err, Err(ConfigError::InvalidValue { .. })));
    assert!(KafkaClient::from_properties([("bootstrap.servers", "localhost:9092")]).is_ok());
}

#[test]
fn a_config_that_validate_refuses_is_refused() {
    let mut no_in_flight = Config::new("localhost:9092").expect("config");
    no_in_flight.max_in_flight_per_connection = 0;
    assert!(matches!(
        KafkaClient::connect(no_in_flight),
        Err(ConfigError::InvalidValue { key, .. }) if key == "max.in.flight.requests.per.connection"
    ));
    let zero_timeout = Config::new("localhost:9092").expect("config").with_request_timeout(Duration::ZERO);
    assert!(matches!(
        KafkaClient::connect(zero_timeout),
        Err(ConfigError::InvalidValue { key, .. }) if key == "request.timeout.ms"
    ));
}
