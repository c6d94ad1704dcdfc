//! Framing: the int32 size prefix, request and response headers, and recognising a peer that
//! is not speaking Kafka at all.
//!
//! Every Kafka message on a connection is `size: int32` followed by `size` bytes: a header and
//! a body. The header version depends on the API and version ([`ApiKey::request_header_version`],
//! [`ApiKey::response_header_version`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::message::Codec;
use super::messages::{ApiKey, RequestBody, RequestHeader, ResponseBody, ResponseHeader};
use super::primitives::{DecodeError, EncodeError, Splices};
use super::types::StrBytes;

/// The largest frame accepted by default: 100 MiB, like the Java client's cap on responses.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Why bytes from a peer could not be split into frames. All of these are fatal for the
/// connection: the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The size prefix announces more than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    /// The peer sent an HTTP response: the address is probably an HTTP port, not a Kafka listener.
    #[error("the peer answered with HTTP, not the Kafka protocol; check the address and port")]
    HttpResponse,
    /// The peer sent a TLS record: the listener expects TLS and the client is speaking plaintext.
    #[error("the peer answered with a TLS record (content type {content_type}); the listener expects TLS")]
    TlsRecord {
        /// TLS content type byte (21 alert, 22 handshake, ...).
        content_type: u8,
    },
}

/// Splits a byte stream into frames, enforcing a maximum size.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder { max_frame_size: DEFAULT_MAX_FRAME_SIZE }
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames larger than `max_frame_size` bytes.
    pub fn new(max_frame_size: usize) -> Self {
        FrameDecoder { max_frame_size }
    }

    /// The configured maximum.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Takes one complete frame (without its size prefix) off the front of `buf`. Returns
    /// `Ok(None)` while the frame is incomplete; call again after more bytes arrive. Never
    /// reserves memory for a frame before its bytes are there.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.complete_frame_size(buf)? else { return Ok(None) };
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// Like [`FrameDecoder::decode`], but slices the frame out of `buf` without copying: the
    /// fast path for bytes that arrive holding whole frames.
    pub fn decode_bytes(&self, buf: &mut Bytes) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.complete_frame_size(buf)? else { return Ok(None) };
        buf.advance(4);
        Ok(Some(buf.split_to(size)))
    }

    /// Bytes of the whole frame (prefix included) that `buf` starts, once its size prefix is
    /// there and within the limit: what to allocate for it at once.
    pub fn announced_len(&self, buf: &[u8]) -> Option<usize> {
        let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
        let size = usize::try_from(i32::from_be_bytes(prefix)).ok()?;
        (size <= self.max_frame_size).then_some(4 + size)
    }

    /// The size of the frame at the front of `buf` once all of it is there.
    fn complete_frame_size(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        if buf.len() < 4 {
            // A peer that is not Kafka may be recognised before four bytes arrive only in
            // theory; wait for the full prefix so that a slow Kafka broker is never misjudged.
            return Ok(None);
        }
        let prefix = [buf[0], buf[1], buf[2], buf[3]];
        let size = i32::from_be_bytes(prefix);
        if size < 0 {
            return Err(FrameError::NegativeSize(size));
        }
        let size = size as usize;
        if size > self.max_frame_size {
            return Err(foreign_protocol(&prefix).unwrap_or(FrameError::TooLarge { size, max: self.max_frame_size }));
        }
        Ok((buf.len() >= 4 + size).then_some(size))
    }
}

/// Recognises the first bytes of an HTTP response or a TLS record, which read as absurd sizes.
fn foreign_protocol(prefix: &[u8; 4]) -> Option<FrameError> {
    if prefix == b"HTTP" {
        return Some(FrameError::HttpResponse);
    }
    // TLS record: content type 20..=24, then protocol version 3.x.
    if (20..=24).contains(&prefix[0]) && prefix[1] == 3 && prefix[2] <= 4 {
        return Some(FrameError::TlsRecord { content_type: prefix[0] });
    }
    None
}

/// Appends a complete request frame (size prefix, header, body) to `buf`. The header version
/// follows from the body's API and `version`.
pub fn encode_request(
    buf: &mut BytesMut,
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    body: &RequestBody,
) -> Result<(), EncodeError> {
    encode_request_into(buf, None, correlation_id, client_id, version, body)
}

/// [`encode_request`], with the body's large record sets left out of `buf` and listed in
/// `splices` (see [`Splices`]), their positions counted from `buf`'s start. On an error
/// neither `buf` nor `splices` keeps anything of the request.
pub fn encode_request_spliced(
    buf: &mut BytesMut,
    splices: &mut Splices,
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    body: &RequestBody,
) -> Result<(), EncodeError> {
    encode_request_into(buf, Some(splices), correlation_id, client_id, version, body)
}

fn encode_request_into(
    buf: &mut BytesMut,
    splices: Option<&mut Splices>,
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    body: &RequestBody,
) -> Result<(), EncodeError> {
    let api_key = body.api_key();
    let header = RequestHeader::default()
        .with_request_api_key(api_key.as_i16())
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(StrBytes::from));
    let header_version = api_key.request_header_version(version);
    let size = header.encoded_len(header_version) + body.encoded_len(version);
    let size = i32::try_from(size).map_err(|_| EncodeError::TooLong { field: "request frame", len: size })?;
    let start = buf.len();
    let encoded = match splices {
        None => {
            buf.reserve(4 + size as usize);
            buf.put_i32(size);
            header.encode(buf, header_version).and_then(|()| body.encode(buf, version))
        }
        Some(splices) => {
            let listed = splices.len();
            buf.put_i32(size);
            let encoded = header.encode(buf, header_version).and_then(|()| body.encode_spliced(buf, splices, version));
            if encoded.is_err() {
                splices.truncate(listed);
            }
            encoded
        }
    };
    if encoded.is_err() {
        buf.truncate(start);
    }
    encoded
}

/// Appends a complete response frame to `buf` (the broker side, used by test clusters).
pub fn encode_response(
    buf: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    body: &ResponseBody,
) -> Result<(), EncodeError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = body.api_key().response_header_version(version);
    let size = header.encoded_len(header_version) + body.encoded_len(version);
    let size = i32::try_from(size).map_err(|_| EncodeError::TooLong { field: "response frame", len: size })?;
    buf.reserve(4 + size as usize);
    let start = buf.len();
    buf.put_i32(size);
    header.encode(buf, header_version)?;
    if let Err(e) = body.encode(buf, version) {
        buf.truncate(start);
        return Err(e);
    }
    Ok(())
}

/// The correlation id at the front of a response frame, which every response header version
/// starts with. Lets a connection find the request a response answers before decoding it.
pub fn response_correlation_id(frame: &Bytes) -> Result<i32, DecodeError> {
    if frame.len() < 4 {
        return Err(DecodeError::Truncated { what: "ResponseHeader.CorrelationId", needed: 4, remaining: frame.len() });
    }
    Ok(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
}

/// Decodes a response frame (without size prefix) to API `api_key` at `version`: returns the
/// correlation id and the body. Bytes left after the body are an error.
pub fn decode_response(mut frame: Bytes, api_key: ApiKey, version: i16) -> Result<(i32, ResponseBody), DecodeError> {
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
    let body = ResponseBody::decode(api_key, &mut frame, version)?;
    if !frame.is_empty() {
        return Err(DecodeError::TrailingBytes { what: api_key.name(), remaining: frame.len() });
    }
    Ok((header.correlation_id, body))
}

/// Decodes a request frame (the broker side): the header and the body.
pub fn decode_request(mut frame: Bytes) -> Result<(RequestHeader, RequestBody), DecodeError> {
    if frame.len() < 4 {
        return Err(DecodeError::Truncated { what: "RequestHeader", needed: 4, remaining: frame.len() });
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::from_i16(key).ok_or(DecodeError::UnknownApiKey(key))?;
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))?;
    let body = RequestBody::decode(api_key, &mut frame, version)?;
    if !frame.is_empty() {
        return Err(DecodeError::TrailingBytes { what: api_key.name(), remaining: frame.len() });
    }
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
    use crate::protocol::ErrorCode;

    #[test]
    fn frames_split_at_every_byte_boundary() {
        let mut wire = BytesMut::new();
        let body = RequestBody::from(MetadataRequest::default().with_topics(None));
        encode_request(&mut wire, 7, Some("sansa"), 12, &body).unwrap();
        encode_request(&mut wire, 8, None, 4, &body).unwrap();
        let wire = wire.freeze();
        for split in 0..=wire.len() {
            let decoder = FrameDecoder::default();
            let mut buf = BytesMut::from(&wire[..split]);
            let mut frames = Vec::new();
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            assert_eq!(frames.len(), 2, "split at {split}");
            assert!(buf.is_empty());
            let (h, b) = decode_request(frames[0].clone()).unwrap();
            assert_eq!((h.correlation_id, h.client_id.as_deref()), (7, Some("sansa")));
            assert_eq!(b, body);
        }
    }

    #[test]
    fn oversized_and_foreign_frames_are_named() {
        let d = FrameDecoder::new(1024);
        let mut b = BytesMut::from(&b"HTTP/1.1 400 Bad Request\r\n"[..]);
        assert_eq!(d.decode(&mut b), Err(FrameError::HttpResponse));
        let mut b = BytesMut::from(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46][..]);
        assert_eq!(d.decode(&mut b), Err(FrameError::TlsRecord { content_type: 21 }));
        let mut b = BytesMut::from(&[0x00, 0x00, 0x04, 0x01][..]);
        assert_eq!(d.decode(&mut b), Err(FrameError::TooLarge { size: 1025, max: 1024 }));
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(d.decode(&mut b), Err(FrameError::NegativeSize(-2)));
    }

    #[test]
    fn api_versions_response_always_uses_header_v0() {
        let resp = ResponseBody::from(ApiVersionsResponse::default().with_error_code(ErrorCode::UnsupportedVersion));
        let mut wire = BytesMut::new();
        encode_response(&mut wire, 42, 3, &resp).unwrap();
        let frame = FrameDecoder::default().decode(&mut wire).unwrap().unwrap();
        assert_eq!(response_correlation_id(&frame).unwrap(), 42);
        let (corr, body) = decode_response(frame, ApiKey::ApiVersions, 3).unwrap();
        assert_eq!((corr, body), (42, resp));
        // A flexible request still carries header v2 with the classic int16 client id.
        let mut wire = BytesMut::new();
        encode_request(&mut wire, 1, Some("c"), 3, &ApiVersionsRequest::default().into()).unwrap();
        assert_eq!(&wire[4..15], &[0, 18, 0, 3, 0, 0, 0, 1, 0, 1, b'c']);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut wire = BytesMut::new();
        encode_response(&mut wire, 1, 0, &ResponseBody::from(ApiVersionsResponse::default())).unwrap();
        wire.put_u8(0);
        let wire_frame = wire.split_off(4).freeze();
        assert!(matches!(decode_response(wire_frame, ApiKey::ApiVersions, 0), Err(DecodeError::TrailingBytes { .. })));
    }
}
