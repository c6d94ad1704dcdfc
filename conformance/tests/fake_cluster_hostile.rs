//! The fake cluster never panics on what a client sends: every request the Java client wrote
//! for the golden vectors (each version, with every field set to odd values, defaults, nulls),
//! and truncated or bit-flipped frames, against a cluster with topics, groups and producers.
//! It may answer with errors or close the connection; it must keep serving.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::protocol::frame::encode_request;
use sansa::protocol::{ApiKey, RequestBody};
use sansa_conformance::fake_cluster::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput};
use sansa_conformance::{read_message_vectors, vectors_dir};

/// Request frames (no size prefix) built from the golden request vectors of the APIs the fake
/// cluster advertises.
fn frames(cluster: &FakeCluster) -> Vec<(String, Bytes)> {
    let vectors = read_message_vectors(&vectors_dir()).expect("golden vectors");
    let mut out = Vec::new();
    for v in vectors.iter().filter(|v| v.kind == "request") {
        let Some(api) = ApiKey::from_i16(v.api_key) else { continue };
        let Some((lo, hi)) = cluster.advertised_versions(api) else { continue };
        if !(lo..=hi).contains(&v.version) {
            continue;
        }
        let mut body_bytes = Bytes::from(v.bytes.clone());
        let Ok(body) = RequestBody::decode(api, &mut body_bytes, v.version) else { continue };
        let mut buf = BytesMut::new();
        if encode_request(&mut buf, 1, Some("hostile"), v.version, &body).is_err() {
            continue;
        }
        out.push((v.name.clone(), buf.freeze().slice(4..)));
    }
    out
}

fn cluster() -> FakeCluster {
    let mut c = FakeCluster::new(FakeClusterConfig::default());
    // Names the vectors use, so that handlers go past "unknown topic".
    for name in ["Name-3", "Name-41", "Name-46", "Topic-1", "topic"] {
        c.create_topic(name, 3, 3);
    }
    c
}

/// Feeds `frame` on a fresh connection to each broker, then lets time pass.
fn feed(c: &mut FakeCluster, now: &mut Instant, conn: &mut u64, frame: &Bytes) {
    for broker in c.broker_ids() {
        *conn += 1;
        let id = FakeConnId(*conn);
        if c.handle_connect(*now, broker, id).is_err() {
            continue;
        }
        let _ = c.handle_frame(*now, id, frame.clone());
        *now += Duration::from_millis(7);
        if c.poll_timeout().is_some_and(|t| t <= *now) {
            c.handle_timeout(*now);
        }
        while c.poll_output().is_some() {}
        c.handle_disconnect(id);
    }
}

#[test]
fn every_golden_request_is_answered_or_refused_without_panicking() {
    let mut c = cluster();
    let frames = frames(&c);
    assert!(frames.len() > 300, "{} request frames", frames.len());
    let mut now = Instant::now();
    let mut conn = 0;
    for (name, frame) in &frames {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            feed(&mut c, &mut now, &mut conn, frame);
        }));
        assert!(result.is_ok(), "the fake cluster panicked on {name}");
    }
    // Still serving: a Metadata request gets an answer.
    now += Duration::from_secs(3600);
    c.handle_timeout(now);
    let metadata = frames.iter().find(|(n, _)| n.starts_with("MetadataRequest")).expect("a metadata vector");
    c.handle_connect(now, 1, FakeConnId(u64::MAX)).unwrap();
    c.handle_frame(now, FakeConnId(u64::MAX), metadata.1.clone()).unwrap();
    assert!(matches!(c.poll_output(), Some(FakeOutput::Send { .. })));
}

#[test]
fn truncated_and_mutated_frames_never_panic() {
    let mut c = cluster();
    let frames = frames(&c);
    let mut now = Instant::now();
    let mut conn = 0;
    // A fixed xorshift, so that a failure replays.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, frame) in frames.iter().step_by(3) {
        for round in 0..4 {
            let mut bytes = frame.to_vec();
            if round == 0 {
                bytes.truncate((next() as usize) % bytes.len().max(1));
            } else {
                // Keep the header's API key and version so the body decoder is reached.
                for _ in 0..round * 2 {
                    if bytes.len() > 8 {
                        let i = 8 + (next() as usize) % (bytes.len() - 8);
                        bytes[i] ^= 1 << (next() % 8);
                    }
                }
            }
            let frame = Bytes::from(bytes);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                feed(&mut c, &mut now, &mut conn, &frame);
            }));
            assert!(result.is_ok(), "the fake cluster panicked on a mutation ({round}) of {name}");
        }
    }
}
