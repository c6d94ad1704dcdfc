//! The deterministic simulator: named scenarios with asserted outcomes, determinism, and a
//! sweep of seeds with every invariant checked.

use sansa_conformance::sim::run_seed;

/// Seeds that once made the client ask to be woken at an instant already past, forever (a
/// busy loop in real drivers, a livelock in the simulator): an expired reconnect backoff (49)
/// and an expired retry delay of a coordinator lookup (8).
#[test]
fn regression_seeds_do_not_livelock() {
    for seed in [8, 49] {
        let (sim, report) = run_seed(seed);
        assert!(report.error.is_none(), "{}", report.failure_text());
        assert_eq!(sim.outstanding(), 0, "{}", report.failure_text());
    }
}

/// Seeds whose group members once stayed out of their group for good: a classic member
/// whose LeaveGroup failed after it had started rejoining fell back to idle (456); a KIP-848
/// member that subscribed again after leaving for not polling rejoined, owning partitions,
/// when it polled (1246: INVALID_REQUEST); a KIP-848 member failed for good on
/// BROKER_NOT_AVAILABLE (1813).
#[test]
fn regression_seeds_keep_every_member_in_its_group() {
    for seed in [456, 1246, 1813] {
        let (_, report) = run_seed(seed);
        assert!(report.error.is_none(), "seed {seed}: {}", report.failure_text());
    }
}

use std::time::Duration;

use sansa::protocol::{ApiKey, ErrorCode, ResponseBody};
use sansa::{Event, RequestError};
use sansa_conformance::fake_cluster::{Fault, FaultAction};
use sansa_conformance::sim::scenario::{converge, metadata_diff, outcome_kind};
use sansa_conformance::sim::{Action, CmdId, Registry, Sim, SimConfig, TraceEvent, Work, World};

const STEPS: u64 = 1_000_000;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Issues `work` at `at`, runs until then, and returns its id.
fn issue_at(sim: &mut Sim, at: f64, work: Work) -> CmdId {
    sim.drive(secs(at)).unwrap();
    sim.issue(work)
}

fn outcome(sim: &Sim, id: CmdId) -> &Event {
    sim.record(id).and_then(|r| r.outcome()).unwrap_or_else(|| panic!("{id} has no outcome"))
}

fn kind(sim: &Sim, id: CmdId) -> String {
    outcome_kind(outcome(sim, id))
}

/// Finishes a run: faults end, everything completes, metadata converges, and no invariant
/// is broken.
fn finish(mut sim: Sim) -> Sim {
    sim.drive_bounded(STEPS).unwrap();
    converge(&mut sim).unwrap();
    sim.read_logs();
    let violations = Registry::standard().check(&World::of(&sim));
    assert!(violations.is_empty(), "{violations:#?}\n{}", sim.trace().tail(40));
    assert_eq!(metadata_diff(&sim), None);
    sim
}

#[test]
fn broker_crash_and_restart() {
    let mut sim = Sim::new(&SimConfig::default());
    let before = issue_at(&mut sim, 0.1, Work::ToBroker(2));
    sim.at(secs(1.0), Action::StopBroker(2));
    sim.at(secs(5.0), Action::StartBroker(2));
    sim.drive(secs(1.5)).unwrap();
    assert!(!sim.cluster().is_up(2));
    // The crash closed the connection; the client refreshed and no longer lists broker 2.
    assert!(sim.client().metadata().broker(sansa::protocol::BrokerId(2)).is_none());
    let during = issue_at(&mut sim, 2.0, Work::ToBroker(2));
    let refresh = issue_at(&mut sim, 6.0, Work::RefreshMetadata);
    let after = issue_at(&mut sim, 7.0, Work::ToBroker(2));
    let sim = finish(sim);
    assert_eq!(kind(&sim, before), "ok 0");
    assert!(
        matches!(outcome(&sim, during), Event::Response { result: Err(RequestError::UnknownBroker(_)), .. }),
        "{:?}",
        outcome(&sim, during)
    );
    assert_eq!(kind(&sim, refresh), "ok 0");
    assert_eq!(kind(&sim, after), "ok 0");
    assert!(sim
        .trace()
        .events()
        .iter()
        .any(|(_, e)| matches!(e, TraceEvent::Closed { cause, .. } if cause.contains("peer"))));
}

#[test]
fn partition_heal() {
    let cfg = SimConfig::default().with_request_timeout(Duration::from_secs(5));
    let mut sim = Sim::new(&cfg);
    let before = issue_at(&mut sim, 0.1, Work::ToBroker(3));
    sim.at(secs(1.0), Action::Partition(3));
    sim.at(secs(9.0), Action::Heal(3));
    let during = issue_at(&mut sim, 1.5, Work::ToBroker(3));
    let after = issue_at(&mut sim, 10.0, Work::ToBroker(3));
    let sim = finish(sim);
    assert_eq!(kind(&sim, before), "ok 0");
    // Sent into the partition: lost, then the connection dies or the request times out.
    let k = kind(&sim, during);
    assert!(["timeout", "disconnected", "unreachable"].contains(&k.as_str()), "{k}");
    assert_eq!(kind(&sim, after), "ok 0");
    let died =
        sim.trace().events().iter().any(|(at, e)| {
            *at < secs(9.0) && matches!(e, TraceEvent::Closed { cause, .. } if cause.contains("timed out"))
        });
    assert!(died, "the partitioned connection died:\n{}", sim.trace().tail(40));
}

#[test]
fn leader_move() {
    let cfg = SimConfig { topics: vec![("events".into(), 1)], ..SimConfig::default() };
    let mut sim = Sim::new(&cfg);
    let first = issue_at(&mut sim, 0.1, Work::RefreshMetadata);
    sim.drive(secs(0.5)).unwrap();
    let old = sim.cluster().leader("events", 0).unwrap();
    let seen = sim.client().metadata().topic("events").unwrap().partitions[0].leader.unwrap().0;
    assert_eq!(seen, old);
    sim.at(secs(1.0), Action::MoveLeader { pick: 0 });
    sim.drive(secs(1.1)).unwrap();
    let new = sim.cluster().leader("events", 0).unwrap();
    assert_ne!(new, old);
    assert_eq!(sim.cluster().leader_epoch("events", 0), Some(1));
    let produce = issue_at(&mut sim, 2.0, Work::Produce { pick: 0 });
    assert_eq!(sim.record(produce).unwrap().broker, Some(new));
    let refresh = issue_at(&mut sim, 3.0, Work::RefreshMetadata);
    sim.drive_bounded(STEPS).unwrap();
    let p = &sim.client().metadata().topic("events").unwrap().partitions[0];
    assert_eq!((p.leader.map(|l| l.0), p.leader_epoch), (Some(new), 1));
    let sim = finish(sim);
    for id in [first, produce, refresh] {
        assert_eq!(kind(&sim, id), "ok 0");
    }
}

#[test]
fn injected_errors_reach_the_caller() {
    let cfg = SimConfig { topics: vec![("events".into(), 1)], max_records_per_produce: 1, ..SimConfig::default() };
    let mut sim = Sim::new(&cfg);
    let fault = |f: Fault| Action::Inject(f.times(1));
    sim.at(secs(0.5), fault(Fault::error(ErrorCode::LeaderNotAvailable).on_api(ApiKey::Metadata).on_topic("events")));
    // Retriable: the client looks the coordinator up again, and the caller never sees it.
    sim.at(secs(0.5), fault(Fault::error(ErrorCode::CoordinatorNotAvailable).on_api(ApiKey::FindCoordinator).times(2)));
    sim.at(secs(0.5), fault(Fault::new(FaultAction::Disconnect).on_api(ApiKey::Produce)));
    let metadata = issue_at(&mut sim, 1.0, Work::Metadata);
    let coordinator = issue_at(&mut sim, 2.0, Work::Coordinator { group: "g".into() });
    let hung_up = issue_at(&mut sim, 3.0, Work::Produce { pick: 0 });
    let produced = issue_at(&mut sim, 4.0, Work::Produce { pick: 0 });
    let sim = finish(sim);
    match outcome(&sim, metadata) {
        Event::Response { result: Ok(r), .. } => match &r.body {
            Some(ResponseBody::Metadata(m)) => {
                let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "events")).unwrap();
                assert_eq!(t.error_code, ErrorCode::LeaderNotAvailable);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(kind(&sim, coordinator), "ok 0");
    assert_eq!(kind(&sim, hung_up), "disconnected");
    assert_eq!(kind(&sim, produced), "ok 0");
    assert_eq!(sim.cluster().log_end_offset("events", 0), Some(1), "only the second produce was appended");
    let stored: Vec<_> = sim.history().records().values().filter(|r| !r.acks.is_empty()).collect();
    assert_eq!(stored.len(), 1, "and the history saw that one record acked");
}

#[test]
fn swallowed_request_times_out_and_the_next_one_succeeds() {
    let cfg = SimConfig::default().with_request_timeout(Duration::from_secs(2));
    let mut sim = Sim::new(&cfg);
    let warm = issue_at(&mut sim, 0.1, Work::Metadata);
    sim.at(secs(1.0), Action::Inject(Fault::new(FaultAction::Swallow).on_api(ApiKey::Metadata).times(1)));
    let swallowed = issue_at(&mut sim, 1.5, Work::Metadata);
    let next = issue_at(&mut sim, 5.0, Work::Metadata);
    let sim = finish(sim);
    assert_eq!(kind(&sim, warm), "ok 0");
    assert!(
        matches!(outcome(&sim, swallowed), Event::Response { result: Err(RequestError::Timeout(_)), .. }),
        "{:?}",
        outcome(&sim, swallowed)
    );
    let r = sim.record(swallowed).unwrap();
    assert_eq!(r.outcomes[0].0 - r.issued, Duration::from_secs(2), "failed at the deadline");
    assert_eq!(kind(&sim, next), "ok 0");
}

#[test]
fn a_seed_replays_to_the_same_trace_hash() {
    let (_, a) = run_seed(7);
    let (_, b) = run_seed(7);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.steps, b.steps);
    let (_, c) = run_seed(8);
    assert_ne!(a.trace_hash, c.trace_hash);
}

/// A few seeds, so that `cargo test` alone catches a broken invariant; test.sh sweeps 500
/// with the optimised `sim` binary.
#[test]
fn ten_seeds_keep_every_invariant() {
    let mut failures = Vec::new();
    for seed in 0..10 {
        let (sim, report) = run_seed(seed);
        assert!(sim.steps() > 0);
        if report.error.is_some() || !report.violations.is_empty() {
            failures.push(report.failure_text());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- many clients ----

#[test]
fn several_clients_replay_to_the_same_trace_and_keep_their_own_connections() {
    use sansa_conformance::sim::{run_scenario, Scenario};
    for seed in [3, 11] {
        let scenario = Scenario::with_clients(seed, 3);
        let (sim, a) = run_scenario(&scenario);
        let (_, b) = run_scenario(&scenario);
        assert!(!a.failed(), "{}", a.failure_text());
        assert_eq!((a.trace_hash, a.steps), (b.trace_hash, b.steps));
        assert_eq!(sim.clients(), 3);
        // Every client opened connections in its own namespace (client index in the top bits).
        for client in 0..3u64 {
            let opened = sim
                .trace()
                .events()
                .iter()
                .any(|(_, e)| matches!(e, TraceEvent::Open { conn, .. } if conn >> 32 == client));
            assert!(opened, "client {client} opened nothing");
        }
        // Records of every client were acked.
        for client in 0..3 {
            let acked = sim.history().records().iter().any(|(id, r)| id.client == client && !r.acks.is_empty());
            assert!(acked, "client {client} got no ack");
        }
    }
    let (_, one) = run_scenario(&Scenario::with_clients(3, 1));
    let (_, three) = run_scenario(&Scenario::with_clients(3, 3));
    assert_ne!(one.trace_hash, three.trace_hash);
}

/// The workloads reach what their invariants are about: over a few seeds (run once for both
/// checks: each is a full simulation), the producer's records are acked by idempotent and
/// by plain producers, refused for a full buffer, failed by the delivery timeout and by
/// brokers, flushes answer, and the faults aimed at Produce (lost answers, sequence errors)
/// happen; members of both group protocols hand records out, read_committed members skip
/// aborted records, calm handovers and crashes are checked, and groups settle.
#[test]
fn the_workloads_cover_their_cases() {
    use sansa_conformance::sim::{run_scenario, Scenario};
    let (mut producer, mut consumer) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for seed in 0..40 {
        let scenario = Scenario::from_seed(seed);
        let (sim, report) = run_scenario(&scenario);
        assert!(!report.failed(), "{}", report.failure_text());
        producer_cases(&sim, &mut producer);
        consumer_cases(&scenario, &sim, &mut consumer);
    }
    for want in [
        "acked idempotent",
        "acked plain",
        "refused",
        "delivery-timeout",
        "broker",
        "flushed",
        "LoseResponse",
        "OutOfOrderSequenceNumber",
        "UnknownProducerId",
    ] {
        assert!(producer.contains(want), "no {want} in {producer:?}");
    }
    assert!(!producer.contains("none"), "{producer:?}");
    for want in [
        "kip-848",
        "classic",
        "deliveries",
        "aborted records under read_committed",
        "calm handover",
        "calm crash",
        "settled",
    ] {
        assert!(consumer.contains(want), "no seed had {want}: {consumer:?}");
    }
}

fn producer_cases(sim: &sansa_conformance::sim::Sim, kinds: &mut std::collections::BTreeSet<String>) {
    use sansa_conformance::sim::TraceEvent;
    for e in sim.history().sends().values() {
        let kind = match (&e.refused, e.outcomes.first()) {
            (Some(_), _) => "refused".to_string(),
            (None, Some((_, Ok(_)))) if e.idempotent => "acked idempotent".into(),
            (None, Some((_, Ok(_)))) => "acked plain".into(),
            (None, Some((_, Err(k)))) => k.split(' ').next().unwrap_or("").to_string(),
            (None, None) => "none".into(),
        };
        kinds.insert(kind);
    }
    for (_, e) in sim.trace().events() {
        match e {
            TraceEvent::Outcome { outcome, .. } if outcome == "flushed" => {
                kinds.insert("flushed".into());
            }
            TraceEvent::Fault { what } if what.contains("Produce") => {
                for f in ["LoseResponse", "OutOfOrderSequenceNumber", "UnknownProducerId"] {
                    if what.contains(f) {
                        kinds.insert(f.to_string());
                    }
                }
            }
            _ => {}
        }
    }
}

fn consumer_cases(
    scenario: &sansa_conformance::sim::Scenario,
    sim: &sansa_conformance::sim::Sim,
    seen: &mut std::collections::BTreeSet<&'static str>,
) {
    use sansa::consumer::GroupProtocol;
    let c = &sim.history().consumer;
    for k in scenario.config.clients.iter().filter_map(|k| k.consumer.as_ref()) {
        seen.insert(match k.config.group_protocol {
            GroupProtocol::Consumer => "kip-848",
            _ => "classic",
        });
    }
    if !c.deliveries.is_empty() {
        seen.insert("deliveries");
    }
    if !c.aborted.is_empty() && c.consumers.values().any(|i| i.read_committed) {
        seen.insert("aborted records under read_committed");
    }
    if c.handovers.iter().any(|h| h.checked && h.last.is_some()) {
        seen.insert("calm handover");
    }
    if c.crashes.iter().any(|x| x.bound.is_some() && !x.owned.is_empty()) {
        seen.insert("calm crash");
    }
    if c.settled.values().any(|m| !m.is_empty()) {
        seen.insert("settled");
    }
}

// ---- invariants have teeth: each fails on a hand-made bad world ----

mod teeth {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;
    use sansa::protocol::{ApiKey, Uuid};
    use sansa::{Event, RequestError, RequestId};
    use sansa_conformance::sim::harness::{Asked, ConnectionApis, ProbeRecord, RequestRecord};
    use sansa_conformance::sim::history::Consumed;
    use sansa_conformance::sim::invariants::{
        AckOrderPerConnection, AckedInLogOnce, ConsumedMatchesLog, ExactlyOneOutcome, FetchesTravelApart, Invariant,
        Liveness, NotBehindLongPoll, RecordOutcomes, ResolvesByDeadline,
    };
    use sansa_conformance::sim::{CmdId, History, RecordId, Trace, Work, World};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn check(
        inv: &dyn Invariant,
        history: &History,
        commands: &BTreeMap<CmdId, RequestRecord>,
        probes: &[ProbeRecord],
    ) -> Result<(), String> {
        check_with_connections(inv, history, commands, probes, &ConnectionApis::new())
    }

    fn check_with_connections(
        inv: &dyn Invariant,
        history: &History,
        commands: &BTreeMap<CmdId, RequestRecord>,
        probes: &[ProbeRecord],
        connection_apis: &ConnectionApis,
    ) -> Result<(), String> {
        let trace = Trace::default();
        let world = World {
            commands,
            stray: &[],
            history,
            probes,
            connection_apis,
            online: &[],
            convergence: None,
            trace: &trace,
            now: secs(100.0),
            expired_sessions_closed: 0,
        };
        inv.check(&world).map_err(|v| {
            assert_eq!(v.invariant, inv.name());
            v.detail
        })
    }

    fn rec(seq: u64) -> RecordId {
        RecordId { client: 0, seq }
    }

    fn value(id: RecordId) -> Option<Bytes> {
        Some(Bytes::from(id.value()))
    }

    /// Two records sent on one connection, acked at offsets 0 and 1, stored there.
    fn good_history() -> History {
        let mut h = History::new();
        for seq in 0..2 {
            h.sent(secs(1.0), rec(seq), "t", 0, None);
            h.on_wire(7, rec(seq).value().as_bytes());
            h.acked(secs(2.0), rec(seq), 0, seq as i64);
        }
        h.set_log("t", 0, vec![(0, value(rec(0))), (1, value(rec(1)))]);
        h
    }

    fn data_check(inv: &dyn Invariant, h: &History) -> Result<(), String> {
        check(inv, h, &BTreeMap::new(), &[])
    }

    #[test]
    fn acked_in_log_once() {
        assert_eq!(data_check(&AckedInLogOnce, &good_history()), Ok(()));
        // Lost: the log does not reach the acked offset.
        let mut h = good_history();
        h.set_log("t", 0, vec![(0, value(rec(0)))]);
        assert!(data_check(&AckedInLogOnce, &h).unwrap_err().contains("not in the log"));
        // Another record at the acked offset.
        let mut h = good_history();
        h.set_log("t", 0, vec![(0, value(rec(1))), (1, value(rec(0)))]);
        assert!(data_check(&AckedInLogOnce, &h).is_err());
        // Stored twice.
        let mut h = good_history();
        h.set_log("t", 0, vec![(0, value(rec(0))), (1, value(rec(1))), (2, value(rec(0)))]);
        assert!(data_check(&AckedInLogOnce, &h).unwrap_err().contains("stored 2 times"));
        h.duplicates_allowed = true;
        assert_eq!(data_check(&AckedInLogOnce, &h), Ok(()));
    }

    #[test]
    fn ack_order_per_connection() {
        assert_eq!(data_check(&AckOrderPerConnection, &good_history()), Ok(()));
        let mut h = History::new();
        for (seq, offset) in [(0, 5), (1, 3)] {
            h.sent(secs(1.0), rec(seq), "t", 0, None);
            h.on_wire(7, rec(seq).value().as_bytes());
            h.acked(secs(2.0), rec(seq), 0, offset);
        }
        assert!(data_check(&AckOrderPerConnection, &h).unwrap_err().contains("written before"));
        // On two connections the order is not promised.
        let mut h = History::new();
        for (seq, offset, conn) in [(0, 5, 7), (1, 3, 8)] {
            h.sent(secs(1.0), rec(seq), "t", 0, None);
            h.on_wire(conn, rec(seq).value().as_bytes());
            h.acked(secs(2.0), rec(seq), 0, offset);
        }
        assert_eq!(data_check(&AckOrderPerConnection, &h), Ok(()));
    }

    #[test]
    fn record_has_one_outcome() {
        assert_eq!(data_check(&RecordOutcomes, &good_history()), Ok(()));
        let mut h = good_history();
        h.sent(secs(1.0), rec(9), "t", 0, None);
        assert!(data_check(&RecordOutcomes, &h).is_err());
        let mut h = good_history();
        h.failed(secs(3.0), rec(0), "timeout");
        assert!(data_check(&RecordOutcomes, &h).is_err());
    }

    #[test]
    fn consumed_matches_log() {
        let mut h = good_history();
        let read = |offset, v| Consumed { at: secs(3.0), client: 1, topic: "t".into(), partition: 0, offset, value: v };
        h.consumed(read(1, value(rec(1))));
        assert_eq!(data_check(&ConsumedMatchesLog, &h), Ok(()));
        h.consumed(read(0, value(rec(1))));
        assert!(data_check(&ConsumedMatchesLog, &h).is_err());
    }

    fn command(issued: f64, outcome_at: Option<f64>, bound: Option<Duration>) -> RequestRecord {
        RequestRecord {
            what: "Metadata".into(),
            broker: None,
            issued: secs(issued),
            deadline: secs(2.0),
            asked: Some(Asked { api: ApiKey::Metadata, partition: None::<(String, Uuid, i32)> }),
            records: Vec::new(),
            probe: None,
            latency_bound: bound,
            outcomes: outcome_at
                .map(|t| (secs(t), Event::Response { id: RequestId(1), result: Err(RequestError::ClientClosed) }))
                .into_iter()
                .collect(),
        }
    }

    fn commands(r: RequestRecord) -> BTreeMap<CmdId, RequestRecord> {
        BTreeMap::from([(CmdId { client: 0, id: RequestId(1) }, r)])
    }

    #[test]
    fn exactly_one_outcome_and_deadline() {
        let h = History::new();
        assert_eq!(check(&ExactlyOneOutcome, &h, &commands(command(1.0, Some(2.0), None)), &[]), Ok(()));
        assert!(check(&ExactlyOneOutcome, &h, &commands(command(1.0, None, None)), &[]).is_err());
        let mut twice = command(1.0, Some(2.0), None);
        twice.outcomes.push(twice.outcomes[0].clone());
        assert!(check(&ExactlyOneOutcome, &h, &commands(twice), &[]).unwrap_err().contains("2 outcomes"));
        assert_eq!(check(&ResolvesByDeadline, &h, &commands(command(1.0, Some(3.0), None)), &[]), Ok(()));
        assert!(check(&ResolvesByDeadline, &h, &commands(command(1.0, Some(3.5), None)), &[]).is_err());
    }

    #[test]
    fn not_behind_long_poll() {
        let h = History::new();
        // A failure within the bound is still not a success.
        let r = command(1.0, Some(1.1), Some(secs(0.3)));
        assert!(check(&NotBehindLongPoll, &h, &commands(r), &[]).is_err());
        let r = command(1.0, None, Some(secs(0.3)));
        assert!(check(&NotBehindLongPoll, &h, &commands(r), &[]).is_err());
        assert_eq!(check(&NotBehindLongPoll, &h, &commands(command(1.0, Some(9.0), None)), &[]), Ok(()));
    }

    #[test]
    fn fetches_travel_apart() {
        let carried = |conns: &[(u64, &[ApiKey])]| -> ConnectionApis {
            conns.iter().map(|(conn, apis)| (*conn, apis.iter().map(|a| (*a, secs(1.0))).collect())).collect()
        };
        let run = |apis: &ConnectionApis| {
            check_with_connections(&FetchesTravelApart, &History::new(), &BTreeMap::new(), &[], apis)
        };
        // Each connection opens with ApiVersions; fetches on one, everything else on another.
        let apart = carried(&[
            (1, &[ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::Produce]),
            (2, &[ApiKey::ApiVersions, ApiKey::Fetch]),
        ]);
        assert_eq!(run(&apart), Ok(()));
        // A Produce on the fetch connection.
        let mixed = carried(&[
            (1, &[ApiKey::ApiVersions, ApiKey::Metadata]),
            (2, &[ApiKey::ApiVersions, ApiKey::Fetch, ApiKey::Produce]),
        ]);
        let detail = run(&mixed).unwrap_err();
        assert!(detail.contains("connection 0x2 carried Fetch") && detail.contains("Produce"), "{detail}");
        // A connection that never fetched may carry anything.
        assert_eq!(run(&carried(&[(1, &[ApiKey::Metadata, ApiKey::ListOffsets, ApiKey::Produce])])), Ok(()));
    }

    #[test]
    fn liveness() {
        let h = History::new();
        let probe = |succeeded: Option<f64>| ProbeRecord {
            why: "test".into(),
            client: 0,
            work: Work::Metadata,
            started: secs(10.0),
            bound: secs(5.0),
            attempts: Vec::new(),
            succeeded: succeeded.map(secs),
        };
        assert_eq!(check(&Liveness, &h, &BTreeMap::new(), &[probe(Some(14.0))]), Ok(()));
        assert!(check(&Liveness, &h, &BTreeMap::new(), &[probe(Some(16.0))]).is_err());
        assert!(check(&Liveness, &h, &BTreeMap::new(), &[probe(None)]).is_err());
    }

    // ---- the producer's invariants ----

    use sansa::producer::{Acks, SendId};
    use sansa_conformance::sim::invariants::{
        ProducerAtLeastOnce, ProducerBufferBound, ProducerDeliveryDeadline, ProducerIdempotentExactlyOnceInOrder,
        ProducerOneOutcome, ProducerRecovers,
    };
    use sansa_conformance::sim::{SendEntry, SendKey};

    fn key(seq: u64) -> SendKey {
        SendKey { client: 0, seq }
    }

    fn stored(k: SendKey) -> Option<Bytes> {
        // Stored values carry padding after a colon.
        Some(Bytes::from(format!("{}:...", k.value())))
    }

    fn taken(seq: u64, idempotent: bool, acks: Acks) -> SendEntry {
        SendEntry {
            topic: "t".into(),
            key: None,
            partition: None,
            sent: secs(1.0),
            id: Some(SendId(seq + 1)),
            refused: None,
            idempotent,
            acks,
            deadline: secs(31.0),
            must_ack: false,
            outcomes: Vec::new(),
        }
    }

    /// Two records of an idempotent producer, acked at t-0@0 and @1 and stored there once.
    fn sends(idempotent: bool, acks: Acks) -> History {
        let mut h = History::new();
        for seq in 0..2 {
            h.send_taken(key(seq), taken(seq, idempotent, acks));
            h.send_outcome(secs(2.0), key(seq), Ok((0, Some(seq as i64))));
        }
        h.set_log("t", 0, vec![(0, stored(key(0))), (1, stored(key(1)))]);
        h.producer_sample(0, 1_000, 500, secs(1.0));
        h.producer_end(0, 0, 0);
        h
    }

    #[test]
    fn producer_one_outcome() {
        let inv = ProducerOneOutcome;
        assert_eq!(data_check(&inv, &sends(true, Acks::All)), Ok(()));
        // Taken and never resolved.
        let mut h = sends(true, Acks::All);
        h.send_taken(key(2), taken(2, true, Acks::All));
        assert!(data_check(&inv, &h).unwrap_err().contains("p0-2 (send SendId(3)"));
        // Two outcomes.
        let mut h = sends(true, Acks::All);
        h.send_outcome(secs(3.0), key(1), Err("delivery-timeout".into()));
        assert!(data_check(&inv, &h).unwrap_err().contains("2 outcomes"));
        // Refused: no outcome is right, one is wrong.
        let mut h = sends(true, Acks::All);
        h.send_taken(
            key(2),
            SendEntry { id: None, refused: Some("buffer.memory is full".into()), ..taken(2, true, Acks::All) },
        );
        assert_eq!(data_check(&inv, &h), Ok(()));
        h.send_outcome(secs(3.0), key(2), Err("delivery-timeout".into()));
        assert!(data_check(&inv, &h).unwrap_err().contains("refused"));
        // A report for an id send never returned; records still outstanding at the end.
        let mut h = sends(true, Acks::All);
        h.stray_delivery(secs(3.0), "client 0 send SendId(9)".into());
        assert!(data_check(&inv, &h).is_err());
        let mut h = sends(true, Acks::All);
        h.producer_end(0, 0, 2);
        assert!(data_check(&inv, &h).unwrap_err().contains("outstanding"));
    }

    #[test]
    fn producer_idempotent_exactly_once_in_order() {
        let inv = ProducerIdempotentExactlyOnceInOrder;
        assert_eq!(data_check(&inv, &sends(true, Acks::All)), Ok(()));
        // Stored twice.
        let mut h = sends(true, Acks::All);
        h.set_log("t", 0, vec![(0, stored(key(0))), (1, stored(key(1))), (2, stored(key(1)))]);
        assert!(data_check(&inv, &h).unwrap_err().contains("stored 2 times"));
        // Acked, not stored.
        let mut h = sends(true, Acks::All);
        h.set_log("t", 0, vec![(0, stored(key(0)))]);
        assert!(data_check(&inv, &h).unwrap_err().contains("not in the log"));
        // Stored once each, but not where the acks said (a duplicate ack of another batch).
        let mut h = sends(true, Acks::All);
        h.set_log("t", 0, vec![(0, stored(key(0))), (1, stored(key(9))), (2, stored(key(1)))]);
        assert!(data_check(&inv, &h).unwrap_err().contains("which holds"));
        // Out of send order, acks matching the log.
        let mut h = History::new();
        for (seq, offset) in [(0, 1), (1, 0)] {
            h.send_taken(key(seq), taken(seq, true, Acks::All));
            h.send_outcome(secs(2.0), key(seq), Ok((0, Some(offset))));
        }
        h.set_log("t", 0, vec![(0, stored(key(1))), (1, stored(key(0)))]);
        assert!(data_check(&inv, &h).unwrap_err().contains("sent p0-0 before p0-1"));
        // None of this applies without idempotence.
        let mut h = sends(false, Acks::All);
        h.set_log("t", 0, vec![(0, stored(key(0))), (1, stored(key(1))), (2, stored(key(1)))]);
        assert_eq!(data_check(&inv, &h), Ok(()));
    }

    #[test]
    fn producer_at_least_once() {
        let inv = ProducerAtLeastOnce;
        assert_eq!(data_check(&inv, &sends(false, Acks::All)), Ok(()));
        // Duplicates are allowed.
        let mut h = sends(false, Acks::All);
        h.set_log("t", 0, vec![(0, stored(key(0))), (1, stored(key(1))), (2, stored(key(1)))]);
        assert_eq!(data_check(&inv, &h), Ok(()));
        // A loss is not, nor an ack pointing elsewhere.
        let mut h = sends(false, Acks::All);
        h.set_log("t", 0, vec![(0, stored(key(0)))]);
        assert!(data_check(&inv, &h).unwrap_err().contains("not in the log"));
        let mut h = sends(false, Acks::Leader);
        h.set_log("t", 0, vec![(0, stored(key(1))), (1, stored(key(0)))]);
        assert!(data_check(&inv, &h).unwrap_err().contains("which holds"));
        // acks=1 records may be lost when followers lag.
        let mut h = sends(false, Acks::Leader);
        h.set_log("t", 0, vec![(0, stored(key(0)))]);
        h.acks1_may_be_lost = true;
        assert_eq!(data_check(&inv, &h), Ok(()));
    }

    #[test]
    fn producer_buffer_bound() {
        let inv = ProducerBufferBound;
        assert_eq!(data_check(&inv, &sends(true, Acks::All)), Ok(()));
        let mut h = sends(true, Acks::All);
        h.producer_sample(0, 1_000, 1_001, secs(1.5));
        assert!(data_check(&inv, &h).unwrap_err().contains("held 1001 bytes"));
        let mut h = sends(true, Acks::All);
        h.producer_end(0, 80, 0);
        assert!(data_check(&inv, &h).unwrap_err().contains("still holds 80 bytes"));
    }

    #[test]
    fn producer_delivery_deadline() {
        let inv = ProducerDeliveryDeadline;
        assert_eq!(data_check(&inv, &sends(true, Acks::All)), Ok(()));
        let mut h = sends(true, Acks::All);
        h.send_taken(key(2), taken(2, true, Acks::All));
        h.send_outcome(secs(31.0), key(2), Err("delivery-timeout".into()));
        assert_eq!(data_check(&inv, &h), Ok(()));
        h.send_taken(key(3), taken(3, true, Acks::All));
        h.send_outcome(secs(31.01), key(3), Err("delivery-timeout".into()));
        assert!(data_check(&inv, &h).unwrap_err().contains("p0-3"));
    }

    #[test]
    fn producer_recovers() {
        let inv = ProducerRecovers;
        let mut h = sends(true, Acks::All);
        h.send_taken(key(2), SendEntry { must_ack: true, ..taken(2, true, Acks::All) });
        h.send_outcome(secs(3.0), key(2), Ok((0, Some(2))));
        assert_eq!(data_check(&inv, &h), Ok(()));
        // A producer that failed for good on a broker error is excused.
        h.send_taken(
            key(4),
            SendEntry {
                must_ack: true,
                id: None,
                refused: Some("fatal-broker BrokerNotAvailable".into()),
                ..taken(4, true, Acks::All)
            },
        );
        assert_eq!(data_check(&inv, &h), Ok(()));
        h.send_taken(key(3), SendEntry { must_ack: true, ..taken(3, true, Acks::All) });
        h.send_outcome(secs(3.0), key(3), Err("delivery-timeout".into()));
        assert!(data_check(&inv, &h).unwrap_err().contains("p0-3"));
    }
}

// ---- the plants runner ----

#[test]
fn plants_report_one_line_per_plant_then_the_total() {
    use sansa::plants::Plant;
    use sansa_conformance::sim::plants::{hunt, report, PlantResult};
    let results = vec![
        PlantResult { plant: Plant::SwapOwners, caught: Some((17, vec!["answer-matches-request"])), seeds: 18 },
        PlantResult { plant: Plant::DropRetry, caught: None, seeds: 300 },
    ];
    let (lines, all) = report(&results);
    assert_eq!(lines, ["swap-owners: caught at seed 17", "drop-retry: not caught in 300 seeds", "2 plants, 1 caught"]);
    assert!(!all);
    let (_, all) = report(&results[..1]);
    assert!(all);
    // The runner itself: a real hunt over a couple of seeds yields one of the two forms.
    let r = hunt(Plant::SwapOwners, 2);
    let line = r.line();
    assert!(line == "swap-owners: not caught in 2 seeds" || line.starts_with("swap-owners: caught at seed "), "{line}");
}

// ---- connection roles ----

/// The harness records what each connection carried, so `fetches-travel-apart` checks real
/// traffic: in a run with fetches and produces, both show up, on different connections.
#[test]
fn fetches_and_produces_are_seen_on_connections_of_their_own() {
    use sansa::protocol::ApiKey;
    let (sim, report) = run_seed(7);
    assert!(!report.failed(), "{}", report.failure_text());
    let carrying = |api| sim.connection_apis().iter().filter(|(_, apis)| apis.contains_key(&api)).count();
    assert!(carrying(ApiKey::Fetch) > 0 && carrying(ApiKey::Produce) > 0, "{:?}", sim.connection_apis());
    let mixed = sim
        .connection_apis()
        .values()
        .filter(|apis| apis.contains_key(&ApiKey::Fetch) && apis.contains_key(&ApiKey::Produce))
        .count();
    assert_eq!(mixed, 0);
}

/// Bugs the simulator found in the consumer, each pinned against the fake cluster.
mod consumer_regressions {
    use std::time::Duration;

    use sansa::consumer::{CommittedOffset, ConsumerConfig, OffsetReset, TopicPartition};
    use sansa::producer::ProducerRecord;
    use sansa::protocol::{ApiKey, ErrorCode};
    use sansa::{Config, Event};
    use sansa_conformance::fake_cluster::world::World;
    use sansa_conformance::fake_cluster::{FakeClusterConfig, Fault};

    fn world(group: bool) -> World {
        let mut c = ConsumerConfig::default().with_auto_offset_reset(OffsetReset::Earliest);
        if group {
            c = c.with_group_id("g");
        }
        let mut w = World::new(
            FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() },
            |config: Config| {
                config.with_consumer(c).with_retry_backoff(Duration::from_millis(50), Duration::from_millis(200))
            },
        );
        w.cluster.create_topic("t", 1, 1);
        for i in 0..5 {
            w.client.send(w.now, ProducerRecord::new("t", format!("v{i}"))).expect("taken");
        }
        w.pump();
        assert!(w.run_until(Duration::from_secs(10), |w| w.client.producer_outstanding() == 0));
        w
    }

    /// Polls for `limit` of virtual time; returns the offsets handed out.
    fn consume(w: &mut World, limit: Duration) -> Vec<i64> {
        let mut out = Vec::new();
        let end = w.now + limit;
        while w.now < end {
            if let Ok(records) = w.client.poll_records(w.now, 100) {
                out.extend(records.iter().map(|r| r.offset));
            }
            w.pump();
            if out.len() >= 5 || (!w.client.has_records() && !w.step()) {
                break;
            }
        }
        out
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// A partition error no retry was expected to fix (UNKNOWN_SERVER_ERROR, or
    /// BROKER_NOT_AVAILABLE from a broker having a bad moment) used to stop the partition for
    /// good: the consumer owned it and never read it again. Java fetches it again.
    #[test]
    fn a_fetch_partition_error_is_retried() {
        for code in [ErrorCode::UnknownServerError, ErrorCode::BrokerNotAvailable] {
            let mut w = world(false);
            w.cluster.inject(Fault::error(code).on_api(ApiKey::Fetch).on_partition("t", 0).times(2));
            w.client.assign(w.now, vec![tp()]).unwrap();
            assert_eq!(consume(&mut w, Duration::from_secs(10)), vec![0, 1, 2, 3, 4], "{code:?}");
        }
    }

    /// The same for the offset reset (ListOffsets) a partition without a position starts with.
    #[test]
    fn an_offset_reset_error_is_retried() {
        for code in [ErrorCode::UnknownServerError, ErrorCode::BrokerNotAvailable] {
            let mut w = world(false);
            w.cluster.inject(Fault::error(code).on_api(ApiKey::ListOffsets).on_partition("t", 0).times(2));
            w.client.assign(w.now, vec![tp()]).unwrap();
            assert_eq!(consume(&mut w, Duration::from_secs(10)), vec![0, 1, 2, 3, 4], "{code:?}");
        }
    }

    /// A failed read of the group's committed offsets, which assigned partitions start from,
    /// used to leave them without a position for good.
    #[test]
    fn a_failed_starting_offset_read_is_retried() {
        let mut w = world(true);
        w.cluster.inject(Fault::error(ErrorCode::UnknownServerError).on_api(ApiKey::OffsetFetch).times(2));
        w.client.assign(w.now, vec![tp()]).unwrap();
        assert_eq!(consume(&mut w, Duration::from_secs(10)), vec![0, 1, 2, 3, 4]);
    }

    /// Without the topic's id (metadata from before topic ids), a commit goes by name, at
    /// OffsetCommit v9, instead of naming an all-zero id the broker does not know.
    #[test]
    fn a_commit_without_a_topic_id_goes_by_name() {
        let mut w = world(true);
        w.cluster.set_api_versions(ApiKey::Metadata, Some((0, 9)));
        w.client.refresh_metadata(w.now, None);
        w.pump();
        w.run_until(Duration::from_secs(2), |_| false);
        w.client.assign(w.now, vec![tp()]).unwrap();
        assert_eq!(consume(&mut w, Duration::from_secs(10)), vec![0, 1, 2, 3, 4]);
        let id = w.client.commit(w.now, vec![(tp(), CommittedOffset::new(5))]);
        w.pump();
        let done = |w: &World| w.events.iter().any(|e| matches!(e, Event::Committed { id: i, .. } if *i == id));
        assert!(w.run_until(Duration::from_secs(10), done));
        let result = w.events.iter().find_map(|e| match e {
            Event::Committed { id: i, result } if *i == id => Some(result.clone()),
            _ => None,
        });
        assert!(matches!(result, Some(Ok(()))), "{result:?}");
        assert_eq!(w.cluster.committed_offsets("g").get(&("t".to_string(), 0)), Some(&5));
    }
}

/// Seeds that once failed on timing the group's connections decide: requests to the
/// coordinator's broker waited behind a member's JoinGroup (1463: `not-behind-long-poll`);
/// a commit made while its member's JoinGroup was in flight queued behind it and was refused
/// in the next generation (24: `consumer-clean-handover`); a partition whose position check
/// met BROKER_NOT_AVAILABLE was given up for good (1450: `consumer-at-least-once`); a
/// position moved past an aborted transaction kept an older leader's epoch, so a later
/// validation took it for truncated and the committed offset went back (3065).
#[test]
fn regression_seeds_keep_group_traffic_apart() {
    for seed in [1463, 24, 1450, 3065] {
        let (_, report) = run_seed(seed);
        assert!(report.error.is_none(), "seed {seed}: {}", report.failure_text());
    }
}
