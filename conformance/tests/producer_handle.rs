//! The producer through the runtimes' shared handle, against the fake cluster over loopback:
//! typed sends, callbacks, backpressure at `buffer.memory`, and close with a timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sansa::driver::TypedProducer;
use sansa::producer::{ProduceError, ProducerRecord};
use sansa::serialization::{BigEndian, Utf8};
use sansa::Config;
use sansa_blocking::KafkaClient;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;

fn server() -> FakeServer {
    FakeServer::start(
        FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() },
        "127.0.0.1",
        None,
    )
    .expect("fake cluster listens")
}

fn client(server: &FakeServer, extra: &[(&str, &str)]) -> KafkaClient {
    let mut props = vec![("bootstrap.servers", server.bootstrap())];
    props.extend_from_slice(extra);
    KafkaClient::connect(Config::from_properties(props).expect("properties")).expect("config")
}

#[test]
fn typed_sends_and_callbacks_reach_the_log() {
    let server = server();
    server.with_cluster(|c| c.create_topic("typed", 1, 1));
    let client = client(&server, &[]);
    let producer = TypedProducer::<i64, str, _, _>::new((*client).clone(), BigEndian, Utf8);
    let futures: Vec<_> =
        (0..100i64).map(|i| producer.send_blocking("typed", Some(&i), Some(&format!("v{i}"))).unwrap()).collect();
    let called = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&called);
    client
        .send_with_callback_blocking(ProducerRecord::new("typed", "last"), move |r| {
            assert!(r.is_ok());
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let offsets: Vec<i64> = futures.into_iter().map(|f| f.wait().unwrap().offset.unwrap()).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<_>>());
    client.flush();
    assert_eq!(called.load(Ordering::SeqCst), 1, "the callback ran before flush returned");
    let log: Vec<_> = server.with_cluster(|c| c.partition_log("typed", 0).unwrap().collect());
    assert_eq!(log.len(), 101);
    assert_eq!(log[7].key.as_deref(), Some(&7i64.to_be_bytes()[..]));
    assert_eq!(log[7].value.as_deref(), Some(&b"v7"[..]));
    client.close();
}

#[test]
fn a_full_buffer_blocks_the_sender_then_fails_after_max_block() {
    let server = server();
    server.with_cluster(|c| {
        c.create_topic("stuck", 1, 1);
        c.set_partition_offline("stuck", 0).unwrap();
    });
    let client = client(&server, &[("buffer.memory", "20000"), ("max.block.ms", "300"), ("linger.ms", "0")]);
    let mut taken = 0;
    let started = Instant::now();
    let error = loop {
        match client.send(ProducerRecord::new("stuck", vec![b'x'; 1000])) {
            Ok(_) => taken += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(error, ProduceError::BufferExhausted { .. }), "{error:?}");
    assert!((15..=20).contains(&taken), "{taken} records fit in 20000 bytes");
    assert!(started.elapsed() >= Duration::from_millis(300), "the send waited for room");
    // A record larger than the whole buffer fails at once.
    let too_big = client.send(ProducerRecord::new("stuck", vec![b'x'; 30_000]));
    assert!(matches!(too_big, Err(ProduceError::RecordTooLarge { setting: "buffer.memory", .. })));
    client.close_within(Duration::from_millis(200));
}

#[test]
fn close_within_fails_what_cannot_be_delivered_in_time() {
    let server = server();
    server.with_cluster(|c| {
        c.create_topic("offline", 1, 1);
        c.set_partition_offline("offline", 0).unwrap();
    });
    let client = client(&server, &[]);
    let futures: Vec<_> =
        (0..10).map(|i| client.send(ProducerRecord::new("offline", format!("{i}"))).unwrap()).collect();
    let started = Instant::now();
    client.close_within(Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    for f in futures {
        assert_eq!(f.wait_timeout(Duration::from_secs(1)), Some(Err(ProduceError::Closed)));
    }
    let after = client.send(ProducerRecord::new("offline", "late"));
    assert!(matches!(after.map(|f| f.wait()), Ok(Err(ProduceError::Closed)) | Err(ProduceError::Closed)));
}
