//! The connection machine's SASL against the pure server side in `server.rs`, over real
//! frames, with the broker's answers split at every byte boundary.

use std::time::{Duration, Instant};

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

use crate::test_origin as t0;

/// A broker that speaks ApiVersions and SASL, one request at a time. Past the first
/// login, ApiVersions stands for any request, and is checked against the session: never
/// during a re-authentication, never after the session expired (a real broker would close
/// the connection).
struct Broker {
    users: SaslUsers,
    session: SaslSession,
    without: Option<ApiKey>,
    nonces: u32,
    /// The virtual clock, set by the test before each answer.
    now: Instant,
    expires: Option<Instant>,
    violations: Vec<String>,
    requests: u32,
}

impl Broker {
    fn new(users: SaslUsers) -> Self {
        Broker {
            users,
            session: SaslSession::new(),
            without: None,
            nonces: 0,
            now: t0(),
            expires: None,
            violations: Vec::new(),
            requests: 0,
        }
    }

    /// Answers every complete request in `input`.
    fn answer(&mut self, input: &mut BytesMut) -> BytesMut {
        let mut out = BytesMut::new();
        while let Some(frame) = FrameDecoder::new(1 << 20).decode(input).unwrap() {
            let (header, body) = decode_request(frame).unwrap();
            let version = header.request_api_version;
            let resp: ResponseBody = match body {
                RequestBody::ApiVersions(_) if self.session.authentications() > 0 => {
                    self.requests += 1;
                    if self.session.reauthenticating() {
                        self.violations.push(format!("request {} during re-authentication", self.requests));
                    }
                    if self.expires.is_some_and(|e| self.now > e) {
                        self.violations.push(format!("request {} after the session expired", self.requests));
                    }
                    ApiVersionsResponse::default().into()
                }
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
                    let before = self.session.authentications();
                    let resp = self.session.authenticate(&self.users, &req, &format!("srv{}", self.nonces));
                    if self.session.authentications() > before && resp.session_lifetime_ms > 0 {
                        self.expires = Some(self.now + Duration::from_millis(resp.session_lifetime_ms as u64));
                    }
                    resp.into()
                }
                other => panic!("unexpected {:?}", other.api_key()),
            };
            encode_response(&mut out, header.correlation_id, version, &resp).unwrap();
        }
        out
    }
}

/// A broker in memory: answers what a connection sent, and may hang up.
trait Answers {
    fn answer(&mut self, input: &mut BytesMut) -> BytesMut;
    fn hung_up(&self) -> bool {
        false
    }
}

impl Answers for Broker {
    fn answer(&mut self, input: &mut BytesMut) -> BytesMut {
        Broker::answer(self, input)
    }
}

/// How a connection driven by [`drive`] ended short of ready.
enum Ended {
    Error(ConnectionError),
    HungUp(Box<Connection<u32>>),
}

/// Runs a connection against `broker`, delivering each answer in two pieces split at `split`
/// (or whole when past its end), until it is ready.
fn drive(security: &SecurityConfig, broker: &mut impl Answers, split: usize) -> Result<Connection<u32>, Ended> {
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
                conn.on_bytes(now, piece, &mut events).map_err(Ended::Error)?;
            }
        }
        if events.iter().any(|e| matches!(e, ConnEvent::Ready)) {
            assert!(conn.is_ready());
            return Ok(conn);
        }
        if broker.hung_up() {
            return Err(Ended::HungUp(Box::new(conn)));
        }
    }
    panic!("no progress")
}

/// [`drive`] against a broker that answers every request. Ok once ready.
fn run(security: &SecurityConfig, broker: &mut Broker, split: usize) -> Result<(), ConnectionError> {
    match drive(security, broker, split) {
        Ok(_) => Ok(()),
        Err(Ended::Error(e)) => Err(e),
        Err(Ended::HungUp(_)) => unreachable!("this broker never hangs up"),
    }
}

fn users() -> SaslUsers {
    // SCRAM credentials take thousands of hash rounds to derive: once per test binary.
    static USERS: std::sync::OnceLock<SaslUsers> = std::sync::OnceLock::new();
    USERS.get_or_init(|| SaslUsers::new().with_user("alice", "alice-secret")).clone()
}

const MECHANISMS: [SaslMechanism; 4] = [
    SaslMechanism::Plain,
    SaslMechanism::Scram(ScramHash::Sha256),
    SaslMechanism::Scram(ScramHash::Sha512),
    SaslMechanism::OAuthBearer,
];

/// SASL_PLAINTEXT as alice with `password` (OAUTHBEARER: an unsecured token for alice).
fn alice(m: SaslMechanism, password: &str) -> SecurityConfig {
    match m {
        SaslMechanism::OAuthBearer => SecurityConfig::oauth_bearer(UnsecuredJws::new("alice", 3600)),
        m => SecurityConfig::sasl_plaintext(m, "alice", password),
    }
}

#[test]
fn every_mechanism_authenticates_with_answers_split_at_every_byte() {
    for m in MECHANISMS {
        let security = alice(m, "alice-secret");
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
    for m in MECHANISMS.into_iter().filter(|m| *m != SaslMechanism::OAuthBearer) {
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
fn a_broker_without_sasl_handshake_is_named() {
    let security = SecurityConfig::sasl_plaintext(SaslMechanism::Plain, "alice", "alice-secret");
    let mut broker = Broker::new(users());
    broker.without = Some(ApiKey::SaslHandshake);
    let err = run(&security, &mut broker, usize::MAX).unwrap_err();
    assert_eq!(err, ConnectionError::Authentication(AuthError::Unsupported("SaslHandshake")));
    assert!(!err.to_string().contains("not implemented"), "{err}");
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

#[test]
fn properties_configure_oauthbearer_with_an_unsecured_token() {
    let oauth = |jaas: &str| {
        Config::from_properties([
            ("bootstrap.servers", "a:1"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.jaas.config", jaas),
            ("ssl.truststore.certificates", std::str::from_utf8(include_bytes!("testdata/ca.pem")).unwrap()),
        ])
    };
    let c = oauth(r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="alice" unsecuredLoginLifetimeSeconds="120";"#).unwrap();
    let sasl = c.security.sasl.as_ref().unwrap();
    assert_eq!(sasl.mechanism, SaslMechanism::OAuthBearer);
    let token = sasl.token_source.as_ref().unwrap().token(1_000_000).unwrap();
    assert_eq!((token.principal(), token.expires_unix_ms()), ("alice", 1_120_000));
    assert!(c.unused_properties.is_empty(), "{:?}", c.unused_properties);

    let bad = oauth(
        r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="alice" unsecuredLoginLifetimeSeconds="an hour";"#,
    );
    match bad {
        Err(crate::ConfigError::InvalidValue { key, reason, .. }) => {
            assert_eq!(key, "sasl.jaas.config");
            assert!(reason.contains("unsecuredLoginLifetimeSeconds"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let no_sub = oauth("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;");
    assert!(matches!(no_sub, Err(crate::ConfigError::InvalidValue { reason, .. }) if reason.contains("principal")));
    let plain_module =
        oauth(r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b";"#);
    assert!(plain_module.is_err());
    let endpoint = Config::from_properties([
        ("bootstrap.servers", "a:1"),
        ("sasl.oauthbearer.token.endpoint.url", "https://idp.example/token"),
    ]);
    assert!(matches!(endpoint, Err(crate::ConfigError::Unsupported { .. })), "{endpoint:?}");
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

    // OAUTHBEARER: the token stays out of the configuration's, the connection's and the
    // token's own Debug output, and out of the error when the broker refuses it.
    let provider = FixedToken(Ok("tok-hunter2"));
    let token = provider.token(0).unwrap();
    let c = Config::new("a:1").unwrap().with_security(SecurityConfig::oauth_bearer(provider));
    let mut client = crate::Client::new(c.clone(), now);
    client.check_version(now, crate::Target::AnyBroker);
    while client.poll_transmit(now).is_some() {}
    let mut conn: Connection<u32> =
        Connection::new(now, 1 << 20, "t", ("s", "0")).with_security(&c.security, "broker", 1);
    conn.on_connected(now);
    let mut broker = Broker::new(users());
    let mut events = Vec::new();
    let mut err = None;
    while let Some(out) = conn.take_output() {
        let answer = broker.answer(&mut BytesMut::from(&out[..]));
        if let Err(e) = conn.on_bytes(now, answer.freeze(), &mut events) {
            err = Some(e);
            break;
        }
        let text = format!("{conn:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    let err = err.expect("the broker refuses the token");
    for text in [format!("{c:?}"), format!("{client:?}"), format!("{token:?}"), format!("{err} {err:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
    }
}

/// A provider whose token is refused, or that has none.
struct FixedToken(Result<&'static str, TokenError>);

impl TokenProvider for FixedToken {
    fn token(&self, unix_ms: i64) -> Result<OAuthBearerToken, TokenError> {
        self.0.clone().map(|t| OAuthBearerToken::new(t, "alice", unix_ms + 60_000))
    }
}

/// Token times come from the wall clock the driver set, advanced by the core's `now`.
#[test]
fn unsecured_tokens_are_dated_by_the_injected_clock() {
    use base64::Engine;
    let start = t0();
    let now = start + Duration::from_millis(1500);
    let security = alice(SaslMechanism::OAuthBearer, "");
    let mut conn: Connection<u32> = Connection::new(start, 1 << 20, "t", ("s", "0"))
        .with_security(&security, "broker", 1)
        .with_wall_clock(Some((start, 1_700_000_000_000)));
    conn.on_connected(now);
    let mut broker = Broker::new(users());
    let mut sent = Vec::new();
    while let Some(out) = conn.take_output() {
        sent.extend_from_slice(&out);
        let answer = broker.answer(&mut BytesMut::from(&out[..]));
        conn.on_bytes(now, answer.freeze(), &mut Vec::new()).unwrap();
    }
    assert!(conn.is_ready());
    let at = sent.windows(12).position(|w| w == b"auth=Bearer ").expect("the client message") + 12;
    let token: Vec<u8> = sent[at..].iter().copied().take_while(|b| *b != 1).collect();
    let claims = String::from_utf8(token).unwrap().split('.').nth(1).unwrap().to_string();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap();
    assert_eq!(String::from_utf8(claims).unwrap(), r#"{"exp":1700003601.500,"iat":1700000001.500,"sub":"alice"}"#);
}

#[test]
fn a_refused_token_is_acknowledged_then_a_fatal_failure_with_the_brokers_reason() {
    let security = SecurityConfig::oauth_bearer(FixedToken(Ok("not-a-jws-hunter2")));
    let err = run(&security, &mut Broker::new(users()), usize::MAX).unwrap_err();
    let ConnectionError::Authentication(AuthError::Failed { message: Some(m) }) = &err else { panic!("{err:?}") };
    assert!(m.contains("invalid_token"), "{m}");
    let close = LocalClose::from(err);
    assert!(close.is_fatal());
    assert!(!format!("{close} {close:?}").contains("hunter2"), "{close:?}");
    assert_eq!(close.to_string(), "authentication failed: invalid_token ({\"status\":\"invalid_token\"})");
}

#[test]
fn a_provider_without_a_token_yet_is_named_and_retried() {
    let security = SecurityConfig::oauth_bearer(FixedToken(Err(TokenError::Unavailable("first fetch pending".into()))));
    let err = run(&security, &mut Broker::new(users()), usize::MAX).unwrap_err();
    assert!(matches!(err, ConnectionError::Authentication(AuthError::Token(TokenError::Unavailable(_)))), "{err:?}");
    let close = LocalClose::from(err);
    assert!(!close.is_fatal());
    assert_eq!(close.to_string(), "no OAuth token available yet: first fetch pending");
}

#[test]
fn kafkas_failure_messages_read_once() {
    let failed = |m: &str| AuthError::Failed { message: Some(m.into()) }.to_string();
    assert_eq!(
        failed("Authentication failed: Invalid username or password"),
        "authentication failed: Invalid username or password"
    );
    assert_eq!(
        failed(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
        ),
        "authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
    );
    assert_eq!(failed("SCRAM: invalid-proof"), "authentication failed: SCRAM: invalid-proof");
    assert_eq!(AuthError::Failed { message: None }.to_string(), "authentication failed");
}

#[test]
fn a_tls_answer_on_a_plaintext_connection_is_named_and_fatal() {
    let now = t0();
    let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "t", ("s", "0"));
    conn.on_connected(now);
    assert!(conn.take_output().is_some(), "ApiVersions");
    // A TLS alert record (handshake failure), as a TLS listener answers bytes it cannot read.
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
    for cut in 0..alert.len() {
        let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "t", ("s", "0"));
        conn.on_connected(now);
        let mut events = Vec::new();
        let first = conn.on_bytes(now, Bytes::copy_from_slice(&alert[..cut]), &mut events);
        let err = first.and_then(|()| conn.on_bytes(now, Bytes::copy_from_slice(&alert[cut..]), &mut events));
        assert_eq!(err, Err(ConnectionError::ExpectsTls), "cut {cut}");
    }
    let close = LocalClose::from(ConnectionError::ExpectsTls);
    assert!(close.is_fatal());
    assert!(close.to_string().contains("expects TLS"), "{close}");
}

/// Drives a connection through `secs` virtual seconds of steady requests, one per 250 ms
/// step; the broker answers one step late, so a request is in flight whenever the session
/// comes due. Every answer is split at `split`. Returns the tokens answered, in order.
fn reauth_run(security: &SecurityConfig, broker: &mut Broker, split: usize, secs: u64) -> Vec<u32> {
    let mut now = t0();
    let mut conn: Connection<u32> =
        Connection::new(now, 1 << 20, "test", ("sansa", "0")).with_security(security, "broker", 7);
    conn.on_connected(now);
    let mut to_broker = BytesMut::from(&conn.take_output().unwrap()[..]);
    let (mut next, mut answered, mut events) = (0u32, Vec::new(), Vec::new());
    let body: RequestBody = crate::protocol::messages::ApiVersionsRequest::default().into();
    for _ in 0..secs * 4 {
        now += Duration::from_millis(250);
        broker.now = now;
        if conn.is_ready() {
            assert_eq!(conn.send(now, &body, 0, next, true), Ok(None));
            next += 1;
        }
        let answer = broker.answer(&mut to_broker).freeze();
        let cut = split.min(answer.len());
        for piece in [answer.slice(..cut), answer.slice(cut..)] {
            if !piece.is_empty() {
                conn.on_bytes(now, piece, &mut events).unwrap_or_else(|e| panic!("split {split}: {e}"));
            }
        }
        for e in events.drain(..) {
            if let ConnEvent::Response { token, result, .. } = e {
                result.unwrap();
                answered.push(token);
            }
        }
        if let Some(out) = conn.take_output() {
            to_broker.extend_from_slice(&out);
        }
    }
    answered
}

#[test]
fn sessions_are_renewed_before_they_expire_without_losing_a_request() {
    let lifetime = Duration::from_secs(10);
    for m in MECHANISMS {
        let security = alice(m, "alice-secret");
        // Every SASL answer is shorter than 160 bytes: each is split at every byte.
        for split in 0..160 {
            let mut users = users();
            users.session_lifetime = Some(lifetime);
            let mut broker = Broker::new(users);
            let answered = reauth_run(&security, &mut broker, split, 30);
            assert!(broker.violations.is_empty(), "{m} split {split}: {:?}", broker.violations);
            // Renewed at 85-95% of each 10 s session: three or four logins in 30 s.
            let logins = broker.session.authentications();
            assert!((3..=4).contains(&logins), "{m} split {split}: {logins} logins");
            // (A renewal under another principal would have failed the run.)
            // Every request answered once, in order (the last may still be in flight).
            assert!(answered.len() > 90, "{m} split {split}: {}", answered.len());
            assert!(answered.iter().enumerate().all(|(i, t)| *t == i as u32), "{m} split {split}: {answered:?}");
        }
    }
}

/// The whole client, not just the connection: while a session is renewed the router waits
/// for the connection instead of opening another, and every request is answered.
#[test]
fn the_client_renews_sessions_on_one_connection_and_answers_every_request() {
    use crate::{Client, Event, Input, Target, Transmit};
    let mut users = users();
    users.session_lifetime = Some(Duration::from_secs(10));
    let config = Config::new("broker:9092").unwrap().with_security(alice(SaslMechanism::Plain, "alice-secret"));
    let mut now = t0();
    let mut client = Client::new(config, now);
    let mut broker = Broker::new(users);
    let (mut opened, mut to_broker, mut issued, mut answered) = (0, BytesMut::new(), Vec::new(), Vec::new());
    let mut conn = None;
    let body: RequestBody = crate::protocol::messages::ApiVersionsRequest::default().into();
    for _ in 0..120 {
        now += Duration::from_millis(250);
        broker.now = now;
        issued.push(client.request(now, Target::AnyBroker, body.clone(), Some(0)));
        let answer = broker.answer(&mut to_broker).freeze();
        if let (Some(c), false) = (conn, answer.is_empty()) {
            client.handle_input(now, Input::Received { conn: c, data: answer });
        }
        client.handle_timeout(now);
        while let Some(t) = client.poll_transmit(now) {
            match t {
                Transmit::Open { conn: c, .. } => {
                    opened += 1;
                    conn = Some(c);
                    client.handle_input(now, Input::Connected { conn: c });
                }
                Transmit::Send { bytes, .. } => to_broker.extend_from_slice(&bytes),
                other => panic!("{other:?}"),
            }
        }
        while let Some(e) = client.poll_event() {
            if let Event::Response { id, result } = e {
                result.unwrap();
                answered.push(id);
            }
        }
    }
    assert_eq!(opened, 1, "one connection throughout");
    assert!(broker.violations.is_empty(), "{:?}", broker.violations);
    assert!((3..=4).contains(&broker.session.authentications()), "{}", broker.session.authentications());
    assert!(answered.len() + 8 >= issued.len(), "{} of {}", answered.len(), issued.len());
    assert_eq!(&issued[..answered.len()], &answered[..], "answered in order, none lost");
}

#[test]
fn an_idle_connection_renews_its_session_before_the_next_request() {
    let mut users = users();
    users.session_lifetime = Some(Duration::from_secs(10));
    let security = alice(SaslMechanism::Plain, "alice-secret");
    let mut broker = Broker::new(users);
    let mut now = t0();
    let mut conn: Connection<u32> =
        Connection::new(now, 1 << 20, "test", ("sansa", "0")).with_security(&security, "broker", 7);
    conn.on_connected(now);
    let mut events = Vec::new();
    let exchange = |conn: &mut Connection<u32>, broker: &mut Broker, now: Instant, events: &mut Vec<_>| {
        broker.now = now;
        while let Some(out) = conn.take_output() {
            let answer = broker.answer(&mut BytesMut::from(&out[..]));
            conn.on_bytes(now, answer.freeze(), events).unwrap();
        }
    };
    exchange(&mut conn, &mut broker, now, &mut events);
    assert!(conn.is_ready());
    // Idle well past the session's end: no timer fires, nothing is sent...
    now += Duration::from_secs(60);
    let timeouts = crate::connection::Timeouts {
        connect: Duration::from_secs(10),
        handshake: Duration::from_secs(30),
        idle: Duration::from_secs(540),
    };
    assert!(conn.poll_timeout(timeouts).is_some_and(|(at, _)| at > now), "only the idle deadline");
    // ...and the next request goes out only after a new login.
    let body: RequestBody = crate::protocol::messages::ApiVersionsRequest::default().into();
    assert_eq!(conn.send(now, &body, 0, 1, true), Ok(None));
    assert!(!conn.is_ready());
    assert_eq!(conn.in_flight_len(), 1, "the held request counts as in flight");
    exchange(&mut conn, &mut broker, now, &mut events);
    assert!(conn.is_ready());
    assert_eq!(broker.session.authentications(), 2);
    assert!(broker.violations.is_empty(), "{:?}", broker.violations);
    assert!(matches!(events.last(), Some(ConnEvent::Response { token: 1, .. })));
}

#[test]
fn a_refused_renewal_fails_the_held_requests() {
    let mut users = users();
    users.session_lifetime = Some(Duration::from_secs(10));
    let security = alice(SaslMechanism::Plain, "alice-secret");
    let mut broker = Broker::new(users);
    let mut now = t0();
    let mut conn: Connection<u32> =
        Connection::new(now, 1 << 20, "test", ("sansa", "0")).with_security(&security, "broker", 7);
    conn.on_connected(now);
    let mut events = Vec::new();
    while let Some(out) = conn.take_output() {
        let answer = broker.answer(&mut BytesMut::from(&out[..]));
        conn.on_bytes(now, answer.freeze(), &mut events).unwrap();
    }
    broker.users = SaslUsers::new().with_mechanisms(&["PLAIN"]); // alice was removed
    now += Duration::from_secs(20);
    let body: RequestBody = crate::protocol::messages::ApiVersionsRequest::default().into();
    conn.send(now, &body, 0, 5, true).unwrap();
    let mut result = Ok(());
    while let Some(out) = conn.take_output() {
        let answer = broker.answer(&mut BytesMut::from(&out[..]));
        result = conn.on_bytes(now, answer.freeze(), &mut events);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(ConnectionError::Authentication(AuthError::Failed { .. }))), "{result:?}");
    let left: Vec<u32> = conn.drain_in_flight().map(|f| f.token).collect();
    assert_eq!(left, vec![5]);
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

/// The wall clock the client's TLS reads: a time the test certificates are valid at.
fn tls_wall_clock(now: Instant) -> Option<(Instant, i64)> {
    Some((now, 1_830_000_000_000)) // 2027-12-29
}

fn test_ca(verify_hostname: bool) -> TlsSettings {
    let ca_pem = Some(include_bytes!("testdata/ca.pem").to_vec());
    TlsSettings::new(TlsOptions { ca_pem, verify_hostname, ..TlsOptions::default() }).unwrap()
}

/// A TLS connection to `host` against the in-memory server, the server's bytes split at `split`.
fn run_tls(security: &SecurityConfig, host: &str, users: &SaslUsers, split: usize) -> Result<(), ConnectionError> {
    run_tls_at(security, host, users, split, tls_wall_clock(t0()))
}

/// [`run_tls`] with the client's wall clock at `wall_clock`.
fn run_tls_at(
    security: &SecurityConfig,
    host: &str,
    users: &SaslUsers,
    split: usize,
    wall_clock: Option<(Instant, i64)>,
) -> Result<(), ConnectionError> {
    use std::io::{Read, Write};
    let now = t0();
    let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "test", ("sansa", "0"))
        .with_wall_clock(wall_clock)
        .with_security(security, host, 7);
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
    // Certificates are dated by the wall clock the driver gave, not the system's.
    let in_2040 = Some((t0(), 2_210_000_000_000));
    match run_tls_at(&ssl, "127.0.0.1", &users, usize::MAX, in_2040) {
        Err(ConnectionError::Tls(TlsError::UntrustedCertificate(why))) => assert!(why.contains("expired"), "{why}"),
        other => panic!("{other:?}"),
    }

    // A plaintext broker answers the ClientHello with Kafka bytes.
    let now = t0();
    let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "t", ("s", "0"))
        .with_wall_clock(tls_wall_clock(now))
        .with_security(&ssl, "127.0.0.1", 1);
    conn.on_connected(now);
    assert!(conn.take_output().is_some(), "ClientHello");
    let err = conn.on_bytes(now, Bytes::from_static(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]), &mut Vec::new());
    assert_eq!(err, Err(ConnectionError::Tls(TlsError::NotTls)));
    assert!(LocalClose::from(err.unwrap_err()).is_fatal());
    // A hang-up on the hello, without a byte in answer (a plaintext listener), and one after
    // the broker answered are named apart; neither is fatal alone.
    let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "t", ("s", "0"))
        .with_wall_clock(tls_wall_clock(now))
        .with_security(&ssl, "127.0.0.1", 1);
    conn.on_connected(now);
    let close = conn.explain_close().unwrap();
    assert_eq!(close, LocalClose::Tls(TlsError::HungUpOnHello));
    assert!(!close.is_fatal());
    let mut server = tls_server();
    let hello = conn.take_output().unwrap();
    server.read_tls(&mut &hello[..]).unwrap();
    server.process_new_packets().unwrap();
    let mut flight = Vec::new();
    server.write_tls(&mut flight).unwrap();
    conn.on_bytes(now, Bytes::from(flight[..10].to_vec()), &mut Vec::new()).unwrap();
    let close = conn.explain_close().unwrap();
    assert_eq!(close, LocalClose::Tls(TlsError::ClosedInHandshake));
    assert!(!close.is_fatal());
}

// ---- raw SASL tokens (brokers before 1.0) ---------------------------------------------------

/// A broker of Kafka 0.10-0.11: SaslHandshake v0 only (or, with `handshake_v1`, v0-v1 but
/// still no SaslAuthenticate), then the tokens as bare size-prefixed frames. It refuses a
/// login by hanging up, as those brokers do, and hangs up after `hang_up_after` tokens.
struct LegacyBroker {
    users: SaslUsers,
    session: SaslSession,
    handshake_v1: bool,
    raw: bool,
    hung_up: bool,
    hang_up_after: Option<usize>,
    tokens: Vec<Bytes>,
    handshake_versions: Vec<i16>,
}

impl Answers for LegacyBroker {
    fn answer(&mut self, input: &mut BytesMut) -> BytesMut {
        LegacyBroker::answer(self, input)
    }
    fn hung_up(&self) -> bool {
        self.hung_up
    }
}

impl LegacyBroker {
    fn new(users: SaslUsers) -> Self {
        LegacyBroker {
            users,
            session: SaslSession::new(),
            handshake_v1: false,
            raw: false,
            hung_up: false,
            hang_up_after: None,
            tokens: Vec::new(),
            handshake_versions: Vec::new(),
        }
    }

    fn answer(&mut self, input: &mut BytesMut) -> BytesMut {
        let mut out = BytesMut::new();
        while let Some(frame) = FrameDecoder::new(1 << 20).decode(input).unwrap() {
            if self.hung_up {
                break;
            }
            if self.raw {
                self.tokens.push(frame.clone());
                if self.hang_up_after == Some(self.tokens.len()) {
                    self.hung_up = true;
                    break;
                }
                let req = crate::protocol::messages::SaslAuthenticateRequest::default().with_auth_bytes(frame);
                let resp = self.session.authenticate(&self.users, &req, &format!("srv{}", self.tokens.len()));
                if resp.error_code != crate::protocol::ErrorCode::None {
                    // No way to say why without SaslAuthenticate.
                    self.hung_up = true;
                    break;
                }
                out.extend_from_slice(&(resp.auth_bytes.len() as u32).to_be_bytes());
                out.extend_from_slice(&resp.auth_bytes);
                self.raw = self.session.user().is_none();
                continue;
            }
            let (header, body) = decode_request(frame).unwrap();
            let version = header.request_api_version;
            let resp: ResponseBody = match body {
                RequestBody::ApiVersions(_) => {
                    let keys = ApiKey::ALL.iter().filter(|k| **k != ApiKey::SaslAuthenticate).map(|k| {
                        let max = match k {
                            ApiKey::SaslHandshake => i16::from(self.handshake_v1),
                            k => k.versions().max,
                        };
                        ApiVersion::default()
                            .with_api_key(k.as_i16())
                            .with_min_version(k.versions().min)
                            .with_max_version(max)
                    });
                    ApiVersionsResponse::default().with_api_keys(keys.collect()).into()
                }
                RequestBody::SaslHandshake(req) => {
                    self.handshake_versions.push(version);
                    let resp = self.session.handshake(&self.users, &req);
                    self.raw = resp.error_code == crate::protocol::ErrorCode::None;
                    resp.into()
                }
                other => panic!("unexpected {:?}", other.api_key()),
            };
            encode_response(&mut out, header.correlation_id, version, &resp).unwrap();
        }
        out
    }
}

/// [`drive`] against a legacy broker. Ok once ready; a hang-up is what the connection makes
/// of it ([`Connection::explain_sasl_close`]).
fn run_legacy(
    security: &SecurityConfig,
    broker: &mut LegacyBroker,
    split: usize,
) -> Result<Connection<u32>, LocalClose> {
    drive(security, broker, split).map_err(|ended| match ended {
        Ended::Error(e) => LocalClose::from(e),
        Ended::HungUp(conn) => conn.explain_sasl_close().expect("a hang-up in a raw exchange is explained"),
    })
}

#[test]
fn every_mechanism_authenticates_with_raw_tokens_split_at_every_byte() {
    for m in MECHANISMS {
        let security = alice(m, "alice-secret");
        for split in 0..400 {
            let mut broker = LegacyBroker::new(users());
            // Every other run: SaslHandshake v1 advertised, SaslAuthenticate still missing.
            broker.handshake_v1 = split % 2 == 1;
            run_legacy(&security, &mut broker, split).unwrap_or_else(|e| panic!("{m} split {split}: {e}"));
            assert_eq!(broker.session.user(), Some("alice"), "{m} split {split}");
            assert_eq!(broker.handshake_versions, [0], "{m}");
        }
    }
}

#[test]
fn raw_tokens_are_bare_size_prefixed_frames_and_plain_ends_on_an_empty_one() {
    let security = alice(SaslMechanism::Plain, "alice-secret");
    let mut broker = LegacyBroker::new(users());
    let conn = run_legacy(&security, &mut broker, usize::MAX).unwrap();
    assert_eq!(broker.tokens, [Bytes::from_static(b"\0alice\0alice-secret")]);
    // The broker's empty frame was the verdict: nothing else went out.
    let mut conn = conn;
    assert_eq!(conn.take_output(), None);

    let security = alice(SaslMechanism::Scram(ScramHash::Sha256), "alice-secret");
    let mut broker = LegacyBroker::new(users());
    run_legacy(&security, &mut broker, usize::MAX).unwrap();
    assert_eq!(broker.tokens.len(), 2, "client-first and client-final");
    assert!(broker.tokens[0].starts_with(b"n,,n=alice,r="), "{:?}", broker.tokens[0]);
    assert!(broker.tokens[1].starts_with(b"c=biws,r="), "{:?}", broker.tokens[1]);
}

#[test]
fn a_wrong_password_over_raw_tokens_is_a_fatal_hang_up_named_as_a_refusal() {
    for m in MECHANISMS.into_iter().filter(|m| *m != SaslMechanism::OAuthBearer) {
        let security = SecurityConfig::sasl_plaintext(m, "alice", "guess");
        let close = run_legacy(&security, &mut LegacyBroker::new(users()), usize::MAX).unwrap_err();
        assert_eq!(close, LocalClose::Authentication(AuthError::ClosedInRawExchange { detail: None }), "{m}");
        assert!(close.is_fatal());
        let text = format!("{close} {close:?}");
        assert!(!text.contains("guess"), "{text}");
        assert!(close.to_string().contains("probably a refused login"), "{close}");
    }
}

#[test]
fn a_refused_token_over_raw_tokens_keeps_the_brokers_reason() {
    let security = SecurityConfig::oauth_bearer(FixedToken(Ok("not-a-jws-hunter2")));
    let close = run_legacy(&security, &mut LegacyBroker::new(users()), usize::MAX).unwrap_err();
    let LocalClose::Authentication(AuthError::ClosedInRawExchange { detail: Some(d) }) = &close else {
        panic!("{close:?}")
    };
    assert!(d.contains("invalid_token"), "{d}");
    assert!(close.is_fatal());
    assert!(!format!("{close} {close:?}").contains("hunter2"));
}

#[test]
fn a_hang_up_in_the_middle_of_a_raw_exchange_is_fatal_and_only_there_explained() {
    for after in [1, 2] {
        let security = alice(SaslMechanism::Scram(ScramHash::Sha512), "alice-secret");
        let mut broker = LegacyBroker::new(users());
        broker.hang_up_after = Some(after);
        let close = run_legacy(&security, &mut broker, usize::MAX).unwrap_err();
        assert_eq!(close, LocalClose::Authentication(AuthError::ClosedInRawExchange { detail: None }), "{after}");
        assert!(close.is_fatal());
    }
    // Elsewhere a hang-up may be a restart: not explained as a refusal.
    let now = t0();
    let security = alice(SaslMechanism::Plain, "alice-secret");
    let mut conn: Connection<u32> = Connection::new(now, 1 << 20, "t", ("s", "0")).with_security(&security, "b", 1);
    assert_eq!(conn.explain_sasl_close(), None);
    conn.on_connected(now);
    assert_eq!(conn.explain_sasl_close(), None, "in ApiVersions");
    let mut broker = Broker::new(users());
    let answer = broker.answer(&mut BytesMut::from(&conn.take_output().unwrap()[..]));
    conn.on_bytes(now, answer.freeze(), &mut Vec::new()).unwrap();
    assert_eq!(conn.explain_sasl_close(), None, "in SaslHandshake v1");
}

#[test]
fn a_raw_session_is_never_renewed() {
    let security = alice(SaslMechanism::Scram(ScramHash::Sha256), "alice-secret");
    let mut conn = run_legacy(&security, &mut LegacyBroker::new(users()), usize::MAX).unwrap();
    let later = t0() + Duration::from_secs(365 * 86_400);
    let body: RequestBody = crate::protocol::messages::ApiVersionsRequest::default().into();
    assert_eq!(conn.send(later, &body, 0, 1, true), Ok(None));
    assert!(conn.is_ready(), "no re-authentication without SaslAuthenticate");
    assert!(conn.take_output().is_some());
}
