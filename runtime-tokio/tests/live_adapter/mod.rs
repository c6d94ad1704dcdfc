//! The tokio adapter of the live suites (`live.rs`, `live_security.rs`): a blocking face over
//! the async client, on one shared runtime.

use std::sync::OnceLock;
use std::time::Duration;

use sansa::cluster::ClusterMetadata;
use sansa::consumer::{ConsumeError, ConsumerRecord};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{BrokerVersions, Config, RequestError, Response, Target};
use sansa_conformance::live::{LiveClient, LiveRuntime};
use sansa_tokio::KafkaClient;

use crate::common;

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime"))
}

pub struct Runtime;

pub struct Blocking(KafkaClient);

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
