//! `sansa`: probe Kafka brokers, inspect metadata, send any request written as JSON, produce
//! records from stdin, print records of a topic, and measure the producer and the consumer as
//! Kafka's perf-test tools do.

mod consume;
mod demo;
mod perf;
mod perf_consume;
mod produce;
mod props;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sansa::cluster::ClusterMetadata;
use sansa::protocol::kafka_release::KafkaRelease;
use sansa::protocol::{ApiKey, BrokerId, GroupId, RequestBody, TopicName, TransactionalId};
use sansa::{BrokerVersions, Config, Target};
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_tokio::KafkaClient;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "sansa",
    version,
    about = "An Apache Kafka client: probe brokers, read metadata, send raw requests, produce, measure"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct Connection {
    /// Bootstrap servers, `host:port[,host:port...]`; not needed when --command-config names
    /// bootstrap.servers.
    #[arg(short = 'b', long = "bootstrap-server", env = "KAFKA_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Client id sent to the broker.
    #[arg(long, default_value = "sansa-cli")]
    client_id: String,
    /// Java client properties file (security.protocol, sasl.jaas.config, ssl.truststore.*, ...).
    #[arg(long, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
    /// A Java client property, `name=value` (repeatable); wins over the file and -b.
    #[arg(short = 'X', long = "property", value_name = "NAME=VALUE", value_parser = parse_property)]
    properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    props::parse_setting(s).map_err(|e| e.to_string())
}

impl Connection {
    /// Defaults, then the file, then -b, then -X: later settings win.
    fn config(&self) -> Result<Config, String> {
        let mut all = props::Props::new();
        all.insert("client.id".into(), self.client_id.clone());
        all.insert("request.timeout.ms".into(), self.timeout_ms.to_string());
        let failure = |f: Failure| match f {
            Failure::Usage(e) | Failure::Failed(e) => e,
        };
        all.extend(props::command_config(self.command_config.as_deref()).map_err(failure)?);
        if let Some(b) = &self.bootstrap {
            all.insert("bootstrap.servers".into(), b.clone());
        }
        all.extend(self.properties.iter().cloned());
        props::client_config(&all).map_err(failure)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Tell which Apache Kafka release a broker runs, from the API versions it advertises.
    CheckVersion {
        #[command(flatten)]
        conn: Connection,
        /// List every API with the broker's version range and the version sansa would use.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Show brokers, topics, partitions, leaders and in-sync replicas.
    Metadata {
        #[command(flatten)]
        conn: Connection,
        /// Only these topics (repeatable); every topic when absent.
        #[arg(short, long = "topic")]
        topics: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send any Kafka request written as JSON and print the response as JSON.
    ///
    /// Fields are the generated message fields in snake_case; omitted fields take their
    /// defaults. Example: sansa request -b localhost:9092 Metadata --json '{"topics": null}'
    Request {
        #[command(flatten)]
        conn: Connection,
        /// The API, as Kafka names it (e.g. Metadata, ListOffsets, DescribeConfigs).
        api: String,
        /// The request body as JSON.
        #[arg(long, default_value = "{}")]
        json: String,
        /// Send at this version instead of the highest both sides support.
        #[arg(long)]
        version: Option<i16>,
        /// Send to this broker id.
        #[arg(long, conflicts_with_all = ["controller", "group", "transactional_id"])]
        broker: Option<i32>,
        /// Send to the controller.
        #[arg(long)]
        controller: bool,
        /// Send to this consumer group's coordinator.
        #[arg(long)]
        group: Option<String>,
        /// Send to this transactional id's coordinator.
        #[arg(long)]
        transactional_id: Option<String>,
    },
    /// Produce records read from stdin, one per line, as the lines arrive. Prints a summary on
    /// stderr at the end; exits 1 if any record failed, 2 for bad flags or properties.
    ///
    /// Example: printf 'k1:v1\nk2:v2\n' | sansa produce -b localhost:9092 -t orders -k : -H source=cli -X acks=1
    Produce(produce::ProduceArgs),
    /// Print records of a topic on stdout, formatted as with kcat's -f. Stops on Ctrl-C,
    /// after -c records, or with -e at the end of the partitions; with -g, starts at the
    /// group's committed offsets and commits what it printed. Exits 2 for bad flags, 1 if
    /// consuming failed.
    ///
    /// Example: sansa consume -b localhost:9092 -t orders -o beginning -e -f '%p/%o %k=%s\n'
    Consume(consume::ConsumeArgs),
    /// Performance tests with the flags and output of Kafka's own tools.
    Perf {
        #[command(subcommand)]
        command: perf::PerfCommand,
    },
    /// Run sansa's main job end to end: check-version, metadata, topic creation, a million
    /// records through the producer and back through a consumer group of three members,
    /// timing each step. Starts a 3-broker fake cluster in this process unless `-b` names a
    /// real one.
    Demo {
        /// A real cluster's bootstrap servers; a fake cluster in this process when absent.
        #[arg(short = 'b', long = "bootstrap-server")]
        bootstrap: Option<String>,
        /// Records produced in all, spread evenly over the topic's 6 partitions (rounded up to a
        /// multiple of 6).
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Bytes per record value.
        #[arg(long, default_value_t = 100)]
        value_size: usize,
    },
    /// Serve a fake Kafka cluster on loopback for testing applications without Kafka; prints
    /// its bootstrap address and runs until interrupted.
    FakeCluster {
        /// Number of brokers (ids 1..=N).
        #[arg(long, default_value_t = 3)]
        brokers: usize,
        /// Where the first broker listens (`host:port`); the others take the next ports.
        /// Ephemeral ports on 127.0.0.1 when absent.
        #[arg(long)]
        listen: Option<String>,
        /// Advertise the API versions of this Kafka release (KRaft mode), e.g. 2.8 or 3.9.
        #[arg(long, default_value = "4.3")]
        release: String,
    },
}

/// Why `produce` or `perf` failed; the exit status tells which.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad flags, properties or configuration: nothing was sent (exit 2, as for clap's usage
    /// errors).
    Usage(String),
    /// The command ran and something failed (exit 1).
    Failed(String),
}

impl Failure {
    fn exit(result: Result<(), Failure>) -> ExitCode {
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure::Usage(e)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Err(Failure::Failed(e)) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // perf builds the runtime its measurement wants.
    let cli = match cli.command {
        Command::Perf { command } => return Failure::exit(perf::run(command)),
        command => Cli { command },
    };
    if let Command::FakeCluster { brokers, listen, release } = &cli.command {
        return match fake_cluster(*brokers, listen.as_deref(), release) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Produce(args) => return Failure::exit(runtime.block_on(produce::run(args))),
        Command::Consume(args) => return Failure::exit(runtime.block_on(consume::run(args))),
        command => command,
    };
    match runtime.block_on(run(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fake_cluster(brokers: usize, listen: Option<&str>, release: &str) -> Result<(), String> {
    if brokers == 0 {
        return Err("--brokers must be at least 1".into());
    }
    let release = sansa::protocol::kafka_release::RELEASES
        .iter()
        .copied()
        .filter(|r| *r >= KafkaRelease::V2_8)
        .find(|r| r.to_string() == release)
        .ok_or_else(|| {
            format!("--release {release:?}: a KRaft release from 2.8 to {} is needed", KafkaRelease::NEWEST)
        })?;
    let (host, port) = match listen {
        Some(l) => {
            let a = sansa::BrokerAddress::parse(l).map_err(|e| e.to_string())?;
            (a.host, Some(a.port))
        }
        None => ("127.0.0.1".to_string(), None),
    };
    let config = FakeClusterConfig { brokers, release, ..FakeClusterConfig::default() };
    let server = FakeServer::start(config, &host, port).map_err(|e| format!("could not listen on {host}: {e}"))?;
    println!("{}", server.bootstrap());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        // Run by main before this point.
        Command::FakeCluster { .. } | Command::Produce(_) | Command::Consume(_) | Command::Perf { .. } => Ok(()),
        Command::Demo { bootstrap, records, value_size } => {
            demo::run(demo::DemoOptions { bootstrap, records, value_size }).await
        }
        Command::CheckVersion { conn, verbose } => {
            let client = KafkaClient::connect(conn.config()?).map_err(|e| e.to_string())?;
            let versions = client.check_version(Target::AnyBroker).await.map_err(|e| e.to_string())?;
            client.close().await;
            print!("{}", render_versions(&versions, verbose));
            Ok(())
        }
        Command::Metadata { conn, topics, json } => {
            let client = KafkaClient::connect(conn.config()?).map_err(|e| e.to_string())?;
            let wanted = (!topics.is_empty()).then(|| topics.iter().map(|t| TopicName::from(t.as_str())).collect());
            let md = client.metadata(wanted).await.map_err(|e| e.to_string())?;
            client.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&metadata_json(&md)).map_err(|e| e.to_string())?);
            } else {
                print!("{}", render_metadata(&md));
            }
            Ok(())
        }
        Command::Request { conn, api, json, version, broker, controller, group, transactional_id } => {
            let key = ApiKey::from_name(&api)
                .ok_or_else(|| format!("unknown API {api:?}; try e.g. Metadata or ApiVersions"))?;
            let value: Value = serde_json::from_str(&json).map_err(|e| format!("--json is not valid JSON: {e}"))?;
            let body = RequestBody::deserialize_for(key, value)
                .map_err(|e| format!("--json does not fit {key}Request: {e}"))?;
            let target = if let Some(id) = broker {
                Target::Broker(BrokerId(id))
            } else if controller {
                Target::Controller
            } else if let Some(g) = group {
                Target::GroupCoordinator(GroupId::from(g))
            } else if let Some(t) = transactional_id {
                Target::TransactionCoordinator(TransactionalId::from(t))
            } else {
                Target::AnyBroker
            };
            let client = KafkaClient::connect(conn.config()?).map_err(|e| e.to_string())?;
            let response = match version {
                Some(v) => client.request_version(target, body, v).await,
                None => client.request(target, body).await,
            }
            .map_err(|e| e.to_string())?;
            client.close().await;
            let out = json!({
                "node": response.node.to_string(),
                "address": response.address.to_string(),
                "version": response.version,
                "body": response.body,
            });
            println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            Ok(())
        }
    }
}

/// The first line names the release; with `verbose`, one line per API in the format of
/// Kafka's kafka-broker-api-versions tool.
fn render_versions(v: &BrokerVersions, verbose: bool) -> String {
    let mut out = format!("{}\n", v.release);
    if !verbose {
        return out;
    }
    out.push_str(&format!("{} ({}):\n", v.address, v.node));
    let advertised: Vec<(i16, i16, i16)> = v.api_versions.iter().map(|(k, r)| (k, r.min, r.max)).collect();
    for (key, min, max) in &advertised {
        let line = match ApiKey::from_i16(*key) {
            Some(api) => {
                let usable = match v.api_versions.negotiate(api) {
                    Ok(version) => format!("[usable: {version}]"),
                    Err(_) if api.versions().max < *min => "[unusable: broker too new]".to_string(),
                    Err(_) => "[unusable: broker too old]".to_string(),
                };
                format!("\t{}({key}): {min} to {max} {usable}", api.name())
            }
            None => format!("\tUNKNOWN({key}): {min} to {max} [unknown to sansa]"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    for api in ApiKey::ALL {
        if !api.versions().is_empty() && v.api_versions.get(api.as_i16()).is_none() {
            out.push_str(&format!("\t{}({}): UNSUPPORTED\n", api.name(), api.as_i16()));
        }
    }
    out
}

fn render_metadata(md: &ClusterMetadata) -> String {
    let mut out = String::new();
    out.push_str(&format!("cluster {}\n", md.cluster_id.as_deref().unwrap_or("(unknown id)")));
    out.push_str(&format!("{} brokers:\n", md.brokers.len()));
    for b in md.brokers.values() {
        let controller = if md.controller == Some(b.id) { " (controller)" } else { "" };
        let rack = b.rack.as_ref().map(|r| format!(" rack {r}")).unwrap_or_default();
        out.push_str(&format!("  broker {} at {}{rack}{controller}\n", b.id, b.address));
    }
    out.push_str(&format!("{} topics:\n", md.topics.len()));
    for t in md.topics.values() {
        let error = if t.error.is_ok() { String::new() } else { format!(" error {}", t.error.name()) };
        out.push_str(&format!("  topic \"{}\" with {} partitions{error}\n", t.name, t.partitions.len()));
        for p in &t.partitions {
            let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
            let ids = |v: &[BrokerId]| v.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",");
            out.push_str(&format!(
                "    partition {}, leader {leader}, replicas: {}, isrs: {}\n",
                p.index,
                ids(&p.replicas),
                ids(&p.isr)
            ));
        }
    }
    out
}

fn metadata_json(md: &ClusterMetadata) -> Value {
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    json!({
        "cluster_id": md.cluster_id,
        "controller": md.controller.map(|c| c.0),
        "brokers": md.brokers.values().map(|b| json!({
            "id": b.id.0, "host": b.address.host, "port": b.address.port, "rack": b.rack,
        })).collect::<Vec<_>>(),
        "topics": md.topics.values().map(|t| json!({
            "name": t.name.to_string(),
            "id": t.id.to_string(),
            "internal": t.internal,
            "error": t.error.name(),
            "partitions": t.partitions.iter().map(|p| json!({
                "partition": p.index,
                "leader": p.leader.map(|l| l.0),
                "leader_epoch": p.leader_epoch,
                "replicas": ids(&p.replicas),
                "isr": ids(&p.isr),
                "offline_replicas": ids(&p.offline_replicas),
                "error": p.error.name(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
