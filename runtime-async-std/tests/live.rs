//! The shared live scenarios against a real Kafka cluster (`KAFKA_BOOTSTRAP`), once under
//! async-std and once under smol; and the same against sansa's fake cluster over loopback.

mod common;

use std::time::Duration;

use common::{join_all, Exec};
use sansa::cluster::ClusterMetadata;
use sansa::consumer::{ConsumeError, ConsumerRecord};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{BrokerVersions, Config, RequestError, Response, Target};
use sansa_async_std::KafkaClient;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_conformance::live::{run_all, run_scenarios, with_bootstrap, LiveClient, LiveRuntime};
use sansa_conformance::live_consumer::GroupKind;

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

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_suite_async_std() {
    run_all(&Runtime(Exec::AsyncStd));
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_suite_smol() {
    run_all(&Runtime(Exec::Smol));
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_consumer_suite_async_std() {
    sansa_conformance::live_consumer::run_all(&Runtime(Exec::AsyncStd), &GroupKind::ALL);
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_consumer_suite_smol() {
    // The adapter is the one async-std ran above: two group kinds are enough here, unless
    // SANSA_LIVE_CONSUMER_FULL asks for every one.
    let kinds: &[GroupKind] = if std::env::var_os("SANSA_LIVE_CONSUMER_FULL").is_some() {
        &GroupKind::ALL
    } else {
        &[GroupKind::Classic("cooperative-sticky"), GroupKind::Consumer]
    };
    sansa_conformance::live_consumer::run_all(&Runtime(Exec::Smol), kinds);
}

/// A group member the consumer suite runs in a child process (to kill it), under the executor
/// `SANSA_LIVE_EXEC` names; a no-op otherwise.
#[test]
#[ignore = "run by the live consumer suite"]
fn live_consumer_member() {
    let exec = match std::env::var("SANSA_LIVE_EXEC").as_deref() {
        Ok("smol") => Exec::Smol,
        _ => Exec::AsyncStd,
    };
    sansa_conformance::live_consumer::member_main(&Runtime(exec));
}

fn against_the_fake_cluster(exec: Exec) {
    let server = FakeServer::start(FakeClusterConfig::default(), "127.0.0.1", None).expect("fake cluster listens");
    with_bootstrap(server.bootstrap(), || run_scenarios(&Runtime(exec), 3, Some(&server), 20_000));
}

#[test]
fn live_scenarios_against_the_fake_cluster_async_std() {
    against_the_fake_cluster(Exec::AsyncStd);
}

#[test]
fn live_scenarios_against_the_fake_cluster_smol() {
    against_the_fake_cluster(Exec::Smol);
}
