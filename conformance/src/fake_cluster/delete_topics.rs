//! DeleteTopics: by name (v1-5) or by name or id (v6). Unknown topics are
//! UNKNOWN_TOPIC_OR_PARTITION (UNKNOWN_TOPIC_ID when named by id). Injected errors apply per
//! topic.

use sansa::protocol::messages::delete_topics::response::DeletableTopicResult;
use sansa::protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use sansa::protocol::{ApiKey, ErrorCode, TopicName};

use super::FakeCluster;

pub(crate) fn handle(
    cluster: &mut FakeCluster,
    broker: i32,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<TopicName>, sansa::protocol::Uuid)> = Vec::new();
    if version >= 6 {
        targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    } else {
        targets.extend(req.topic_names.into_iter().map(|n| (Some(n), sansa::protocol::Uuid::ZERO)));
    }
    let mut results = Vec::new();
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        let label = name.as_ref().map(|n| n.as_str().to_string()).or_else(|| cluster.topic_name_by_id(id));
        if let Some(code) = cluster.take_partition_error(ApiKey::DeleteTopics, broker, &label.unwrap_or_default(), None)
        {
            r.name = name.clone();
            if version >= 6 {
                r.topic_id = id;
            }
            r.error_code = code;
            results.push(r);
            continue;
        }
        let resolved = match &name {
            Some(n) => cluster.topics.contains_key(n.as_str()).then(|| n.as_str().to_string()),
            None => cluster.topic_name_by_id(id),
        };
        match resolved {
            Some(n) => {
                let topic = cluster.topics.remove(&n);
                r.name = Some(TopicName::from(n.as_str()));
                if version >= 6 {
                    r.topic_id = topic.map_or(id, |t| t.id);
                }
            }
            None => {
                r.name = name.clone();
                if version >= 6 {
                    r.topic_id = id;
                }
                r.error_code =
                    if name.is_none() { ErrorCode::UnknownTopicId } else { ErrorCode::UnknownTopicOrPartition };
            }
        }
        results.push(r);
    }
    DeleteTopicsResponse::default().with_responses(results)
}
