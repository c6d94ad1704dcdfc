//! sansa decodes every message the Java client wrote and re-encodes it to the same bytes.

use bytes::{Bytes, BytesMut};
use sansa::protocol::messages::{RequestHeader, ResponseHeader};
use sansa::protocol::{ApiKey, Codec, ErrorCode, RequestBody, ResponseBody};
use sansa_conformance::{read_message_vectors, vectors_dir};

fn check<T>(
    name: &str,
    original: &[u8],
    decode: impl FnOnce(&mut Bytes) -> Result<T, sansa::protocol::DecodeError>,
    encode: impl FnOnce(&T, &mut BytesMut) -> Result<(), sansa::protocol::EncodeError>,
    len: impl FnOnce(&T) -> usize,
) -> Result<(), String> {
    let mut input = Bytes::copy_from_slice(original);
    let value = decode(&mut input).map_err(|e| format!("{name}: decode: {e}"))?;
    if !input.is_empty() {
        return Err(format!("{name}: {} bytes left after decoding", input.len()));
    }
    let mut out = BytesMut::new();
    encode(&value, &mut out).map_err(|e| format!("{name}: encode: {e}"))?;
    if out[..] != original[..] {
        return Err(format!(
            "{name}: re-encoded bytes differ\n  java:  {}\n  sansa: {}",
            sansa_conformance::hex_encode(original),
            sansa_conformance::hex_encode(&out)
        ));
    }
    let computed = len(&value);
    if computed != original.len() {
        return Err(format!("{name}: encoded_len {computed} but {} bytes", original.len()));
    }
    Ok(())
}

#[test]
fn every_java_message_vector_round_trips_byte_for_byte() {
    let vectors = read_message_vectors(&vectors_dir()).expect("conformance/vectors/messages.tsv");
    assert!(vectors.len() > 1000, "only {} vectors", vectors.len());
    let mut failures = Vec::new();
    let mut apis = std::collections::BTreeSet::new();
    for v in &vectors {
        let result = match v.kind.as_str() {
            "request" | "response" => {
                let key = ApiKey::from_i16(v.api_key).unwrap_or_else(|| panic!("{}: unknown api key", v.name));
                apis.insert((v.api_key, v.kind.clone()));
                if v.kind == "request" {
                    check(
                        &v.name,
                        &v.bytes,
                        |b| RequestBody::decode(key, b, v.version),
                        |m, out| m.encode(out, v.version),
                        |m| m.encoded_len(v.version),
                    )
                } else {
                    check(
                        &v.name,
                        &v.bytes,
                        |b| ResponseBody::decode(key, b, v.version),
                        |m, out| m.encode(out, v.version),
                        |m| m.encoded_len(v.version),
                    )
                }
            }
            "request_header" => check(
                &v.name,
                &v.bytes,
                |b| RequestHeader::decode(b, v.version),
                |m, out| m.encode(out, v.version),
                |m| m.encoded_len(v.version),
            ),
            "response_header" => check(
                &v.name,
                &v.bytes,
                |b| ResponseHeader::decode(b, v.version),
                |m, out| m.encode(out, v.version),
                |m| m.encoded_len(v.version),
            ),
            other => panic!("{}: unknown kind {other}", v.name),
        };
        if let Err(e) = result {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{} of {} vectors failed:\n{}", failures.len(), vectors.len(), failures.join("\n"));
    // Every API sansa knows has request and response vectors.
    for key in ApiKey::ALL {
        if key.versions().is_empty() {
            continue;
        }
        for kind in ["request", "response"] {
            assert!(apis.contains(&(key.as_i16(), kind.to_string())), "no {kind} vector for {key}");
        }
    }
}

#[test]
fn every_stable_version_sansa_knows_has_a_vector() {
    let vectors = read_message_vectors(&vectors_dir()).expect("messages.tsv");
    let have: std::collections::BTreeSet<(i16, i16)> =
        vectors.iter().filter(|v| v.kind == "request").map(|v| (v.api_key, v.version)).collect();
    for key in ApiKey::ALL {
        for version in key.versions().iter() {
            assert!(have.contains(&(key.as_i16(), version)), "{key} v{version} has no Java vector");
        }
    }
}

#[test]
fn error_table_matches_the_java_client() {
    let text = std::fs::read_to_string(vectors_dir().join("errors.tsv")).expect("errors.tsv");
    let mut count = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let c: Vec<&str> = line.split('\t').collect();
        let code: i16 = c[0].parse().unwrap();
        let e = ErrorCode::from_i16(code);
        assert_eq!(e.name(), c[1], "code {code}");
        assert_eq!(e.is_retriable().to_string(), c[2], "{} retriable", c[1]);
        assert_eq!(e.code(), code);
        count += 1;
    }
    assert_eq!(count, ErrorCode::ALL.len(), "sansa's table and Java's differ in size");
    assert!(matches!(ErrorCode::from_i16(9999), ErrorCode::Unknown(9999)));
}

#[test]
fn every_message_survives_a_json_round_trip() {
    // The CLI's `request --json` path: serde for every generated type.
    let vectors = read_message_vectors(&vectors_dir()).expect("messages.tsv");
    let mut checked = 0;
    for v in vectors.iter().filter(|v| v.kind == "request" || v.kind == "response") {
        let key = ApiKey::from_i16(v.api_key).expect("known api");
        let mut b = Bytes::copy_from_slice(&v.bytes);
        if v.kind == "request" {
            let m = RequestBody::decode(key, &mut b, v.version).expect("decodes");
            let json = serde_json::to_value(&m).expect("serializes");
            let back = RequestBody::deserialize_for(key, json).unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(back, m, "{}", v.name);
        } else {
            let m = ResponseBody::decode(key, &mut b, v.version).expect("decodes");
            let json = serde_json::to_value(&m).expect("serializes");
            let back = ResponseBody::deserialize_for(key, json).unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(back, m, "{}", v.name);
        }
        checked += 1;
    }
    assert!(checked > 1800);
    // Omitted fields take their defaults, so a hand-written request can be short.
    let body = RequestBody::deserialize_for(ApiKey::Metadata, serde_json::json!({"topics": [{"name": "t"}]})).unwrap();
    let RequestBody::Metadata(m) = body else { panic!("metadata") };
    assert_eq!(m.topics.unwrap()[0].name.as_ref().map(|n| n.to_string()), Some("t".to_string()));
    assert_eq!(ApiKey::from_name("list_offsets"), Some(ApiKey::ListOffsets));
}
