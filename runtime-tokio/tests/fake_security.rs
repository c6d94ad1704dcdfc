//! The live security scenarios on this runtime against the fake cluster served over
//! loopback with SASL_SSL (and SASL_PLAINTEXT): produce and consume back through each SCRAM
//! and PLAIN login, and a wrong password failing fast. No Kafka needed.

mod common;
mod live_adapter;

use std::path::PathBuf;

use live_adapter::Runtime;
use sansa::security::server::SaslUsers;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_conformance::fake_tls::test_server_config;
use sansa_conformance::live_security::{round_trip, wrong_password, SecureClient};

fn ca_path() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/testdata/ca.pem").display().to_string()
}

/// A fake cluster with one broker, SASL users and, with `tls`, the test certificate.
fn server(tls: bool) -> FakeServer {
    let config = FakeClusterConfig {
        brokers: 1,
        sasl: Some(SaslUsers::new().with_user("alice", "alice-secret")),
        tls: tls.then(test_server_config),
        ..FakeClusterConfig::default()
    };
    FakeServer::start(config, "127.0.0.1", None).expect("bind loopback")
}

/// Writes the properties file a Java client would use for `listener` and `mechanism`.
fn properties(server: &FakeServer, listener: &str, mechanism: &str) -> SecureClient {
    let module = if mechanism == "PLAIN" { "plain.PlainLoginModule" } else { "scram.ScramLoginModule" };
    let mut text = format!(
        "bootstrap.servers={}\nsecurity.protocol={listener}\nsasl.mechanism={mechanism}\n\
         sasl.jaas.config=org.apache.kafka.common.security.{module} required username=\"alice\" password=\"alice-secret\";\n",
        server.bootstrap()
    );
    if listener == "SASL_SSL" {
        text += &format!("ssl.truststore.type=PEM\nssl.truststore.location={}\n", ca_path());
    }
    let dir = std::env::temp_dir().join(format!("sansa-fake-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}-{}.properties", listener.to_lowercase(), mechanism.to_lowercase()));
    std::fs::write(&path, text).expect("write properties");
    SecureClient { listener: listener.into(), mechanism: mechanism.into(), path }
}

#[test]
fn sasl_ssl_round_trips_against_the_fake_cluster() {
    let server = server(true);
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let c = properties(&server, "SASL_SSL", mechanism);
        round_trip(&Runtime, &c);
        wrong_password(&Runtime, &c);
    }
}

#[test]
fn sasl_plaintext_round_trips_against_the_fake_cluster() {
    let server = server(false);
    let c = properties(&server, "SASL_PLAINTEXT", "SCRAM-SHA-256");
    round_trip(&Runtime, &c);
    wrong_password(&Runtime, &c);
}
