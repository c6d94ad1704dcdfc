//! Producer scenarios of the live suite: written once, run by every runtime crate against
//! real Kafka (and the fake cluster over loopback).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansa::producer::partitioner::partition_for_key;
use sansa::producer::{ProduceError, ProducerRecord, RecordMetadata};
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::FetchRequest;
use sansa::protocol::records::{decode_batches, DecodeOptions, Header, Record};
use sansa::protocol::{ApiKey, ResponseBody};
use sansa::{Config, Target};

use crate::live::{bootstrap, create_topic, unique_topic, ClusterControl, LiveClient, LiveRuntime};

fn producer_config(extra: &[(&str, &str)]) -> Config {
    let bootstrap = bootstrap();
    let mut props: Vec<(&str, &str)> = vec![("bootstrap.servers", &bootstrap), ("client.id", "sansa-live-producer")];
    props.extend_from_slice(extra);
    Config::from_properties(props).expect("producer properties")
}

/// Every record of a partition, from offset 0 to the high watermark, with raw fetches.
pub fn read_partition(client: &impl LiveClient, topic: &str, partition: i32) -> Vec<Record> {
    let mut records = Vec::new();
    let mut next = 0i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "reading {topic}-{partition} took too long");
        let md = client.metadata(Some(vec![topic.into()])).expect("metadata");
        let t = md.topic(topic).expect("topic").clone();
        let Some(leader) = t.partitions.get(partition as usize).and_then(|p| p.leader) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let versions = client.check_version(Target::Broker(leader)).expect("versions").api_versions;
        let fetch_v = versions.negotiate(ApiKey::Fetch).expect("fetch version");
        let fetch_partition = FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(next)
            .with_partition_max_bytes(8 << 20);
        let ft = FetchTopic::default().with_partitions(vec![fetch_partition]);
        let ft = if fetch_v >= 13 { ft.with_topic_id(t.id) } else { ft.with_topic(t.name.clone()) };
        let fetch = FetchRequest::default().with_max_wait_ms(200).with_max_bytes(16 << 20).with_topics(vec![ft]);
        let Ok(r) = client.request(Target::Broker(leader), fetch.into()) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let Some(ResponseBody::Fetch(f)) = r.body else { panic!("a Fetch answer") };
        let data = &f.responses[0].partitions[0];
        if !data.error_code.is_ok() {
            assert!(data.error_code.is_retriable(), "{}", data.error_code);
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        if let Some(bytes) = data.records.clone() {
            for batch in decode_batches(bytes, &DecodeOptions::new()) {
                let batch = batch.expect("a batch that decodes");
                if batch.is_control() {
                    next = next.max(batch.next_offset());
                    continue;
                }
                for r in batch.into_records() {
                    if r.offset >= next {
                        next = r.offset + 1;
                        records.push(r);
                    }
                }
            }
        }
        if next >= data.high_watermark {
            return records;
        }
    }
}

/// Records with keys and headers in every codec land where the Java client puts them and
/// read back byte-identical, timestamps included.
pub fn producer_round_trip<R: LiveRuntime>(rt: &R, replication: i16) {
    let admin = rt.connect(producer_config(&[]));
    let topic = unique_topic("sansa-produce");
    create_topic(&admin, &topic, 6, replication);
    let mut sent: Vec<(ProducerRecord, RecordMetadata)> = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let client = rt.connect(producer_config(&[("compression.type", codec)]));
        let futures: Vec<_> = (0..400u32)
            .map(|i| {
                let mut r =
                    ProducerRecord::new(topic.as_str(), format!("{codec} value {i} ").repeat(1 + i as usize % 7))
                        .with_key(format!("key-{}", i % 50))
                        .with_header("h1", i.to_be_bytes().to_vec())
                        .with_header("h1", "repeated");
                r.headers.push(Header::new(Bytes::from_static(b"null"), None));
                if i % 2 == 0 {
                    r = r.with_timestamp(1_700_000_000_000 + i64::from(i));
                }
                let future = client.handle().send_blocking(r.clone()).expect("buffered");
                (r, future)
            })
            .collect();
        for (r, f) in futures {
            let m = f.wait().unwrap_or_else(|e| panic!("{codec}: {e}"));
            sent.push((r, m));
        }
        client.close();
    }
    let mut logs: BTreeMap<i32, BTreeMap<i64, Record>> = BTreeMap::new();
    for p in 0..6 {
        logs.insert(p, read_partition(&admin, &topic, p).into_iter().map(|r| (r.offset, r)).collect());
    }
    for (r, m) in &sent {
        let key = r.key.as_ref().unwrap();
        assert_eq!(Some(m.partition as u32), partition_for_key(key, 6), "Java's partition for {key:?}");
        let stored = &logs[&m.partition][&m.offset.expect("an offset")];
        assert_eq!(stored.key, r.key);
        assert_eq!(stored.value, r.value);
        assert_eq!(stored.headers, r.headers);
        assert_eq!(stored.timestamp, r.timestamp.unwrap_or(m.timestamp));
    }
    let total: usize = logs.values().map(BTreeMap::len).sum();
    assert_eq!(total, sent.len(), "each record stored once");
    if std::env::var_os("SANSA_JAVA_READBACK").is_some() {
        java_reads_back(&topic, &sent);
    }
    admin.close();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Kafka's own consumer (conformance/java `readback`) reads `topic` and sees exactly `sent`.
fn java_reads_back(topic: &str, sent: &[(ProducerRecord, RecordMetadata)]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("java/run.sh");
    let out = std::process::Command::new(script).args(["readback", &bootstrap(), topic]).output().expect("run.sh");
    assert!(out.status.success(), "readback failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: BTreeMap<(i32, i64), String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let p: i32 = f.next().unwrap().parse().unwrap();
            let o: i64 = f.next().unwrap().parse().unwrap();
            ((p, o), l.to_string())
        })
        .collect();
    assert_eq!(lines.len(), sent.len(), "the Java consumer reads every record once");
    for (r, m) in sent {
        let offset = m.offset.unwrap();
        let headers: Vec<String> = r
            .headers
            .iter()
            .map(|h| format!("{}={}", hex(&h.key), h.value.as_deref().map_or("-".to_string(), hex)))
            .collect();
        let expected = format!(
            "{}\t{}\tCreateTime\t{}\t{}\t{}\t{}",
            m.partition,
            offset,
            r.timestamp.unwrap_or(m.timestamp),
            r.key.as_deref().map_or("-".to_string(), hex),
            r.value.as_deref().map_or("-".to_string(), hex),
            if headers.is_empty() { "-".to_string() } else { headers.join(",") },
        );
        assert_eq!(lines[&(m.partition, offset)], expected, "as Java reads it");
    }
    eprintln!("the Java consumer read {} records byte-identical", sent.len());
}

/// An oversized record fails alone; a missing topic fails after `max.block.ms`; with no
/// broker reachable, records fail at their delivery timeout.
pub fn producer_errors<R: LiveRuntime>(rt: &R, replication: i16) {
    let client = rt.connect(producer_config(&[("max.request.size", "4000")]));
    let topic = unique_topic("sansa-produce-errors");
    create_topic(&client, &topic, 1, replication);
    let small = || ProducerRecord::new(topic.as_str(), "small");
    let handle = client.handle();
    let futures = [
        handle.send_blocking(small()).unwrap(),
        handle.send_blocking(ProducerRecord::new(topic.as_str(), vec![b'x'; 8000])).unwrap(),
        handle.send_blocking(small()).unwrap(),
    ];
    let [a, big, b] = futures.map(|f| f.wait());
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert!(matches!(big, Err(ProduceError::RecordTooLarge { setting: "max.request.size", .. })), "{big:?}");
    client.close();

    let client = rt.connect(producer_config(&[("allow.auto.create.topics", "false"), ("max.block.ms", "1500")]));
    let started = Instant::now();
    let missing =
        client.handle().send_blocking(ProducerRecord::new(unique_topic("sansa-missing"), "x")).unwrap().wait();
    let took = started.elapsed();
    assert!(matches!(missing, Err(ProduceError::TopicNotFound { .. })), "{missing:?}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "{took:?}");
    client.close();

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let nowhere = format!("127.0.0.1:{port}");
    let config = Config::from_properties([
        ("bootstrap.servers", nowhere.as_str()),
        ("request.timeout.ms", "1000"),
        ("delivery.timeout.ms", "2500"),
        ("max.block.ms", "1000"),
        ("linger.ms", "0"),
    ])
    .expect("properties");
    let client = rt.connect(config);
    let started = Instant::now();
    let futures: Vec<_> =
        (0..20).map(|i| client.handle().send_blocking(ProducerRecord::new("t", format!("{i}"))).unwrap()).collect();
    for f in futures {
        let r = f.wait_timeout(Duration::from_secs(10)).expect("no record hangs");
        assert!(matches!(r, Err(ProduceError::TopicNotFound { .. } | ProduceError::DeliveryTimeout { .. })), "{r:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    client.close();
}

/// An idempotent acks=all produce of `records` records loses the leader of a partition to
/// SIGKILL midway; it comes back later. Every record is acknowledged, and the log holds each
/// exactly once, in send order per partition.
pub fn producer_survives_leader_kill<R: LiveRuntime>(rt: &R, control: &dyn ClusterControl, records: u64) {
    let admin = rt.connect(producer_config(&[]));
    let topic = unique_topic("sansa-produce-crash");
    let md = create_topic(&admin, &topic, 3, 3);
    let victim = md.topic(&topic).unwrap().partitions[0].leader.expect("leader");
    let client = Arc::new(rt.connect(producer_config(&[("acks", "all"), ("enable.idempotence", "true")])));
    let acked = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<ProduceError>>> = Arc::default();
    let started = Instant::now();
    // The restart runs beside the sends, as a broker comes back while a real producer keeps
    // going (and a JVM's start would otherwise idle the test for seconds).
    std::thread::scope(|scope| {
        let mut restart = None;
        for i in 0..records {
            let mut value = i.to_be_bytes().to_vec();
            value.resize(100, b'.');
            let (acked, failures) = (Arc::clone(&acked), Arc::clone(&failures));
            client
                .handle()
                .send_with_callback_blocking(ProducerRecord::new(topic.as_str(), value), move |r| match r {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                })
                .expect("buffered");
            if i == records / 3 {
                control.kill(victim.0);
            }
            if i == 2 * records / 3 {
                restart = Some(scope.spawn(|| control.start(victim.0)));
            }
        }
        client.handle().flush_blocking();
        restart.expect("restarted").join().expect("broker restarted");
    });
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} records failed, first: {:?}", failures.len(), failures.first());
    assert_eq!(acked.load(Ordering::Relaxed), records);
    let produced_in = started.elapsed();
    let mut total = 0u64;
    for p in 0..3 {
        let stored = read_partition(&admin, &topic, p);
        let indices: Vec<u64> =
            stored.iter().map(|r| u64::from_be_bytes(r.value.as_ref().unwrap()[..8].try_into().unwrap())).collect();
        assert!(indices.windows(2).all(|w| w[0] < w[1]), "partition {p}: out of order or duplicated");
        total += indices.len() as u64;
    }
    assert_eq!(total, records, "0 lost, 0 duplicated");
    eprintln!("{records} records through a leader crash in {produced_in:?}: 0 lost, 0 duplicated, order kept");
    client.close();
    admin.close();
}
