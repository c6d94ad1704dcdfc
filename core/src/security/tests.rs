//! The connection machine's SASL against the pure server side in `server.rs`, over real
//! frames, with the broker's answers split at every byte boundary.

use std::time::Instant;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::server::{SaslSession, SaslUsers};
use super::*;
use crate::connection::{ConnEvent, Connection, ConnectionError, LocalClose};
use crate::protocol::frame::{decode_request, encode_response, FrameDecoder};
use crate::protocol::messages::api_versions::response::ApiVersion;
use crate::protocol::messages::ApiVersionsResponse;
use crate::protocol::{ApiKey, RequestBody, ResponseBody};
use crate::Config;

#[allow(clippy::disallowed_methods)] // an arbitrary origin for a virtual clock
fn t0() -> Instant {
    Instant::now()
}

/// A broker that speaks ApiVersions and SASL, one request at a time.
struct Broker {
    users: SaslUsers,
    session: SaslSession,
    without: Option<ApiKey>,
    nonces: u32,
}

impl Broker {
    fn new(users: SaslUsers) -> Self {
        Broker { users, session: SaslSession::new(), without: None, nonces: 0 }
    }

    /// Answers every complete request in `input`.
    fn answer(&mut self, input: &mut BytesMut) -> BytesMut {
        let mut out = BytesMut::new();
        while let Some(frame) = FrameDecoder::new(1 << 20).decode(input).unwrap() {
            let (header, body) = decode_request(frame).unwrap();
            let version = header.request_api_version;
            let resp: ResponseBody = match body {
                RequestBody::ApiVersions(_) => {
                    let keys = ApiKey::ALL.iter().filter(|k| Some(**k) != self.without).map(|k| {
                        ApiVersion::default()
                            .with_api_key(k.as_i16())
                            .with_min_version(k.versions().min)
                            .with_max_version(k.versions().max)
                    });
                    ApiVersionsResponse::default().with_api_keys(keys.collect()).into()
                }
                RequestBody::SaslHandshake(req) => self.session.handshake(&self.users, &req).into(),
                RequestBody::SaslAuthenticate(req) => {
                    self.nonces += 1;
                    self.session.authenticate(&self.users, &req, &format!("srv{}", self.nonces)).into()
                }
                other => panic!("unexpected {:?}", other.api_key()),
            };
            encode_response(&mut out, header.correlation_id, version, &resp).unwrap();
        }
        out
    }
}

/// Runs a connection against `broker`, delivering each answer in two pieces split at `split`
/// (or whole when past its end). Ok once ready.
fn run(security: &SecurityConfig, broker: &mut Broker, split: usize) -> Result<(), ConnectionError> {
    let now = t0();
    let mut conn: Connection<u32> =
        Connection::new(now, 1 << 20, "test", ("sansa", "0")).with_security(security, "broker", 7);
    conn.on_connected(now);
    let mut events = Vec::new();
    for _ in 0..10 {
        let mut sent = BytesMut::from(&conn.take_output().unwrap_or_default()[..]);
        let answer = broker.answer(&mut sent).freeze();
        let cut = split.min(answer.len());
        for piece in [answer.slice(..cut), answer.slice(cut..)] {
            if !piece.is_empty() {
                conn.on_bytes(now, piece, &mut events)?;
            }
        }
        if events.iter().any(|e| matches!(e, ConnEvent::Ready)) {
            assert!(conn.is_ready());
            return Ok(());
        }
    }
    panic!("no progress")
}

fn users() -> SaslUsers {
    SaslUsers::new().with_user("alice", "alice-secret")
}

const MECHANISMS: [SaslMechanism; 3] =
    [SaslMechanism::Plain, SaslMechanism::Scram(ScramHash::Sha256), SaslMechanism::Scram(ScramHash::Sha512)];

#[test]
fn every_mechanism_authenticates_with_answers_split_at_every_byte() {
    for m in MECHANISMS {
        let security = SecurityConfig::sasl_plaintext(m, "alice", "alice-secret");
        let users = users();
        for split in 0..400 {
            let mut broker = Broker::new(users.clone());
            run(&security, &mut broker, split).unwrap_or_else(|e| panic!("{m} split {split}: {e}"));
            assert_eq!(broker.session.user(), Some("alice"));
        }
    }
}

#[test]
fn a_wrong_password_is_a_fatal_authentication_error() {
    for m in MECHANISMS {
        let security = SecurityConfig::sasl_plaintext(m, "alice", "guess");
        let err = run(&security, &mut Broker::new(users()), usize::MAX).unwrap_err();
        assert!(matches!(err, ConnectionError::Authentication(AuthError::Failed { .. })), "{m}: {err:?}");
        let close = LocalClose::from(err);
        assert!(close.is_fatal());
        assert!(!close.to_string().contains("guess"));
        let unknown = SecurityConfig::sasl_plaintext(m, "mallory", "x");
        assert!(matches!(
            run(&unknown, &mut Broker::new(users()), usize::MAX),
            Err(ConnectionError::Authentication(AuthError::Failed { .. }))
        ));
    }
}

#[test]
fn a_mechanism_the_broker_does_not_enable_names_the_ones_it_does() {
    let security = SecurityConfig::sasl_plaintext(SaslMechanism::Plain, "alice", "alice-secret");
    let mut broker = Broker::new(users().with_mechanisms(&["SCRAM-SHA-512", "OAUTHBEARER"]));
    let err = run(&security, &mut broker, usize::MAX).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the broker does not enable SASL mechanism PLAIN; it enables SCRAM-SHA-512, OAUTHBEARER"
    );
}

#[test]
fn a_broker_without_sasl_authenticate_is_named() {
    let security = SecurityConfig::sasl_plaintext(SaslMechanism::Plain, "alice", "alice-secret");
    let mut broker = Broker::new(users());
    broker.without = Some(ApiKey::SaslAuthenticate);
    let err = run(&security, &mut broker, usize::MAX).unwrap_err();
    assert_eq!(err, ConnectionError::Authentication(AuthError::Unsupported("SaslAuthenticate")));
}

#[test]
fn properties_configure_sasl_and_refuse_gssapi() {
    let c = Config::from_properties([
        ("bootstrap.servers", "a:1"),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        (
            "sasl.jaas.config",
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="hunter2";"#,
        ),
    ])
    .unwrap();
    assert_eq!(c.security.protocol, SecurityProtocol::SaslPlaintext);
    let sasl = c.security.sasl.as_ref().unwrap();
    assert_eq!(sasl.mechanism, SaslMechanism::Scram(ScramHash::Sha512));
    assert_eq!((sasl.username.as_str(), sasl.password.expose()), ("alice", "hunter2"));
    assert!(c.unused_properties.is_empty());

    let base = [("bootstrap.servers", "a:1"), ("security.protocol", "SASL_SSL")];
    let gssapi = Config::from_properties(base.into_iter().chain([("sasl.mechanism", "GSSAPI")]));
    assert!(matches!(gssapi, Err(crate::ConfigError::Unsupported { .. })), "{gssapi:?}");
    assert!(Config::from_properties(base).is_err(), "Java's default mechanism is GSSAPI");
    let wrong_module = Config::from_properties(base.into_iter().chain([
        ("sasl.mechanism", "PLAIN"),
        ("sasl.jaas.config", r#"x.ScramLoginModule required username="a" password="hunter2";"#),
    ]));
    let bad_jaas = Config::from_properties(
        base.into_iter().chain([("sasl.mechanism", "PLAIN"), ("sasl.jaas.config", r#"x required password="hunter2"#)]),
    );
    for e in [wrong_module.unwrap_err(), bad_jaas.unwrap_err()] {
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    }
    let plain = Config::from_properties([("bootstrap.servers", "a:1"), ("security.protocol", "bogus")]);
    assert!(plain.is_err());
}

/// Secrets appear in no Debug output of the configuration, the client or its connections.
#[test]
fn secrets_never_print() {
    let c = Config::new("a:1").unwrap().with_security(SecurityConfig::sasl_plaintext(
        SaslMechanism::Scram(ScramHash::Sha256),
        "alice",
        "hunter2",
    ));
    let now = t0();
    let mut client = crate::Client::new(c.clone(), now);
    client.check_version(now, crate::Target::AnyBroker);
    while client.poll_transmit(now).is_some() {}
    let mut conn: Connection<u32> =
        Connection::new(now, 1 << 20, "t", ("s", "0")).with_security(&c.security, "broker", 1);
    conn.on_connected(now);
    let mut broker = Broker::new(users());
    let mut sent = BytesMut::from(&conn.take_output().unwrap()[..]);
    let answer = broker.answer(&mut sent);
    conn.on_bytes(now, Bytes::from(answer.to_vec()), &mut Vec::new()).unwrap();
    for text in [format!("{c:?}"), format!("{client:?}"), format!("{conn:?}"), format!("{:?}", users())] {
        assert!(!text.contains("hunter2") && !text.contains("alice-secret"), "{text}");
    }
}

// ---- TLS, against a rustls server in memory ---------------------------------------------------
// testdata/ holds a test CA and a broker certificate for 127.0.0.1 and localhost, made by
// `conformance/kafka/kafka up --security`; the key is for these tests only.

fn tls_server() -> rustls::ServerConnection {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(include_bytes!("testdata/broker.pem")).collect::<Result<Vec<_>, _>>();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/broker.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.unwrap(), key)
        .unwrap();
    rustls::ServerConnection::new(Arc::new(config)).unwrap()
}

fn test_ca(verify_hostname: bool) -> TlsSettings {
    let ca_pem = Some(include_bytes!("testdata/ca.pem").to_vec());
    TlsSettings::new(TlsOptions { ca_pem, verify_hostname, ..TlsOptions::default() }).unwrap()
}

/// A TLS connection to `host` against the in-memory server, the server's bytes split at `split`.
fn run_tls(security: &SecurityConfig, host: &str, users: &SaslUsers, split: usize) -> Result<(), ConnectionError> {
    use std::io::{Read, Write};
    let now = t0();
    let mut conn: Connection<u32> =
        Connection::new(now, 1 << 20, "test", ("sansa", "0")).with_security(security, host, 7);
    conn.on_connected(now);
    let mut server = tls_server();
    let mut broker = Broker::new(users.clone());
    let mut plain = BytesMut::new();
    let mut events = Vec::new();
    for _ in 0..20 {
        if let Some(out) = conn.take_output() {
            let mut rest = &out[..];
            while !rest.is_empty() {
                server.read_tls(&mut rest).unwrap();
                if let Err(e) = server.process_new_packets() {
                    // Let the client read the server's alert.
                    let mut wire = Vec::new();
                    while server.wants_write() {
                        server.write_tls(&mut wire).unwrap();
                    }
                    conn.on_bytes(now, Bytes::from(wire), &mut events)?;
                    panic!("server failed but the client did not: {e}");
                }
            }
        }
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = server.reader().read(&mut buf) {
            plain.extend_from_slice(&buf[..n]);
        }
        let answer = broker.answer(&mut plain);
        server.writer().write_all(&answer).unwrap();
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        let wire = Bytes::from(wire);
        let cut = split.min(wire.len());
        for piece in [wire.slice(..cut), wire.slice(cut..)] {
            if !piece.is_empty() {
                conn.on_bytes(now, piece, &mut events)?;
            }
        }
        if events.iter().any(|e| matches!(e, ConnEvent::Ready)) {
            return Ok(());
        }
    }
    panic!("no progress")
}

#[test]
fn tls_handshakes_split_at_every_byte_boundary() {
    let ssl = SecurityConfig::default().with_tls(test_ca(true));
    let users = users();
    for split in 0..2500 {
        run_tls(&ssl, "127.0.0.1", &users, split).unwrap_or_else(|e| panic!("split {split}: {e}"));
    }
    let sasl_ssl = SecurityConfig::sasl_plaintext(SaslMechanism::Scram(ScramHash::Sha512), "alice", "alice-secret")
        .with_tls(test_ca(true));
    assert_eq!(sasl_ssl.protocol, SecurityProtocol::SaslSsl);
    for split in (0..2500).step_by(97) {
        run_tls(&sasl_ssl, "localhost", &users, split).unwrap_or_else(|e| panic!("split {split}: {e}"));
    }
}

#[test]
fn tls_failures_name_their_reason() {
    let users = users();
    let system_roots = SecurityConfig::default().with_tls(TlsSettings::new(TlsOptions::default()).unwrap());
    match run_tls(&system_roots, "127.0.0.1", &users, usize::MAX) {
        Err(ConnectionError::Tls(TlsError::UntrustedCertificate(why))) => {
            assert!(why.contains("unknown certificate authority"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let ssl = SecurityConfig::default().with_tls(test_ca(true));
    match run_tls(&ssl, "kafka.example", &users, usize::MAX) {
        Err(ConnectionError::Tls(TlsError::UntrustedCertificate(why))) => assert!(why.contains("host"), "{why}"),
        other => panic!("{other:?}"),
    }
    let unchecked = SecurityConfig::default().with_tls(test_ca(false));
    run_tls(&unchecked, "kafka.example", &users, usize::MAX).unwrap();

    // A plaintext broker answers the ClientHello with Kafka bytes.
    let now = t0();
    let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "t", ("s", "0")).with_security(&ssl, "127.0.0.1", 1);
    conn.on_connected(now);
    assert!(conn.take_output().is_some(), "ClientHello");
    let err = conn.on_bytes(now, Bytes::from_static(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]), &mut Vec::new());
    assert_eq!(err, Err(ConnectionError::Tls(TlsError::NotTls)));
    assert!(LocalClose::from(err.unwrap_err()).is_fatal());
    // A hang-up mid-handshake is named, and retried.
    let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "t", ("s", "0")).with_security(&ssl, "127.0.0.1", 1);
    conn.on_connected(now);
    let close = conn.explain_close().unwrap();
    assert_eq!(close, LocalClose::Tls(TlsError::ClosedInHandshake));
    assert!(!close.is_fatal());
}
