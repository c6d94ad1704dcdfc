//! `sansa produce` and `sansa perf produce` as a user runs them: the built binary against a
//! fake cluster served over loopback in this process, with the records read back from the
//! cluster's logs.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sansa_conformance::fake_cluster::{FakeClusterConfig, StoredRecord};
use sansa_conformance::fake_server::FakeServer;

/// A run that takes longer is stuck.
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn sansa(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sansa"));
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Waits for `child` (killing it past [`RUN_LIMIT`]) while draining its output.
fn finish(mut child: Child) -> Run {
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for sansa") {
            break status;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("sansa ran past {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run { status, stdout: out.join().expect("stdout reader"), stderr: err.join().expect("stderr reader") }
}

/// Runs sansa with `input` on stdin (then closed).
fn run(args: &[&str], input: &str) -> Run {
    let mut child = sansa(args).spawn().expect("start sansa");
    let mut stdin = child.stdin.take().expect("stdin piped");
    // A sansa that refuses its arguments may exit before reading: a broken pipe is fine then.
    if let Err(e) = stdin.write_all(input.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(stdin);
    finish(child)
}

fn server_with(topics: &[(&str, i32)]) -> FakeServer {
    let server = FakeServer::start(FakeClusterConfig::default(), "127.0.0.1", None).expect("fake cluster");
    server.with_cluster(|c| {
        for (name, partitions) in topics {
            c.create_topic(name, *partitions, 1);
        }
    });
    server
}

fn log(server: &FakeServer, topic: &str, partition: i32) -> Vec<StoredRecord> {
    server.with_cluster(|c| c.partition_log(topic, partition).expect("partition exists").collect())
}

fn text(b: &Option<bytes::Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

#[test]
fn produce_sends_keys_values_and_headers_and_counts_bad_lines() {
    let server = server_with(&[("orders", 3)]);
    let r = run(
        &[
            "produce",
            "-b",
            server.bootstrap(),
            "-t",
            "orders",
            "-k",
            "::",
            "-H",
            "src=cli",
            "-H",
            "src=again",
            "-H",
            "empty=",
            "-p",
            "1",
        ],
        "k1::v1\nk2::v::2\r\nno separator\n::\nk3::last",
    );
    assert_eq!(r.status.code(), Some(1), "one line failed: {}", r.stderr);
    assert!(r.stderr.contains("4 records produced to orders, 1 failed"), "{}", r.stderr);
    assert!(r.stderr.contains("line 3 has no key separator \"::\""), "{}", r.stderr);
    assert!(r.stderr.contains("error: 1 of 5 records failed"), "{}", r.stderr);
    let records = log(&server, "orders", 1);
    let got: Vec<(Option<String>, Option<String>)> = records.iter().map(|r| (text(&r.key), text(&r.value))).collect();
    let kv = |k: &str, v: &str| (Some(k.to_string()), Some(v.to_string()));
    assert_eq!(got, vec![kv("k1", "v1"), kv("k2", "v::2"), kv("", ""), kv("k3", "last")]);
    for r in &records {
        let headers: Vec<(String, Option<String>)> =
            r.headers.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), text(v))).collect();
        let h = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        assert_eq!(headers, vec![h("src", "cli"), h("src", "again"), h("empty", "")]);
    }
    assert!(log(&server, "orders", 0).is_empty() && log(&server, "orders", 2).is_empty());
}

#[test]
fn produce_of_plain_lines_succeeds() {
    let server = server_with(&[("plain", 3)]);
    let input: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let r = run(&["produce", "-b", server.bootstrap(), "-t", "plain", "-X", "acks=1", "-X", "linger.ms=1"], &input);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stderr, "100 records produced to plain, 0 failed\n");
    let mut values: Vec<String> =
        (0..3).flat_map(|p| log(&server, "plain", p)).map(|r| text(&r.value).unwrap_or_default()).collect();
    values.sort_by_key(|v| v[5..].parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(values, (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>());
}

#[test]
fn produce_to_a_missing_partition_fails_every_record() {
    let server = server_with(&[("small", 2)]);
    let r = run(&["produce", "-b", server.bootstrap(), "-t", "small", "-p", "7"], "a\nb\nc\n");
    assert_eq!(r.status.code(), Some(1));
    assert!(r.stderr.contains("0 records produced to small, 3 failed"), "{}", r.stderr);
    assert!(r.stderr.contains("3 x partition 7 is not in the range [0, 2) of topic small"), "{}", r.stderr);
    assert!(r.stderr.contains("error: 3 of 3 records failed"), "{}", r.stderr);
}

#[test]
fn produce_refuses_a_bad_property_before_sending() {
    let server = server_with(&[("t", 1)]);
    let r = run(&["produce", "-b", server.bootstrap(), "-t", "t", "-X", "acks=most"], "a\n");
    assert_eq!(r.status.code(), Some(2));
    assert!(r.stderr.contains("acks"), "{}", r.stderr);
    let r = run(&["produce", "-b", server.bootstrap(), "-t", "t", "-X", "acks"], "a\n");
    assert_eq!(r.status.code(), Some(2), "not name=value: {}", r.stderr);
    assert!(log(&server, "t", 0).is_empty());
}

#[test]
fn produce_sends_each_line_as_it_arrives() {
    let server = server_with(&[("live", 1)]);
    let mut child =
        sansa(&["produce", "-b", server.bootstrap(), "-t", "live", "-X", "linger.ms=0"]).spawn().expect("start sansa");
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin.write_all(b"first\n").expect("write");
    stdin.flush().expect("flush");
    // The record lands while stdin is still open.
    let start = Instant::now();
    while log(&server, "live", 0).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "the first line was not sent before EOF");
        thread::sleep(Duration::from_millis(20));
    }
    stdin.write_all(b"second\n").expect("write");
    drop(stdin);
    let r = finish(child);
    assert!(r.status.success(), "{}", r.stderr);
    let values: Vec<_> = log(&server, "live", 0).iter().map(|r| text(&r.value)).collect();
    assert_eq!(values, vec![Some("first".to_string()), Some("second".to_string())]);
}

/// Checks the perf-test's final line and `cpu:` line; returns the count it reports.
fn final_count(stdout: &str) -> u64 {
    let lines: Vec<&str> = stdout.lines().collect();
    let (last, cpu) = match lines.as_slice() {
        [.., last, cpu] => (*last, *cpu),
        _ => panic!("no final lines in {stdout:?}"),
    };
    assert!(cpu.starts_with("cpu: ") && cpu.ends_with(" s per million records"), "{cpu}");
    for part in ["records/sec (", "MB/sec), ", "ms avg latency, ", "ms max latency, ", "ms 50th, ", "ms 95th, "] {
        assert!(last.contains(part), "{part:?} missing from {last}");
    }
    assert!(last.ends_with(" ms 99.9th."), "{last}");
    last.split(' ').next().and_then(|n| n.parse().ok()).expect("count first")
}

#[test]
fn perf_produce_sends_javas_payloads() {
    let server = server_with(&[("perf", 3)]);
    let dir = std::env::temp_dir().join(format!("sansa-perf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("producer.properties");
    std::fs::write(&config, "# as Kafka's config files\nacks = 1\n! linger.ms=100\ncompression.type:lz4\n")
        .expect("write");
    let r = run(
        &[
            "perf",
            "produce",
            "--topic",
            "perf",
            "--num-records",
            "3000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer.config",
            config.to_str().expect("utf-8 path"),
            "--producer-props",
            "linger.ms=2",
            "batch.size=8192",
            "--bootstrap-server",
            server.bootstrap(),
        ],
        "",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(r.status.success(), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(final_count(&r.stdout), 3000, "{}", r.stdout);
    let records: Vec<StoredRecord> = (0..3).flat_map(|p| log(&server, "perf", p)).collect();
    assert_eq!(records.len(), 3000);
    let mut values: Vec<&[u8]> = records.iter().map(|r| r.value.as_deref().expect("a value")).collect();
    assert!(values.iter().all(|v| v.len() == 100 && v.iter().all(u8::is_ascii_uppercase)));
    // The first record sent is the first of some partition: Java's first 64 payload bytes.
    let first = b"YQHHNEBSEPDNSEIFGAMSUJXKOLTXSPLGHDIOYZJFNIDSPWHZMKVJAXDBZFCOXYKY";
    assert!(
        (0..3).any(|p| log(&server, "perf", p)
            .first()
            .and_then(|r| r.value.clone())
            .is_some_and(|v| v.starts_with(first))),
        "no partition starts with Java's payload"
    );
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 3000, "every record has fresh bytes");
}

#[test]
fn perf_produce_throttles_to_the_given_rate() {
    let server = server_with(&[("slow", 1)]);
    let start = Instant::now();
    let r = run(
        &[
            "perf",
            "produce",
            "--topic",
            "slow",
            "--num-records",
            "40",
            "--record-size",
            "10",
            "--throughput",
            "100",
            "--producer-props",
            &format!("bootstrap.servers={}", server.bootstrap()),
        ],
        "",
    );
    let took = start.elapsed();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(final_count(&r.stdout), 40);
    // 39 intervals of 10 ms after the first record.
    assert!(took >= Duration::from_millis(390), "40 records at 100/s took {took:?}");
    assert_eq!(log(&server, "slow", 0).len(), 40);
}

#[test]
fn perf_produce_exits_non_zero_with_the_failed_count() {
    let server = server_with(&[]);
    let r = run(
        &[
            "perf",
            "produce",
            "--topic",
            "absent",
            "--num-records",
            "25",
            "--record-size",
            "10",
            "--throughput",
            "-1",
            "--bootstrap-server",
            server.bootstrap(),
            "--producer-props",
            "max.block.ms=300",
            "allow.auto.create.topics=false",
        ],
        "",
    );
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert_eq!(final_count(&r.stdout), 0);
    assert!(r.stderr.contains("error: 25 of 25 records failed"), "{}", r.stderr);
    assert!(r.stderr.contains("topic absent not present in metadata"), "{}", r.stderr);
    let r =
        run(&["perf", "produce", "--topic", "t", "--num-records", "1", "--record-size", "1", "--throughput", "-1"], "");
    assert_eq!(r.status.code(), Some(2), "no bootstrap servers: {}", r.stderr);
    assert!(r.stderr.contains("bootstrap.servers"), "{}", r.stderr);
}
