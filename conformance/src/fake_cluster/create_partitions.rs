//! CreatePartitions: raises a topic's partition count (INVALID_PARTITIONS when it would not
//! grow), with explicit replica assignments (INVALID_REPLICA_ASSIGNMENT when their number or
//! brokers are wrong) or placed like new topics with the topic's replication factor.
//! `validate_only` checks without changing anything. Any broker answers (KRaft forwards to the
//! controller).

use std::collections::BTreeSet;

use sansa::protocol::messages::create_partitions::response::CreatePartitionsTopicResult;
use sansa::protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use sansa::protocol::{ApiKey, ErrorCode, StrBytes};

use super::{Ctx, FakeCluster, Partition};

pub(crate) fn handle(cluster: &mut FakeCluster, ctx: Ctx, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut seen = BTreeSet::new();
    let duplicates: BTreeSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.as_str().to_string()))
        .map(|t| t.name.as_str().to_string())
        .collect();
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let outcome = if duplicates.contains(&name) {
            Err((ErrorCode::InvalidRequest, "Duplicate topic in request.".to_string()))
        } else if let Some(code) = cluster.take_partition_error(ApiKey::CreatePartitions, ctx.broker, &name, None) {
            Err((code, String::new()))
        } else {
            grow(
                cluster,
                &name,
                t.count,
                t.assignments.map(|a| a.into_iter().map(|x| x.broker_ids.iter().map(|b| b.0).collect()).collect()),
                req.validate_only,
            )
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = (!message.is_empty()).then(|| StrBytes::from(message));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}

fn grow(
    cluster: &mut FakeCluster,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    let Some(topic) = cluster.topics.get(name) else {
        return Err((ErrorCode::UnknownTopicOrPartition, format!("The topic '{name}' does not exist.")));
    };
    let current = topic.partitions.len() as i32;
    let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
    if count < current {
        return Err((
            ErrorCode::InvalidPartitions,
            format!("The topic {name} currently has {current} partition(s); {count} would not be an increase."),
        ));
    }
    if count == current {
        return Err((ErrorCode::InvalidPartitions, format!("Topic already has {current} partition(s).")));
    }
    let added = (count - current) as usize;
    if let Some(a) = &assignments {
        if a.len() != added {
            return Err((
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                    a.len()
                ),
            ));
        }
        for replicas in a {
            let unique: BTreeSet<i32> = replicas.iter().copied().collect();
            if replicas.is_empty()
                || unique.len() != replicas.len()
                || replicas.iter().any(|b| !cluster.brokers.contains_key(b))
            {
                return Err((ErrorCode::InvalidReplicaAssignment, format!("Invalid replica assignment {replicas:?}.")));
            }
        }
    }
    if validate_only {
        return Ok(());
    }
    match assignments {
        None => cluster.add_partitions(name, added as i32, rf as i16),
        Some(a) => {
            let live = cluster.live_broker_ids();
            let replication = cluster.config.replication;
            let Some(topic) = cluster.topics.get_mut(name) else { return Ok(()) };
            for replicas in a {
                topic.partitions.push(Partition::new(replicas, |r| live.contains(&r), replication));
            }
        }
    }
    Ok(())
}
