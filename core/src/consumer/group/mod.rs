//! Consumer groups: the classic protocol (client-side assignors) and the KIP-848 protocol
//! (the coordinator assigns), behind one interface the consumer machine drives.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::cluster::ClusterMetadata;
use crate::consumer::ConsumeError;
use crate::protocol::{ApiKey, ErrorCode, GroupId, RequestBody, ResponseBody, TopicName};

pub mod assignor;
pub(crate) mod classic;
pub(crate) mod next_gen;

pub(crate) use classic::Change;

/// What the consumer machine asks of a group member, whichever the protocol.
pub(crate) trait GroupMember: std::fmt::Debug + Send + Sync {
    fn group(&self) -> &GroupId;
    fn topics(&self) -> &BTreeSet<TopicName>;
    /// Generation (or member epoch), member id and instance id for commits; `None` outside
    /// the group.
    fn commit_identity(&self) -> Option<(i32, &str, Option<&str>)>;
    fn is_stable(&self) -> bool;
    /// Nothing in flight and nothing the coordinator must still hear.
    fn is_idle(&self) -> bool;
    fn wants_leave(&self) -> bool;
    fn has_in_flight(&self) -> bool;
    /// Whether a JoinGroup is in flight: the coordinator holds it, and what follows it on
    /// its connection, until the group settles.
    fn joining(&self) -> bool;
    fn take_error(&mut self) -> Option<ConsumeError>;
    fn take_changes(&mut self) -> Vec<Change>;
    fn subscribe(&mut self, topics: BTreeSet<TopicName>);
    fn unsubscribe(&mut self);
    fn close(&mut self);
    fn polled(&mut self);
    fn poll_timeout_expired(&mut self);
    /// Holds back the member's next step while the application handles a revocation.
    fn hold(&mut self, held: bool);
    fn poll_timeout(&self) -> Option<Instant>;
    fn wants(&self, now: Instant) -> bool;
    /// The next request, its version, and how much longer than `request.timeout.ms` its
    /// answer may take.
    fn request(
        &mut self,
        now: Instant,
        version_of: &dyn Fn(ApiKey) -> Option<i16>,
        cluster: &ClusterMetadata,
    ) -> Option<(RequestBody, i16, Duration)>;
    /// The answer to its request (`None`: no answer); a coordinator error for the router
    /// to act on.
    fn handle_response(
        &mut self,
        now: Instant,
        body: Option<ResponseBody>,
        cluster: &ClusterMetadata,
    ) -> Option<ErrorCode>;
    fn handle_metadata(&mut self, cluster: &ClusterMetadata);
    /// A commit was refused as coming from outside the current generation or epoch.
    fn commit_fenced(&mut self, error: ErrorCode);
    /// Arms [`crate::plants::Plant::ConsumerHeartbeatAfterLeave`].
    #[cfg(feature = "plants")]
    fn plant_heartbeat_after_leave(&mut self) {}
}

/// Errors the member retries. Java's poll reports an unexpected coordinator error (an
/// unknown server error, say) and then joins again; failing for good on one would leave the
/// member out of its group while the application goes on polling.
pub(crate) fn retriable_coordinator(e: crate::protocol::ErrorCode) -> bool {
    use crate::protocol::ErrorCode;
    matches!(
        e,
        ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::RequestTimedOut
            | ErrorCode::UnknownServerError
            | ErrorCode::BrokerNotAvailable
            | ErrorCode::NotController
    ) || e.is_retriable()
}
