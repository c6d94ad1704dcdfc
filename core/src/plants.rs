//! Deliberate bugs ("plants") that prove the simulator's invariants have teeth.
//!
//! Compiled only with the `plants` feature, which the conformance crate turns on for the
//! simulator; an application's build of `sansa` never contains them. A plant is armed per
//! client with `Client::plant` and changes one decision of one machine; `sim --plants` runs
//! each one over seeds until an invariant catches it.

/// One planted bug. Each later machine (producer, consumer, security) adds its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Plant {
    /// A retriable failure of an internal lookup (metadata refresh, FindCoordinator) is
    /// dropped instead of retried: whoever waits for it is never served.
    DropRetry,
    /// NOT_COORDINATOR in an answer does not invalidate the cached coordinator, so requests
    /// keep going to the old one.
    KeepStaleCoordinator,
    /// A request waiting for a connection never times out.
    IgnoreQueuedDeadline,
    /// When two requests are in flight on one connection, their answers reach each other's
    /// owners.
    SwapOwners,
    /// Fetches share the connection of produce, group and admin traffic, so a long poll holds
    /// everything behind it.
    FetchOnSharedConnection,
    /// Losing a broker connection does not trigger a metadata refresh, so moved leaders stay
    /// unknown until the periodic refresh.
    NoRefreshOnBrokerLoss,
}

impl Plant {
    /// Every plant, in a fixed order.
    pub const ALL: [Plant; 6] = [
        Plant::DropRetry,
        Plant::KeepStaleCoordinator,
        Plant::IgnoreQueuedDeadline,
        Plant::SwapOwners,
        Plant::FetchOnSharedConnection,
        Plant::NoRefreshOnBrokerLoss,
    ];

    /// The plant's name as `sim --plants` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Plant::DropRetry => "drop-retry",
            Plant::KeepStaleCoordinator => "keep-stale-coordinator",
            Plant::IgnoreQueuedDeadline => "ignore-queued-deadline",
            Plant::SwapOwners => "swap-owners",
            Plant::FetchOnSharedConnection => "fetch-on-shared-connection",
            Plant::NoRefreshOnBrokerLoss => "no-refresh-on-broker-loss",
        }
    }
}
