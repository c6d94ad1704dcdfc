//! `sansa demo`: sansa's main job end to end, against an in-process fake cluster on loopback
//! (no setup at all) or against a real cluster with `-b`. Each step prints what it did and how
//! long it took; the first failure stops the demo with an error.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sansa::cluster::ClusterMetadata;
use sansa::producer::{ProducerConfig, ProducerRecord};
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::delete_topics::request::DeleteTopicState;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, FetchRequest};
use sansa::protocol::records::{decode_batches, Compression, DecodeOptions};
use sansa::protocol::{ApiKey, BrokerId, ErrorCode, ResponseBody, TopicName};
use sansa::{Config, Target};
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;
use sansa_tokio::KafkaClient;

/// Partitions of the demo topic.
const PARTITIONS: i32 = 3;

/// What to run against.
pub(crate) struct DemoOptions {
    /// A real cluster; `None` starts a fake one.
    pub(crate) bootstrap: Option<String>,
    /// Records produced to each partition.
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
            let server = FakeServer::start(FakeClusterConfig::default(), "127.0.0.1", None)
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
    let client = KafkaClient::connect(config).map_err(|e| e.to_string())?;

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
        .with_num_partitions(PARTITIONS)
        .with_replication_factor(replication)]);
    let r = client.request(Target::Controller, create).await.map_err(|e| format!("create topic: {e}"))?;
    let Some(ResponseBody::CreateTopics(c)) = r.body else { return Err("create topic: no answer".into()) };
    let code = c.topics.first().map_or(ErrorCode::UnknownServerError, |t| t.error_code);
    if code != ErrorCode::None {
        return Err(format!("create topic {name}: {code}"));
    }
    let md = wait_for_leaders(&client, &name).await?;
    step.done(&format!("created topic {name}: {PARTITIONS} partitions, replication factor {replication}"));

    let produced = produce(&client, &md, &name, &options).await?;
    let total = produced.iter().sum::<usize>();
    let bytes = total * options.value_size;
    step.done_rate(
        &format!(
            "produced {total} records with the producer ({} per partition, lz4, acks=all, idempotent)",
            options.records
        ),
        bytes,
    );

    let fetched = fetch(&client, &md, &name, &options).await?;
    step.done_rate(&format!("fetched {fetched} records back from the leaders, every value checked"), bytes);
    if fetched != total {
        return Err(format!("fetched {fetched} records, produced {total}"));
    }

    if options.bootstrap.is_some() {
        let delete = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName::from(name.as_str())))])
            .with_topic_names(vec![TopicName::from(name.as_str())]);
        client.request(Target::Controller, delete).await.map_err(|e| format!("delete topic: {e}"))?;
        step.done(&format!("deleted topic {name}"));
    }
    client.close().await;
    println!("demo finished in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
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

    fn done_rate(&mut self, what: &str, bytes: usize) {
        self.n += 1;
        let d = self.elapsed();
        let mb_s = bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6;
        println!("{:>2}. {what} ({:.1} ms, {mb_s:.1} MB/s of values)", self.n, d.as_secs_f64() * 1e3);
    }
}

/// Metadata until every partition of `name` has a leader (a real cluster elects them shortly
/// after CreateTopics returns).
async fn wait_for_leaders(client: &KafkaClient, name: &str) -> Result<ClusterMetadata, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.metadata(Some(vec![TopicName::from(name)])).await.map_err(|e| format!("metadata: {e}"))?;
        let ready = md.topic(name).is_some_and(|t| {
            t.error.is_ok()
                && t.partitions.len() == PARTITIONS as usize
                && t.partitions.iter().all(|p| p.leader.is_some())
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

fn value_of(partition: i32, i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("partition {partition} record {i} ").into_bytes();
    v.resize(size, b'.');
    v
}

fn leader_of(md: &ClusterMetadata, name: &str, partition: i32) -> Result<BrokerId, String> {
    md.topic(name)
        .and_then(|t| t.partitions.iter().find(|p| p.index == partition))
        .and_then(|p| p.leader)
        .ok_or_else(|| format!("{name}-{partition} has no leader"))
}

/// Every record through the producer (lz4, acks=all, idempotent), each partition given its
/// share explicitly so the fetch can check every value; the outcomes arrive by callback.
/// Returns records per partition.
async fn produce(
    client: &KafkaClient,
    _md: &ClusterMetadata,
    name: &str,
    options: &DemoOptions,
) -> Result<Vec<usize>, String> {
    let failures = Arc::new(Mutex::new(Vec::new()));
    for i in 0..options.records {
        for partition in 0..PARTITIONS {
            let record = ProducerRecord::new(name, value_of(partition, i, options.value_size))
                .with_key(format!("key-{i}"))
                .with_partition(partition);
            let failures = Arc::clone(&failures);
            client
                .send_with_callback(record, move |outcome| {
                    if let Err(e) = outcome {
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push(e.to_string());
                    }
                })
                .await
                .map_err(|e| format!("produce: {e}"))?;
        }
    }
    client.flush().await;
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(first) = failures.first() {
        return Err(format!("{} records failed, the first: {first}", failures.len()));
    }
    Ok(vec![options.records; PARTITIONS as usize])
}

/// Fetches every partition from offset 0 until all records are back, checking each value.
async fn fetch(client: &KafkaClient, md: &ClusterMetadata, name: &str, options: &DemoOptions) -> Result<usize, String> {
    let topic = md.topic(name).ok_or("topic vanished")?;
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let leader = leader_of(md, name, partition)?;
        let versions = client.check_version(Target::Broker(leader)).await.map_err(|e| e.to_string())?;
        let by_id = versions.api_versions.negotiate(ApiKey::Fetch).is_ok_and(|v| v >= 13);
        let mut offset = 0i64;
        let mut seen = 0usize;
        while seen < options.records {
            let p = FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20);
            let t = FetchTopic::default().with_partitions(vec![p]);
            let t = if by_id { t.with_topic_id(topic.id) } else { t.with_topic(topic.name.clone()) };
            let request = FetchRequest::default()
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(32 << 20)
                .with_topics(vec![t]);
            let r = client.request(Target::Broker(leader), request).await.map_err(|e| format!("fetch: {e}"))?;
            let Some(ResponseBody::Fetch(f)) = r.body else { return Err("fetch: no answer".into()) };
            let data = f.responses.first().and_then(|t| t.partitions.first()).ok_or("fetch: empty answer")?;
            if data.error_code != ErrorCode::None {
                return Err(format!("fetch {name}-{partition} at {offset}: {}", data.error_code));
            }
            let records: Bytes = data.records.clone().unwrap_or_default();
            let mut progressed = false;
            for batch in decode_batches(records, &DecodeOptions::new()) {
                let batch = batch.map_err(|e| format!("fetched batch: {e}"))?;
                for record in batch.into_records() {
                    if record.offset < offset {
                        continue;
                    }
                    let expected = value_of(partition, seen, options.value_size);
                    if record.value.as_deref() != Some(&expected[..]) {
                        let mut msg = String::new();
                        let _ = write!(msg, "{name}-{partition} offset {} holds an unexpected value", record.offset);
                        return Err(msg);
                    }
                    offset = record.offset + 1;
                    seen += 1;
                    progressed = true;
                }
            }
            if !progressed && data.high_watermark <= offset {
                return Err(format!("{name}-{partition}: only {seen} of {} records came back", options.records));
            }
        }
        total += seen;
    }
    Ok(total)
}
