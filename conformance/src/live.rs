//! Scenarios against a real Kafka cluster, written once and run by every runtime crate.
//!
//! A runtime implements [`LiveRuntime`] (connect) and [`LiveClient`] (its handle, wrapped so
//! that calls block until done), then calls [`run_all`] from an `#[ignore]`d test that
//! `./test.sh` runs with `KAFKA_BOOTSTRAP` pointing at the cluster the script started.

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa::cluster::ClusterMetadata;
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::{CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest};
use sansa::protocol::records::{BatchParams, Compression, Header, RecordBatchEncoder};
use sansa::protocol::{ApiKey, ErrorCode, RequestBody, ResponseBody, TopicName};
use sansa::{BrokerVersions, CloseCause, Config, RequestError, Response, Target};

/// A client handle whose calls block until the driver answers.
pub trait LiveClient: Send + Sync {
    /// Sends a request.
    fn request(&self, target: Target, body: RequestBody) -> Result<Response, RequestError>;
    /// Sends many requests at once, without waiting between them, and collects the answers in
    /// order.
    fn request_many(&self, requests: Vec<(Target, RequestBody)>) -> Vec<Result<Response, RequestError>>;
    /// Fetches metadata.
    fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError>;
    /// Probes a broker's versions.
    fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError>;
    /// Closes the client, waiting for requests in flight.
    fn close(&self);
    /// The shared handle, for its `_blocking` producer methods.
    fn handle(&self) -> &sansa::driver::Handle;
    /// Polls the consumer; a runtime with async handles overrides this to go through them.
    fn poll(
        &self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<sansa::consumer::ConsumerRecord>, sansa::consumer::ConsumeError> {
        self.handle().poll_blocking(max, timeout)
    }
}

/// A runtime under test.
pub trait LiveRuntime {
    /// Its client handle.
    type Client: LiveClient;
    /// Starts a client.
    fn connect(&self, config: Config) -> Self::Client;
    /// A command that runs [`crate::live_consumer::member_main`] on this runtime in a child
    /// process, so a scenario can kill a group member as a crash would: by default this test
    /// binary's `live_consumer_member` test.
    fn member_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(std::env::current_exe().expect("the test binary"));
        command.args(["live_consumer_member", "--exact", "--ignored", "--nocapture", "--test-threads", "1"]);
        command
    }
}

thread_local! {
    static BOOTSTRAP: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The cluster to test against: the one [`with_bootstrap`] names on this thread, else
/// `KAFKA_BOOTSTRAP` (set by `./test.sh`).
pub fn bootstrap() -> String {
    BOOTSTRAP.with(|b| b.borrow().clone()).unwrap_or_else(|| {
        std::env::var("KAFKA_BOOTSTRAP").expect("KAFKA_BOOTSTRAP is not set: run the live suite through ./test.sh")
    })
}

/// Runs `f` with [`bootstrap`] answering `address` on this thread (for a fake cluster).
pub fn with_bootstrap<T>(address: &str, f: impl FnOnce() -> T) -> T {
    let previous = BOOTSTRAP.with(|b| b.replace(Some(address.to_string())));
    let out = f();
    BOOTSTRAP.with(|b| *b.borrow_mut() = previous);
    out
}

fn config(bootstrap: &str) -> Config {
    Config::new(bootstrap).expect("bootstrap list").with_client_id("sansa-live").with_rng_seed(7)
}

pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos:x}")
}

fn body(r: &Result<Response, RequestError>) -> &ResponseBody {
    r.as_ref().expect("request succeeded").body.as_ref().expect("a response body")
}

/// Connect and negotiate: the broker answers ApiVersions and is recognised as Kafka 4.x.
pub fn api_versions<R: LiveRuntime>(rt: &R) {
    let client = rt.connect(config(&bootstrap()));
    let v = client.check_version(Target::AnyBroker).expect("check_version");
    assert!(v.api_versions.get(ApiKey::Produce.as_i16()).is_some(), "broker advertises Produce");
    assert!(v.release.to_string().contains("Apache Kafka"), "{}", v.release);
    client.close();
}

/// Metadata lists every broker of the cluster and a controller.
pub fn metadata<R: LiveRuntime>(rt: &R, expected_brokers: usize) {
    let client = rt.connect(config(&bootstrap()));
    let md = client.metadata(None).expect("metadata");
    assert_eq!(md.brokers.len(), expected_brokers, "{md:?}");
    assert!(md.controller.is_some());
    assert!(md.cluster_id.is_some());
    client.close();
}

/// Creates a topic and waits until metadata shows a leader for every partition.
pub(crate) fn create_topic(client: &impl LiveClient, name: &str, partitions: i32, replication: i16) -> ClusterMetadata {
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name.into())
            .with_num_partitions(partitions)
            .with_replication_factor(replication)])
        .with_timeout_ms(30_000);
    let r = client.request(Target::Controller, create.into());
    let ResponseBody::CreateTopics(c) = body(&r) else { panic!("CreateTopics answer") };
    assert_eq!(c.topics[0].error_code, ErrorCode::None, "{:?}", c.topics[0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.metadata(Some(vec![name.into()])).expect("metadata");
        if let Some(t) = md.topic(name) {
            if t.error.is_ok()
                && t.partitions.len() == partitions as usize
                && t.partitions.iter().all(|p| p.leader.is_some())
            {
                return md;
            }
        }
        assert!(Instant::now() < deadline, "topic {name} never got leaders");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CreateTopics through the controller, then Metadata shows the topic with its partitions.
pub fn create_topic_then_metadata<R: LiveRuntime>(rt: &R, replication: i16) {
    let client = rt.connect(config(&bootstrap()));
    let name = unique_topic("sansa-create");
    let md = create_topic(&client, &name, 3, replication);
    let t = md.topic(&name).expect("topic");
    assert_eq!(t.partitions.len(), 3);
    assert!(t.partitions.iter().all(|p| p.replicas.len() == replication as usize));
    assert!(!t.id.is_zero(), "topic id assigned");
    client.close();
}

/// A raw record batch produced to the leader comes back from Fetch with the same bytes,
/// except the base offset and leader epoch the broker assigns.
pub fn produce_then_fetch_byte_identical<R: LiveRuntime>(rt: &R, replication: i16) {
    let client = rt.connect(config(&bootstrap()));
    let name = unique_topic("sansa-roundtrip");
    let md = create_topic(&client, &name, 1, replication);
    let topic = md.topic(&name).expect("topic").clone();
    let leader = topic.partitions[0].leader.expect("leader");

    let mut batch = BytesMut::new();
    let mut enc = RecordBatchEncoder::new();
    let mut b = enc.begin(&mut batch, BatchParams::new().compression(Compression::lz4())).expect("begin");
    for i in 0..100u32 {
        let value = format!("value {i} ").repeat(10);
        b.append(
            1_700_000_000_000 + i64::from(i),
            Some(format!("k{i}").as_bytes()),
            Some(value.as_bytes()),
            &[Header::new(Bytes::from_static(b"h"), Some(Bytes::from(i.to_be_bytes().to_vec())))],
        )
        .expect("append");
    }
    b.finish().expect("finish");
    let batch = batch.freeze();

    // Leadership can move right after creation (a preferred-leader election, a broker that
    // just restarted): like any client, refresh metadata and retry on the retriable errors.
    let retry = |attempt: u32, code: ErrorCode| {
        assert!(code.is_retriable() && attempt < 20, "attempt {attempt}: {code}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let leader_of = || {
        let md = client.metadata(Some(vec![topic.name.clone()])).expect("metadata");
        md.topic(&name).and_then(|t| t.partitions[0].leader).unwrap_or(leader)
    };
    let mut attempt = 0;
    let (leader, base_offset) = loop {
        let leader = leader_of();
        let versions = client.check_version(Target::Broker(leader)).expect("versions").api_versions;
        let produce_v = versions.negotiate(ApiKey::Produce).expect("produce version");
        let mut topic_data = TopicProduceData::default()
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch.clone()))]);
        topic_data =
            if produce_v >= 13 { topic_data.with_topic_id(topic.id) } else { topic_data.with_name(topic.name.clone()) };
        let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![topic_data]);
        let r = client.request(Target::Broker(leader), produce.into());
        let ResponseBody::Produce(p) = body(&r) else { panic!("Produce answer") };
        let part = &p.responses[0].partition_responses[0];
        if part.error_code.is_ok() {
            break (leader, part.base_offset);
        }
        attempt += 1;
        retry(attempt, part.error_code);
    };

    let mut attempt = 0;
    let data = loop {
        let leader = if attempt == 0 { leader } else { leader_of() };
        let versions = client.check_version(Target::Broker(leader)).expect("versions").api_versions;
        let fetch_v = versions.negotiate(ApiKey::Fetch).expect("fetch version");
        let partition = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(base_offset)
            .with_partition_max_bytes(1 << 20);
        let fetch_topic = FetchTopic::default().with_partitions(vec![partition]);
        let fetch_topic = if fetch_v >= 13 {
            fetch_topic.with_topic_id(topic.id)
        } else {
            fetch_topic.with_topic(topic.name.clone())
        };
        let fetch = FetchRequest::default()
            .with_max_wait_ms(1000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_topic]);
        let r = client.request(Target::Broker(leader), fetch.into());
        let ResponseBody::Fetch(f) = body(&r) else { panic!("Fetch answer") };
        let data = f.responses[0].partitions[0].clone();
        if data.error_code.is_ok() {
            break data;
        }
        attempt += 1;
        retry(attempt, data.error_code);
    };
    let fetched = data.records.clone().expect("records");
    assert!(fetched.len() >= batch.len(), "fetched {} bytes, sent {}", fetched.len(), batch.len());
    // Base offset (0..8) and partition leader epoch (12..16) are the broker's; the rest,
    // the CRC included, is ours.
    assert_eq!(&fetched[8..12], &batch[8..12], "batch length");
    assert_eq!(&fetched[16..batch.len()], &batch[16..], "batch bytes from magic to the end");
    assert_eq!(i64::from_be_bytes(fetched[0..8].try_into().unwrap()), base_offset);
    client.close();
}

/// 200 requests submitted at once are pipelined on one connection and all answered.
pub fn pipelined_requests<R: LiveRuntime>(rt: &R) {
    let client = rt.connect(config(&bootstrap()));
    let md = client.metadata(None).expect("metadata");
    let broker = *md.brokers.keys().next().expect("a broker");
    let requests: Vec<(Target, RequestBody)> = (0..200)
        .map(|_| (Target::Broker(broker), MetadataRequest::default().with_topics(Some(vec![])).into()))
        .collect();
    let started = Instant::now();
    let results = client.request_many(requests);
    assert_eq!(results.len(), 200);
    for r in &results {
        assert!(matches!(body(r), ResponseBody::Metadata(_)));
    }
    eprintln!("200 pipelined metadata requests in {:?}", started.elapsed());
    client.close();
}

/// A bootstrap list whose first address refuses connections still works.
pub fn first_bootstrap_address_dead<R: LiveRuntime>(rt: &R) {
    let dead = refused_address();
    let client = rt.connect(config(&format!("{dead},{}", bootstrap())));
    let md = client.metadata(None).expect("metadata through the second address");
    assert!(!md.brokers.is_empty());
    client.close();
}

/// An address on which nothing listens.
fn refused_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr.to_string()
}

/// A refused connection, an unknown host and a silent peer each give a typed error within
/// the configured request timeout.
pub fn connection_failures_are_typed_and_timely<R: LiveRuntime>(rt: &R) {
    let timeout = Duration::from_secs(1);
    let slack = Duration::from_millis(1500);

    let client = rt.connect(config(&refused_address()).with_request_timeout(timeout));
    let started = Instant::now();
    let err = client.metadata(None).expect_err("nothing listens there");
    assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::Refused, .. }), "{err:?}");
    assert!(started.elapsed() <= timeout + slack, "took {:?}", started.elapsed());
    client.close();

    let client = rt.connect(config("no-such-host.invalid:9092").with_request_timeout(timeout));
    let started = Instant::now();
    let err = client.metadata(None).expect_err("host does not resolve");
    assert!(matches!(err, RequestError::Unreachable { cause: CloseCause::UnknownHost(_), .. }), "{err:?}");
    assert!(started.elapsed() <= timeout + slack, "took {:?}", started.elapsed());
    client.close();

    // A peer that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let done = Arc::new(AtomicBool::new(false));
    let holder_done = done.clone();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        silent.set_nonblocking(true).expect("nonblocking");
        let until = Instant::now() + timeout + slack + Duration::from_secs(1);
        while Instant::now() < until && !holder_done.load(Ordering::Relaxed) {
            if let Ok((mut s, _)) = silent.accept() {
                let mut buf = [0u8; 1024];
                s.set_nonblocking(true).ok();
                let _ = s.read(&mut buf);
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let client = rt.connect(config(&addr.to_string()).with_request_timeout(timeout));
    let started = Instant::now();
    let err = client.metadata(None).expect_err("the peer never answers");
    assert!(
        matches!(err, RequestError::Timeout(_) | RequestError::Unreachable { cause: CloseCause::Local(_), .. }),
        "{err:?}"
    );
    assert!(started.elapsed() <= timeout + slack, "took {:?}", started.elapsed());
    client.close();
    done.store(true, Ordering::Relaxed);
    let _ = holder.join();
}

/// Stops and restarts brokers of the cluster under test (from any thread: a restart may run
/// while the test keeps producing).
pub trait ClusterControl: Sync {
    /// Kills broker `id` (SIGKILL for a real broker).
    fn kill(&self, id: i32);
    /// Starts broker `id` again.
    fn start(&self, id: i32);
}

/// The 3-node cluster started by `conformance/kafka/kafka`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaScript;

impl KafkaScript {
    /// Runs `conformance/kafka/kafka ARGS` (the script that started the cluster).
    fn run(args: &[&str]) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka/kafka");
        let status = std::process::Command::new(script).args(args).status().expect("run conformance/kafka/kafka");
        assert!(status.success(), "kafka {args:?} failed");
    }
}

impl ClusterControl for KafkaScript {
    fn kill(&self, id: i32) {
        KafkaScript::run(&["kill-node", &id.to_string(), "--brokers", "3"]);
    }

    fn start(&self, id: i32) {
        KafkaScript::run(&["start-node", &id.to_string(), "--brokers", "3"]);
    }
}

impl ClusterControl for crate::fake_server::FakeServer {
    fn kill(&self, id: i32) {
        self.with_cluster(|c| c.stop_broker(id));
    }

    fn start(&self, id: i32) {
        self.with_cluster(|c| c.start_broker(id));
    }
}

/// A broker killed mid-run gives typed errors; once it is back, the same client reconnects
/// and succeeds. Needs a cluster of 3 brokers or more (so the rest stays up).
pub fn broker_killed_and_restarted<R: LiveRuntime>(rt: &R, control: &dyn ClusterControl) {
    let client = rt.connect(config(&bootstrap()).with_request_timeout(Duration::from_secs(3)));
    let md = client.metadata(None).expect("metadata");
    let victim = *md.brokers.keys().last().expect("a broker");
    let ping = || client.request(Target::Broker(victim), MetadataRequest::default().with_topics(Some(vec![])).into());
    assert!(ping().is_ok(), "broker {victim} answers before the crash");
    control.kill(victim.0);
    let err = ping().expect_err("the broker is down");
    // Which error depends on timing: the connection breaks, the reconnect fails, or metadata
    // fetched meanwhile no longer lists the broker (KRaft drops fenced brokers).
    assert!(
        matches!(
            err,
            RequestError::Disconnected { .. }
                | RequestError::Unreachable { .. }
                | RequestError::Timeout(_)
                | RequestError::UnknownBroker(_)
        ),
        "{err:?}"
    );
    // The rest of the cluster still answers.
    assert!(client.metadata(None).is_ok(), "metadata from the surviving brokers");
    control.start(victim.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ping() {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "broker {victim} never came back: {e:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    client.close();
}

/// Every scenario, against the cluster `KAFKA_BOOTSTRAP` names (`KAFKA_BROKERS` brokers;
/// crash tests when `KAFKA_CRASH_TESTS` is set).
pub fn run_all<R: LiveRuntime>(rt: &R) {
    run_all_with(rt, std::env::var_os("KAFKA_CRASH_TESTS").is_some());
}

/// [`run_all`] without the broker kills, for a second executor over an adapter whose crash
/// handling another executor's run has covered.
pub fn run_all_but_broker_kills<R: LiveRuntime>(rt: &R) {
    run_all_with(rt, false);
}

fn run_all_with<R: LiveRuntime>(rt: &R, crash: bool) {
    let brokers: usize = std::env::var("KAFKA_BROKERS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    // The 500,000 records through a leader crash; SANSA_CRASH_RECORDS overrides.
    let records = std::env::var("SANSA_CRASH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(500_000);
    run_scenarios(rt, brokers, crash.then_some(&KafkaScript as &dyn ClusterControl), records);
}

/// Every scenario against a cluster of `brokers` brokers at [`bootstrap`]; the crash tests run
/// when `control` can stop and start its brokers, producing `crash_records` records.
/// `SANSA_LIVE_ONLY` picks the scenarios whose name contains it.
pub fn run_scenarios<R: LiveRuntime>(rt: &R, brokers: usize, control: Option<&dyn ClusterControl>, crash_records: u64) {
    let replication = if brokers >= 3 { 3 } else { 1 };
    type Scenario<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let scenarios: Vec<Scenario<'_>> = vec![
        ("api_versions", Box::new(|| api_versions(rt))),
        ("metadata", Box::new(|| metadata(rt, brokers))),
        ("create_topic_then_metadata", Box::new(|| create_topic_then_metadata(rt, replication))),
        ("produce_then_fetch_byte_identical", Box::new(|| produce_then_fetch_byte_identical(rt, replication))),
        ("pipelined_requests", Box::new(|| pipelined_requests(rt))),
        ("first_bootstrap_address_dead", Box::new(|| first_bootstrap_address_dead(rt))),
        ("connection_failures_are_typed_and_timely", Box::new(|| connection_failures_are_typed_and_timely(rt))),
        ("producer_round_trip", Box::new(|| crate::live_producer::producer_round_trip(rt, replication))),
        ("producer_errors", Box::new(|| crate::live_producer::producer_errors(rt, replication))),
    ];
    let mut scenarios = scenarios;
    if let Some(control) = control.filter(|_| brokers >= 3) {
        scenarios.push(("broker_killed_and_restarted", Box::new(move || broker_killed_and_restarted(rt, control))));
        scenarios.push((
            "producer_survives_leader_kill",
            Box::new(move || crate::live_producer::producer_survives_leader_kill(rt, control, crash_records)),
        ));
    }
    let only = std::env::var("SANSA_LIVE_ONLY").ok();
    for (name, f) in scenarios {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let started = Instant::now();
        f();
        eprintln!("live scenario {name}: ok in {:?}", started.elapsed());
    }
}
