//! The metadata machine: periodic and on-demand refreshes of [`ClusterMetadata`], with
//! backoff after failures, plus the application's own refreshes.
//!
//! | refresh state | on | next |
//! |---|---|---|
//! | scheduled at `next_refresh` | that instant passes, or a machine signals stale metadata | due |
//! | due | a ready connection pulls it | in flight |
//! | in flight | an answer | applied; scheduled at `metadata.max.age.ms` (sooner while leaders are unsettled) |
//! | in flight | a failure | scheduled after a backoff |
//!
//! The application's refreshes ([`crate::Client::refresh_metadata`]) are requests of their
//! own, answered with [`Event::Metadata`] and never retried.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::needs_quick_refresh;
use crate::client::{Event, RequestError, RequestId, Response, Target};
use crate::machine::{Ctx, Link, Machine, Outgoing, Role, Tag};
use crate::protocol::messages::metadata::request::MetadataRequestTopic;
use crate::protocol::messages::MetadataRequest;
use crate::protocol::{ApiKey, RequestBody, ResponseBody, TopicName};
use crate::rand::Rng;
use crate::timer::TimerTable;

#[derive(Debug)]
struct UserRefresh {
    id: RequestId,
    topics: Option<Vec<TopicName>>,
    issued: Instant,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Periodic,
    Deadline(Tag),
}

/// The metadata machine.
#[derive(Debug)]
pub(crate) struct MetadataRefresh {
    tracked_topics: BTreeSet<TopicName>,
    /// Every topic is tracked: refreshes list them all.
    all_topics: bool,
    /// Tracked topics a refresh may create.
    auto_create_topics: BTreeSet<TopicName>,
    /// A topic was tracked while a refresh was in flight: refresh again once it lands.
    refresh_again: bool,
    next_refresh: Instant,
    /// The client's own refresh on the wire.
    in_flight: Option<Tag>,
    /// Plant `DropRetry`: a failed refresh is never rescheduled.
    stuck: bool,
    failures: u32,
    /// No periodic refresh any more; only those asked for ([`MetadataRefresh::want_refresh`]).
    closing: bool,
    /// A refresh asked for while closing: records a closing producer still sends may be
    /// waiting for their topic or a moved leader.
    asked_while_closing: bool,
    /// The application's refreshes not yet sent, in order (tags of removed ones are skipped).
    queued: VecDeque<Tag>,
    user: BTreeMap<Tag, UserRefresh>,
    /// The application's refreshes on the wire.
    sent: BTreeMap<Tag, UserRefresh>,
    timers: TimerTable<Timer>,
    next_tag: Tag,
    events: VecDeque<Event>,
    rng: Rng,
}

impl MetadataRefresh {
    pub fn new(now: Instant, max_age: Duration, seed: u64) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Periodic, now + max_age);
        MetadataRefresh {
            tracked_topics: BTreeSet::new(),
            all_topics: false,
            auto_create_topics: BTreeSet::new(),
            refresh_again: false,
            next_refresh: now + max_age,
            in_flight: None,
            stuck: false,
            failures: 0,
            closing: false,
            asked_while_closing: false,
            queued: VecDeque::new(),
            user: BTreeMap::new(),
            sent: BTreeMap::new(),
            timers,
            next_tag: 0,
            events: VecDeque::new(),
            rng: Rng::stream(seed, "metadata"),
        }
    }

    /// Queues the application's refresh of `topics` (every topic when `None`); named topics
    /// are kept fresh by later periodic refreshes too.
    pub fn refresh(&mut self, now: Instant, id: RequestId, topics: Option<Vec<TopicName>>, timeout: Duration) {
        if let Some(t) = &topics {
            self.tracked_topics.extend(t.iter().cloned());
        }
        self.next_tag += 1;
        let tag = self.next_tag;
        self.timers.set(Timer::Deadline(tag), now + timeout);
        self.user.insert(tag, UserRefresh { id, topics, issued: now, deadline: now + timeout });
        self.queued.push_back(tag);
    }

    /// Keeps `topic` fresh in every refresh of the client's own; with `auto_create`, those
    /// refreshes let the broker create it (as the Java producer's do).
    pub fn track(&mut self, topic: TopicName, auto_create: bool) {
        if auto_create {
            self.auto_create_topics.insert(topic.clone());
        }
        // A refresh already on the wire does not name the new topic: another follows it.
        if self.tracked_topics.insert(topic) && self.in_flight.is_some() {
            self.refresh_again = true;
        }
    }

    /// Keeps every topic fresh from now on: each refresh of the client's own lists them all.
    pub fn track_all(&mut self) {
        if !self.all_topics && self.in_flight.is_some() {
            self.refresh_again = true;
        }
        self.all_topics = true;
    }

    /// Asks for a refresh soon, unless one is under way. Returns whether that is news.
    pub fn want_refresh(&mut self, now: Instant) -> bool {
        if self.in_flight.is_some() || self.stuck {
            return false;
        }
        if self.closing {
            let news = !self.asked_while_closing;
            self.asked_while_closing = true;
            self.next_refresh = self.next_refresh.min(now);
            self.timers.set(Timer::Periodic, self.next_refresh);
            return news;
        }
        if self.next_refresh > now {
            self.next_refresh = now;
            self.timers.set(Timer::Periodic, now);
            return true;
        }
        false
    }

    /// Whether a refresh of the client's own is due or on the wire: newer metadata is coming.
    pub fn refresh_pending(&self, now: Instant) -> bool {
        self.in_flight.is_some() || self.periodic_due(now)
    }

    fn periodic_due(&self, now: Instant) -> bool {
        let open = !self.closing || self.asked_while_closing;
        self.in_flight.is_none() && open && !self.stuck && self.next_refresh <= now
    }

    fn schedule(&mut self, at: Instant) {
        self.next_refresh = at;
        self.timers.set(Timer::Periodic, at);
    }
}

impl Machine for MetadataRefresh {
    fn wanted(&self, now: Instant, out: &mut Vec<(Target, Role)>) {
        if !self.user.is_empty() || self.periodic_due(now) {
            out.push((Target::AnyBroker, Role::General));
        }
    }

    fn poll_request(&mut self, now: Instant, target: &Target, link: &Link<'_>, ctx: &mut Ctx<'_>) -> Option<Outgoing> {
        if *target != Target::AnyBroker || link.role != Role::General {
            return None;
        }
        let version = match link.versions.negotiate(ApiKey::Metadata) {
            Ok(v) => v,
            Err(error) => {
                // Every broker answers Metadata; one that does not is failed like a lost answer.
                let error = RequestError::Version { address: link.address.clone(), error };
                while let Some(tag) = self.queued.pop_front() {
                    if let Some(u) = self.user.remove(&tag) {
                        self.timers.cancel(&Timer::Deadline(tag));
                        self.events.push_back(Event::Metadata { id: u.id, result: Err(error.clone()) });
                    }
                }
                return None;
            }
        };
        let timeout = ctx.config.request_timeout;
        while let Some(tag) = self.queued.pop_front() {
            let Some(u) = self.user.remove(&tag) else { continue };
            self.timers.cancel(&Timer::Deadline(tag));
            let body = metadata_request(u.topics.as_deref(), false);
            let deadline = u.deadline;
            self.sent.insert(tag, u);
            return Some(Outgoing { body, version, tag, deadline, timeout, expects_response: true });
        }
        if !self.periodic_due(now) {
            return None;
        }
        self.next_tag += 1;
        let tag = self.next_tag;
        self.in_flight = Some(tag);
        self.asked_while_closing = false;
        self.timers.cancel(&Timer::Periodic);
        let topics: Vec<TopicName> = self.tracked_topics.iter().cloned().collect();
        let body = metadata_request((!self.all_topics).then_some(&topics), !self.auto_create_topics.is_empty());
        Some(Outgoing { body, version, tag, deadline: now + timeout, timeout, expects_response: true })
    }

    fn handle_response(&mut self, now: Instant, tag: Tag, result: Result<Response, RequestError>, ctx: &mut Ctx<'_>) {
        let user = self.sent.remove(&tag);
        if user.is_none() && self.in_flight != Some(tag) {
            return;
        }
        let answer = match result {
            Ok(Response { body: Some(ResponseBody::Metadata(m)), .. }) => Ok(m),
            Ok(_) => Err(RequestError::ClientClosed),
            Err(e) => Err(e),
        };
        match (answer, user) {
            (Ok(m), user) => {
                let all_topics = match &user {
                    Some(u) => u.topics.is_none(),
                    None => self.all_topics,
                };
                ctx.cluster.apply(now, &m, all_topics);
                ctx.signals.push(crate::machine::Signal::MetadataChanged);
                if user.is_none() {
                    self.in_flight = None;
                    self.failures = 0;
                    let again = std::mem::take(&mut self.refresh_again);
                    self.schedule(if again { now } else { now + ctx.config.metadata_max_age });
                }
                if needs_quick_refresh(&m) && self.in_flight.is_none() {
                    let delay = ctx.config.retry_backoff.delay(1, &mut self.rng);
                    if now + delay < self.next_refresh {
                        self.schedule(now + delay);
                    }
                }
                if let Some(u) = user {
                    self.events.push_back(Event::Metadata { id: u.id, result: Ok(ctx.cluster.clone()) });
                }
            }
            (Err(e), Some(u)) => self.events.push_back(Event::Metadata { id: u.id, result: Err(e) }),
            (Err(_), None) => {
                self.in_flight = None;
                #[cfg(feature = "plants")]
                if ctx.planted(crate::plants::Plant::DropRetry) {
                    self.stuck = true;
                    self.timers.cancel(&Timer::Periodic);
                    return;
                }
                self.failures = self.failures.saturating_add(1);
                let delay = ctx.config.retry_backoff.delay(self.failures, &mut self.rng);
                self.schedule(now + delay);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                // Due now: `wanted` reports it until a connection pulls it.
                Timer::Periodic => {}
                Timer::Deadline(tag) => {
                    if let Some(u) = self.user.remove(&tag) {
                        let error = ctx.unsent_error(&Target::AnyBroker, u.issued, ctx.config.request_timeout);
                        self.events.push_back(Event::Metadata { id: u.id, result: Err(error) });
                    }
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // A due refresh is not a deadline while it waits for a connection: the driver would spin.
        self.timers.soonest()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Application refreshes waiting for a connection fail with the target (a failed login,
    /// which every retry would repeat); the client's own refreshes go on.
    fn fail_target(&mut self, _now: Instant, target: &Target, error: &RequestError, issued_before: Instant) {
        if *target != Target::AnyBroker {
            return;
        }
        let mut kept = std::collections::VecDeque::new();
        while let Some(tag) = self.queued.pop_front() {
            match self.user.get(&tag) {
                Some(u) if u.issued <= issued_before => {
                    if let Some(u) = self.user.remove(&tag) {
                        self.timers.cancel(&Timer::Deadline(tag));
                        self.events.push_back(Event::Metadata { id: u.id, result: Err(error.clone()) });
                    }
                }
                Some(_) => kept.push_back(tag),
                None => {}
            }
        }
        self.queued = kept;
    }

    fn close(&mut self, now: Instant) {
        // The client's periodic refreshes have no one waiting for them; one already due was
        // asked for (by records waiting for metadata, say) and still goes.
        self.closing = true;
        self.asked_while_closing = self.next_refresh <= now;
        self.timers.cancel(&Timer::Periodic);
    }

    fn is_idle(&self) -> bool {
        self.user.is_empty()
    }
}

fn metadata_request(topics: Option<&[TopicName]>, auto_create: bool) -> RequestBody {
    let topics =
        topics.map(|t| t.iter().map(|name| MetadataRequestTopic::default().with_name(Some(name.clone()))).collect());
    MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(auto_create).into()
}
