//! `ResponseBody::decode` for every API and version, with the round-trip invariant
//! (see `sansa_fuzz::check_round_trip`). The same body bytes are also fed to
//! `frame::decode_response` as a frame (header + body).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sansa::protocol::{frame, ResponseBody};
use sansa_fuzz::{check_round_trip, split_api_input};

fuzz_target!(|data: &[u8]| {
    let Some((key, version, body)) = split_api_input(data) else { return };
    let _ = check_round_trip::<ResponseBody>(key, version, body);
    let _ = frame::decode_response(Bytes::copy_from_slice(body), key, version);
    let _ = frame::response_correlation_id(&Bytes::copy_from_slice(body));
});
