//! `RequestBody::decode` for every API and version, with the round-trip invariant
//! (see `sansa_fuzz::check_round_trip`); separately the whole input as a request frame
//! through `frame::decode_request`, which must round-trip through `frame::encode_request`.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sansa::protocol::{frame, FrameDecoder, RequestBody};
use sansa_fuzz::{check_round_trip, split_api_input};

fuzz_target!(|data: &[u8]| {
    if let Some((key, version, body)) = split_api_input(data) {
        let _ = check_round_trip::<RequestBody>(key, version, body);
    }

    // The whole input as a frame (without size prefix): header + body.
    let Ok((header, body)) = frame::decode_request(Bytes::copy_from_slice(data)) else { return };
    let version = header.request_api_version;
    assert_eq!(body.api_key().as_i16(), header.request_api_key, "body API differs from the header's");
    let mut wire = BytesMut::new();
    if let Err(e) = frame::encode_request(&mut wire, header.correlation_id, header.client_id.as_deref(), version, &body) {
        panic!("decoded request frame fails to re-encode: {e:?}\nheader: {header:?}\nbody: {body:?}");
    }
    let f = FrameDecoder::default().decode(&mut wire).expect("own frame").expect("complete frame");
    assert!(wire.is_empty());
    let (h2, b2) = match frame::decode_request(f.clone()) {
        Ok(x) => x,
        Err(e) => panic!("re-encoded request frame fails to decode: {e:?}\nheader: {header:?}\nbody: {body:?}\nframe: {f:02x?}"),
    };
    assert_eq!(
        (h2.request_api_key, h2.request_api_version, h2.correlation_id, h2.client_id.as_deref()),
        (header.request_api_key, header.request_api_version, header.correlation_id, header.client_id.as_deref()),
        "header changed in the frame round trip"
    );
    assert!(b2 == body || format!("{b2:?}") == format!("{body:?}"), "body changed in the frame round trip\nfirst:  {body:?}\nsecond: {b2:?}");
});
