//! Scenarios drawn from a seed (a cluster, a client configuration, a network profile, a
//! workload and a fault schedule), running them, and the invariants checked afterwards.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use sansa::protocol::{ApiKey, BrokerId, ErrorCode};
use sansa::rand::Rng;
use sansa::Event;

use super::harness::{Action, Sim, SimConfig, SimError, Violation, Work};
use super::netem::{DropKind, LinkProfile};
use crate::fake_cluster::{Fault, FaultAction};

/// Steps allowed per phase of a run before it counts as stuck.
pub const MAX_STEPS: u64 = 2_000_000;

/// What a seed expands to.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Cluster, client and network.
    pub config: SimConfig,
    /// The workload and the faults, by time.
    pub actions: Vec<(Duration, Action)>,
    /// When every fault ends.
    pub faults_end: Duration,
}

fn ms(rng: &mut Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rng.below(hi - lo + 1))
}

fn one_of<T: Clone>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize].clone()
}

impl Scenario {
    /// The scenario of `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x5ce7_a210_0000_0000);
        let brokers = 3 + rng.below(3) as usize;
        let topics = (0..1 + rng.below(3)).map(|i| (format!("t{i}"), 1 + rng.below(4) as i32)).collect();
        let bootstrap = (0..1 + rng.below(2)).map(|_| 1 + rng.below(brokers as u64) as i32).collect();
        let initial = ms(&mut rng, 20, 200);
        let config = SimConfig {
            seed,
            brokers,
            topics,
            bootstrap,
            profile: LinkProfile::random(&mut rng),
            request_timeout: one_of(
                &mut rng,
                &[Duration::from_secs(2), Duration::from_secs(5), Duration::from_secs(10)],
            ),
            connection_setup_timeout: ms(&mut rng, 500, 3_000),
            reconnect_backoff: (initial, initial + ms(&mut rng, 200, 2_000)),
            retry_backoff: (ms(&mut rng, 50, 200), Duration::from_secs(1)),
            metadata_max_age: ms(&mut rng, 5_000, 60_000),
        };
        let faults_end = ms(&mut rng, 5_000, 40_000);
        let mut actions = Vec::new();
        let commands = 10 + rng.below(31);
        let horizon = faults_end.as_millis() as u64 + 5_000;
        let mut created = 0;
        for _ in 0..commands {
            let at = ms(&mut rng, 0, horizon);
            let b = 1 + rng.below(brokers as u64) as i32;
            let pick = rng.next_u64();
            let work = match rng.below(20) {
                0..=2 => Work::Metadata,
                3 => Work::RefreshMetadata,
                4 => Work::CheckVersion(if rng.below(2) == 0 { None } else { Some(b) }),
                5..=6 => Work::ToBroker(b),
                7..=8 => {
                    created += 1;
                    Work::CreateTopic { name: format!("new{created}"), partitions: 1 + rng.below(3) as i32 }
                }
                9..=12 => Work::Produce { pick },
                13..=14 => Work::Fetch { pick },
                15..=16 => Work::ListOffsets { pick },
                _ => Work::Coordinator { group: format!("g{}", rng.below(4)) },
            };
            actions.push((at, Action::Issue(work)));
        }
        let faults = rng.below(12);
        let end = faults_end.as_millis() as u64;
        for _ in 0..faults {
            let at = ms(&mut rng, 0, end);
            let b = 1 + rng.below(brokers as u64) as i32;
            let lasting = ms(&mut rng, 200, 10_000);
            let until = (at + lasting).min(faults_end);
            let api = one_of(
                &mut rng,
                &[
                    ApiKey::Metadata,
                    ApiKey::Produce,
                    ApiKey::Fetch,
                    ApiKey::ListOffsets,
                    ApiKey::FindCoordinator,
                    ApiKey::CreateTopics,
                    ApiKey::ApiVersions,
                ],
            );
            let scoped = |f: Fault, rng: &mut Rng| {
                let f = if rng.below(2) == 0 { f.on_api(api) } else { f };
                let f = if rng.below(2) == 0 { f.on_broker(b) } else { f };
                f.times(1 + rng.below(4) as u32)
            };
            match rng.below(11) {
                0 => {
                    actions.push((at, Action::Partition(b)));
                    actions.push((until, Action::Heal(b)));
                }
                1 => {
                    actions.push((at, Action::StopBroker(b)));
                    actions.push((until, Action::StartBroker(b)));
                }
                2 => actions.push((at, Action::MoveLeader { pick: rng.next_u64() })),
                3 => actions.push((at, Action::Offline { pick: rng.next_u64() })),
                4 | 5 => {
                    let code = one_of(
                        &mut rng,
                        &[
                            ErrorCode::NotLeaderOrFollower,
                            ErrorCode::LeaderNotAvailable,
                            ErrorCode::CoordinatorNotAvailable,
                            ErrorCode::NotCoordinator,
                            ErrorCode::RequestTimedOut,
                            ErrorCode::UnknownServerError,
                            ErrorCode::NotController,
                            ErrorCode::BrokerNotAvailable,
                        ],
                    );
                    actions.push((at, Action::Inject(scoped(Fault::error(code), &mut rng))));
                }
                6 => {
                    let d = ms(&mut rng, 10, 5_000);
                    actions.push((at, Action::Inject(scoped(Fault::new(FaultAction::Delay(d)), &mut rng))));
                }
                7 => {
                    let action = one_of(
                        &mut rng,
                        &[
                            FaultAction::Swallow,
                            FaultAction::Disconnect,
                            FaultAction::Throttle(Duration::from_millis(100)),
                        ],
                    );
                    actions.push((at, Action::Inject(scoped(Fault::new(action), &mut rng))));
                }
                8 | 9 => {
                    let kind = if rng.below(2) == 0 { DropKind::BrokerClose } else { DropKind::Reset };
                    actions.push((at, Action::Drop { pick: rng.next_u64(), kind }));
                }
                _ => {
                    let profile = LinkProfile {
                        base: ms(&mut rng, 5, 200),
                        jitter: ms(&mut rng, 1, 300),
                        spike_one_in: 4,
                        spike: ms(&mut rng, 100, 2_000),
                        max_chunks: 8,
                        chunk_gap: ms(&mut rng, 1, 100),
                    };
                    actions.push((at, Action::Profile { broker: b, profile: Some(profile) }));
                    actions.push((until, Action::Profile { broker: b, profile: None }));
                }
            }
        }
        actions.push((faults_end, Action::EndFaults));
        // Stable order by time; same-time actions keep their drawing order.
        actions.sort_by_key(|(t, _)| *t);
        Scenario { seed, config, actions, faults_end }
    }
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The trace hash.
    pub trace_hash: u64,
    /// Steps taken.
    pub steps: u64,
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// Commands issued.
    pub commands: usize,
    /// Outcomes by kind (`ok 0`, `timeout`, ...).
    pub outcomes: BTreeMap<String, usize>,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// Why the run stopped early, if it did.
    pub error: Option<SimError>,
    /// The last events of the trace.
    pub trace_tail: String,
}

impl RunReport {
    /// Whether anything went wrong.
    pub fn failed(&self) -> bool {
        self.error.is_some() || !self.violations.is_empty()
    }

    /// The failure report: seed, what broke, the end of the trace, how to replay.
    pub fn failure_text(&self) -> String {
        let mut s = format!("seed {} FAILED\n", self.seed);
        if let Some(e) = &self.error {
            let _ = writeln!(s, "  {e}");
        }
        for v in self.violations.iter().take(10) {
            let _ = writeln!(s, "  violated {v}");
        }
        if self.violations.len() > 10 {
            let _ = writeln!(s, "  ... and {} more", self.violations.len() - 10);
        }
        let _ = writeln!(s, "trace tail:\n{}", self.trace_tail);
        let _ = writeln!(s, "replay: cargo run --release -p sansa-conformance --bin sim -- --seed {}", self.seed);
        s
    }
}

/// Runs the scenario of `seed` and checks every invariant.
pub fn run_seed(seed: u64) -> (Sim, RunReport) {
    let scenario = Scenario::from_seed(seed);
    run_scenario(&scenario)
}

/// Runs `scenario`: the workload under faults until every command has an outcome and the
/// faults have ended, then metadata convergence; then checks the invariants.
pub fn run_scenario(scenario: &Scenario) -> (Sim, RunReport) {
    let mut sim = Sim::new(&scenario.config);
    for (at, a) in &scenario.actions {
        sim.at(*at, a.clone());
    }
    let mut error = sim.drive_bounded(MAX_STEPS).err();
    if error.is_none() {
        if let Err(e) = converge(&mut sim) {
            error = Some(e);
        }
    }
    check_outcomes(&mut sim);
    let mut outcomes = BTreeMap::new();
    for r in sim.requests().values() {
        for (_, e) in &r.outcomes {
            *outcomes.entry(outcome_kind(e)).or_insert(0) += 1;
        }
    }
    let report = RunReport {
        seed: scenario.seed,
        trace_hash: sim.trace_hash(),
        steps: sim.steps(),
        virtual_time: sim.now(),
        commands: sim.requests().len(),
        outcomes,
        violations: sim.violations().to_vec(),
        error,
        trace_tail: sim.trace().tail(40),
    };
    (sim, report)
}

/// A short name for an outcome.
pub fn outcome_kind(e: &Event) -> String {
    match e {
        Event::Response { result: Ok(r), .. } => {
            format!("ok {}", r.body.as_ref().and_then(|b| b.error_code()).map_or(0, |c| c.code()))
        }
        Event::Metadata { result: Ok(_), .. } | Event::Versions { result: Ok(_), .. } => "ok 0".into(),
        Event::Response { result: Err(e), .. }
        | Event::Metadata { result: Err(e), .. }
        | Event::Versions { result: Err(e), .. } => super::harness::error_kind(e).into(),
        _ => "other".into(),
    }
}

/// Invariant (b): once faults are over, a metadata refresh brings the client's view to the
/// cluster's truth. Retries a failed refresh a few times (the network is healthy by then, so
/// failures point at the client).
pub fn converge(sim: &mut Sim) -> Result<(), SimError> {
    if !sim.faults_over() {
        sim.end_faults();
    }
    let mut last = String::new();
    for _ in 0..3 {
        let id = sim.issue(Work::RefreshMetadata);
        sim.drive_bounded(MAX_STEPS)?;
        let ok = matches!(sim.record(id).and_then(|r| r.outcome()), Some(Event::Metadata { result: Ok(_), .. }));
        if ok {
            match metadata_diff(sim) {
                None => return Ok(()),
                Some(d) => last = d,
            }
        } else {
            last = format!("refresh #{} failed: {:?}", id.0, sim.record(id).and_then(|r| r.outcome()));
        }
        let until = sim.now() + Duration::from_secs(1);
        sim.drive(until)?;
    }
    sim.violate("metadata-converges", last);
    Ok(())
}

/// How the client's metadata differs from the cluster, if it does.
pub fn metadata_diff(sim: &Sim) -> Option<String> {
    let md = sim.client().metadata();
    let cluster = sim.cluster();
    let want: Vec<(i32, String)> =
        cluster.live_broker_ids().into_iter().map(|id| (id, format!("broker-{id}:9092"))).collect();
    let have: Vec<(i32, String)> = md.brokers.values().map(|b| (b.id.0, b.address.to_string())).collect();
    if want != have {
        return Some(format!("brokers: client {have:?}, cluster {want:?}"));
    }
    if md.controller != Some(BrokerId(cluster.controller_id())) {
        return Some(format!("controller: client {:?}, cluster {}", md.controller, cluster.controller_id()));
    }
    let names: Vec<String> = md.topics.keys().map(|t| t.to_string()).collect();
    if names != cluster.topic_names() {
        return Some(format!("topics: client {names:?}, cluster {:?}", cluster.topic_names()));
    }
    for (name, topic) in &md.topics {
        let n = cluster.partition_count(name).unwrap_or(0);
        if topic.partitions.len() != n {
            return Some(format!("{name}: client has {} partitions, cluster {n}", topic.partitions.len()));
        }
        for p in &topic.partitions {
            let leader = cluster.leader(name, p.index).unwrap_or(-1);
            let epoch = cluster.leader_epoch(name, p.index).unwrap_or(-1);
            if p.leader.map_or(-1, |l| l.0) != leader || p.leader_epoch != epoch {
                return Some(format!(
                    "{name}-{}: client leader {:?} epoch {}, cluster leader {leader} epoch {epoch}",
                    p.index, p.leader, p.leader_epoch
                ));
            }
        }
    }
    None
}

/// Invariants (a) and (e): every command has exactly one outcome, no outcome is for an
/// unknown command, and none comes later than the request timeout after the command.
pub fn check_outcomes(sim: &mut Sim) {
    let slack = Duration::from_millis(1);
    let limit = sim.request_timeout() + slack;
    let mut found = Vec::new();
    for (id, r) in sim.requests() {
        match r.outcomes.len() {
            0 => found.push((
                "exactly-one-outcome",
                format!("#{} {} (issued {:.6}s) has no outcome", id.0, r.what, r.issued.as_secs_f64()),
            )),
            1 => {}
            n => found.push(("exactly-one-outcome", format!("#{} {} has {n} outcomes", id.0, r.what))),
        }
        if let Some((at, e)) = r.outcomes.first() {
            if *at > r.issued + limit {
                found.push((
                    "request-timeout-bound",
                    format!(
                        "#{} {} issued {:.6}s, outcome {} after {:?} (request timeout {:?})",
                        id.0,
                        r.what,
                        r.issued.as_secs_f64(),
                        outcome_kind(e),
                        *at - r.issued,
                        sim.request_timeout()
                    ),
                ));
            }
        }
    }
    for (at, s) in sim.stray_outcomes() {
        found.push((
            "exactly-one-outcome",
            format!("outcome {s} at {:.6}s for a command never issued", at.as_secs_f64()),
        ));
    }
    for (inv, d) in found {
        sim.violate(inv, d);
    }
}
