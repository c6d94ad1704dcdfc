//! The consumer's commands, on both sides of the intake: typed [`Handle`] methods, and the
//! dispatcher's queue of polls waiting for records.
//!
//! A poll is answered at once when records are buffered, else when the next ones arrive or
//! its timeout passes. Positions move when the driver hands records to a poll, so a poll
//! whose caller stops waiting (a cancelled future) after it was answered sends its records
//! back, and the driver seeks those partitions back to them: nothing is skipped unseen.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::outcome::{ack, items, reply, Ack, ItemSender, Items, Nudge, PendingAck, Replier, Reply};
use super::{Command, Handle};
use crate::client::Client;
use crate::consumer::{
    CommittedOffset, ConsumeError, ConsumerRecord, ListedOffset, OffsetSpec, Rebalance, RebalanceId, TopicPartition,
};

type Polled = Result<Vec<ConsumerRecord>, ConsumeError>;

/// The consumer's commands, carried on the intake.
pub(super) enum ConsumerCommand {
    Assign {
        partitions: Vec<TopicPartition>,
        reply: Replier<Result<(), ConsumeError>>,
    },
    Subscribe {
        topics: Vec<crate::protocol::TopicName>,
        reply: Replier<Result<(), ConsumeError>>,
    },
    Unsubscribe {
        reply: Replier<()>,
    },
    SubscribePattern {
        pattern: String,
        reply: Replier<Result<(), ConsumeError>>,
    },
    Metrics {
        reply: Replier<BTreeMap<String, f64>>,
    },
    Rebalances {
        reply: Replier<Items<RebalanceEvent>>,
    },
    Assignment {
        reply: Replier<Vec<TopicPartition>>,
    },
    Seek {
        partition: TopicPartition,
        to: SeekTo,
        reply: Replier<Result<(), ConsumeError>>,
    },
    Pause {
        partition: TopicPartition,
        paused: bool,
        reply: Replier<Result<(), ConsumeError>>,
    },
    Position {
        partition: TopicPartition,
        reply: Replier<Result<Option<i64>, ConsumeError>>,
    },
    Poll {
        max: usize,
        timeout: Duration,
        reply: Replier<Polled>,
    },
    ListOffsets {
        partitions: Vec<(TopicPartition, OffsetSpec)>,
        reply: Replier<Result<BTreeMap<TopicPartition, Option<ListedOffset>>, ConsumeError>>,
    },
    Committed {
        partitions: Vec<TopicPartition>,
        reply: Replier<Result<BTreeMap<TopicPartition, Option<CommittedOffset>>, ConsumeError>>,
    },
    /// `None`: every position.
    Commit {
        offsets: Option<Vec<(TopicPartition, CommittedOffset)>>,
        reply: Replier<Result<(), ConsumeError>>,
    },
}

/// Where a seek goes.
pub(super) enum SeekTo {
    Offset(i64),
    Spec(OffsetSpec),
}

/// Records that cancelled polls never gave their callers, shared by handles and driver.
pub(super) type Returned = Arc<Mutex<Vec<ConsumerRecord>>>;

/// A rebalance as the application sees it, from [`Handle::rebalances`]. When partitions
/// are revoked, the consumer keeps their positions and holds the rebalance until this event
/// is acknowledged ([`RebalanceEvent::ack`], or dropping it): commit or flush first.
pub struct RebalanceEvent {
    /// Newly assigned partitions.
    pub assigned: Vec<TopicPartition>,
    /// Partitions to give up.
    pub revoked: Vec<TopicPartition>,
    /// Partitions taken away without a chance to commit.
    pub lost: Vec<TopicPartition>,
    ack: Option<Ack>,
}

impl RebalanceEvent {
    /// Lets the rebalance go on; dropping the event does the same.
    pub fn ack(self) {}
}

impl std::fmt::Debug for RebalanceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RebalanceEvent")
            .field("assigned", &self.assigned)
            .field("revoked", &self.revoked)
            .field("lost", &self.lost)
            .field("waits_for_ack", &self.ack.is_some())
            .finish()
    }
}

/// Polls waiting for records, oldest first, and the rebalance listener, on the driver's side.
pub(super) struct Polls {
    waiting: VecDeque<(Instant, usize, Replier<Polled>)>,
    returned: Returned,
    nudge: Nudge,
    listener: Option<ItemSender<RebalanceEvent>>,
    /// Events the listener's stream had no room for yet.
    backlog: VecDeque<(Rebalance, Option<RebalanceId>)>,
    acks: Vec<(RebalanceId, PendingAck)>,
}

/// Rebalance events held for a listener at most; past it the stream waits for the application.
const REBALANCE_STREAM: usize = 16;

impl Polls {
    pub fn new(returned: Returned, nudge: Nudge) -> Self {
        Polls { waiting: VecDeque::new(), returned, nudge, listener: None, backlog: VecDeque::new(), acks: Vec::new() }
    }

    /// A rebalance event from the client: to the listener, if there is one.
    pub fn rebalance(&mut self, r: Rebalance) {
        if self.listener.is_some() {
            let id = r.ack;
            self.backlog.push_back((r, id));
        }
    }

    /// Hands queued events to the listener and passes its acknowledgements to the client.
    fn serve_listener(&mut self, now: Instant, client: &mut Client) {
        if let Some(tx) = &self.listener {
            if !tx.is_wanted() {
                // The application dropped the stream: nothing waits for acknowledgements.
                self.listener = None;
                self.backlog.clear();
                client.set_rebalance_listener(now, false);
            }
        }
        if let Some(tx) = &self.listener {
            while let Some((r, id)) = self.backlog.pop_front() {
                let (token, pending) = match id {
                    Some(_) => {
                        let (a, p) = ack(self.nudge.clone());
                        (Some(a), Some(p))
                    }
                    None => (None, None),
                };
                let event = RebalanceEvent {
                    assigned: r.assigned.clone(),
                    revoked: r.revoked.clone(),
                    lost: r.lost.clone(),
                    ack: token,
                };
                match tx.try_send(event) {
                    Ok(()) => {
                        if let (Some(id), Some(p)) = (id, pending) {
                            self.acks.push((id, p));
                        }
                    }
                    Err(event) => {
                        // Its token is dropped unsent; a fresh one comes with the retry.
                        drop(event);
                        self.backlog.push_front((r, id));
                        break;
                    }
                }
            }
        }
        let mut i = 0;
        while i < self.acks.len() {
            if self.acks[i].1.is_acked() {
                let (id, _) = self.acks.swap_remove(i);
                client.ack_rebalance(now, id);
            } else {
                i += 1;
            }
        }
    }

    /// Seeks partitions back to records that cancelled polls took: the first returned record
    /// of each partition is where its position goes back to.
    fn take_back(&mut self, now: Instant, client: &mut Client) {
        let records = std::mem::take(&mut *self.returned.lock().unwrap_or_else(|e| e.into_inner()));
        let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for r in records {
            first.entry(TopicPartition { topic: r.topic, partition: r.partition }).or_insert(r.offset);
        }
        for (tp, offset) in first {
            // A partition no longer assigned has nobody to give the records to.
            let _ = client.seek(now, &tp, offset);
        }
    }

    /// Runs a consumer command; answers that need the cluster come later as events, routed
    /// by the returned request id.
    pub fn submit(&mut self, now: Instant, client: &mut Client, command: ConsumerCommand) -> Option<Waiting> {
        match command {
            ConsumerCommand::Assign { partitions, reply } => reply.send(client.assign(now, partitions)),
            ConsumerCommand::Subscribe { topics, reply } => reply.send(client.subscribe(now, topics)),
            ConsumerCommand::Rebalances { reply } => {
                let (tx, rx) = items(REBALANCE_STREAM, self.nudge.clone());
                self.listener = Some(tx);
                client.set_rebalance_listener(now, true);
                reply.send(rx);
            }
            ConsumerCommand::Metrics { reply } => {
                reply.send(client.consumer_metrics(now).into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }
            ConsumerCommand::SubscribePattern { pattern, reply } => reply.send(client.subscribe_pattern(now, &pattern)),
            ConsumerCommand::Unsubscribe { reply } => {
                client.unsubscribe(now);
                reply.send(());
            }
            ConsumerCommand::Assignment { reply } => reply.send(client.assignment()),
            ConsumerCommand::Seek { partition, to, reply } => reply.send(match to {
                SeekTo::Offset(o) => client.seek(now, &partition, o),
                SeekTo::Spec(spec) => client.seek_to(now, &partition, spec),
            }),
            ConsumerCommand::Pause { partition, paused, reply } => {
                reply.send(if paused { client.pause(now, &partition) } else { client.resume(now, &partition) })
            }
            ConsumerCommand::Position { partition, reply } => reply.send(client.position(&partition)),
            ConsumerCommand::Poll { max, timeout, reply } => {
                // A poll that finds nothing still counts as one (max.poll.interval.ms, and a
                // member that left for not polling rejoins).
                if !client.has_records() {
                    let _ = client.poll_records(now, 1);
                }
                self.waiting.push_back((now + timeout, max, reply));
                self.serve(now, client);
            }
            ConsumerCommand::ListOffsets { partitions, reply } => {
                return Some(Waiting::Listed(client.list_offsets(now, partitions), reply));
            }
            ConsumerCommand::Committed { partitions, reply } => {
                return Some(Waiting::Committed(client.committed(now, partitions), reply));
            }
            ConsumerCommand::Commit { offsets, reply } => {
                let offsets = offsets.unwrap_or_else(|| client.positions());
                return Some(Waiting::Commit(client.commit(now, offsets), reply));
            }
        }
        None
    }

    /// Answers waiting polls that records (or an error) arrived for, and those whose time
    /// ran out; polls nobody waits for any more are dropped before they take records.
    pub fn serve(&mut self, now: Instant, client: &mut Client) {
        self.take_back(now, client);
        self.serve_listener(now, client);
        if client.is_closed() {
            for (_, _, reply) in self.waiting.drain(..) {
                reply.send(Err(ConsumeError::Closed));
            }
        }
        while let Some((deadline, max, reply)) = self.waiting.pop_front() {
            if !reply.is_wanted() {
                continue;
            }
            if client.has_records() {
                match client.poll_records(now, max) {
                    // Only markers or stale data before data still being decoded: the poll
                    // waits on for records, as it would have with nothing buffered.
                    Ok(records) if records.is_empty() && deadline > now && !client.has_records() => {
                        self.waiting.push_front((deadline, max, reply));
                        break;
                    }
                    answer => reply.send(answer),
                }
            } else if deadline <= now {
                reply.send(Ok(Vec::new()));
            } else {
                self.waiting.push_front((deadline, max, reply));
                break;
            }
        }
        // Expired polls behind a waiting one.
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for (deadline, max, reply) in self.waiting.drain(..) {
            if deadline <= now {
                reply.send(Ok(Vec::new()));
            } else if reply.is_wanted() {
                kept.push_back((deadline, max, reply));
            }
        }
        self.waiting = kept;
    }

    /// When the soonest waiting poll times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.iter().map(|(d, _, _)| *d).min()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Consumer answers that come as client events.
pub(super) enum Waiting {
    Listed(crate::client::RequestId, Replier<Result<BTreeMap<TopicPartition, Option<ListedOffset>>, ConsumeError>>),
    Committed(
        crate::client::RequestId,
        Replier<Result<BTreeMap<TopicPartition, Option<CommittedOffset>>, ConsumeError>>,
    ),
    Commit(crate::client::RequestId, Replier<Result<(), ConsumeError>>),
}

/// A poll's pending answer: if the caller stops waiting after the driver answered, the
/// records go back to the driver.
struct PollGuard<'a> {
    handle: &'a Handle,
    answer: Option<Reply<Polled>>,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            if let Some(Ok(Ok(records))) = answer.try_recv() {
                if !records.is_empty() {
                    self.handle.submit_unpolled(records);
                }
            }
        }
    }
}

fn closed<T>(_: super::outcome::DriverGone) -> Result<T, ConsumeError> {
    Err(ConsumeError::Closed)
}

impl Handle {
    // ---- consumer ----------------------------------------------------------------------

    /// Assigns partitions to the consumer (replacing its assignment); each new one starts at
    /// the group's committed offset, or where `auto.offset.reset` says.
    pub async fn assign(&self, partitions: Vec<TopicPartition>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Assign { partitions, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// [`Handle::assign`], blocking the thread.
    pub fn assign_blocking(&self, partitions: Vec<TopicPartition>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Assign { partitions, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    /// Joins the consumer's group (`group.id`) subscribed to `topics`; the group's assignor
    /// decides which partitions this consumer reads.
    pub async fn subscribe(&self, topics: Vec<crate::protocol::TopicName>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Subscribe { topics, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// [`Handle::subscribe`], blocking the thread.
    pub fn subscribe_blocking(&self, topics: Vec<crate::protocol::TopicName>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Subscribe { topics, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    /// The consumer's metrics under the Java consumer's names (`records-consumed-rate`,
    /// `fetch-latency-avg`, `records-lag-max`, `commit-latency-avg`, `assigned-partitions`,
    /// ...; the table is in [`crate::consumer::metrics`]). Empty once the driver is gone.
    pub async fn consumer_metrics(&self) -> BTreeMap<String, f64> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Metrics { reply })).await;
        answer.recv().await.unwrap_or_default()
    }

    /// The group's rebalances as they happen, as a stream ([`Items`]: `next().await`,
    /// `next_blocking()`, or `Stream`). While the application holds this stream, revoked
    /// partitions wait for each event's acknowledgement (see [`RebalanceEvent`]); dropping the
    /// stream turns that off. Call it before subscribing, so the first assignment is in it.
    pub async fn rebalances(&self) -> Result<Items<RebalanceEvent>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Rebalances { reply })).await;
        answer.recv().await.or(Err(ConsumeError::Closed))
    }

    /// [`Handle::rebalances`], blocking the thread.
    pub fn rebalances_blocking(&self) -> Result<Items<RebalanceEvent>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Rebalances { reply }));
        answer.recv_blocking().or(Err(ConsumeError::Closed))
    }

    /// [`Handle::consumer_metrics`], blocking the thread.
    pub fn consumer_metrics_blocking(&self) -> BTreeMap<String, f64> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Metrics { reply }));
        answer.recv_blocking().unwrap_or_default()
    }

    /// Joins the group subscribed to every topic whose whole name matches the regular
    /// expression `pattern`, including topics created later.
    pub async fn subscribe_pattern(&self, pattern: impl Into<String>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        let pattern = pattern.into();
        self.submit(Command::Consumer(ConsumerCommand::SubscribePattern { pattern, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// [`Handle::subscribe_pattern`], blocking the thread.
    pub fn subscribe_pattern_blocking(&self, pattern: impl Into<String>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        let pattern = pattern.into();
        self.submit_blocking(Command::Consumer(ConsumerCommand::SubscribePattern { pattern, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    /// Leaves the group; its partitions are committed first (with auto-commit).
    pub async fn unsubscribe(&self) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Unsubscribe { reply })).await;
        answer.recv().await.or_else(closed)
    }

    /// The consumer's assigned partitions.
    pub async fn assignment(&self) -> Result<Vec<TopicPartition>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Assignment { reply })).await;
        answer.recv().await.or_else(closed)
    }

    /// [`Handle::assignment`], blocking the thread.
    pub fn assignment_blocking(&self) -> Result<Vec<TopicPartition>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Assignment { reply }));
        answer.recv_blocking().or_else(closed)
    }

    /// Up to `max` records (at most `max.poll.records`), waiting up to `timeout` for the
    /// first; empty when none came in time. Cancel-safe: records answered to a poll whose
    /// future was dropped are fetched again.
    pub async fn poll(&self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let (reply, answer) = reply();
        let mut guard = PollGuard { handle: self, answer: None };
        self.submit(Command::Consumer(ConsumerCommand::Poll { max, timeout, reply })).await;
        guard.answer = Some(answer);
        let result = guard.answer.as_ref().expect("set").recv().await;
        guard.answer = None;
        result.unwrap_or(Err(ConsumeError::Closed))
    }

    /// [`Handle::poll`], blocking the thread.
    pub fn poll_blocking(&self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Poll { max, timeout, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    /// Moves an assigned partition's position to `offset`.
    pub async fn seek(&self, partition: TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        self.seek_to_target(partition, SeekTo::Offset(offset)).await
    }

    /// [`Handle::seek`], blocking the thread.
    pub fn seek_blocking(&self, partition: TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        let to = SeekTo::Offset(offset);
        self.submit_blocking(Command::Consumer(ConsumerCommand::Seek { partition, to, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    /// Moves an assigned partition's position to its earliest or latest offset, or to the
    /// first offset at a timestamp.
    pub async fn seek_to(&self, partition: TopicPartition, spec: OffsetSpec) -> Result<(), ConsumeError> {
        self.seek_to_target(partition, SeekTo::Spec(spec)).await
    }

    async fn seek_to_target(&self, partition: TopicPartition, to: SeekTo) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Seek { partition, to, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// Stops fetching a partition until [`Handle::resume`].
    pub async fn pause(&self, partition: TopicPartition) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Pause { partition, paused: true, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// Fetches a paused partition again.
    pub async fn resume(&self, partition: TopicPartition) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Pause { partition, paused: false, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// The next offset the consumer returns for a partition; `None` while not yet known.
    pub async fn position(&self, partition: TopicPartition) -> Result<Option<i64>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Position { partition, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// Offsets by `spec` for any partitions (Java's `beginningOffsets`, `endOffsets`,
    /// `offsetsForTimes`).
    pub async fn list_offsets(
        &self,
        partitions: Vec<(TopicPartition, OffsetSpec)>,
    ) -> Result<BTreeMap<TopicPartition, Option<ListedOffset>>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::ListOffsets { partitions, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// [`Handle::list_offsets`], blocking the thread.
    pub fn list_offsets_blocking(
        &self,
        partitions: Vec<(TopicPartition, OffsetSpec)>,
    ) -> Result<BTreeMap<TopicPartition, Option<ListedOffset>>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::ListOffsets { partitions, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    /// The group's committed offsets for `partitions` (needs `group.id`).
    pub async fn committed(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<CommittedOffset>>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Committed { partitions, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// [`Handle::committed`], blocking the thread.
    pub fn committed_blocking(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<CommittedOffset>>, ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Committed { partitions, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    /// Commits `offsets` for the group, or every position when `None` (needs `group.id`).
    pub async fn commit(&self, offsets: Option<Vec<(TopicPartition, CommittedOffset)>>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit(Command::Consumer(ConsumerCommand::Commit { offsets, reply })).await;
        answer.recv().await.unwrap_or(Err(ConsumeError::Closed))
    }

    /// [`Handle::commit`], blocking the thread.
    pub fn commit_blocking(&self, offsets: Option<Vec<(TopicPartition, CommittedOffset)>>) -> Result<(), ConsumeError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Consumer(ConsumerCommand::Commit { offsets, reply }));
        answer.recv_blocking().unwrap_or(Err(ConsumeError::Closed))
    }

    fn submit_unpolled(&self, records: Vec<ConsumerRecord>) {
        self.returned.lock().unwrap_or_else(|e| e.into_inner()).extend(records);
        self.wake();
    }
}

/// The consumer's records one by one, as a [`Stream`](futures_core::Stream) (async) or an
/// [`Iterator`] (blocking), from [`Handle::records`]. Each poll underneath waits up to the
/// timeout given there. An error comes as `Some(Err(..))` and iteration may go on; the end
/// comes once the client is closed. Records taken from the driver but not yet handed out
/// when it is dropped go back to the driver, so they are fetched again.
pub struct Records {
    handle: Handle,
    timeout: Duration,
    ready: VecDeque<ConsumerRecord>,
    pending: Option<PollFuture>,
    done: bool,
}

type PollFuture = std::pin::Pin<Box<dyn std::future::Future<Output = PollOutcome> + Send>>;
type PollOutcome = Result<Vec<ConsumerRecord>, ConsumeError>;

impl Records {
    /// Moves a poll's outcome in; an error other than the end is returned.
    fn take(&mut self, result: PollOutcome) -> Option<ConsumeError> {
        match result {
            Ok(records) => {
                self.ready.extend(records);
                None
            }
            Err(ConsumeError::Closed) => {
                self.done = true;
                None
            }
            Err(e) => Some(e),
        }
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        let left: Vec<ConsumerRecord> = self.ready.drain(..).collect();
        if !left.is_empty() {
            self.handle.submit_unpolled(left);
        }
    }
}

impl futures_core::Stream for Records {
    type Item = Result<ConsumerRecord, ConsumeError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if let Some(r) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(r)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let pending = this.pending.get_or_insert_with(|| {
                let (handle, timeout) = (this.handle.clone(), this.timeout);
                Box::pin(async move { handle.poll(usize::MAX, timeout).await })
            });
            match pending.as_mut().poll(cx) {
                Poll::Ready(result) => {
                    this.pending = None;
                    if let Some(e) = this.take(result) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Iterator for Records {
    type Item = Result<ConsumerRecord, ConsumeError>;

    /// Blocks the thread until a record, an error or the end.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            let result = self.handle.poll_blocking(usize::MAX, self.timeout);
            if let Some(e) = self.take(result) {
                return Some(Err(e));
            }
        }
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").field("ready", &self.ready.len()).field("done", &self.done).finish()
    }
}

impl Handle {
    /// The consumer's records one at a time: a `Stream` for async code, an `Iterator` for
    /// threads (see [`Records`]). `poll_timeout` bounds each wait for the driver, so a
    /// blocking iterator notices a closed client.
    pub fn records(&self, poll_timeout: Duration) -> Records {
        Records { handle: self.clone(), timeout: poll_timeout, ready: VecDeque::new(), pending: None, done: false }
    }
}
