//! Conformance material for sansa: golden vectors written by Apache Kafka's Java client
//! (`conformance/vectors/`), and helpers to read them.

pub mod differential;
pub mod fake_cluster;
pub mod fake_server;
pub mod fake_tls;
pub mod live;
pub mod live_consumer;
pub mod live_producer;
pub mod live_security;
pub mod loopback;
pub mod records_json;
pub mod sim;

use std::path::{Path, PathBuf};

/// The directory holding the committed golden vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Decodes lowercase or uppercase hex. Panics on malformed input: vectors are trusted test data.
pub fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

/// Encodes bytes as lowercase hex.
pub fn hex_encode(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// One line of `messages.tsv`.
#[derive(Debug, Clone)]
pub struct MessageVector {
    /// API key.
    pub api_key: i16,
    /// `request`, `response`, `request_header` or `response_header`.
    pub kind: String,
    /// Message (or header) version.
    pub version: i16,
    /// Vector name, `<Spec>_v<N>_<variant>`.
    pub name: String,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
}

/// Reads `messages.tsv` from `dir`.
pub fn read_message_vectors(dir: &Path) -> std::io::Result<Vec<MessageVector>> {
    let text = std::fs::read_to_string(dir.join("messages.tsv"))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 5, "messages.tsv line: {l}");
            MessageVector {
                api_key: c[0].parse().expect("api key"),
                kind: c[1].to_string(),
                version: c[2].parse().expect("version"),
                name: c[3].to_string(),
                bytes: hex_decode(c[4]),
            }
        })
        .collect())
}

/// One line of `records.tsv` / `batches.tsv`: a records buffer and the JSON description of
/// what a reader finds in it.
#[derive(Debug, Clone)]
pub struct RecordsVector {
    /// Vector name.
    pub name: String,
    /// The records buffer.
    pub bytes: Vec<u8>,
    /// Description, as JSON text.
    pub json: String,
}

/// Reads a `records.tsv`-format file.
pub fn read_records_vectors(path: &Path) -> std::io::Result<Vec<RecordsVector>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.splitn(3, '\t').collect();
            assert_eq!(c.len(), 3, "records line: {l}");
            RecordsVector { name: c[0].to_string(), bytes: hex_decode(c[1]), json: c[2].to_string() }
        })
        .collect())
}

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
