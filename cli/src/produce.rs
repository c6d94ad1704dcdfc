//! `sansa produce`: records from stdin, one per line, sent as the lines arrive. Outcomes are
//! tallied by delivery callbacks (two counters and a few distinct errors), so memory stays
//! flat however long the input is.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sansa::producer::{ProduceError, ProducerRecord};
use sansa::protocol::records::Header;
use sansa::protocol::TopicName;
use sansa_tokio::KafkaClient;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::props::{self, Props};
use crate::Failure;

/// Distinct errors kept for the summary; the rest are only counted.
const MAX_DISTINCT_ERRORS: usize = 5;

#[derive(clap::Args, Debug)]
pub(crate) struct ProduceArgs {
    /// Bootstrap servers, `host:port[,host:port...]`; not needed when --command-config names
    /// bootstrap.servers.
    #[arg(short = 'b', long = "bootstrap-server", env = "KAFKA_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// Java client properties file (security.protocol, sasl.jaas.config, ssl.truststore.*, ...);
    /// -b and -X win over it.
    #[arg(long, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
    /// Topic to produce to.
    #[arg(short = 't', long)]
    topic: String,
    /// Each line is KEY SEP VALUE, split at the first SEP; a line without SEP fails alone.
    #[arg(short = 'k', long = "key-separator", value_name = "SEP", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// A header for every record, `key=value` (repeatable; order kept, keys may repeat).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Send every record to this partition instead of letting the partitioner choose.
    #[arg(short = 'p', long, value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// A Java producer property, `name=value` (repeatable), e.g. -X acks=1 -X linger.ms=20.
    #[arg(short = 'X', long = "property", value_name = "NAME=VALUE", value_parser = parse_property)]
    properties: Vec<(String, String)>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    props::parse_setting(s).map_err(|e| e.to_string())
}

/// The client configuration: `bootstrap.servers` from `-b`, then `-X` settings, later ones
/// winning. A refused property is a usage error naming it.
pub(crate) fn config(
    bootstrap: Option<&str>,
    client_id: &str,
    settings: &[(String, String)],
) -> Result<sansa::Config, Failure> {
    let mut all = Props::new();
    all.insert("client.id".into(), client_id.into());
    if let Some(b) = bootstrap {
        all.insert("bootstrap.servers".into(), b.into());
    }
    all.extend(settings.iter().cloned());
    props::client_config(&all)
}

/// Why one line did not become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    /// `-k SEP` was given and the line does not hold SEP.
    NoKeySeparator,
}

/// What the record fields come from, fixed for the whole run.
#[derive(Debug, Clone)]
pub(crate) struct RecordShape {
    pub(crate) topic: TopicName,
    pub(crate) key_separator: Option<Vec<u8>>,
    pub(crate) headers: Vec<Header>,
    pub(crate) partition: Option<i32>,
}

/// Drops the line end: `\n`, and a `\r` before it (as Java's readLine does for the console
/// producer).
pub(crate) fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Position of the first `sep` in `line`.
fn find(line: &[u8], sep: &[u8]) -> Option<usize> {
    if sep.is_empty() || sep.len() > line.len() {
        return None;
    }
    line.windows(sep.len()).position(|w| w == sep)
}

impl RecordShape {
    /// The record for one line (its end already stripped), sharing the line's bytes.
    pub(crate) fn record(&self, line: Bytes) -> Result<ProducerRecord, LineError> {
        let (key, value) = match &self.key_separator {
            None => (None, line),
            Some(sep) => {
                let at = find(&line, sep).ok_or(LineError::NoKeySeparator)?;
                (Some(line.slice(..at)), line.slice(at + sep.len()..))
            }
        };
        Ok(ProducerRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            key,
            value: Some(value),
            headers: self.headers.clone(),
            timestamp: None,
        })
    }
}

/// Outcomes so far: counts, and the first few distinct errors with how often each came.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    errors: Vec<SeenError>,
}

#[derive(Debug)]
struct SeenError {
    /// What makes two errors the same.
    kind: String,
    /// The first one's message.
    first: String,
    count: u64,
}

impl Tally {
    pub(crate) fn delivered(&mut self) {
        self.delivered += 1;
    }

    /// Counts a failure of `kind`; `message` is built only for a kind not seen yet.
    pub(crate) fn failed(&mut self, kind: &str, message: impl FnOnce() -> String) {
        self.failed_many(kind, 1, message);
    }

    /// [`Tally::failed`] for `n` records at once.
    pub(crate) fn failed_many(&mut self, kind: &str, n: u64, message: impl FnOnce() -> String) {
        self.failed += n;
        if let Some(e) = self.errors.iter_mut().find(|e| e.kind == kind) {
            e.count += n;
        } else if self.errors.len() < MAX_DISTINCT_ERRORS {
            self.errors.push(SeenError { kind: kind.to_string(), first: message(), count: n });
        }
    }

    pub(crate) fn produce_error(&mut self, e: &ProduceError) {
        let text = e.to_string();
        self.failed(&text, || text.clone());
    }

    /// The lines printed at the end: `N records produced to TOPIC, F failed`, then the
    /// distinct errors.
    pub(crate) fn summary(&self, topic: &str) -> String {
        let mut out = format!("{} records produced to {topic}, {} failed\n", self.delivered, self.failed);
        for e in &self.errors {
            let _ = writeln!(out, "  {} x {}", e.count, e.first);
        }
        let shown: u64 = self.errors.iter().map(|e| e.count).sum();
        if self.failed > shown {
            let _ = writeln!(out, "  {} x other errors", self.failed - shown);
        }
        out
    }
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) async fn run(args: ProduceArgs) -> Result<(), Failure> {
    let mut settings = props::command_config(args.command_config.as_deref())?;
    settings.extend(args.properties.iter().cloned());
    let config = config(args.bootstrap.as_deref(), "sansa-cli", &settings)?;
    let shape = RecordShape {
        topic: TopicName::from(args.topic.as_str()),
        key_separator: args.key_separator.map(String::into_bytes),
        headers: args.headers.into_iter().map(|(k, v)| Header::new(k.into_bytes(), Some(Bytes::from(v)))).collect(),
        partition: args.partition,
    };
    let client = KafkaClient::connect(config).map_err(|e| Failure::Usage(e.to_string()))?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let (mut lines, mut read_error) = (0u64, None);
    loop {
        // A fresh buffer per line: the record keeps it, without a copy, until delivered.
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
        lines += 1;
        let end = strip_line_end(&line).len();
        line.truncate(end);
        let record = match shape.record(Bytes::from(line)) {
            Ok(r) => r,
            Err(LineError::NoKeySeparator) => {
                let sep = shape.key_separator.as_deref().unwrap_or_default();
                lock(&tally).failed("no key separator", || {
                    format!("line {lines} has no key separator {:?} (first such line)", String::from_utf8_lossy(sep))
                });
                continue;
            }
        };
        let t = Arc::clone(&tally);
        let sent = client
            .send_with_callback(record, move |result| match result {
                Ok(_) => lock(&t).delivered(),
                Err(e) => lock(&t).produce_error(&e),
            })
            .await;
        if let Err(e) = sent {
            lock(&tally).produce_error(&e);
        }
    }
    client.flush().await;
    client.close().await;
    let mut tally = lock(&tally);
    // Every line is accounted for once the client closed; anything missing failed unseen.
    let missing = lines.saturating_sub(tally.delivered + tally.failed);
    if missing > 0 {
        tally.failed_many("no outcome", missing, || "no outcome reported before the client closed".into());
    }
    eprint!("{}", tally.summary(&args.topic));
    if let Some(e) = read_error {
        return Err(Failure::Failed(format!("reading stdin failed after {lines} lines: {e}")));
    }
    if tally.failed > 0 {
        return Err(Failure::Failed(format!("{} of {lines} records failed", tally.failed)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sep: Option<&str>, headers: &[(&str, &str)], partition: Option<i32>) -> RecordShape {
        RecordShape {
            topic: TopicName::from("t"),
            key_separator: sep.map(|s| s.as_bytes().to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| Header::new(k.as_bytes().to_vec(), Some(Bytes::from(v.to_string()))))
                .collect(),
            partition,
        }
    }

    fn record(s: &RecordShape, line: &str) -> Result<ProducerRecord, LineError> {
        s.record(Bytes::from(strip_line_end(line.as_bytes()).to_vec()))
    }

    #[test]
    fn line_ends_are_dropped() {
        assert_eq!(strip_line_end(b"a\n"), b"a");
        assert_eq!(strip_line_end(b"a\r\n"), b"a");
        assert_eq!(strip_line_end(b"a"), b"a");
        assert_eq!(strip_line_end(b"\n"), b"");
        assert_eq!(strip_line_end(b"a\r"), b"a");
        assert_eq!(strip_line_end(b"a\n\n"), b"a\n");
    }

    #[test]
    fn without_separator_the_line_is_the_value() {
        let r = record(&shape(None, &[], None), "k:v\n").unwrap();
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"k:v"[..]));
        assert_eq!(r.partition, None);
        assert!(r.headers.is_empty());
        // An empty line is an empty value, as with kafka-console-producer.
        assert_eq!(record(&shape(None, &[], None), "\n").unwrap().value.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn the_key_ends_at_the_first_separator() {
        let s = shape(Some("::"), &[], Some(2));
        let r = record(&s, "user-1::a::b\n").unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"user-1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"a::b"[..]));
        assert_eq!(r.partition, Some(2));
        let r = record(&s, "::\n").unwrap();
        assert_eq!((r.key.as_deref(), r.value.as_deref()), (Some(&b""[..]), Some(&b""[..])));
        assert_eq!(record(&s, "no separator here:\n"), Err(LineError::NoKeySeparator));
        assert_eq!(record(&s, ":\n"), Err(LineError::NoKeySeparator));
        let tab = shape(Some("\t"), &[], None);
        let r = record(&tab, "k\tv\tw\r\n").unwrap();
        assert_eq!((r.key.as_deref(), r.value.as_deref()), (Some(&b"k"[..]), Some(&b"v\tw"[..])));
    }

    #[test]
    fn headers_keep_their_order_and_repeats() {
        let s = shape(None, &[("a", "1"), ("b", ""), ("a", "2")], None);
        let r = record(&s, "v").unwrap();
        let got: Vec<(&[u8], Option<&[u8]>)> = r.headers.iter().map(|h| (&h.key[..], h.value.as_deref())).collect();
        assert_eq!(got, vec![(&b"a"[..], Some(&b"1"[..])), (&b"b"[..], Some(&b""[..])), (&b"a"[..], Some(&b"2"[..]))]);
    }

    #[test]
    fn header_and_property_flags_parse() {
        assert_eq!(parse_header("k=v=w"), Ok(("k".into(), "v=w".into())));
        assert_eq!(parse_header("k="), Ok(("k".into(), String::new())));
        assert!(parse_header("=v").is_err());
        assert!(parse_header("k").is_err());
        assert_eq!(parse_property("acks=1"), Ok(("acks".into(), "1".into())));
        assert!(parse_property("acks").is_err());
    }

    #[test]
    fn bad_properties_are_usage_errors_naming_the_property() {
        let Err(Failure::Usage(msg)) = config(Some("127.0.0.1:9092"), "c", &[("linger.ms".into(), "soon".into())])
        else {
            panic!("linger.ms=soon accepted");
        };
        assert!(msg.contains("linger.ms"), "{msg}");
        let Err(Failure::Usage(msg)) = config(Some("nohost"), "c", &[]) else { panic!("bad address accepted") };
        assert!(msg.contains("nohost"), "{msg}");
        // -X wins over -b, and over the default client id.
        let c =
            config(Some("a:1"), "c", &[("bootstrap.servers".into(), "b:2".into()), ("client.id".into(), "me".into())])
                .unwrap();
        assert_eq!(c.bootstrap_servers, vec![sansa::BrokerAddress::new("b", 2)]);
        assert_eq!(c.client_id, "me");
    }

    #[test]
    fn the_tally_keeps_a_few_distinct_errors() {
        let mut t = Tally::default();
        t.delivered();
        t.failed("no key separator", || "line 2 has no key separator".into());
        t.failed("no key separator", || unreachable!("built once"));
        for i in 0..10 {
            t.failed(&format!("e{i}"), || format!("error {i}"));
        }
        assert_eq!((t.delivered, t.failed), (1, 12));
        assert_eq!(
            t.summary("t"),
            "1 records produced to t, 12 failed\n  2 x line 2 has no key separator\n  1 x error 0\n  1 x error 1\n  \
             1 x error 2\n  1 x error 3\n  6 x other errors\n"
        );
        assert_eq!(Tally::default().summary("x"), "0 records produced to x, 0 failed\n");
    }
}
