//! The async-std/smol adapter of the live suites (`live.rs`, `live_security.rs`): a blocking
//! face over the async client, on the executor the suite names.

use std::time::Duration;

use sansa::cluster::ClusterMetadata;
use sansa::consumer::{ConsumeError, ConsumerRecord};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{BrokerVersions, Config, RequestError, Response, Target};
use sansa_async_std::KafkaClient;
use sansa_conformance::live::{LiveClient, LiveRuntime};

use crate::common::{join_all, Exec};

pub struct Runtime(pub Exec);

pub struct Live {
    client: KafkaClient,
    exec: Exec,
}

impl LiveRuntime for Runtime {
    type Client = Live;

    fn connect(&self, config: Config) -> Live {
        Live { client: self.0.connect(config).expect("valid config"), exec: self.0 }
    }

    fn member_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(std::env::current_exe().expect("the test binary"));
        command.args(["live_consumer_member", "--exact", "--ignored", "--nocapture", "--test-threads", "1"]);
        command.env(
            "SANSA_LIVE_EXEC",
            match self.0 {
                Exec::AsyncStd => "async-std",
                Exec::Smol => "smol",
            },
        );
        command
    }
}

impl LiveClient for Live {
    fn request(&self, target: Target, body: RequestBody) -> Result<Response, RequestError> {
        self.exec.block_on(self.client.request(target, body))
    }

    fn request_many(&self, requests: Vec<(Target, RequestBody)>) -> Vec<Result<Response, RequestError>> {
        let futures = requests.into_iter().map(|(t, b)| self.client.request(t, b)).collect();
        self.exec.block_on(join_all(futures))
    }

    fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        self.exec.block_on(self.client.metadata(topics))
    }

    fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        self.exec.block_on(self.client.check_version(target))
    }

    fn close(&self) {
        self.exec.block_on(self.client.close())
    }

    fn handle(&self) -> &sansa::driver::Handle {
        &self.client
    }

    fn poll(&self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        self.exec.block_on(self.client.poll(max, timeout))
    }
}
