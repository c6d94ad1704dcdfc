//! What the router and its inner machines share.
//!
//! An inner machine owns one kind of work with state over time (metadata refreshes,
//! coordinator lookups, the application's raw requests, version checks; later the producer,
//! the fetcher, the group member). It never sees bytes or connections. It trades typed
//! requests and responses with the router through the same verbs at every layer:
//!
//! - [`Machine::wanted`]: the targets it has a request ready for now, with the connection
//!   role each needs — a handful of targets, never one entry per request;
//! - [`Machine::poll_request`]: called when a connection to a node that `target` resolves to
//!   is ready and has room; the machine builds the body *then*, for the negotiated versions;
//! - [`Machine::handle_response`]: the answer (or the typed failure) to a request it sent,
//!   routed back by the owner tag it chose; the machine decides what errors mean;
//! - [`Machine::handle_timeout`] / [`Machine::poll_timeout`]: its own timers;
//! - [`Machine::poll_event`]: what completed for the application.
//!
//! Adding a machine touches the core only: a module implementing [`Machine`], a variant of
//! [`Owner`], a field in the router's machine list, and its commands on [`crate::Client`].

use std::time::{Duration, Instant};

use crate::client::{CloseCause, Event, Node, RequestError, Response, Target};
use crate::cluster::ClusterMetadata;
use crate::config::{BrokerAddress, Config};
use crate::connection::BrokerApiVersions;
use crate::coordinator::CoordinatorKey;
use crate::protocol::RequestBody;

/// A machine's own name for one of its requests; only the machine reads it.
pub(crate) type Tag = u64;

/// Which machine a request in flight belongs to: its answer goes there and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Owner {
    Metadata,
    Coordinator,
    Requests,
    Versions,
    Producer,
    Consumer,
}

/// Which of a broker's connections a request travels on, so that nothing waits behind a
/// request the broker may hold: a long-polling fetch, or a JoinGroup (held until the group
/// settles, up to the rebalance timeout). Brokers answer a connection's requests in order.
/// Java's client keeps its group coordinator on a connection of its own likewise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Produce, admin and metadata traffic.
    General,
    /// Fetches, which may wait at the broker for up to their `max_wait_ms`.
    Fetch,
    /// A consumer group's traffic with its coordinator (membership, commits, offsets).
    Coordinator,
}

/// A ready connection, as a machine sees it when asked for a request.
#[derive(Debug)]
pub(crate) struct Link<'a> {
    pub node: Node,
    /// Only requests for this role belong on it.
    pub role: Role,
    pub address: &'a BrokerAddress,
    pub versions: &'a BrokerApiVersions,
}

/// A request a machine hands the router.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub body: RequestBody,
    pub version: i16,
    pub tag: Tag,
    /// When the answer must have arrived; the router fails the request then.
    pub deadline: Instant,
    /// How long the request was given, for the error that reports its expiry.
    pub timeout: Duration,
    /// False for requests the broker never answers (produce with acks=0): they complete
    /// once written.
    pub expects_response: bool,
}

/// What a machine asks of the router or of the other machines; applied after the call.
#[derive(Debug, Clone)]
pub(crate) enum Signal {
    /// Metadata may be stale: refresh soon.
    RefreshMetadata,
    /// A coordinator answered NOT_COORDINATOR (or is not available): look it up again.
    CoordinatorStale(CoordinatorKey),
    /// Requests for `target` issued at or before `issued_before` cannot be served: fail them.
    FailTarget { target: Target, error: RequestError, issued_before: Instant },
    /// Keep this topic's metadata fresh (the producer sends to it); `auto_create` lets a
    /// broker that allows it create the topic when metadata asks for it.
    TrackTopic { topic: crate::protocol::TopicName, auto_create: bool },
    /// Cluster metadata changed: machines that cache it read it again.
    MetadataChanged,
    /// Keep every topic's metadata fresh (a consumer subscribed to a pattern).
    TrackAllTopics,
}

/// A broker's last connection failure, for the errors of requests that waited for it.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub address: BrokerAddress,
    pub cause: CloseCause,
    pub at: Instant,
}

/// The router's state a machine may read (and the metadata machine write) during a call.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub cluster: &'a mut ClusterMetadata,
    /// Last failure per node, and the most recent one anywhere.
    pub failures: &'a std::collections::BTreeMap<Node, Failure>,
    pub last_failure: Option<&'a Failure>,
    pub signals: &'a mut Vec<Signal>,
    #[cfg(feature = "plants")]
    pub plant: Option<crate::plants::Plant>,
}

impl Ctx<'_> {
    /// Whether plant `p` is armed.
    #[cfg(feature = "plants")]
    pub fn planted(&self, p: crate::plants::Plant) -> bool {
        self.plant == Some(p)
    }

    /// The error for a request to `target`, issued at `issued`, that ran out of time before
    /// it could be sent: the failure that kept it from its broker, or a plain timeout.
    pub fn unsent_error(&self, target: &Target, issued: Instant, timeout: Duration) -> RequestError {
        let failure = match target {
            Target::Broker(id) => self.failures.get(&Node::Broker(*id)),
            Target::Bootstrap(i) => self.failures.get(&Node::Bootstrap(*i)),
            _ => self.last_failure,
        };
        match failure {
            Some(f) if f.at >= issued => {
                RequestError::Unreachable { address: f.address.clone(), cause: f.cause.clone() }
            }
            _ => RequestError::Timeout(timeout),
        }
    }
}

/// The verbs every inner machine shares (see the module docs).
pub(crate) trait Machine: std::fmt::Debug {
    /// Adds each `(target, role)` it has a request ready for at `now` (duplicates are fine).
    fn wanted(&self, now: Instant, out: &mut Vec<(Target, Role)>);

    /// The next request for `target` on `link`, built for the link's versions; `None` when it
    /// has nothing more for it now.
    fn poll_request(&mut self, now: Instant, target: &Target, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing>;

    /// The answer to request `tag`, or why there is none.
    fn handle_response(&mut self, now: Instant, tag: Tag, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>);

    /// Runs the machine's timers that are due.
    fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>);

    /// The machine's next deadline.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next outcome for the application.
    fn poll_event(&mut self) -> Option<Event>;

    /// Fails its unsent requests for `target` issued at or before `issued_before`.
    fn fail_target(&mut self, now: Instant, target: &Target, error: &RequestError, issued_before: Instant);

    /// A connection to `node` closed; `before_handshake` when it opened but ApiVersions never
    /// completed.
    fn handle_closed(&mut self, _now: Instant, _node: Node, _address: &BrokerAddress, _before_handshake: bool) {}

    /// Cluster metadata changed.
    fn handle_metadata(&mut self, _now: Instant, _ctx: &mut Ctx<'_>) {}

    /// The client is closing: drop work nobody waits for.
    fn close(&mut self, _now: Instant) {}

    /// Whether it has nothing unsent (requests in flight are the router's to count).
    fn is_idle(&self) -> bool;
}
