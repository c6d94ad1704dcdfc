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

use std::time::Duration;

use sansa::protocol::{ApiKey, ErrorCode, ResponseBody};
use sansa::{Event, RequestError, RequestId};
use sansa_conformance::fake_cluster::{Fault, FaultAction};
use sansa_conformance::sim::scenario::{check_outcomes, converge, metadata_diff, outcome_kind};
use sansa_conformance::sim::{Action, Sim, SimConfig, TraceEvent, Work};

const STEPS: u64 = 1_000_000;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Issues `work` at `at`, runs until then, and returns its id.
fn issue_at(sim: &mut Sim, at: f64, work: Work) -> RequestId {
    sim.drive(secs(at)).unwrap();
    sim.issue(work)
}

fn outcome(sim: &Sim, id: RequestId) -> &Event {
    sim.record(id).and_then(|r| r.outcome()).unwrap_or_else(|| panic!("#{} has no outcome", id.0))
}

fn kind(sim: &Sim, id: RequestId) -> String {
    outcome_kind(outcome(sim, id))
}

/// Finishes a run: faults end, everything completes, metadata converges, and no invariant
/// is broken.
fn finish(mut sim: Sim) -> Sim {
    sim.drive_bounded(STEPS).unwrap();
    converge(&mut sim).unwrap();
    check_outcomes(&mut sim);
    assert!(sim.violations().is_empty(), "{:#?}\n{}", sim.violations(), sim.trace().tail(40));
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
    let cfg = SimConfig { request_timeout: Duration::from_secs(5), ..SimConfig::default() };
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
    let cfg = SimConfig { topics: vec![("events".into(), 1)], ..SimConfig::default() };
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
}

#[test]
fn swallowed_request_times_out_and_the_next_one_succeeds() {
    let cfg = SimConfig { request_timeout: Duration::from_secs(2), ..SimConfig::default() };
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

#[test]
fn fifty_seeds_keep_every_invariant() {
    let mut failures = Vec::new();
    for seed in 0..50 {
        let (sim, report) = run_seed(seed);
        assert!(sim.steps() > 0);
        if report.error.is_some() || !report.violations.is_empty() {
            failures.push(report.failure_text());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
