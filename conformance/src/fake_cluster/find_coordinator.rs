//! FindCoordinator: v0-3 one key, v4+ a batch of keys. The coordinator is a deterministic
//! hash (FNV-1a) of the key modulo the number of brokers, whatever the key type.

use sansa::protocol::messages::find_coordinator::response::Coordinator;
use sansa::protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use sansa::protocol::{BrokerId, StrBytes};

use super::FakeCluster;

pub(crate) fn coordinator_for(cluster: &FakeCluster, key: &str) -> i32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let ids = cluster.broker_ids();
    ids[(hash % ids.len() as u64) as usize]
}

pub(crate) fn handle(cluster: &FakeCluster, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let locate = |key: &str| {
        let id = coordinator_for(cluster, key);
        let b = &cluster.brokers[&id];
        (id, StrBytes::from(b.host.as_str()), i32::from(b.port))
    };
    if version < 4 {
        let (id, host, port) = locate(req.key.as_str());
        return FindCoordinatorResponse::default().with_node_id(BrokerId(id)).with_host(host).with_port(port);
    }
    let coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let (id, host, port) = locate(key.as_str());
            Coordinator::default().with_key(key).with_node_id(BrokerId(id)).with_host(host).with_port(port)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
