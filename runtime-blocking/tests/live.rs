//! The shared live scenarios against a real Kafka cluster (`./test.sh` sets `KAFKA_BOOTSTRAP`),
//! and the same scenarios against sansa's fake cluster over loopback, which must behave alike.

mod live_adapter;

use live_adapter::Runtime;
use sansa::Config;
use sansa_conformance::differential;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_conformance::live::{run_all, run_scenarios, with_bootstrap, LiveClient, LiveRuntime};
use sansa_conformance::live_consumer::GroupKind;

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_suite() {
    run_all(&Runtime);
}

#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn live_consumer_suite() {
    // tokio's suite runs every group kind.
    sansa_conformance::live_consumer::run_all(&Runtime, GroupKind::sample())
}

/// A group member the consumer suite runs in a child process (to kill it); a no-op otherwise.
#[test]
#[ignore = "run by the live consumer suite"]
fn live_consumer_member() {
    sansa_conformance::live_consumer::member_main(&Runtime)
}

#[test]
fn live_scenarios_against_the_fake_cluster() {
    let server = FakeServer::start(FakeClusterConfig { brokers: 3, ..FakeClusterConfig::default() }, "127.0.0.1", None)
        .expect("fake cluster listens");
    with_bootstrap(server.bootstrap(), || run_scenarios(&Runtime, 3, Some(&server), 20_000));
}

fn probe(bootstrap: &str, suffix: &str) -> differential::Answers {
    let config = Config::new(bootstrap).expect("bootstrap").with_client_id("sansa-differential").with_rng_seed(11);
    let client = Runtime.connect(config);
    let answers = differential::run_probes(&client, suffix);
    client.close();
    answers
}

fn fake_server() -> FakeServer {
    fake_server_with_racks(Vec::new())
}

fn fake_server_with_racks(racks: Vec<String>) -> FakeServer {
    FakeServer::start(FakeClusterConfig { brokers: 3, racks, ..FakeClusterConfig::default() }, "127.0.0.1", None)
        .expect("fake cluster listens")
}

/// The racks of the real cluster's brokers 1, 2 and 3 (none if any has none), for a fake
/// cluster to report the same.
fn racks_of(bootstrap: &str) -> Vec<String> {
    let client = Runtime.connect(Config::new(bootstrap).expect("bootstrap"));
    let md = client.metadata(None).expect("metadata");
    client.close();
    (1..=3)
        .map(|id| md.brokers.get(&sansa::protocol::BrokerId(id)).and_then(|b| b.rack.clone()))
        .collect::<Option<_>>()
        .unwrap_or_default()
}

/// The differential test: the same probes against real Kafka and the fake cluster give the
/// same answers, apart from the documented differences. Writes `target/differential.md`.
#[test]
#[ignore = "needs Kafka: ./test.sh runs it"]
fn fake_cluster_answers_like_kafka() {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").expect("KAFKA_BOOTSTRAP is set by ./test.sh");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let suffix = format!("{nanos:x}");
    let real = probe(&bootstrap, &suffix);
    let server = fake_server_with_racks(racks_of(&bootstrap));
    let fake = probe(server.bootstrap(), &suffix);
    let diffs = differential::differences(&real, &fake);
    let report = differential::report(&diffs, real.len());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/differential.md");
    let _ = std::fs::write(&path, &report);
    let dump = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/differential-answers.json");
    let _ =
        std::fs::write(&dump, serde_json::to_string_pretty(&serde_json::json!({"real": real, "fake": fake})).unwrap());
    println!("{report}");
    let unexplained = differential::unexplained(&diffs);
    assert!(unexplained.is_empty(), "{} unexplained differences:\n{report}", unexplained.len());
}

/// The probes are deterministic against the fake cluster: two fresh clusters answer alike.
#[test]
fn differential_probes_agree_between_two_fake_clusters() {
    let (a, b) = (fake_server(), fake_server());
    let first = probe(a.bootstrap(), "same");
    let second = probe(b.bootstrap(), "same");
    assert!(first.len() > 40, "{} answers", first.len());
    let diffs = differential::differences(&first, &second);
    assert!(diffs.is_empty(), "{diffs:#?}");
}

/// The consumer scenarios that need only sansa, against the fake cluster over loopback: it
/// must keep groups, commits and sessions as Kafka does. Run by ./test.sh with the live suite.
#[test]
#[ignore = "slow (group sessions run on the wall clock): ./test.sh runs it"]
fn live_consumer_scenarios_against_the_fake_cluster() {
    let server = fake_server();
    // KIP-848 there keeps Kafka's default 5 s heartbeats and 45 s sessions: too slow to wait for.
    let kinds = [GroupKind::Classic("cooperative-sticky")];
    with_bootstrap(server.bootstrap(), || sansa_conformance::live_consumer::run_scenarios(&Runtime, &kinds, 1, false));
}
