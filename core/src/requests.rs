//! The application's raw requests ([`crate::Client::request`]): any Kafka request to any
//! target, answered with [`Event::Response`].
//!
//! Requests wait in one queue per `(target, role)`, in submission order, until a ready
//! connection to the node the target resolves to pulls them; each has a deadline from
//! submission. Work per request is O(log n): queues drop expired entries lazily.
//!
//! This machine reads the answers it routes: a coordinator-bound request whose answer says
//! NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE — at the top level or inside (OffsetCommit and
//! TxnOffsetCommit answer per partition) — makes the coordinator be looked up again.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::client::{Event, RequestError, RequestId, Response, Target};
use crate::coordinator::CoordinatorKey;
use crate::machine::{Ctx, Link, Machine, Outgoing, Role, Signal, Tag};
use crate::protocol::{ErrorCode, RequestBody, ResponseBody};
use crate::timer::Deadlines;

/// Emptied queues kept before a sweep removes them.
const EMPTY_QUEUES_KEPT: usize = 64;

/// Extra time a JoinGroup gets beyond its rebalance timeout, as the Java client allows.
const JOIN_GROUP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Queued {
    tag: Tag,
    id: RequestId,
    /// `None` once it expired or failed while waiting: skipped when its turn comes.
    body: Option<RequestBody>,
    version: Option<i16>,
    issued: Instant,
    timeout: Duration,
}

impl Queued {
    fn deadline(&self) -> Instant {
        self.issued + self.timeout
    }
}

/// Requests for one `(target, role)`, in submission order. Tags grow with submission, so a
/// request is found by binary search; one that leaves early is emptied in place.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Queued>,
    /// Entries still waiting.
    live: usize,
    /// Emptied and counted in `Requests::empty_queues`.
    emptied: bool,
}

impl Queue {
    fn find(&mut self, tag: Tag) -> Option<&mut Queued> {
        let i = self.items.binary_search_by_key(&tag, |q| q.tag).ok()?;
        self.items.get_mut(i)
    }
}

/// The raw-request machine.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Queues by target; an emptied queue stays for the next request to the same target
    /// (the common case), and empty ones are swept once there are many.
    queues: BTreeMap<(Target, Role), Queue>,
    empty_queues: usize,
    /// Deadlines of waiting requests, with the queue each waits in.
    deadlines: Deadlines<(Tag, Target, Role)>,
    /// Sent and awaiting an answer: who asked, and where it went.
    sent: BTreeMap<Tag, (RequestId, Target)>,
    events: VecDeque<Event>,
}

impl Requests {
    /// Queues `body` for `target`, due within the client's request timeout, which some
    /// requests extend (a Fetch by its wait, a JoinGroup to its rebalance timeout).
    pub fn submit(
        &mut self,
        now: Instant,
        id: RequestId,
        target: Target,
        body: RequestBody,
        version: Option<i16>,
        ctx: &Ctx<'_>,
    ) {
        let timeout = timeout_for(&body, ctx.config.request_timeout);
        let role = role_for(&body, ctx);
        let tag = id.0;
        self.deadlines.insert(now + timeout, (tag, target.clone(), role));
        let queue = self.queues.entry((target, role)).or_default();
        if queue.emptied {
            queue.emptied = false;
            self.empty_queues -= 1;
        }
        queue.items.push_back(Queued { tag, id, body: Some(body), version, issued: now, timeout });
        queue.live += 1;
    }

    /// Takes a waiting request out of line (it expired or failed), reporting `error`.
    fn abandon(&mut self, key: &(Target, Role), tag: Tag, error: RequestError) {
        let Some(queue) = self.queues.get_mut(key) else { return };
        let Some(q) = queue.find(tag) else { return };
        if q.body.take().is_none() {
            return;
        }
        let id = q.id;
        queue.live -= 1;
        if queue.live == 0 {
            self.queues.remove(key);
        }
        self.events.push_back(Event::Response { id, result: Err(error) });
    }
}

impl Machine for Requests {
    fn wanted(&self, _now: Instant, out: &mut Vec<(Target, Role)>) {
        out.extend(self.queues.iter().filter(|(_, q)| q.live > 0).map(|(k, _)| k.clone()));
    }

    fn poll_request(
        &mut self,
        _now: Instant,
        target: &Target,
        link: &Link<'_>,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Outgoing> {
        let role = link.role;
        let key = (target.clone(), role);
        let queue = self.queues.get_mut(&key)?;
        let mut outgoing = None;
        while let Some(q) = queue.items.pop_front() {
            let deadline = q.deadline();
            let Some(body) = q.body else { continue }; // left while it waited
            queue.live -= 1;
            self.deadlines.remove(deadline, (q.tag, target.clone(), role));
            let api = body.api_key();
            let version = match q.version {
                Some(v) => link.versions.check(api, v),
                None => link.versions.negotiate(api),
            };
            match version {
                Ok(version) => {
                    let expects_response = !matches!(&body, RequestBody::Produce(p) if p.acks == 0);
                    self.sent.insert(q.tag, (q.id, target.clone()));
                    let timeout = q.timeout;
                    outgoing = Some(Outgoing { body, version, tag: q.tag, deadline, timeout, expects_response });
                    break;
                }
                Err(error) => {
                    let error = RequestError::Version { address: link.address.clone(), error };
                    self.events.push_back(Event::Response { id: q.id, result: Err(error) });
                }
            }
        }
        if queue.live == 0 && !queue.emptied {
            queue.emptied = true;
            self.empty_queues += 1;
            if self.empty_queues > EMPTY_QUEUES_KEPT {
                self.queues.retain(|_, q| q.live > 0);
                self.empty_queues = 0;
            }
        }
        outgoing
    }

    fn handle_response(&mut self, _now: Instant, tag: Tag, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        let Some((id, target)) = self.sent.remove(&tag) else { return };
        if let (Ok(Response { body: Some(body), .. }), Some(key)) = (&result, CoordinatorKey::of(&target)) {
            #[cfg(feature = "plants")]
            let keep = ctx.planted(crate::plants::Plant::KeepStaleCoordinator);
            #[cfg(not(feature = "plants"))]
            let keep = false;
            if says_not_coordinator(body) && !keep {
                ctx.signals.push(Signal::CoordinatorStale(key));
            }
        }
        let _ = &ctx;
        self.events.push_back(Event::Response { id, result });
    }

    fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        #[cfg(feature = "plants")]
        if ctx.planted(crate::plants::Plant::IgnoreQueuedDeadline) {
            return;
        }
        while let Some((tag, target, role)) = self.deadlines.pop_due(now) {
            let key = (target, role);
            let Some(q) = self.queues.get_mut(&key).and_then(|queue| queue.find(tag)) else { continue };
            let error = ctx.unsent_error(&key.0, q.issued, q.timeout);
            self.abandon(&key, tag, error);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.soonest()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn fail_target(&mut self, _now: Instant, target: &Target, error: &RequestError, issued_before: Instant) {
        for role in [Role::General, Role::Fetch, Role::Coordinator] {
            let key = (target.clone(), role);
            let Some(queue) = self.queues.get(&key) else { continue };
            let failing: Vec<(Tag, Instant)> = queue
                .items
                .iter()
                .filter(|q| q.body.is_some() && q.issued <= issued_before)
                .map(|q| (q.tag, q.deadline()))
                .collect();
            for (tag, deadline) in failing {
                self.deadlines.remove(deadline, (tag, target.clone(), role));
                self.abandon(&key, tag, error.clone());
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.queues.values().all(|q| q.live == 0)
    }
}

/// How long a request may take from submission: the client's request timeout, plus a
/// Fetch's `max_wait_ms` (the broker may hold it that long), and at least a JoinGroup's
/// rebalance timeout (the broker holds it until the group settles).
fn timeout_for(body: &RequestBody, request_timeout: Duration) -> Duration {
    let ms = |v: i32| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    match body {
        RequestBody::Fetch(f) => request_timeout + ms(f.max_wait_ms),
        RequestBody::JoinGroup(j) => request_timeout.max(ms(j.rebalance_timeout_ms) + JOIN_GROUP_GRACE),
        _ => request_timeout,
    }
}

fn role_for(body: &RequestBody, ctx: &Ctx<'_>) -> Role {
    #[cfg(feature = "plants")]
    if ctx.planted(crate::plants::Plant::FetchOnSharedConnection) {
        return Role::General;
    }
    let _ = ctx;
    match body {
        RequestBody::Fetch(_) => Role::Fetch,
        // The broker holds it until the group settles.
        RequestBody::JoinGroup(_) => Role::Coordinator,
        _ => Role::General,
    }
}

/// Whether an answer from a coordinator says it is not (or no longer) the coordinator.
fn says_not_coordinator(body: &ResponseBody) -> bool {
    let stale = |e: ErrorCode| matches!(e, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable);
    if body.error_code().is_some_and(stale) {
        return true;
    }
    match body {
        ResponseBody::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| stale(p.error_code)),
        ResponseBody::TxnOffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| stale(p.error_code)),
        ResponseBody::OffsetFetch(r) => r.groups.iter().any(|g| stale(g.error_code)),
        _ => false,
    }
}
