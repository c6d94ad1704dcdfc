//! `sansa demo`: sansa's main job end to end, against an in-process fake cluster on loopback
//! (no setup at all) or against a real cluster with `-b`: topic creation, a million records
//! through the producer, and all of them back through a consumer group of three members.
//! Each step prints what it did, how long it took and its rate, with progress lines on the
//! way; the first failure stops the demo with an error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sansa::cluster::ClusterMetadata;
use sansa::consumer::{ConsumerConfig, OffsetReset};
use sansa::producer::{ProducerConfig, ProducerRecord};
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::delete_topics::request::DeleteTopicState;
use sansa::protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest};
use sansa::protocol::records::Compression;
use sansa::protocol::{ErrorCode, ResponseBody, TopicName};
use sansa::{Config, Target};
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_tokio::KafkaClient;

/// Partitions of the demo topic: two for each member of the group.
const PARTITIONS: usize = 6;
/// Members of the demo's consumer group.
const MEMBERS: usize = 3;
/// How often the produce and consume steps print their progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What to run against.
pub(crate) struct DemoOptions {
    /// A real cluster; `None` starts a fake one.
    pub(crate) bootstrap: Option<String>,
    /// Records produced in all, spread evenly over the partitions.
    pub(crate) records: usize,
    /// Bytes of each record value.
    pub(crate) value_size: usize,
}

/// Runs the demo, printing each step as it completes.
pub(crate) async fn run(options: DemoOptions) -> Result<(), String> {
    let started = Instant::now();
    let mut step = Steps { n: 0, since: started };
    let _server; // keeps the fake cluster serving until the demo ends
    let bootstrap = match &options.bootstrap {
        Some(b) => b.clone(),
        None => {
            // As Kafka's group.initial.rebalance.delay.ms (3 s there): the three members start
            // together and share the first generation.
            let cluster = FakeClusterConfig {
                group_initial_rebalance_delay: Duration::from_millis(300),
                ..FakeClusterConfig::default()
            };
            let server = FakeServer::start(cluster, "127.0.0.1", None)
                .map_err(|e| format!("could not start the fake cluster: {e}"))?;
            let b = server.bootstrap().to_string();
            step.done(&format!("started a 3-broker fake Kafka cluster in this process at {b}"));
            _server = server;
            b
        }
    };
    let mut producer = ProducerConfig::default();
    producer.compression = Compression::lz4();
    let config = Config::new(&bootstrap)
        .map_err(|e| e.to_string())?
        .with_client_id("sansa-demo")
        .with_request_timeout(Duration::from_secs(30))
        .with_producer(producer);
    let client = KafkaClient::connect(config.clone()).map_err(|e| e.to_string())?;

    let versions = client.check_version(Target::AnyBroker).await.map_err(|e| format!("check-version: {e}"))?;
    step.done(&format!(
        "check-version: {} ({} APIs advertised by broker {} at {})",
        versions.release,
        versions.api_versions.iter().count(),
        versions.node,
        versions.address
    ));

    let md = client.metadata(None).await.map_err(|e| format!("metadata: {e}"))?;
    step.done(&format!(
        "metadata: cluster {}, {} brokers ({}), controller {}, {} topics",
        md.cluster_id.as_deref().unwrap_or("(no id)"),
        md.brokers.len(),
        md.brokers.keys().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        md.controller.map_or("unknown".to_string(), |c| c.to_string()),
        md.topics.len()
    ));

    let replication = md.brokers.len().min(3) as i16;
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let name = format!("sansa-demo-{millis}");
    let create = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName::from(name.as_str()))
        .with_num_partitions(PARTITIONS as i32)
        .with_replication_factor(replication)]);
    let r = client.request(Target::Controller, create).await.map_err(|e| format!("create topic: {e}"))?;
    let Some(ResponseBody::CreateTopics(c)) = r.body else { return Err("create topic: no answer".into()) };
    let code = c.topics.first().map_or(ErrorCode::UnknownServerError, |t| t.error_code);
    if code != ErrorCode::None {
        return Err(format!("create topic {name}: {code}"));
    }
    wait_for_leaders(&client, &name).await?;
    step.done(&format!("created topic {name}: {PARTITIONS} partitions, replication factor {replication}"));

    let per_partition = options.records.div_ceil(PARTITIONS);
    let total = per_partition * PARTITIONS;
    let bytes = total * options.value_size;
    produce(&client, &name, per_partition, options.value_size).await?;
    step.done_rate(&format!("produced {total} records with the producer (lz4, acks=all, idempotent)"), total, bytes);

    let group = format!("sansa-demo-{millis}");
    let members = consume_in_group(&config, &name, &group, per_partition, options.value_size).await?;
    step.done_rate(
        &format!(
            "consumed all {total} records in group {group} of {MEMBERS} members ({}), every value checked",
            members.join("; ")
        ),
        total,
        bytes,
    );

    if options.bootstrap.is_some() {
        let delete = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName::from(name.as_str())))])
            .with_topic_names(vec![TopicName::from(name.as_str())]);
        client.request(Target::Controller, delete).await.map_err(|e| format!("delete topic: {e}"))?;
        step.done(&format!("deleted topic {name}"));
    }
    client.close().await;
    println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Prints numbered steps with their durations.
struct Steps {
    n: usize,
    since: Instant,
}

impl Steps {
    fn elapsed(&mut self) -> Duration {
        let now = Instant::now();
        let d = now - self.since;
        self.since = now;
        d
    }

    fn done(&mut self, what: &str) {
        self.n += 1;
        let d = self.elapsed();
        println!("{:>2}. {what} ({:.1} ms)", self.n, d.as_secs_f64() * 1e3);
    }

    fn done_rate(&mut self, what: &str, records: usize, bytes: usize) {
        self.n += 1;
        let d = self.elapsed().as_secs_f64().max(1e-9);
        println!(
            "{:>2}. {what} ({:.2} s, {:.0} records/s, {:.1} MB/s of values)",
            self.n,
            d,
            records as f64 / d,
            bytes as f64 / d / 1e6
        );
    }
}

/// Prints `done` of `total` every [`PROGRESS_EVERY`] until `finished` is set.
fn spawn_progress(what: &'static str, done: Arc<AtomicUsize>, total: usize, finished: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            if finished.load(Ordering::Relaxed) {
                return;
            }
            let n = done.load(Ordering::Relaxed);
            let rate = n as f64 / started.elapsed().as_secs_f64();
            println!("      {what} {n} of {total} ({rate:.0} records/s so far)");
        }
    });
}

/// Metadata until every partition of `name` has a leader (a real cluster elects them shortly
/// after CreateTopics returns).
async fn wait_for_leaders(client: &KafkaClient, name: &str) -> Result<ClusterMetadata, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.metadata(Some(vec![TopicName::from(name)])).await.map_err(|e| format!("metadata: {e}"))?;
        let ready = md.topic(name).is_some_and(|t| {
            t.error.is_ok() && t.partitions.len() == PARTITIONS && t.partitions.iter().all(|p| p.leader.is_some())
        });
        if ready {
            return Ok(md);
        }
        if Instant::now() > deadline {
            return Err(format!("topic {name} has no leaders after 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of record `i` of `partition`: the consumers check each one they read.
fn value_of(partition: usize, i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("partition {partition} record {i} ").into_bytes();
    v.resize(size, b'.');
    v
}

/// `per_partition` records into each partition through the producer (lz4, acks=all,
/// idempotent), each given its partition explicitly so the consumers can check every value;
/// the outcomes arrive by callback.
async fn produce(client: &KafkaClient, name: &str, per_partition: usize, value_size: usize) -> Result<(), String> {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    spawn_progress("produced", Arc::clone(&sent), per_partition * PARTITIONS, Arc::clone(&finished));
    for i in 0..per_partition {
        for partition in 0..PARTITIONS {
            let record = ProducerRecord::new(name, value_of(partition, i, value_size))
                .with_key(format!("key-{i}"))
                .with_partition(partition as i32);
            let failures = Arc::clone(&failures);
            let sent = Arc::clone(&sent);
            client
                .send_with_callback(record, move |outcome| match outcome {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap_or_else(|e| e.into_inner()).push(e.to_string()),
                })
                .await
                .map_err(|e| format!("produce: {e}"))?;
        }
    }
    client.flush().await;
    finished.store(true, Ordering::Relaxed);
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(first) = failures.first() {
        return Err(format!("{} records failed, the first: {first}", failures.len()));
    }
    Ok(())
}

/// What the members of the group have read: which offset of each partition was seen.
struct Seen {
    offsets: Vec<Vec<bool>>,
    distinct: usize,
}

/// Reads the topic from the beginning in a group of [`MEMBERS`] members, each its own client,
/// until every record has been seen; checks each value against its partition and offset.
/// A rebalance may deliver a record twice (at least once); each counts once. Returns a
/// description of each member's share.
async fn consume_in_group(
    config: &Config,
    name: &str,
    group: &str,
    per_partition: usize,
    value_size: usize,
) -> Result<Vec<String>, String> {
    let total = per_partition * PARTITIONS;
    let seen = Arc::new(Mutex::new(Seen { offsets: vec![vec![false; per_partition]; PARTITIONS], distinct: 0 }));
    let distinct = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    spawn_progress("consumed", Arc::clone(&distinct), total, Arc::clone(&finished));
    let mut members = Vec::new();
    for m in 0..MEMBERS {
        let consumer = ConsumerConfig::default().with_group_id(group).with_auto_offset_reset(OffsetReset::Earliest);
        let config = config.clone().with_client_id(format!("sansa-demo-member-{m}")).with_consumer(consumer);
        let client = KafkaClient::connect(config).map_err(|e| e.to_string())?;
        client.subscribe(vec![TopicName::from(name)]).await.map_err(|e| format!("member {m} subscribe: {e}"))?;
        let seen = Arc::clone(&seen);
        let distinct = Arc::clone(&distinct);
        members.push(tokio::spawn(async move {
            let mut read = 0usize;
            let mut partitions = std::collections::BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while distinct.load(Ordering::Relaxed) < total {
                if Instant::now() > deadline {
                    client.close().await;
                    return Err(format!(
                        "member {m}: the group read {} of {total} records in 120 s",
                        distinct.load(Ordering::Relaxed)
                    ));
                }
                let records = client
                    .poll(10_000, Duration::from_millis(100))
                    .await
                    .map_err(|e| format!("member {m} poll: {e}"))?;
                let bad = {
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    let mut bad = None;
                    for r in &records {
                        let (p, o) = (r.partition as usize, r.offset as usize);
                        if p >= PARTITIONS
                            || o >= per_partition
                            || r.value.as_deref() != Some(&value_of(p, o, value_size)[..])
                        {
                            bad = Some(format!(
                                "member {m}: {}-{} offset {} holds an unexpected record",
                                r.topic, r.partition, r.offset
                            ));
                            break;
                        }
                        if !std::mem::replace(&mut seen.offsets[p][o], true) {
                            seen.distinct += 1;
                        }
                        partitions.insert(p);
                    }
                    distinct.store(seen.distinct, Ordering::Relaxed);
                    bad
                };
                if let Some(e) = bad {
                    client.close().await;
                    return Err(e);
                }
                read += records.len();
            }
            client.close().await;
            let partitions: Vec<String> = partitions.iter().map(ToString::to_string).collect();
            Ok(match read {
                0 => format!("member {m}: no records"),
                _ => format!("member {m}: {read} from partitions {}", partitions.join(",")),
            })
        }));
    }
    let mut shares = Vec::new();
    let mut failure = None;
    for member in members {
        match member.await {
            Ok(Ok(share)) => shares.push(share),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(format!("a member's task failed: {e}"))),
        }
    }
    finished.store(true, Ordering::Relaxed);
    match failure {
        Some(e) => Err(e),
        None => Ok(shares),
    }
}
