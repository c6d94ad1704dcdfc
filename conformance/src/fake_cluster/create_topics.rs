//! CreateTopics: TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION (Kafka's naming rules, and
//! names that collide once '.' and '_' are treated alike), INVALID_PARTITIONS (<= 0 other than
//! -1 meaning the default), INVALID_REPLICATION_FACTOR (more than the brokers, or <= 0 other
//! than -1). Configs are validated like Kafka's (INVALID_CONFIG for unknown names and bad
//! values, INVALID_REQUEST for null values), kept on the topic, and listed in v5+ answers.
//! Explicit assignments are ignored. Injected errors apply per topic.

use std::collections::BTreeMap;

use sansa::protocol::messages::create_topics::response::{CreatableTopicConfigs, CreatableTopicResult};
use sansa::protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use sansa::protocol::{ApiKey, ErrorCode, StrBytes};

use super::{topic_config, FakeCluster};

pub(crate) fn handle(
    cluster: &mut FakeCluster,
    broker: i32,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let brokers = cluster.brokers.len();
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let partitions = if t.num_partitions == -1 { cluster.config.default_partitions } else { t.num_partitions };
        let rf = if t.replication_factor == -1 { brokers.min(3) as i16 } else { t.replication_factor };
        let mut configs = BTreeMap::new();
        let mut config_error = None;
        for c in &t.configs {
            let key = c.name.as_str().to_string();
            match &c.value {
                None => {
                    config_error =
                        Some((ErrorCode::InvalidRequest, format!("Null value not supported for topic configs: {key}")))
                }
                Some(v) => match topic_config::validate(&key, v.as_str()) {
                    Ok(()) => {
                        configs.insert(key, v.as_str().to_string());
                    }
                    Err(m) => config_error = Some((ErrorCode::InvalidConfig, m)),
                },
            }
            if config_error.is_some() {
                break;
            }
        }
        let injected = cluster.take_partition_error(ApiKey::CreateTopics, broker, &name, None);
        let error = if let Some(code) = injected {
            Some((code, String::new()))
        } else if cluster.topics.contains_key(&name) || results.iter().any(|r: &CreatableTopicResult| r.name == t.name)
        {
            Some((ErrorCode::TopicAlreadyExists, format!("Topic '{name}' already exists.")))
        } else if let Some(why) = invalid_name(&name) {
            Some((ErrorCode::InvalidTopicException, why))
        } else if let Some(other) = cluster.topics.keys().find(|n| collision_key(n) == collision_key(&name)) {
            Some((ErrorCode::InvalidTopicException, format!("Topic '{name}' collides with existing topic: {other}")))
        } else if partitions <= 0 {
            Some((ErrorCode::InvalidPartitions, "Number of partitions must be larger than 0.".to_string()))
        } else if rf <= 0 || rf as usize > brokers {
            Some((
                ErrorCode::InvalidReplicationFactor,
                format!("Replication factor: {rf} larger than available brokers: {brokers}."),
            ))
        } else {
            config_error
        };
        let mut r = CreatableTopicResult::default().with_name(t.name.clone()).with_error_message(None);
        match error {
            Some((code, message)) => {
                r.error_code = code;
                r.error_message = (!message.is_empty()).then(|| StrBytes::from(message));
            }
            None => {
                let id = if req.validate_only { None } else { Some(cluster.create_topic(&name, partitions, rf)) };
                if version >= 5 {
                    r.num_partitions = partitions;
                    r.replication_factor = rf;
                    r.configs = Some(
                        topic_config::TOPIC_CONFIGS
                            .iter()
                            .map(|d| {
                                let (value, source) = match configs.get(d.name) {
                                    Some(v) => (v.clone(), 1),
                                    None => (d.default.to_string(), 5),
                                };
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from(d.name))
                                    .with_value(Some(StrBytes::from(value)))
                                    .with_config_source(source)
                            })
                            .collect(),
                    );
                }
                if let Some(topic) = cluster.topics.get_mut(&name).filter(|_| id.is_some()) {
                    topic.configs = configs;
                }
                if version >= 7 {
                    if let Some(id) = id {
                        r.topic_id = id;
                    }
                }
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Why Kafka would refuse `name` as a topic name, if it would.
pub(crate) fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("Topic name is illegal, it can't be empty".to_string());
    }
    if name == "." || name == ".." {
        return Some("Topic name cannot be \".\" or \"..\"".to_string());
    }
    if name.len() > 249 {
        return Some(format!("Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Some(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    None
}

/// '.' and '_' collide in metric names, so Kafka refuses a topic differing from another only
/// by them.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}
