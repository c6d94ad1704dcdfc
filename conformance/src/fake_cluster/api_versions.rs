//! ApiVersions: every implemented API at sansa's full version range.

use sansa::protocol::messages::ApiVersionsResponse;

pub(crate) fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(super::advertised())
}
