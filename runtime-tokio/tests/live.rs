//! The live scenario suite against a real Kafka cluster (`./test.sh` starts one), and against
//! sansa's fake cluster over loopback.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use sansa::cluster::ClusterMetadata;
use sansa::consumer::{ConsumeError, ConsumerRecord};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{BrokerVersions, Config, RequestError, Response, Target};
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_conformance::live::{run_scenarios, with_bootstrap, LiveClient, LiveRuntime};
use sansa_conformance::live_consumer::GroupKind;
use sansa_tokio::KafkaClient;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime"))
}

struct Runtime;

struct Blocking(KafkaClient);

impl LiveRuntime for Runtime {
    type Client = Blocking;

    fn connect(&self, config: Config) -> Blocking {
        let _guard = runtime().enter();
        Blocking(KafkaClient::connect(config).expect("valid config"))
    }
}

impl LiveClient for Blocking {
    fn request(&self, target: Target, body: RequestBody) -> Result<Response, RequestError> {
        runtime().block_on(self.0.request(target, body))
    }

    fn request_many(&self, requests: Vec<(Target, RequestBody)>) -> Vec<Result<Response, RequestError>> {
        runtime().block_on(common::join_all(requests.into_iter().map(|(t, b)| self.0.request(t, b))))
    }

    fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        runtime().block_on(self.0.metadata(topics))
    }

    fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        runtime().block_on(self.0.check_version(target))
    }

    fn close(&self) {
        runtime().block_on(self.0.close())
    }

    fn handle(&self) -> &sansa::driver::Handle {
        &self.0
    }

    fn poll(&self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        runtime().block_on(self.0.poll(max, timeout))
    }
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_suite() {
    sansa_conformance::live::run_all(&Runtime)
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_consumer_suite() {
    sansa_conformance::live_consumer::run_all(&Runtime, &GroupKind::ALL)
}

/// A group member the consumer suite runs in a child process (to kill it); a no-op otherwise.
#[test]
#[ignore = "run by the live consumer suite"]
fn live_consumer_member() {
    sansa_conformance::live_consumer::member_main(&Runtime)
}

#[test]
fn live_scenarios_against_the_fake_cluster() {
    let server = FakeServer::start(FakeClusterConfig::default(), "127.0.0.1", None).expect("fake cluster listens");
    with_bootstrap(server.bootstrap(), || run_scenarios(&Runtime, 3, Some(&server), 20_000));
}
