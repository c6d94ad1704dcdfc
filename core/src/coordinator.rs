//! Coordinator lookup: FindCoordinator, a cache of answers, and invalidation when a machine
//! reads NOT_COORDINATOR in an answer.
//!
//! | lookup state | on | next |
//! |---|---|---|
//! | due (no `not_before`, or passed) | a ready connection pulls it | in flight |
//! | in flight | a coordinator in the answer | cached; the lookup ends |
//! | in flight | a retriable error, or no answer, before its deadline | due after a backoff |
//! | in flight | a fatal error, or its deadline passed | the lookup ends; waiters fail |
//!
//! The router asks [`Coordinators::resolve`] for each coordinator-bound target; a miss
//! starts a lookup.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::client::{Event, RequestError, Response, Target};
use crate::machine::{Ctx, Link, Machine, Outgoing, Role, Signal, Tag};
use crate::protocol::messages::find_coordinator::request::FindCoordinatorRequest;
use crate::protocol::{ApiKey, BrokerId, ErrorCode, GroupId, ResponseBody, StrBytes, TransactionalId};
use crate::rand::Rng;
use crate::timer::TimerTable;

/// What a coordinator coordinates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum CoordinatorKey {
    Group(GroupId),
    Transaction(TransactionalId),
}

impl CoordinatorKey {
    /// The key behind a coordinator-bound target.
    pub fn of(target: &Target) -> Option<CoordinatorKey> {
        match target {
            Target::GroupCoordinator(g) => Some(CoordinatorKey::Group(g.clone())),
            Target::TransactionCoordinator(t) => Some(CoordinatorKey::Transaction(t.clone())),
            _ => None,
        }
    }

    fn target(&self) -> Target {
        match self {
            CoordinatorKey::Group(g) => Target::GroupCoordinator(g.clone()),
            CoordinatorKey::Transaction(t) => Target::TransactionCoordinator(t.clone()),
        }
    }
}

#[derive(Debug)]
struct Lookup {
    started: Instant,
    deadline: Instant,
    failures: u32,
    in_flight: Option<Tag>,
    /// Plant `DropRetry`: the lookup hangs instead of retrying.
    stuck: bool,
}

/// The coordinator machine.
#[derive(Debug)]
pub(crate) struct Coordinators {
    cache: BTreeMap<CoordinatorKey, BrokerId>,
    lookups: BTreeMap<CoordinatorKey, Lookup>,
    /// Lookups ready to send, oldest first (entries whose lookup changed state are skipped).
    due: VecDeque<CoordinatorKey>,
    /// Backoffs of lookups waiting to retry.
    retry_at: TimerTable<CoordinatorKey>,
    tags: BTreeMap<Tag, CoordinatorKey>,
    next_tag: Tag,
    rng: Rng,
}

impl Coordinators {
    pub fn new(seed: u64) -> Self {
        Coordinators {
            cache: BTreeMap::new(),
            lookups: BTreeMap::new(),
            due: VecDeque::new(),
            retry_at: TimerTable::default(),
            tags: BTreeMap::new(),
            next_tag: 0,
            rng: Rng::stream(seed, "coordinator"),
        }
    }

    /// The coordinator for `key` if known; otherwise starts a lookup (once) and answers `None`.
    /// The flag says whether a lookup started.
    pub fn resolve(&mut self, now: Instant, key: &CoordinatorKey, ctx: &Ctx<'_>) -> (Option<BrokerId>, bool) {
        if let Some(id) = self.cache.get(key) {
            return (Some(*id), false);
        }
        let start = !self.lookups.contains_key(key);
        if start {
            let deadline = now + ctx.config.request_timeout;
            let lookup = Lookup { started: now, deadline, failures: 0, in_flight: None, stuck: false };
            self.lookups.insert(key.clone(), lookup);
            self.due.push_back(key.clone());
        }
        (None, start)
    }

    /// Forgets `key`'s coordinator: the next request for it looks it up again.
    pub fn invalidate(&mut self, key: &CoordinatorKey) {
        self.cache.remove(key);
    }

    fn is_due(&self, key: &CoordinatorKey) -> bool {
        self.lookups.get(key).is_some_and(|l| l.in_flight.is_none() && !l.stuck) && !self.retry_at.contains(key)
    }

    /// A failed attempt: retry after a backoff while the lookup has time, else fail its waiters.
    fn on_failure(
        &mut self,
        now: Instant,
        key: CoordinatorKey,
        error: RequestError,
        retriable: bool,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(lookup) = self.lookups.get_mut(&key) else { return };
        lookup.in_flight = None;
        #[cfg(feature = "plants")]
        if retriable && ctx.planted(crate::plants::Plant::DropRetry) {
            lookup.stuck = true;
            return;
        }
        if retriable && lookup.deadline > now {
            lookup.failures = lookup.failures.saturating_add(1);
            let delay = ctx.config.retry_backoff.delay(lookup.failures, &mut self.rng);
            // Waiters keep their own deadlines; the lookup lives while someone may still want it.
            if lookup.deadline <= now + delay {
                lookup.deadline = now + delay + ctx.config.request_timeout;
            }
            self.retry_at.set(key, now + delay);
            return;
        }
        let started = lookup.started;
        self.lookups.remove(&key);
        ctx.signals.push(Signal::FailTarget { target: key.target(), error, issued_before: started.max(now) });
    }
}

impl Machine for Coordinators {
    fn wanted(&self, _now: Instant, out: &mut Vec<(Target, Role)>) {
        if self.due.iter().any(|k| self.is_due(k)) {
            out.push((Target::AnyBroker, Role::General));
        }
    }

    fn poll_request(&mut self, now: Instant, target: &Target, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        if *target != Target::AnyBroker || link.role != Role::General {
            return None;
        }
        while let Some(key) = self.due.pop_front() {
            if !self.is_due(&key) {
                continue;
            }
            let version = match link.versions.negotiate(ApiKey::FindCoordinator) {
                Ok(v) => v,
                Err(error) => {
                    let error = RequestError::Version { address: link.address.clone(), error };
                    self.on_failure(now, key, error, false, ctx);
                    continue;
                }
            };
            self.next_tag += 1;
            let tag = self.next_tag;
            let lookup = self.lookups.get_mut(&key)?;
            lookup.in_flight = Some(tag);
            let deadline = lookup.deadline.max(now + ctx.config.request_timeout);
            let body = find_coordinator_request(&key, version);
            self.tags.insert(tag, key);
            return Some(Outgoing {
                body,
                version,
                tag,
                deadline,
                timeout: ctx.config.request_timeout,
                expects_response: true,
            });
        }
        None
    }

    fn handle_response(&mut self, now: Instant, tag: Tag, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        let Some(key) = self.tags.remove(&tag) else { return };
        let response = match result {
            Ok(r) => r,
            Err(error) => {
                let retriable = !matches!(error, RequestError::Version { .. });
                return self.on_failure(now, key, error, retriable, ctx);
            }
        };
        let Some(ResponseBody::FindCoordinator(r)) = response.body else {
            // Answers are decoded for the request's API, so this is another owner's answer.
            let error = RequestError::Coordinator(ErrorCode::UnknownServerError);
            return self.on_failure(now, key, error, true, ctx);
        };
        // v4+ answers per key; older versions answer at the top level.
        let (error, node_id) = match r.coordinators.first() {
            Some(c) => (c.error_code, c.node_id),
            None => (r.error_code, r.node_id),
        };
        if error.is_ok() {
            self.lookups.remove(&key);
            self.cache.insert(key, node_id);
            if ctx.cluster.broker(node_id).is_none() {
                ctx.signals.push(Signal::RefreshMetadata);
            }
        } else {
            let retriable = error.is_retriable() || error == ErrorCode::CoordinatorNotAvailable;
            self.on_failure(now, key, RequestError::Coordinator(error), retriable, ctx);
        }
    }

    fn handle_timeout(&mut self, now: Instant, _ctx: &mut Ctx<'_>) {
        while let Some(key) = self.retry_at.pop_due(now) {
            if self.lookups.contains_key(&key) {
                self.due.push_back(key);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at.soonest()
    }

    fn poll_event(&mut self) -> Option<Event> {
        None
    }

    fn fail_target(&mut self, _now: Instant, _target: &Target, _error: &RequestError, _issued_before: Instant) {}

    fn is_idle(&self) -> bool {
        // Lookups only serve other machines' requests, which end on their own deadlines.
        true
    }
}

/// FindCoordinator names one key (`Key`) before v4 and a list (`CoordinatorKeys`) from v4.
fn find_coordinator_request(key: &CoordinatorKey, version: i16) -> crate::protocol::RequestBody {
    let (key_type, name): (i8, StrBytes) = match key {
        CoordinatorKey::Group(g) => (0, g.0.clone()),
        CoordinatorKey::Transaction(t) => (1, t.0.clone()),
    };
    let req = FindCoordinatorRequest::default().with_key_type(key_type);
    if version >= 4 {
        req.with_coordinator_keys(vec![name]).into()
    } else {
        req.with_key(name).into()
    }
}
