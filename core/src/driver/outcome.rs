//! How outcomes travel from the driver to application handles, without an executor.
//!
//! The driver never waits on an application: every send here is non-blocking, and each
//! channel is bounded by construction. The application side can wait both ways, with an
//! `async` method (any executor) or a `_blocking` one (a plain thread).
//!
//! - [`reply`]: one value, the answer to one command.
//! - [`staged`]: zero or more progress values, then one final value (a record accepted into
//!   the buffer, then delivered).
//! - [`items`]: a bounded stream (batches of records, rebalance events). When it is full the
//!   driver holds back and asks to be [`Nudge`]d once the application takes an item.
//! - [`ack`]: the application's answer back to the driver (a revoke it has handled).

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_channel::{Receiver, Sender, TryRecvError, TrySendError, WeakSender};

use super::Msg;

/// The driver stopped (or dropped this outcome) before sending what was waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the driver went away before answering")]
pub struct DriverGone;

/// A driver bug: more progress stages than the outcome was created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more progress stages than the {declared} this outcome was created for")]
pub struct TooManyStages {
    /// The count given to [`staged`].
    pub declared: usize,
}

/// One step of a [`Stages`] outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage<P, F> {
    /// An intermediate step; more follow.
    Progress(P),
    /// The last step.
    Final(F),
}

/// Creates a multi-stage outcome with room for `progress_stages` progress values and the
/// final one, so the driver never blocks sending them.
pub fn staged<P, F>(progress_stages: usize) -> (StageSender<P, F>, Stages<P, F>) {
    let (tx, rx) = async_channel::bounded(progress_stages + 1);
    (StageSender { tx, declared: progress_stages, progressed: 0 }, Stages { rx })
}

/// The driver's end of a [`Stages`] outcome.
pub struct StageSender<P, F> {
    tx: Sender<Stage<P, F>>,
    declared: usize,
    progressed: usize,
}

impl<P, F> StageSender<P, F> {
    /// Reports an intermediate step. A receiver that stopped listening is not an error.
    pub fn progress(&mut self, value: P) -> Result<(), TooManyStages> {
        if self.progressed == self.declared {
            return Err(TooManyStages { declared: self.declared });
        }
        self.progressed += 1;
        // Fits: the channel has a slot for each declared stage and the final one.
        let _ = self.tx.try_send(Stage::Progress(value));
        Ok(())
    }

    /// Reports the last step; consuming `self` makes it the last.
    pub fn finish(self, value: F) {
        // `progress` never takes the last slot, so the only failure is a receiver that
        // stopped listening.
        let _ = self.tx.try_send(Stage::Final(value));
    }

    /// Whether the application still waits; work only it wanted may stop when it does not.
    pub fn is_wanted(&self) -> bool {
        !self.tx.is_closed()
    }
}

impl<P, F> fmt::Debug for StageSender<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageSender").field("declared", &self.declared).field("sent", &self.tx.len()).finish()
    }
}

/// The application's end of a multi-stage outcome: progress values in order, then the final.
pub struct Stages<P, F> {
    rx: Receiver<Stage<P, F>>,
}

impl<P, F> Stages<P, F> {
    /// Waits for the next step. [`DriverGone`] after the final step, or when the driver went
    /// away before it.
    pub async fn next(&self) -> Result<Stage<P, F>, DriverGone> {
        self.rx.recv().await.map_err(|_| DriverGone)
    }

    /// [`Stages::next`], blocking the thread.
    pub fn next_blocking(&self) -> Result<Stage<P, F>, DriverGone> {
        self.rx.recv_blocking().map_err(|_| DriverGone)
    }

    /// The next step if it already arrived; never waits.
    pub fn try_next(&self) -> Option<Result<Stage<P, F>, DriverGone>> {
        match self.rx.try_recv() {
            Ok(stage) => Some(Ok(stage)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Closed) => Some(Err(DriverGone)),
        }
    }

    /// Skips the progress steps still to come and waits for the final one.
    pub async fn finish(self) -> Result<F, DriverGone> {
        loop {
            if let Stage::Final(value) = self.next().await? {
                return Ok(value);
            }
        }
    }

    /// [`Stages::finish`], blocking the thread.
    pub fn finish_blocking(self) -> Result<F, DriverGone> {
        loop {
            if let Stage::Final(value) = self.next_blocking()? {
                return Ok(value);
            }
        }
    }
}

impl<P, F> fmt::Debug for Stages<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stages").field("arrived", &self.rx.len()).finish()
    }
}

/// Creates a one-shot outcome: the answer to one command.
pub fn reply<T>() -> (Replier<T>, Reply<T>) {
    let (tx, rx) = staged(0);
    (Replier(tx), Reply(rx))
}

/// The driver's end of a [`Reply`].
#[derive(Debug)]
pub struct Replier<T>(StageSender<Infallible, T>);

impl<T> Replier<T> {
    /// Answers; a caller that stopped waiting is not an error.
    pub fn send(self, value: T) {
        self.0.finish(value);
    }

    /// Whether the caller still waits.
    pub fn is_wanted(&self) -> bool {
        self.0.is_wanted()
    }
}

/// The application's end of a one-shot outcome. Dropping it tells the driver nobody waits.
#[derive(Debug)]
pub struct Reply<T>(Stages<Infallible, T>);

impl<T> Reply<T> {
    /// Waits for the answer. Once it returned `Ok`, the answer is taken: later calls return
    /// [`DriverGone`].
    pub async fn recv(&self) -> Result<T, DriverGone> {
        match self.0.next().await? {
            Stage::Final(value) => Ok(value),
            Stage::Progress(never) => match never {},
        }
    }

    /// The answer if it already arrived; never waits.
    pub fn try_recv(&self) -> Option<Result<T, DriverGone>> {
        match self.0.try_next()? {
            Ok(Stage::Final(value)) => Some(Ok(value)),
            Ok(Stage::Progress(never)) => match never {},
            Err(e) => Some(Err(e)),
        }
    }

    /// [`Reply::recv`], blocking the thread.
    pub fn recv_blocking(&self) -> Result<T, DriverGone> {
        match self.0.next_blocking()? {
            Stage::Final(value) => Ok(value),
            Stage::Progress(never) => match never {},
        }
    }
}

/// Wakes the driver loop from an application handle so that it looks again at what it holds
/// back (a full [`items`] stream, an [`ack`] it waits for). Repeated nudges before the driver
/// runs cost one wake-up.
#[derive(Clone)]
pub struct Nudge {
    /// Weak, so that a nudge alone does not keep the driver's intake open.
    intake: WeakSender<Msg>,
    queued: Arc<AtomicBool>,
}

impl Nudge {
    pub(super) fn new(intake: WeakSender<Msg>) -> Nudge {
        Nudge { intake, queued: Arc::new(AtomicBool::new(false)) }
    }

    /// Makes the driver run its loop once more, soon.
    pub fn nudge(&self) {
        if self.queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(intake) = self.intake.upgrade() else { return };
        if let Err(TrySendError::Full(_)) = intake.try_send(Msg::Nudge(self.queued.clone())) {
            // A full intake wakes the driver anyway, and it looks again after every command.
            self.queued.store(false, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Nudge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nudge").field("queued", &self.queued.load(Ordering::Relaxed)).finish()
    }
}

/// Creates a stream of at most `capacity` items in flight to the application. `nudge` wakes
/// the driver when an item is taken from a stream it found full.
pub fn items<T>(capacity: usize, nudge: Nudge) -> (ItemSender<T>, Items<T>) {
    let (tx, rx) = async_channel::bounded(capacity.max(1));
    let wants_room = Arc::new(AtomicBool::new(false));
    (ItemSender { tx, wants_room: wants_room.clone() }, Items { rx: Box::pin(rx), wants_room, nudge })
}

/// The driver's end of an [`Items`] stream. Dropping it ends the stream once the
/// application took what is left.
pub struct ItemSender<T> {
    tx: Sender<T>,
    wants_room: Arc<AtomicBool>,
}

impl<T> ItemSender<T> {
    /// Offers an item without waiting. A full stream gives the item back, and the driver will
    /// be nudged once the application takes one; a stream nobody reads gives it back too.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        // Set before trying, so that an item taken right after the failed send still nudges.
        self.wants_room.store(true, Ordering::SeqCst);
        match self.tx.try_send(item) {
            Ok(()) => {
                self.wants_room.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(TrySendError::Full(item) | TrySendError::Closed(item)) => Err(item),
        }
    }

    /// How many items fit before the stream is full.
    pub fn room(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX).saturating_sub(self.tx.len())
    }

    /// Whether the application still holds the stream.
    pub fn is_wanted(&self) -> bool {
        !self.tx.is_closed()
    }
}

impl<T> fmt::Debug for ItemSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemSender").field("queued", &self.tx.len()).field("room", &self.room()).finish()
    }
}

/// The application's end of a bounded stream of items from the driver.
pub struct Items<T> {
    /// Boxed so that `Items` is `Unpin` and can be polled as a `Stream` without `unsafe`.
    rx: std::pin::Pin<Box<Receiver<T>>>,
    wants_room: Arc<AtomicBool>,
    nudge: Nudge,
}

impl<T> Items<T> {
    /// Waits for the next item; `None` once the driver ended the stream and it is empty.
    pub async fn next(&self) -> Option<T> {
        let item = self.rx.recv().await.ok();
        self.taken();
        item
    }

    /// [`Items::next`], blocking the thread.
    pub fn next_blocking(&self) -> Option<T> {
        let item = self.rx.recv_blocking().ok();
        self.taken();
        item
    }

    /// The next item if one is there; never waits.
    pub fn try_next(&self) -> Option<T> {
        let item = self.rx.try_recv().ok();
        self.taken();
        item
    }

    fn taken(&self) {
        if self.wants_room.swap(false, Ordering::SeqCst) {
            self.nudge.nudge();
        }
    }
}

/// The same stream for `async` code that composes streams: `None` once the driver ended it.
impl<T> futures_core::Stream for Items<T> {
    type Item = T;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        let this = self.get_mut();
        let polled = this.rx.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(Some(_)) = &polled {
            this.taken();
        }
        polled
    }
}

impl<T> fmt::Debug for Items<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Items").field("queued", &self.rx.len()).finish()
    }
}

/// Creates an acknowledgement: the application's [`Ack`] and the driver's [`PendingAck`].
pub fn ack(nudge: Nudge) -> (Ack, PendingAck) {
    let done = Arc::new(AtomicBool::new(false));
    (Ack { done: done.clone(), nudge }, PendingAck { done })
}

/// Handed to the application with something the driver must hear back about (partitions
/// revoked: commit first, then acknowledge). Dropping it acknowledges too, so a forgotten
/// token cannot stall the driver.
pub struct Ack {
    done: Arc<AtomicBool>,
    nudge: Nudge,
}

impl Ack {
    /// Tells the driver the application is done; call it when the work the item asked for
    /// is finished.
    pub fn ack(self) {
        // The work happens in `Drop`.
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        self.nudge.nudge();
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack").finish_non_exhaustive()
    }
}

/// The driver's end of an [`Ack`].
#[derive(Debug)]
pub struct PendingAck {
    done: Arc<AtomicBool>,
}

impl PendingAck {
    /// Whether the application acknowledged (or dropped the token). Check it after every
    /// nudge.
    pub fn is_acked(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}
