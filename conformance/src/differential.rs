//! The differential test: one script of requests runs against real Kafka and against the fake
//! cluster, and the answers are compared field by field.
//!
//! Each probe sends requests through a [`LiveClient`] (building later requests from earlier
//! answers: leaders, member ids, offsets) and records every answer as JSON. Fields that differ
//! between any two clusters by nature (ids, hosts, ports, timestamps, error message texts) are
//! masked before the comparison. What remains must be equal, except for the deliberate
//! differences listed in [`KNOWN_DIFFERENCES`], each with its reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use sansa::protocol::messages::create_partitions::request::CreatePartitionsTopic;
use sansa::protocol::messages::create_topics::request::CreatableTopic;
use sansa::protocol::messages::delete_records::request::{DeleteRecordsPartition, DeleteRecordsTopic};
use sansa::protocol::messages::delete_topics::request::DeleteTopicState;
use sansa::protocol::messages::describe_configs::request::DescribeConfigsResource;
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::join_group::request::JoinGroupRequestProtocol;
use sansa::protocol::messages::leave_group::request::MemberIdentity;
use sansa::protocol::messages::list_offsets::request::{ListOffsetsPartition, ListOffsetsTopic};
use sansa::protocol::messages::metadata::request::MetadataRequestTopic;
use sansa::protocol::messages::offset_commit::request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use sansa::protocol::messages::offset_fetch::request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use sansa::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
use sansa::protocol::messages::sync_group::request::SyncGroupRequestAssignment;
use sansa::protocol::messages::*;
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder};
use sansa::protocol::{ApiKey, BrokerId, Codec, GroupId, ProducerId, RequestBody, ResponseBody, StrBytes, TopicName};
use sansa::{RequestError, Target};

use crate::fake_cluster::IMPLEMENTED_APIS;
use crate::live::LiveClient;

/// A difference the fake cluster keeps on purpose: answers at paths starting with `path`
/// may differ, for `reason`.
#[derive(Debug, Clone, Copy)]
pub struct KnownDifference {
    /// `probe/step` then the JSON path, as in [`Difference::path`]; a prefix, where `*` stands
    /// for one path segment (a topic name, say).
    pub path: &'static str,
    /// Why the fake cluster differs there.
    pub reason: &'static str,
}

/// The deliberate differences between the fake cluster and Kafka 4.3 that the probes see.
pub const KNOWN_DIFFERENCES: &[KnownDifference] = &[
    KnownDifference {
        path: "transactions/fetch_read_uncommitted_records",
        reason: "Kafka 4.3 answered a read_uncommitted fetch from offset 0 with the transactional batch \
                 only, though its high watermark already covered the abort marker (the marker comes in \
                 the next fetch); the fake cluster returns both batches at once",
    },
    KnownDifference {
        path: "consumer_group/join.body.member_epoch",
        reason: "epochs count differently: Kafka 4.3 bumps the group epoch twice when the first member \
                 subscribes to topics, the fake cluster once; clients only echo epochs back",
    },
    KnownDifference {
        path: "consumer_group/heartbeat.body.member_epoch",
        reason: "epochs count differently (see consumer_group/join)",
    },
    KnownDifference {
        path: "api_versions/ranges.Produce[0]",
        reason: "Kafka 4 still advertises Produce from v0 for old clients; sansa's codecs, generated from \
                 the 4.x specs, start at v3, so the fake cluster advertises what it can decode",
    },
    KnownDifference {
        path: "fetch/from_follower.body.responses[0].partitions.0.high_watermark",
        reason: "replication is instant in the fake cluster: a follower's high watermark never lags",
    },
    KnownDifference {
        path: "fetch/from_follower.body.responses[0].partitions.0.last_stable_offset",
        reason: "replication is instant in the fake cluster: a follower's high watermark never lags",
    },
    KnownDifference {
        path: "admin/describe_log_dirs.body.results[0].topics.*.partitions.0.partition_size",
        reason: "DeleteRecords frees a partition's space at once; Kafka frees it when whole segments \
                 fall below the log start offset",
    },
    KnownDifference {
        path: "consumer_group/join.body.heartbeat_interval_ms",
        reason: "test.sh starts Kafka with group.consumer.heartbeat.interval.ms=1000 so the live \
                 suite sees KIP-848 members come and go in seconds; the fake cluster keeps \
                 Kafka's default of 5000",
    },
    KnownDifference {
        path: "consumer_group/heartbeat.body.heartbeat_interval_ms",
        reason: "test.sh starts Kafka with group.consumer.heartbeat.interval.ms=1000 (see \
                 consumer_group/join)",
    },
    KnownDifference {
        path: "topics/create.body.topics.*.configs.min.insync.replicas",
        reason: "the test cluster sets min.insync.replicas=2 as a broker default; the fake cluster \
                 runs with Kafka's built-in default of 1",
    },
];

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `probe/step` and the JSON path of the field, e.g. `produce/first.responses[0]...`.
    pub path: String,
    /// The value from real Kafka.
    pub real: String,
    /// The value from the fake cluster.
    pub fake: String,
}

/// Field names masked before comparing: values that differ between any two clusters.
const MASKED: &[&str] = &[
    "throttle_time_ms",
    "topic_id",
    "host",
    "port",
    "node_id",
    "leader_id",
    "leader",
    "controller_id",
    "cluster_id",
    "member_id",
    "error_message",
    "producer_id",
    "timestamp",
    "log_append_time_ms",
    "records",
    "replica_nodes",
    "isr_nodes",
    "offline_replicas",
    "cluster_authorized_operations",
    "topic_authorized_operations",
    "authorized_operations",
    "client_host",
    "current_leader",
    "node_endpoints",
    "session_id",
    "unknown_tagged_fields",
    "documentation",
    "synonyms",
    "leader_epoch",
    "brokers",
    "coordinators",
    "log_dir",
    "total_bytes",
    "usable_bytes",
];

/// The probes' answers, by `probe/step`, masked.
pub type Answers = BTreeMap<String, Value>;

/// Runs every probe against the cluster `client` talks to. `suffix` makes topic and group
/// names unique (the same suffix for both clusters keeps the answers comparable).
pub fn run_probes<C: LiveClient>(client: &C, suffix: &str) -> Answers {
    let mut p = Probe { client, answers: Answers::new(), probe: "" };
    let topic = format!("sansa-diff-{suffix}");
    p.api_versions();
    p.topics(&topic, suffix);
    let leader = p.leader(&topic, 0);
    p.produce_fetch_list(&topic, leader);
    p.idempotence(&topic);
    p.groups(&topic, suffix);
    p.static_member(&topic, suffix);
    p.consumer_group(&topic, suffix);
    p.transactions(&topic, suffix);
    p.fetch_sessions(&topic, leader);
    p.admin(&topic, leader);
    p.answers
}

/// Field-by-field differences between two probe runs.
pub fn differences(real: &Answers, fake: &Answers) -> Vec<Difference> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = real.keys().chain(fake.keys()).collect();
    for key in keys {
        let null = Value::Null;
        diff_values(key, real.get(key).unwrap_or(&null), fake.get(key).unwrap_or(&null), &mut out);
    }
    out
}

/// The differences not explained by [`KNOWN_DIFFERENCES`].
pub fn unexplained(diffs: &[Difference]) -> Vec<&Difference> {
    diffs.iter().filter(|d| known(&d.path).is_none()).collect()
}

/// The known difference covering `path`, if any.
pub fn known(path: &str) -> Option<&'static KnownDifference> {
    KNOWN_DIFFERENCES.iter().find(|k| prefix_matches(k.path, path))
}

/// Whether `pattern` (with `*` for one segment, up to the next '.') is a prefix of `path`.
fn prefix_matches(pattern: &str, path: &str) -> bool {
    let mut rest = path;
    for (i, piece) in pattern.split('*').enumerate() {
        if i > 0 {
            // Skip one segment.
            rest = &rest[rest.find('.').unwrap_or(rest.len())..];
        }
        match rest.strip_prefix(piece) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    true
}

/// A Markdown report: every difference, explained or not.
pub fn report(diffs: &[Difference], probes: usize) -> String {
    let mut s = format!("# Differential test: Kafka 4.3 vs the fake cluster\n\n{probes} answers compared.\n\n");
    if diffs.is_empty() {
        s.push_str("No differences.\n");
    }
    for d in diffs {
        let why = known(&d.path).map_or("UNEXPLAINED".to_string(), |k| format!("known: {}", k.reason));
        s.push_str(&format!("- `{}`: real {} / fake {} ({why})\n", d.path, d.real, d.fake));
    }
    s
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_values(&format!("{path}.{k}"), x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a == b => {}
        _ => out.push(Difference { path: path.to_string(), real: short(a), fake: short(b) }),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!("{}…", &s[..s.char_indices().take_while(|(i, _)| *i < 117).last().map_or(0, |(i, c)| i + c.len_utf8())])
    } else {
        s
    }
}

/// Masks volatile fields, recursively. Negative ids (-1: none) are kept, since "none" versus
/// "some broker" is observable and comparable.
fn mask(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    if k == "error_message" && v.as_str() == Some("") {
                        // Clients read an empty message and a null one alike.
                        (k, Value::Null)
                    } else if MASKED.contains(&k.as_str()) {
                        let keep = matches!(&v, Value::Number(n) if n.as_i64().is_some_and(|n| n < 0))
                            || v.is_null()
                            || matches!(&v, Value::String(s) if s.is_empty());
                        let masked = if keep { v } else { Value::String("<masked>".into()) };
                        (k, masked)
                    } else {
                        (k, mask(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => keyed(a.into_iter().map(mask).collect()),
        other => other,
    }
}

/// Lists of named entries (configs, topics) or partitions become maps keyed by name or
/// partition index: brokers list them in an unspecified order (Kafka's come from hash maps), and
/// a keyed path such as `configs.retention.ms.value` reads better in a report.
fn keyed(items: Vec<Value>) -> Value {
    let key_of =
        |v: &Value, field: &str| v.get(field).filter(|k| k.is_string() || k.is_number()).map(|k| k.to_string());
    for field in ["partition_index", "name"] {
        let keys: Option<Vec<String>> = items.iter().map(|v| key_of(v, field)).collect();
        if let Some(keys) = keys {
            let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
            if !items.is_empty() && unique.len() == keys.len() {
                let map = keys.into_iter().map(|k| (k.trim_matches('"').to_string(), Value::Null)).zip(items);
                return Value::Object(map.map(|((k, _), v)| (k, v)).collect());
            }
        }
    }
    Value::Array(items)
}

struct Probe<'a, C: LiveClient> {
    client: &'a C,
    answers: Answers,
    probe: &'static str,
}

impl<C: LiveClient> Probe<'_, C> {
    /// Sends one request and records its masked answer under `step`; returns the raw answer.
    fn call(&mut self, step: &str, target: Target, body: impl Into<RequestBody>) -> Option<ResponseBody> {
        let body = body.into();
        let key = format!("{}/{step}", self.probe);
        // Like any client, wait out a coordinator that is moving or loading (a fresh cluster
        // creates its offsets and transaction topics on first use).
        let mut answer = self.client.request(target.clone(), body.clone());
        for _ in 0..40 {
            let moving = matches!(&answer, Ok(r) if r.body.as_ref().and_then(ResponseBody::error_code).is_some_and(|c| matches!(
                c,
                ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable | ErrorCode::CoordinatorLoadInProgress
            )));
            if !moving {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            answer = self.client.request(target.clone(), body.clone());
        }
        match answer {
            Ok(r) => {
                let value = match &r.body {
                    Some(b) => mask(body_json(b)),
                    None => Value::String("no response body".into()),
                };
                self.answers.insert(key, json!({ "version": r.version, "body": value }));
                r.body
            }
            Err(e) => {
                self.answers.insert(key, json!({ "error": error_kind(&e) }));
                None
            }
        }
    }

    /// InitProducerId as step `init`, retried while Kafka answers a retriable error (the first
    /// producer id of a fresh cluster waits for the transaction state to load).
    fn init_producer_id(&mut self, target: Target, init: InitProducerIdRequest) -> Option<InitProducerIdResponse> {
        for _ in 0..40 {
            match self.call("init", target.clone(), init.clone()) {
                Some(ResponseBody::InitProducerId(r)) if r.error_code.is_retriable() => {
                    std::thread::sleep(Duration::from_millis(250))
                }
                Some(ResponseBody::InitProducerId(r)) => return Some(r),
                _ => return None,
            }
        }
        None
    }

    fn note(&mut self, step: &str, value: Value) {
        self.answers.insert(format!("{}/{step}", self.probe), value);
    }

    fn api_versions(&mut self) {
        self.probe = "api_versions";
        let versions = match self.client.check_version(Target::AnyBroker) {
            Ok(v) => v,
            Err(e) => return self.note("ranges", json!({ "error": error_kind(&e) })),
        };
        let mut ranges = serde_json::Map::new();
        for api in IMPLEMENTED_APIS {
            let r = versions.api_versions.get(api.as_i16());
            ranges.insert(api.name().to_string(), r.map_or(Value::Null, |r| json!([r.min, r.max])));
        }
        self.note("ranges", Value::Object(ranges));
    }

    fn topics(&mut self, topic: &str, suffix: &str) {
        self.probe = "topics";
        let create = |name: &str, partitions: i32, rf: i16| {
            CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
                .with_name(TopicName::from(name))
                .with_num_partitions(partitions)
                .with_replication_factor(rf)])
        };
        self.call("create", Target::Controller, create(topic, 3, 3));
        self.wait_for_leaders(topic, 3);
        self.call("create_again", Target::Controller, create(topic, 3, 3));
        self.call("zero_partitions", Target::Controller, create(&format!("sansa-diff-zero-{suffix}"), 0, 3));
        self.call("too_many_replicas", Target::Controller, create(&format!("sansa-diff-rf-{suffix}"), 1, 4));
        self.call("bad_name", Target::Controller, create("sansa diff bad name!", 1, 3));
        let md = |names: &[&str], auto: bool| {
            MetadataRequest::default().with_allow_auto_topic_creation(auto).with_topics(Some(
                names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(TopicName::from(*n)))).collect(),
            ))
        };
        self.call("metadata", Target::AnyBroker, md(&[topic], false));
        self.call("metadata_missing", Target::AnyBroker, md(&[&format!("sansa-diff-missing-{suffix}")], false));
    }

    fn wait_for_leaders(&mut self, topic: &str, partitions: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(md) = self.client.metadata(Some(vec![TopicName::from(topic)])) {
                if md.topic(topic).is_some_and(|t| {
                    t.partitions.len() == partitions && t.partitions.iter().all(|p| p.leader.is_some())
                }) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn leader(&self, topic: &str, partition: i32) -> BrokerId {
        let md = self.client.metadata(Some(vec![TopicName::from(topic)])).expect("metadata");
        md.topic(topic)
            .and_then(|t| t.partitions.iter().find(|p| p.index == partition))
            .and_then(|p| p.leader)
            .expect("a leader")
    }

    fn follower(&self, topic: &str, partition: i32) -> BrokerId {
        let md = self.client.metadata(Some(vec![TopicName::from(topic)])).expect("metadata");
        let p = md.topic(topic).and_then(|t| t.partitions.iter().find(|p| p.index == partition)).expect("partition");
        *p.replicas.iter().find(|r| Some(**r) != p.leader).expect("a follower")
    }

    fn produce_request(&self, topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
        // Produce v13 names topics by id; the client picks v13 on both clusters.
        let id =
            self.client.metadata(Some(vec![TopicName::from(topic)])).ok().and_then(|md| md.topic(topic).map(|t| t.id));
        let data = TopicProduceData::default()
            .with_name(TopicName::from(topic))
            .with_topic_id(id.unwrap_or_default())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))]);
        ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![data])
    }

    fn fetch_request(&self, topic: &str, partition: i32, offset: i64) -> FetchRequest {
        let id =
            self.client.metadata(Some(vec![TopicName::from(topic)])).ok().and_then(|md| md.topic(topic).map(|t| t.id));
        FetchRequest::default().with_max_wait_ms(100).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName::from(topic))
                .with_topic_id(id.unwrap_or_default())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)]),
        ])
    }

    fn list_offsets(&mut self, step: &str, topic: &str, leader: BrokerId, timestamp: i64) -> Option<(i64, i64)> {
        let req =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName::from(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        match self.call(step, Target::Broker(leader), req) {
            Some(ResponseBody::ListOffsets(r)) => {
                r.topics.first().and_then(|t| t.partitions.first()).map(|p| (p.offset, p.timestamp))
            }
            _ => None,
        }
    }

    fn produce_fetch_list(&mut self, topic: &str, leader: BrokerId) {
        self.probe = "produce";
        let base_ts = 1_700_000_000_000i64;
        for (step, n, ts) in [("first", 2, base_ts), ("second", 3, base_ts + 10_000), ("third", 1, base_ts + 5_000)] {
            let req = self.produce_request(topic, 0, -1, batch(n, ts, None));
            self.call(step, Target::Broker(leader), req);
        }
        let follower = self.follower(topic, 0);
        let req = self.produce_request(topic, 0, -1, batch(1, base_ts, None));
        self.call("to_follower", Target::Broker(follower), req);
        let req = self.produce_request(topic, 99, -1, batch(1, base_ts, None));
        self.call("unknown_partition", Target::Broker(leader), req);
        let req = self.produce_request(topic, 0, 2, batch(1, base_ts, None));
        self.call("acks_2", Target::Broker(leader), req);
        let mut corrupt = BytesMut::from(&batch(1, base_ts, None)[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let req = self.produce_request(topic, 0, -1, corrupt.freeze());
        self.call("corrupt", Target::Broker(leader), req);

        self.probe = "fetch";
        for (step, offset) in [("from_0", 0), ("from_3", 3), ("at_end", 6)] {
            let req = self.fetch_request(topic, 0, offset);
            let body = self.call(step, Target::Broker(leader), req);
            if let Some(ResponseBody::Fetch(f)) = body {
                let records = f.responses.first().and_then(|t| t.partitions.first()).and_then(|p| p.records.clone());
                self.note(&format!("{step}_records"), records_json(records));
            }
        }
        let req = self.fetch_request(topic, 0, 100);
        self.call("out_of_range", Target::Broker(leader), req);
        let req = self.fetch_request(topic, 0, 0);
        self.call("from_follower", Target::Broker(follower), req);

        self.probe = "list_offsets";
        self.list_offsets("earliest", topic, leader, -2);
        self.list_offsets("latest", topic, leader, -1);
        self.list_offsets("max_timestamp", topic, leader, -3);
        self.list_offsets("by_time", topic, leader, base_ts + 1);
        self.list_offsets("by_time_after_all", topic, leader, base_ts + 1_000_000);
    }

    fn idempotence(&mut self, topic: &str) {
        self.probe = "idempotence";
        let init = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        // The first producer id of a fresh cluster may need retries while Kafka loads its
        // transaction state; a client retries retriable errors.
        let Some(r) = self.init_producer_id(Target::AnyBroker, init.clone()) else { return };
        self.call(
            "init_empty_transactional_id",
            Target::AnyBroker,
            init.clone().with_transactional_id(Some(sansa::protocol::TransactionalId::from(""))),
        );
        let pid = (r.producer_id.0, r.producer_epoch);
        let req = self.produce_request(topic, 1, -1, batch(2, 1_700_000_000_000, Some((pid.0, pid.1, 0))));
        let leader1 = self.leader(topic, 1);
        self.call("seq_0", Target::Broker(leader1), req.clone());
        self.call("duplicate", Target::Broker(leader1), req);
        let req = self.produce_request(topic, 1, -1, batch(1, 1_700_000_000_000, Some((pid.0, pid.1, 2))));
        self.call("seq_2", Target::Broker(leader1), req);
        let req = self.produce_request(topic, 1, -1, batch(1, 1_700_000_000_000, Some((pid.0, pid.1, 7))));
        self.call("gap", Target::Broker(leader1), req);
        if pid.1 > 0 {
            let req = self.produce_request(topic, 1, -1, batch(1, 1_700_000_000_000, Some((pid.0, pid.1 - 1, 3))));
            self.call("old_epoch", Target::Broker(leader1), req);
        }
    }

    fn groups(&mut self, topic: &str, suffix: &str) {
        self.probe = "groups";
        let group = GroupId::from(format!("sansa-diff-group-{suffix}").as_str());
        let target = Target::GroupCoordinator(group.clone());
        let topic_id = self.topic_id(topic);
        let find = if self.max_version(ApiKey::FindCoordinator) >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from(group.as_str())])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from(group.as_str()))
        };
        self.call("find_coordinator", Target::AnyBroker, find);
        let join = |member: &str| join_request(&group, topic, member, None);
        let member = match self.call("join_without_id", target.clone(), join("")) {
            Some(ResponseBody::JoinGroup(r)) => r.member_id.as_str().to_string(),
            _ => String::new(),
        };
        let generation = match self.call("join", target.clone(), join(&member)) {
            Some(ResponseBody::JoinGroup(r)) => r.generation_id,
            _ => -1,
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(generation)
            .with_member_id(StrBytes::from(member.as_str()))
            .with_protocol_type(Some(StrBytes::from("consumer")))
            .with_protocol_name(Some(StrBytes::from("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from(member.as_str()))
                .with_assignment(assignment(topic))]);
        self.call("sync", target.clone(), sync);
        let heartbeat = |generation: i32| {
            HeartbeatRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(generation)
                .with_member_id(StrBytes::from(member.as_str()))
        };
        self.call("heartbeat", target.clone(), heartbeat(generation));
        self.call("heartbeat_bad_generation", target.clone(), heartbeat(generation + 5));
        let by_id = self.max_version(ApiKey::OffsetCommit) >= 10;
        let commit = |generation: i32, offset: i64| {
            let t = OffsetCommitRequestTopic::default().with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from("meta")))]);
            let t = if by_id { t.with_topic_id(topic_id) } else { t.with_name(TopicName::from(topic)) };
            OffsetCommitRequest::default()
                .with_group_id(group.clone())
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(StrBytes::from(member.as_str()))
                .with_topics(vec![t])
        };
        self.call("commit", target.clone(), commit(generation, 4));
        self.call("commit_bad_generation", target.clone(), commit(generation + 5, 5));
        let fetch_version = self.max_version(ApiKey::OffsetFetch);
        self.call("offset_fetch", target.clone(), offset_fetch(fetch_version, &group, topic, topic_id, &[0, 1]));
        self.call("describe", target.clone(), DescribeGroupsRequest::default().with_groups(vec![group.clone()]));
        let leave = LeaveGroupRequest::default().with_group_id(group.clone());
        let leave = if self.max_version(ApiKey::LeaveGroup) >= 3 {
            leave.with_members(vec![MemberIdentity::default().with_member_id(StrBytes::from(member.as_str()))])
        } else {
            leave.with_member_id(StrBytes::from(member.as_str()))
        };
        self.call("leave", target.clone(), leave);
        let describe = DescribeGroupsRequest::default().with_groups(vec![group.clone()]);
        self.call("describe_after_leave", target.clone(), describe);
        let coordinator = Target::Broker(self.coordinator(&group));
        let listed = match self.client.request(coordinator, ListGroupsRequest::default().into()) {
            Ok(r) => match r.body {
                Some(ResponseBody::ListGroups(l)) => {
                    let ours = l.groups.iter().filter(|g| g.group_id == group);
                    json!(ours
                        .map(|g| json!({
                            "state": g.group_state.as_str(),
                            "type": g.group_type.as_str(),
                            "protocol_type": g.protocol_type.as_str(),
                        }))
                        .collect::<Vec<_>>())
                }
                _ => Value::Null,
            },
            Err(e) => json!({ "error": error_kind(&e) }),
        };
        self.note("list", listed);
        let unknown = GroupId::from(format!("sansa-diff-nobody-{suffix}").as_str());
        let fetch = offset_fetch(fetch_version, &unknown, topic, topic_id, &[0]);
        self.call("offset_fetch_unknown_group", Target::GroupCoordinator(unknown), fetch);
    }

    /// A static member (KIP-345): joins, restarts under a new member id without a rebalance,
    /// fences its old id, leaves by instance id.
    fn static_member(&mut self, topic: &str, suffix: &str) {
        self.probe = "static_member";
        let group = GroupId::from(format!("sansa-diff-static-{suffix}").as_str());
        let target = Target::GroupCoordinator(group.clone());
        let instance = StrBytes::from("instance-1");
        let join = |member: &str| join_request(&group, topic, member, Some(instance.clone()));
        let (first, generation) = match self.call("join", target.clone(), join("")) {
            Some(ResponseBody::JoinGroup(r)) => (r.member_id.as_str().to_string(), r.generation_id),
            _ => return,
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(generation)
            .with_member_id(StrBytes::from(first.as_str()))
            .with_group_instance_id(Some(instance.clone()))
            .with_protocol_type(Some(StrBytes::from("consumer")))
            .with_protocol_name(Some(StrBytes::from("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from(first.as_str()))
                .with_assignment(assignment(topic))]);
        self.call("sync", target.clone(), sync);
        // The process restarts: same instance id, no member id.
        let second = match self.call("rejoin", target.clone(), join("")) {
            Some(ResponseBody::JoinGroup(r)) => r.member_id.as_str().to_string(),
            _ => return,
        };
        self.note("new_member_id", json!(second != first));
        let heartbeat = |member: &str| {
            HeartbeatRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(generation)
                .with_member_id(StrBytes::from(member))
                .with_group_instance_id(Some(instance.clone()))
        };
        self.call("heartbeat_old_id", target.clone(), heartbeat(&first));
        self.call("heartbeat_new_id", target.clone(), heartbeat(&second));
        self.call("describe", target.clone(), DescribeGroupsRequest::default().with_groups(vec![group.clone()]));
        let leave =
            LeaveGroupRequest::default().with_group_id(group.clone()).with_members(vec![MemberIdentity::default()
                .with_member_id(StrBytes::from(""))
                .with_group_instance_id(Some(instance.clone()))]);
        self.call("leave_by_instance", target.clone(), leave);
        self.call("describe_after_leave", target, DescribeGroupsRequest::default().with_groups(vec![group]));
    }

    /// KIP-848: join, heartbeat until the assignment shows, leave.
    fn consumer_group(&mut self, topic: &str, suffix: &str) {
        self.probe = "consumer_group";
        let group = GroupId::from(format!("sansa-diff-cg-{suffix}").as_str());
        let target = Target::GroupCoordinator(group.clone());
        // Since KIP-1082 the member chooses its id (a UUID in the Java client).
        let member = StrBytes::from("4a5f4b5e-8c4d-4d3a-9d35-5a1f0c2b7e11");
        let heartbeat = |epoch: i32| {
            let req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group.clone())
                .with_member_id(member.clone())
                .with_member_epoch(epoch)
                .with_rebalance_timeout_ms(30_000);
            if epoch == 0 {
                req.with_subscribed_topic_names(Some(vec![TopicName::from(topic)])).with_topic_partitions(Some(vec![]))
            } else {
                req.with_subscribed_topic_names(None).with_topic_partitions(None)
            }
        };
        let epoch = match self.call("join", target.clone(), heartbeat(0)) {
            Some(ResponseBody::ConsumerGroupHeartbeat(r)) => r.member_epoch,
            _ => return,
        };
        self.call("heartbeat", target.clone(), heartbeat(epoch));
        self.call("stale_epoch", target.clone(), heartbeat(epoch + 10));
        self.call("leave", target.clone(), heartbeat(-1));
        self.call("describe_after_leave", target, DescribeGroupsRequest::default().with_groups(vec![group]));
    }

    /// A transaction: producer id, partition added, a transactional batch, read_committed
    /// before and after the abort marker.
    fn transactions(&mut self, topic: &str, suffix: &str) {
        self.probe = "transactions";
        let txn = sansa::protocol::TransactionalId::from(format!("sansa-diff-txn-{suffix}").as_str());
        let target = Target::TransactionCoordinator(txn.clone());
        let init = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn.clone()))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let Some(r) = self.init_producer_id(target.clone(), init) else { return };
        let (pid, epoch) = (r.producer_id, r.producer_epoch);
        let add = AddPartitionsToTxnRequest::default().with_transactions(vec![
            sansa::protocol::messages::add_partitions_to_txn::request::AddPartitionsToTxnTransaction::default()
                .with_transactional_id(txn.clone())
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_topics(vec![
                    sansa::protocol::messages::add_partitions_to_txn::request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName::from(topic))
                        .with_partitions(vec![2]),
                ]),
        ]);
        self.call("add_partitions", target.clone(), add);
        let leader = self.leader(topic, 2);
        let mut records = BytesMut::new();
        let mut params = BatchParams::new();
        params.producer_id = pid.0;
        params.producer_epoch = epoch;
        params.base_sequence = 0;
        params.transactional = true;
        let mut enc = RecordBatchEncoder::new();
        let mut b = enc.begin(&mut records, params).expect("begin");
        b.append(1_700_000_000_000, None, Some(b"in a transaction"), &[]).expect("append");
        b.finish().expect("finish");
        let records = records.freeze();
        let anonymous = self.produce_request(topic, 2, -1, records.clone());
        self.call("produce_without_transactional_id", Target::Broker(leader), anonymous);
        let produce = self.produce_request(topic, 2, -1, records).with_transactional_id(Some(txn.clone()));
        self.call("produce", Target::Broker(leader), produce);
        let committed_fetch = |probe: &Self| probe.fetch_request(topic, 2, 0).with_isolation_level(1);
        let req = committed_fetch(self);
        self.call("fetch_read_committed_open", Target::Broker(leader), req);
        self.list_offsets_isolated("latest_read_committed_open", topic, 2, leader);
        let end = EndTxnRequest::default()
            .with_transactional_id(txn.clone())
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_committed(false);
        self.call("abort", target.clone(), end);
        // The abort marker is written asynchronously by the coordinator: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let req = committed_fetch(self);
            let body = self.call("fetch_read_committed_aborted", Target::Broker(leader), req);
            let stable = matches!(&body, Some(ResponseBody::Fetch(f))
                if f.responses.first().and_then(|t| t.partitions.first()).is_some_and(|p| p.last_stable_offset >= 2));
            if stable || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.list_offsets_isolated("latest_read_committed_aborted", topic, 2, leader);
        let req = self.fetch_request(topic, 2, 0);
        if let Some(ResponseBody::Fetch(f)) = self.call("fetch_read_uncommitted", Target::Broker(leader), req) {
            let records = f.responses.first().and_then(|t| t.partitions.first()).and_then(|p| p.records.clone());
            self.note("fetch_read_uncommitted_records", records_json(records));
        }
    }

    fn list_offsets_isolated(&mut self, step: &str, topic: &str, partition: i32, leader: BrokerId) {
        let req =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(1).with_topics(vec![
                ListOffsetsTopic::default().with_name(TopicName::from(topic)).with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(-1),
                ]),
            ]);
        self.call(step, Target::Broker(leader), req);
    }

    /// KIP-227: a session opened by a full fetch, an incremental fetch with nothing new, and
    /// a wrong epoch.
    fn fetch_sessions(&mut self, topic: &str, leader: BrokerId) {
        self.probe = "fetch_sessions";
        let open = self.fetch_request(topic, 0, 0).with_session_id(0).with_session_epoch(0).with_max_wait_ms(0);
        let session = match self.call("open", Target::Broker(leader), open) {
            Some(ResponseBody::Fetch(f)) => f.session_id,
            _ => return,
        };
        let incremental = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(session)
            .with_session_epoch(1);
        self.call("incremental_unchanged", Target::Broker(leader), incremental.clone());
        self.call("wrong_epoch", Target::Broker(leader), incremental.clone().with_session_epoch(7));
        self.call("close", Target::Broker(leader), incremental.with_session_epoch(-1));
    }

    fn topic_id(&self, topic: &str) -> sansa::protocol::Uuid {
        let md = self.client.metadata(Some(vec![TopicName::from(topic)])).ok();
        md.and_then(|md| md.topic(topic).map(|t| t.id)).unwrap_or_default()
    }

    /// The highest version of `api` both the client and the cluster support.
    fn max_version(&self, api: ApiKey) -> i16 {
        self.client
            .check_version(Target::AnyBroker)
            .ok()
            .and_then(|v| v.api_versions.negotiate(api).ok())
            .unwrap_or(api.versions().max)
    }

    fn coordinator(&self, group: &GroupId) -> BrokerId {
        let req = FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from(group.as_str())]);
        match self.client.request(Target::AnyBroker, req.into()).ok().and_then(|r| r.body) {
            Some(ResponseBody::FindCoordinator(f)) => f.coordinators.first().map_or(BrokerId(1), |c| c.node_id),
            _ => BrokerId(1),
        }
    }

    fn admin(&mut self, topic: &str, leader: BrokerId) {
        self.probe = "admin";
        let delete = |offset: i64| {
            DeleteRecordsRequest::default().with_timeout_ms(30_000).with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName::from(topic))
                .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)])])
        };
        self.call("delete_records", Target::Broker(leader), delete(2));
        self.call("delete_records_beyond_end", Target::Broker(leader), delete(1000));
        let req = self.fetch_request(topic, 0, 0);
        self.call("fetch_below_start", Target::Broker(leader), req);
        self.list_offsets("earliest_after_delete", topic, leader, -2);
        let dirs = DescribeLogDirsRequest::default().with_topics(Some(vec![
            sansa::protocol::messages::describe_log_dirs::request::DescribableLogDirTopic::default()
                .with_topic(TopicName::from(topic))
                .with_partitions(vec![0, 1, 2]),
        ]));
        self.call("describe_log_dirs", Target::Broker(leader), dirs);
        let grow = |count: i32| {
            CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(TopicName::from(topic))
                    .with_count(count)
                    .with_assignments(None),
            ])
        };
        self.call("create_partitions", Target::Controller, grow(5));
        self.wait_for_leaders(topic, 5);
        self.call("shrink_partitions", Target::Controller, grow(2));
        let keys = ["cleanup.policy", "retention.ms", "max.message.bytes", "message.timestamp.type", "segment.bytes"];
        let describe = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from(topic))
            .with_configuration_keys(Some(keys.iter().map(|k| StrBytes::from(*k)).collect()))]);
        self.call("describe_configs", Target::AnyBroker, describe);
        let delete = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(vec![TopicName::from(topic)])
            .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName::from(topic)))]);
        self.call("delete_topic", Target::Controller, delete);
    }
}

/// A consumer's JoinGroup for `topic` under the range assignor; static with an instance id.
fn join_request(group: &GroupId, topic: &str, member: &str, instance: Option<StrBytes>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group.clone())
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from(member))
        .with_group_instance_id(instance)
        .with_protocol_type(StrBytes::from("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from("range"))
            .with_metadata(subscription(topic))])
}

/// A consumer's subscription to `topic`, as the classic consumer protocol encodes it (Kafka
/// 4.3's coordinator never answers a JoinGroup whose consumer metadata does not parse).
fn subscription(topic: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from(topic)])
        .encode(&mut out, 1)
        .expect("subscription encodes");
    out.freeze()
}

/// Partitions 0 and 1 of `topic`, as the classic consumer protocol encodes an assignment.
fn assignment(topic: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(&1i16.to_be_bytes());
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![
            sansa::protocol::messages::consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName::from(topic))
                .with_partitions(vec![0, 1]),
        ])
        .encode(&mut out, 1)
        .expect("assignment encodes");
    out.freeze()
}

/// OffsetFetch for one group's partitions of `topic`, in the shape of `version`.
fn offset_fetch(
    version: i16,
    group: &GroupId,
    topic: &str,
    topic_id: sansa::protocol::Uuid,
    partitions: &[i32],
) -> OffsetFetchRequest {
    if version >= 8 {
        let t = OffsetFetchRequestTopics::default().with_partition_indexes(partitions.to_vec());
        let t = if version >= 10 { t.with_topic_id(topic_id) } else { t.with_name(TopicName::from(topic)) };
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group.clone())
            .with_member_epoch(-1)
            .with_topics(Some(vec![t]))])
    } else {
        OffsetFetchRequest::default().with_group_id(group.clone()).with_topics(Some(vec![
            sansa::protocol::messages::offset_fetch::request::OffsetFetchRequestTopic::default()
                .with_name(TopicName::from(topic))
                .with_partition_indexes(partitions.to_vec()),
        ]))
    }
}

/// `n` records from offset delta 0 with timestamps `ts`, `ts+1`, ...; idempotent when `producer`
/// is `(id, epoch, first sequence)`.
fn batch(n: i32, ts: i64, producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut out = BytesMut::new();
    let mut params = BatchParams::new();
    if let Some((id, epoch, seq)) = producer {
        params.producer_id = id;
        params.producer_epoch = epoch;
        params.base_sequence = seq;
    }
    let mut enc = RecordBatchEncoder::new();
    let mut b = enc.begin(&mut out, params).expect("begin");
    for i in 0..n {
        b.append(ts + i64::from(i), Some(format!("k{i}").as_bytes()), Some(format!("v{i}").as_bytes()), &[])
            .expect("append");
    }
    b.finish().expect("finish");
    out.freeze()
}

/// The offsets and values of fetched records, for comparison without the masked raw bytes.
fn records_json(records: Option<Bytes>) -> Value {
    let Some(records) = records else { return Value::Null };
    let mut out = Vec::new();
    for b in decode_batches(records, &DecodeOptions::new()) {
        match b {
            Ok(b) => {
                // A control batch's timestamp is the broker's clock, not ours.
                let control = b.is_control();
                for r in b.into_records() {
                    let ts = if control { json!("control") } else { json!(r.timestamp) };
                    out.push(json!([r.offset, ts, r.value.map(|v| String::from_utf8_lossy(&v).into_owned())]));
                }
            }
            Err(e) => out.push(json!({ "error": e.to_string() })),
        }
    }
    Value::Array(out)
}

fn body_json(body: &ResponseBody) -> Value {
    match serde_json::to_value(body) {
        // An externally tagged enum: keep the message only.
        Ok(Value::Object(m)) if m.len() == 1 => m.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        Ok(v) => v,
        Err(e) => json!({ "serialize_error": e.to_string() }),
    }
}

fn error_kind(e: &RequestError) -> String {
    if let RequestError::Encode(e) = e {
        // Our own mistake, not the cluster's: say which field.
        return format!("Encode: {e}");
    }
    let s = format!("{e:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("error").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_paths_match_by_prefix_with_one_segment_wildcards() {
        assert!(super::prefix_matches("a/b.topics.*.configs.x", "a/b.topics.my-topic.configs.x.value"));
        assert!(!super::prefix_matches("a/b.topics.*.configs.x", "a/b.topics.my.topic.configs.x"));
        assert!(super::prefix_matches("a/b[0]", "a/b[0].c"));
        assert!(!super::prefix_matches("a/b[0]", "a/c[0]"));
    }
}
