//! Scenarios against a Kafka started with `conformance/kafka/kafka up --security`, run by
//! every runtime crate: metadata and a produce/consume round trip through each listener and
//! mechanism, re-authentication on the listener with 2 s sessions, Java's consumer reading
//! what sansa wrote over SASL_SSL, and each bad input ending in its typed error within seconds.
//!
//! `./test.sh` writes the script's `LISTENER MECHANISM PATH` lines to a file and points
//! `KAFKA_SECURITY_CLIENTS` at it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sansa::consumer::TopicPartition;
use sansa::producer::ProducerRecord;
use sansa::protocol::messages::MetadataRequest;
use sansa::security::{AuthError, OAuthBearerToken, SaslConfig, TlsError, TokenError, TokenProvider, TokenSource};
use sansa::{CloseCause, Config, LocalClose, RequestError, Target};

use crate::live::{LiveClient, LiveRuntime};

/// One client properties file the kafka script wrote.
#[derive(Debug, Clone)]
pub struct SecureClient {
    /// `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`, or `PLAIN_ONLY` (SASL_PLAINTEXT enabling PLAIN alone).
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

/// The broker's session lifetime on the file's listener, as the script notes it in a comment
/// (`# broker connections.max.reauth.ms=2000`), if it limits sessions.
pub fn session_lifetime(path: &std::path::Path) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let ms = text.lines().find_map(|l| l.trim().strip_prefix("# broker connections.max.reauth.ms="))?;
    ms.trim().parse().ok().map(Duration::from_millis)
}

/// Metadata, then records produced and consumed back, through one listener and mechanism.
/// Returns the topic, which holds `secure 0` to `secure 9`.
pub fn round_trip<R: LiveRuntime>(rt: &R, c: &SecureClient) -> String {
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
    topic
}

/// Kafka's own consumer (conformance/java `readback`), configured by the same properties
/// file, reads the ten records [`round_trip`] wrote to `topic`.
pub fn java_reads_back(c: &SecureClient, topic: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("java/run.sh");
    let file = format!("@{}", c.path.display());
    let out = std::process::Command::new(script).args(["readback", &file, topic]).output().expect("run.sh");
    assert!(
        out.status.success(),
        "java readback over {} {}: {}",
        c.listener,
        c.mechanism,
        String::from_utf8_lossy(&out.stderr)
    );
    // partition, offset, timestamp type, timestamp, key, value (hex), headers
    let values: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let hex = l.split('\t').nth(5).expect("a value column");
            let bytes: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
            String::from_utf8(bytes).expect("utf-8 value")
        })
        .collect();
    assert_eq!(
        values,
        (0..10).map(|i| format!("secure {i}")).collect::<Vec<_>>(),
        "java over {} {}",
        c.listener,
        c.mechanism
    );
    eprintln!("live security: Java's consumer read sansa's records over {} {}", c.listener, c.mechanism);
}

/// On a listener whose sessions last `lifetime`, requests keep succeeding over several
/// lifetimes, busy and after an idle spell longer than a session: the client renews its
/// session on the same connection before the broker would close it (a broker that finds a
/// session expired closes the connection, which fails the request in flight).
pub fn reauthentication<R: LiveRuntime>(rt: &R, c: &SecureClient, lifetime: Duration) {
    let props = read_properties(&c.path);
    let client = rt.connect(config(&props));
    let started = Instant::now();
    let mut requests = 0;
    let mut busy = |until: Duration| {
        while started.elapsed() < until {
            let answer = client.request(Target::AnyBroker, MetadataRequest::default().into());
            answer.unwrap_or_else(|e| {
                panic!("{} {}: request {requests} after {:?}: {e}", c.listener, c.mechanism, started.elapsed())
            });
            requests += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    busy(lifetime * 2);
    std::thread::sleep(lifetime + lifetime / 2);
    busy(lifetime * 4 + lifetime / 2);
    eprintln!(
        "live security: {} {}: {requests} requests over {:?} with {:?} sessions, none refused",
        c.listener,
        c.mechanism,
        started.elapsed(),
        lifetime
    );
    client.close();
}

/// A broker listener that does not enable the mechanism asked for answers with the ones it
/// does; the client names them in a fatal error, at once.
pub fn mechanism_not_enabled<R: LiveRuntime>(rt: &R, plain_only: &SecureClient) {
    let mut props = read_properties(&plain_only.path);
    for (k, v) in props.iter_mut() {
        match k.as_str() {
            "sasl.mechanism" => *v = "SCRAM-SHA-256".into(),
            "sasl.jaas.config" => *v = v.replace("plain.PlainLoginModule", "scram.ScramLoginModule"),
            _ => {}
        }
    }
    let client = rt.connect(config(&props));
    let started = Instant::now();
    let err = client.check_version(Target::AnyBroker).expect_err("SCRAM on a PLAIN-only listener");
    let elapsed = started.elapsed();
    match &err {
        RequestError::Unreachable {
            cause: CloseCause::Local(LocalClose::Authentication(AuthError::MechanismNotEnabled { enabled, .. })),
            ..
        } => assert_eq!(enabled, &["PLAIN".to_string()]),
        other => panic!("SCRAM on a PLAIN-only listener: {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    eprintln!("live security: mechanism not enabled: {err}");
    client.close();
}

/// A token the broker refuses: it answers with an error document, the client acknowledges
/// it (RFC 7628), and the exchange ends in a fatal authentication failure, at once.
pub fn refused_token<R: LiveRuntime>(rt: &R, c: &SecureClient) {
    struct Garbage;
    impl TokenProvider for Garbage {
        fn token(&self, unix_ms: i64) -> Result<OAuthBearerToken, TokenError> {
            Ok(OAuthBearerToken::new("not-a-jws-token-secret", "alice", unix_ms + 60_000))
        }
    }
    let props = read_properties(&c.path);
    let mut config = config(&props);
    let mut security = config.security.clone();
    security.sasl = Some(std::sync::Arc::new(SaslConfig::oauth_bearer(TokenSource::new(Garbage))));
    config = config.with_security(security);
    let client = rt.connect(config);
    let started = Instant::now();
    let err = client.check_version(Target::AnyBroker).expect_err("a refused token must fail");
    let failed = matches!(
        &err,
        RequestError::Unreachable {
            cause: CloseCause::Local(LocalClose::Authentication(AuthError::Failed { .. })),
            ..
        }
    );
    assert!(failed, "{} {}: {err:?}", c.listener, c.mechanism);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("token-secret"), "{text}");
    eprintln!("live security: {} refused token: {err}", c.listener);
    client.close();
}

/// A plaintext client on a TLS port: named as such, fatal, at once.
pub fn plaintext_on_tls_port<R: LiveRuntime>(rt: &R, c: &SecureClient) {
    let mut props: Vec<_> = read_properties(&c.path).into_iter().filter(|(k, _)| !k.starts_with("ssl.")).collect();
    for (k, v) in props.iter_mut() {
        if k == "security.protocol" {
            *v = if c.listener == "SSL" { "PLAINTEXT".into() } else { "SASL_PLAINTEXT".into() };
        }
    }
    props.push(("request.timeout.ms".into(), "5000".into()));
    let client = rt.connect(config(&props));
    let started = Instant::now();
    let err = client.check_version(Target::AnyBroker).expect_err("plaintext on a TLS port");
    let elapsed = started.elapsed();
    let named = matches!(&err, RequestError::Unreachable { cause: CloseCause::Local(LocalClose::ExpectsTls), .. });
    assert!(named, "plaintext client on the {} port: {err:?}", c.listener);
    assert!(elapsed < Duration::from_secs(2), "plaintext client on the {} port: took {elapsed:?}", c.listener);
    eprintln!("live security: plaintext client on the {} port: {err}", c.listener);
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
    // The default request timeout (30 s): the error must come well before it.
    let client = rt.connect(config(props));
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
        expect_tls_error(rt, &on_plain, "TLS client on a plaintext port", |t| matches!(t, TlsError::HungUpOnHello));
    }
}

/// Every listener and mechanism, re-authentication, Java reading back, and the bad inputs.
pub fn run_all<R: LiveRuntime>(rt: &R) {
    let all = clients();
    assert!(!all.is_empty(), "no client files listed");
    for c in &all {
        eprintln!("live security: {} {}", c.listener, c.mechanism);
        let topic = round_trip(rt, c);
        if c.listener == "SASL_SSL" && c.mechanism == "SCRAM-SHA-512" {
            java_reads_back(c, &topic);
        }
        match c.mechanism.as_str() {
            "OAUTHBEARER" => refused_token(rt, c),
            _ if c.listener != "SSL" => wrong_password(rt, c),
            _ => {}
        }
        // Long runs cost time: the multi-step mechanism and the token one; the others renew
        // their sessions within the round trip when it outlasts 85% of one.
        if matches!(c.mechanism.as_str(), "SCRAM-SHA-512" | "OAUTHBEARER") {
            if let Some(lifetime) = session_lifetime(&c.path) {
                reauthentication(rt, c, lifetime);
            }
        }
    }
    if let Some(plain_only) = all.iter().find(|c| c.listener == "PLAIN_ONLY") {
        mechanism_not_enabled(rt, plain_only);
    }
    for c in all.iter().filter(|c| {
        (c.listener == "SSL" && c.mechanism == "NONE") || (c.listener == "SASL_SSL" && c.mechanism == "PLAIN")
    }) {
        plaintext_on_tls_port(rt, c);
    }
    if let Some(ssl) = all.iter().find(|c| c.listener == "SSL" && c.mechanism == "NONE") {
        tls_bad_inputs(rt, ssl, std::env::var("KAFKA_BOOTSTRAP").ok().as_deref());
    }
}
