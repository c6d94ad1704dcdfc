//! The JSON description of a records buffer shared with the Java vector program: what a
//! reader finds in it, batch by batch (see `conformance/vectors/README.md`). sansa describes
//! what it decoded in the same shape, and can rebuild a buffer from a description with its own
//! encoder, which is how the Java client gets sansa-written batches to verify.

use bytes::BytesMut;
use sansa::protocol::records::{
    BatchParams, Compression, CompressionType, EndTxnMarker, Header, LegacyParams, RecordBatch, RecordBatchEncoder,
    TimestampType, MAGIC_V2,
};
use serde_json::{json, Value};

use crate::{hex_decode, hex_encode};

fn hex_or_null(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| Value::String(hex_encode(b)))
}

fn compression_name(c: CompressionType) -> &'static str {
    match c {
        CompressionType::Gzip => "gzip",
        CompressionType::Snappy => "snappy",
        CompressionType::Lz4 => "lz4",
        CompressionType::Zstd => "zstd",
        _ => "none",
    }
}

fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "create_time",
        TimestampType::LogAppendTime => "log_append_time",
        _ => "none",
    }
}

/// Describes decoded batches in the vectors' JSON shape.
pub fn describe(batches: &[RecordBatch]) -> Value {
    let batches: Vec<Value> = batches
        .iter()
        .map(|b| {
            let records: Vec<Value> = b
                .records()
                .iter()
                .map(|r| {
                    let headers: Vec<Value> = r
                        .headers
                        .iter()
                        .map(|h| json!([String::from_utf8_lossy(&h.key), hex_or_null(h.value.as_deref())]))
                        .collect();
                    let mut rec = json!({
                        "offset": r.offset,
                        "timestamp": r.timestamp,
                        "key": hex_or_null(r.key.as_deref()),
                        "value": hex_or_null(r.value.as_deref()),
                        "headers": headers,
                    });
                    if b.is_control() {
                        if let Ok(marker) = EndTxnMarker::parse(r) {
                            rec["control_type"] = json!(if marker.committed { "commit" } else { "abort" });
                            rec["coordinator_epoch"] = json!(marker.coordinator_epoch);
                        }
                    }
                    rec
                })
                .collect();
            json!({
                "magic": b.magic(),
                "base_offset": b.base_offset(),
                "last_offset_delta": b.last_offset_delta(),
                "partition_leader_epoch": b.partition_leader_epoch(),
                "compression": compression_name(b.compression()),
                "timestamp_type": timestamp_type_name(b.timestamp_type()),
                "transactional": b.is_transactional(),
                "control": b.is_control(),
                "producer_id": b.producer_id(),
                "producer_epoch": b.producer_epoch(),
                "base_sequence": b.base_sequence(),
                "max_timestamp": b.max_timestamp(),
                "records": records,
            })
        })
        .collect();
    json!({ "batches": batches })
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or_else(|| panic!("description lacks {key:?}"))
}

fn int(v: &Value, key: &str) -> i64 {
    field(v, key).as_i64().unwrap_or_else(|| panic!("{key:?} is not an integer"))
}

fn bytes_or_null(v: &Value) -> Option<Vec<u8>> {
    v.as_str().map(hex_decode)
}

fn compression_of(name: &str) -> Compression {
    match name {
        "gzip" => Compression::gzip(),
        "snappy" => Compression::snappy(),
        "lz4" => Compression::lz4(),
        "zstd" => Compression::zstd(),
        "none" => Compression::None,
        other => panic!("unknown compression {other:?}"),
    }
}

/// Writes the batches a description names with sansa's own encoder. Uncompressed output is
/// expected to match the Java client's bytes exactly; compressed output may differ in the
/// compressed block but must read back the same.
pub fn encode_description(desc: &Value) -> BytesMut {
    let mut out = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    for b in field(desc, "batches").as_array().expect("batches array") {
        let magic = int(b, "magic") as i8;
        let base_offset = int(b, "base_offset");
        let compression = compression_of(field(b, "compression").as_str().expect("compression name"));
        let log_append = field(b, "timestamp_type").as_str() == Some("log_append_time");
        let max_timestamp = int(b, "max_timestamp");
        let records = field(b, "records").as_array().expect("records array");
        if magic == MAGIC_V2 {
            let params = BatchParams::new()
                .base_offset(base_offset)
                .partition_leader_epoch(int(b, "partition_leader_epoch") as i32)
                .producer(int(b, "producer_id"), int(b, "producer_epoch") as i16, int(b, "base_sequence") as i32)
                .transactional(field(b, "transactional").as_bool() == Some(true))
                .control(field(b, "control").as_bool() == Some(true))
                .log_append_time(log_append.then_some(max_timestamp))
                .compression(compression);
            let mut builder = encoder.begin(&mut out, params).expect("begin batch");
            for r in records {
                let headers: Vec<Header> = field(r, "headers")
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| {
                        Header::new(
                            h[0].as_str().expect("header key").as_bytes().to_vec(),
                            bytes_or_null(&h[1]).map(Into::into),
                        )
                    })
                    .collect();
                builder
                    .append_with_offset_delta(
                        (int(r, "offset") - base_offset) as i32,
                        int(r, "timestamp"),
                        bytes_or_null(field(r, "key")).as_deref(),
                        bytes_or_null(field(r, "value")).as_deref(),
                        &headers,
                    )
                    .expect("append");
            }
            builder.finish().expect("finish batch");
        } else {
            let params = LegacyParams::new(magic)
                .base_offset(base_offset)
                .compression(compression)
                .log_append_time(log_append.then_some(max_timestamp));
            let mut builder = encoder.begin_legacy(&mut out, params).expect("begin message set");
            for r in records {
                builder
                    .append(
                        int(r, "timestamp"),
                        bytes_or_null(field(r, "key")).as_deref(),
                        bytes_or_null(field(r, "value")).as_deref(),
                    )
                    .expect("append");
            }
            builder.finish().expect("finish message set");
        }
    }
    out
}
