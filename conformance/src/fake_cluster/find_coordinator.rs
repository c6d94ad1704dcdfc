//! FindCoordinator: v0-3 one key, v4+ a batch of keys. The coordinator is a deterministic
//! hash (FNV-1a) of the key over the live brokers, whatever the key type, so it moves when its
//! broker stops (as the partition of `__consumer_offsets` would move to a new leader).
//! With every broker down the answer is COORDINATOR_NOT_AVAILABLE.

use sansa::protocol::messages::find_coordinator::response::Coordinator;
use sansa::protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use sansa::protocol::{ApiKey, BrokerId, ErrorCode, StrBytes};

use super::FakeCluster;

/// The live broker coordinating `key`, or `None` when every broker is down.
pub(crate) fn coordinator_for(cluster: &FakeCluster, key: &str) -> Option<i32> {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let ids = cluster.live_broker_ids();
    if ids.is_empty() {
        return None;
    }
    Some(ids[(hash % ids.len() as u64) as usize])
}

pub(crate) fn handle(
    cluster: &mut FakeCluster,
    broker: i32,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version < 4 { vec![req.key.clone()] } else { req.coordinator_keys };
    let mut coordinators = Vec::new();
    for key in keys {
        let mut c = Coordinator::default().with_key(key.clone()).with_node_id(BrokerId(-1));
        let injected = cluster.take_partition_error(ApiKey::FindCoordinator, broker, key.as_str(), None);
        match (injected, coordinator_for(cluster, key.as_str())) {
            (Some(code), _) => c.error_code = code,
            (None, None) => c.error_code = ErrorCode::CoordinatorNotAvailable,
            (None, Some(id)) => {
                let b = &cluster.brokers[&id];
                c = c
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from(b.host.as_str()))
                    .with_port(i32::from(b.port));
            }
        }
        coordinators.push(c);
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}
