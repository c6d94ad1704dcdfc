//! The blocking driver against a scripted broker on a loopback TCP socket.

use std::thread;
use std::time::{Duration, Instant};

use sansa::protocol::messages::{DescribeClusterRequest, ListGroupsRequest, MetadataRequest};
use sansa::protocol::{ApiKey, BrokerId, ResponseBody};
use sansa::{CloseCause, Config, ConfigError, RequestError, Target};
use sansa_blocking::{KafkaClient, PendingResponse};
use sansa_conformance::loopback::{refusing_address, ScriptedBroker, TRICKLED_GROUPS};

fn broker(silent: bool) -> ScriptedBroker {
    ScriptedBroker::start(silent)
}

fn client(addr: impl ToString, timeout: Duration) -> KafkaClient {
    let config = Config::new(&addr.to_string()).expect("address").with_request_timeout(timeout);
    KafkaClient::connect(config).expect("config")
}

fn empty_metadata() -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(vec![]))
}

const SLACK: Duration = Duration::from_millis(1500);

#[test]
fn handles_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    fn check_send<T: Send + 'static>() {}
    check::<KafkaClient>();
    check_send::<PendingResponse>();
}

/// An answer of about a megabyte that the broker writes in pieces, with pauses, arrives
/// whole.
#[test]
fn a_large_answer_written_slowly_arrives_whole() {
    let b = ScriptedBroker::start_trickling();
    let client = client(b.addr, Duration::from_secs(20));
    let r = client.request(Target::AnyBroker, ListGroupsRequest::default()).expect("list groups");
    let Some(ResponseBody::ListGroups(listed)) = r.body else { panic!("{:?}", r.body) };
    assert_eq!(listed.groups.len(), TRICKLED_GROUPS);
    client.close();
}

#[test]
fn check_version_metadata_requests_and_close() {
    let b = broker(false);
    let client = client(b.addr, Duration::from_secs(10));

    let v = client.check_version(Target::AnyBroker).expect("versions");
    assert!(v.api_versions.get(ApiKey::Produce.as_i16()).is_some());

    let md = client.metadata(None).expect("metadata");
    assert_eq!(md.cluster_id.as_deref(), Some("loopback"));
    assert_eq!(md.controller, Some(BrokerId(1)));
    assert_eq!(md.brokers.len(), 1);

    let r = client.request(Target::Broker(BrokerId(1)), DescribeClusterRequest::default()).expect("request");
    assert!(matches!(r.body, Some(ResponseBody::DescribeCluster(_))), "{r:?}");
    let r = client.request_version(Target::Controller, empty_metadata(), 4).expect("pinned version");
    assert_eq!(r.version, 4);

    // 200 requests submitted before any is awaited.
    let pending: Vec<PendingResponse> = (0..200).map(|_| client.submit(Target::AnyBroker, empty_metadata())).collect();
    for p in pending {
        let r = p.wait().expect("pipelined request");
        assert!(matches!(r.body, Some(ResponseBody::Metadata(_))));
    }

    let other = client.clone();
    client.close();
    b.closed.recv_timeout(Duration::from_secs(5)).expect("connection closed by close()");
    assert_eq!(other.metadata(None), Err(RequestError::ClientClosed));
    assert!(matches!(other.request(Target::AnyBroker, empty_metadata()), Err(RequestError::ClientClosed)));
    other.close(); // a second close returns at once
}

#[test]
fn many_threads_share_one_client() {
    let b = broker(false);
    let client = client(b.addr, Duration::from_secs(10));
    // Borrowed across scoped threads (Sync) and cloned into spawned ones (Clone + Send).
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    let r = client.request(Target::AnyBroker, empty_metadata()).expect("request");
                    assert!(matches!(r.body, Some(ResponseBody::Metadata(_))));
                }
            });
        }
    });
    let joins: Vec<_> = (0..8)
        .map(|i| {
            let c = client.clone();
            thread::spawn(move || {
                let pending: Vec<_> = (0..25).map(|_| c.submit(Target::AnyBroker, empty_metadata())).collect();
                for p in pending {
                    p.wait().expect("request");
                }
                if i % 2 == 0 {
                    c.check_version(Target::Broker(BrokerId(1))).expect("versions");
                } else {
                    c.metadata(None).expect("metadata");
                }
            })
        })
        .collect();
    for j in joins {
        j.join().expect("thread");
    }
    client.close();
}

#[test]
fn dropping_every_handle_closes_the_connections() {
    let b = broker(false);
    let client = client(b.addr, Duration::from_secs(10));
    let second = client.clone();
    client.check_version(Target::AnyBroker).expect("versions");
    let pending = second.submit(Target::AnyBroker, empty_metadata());
    drop(client);
    drop(second);
    // Requests in flight still complete, then the driver closes its sockets.
    pending.wait().expect("answered after the handles were dropped");
    b.closed.recv_timeout(Duration::from_secs(5)).expect("connection closed");
}

#[test]
fn refused_connection_is_typed_and_timely() {
    let addr = refusing_address();
    let timeout = Duration::from_secs(2);
    let client = client(addr, timeout);
    let started = Instant::now();
    let err = client.metadata(None).expect_err("nothing listens there");
    assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::Refused, .. }), "{err:?}");
    assert!(started.elapsed() <= timeout + SLACK, "took {:?}", started.elapsed());
    client.close();
}

#[test]
fn unknown_host_is_typed_and_timely() {
    let timeout = Duration::from_secs(2);
    let client = client("no-such-host.invalid:9092", timeout);
    let started = Instant::now();
    let err = client.check_version(Target::AnyBroker).expect_err("does not resolve");
    assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::UnknownHost(_), .. }), "{err:?}");
    assert!(started.elapsed() <= timeout + SLACK, "took {:?}", started.elapsed());
    client.close();
}

#[test]
fn silent_peer_times_out() {
    let b = broker(true);
    let timeout = Duration::from_secs(1);
    let client = client(b.addr, timeout);
    let started = Instant::now();
    let pending = client.submit(Target::AnyBroker, empty_metadata());
    assert!(pending.wait_timeout(Duration::from_millis(200)).is_none(), "no answer yet");
    let err = pending.wait().expect_err("the peer never answers");
    assert!(
        matches!(err, RequestError::Timeout(_) | RequestError::Unreachable { cause: CloseCause::Local(_), .. }),
        "{err:?}"
    );
    assert!(started.elapsed() >= timeout, "took {:?}", started.elapsed());
    assert!(started.elapsed() <= timeout + SLACK, "took {:?}", started.elapsed());
    client.close();
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

#[test]
fn a_driver_thread_ended_by_a_panicking_callback_leaves_calls_answered() {
    let client =
        KafkaClient::from_properties([("bootstrap.servers", "127.0.0.1:9"), ("max.request.size", "1000")]).unwrap();
    let record = sansa::producer::ProducerRecord::new("t", vec![0u8; 2_000]);
    // Too large: its outcome comes at once, on the driver thread, whose callback panics.
    client.send_with_callback_blocking(record, |_| panic!("planted in a callback")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        while !client.metrics_blocking().is_empty() {
            thread::sleep(Duration::from_millis(10));
        }
        tx.send(())
    });
    let gone = rx.recv_timeout(Duration::from_secs(5));
    assert!(gone.is_ok(), "the client reports itself gone instead of hanging");
}
