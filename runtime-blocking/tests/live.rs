//! The shared live scenarios against a real Kafka cluster (`./test.sh` sets `KAFKA_BOOTSTRAP`),
//! and the same scenarios against sansa's fake cluster over loopback, which must behave alike.

use sansa::cluster::ClusterMetadata;
use sansa::protocol::{RequestBody, TopicName};
use sansa::{BrokerVersions, Config, RequestError, Response, Target};
use sansa_blocking::KafkaClient;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_conformance::live::{run_all, run_scenarios, with_bootstrap, LiveClient, LiveRuntime};

struct Runtime;

struct Live(KafkaClient);

impl LiveRuntime for Runtime {
    type Client = Live;

    fn connect(&self, config: Config) -> Live {
        Live(KafkaClient::connect(config).expect("valid config"))
    }
}

impl LiveClient for Live {
    fn request(&self, target: Target, body: RequestBody) -> Result<Response, RequestError> {
        self.0.request(target, body)
    }

    fn request_many(&self, requests: Vec<(Target, RequestBody)>) -> Vec<Result<Response, RequestError>> {
        // Submit everything first so the requests are pipelined.
        let pending: Vec<_> = requests.into_iter().map(|(t, b)| self.0.send(t, b)).collect();
        pending.into_iter().map(|p| p.wait()).collect()
    }

    fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        self.0.metadata(topics)
    }

    fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        self.0.check_version(target)
    }

    fn close(&self) {
        self.0.close()
    }
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_suite() {
    run_all(&Runtime);
}

#[test]
fn live_scenarios_against_the_fake_cluster() {
    let server = FakeServer::start(FakeClusterConfig { brokers: 3, ..FakeClusterConfig::default() }, "127.0.0.1", None)
        .expect("fake cluster listens");
    with_bootstrap(server.bootstrap(), || run_scenarios(&Runtime, 3, false));
}
