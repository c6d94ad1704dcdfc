//! One broker connection: the only machine that touches bytes.
//!
//! It frames requests (size prefix, header with correlation id and client id, body), splits
//! the inbound stream into frames at any byte boundary, matches responses to requests by
//! correlation id (Kafka answers in order on a connection), and negotiates API versions with
//! ApiVersions when it opens.
//!
//! States, in order: `Connecting` (waiting for the driver's TCP connect) → `Handshaking`
//! (ApiVersions sent, falling back to the version the broker names when it answers
//! UNSUPPORTED_VERSION) → `Ready` → closed (dropped by the client). Any protocol violation is
//! fatal: the connection reports it and the client closes it.

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

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connecting,
    /// ApiVersions sent at this version.
    Handshaking {
        version: i16,
    },
    Ready,
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
    /// Correlation id of the ApiVersions request while handshaking.
    handshake_correlation: Option<i32>,
    client_id: String,
    software_name: StrBytes,
    software_version: StrBytes,
    /// Set when the TCP connection opened (distinguishes "refused" from "hung up").
    pub opened_at: Option<Instant>,
    /// Last time bytes moved either way, for idle expiry.
    pub last_activity: Instant,
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
            handshake_correlation: None,
            client_id: client_id.to_string(),
            software_name: StrBytes::from(software.0),
            software_version: StrBytes::from(software.1),
            opened_at: None,
            last_activity: now,
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
            self.state = State::Handshaking { version };
            self.handshake_correlation = Some(correlation_id);
        }
    }

    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(0);
        id
    }

    /// Frames `body` at `version` for sending. Returns `Ok(true)` when a response will come
    /// back and the token is kept, `Ok(false)` for fire-and-forget requests (produce with
    /// acks=0), whose token is handed back.
    /// An encoding error hands the token back too, so the caller can report it.
    pub fn send(
        &mut self,
        now: Instant,
        body: &RequestBody,
        version: i16,
        token: T,
    ) -> Result<Option<T>, (EncodeError, T)> {
        let correlation_id = self.next_correlation_id;
        if let Err(e) = encode_request(&mut self.outbound, correlation_id, Some(&self.client_id), version, body) {
            return Err((e, token));
        }
        self.take_correlation_id();
        self.last_activity = now;
        if matches!(body, RequestBody::Produce(p) if p.acks == 0) {
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

    /// Whether any request in flight carries a token matching `pred`.
    pub fn has_in_flight(&self, pred: impl Fn(&T) -> bool) -> bool {
        self.in_flight.iter().any(|f| pred(&f.token))
    }

    /// The tokens of the requests in flight, oldest first.
    pub fn in_flight_tokens(&self) -> impl Iterator<Item = &T> + '_ {
        self.in_flight.iter().map(|f| &f.token)
    }

    /// Feeds received bytes. Returns what completed; an error means the connection must close.
    pub fn on_bytes(&mut self, now: Instant, data: &[u8]) -> Result<Vec<ConnEvent<T>>, ConnectionError> {
        self.last_activity = now;
        self.inbound.extend_from_slice(data);
        let mut events = Vec::new();
        while let Some(frame) = self.decoder.decode(&mut self.inbound)? {
            let correlation_id = response_correlation_id(&frame).map_err(ConnectionError::Handshake)?;
            if let State::Handshaking { version } = self.state {
                if Some(correlation_id) != self.handshake_correlation {
                    return Err(ConnectionError::UnexpectedCorrelation {
                        found: correlation_id,
                        expected: self.handshake_correlation,
                    });
                }
                if self.on_handshake_response(frame, version)? {
                    events.push(ConnEvent::Ready);
                }
                continue;
            }
            let expected = self.in_flight.front().map(|f| f.correlation_id);
            let f = match self.in_flight.pop_front() {
                Some(f) if f.correlation_id == correlation_id => f,
                _ => return Err(ConnectionError::UnexpectedCorrelation { found: correlation_id, expected }),
            };
            let result = decode_body(frame, f.api_key, f.version);
            events.push(ConnEvent::Response { token: f.token, version: f.version, result });
        }
        Ok(events)
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
                self.handshake_correlation = None;
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
