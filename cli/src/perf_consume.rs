//! `sansa perf consume`: Kafka's kafka-consumer-perf-test (`ConsumerPerformance`) for sansa,
//! with its flags and its consumer settings, so conformance/bench/compare measures sansa as it
//! measures Kafka's own tool, librdkafka and franz-go.
//!
//! - Settings: as ConsumerPerformance hands them to its consumer: the file, then
//!   `--command-property`, then `bootstrap.servers`, `group.id`, `max.partition.fetch.bytes`
//!   (`--fetch-size`) and `auto.offset.reset` (earliest unless `--from-latest`) from the flags;
//!   `check.crcs=false` and `client.id=perf-consumer-client` unless given.
//! - Partitions: every partition of the topic, assigned (no rebalance inside the measured
//!   time), each starting at the group's committed offset, else where `auto.offset.reset` says.
//! - Measured: records and key + value bytes, from just before the assignment to the poll that
//!   brought the last wanted record; the run stops there, or once no record came for
//!   `--timeout` ms. Positions are committed (as Java's auto-commit does on close) outside
//!   the measured time.
//! - Output: `N records consumed, X records/sec (Y MB/sec) in S s`, then `cpu:` from
//!   /proc/self/stat.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sansa::consumer::{ConsumeError, TopicPartition};
use sansa::driver::Handle;
use sansa::protocol::TopicName;

use crate::perf::{clock_ticks, cpu_seconds, Runtime};
use crate::props::{self, Props};
use crate::Failure;

/// How long one poll waits, as ConsumerPerformance's `poll(100 ms)`.
const POLL_WAIT: Duration = Duration::from_millis(100);

#[derive(clap::Args, Debug)]
pub(crate) struct PerfConsumeArgs {
    /// Bootstrap servers.
    #[arg(long = "bootstrap-server", value_name = "HOST:PORT,...")]
    bootstrap_server: String,
    /// Topic to consume (every partition).
    #[arg(long)]
    topic: String,
    /// Records to consume.
    #[arg(long = "num-records", alias = "messages", value_parser = clap::value_parser!(u64).range(1..))]
    num_records: u64,
    /// The consumer group whose committed offsets it starts at and commits
    /// (default: perf-consumer-NNNNN, a new one).
    #[arg(long)]
    group: Option<String>,
    /// A Java properties file of consumer settings.
    #[arg(long = "command-config", alias = "consumer.config", value_name = "FILE")]
    command_config: Option<PathBuf>,
    /// Consumer properties, `name=value`, several after one flag (win over the file).
    #[arg(long = "command-property", value_name = "NAME=VALUE", num_args = 1.., value_parser = parse_word)]
    command_property: Vec<(String, String)>,
    /// Stop when no record came for this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout: u64,
    /// Most bytes per partition in one fetch (`max.partition.fetch.bytes`).
    #[arg(long = "fetch-size", default_value_t = 1024 * 1024)]
    fetch_size: u32,
    /// Where no offset is committed, start at the end instead of the beginning.
    #[arg(long = "from-latest")]
    from_latest: bool,
    /// Which sansa driver runs the consumer (sansa's own flag, not Kafka's).
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
    /// Milliseconds to wait after each poll that brought records: an application slower than
    /// the fetcher, to show the prefetch bound (`fetch.buffer.memory`) holding (sansa's own).
    #[arg(long = "slow-ms", default_value_t = 0)]
    slow_ms: u64,
}

fn parse_word(s: &str) -> Result<(String, String), String> {
    props::parse_word(s).map_err(|e| e.to_string())
}

/// The properties ConsumerPerformance would hand its consumer (see the module docs).
fn properties(args: &PerfConsumeArgs, file: Option<(&str, &str)>, group: &str) -> Result<Props, Failure> {
    let mut all = Props::new();
    if let Some((path, text)) = file {
        let pairs = props::parse_properties(text).map_err(|e| Failure::Usage(format!("{path}: {e}")))?;
        all.extend(pairs);
    }
    all.extend(args.command_property.iter().cloned());
    all.insert("bootstrap.servers".into(), args.bootstrap_server.clone());
    all.insert("group.id".into(), group.into());
    all.insert("max.partition.fetch.bytes".into(), args.fetch_size.to_string());
    all.insert("auto.offset.reset".into(), if args.from_latest { "latest" } else { "earliest" }.into());
    // Java forces check.crcs=false; here it is a default, so a run can turn checks on.
    all.entry("check.crcs".into()).or_insert_with(|| "false".into());
    all.entry("client.id".into()).or_insert_with(|| "perf-consumer-client".into());
    Ok(all)
}

/// A new group name as ConsumerPerformance makes one: `perf-consumer-` and a number below
/// 100000 (from the clock here).
fn fresh_group() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("perf-consumer-{}", (nanos ^ std::process::id()) % 100_000)
}

/// What a run consumed.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Totals {
    fn line(&self) -> String {
        let s = self.elapsed.as_secs_f64().max(1e-3);
        format!(
            "{} records consumed, {:.1} records/sec ({:.2} MB/sec) in {:.3} s",
            self.records,
            self.records as f64 / s,
            self.bytes as f64 / s / (1024.0 * 1024.0),
            s
        )
    }
}

/// Runs `perf consume` on a runtime of its own.
pub(crate) fn run(args: PerfConsumeArgs) -> Result<(), Failure> {
    let ticks = clock_ticks();
    let file = match &args.command_config {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?,
        )),
        None => None,
    };
    let group = args.group.clone().unwrap_or_else(fresh_group);
    let all = properties(&args, file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), &group)?;
    let config = props::client_config(&all)?;
    let totals = match args.runtime {
        Runtime::Tokio => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Failed(format!("could not start the runtime: {e}")))?;
            let totals = runtime.block_on(async {
                let client = sansa_tokio::KafkaClient::connect(config).map_err(|e| Failure::Usage(e.to_string()))?;
                let totals = consume(&args, &client).await;
                client.close().await;
                totals
            })?;
            drop(runtime);
            totals
        }
        Runtime::Smol => crate::perf::on_smol(config, async |client| consume(&args, client).await)??,
        Runtime::Blocking => {
            let client = sansa_blocking::KafkaClient::connect(config).map_err(|e| Failure::Usage(e.to_string()))?;
            // The blocking handle's methods block: the same loop, polled to completion here.
            let totals = smol::block_on(consume(&args, &client));
            client.close();
            totals?
        }
    };
    println!("{}", totals.line());
    if let Some((user, system)) = cpu_seconds(ticks) {
        println!(
            "cpu: {user:.2} s user, {system:.2} s system, {:.2} s per million records",
            (user + system) * 1e6 / totals.records.max(1) as f64
        );
    }
    if totals.records < args.num_records {
        return Err(Failure::Failed(format!(
            "{} of {} records consumed: none came for {} ms (--timeout)",
            totals.records, args.num_records, args.timeout
        )));
    }
    Ok(())
}

/// The consuming loop on any driver's handle.
async fn consume(args: &PerfConsumeArgs, client: &Handle) -> Result<Totals, Failure> {
    let blocking = args.runtime == Runtime::Blocking;
    let failed = |e: &dyn std::fmt::Display| Failure::Failed(e.to_string());
    let topic = TopicName::from(args.topic.as_str());
    let md = if blocking {
        client.metadata_blocking(Some(vec![topic.clone()]))
    } else {
        client.metadata(Some(vec![topic.clone()])).await
    }
    .map_err(|e| failed(&e))?;
    let t = md.topic(&args.topic).ok_or_else(|| failed(&format!("no metadata for topic {}", args.topic)))?;
    if !t.error.is_ok() {
        return Err(failed(&format!("topic {}: {}", args.topic, t.error.name())));
    }
    let partitions: Vec<TopicPartition> =
        t.partitions.iter().map(|p| TopicPartition::new(topic.clone(), p.index)).collect();
    let mut totals = Totals::default();
    let start = Instant::now();
    if blocking { client.assign_blocking(partitions) } else { client.assign(partitions).await }
        .map_err(|e| failed(&e))?;
    let timeout = Duration::from_millis(args.timeout);
    let mut last_record = Instant::now();
    while totals.records < args.num_records {
        let left = usize::try_from(args.num_records - totals.records).unwrap_or(usize::MAX);
        let polled: Result<_, ConsumeError> =
            if blocking { client.poll_blocking(left, POLL_WAIT) } else { client.poll(left, POLL_WAIT).await };
        let records = polled.map_err(|e| failed(&e))?;
        let now = Instant::now();
        if records.is_empty() {
            if now.duration_since(last_record) > timeout {
                eprintln!(
                    "WARNING: Exiting before consuming the expected number of records: timeout ({} ms) exceeded.",
                    args.timeout
                );
                break;
            }
            continue;
        }
        last_record = now;
        if args.slow_ms > 0 {
            smol::Timer::after(Duration::from_millis(args.slow_ms)).await;
        }
        totals.records += records.len() as u64;
        for r in &records {
            let key = r.key.as_ref().map_or(0, |k| k.len());
            let value = r.value.as_ref().map_or(0, |v| v.len());
            totals.bytes += (key + value) as u64;
        }
    }
    totals.elapsed = start.elapsed();
    // As Java's auto-commit on close; outside the measured time.
    let committed = if blocking { client.commit_blocking(None) } else { client.commit(None).await };
    if let Err(e) = committed {
        eprintln!("warning: commit failed: {e}");
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PerfConsumeArgs,
    }

    fn args(extra: &[&str]) -> PerfConsumeArgs {
        let mut argv = vec!["x", "--bootstrap-server", "a:1", "--topic", "t"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn properties_follow_consumer_performance() {
        let a = args(&[
            "--messages",
            "10",
            "--command-property",
            "auto.offset.reset=none",
            "fetch.max.wait.ms=100",
            "--fetch-size",
            "4096",
        ]);
        let p = properties(&a, Some(("f", "client.id=mine\ncheck.crcs=true\ngroup.id=other")), "g1").unwrap();
        let get = |k: &str| p.get(k).map(String::as_str);
        assert_eq!(get("bootstrap.servers"), Some("a:1"));
        assert_eq!(get("group.id"), Some("g1"), "--group wins, as in Java");
        assert_eq!(get("auto.offset.reset"), Some("earliest"), "the flags win over properties, as in Java");
        assert_eq!(get("max.partition.fetch.bytes"), Some("4096"));
        assert_eq!(get("fetch.max.wait.ms"), Some("100"));
        assert_eq!(get("check.crcs"), Some("true"));
        assert_eq!(get("client.id"), Some("mine"));
        let p = properties(&args(&["--num-records", "10", "--from-latest"]), None, "g").unwrap();
        assert_eq!(p.get("auto.offset.reset").map(String::as_str), Some("latest"));
        assert_eq!(p.get("check.crcs").map(String::as_str), Some("false"));
        assert_eq!(p.get("client.id").map(String::as_str), Some("perf-consumer-client"));
        assert_eq!(args(&["--num-records", "7"]).num_records, 7, "--messages and --num-records both work");
        assert!(
            Cli::try_parse_from(["x", "--bootstrap-server", "a:1", "--topic", "t"]).is_err(),
            "a count is required"
        );
    }

    #[test]
    fn groups_are_fresh_and_named_like_java() {
        let g = fresh_group();
        let n: u32 = g.strip_prefix("perf-consumer-").unwrap().parse().unwrap();
        assert!(n < 100_000);
    }

    #[test]
    fn the_final_line() {
        let t = Totals { records: 3_000_000, bytes: 300_000_000, elapsed: Duration::from_millis(2500) };
        assert_eq!(t.line(), "3000000 records consumed, 1200000.0 records/sec (114.44 MB/sec) in 2.500 s");
    }
}
