//! Writes buffers encoded by sansa for the Java client to check (`conformance/java/run.sh
//! verify DIR`):
//!
//! - `DIR/batches.tsv`: every Java record vector re-encoded by sansa, plus larger synthetic
//!   batches for every codec and message format, each with the JSON description of what a
//!   reader must find;
//! - `DIR/messages.tsv`: the default value of every request and response at every version,
//!   encoded by sansa.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::BytesMut;
use sansa::protocol::messages::{RequestBody, ResponseBody};
use sansa::protocol::ApiKey;
use sansa_conformance::records_json::encode_description;
use sansa_conformance::{hex_encode, read_records_vectors, vectors_dir};
use serde_json::{json, Value};

/// A synthetic description: `count` records with varied keys, values and headers.
fn synthetic(magic: i64, compression: &str, count: i64, base_offset: i64) -> Value {
    let base_ts = 1_700_000_000_000i64;
    let records: Vec<Value> = (0..count)
        .map(|i| {
            let key = (i % 7 != 0).then(|| hex_encode(format!("key-{}", i % 13).as_bytes()));
            let value =
                (i % 11 != 0).then(|| hex_encode(format!("value {i} ").repeat(1 + (i % 5) as usize).as_bytes()));
            let headers: Vec<Value> = if magic == 2 {
                (0..i % 3).map(|h| json!([format!("h{h}"), hex_encode(format!("v{i}").as_bytes())])).collect()
            } else {
                Vec::new()
            };
            let timestamp = if magic == 0 { -1 } else { base_ts + (i * 37) % 1000 };
            json!({ "offset": base_offset + i, "timestamp": timestamp, "key": key, "value": value, "headers": headers })
        })
        .collect();
    let max_timestamp =
        if magic == 0 { -1 } else { records.iter().map(|r| r["timestamp"].as_i64().unwrap()).max().unwrap() };
    json!({ "batches": [{
        "magic": magic, "base_offset": base_offset, "last_offset_delta": count - 1,
        "partition_leader_epoch": if magic == 2 { 3 } else { -1 },
        "compression": compression, "timestamp_type": if magic == 0 { "none" } else { "create_time" },
        "transactional": false, "control": false,
        "producer_id": if magic == 2 { 77 } else { -1 },
        "producer_epoch": if magic == 2 { 1 } else { -1 },
        "base_sequence": if magic == 2 { 100 } else { -1 },
        "max_timestamp": max_timestamp, "records": records,
    }]})
}

fn run() -> Result<(), String> {
    let dir: PathBuf = std::env::args().nth(1).ok_or("usage: write-vectors DIR")?.into();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut batches = String::new();
    let mut count = 0;
    let java = read_records_vectors(&vectors_dir().join("records.tsv")).map_err(|e| e.to_string())?;
    for v in &java {
        let desc: Value = serde_json::from_str(&v.json).map_err(|e| e.to_string())?;
        let bytes = encode_description(&desc);
        let _ = writeln!(batches, "sansa_{}\t{}\t{}", v.name, hex_encode(&bytes), v.json);
        count += 1;
    }
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        for (magic, n) in [(2, 1000), (1, 200), (0, 200)] {
            if codec == "zstd" && magic < 2 {
                continue; // zstd needs the v2 format
            }
            // Non-v2 uncompressed sets hold one message per "batch"; keep those small.
            let n = if codec == "none" && magic < 2 { 3 } else { n };
            let desc = if codec == "none" && magic < 2 {
                // Split into one batch per message, as Kafka's reader reports them.
                let whole = synthetic(magic, codec, n, 10);
                let split: Vec<Value> = whole["batches"][0]["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let mut b = whole["batches"][0].clone();
                        b["base_offset"] = r["offset"].clone();
                        b["last_offset_delta"] = json!(0);
                        b["max_timestamp"] = r["timestamp"].clone();
                        b["records"] = json!([r]);
                        b
                    })
                    .collect();
                json!({ "batches": split })
            } else {
                synthetic(magic, codec, n, 10)
            };
            let bytes = encode_description(&desc);
            let _ = writeln!(batches, "sansa_synthetic_v{magic}_{codec}_{n}\t{}\t{desc}", hex_encode(&bytes));
            count += 1;
        }
    }
    std::fs::write(dir.join("batches.tsv"), batches).map_err(|e| e.to_string())?;

    let mut messages = String::new();
    let mut message_count = 0;
    for key in ApiKey::ALL {
        for version in key.versions().iter() {
            for (kind, bytes) in [
                ("request", encode_default_request(*key, version)?),
                ("response", encode_default_response(*key, version)?),
            ] {
                let _ = writeln!(
                    messages,
                    "{}\t{kind}\t{version}\tsansa_{key}_{kind}_v{version}_default\t{}",
                    key.as_i16(),
                    hex_encode(&bytes)
                );
                message_count += 1;
            }
        }
    }
    std::fs::write(dir.join("messages.tsv"), messages).map_err(|e| e.to_string())?;
    println!("wrote {count} batch vectors and {message_count} message vectors to {}", dir.display());
    Ok(())
}

fn encode_default_request(key: ApiKey, version: i16) -> Result<BytesMut, String> {
    let body = RequestBody::default_for(key);
    let mut out = BytesMut::new();
    body.encode(&mut out, version).map_err(|e| format!("{key} v{version}: {e}"))?;
    Ok(out)
}

fn encode_default_response(key: ApiKey, version: i16) -> Result<BytesMut, String> {
    let body = ResponseBody::default_for(key);
    let mut out = BytesMut::new();
    body.encode(&mut out, version).map_err(|e| format!("{key} v{version}: {e}"))?;
    Ok(out)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("write-vectors: {e}");
            ExitCode::FAILURE
        }
    }
}
