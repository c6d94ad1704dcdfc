//! sansa reads every record buffer the Java client wrote exactly as the Java client reads it,
//! and writes the same content back: byte for byte when uncompressed.

use bytes::Bytes;
use sansa::protocol::records::{decode_batches, DecodeOptions};
use sansa_conformance::records_json::{describe, encode_description};
use sansa_conformance::{hex_encode, read_records_vectors, vectors_dir};

#[test]
fn java_record_vectors_decode_as_java_reads_them_and_re_encode() {
    let vectors = read_records_vectors(&vectors_dir().join("records.tsv")).expect("records.tsv");
    assert!(vectors.len() >= 30, "only {} record vectors", vectors.len());
    let mut failures = Vec::new();
    for v in &vectors {
        let expected: serde_json::Value = serde_json::from_str(&v.json).expect("vector json");
        let mut batches = decode_batches(Bytes::from(v.bytes.clone()), &DecodeOptions::new());
        let decoded: Result<Vec<_>, _> = batches.by_ref().collect();
        let decoded = match decoded {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{}: decode: {e}", v.name));
                continue;
            }
        };
        if let Some(p) = batches.partial() {
            failures.push(format!("{}: unexpected partial batch {p:?}", v.name));
        }
        let got = describe(&decoded);
        if got != expected {
            failures.push(format!("{}: decoded differently\n  java:  {expected}\n  sansa: {got}", v.name));
            continue;
        }
        // Re-encode with sansa's encoder.
        let ours = encode_description(&expected);
        let uncompressed = expected["batches"].as_array().unwrap().iter().all(|b| b["compression"] == "none");
        if uncompressed && ours[..] != v.bytes[..] {
            failures.push(format!(
                "{}: re-encoded bytes differ\n  java:  {}\n  sansa: {}",
                v.name,
                hex_encode(&v.bytes),
                hex_encode(&ours)
            ));
            continue;
        }
        let back: Vec<_> = decode_batches(ours.freeze(), &DecodeOptions::new())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{}: own encoding does not decode: {e}", v.name));
        if describe(&back) != expected {
            failures.push(format!("{}: own encoding reads back differently: {}", v.name, describe(&back)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} record vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}
