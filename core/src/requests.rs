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
use crate::timer::{Slab, TimerTable};

/// Extra time a JoinGroup gets beyond its rebalance timeout, as the Java client allows.
const JOIN_GROUP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Queued {
    tag: Tag,
    id: RequestId,
    target: Target,
    role: Role,
    body: RequestBody,
    version: Option<i16>,
    issued: Instant,
    timeout: Duration,
}

#[derive(Debug, Default)]
struct Queue {
    /// `(tag, slot)` in submission order.
    tags: VecDeque<(Tag, usize)>,
    /// Entries in `tags` still waiting (the rest expired or failed).
    live: usize,
}

/// The raw-request machine.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    items: Slab<Queued>,
    /// Where each waiting request sits in `items`.
    queued: BTreeMap<Tag, usize>,
    queues: BTreeMap<(Target, Role), Queue>,
    deadlines: TimerTable<Tag>,
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
        self.deadlines.set(tag, now + timeout);
        let key = (target.clone(), role);
        let slot = self.items.insert(Queued { tag, id, target, role, body, version, issued: now, timeout });
        self.queued.insert(tag, slot);
        let queue = self.queues.entry(key).or_default();
        queue.tags.push_back((tag, slot));
        queue.live += 1;
    }

    /// Drops a queued request (expired or failed) from its queue's live count.
    fn unqueue(&mut self, tag: Tag) -> Option<Queued> {
        let slot = self.queued.remove(&tag)?;
        let q = self.items.remove(slot)?;
        self.deadlines.cancel(&tag);
        let key = (q.target.clone(), q.role);
        if let Some(queue) = self.queues.get_mut(&key) {
            queue.live -= 1;
            if queue.live == 0 {
                self.queues.remove(&key);
            }
        }
        Some(q)
    }
}

impl Machine for Requests {
    fn wanted(&self, _now: Instant, out: &mut Vec<(Target, Role)>) {
        out.extend(self.queues.keys().cloned());
    }

    fn poll_request(
        &mut self,
        _now: Instant,
        target: &Target,
        link: &Link<'_>,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Outgoing> {
        for role in [Role::General, Role::Fetch] {
            let key = (target.clone(), role);
            while let Some((tag, slot)) = self.queues.get_mut(&key).and_then(|q| q.tags.pop_front()) {
                if self.items.get(slot).is_none_or(|q| q.tag != tag) {
                    continue; // expired or failed while it waited
                }
                let Some(q) = self.unqueue(tag) else { continue };
                let api = q.body.api_key();
                let version = match q.version {
                    Some(v) => link.versions.check(api, v),
                    None => link.versions.negotiate(api),
                };
                let version = match version {
                    Ok(v) => v,
                    Err(error) => {
                        let error = RequestError::Version { address: link.address.clone(), error };
                        self.events.push_back(Event::Response { id: q.id, result: Err(error) });
                        continue;
                    }
                };
                let expects_response = !matches!(&q.body, RequestBody::Produce(p) if p.acks == 0);
                self.sent.insert(tag, (q.id, q.target));
                return Some(Outgoing {
                    body: q.body,
                    version,
                    tag,
                    deadline: q.issued + q.timeout,
                    timeout: q.timeout,
                    expects_response,
                });
            }
        }
        None
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
        while let Some(tag) = self.deadlines.pop_due(now) {
            if let Some(q) = self.unqueue(tag) {
                let error = ctx.unsent_error(&q.target, q.issued, q.timeout);
                self.events.push_back(Event::Response { id: q.id, result: Err(error) });
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.soonest()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn fail_target(&mut self, _now: Instant, target: &Target, error: &RequestError, issued_before: Instant) {
        let keys: Vec<(Target, Role)> = self.queues.keys().filter(|(t, _)| t == target).cloned().collect();
        for key in keys {
            let tags: Vec<(Tag, usize)> =
                self.queues.get(&key).map(|q| q.tags.iter().copied().collect()).unwrap_or_default();
            for (tag, slot) in tags {
                if self.items.get(slot).is_some_and(|q| q.tag == tag && q.issued <= issued_before) {
                    if let Some(q) = self.unqueue(tag) {
                        self.events.push_back(Event::Response { id: q.id, result: Err(error.clone()) });
                    }
                }
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.queued.is_empty()
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
