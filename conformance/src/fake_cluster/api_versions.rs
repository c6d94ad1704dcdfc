//! ApiVersions: what the emulated release advertises for the implemented APIs.

use sansa::protocol::messages::ApiVersionsResponse;

use super::FakeCluster;

pub(crate) fn handle(cluster: &FakeCluster) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(cluster.advertised_list())
}
