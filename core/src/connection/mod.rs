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
//! | `ApiVersions { version }` | the broker answers (UNSUPPORTED_VERSION: resent at the version it names) | `Ready` |
//! | `Ready` | the client closes it, or a protocol violation | dropped |
//!
//! Any protocol violation is fatal: the connection reports it and the client closes it with
//! a typed [`LocalClose`]. Security slots in as two more states with the same shape: a TLS
//! handshake between `Connecting` and `ApiVersions` (a byte transform under the framing),
//! and SASL authentication between `ApiVersions` and `Ready` (requests framed like any other).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::protocol::frame::{encode_request, response_correlation_id, FrameDecoder, FrameError};
use crate::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use crate::protocol::{
    ApiKey, Codec, DecodeError, EncodeError, ErrorCode, Message, RequestBody, ResponseBody, StrBytes, VersionRange,
};

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
    /// The client closed.
    #[error("the client closed")]
    ClientClosed,
    /// The driver that carried the bytes stopped.
    #[error("the driver stopped")]
    DriverStopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connecting,
    /// ApiVersions sent at `version`, with this correlation id.
    ApiVersions {
        version: i16,
        correlation_id: i32,
    },
    Ready,
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

/// A broker connection. `T` is what the owner attaches to each request to route its response.
#[derive(Debug)]
pub(crate) struct Connection<T> {
    state: State,
    decoder: FrameDecoder,
    inbound: BytesMut,
    outbound: BytesMut,
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
    /// Plant `SwapOwners`: answers reach the owner of the request behind them.
    #[cfg(feature = "plants")]
    pub(crate) swap_owners: bool,
}

impl<T> Connection<T> {
    pub fn new(now: Instant, max_frame_size: usize, client_id: &str, software: (&str, &str)) -> Self {
        Connection {
            state: State::Connecting,
            decoder: FrameDecoder::new(max_frame_size),
            inbound: BytesMut::new(),
            outbound: BytesMut::new(),
            next_correlation_id: 0,
            in_flight: VecDeque::new(),
            versions: None,
            client_id: client_id.to_string(),
            software_name: StrBytes::from(software.0),
            software_version: StrBytes::from(software.1),
            created: now,
            opened_at: None,
            last_activity: now,
            #[cfg(feature = "plants")]
            swap_owners: false,
        }
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
            (State::ApiVersions { .. }, Some(opened)) => Some((opened + t.handshake, Expiry::Handshake)),
            (State::Ready, Some(_)) if self.in_flight.is_empty() => Some((self.last_activity + t.idle, Expiry::Idle)),
            (State::Ready, Some(_)) => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    pub fn versions(&self) -> Option<&BrokerApiVersions> {
        self.versions.as_ref()
    }

    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// The TCP connection is open: start the ApiVersions handshake at our highest version.
    pub fn on_connected(&mut self, now: Instant) {
        self.opened_at = Some(now);
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
        let correlation_id = self.next_correlation_id;
        if let Err(e) = encode_request(&mut self.outbound, correlation_id, Some(&self.client_id), version, body) {
            return Err((e, token));
        }
        self.take_correlation_id();
        self.last_activity = now;
        if !expects_response {
            return Ok(Some(token));
        }
        self.in_flight.push_back(InFlight { correlation_id, api_key: body.api_key(), version, token });
        Ok(None)
    }

    /// Bytes waiting to be written, if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        if self.outbound.is_empty() {
            None
        } else {
            Some(self.outbound.split().freeze())
        }
    }

    /// Everything still in flight, oldest first (when the connection closes).
    pub fn drain_in_flight(&mut self) -> impl Iterator<Item = InFlight<T>> + '_ {
        self.in_flight.drain(..)
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
        if self.inbound.is_empty() {
            while let Some(frame) = self.decoder.decode_bytes(&mut data)? {
                self.on_frame(frame, events)?;
            }
            if data.is_empty() {
                return Ok(());
            }
        }
        self.inbound.extend_from_slice(&data);
        while let Some(frame) = self.decoder.decode(&mut self.inbound)? {
            self.on_frame(frame, events)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Bytes, events: &mut Vec<ConnEvent<T>>) -> Result<(), ConnectionError> {
        let correlation_id = response_correlation_id(&frame).map_err(ConnectionError::Handshake)?;
        if let State::ApiVersions { version, correlation_id: expected } = self.state {
            if correlation_id != expected {
                return Err(ConnectionError::UnexpectedCorrelation { found: correlation_id, expected: Some(expected) });
            }
            if self.on_handshake_response(frame, version)? {
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
                self.versions = Some(BrokerApiVersions::from_ranges(
                    parsed.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)),
                ));
                self.state = State::Ready;
                Ok(true)
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

fn decode_body(mut frame: Bytes, api_key: ApiKey, version: i16) -> Result<ResponseBody, DecodeError> {
    ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
    let body = ResponseBody::decode(api_key, &mut frame, version)?;
    if !frame.is_empty() {
        return Err(DecodeError::TrailingBytes { what: api_key.name(), remaining: frame.len() });
    }
    Ok(body)
}
