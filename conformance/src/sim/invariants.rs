//! Invariants checked after a run, each on its own behind one trait, and a registry that
//! machines add theirs to (`Registry::standard().with(..)`: the producer's idempotence
//! checks, the consumer's group checks). An invariant reads a [`World`] — the commands, the
//! record history, the probes, the trace — never the simulator's insides, so a hand-made
//! world can prove that it fails when it should.

use std::collections::BTreeMap;
use std::time::Duration;

use sansa::producer::Acks;
use sansa::protocol::{ApiKey, Uuid};
use sansa::Event;

use super::harness::{answered_partitions, CmdId, ConnectionApis, ProbeRecord, RequestRecord, Sim, Violation};
use super::history::{History, RecordId, SendEntry, SendKey};
use super::trace::Trace;

/// Slack on every time bound: the virtual clock is exact, timers may fire a tick late.
pub const SLACK: Duration = Duration::from_millis(1);

/// What an invariant may look at.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    /// Every command, by id.
    pub commands: &'a BTreeMap<CmdId, RequestRecord>,
    /// Outcomes for commands never issued.
    pub stray: &'a [(Duration, String)],
    /// The record history, with the logs read at the end.
    pub history: &'a History,
    /// Requests that had to succeed within a bound.
    pub probes: &'a [ProbeRecord],
    /// The APIs each client connection carried.
    pub connection_apis: &'a ConnectionApis,
    /// Violations noticed while running (reconnect bounds, sends on dead connections).
    pub online: &'a [Violation],
    /// Why metadata did not converge after the faults, if it did not.
    pub convergence: Option<&'a str>,
    /// The trace.
    pub trace: &'a Trace,
    /// Virtual time at the end of the run.
    pub now: Duration,
    /// Connections closed for an expired SASL session.
    pub expired_sessions_closed: u64,
}

impl<'a> World<'a> {
    /// The world of a finished run.
    pub fn of(sim: &'a Sim) -> Self {
        World {
            commands: sim.requests(),
            stray: sim.stray_outcomes(),
            history: sim.history(),
            probes: sim.probes(),
            connection_apis: sim.connection_apis(),
            online: sim.violations(),
            convergence: sim.convergence(),
            trace: sim.trace(),
            now: sim.now(),
            expired_sessions_closed: sim.expired_sessions_closed(),
        }
    }
}

/// A property every run must have.
pub trait Invariant {
    /// Its name, as violations print it.
    fn name(&self) -> &'static str;
    /// The machine it belongs to (`client`, `producer`, `consumer`, ...).
    fn machine(&self) -> &'static str {
        "client"
    }
    /// Checks it; the first problem and how many there are.
    fn check(&self, world: &World) -> Result<(), Violation>;
}

/// Builds a violation of `invariant` from every problem found (the first in full).
fn verdict(invariant: &'static str, at: Duration, problems: Vec<String>) -> Result<(), Violation> {
    let Some(first) = problems.first() else { return Ok(()) };
    let detail = match problems.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more)", n - 1),
    };
    Err(Violation { invariant, at, detail })
}

/// The invariants a run is checked against, in a fixed order.
pub struct Registry {
    invariants: Vec<Box<dyn Invariant>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// Nothing.
    pub fn empty() -> Self {
        Registry { invariants: Vec::new() }
    }

    /// Every invariant of the client and the workload's data.
    pub fn standard() -> Self {
        let registry = Registry::empty()
            .with(OnlineChecks)
            .with(SessionsRenewed)
            .with(ExactlyOneOutcome)
            .with(ResolvesByDeadline)
            .with(MetadataConverges)
            .with(AnswerMatchesRequest)
            .with(RecordOutcomes)
            .with(AckedInLogOnce)
            .with(AckOrderPerConnection)
            .with(ConsumedMatchesLog)
            .with(Liveness)
            .with(NotBehindLongPoll)
            .with(FetchesTravelApart)
            .with(ProducerOneOutcome)
            .with(ProducerIdempotentExactlyOnceInOrder)
            .with(ProducerAtLeastOnce)
            .with(ProducerBufferBound)
            .with(ProducerDeliveryDeadline)
            .with(ProducerRecovers);
        super::consumers::register(registry)
    }

    /// Adds one.
    pub fn with(mut self, invariant: impl Invariant + 'static) -> Self {
        self.invariants.push(Box::new(invariant));
        self
    }

    /// Names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.invariants.iter().map(|i| i.name()).collect()
    }

    /// Every violation, in registry order. Online violations come through one by one.
    pub fn check(&self, world: &World) -> Vec<Violation> {
        let mut out = Vec::new();
        for inv in &self.invariants {
            if inv.name() == OnlineChecks.name() {
                out.extend(world.online.iter().cloned());
            } else if let Err(v) = inv.check(world) {
                out.push(v);
            }
        }
        out
    }
}

/// What the simulator checks while running: reconnect backoff bounds and no sends on dead
/// connections. They need every step's state, so the harness records them as they happen.
#[derive(Debug)]
pub struct OnlineChecks;

impl Invariant for OnlineChecks {
    fn name(&self) -> &'static str {
        "online"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        world.online.first().map_or(Ok(()), |v| Err(v.clone()))
    }
}

/// A client re-authenticates before its SASL session expires (KIP-368): no broker ever closes
/// a connection for a request that arrived on an expired session.
#[derive(Debug)]
pub struct SessionsRenewed;

impl Invariant for SessionsRenewed {
    fn name(&self) -> &'static str {
        "sasl-sessions-renewed"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        match world.expired_sessions_closed {
            0 => Ok(()),
            n => Err(Violation {
                invariant: self.name(),
                at: world.now,
                detail: format!("brokers closed {n} connections whose SASL session had expired"),
            }),
        }
    }
}

/// Every command has exactly one outcome, and no outcome is for an unknown command.
#[derive(Debug)]
pub struct ExactlyOneOutcome;

impl Invariant for ExactlyOneOutcome {
    fn name(&self) -> &'static str {
        "exactly-one-outcome"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for (id, r) in world.commands {
            match r.outcomes.len() {
                0 => problems.push(format!("{id} {} (issued {:.6}s) has no outcome", r.what, r.issued.as_secs_f64())),
                1 => {}
                n => problems.push(format!("{id} {} has {n} outcomes", r.what)),
            }
        }
        for (at, s) in world.stray {
            problems.push(format!("outcome {s} at {:.6}s for a command never issued", at.as_secs_f64()));
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Every command resolves by its deadline: the request timeout (plus a long poll's hold).
#[derive(Debug)]
pub struct ResolvesByDeadline;

impl Invariant for ResolvesByDeadline {
    fn name(&self) -> &'static str {
        "resolves-by-deadline"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for (id, r) in world.commands {
            if let Some((at, e)) = r.outcomes.first() {
                if *at > r.issued + r.deadline + SLACK {
                    problems.push(format!(
                        "{id} {} issued {:.6}s, outcome {} after {:?} (deadline {:?})",
                        r.what,
                        r.issued.as_secs_f64(),
                        super::scenario::outcome_kind(e),
                        *at - r.issued,
                        r.deadline
                    ));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Once faults are over, a metadata refresh brings each client's view to the cluster's truth.
#[derive(Debug)]
pub struct MetadataConverges;

impl Invariant for MetadataConverges {
    fn name(&self) -> &'static str {
        "metadata-converges"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        verdict(self.name(), world.now, world.convergence.map(str::to_string).into_iter().collect())
    }
}

/// Each answer is the answer to its own request: same API, and for data requests the
/// partition asked about (answers swapped between owners break this).
#[derive(Debug)]
pub struct AnswerMatchesRequest;

impl Invariant for AnswerMatchesRequest {
    fn name(&self) -> &'static str {
        "answer-matches-request"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for (id, r) in world.commands {
            let (Some(asked), Some(Event::Response { result: Ok(resp), .. })) = (&r.asked, r.outcome()) else {
                continue;
            };
            let Some(body) = &resp.body else { continue };
            if body.api_key() != asked.api {
                problems.push(format!("{id} asked {:?} and got a {:?} answer", asked.api, body.api_key()));
                continue;
            }
            if let Some((topic, topic_id, partition)) = &asked.partition {
                let named = answered_partitions(body);
                let ok = named.iter().all(|(t, tid, p)| {
                    p == partition && (t == topic || (*tid == *topic_id && *tid != Uuid::default()) || t.is_empty())
                });
                if !ok || named.is_empty() {
                    problems.push(format!("{id} asked about {topic}-{partition}, the answer names {named:?}"));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Every record sent has exactly one outcome: acked once, or failed once.
#[derive(Debug)]
pub struct RecordOutcomes;

impl Invariant for RecordOutcomes {
    fn name(&self) -> &'static str {
        "record-has-one-outcome"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let problems = world
            .history
            .records()
            .iter()
            .filter(|(_, r)| r.outcomes() != 1)
            .map(|(id, r)| {
                format!("{id}: {} acks {:?}, {} failures {:?}", r.acks.len(), r.acks, r.failures.len(), r.failures)
            })
            .collect();
        verdict(self.name(), world.now, problems)
    }
}

/// Every acked record is in the log of its partition at its acked offset, and stored once
/// (at least once when the history allows duplicates: lost answers with retries).
#[derive(Debug)]
pub struct AckedInLogOnce;

impl Invariant for AckedInLogOnce {
    fn name(&self) -> &'static str {
        "acked-in-log-once"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let h = world.history;
        let places = h.stored_places();
        let mut problems = Vec::new();
        for (id, r) in h.records() {
            let Some((_, partition, offset)) = r.acks.first().copied() else { continue };
            match h.stored_at(&r.topic, partition, offset) {
                Some(Some(v)) if RecordId::parse(v) == Some(*id) => {}
                Some(other) => problems.push(format!(
                    "{id} acked at {}-{partition}@{offset}, which holds {:?}",
                    r.topic,
                    other.as_deref().map(String::from_utf8_lossy)
                )),
                None => {
                    problems.push(format!("{id} acked at {}-{partition}@{offset}, which is not in the log", r.topic))
                }
            }
            let copies = places.get(id).map_or(0, Vec::len);
            if copies > 1 && !h.duplicates_allowed {
                problems.push(format!("{id} is stored {copies} times: {:?}", places[id]));
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Records acked for one partition that went out on one connection got offsets in the
/// order they were written.
#[derive(Debug)]
pub struct AckOrderPerConnection;

impl Invariant for AckOrderPerConnection {
    fn name(&self) -> &'static str {
        "ack-order-per-connection"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        // (connection, topic, partition) -> (write order, acked offset, record).
        type Lane = Vec<(u64, i64, RecordId)>;
        let mut lanes: BTreeMap<(u64, String, i32), Lane> = BTreeMap::new();
        for (id, r) in world.history.records() {
            let (Some((conn, order)), Some((_, partition, offset))) = (r.wire, r.acks.first().copied()) else {
                continue;
            };
            lanes.entry((conn, r.topic.clone(), partition)).or_default().push((order, offset, *id));
        }
        let mut problems = Vec::new();
        for ((conn, topic, partition), mut lane) in lanes {
            lane.sort();
            for w in lane.windows(2) {
                if w[1].1 <= w[0].1 {
                    problems.push(format!(
                        "on connection {conn:#x}, {} was written before {} but acked at {topic}-{partition}@{} after @{}",
                        w[0].2, w[1].2, w[0].1, w[1].1
                    ));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// What a client read is what the log holds at that offset.
#[derive(Debug)]
pub struct ConsumedMatchesLog;

impl Invariant for ConsumedMatchesLog {
    fn name(&self) -> &'static str {
        "consumed-matches-log"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let h = world.history;
        let problems = h
            .consumed_records()
            .iter()
            .filter(|c| h.stored_at(&c.topic, c.partition, c.offset) != Some(&c.value))
            .map(|c| {
                format!(
                    "client {} read {:?} at {}-{}@{}; the log holds {:?}",
                    c.client,
                    c.value.as_deref().map(String::from_utf8_lossy),
                    c.topic,
                    c.partition,
                    c.offset,
                    h.stored_at(&c.topic, c.partition, c.offset)
                )
            })
            .collect();
        verdict(self.name(), world.now, problems)
    }
}

/// Every probe (a request of each kind after the last fault heals, and the scripted ones
/// after a coordinator or a leader moves) succeeds within its bound.
#[derive(Debug)]
pub struct Liveness;

impl Invariant for Liveness {
    fn name(&self) -> &'static str {
        "liveness"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let problems = world
            .probes
            .iter()
            .filter(|p| p.succeeded.is_none_or(|t| t > p.started + p.bound + SLACK))
            .map(|p| {
                format!(
                    "{} probe {:?} on client {} from {:.3}s did not succeed within {:?}; {} attempts, the last {:?}",
                    p.why,
                    p.work,
                    p.client,
                    p.started.as_secs_f64(),
                    p.bound,
                    p.attempts.len(),
                    p.attempts.iter().rev().take(3).map(|(c, v)| format!("{c} {v:?}")).collect::<Vec<_>>()
                )
            })
            .collect();
        verdict(self.name(), world.now, problems)
    }
}

/// A request issued next to a long poll on the same broker succeeds far sooner than the
/// poll's hold: fetches must not block the connection others use.
#[derive(Debug)]
pub struct NotBehindLongPoll;

impl Invariant for NotBehindLongPoll {
    fn name(&self) -> &'static str {
        "not-behind-long-poll"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for (id, r) in world.commands {
            let Some(bound) = r.latency_bound else { continue };
            let ok = matches!(r.outcomes.first(), Some((at, e))
                if *at <= r.issued + bound && super::harness::verdict(e, r.asked.as_ref()) == super::harness::Verdict::Success);
            if !ok {
                problems.push(format!(
                    "{id} {} had to succeed within {bound:?}; got {:?}",
                    r.what,
                    r.outcomes.first().map(|(at, e)| (*at - r.issued, super::scenario::outcome_kind(e)))
                ));
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// No connection carries both Fetch and any other API (the ApiVersions and SASL handshakes
/// that open every connection aside): a broker holds a Fetch for its max wait, and whatever shares its
/// connection waits behind it. Unlike [`NotBehindLongPoll`], this sees a mix even when no
/// timed request happened to be queued behind the poll.
#[derive(Debug)]
pub struct FetchesTravelApart;

impl Invariant for FetchesTravelApart {
    fn name(&self) -> &'static str {
        "fetches-travel-apart"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for (conn, apis) in world.connection_apis {
            let Some(fetch_at) = apis.get(&ApiKey::Fetch) else { continue };
            let others: Vec<String> = apis
                .iter()
                .filter(|(api, _)| {
                    !matches!(
                        api,
                        ApiKey::Fetch | ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
                    )
                })
                .map(|(api, at)| format!("{} at {:.6}s", api.name(), at.as_secs_f64()))
                .collect();
            if !others.is_empty() {
                problems.push(format!(
                    "connection {conn:#x} carried Fetch (first at {:.6}s) and {}",
                    fetch_at.as_secs_f64(),
                    others.join(", ")
                ));
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

// ---- the producer machine (records sent through `Client::send`) ----

/// Refused or failed because its producer failed for good on a broker error.
fn failed_for_good(e: &SendEntry) -> bool {
    let fatal = |s: &str| s.starts_with("fatal-broker ");
    e.refused.as_deref().is_some_and(fatal) || matches!(e.outcomes.first(), Some((_, Err(k))) if fatal(k))
}

/// Every record `Client::send` took (it returned a `SendId`) gets exactly one outcome in the
/// delivery reports, none is missing once the faults are over and the run has drained, and no
/// report names an id `send` never returned. A refused send (`SendRefused`) counts as
/// refused, not lost: it must get no outcome. At the end no producer counts a record as
/// outstanding.
#[derive(Debug)]
pub struct ProducerOneOutcome;

impl Invariant for ProducerOneOutcome {
    fn name(&self) -> &'static str {
        "producer-one-outcome"
    }
    fn machine(&self) -> &'static str {
        "producer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let h = world.history;
        let mut problems = Vec::new();
        for (key, e) in h.sends() {
            match (e.id, e.outcomes.len()) {
                (Some(_), 1) | (None, 0) => {}
                (Some(id), 0) => problems.push(format!(
                    "{key} (send {id:?} at {:.6}s to {}) has no outcome",
                    e.sent.as_secs_f64(),
                    e.topic
                )),
                (Some(id), n) => problems.push(format!("{key} (send {id:?}) has {n} outcomes: {:?}", e.outcomes)),
                (None, n) => problems.push(format!("{key} was refused yet has {n} outcomes: {:?}", e.outcomes)),
            }
        }
        for (at, what) in h.stray_deliveries() {
            problems.push(format!("a delivery at {:.6}s for {what}, which send never returned", at.as_secs_f64()));
        }
        for (client, p) in h.producers() {
            if p.outstanding_at_end > 0 {
                problems.push(format!(
                    "client {client}'s producer still counts {} records outstanding",
                    p.outstanding_at_end
                ));
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// A client's records to one partition: (client, topic, partition).
type Lane = (usize, String, i32);

/// The acked records of each lane, in send order.
fn acked_lanes(world: &World, include: impl Fn(&SendEntry) -> bool) -> BTreeMap<Lane, Vec<SendKey>> {
    let mut lanes: BTreeMap<Lane, Vec<SendKey>> = BTreeMap::new();
    for (key, e) in world.history.sends() {
        let Some((partition, _)) = e.ack() else { continue };
        if include(e) {
            lanes.entry((key.client, e.topic.clone(), partition)).or_default().push(*key);
        }
    }
    lanes
}

/// The acked offset holds the record (when the ack names an offset).
fn check_acked_offset(
    world: &World,
    key: SendKey,
    e: &SendEntry,
    partition: i32,
    offset: Option<i64>,
) -> Option<String> {
    let offset = offset?;
    match world.history.stored_at(&e.topic, partition, offset) {
        Some(Some(v)) if SendKey::parse(v) == Some(key) => None,
        Some(other) => Some(format!(
            "{key} acked at {}-{partition}@{offset}, which holds {:?}",
            e.topic,
            other.as_deref().map(|v| String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned())
        )),
        None => Some(format!("{key} acked at {}-{partition}@{offset}, which is not in the log", e.topic)),
    }
}

/// With idempotence, every acked record is in the log (below the high watermark, read
/// through the fake cluster's accessor) exactly once, at the offset its ack named; no record
/// of an idempotent producer, acked or not, is stored twice; and per client and partition
/// the acked records are stored in send order.
#[derive(Debug)]
pub struct ProducerIdempotentExactlyOnceInOrder;

impl Invariant for ProducerIdempotentExactlyOnceInOrder {
    fn name(&self) -> &'static str {
        "producer-idempotent-exactly-once-in-order"
    }
    fn machine(&self) -> &'static str {
        "producer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let h = world.history;
        let places = h.stored_send_places();
        let mut problems = Vec::new();
        for (key, e) in h.sends().iter().filter(|(_, e)| e.idempotent) {
            let copies = places.get(key).map_or(0, Vec::len);
            if copies > 1 {
                problems.push(format!("{key} is stored {copies} times: {:?}", places[key]));
            }
            let Some((partition, offset)) = e.ack() else { continue };
            if copies == 0 {
                problems.push(format!("{key} acked at {}-{partition}@{offset:?} is not in the log", e.topic));
                continue;
            }
            problems.extend(check_acked_offset(world, *key, e, partition, offset));
        }
        for ((client, topic, partition), lane) in acked_lanes(world, |e| e.idempotent) {
            // Where each acked record is stored in this partition, in send order.
            let stored: Vec<(SendKey, i64)> = lane
                .iter()
                .filter_map(|k| {
                    let at = places.get(k)?.iter().find(|(t, p, _)| *t == topic && *p == partition)?;
                    Some((*k, at.2))
                })
                .collect();
            for w in stored.windows(2) {
                if w[1].1 <= w[0].1 {
                    problems.push(format!(
                        "client {client} sent {} before {} to {topic}-{partition}, stored at @{} and @{}",
                        w[0].0, w[1].0, w[0].1, w[1].1
                    ));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Without idempotence, every acked record is in the log at least once, and at the offset its
/// ack named. Left out: acks=1 records when followers lag ([`History::acks1_may_be_lost`]),
/// since a leader change, clean or not, truncates what the followers had not copied yet,
/// including records the old leader acked. (The scenarios draw clean elections only; with an
/// unclean one acks=all records could be lost too, and this check would need to leave those
/// out as well.)
#[derive(Debug)]
pub struct ProducerAtLeastOnce;

impl Invariant for ProducerAtLeastOnce {
    fn name(&self) -> &'static str {
        "producer-at-least-once"
    }
    fn machine(&self) -> &'static str {
        "producer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let h = world.history;
        let places = h.stored_send_places();
        let mut problems = Vec::new();
        for (key, e) in h.sends().iter().filter(|(_, e)| !e.idempotent) {
            let Some((partition, offset)) = e.ack() else { continue };
            if e.acks == Acks::Leader && h.acks1_may_be_lost {
                continue;
            }
            if !places.contains_key(key) {
                problems.push(format!("{key} acked at {}-{partition}@{offset:?} is not in the log", e.topic));
                continue;
            }
            problems.extend(check_acked_offset(world, *key, e, partition, offset));
        }
        verdict(self.name(), world.now, problems)
    }
}

/// No producer ever holds more than `buffer.memory` bytes of records (sampled after every
/// step), and a producer with nothing outstanding at the end holds nothing.
#[derive(Debug)]
pub struct ProducerBufferBound;

impl Invariant for ProducerBufferBound {
    fn name(&self) -> &'static str {
        "producer-buffer-bound"
    }
    fn machine(&self) -> &'static str {
        "producer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for (client, p) in world.history.producers() {
            if p.peak > p.buffer_memory {
                problems.push(format!(
                    "client {client}'s producer held {} bytes at {:.6}s; buffer.memory is {}",
                    p.peak,
                    p.peak_at.as_secs_f64(),
                    p.buffer_memory
                ));
            }
            if p.outstanding_at_end == 0 && p.buffered_at_end != 0 {
                problems.push(format!(
                    "client {client}'s producer has nothing outstanding but still holds {} bytes",
                    p.buffered_at_end
                ));
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Every record's outcome arrives by its due time: its send, plus `max.block.ms` when its
/// topic's metadata was unknown (the record waits for it first, as a Java `send` blocks),
/// plus `delivery.timeout.ms`, plus [`SLACK`] (the virtual clock is exact and the producer's
/// expiry timer fires at the deadline itself; the slack is one millisecond tick). The
/// simulator's clock never jumps, so no record is excused.
#[derive(Debug)]
pub struct ProducerDeliveryDeadline;

impl Invariant for ProducerDeliveryDeadline {
    fn name(&self) -> &'static str {
        "producer-delivery-deadline"
    }
    fn machine(&self) -> &'static str {
        "producer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for (key, e) in world.history.sends() {
            if let Some((at, outcome)) = e.outcomes.first() {
                if *at > e.deadline + SLACK {
                    problems.push(format!(
                        "{key} sent at {:.6}s got {outcome:?} at {:.6}s, {:?} after it was due",
                        e.sent.as_secs_f64(),
                        at.as_secs_f64(),
                        *at - e.deadline
                    ));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Once the faults are over, the producer works again: records sent then, to partitions with
/// a leader, are all acked. A producer that stays stuck after a fault (a partition refused
/// forever, a producer id never recovered) breaks this. Excused: a producer that failed for
/// good on a broker error no retry fixes (`fatal-broker ..`: an injected BROKER_NOT_AVAILABLE
/// answering InitProducerId, say), which Java's producer treats as fatal too; it refuses
/// every send after that by design.
#[derive(Debug)]
pub struct ProducerRecovers;

impl Invariant for ProducerRecovers {
    fn name(&self) -> &'static str {
        "producer-recovers"
    }
    fn machine(&self) -> &'static str {
        "producer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let problems = world
            .history
            .sends()
            .iter()
            .filter(|(_, e)| e.must_ack && e.ack().is_none() && !failed_for_good(e))
            .map(|(key, e)| {
                format!(
                    "{key} sent at {:.6}s to {}{} after the faults: {}",
                    e.sent.as_secs_f64(),
                    e.topic,
                    e.partition.map_or(String::new(), |p| format!("-{p}")),
                    match (&e.refused, e.outcomes.first()) {
                        (Some(r), _) => format!("refused ({r})"),
                        (None, Some((_, o))) => format!("{o:?}"),
                        (None, None) => "no outcome".into(),
                    }
                )
            })
            .collect();
        verdict(self.name(), world.now, problems)
    }
}
