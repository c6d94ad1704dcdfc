//! The consumer through the runtimes' shared handle, against the fake cluster over loopback:
//! polls, the record stream and iterator, seeks, commits, and polls cancelled midway.

use std::time::Duration;

use std::future::Future;

use futures_core::Stream;
use sansa::consumer::{ConsumeError, OffsetSpec, TopicPartition};
use sansa::producer::ProducerRecord;
use sansa::Config;
use sansa_conformance::fake_cluster::FakeClusterConfig;
use sansa_conformance::fake_server::FakeServer;

fn server(topic: &str, partitions: i32, records: usize) -> FakeServer {
    let server = FakeServer::start(
        FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() },
        "127.0.0.1",
        None,
    )
    .expect("fake cluster listens");
    server.with_cluster(|c| c.create_topic(topic, partitions, 1));
    let producer =
        sansa_blocking::KafkaClient::connect(Config::new(server.bootstrap()).unwrap()).expect("producer starts");
    for i in 0..records {
        producer.send(ProducerRecord::new(topic, format!("v{i}")).with_key(format!("k{i}"))).unwrap();
    }
    producer.flush();
    producer.close();
    server
}

fn config(server: &FakeServer, extra: &[(&str, &str)]) -> Config {
    let mut props = vec![("bootstrap.servers", server.bootstrap()), ("auto.offset.reset", "earliest")];
    props.extend_from_slice(extra);
    Config::from_properties(props).expect("properties")
}

fn partitions(topic: &str, n: i32) -> Vec<TopicPartition> {
    (0..n).map(|p| TopicPartition::new(topic, p)).collect()
}

#[test]
fn a_blocking_iterator_reads_every_record_and_commits_its_positions() {
    let server = server("it", 3, 3000);
    let client = sansa_blocking::KafkaClient::connect(config(&server, &[("group.id", "g")])).unwrap();
    client.assign_blocking(partitions("it", 3)).unwrap();
    let mut per_partition = [0i64; 3];
    let mut seen = 0;
    for record in client.records(Duration::from_secs(5)) {
        let record = record.unwrap();
        assert_eq!(record.offset, per_partition[record.partition as usize], "in order, no gap");
        per_partition[record.partition as usize] += 1;
        seen += 1;
        if seen == 3000 {
            break;
        }
    }
    client.commit_blocking(None).unwrap();
    // A fresh consumer of the group starts where the first one stopped.
    let again = sansa_blocking::KafkaClient::connect(config(&server, &[("group.id", "g")])).unwrap();
    again.assign_blocking(partitions("it", 3)).unwrap();
    assert!(again.poll_blocking(100, Duration::from_millis(500)).unwrap().is_empty());
    let ends =
        again.list_offsets_blocking(partitions("it", 3).into_iter().map(|tp| (tp, OffsetSpec::Latest)).collect());
    let total: i64 = ends.unwrap().values().map(|o| o.unwrap().offset).sum();
    assert_eq!(total, 3000);
    client.close();
    again.close();
}

#[test]
fn a_tokio_stream_survives_cancelled_polls_without_losing_a_record() {
    let server = server("st", 2, 2000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = sansa_tokio::KafkaClient::connect(config(&server, &[("max.poll.records", "7")])).unwrap();
        client.assign(partitions("st", 2)).await.unwrap();
        let mut seen = [Vec::new(), Vec::new()];
        // Polls the driver answers but whose futures are dropped unread: what they took goes
        // back, and is fetched again.
        for _ in 0..20 {
            let mut poll = Box::pin(client.poll(7, Duration::from_secs(5)));
            std::future::poll_fn(|cx| {
                assert!(poll.as_mut().poll(cx).is_pending(), "submitted, not yet answered");
                std::task::Poll::Ready(())
            })
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(poll);
        }
        let mut stream = client.records(Duration::from_millis(200));
        while seen.iter().map(Vec::len).sum::<usize>() < 2000 {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
            let Ok(r) = tokio::time::timeout(Duration::from_secs(5), next).await else {
                panic!("stuck at {:?} records", seen.iter().map(Vec::len).collect::<Vec<_>>())
            };
            let r = r.expect("not closed").expect("no error");
            seen[r.partition as usize].push(r.offset);
        }
        for (p, offsets) in seen.iter().enumerate() {
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert_eq!(offsets, &expected, "partition {p}: every offset once, in order");
        }
        // A seek goes back; an unassigned partition is refused.
        client.seek(TopicPartition::new("st", 0), 0).await.unwrap();
        let first = client.poll(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!((first[0].partition, first[0].offset), (0, 0));
        let refused = client.seek(TopicPartition::new("st", 5), 0).await;
        assert!(matches!(refused, Err(ConsumeError::NotAssigned(_))));
        drop(stream);
        client.close().await;
    });
}

#[test]
fn a_group_member_reports_its_rebalances_and_waits_for_the_acknowledgement() {
    let server = server("rb", 4, 400);
    let props = [("group.id", "rb"), ("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500")];
    let a = sansa_blocking::KafkaClient::connect(config(&server, &props)).unwrap();
    let events = a.rebalances_blocking().unwrap();
    a.subscribe_blocking(vec!["rb".into()]).unwrap();
    let first = events.next_blocking().expect("an assignment");
    assert_eq!(first.assigned.len(), 4, "{first:?}");
    first.ack();
    let mut read = 0;
    while read < 400 {
        read += a.poll_blocking(500, Duration::from_secs(5)).unwrap().len();
    }
    // A second member joins: a is asked to give partitions up and acknowledges after a commit.
    let b = sansa_blocking::KafkaClient::connect(config(&server, &props)).unwrap();
    b.subscribe_blocking(vec!["rb".into()]).unwrap();
    let poller = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while b.assignment_blocking().map_or(0, |p| p.len()) == 0 && std::time::Instant::now() < deadline {
            let _ = b.poll_blocking(100, Duration::from_millis(200));
        }
        b.assignment_blocking().unwrap().len()
    });
    let revoke = loop {
        let e = events.next_blocking().expect("a revocation");
        if !e.revoked.is_empty() {
            break e;
        }
    };
    a.commit_blocking(None).unwrap();
    revoke.ack();
    let b_owned = poller.join().unwrap();
    assert!(b_owned > 0, "b got partitions once a acknowledged");
    a.close();
}
