//! One broker connection: the only machine that touches bytes.
//!
//! It frames requests (size prefix, header with correlation id and client id, body), splits
//! the inbound stream into frames at any byte boundary, matches responses to requests by
//! correlation id (Kafka answers in order on a connection), negotiates API versions with
//! ApiVersions when it opens, and keeps its own deadlines (connect, handshake, idle).
//!
//! # States
//!
//! | state | left when | to |
//! |---|---|---|
//! | `Connecting` | the driver reports the TCP connection open | `ApiVersions` |
//! | `ApiVersions { version }` | the broker answers (UNSUPPORTED_VERSION: resent at the version it names) | `SaslHandshake` with SASL, else `Ready` |
//! | `SaslHandshake` | the broker accepts the mechanism (or lists the ones it enables: fatal) | `SaslAuthenticate`, or `SaslRaw` after v0 |
//! | `SaslAuthenticate` | the exchange ends (a refusal is fatal, never retried on this connection) | `Ready` |
//! | `SaslRaw` | the exchange ends (a hang-up is taken for a refusal: fatal) | `Ready` |
//! | `Ready` | a request is sent once the SASL session is due for re-authentication | `Draining` |
//! | `Draining` | the last response in flight arrives | `SaslHandshake` (re-authentication) |
//! | `Ready` | the client closes it, or a protocol violation | dropped |
//!
//! Any protocol violation is fatal: the connection reports it and the client closes it with
//! a typed [`LocalClose`]. SASL requests are framed like any other, after ApiVersions, so
//! their versions are negotiated: SaslHandshake v1 then SaslAuthenticate (Kafka 1.0+).
//!
//! # Raw SASL tokens (brokers before 1.0)
//!
//! A broker that advertises SaslHandshake v0 only, or no SaslAuthenticate (Kafka 0.10 and
//! 0.11), gets SaslHandshake v0; the mechanism's tokens then travel as bare frames, a size
//! prefix and the token with no request or response header, both ways (`SaslRaw`). Each
//! frame from the broker is the next token (PLAIN's verdict is an empty one). Such a broker
//! refuses a login by closing the connection without a word, so a hang-up in `SaslRaw` is
//! reported as a probable refusal (`Connection::explain_sasl_close`), fatal like a wrong
//! password. Without SaslAuthenticate no session lifetime is told and a session cannot be
//! renewed, so such connections never re-authenticate.
//!
//! # Re-authentication (KIP-368)
//!
//! When SaslAuthenticate reports a session lifetime, the connection re-authenticates at a
//! random point between 85% and 95% of it (as Java's client does: margin for latency and
//! clock drift, and jitter so many connections do not all re-authenticate at once). It does so
//! lazily, when a request is sent after that point, as Java's client does too: a broker
//! checks the session only when a request other than SaslHandshake arrives, so an idle
//! connection needs no timer and costs nothing until it is used again. The request that found
//! the session due, and any after it, are held; once the responses in flight have arrived,
//! SaslHandshake and SaslAuthenticate run again on the same connection, then the held
//! requests go out in order.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::protocol::frame::{
    encode_request, encode_request_spliced, response_correlation_id, FrameDecoder, FrameError,
};
use crate::protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use crate::protocol::primitives::{Spliced, Splices};
use crate::protocol::{
    ApiKey, Codec, DecodeError, EncodeError, ErrorCode, Message, RequestBody, ResponseBody, StrBytes, VersionRange,
};
use crate::rand::Rng;
use crate::security::{AuthError, SaslClient, SaslConfig, SecurityConfig, TlsError};
use std::sync::Arc;

/// Versions of each API a broker supports, from its ApiVersions answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerApiVersions {
    ranges: BTreeMap<i16, VersionRange>,
}

impl BrokerApiVersions {
    /// Builds the table from `(api key, min, max)` triples.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        BrokerApiVersions { ranges: ranges.into_iter().map(|(k, lo, hi)| (k, VersionRange::new(lo, hi))).collect() }
    }

    /// The broker's range for an API key, if it advertises it.
    pub fn get(&self, api_key: i16) -> Option<VersionRange> {
        self.ranges.get(&api_key).copied()
    }

    /// Every advertised `(api key, range)`, by key.
    pub fn iter(&self) -> impl Iterator<Item = (i16, VersionRange)> + '_ {
        self.ranges.iter().map(|(k, r)| (*k, *r))
    }

    /// The highest version of `api` that both the broker and sansa support.
    pub fn negotiate(&self, api: ApiKey) -> Result<i16, VersionError> {
        let ours = api.versions();
        let theirs = self.get(api.as_i16()).ok_or(VersionError::ApiNotSupported(api))?;
        let common = ours.intersect(theirs);
        if common.is_empty() {
            return Err(VersionError::NoCommonVersion { api, broker: theirs, sansa: ours });
        }
        Ok(common.max)
    }

    /// Checks that a pinned version is supported by both sides.
    pub fn check(&self, api: ApiKey, version: i16) -> Result<i16, VersionError> {
        let ours = api.versions();
        let theirs = self.get(api.as_i16()).ok_or(VersionError::ApiNotSupported(api))?;
        if ours.contains(version) && theirs.contains(version) {
            Ok(version)
        } else {
            Err(VersionError::NoCommonVersion {
                api,
                broker: theirs,
                sansa: ours.intersect(VersionRange::new(version, version)),
            })
        }
    }
}

/// Why a request cannot be sent to a broker at any version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The broker does not advertise the API at all.
    #[error("the broker does not support {0}")]
    ApiNotSupported(ApiKey),
    /// The broker's and sansa's version ranges do not overlap.
    #[error("no common version of {api}: the broker supports {}-{}, sansa {}-{}", broker.min, broker.max, sansa.min, sansa.max)]
    NoCommonVersion {
        /// The API.
        api: ApiKey,
        /// What the broker supports.
        broker: VersionRange,
        /// What sansa supports (or was asked for).
        sansa: VersionRange,
    },
}

/// A protocol violation that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The byte stream could not be framed (oversized, negative, or not Kafka at all).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A response whose correlation id matches no request in flight.
    #[error("response with correlation id {found}, but {expected:?} was expected next")]
    UnexpectedCorrelation {
        /// Correlation id in the response.
        found: i32,
        /// The oldest request in flight, if any.
        expected: Option<i32>,
    },
    /// The ApiVersions answer could not be decoded.
    #[error("invalid ApiVersions response: {0}")]
    Handshake(DecodeError),
    /// The broker refused ApiVersions with an error other than UNSUPPORTED_VERSION.
    #[error("ApiVersions failed: {0}")]
    HandshakeRefused(ErrorCode),
    /// SASL authentication failed.
    #[error(transparent)]
    Authentication(#[from] AuthError),
    /// The TLS session failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A TLS record arrived on a connection without TLS.
    #[error("the broker answered with TLS: this port probably expects TLS (security.protocol SSL or SASL_SSL)")]
    ExpectsTls,
}

/// Why the client itself closed a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalClose {
    /// A request on it got no answer within its deadline; later answers would queue behind it.
    #[error("a request timed out")]
    RequestTimeout,
    /// The broker did not answer ApiVersions in time.
    #[error("no answer to ApiVersions")]
    HandshakeTimeout,
    /// Nothing moved on it for `connections.max.idle.ms`.
    #[error("idle")]
    Idle,
    /// The broker broke the protocol.
    #[error("protocol violation: {0}")]
    ProtocolViolation(ConnectionError),
    /// Authentication failed: retrying with the same settings cannot help.
    #[error("{0}")]
    Authentication(AuthError),
    /// The TLS handshake or session failed.
    #[error("{0}")]
    Tls(TlsError),
    /// The broker answered in TLS, so the port expects TLS and `security.protocol` says
    /// PLAINTEXT or SASL_PLAINTEXT: reconnecting cannot help.
    #[error("the broker answered with TLS: this port probably expects TLS (security.protocol SSL or SASL_SSL)")]
    ExpectsTls,
    /// The client closed.
    #[error("the client closed")]
    ClientClosed,
    /// The driver that carried the bytes stopped.
    #[error("the driver stopped")]
    DriverStopped,
}

impl From<ConnectionError> for LocalClose {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Authentication(a) => LocalClose::Authentication(a),
            ConnectionError::Tls(t) => LocalClose::Tls(t),
            ConnectionError::ExpectsTls => LocalClose::ExpectsTls,
            other => LocalClose::ProtocolViolation(other),
        }
    }
}

impl LocalClose {
    /// Whether reconnecting with the same settings must fail the same way, so requests
    /// waiting for the broker should fail now rather than at their deadline.
    pub fn is_fatal(&self) -> bool {
        // A hang-up in the handshake may be a restart, and a token provider without a token
        // yet may have one soon: retried, though named.
        matches!(self, LocalClose::Authentication(a) if !matches!(a, AuthError::Token(crate::security::TokenError::Unavailable(_))))
            || matches!(self, LocalClose::Tls(t) if !matches!(t, TlsError::ClosedInHandshake | TlsError::HungUpOnHello))
            || matches!(self, LocalClose::ExpectsTls)
    }
}

#[derive(Debug)]
enum State {
    Connecting,
    /// ApiVersions sent at `version`, with this correlation id.
    ApiVersions {
        version: i16,
        correlation_id: i32,
    },
    /// SaslHandshake sent; SaslAuthenticate will go at `auth_version`, or the tokens go raw
    /// when it is `None` (SaslHandshake v0).
    SaslHandshake {
        version: i16,
        correlation_id: i32,
        auth_version: Option<i16>,
    },
    /// A SaslAuthenticate exchange is under way.
    SaslAuthenticate {
        version: i16,
        correlation_id: i32,
        client: SaslClient,
    },
    /// A raw-token exchange is under way (after SaslHandshake v0): frames are tokens.
    SaslRaw {
        client: SaslClient,
    },
    Ready,
    /// Re-authentication is due: no new requests go out until those in flight are answered.
    Draining,
}

impl State {
    /// The handshake request awaiting its answer, if any: (correlation id, api, version).
    fn handshake(&self) -> Option<(i32, ApiKey, i16)> {
        match *self {
            State::ApiVersions { version, correlation_id } => Some((correlation_id, ApiKey::ApiVersions, version)),
            State::SaslHandshake { version, correlation_id, .. } => {
                Some((correlation_id, ApiKey::SaslHandshake, version))
            }
            State::SaslAuthenticate { version, correlation_id, .. } => {
                Some((correlation_id, ApiKey::SaslAuthenticate, version))
            }
            State::Connecting | State::SaslRaw { .. } | State::Ready | State::Draining => None,
        }
    }
}

/// A deadline the connection keeps, and what passing it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The TCP connection did not open in time.
    Connect,
    /// ApiVersions got no answer in time.
    Handshake,
    /// Idle for too long.
    Idle,
}

/// The connection's timeouts, from the client configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: std::time::Duration,
    pub handshake: std::time::Duration,
    pub idle: std::time::Duration,
}

/// A request sent on this connection and not yet answered.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    pub correlation_id: i32,
    pub api_key: ApiKey,
    pub version: i16,
    pub token: T,
}

/// What the connection learned from a batch of input.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned and consumed at once
pub(crate) enum ConnEvent<T> {
    /// ApiVersions completed; the connection is ready.
    Ready,
    /// A response to a request sent with [`Connection::send`].
    Response { token: T, version: i16, result: Result<ResponseBody, DecodeError> },
}

/// Record sets at least this large go out from the memory they were sealed in instead of
/// being copied into the request's frame; the writers send the pieces with one vectored
/// write. Below it the copy is cheaper than another piece.
const SPLICE_MIN: usize = 4096;

/// A broker connection. `T` is what the owner attaches to each request to route its response.
pub(crate) struct Connection<T> {
    state: State,
    decoder: FrameDecoder,
    inbound: BytesMut,
    outbound: BytesMut,
    /// Record sets that belong inside `outbound` but were left out of it (see
    /// [`Splices`]), positions counted from its current start.
    spliced: VecDeque<Spliced>,
    next_correlation_id: i32,
    in_flight: VecDeque<InFlight<T>>,
    versions: Option<BrokerApiVersions>,
    client_id: String,
    software_name: StrBytes,
    software_version: StrBytes,
    created: Instant,
    /// Set when the TCP connection opened (distinguishes "refused" from "hung up").
    opened_at: Option<Instant>,
    /// Last time bytes moved either way, for idle expiry.
    last_activity: Instant,
    /// SASL settings, when the connection authenticates.
    sasl: Option<Arc<SaslConfig>>,
    /// Randomness for SASL nonces, from the client's seed.
    rng: Rng,
    /// The TLS session, when the connection uses TLS: frames in `outbound` are plaintext
    /// until [`Connection::take_output`] encrypts them.
    tls: Option<Box<rustls::ClientConnection>>,
    /// A TLS session that could not even start, reported at the first chance.
    tls_failed: Option<TlsError>,
    /// TLS settings and the broker's name, until the TCP connection opens and the session
    /// starts (its hello may read the clock, known then).
    tls_pending: Option<(crate::security::TlsSettings, rustls::pki_types::ServerName<'static>)>,
    /// The clock the session's rustls configuration reads, set before each call into it.
    tls_clock: Option<Arc<crate::security::tls::InputClock>>,
    /// Whether the broker sent any bytes: a TLS hello met with silence and a hang-up is a
    /// plaintext listener's answer.
    heard: bool,
    /// The wall clock (an instant and the Unix time in ms then), for OAUTHBEARER tokens.
    wall_clock: Option<(Instant, i64)>,
    /// When the current handshake (or re-authentication) began, for its deadline.
    handshake_started: Instant,
    /// When the SASL session should be renewed (KIP-368), if the broker limits it.
    reauth_at: Option<Instant>,
    /// Whether the SASL exchange under way renews a session rather than opens one.
    reauthenticating: bool,
    /// Requests framed while re-authentication is due or under way, and their bytes: sent
    /// once it completes.
    held: VecDeque<InFlight<T>>,
    held_out: BytesMut,
    /// Plant `SwapOwners`: answers reach the owner of the request behind them.
    #[cfg(feature = "plants")]
    pub(crate) swap_owners: bool,
}

// Bytes waiting to go out may hold a password or token (a SASL message): sizes only.
impl<T: std::fmt::Debug> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("in_flight", &self.in_flight)
            .field("held", &self.held)
            .field("outbound_len", &self.outbound.len())
            .field("held_out_len", &self.held_out.len())
            .field("inbound_len", &self.inbound.len())
            .field("versions", &self.versions)
            .field("client_id", &self.client_id)
            .field("opened_at", &self.opened_at)
            .field("reauth_at", &self.reauth_at)
            .field("sasl", &self.sasl)
            .field("tls", &self.tls.is_some())
            .field("tls_failed", &self.tls_failed)
            .finish_non_exhaustive()
    }
}

impl<T> Connection<T> {
    pub fn new(now: Instant, max_frame_size: usize, client_id: &str, software: (&str, &str)) -> Self {
        Connection {
            state: State::Connecting,
            decoder: FrameDecoder::new(max_frame_size),
            inbound: BytesMut::new(),
            outbound: BytesMut::new(),
            spliced: VecDeque::new(),
            next_correlation_id: 0,
            in_flight: VecDeque::new(),
            versions: None,
            client_id: client_id.to_string(),
            software_name: StrBytes::from(software.0),
            software_version: StrBytes::from(software.1),
            created: now,
            opened_at: None,
            last_activity: now,
            sasl: None,
            rng: Rng::new(0),
            tls: None,
            tls_failed: None,
            tls_pending: None,
            tls_clock: None,
            heard: false,
            wall_clock: None,
            handshake_started: now,
            reauth_at: None,
            reauthenticating: false,
            held: VecDeque::new(),
            held_out: BytesMut::new(),
            #[cfg(feature = "plants")]
            swap_owners: false,
        }
    }

    /// Applies the security settings; `seed` feeds the connection's nonces (the client's
    /// seed mixed with the connection's id, so each connection draws differently).
    /// `host` is the broker's name as configured or advertised, which its certificate must
    /// name.
    pub fn with_security(mut self, security: &SecurityConfig, host: &str, seed: u64) -> Self {
        self.sasl = security.sasl.clone().filter(|_| security.protocol.uses_sasl());
        self.rng = Rng::stream(seed, "sasl");
        if let Some(tls) = security.tls.as_ref().filter(|_| security.protocol.uses_tls()) {
            match rustls::pki_types::ServerName::try_from(host.to_string()) {
                Ok(name) => self.tls_pending = Some((tls.clone(), name)),
                Err(_) => self.tls_failed = Some(TlsError::Other(format!("{host:?} is not a valid TLS server name"))),
            }
        }
        self
    }

    /// Starts the TLS session, if the connection uses TLS: its ClientHello goes out first.
    fn start_tls(&mut self, now: Instant) {
        let Some((settings, name)) = self.tls_pending.take() else { return };
        settings.clock.set(self.unix_ms(now));
        match rustls::ClientConnection::new(settings.config.clone(), name) {
            Ok(mut conn) => {
                // Requests queue behind the handshake; the in-flight limit bounds them.
                conn.set_buffer_limit(None);
                self.tls = Some(Box::new(conn));
                self.tls_clock = Some(settings.clock);
            }
            Err(e) => self.tls_failed = Some(TlsError::from_rustls(e)),
        }
    }

    /// Sets the wall clock: `unix_ms` milliseconds since the Unix epoch at `at` (OAUTHBEARER
    /// tokens carry wall-clock times, TLS certificates validity dates). Without it, time
    /// starts at the epoch.
    pub fn with_wall_clock(mut self, wall_clock: Option<(Instant, i64)>) -> Self {
        self.wall_clock = wall_clock;
        self
    }

    fn unix_ms(&self, now: Instant) -> i64 {
        let (at, unix_ms) = self.wall_clock.unwrap_or((now, 0));
        let since = now.saturating_duration_since(at).as_millis().min(i64::MAX as u128) as i64;
        unix_ms.saturating_add(since)
    }

    /// Why the TLS session could not start (a host name that is no TLS server name, or
    /// rustls refusing the settings): the connection must close, and retrying cannot help.
    pub fn tls_start_error(&self) -> Option<&TlsError> {
        self.tls_failed.as_ref()
    }

    /// Why a close by the peer happened, when the connection can tell better than "closed":
    /// a hang-up in the middle of the TLS handshake, or on its very first message.
    pub fn explain_close(&self) -> Option<LocalClose> {
        let tls = self.tls.as_ref()?;
        let why = if self.heard { TlsError::ClosedInHandshake } else { TlsError::HungUpOnHello };
        (self.opened_at.is_some() && tls.is_handshaking()).then_some(LocalClose::Tls(why))
    }

    /// Whether the TCP connection opened (a close before the handshake then means the
    /// broker hung up on ApiVersions, as brokers older than 0.10 do).
    pub fn is_open(&self) -> bool {
        self.opened_at.is_some()
    }

    /// The connection's next deadline: connect, then handshake, then idleness (only while
    /// nothing is in flight; requests keep their own deadlines).
    pub fn poll_timeout(&self, t: Timeouts) -> Option<(Instant, Expiry)> {
        match (&self.state, self.opened_at) {
            (State::Connecting, _) | (_, None) => Some((self.created + t.connect, Expiry::Connect)),
            (
                State::ApiVersions { .. }
                | State::SaslHandshake { .. }
                | State::SaslAuthenticate { .. }
                | State::SaslRaw { .. },
                Some(_),
            ) => Some((self.handshake_started + t.handshake, Expiry::Handshake)),
            (State::Ready, Some(_)) if self.in_flight.is_empty() => Some((self.last_activity + t.idle, Expiry::Idle)),
            // Requests in flight keep their own deadlines.
            (State::Ready | State::Draining, Some(_)) => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    pub fn versions(&self) -> Option<&BrokerApiVersions> {
        self.versions.as_ref()
    }

    /// Requests awaiting an answer, counting those held for re-authentication.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len() + self.held.len()
    }

    /// The TCP connection is open: start the ApiVersions handshake at our highest version.
    pub fn on_connected(&mut self, now: Instant) {
        self.start_tls(now);
        self.opened_at = Some(now);
        self.handshake_started = now;
        self.last_activity = now;
        self.send_api_versions(ApiKey::ApiVersions.versions().max);
    }

    fn send_api_versions(&mut self, version: i16) {
        let body = ApiVersionsRequest::default()
            .with_client_software_name(self.software_name.clone())
            .with_client_software_version(self.software_version.clone());
        let correlation_id = self.take_correlation_id();
        // The request is built from constants and always encodes.
        if encode_request(&mut self.outbound, correlation_id, Some(&self.client_id), version, &body.into()).is_ok() {
            self.state = State::ApiVersions { version, correlation_id };
        }
    }

    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(0);
        id
    }

    /// Frames `body` at `version` for sending. Returns `Ok(None)` when a response will come
    /// back and the token is kept, `Ok(Some(token))` for requests that get no answer (produce
    /// with acks=0), whose token is handed back at once. An encoding error hands the token
    /// back too, so the caller can report it.
    pub fn send(
        &mut self,
        now: Instant,
        body: &RequestBody,
        version: i16,
        token: T,
        expects_response: bool,
    ) -> Result<Option<T>, (EncodeError, T)> {
        if matches!(self.state, State::Ready) && self.reauth_at.is_some_and(|at| now >= at) {
            self.state = State::Draining;
        }
        let hold = !matches!(self.state, State::Ready);
        let correlation_id = self.next_correlation_id;
        let encoded = if hold {
            encode_request(&mut self.held_out, correlation_id, Some(&self.client_id), version, body)
        } else {
            let mut splices = Splices::new(SPLICE_MIN);
            let encoded = encode_request_spliced(
                &mut self.outbound,
                &mut splices,
                correlation_id,
                Some(&self.client_id),
                version,
                body,
            );
            self.spliced.extend(splices.take());
            encoded
        };
        if let Err(e) = encoded {
            return Err((e, token));
        }
        self.take_correlation_id();
        self.last_activity = now;
        let request = InFlight { correlation_id, api_key: body.api_key(), version, token };
        let handed_back = if !expects_response {
            Some(request.token)
        } else {
            if hold {
                self.held.push_back(request);
            } else {
                self.in_flight.push_back(request);
            }
            None
        };
        if matches!(self.state, State::Draining) && self.in_flight.is_empty() {
            // The first login worked with these settings, so this cannot fail; if it did, the
            // held requests' deadlines would close the connection.
            let _ = self.begin_reauth(now);
        }
        Ok(handed_back)
    }

    /// Bytes waiting to be written, if any (encrypted, with TLS).
    pub fn take_output(&mut self) -> Option<Bytes> {
        if self.tls_failed.is_some() || self.tls_pending.is_some() {
            return None; // never in plaintext what should go encrypted
        }
        if self.tls.is_some() {
            self.opened_at?;
            while let Some(plain) = self.take_plain() {
                // Without a buffer limit, rustls takes everything.
                let tls = self.tls.as_mut().expect("checked above");
                let _ = std::io::Write::write_all(&mut tls.writer(), &plain);
            }
            let tls = self.tls.as_mut().expect("checked above");
            let mut out = Vec::new();
            while tls.wants_write() {
                match tls.write_tls(&mut out) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            return (!out.is_empty()).then(|| Bytes::from(out));
        }
        self.take_plain()
    }

    /// The next piece of plaintext to send: `outbound` up to the next record set left out of
    /// it, or that record set.
    fn take_plain(&mut self) -> Option<Bytes> {
        match self.spliced.front() {
            Some(next) if next.at == 0 => self.spliced.pop_front().map(|s| s.bytes),
            Some(next) => {
                let head = self.outbound.split_to(next.at).freeze();
                for s in &mut self.spliced {
                    s.at -= head.len();
                }
                Some(head)
            }
            None if self.outbound.is_empty() => None,
            None => Some(self.outbound.split().freeze()),
        }
    }

    /// Decrypts received TLS records; returns the plaintext they carried.
    fn decrypt(&mut self, now: Instant, data: &[u8]) -> Result<Bytes, ConnectionError> {
        if let Some(e) = self.tls_failed.clone() {
            return Err(e.into());
        }
        if let Some(clock) = &self.tls_clock {
            clock.set(self.unix_ms(now));
        }
        let Some(tls) = self.tls.as_mut() else { return Ok(Bytes::copy_from_slice(data)) };
        let mut rest = data;
        let mut plain = Vec::new();
        while !rest.is_empty() {
            // rustls reads at most one buffer's worth at a time; process, then read on.
            if tls.read_tls(&mut rest).is_err() {
                return Err(TlsError::Other("TLS input buffer overflow".into()).into());
            }
            let state = tls.process_new_packets().map_err(TlsError::from_rustls)?;
            let mut n = state.plaintext_bytes_to_read();
            while n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                let got = std::io::Read::read(&mut tls.reader(), &mut plain[start..]).unwrap_or(0);
                plain.truncate(start + got);
                if got == 0 {
                    break;
                }
                n -= got;
            }
        }
        Ok(Bytes::from(plain))
    }

    /// Everything still in flight, oldest first, then what was held for re-authentication
    /// (when the connection closes).
    pub fn drain_in_flight(&mut self) -> impl Iterator<Item = InFlight<T>> + '_ {
        self.held_out.clear();
        self.in_flight.drain(..).chain(self.held.drain(..))
    }

    /// Feeds received bytes; what completed is appended to `events`. An error means the
    /// connection must close (events before it still happened).
    /// Frames are sliced out of `data` without copying; only a frame split across reads is
    /// gathered in a buffer.
    pub fn on_bytes(
        &mut self,
        now: Instant,
        mut data: Bytes,
        events: &mut Vec<ConnEvent<T>>,
    ) -> Result<(), ConnectionError> {
        self.last_activity = now;
        self.heard |= !data.is_empty();
        if self.tls.is_some() || self.tls_failed.is_some() {
            data = self.decrypt(now, &data)?;
        }
        if self.inbound.is_empty() {
            while let Some(frame) = self.decoder.decode_bytes(&mut data).map_err(|e| self.frame_error(e))? {
                self.on_frame(now, frame, events)?;
            }
            if data.is_empty() {
                return Ok(());
            }
        }
        if self.inbound.is_empty() {
            // A frame that spans reads gets one allocation of its announced size: grown by
            // doubling, a large Fetch answer would hold up to twice its size for as long as
            // its records are buffered.
            if let Some(len) = self.decoder.announced_len(&data).filter(|&len| len > self.inbound.capacity()) {
                self.inbound = BytesMut::with_capacity(len.max(data.len()));
            }
        }
        self.inbound.extend_from_slice(&data);
        while let Some(frame) = self.decoder.decode(&mut self.inbound).map_err(|e| self.frame_error(e))? {
            self.on_frame(now, frame, events)?;
        }
        Ok(())
    }

    /// A TLS record where a Kafka frame was expected, on a connection without TLS: the
    /// listener expects TLS. Named as such, and fatal, like the reverse case
    /// ([`TlsError::NotTls`]).
    fn frame_error(&self, e: FrameError) -> ConnectionError {
        match e {
            FrameError::TlsRecord { .. } if self.tls.is_none() => ConnectionError::ExpectsTls,
            e => ConnectionError::Frame(e),
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Bytes, events: &mut Vec<ConnEvent<T>>) -> Result<(), ConnectionError> {
        if matches!(self.state, State::SaslRaw { .. }) {
            // No header: the whole frame is the broker's token.
            if self.on_raw_token(now, &frame)? {
                events.push(ConnEvent::Ready);
            }
            return Ok(());
        }
        let correlation_id = response_correlation_id(&frame).map_err(ConnectionError::Handshake)?;
        if let Some((expected, api, version)) = self.state.handshake() {
            if correlation_id != expected {
                return Err(ConnectionError::UnexpectedCorrelation { found: correlation_id, expected: Some(expected) });
            }
            let ready = match api {
                ApiKey::ApiVersions => self.on_handshake_response(frame, version)?,
                _ => self.on_sasl_response(now, frame, api, version)?,
            };
            if ready {
                events.push(ConnEvent::Ready);
            }
            return Ok(());
        }
        let expected = self.in_flight.front().map(|f| f.correlation_id);
        #[allow(unused_mut)]
        let mut f = match self.in_flight.pop_front() {
            Some(f) if f.correlation_id == correlation_id => f,
            _ => return Err(ConnectionError::UnexpectedCorrelation { found: correlation_id, expected }),
        };
        #[cfg(feature = "plants")]
        if self.swap_owners {
            if let Some(next) = self.in_flight.front_mut() {
                std::mem::swap(&mut f.token, &mut next.token);
            }
        }
        let result = decode_body(frame, f.api_key, f.version);
        events.push(ConnEvent::Response { token: f.token, version: f.version, result });
        if matches!(self.state, State::Draining) && self.in_flight.is_empty() {
            self.begin_reauth(now)?;
        }
        Ok(())
    }

    /// Handles the ApiVersions answer. Returns true once ready; false when it retried at an
    /// older version.
    fn on_handshake_response(&mut self, frame: Bytes, version: i16) -> Result<bool, ConnectionError> {
        let mut body = frame;
        ResponseHeader::decode(&mut body, 0).map_err(ConnectionError::Handshake)?;
        // A broker that does not know our version answers in version 0 with
        // UNSUPPORTED_VERSION and its own ranges, so try that reading when ours fails.
        let parsed = ApiVersionsResponse::decode(&mut body.clone(), version)
            .ok()
            .filter(|r| r.error_code != ErrorCode::UnsupportedVersion)
            .map_or_else(|| ApiVersionsResponse::decode(&mut body.clone(), 0), Ok)
            .map_err(ConnectionError::Handshake)?;
        match parsed.error_code {
            ErrorCode::None => {
                let versions = BrokerApiVersions::from_ranges(
                    parsed.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)),
                );
                let sasl = self.sasl.clone();
                let ready = match sasl {
                    Some(sasl) => {
                        self.start_sasl(&versions, &sasl)?;
                        false
                    }
                    None => {
                        self.state = State::Ready;
                        true
                    }
                };
                self.versions = Some(versions);
                Ok(ready)
            }
            ErrorCode::UnsupportedVersion => {
                let theirs = parsed
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions.as_i16())
                    .map_or(0, |k| k.max_version);
                let retry = theirs.min(version - 1).max(ApiVersionsResponse::VERSIONS.min);
                if retry >= version {
                    return Err(ConnectionError::HandshakeRefused(parsed.error_code));
                }
                self.send_api_versions(retry);
                Ok(false)
            }
            other => Err(ConnectionError::HandshakeRefused(other)),
        }
    }
}

impl<T> Connection<T> {
    /// Nothing is in flight and the session is due: run SASL again (KIP-368).
    fn begin_reauth(&mut self, now: Instant) -> Result<(), AuthError> {
        let (Some(versions), Some(sasl)) = (self.versions.clone(), self.sasl.clone()) else {
            return Err(AuthError::Malformed("re-authentication without SASL settings"));
        };
        self.reauthenticating = true;
        self.handshake_started = now;
        self.start_sasl(&versions, &sasl)
    }

    /// Authentication succeeded: schedule the renewal and release what waited for it.
    fn authenticated(&mut self, now: Instant, session_lifetime_ms: i64) {
        self.state = State::Ready;
        self.reauth_at = (session_lifetime_ms > 0).then(|| {
            // Java's window: 85% of the lifetime plus up to 10% jitter.
            let share = 0.85 + 0.10 * self.rng.unit();
            now + std::time::Duration::from_millis((session_lifetime_ms as f64 * share) as u64)
        });
        if std::mem::take(&mut self.reauthenticating) {
            self.outbound.unsplit(self.held_out.split());
            self.in_flight.extend(self.held.drain(..));
        }
    }

    /// Sends SaslHandshake: v1 when the broker has SaslAuthenticate, for the exchange to
    /// travel in it; else v0, for raw tokens.
    fn start_sasl(&mut self, versions: &BrokerApiVersions, sasl: &SaslConfig) -> Result<(), AuthError> {
        let framed = versions.negotiate(ApiKey::SaslHandshake).ok().filter(|v| *v >= 1).and_then(|handshake| {
            versions.negotiate(ApiKey::SaslAuthenticate).ok().map(|auth| (handshake, Some(auth)))
        });
        let (handshake, auth_version) = match framed {
            Some(framed) => framed,
            None => {
                // v0 tells the broker that raw tokens follow (Kafka 0.10-0.11).
                let v0 =
                    versions.check(ApiKey::SaslHandshake, 0).map_err(|_| AuthError::Unsupported("SaslHandshake"))?;
                (v0, None)
            }
        };
        let body = SaslHandshakeRequest::default().with_mechanism(StrBytes::from(sasl.mechanism.name()));
        let correlation_id = self.send_handshake_request(&body.into(), handshake)?;
        self.state = State::SaslHandshake { version: handshake, correlation_id, auth_version };
        Ok(())
    }

    fn send_handshake_request(&mut self, body: &RequestBody, version: i16) -> Result<i32, AuthError> {
        let correlation_id = self.take_correlation_id();
        encode_request(&mut self.outbound, correlation_id, Some(&self.client_id), version, body)
            .map_err(|_| AuthError::Malformed("could not encode a SASL request"))?;
        Ok(correlation_id)
    }

    fn send_auth_bytes(&mut self, version: i16, bytes: Vec<u8>, client: SaslClient) -> Result<(), AuthError> {
        let body = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let correlation_id = self.send_handshake_request(&body.into(), version)?;
        self.state = State::SaslAuthenticate { version, correlation_id, client };
        Ok(())
    }

    /// Frames a token with its size prefix only (after SaslHandshake v0).
    fn send_raw_token(&mut self, token: &[u8], client: SaslClient) -> Result<(), AuthError> {
        let len = i32::try_from(token.len()).map_err(|_| AuthError::Malformed("a SASL token too large to frame"))?;
        self.outbound.extend_from_slice(&len.to_be_bytes());
        self.outbound.extend_from_slice(token);
        self.state = State::SaslRaw { client };
        Ok(())
    }

    /// Handles a raw token from the broker. Returns true once authenticated (first login).
    fn on_raw_token(&mut self, now: Instant, token: &[u8]) -> Result<bool, ConnectionError> {
        let State::SaslRaw { mut client } = std::mem::replace(&mut self.state, State::Connecting) else {
            return Err(AuthError::Malformed("a raw SASL token out of turn").into());
        };
        match client.step(token)? {
            Some(next) => {
                self.send_raw_token(&next, client)?;
                Ok(false)
            }
            None => {
                // No SaslAuthenticate, so no session lifetime and no renewal (KIP-368).
                let first = !self.reauthenticating;
                self.authenticated(now, 0);
                Ok(first)
            }
        }
    }

    /// Why the broker closed the connection, when it did so in a raw SASL exchange: that is
    /// how brokers before 1.0 refuse a login (they cannot say so without SaslAuthenticate).
    /// A restart at that moment looks the same; taken for a refusal, as Java's client
    /// names it, so a wrong password fails fast instead of retrying until the deadline.
    pub fn explain_sasl_close(&self) -> Option<LocalClose> {
        let State::SaslRaw { client } = &self.state else { return None };
        let detail = client.failure_detail().map(str::to_string);
        Some(LocalClose::Authentication(AuthError::ClosedInRawExchange { detail }))
    }

    /// Handles a SaslHandshake or SaslAuthenticate answer. Returns true once authenticated.
    fn on_sasl_response(
        &mut self,
        now: Instant,
        frame: Bytes,
        api: ApiKey,
        version: i16,
    ) -> Result<bool, ConnectionError> {
        let body = decode_body(frame, api, version).map_err(ConnectionError::Handshake)?;
        let text = |m: &Option<StrBytes>| m.as_ref().map(|m| m.as_str().to_string());
        match (std::mem::replace(&mut self.state, State::Connecting), body) {
            (State::SaslHandshake { auth_version, .. }, ResponseBody::SaslHandshake(r)) => {
                let Some(sasl) = self.sasl.clone() else { return Err(AuthError::Malformed("no SASL settings").into()) };
                match r.error_code {
                    ErrorCode::None => {}
                    ErrorCode::UnsupportedSaslMechanism => {
                        return Err(AuthError::MechanismNotEnabled {
                            mechanism: sasl.mechanism,
                            enabled: r.mechanisms.iter().map(|m| m.as_str().to_string()).collect(),
                        }
                        .into())
                    }
                    error => return Err(AuthError::Refused { request: "SaslHandshake", error, message: None }.into()),
                }
                let random = [self.rng.next_u64(), self.rng.next_u64(), self.rng.next_u64()];
                let (client, first) = SaslClient::start(&sasl, random, self.unix_ms(now))?;
                match auth_version {
                    Some(auth_version) => self.send_auth_bytes(auth_version, first, client)?,
                    None => self.send_raw_token(&first, client)?,
                }
                Ok(false)
            }
            (State::SaslAuthenticate { version, mut client, .. }, ResponseBody::SaslAuthenticate(r)) => {
                match r.error_code {
                    ErrorCode::None => {}
                    ErrorCode::SaslAuthenticationFailed => {
                        let message = match (text(&r.error_message), client.failure_detail()) {
                            (Some(m), Some(d)) if !m.contains(d) => Some(format!("{m} ({d})")),
                            (m, d) => m.or(d.map(str::to_string)),
                        };
                        return Err(AuthError::Failed { message }.into());
                    }
                    error => {
                        let message = text(&r.error_message);
                        return Err(AuthError::Refused { request: "SaslAuthenticate", error, message }.into());
                    }
                }
                match client.step(&r.auth_bytes)? {
                    Some(next) => {
                        self.send_auth_bytes(version, next, client)?;
                        Ok(false)
                    }
                    None => {
                        // A renewed session is no news to the router: only the first is.
                        let first = !self.reauthenticating;
                        self.authenticated(now, r.session_lifetime_ms);
                        Ok(first)
                    }
                }
            }
            _ => Err(AuthError::Malformed("answer to another SASL request").into()),
        }
    }
}

fn decode_body(mut frame: Bytes, api_key: ApiKey, version: i16) -> Result<ResponseBody, DecodeError> {
    ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
    let body = ResponseBody::decode(api_key, &mut frame, version)?;
    if !frame.is_empty() {
        return Err(DecodeError::TrailingBytes { what: api_key.name(), remaining: frame.len() });
    }
    Ok(body)
}
