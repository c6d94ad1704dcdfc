//! The consume mode: `rdkafka-perf consume ...` reads a topic with librdkafka like Kafka's
//! ConsumerPerformance (kafka-consumer-perf-test) reads it, for `compare consume`.
//!
//! Same flags (--bootstrap-server, --topic, --num-records/--messages, --group,
//! --command-config/--consumer.config, --command-property, --timeout, --fetch-size,
//! --from-latest) and the same settings (group.id, max.partition.fetch.bytes,
//! auto.offset.reset, check.crcs=false, client.id; librdkafka takes the Java names, but for
//! fetch.max.wait.ms, given to it as fetch.wait.max.ms). Every
//! partition of the topic is assigned (`BaseConsumer::assign`, as sansa does) at the group's
//! stored offset, so a fresh group starts where auto.offset.reset says; one message per
//! `poll`, as fast as it returns them. The time runs from just before the assignment to the
//! poll that brought the last wanted record; positions are committed after it.
//! Output: `N records consumed, X records/sec (Y MB/sec) in S s`, then `cpu:` from getrusage.

use std::collections::BTreeMap;
use std::process::exit;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const USAGE: &str = "usage: rdkafka-perf consume --bootstrap-server HOST:PORT,... --topic TOPIC \
--num-records N [--group G] [--command-config FILE] [--command-property K=V ...] [--timeout MS] \
[--fetch-size BYTES] [--from-latest]";

fn die(msg: &str) -> ! {
    eprintln!("rdkafka-perf consume: {msg}\n{USAGE}");
    exit(2)
}

struct Args {
    topic: String,
    num_records: u64,
    timeout: Duration,
    props: BTreeMap<String, String>,
}

fn parse_args(argv: &[String]) -> Args {
    let (mut topic, mut num, mut group, mut bootstrap, mut config_file) = (None, None, None, None, None);
    let (mut timeout_ms, mut fetch_size, mut from_latest, mut cli_props) = (10_000u64, 1_048_576u64, false, Vec::new());
    let mut i = 0;
    let value = |i: usize| -> &String { argv.get(i + 1).unwrap_or_else(|| die(&format!("{} needs a value", argv[i]))) };
    while i < argv.len() {
        match argv[i].as_str() {
            "--topic" => topic = Some(value(i).clone()),
            "--num-records" | "--messages" => {
                num = Some(value(i).parse::<u64>().unwrap_or_else(|_| die("bad --num-records")))
            }
            "--group" => group = Some(value(i).clone()),
            "--bootstrap-server" => bootstrap = Some(value(i).clone()),
            "--command-config" | "--consumer.config" => config_file = Some(value(i).clone()),
            "--timeout" => timeout_ms = value(i).parse().unwrap_or_else(|_| die("bad --timeout")),
            "--fetch-size" => fetch_size = value(i).parse().unwrap_or_else(|_| die("bad --fetch-size")),
            "--from-latest" => {
                from_latest = true;
                i += 1;
                continue;
            }
            "--command-property" => {
                let start = i + 1;
                while i + 1 < argv.len() && !argv[i + 1].starts_with("--") {
                    cli_props.push(argv[i + 1].clone());
                    i += 1;
                }
                if i + 1 == start {
                    die("--command-property needs K=V");
                }
                i += 1;
                continue;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => die(&format!("unknown argument '{other}'")),
        }
        i += 2;
    }
    // Precedence as in ConsumerPerformance: file < --command-property < the flags.
    let mut props = BTreeMap::new();
    if let Some(f) = &config_file {
        crate::read_props_file(f, &mut props);
    }
    for p in &cli_props {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.contains('=') => props.insert(k.to_string(), v.to_string()),
            _ => die(&format!("invalid property: {p}")),
        };
    }
    props.insert("bootstrap.servers".into(), bootstrap.unwrap_or_else(|| die("--bootstrap-server is required")));
    let group = group.unwrap_or_else(|| format!("perf-consumer-{}", std::process::id() % 100_000));
    props.insert("group.id".into(), group);
    props.insert("max.partition.fetch.bytes".into(), fetch_size.to_string());
    props.insert("auto.offset.reset".into(), if from_latest { "latest" } else { "earliest" }.into());
    props.entry("check.crcs".into()).or_insert_with(|| "false".into());
    props.entry("client.id".into()).or_insert_with(|| "perf-consumer-client".into());
    let args = Args {
        topic: topic.unwrap_or_else(|| die("--topic is required")),
        num_records: num.unwrap_or_else(|| die("--num-records is required")),
        timeout: Duration::from_millis(timeout_ms),
        props,
    };
    if args.num_records == 0 {
        die("--num-records must be greater than zero");
    }
    args
}

/// librdkafka's name for a Java consumer property, where it has another (it takes most
/// Java names as they are, max.partition.fetch.bytes included).
fn librdkafka_name(java: &str) -> &str {
    match java {
        "fetch.max.wait.ms" => "fetch.wait.max.ms",
        other => other,
    }
}

pub fn main(argv: &[String]) {
    let args = parse_args(argv);
    let mut config = ClientConfig::new();
    for (k, v) in &args.props {
        config.set(librdkafka_name(k), v);
    }
    let consumer: BaseConsumer = config.create().unwrap_or_else(|e| die(&format!("cannot create the consumer: {e}")));
    let md = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(30))
        .unwrap_or_else(|e| die(&format!("metadata: {e}")));
    let mut assignment = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == args.topic) {
        for p in t.partitions() {
            assignment
                .add_partition_offset(&args.topic, p.id(), Offset::Stored)
                .unwrap_or_else(|e| die(&format!("assignment: {e}")));
        }
    }
    if assignment.count() == 0 {
        die(&format!("topic {} has no partitions", args.topic));
    }
    let start = Instant::now();
    consumer.assign(&assignment).unwrap_or_else(|e| die(&format!("assign: {e}")));
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last = Instant::now();
    while records < args.num_records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.key_len() + m.payload_len()) as u64;
                last = Instant::now();
            }
            Some(Err(e)) => {
                eprintln!("rdkafka-perf: consume error: {e}");
                exit(1);
            }
            None => {
                if last.elapsed() > args.timeout {
                    eprintln!(
                        "WARNING: Exiting before consuming the expected number of records: timeout ({} ms) exceeded.",
                        args.timeout.as_millis()
                    );
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-3);
    if records > 0 {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            eprintln!("rdkafka-perf: commit failed: {e}");
        }
    }
    drop(consumer);
    println!(
        "{records} records consumed, {:.1} records/sec ({:.2} MB/sec) in {elapsed:.3} s",
        records as f64 / elapsed,
        bytes as f64 / elapsed / (1024.0 * 1024.0)
    );
    let (user, system) = crate::cpu_seconds();
    println!(
        "cpu: {user:.2} s user, {system:.2} s system, {:.2} s per million records",
        (user + system) * 1e6 / records.max(1) as f64
    );
    if records < args.num_records {
        exit(1);
    }
}
