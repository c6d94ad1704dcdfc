//! Helpers shared by the fuzz targets and the seed generator.
//!
//! Message targets read their input as
//! `[api index: u16 BE][version byte][body ...]`: the index is taken modulo `ApiKey::ALL.len()`
//! and the version byte modulo the size of that API's version range, so every API and every
//! version is reachable from any input of three or more bytes.

use bytes::{Bytes, BytesMut};
use sansa::protocol::{ApiKey, RequestBody, ResponseBody};

/// Splits a message-target input into API, version and body.
pub fn split_api_input(data: &[u8]) -> Option<(ApiKey, i16, &[u8])> {
    if data.len() < 3 {
        return None;
    }
    let all = ApiKey::ALL;
    let idx = u16::from_be_bytes([data[0], data[1]]) as usize % all.len();
    let key = all[idx];
    let range = key.versions();
    if range.is_empty() {
        return None;
    }
    let span = (range.max as i32 - range.min as i32 + 1) as u32;
    let version = (range.min as i32 + (data[2] as u32 % span) as i32) as i16;
    Some((key, version, &data[3..]))
}

/// The input prefix that [`split_api_input`] maps to `key` at `version`.
pub fn api_input_prefix(key: ApiKey, version: i16) -> [u8; 3] {
    let idx = ApiKey::ALL.iter().position(|k| *k == key).expect("key in ApiKey::ALL") as u16;
    let off = (version - key.versions().min) as u8;
    let i = idx.to_be_bytes();
    [i[0], i[1], off]
}

/// Equality that treats two values as equal when they differ only by NaN payloads
/// (`f64` fields make `PartialEq` fail on NaN although the bytes round-trip).
fn same<T: PartialEq + std::fmt::Debug>(a: &T, b: &T) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

/// Encoding and decoding a message body, abstracted over requests and responses.
pub trait Body: Sized + PartialEq + std::fmt::Debug {
    /// What the body is, for panic messages.
    const KIND: &'static str;
    /// `RequestBody::decode` / `ResponseBody::decode`.
    fn decode_body(key: ApiKey, buf: &mut Bytes, version: i16) -> Result<Self, sansa::protocol::DecodeError>;
    /// `encode`.
    fn encode_body(&self, buf: &mut BytesMut, version: i16) -> Result<(), sansa::protocol::EncodeError>;
    /// `encoded_len`.
    fn len_body(&self, version: i16) -> usize;
}

impl Body for RequestBody {
    const KIND: &'static str = "request";
    fn decode_body(key: ApiKey, buf: &mut Bytes, version: i16) -> Result<Self, sansa::protocol::DecodeError> {
        RequestBody::decode(key, buf, version)
    }
    fn encode_body(&self, buf: &mut BytesMut, version: i16) -> Result<(), sansa::protocol::EncodeError> {
        self.encode(buf, version)
    }
    fn len_body(&self, version: i16) -> usize {
        self.encoded_len(version)
    }
}

impl Body for ResponseBody {
    const KIND: &'static str = "response";
    fn decode_body(key: ApiKey, buf: &mut Bytes, version: i16) -> Result<Self, sansa::protocol::DecodeError> {
        ResponseBody::decode(key, buf, version)
    }
    fn encode_body(&self, buf: &mut BytesMut, version: i16) -> Result<(), sansa::protocol::EncodeError> {
        self.encode(buf, version)
    }
    fn len_body(&self, version: i16) -> usize {
        self.encoded_len(version)
    }
}

/// Decodes `body` as `key`/`version`; when that succeeds, checks the round-trip invariant:
///
/// 1. re-encoding at the same version succeeds and writes exactly `encoded_len` bytes;
/// 2. decoding those bytes succeeds, consumes all of them and gives an equal value;
/// 3. encoding that value again gives the same bytes (encoding is canonical after one pass).
pub fn check_round_trip<B: Body>(key: ApiKey, version: i16, body: &[u8]) -> Option<B> {
    let mut buf = Bytes::copy_from_slice(body);
    let value = B::decode_body(key, &mut buf, version).ok()?;
    let mut out = BytesMut::new();
    if let Err(e) = value.encode_body(&mut out, version) {
        panic!("{} {key:?} v{version}: decoded value fails to re-encode: {e:?}\nvalue: {value:?}", B::KIND);
    }
    let len = value.len_body(version);
    assert_eq!(
        len,
        out.len(),
        "{} {key:?} v{version}: encoded_len {len} != encoded length {}\nvalue: {value:?}",
        B::KIND,
        out.len()
    );
    let mut again = out.clone().freeze();
    let value2 = match B::decode_body(key, &mut again, version) {
        Ok(v) => v,
        Err(e) => panic!(
            "{} {key:?} v{version}: re-encoded bytes fail to decode: {e:?}\nvalue: {value:?}\nbytes: {out:02x?}",
            B::KIND
        ),
    };
    assert!(
        again.is_empty(),
        "{} {key:?} v{version}: {} bytes left after decoding the re-encoding\nvalue: {value:?}",
        B::KIND,
        again.len()
    );
    assert!(
        same(&value, &value2),
        "{} {key:?} v{version}: round trip changed the value\nfirst:  {value:?}\nsecond: {value2:?}",
        B::KIND
    );
    let mut out2 = BytesMut::new();
    value2.encode_body(&mut out2, version).expect("second encode");
    assert!(out == out2, "{} {key:?} v{version}: encoding is not stable\nfirst:  {out:02x?}\nsecond: {out2:02x?}", B::KIND);
    Some(value)
}
