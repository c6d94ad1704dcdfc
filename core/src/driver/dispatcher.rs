//! The driver's side: owns the client, takes commands off the intake, and routes each
//! finished event to the handle that waits for it. Deterministic: waiters live in a
//! `BTreeMap` keyed by request id.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_channel::{Receiver, WeakSender};
use futures_core::Stream;

use super::consumer::{Polls, Returned, Waiting as ConsumerWaiting};
use super::outcome::{Nudge, Replier};
use super::producer::{BufferGate, Pending, QueuedSend, Waiter};
use super::{Command, Job, JobQueue, Msg};
use crate::client::{BrokerVersions, Client, Event, Input, RequestError, RequestId, Response, Transmit};
use crate::cluster::ClusterMetadata;
use crate::producer::{Delivery, ProduceError, ProducerRecord, RefuseReason};

/// Owns the [`Client`] inside an adapter's driver loop (see the [module docs](super)). Each
/// `handle_*` call is followed, as for the client, by draining [`Dispatcher::poll_transmit`],
/// then [`Dispatcher::poll_timeout`], then [`Dispatcher::deliver`].
pub struct Dispatcher {
    client: Client,
    /// Pinned because the receiver is `!Unpin`; the dispatcher itself stays `Unpin`.
    intake: Pin<Box<Receiver<Msg>>>,
    /// False once every handle is gone and the client was told to close.
    intake_open: bool,
    nudge: Nudge,
    waiting: BTreeMap<RequestId, Waiting>,
    closing: Vec<Replier<()>>,
    /// When a close with a timeout gives up on undelivered records.
    close_deadline: Option<Instant>,
    /// Records handed to the client, waiting for their outcome.
    sends: Pending,
    /// Sends the client refused, answered by the next `deliver` (callbacks run only there).
    refused: Vec<(Waiter, ProduceError)>,
    /// Events [`Dispatcher::deliver_answers`] left for the next `deliver`: the first
    /// producer outcome and every event after it, in order.
    held: VecDeque<Event>,
    gate: Arc<BufferGate>,
    /// The lane's sends while they are submitted; kept so both vectors keep their capacity.
    lane_taken: Vec<QueuedSend>,
    flushes: BTreeMap<RequestId, Replier<()>>,
    polls: Polls,
    consumer_waiting: BTreeMap<RequestId, ConsumerWaiting>,
    /// Where the client's work goes ([`Dispatcher::offload_with`]).
    offload: Option<Offload>,
    /// The intake, for work results to come back on.
    intake_sender: WeakSender<Msg>,
}

/// Commands taken off the intake per wake-up at most, so a burst of sends is handled in one
/// pass of the driver loop without starving sockets and timers.
const INTAKE_BURST: usize = 256;

/// Something [`Dispatcher::poll_intake`] took off the intake, for [`Dispatcher::handle_intake`].
pub struct Intake(Taken);

enum Taken {
    Msg(Msg),
    /// Every handle is gone.
    HandlesGone,
}

impl Intake {
    /// A handle's message, for a driver that takes it on the calling thread ([`InlineDriver`](super::InlineDriver)).
    pub(super) fn from_msg(msg: Msg) -> Intake {
        Intake(Taken::Msg(msg))
    }

    /// The message back, when the driver gave the intake back.
    pub(super) fn into_msg(self) -> Option<Msg> {
        match self.0 {
            Taken::Msg(msg) => Some(msg),
            Taken::HandlesGone => None,
        }
    }
}

/// A replier waiting for the event of one request id.
enum Waiting {
    Response(Replier<Result<Response, RequestError>>),
    Metadata(Replier<Result<ClusterMetadata, RequestError>>),
    Versions(Replier<Result<BrokerVersions, RequestError>>),
}

/// Work handed out to the adapter's threads, at most `max` at a time (the rest waits in the
/// client): more would only share the same cores, each job with its own cold codec context
/// (a zstd one is a megabyte).
struct Offload {
    to: Runner,
    max: usize,
    out: usize,
}

/// Where jobs go.
enum Runner {
    /// To the adapter's function ([`Dispatcher::offload_with`]).
    Call(Box<dyn Fn(Job) + Send>),
    /// To threads the adapter starts when asked ([`Dispatcher::offload_to_threads`]).
    Threads {
        jobs: async_channel::Sender<Job>,
        /// Boxed: the receiver inside is `!Unpin`, the dispatcher is not.
        queue: Box<JobQueue>,
        start: Box<dyn Fn(JobQueue) -> bool + Send>,
        started: usize,
        most: usize,
    },
}

impl Runner {
    /// Hands `job` on, starting another thread first when every thread started so far has
    /// a job (`out` of them); gives the job back when no thread runs.
    fn hand(&mut self, job: Job, out: usize) -> Result<(), Job> {
        match self {
            Runner::Call(run) => {
                run(job);
                Ok(())
            }
            Runner::Threads { jobs, queue, start, started, most } => {
                if *started < *most && *started <= out && start(JobQueue::clone(queue)) {
                    *started += 1;
                }
                if *started == 0 {
                    return Err(job);
                }
                jobs.try_send(job).map_err(|e| e.into_inner())
            }
        }
    }
}

impl Dispatcher {
    pub(super) fn new(
        client: Client,
        intake: Receiver<Msg>,
        weak: WeakSender<Msg>,
        gate: Arc<BufferGate>,
        returned: Returned,
    ) -> Dispatcher {
        let nudge = Nudge::new(weak.clone());
        Dispatcher {
            client,
            intake: Box::pin(intake),
            intake_open: true,
            nudge: nudge.clone(),
            waiting: BTreeMap::new(),
            closing: Vec::new(),
            close_deadline: None,
            sends: Pending::default(),
            refused: Vec::new(),
            held: VecDeque::new(),
            gate,
            lane_taken: Vec::new(),
            flushes: BTreeMap::new(),
            polls: Polls::new(returned, nudge.clone()),
            consumer_waiting: BTreeMap::new(),
            offload: None,
            intake_sender: weak,
        }
    }

    /// Hands the client's CPU-bound work (compressing the producer's batches, decompressing
    /// the consumer's fetched data) to `run`, which starts each [`Job`] on a thread of its
    /// choosing, at most `parallel` at a time, so the driver's thread is free for sockets
    /// meanwhile. Without it, or with `parallel` 0, the driver does that work itself.
    /// Call once, before the driver runs.
    pub fn offload_with(&mut self, parallel: usize, run: impl Fn(Job) + Send + 'static) {
        if parallel == 0 {
            return;
        }
        self.offload = Some(Offload { to: Runner::Call(Box::new(run)), max: parallel, out: 0 });
        self.client.offload_work(true);
    }

    /// Hands the client's CPU-bound work to at most `threads` threads of the adapter's own:
    /// when work comes and every thread started so far is busy, the dispatcher calls `start`
    /// with a queue for the new thread to run ([`JobQueue::run`]); `start` says whether the
    /// thread started. As many jobs as twice the threads started are out at once, so a
    /// thread goes on to the next without waiting for the driver to take the result of the
    /// last, and always on the same threads, whose codec contexts stay warm. While no thread
    /// runs, the work runs on the driver's thread. Call once, before the driver runs; with
    /// `threads` 0, the driver does the work itself.
    pub fn offload_to_threads(&mut self, threads: usize, start: impl Fn(JobQueue) -> bool + Send + 'static) {
        if threads == 0 {
            return;
        }
        let (jobs, queue) = async_channel::unbounded::<Job>();
        let queue = Box::new(JobQueue(queue));
        let to = Runner::Threads { jobs, queue, start: Box::new(start), started: 0, most: threads };
        self.offload = Some(Offload { to, max: threads * 2, out: 0 });
        self.client.offload_work(true);
    }

    /// Starts the work the client handed out, as far as `parallel` allows; with the handles
    /// gone (the intake cannot bring results back) or no thread to run it, does it here.
    fn hand_out_work(&mut self, now: Instant) {
        let Some(offload) = &mut self.offload else { return };
        while offload.out < offload.max {
            let Some(work) = self.client.poll_work() else { break };
            let unstarted = match self.intake_sender.upgrade() {
                Some(intake) => match offload.to.hand(Job::new(work, intake), offload.out) {
                    Ok(()) => {
                        offload.out += 1;
                        continue;
                    }
                    Err(job) => job.into_work(),
                },
                None => Some(work),
            };
            if let Some(work) = unstarted {
                let done = work.run();
                self.client.handle_work_done(now, done);
            }
        }
    }

    /// [`Client::set_wall_clock`]: adapters call it once, at start.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: i64) {
        self.client.set_wall_clock(now, unix_ms);
    }

    /// The client, for its getters.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A [`Nudge`] that wakes this driver, for the [`outcome`](super::outcome) primitives that
    /// hold work back until the application acts.
    pub fn nudge(&self) -> Nudge {
        self.nudge.clone()
    }

    /// Answers waiting polls, after handing out work: fetched data that just came is then
    /// decoded elsewhere, not by the poll that finds it.
    fn serve_polls(&mut self, now: Instant) {
        self.hand_out_work(now);
        self.polls.serve(now, &mut self.client);
    }

    /// [`Client::poll_transmit`]: call until `None` after every `handle_*` call.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.hand_out_work(now);
        self.client.poll_transmit(now)
    }

    /// [`Client::poll_timeout`]: when to call [`Dispatcher::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let close = self.close_deadline.filter(|_| !self.client.is_closed());
        [self.client.poll_timeout(), close, self.polls.poll_timeout()].into_iter().flatten().min()
    }

    /// [`Client::handle_input`]: bytes, connects and closes from the adapter's sockets.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.client.handle_input(now, input);
        self.serve_polls(now);
    }

    /// [`Client::handle_timeout`]: call at (or after) the deadline from `poll_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.close_deadline.is_some_and(|d| d <= now) {
            self.close_deadline = None;
            self.client.abort_producer(now);
        }
        self.client.handle_timeout(now);
        self.serve_polls(now);
    }

    /// Registers the waker and reports whether the intake has something; once every handle
    /// is gone and that was handled, stays pending for good.
    pub fn poll_intake(&mut self, cx: &mut Context<'_>) -> Poll<Intake> {
        if !self.intake_open {
            return Poll::Pending;
        }
        self.intake.as_mut().poll_next(cx).map(|msg| Intake(msg.map_or(Taken::HandlesGone, Taken::Msg)))
    }

    /// For a driver whose thread lets a blocking call run its command on the caller's thread
    /// ([`InlineDriver`](super::InlineDriver)): handles `intake` now, or gives it back when
    /// commands queued before it wait for the driver thread (it goes behind them) or the
    /// client is finished. Then come the transmits, and [`Dispatcher::finish_inline`].
    pub fn handle_inline(&mut self, now: Instant, intake: Intake) -> Result<(), Intake> {
        if self.is_finished() || !self.intake.is_empty() {
            return Err(intake);
        }
        self.handle_intake(now, intake);
        Ok(())
    }

    /// Ends an inline call: answers waiting calls but holds producer outcomes for the driver
    /// thread (`Dispatcher::deliver_answers`), and says whether that thread, asleep until
    /// `wakes_at` (or until woken), must wake: for an earlier deadline, held outcomes, or to end.
    pub fn finish_inline(&mut self, wakes_at: Option<Instant>) -> bool {
        let held = self.deliver_answers();
        let earlier = self.poll_timeout().is_some_and(|d| wakes_at.is_none_or(|w| d < w));
        earlier || held || self.is_finished()
    }

    /// [`Dispatcher::poll_intake`] as a future, for `select!`-style waiting.
    pub fn recv_intake(&mut self) -> impl Future<Output = Intake> + '_ {
        std::future::poll_fn(move |cx| self.poll_intake(cx))
    }

    /// Feeds what [`Dispatcher::poll_intake`] took to the client: a command is submitted, the
    /// last handle going away closes the client (requests in flight finish first).
    pub fn handle_intake(&mut self, now: Instant, intake: Intake) {
        match intake.0 {
            Taken::Msg(msg) => {
                self.take(now, msg);
                // More commands queued behind it: take them in this pass.
                for _ in 1..INTAKE_BURST {
                    match self.intake.try_recv() {
                        Ok(msg) => self.take(now, msg),
                        Err(_) => break,
                    }
                }
                // Sends queued since; their wake-up may be among the messages just taken.
                self.drain_lane(now);
            }
            Taken::HandlesGone => {
                self.drain_lane(now);
                self.intake_open = false;
                self.client.close(now);
            }
        }
        self.serve_polls(now);
    }

    fn take(&mut self, now: Instant, msg: Msg) {
        // Sends queued before this command go first, as they were made first.
        self.drain_lane(now);
        match msg {
            Msg::Command(command) => self.submit(now, command),
            // The next pass of the loop looks again at whatever was held back.
            Msg::Nudge(queued) => queued.store(false, Ordering::SeqCst),
            Msg::Sends => {}
            Msg::Done(done) => {
                if let Some(offload) = &mut self.offload {
                    offload.out = offload.out.saturating_sub(1);
                }
                self.client.handle_work_done(now, done);
            }
        }
    }

    /// Submits every send queued on the lane, in order.
    fn drain_lane(&mut self, now: Instant) {
        let mut sends = std::mem::take(&mut self.lane_taken);
        self.gate.lane.take(&mut sends);
        for QueuedSend { record, waiter, reserved } in sends.drain(..) {
            self.submit_send(now, record, waiter, reserved);
        }
        self.lane_taken = sends;
    }

    // Inlined, as `Client::send`: a record copied per call was a few percent of a send's CPU.
    #[inline]
    fn submit_send(&mut self, now: Instant, record: ProducerRecord, waiter: Waiter, reserved: usize) {
        match self.client.send(now, record) {
            Ok(id) => self.sends.insert(id, waiter, reserved),
            Err(refused) => {
                self.gate.release(reserved);
                let error = match refused.reason {
                    RefuseReason::Fatal(e) => e,
                    RefuseReason::BufferFull => ProduceError::BufferExhausted { waited: std::time::Duration::ZERO },
                    _ => ProduceError::Closed,
                };
                self.refused.push((waiter, error));
            }
        }
    }

    fn submit(&mut self, now: Instant, command: Command) {
        let (id, waiting) = match command {
            Command::Request { target, body, version, reply } => {
                (self.client.request(now, target, *body, version), Waiting::Response(reply))
            }
            Command::Metadata { topics, reply } => {
                (self.client.refresh_metadata(now, topics), Waiting::Metadata(reply))
            }
            Command::CheckVersion { target, reply } => {
                (self.client.check_version(now, target), Waiting::Versions(reply))
            }
            Command::Metrics { reply } => {
                let mut metrics: BTreeMap<String, f64> =
                    self.client.producer_metrics(now).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                metrics.insert("bufferpool-wait-time-ns-total".into(), self.gate.waited_ns() as f64);
                return reply.send(metrics);
            }
            Command::Consumer(command) => {
                if let Some(waiting) = self.polls.submit(now, &mut self.client, command) {
                    let id = match &waiting {
                        ConsumerWaiting::Listed(id, _)
                        | ConsumerWaiting::Committed(id, _)
                        | ConsumerWaiting::Commit(id, _) => *id,
                    };
                    self.consumer_waiting.insert(id, waiting);
                }
                return;
            }
            Command::Flush { reply } => {
                let id = self.client.flush(now);
                self.flushes.insert(id, reply);
                return;
            }
            // The client emits `Closed` once; later closers are answered at once.
            Command::Close { reply, .. } if self.client.is_closed() => return reply.send(()),
            Command::Close { reply, timeout } => {
                self.closing.push(reply);
                if let Some(t) = timeout {
                    let deadline = now + t;
                    self.close_deadline = Some(self.close_deadline.map_or(deadline, |d| d.min(deadline)));
                }
                return self.client.close(now);
            }
        };
        self.waiting.insert(id, waiting);
    }

    /// Takes every event from the client and completes the handle waiting for it; never
    /// blocks. Events nobody waits for any more are dropped.
    pub fn deliver(&mut self) {
        for (waiter, error) in self.refused.drain(..) {
            waiter.complete(Err(error));
        }
        while let Some(event) = self.held.pop_front().or_else(|| self.client.poll_event()) {
            self.deliver_event(event);
        }
    }

    /// [`Dispatcher::deliver`] for a thread that is not the driver's own: producer outcomes
    /// (refused sends too), whose callbacks are the application's code and run on the
    /// driver, are held for the next `deliver` with every event after them (a flush is
    /// answered after the outcomes before it). Returns whether it held any.
    pub(super) fn deliver_answers(&mut self) -> bool {
        while let Some(event) = self.client.poll_event() {
            if self.held.is_empty() && !matches!(event, Event::Delivery(_)) {
                self.deliver_event(event);
            } else {
                self.held.push_back(event);
            }
        }
        !self.held.is_empty() || !self.refused.is_empty()
    }

    fn deliver_records(&mut self, d: &Delivery) {
        let freed = self.sends.deliver(d);
        self.gate.release(freed);
    }

    fn deliver_event(&mut self, event: Event) {
        match event {
            Event::Response { id, result } => {
                if let Some(Waiting::Response(reply)) = self.waiting.remove(&id) {
                    reply.send(result);
                }
            }
            Event::Metadata { id, result } => {
                if let Some(Waiting::Metadata(reply)) = self.waiting.remove(&id) {
                    reply.send(result);
                }
            }
            Event::Versions { id, result } => {
                if let Some(Waiting::Versions(reply)) = self.waiting.remove(&id) {
                    reply.send(result);
                }
            }
            Event::Closed => self.closing.drain(..).for_each(|reply| reply.send(())),
            Event::Delivery(d) => self.deliver_records(&d),
            Event::ListedOffsets { id, result } => {
                if let Some(ConsumerWaiting::Listed(_, reply)) = self.consumer_waiting.remove(&id) {
                    reply.send(result);
                }
            }
            Event::CommittedOffsets { id, result } => {
                if let Some(ConsumerWaiting::Committed(_, reply)) = self.consumer_waiting.remove(&id) {
                    reply.send(result);
                }
            }
            Event::Committed { id, result } => {
                if let Some(ConsumerWaiting::Commit(_, reply)) = self.consumer_waiting.remove(&id) {
                    reply.send(result);
                }
            }
            Event::Rebalance(r) => self.polls.rebalance(r),
            Event::Flushed { id } => {
                if let Some(reply) = self.flushes.remove(&id) {
                    reply.send(());
                }
            }
        }
    }

    /// Refuses every command from now on: those queued and later ones report
    /// [`DriverGone`](super::outcome::DriverGone). For a driver that ends its loop but is not
    /// dropped at once; dropping the dispatcher does the same.
    pub fn close_intake(&mut self) {
        self.intake.close();
        while self.intake.try_recv().is_ok() {}
        for send in self.gate.lane.close() {
            self.gate.release(send.reserved);
            // Dropped unanswered, its waiter reports `ProduceError::Closed`.
            drop(send);
        }
        self.intake_open = false;
    }

    /// Whether the driver loop may end: the client is closed and nothing waits for an
    /// outcome. Commands still on the intake then report
    /// [`DriverGone`](super::outcome::DriverGone) as the dispatcher is dropped.
    pub fn is_finished(&self) -> bool {
        self.client.is_closed()
            && self.held.is_empty()
            && self.refused.is_empty()
            && self.waiting.is_empty()
            && self.closing.is_empty()
            && self.sends.is_empty()
            && self.flushes.is_empty()
            && self.consumer_waiting.is_empty()
            && self.polls.is_empty()
    }
}

impl Drop for Dispatcher {
    /// Commands still queued hold their callers' reply slots, and the queue outlives the
    /// dispatcher while a handle lives: drain it, or those callers would wait forever.
    fn drop(&mut self) {
        self.close_intake();
        let freed = self.sends.fail_all();
        self.gate.release(freed);
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("intake_open", &self.intake_open)
            .field("queued_commands", &self.intake.len())
            .field("waiting", &self.waiting.len())
            .field("closing", &self.closing.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Intake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.0 {
            Taken::Msg(Msg::Command(_)) => "Command",
            Taken::Msg(Msg::Nudge(_)) => "Nudge",
            Taken::Msg(Msg::Sends) => "Sends",
            Taken::Msg(Msg::Done(_)) => "Done",
            Taken::HandlesGone => "HandlesGone",
        };
        f.debug_tuple("Intake").field(&what).finish()
    }
}

#[cfg(test)]
impl Dispatcher {
    /// Messages waiting on the intake.
    pub(super) fn queued(&self) -> usize {
        self.intake.len()
    }
}
