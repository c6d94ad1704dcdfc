//! The blocking client's adapter of the live suites (`live.rs`, `live_security.rs`).

use sansa::cluster::ClusterMetadata;
use sansa::protocol::{RequestBody, TopicName};
use sansa::{BrokerVersions, Config, RequestError, Response, Target};
use sansa_blocking::KafkaClient;
use sansa_conformance::live::{LiveClient, LiveRuntime};

pub struct Runtime;

pub struct Live(KafkaClient);

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
        let pending: Vec<_> = requests.into_iter().map(|(t, b)| self.0.submit(t, b)).collect();
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

    fn handle(&self) -> &sansa::driver::Handle {
        &self.0
    }
}
