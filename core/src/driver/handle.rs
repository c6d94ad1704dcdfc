//! The application's side: typed methods, written once for every runtime, that put a command
//! on the bounded intake and wait for its outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_channel::Sender;

use super::callback::Callback;
use super::outcome::{reply, DriverGone, Reply};
use super::producer::{BufferGate, DeliveryFuture, Pushed, QueuedSend, Timer, Waiter};
use super::{Command, InlineDriver, Intake, Msg};
use crate::client::{BrokerVersions, RequestError, Response, Target};
use crate::cluster::ClusterMetadata;
use crate::producer::{ProduceError, ProducerRecord, RecordMetadata};
use crate::protocol::{RequestBody, TopicName};

impl From<DriverGone> for RequestError {
    fn from(_: DriverGone) -> Self {
        RequestError::ClientClosed
    }
}

/// A handle on one driven [`Client`](crate::Client): cheap to clone, `Send + Sync`, usable
/// from any task or thread. Runtime crates wrap it; each method comes in an `async` form and a
/// `_blocking` form. Past the intake's bound a command waits (async) or blocks (blocking) until
/// the driver takes one. Once the driver is gone every method reports
/// [`RequestError::ClientClosed`]. When the last clone is dropped the driver closes the client,
/// letting requests in flight finish first.
#[derive(Clone)]
pub struct Handle {
    intake: Sender<Msg>,
    gate: Arc<BufferGate>,
    timer: Option<Timer>,
    pub(super) returned: super::consumer::Returned,
    /// The driver, when it can take a blocking call's command on the calling thread.
    inline: Option<Arc<dyn InlineDriver>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("intake", &self.intake).field("gate", &self.gate).finish_non_exhaustive()
    }
}

impl Handle {
    pub(super) fn new(intake: Sender<Msg>, gate: Arc<BufferGate>, returned: super::consumer::Returned) -> Handle {
        Handle { intake, gate, timer: None, returned, inline: None }
    }

    /// Wakes the driver without a command (it then looks at what handles left for it).
    pub(super) fn wake(&self) {
        let _ = self.intake.try_send(Msg::Nudge(Arc::new(std::sync::atomic::AtomicBool::new(true))));
    }

    /// Gives the handle the runtime's clock and timer, for waits with a deadline (a send
    /// waiting up to `max.block.ms` for buffer room). Runtime crates call it once; without
    /// it (or without its sleep, for the `async` methods) a send finding the buffer full
    /// fails at once.
    pub fn with_timer(mut self, timer: Timer) -> Handle {
        self.timer = Some(timer);
        self
    }

    /// Lets the `_blocking` methods hand their command to `driver` on the calling thread
    /// when it is idle, instead of through the intake. For a driver on a thread of its own
    /// (the blocking runtime's): a command and its answer crossing threads cost two wake-ups.
    pub fn with_inline(mut self, driver: Arc<dyn InlineDriver>) -> Handle {
        self.inline = Some(driver);
        self
    }

    // ---- producer ----------------------------------------------------------------------

    /// Produces a record: returns once it is in the producer's buffer, waiting up to
    /// `max.block.ms` for room in `buffer.memory`, with the future of its delivery. Errors
    /// at once only for a record larger than `buffer.memory`, or a full buffer past
    /// `max.block.ms`; every other failure arrives through the future.
    #[inline]
    pub fn send(&self, record: ProducerRecord) -> Sending<'_, DeliveryFuture> {
        let (waiter, future) = Waiter::future();
        Sending::new(self, record, waiter, future)
    }

    /// [`Handle::send`], blocking the thread while the buffer or the intake is full.
    pub fn send_blocking(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let reserved = record.size_in_buffer();
        self.gate.reserve_blocking(reserved, self.timer.as_ref())?;
        let (waiter, future) = Waiter::future();
        self.queue_send_blocking(QueuedSend { record, waiter, reserved });
        Ok(future)
    }

    /// [`Handle::send`] with a callback instead of a future: `callback` runs on the driver
    /// when the outcome is known, so it must be quick (count, log, hand off to a channel).
    /// When the send itself fails, the error is returned and the callback is not called.
    #[inline]
    pub fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata, ProduceError>) + Send + 'static,
    ) -> Sending<'_, ()> {
        Sending::new(self, record, Waiter::callback(Callback::new(callback)), ())
    }

    /// [`Handle::send_with_callback`], blocking the thread while the buffer or the intake is
    /// full.
    pub fn send_with_callback_blocking(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata, ProduceError>) + Send + 'static,
    ) -> Result<(), ProduceError> {
        let reserved = record.size_in_buffer();
        self.gate.reserve_blocking(reserved, self.timer.as_ref())?;
        let waiter = Waiter::callback(Callback::new(callback));
        self.queue_send_blocking(QueuedSend { record, waiter, reserved });
        Ok(())
    }

    /// The producer's metrics under the Java producer's names (`record-send-rate`,
    /// `batch-size-avg`, `compression-rate-avg`, `request-latency-max`,
    /// `buffer-available-bytes`, `bufferpool-wait-time-ns-total`, ...; the table is in
    /// [`crate::producer::metrics`]). Empty once the driver is gone.
    pub async fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let (reply, answer) = reply();
        self.submit(Command::Metrics { reply }).await;
        answer.recv().await.unwrap_or_default()
    }

    /// [`Handle::metrics`], blocking the thread.
    pub fn metrics_blocking(&self) -> std::collections::BTreeMap<String, f64> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Metrics { reply });
        answer.recv_blocking().unwrap_or_default()
    }

    /// Sends every buffered record without waiting for `linger.ms` and returns once each
    /// record sent before the call has its outcome.
    pub async fn flush(&self) {
        let (reply, answer) = reply();
        self.submit(Command::Flush { reply }).await;
        let _ = answer.recv().await;
    }

    /// [`Handle::flush`], blocking the thread.
    pub fn flush_blocking(&self) {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Flush { reply });
        let _ = answer.recv_blocking();
    }

    /// [`Handle::close`] that gives up waiting after `timeout`: records not yet delivered
    /// then fail with [`ProduceError::Closed`], each reported to its future or callback.
    pub async fn close_within(&self, timeout: Duration) {
        let (reply, answer) = reply();
        self.submit(Command::Close { reply, timeout: Some(timeout) }).await;
        let _ = answer.recv().await;
    }

    /// [`Handle::close_within`], blocking the thread.
    pub fn close_within_blocking(&self, timeout: Duration) {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Close { reply, timeout: Some(timeout) });
        let _ = answer.recv_blocking();
    }

    // ---- requests ----------------------------------------------------------------------

    /// Sends `body` to `target`, at `version` or else the highest version both sides support,
    /// and waits for the answer.
    pub async fn request(
        &self,
        target: Target,
        body: RequestBody,
        version: Option<i16>,
    ) -> Result<Response, RequestError> {
        let (command, answer) = request(target, body, version);
        self.submit(command).await;
        answer.recv().await?
    }

    /// [`Handle::request`], blocking the thread.
    pub fn request_blocking(
        &self,
        target: Target,
        body: RequestBody,
        version: Option<i16>,
    ) -> Result<Response, RequestError> {
        self.send_request_blocking(target, body, version).recv_blocking()?
    }

    /// Submits a request, blocking only while the intake is full, and returns its pending
    /// answer: one thread can pipeline many requests this way.
    pub fn send_request_blocking(
        &self,
        target: Target,
        body: RequestBody,
        version: Option<i16>,
    ) -> Reply<Result<Response, RequestError>> {
        let (command, answer) = request(target, body, version);
        self.submit_blocking(command);
        answer
    }

    /// Fetches metadata for `topics` (every topic when `None`); named topics are kept fresh.
    pub async fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        let (reply, answer) = reply();
        self.submit(Command::Metadata { topics, reply }).await;
        answer.recv().await?
    }

    /// [`Handle::metadata`], blocking the thread.
    pub fn metadata_blocking(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Metadata { topics, reply });
        answer.recv_blocking()?
    }

    /// Connects to `target` and reports the API versions it advertises and the Kafka release
    /// they indicate.
    pub async fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        let (reply, answer) = reply();
        self.submit(Command::CheckVersion { target, reply }).await;
        answer.recv().await?
    }

    /// [`Handle::check_version`], blocking the thread.
    pub fn check_version_blocking(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::CheckVersion { target, reply });
        answer.recv_blocking()?
    }

    /// Lets in-flight requests finish or time out, then closes every connection; returns when
    /// that is done (at once when already closed). Later calls on any clone return
    /// [`RequestError::ClientClosed`].
    pub async fn close(&self) {
        let (reply, answer) = reply();
        self.submit(Command::Close { reply, timeout: None }).await;
        // A driver that went away has closed everything too.
        let _ = answer.recv().await;
    }

    /// [`Handle::close`], blocking the thread.
    pub fn close_blocking(&self) {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Close { reply, timeout: None });
        let _ = answer.recv_blocking();
    }

    /// Puts a send on the gate's lane, waiting while the lane is full, and wakes the driver
    /// when the lane was empty. Dropped while it waits, the send is cancelled ([`Unqueued`]).
    async fn queue_send(&self, mut unqueued: Unqueued<'_>) {
        let mut room = None;
        while let Some(send) = unqueued.send.take() {
            match self.gate.lane.push(send) {
                Pushed::Full(back) => {
                    unqueued.send = Some(back);
                    // Listen first, then try once more: a drain in between is not missed.
                    match room.take() {
                        None => room = Some(self.gate.lane.room()),
                        Some(listener) => listener.await,
                    }
                }
                pushed => self.queued(pushed),
            }
        }
    }

    /// [`Handle::queue_send`], blocking the thread.
    fn queue_send_blocking(&self, mut send: QueuedSend) {
        let mut room = None;
        loop {
            match self.gate.lane.push(send) {
                Pushed::Full(back) => {
                    send = back;
                    match room.take() {
                        None => room = Some(self.gate.lane.room()),
                        Some(listener) => event_listener::Listener::wait(listener),
                    }
                }
                pushed => return self.queued(pushed),
            }
        }
    }

    /// Hands `msg` to the inline driver; gives it back when there is none or it is busy.
    /// Sends are not handed over: one pass of the driver per record costs more than the
    /// driver thread's wake-up per lane's worth (measured).
    fn run_inline(&self, msg: Msg) -> Option<Msg> {
        match &self.inline {
            Some(driver) => driver.run_inline(Intake::from_msg(msg)).and_then(Intake::into_msg),
            None => Some(msg),
        }
    }

    fn queued(&self, pushed: Pushed) {
        match pushed {
            // A full intake will be taken, and the lane emptied, without this message; a
            // closed one means the driver is gone and closed the lane too.
            Pushed::First => drop(self.intake.try_send(Msg::Sends)),
            Pushed::Behind | Pushed::Full(_) => {}
            Pushed::Closed(send) => {
                self.gate.release(send.reserved);
                // Dropped unanswered, its waiter reports `ProduceError::Closed`.
                drop(send);
            }
        }
    }

    /// Puts `command` on the intake, waiting while it is full. When the driver is gone the
    /// command is dropped with its replier, so its answer reports [`DriverGone`].
    pub(super) async fn submit(&self, command: Command) {
        let _ = self.intake.send(Msg::Command(command)).await;
    }

    /// [`Handle::submit`], blocking the thread.
    pub(super) fn submit_blocking(&self, command: Command) {
        // Given back (no inline driver, or busy elsewhere): through the intake.
        if let Some(msg) = self.run_inline(Msg::Command(command)) {
            let _ = self.intake.send_blocking(msg);
        }
    }
}

fn request(
    target: Target,
    body: RequestBody,
    version: Option<i16>,
) -> (Command, Reply<Result<Response, RequestError>>) {
    let (reply, answer) = reply();
    (Command::Request { target, body: Box::new(body), version, reply }, answer)
}

/// A send's wait for buffer room, then for lane room.
type SendWait<'a> = Pin<Box<dyn Future<Output = Result<(), ProduceError>> + Send + 'a>>;

/// The future of [`Handle::send`] and [`Handle::send_with_callback`]: completes once the
/// record is in the producer's buffer, with `T` (the record's [`DeliveryFuture`], or nothing
/// for a callback). Like any future it does nothing until polled. Dropped before it
/// completes, the send is cancelled: the record is not sent, the buffer room it took is
/// given back, and its callback is not called.
///
/// Written by hand rather than as an `async fn`: a send's future is moved a few times per
/// record, and the waiting states (for buffer room, for room in the lane) made an `async
/// fn`'s future about 1 KB; those copies were a tenth of a 100-byte produce's CPU. Here the
/// waits are boxed, built only when a send must wait.
#[must_use = "a send does nothing until it is awaited"]
pub struct Sending<'a, T> {
    handle: &'a Handle,
    /// The send until it is queued, or handed to `waiting`.
    send: Option<QueuedSend>,
    /// The wait for buffer room or lane room, built only when a send must wait.
    waiting: Option<SendWait<'a>>,
    outcome: Option<T>,
}

impl<'a, T> Sending<'a, T> {
    fn take_outcome(&mut self) -> T {
        self.outcome.take().expect("a send completes once")
    }

    #[inline]
    fn new(handle: &'a Handle, record: ProducerRecord, waiter: Waiter, outcome: T) -> Self {
        let reserved = record.size_in_buffer();
        Sending { handle, send: Some(QueuedSend { record, waiter, reserved }), waiting: None, outcome: Some(outcome) }
    }
}

impl<T: Unpin> Future for Sending<'_, T> {
    type Output = Result<T, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let handle = this.handle;
        if let Some(wait) = &mut this.waiting {
            let waited = std::task::ready!(wait.as_mut().poll(cx));
            this.waiting = None;
            return Poll::Ready(waited.map(|()| this.take_outcome()));
        }
        let reserved = this.send.as_ref().expect("a send polled after it completed").reserved;
        let room_reserved = match handle.gate.reserve_now(reserved) {
            Ok(room_reserved) => room_reserved,
            Err(e) => {
                // The send failed as a whole: the error is the answer, the waiter is not told.
                if let Some(send) = this.send.take() {
                    send.waiter.disarm();
                }
                return Poll::Ready(Err(e));
            }
        };
        // The common case: room in the buffer and in the lane; the send moves from here
        // straight into the lane, and no future is built.
        if room_reserved {
            if let Ok(pushed) = handle.gate.lane.push_from(&mut this.send) {
                handle.queued(pushed);
                return Poll::Ready(Ok(this.take_outcome()));
            }
        }
        let unqueued = Unqueued { gate: &handle.gate, send: this.send.take(), room_reserved };
        this.waiting = Some(Box::pin(async move {
            let mut unqueued = unqueued;
            if !unqueued.room_reserved {
                // Failed, the send is answered by the error alone (`unqueued` drops without
                // telling the waiter).
                handle.gate.reserve(reserved, handle.timer.as_ref()).await?;
                unqueued.room_reserved = true;
            }
            handle.queue_send(unqueued).await;
            Ok(())
        }));
        Pin::new(this).poll(cx)
    }
}

/// Dropped before its first poll, a send is cancelled: its waiter is not told.
impl<T> Drop for Sending<'_, T> {
    fn drop(&mut self) {
        if let Some(send) = self.send.take() {
            send.waiter.disarm();
        }
    }
}

/// A send on its way to the lane inside a future that may be dropped before it gets there.
/// Dropped with the send still in it, the send is cancelled: the buffer room it reserved goes
/// back and its waiter is not told (the application dropped the send itself; a callback
/// reporting `Closed` for it would be wrong).
struct Unqueued<'a> {
    gate: &'a BufferGate,
    send: Option<QueuedSend>,
    room_reserved: bool,
}

impl Drop for Unqueued<'_> {
    fn drop(&mut self) {
        if let Some(send) = self.send.take() {
            if self.room_reserved {
                self.gate.release(send.reserved);
            }
            send.waiter.disarm();
        }
    }
}

impl<T> std::fmt::Debug for Sending<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = if self.send.is_some() {
            "start"
        } else if self.waiting.is_some() {
            "waiting"
        } else {
            "done"
        };
        f.debug_struct("Sending").field("stage", &stage).finish_non_exhaustive()
    }
}
