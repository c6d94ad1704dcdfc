//! The fake cluster's SASL and TLS listeners: raw frames against the rules Kafka enforces,
//! and sansa's sans-IO client through them (every mechanism it speaks, over plain TCP and
//! TLS, the server's bytes split at every boundary).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{encode_request, FrameDecoder};
use sansa::protocol::messages::{
    MetadataRequest, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use sansa::protocol::{ApiKey, Codec, ErrorCode, RequestBody, StrBytes};
use sansa::security::server::SaslUsers;
use sansa::security::{AuthError, SaslMechanism, ScramHash, SecurityConfig, TlsError, UnsecuredJws};
use sansa::{
    BrokerAddress, Client, CloseCause, Config, ConnId, Event, Input, LocalClose, RequestError, Target, Transmit,
};

use super::oauth::{client_first, unsecured_token};
use super::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput};
use crate::fake_tls::{test_client_tls, test_server_config, ServerTls};

#[allow(clippy::disallowed_methods)] // an arbitrary origin for a virtual clock
fn t0() -> Instant {
    Instant::now()
}

fn users() -> SaslUsers {
    let mut u = SaslUsers::new().with_user("alice", "alice-secret").with_user("bob", "bob-secret");
    u.mechanisms.push("OAUTHBEARER".into());
    u
}

fn cluster(sasl: Option<SaslUsers>, tls: bool) -> FakeCluster {
    let mut c = FakeCluster::new(FakeClusterConfig {
        brokers: 1,
        auto_create_topics: false,
        sasl,
        tls: tls.then(test_server_config),
        ..FakeClusterConfig::default()
    });
    c.set_address(1, "localhost", 9092);
    c
}

// ---- raw frames ------------------------------------------------------------------------------

struct Raw {
    cluster: FakeCluster,
    conn: FakeConnId,
    now: Instant,
    next_id: i32,
}

impl Raw {
    fn new(users: SaslUsers) -> Self {
        let mut cluster = cluster(Some(users), false);
        let now = t0();
        cluster.handle_connect(now, 1, FakeConnId(1)).unwrap();
        Raw { cluster, conn: FakeConnId(1), now, next_id: 0 }
    }

    /// Sends one request; returns its answer's body bytes, or `None` when the connection was
    /// closed instead.
    fn call(&mut self, version: i16, body: RequestBody) -> Option<Bytes> {
        let mut buf = BytesMut::new();
        self.next_id += 1;
        let api = body.api_key();
        encode_request(&mut buf, self.next_id, Some("raw"), version, &body).unwrap();
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        let _ = self.cluster.handle_frame(self.now, self.conn, frame);
        let mut answer = None;
        while let Some(o) = self.cluster.poll_output() {
            // A refusal is answered, then closed: the answer still counts.
            if let FakeOutput::Send { bytes, .. } = o {
                let mut b = bytes.slice(4..);
                ResponseHeader::decode(&mut b, api.response_header_version(version)).unwrap();
                answer = Some(b);
            }
        }
        answer
    }

    fn handshake(&mut self, mechanism: &str) -> Option<SaslHandshakeResponse> {
        self.handshake_at(1, mechanism)
    }

    fn handshake_at(&mut self, version: i16, mechanism: &str) -> Option<SaslHandshakeResponse> {
        let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from(mechanism));
        let mut b = self.call(version, req.into())?;
        Some(SaslHandshakeResponse::decode(&mut b, version).unwrap())
    }

    /// Sends a bare token (after SaslHandshake v0); returns the bare token that came back,
    /// or `None` when the connection was closed instead (with nothing sent before).
    fn raw_token(&mut self, token: &[u8]) -> Option<Bytes> {
        let _ = self.cluster.handle_frame(self.now, self.conn, Bytes::copy_from_slice(token));
        let mut answer = None;
        while let Some(o) = self.cluster.poll_output() {
            match o {
                FakeOutput::Send { bytes, .. } => {
                    assert_eq!(bytes[..4], ((bytes.len() - 4) as u32).to_be_bytes(), "one size-prefixed frame");
                    answer = Some(bytes.slice(4..));
                }
                FakeOutput::Close { .. } => assert_eq!(answer.take(), None, "a refusal says nothing"),
            }
        }
        answer
    }

    fn authenticate(&mut self, bytes: &[u8]) -> Option<SaslAuthenticateResponse> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(bytes));
        let mut b = self.call(2, req.into())?;
        Some(SaslAuthenticateResponse::decode(&mut b, 2).unwrap())
    }

    fn plain_login(&mut self, user: &str, password: &str) -> Option<SaslAuthenticateResponse> {
        assert_eq!(self.handshake("PLAIN")?.error_code, ErrorCode::None);
        self.authenticate(format!("\0{user}\0{password}").as_bytes())
    }

    fn metadata(&mut self) -> Option<Bytes> {
        self.call(12, MetadataRequest::default().with_topics(None).into())
    }
}

#[test]
fn requests_before_authentication_close_the_connection() {
    let mut raw = Raw::new(users());
    assert!(raw.call(3, sansa::protocol::messages::ApiVersionsRequest::default().into()).is_some());
    assert_eq!(raw.metadata(), None, "Metadata before SASL");
    assert!(!raw.cluster.is_connected(raw.conn));
}

#[test]
fn sasl_apis_are_advertised_only_by_a_sasl_listener() {
    assert!(cluster(Some(users()), false).advertised_versions(ApiKey::SaslHandshake).is_some());
    assert!(cluster(None, false).advertised_versions(ApiKey::SaslAuthenticate).is_none());
}

#[test]
fn a_refused_login_is_answered_then_closed() {
    let mut raw = Raw::new(users());
    let r = raw.plain_login("alice", "guess").unwrap();
    assert_eq!(r.error_code, ErrorCode::SaslAuthenticationFailed);
    assert!(!raw.cluster.is_connected(raw.conn));

    let mut raw = Raw::new(users());
    let r = raw.handshake("GSSAPI").unwrap();
    assert_eq!(r.error_code, ErrorCode::UnsupportedSaslMechanism);
    assert!(r.mechanisms.iter().any(|m| m.as_str() == "OAUTHBEARER"));
    assert!(!raw.cluster.is_connected(raw.conn));
}

#[test]
fn an_expired_session_is_closed_at_its_next_request_unless_it_reauthenticates() {
    let mut u = users();
    u.session_lifetime = Some(Duration::from_secs(10));
    let mut raw = Raw::new(u.clone());
    let r = raw.plain_login("alice", "alice-secret").unwrap();
    assert_eq!((r.error_code, r.session_lifetime_ms), (ErrorCode::None, 10_000));
    assert_eq!(raw.cluster.authenticated_user(raw.conn), Some("alice"));
    raw.now += Duration::from_secs(9);
    assert!(raw.metadata().is_some());
    // Re-authentication (KIP-368) on the same connection, as the same user, renews it.
    assert_eq!(raw.plain_login("alice", "alice-secret").unwrap().error_code, ErrorCode::None);
    raw.now += Duration::from_secs(9);
    assert!(raw.metadata().is_some(), "renewed at 9 s");
    // Past the renewed lifetime: a late re-authentication is still taken...
    raw.now += Duration::from_secs(2);
    assert_eq!(raw.plain_login("alice", "alice-secret").unwrap().error_code, ErrorCode::None);
    assert!(raw.metadata().is_some());
    // ...but any other request closes the connection.
    raw.now += Duration::from_secs(11);
    assert_eq!(raw.metadata(), None);
    assert_eq!(raw.cluster.expired_sessions_closed(), 1);

    // Another user cannot take the connection over.
    let mut raw = Raw::new(u);
    raw.plain_login("alice", "alice-secret").unwrap();
    assert_eq!(raw.plain_login("bob", "bob-secret").unwrap().error_code, ErrorCode::SaslAuthenticationFailed);
    assert!(!raw.cluster.is_connected(raw.conn));
}

/// Kafka checks a session's expiry as it reads a request, and reads a connection's next
/// request once the one before is answered: a request read before the expiry and held past
/// it (an injected delay) is answered; the one that waited behind it is read after the
/// expiry and closes the connection, but it arrived in time, so the client is not blamed.
#[test]
fn a_session_is_checked_as_each_request_is_read() {
    use super::{Fault, FaultAction};
    let mut u = users();
    u.session_lifetime = Some(Duration::from_secs(10));
    let mut raw = Raw::new(u);
    raw.plain_login("alice", "alice-secret").unwrap();
    raw.cluster.inject(Fault::new(FaultAction::Delay(Duration::from_secs(3))).on_api(ApiKey::Metadata).times(1));
    raw.now += Duration::from_secs(9);
    assert_eq!(raw.metadata(), None, "read at 9 s, held");
    raw.now += Duration::from_millis(500);
    assert_eq!(raw.metadata(), None, "arrived at 9.5 s, waits behind it");
    assert!(raw.cluster.is_connected(raw.conn));
    raw.now += Duration::from_secs(3);
    raw.cluster.handle_timeout(raw.now);
    let outputs: Vec<FakeOutput> = std::iter::from_fn(|| raw.cluster.poll_output()).collect();
    assert!(matches!(outputs.first(), Some(FakeOutput::Send { .. })), "the held request is answered: {outputs:?}");
    assert_eq!(outputs.len(), 2, "then closed, nothing more answered: {outputs:?}");
    assert!(!raw.cluster.is_connected(raw.conn));
    assert_eq!(raw.cluster.expired_sessions_closed(), 0, "both arrived before the expiry");
}

#[test]
fn oauthbearer_takes_live_unsecured_tokens_and_bounds_the_session_by_their_expiry() {
    let mut u = users();
    u.session_lifetime = Some(Duration::from_secs(3_600));
    let mut raw = Raw::new(u.clone());
    let wall_s = raw.cluster.config().start_time_ms / 1000;
    assert_eq!(raw.handshake("OAUTHBEARER").unwrap().error_code, ErrorCode::None);
    let r = raw.authenticate(&client_first(&unsecured_token("carol", wall_s + 60))).unwrap();
    assert_eq!((r.error_code, r.session_lifetime_ms), (ErrorCode::None, 60_000), "the token expires first");
    assert_eq!(raw.cluster.authenticated_user(raw.conn), Some("carol"));
    assert!(raw.metadata().is_some());

    let mut raw = Raw::new(u);
    raw.handshake("OAUTHBEARER").unwrap();
    let r = raw.authenticate(&client_first(&unsecured_token("carol", wall_s - 1))).unwrap();
    assert_eq!(r.error_code, ErrorCode::None);
    assert_eq!(&r.auth_bytes[..], br#"{"status":"invalid_token"}"#);
    let r = raw.authenticate(b"\x01").unwrap();
    assert_eq!(r.error_code, ErrorCode::SaslAuthenticationFailed);
    assert!(!raw.cluster.is_connected(raw.conn));
}

#[test]
fn a_forged_scram_signature_is_noticed_only_if_a_client_goes_on() {
    let mut net = Net::new(cluster(Some(users()), false), scram_alice(ScramHash::Sha256));
    net.cluster.set_forged_scram_signature(true);
    let err = net.metadata().unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert_eq!(net.cluster.trusted_forgeries(), 0);
}

// ---- sansa's client through the listeners ----------------------------------------------------

fn scram_alice(hash: ScramHash) -> SecurityConfig {
    SecurityConfig::sasl_plaintext(SaslMechanism::Scram(hash), "alice", "alice-secret")
}

struct Link {
    fake: FakeConnId,
    inbound: BytesMut,
    tls: Option<ServerTls>,
}

/// One client and the cluster in memory; the server's bytes reach the client in two pieces,
/// cut at `split` bytes into each delivery.
struct Net {
    client: Client,
    cluster: FakeCluster,
    now: Instant,
    links: BTreeMap<ConnId, Link>,
    events: Vec<Event>,
    split: usize,
    next: u64,
    /// Every byte on the wire, both ways, in order.
    wire: Vec<u8>,
}

impl Net {
    fn new(cluster: FakeCluster, security: SecurityConfig) -> Self {
        let now = t0();
        let config = Config::new("localhost:9092").unwrap().with_rng_seed(3).with_security(security);
        let mut client = Client::new(config, now);
        client.set_wall_clock(now, FakeClusterConfig::default().start_time_ms);
        Net {
            client,
            cluster,
            now,
            links: BTreeMap::new(),
            events: Vec::new(),
            split: usize::MAX,
            next: 0,
            wire: Vec::new(),
        }
    }

    fn deliver(&mut self, conn: ConnId, bytes: Vec<u8>, inputs: &mut Vec<Input>) {
        self.wire.extend_from_slice(&bytes);
        let bytes = Bytes::from(bytes);
        let cut = self.split.min(bytes.len());
        for piece in [bytes.slice(..cut), bytes.slice(cut..)] {
            if !piece.is_empty() {
                inputs.push(Input::Received { conn, data: piece });
            }
        }
    }

    fn run(&mut self) {
        loop {
            let mut inputs = Vec::new();
            while let Some(t) = self.client.poll_transmit(self.now) {
                match t {
                    Transmit::Open { conn, address } => {
                        assert_eq!(address, BrokerAddress::new("localhost", 9092));
                        self.next += 1;
                        let fake = FakeConnId(self.next);
                        self.cluster.handle_connect(self.now, 1, fake).unwrap();
                        let tls = self.cluster.config().tls.clone().map(ServerTls::new);
                        self.links.insert(conn, Link { fake, inbound: BytesMut::new(), tls });
                        inputs.push(Input::Connected { conn });
                    }
                    Transmit::Send { conn, bytes } => {
                        self.wire.extend_from_slice(&bytes);
                        let Some(link) = self.links.get_mut(&conn) else { continue };
                        let plain = match link.tls.as_mut() {
                            Some(tls) => match tls.receive(&bytes) {
                                Ok(p) => p,
                                Err(e) => panic!("server TLS failed: {e}"),
                            },
                            None => bytes.to_vec(),
                        };
                        link.inbound.extend_from_slice(&plain);
                        let fake = link.fake;
                        let mut frames = Vec::new();
                        let mut garbage = false;
                        loop {
                            match FrameDecoder::default().decode(&mut link.inbound) {
                                Ok(Some(frame)) => frames.push(frame),
                                Ok(None) => break,
                                Err(_) => {
                                    garbage = true;
                                    break;
                                }
                            }
                        }
                        if garbage {
                            // Not Kafka (a TLS hello on a plaintext listener): Kafka hangs up.
                            self.links.remove(&conn);
                            self.cluster.handle_disconnect(fake);
                            inputs.push(Input::Closed { conn, cause: CloseCause::PeerClosed });
                            continue;
                        }
                        if let Some(out) = link.tls.as_mut().and_then(ServerTls::take_output) {
                            self.deliver(conn, out, &mut inputs);
                        }
                        for frame in frames {
                            let _ = self.cluster.handle_frame(self.now, fake, frame);
                        }
                    }
                    Transmit::Close { conn } => {
                        if let Some(link) = self.links.remove(&conn) {
                            self.cluster.handle_disconnect(link.fake);
                        }
                    }
                    other => panic!("unexpected transmit {other:?}"),
                }
            }
            while let Some(o) = self.cluster.poll_output() {
                let fake = match &o {
                    FakeOutput::Send { conn, .. } | FakeOutput::Close { conn } => *conn,
                };
                let Some(conn) = self.links.iter().find(|(_, l)| l.fake == fake).map(|(c, _)| *c) else { continue };
                match o {
                    FakeOutput::Send { bytes, .. } => {
                        let link = self.links.get_mut(&conn).unwrap();
                        let out = match link.tls.as_mut() {
                            Some(tls) => {
                                tls.send(&bytes);
                                tls.take_output().unwrap_or_default()
                            }
                            None => bytes.to_vec(),
                        };
                        self.deliver(conn, out, &mut inputs);
                    }
                    FakeOutput::Close { .. } => {
                        self.links.remove(&conn);
                        inputs.push(Input::Closed { conn, cause: CloseCause::PeerClosed });
                    }
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if inputs.is_empty() {
                return;
            }
            for i in inputs {
                self.client.handle_input(self.now, i);
            }
        }
    }

    /// A Metadata request's outcome, following the client's timers up to a minute.
    fn metadata(&mut self) -> Result<(), RequestError> {
        let id = self.client.request(self.now, Target::AnyBroker, MetadataRequest::default().into(), None);
        let give_up = self.now + Duration::from_secs(60);
        loop {
            self.run();
            let outcome = self.events.iter().find_map(|e| match e {
                Event::Response { id: i, result } if *i == id => Some(result.clone().map(|_| ())),
                _ => None,
            });
            if let Some(outcome) = outcome {
                return outcome;
            }
            let t = self.client.poll_timeout().expect("a request in flight has a deadline");
            assert!(t <= give_up, "no outcome within a minute");
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
        }
    }

    /// The users the cluster authenticated on the client's open connections.
    fn users(&self) -> Vec<String> {
        self.links.values().filter_map(|l| self.cluster.authenticated_user(l.fake).map(str::to_string)).collect()
    }
}

const MECHANISMS: [SaslMechanism; 3] =
    [SaslMechanism::Plain, SaslMechanism::Scram(ScramHash::Sha256), SaslMechanism::Scram(ScramHash::Sha512)];

#[test]
fn the_client_logs_in_with_every_mechanism_over_sasl_plaintext_and_sasl_ssl() {
    for tls in [false, true] {
        for m in MECHANISMS {
            let mut security = SecurityConfig::sasl_plaintext(m, "alice", "alice-secret");
            if tls {
                security = security.with_tls(test_client_tls());
            }
            let mut net = Net::new(cluster(Some(users()), tls), security);
            net.metadata().unwrap_or_else(|e| panic!("{m} tls={tls}: {e}"));
            assert_eq!(net.users(), ["alice"], "{m} tls={tls}");
        }
    }
    let mut net = Net::new(cluster(None, true), SecurityConfig::default().with_tls(test_client_tls()));
    net.metadata().unwrap();
}

/// Kafka reads a TLS hello on a plaintext listener as an oversized request and hangs up
/// without a word. The client names it, and the third hang-up in a row fails what waits,
/// long before the request timeout (30 s), without a retry storm.
#[test]
fn a_tls_client_on_a_plaintext_listener_is_told_so_quickly() {
    let mut net = Net::new(cluster(None, false), SecurityConfig::default().with_tls(test_client_tls()));
    let start = net.now;
    let err = net.metadata().unwrap_err();
    assert!(
        matches!(
            &err,
            RequestError::Unreachable { cause: CloseCause::Local(LocalClose::Tls(TlsError::HungUpOnHello)), .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("PLAINTEXT"), "{err}");
    assert!(net.now - start < Duration::from_secs(2), "took {:?}", net.now - start);
    assert_eq!(net.next, 3, "three connections");
}

#[test]
fn handshakes_split_at_every_byte_boundary() {
    // SASL_SSL: the TLS flights, then each SASL answer, cut at every offset of the first
    // kilobyte (the server's first flight) with PLAIN, and at every 37th with SCRAM.
    let users = users();
    let plain = SecurityConfig::sasl_plaintext(SaslMechanism::Plain, "alice", "alice-secret");
    let runs = (0..1_000).map(|split| (split, plain.clone()));
    let runs = runs.chain((0..2_500).step_by(37).map(|split| (split, scram_alice(ScramHash::Sha512))));
    for (split, security) in runs {
        let mut net = Net::new(cluster(Some(users.clone()), true), security.with_tls(test_client_tls()));
        net.split = split;
        net.metadata().unwrap_or_else(|e| panic!("split {split}: {e}"));
    }
}

#[test]
fn a_wrong_password_fails_fast_with_an_authentication_error() {
    for tls in [false, true] {
        for m in MECHANISMS {
            let mut security = SecurityConfig::sasl_plaintext(m, "alice", "guess");
            if tls {
                security = security.with_tls(test_client_tls());
            }
            let mut net = Net::new(cluster(Some(users()), tls), security);
            let start = net.now;
            let err = net.metadata().unwrap_err();
            assert!(err.to_string().contains("authentication failed"), "{m}: {err}");
            assert!(!err.to_string().contains("guess"));
            assert!(net.now - start < Duration::from_secs(1), "{m}: not retried until the timeout");
        }
    }
}

/// A hook for client re-authentication (KIP-368): with a session lifetime shorter than the
/// run, a client that re-authenticates keeps its one connection; one that does not has it
/// closed by the broker at its first request after the expiry.
#[test]
fn a_client_reauthenticates_before_its_session_expires() {
    let mut u = users();
    u.session_lifetime = Some(Duration::from_secs(30));
    let mut net = Net::new(cluster(Some(u), false), scram_alice(ScramHash::Sha256));
    for _ in 0..10 {
        net.metadata().unwrap();
        net.now += Duration::from_secs(10);
        net.client.handle_timeout(net.now);
    }
    assert_eq!(net.next, 1, "one connection, re-authenticated");
}

/// With the simulator's seeded crypto and virtual clock on both ends, a SASL_SSL session
/// replays byte for byte; another seed draws other bytes.
#[test]
fn a_seeded_tls_session_replays_byte_for_byte() {
    use crate::fake_tls::{replay, replayable_client_tls, replayable_server_config};
    let run = |seed: u64| {
        replay::reset(seed);
        replay::set_time(1_767_225_600_000);
        let mut c = FakeCluster::new(FakeClusterConfig {
            brokers: 1,
            sasl: Some(users()),
            tls: Some(replayable_server_config()),
            ..FakeClusterConfig::default()
        });
        c.set_address(1, "localhost", 9092);
        let mut net = Net::new(c, scram_alice(ScramHash::Sha256).with_tls(replayable_client_tls()));
        net.metadata().unwrap();
        net.metadata().unwrap();
        net.wire
    };
    let first = run(1);
    assert!(first.len() > 1_000, "a TLS handshake took place");
    assert_eq!(first, run(1));
    assert_ne!(first, run(2));
}

// ---- a legacy SASL listener (Kafka 0.10-0.11: raw tokens) -------------------------------------

fn legacy_cluster(tls: bool) -> FakeCluster {
    legacy_cluster_for(users(), tls)
}

fn legacy_cluster_for(users: SaslUsers, tls: bool) -> FakeCluster {
    let mut c = FakeCluster::new(FakeClusterConfig {
        brokers: 1,
        auto_create_topics: false,
        sasl: Some(users),
        legacy_sasl: true,
        tls: tls.then(test_server_config),
        ..FakeClusterConfig::default()
    });
    c.set_address(1, "localhost", 9092);
    c
}

#[test]
fn a_legacy_listener_advertises_sasl_handshake_v0_and_no_sasl_authenticate() {
    let c = legacy_cluster(false);
    assert_eq!(c.advertised_versions(ApiKey::SaslHandshake), Some((0, 0)));
    assert_eq!(c.advertised_versions(ApiKey::SaslAuthenticate), None);
}

#[test]
fn after_sasl_handshake_v0_tokens_travel_raw_and_a_refusal_is_a_hang_up() {
    let mut raw = Raw::new(users());
    raw.cluster = legacy_cluster(false);
    raw.cluster.handle_connect(raw.now, 1, raw.conn).unwrap();
    assert_eq!(raw.handshake_at(0, "PLAIN").unwrap().error_code, ErrorCode::None);
    assert_eq!(raw.raw_token(b"\0alice\0alice-secret").as_deref(), Some(&b""[..]), "PLAIN's verdict: empty");
    assert_eq!(raw.cluster.authenticated_user(raw.conn), Some("alice"));
    assert!(raw.metadata().is_some());

    let mut raw = Raw::new(users());
    raw.cluster = legacy_cluster(false);
    raw.cluster.handle_connect(raw.now, 1, raw.conn).unwrap();
    assert_eq!(raw.handshake_at(0, "PLAIN").unwrap().error_code, ErrorCode::None);
    assert_eq!(raw.raw_token(b"\0alice\0guess"), None);
    assert!(!raw.cluster.is_connected(raw.conn));

    // As on Kafka, the handshake's version decides, not the advertisement: v0 on a listener
    // of today goes raw too, and its session has no lifetime to outlive.
    let mut u = users();
    u.session_lifetime = Some(Duration::from_secs(10));
    let mut raw = Raw::new(u);
    assert_eq!(raw.handshake_at(0, "SCRAM-SHA-256").unwrap().error_code, ErrorCode::None);
    let first = raw.raw_token(b"n,,n=alice,r=abc").unwrap();
    assert!(first.starts_with(b"r=abc"), "server-first: {first:?}");
    assert_eq!(raw.raw_token(b"c=biws,r=abc,p=AAAA"), None, "a wrong proof: hung up");
}

#[test]
fn the_client_logs_in_on_a_legacy_broker_with_raw_tokens_and_gets_metadata() {
    let oauth = SecurityConfig::oauth_bearer(UnsecuredJws::new("alice", 3600));
    for tls in [false, true] {
        let configs = MECHANISMS.map(|m| SecurityConfig::sasl_plaintext(m, "alice", "alice-secret"));
        for mut security in configs.into_iter().chain([oauth.clone()]) {
            if tls {
                security = security.with_tls(test_client_tls());
            }
            let what = format!("{:?} tls={tls}", security.sasl.as_ref().map(|s| s.mechanism));
            let mut net = Net::new(legacy_cluster(tls), security);
            // OAUTHBEARER's token is dated by the wall clock the cluster keeps too.
            let start_ms = net.cluster.config().start_time_ms;
            net.client.set_wall_clock(net.now, start_ms);
            net.metadata().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(net.users(), ["alice"], "{what}");
            // Long past any lifetime: no renewal is attempted, and none is needed.
            net.now += Duration::from_secs(86_400);
            net.metadata().unwrap_or_else(|e| panic!("{what}, a day later: {e}"));
            assert_eq!(net.next, 1, "{what}: one connection");
        }
    }
    // Every answer cut at every offset of its first 300 bytes (SCRAM keys derived once).
    let users = users();
    for split in 0..300 {
        let plain = SecurityConfig::sasl_plaintext(SaslMechanism::Plain, "alice", "alice-secret");
        let mut net = Net::new(legacy_cluster_for(users.clone(), false), plain);
        net.split = split;
        net.metadata().unwrap_or_else(|e| panic!("split {split}: {e}"));
    }
}

#[test]
fn a_wrong_password_on_a_legacy_broker_fails_fast_as_a_probable_refusal() {
    for tls in [false, true] {
        for m in MECHANISMS {
            let mut security = SecurityConfig::sasl_plaintext(m, "alice", "guess");
            if tls {
                security = security.with_tls(test_client_tls());
            }
            let mut net = Net::new(legacy_cluster(tls), security);
            let start = net.now;
            let err = net.metadata().unwrap_err();
            let cause = match &err {
                RequestError::Unreachable { cause, .. } | RequestError::Disconnected { cause, .. } => cause,
                other => panic!("{m}: {other:?}"),
            };
            assert!(
                matches!(cause, CloseCause::Local(LocalClose::Authentication(AuthError::ClosedInRawExchange { .. }))),
                "{m}: {cause:?}"
            );
            assert!(err.to_string().contains("probably a refused login"), "{m}: {err}");
            assert!(!format!("{err} {err:?}").contains("guess"));
            assert!(net.now - start < Duration::from_secs(1), "{m}: not retried until the timeout");
        }
    }
}
