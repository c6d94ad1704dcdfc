//! DescribeConfigs: topics (type 2) with Kafka's defaults and the CreateTopics overrides, and
//! brokers (type 4, named by the receiving broker's id or empty for the cluster default) with
//! a handful of common settings. Sources are TOPIC_CONFIG for overrides and DEFAULT_CONFIG
//! otherwise (STATIC_BROKER_CONFIG for broker settings the fake sets); synonyms (when asked)
//! list the override and the broker setting behind it; documentation (v3+, when asked) is a
//! one-line summary. Unknown topics: UNKNOWN_TOPIC_OR_PARTITION; another broker's id or other
//! resource types: INVALID_REQUEST. Simplified: a broker setting's synonyms are itself only.

use sansa::protocol::messages::describe_configs::response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use sansa::protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use sansa::protocol::{ApiKey, ErrorCode, StrBytes};

use super::topic_config::{ConfigType, TOPIC_CONFIGS};
use super::{init_producer_id, Ctx, FakeCluster};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One described setting before encoding.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    kind: ConfigType,
    doc: &'static str,
    /// (name, value, source), most specific first.
    synonyms: Vec<(String, String, i8)>,
}

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut results = Vec::new();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let name = res.resource_name.as_str();
        let entries = match res.resource_type {
            TOPIC => match cluster.take_partition_error(ApiKey::DescribeConfigs, ctx.broker, name, None) {
                Some(code) => Err((code, String::new())),
                None => topic_entries(cluster, name),
            },
            BROKER if name.is_empty() || name == ctx.broker.to_string() => Ok(broker_entries(cluster, ctx.broker)),
            BROKER => Err((
                ErrorCode::InvalidRequest,
                format!("Unexpected broker id, expected {} or empty string, but received {name}", ctx.broker),
            )),
            other => Err((ErrorCode::InvalidRequest, format!("Unsupported resource type {other}"))),
        };
        match entries {
            Err((code, message)) => {
                r.error_code = code;
                r.error_message = (!message.is_empty()).then(|| StrBytes::from(message));
            }
            Ok(entries) => {
                let wanted = res.configuration_keys.as_ref();
                r.configs = entries
                    .into_iter()
                    .filter(|e| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name)))
                    .map(|e| encode_entry(e, ctx.version, req.include_synonyms, req.include_documentation))
                    .collect();
            }
        }
        results.push(r);
    }
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_entries(cluster: &FakeCluster, name: &str) -> Result<Vec<Entry>, (ErrorCode, String)> {
    let Some(topic) = cluster.topics.get(name) else {
        return Err((ErrorCode::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")));
    };
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let default = (d.broker_synonym.to_string(), d.default.to_string(), SOURCE_DEFAULT);
            match topic.configs.get(d.name) {
                Some(v) => Entry {
                    name: d.name.to_string(),
                    value: v.clone(),
                    source: SOURCE_TOPIC,
                    read_only: false,
                    kind: d.kind,
                    doc: d.doc,
                    synonyms: vec![(d.name.to_string(), v.clone(), SOURCE_TOPIC), default],
                },
                None => Entry {
                    name: d.name.to_string(),
                    value: d.default.to_string(),
                    source: SOURCE_DEFAULT,
                    read_only: false,
                    kind: d.kind,
                    doc: d.doc,
                    synonyms: vec![default],
                },
            }
        })
        .collect())
}

fn broker_entries(cluster: &FakeCluster, broker: i32) -> Vec<Entry> {
    use ConfigType::{Boolean, Int, Long, String as Str};
    let c = &cluster.config;
    // (name, value, Kafka's default, read-only, type, doc)
    let table: Vec<(&str, String, &str, bool, ConfigType, &'static str)> = vec![
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            "true",
            true,
            Boolean,
            "Create topics on first metadata request.",
        ),
        ("broker.id", broker.to_string(), "-1", true, Int, "This broker's id."),
        ("compression.type", "producer".into(), "producer", false, Str, "Default codec of stored batches."),
        ("default.replication.factor", "1".into(), "1", true, Int, "Replication factor of auto-created topics."),
        (
            "group.initial.rebalance.delay.ms",
            c.group_initial_rebalance_delay.as_millis().to_string(),
            "3000",
            true,
            Int,
            "Wait before a new group's first rebalance.",
        ),
        ("log.cleanup.policy", "delete".into(), "delete", false, ConfigType::List, "Default cleanup policy of topics."),
        (
            "log.message.timestamp.type",
            "CreateTime".into(),
            "CreateTime",
            false,
            Str,
            "Default timestamp type of topics.",
        ),
        ("log.retention.bytes", "-1".into(), "-1", false, Long, "Default size limit of a partition."),
        ("log.retention.hours", "168".into(), "168", true, Int, "Default retention in hours."),
        ("log.segment.bytes", "1073741824".into(), "1073741824", false, Int, "Default segment size."),
        ("message.max.bytes", "1048588".into(), "1048588", false, Int, "Default largest record batch."),
        ("min.insync.replicas", "1".into(), "1", false, Int, "Default in-sync replicas for acks=all."),
        ("num.partitions", c.default_partitions.to_string(), "1", true, Int, "Partitions of auto-created topics."),
        (
            "offsets.topic.replication.factor",
            "3".into(),
            "3",
            true,
            ConfigType::Int,
            "Replication of the offsets topic.",
        ),
        (
            "transaction.max.timeout.ms",
            init_producer_id::MAX_TRANSACTION_TIMEOUT_MS.to_string(),
            "900000",
            true,
            Int,
            "Longest transaction timeout allowed.",
        ),
        ("unclean.leader.election.enable", "false".into(), "false", false, Boolean, "Allow out-of-sync leaders."),
    ];
    table
        .into_iter()
        .map(|(name, value, default, read_only, kind, doc)| {
            let source = if name == "broker.id" || value != default { SOURCE_STATIC_BROKER } else { SOURCE_DEFAULT };
            Entry {
                name: name.to_string(),
                synonyms: vec![(name.to_string(), value.clone(), source)],
                value,
                source,
                read_only,
                kind,
                doc,
            }
        })
        .collect()
}

fn encode_entry(e: Entry, version: i16, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from(e.name))
        .with_value(Some(StrBytes::from(e.value)))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_is_sensitive(false);
    if synonyms {
        r.synonyms = e
            .synonyms
            .into_iter()
            .map(|(n, v, s)| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from(n))
                    .with_value(Some(StrBytes::from(v)))
                    .with_source(s)
            })
            .collect();
    }
    if version >= 3 {
        r.config_type = e.kind as i8;
        r.documentation = documentation.then(|| StrBytes::from(e.doc));
    }
    r
}
