//! Consumer groups in the simulator: members drawn from a seed (either group protocol, the
//! classic assignors, both isolation levels, small buffers and poll limits), what they do
//! over a run (subscribe, stall, leave, crash, join late), transactions written beside the
//! producers' records, the calm episode at the end (a handover, a crash, catching up), and
//! the invariants that judge what the members handed out.
//!
//! The harness polls every subscribed, live, unstalled member after each step, as an
//! application's poll loop would, and records each record handed out (`Delivery`); each
//! rebalance; and the coordinator's committed offsets whenever an OffsetCommit reaches it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sansa::consumer::{ConsumerConfig, GroupProtocol, IsolationLevel, OffsetReset};
use sansa::rand::Rng;

use super::harness::{Action, ClientConfig, Sim, SimConfig, SimError, Violation, Work};
use super::history::{ConsumerHistory, History};
use super::invariants::{Invariant, World, SLACK};
use super::netem::LinkProfile;
use super::scenario::MAX_STEPS;
use crate::fake_cluster::Replication;

/// The group every member of a run joins.
pub const GROUP: &str = "sim-group";

/// How often a member with nothing buffered polls anyway (an application's poll loop).
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// The session timeout of KIP-848 members: the fake coordinator's.
pub const CONSUMER_PROTOCOL_SESSION: Duration = Duration::from_secs(45);

/// One consumer client: its settings and what the harness does for it.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Its settings (always with [`GROUP`]).
    pub config: ConsumerConfig,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// Revocations wait for the harness, which commits what was handed out, then
    /// acknowledges.
    pub listener: bool,
}

impl ConsumerSpec {
    /// Whether it commits what it handed out before giving partitions up.
    pub fn commits_on_revoke(&self) -> bool {
        self.config.enable_auto_commit || self.listener
    }

    /// How long after a crash its partitions may take to move: the session timeout (the
    /// coordinator's own for KIP-848), then a heartbeat of each survivor and a rebalance.
    pub fn crash_bound(&self) -> Duration {
        // KIP-848's coordinator sets both the session and the heartbeat interval (5 s).
        let (session, heartbeat) = match self.config.group_protocol {
            GroupProtocol::Consumer => (CONSUMER_PROTOCOL_SESSION, Duration::from_secs(5)),
            _ => (self.config.session_timeout, self.config.heartbeat_interval),
        };
        session + heartbeat * 2 + Duration::from_secs(5)
    }
}

/// What a member does, scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerOp {
    /// Subscribes (again).
    Subscribe,
    /// Leaves the group.
    Unsubscribe,
    /// Stops polling for this long.
    Stall(Duration),
    /// The process dies: no leave, its connections drop.
    Crash,
}

fn ms(rng: &mut Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rng.below(hi - lo + 1))
}

const ASSIGNORS: &[&str] = &["range", "roundrobin", "sticky", "cooperative-sticky"];

/// One member's settings, drawn.
fn consumer_spec(rng: &mut Rng, protocol: GroupProtocol, assignor: &str, topics: &[String]) -> ConsumerSpec {
    let session = ms(rng, 6_000, 15_000);
    let heartbeat = ms(rng, 1_000, 3_000);
    let mut c = ConsumerConfig::default()
        .with_group_id(GROUP)
        .with_auto_offset_reset(OffsetReset::Earliest)
        .with_group_protocol(protocol)
        .with_assignors(&[assignor])
        .with_session_timeout(session, heartbeat)
        .with_max_poll_interval(ms(rng, 15_000, 40_000))
        .with_fetch_max_wait(ms(rng, 100, 500))
        .with_max_poll_records(if rng.below(2) == 0 { 1 + rng.below(8) as usize } else { 500 });
    if rng.below(2) == 0 {
        c = c.with_isolation_level(IsolationLevel::ReadCommitted);
    }
    if rng.below(3) == 0 {
        c = c.with_fetch_buffer_memory(2_000 + rng.below(20_000) as usize);
        c.max_partition_fetch_bytes = 500 + rng.below(4_000) as i32;
    }
    c.enable_auto_commit = rng.below(4) != 0;
    c.auto_commit_interval = ms(rng, 1_000, 5_000);
    c.default_api_timeout = Duration::from_secs(30);
    let listener = rng.below(3) == 0;
    ConsumerSpec { config: c, topics: topics.to_vec(), listener }
}

/// Consumer clients, their lives and transactions, drawn from a stream of their own (so the
/// rest of the scenario is the same either way); appended after the other clients. Returns
/// how many were added.
pub fn consumer_workload(
    seed: u64,
    config: &mut SimConfig,
    horizon: u64,
    faults_end: Duration,
    actions: &mut Vec<(Duration, Action)>,
) -> usize {
    let mut rng = Rng::stream(seed, "sim-consumers");
    if rng.below(3) == 0 {
        return 0;
    }
    let protocol = if rng.below(2) == 0 { GroupProtocol::Classic } else { GroupProtocol::Consumer };
    let assignor = ASSIGNORS[rng.below(ASSIGNORS.len() as u64) as usize];
    let topics: Vec<String> = config.topics.iter().map(|(t, _)| t.clone()).collect();
    let members = 1 + rng.below(3) as usize;
    let end = faults_end.as_millis() as u64;
    let first = config.clients.len();
    for i in 0..members {
        let spec = consumer_spec(&mut rng, protocol, assignor, &topics);
        let mut cc =
            ClientConfig { bootstrap: vec![1 + rng.below(config.brokers as u64) as i32], ..ClientConfig::default() };
        cc.request_timeout = Duration::from_secs(5);
        cc.reconnect_backoff = (Duration::from_millis(50), Duration::from_millis(1_000));
        cc.metadata_max_age = Duration::from_secs(30);
        cc.consumer = Some(spec);
        let client = first + i;
        config.clients.push(cc);
        actions.push((ms(&mut rng, 0, horizon / 3), Action::Consumer { client, op: ConsumerOp::Subscribe }));
        for _ in 0..rng.below(3) {
            let at = ms(&mut rng, 0, end);
            let op = match rng.below(4) {
                0 | 1 => ConsumerOp::Stall(ms(&mut rng, 1_000, 50_000)),
                2 => {
                    actions.push((at, Action::Consumer { client, op: ConsumerOp::Unsubscribe }));
                    let back = at + ms(&mut rng, 100, 10_000);
                    actions.push((back, Action::Consumer { client, op: ConsumerOp::Subscribe }));
                    continue;
                }
                _ => ConsumerOp::Crash,
            };
            let crash = op == ConsumerOp::Crash;
            actions.push((at, Action::Consumer { client, op }));
            if crash {
                break;
            }
        }
    }
    // Transactions beside the producers' records: committed and aborted, so that logs hold
    // control batches and aborted records. Only with instant replication: an election that
    // truncates could split a transaction from its marker, which only a transaction
    // coordinator would repair.
    if config.replication == Replication::Instant {
        for _ in 0..rng.below(6) {
            let at = ms(&mut rng, 0, horizon);
            actions.push((
                at,
                Action::Txn { pick: rng.next_u64(), count: 1 + rng.below(4) as u32, commit: rng.below(2) == 0 },
            ));
        }
    }
    members
}

/// Runs until every group's members caught up with the log end (each subscribed partition
/// owned by a live member whose position is the end), or `limit` passed. Returns whether
/// they did.
fn catch_up(sim: &mut Sim, limit: Duration) -> Result<bool, SimError> {
    let end = sim.now() + limit;
    loop {
        if sim.consumers_caught_up() {
            return Ok(true);
        }
        if sim.now() >= end {
            return Ok(false);
        }
        let next = sim.now() + Duration::from_millis(250);
        sim.drive(next)?;
    }
}

/// The calm episode at the end of a run with consumers: links calm, every member polling;
/// records produced to every subscribed partition (a committed and an aborted transaction
/// last on some, so that a control batch ends a fetch); once the group caught up, a member
/// leaves or one joins (a clean handover: the next owner starts where the last one
/// stopped); then one crashes (its partitions move within the session timeout); then the
/// group catches up again and its settled assignment is recorded.
pub fn consumer_episodes(sim: &mut Sim) -> Result<(), SimError> {
    if !sim.has_consumers() {
        return Ok(());
    }
    if !sim.faults_over() {
        sim.end_faults();
    }
    for b in sim.cluster().broker_ids() {
        sim.net_mut().set_profile(b, Some(LinkProfile::default()));
    }
    sim.unstall_consumers();
    let live = sim.live_members();
    if live.is_empty() {
        sim.settle_consumers(false);
        return Ok(());
    }
    // Members the coordinator expired while they were cut off learn it at their next
    // heartbeat once the faults healed (a heartbeat interval, a reconnect, a request
    // timeout), and rebalances the faults left half-done finish: only then may no two
    // members own a partition at once.
    let heartbeat = live.iter().filter_map(|c| sim.consumer_spec(*c)).map(|s| s.config.heartbeat_interval).max();
    let until = sim.faults_ended_at().unwrap_or_default() + heartbeat.unwrap_or_default() * 2 + Duration::from_secs(10);
    if until > sim.now() {
        sim.drive(until)?;
    }
    catch_up(sim, Duration::from_secs(60))?;
    sim.set_calm(true);
    fill(sim)?;
    catch_up(sim, Duration::from_secs(30))?;

    // A clean handover: the group has caught up, auto-commits may lag behind; a member
    // leaves (or a new one joins) and whoever takes each partition starts where the last
    // owner stopped.
    let pick = sim.below(4);
    let live = sim.live_members();
    if pick == 0 || live.len() < 2 {
        let spec = sim.consumer_spec(live[0]).cloned().expect("a member");
        let client = sim.add_consumer(spec);
        sim.consumer_op(client, ConsumerOp::Subscribe);
    } else {
        let leaving = live[sim.below(live.len() as u64) as usize];
        sim.consumer_op(leaving, ConsumerOp::Unsubscribe);
    }
    fill(sim)?;
    catch_up(sim, Duration::from_secs(60))?;

    // A crash: its partitions move within the session timeout.
    let live = sim.live_members();
    if live.len() >= 2 {
        let victim = live[sim.below(live.len() as u64) as usize];
        sim.crash_member(victim, true);
        fill(sim)?;
        let bound = sim.consumer_spec(victim).map_or(Duration::ZERO, |s| s.crash_bound());
        catch_up(sim, bound + Duration::from_secs(10))?;
    }
    fill(sim)?;
    let caught = catch_up(sim, Duration::from_secs(60))?;
    sim.set_calm(false);
    sim.settle_consumers(caught);
    Ok(())
}

/// A record to every subscribed partition (raw produce by client 0, acks=all) and, with
/// instant replication, a committed and an aborted transaction last on one partition.
fn fill(sim: &mut Sim) -> Result<(), SimError> {
    let c = sim.cluster();
    let mut picks = Vec::new();
    let mut index = 0u64;
    for t in c.topic_names() {
        for p in 0..c.partition_count(&t).unwrap_or(0) as i32 {
            if c.leader(&t, p).is_some_and(|l| l >= 0) {
                picks.push(index);
            }
            index += 1;
        }
    }
    let producer = sim.live_clients().into_iter().next();
    if let Some(client) = producer {
        for pick in &picks {
            sim.issue_on(client, Work::Produce { pick: *pick });
        }
        sim.drive_bounded(MAX_STEPS)?;
    }
    if sim.transactions_allowed() && !picks.is_empty() {
        let pick = picks[sim.below(picks.len() as u64) as usize];
        let now = sim.now();
        sim.at(now, Action::Txn { pick, count: 2, commit: true });
        sim.at(now, Action::Txn { pick, count: 1, commit: false });
        sim.drive_bounded(MAX_STEPS)?;
    }
    Ok(())
}

// ---- invariants ----------------------------------------------------------------------------

fn verdict(invariant: &'static str, at: Duration, problems: Vec<String>) -> Result<(), Violation> {
    let Some(first) = problems.first() else { return Ok(()) };
    let detail = match problems.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more)", n - 1),
    };
    Err(Violation { invariant, at, detail })
}

/// The offsets of a partition's log a member may be handed, ascending: every data record,
/// less the aborted ones under read_committed.
fn visible(h: &History, topic: &str, partition: i32, read_committed: bool) -> Vec<i64> {
    let aborted = &h.consumer.aborted;
    h.logs()
        .get(&(topic.to_string(), partition))
        .map(|log| {
            log.iter()
                .map(|(o, _)| *o)
                .filter(|o| !read_committed || !aborted.contains(&(topic.to_string(), partition, *o)))
                .collect()
        })
        .unwrap_or_default()
}

/// Every record in a subscribed partition's log (below the high watermark, aborted ones
/// aside) was handed to some member of the group, once the group settled with live members.
#[derive(Debug)]
pub struct ConsumerAtLeastOnce;

impl Invariant for ConsumerAtLeastOnce {
    fn name(&self) -> &'static str {
        "consumer-at-least-once"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let h = world.history;
        let c = &h.consumer;
        let mut problems = Vec::new();
        for (group, members) in &c.settled {
            if members.is_empty() {
                continue;
            }
            let clients: BTreeSet<usize> =
                c.consumers.iter().filter(|(_, i)| &i.group == group).map(|(k, _)| *k).collect();
            let got: BTreeSet<(&str, i32, i64)> = c
                .deliveries
                .iter()
                .filter(|d| clients.contains(&d.client))
                .map(|d| (d.topic.as_str(), d.partition, d.offset))
                .collect();
            for (topic, partition) in c.subscribed.get(group).into_iter().flatten() {
                let missing: Vec<i64> = visible(h, topic, *partition, true)
                    .into_iter()
                    .filter(|o| !got.contains(&(topic.as_str(), *partition, *o)))
                    .collect();
                if let Some(first) = missing.first() {
                    problems.push(format!(
                        "group {group}: {topic}-{partition}@{first} was never handed out ({} records missing: {:?})",
                        missing.len(),
                        &missing[..missing.len().min(8)]
                    ));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Within one ownership of a partition, a member hands records out in log order without a
/// gap: each is the next record it may see after the one before (control batches and, under
/// read_committed, aborted records skipped).
#[derive(Debug)]
pub struct ConsumerInOrderNoGap;

impl Invariant for ConsumerInOrderNoGap {
    fn name(&self) -> &'static str {
        "consumer-in-order-no-gap"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let h = world.history;
        let c = &h.consumer;
        let mut last: BTreeMap<(usize, &str, i32), (u64, i64)> = BTreeMap::new();
        let mut logs: BTreeMap<(&str, i32, bool), Vec<i64>> = BTreeMap::new();
        let mut problems = Vec::new();
        for d in &c.deliveries {
            let rc = c.consumers.get(&d.client).is_some_and(|i| i.read_committed);
            let key = (d.client, d.topic.as_str(), d.partition);
            if let Some((session, prev)) = last.insert(key, (d.session, d.offset)) {
                if session != d.session {
                    continue;
                }
                let log = logs
                    .entry((d.topic.as_str(), d.partition, rc))
                    .or_insert_with(|| visible(h, &d.topic, d.partition, rc));
                let next = log.get(log.partition_point(|o| *o <= prev)).copied();
                if next != Some(d.offset) {
                    problems.push(format!(
                        "client {} handed out {}-{}@{} after @{prev} at {:.6}s; the next record it may see is {next:?}",
                        d.client,
                        d.topic,
                        d.partition,
                        d.offset,
                        d.at.as_secs_f64()
                    ));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// A read_committed member never hands out a record of an aborted transaction.
#[derive(Debug)]
pub struct ConsumerReadCommitted;

impl Invariant for ConsumerReadCommitted {
    fn name(&self) -> &'static str {
        "consumer-read-committed"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let c = &world.history.consumer;
        let problems = c
            .deliveries
            .iter()
            .filter(|d| c.consumers.get(&d.client).is_some_and(|i| i.read_committed))
            .filter(|d| c.aborted.contains(&(d.topic.clone(), d.partition, d.offset)))
            .map(|d| {
                format!(
                    "client {} (read_committed) handed out aborted {}-{}@{} at {:.6}s",
                    d.client,
                    d.topic,
                    d.partition,
                    d.offset,
                    d.at.as_secs_f64()
                )
            })
            .collect();
        verdict(self.name(), world.now, problems)
    }
}

/// A group's committed offset of a partition never goes backwards (the workload never
/// seeks).
#[derive(Debug)]
pub struct ConsumerCommittedMonotonic;

impl Invariant for ConsumerCommittedMonotonic {
    fn name(&self) -> &'static str {
        "consumer-committed-monotonic"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let mut problems = Vec::new();
        for ((group, topic, partition), series) in &world.history.consumer.committed {
            for w in series.windows(2) {
                if w[1].1 < w[0].1 {
                    problems.push(format!(
                        "group {group} committed {topic}-{partition}@{} at {:.6}s after @{} at {:.6}s",
                        w[1].1,
                        w[1].0.as_secs_f64(),
                        w[0].1,
                        w[0].0.as_secs_f64()
                    ));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Once the group settled at the end, its live members' assignments are disjoint and cover
/// every subscribed partition; and they caught up with the log end.
#[derive(Debug)]
pub struct ConsumerGroupSettles;

impl Invariant for ConsumerGroupSettles {
    fn name(&self) -> &'static str {
        "consumer-group-settles"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let c = &world.history.consumer;
        let mut problems: Vec<String> = c.behind.clone();
        for (group, members) in &c.settled {
            if members.is_empty() {
                continue;
            }
            let mut owner: BTreeMap<&(String, i32), usize> = BTreeMap::new();
            for (client, owned) in members {
                for tp in owned {
                    if let Some(other) = owner.insert(tp, *client) {
                        problems.push(format!("group {group}: {}-{} owned by {other} and {client}", tp.0, tp.1));
                    }
                }
            }
            for tp in c.subscribed.get(group).into_iter().flatten() {
                if !owner.contains_key(tp) {
                    problems.push(format!("group {group}: {}-{} owned by no live member: {members:?}", tp.0, tp.1));
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// A crashed member's partitions are assigned to a live member within its bound (session
/// timeout, then a rebalance), for crashes while the network is calm.
#[derive(Debug)]
pub struct ConsumerCrashMoves;

impl Invariant for ConsumerCrashMoves {
    fn name(&self) -> &'static str {
        "consumer-crash-moves"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let c = &world.history.consumer;
        let mut problems = Vec::new();
        for crash in &c.crashes {
            let Some(bound) = crash.bound else { continue };
            for tp in &crash.owned {
                let moved = c
                    .assigned
                    .iter()
                    .find(|(at, client, p)| *at >= crash.at && *client != crash.client && p == tp)
                    .map(|(at, _, _)| *at);
                match moved {
                    Some(at) if at <= crash.at + bound + SLACK => {}
                    other => problems.push(format!(
                        "client {} crashed at {:.6}s owning {}-{}; reassigned {:?} later (bound {bound:?})",
                        crash.client,
                        crash.at.as_secs_f64(),
                        tp.0,
                        tp.1,
                        other.map(|at| at - crash.at)
                    )),
                }
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// No member ever holds more fetched data than `fetch.buffer.memory` plus one batch the
/// broker returns whole (bounded here by `max.partition.fetch.bytes`).
#[derive(Debug)]
pub struct ConsumerPrefetchBound;

impl Invariant for ConsumerPrefetchBound {
    fn name(&self) -> &'static str {
        "consumer-prefetch-bound"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let problems = world
            .history
            .consumer
            .consumers
            .iter()
            .filter(|(_, i)| i.peak > i.buffer_memory + i.slack)
            .map(|(client, i)| {
                format!(
                    "client {client} buffered {} bytes at {:.6}s; fetch.buffer.memory is {} (+{} for one batch)",
                    i.peak,
                    i.peak_at.as_secs_f64(),
                    i.buffer_memory,
                    i.slack
                )
            })
            .collect();
        verdict(self.name(), world.now, problems)
    }
}

/// In a calm handover (the old owner committed what it handed out when the partition was
/// revoked), the next owner starts after the last record the old one handed out: nothing is
/// handed out twice.
#[derive(Debug)]
pub struct ConsumerCleanHandover;

impl Invariant for ConsumerCleanHandover {
    fn name(&self) -> &'static str {
        "consumer-clean-handover"
    }
    fn machine(&self) -> &'static str {
        "consumer"
    }
    fn check(&self, world: &World) -> Result<(), Violation> {
        let c = &world.history.consumer;
        let mut problems = Vec::new();
        for h in c.handovers.iter().filter(|h| h.checked) {
            let Some(last) = h.last else { continue };
            let next = c.deliveries.iter().find(|d| d.at > h.at && d.topic == h.topic && d.partition == h.partition);
            if let Some(d) = next.filter(|d| d.offset <= last) {
                problems.push(format!(
                    "client {} gave {}-{} up at {:.6}s after handing out @{last}; client {} then handed out @{} at {:.6}s",
                    h.client,
                    h.topic,
                    h.partition,
                    h.at.as_secs_f64(),
                    d.client,
                    d.offset,
                    d.at.as_secs_f64()
                ));
            }
        }
        verdict(self.name(), world.now, problems)
    }
}

/// Adds the consumer's invariants to `registry`.
pub fn register(registry: super::invariants::Registry) -> super::invariants::Registry {
    registry
        .with(ConsumerAtLeastOnce)
        .with(ConsumerInOrderNoGap)
        .with(ConsumerReadCommitted)
        .with(ConsumerCommittedMonotonic)
        .with(ConsumerGroupSettles)
        .with(ConsumerCrashMoves)
        .with(ConsumerPrefetchBound)
        .with(ConsumerCleanHandover)
}

/// A summary of what the members did, for reports.
pub fn summary(c: &ConsumerHistory) -> String {
    format!(
        "{} members, {} deliveries, {} handovers, {} crashes",
        c.consumers.len(),
        c.deliveries.len(),
        c.handovers.len(),
        c.crashes.len()
    )
}
