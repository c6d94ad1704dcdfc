//! The live security scenarios (TLS and SASL listeners of `kafka up --security`) on this
//! runtime; `./test.sh` sets `KAFKA_SECURITY_CLIENTS`.

mod common;

use common::{join_all, Exec};
use sansa::cluster::ClusterMetadata;
use sansa::protocol::{RequestBody, TopicName};
use sansa::{BrokerVersions, Config, RequestError, Response, Target};
use sansa_async_std::KafkaClient;
use sansa_conformance::live::{LiveClient, LiveRuntime};
use sansa_conformance::live_security::run_all;

struct Runtime(Exec);

struct Live {
    client: KafkaClient,
    exec: Exec,
}

impl LiveRuntime for Runtime {
    type Client = Live;

    fn connect(&self, config: Config) -> Live {
        Live { client: self.0.connect(config).expect("valid config"), exec: self.0 }
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
}

#[test]
#[ignore = "needs Kafka with --security: ./test.sh runs it"]
fn live_security_suite_async_std() {
    run_all(&Runtime(Exec::AsyncStd));
}

#[test]
#[ignore = "needs Kafka with --security: ./test.sh runs it"]
fn live_security_suite_smol() {
    run_all(&Runtime(Exec::Smol));
}
