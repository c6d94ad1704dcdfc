//! The driver over real loopback sockets, against a scripted broker on std threads.

mod common;

use std::time::{Duration, Instant};

use sansa::protocol::messages::{ListGroupsRequest, MetadataRequest};
use sansa::protocol::{ApiKey, BrokerId, ResponseBody};
use sansa::{CloseCause, Config, RequestError, Target};
use sansa_conformance::loopback::{refusing_address, ScriptedBroker, TRICKLED_GROUPS};
use sansa_tokio::KafkaClient;

const TIMEOUT: Duration = Duration::from_millis(1500);
const SLACK: Duration = Duration::from_millis(1000);

/// The shared scripted broker, with the helpers these tests need.
struct Broker(ScriptedBroker);

impl Broker {
    fn start(silent: bool) -> Broker {
        Broker(ScriptedBroker::start(silent))
    }

    fn config(&self) -> Config {
        Config::new(&self.0.addr.to_string()).unwrap().with_request_timeout(TIMEOUT)
    }

    /// Waits until the client hung up every connection it opened.
    async fn wait_all_closed(&self) {
        let until = Instant::now() + Duration::from_secs(3);
        while self.0.open_connections() > 0 {
            assert!(Instant::now() < until, "{} connections still open", self.0.open_connections());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_loopback() {
    let broker = Broker::start(false);
    let client = KafkaClient::connect(broker.config()).unwrap();

    let versions = client.check_version(Target::AnyBroker).await.unwrap();
    assert!(versions.api_versions.get(ApiKey::Produce.as_i16()).is_some());

    let md = client.metadata(None).await.unwrap();
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.controller, Some(BrokerId(1)));

    let r = client.request(Target::Broker(BrokerId(1)), ListGroupsRequest::default()).await.unwrap();
    assert!(matches!(r.body, Some(ResponseBody::ListGroups(_))));
    let r = client.request_version(Target::AnyBroker, MetadataRequest::default(), 9).await.unwrap();
    assert_eq!(r.version, 9);
    // The futures are Send, so they can be spawned.
    let spawned = tokio::spawn({
        let client = client.clone();
        async move { client.check_version(Target::Broker(BrokerId(1))).await }
    });
    assert!(spawned.await.unwrap().is_ok());

    // 200 at once, from a clone: every one answered, in order of submission.
    let other = client.clone();
    let results = common::join_all(
        (0..200).map(|_| other.request(Target::Broker(BrokerId(1)), MetadataRequest::default().with_topics(None))),
    )
    .await;
    assert_eq!(results.len(), 200);
    assert!(results.iter().all(|r| matches!(r, Ok(r) if matches!(r.body, Some(ResponseBody::Metadata(_))))));

    client.close().await;
    broker.wait_all_closed().await;
    assert_eq!(other.metadata(None).await, Err(RequestError::ClientClosed));
    other.close().await; // a second close returns too
}

/// An answer of about a megabyte that the broker writes in pieces, with pauses, arrives
/// whole: while a frame comes in, the read waits for the rest of it, never for more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_written_slowly_arrives_whole() {
    let broker = ScriptedBroker::start_trickling();
    let config = Config::new(&broker.addr.to_string()).unwrap().with_request_timeout(Duration::from_secs(20));
    let client = KafkaClient::connect(config).unwrap();
    let r = client.request(Target::AnyBroker, ListGroupsRequest::default()).await.unwrap();
    let Some(ResponseBody::ListGroups(listed)) = r.body else { panic!("{:?}", r.body) };
    assert_eq!(listed.groups.len(), TRICKLED_GROUPS);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_closes_the_connections() {
    let broker = Broker::start(false);
    let client = KafkaClient::from_properties([("bootstrap.servers", &*broker.0.addr.to_string())]).unwrap();
    client.metadata(None).await.unwrap();
    assert_eq!(broker.0.open_connections(), 1);
    drop(client);
    broker.wait_all_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_typed_and_timely() {
    let addr = refusing_address();
    let client = KafkaClient::connect(Config::new(&addr.to_string()).unwrap().with_request_timeout(TIMEOUT)).unwrap();
    let started = Instant::now();
    let err = client.metadata(None).await.unwrap_err();
    assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::Refused, .. }), "{err:?}");
    assert!(started.elapsed() <= TIMEOUT + SLACK, "took {:?}", started.elapsed());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_typed_and_timely() {
    let config = Config::new("no-such-host.invalid:9092").unwrap().with_request_timeout(TIMEOUT);
    let client = KafkaClient::connect(config).unwrap();
    let started = Instant::now();
    let err = client.check_version(Target::AnyBroker).await.unwrap_err();
    assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::UnknownHost(_), .. }), "{err:?}");
    assert!(started.elapsed() <= TIMEOUT + SLACK, "took {:?}", started.elapsed());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_times_out() {
    let broker = Broker::start(true);
    let client = KafkaClient::connect(broker.config()).unwrap();
    let started = Instant::now();
    let err = client.request(Target::AnyBroker, MetadataRequest::default()).await.unwrap_err();
    assert!(
        matches!(err, RequestError::Timeout(_) | RequestError::Unreachable { cause: CloseCause::Local(_), .. }),
        "{err:?}"
    );
    assert!(started.elapsed() >= TIMEOUT - Duration::from_millis(50), "took {:?}", started.elapsed());
    assert!(started.elapsed() <= TIMEOUT + SLACK, "took {:?}", started.elapsed());
    client.close().await;
    broker.wait_all_closed().await;
}

#[test]
fn config_errors_come_back_before_anything_runs() {
    fn handle<T: Clone + Send + Sync + 'static>() {}
    handle::<KafkaClient>();
    let err = KafkaClient::from_properties([("client.id", "x")]).unwrap_err();
    assert_eq!(err, sansa::ConfigError::NoBootstrapServers);
}

#[test]
fn a_config_that_validate_refuses_is_refused_before_anything_runs() {
    assert_eq!(KafkaClient::connect(Config::default()).err(), Some(sansa::ConfigError::NoBootstrapServers));
    let mut no_in_flight = Config::new("127.0.0.1:9092").unwrap();
    no_in_flight.max_in_flight_per_connection = 0;
    assert!(matches!(
        KafkaClient::connect(no_in_flight),
        Err(sansa::ConfigError::InvalidValue { key, .. }) if key == "max.in.flight.requests.per.connection"
    ));
}
