//! The shared live scenarios against a real Kafka cluster (`KAFKA_BOOTSTRAP`), once under
//! async-std and once under smol; and the same against sansa's fake cluster over loopback.

mod common;
mod live_adapter;

use common::Exec;
use live_adapter::Runtime;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_conformance::live::{run_all, run_all_but_broker_kills, run_scenarios, with_bootstrap};
use sansa_conformance::live_consumer::GroupKind;

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_suite_async_std() {
    run_all(&Runtime(Exec::AsyncStd));
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_suite_smol() {
    // The adapter is async-std's: its run above kills brokers; this one checks the executor.
    run_all_but_broker_kills(&Runtime(Exec::Smol));
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_consumer_suite_async_std() {
    // tokio's suite runs every group kind.
    sansa_conformance::live_consumer::run_all(&Runtime(Exec::AsyncStd), GroupKind::sample());
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_consumer_suite_smol() {
    sansa_conformance::live_consumer::run_all(&Runtime(Exec::Smol), GroupKind::sample());
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
