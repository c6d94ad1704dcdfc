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
    /// The producer numbers a batch without advancing its partition's next sequence, so the
    /// next batch reuses the sequence (and a broker may take it for a duplicate).
    ProducerSequenceNotAdvanced,
    /// A certain sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID for the
    /// partition's first unresolved batch) is retried as is, without the KIP-360 epoch bump:
    /// the partition keeps being refused until its records time out.
    ProducerNoEpochBump,
    /// A batch that failed retriably goes back to the end of its partition's queue instead
    /// of its place, behind batches created after it.
    ProducerRetryOutOfOrder,
    /// A batch that failed retriably is dropped without a delivery report.
    ProducerDropOnRetry,
    /// A batch compressed by offloaded work leaves without its producer id, epoch and
    /// sequence written in, so the broker takes it (and its retries) for a batch of a
    /// producer without idempotence.
    ProducerOffloadedWithoutState,
    /// Partitions a rebalance revokes are dropped without committing their positions, even
    /// with auto-commit: the next owner reads again what this one already handed out.
    ConsumerRevokeSkipsCommit,
    /// The position does not move past a control batch (a transaction marker) that ends a
    /// fetch, so the consumer never catches up with the log end.
    ConsumerStuckAtControlBatch,
    /// A classic member that left the group keeps heartbeating with its old identity.
    ConsumerHeartbeatAfterLeave,
    /// A poll that stops at its record limit moves the position one past the next record,
    /// which is never handed out.
    ConsumerPollSkipsRecord,
    /// A poll that finds fetched data still being decoded on another thread passes it by,
    /// with its records.
    ConsumerReadsPastDecoding,
    /// SCRAM's last step takes the broker's server signature on trust, so an impostor that
    /// does not know the user's keys is logged in to. Armed per thread
    /// ([`arm_on_thread`]): the SASL client has no path to the router's context.
    ScramSkipsServerSignature,
}

impl Plant {
    /// Every plant, in a fixed order.
    pub const ALL: [Plant; 17] = [
        Plant::DropRetry,
        Plant::KeepStaleCoordinator,
        Plant::IgnoreQueuedDeadline,
        Plant::SwapOwners,
        Plant::FetchOnSharedConnection,
        Plant::NoRefreshOnBrokerLoss,
        Plant::ProducerSequenceNotAdvanced,
        Plant::ProducerNoEpochBump,
        Plant::ProducerRetryOutOfOrder,
        Plant::ProducerDropOnRetry,
        Plant::ProducerOffloadedWithoutState,
        Plant::ConsumerRevokeSkipsCommit,
        Plant::ConsumerStuckAtControlBatch,
        Plant::ConsumerHeartbeatAfterLeave,
        Plant::ConsumerPollSkipsRecord,
        Plant::ConsumerReadsPastDecoding,
        Plant::ScramSkipsServerSignature,
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
            Plant::ProducerSequenceNotAdvanced => "producer-sequence-not-advanced",
            Plant::ProducerNoEpochBump => "producer-no-epoch-bump",
            Plant::ProducerRetryOutOfOrder => "producer-retry-out-of-order",
            Plant::ProducerDropOnRetry => "producer-drop-on-retry",
            Plant::ProducerOffloadedWithoutState => "producer-offloaded-without-state",
            Plant::ConsumerRevokeSkipsCommit => "consumer-revoke-skips-commit",
            Plant::ConsumerStuckAtControlBatch => "consumer-stuck-at-control-batch",
            Plant::ConsumerHeartbeatAfterLeave => "consumer-heartbeat-after-leave",
            Plant::ConsumerPollSkipsRecord => "consumer-poll-skips-record",
            Plant::ConsumerReadsPastDecoding => "consumer-reads-past-decoding",
            Plant::ScramSkipsServerSignature => "scram-skips-server-signature",
        }
    }
}

thread_local! {
    static ON_THREAD: std::cell::Cell<Option<Plant>> = const { std::cell::Cell::new(None) };
}

/// Arms `plant` (or, with `None`, disarms) for every client driven on this thread, for the
/// plants that live below the router, where [`crate::Client::plant`] does not reach (the
/// SCRAM client). The simulator sets it at the start of each run, one run per thread at a time.
pub fn arm_on_thread(plant: Option<Plant>) {
    ON_THREAD.with(|c| c.set(plant));
}

/// Whether `plant` is armed on this thread.
pub(crate) fn armed_on_thread(plant: Plant) -> bool {
    ON_THREAD.with(|c| c.get() == Some(plant))
}
