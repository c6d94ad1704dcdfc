//! Scenarios drawn from a seed (a cluster, a client configuration, a network profile, a
//! workload and a fault schedule), running them, and the invariants checked afterwards.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use sansa::plants::Plant;
use sansa::producer::{Acks, ProducerConfig};
use sansa::protocol::records::Compression;
use sansa::protocol::{ApiKey, BrokerId, ErrorCode};
use sansa::rand::Rng;
use sansa::Event;

use super::harness::{Action, ClientConfig, Keying, SendWork, Sim, SimConfig, SimError, Violation, Work};
use super::invariants::{Registry, World};
use super::netem::{DropKind, LinkProfile};
use crate::fake_cluster::{Fault, FaultAction, Replication};

/// Steps allowed per phase of a run before it counts as stuck.
pub const MAX_STEPS: u64 = 2_000_000;

/// What a seed expands to.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Cluster, clients and network.
    pub config: SimConfig,
    /// The workload and the faults, by time.
    pub actions: Vec<(Duration, Action)>,
    /// When every fault ends.
    pub faults_end: Duration,
    /// A fault in the schedule may apply a request and lose its answer.
    pub loses_answers: bool,
}

fn ms(rng: &mut Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rng.below(hi - lo + 1))
}

fn one_of<T: Clone>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize].clone()
}

/// Error codes injected into answers.
const INJECTED_ERRORS: &[ErrorCode] = &[
    ErrorCode::NotLeaderOrFollower,
    ErrorCode::LeaderNotAvailable,
    ErrorCode::CoordinatorNotAvailable,
    ErrorCode::NotCoordinator,
    ErrorCode::RequestTimedOut,
    ErrorCode::UnknownServerError,
    ErrorCode::NotController,
    ErrorCode::BrokerNotAvailable,
];

/// Request faults other than error codes and delays, each with whether it may apply a
/// request and lose its answer (then an acked-elsewhere record may be stored twice by a
/// retrying producer). The fake cluster's `FaultAction::LoseResponse` and
/// `FaultAction::ApplyThenDisconnect` join this list as `(.., true)`.
fn request_faults() -> Vec<(FaultAction, bool)> {
    vec![
        (FaultAction::Swallow, false),
        (FaultAction::Disconnect, false),
        (FaultAction::Throttle(Duration::from_millis(100)), false),
        // Applied, then the answer is lost: a retry may store a record twice.
        (FaultAction::LoseResponse, true),
        (FaultAction::ApplyThenDisconnect, true),
    ]
}

/// One client's configuration, drawn.
fn client_config(rng: &mut Rng, brokers: usize) -> ClientConfig {
    let bootstrap = (0..1 + rng.below(2)).map(|_| 1 + rng.below(brokers as u64) as i32).collect();
    let initial = ms(rng, 20, 200);
    ClientConfig {
        bootstrap,
        request_timeout: one_of(rng, &[Duration::from_secs(2), Duration::from_secs(5), Duration::from_secs(10)]),
        connection_setup_timeout: ms(rng, 500, 3_000),
        reconnect_backoff: (initial, initial + ms(rng, 200, 2_000)),
        retry_backoff: (ms(rng, 50, 200), Duration::from_secs(1)),
        metadata_max_age: ms(rng, 5_000, 60_000),
        producer: None,
        consumer: None,
        security: None,
        offload_work: None,
    }
}

/// Error codes injected into Produce answers on top of [`INJECTED_ERRORS`]: the idempotence
/// errors (a gap the producer must bump its epoch for), errors the producer retries, and
/// errors that fail a batch (leaving a sequence gap behind it).
const PRODUCE_ERRORS: &[ErrorCode] = &[
    ErrorCode::OutOfOrderSequenceNumber,
    ErrorCode::UnknownProducerId,
    ErrorCode::NotLeaderOrFollower,
    ErrorCode::NotEnoughReplicas,
    ErrorCode::NotEnoughReplicasAfterAppend,
    ErrorCode::RequestTimedOut,
    ErrorCode::CorruptMessage,
    ErrorCode::UnknownServerError,
    ErrorCode::InvalidRecord,
];

/// A producer's settings, drawn: idempotent with acks=all (the default) half the time, else
/// acks=1 or acks=all without idempotence; sometimes compressed; batches and linger small so
/// that batches fill, queue and retry; sometimes a small buffer.memory so that sends are
/// refused; a delivery timeout from linger + request timeout (the least Java allows) to
/// half a minute more.
fn producer_config(rng: &mut Rng, request_timeout: Duration) -> ProducerConfig {
    let mut p = ProducerConfig::default();
    match rng.below(4) {
        0 => p.acks = Acks::Leader,
        1 => p.enable_idempotence = Some(false),
        _ => {}
    }
    if p.enable_idempotence == Some(false) || p.acks == Acks::Leader {
        p.retries = one_of(rng, &[p.retries, p.retries, 0, 2]);
    }
    p.compression = one_of(
        rng,
        &[
            Compression::None,
            Compression::None,
            Compression::gzip(),
            Compression::snappy(),
            Compression::lz4(),
            Compression::zstd(),
        ],
    );
    p.batch_size = 100 + rng.below(1_500) as usize;
    p.linger = ms(rng, 0, 50);
    if rng.below(3) == 0 {
        p.buffer_memory = 3_000 + rng.below(20_000) as usize;
    }
    p.max_block = ms(rng, 1_000, 15_000);
    p.delivery_timeout = p.linger + request_timeout + ms(rng, 0, 30_000);
    p
}

impl Scenario {
    /// The scenario of `seed`, with 1 to 4 clients.
    pub fn from_seed(seed: u64) -> Self {
        Self::build(seed, None)
    }

    /// The scenario of `seed` with exactly `clients` clients.
    pub fn with_clients(seed: u64, clients: usize) -> Self {
        Self::build(seed, Some(clients.max(1)))
    }

    fn build(seed: u64, clients: Option<usize>) -> Self {
        let mut rng = Rng::new(seed ^ 0x5ce7_a210_0000_0000);
        let brokers = 3 + rng.below(3) as usize;
        let topics = (0..1 + rng.below(3)).map(|i| (format!("t{i}"), 1 + rng.below(4) as i32)).collect();
        let profile = LinkProfile::random(&mut rng);
        let exact = clients.is_some();
        let n = clients.unwrap_or(1 + rng.below(4) as usize);
        let clients: Vec<ClientConfig> = (0..n).map(|_| client_config(&mut rng, brokers)).collect();
        let mut config = SimConfig { seed, brokers, topics, profile, clients, ..SimConfig::default() };
        // Drawn from a stream of its own, so the rest of the scenario is the same either way.
        let mut replication_rng = Rng::stream(seed, "sim-replication");
        if replication_rng.below(3) == 0 {
            config.replication = Replication::lagging(ms(&mut replication_rng, 2, 80));
        }
        let faults_end = ms(&mut rng, 5_000, 40_000);
        let mut actions = Vec::new();
        let commands = 10 + rng.below(31) + 10 * (n as u64 - 1);
        let horizon = faults_end.as_millis() as u64 + 5_000;
        let mut created = 0;
        let mut loses_answers = false;
        for _ in 0..commands {
            let at = ms(&mut rng, 0, horizon);
            let client = rng.below(n as u64) as usize;
            let b = 1 + rng.below(brokers as u64) as i32;
            let pick = rng.next_u64();
            let work = match rng.below(24) {
                0..=2 => Work::Metadata,
                3 => Work::RefreshMetadata,
                4 => Work::CheckVersion(if rng.below(2) == 0 { None } else { Some(b) }),
                5..=6 => Work::ToBroker(b),
                7..=8 => {
                    created += 1;
                    Work::CreateTopic { name: format!("new{created}"), partitions: 1 + rng.below(3) as i32 }
                }
                9..=11 => Work::Produce { pick },
                12..=13 => Work::ProduceViaMetadata { pick },
                14..=15 => Work::Fetch { pick },
                16 => Work::LongPoll { pick, wait_ms: 50 + rng.below(500) as i32 },
                17..=18 => Work::ListOffsets { pick },
                19..=20 => Work::OffsetFetch { group: format!("g{}", rng.below(4)) },
                _ => Work::Coordinator { group: format!("g{}", rng.below(4)) },
            };
            actions.push((at, Action::Issue { client, work }));
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
                    ApiKey::OffsetFetch,
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
                    let code = one_of(&mut rng, INJECTED_ERRORS);
                    actions.push((at, Action::Inject(scoped(Fault::error(code), &mut rng))));
                }
                6 => {
                    let d = ms(&mut rng, 10, 5_000);
                    actions.push((at, Action::Inject(scoped(Fault::new(FaultAction::Delay(d)), &mut rng))));
                }
                7 => {
                    let (action, loses) = one_of(&mut rng, &request_faults());
                    loses_answers |= loses;
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
        loses_answers |= producer_workload(seed, &mut config, horizon, faults_end, &mut actions);
        // A scenario asked for an exact number of clients stays without group members.
        if !exact {
            super::consumers::consumer_workload(seed, &mut config, horizon, faults_end, &mut actions);
            // Half the group members hand their decompression out, done up to 30 ms later;
            // from a stream of its own, as the producers' is.
            let mut offload = Rng::stream(seed, "sim-offload-consumers");
            for c in config.clients.iter_mut().filter(|c| c.consumer.is_some()) {
                if offload.below(2) == 0 {
                    c.offload_work = Some(ms(&mut offload, 0, 30));
                }
            }
        }
        config.security = super::security::draw(seed);
        if let Some(security) = config.security {
            super::security::faults(seed, security, faults_end, &mut actions);
        }
        actions.push((faults_end, Action::EndFaults));
        // Stable order by time; same-time actions keep their drawing order.
        actions.sort_by_key(|(t, _)| *t);
        Scenario { seed, config, actions, faults_end, loses_answers }
    }
}

/// Producers for some clients, their sends and flushes, and faults aimed at Produce, drawn
/// from a stream of their own (so the rest of the scenario is the same either way). Returns
/// whether a fault may apply a Produce and lose its answer.
fn producer_workload(
    seed: u64,
    config: &mut SimConfig,
    horizon: u64,
    faults_end: Duration,
    actions: &mut Vec<(Duration, Action)>,
) -> bool {
    let mut rng = Rng::stream(seed, "sim-producers");
    let brokers = config.brokers;
    for (client, c) in config.clients.iter_mut().enumerate() {
        if rng.below(4) == 0 {
            continue;
        }
        c.producer = Some(producer_config(&mut rng, c.request_timeout));
        for _ in 0..4 + rng.below(20) {
            let at = ms(&mut rng, 0, horizon);
            let keying = match rng.below(5) {
                0 | 1 => Keying::Unkeyed,
                2 | 3 => Keying::Keyed(1 + rng.below(12) as u32),
                _ => Keying::Partition,
            };
            let send = SendWork {
                pick: rng.next_u64(),
                count: 1 + rng.below(15) as u32,
                keying,
                pad: rng.below(300) as u32,
                must_ack: false,
            };
            actions.push((at, Action::Send { client, send }));
        }
        for _ in 0..rng.below(3) {
            actions.push((ms(&mut rng, 0, horizon), Action::Issue { client, work: Work::Flush }));
        }
    }
    let mut loses_answers = false;
    let end = faults_end.as_millis() as u64;
    for _ in 0..rng.below(8) {
        let at = ms(&mut rng, 0, end);
        let b = 1 + rng.below(brokers as u64) as i32;
        let fault = match rng.below(6) {
            0 => {
                actions.push((at, Action::MoveLeader { pick: rng.next_u64() }));
                continue;
            }
            1 => {
                let (action, loses) = one_of(&mut rng, &request_faults());
                loses_answers |= loses;
                Fault::new(action)
            }
            2 => Fault::new(FaultAction::Delay(ms(&mut rng, 10, 5_000))),
            _ => Fault::error(one_of(&mut rng, PRODUCE_ERRORS)),
        };
        let fault = fault.on_api(ApiKey::Produce);
        let fault = if rng.below(2) == 0 { fault.on_broker(b) } else { fault };
        actions.push((at, Action::Inject(fault.times(1 + rng.below(4) as u32))));
    }
    // Half the producers hand their compression out, done up to 30 ms later; drawn from a
    // stream of its own, so the rest of the scenario is what it was without offloading.
    let mut offload = Rng::stream(seed, "sim-offload");
    for c in config.clients.iter_mut().filter(|c| c.producer.is_some()) {
        if offload.below(2) == 0 {
            c.offload_work = Some(ms(&mut offload, 0, 30));
        }
    }
    loses_answers
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
    run_scenario(&Scenario::from_seed(seed))
}

/// Runs `scenario` with `plant` armed on every client.
pub fn run_planted(scenario: &Scenario, plant: Option<Plant>) -> (Sim, RunReport) {
    let mut s = scenario.clone();
    s.config.plant = plant;
    run_scenario(&s)
}

/// Runs `scenario`: the workload under faults until every command has an outcome and the
/// faults have ended; metadata convergence; liveness probes; the scripted episodes; then
/// reads the logs and checks the standard invariants.
pub fn run_scenario(scenario: &Scenario) -> (Sim, RunReport) {
    let mut sim = Sim::new(&scenario.config);
    sim.history_mut().duplicates_allowed = scenario.loses_answers;
    sim.history_mut().acks1_may_be_lost = scenario.config.replication != Replication::Instant;
    for (at, a) in &scenario.actions {
        sim.at(*at, a.clone());
    }
    let mut error = sim.drive_bounded(MAX_STEPS).err();
    if error.is_none() {
        error = converge(&mut sim).err();
    }
    if error.is_none() {
        error = liveness_probes(&mut sim).err();
    }
    if error.is_none() {
        error = quiet_after_faults(&mut sim).err();
    }
    if error.is_none() {
        error = producer_recovery(&mut sim).err();
    }
    if error.is_none() {
        error = episodes(&mut sim).err();
    }
    if error.is_none() {
        error = super::consumers::consumer_episodes(&mut sim).err();
    }
    if error.is_none() {
        error = super::security::episodes(&mut sim).err();
    }
    sim.read_logs();
    let violations = Registry::standard().check(&World::of(&sim));
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
        violations,
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
        Event::Flushed { .. } => "flushed".into(),
        _ => "other".into(),
    }
}

/// Once faults are over, a metadata refresh brings every client's view to the cluster's
/// truth. Retries a failed refresh a few times (the network is healthy by then, so failures
/// point at the client). The result lands in [`Sim::convergence`].
pub fn converge(sim: &mut Sim) -> Result<(), SimError> {
    if !sim.faults_over() {
        sim.end_faults();
    }
    let mut failure = None;
    for client in sim.live_clients() {
        let mut last = String::new();
        let mut converged = false;
        for _ in 0..3 {
            let id = sim.issue_on(client, Work::RefreshMetadata);
            sim.drive_bounded(MAX_STEPS)?;
            let ok = matches!(sim.record(id).and_then(|r| r.outcome()), Some(Event::Metadata { result: Ok(_), .. }));
            if ok {
                match metadata_diff_of(sim, client) {
                    None => {
                        converged = true;
                        break;
                    }
                    Some(d) => last = d,
                }
            } else {
                last = format!("refresh {id} failed: {:?}", sim.record(id).and_then(|r| r.outcome()));
            }
            let until = sim.now() + Duration::from_secs(1);
            sim.drive(until)?;
        }
        if !converged && failure.is_none() {
            failure = Some(format!("client {client}: {last}"));
        }
    }
    sim.set_convergence(failure);
    Ok(())
}

/// How client 0's metadata differs from the cluster, if it does.
pub fn metadata_diff(sim: &Sim) -> Option<String> {
    metadata_diff_of(sim, 0)
}

/// How client `client`'s metadata differs from the cluster, if it does.
pub fn metadata_diff_of(sim: &Sim, client: usize) -> Option<String> {
    let md = sim.client_at(client).metadata();
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

/// How long a client may take to serve a request once nothing is wrong: two request
/// timeouts (one may be spent on a connection that died with the faults), a full reconnect
/// backoff, and a second for lookups.
pub fn liveness_bound(sim: &Sim, client: usize) -> Duration {
    let c = sim.client_config(client);
    c.request_timeout * 2 + c.reconnect_backoff.1 + Duration::from_secs(1)
}

/// After the last fault heals, a request of each kind succeeds on every client within
/// [`liveness_bound`].
pub fn liveness_probes(sim: &mut Sim) -> Result<(), SimError> {
    let pick = sim.below(1 << 20);
    for client in sim.live_clients() {
        let bound = liveness_bound(sim, client);
        for work in Work::kinds(pick) {
            sim.probe("liveness", client, work, bound);
        }
    }
    sim.drive_bounded(MAX_STEPS)?;
    Ok(())
}

/// More than the buffer room a recovery record takes (its value is a few bytes).
const RECOVERY_RECORD_ROOM: usize = 256;

/// Once the faults are over, every producing client sends one record to each partition
/// that has a leader, then flushes; each record must be acked (`producer-recovers`).
pub fn producer_recovery(sim: &mut Sim) -> Result<(), SimError> {
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
    for client in sim.live_clients() {
        let Some(limit) = sim.client_config(client).producer.as_ref().map(|p| p.buffer_memory) else { continue };
        for pick in &picks {
            // A small buffer.memory holds a few of these records at a time: wait for room, as
            // an application does.
            if sim.client_at(client).producer_buffered() + RECOVERY_RECORD_ROOM > limit {
                sim.issue_on(client, Work::Flush);
                sim.drive_bounded(MAX_STEPS)?;
            }
            let send = SendWork { pick: *pick, count: 1, keying: Keying::Partition, pad: 0, must_ack: true };
            sim.send_on(client, &send);
        }
        sim.issue_on(client, Work::Flush);
    }
    sim.drive_bounded(MAX_STEPS)?;
    Ok(())
}

/// Runs until every request sent while the faults lasted has resolved: one request timeout
/// (the longest of the clients') after the faults ended. A request the faults black-holed
/// stays in flight until its timeout, and while the client's own metadata refresh does, no
/// other refresh starts (Java waits for an in-flight metadata request the same way), so an
/// episode starting earlier would time its bounds from a client still blind.
pub fn quiet_after_faults(sim: &mut Sim) -> Result<(), SimError> {
    let longest = (0..sim.clients()).map(|c| sim.client_config(c).request_timeout).max().unwrap_or_default();
    let until = sim.faults_ended_at().unwrap_or_default() + longest;
    if until > sim.now() {
        sim.drive(until)?;
    }
    Ok(())
}

/// The coordinator the fake cluster picks for `group` among `live` brokers: the same FNV-1a
/// rule as its FindCoordinator handler (checked against the cluster's own answers by the
/// coordinator episode, which probes it).
fn coordinator_for(group: &str, live: &[i32]) -> Option<i32> {
    let mut h = super::trace::Fnv::default();
    h.bytes(group.as_bytes());
    (!live.is_empty()).then(|| live[(h.finish() % live.len() as u64) as usize])
}

/// The partition pick (for [`Work`]) of the first partition `broker` leads, if any.
fn pick_led_by(sim: &Sim, broker: i32) -> Option<u64> {
    let c = sim.cluster();
    let mut index = 0u64;
    for t in c.topic_names() {
        for p in 0..c.partition_count(&t).unwrap_or(0) as i32 {
            if c.leader(&t, p) == Some(broker) {
                return Some(index);
            }
            index += 1;
        }
    }
    None
}

/// The cluster's leader of the partition `pick` names (picks index every partition).
fn leader_of_pick(sim: &Sim, pick: u64) -> Option<i32> {
    let c = sim.cluster();
    let all: Vec<(String, i32)> = c
        .topic_names()
        .into_iter()
        .flat_map(|t| (0..c.partition_count(&t).unwrap_or(0) as i32).map(move |p| (t.clone(), p)))
        .collect();
    let (t, p) = all.get((pick % all.len().max(1) as u64) as usize)?;
    c.leader(t, *p)
}

/// Scripted episodes after the random part, each aimed at one way a client goes wrong; the
/// invariants judge them like everything else. Links are calm during them, so that latency
/// bounds mean something.
pub fn episodes(sim: &mut Sim) -> Result<(), SimError> {
    for b in sim.cluster().broker_ids() {
        sim.net_mut().set_profile(b, Some(LinkProfile::default()));
    }
    let clients = sim.live_clients();
    let live = sim.cluster().live_broker_ids();

    // Two requests of different kinds and a produce in flight on one connection next to a
    // long poll: each answer must be its own request's (swapped owners), and the ones
    // beside the poll must not wait for it (fetches on the shared connection).
    let b = live[sim.below(live.len() as u64) as usize];
    if let Some(pick) = pick_led_by(sim, b) {
        for client in clients.clone() {
            let warm = sim.issue_on(client, Work::ToBroker(b));
            sim.drive_bounded(MAX_STEPS)?;
            let _ = warm;
            sim.issue_on(client, Work::LongPoll { pick, wait_ms: 1_500 });
            sim.issue_bounded(client, Work::ToBroker(b), Duration::from_millis(300));
            sim.issue_bounded(client, Work::Produce { pick }, Duration::from_millis(300));
            sim.issue_bounded(client, Work::ListOffsets { pick }, Duration::from_millis(300));
        }
        sim.drive_bounded(MAX_STEPS)?;
    }

    // Retriable failures of the client's own lookups: FindCoordinator says not available,
    // a metadata refresh loses its connection. Whoever waits must still be served.
    sim.resume_faults();
    let now = sim.now();
    sim.at(
        now,
        Action::Inject(Fault::error(ErrorCode::CoordinatorNotAvailable).on_api(ApiKey::FindCoordinator).times(2)),
    );
    sim.at(now, Action::Inject(Fault::new(FaultAction::Disconnect).on_api(ApiKey::Metadata).times(1)));
    sim.drive(now)?;
    for client in clients.clone() {
        sim.issue_on(client, Work::RefreshMetadata);
        let bound = liveness_bound(sim, client);
        sim.probe("lookup retried", client, Work::OffsetFetch { group: format!("lookup{client}") }, bound);
    }
    sim.drive_bounded(MAX_STEPS)?;
    sim.end_faults();

    // The coordinator moves while its old broker stays up: a broker stops and the group's
    // coordinator changes. Requests to the group must follow it (NOT_COORDINATOR from the
    // old one).
    let live = sim.cluster().live_broker_ids();
    let moved = (0..16).find_map(|g| {
        let group = format!("move{g}");
        let before = coordinator_for(&group, &live)?;
        live.iter().filter(|y| **y != before).find_map(|y| {
            let rest: Vec<i32> = live.iter().copied().filter(|b| b != y).collect();
            (coordinator_for(&group, &rest)? != before).then(|| (group.clone(), *y))
        })
    });
    if let Some((group, stopped)) = moved {
        for client in clients.clone() {
            let bound = liveness_bound(sim, client);
            sim.probe("coordinator warm", client, Work::OffsetFetch { group: group.clone() }, bound);
        }
        sim.drive_bounded(MAX_STEPS)?;
        sim.resume_faults();
        let now = sim.now();
        sim.at(now, Action::StopBroker(stopped));
        sim.drive(now + Duration::from_millis(200))?;
        for client in clients.clone() {
            let bound = liveness_bound(sim, client);
            sim.probe("coordinator moved", client, Work::OffsetFetch { group: group.clone() }, bound);
        }
        sim.drive_bounded(MAX_STEPS)?;
        sim.end_faults();
    }

    // A partition's leader stops while every client is connected to it: the clients must
    // learn the new leader from the lost connection, well before their periodic refresh.
    let live = sim.cluster().live_broker_ids();
    let leader = live[sim.below(live.len() as u64) as usize];
    if let Some(pick) = pick_led_by(sim, leader) {
        for client in clients.clone() {
            sim.issue_on(client, Work::ToBroker(leader));
        }
        sim.drive_bounded(MAX_STEPS)?;
        sim.resume_faults();
        let now = sim.now();
        sim.at(now, Action::StopBroker(leader));
        sim.drive(now + Duration::from_millis(100))?;
        if leader_of_pick(sim, pick).is_some_and(|l| l >= 0) {
            for client in clients.clone() {
                let c = sim.client_config(client);
                let bound = (c.reconnect_backoff.1 + Duration::from_secs(2)).min(c.metadata_max_age / 2);
                sim.probe("leader lost", client, Work::ProduceViaMetadata { pick }, bound);
            }
        }
        sim.drive_bounded(MAX_STEPS)?;
        sim.end_faults();
    }

    // Requests queued for a broker nobody can reach must still fail by their deadline.
    let live = sim.cluster().live_broker_ids();
    let cut = live[sim.below(live.len() as u64) as usize];
    sim.resume_faults();
    let now = sim.now();
    sim.at(now, Action::Partition(cut));
    sim.drive(now + Duration::from_millis(10))?;
    for client in clients.clone() {
        sim.issue_on(client, Work::ToBroker(cut));
    }
    let longest = clients.iter().map(|c| sim.client_config(*c).request_timeout).max().unwrap_or_default();
    sim.at(sim.now() + longest * 2, Action::Heal(cut));
    sim.drive_bounded(MAX_STEPS)?;
    sim.end_faults();
    sim.drive_bounded(MAX_STEPS)?;
    Ok(())
}
