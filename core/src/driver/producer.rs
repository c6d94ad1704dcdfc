//! The producer's side of the adapter boundary: buffer backpressure shared by every handle,
//! per-record delivery outcomes, and the dispatcher's table of records waiting for them.
//!
//! A send reserves its record's bytes of `buffer.memory` on the application's side before the
//! record is queued for the driver, waiting up to `max.block.ms` for room; the bytes come back
//! when the record's delivery is reported. So a burst of sends blocks (or waits) at the
//! buffer instead of filling the intake, and the core never sees more than it has room for.
//!
//! Waiting with a deadline needs a clock and a timer; the runtime crate hands both to the
//! handle ([`Timer`]), so nothing here reads the time by itself.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener, Listener};

use super::callback::Callback;
use crate::producer::{Delivery, ProduceError, RecordMetadata, SendId};

/// `buffer.memory`, as the handles reserve it.
#[derive(Debug)]
pub(crate) struct BufferGate {
    /// Bytes reserved; lock-free, as every send touches it.
    used: AtomicUsize,
    /// Nanoseconds sends spent waiting for room (`bufferpool-wait-time-ns-total`).
    waited: std::sync::atomic::AtomicU64,
    limit: usize,
    pub(crate) max_block: Duration,
    freed: Event,
    /// Sends on their way to the driver (see [`SendLane`]).
    pub(crate) lane: SendLane,
}

impl BufferGate {
    pub(crate) fn new(limit: usize, max_block: Duration, lane_capacity: usize) -> Self {
        BufferGate {
            used: AtomicUsize::new(0),
            waited: Default::default(),
            limit,
            max_block,
            freed: Event::new(),
            lane: SendLane::new(lane_capacity),
        }
    }

    pub(crate) fn waited_ns(&self) -> u64 {
        self.waited.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn try_reserve(&self, size: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + size <= self.limit).then_some(used + size)
            })
            .is_ok()
    }

    /// Gives `size` bytes back and wakes senders waiting for room.
    pub(crate) fn release(&self, size: usize) {
        if size == 0 {
            return;
        }
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(size)));
        self.freed.notify(usize::MAX);
    }

    /// Reserves `size` bytes, waiting for room until `max.block.ms` has passed. Without a
    /// [`Timer`] (or its sleep) a full buffer fails at once.
    pub(crate) async fn reserve(&self, size: usize, timer: Option<&Timer>) -> Result<(), ProduceError> {
        self.check(size)?;
        if self.try_reserve(size) {
            return Ok(());
        }
        let Some((timer, sleep)) = timer.and_then(|t| Some((t, t.sleep.as_ref()?))) else {
            return self.reserve_at_once(size);
        };
        let start = (timer.now)();
        loop {
            let listener = self.freed.listen();
            if self.try_reserve(size) {
                return self.waited(start, (timer.now)(), Ok(()));
            }
            let left = self.max_block.saturating_sub((timer.now)() - start);
            if left.is_zero() || !wait_async(listener, sleep(left)).await {
                let end = (timer.now)();
                return self.waited(start, end, Err(ProduceError::BufferExhausted { waited: end - start }));
            }
        }
    }

    /// [`BufferGate::reserve`], blocking the thread.
    pub(crate) fn reserve_blocking(&self, size: usize, timer: Option<&Timer>) -> Result<(), ProduceError> {
        self.check(size)?;
        if self.try_reserve(size) {
            return Ok(());
        }
        let Some(timer) = timer else { return self.reserve_at_once(size) };
        let start = (timer.now)();
        loop {
            let listener = self.freed.listen();
            if self.try_reserve(size) {
                return self.waited(start, (timer.now)(), Ok(()));
            }
            let left = self.max_block.saturating_sub((timer.now)() - start);
            if left.is_zero() || listener.wait_timeout(left).is_none() {
                let end = (timer.now)();
                return self.waited(start, end, Err(ProduceError::BufferExhausted { waited: end - start }));
            }
        }
    }

    /// Reserves `size` bytes if there is room now; `Ok(false)` when a wait is needed.
    pub(crate) fn reserve_now(&self, size: usize) -> Result<bool, ProduceError> {
        self.check(size)?;
        Ok(self.try_reserve(size))
    }

    fn reserve_at_once(&self, size: usize) -> Result<(), ProduceError> {
        if self.try_reserve(size) {
            Ok(())
        } else {
            Err(ProduceError::BufferExhausted { waited: Duration::ZERO })
        }
    }

    /// Counts a wait that began at `start` (`bufferpool-wait-time-ns-total`) and returns `r`.
    fn waited(&self, start: Instant, end: Instant, r: Result<(), ProduceError>) -> Result<(), ProduceError> {
        let ns = u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX);
        if ns > 0 {
            self.waited.fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn check(&self, size: usize) -> Result<(), ProduceError> {
        if size > self.limit {
            return Err(ProduceError::RecordTooLarge { size, limit: self.limit, setting: "buffer.memory" });
        }
        Ok(())
    }
}

/// A record on its way to the driver, its buffer bytes reserved.
pub(crate) struct QueuedSend {
    pub(crate) record: crate::producer::ProducerRecord,
    pub(crate) waiter: Waiter,
    pub(crate) reserved: usize,
}

/// Sends queued for the driver outside the intake: one intake message (a channel send and a
/// wake-up) per record cost more than the producer's own work on the record, so sends share
/// one locked queue that the dispatcher empties in one go, and only the send that finds it
/// empty wakes the driver. Bounded like the intake: past `capacity` records a send waits.
///
/// Order with other commands holds because the dispatcher empties the lane before it takes
/// each command off the intake, and a handle queues its send before any later command.
pub(crate) struct SendLane {
    queue: Mutex<LaneQueue>,
    /// Announces room in a lane that was full.
    drained: Event,
    capacity: usize,
}

#[derive(Default)]
struct LaneQueue {
    sends: Vec<QueuedSend>,
    /// The driver is gone: sends fail at once instead of waiting in a lane nobody empties.
    closed: bool,
}

/// What [`SendLane::push`] did with a send.
pub(crate) enum Pushed {
    /// Queued into an empty lane: the driver needs a wake-up.
    First,
    /// Queued behind others; the wake-up of the first is still to come or being handled.
    Behind,
    /// The lane is full: wait for [`SendLane::room`] and push again.
    Full(QueuedSend),
    /// The driver is gone; the send is handed back.
    Closed(QueuedSend),
}

/// Why [`SendLane::push_from`] left a send where it was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LaneRefused {
    Full,
    Closed,
}

impl SendLane {
    fn new(capacity: usize) -> Self {
        SendLane { queue: Mutex::new(LaneQueue::default()), drained: Event::new(), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, send: QueuedSend) -> Pushed {
        let mut slot = Some(send);
        let refused = match self.push_from(&mut slot) {
            Ok(pushed) => return pushed,
            Err(refused) => refused,
        };
        let send = slot.expect("a refused send stays in its slot");
        match refused {
            LaneRefused::Full => Pushed::Full(send),
            LaneRefused::Closed => Pushed::Closed(send),
        }
    }

    /// [`SendLane::push`] of a send its caller holds in `slot`: taken from there only when
    /// the lane has room and is open, so the common case copies it once, into the lane.
    /// When the lane refuses, the send stays in `slot`.
    #[inline]
    pub(crate) fn push_from(&self, slot: &mut Option<QueuedSend>) -> Result<Pushed, LaneRefused> {
        let mut q = self.lock();
        if q.closed {
            return Err(LaneRefused::Closed);
        }
        if q.sends.len() >= self.capacity {
            return Err(LaneRefused::Full);
        }
        q.sends.extend(slot.take());
        Ok(if q.sends.len() == 1 { Pushed::First } else { Pushed::Behind })
    }

    /// A listener that fires once the driver emptied the lane; check with a push after
    /// creating it, as a drain may have happened in between.
    pub(crate) fn room(&self) -> EventListener {
        self.drained.listen()
    }

    /// Swaps the queued sends into `into` (empty, kept by the driver so both vectors keep
    /// their capacity) and lets waiting senders in.
    pub(crate) fn take(&self, into: &mut Vec<QueuedSend>) {
        {
            let mut q = self.lock();
            if q.sends.is_empty() {
                return;
            }
            std::mem::swap(&mut q.sends, into);
        }
        self.drained.notify(usize::MAX);
    }

    /// Refuses every later send and hands back those queued.
    pub(crate) fn close(&self) -> Vec<QueuedSend> {
        let taken = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.sends)
        };
        self.drained.notify(usize::MAX);
        taken
    }
}

impl fmt::Debug for SendLane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendLane").field("queued", &self.lock().sends.len()).finish()
    }
}

/// A runtime's sleep: a future that completes after the given time.
pub type Sleeper = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The runtime's clock and timer, for the handle's waits with a deadline (a send waiting up to
/// `max.block.ms` for buffer room). `sleep` serves the `async` methods; the `_blocking` ones
/// need only `now`.
#[derive(Clone)]
pub struct Timer {
    /// The runtime's clock.
    pub now: fn() -> Instant,
    /// The runtime's sleep, if it has one.
    pub sleep: Option<Sleeper>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer").field("sleep", &self.sleep.is_some()).finish_non_exhaustive()
    }
}

/// Waits for `listener` until `deadline` completes; returns whether the listener fired.
async fn wait_async(listener: EventListener, deadline: Pin<Box<dyn Future<Output = ()> + Send>>) -> bool {
    let mut listener = std::pin::pin!(listener);
    let mut deadline = deadline;
    std::future::poll_fn(|cx| {
        if listener.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// One record's outcome, shared by the driver (which fills it) and the application.
#[derive(Debug)]
struct Slot {
    value: Mutex<Option<Result<RecordMetadata, ProduceError>>>,
    ready: Event,
}

/// The outcome of one sent record: `.await` it, or [`DeliveryFuture::wait`] on a thread
/// (kafka-python's `future.get()`), or [`DeliveryFuture::wait_timeout`].
pub struct DeliveryFuture {
    slot: Arc<Slot>,
}

impl fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryFuture").field("done", &self.is_done()).finish()
    }
}

impl DeliveryFuture {
    fn take(&self) -> Option<Result<RecordMetadata, ProduceError>> {
        self.slot.value.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether the outcome is there.
    pub fn is_done(&self) -> bool {
        self.slot.value.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Blocks the thread until the record is delivered or failed.
    pub fn wait(self) -> Result<RecordMetadata, ProduceError> {
        loop {
            if let Some(v) = self.take() {
                return v;
            }
            let listener = self.slot.ready.listen();
            if let Some(v) = self.take() {
                return v;
            }
            listener.wait();
        }
    }

    /// Blocks at most `timeout`; `None` when the outcome is not there yet (the future stays
    /// usable). The outcome is announced once, so one wait is enough.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<RecordMetadata, ProduceError>> {
        if let Some(v) = self.take() {
            return Some(v);
        }
        let listener = self.slot.ready.listen();
        if let Some(v) = self.take() {
            return Some(v);
        }
        listener.wait_timeout(timeout)?;
        self.take()
    }
}

/// Waits for the outcome on any executor.
pub struct DeliveryWait {
    slot: Arc<Slot>,
    listener: Option<EventListener>,
}

impl Future for DeliveryWait {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if let Some(v) = self.slot.value.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Poll::Ready(v);
            }
            match self.listener.as_mut() {
                None => self.listener = Some(self.slot.ready.listen()),
                Some(l) => {
                    if Pin::new(l).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }
}

impl fmt::Debug for DeliveryWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryWait").finish_non_exhaustive()
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;
    type IntoFuture = DeliveryWait;

    fn into_future(self) -> DeliveryWait {
        DeliveryWait { slot: self.slot, listener: None }
    }
}

enum Notify {
    Future(Arc<Slot>),
    Callback(Callback),
}

/// Who learns a record's outcome. Dropped unanswered (the driver went away with the record
/// still on the intake), it reports [`ProduceError::Closed`]: nobody waits forever.
pub(crate) struct Waiter(Option<Notify>);

impl Waiter {
    pub(crate) fn future() -> (Waiter, DeliveryFuture) {
        let slot = Arc::new(Slot { value: Mutex::new(None), ready: Event::new() });
        (Waiter(Some(Notify::Future(Arc::clone(&slot)))), DeliveryFuture { slot })
    }

    pub(crate) fn callback(f: Callback) -> Waiter {
        Waiter(Some(Notify::Callback(f)))
    }

    /// Drops the waiter without telling it anything (its send failed and said so itself).
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }

    pub(crate) fn complete(mut self, result: Result<RecordMetadata, ProduceError>) {
        if let Some(n) = self.0.take() {
            n.complete(result);
        }
    }
}

impl Notify {
    fn complete(self, result: Result<RecordMetadata, ProduceError>) {
        match self {
            Notify::Future(slot) => {
                *slot.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                slot.ready.notify(usize::MAX);
            }
            Notify::Callback(f) => f.call(result),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.complete(Err(ProduceError::Closed));
        }
    }
}

/// Records the driver handed the client, by send id (dense and growing): a ring indexed from
/// the oldest one not yet delivered.
#[derive(Default)]
pub(crate) struct Pending {
    base: u64,
    slots: VecDeque<Option<(Waiter, usize)>>,
    live: usize,
}

impl Pending {
    pub(crate) fn insert(&mut self, id: SendId, waiter: Waiter, reserved: usize) {
        if self.slots.is_empty() {
            self.base = id.0;
        }
        while self.base + (self.slots.len() as u64) < id.0 {
            self.slots.push_back(None);
        }
        if id.0 < self.base {
            // Never happens (ids grow); complete rather than lose the waiter.
            return waiter.complete(Err(ProduceError::Closed));
        }
        self.slots.push_back(Some((waiter, reserved)));
        self.live += 1;
    }

    fn take(&mut self, id: SendId) -> Option<(Waiter, usize)> {
        let index = usize::try_from(id.0.checked_sub(self.base)?).ok()?;
        let taken = self.slots.get_mut(index)?.take();
        if taken.is_some() {
            self.live -= 1;
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        taken
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Completes every record of `delivery`; returns the buffer bytes to give back.
    pub(crate) fn deliver(&mut self, delivery: &Delivery) -> usize {
        let mut freed = 0;
        for r in &delivery.records {
            let Some((waiter, reserved)) = self.take(r.id) else { continue };
            freed += reserved;
            let result = match &delivery.result {
                Ok(ack) => Ok(delivery.metadata_of(r, ack)),
                Err(e) => Err(e.clone()),
            };
            waiter.complete(result);
        }
        freed
    }

    /// The driver is going away: every record still waiting fails.
    pub(crate) fn fail_all(&mut self) -> usize {
        let mut freed = 0;
        for (waiter, reserved) in self.slots.drain(..).flatten() {
            freed += reserved;
            waiter.complete(Err(ProduceError::Closed));
        }
        self.live = 0;
        freed
    }
}

#[cfg(test)]
mod lane_tests {
    use super::*;
    use crate::producer::ProducerRecord;

    fn send(n: u8, outcomes: &Arc<Mutex<Vec<(u8, bool)>>>) -> QueuedSend {
        let seen = Arc::clone(outcomes);
        let waiter = Waiter::callback(Callback::new(move |r| seen.lock().unwrap().push((n, r.is_ok()))));
        QueuedSend { record: ProducerRecord::new("t", vec![n]), waiter, reserved: 1 }
    }

    #[test]
    fn only_the_send_into_an_empty_lane_asks_for_a_wake_up() {
        let outcomes = Arc::default();
        let lane = SendLane::new(2);
        assert!(matches!(lane.push(send(1, &outcomes)), Pushed::First));
        assert!(matches!(lane.push(send(2, &outcomes)), Pushed::Behind));
        let room = lane.room();
        let Pushed::Full(third) = lane.push(send(3, &outcomes)) else { panic!("the lane holds two") };
        let mut taken = Vec::new();
        lane.take(&mut taken);
        assert!(room.wait_timeout(Duration::ZERO).is_some(), "a drain announces room");
        let order: Vec<u8> = taken.iter().map(|s| s.record.value.as_ref().unwrap()[0]).collect();
        assert_eq!(order, [1, 2], "in the order sent");
        assert!(matches!(lane.push(third), Pushed::First), "emptied: the next send wakes the driver again");
    }

    #[test]
    fn a_send_pushed_from_its_slot_stays_there_when_the_lane_is_full_or_closed() {
        let outcomes = Arc::default();
        let lane = SendLane::new(1);
        let mut slot = Some(send(1, &outcomes));
        assert!(matches!(lane.push_from(&mut slot), Ok(Pushed::First)));
        assert!(slot.is_none(), "taken into the lane");
        let mut slot = Some(send(2, &outcomes));
        assert_eq!(lane.push_from(&mut slot).err(), Some(LaneRefused::Full), "full");
        assert!(slot.is_some(), "left with its owner");
        let mut taken = Vec::new();
        lane.take(&mut taken);
        assert_eq!(taken.len(), 1);
        drop(lane.close());
        assert_eq!(lane.push_from(&mut slot).err(), Some(LaneRefused::Closed), "closed");
        assert!(slot.is_some(), "left with its owner");
        assert!(outcomes.lock().unwrap().is_empty(), "no send was answered");
    }

    #[test]
    fn a_closed_lane_hands_back_what_it_held_and_refuses_more() {
        let outcomes: Arc<Mutex<Vec<(u8, bool)>>> = Arc::default();
        let lane = SendLane::new(4);
        let _ = lane.push(send(1, &outcomes));
        drop(lane.close());
        let Pushed::Closed(back) = lane.push(send(2, &outcomes)) else { panic!("closed") };
        drop(back);
        assert_eq!(*outcomes.lock().unwrap(), [(1, false), (2, false)], "both fail, none is lost");
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    /// A waiter that records `id` in `seen` when it completes (`Closed` counts as failed).
    fn waiter(id: u64, seen: &Arc<Mutex<Vec<(u64, bool)>>>) -> Waiter {
        let seen = Arc::clone(seen);
        Waiter::callback(Callback::new(move |r| seen.lock().unwrap().push((id, r.is_ok()))))
    }

    #[test]
    fn waiters_are_found_by_id_in_any_order_and_each_completes_once() {
        let seen = Arc::default();
        let mut pending = Pending::default();
        // Ids 10.. with gaps (sends refused before the driver had them).
        let ids: Vec<u64> = (10..710).filter(|i| i % 5 != 0).collect();
        for &id in &ids {
            pending.insert(SendId(id), waiter(id, &seen), 2);
        }
        assert_eq!(pending.live, ids.len());
        // Delivered out of order: every other id first, then the rest from the newest.
        let (evens, odds): (Vec<u64>, Vec<u64>) = ids.iter().partition(|&&i| i % 2 == 0);
        for &id in evens.iter().chain(odds.iter().rev()) {
            let (w, reserved) = pending.take(SendId(id)).expect("waiting");
            assert_eq!(reserved, 2);
            w.complete(Err(ProduceError::Closed));
            assert!(pending.take(SendId(id)).is_none(), "taken once");
        }
        assert!(pending.is_empty());
        assert!(pending.take(SendId(5)).is_none() && pending.take(SendId(1 << 40)).is_none(), "unknown ids");
        assert!(pending.slots.is_empty(), "nothing kept once every record is delivered");
        let mut completed: Vec<u64> = seen.lock().unwrap().iter().map(|&(id, _)| id).collect();
        completed.sort_unstable();
        assert_eq!(completed, ids, "each waiter completed once");
        // Idle, the next id starts over wherever it is.
        pending.insert(SendId(100_000), waiter(100_000, &seen), 1);
        assert_eq!((pending.base, pending.slots.len()), (100_000, 1));
        assert_eq!(pending.take(SendId(100_000)).map(|(_, r)| r), Some(1));
    }

    #[test]
    fn the_driver_going_away_fails_every_waiting_record_once() {
        let seen = Arc::default();
        let mut pending = Pending::default();
        for id in 0..300 {
            pending.insert(SendId(id), waiter(id, &seen), 3);
        }
        let (w, _) = pending.take(SendId(1)).expect("waiting");
        w.disarm();
        assert_eq!(pending.fail_all(), 3 * 299);
        assert!(pending.is_empty());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 299);
        assert!(seen.iter().all(|&(id, ok)| id != 1 && !ok));
    }
}
