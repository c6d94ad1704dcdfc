//! Topic configs: Kafka 4.x's names, defaults and types for the topic-level settings, the
//! broker setting each one falls back to, and validation of CreateTopics overrides.
//! Only the settings that change the fake's behaviour are acted on (`max.message.bytes`,
//! `message.timestamp.type`, `min.insync.replicas`, `segment.bytes`); the others are stored
//! and described.

use std::collections::BTreeMap;

use super::FakeCluster;

/// Config value types as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic-level setting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicConfigDef {
    pub(crate) name: &'static str,
    pub(crate) default: &'static str,
    pub(crate) kind: ConfigType,
    /// The broker setting supplying the default.
    pub(crate) broker_synonym: &'static str,
    pub(crate) doc: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    kind: ConfigType,
    broker_synonym: &'static str,
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef { name, default, kind, broker_synonym, doc }
}

use ConfigType::{Boolean, Double, Int, List, Long};

/// Kafka's topic settings, sorted by name (DescribeConfigs answers in this order).
pub(crate) const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        List,
        "log.cleanup.policy",
        "Whether old segments are deleted, compacted, or both.",
    ),
    def("compression.gzip.level", "-1", Int, "compression.gzip.level", "Level used when compression.type is gzip."),
    def("compression.lz4.level", "9", Int, "compression.lz4.level", "Level used when compression.type is lz4."),
    def(
        "compression.type",
        "producer",
        ConfigType::String,
        "compression.type",
        "Codec the broker stores batches with; producer keeps the producer's.",
    ),
    def("compression.zstd.level", "3", Int, "compression.zstd.level", "Level used when compression.type is zstd."),
    def(
        "delete.retention.ms",
        "86400000",
        Long,
        "log.cleaner.delete.retention.ms",
        "How long tombstones survive compaction.",
    ),
    def(
        "file.delete.delay.ms",
        "60000",
        Long,
        "log.segment.delete.delay.ms",
        "Delay before a deleted segment file is removed.",
    ),
    def(
        "flush.messages",
        "9223372036854775807",
        Long,
        "log.flush.interval.messages",
        "Messages between forced fsyncs.",
    ),
    def("flush.ms", "9223372036854775807", Long, "log.flush.interval.ms", "Time between forced fsyncs."),
    def(
        "follower.replication.throttled.replicas",
        "",
        List,
        "follower.replication.throttled.replicas",
        "Replicas throttled on the follower side.",
    ),
    def("index.interval.bytes", "4096", Int, "log.index.interval.bytes", "Bytes between offset index entries."),
    def(
        "leader.replication.throttled.replicas",
        "",
        List,
        "leader.replication.throttled.replicas",
        "Replicas throttled on the leader side.",
    ),
    def(
        "local.retention.bytes",
        "-2",
        Long,
        "log.local.retention.bytes",
        "Local bytes kept when tiered storage is on.",
    ),
    def("local.retention.ms", "-2", Long, "log.local.retention.ms", "Local time kept when tiered storage is on."),
    def(
        "max.compaction.lag.ms",
        "9223372036854775807",
        Long,
        "log.cleaner.max.compaction.lag.ms",
        "Longest a record stays uncompacted.",
    ),
    def("max.message.bytes", "1048588", Int, "message.max.bytes", "Largest record batch the topic accepts."),
    def(
        "message.timestamp.after.max.ms",
        "3600000",
        Long,
        "log.message.timestamp.after.max.ms",
        "How far in the future a create time may be.",
    ),
    def(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        Long,
        "log.message.timestamp.before.max.ms",
        "How far in the past a create time may be.",
    ),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        "log.message.timestamp.type",
        "CreateTime keeps the producer's timestamps; LogAppendTime uses the broker's clock.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        Double,
        "log.cleaner.min.cleanable.ratio",
        "Dirty share of the log that triggers compaction.",
    ),
    def(
        "min.compaction.lag.ms",
        "0",
        Long,
        "log.cleaner.min.compaction.lag.ms",
        "Shortest a record stays uncompacted.",
    ),
    def("min.insync.replicas", "1", Int, "min.insync.replicas", "In-sync replicas needed to accept an acks=all write."),
    def("preallocate", "false", Boolean, "log.preallocate", "Whether segment files are preallocated."),
    def(
        "remote.log.copy.disable",
        "false",
        Boolean,
        "remote.log.copy.disable",
        "Stop copying segments to remote storage.",
    ),
    def(
        "remote.log.delete.on.disable",
        "false",
        Boolean,
        "remote.log.delete.on.disable",
        "Delete remote data when tiering is turned off.",
    ),
    def(
        "remote.storage.enable",
        "false",
        Boolean,
        "remote.log.storage.system.enable",
        "Whether the topic uses tiered storage.",
    ),
    def(
        "retention.bytes",
        "-1",
        Long,
        "log.retention.bytes",
        "Largest a partition grows before old segments go; -1 for no limit.",
    ),
    def("retention.ms", "604800000", Long, "log.retention.ms", "How long segments are kept; -1 for ever."),
    def("segment.bytes", "1073741824", Int, "log.segment.bytes", "Size of one log segment file."),
    def("segment.index.bytes", "10485760", Int, "log.index.size.max.bytes", "Size of one offset index file."),
    def("segment.jitter.ms", "0", Long, "log.roll.jitter.ms", "Random jitter subtracted from segment.ms."),
    def("segment.ms", "604800000", Long, "log.roll.ms", "Time after which a segment is rolled."),
    def(
        "unclean.leader.election.enable",
        "false",
        Boolean,
        "unclean.leader.election.enable",
        "Whether an out-of-sync replica may become leader.",
    ),
];

pub(crate) fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one CreateTopics override the way Kafka's config validation does; the message
/// goes back with INVALID_CONFIG.
pub(crate) fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(d) = lookup(name) else { return Err(format!("Unknown topic config name: {name}")) };
    let bad = || format!("Invalid value {value} for configuration {name}");
    let ok = match d.kind {
        Boolean => matches!(value.to_ascii_lowercase().as_str(), "true" | "false"),
        Int => value.trim().parse::<i32>().is_ok(),
        Long => value.trim().parse::<i64>().is_ok(),
        Double => value.trim().parse::<f64>().is_ok(),
        List | ConfigType::String => true,
    };
    if !ok {
        return Err(bad());
    }
    match name {
        "message.timestamp.type" if !matches!(value, "CreateTime" | "LogAppendTime") => Err(bad()),
        "cleanup.policy"
            if value.split(',').map(str::trim).any(|p| !matches!(p, "delete" | "compact")) || value.is_empty() =>
        {
            Err(bad())
        }
        "compression.type" if !matches!(value, "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd") => {
            Err(bad())
        }
        "min.insync.replicas" | "max.message.bytes" if value.trim().parse::<i32>().is_ok_and(|v| v < 1) => Err(bad()),
        "segment.bytes" if value.trim().parse::<i32>().is_ok_and(|v| v < 1024 * 1024) => Err(bad()),
        _ => Ok(()),
    }
}

/// The effective value of a topic setting: its override or Kafka's default.
pub(crate) fn value<'a>(configs: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    configs.get(name).map(String::as_str).or_else(|| lookup(name).map(|d| d.default))
}

/// A numeric topic setting (its default when unset or unparsable).
pub(crate) fn number(configs: &BTreeMap<String, String>, name: &str) -> i64 {
    let default = lookup(name).and_then(|d| d.default.parse().ok()).unwrap_or(0);
    configs.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

impl FakeCluster {
    /// The effective value of setting `name` of topic `topic` (its override or Kafka's
    /// default), if both exist.
    pub fn topic_config(&self, topic: &str, name: &str) -> Option<String> {
        value(&self.topics.get(topic)?.configs, name).map(str::to_string)
    }
}
