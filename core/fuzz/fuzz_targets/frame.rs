//! `FrameDecoder` fed the input in chunks. Input: `[chunk seed][max-size selector][stream ...]`.
//! Chunk sizes come from a small PRNG seeded by the first byte (seed 0: one chunk); the second
//! byte picks the maximum frame size (0: the default, otherwise `16 * b`).
//!
//! Invariants: no panic; every frame is exactly as long as its size prefix; the frames (with
//! their prefixes) followed by the unconsumed rest reassemble to the bytes fed; `Ok(None)`
//! leaves the buffer untouched and only happens while a frame is incomplete; an error is raised
//! only for a negative or oversized prefix; chunking never changes the outcome.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sansa::protocol::{FrameDecoder, FrameError};

struct Outcome {
    frames: Vec<Bytes>,
    error: Option<FrameError>,
    rest: BytesMut,
    fed: usize,
}

fn run(decoder: &FrameDecoder, stream: &[u8], mut next_chunk: impl FnMut() -> usize) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    // Invariant: `buf` holds exactly `stream[consumed..fed]`.
    let mut consumed = 0;
    while fed < stream.len() {
        let n = next_chunk().clamp(1, stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            let len_before = buf.len();
            let prefix = stream.get(consumed..consumed + 4).filter(|_| len_before >= 4);
            let size = prefix.map(|p| i32::from_be_bytes([p[0], p[1], p[2], p[3]]));
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => {
                    let size = size.expect("frame without a full prefix");
                    assert!(size >= 0 && size as usize == f.len(), "frame length {} != prefix {size}", f.len());
                    assert!(f.len() <= decoder.max_frame_size(), "frame over the maximum");
                    assert_eq!(&stream[consumed + 4..consumed + 4 + f.len()], &f[..], "frame bytes differ");
                    consumed += 4 + f.len();
                    assert_eq!(buf.len(), fed - consumed, "rest has the wrong length");
                    frames.push(f);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), len_before, "Ok(None) consumed bytes");
                    if let Some(size) = size {
                        assert!(size >= 0, "negative size not reported");
                        assert!(size as usize <= decoder.max_frame_size(), "oversized frame not reported");
                        assert!(buf.len() < 4 + size as usize, "complete frame not returned");
                    }
                    break;
                }
                Err(e) => {
                    assert_eq!(buf.len(), len_before, "error consumed bytes");
                    let size = size.expect("error before a full prefix");
                    let prefix = prefix.unwrap();
                    match e {
                        FrameError::NegativeSize(s) => assert!(s == size && s < 0),
                        FrameError::TooLarge { size: s, max } => {
                            assert!(size >= 0 && s == size as usize && s > max && max == decoder.max_frame_size())
                        }
                        FrameError::HttpResponse => assert_eq!(prefix, b"HTTP"),
                        FrameError::TlsRecord { content_type } => assert_eq!(content_type, prefix[0]),
                        ref other => panic!("unexpected error {other:?}"),
                    }
                    if !matches!(e, FrameError::NegativeSize(_)) {
                        assert!(size as usize > decoder.max_frame_size(), "foreign protocol reported for an acceptable size");
                    }
                    return Outcome { frames, error: Some(e), rest: buf, fed };
                }
            }
        }
    }
    Outcome { frames, error: None, rest: buf, fed }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let decoder = if data[1] == 0 { FrameDecoder::default() } else { FrameDecoder::new(16 * data[1] as usize) };
    let stream = &data[2..];

    let mut state = data[0] as u32;
    let chunked = run(&decoder, stream, || {
        if state == 0 {
            return usize::MAX;
        }
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + (state % (1 + data[0] as u32 * 4)) as usize
    });

    // Reassembly: prefixes + frames + unconsumed rest == everything fed.
    let mut re = BytesMut::new();
    for f in &chunked.frames {
        re.put_i32(f.len() as i32);
        re.extend_from_slice(f);
    }
    re.extend_from_slice(&chunked.rest);
    assert_eq!(&re[..], &stream[..chunked.fed], "frames do not reassemble to the input");
    if chunked.error.is_none() {
        assert_eq!(chunked.fed, stream.len());
    }

    // Chunking must not matter: compare with the whole stream in one piece.
    let whole = run(&decoder, stream, || usize::MAX);
    assert_eq!(chunked.frames, whole.frames, "chunking changed the frames");
    assert_eq!(chunked.error, whole.error, "chunking changed the error");
});
