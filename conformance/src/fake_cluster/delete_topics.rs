//! DeleteTopics: by name (v1-5) or by name or id (v6). Unknown topics are
//! UNKNOWN_TOPIC_OR_PARTITION (UNKNOWN_TOPIC_ID when named by id).

use sansa::protocol::messages::delete_topics::response::DeletableTopicResult;
use sansa::protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use sansa::protocol::{ErrorCode, TopicName};

use super::FakeCluster;

pub(crate) fn handle(cluster: &mut FakeCluster, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<TopicName>, sansa::protocol::Uuid)> = Vec::new();
    if version >= 6 {
        targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    } else {
        targets.extend(req.topic_names.into_iter().map(|n| (Some(n), sansa::protocol::Uuid::ZERO)));
    }
    let mut results = Vec::new();
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
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
