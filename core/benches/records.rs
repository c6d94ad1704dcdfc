//! Record batch encode/decode throughput per codec, with CRC32C and a plain memory copy as
//! reference lines. Throughput counts the uncompressed key and value bytes of the batch.
//!
//! Run: `cargo bench -p sansa --bench records` (add `-- --test` for a quick smoke run).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sansa::protocol::records::{decode_batches, BatchParams, Compression, DecodeOptions, RecordBatchEncoder};

const RECORDS: usize = 1_000;
const VALUE_SIZES: [usize; 2] = [100, 1024];
const CODECS: [(&str, Compression); 5] = [
    ("none", Compression::None),
    ("gzip", Compression::gzip()),
    ("snappy", Compression::snappy()),
    ("lz4", Compression::lz4()),
    ("zstd", Compression::zstd()),
];

/// splitmix64: a fixed seed gives the same payloads on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// JSON-ish event lines, like much of what flows through Kafka: repeated field names and
/// vocabulary (compressible) mixed with ids, numbers and hex tokens (not trivially so).
fn value(rng: &mut Rng, size: usize) -> Vec<u8> {
    const EVENTS: [&str; 6] = ["page_view", "click", "add_to_cart", "checkout", "search", "logout"];
    const PAGES: [&str; 5] = ["/home", "/products", "/cart", "/account/settings", "/search"];
    const AGENTS: [&str; 3] = ["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh)", "okhttp/4.12.0"];
    let mut out = String::with_capacity(size + 128);
    while out.len() < size {
        out.push_str(&format!(
            "{{\"user\":{},\"event\":\"{}\",\"page\":\"{}/{}\",\"session\":\"{:016x}\",\"agent\":\"{}\",\"ms\":{}}}",
            rng.next() % 1_000_000,
            rng.pick(&EVENTS),
            rng.pick(&PAGES),
            rng.next() % 10_000,
            rng.next(),
            rng.pick(&AGENTS),
            rng.next() % 5_000,
        ));
    }
    out.truncate(size);
    out.into_bytes()
}

struct Workload {
    records: Vec<(Vec<u8>, Vec<u8>)>,
    payload_bytes: u64,
}

fn workload(value_size: usize) -> Workload {
    let mut rng = Rng(0x5A45_5A41 ^ value_size as u64);
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..RECORDS)
        .map(|i| (format!("user-{:06}", (i * 7919) % 100_000).into_bytes(), value(&mut rng, value_size)))
        .collect();
    let payload_bytes = records.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    Workload { records, payload_bytes }
}

fn encode(encoder: &mut RecordBatchEncoder, out: &mut BytesMut, compression: Compression, w: &Workload) -> usize {
    out.clear();
    let params = BatchParams::new().producer(1_000, 0, 0).compression(compression);
    let mut batch = encoder.begin(out, params).expect("valid params");
    for (i, (key, value)) in w.records.iter().enumerate() {
        batch.append(1_700_000_000_000 + i as i64, Some(key), Some(value), &[]).expect("record fits");
    }
    batch.finish().expect("batch encodes")
}

fn records(c: &mut Criterion) {
    for size in VALUE_SIZES {
        let w = workload(size);

        let mut group = c.benchmark_group(format!("encode/{size}B"));
        group.throughput(Throughput::Bytes(w.payload_bytes));
        for (name, compression) in CODECS {
            let mut encoder = RecordBatchEncoder::new();
            let mut out = BytesMut::new();
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| black_box(encode(&mut encoder, &mut out, compression, &w)));
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("decode/{size}B"));
        group.throughput(Throughput::Bytes(w.payload_bytes));
        for (name, compression) in CODECS {
            let mut out = BytesMut::new();
            encode(&mut RecordBatchEncoder::new(), &mut out, compression, &w);
            let wire: Bytes = out.freeze();
            let options = DecodeOptions::new();
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let mut n = 0;
                    for batch in decode_batches(black_box(wire.clone()), &options) {
                        n += batch.expect("valid batch").records().len();
                    }
                    assert_eq!(n, RECORDS);
                    n
                });
            });
        }
        // The same uncompressed batch without the CRC pass, for consumers that opt out.
        let mut out = BytesMut::new();
        encode(&mut RecordBatchEncoder::new(), &mut out, Compression::None, &w);
        let wire = out.freeze();
        let options = DecodeOptions::new().verify_crc(false);
        group.bench_function(BenchmarkId::from_parameter("none-no-crc"), |b| {
            b.iter(|| {
                decode_batches(black_box(wire.clone()), &options)
                    .map(|b| b.expect("valid").records().len())
                    .sum::<usize>()
            });
        });
        group.finish();
    }
}

fn reference_lines(c: &mut Criterion) {
    const MIB: usize = 1 << 20;
    let mut rng = Rng(1);
    let data: Vec<u8> = (0..MIB / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
    let mut group = c.benchmark_group("reference");
    // Both CRC32C crates (CRC-32/ISCSI is CRC32C), on a batch's size and on a fetch's.
    for (name, len) in [("16KiB", 16 << 10), ("1MiB", MIB)] {
        let data = &data[..len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("crc32c/{name}"), |b| b.iter(|| crc32c::crc32c(black_box(data))));
        group.bench_function(format!("crc-fast/{name}"), |b| {
            b.iter(|| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, black_box(data)))
        });
    }
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut dst = vec![0u8; MIB];
    group.bench_function("memcpy/1MiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&data));
            black_box(&mut dst);
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = records, reference_lines
}
criterion_main!(benches);
