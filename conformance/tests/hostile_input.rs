//! Seeded randomized decoding of hostile input: truncated, mutated and random frames must
//! produce errors, never panics, and must never make the decoder allocate far beyond the
//! size of its input. Golden vectors from the Java client are the seeds.
//!
//! A failure prints the seed; `SANSA_HOSTILE_SEED=<n> cargo test -p sansa-conformance --test
//! hostile_input` replays it.

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::{decode_request, FrameDecoder};
use sansa::protocol::{ApiKey, RequestBody, ResponseBody};
use sansa_conformance::{read_message_vectors, vectors_dir, MessageVector};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| {
            let now = l.get() + layout.size();
            l.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the peak number of bytes it had allocated at once.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

/// Decoded structs are larger in memory than on the wire, but never by more than this factor
/// (plus a constant): no length read from the input may size an allocation on its own.
fn allocation_bound(input_len: usize) -> usize {
    512 * input_len + 64 * 1024
}

/// splitmix64: small, seeded, good enough to draw test cases.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seed() -> u64 {
    std::env::var("SANSA_HOSTILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5a75a)
}

#[derive(Clone, Copy)]
enum Kind {
    Request,
    Response,
}

/// Decodes `input` as `kind` of `key` at `version`; checks the allocation bound and, when it
/// decodes, that re-encoding is stable. Returns whether it decoded.
fn probe(kind: Kind, key: ApiKey, version: i16, input: &[u8], context: &str) -> bool {
    let mut b = Bytes::copy_from_slice(input);
    let (encoded, peak) = measure(|| match kind {
        Kind::Request => RequestBody::decode(key, &mut b, version).map(|m| {
            let mut out = BytesMut::new();
            m.encode(&mut out, version).map(|()| out)
        }),
        Kind::Response => ResponseBody::decode(key, &mut b, version).map(|m| {
            let mut out = BytesMut::new();
            m.encode(&mut out, version).map(|()| out)
        }),
    });
    // Re-encoding allocates the output too; the bound still holds for it.
    assert!(
        peak <= allocation_bound(input.len()),
        "{context}: {key} v{version}: decoding {} bytes allocated {peak} bytes",
        input.len()
    );
    match encoded {
        Err(_) => false,
        Ok(Err(e)) => panic!("{context}: {key} v{version}: decoded but could not re-encode: {e}"),
        Ok(Ok(first)) => {
            // Whatever decodes must re-encode to bytes that decode to the same encoding.
            let mut again = first.clone().freeze();
            let second = match kind {
                Kind::Request => RequestBody::decode(key, &mut again, version).map(|m| {
                    let mut out = BytesMut::new();
                    m.encode(&mut out, version).expect("re-encode");
                    out
                }),
                Kind::Response => ResponseBody::decode(key, &mut again, version).map(|m| {
                    let mut out = BytesMut::new();
                    m.encode(&mut out, version).expect("re-encode");
                    out
                }),
            }
            .unwrap_or_else(|e| panic!("{context}: {key} v{version}: own encoding does not decode: {e}"));
            assert_eq!(first, second, "{context}: {key} v{version}: encoding is not stable");
            true
        }
    }
}

fn body_vectors() -> Vec<(Kind, ApiKey, MessageVector)> {
    read_message_vectors(&vectors_dir())
        .expect("messages.tsv")
        .into_iter()
        .filter_map(|v| {
            let kind = match v.kind.as_str() {
                "request" => Kind::Request,
                "response" => Kind::Response,
                _ => return None,
            };
            Some((kind, ApiKey::from_i16(v.api_key)?, v))
        })
        .collect()
}

#[test]
fn truncated_messages_are_errors() {
    let mut rng = Rng(seed());
    for (kind, key, v) in body_vectors() {
        let n = v.bytes.len();
        if n == 0 {
            continue;
        }
        // Every cut near both ends, and a sample in between.
        let mut cuts: Vec<usize> = (0..n.min(16)).chain(n.saturating_sub(16)..n).collect();
        cuts.extend((0..16).map(|_| rng.below(n)));
        for cut in cuts {
            let decoded =
                probe(kind, key, v.version, &v.bytes[..cut], &format!("seed {} {} cut {cut}", seed(), v.name));
            assert!(!decoded, "{} cut to {cut} of {n} bytes still decoded", v.name);
        }
    }
}

#[test]
fn mutated_messages_never_panic() {
    let mut rng = Rng(seed() ^ 1);
    let mut decoded = 0usize;
    let mut total = 0usize;
    for (kind, key, v) in body_vectors() {
        for round in 0..24 {
            let mut m = v.bytes.clone();
            let edits = 1 + rng.below(4);
            for _ in 0..edits {
                if m.is_empty() {
                    m.push(rng.next() as u8);
                    continue;
                }
                let at = rng.below(m.len());
                match rng.below(6) {
                    0 => m[at] ^= 1 << rng.below(8),
                    1 => m[at] = 0xff,
                    2 => m[at] = 0x7f,
                    3 => m[at] = rng.next() as u8,
                    4 => {
                        m.insert(at, rng.next() as u8);
                    }
                    _ => {
                        m.remove(at);
                    }
                }
            }
            total += 1;
            if probe(kind, key, v.version, &m, &format!("seed {} {} round {round}", seed(), v.name)) {
                decoded += 1;
            }
        }
    }
    // Mutations must exercise both paths, or the test proves little.
    assert!(decoded > 0 && decoded < total, "{decoded} of {total} mutated vectors decoded");
}

#[test]
fn random_bytes_never_panic_any_decoder() {
    let mut rng = Rng(seed() ^ 2);
    for key in ApiKey::ALL {
        for version in key.versions().iter() {
            for _ in 0..40 {
                let len = rng.below(256);
                let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let ctx = format!("seed {}", seed());
                probe(Kind::Request, *key, version, &input, &ctx);
                probe(Kind::Response, *key, version, &input, &ctx);
                let _ = decode_request(Bytes::from(input));
            }
        }
    }
}

#[test]
fn random_streams_never_panic_the_frame_decoder() {
    let mut rng = Rng(seed() ^ 3);
    for _ in 0..2000 {
        let decoder = FrameDecoder::new(1 + rng.below(4096));
        let len = rng.below(512);
        let mut stream = BytesMut::new();
        let mut fed = 0;
        while fed < len {
            let chunk = 1 + rng.below(64);
            for _ in 0..chunk.min(len - fed) {
                stream.extend_from_slice(&[rng.next() as u8]);
            }
            fed += chunk;
            let (r, peak) = measure(|| decoder.decode(&mut stream));
            assert!(peak <= allocation_bound(stream.len()));
            match r {
                Ok(Some(frame)) => {
                    let _ = decode_request(frame);
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

#[test]
fn mutated_record_buffers_never_panic_or_overallocate() {
    use sansa::protocol::records::{decode_batches, DecodeOptions};
    use sansa_conformance::read_records_vectors;

    const CAP: usize = 1 << 20;
    let mut rng = Rng(seed() ^ 4);
    let vectors = read_records_vectors(&vectors_dir().join("records.tsv")).expect("records.tsv");
    let mut outcomes = [0usize; 2];
    for v in &vectors {
        for round in 0..200 {
            let mut m = v.bytes.clone();
            if round % 4 == 0 {
                m.truncate(rng.below(m.len()));
            } else {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(m.len());
                    m[at] = match rng.below(3) {
                        0 => m[at] ^ (1 << rng.below(8)),
                        1 => 0xff,
                        _ => rng.next() as u8,
                    };
                }
            }
            for verify_crc in [true, false] {
                let options = DecodeOptions::new().verify_crc(verify_crc).max_decompressed_size(CAP);
                let input = Bytes::from(m.clone());
                let (ok, peak) = measure(|| {
                    let mut all_ok = true;
                    for batch in decode_batches(input, &options) {
                        match batch {
                            Ok(b) => {
                                for r in b.records() {
                                    let _ = (r.key.as_ref().map(|k| k.len()), r.value.as_ref().map(|v| v.len()));
                                }
                            }
                            Err(_) => {
                                all_ok = false;
                                break;
                            }
                        }
                    }
                    all_ok
                });
                outcomes[usize::from(ok)] += 1;
                assert!(
                    peak <= allocation_bound(m.len()) + 4 * CAP,
                    "seed {} {} round {round}: {} input bytes allocated {peak}",
                    seed(),
                    v.name,
                    m.len()
                );
            }
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "mutations decoded {outcomes:?} (err, ok)");
}
