//! Scenarios against a Kafka started with `conformance/kafka/kafka up --security`, run by
//! every runtime crate: metadata and a produce/consume round trip through each listener and
//! mechanism, and each bad input ending in its typed error within seconds.
//!
//! `./test.sh` writes the script's `LISTENER MECHANISM PATH` lines to a file and points
//! `KAFKA_SECURITY_CLIENTS` at it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sansa::consumer::TopicPartition;
use sansa::producer::ProducerRecord;
use sansa::security::{AuthError, TlsError};
use sansa::{CloseCause, Config, LocalClose, RequestError, Target};

use crate::live::{LiveClient, LiveRuntime};

/// One client properties file the kafka script wrote.
#[derive(Debug, Clone)]
pub struct SecureClient {
    /// `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub listener: String,
    /// The SASL mechanism, or `NONE` / `MTLS` for SSL.
    pub mechanism: String,
    /// The properties file.
    pub path: PathBuf,
}

/// The files listed in `KAFKA_SECURITY_CLIENTS`.
pub fn clients() -> Vec<SecureClient> {
    let list = std::env::var("KAFKA_SECURITY_CLIENTS")
        .expect("KAFKA_SECURITY_CLIENTS is not set: run the live security suite through ./test.sh");
    let text = std::fs::read_to_string(&list).expect("KAFKA_SECURITY_CLIENTS file");
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (listener, mechanism, path) = (w.next()?, w.next()?, w.next()?);
            Some(SecureClient { listener: listener.into(), mechanism: mechanism.into(), path: path.into() })
        })
        .collect()
}

/// Reads a Java properties file (`key=value` lines; `#` comments).
pub fn read_properties(path: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("properties file");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

fn config(props: &[(String, String)]) -> Config {
    Config::from_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .expect("the script's properties")
        .with_client_id("sansa-live-security")
        .with_rng_seed(11)
}

/// Whether this build speaks the file's settings yet (TLS and OAUTHBEARER come later).
fn supported(c: &SecureClient) -> bool {
    c.mechanism != "OAUTHBEARER"
}

/// Metadata, then records produced and consumed back, through one listener and mechanism.
pub fn round_trip<R: LiveRuntime>(rt: &R, c: &SecureClient) {
    let props = read_properties(&c.path);
    let client = rt.connect(config(&props));
    let md = client.metadata(None).unwrap_or_else(|e| panic!("{} {}: metadata: {e}", c.listener, c.mechanism));
    assert_eq!(md.brokers.len(), 1);
    let topic = crate::live::unique_topic(&format!("sansa-sec-{}", c.mechanism.to_lowercase()));
    crate::live::create_topic(&client, &topic, 1, 1);
    for i in 0..10 {
        let record = ProducerRecord::new(topic.as_str(), format!("secure {i}"));
        client.handle().send_blocking(record).expect("send").wait().expect("delivered");
    }
    let tp = TopicPartition { topic: topic.as_str().into(), partition: 0 };
    client.handle().assign_blocking(vec![tp.clone()]).expect("assign");
    client.handle().seek_blocking(tp, 0).expect("seek");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 10 && Instant::now() < deadline {
        got.extend(client.handle().poll_blocking(100, Duration::from_millis(500)).expect("poll"));
    }
    let values: Vec<String> =
        got.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()).collect();
    assert_eq!(values, (0..10).map(|i| format!("secure {i}")).collect::<Vec<_>>(), "{} {}", c.listener, c.mechanism);
    client.close();
}

/// A wrong password ends in a typed authentication failure well before the request timeout,
/// and its text carries no secret.
pub fn wrong_password<R: LiveRuntime>(rt: &R, c: &SecureClient) {
    let mut props = read_properties(&c.path);
    for (k, v) in props.iter_mut() {
        if k == "sasl.jaas.config" {
            *v = v.replace("alice-secret", "not-the-password");
        }
    }
    let client = rt.connect(config(&props));
    let started = Instant::now();
    let err = client.check_version(Target::AnyBroker).expect_err("a wrong password must fail");
    let elapsed = started.elapsed();
    assert!(
        matches!(
            &err,
            RequestError::Unreachable {
                cause: CloseCause::Local(LocalClose::Authentication(AuthError::Failed { .. })),
                ..
            }
        ),
        "{} {}: {err:?}",
        c.listener,
        c.mechanism
    );
    assert!(elapsed < Duration::from_secs(3), "{} {}: took {elapsed:?}", c.listener, c.mechanism);
    let text = format!("{err} {err:?}");
    assert!(!text.contains("not-the-password"), "{text}");
    client.close();
}

fn expect_tls_error<R: LiveRuntime>(rt: &R, props: &[(String, String)], what: &str, check: impl Fn(&TlsError) -> bool) {
    let mut props = props.to_vec();
    props.push(("request.timeout.ms".into(), "2000".into()));
    let client = rt.connect(config(&props));
    let started = Instant::now();
    let err = client.check_version(Target::AnyBroker).expect_err(what);
    let ok = matches!(&err, RequestError::Unreachable { cause: CloseCause::Local(LocalClose::Tls(t)), .. } if check(t));
    assert!(ok, "{what}: {err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{what}: took {:?}", started.elapsed());
    eprintln!("live security: {what}: {err}");
    client.close();
}

/// TLS against a certificate from an unknown CA, and against a plaintext port.
pub fn tls_bad_inputs<R: LiveRuntime>(rt: &R, ssl: &SecureClient, plaintext_bootstrap: Option<&str>) {
    let props = read_properties(&ssl.path);
    // The system's roots do not know the test CA.
    let no_ca: Vec<_> = props.iter().filter(|(k, _)| !k.starts_with("ssl.truststore")).cloned().collect();
    expect_tls_error(
        rt,
        &no_ca,
        "unknown CA",
        |t| matches!(t, TlsError::UntrustedCertificate(r) if r.contains("unknown certificate authority")),
    );
    if let Some(bootstrap) = plaintext_bootstrap {
        let mut on_plain = props.clone();
        for (k, v) in on_plain.iter_mut() {
            if k == "bootstrap.servers" {
                *v = bootstrap.to_string();
            }
        }
        expect_tls_error(rt, &on_plain, "TLS client on a plaintext port", |t| {
            matches!(t, TlsError::ClosedInHandshake | TlsError::NotTls)
        });
    }
}

/// Every supported listener and mechanism, and the bad inputs.
pub fn run_all<R: LiveRuntime>(rt: &R) {
    let all = clients();
    assert!(!all.is_empty(), "no client files listed");
    for c in all.iter().filter(|c| supported(c)) {
        eprintln!("live security: {} {}", c.listener, c.mechanism);
        round_trip(rt, c);
        if c.listener != "SSL" {
            wrong_password(rt, c);
        }
    }
    if let Some(ssl) = all.iter().find(|c| c.listener == "SSL" && c.mechanism == "NONE") {
        tls_bad_inputs(rt, ssl, std::env::var("KAFKA_BOOTSTRAP").ok().as_deref());
    }
}
