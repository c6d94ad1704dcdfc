//! Writes seed corpora for the fuzz targets: `cargo run --release --example seed [OUT_DIR]`
//! (OUT_DIR defaults to `corpus`; `run.sh` calls this). Output is not committed.
//!
//! - `decode_request` / `decode_response`: every API at every version, the default message
//!   encoded by sansa, plus the golden vectors from `conformance/vectors/messages.tsv` (Kafka's
//!   Java client, "full", "nulls", "defaults" and "unknown_tagged" variants) when present; the
//!   request corpus also gets whole request frames (header + body) for the frame path.
//! - `frame`: streams of several frames.
//! - `decode_records`: batches for every codec and magic (see `records_seeds`), plus the golden
//!   `records.tsv` buffers.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use sansa::protocol::frame::{encode_request, encode_response};
use sansa::protocol::{ApiKey, RequestBody, ResponseBody};
use sansa_fuzz::api_input_prefix;

fn default_requests() -> Vec<RequestBody> {
    ApiKey::ALL.iter().map(|k| RequestBody::default_for(*k)).collect()
}

fn default_responses() -> Vec<ResponseBody> {
    ApiKey::ALL.iter().map(|k| ResponseBody::default_for(*k)).collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::write(dir.join(name), data).unwrap_or_else(|e| panic!("write {}: {e}", dir.join(name).display()));
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors")
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let dirs = ["decode_request", "decode_response", "frame", "decode_records"];
    for d in dirs {
        fs::create_dir_all(out.join(d)).unwrap();
    }
    let (req_dir, resp_dir, frame_dir) = (out.join("decode_request"), out.join("decode_response"), out.join("frame"));
    let mut counts = [0usize; 4];

    let requests = default_requests();
    let responses = default_responses();
    let mut stream = BytesMut::new();
    for body in &requests {
        let key = body.api_key();
        for v in key.versions().iter() {
            let mut buf = BytesMut::new();
            if body.encode(&mut buf, v).is_err() {
                continue;
            }
            let mut input = api_input_prefix(key, v).to_vec();
            input.extend_from_slice(&buf);
            write(&req_dir, &format!("{key:?}_v{v}_default"), &input);
            counts[0] += 1;
            // A whole request frame (header + body) for `frame::decode_request`.
            let mut frame = BytesMut::new();
            if encode_request(&mut frame, 7, Some("fuzz"), v, body).is_ok() {
                write(&req_dir, &format!("{key:?}_v{v}_frame"), &frame[4..]);
                counts[0] += 1;
                if v == key.versions().max {
                    stream.extend_from_slice(&frame);
                }
            }
        }
    }
    for body in &responses {
        let key = body.api_key();
        for v in key.versions().iter() {
            let mut buf = BytesMut::new();
            if body.encode(&mut buf, v).is_err() {
                continue;
            }
            let mut input = api_input_prefix(key, v).to_vec();
            input.extend_from_slice(&buf);
            write(&resp_dir, &format!("{key:?}_v{v}_default"), &input);
            counts[1] += 1;
            if v == key.versions().min {
                let _ = encode_response(&mut stream, 9, v, body);
            }
        }
    }

    // Golden vectors from Kafka's Java client.
    match fs::read_to_string(vectors_dir().join("messages.tsv")) {
        Ok(tsv) => {
            for line in tsv.lines() {
                let cols: Vec<&str> = line.split('\t').collect();
                let [key, kind, version, name, hex] = cols[..] else { continue };
                let (Ok(key), Ok(version), Some(bytes)) = (key.parse::<i16>(), version.parse::<i16>(), unhex(hex)) else {
                    continue;
                };
                let Some(api) = ApiKey::from_i16(key) else { continue };
                if !api.versions().contains(version) {
                    continue;
                }
                let (dir, i) = match kind {
                    "request" => (&req_dir, 0),
                    "response" => (&resp_dir, 1),
                    _ => continue,
                };
                let mut input = api_input_prefix(api, version).to_vec();
                input.extend_from_slice(&bytes);
                write(dir, &format!("golden_{name}"), &input);
                counts[i] += 1;
            }
        }
        Err(e) => eprintln!("seed: no golden message vectors ({e}); defaults only"),
    }

    // Frame streams: the same frames with different chunkings and maximum sizes.
    let stream = stream.freeze();
    for (i, (chunk_seed, max)) in [(0u8, 0u8), (1, 0), (7, 0), (200, 0), (3, 4), (255, 1)].into_iter().enumerate() {
        let mut input = vec![chunk_seed, max];
        input.extend_from_slice(&stream[..stream.len().min(4096)]);
        write(&frame_dir, &format!("stream_{i}"), &input);
        counts[2] += 1;
    }
    write(&frame_dir, "http", b"\x05\x00HTTP/1.1 400 Bad Request\r\n\r\n");
    write(&frame_dir, "tls", &[0x05, 0x00, 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);
    counts[2] += 2;

    counts[3] += records_seeds(&out.join("decode_records"));

    for (d, n) in dirs.iter().zip(counts) {
        println!("{d}: {n} seeds");
    }
}

fn records_seeds(dir: &Path) -> usize {
    use sansa::protocol::records::{
        BatchParams, Compression, CompressionType, EndTxnMarker, Header, LegacyParams, RecordBatchEncoder,
    };
    let codecs = [
        CompressionType::None,
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];
    let headers = [Header::new(&b"trace"[..], Some(bytes::Bytes::from_static(b"abc"))), Header::new(&b"h"[..], None)];
    let mut n = 0;
    let mut enc = RecordBatchEncoder::new();
    // Options byte: cap index 5 (1 MiB), re-encoding on.
    let mut emit = |name: String, buf: &[u8]| {
        write(dir, &name, &[&[5u8][..], buf].concat());
        n += 1;
    };
    for codec in codecs {
        let comp = Compression::from_type(codec);
        // v2: plain, transactional + idempotent, log-append-time, two batches back to back.
        let variants: [(&str, BatchParams); 3] = [
            ("plain", BatchParams::new().compression(comp)),
            ("txn", BatchParams::new().compression(comp).base_offset(100).producer(4000, 3, 17).transactional(true)),
            ("logappend", BatchParams::new().compression(comp).partition_leader_epoch(5).log_append_time(Some(1_700_000_000_999))),
        ];
        let mut both = BytesMut::new();
        for (name, params) in variants {
            let mut out = BytesMut::new();
            let mut b = enc.begin(&mut out, params).expect("begin");
            for i in 0..5u8 {
                let key = [b'k', b'0' + i];
                let value = vec![b'v'; 20 + 10 * i as usize];
                let key = if i == 3 { None } else { Some(&key[..]) };
                let value = if i == 4 { None } else { Some(&value[..]) };
                let h = if i % 2 == 0 { &headers[..] } else { &[][..] };
                b.append(1_700_000_000_000 + i as i64, key, value, h).expect("append");
            }
            b.finish().expect("finish");
            both.extend_from_slice(&out);
            emit(format!("v2_{}_{name}", codec.name()), &out);
            // Cut off inside the batch: a partial batch at the end.
            emit(format!("v2_{}_{name}_partial", codec.name()), &out[..out.len() - 7]);
        }
        emit(format!("v2_{}_multi", codec.name()), &both);
        // Legacy magic 0 and 1 (no zstd before magic 2).
        if codec != CompressionType::Zstd {
            for magic in [0i8, 1] {
                let mut out = BytesMut::new();
                let mut b = enc.begin_legacy(&mut out, LegacyParams::new(magic).compression(comp).base_offset(10)).expect("legacy");
                for i in 0..3u8 {
                    b.append(1_700_000_000_000 + i as i64, Some(&[b'k', i][..]), Some(&[b'v'; 30][..])).expect("append");
                }
                b.finish().expect("finish");
                emit(format!("magic{magic}_{}", codec.name()), &out);
            }
        }
    }
    // A COMMIT control batch.
    let mut out = BytesMut::new();
    EndTxnMarker::commit(7)
        .write_batch(&mut out, BatchParams::new().base_offset(55).producer(4000, 3, -1), 1_700_000_000_000)
        .expect("marker");
    emit("v2_control_commit".into(), &out);
    if let Ok(tsv) = fs::read_to_string(vectors_dir().join("records.tsv")) {
        for line in tsv.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 2 {
                continue;
            }
            let Some(bytes) = unhex(cols[1]) else { continue };
            // decode_records input: one options byte, then the records buffer.
            write(dir, &format!("golden_{}", cols[0]), &[&[0u8][..], &bytes].concat());
            n += 1;
        }
    }
    n
}
