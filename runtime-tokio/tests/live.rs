//! The live scenario suite against a real Kafka cluster (`./test.sh` starts one), and against
//! sansa's fake cluster over loopback.

mod common;
mod live_adapter;

use live_adapter::Runtime;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_conformance::live::{run_scenarios, with_bootstrap};
use sansa_conformance::live_consumer::GroupKind;

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
