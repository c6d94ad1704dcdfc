//! Version checks ([`crate::Client::check_version`]): connect to a target, report the API
//! versions it advertised and the Kafka release they indicate, as [`Event::Versions`].
//!
//! Nothing is sent: a check completes as soon as a connection to its node is ready (its
//! ApiVersions handshake is the answer). A broker that accepts the connection and hangs up
//! before answering ApiVersions is older than Kafka 0.10, and is reported as such.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::client::{BrokerVersions, Event, Node, RequestError, RequestId, Response, Target};
use crate::config::BrokerAddress;
use crate::connection::BrokerApiVersions;
use crate::machine::{Ctx, Link, Machine, Outgoing, Role, Tag};
use crate::protocol::kafka_release::{infer_release, ReleaseGuess};
use crate::timer::TimerTable;

#[derive(Debug)]
struct Check {
    id: RequestId,
    target: Target,
    issued: Instant,
    timeout: Duration,
}

/// The version-check machine.
#[derive(Debug, Default)]
pub(crate) struct VersionChecks {
    checks: BTreeMap<Tag, Check>,
    by_target: BTreeMap<Target, VecDeque<Tag>>,
    deadlines: TimerTable<Tag>,
    events: VecDeque<Event>,
}

impl VersionChecks {
    pub fn submit(&mut self, now: Instant, id: RequestId, target: Target, timeout: Duration) {
        let tag = id.0;
        self.deadlines.set(tag, now + timeout);
        self.by_target.entry(target.clone()).or_default().push_back(tag);
        self.checks.insert(tag, Check { id, target, issued: now, timeout });
    }

    fn complete(&mut self, tag: Tag, result: Result<BrokerVersions, RequestError>) {
        let Some(check) = self.checks.remove(&tag) else { return };
        self.deadlines.cancel(&tag);
        if let Some(q) = self.by_target.get_mut(&check.target) {
            q.retain(|t| *t != tag);
            if q.is_empty() {
                self.by_target.remove(&check.target);
            }
        }
        self.events.push_back(Event::Versions { id: check.id, result });
    }
}

fn targets_node(target: &Target, node: Node) -> bool {
    match target {
        Target::Bootstrap(b) => Node::Bootstrap(*b) == node,
        Target::Broker(id) => Node::Broker(*id) == node,
        Target::AnyBroker => true,
        _ => false,
    }
}

impl Machine for VersionChecks {
    fn wanted(&self, _now: Instant, out: &mut Vec<(Target, Role)>) {
        out.extend(self.by_target.keys().map(|t| (t.clone(), Role::General)));
    }

    fn poll_request(
        &mut self,
        _now: Instant,
        target: &Target,
        link: &Link<'_>,
        _ctx: &mut Ctx<'_>,
    ) -> Option<Outgoing> {
        let queue = self.by_target.get(target)?;
        let tags: Vec<Tag> = queue.iter().copied().collect();
        let ranges: Vec<(i16, i16, i16)> = link.versions.iter().map(|(k, r)| (k, r.min, r.max)).collect();
        let release = infer_release(&ranges);
        for tag in tags {
            let versions = BrokerVersions {
                node: link.node,
                address: link.address.clone(),
                api_versions: link.versions.clone(),
                release,
            };
            self.complete(tag, Ok(versions));
        }
        None
    }

    fn handle_response(
        &mut self,
        _now: Instant,
        _tag: Tag,
        _result: Result<Response, RequestError>,
        _ctx: &mut Ctx<'_>,
    ) {
    }

    fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        while let Some(tag) = self.deadlines.pop_due(now) {
            let Some(check) = self.checks.get(&tag) else { continue };
            let error = ctx.unsent_error(&check.target, check.issued, check.timeout);
            self.deadlines.set(tag, now); // `complete` cancels it again
            self.complete(tag, Err(error));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.soonest()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn fail_target(&mut self, _now: Instant, target: &Target, error: &RequestError, issued_before: Instant) {
        let tags: Vec<Tag> = self.by_target.get(target).map(|q| q.iter().copied().collect()).unwrap_or_default();
        for tag in tags {
            if self.checks.get(&tag).is_some_and(|c| c.issued <= issued_before) {
                self.complete(tag, Err(error.clone()));
            }
        }
    }

    fn handle_closed(&mut self, _now: Instant, node: Node, address: &BrokerAddress, before_handshake: bool) {
        if !before_handshake {
            return;
        }
        let tags: Vec<Tag> =
            self.checks.iter().filter(|(_, c)| targets_node(&c.target, node)).map(|(t, _)| *t).collect();
        for tag in tags {
            let versions = BrokerVersions {
                node,
                address: address.clone(),
                api_versions: BrokerApiVersions::default(),
                release: ReleaseGuess::OlderThan0_10,
            };
            self.complete(tag, Ok(versions));
        }
    }

    fn is_idle(&self) -> bool {
        self.checks.is_empty()
    }
}
