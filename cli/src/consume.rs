//! `sansa consume`: records of one topic to stdout, formatted as kcat formats them (`-f`),
//! from where `-o` says, until Ctrl-C, `-c COUNT` records, or (`-e`) the end of the
//! partitions. With `-g GROUP`, it starts at the group's committed offsets and commits what it
//! printed when it stops.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use sansa::consumer::{CommittedOffset, ConsumeError, ConsumerRecord, OffsetSpec, TopicPartition};
use sansa::protocol::records::TimestampType;
use sansa::protocol::TopicName;
use sansa_tokio::KafkaClient;

use crate::props::{self, Props};
use crate::Failure;

/// How long one poll waits for records before the loop looks at its exit conditions again.
const POLL_WAIT: Duration = Duration::from_millis(250);
/// How long the commit on exit may take.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub(crate) struct ConsumeArgs {
    /// Bootstrap servers, `host:port[,host:port...]`; not needed when --command-config names
    /// bootstrap.servers.
    #[arg(short = 'b', long = "bootstrap-server", env = "KAFKA_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// Java client properties file (security.protocol, sasl.jaas.config, ssl.truststore.*, ...);
    /// -b and -X win over it.
    #[arg(long, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
    /// Topic to consume.
    #[arg(short = 't', long)]
    topic: String,
    /// Consumer group: start at its committed offsets and commit what was printed on exit.
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Only this partition (every partition of the topic when absent).
    #[arg(short = 'p', long, value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// Where to start in every partition: beginning, end, stored (the group's committed
    /// offset), OFFSET, -N (N before the end), s@MS (the first record at or after a timestamp).
    /// Default: stored with -g (beginning where nothing is committed), else beginning.
    #[arg(short = 'o', long, value_name = "WHERE", allow_hyphen_values = true, value_parser = parse_start)]
    offset: Option<Start>,
    /// Stop after this many records.
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop at the end of the partitions: the end offsets they had when consuming started.
    #[arg(short = 'e', long = "exit")]
    exit_at_end: bool,
    /// Output per record, with kcat's placeholders: %s value, %k key, %S and %K their sizes
    /// (-1 for null), %t topic, %p partition, %o offset, %T timestamp (ms), %h headers
    /// (k=v,...); escapes \n \t \r \\.
    #[arg(short = 'f', long, default_value = "%s\\n")]
    format: String,
    /// A Java consumer property, `name=value` (repeatable), e.g. -X fetch.max.wait.ms=100.
    #[arg(short = 'X', long = "property", value_name = "NAME=VALUE", value_parser = parse_property)]
    properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    props::parse_setting(s).map_err(|e| e.to_string())
}

// ---- where to start --------------------------------------------------------------------------

/// Where `-o` starts each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Beginning,
    End,
    /// The group's committed offset (`auto.offset.reset` where there is none).
    Stored,
    Offset(i64),
    /// This many records before the end (kcat's `-N`).
    BeforeEnd(i64),
    /// The first record at or after this timestamp, in ms since the epoch (kcat's `s@MS`).
    Timestamp(i64),
}

pub(crate) fn parse_start(s: &str) -> Result<Start, String> {
    let number = |n: &str| n.parse::<i64>().ok().filter(|n| *n >= 0);
    match s {
        "beginning" => Ok(Start::Beginning),
        "end" => Ok(Start::End),
        "stored" => Ok(Start::Stored),
        _ => if let Some(ms) = s.strip_prefix("s@") {
            number(ms).map(Start::Timestamp)
        } else if let Some(n) = s.strip_prefix('-') {
            number(n).map(Start::BeforeEnd)
        } else {
            number(s).map(Start::Offset)
        }
        .ok_or_else(|| format!("{s:?}: expected beginning, end, stored, OFFSET, -N or s@MS")),
    }
}

// ---- output format ---------------------------------------------------------------------------

/// One piece of a `-f` format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    KeySize,
    Value,
    ValueSize,
    Timestamp,
    Headers,
}

/// A parsed `-f` format. Unknown `%x` and `\x` sequences are printed as they stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format(Vec<Piece>);

impl Format {
    pub(crate) fn parse(s: &str) -> Format {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.clone().next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('K') => Piece::KeySize,
                    Some('s') => Piece::Value,
                    Some('S') => Piece::ValueSize,
                    Some('T') => Piece::Timestamp,
                    Some('h') => Piece::Headers,
                    _ => {
                        text.push(b'%');
                        continue;
                    }
                },
                '\\' => {
                    let escaped = match chars.clone().next() {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('r') => b'\r',
                        Some('\\') => b'\\',
                        _ => {
                            text.push(b'\\');
                            continue;
                        }
                    };
                    chars.next();
                    text.push(escaped);
                    continue;
                }
                c => {
                    text.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    continue;
                }
            };
            chars.next();
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Format(pieces)
    }

    /// Appends one record, formatted, to `out`.
    pub(crate) fn write(&self, r: &ConsumerRecord, out: &mut Vec<u8>) {
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Topic => out.extend_from_slice(r.topic.as_str().as_bytes()),
                Piece::Partition => write_int(out, i64::from(r.partition)),
                Piece::Offset => write_int(out, r.offset),
                Piece::Key => out.extend_from_slice(r.key.as_deref().unwrap_or_default()),
                Piece::KeySize => write_int(out, i64::from(r.serialized_key_size())),
                Piece::Value => out.extend_from_slice(r.value.as_deref().unwrap_or_default()),
                Piece::ValueSize => write_int(out, i64::from(r.serialized_value_size())),
                Piece::Timestamp => {
                    let t = if r.timestamp_type == TimestampType::NoTimestamp { -1 } else { r.timestamp };
                    write_int(out, t)
                }
                Piece::Headers => {
                    for (i, h) in r.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(&h.key);
                        if let Some(v) = &h.value {
                            out.push(b'=');
                            out.extend_from_slice(v);
                        }
                    }
                }
            }
        }
    }
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

// ---- the run ---------------------------------------------------------------------------------

/// The client configuration: `bootstrap.servers` from `-b`, `group.id` from `-g`, reading
/// from the earliest offset where no other start is known, then `-X` settings (later ones
/// winning).
fn config(args: &ConsumeArgs) -> Result<sansa::Config, Failure> {
    let mut all = Props::new();
    all.insert("client.id".into(), "sansa-cli".into());
    all.insert("auto.offset.reset".into(), "earliest".into());
    all.extend(props::command_config(args.command_config.as_deref())?);
    if let Some(b) = &args.bootstrap {
        all.insert("bootstrap.servers".into(), b.clone());
    }
    if let Some(g) = &args.group {
        all.insert("group.id".into(), g.clone());
    }
    all.extend(args.properties.iter().cloned());
    props::client_config(&all)
}

/// Joins the consumer to its partitions and returns them: the one place that decides which
/// partitions this consumer reads. Today that is every partition of the topic (or `-p`'s),
/// assigned directly; a group member would subscribe here and return its assignment.
async fn take_partitions(client: &KafkaClient, topic: &str, only: Option<i32>) -> Result<Vec<TopicPartition>, Failure> {
    let name = TopicName::from(topic);
    let md = client.metadata(Some(vec![name.clone()])).await.map_err(|e| Failure::Failed(e.to_string()))?;
    let t = md.topic(topic).ok_or_else(|| Failure::Failed(format!("no metadata for topic {topic}")))?;
    if !t.error.is_ok() {
        return Err(Failure::Failed(format!("topic {topic}: {}", t.error.name())));
    }
    let mut partitions: Vec<TopicPartition> =
        t.partitions.iter().map(|p| TopicPartition::new(name.clone(), p.index)).collect();
    if let Some(p) = only {
        partitions.retain(|tp| tp.partition == p);
        if partitions.is_empty() {
            return Err(Failure::Failed(format!(
                "topic {topic} has no partition {p} ({} partitions)",
                t.partitions.len()
            )));
        }
    }
    partitions.sort();
    client.assign(partitions.clone()).await.map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(partitions)
}

/// Moves every partition to where `-o` says (`Stored` leaves the committed offsets the
/// consumer starts at).
async fn seek_all(client: &KafkaClient, partitions: &[TopicPartition], start: Start) -> Result<(), Failure> {
    let failed = |e: ConsumeError| Failure::Failed(e.to_string());
    let ends = match start {
        Start::BeforeEnd(_) => {
            let mut wanted = Vec::new();
            for tp in partitions {
                wanted.push((tp.clone(), OffsetSpec::Earliest));
            }
            let earliest = client.list_offsets(wanted.clone()).await.map_err(failed)?;
            let latest =
                client.list_offsets(wanted.into_iter().map(|(tp, _)| (tp, OffsetSpec::Latest)).collect()).await;
            Some((earliest, latest.map_err(failed)?))
        }
        _ => None,
    };
    for tp in partitions {
        let done = match start {
            Start::Stored => Ok(()),
            Start::Beginning => client.seek_to(tp.clone(), OffsetSpec::Earliest).await,
            Start::End => client.seek_to(tp.clone(), OffsetSpec::Latest).await,
            Start::Timestamp(ms) => client.seek_to(tp.clone(), OffsetSpec::Timestamp(ms)).await,
            Start::Offset(o) => client.seek(tp.clone(), o).await,
            Start::BeforeEnd(n) => {
                let (earliest, latest) = ends.as_ref().expect("listed above");
                let offset = |m: &BTreeMap<TopicPartition, Option<sansa::consumer::ListedOffset>>| {
                    m.get(tp).copied().flatten().map(|l| l.offset)
                };
                match (offset(earliest), offset(latest)) {
                    (Some(first), Some(end)) => client.seek(tp.clone(), (end - n).max(first)).await,
                    _ => return Err(Failure::Failed(format!("{tp}: no earliest or latest offset"))),
                }
            }
        };
        done.map_err(failed)?;
    }
    Ok(())
}

/// Why the loop stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Count,
    End,
    Interrupted,
    /// stdout was closed (e.g. `| head`).
    OutputClosed,
}

/// What was printed: the count, and per partition the offset after the last record printed.
#[derive(Debug, Default)]
struct Printed {
    count: u64,
    next: BTreeMap<TopicPartition, CommittedOffset>,
}

impl Printed {
    fn offsets(&self) -> Vec<(TopicPartition, CommittedOffset)> {
        self.next.iter().map(|(tp, o)| (tp.clone(), o.clone())).collect()
    }
}

pub(crate) async fn run(args: ConsumeArgs) -> Result<(), Failure> {
    let start = args.offset.unwrap_or(if args.group.is_some() { Start::Stored } else { Start::Beginning });
    if start == Start::Stored && args.group.is_none() {
        return Err(Failure::Usage("-o stored needs a group (-g)".into()));
    }
    let format = Format::parse(&args.format);
    let config = config(&args)?;
    let client = KafkaClient::connect(config).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut printed = Printed::default();
    let outcome = consume(&client, &args, start, &format, &mut printed).await;
    if args.group.is_some() && !printed.next.is_empty() {
        // Bounded: a second Ctrl-C no longer stops the process once the handler is in.
        match tokio::time::timeout(COMMIT_WAIT, client.commit(Some(printed.offsets()))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("error: commit failed: {e}"),
            Err(_) => eprintln!("error: commit not answered within {COMMIT_WAIT:?}"),
        }
    }
    client.close().await;
    let stop = outcome?;
    let why = match stop {
        Stop::Count => "count reached",
        Stop::End => "end of partitions",
        Stop::Interrupted => "interrupted",
        Stop::OutputClosed => "output closed",
    };
    eprintln!("{} records consumed from {} ({why})", printed.count, args.topic);
    Ok(())
}

async fn consume(
    client: &KafkaClient,
    args: &ConsumeArgs,
    start: Start,
    format: &Format,
    printed: &mut Printed,
) -> Result<Stop, Failure> {
    let partitions = take_partitions(client, &args.topic, args.partition).await?;
    seek_all(client, &partitions, start).await?;
    // With -e: the end offset of each partition not yet reached.
    let mut open: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    if args.exit_at_end {
        let wanted = partitions.iter().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect();
        let ends = client.list_offsets(wanted).await.map_err(|e| Failure::Failed(e.to_string()))?;
        open = ends.into_iter().map(|(tp, o)| (tp, o.map_or(0, |o| o.offset))).collect();
    }
    let mut stdout = std::io::stdout().lock();
    let mut out = Vec::with_capacity(64 * 1024);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        if args.exit_at_end {
            close_reached(client, &mut open).await?;
            if open.is_empty() {
                return Ok(Stop::End);
            }
        }
        let left = args.count.map_or(usize::MAX, |c| usize::try_from(c - printed.count).unwrap_or(usize::MAX));
        let records = tokio::select! {
            polled = client.poll(left, POLL_WAIT) => polled.map_err(|e| Failure::Failed(e.to_string()))?,
            _ = &mut interrupt => return Ok(Stop::Interrupted),
        };
        out.clear();
        let mut last: Option<&ConsumerRecord> = None;
        for r in &records {
            format.write(r, &mut out);
            // Records of a partition come in order, so the last of a run is the furthest.
            if last.is_some_and(|l| l.partition != r.partition || l.topic != r.topic) {
                note(printed, &mut open, last.expect("checked"));
            }
            last = Some(r);
        }
        if let Some(l) = last {
            note(printed, &mut open, l);
        }
        if let Err(e) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(Stop::OutputClosed);
            }
            return Err(Failure::Failed(format!("writing stdout failed: {e}")));
        }
        printed.count += records.len() as u64;
        if args.count.is_some_and(|c| printed.count >= c) {
            return Ok(Stop::Count);
        }
    }
}

/// Remembers the offset after `r` for the commit, and closes its partition under -e once it
/// reached the end.
fn note(printed: &mut Printed, open: &mut BTreeMap<TopicPartition, i64>, r: &ConsumerRecord) {
    let tp = TopicPartition { topic: r.topic.clone(), partition: r.partition };
    if open.get(&tp).is_some_and(|end| r.offset + 1 >= *end) {
        open.remove(&tp);
    }
    printed
        .next
        .insert(tp, CommittedOffset { offset: r.offset + 1, leader_epoch: r.leader_epoch, metadata: String::new() });
}

/// Under -e, closes the partitions whose position reached their end offset: empty ones, and
/// those whose last records were control records or compacted away.
async fn close_reached(client: &KafkaClient, open: &mut BTreeMap<TopicPartition, i64>) -> Result<(), Failure> {
    let mut reached = Vec::new();
    for (tp, end) in open.iter() {
        let position = client.position(tp.clone()).await.map_err(|e| Failure::Failed(e.to_string()))?;
        if position.is_some_and(|p| p >= *end) {
            reached.push(tp.clone());
        }
    }
    for tp in reached {
        open.remove(&tp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sansa::protocol::records::Header;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: TopicName::from("orders"),
            partition: 3,
            offset: 42,
            timestamp: 1_700_000_000_123,
            timestamp_type: TimestampType::CreateTime,
            key: Some(Bytes::from_static(b"k1")),
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![
                Header::new(Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
                Header::new(Bytes::from_static(b"b"), None),
            ],
            leader_epoch: Some(0),
        }
    }

    fn render(format: &str, r: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        Format::parse(format).write(r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn kcat_placeholders() {
        let r = record();
        assert_eq!(render("%s\\n", &r), "hello\n");
        assert_eq!(
            render("%t [%p] @%o: %k=%s (%K/%S) %T %h\\t|", &r),
            "orders [3] @42: k1=hello (2/5) 1700000000123 a=1,b\t|"
        );
        let null =
            ConsumerRecord { key: None, value: None, headers: vec![], timestamp_type: TimestampType::NoTimestamp, ..r };
        assert_eq!(render("[%k][%s] %K %S %T [%h]", &null), "[][] -1 -1 -1 []");
    }

    #[test]
    fn unknown_sequences_stay_as_written() {
        let r = record();
        assert_eq!(render("100%% %x \\q \\\\ %", &r), "100%% %x \\q \\ %");
        assert_eq!(render("é%s", &r), "éhello");
        assert_eq!(Format::parse(""), Format(vec![]));
    }

    #[test]
    fn offsets_parse_like_kcat() {
        assert_eq!(parse_start("beginning"), Ok(Start::Beginning));
        assert_eq!(parse_start("end"), Ok(Start::End));
        assert_eq!(parse_start("stored"), Ok(Start::Stored));
        assert_eq!(parse_start("1234"), Ok(Start::Offset(1234)));
        assert_eq!(parse_start("-10"), Ok(Start::BeforeEnd(10)));
        assert_eq!(parse_start("s@1700000000000"), Ok(Start::Timestamp(1_700_000_000_000)));
        for bad in ["", "begin", "--1", "s@", "s@-1", "x1"] {
            assert!(parse_start(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_commit_takes_the_offset_after_the_last_printed_record() {
        let mut printed = Printed::default();
        let tp = TopicPartition::new("orders", 3);
        let mut open = BTreeMap::from([(tp.clone(), 44)]);
        note(&mut printed, &mut open, &record());
        assert_eq!(
            printed.offsets(),
            vec![(tp.clone(), CommittedOffset { offset: 43, leader_epoch: Some(0), metadata: String::new() })]
        );
        assert!(open.contains_key(&tp), "43 < 44: not at the end yet");
        note(&mut printed, &mut open, &ConsumerRecord { offset: 43, ..record() });
        assert!(open.is_empty(), "reached the end offset");
        assert_eq!(printed.offsets()[0].1.offset, 44);
    }
}
