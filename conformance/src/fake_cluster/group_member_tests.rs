//! Classic consumer groups with sansa's member machine against the fake cluster: several
//! clients in one virtual-clock world.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sansa::consumer::{ConsumerConfig, ConsumerRecord, GroupProtocol, OffsetReset, TopicPartition};
use sansa::producer::ProducerRecord;
use sansa::protocol::{ApiKey, ErrorCode, TopicName};
use sansa::Event;

use super::world::Worlds;
use super::FakeClusterConfig;

const TOPIC: &str = "g";

fn cluster(partitions: i32, records: usize) -> Worlds {
    let mut w = Worlds::new(FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() });
    w.cluster.create_topic(TOPIC, partitions, 3);
    if records > 0 {
        let p = w.add(|c| c);
        for i in 0..records {
            w.clients[p].send(w.now, ProducerRecord::new(TOPIC, format!("v{i}")).with_key(format!("k{i}"))).unwrap();
        }
        w.pump();
        for _ in 0..1000 {
            if w.clients[p].producer_outstanding() == 0 {
                break;
            }
            w.step();
        }
        assert_eq!(w.clients[p].producer_outstanding(), 0);
    }
    w
}

fn member(w: &mut Worlds, assignor: &str, tune: impl FnOnce(ConsumerConfig) -> ConsumerConfig) -> usize {
    let config = tune(
        ConsumerConfig::default()
            .with_group_id("group")
            .with_auto_offset_reset(OffsetReset::Earliest)
            .with_assignors(&[assignor])
            .with_session_timeout(Duration::from_secs(10), Duration::from_secs(1))
            .with_max_poll_interval(Duration::from_secs(30)),
    );
    let i = w.add(|c| c.with_consumer(config));
    w.clients[i].subscribe(w.now, vec![TopicName::from(TOPIC)]).unwrap();
    w.pump();
    i
}

/// Runs the world for `time`, each member in `polling` polling as it goes; returns what they
/// consumed.
fn run(w: &mut Worlds, polling: &[usize], time: Duration, out: &mut BTreeMap<usize, Vec<ConsumerRecord>>) {
    let end = w.now + time;
    while w.now < end {
        let mut got = false;
        for &i in polling {
            let records = w.clients[i].poll_records(w.now, 500).unwrap_or_else(|e| panic!("member {i}: {e}"));
            got |= !records.is_empty();
            out.entry(i).or_default().extend(records);
        }
        w.pump();
        if !got && !w.step() {
            break;
        }
    }
}

/// Each member's partitions, checked disjoint and covering every partition.
fn assert_partitioned(w: &Worlds, members: &[usize], partitions: i32) -> BTreeMap<usize, BTreeSet<TopicPartition>> {
    let mut seen = BTreeSet::new();
    let mut by_member = BTreeMap::new();
    for &i in members {
        let owned: BTreeSet<TopicPartition> = w.clients[i].assignment().into_iter().collect();
        for tp in &owned {
            assert!(seen.insert(tp.clone()), "{tp} owned twice");
        }
        by_member.insert(i, owned);
    }
    assert_eq!(seen.len(), partitions as usize, "every partition owned: {by_member:?}");
    by_member
}

/// Every record of the topic, consumed at least once.
fn assert_all_consumed(w: &Worlds, out: &BTreeMap<usize, Vec<ConsumerRecord>>, partitions: i32) {
    let mut offsets: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for records in out.values() {
        for r in records {
            offsets.entry(r.partition).or_default().insert(r.offset);
        }
    }
    for p in 0..partitions {
        let end = w.cluster.log_end_offset(TOPIC, p).unwrap();
        let got = offsets.get(&p).map_or(0, |s| s.len() as i64);
        assert_eq!(got, end, "partition {p}: consumed {got} distinct offsets of {end}");
    }
}

#[test]
fn three_members_share_twelve_partitions_with_every_assignor() {
    for assignor in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
        let mut w = cluster(12, 2400);
        let members: Vec<usize> = (0..3).map(|_| member(&mut w, assignor, |c| c)).collect();
        let mut out = BTreeMap::new();
        run(&mut w, &members, Duration::from_secs(20), &mut out);
        let owned = assert_partitioned(&w, &members, 12);
        for (i, ps) in &owned {
            assert_eq!(ps.len(), 4, "{assignor}: member {i} owns {ps:?}");
        }
        assert_all_consumed(&w, &out, 12);
        let total: usize = out.values().map(Vec::len).sum();
        assert_eq!(total, 2400, "{assignor}: no record twice without a rebalance midway");
        let metrics: BTreeMap<&str, f64> = w.clients[members[0]].consumer_metrics(w.now).into_iter().collect();
        assert!(metrics["rebalance-total"] >= 1.0, "{metrics:?}");
        assert!(metrics["heartbeat-total"] >= 1.0, "{metrics:?}");
        assert_eq!(metrics["assigned-partitions"], 4.0);
    }
}

#[test]
fn a_joining_member_and_a_leaving_one_keep_the_group_whole() {
    for assignor in ["range", "cooperative-sticky"] {
        let mut w = cluster(12, 3000);
        let mut members: Vec<usize> = (0..3).map(|_| member(&mut w, assignor, |c| c)).collect();
        let mut out = BTreeMap::new();
        run(&mut w, &members, Duration::from_millis(300), &mut out);
        let fourth = member(&mut w, assignor, |c| c);
        members.push(fourth);
        run(&mut w, &members, Duration::from_secs(20), &mut out);
        let owned = assert_partitioned(&w, &members, 12);
        assert!(owned.values().all(|ps| ps.len() == 3), "{assignor}: {owned:?}");
        // One leaves politely.
        let gone = members.remove(0);
        w.clients[gone].unsubscribe(w.now);
        w.pump();
        run(&mut w, &members, Duration::from_secs(20), &mut out);
        assert!(w.clients[gone].assignment().is_empty());
        assert_partitioned(&w, &members, 12);
        // More records after the rebalances: all of them reach the group.
        let p = 0;
        for i in 0..600 {
            w.clients[p].send(w.now, ProducerRecord::new(TOPIC, format!("late{i}"))).unwrap();
        }
        run(&mut w, &members, Duration::from_secs(20), &mut out);
        assert_all_consumed(&w, &out, 12);
    }
}

#[test]
fn a_crashed_member_s_partitions_move_within_the_session_timeout() {
    let mut w = cluster(6, 600);
    let members: Vec<usize> = (0..3).map(|_| member(&mut w, "range", |c| c)).collect();
    let mut out = BTreeMap::new();
    run(&mut w, &members, Duration::from_secs(5), &mut out);
    assert_partitioned(&w, &members, 6);
    let crashed_at = w.now;
    w.crash(members[2]);
    let alive = &members[..2];
    let mut moved = None;
    for _ in 0..200 {
        run(&mut w, alive, Duration::from_millis(500), &mut out);
        let owned: usize = alive.iter().map(|i| w.clients[*i].assignment().len()).sum();
        if owned == 6 {
            moved = Some(w.now - crashed_at);
            break;
        }
    }
    let moved = moved.expect("the survivors took every partition");
    // Session timeout 10 s, then a rebalance of at most a heartbeat interval or so.
    assert!(moved <= Duration::from_secs(14), "took {moved:?}");
    assert_partitioned(&w, alive, 6);
    run(&mut w, alive, Duration::from_secs(10), &mut out);
    assert_all_consumed(&w, &out, 6);
}

#[test]
fn a_member_that_stops_polling_leaves_and_rejoins_when_it_polls_again() {
    let mut w = cluster(4, 0);
    let a = member(&mut w, "range", |c| c);
    let b = member(&mut w, "range", |c| c);
    let mut out = BTreeMap::new();
    run(&mut w, &[a, b], Duration::from_secs(5), &mut out);
    assert_partitioned(&w, &[a, b], 4);
    // b stops polling for longer than max.poll.interval.ms (30 s): it leaves, a takes all.
    run(&mut w, &[a], Duration::from_secs(40), &mut out);
    assert!(w.clients[b].assignment().is_empty());
    assert_partitioned(&w, &[a], 4);
    // b polls again and is back in the group.
    run(&mut w, &[a, b], Duration::from_secs(10), &mut out);
    assert_partitioned(&w, &[a, b], 4);
    assert!(!w.clients[b].assignment().is_empty());
}

#[test]
fn a_static_member_that_restarts_in_time_gets_its_partitions_back_without_a_rebalance() {
    let mut w = cluster(6, 0);
    let a = member(&mut w, "range", |c| c.with_group_instance_id("a"));
    let b = member(&mut w, "range", |c| c.with_group_instance_id("b"));
    let mut out = BTreeMap::new();
    run(&mut w, &[a, b], Duration::from_secs(5), &mut out);
    let before = assert_partitioned(&w, &[a, b], 6);
    let a_rebalances = w.events[a].iter().filter(|e| matches!(e, Event::Rebalance(_))).count();
    w.crash(b);
    let b2 = member(&mut w, "range", |c| c.with_group_instance_id("b"));
    run(&mut w, &[a, b2], Duration::from_secs(5), &mut out);
    let after = assert_partitioned(&w, &[a, b2], 6);
    assert_eq!(before[&b], after[&b2], "the static member got its partitions back");
    let a_rebalances_after = w.events[a].iter().filter(|e| matches!(e, Event::Rebalance(_))).count();
    assert_eq!(a_rebalances, a_rebalances_after, "the other member saw no rebalance");
}

#[test]
fn cooperative_rebalancing_never_revokes_partitions_that_stay() {
    let mut w = cluster(6, 0);
    let a = member(&mut w, "cooperative-sticky", |c| c);
    let mut out = BTreeMap::new();
    run(&mut w, &[a], Duration::from_secs(5), &mut out);
    assert_eq!(w.clients[a].assignment().len(), 6);
    let b = member(&mut w, "cooperative-sticky", |c| c);
    run(&mut w, &[a, b], Duration::from_secs(10), &mut out);
    assert_partitioned(&w, &[a, b], 6);
    let revoked: Vec<TopicPartition> = w.events[a]
        .iter()
        .filter_map(|e| match e {
            Event::Rebalance(r) => Some(r.revoked.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let kept: BTreeSet<TopicPartition> = w.clients[a].assignment().into_iter().collect();
    assert_eq!(revoked.len(), 3, "a gave up exactly the three partitions b took: {revoked:?}");
    assert!(revoked.iter().all(|tp| !kept.contains(tp)));
}

#[test]
fn commits_carry_the_generation_and_a_new_member_resumes_from_them() {
    let mut w = cluster(4, 400);
    let a = member(&mut w, "range", |c| c.with_auto_commit(false));
    let mut out = BTreeMap::new();
    run(&mut w, &[a], Duration::from_secs(5), &mut out);
    assert_eq!(out[&a].len(), 400);
    let positions = w.clients[a].positions();
    let id = w.clients[a].commit(w.now, positions);
    run(&mut w, &[a], Duration::from_secs(1), &mut out);
    assert!(w.events[a].iter().any(|e| matches!(e, Event::Committed { id: i, result: Ok(()) } if *i == id)));
    w.clients[a].unsubscribe(w.now);
    run(&mut w, &[], Duration::from_secs(1), &mut out);
    let b = member(&mut w, "range", |c| c);
    run(&mut w, &[b], Duration::from_secs(5), &mut out);
    assert!(out.get(&b).is_none_or(Vec::is_empty), "b starts at the committed offsets: nothing to read");
}

#[test]
fn with_a_listener_revoked_partitions_wait_for_the_acknowledgement() {
    for assignor in ["range", "cooperative-sticky"] {
        let mut w = cluster(4, 0);
        let a = member(&mut w, assignor, |c| c);
        w.clients[a].set_rebalance_listener(w.now, true);
        let mut out = BTreeMap::new();
        run(&mut w, &[a], Duration::from_secs(5), &mut out);
        assert_eq!(w.clients[a].assignment().len(), 4);
        let b = member(&mut w, assignor, |c| c);
        run(&mut w, &[a, b], Duration::from_secs(10), &mut out);
        // a was asked to give partitions up and has not acknowledged: it keeps them, b waits.
        let pending = w.events[a].iter().rev().find_map(|e| match e {
            Event::Rebalance(r) if !r.revoked.is_empty() => Some(r.clone()),
            _ => None,
        });
        let pending = pending.unwrap_or_else(|| panic!("{assignor}: a revocation"));
        let id = pending.ack.expect("it waits for an acknowledgement");
        for tp in &pending.revoked {
            assert!(w.clients[a].assignment().contains(tp), "{assignor}: {tp} kept until the ack");
        }
        assert!(w.clients[b].assignment().iter().all(|tp| !pending.revoked.contains(tp)), "{assignor}: b waits");
        // The application commits what it read, then acknowledges: the rebalance completes.
        let positions = w.clients[a].positions();
        w.clients[a].commit(w.now, positions);
        w.clients[a].ack_rebalance(w.now, id);
        run(&mut w, &[a, b], Duration::from_secs(10), &mut out);
        let owned = assert_partitioned(&w, &[a, b], 4);
        assert!(owned.values().all(|ps| ps.len() == 2), "{assignor}: {owned:?}");
    }
}

fn member848(w: &mut Worlds, tune: impl FnOnce(ConsumerConfig) -> ConsumerConfig) -> usize {
    member(w, "range", |c| tune(c.with_group_protocol(sansa::consumer::GroupProtocol::Consumer)))
}

/// A member whose only commits are its own before a revoke or on close (auto-commit every
/// 600 s), a refused one retried after `backoff`.
fn committing_member(
    w: &mut Worlds,
    protocol: GroupProtocol,
    backoff: Duration,
    tune: impl FnOnce(ConsumerConfig) -> ConsumerConfig,
) -> usize {
    let mut config = tune(
        ConsumerConfig::default()
            .with_group_id("group")
            .with_auto_offset_reset(OffsetReset::Earliest)
            .with_group_protocol(protocol)
            .with_auto_commit(true),
    );
    config.auto_commit_interval = Duration::from_secs(600);
    let i = w.add(|c| c.with_retry_backoff(backoff, backoff).with_consumer(config));
    w.clients[i].subscribe(w.now, vec![TopicName::from(TOPIC)]).unwrap();
    w.pump();
    i
}

#[test]
fn kip848_members_share_the_partitions_through_joins_leaves_and_crashes() {
    let mut w = cluster(12, 2400);
    let mut members: Vec<usize> = (0..3).map(|_| member848(&mut w, |c| c)).collect();
    let mut out = BTreeMap::new();
    run(&mut w, &members, Duration::from_secs(20), &mut out);
    let owned = assert_partitioned(&w, &members, 12);
    assert!(owned.values().all(|ps| ps.len() == 4), "{owned:?}");
    assert_all_consumed(&w, &out, 12);
    assert_eq!(out.values().map(Vec::len).sum::<usize>(), 2400, "nothing twice without a rebalance midway");
    // A fourth joins: partitions move, revoked first, none owned twice at any step.
    let fourth = member848(&mut w, |c| c);
    members.push(fourth);
    for _ in 0..40 {
        run(&mut w, &members, Duration::from_millis(500), &mut out);
        let mut seen = BTreeSet::new();
        for &i in &members {
            for tp in w.clients[i].assignment() {
                assert!(seen.insert(tp.clone()), "{tp} owned twice during the rebalance");
            }
        }
    }
    let owned = assert_partitioned(&w, &members, 12);
    assert!(owned.values().all(|ps| ps.len() == 3), "{owned:?}");
    // One leaves politely, one crashes: the rest take over (the crashed one after its
    // session, 45 s on the coordinator).
    let gone = members.remove(0);
    w.clients[gone].unsubscribe(w.now);
    let crashed = members.remove(0);
    w.crash(crashed);
    run(&mut w, &members, Duration::from_secs(60), &mut out);
    assert!(w.clients[gone].assignment().is_empty());
    assert_partitioned(&w, &members, 12);
    let p = 0;
    for i in 0..600 {
        w.clients[p].send(w.now, ProducerRecord::new(TOPIC, format!("late{i}"))).unwrap();
    }
    run(&mut w, &members, Duration::from_secs(20), &mut out);
    assert_all_consumed(&w, &out, 12);
}

#[test]
fn kip848_revocations_wait_for_the_listener_and_commits_carry_the_epoch() {
    let mut w = cluster(4, 400);
    let a = member848(&mut w, |c| c.with_auto_commit(false));
    w.clients[a].set_rebalance_listener(w.now, true);
    let mut out = BTreeMap::new();
    run(&mut w, &[a], Duration::from_secs(10), &mut out);
    assert_eq!(w.clients[a].assignment().len(), 4);
    assert_eq!(out[&a].len(), 400);
    let positions = w.clients[a].positions();
    let id = w.clients[a].commit(w.now, positions);
    run(&mut w, &[a], Duration::from_secs(1), &mut out);
    assert!(w.events[a].iter().any(|e| matches!(e, Event::Committed { id: i, result: Ok(()) } if *i == id)));
    let b = member848(&mut w, |c| c);
    run(&mut w, &[a, b], Duration::from_secs(15), &mut out);
    let pending = w.events[a].iter().rev().find_map(|e| match e {
        Event::Rebalance(r) if !r.revoked.is_empty() => Some(r.clone()),
        _ => None,
    });
    let pending = pending.expect("a revocation");
    assert!(w.clients[b].assignment().iter().all(|tp| !pending.revoked.contains(tp)), "b waits for a's ack");
    w.clients[a].ack_rebalance(w.now, pending.ack.expect("an ack"));
    run(&mut w, &[a, b], Duration::from_secs(15), &mut out);
    let owned = assert_partitioned(&w, &[a, b], 4);
    assert!(owned.values().all(|ps| ps.len() == 2), "{owned:?}");
    // b starts at a's committed offsets: nothing to read again.
    assert!(out.get(&b).is_none_or(Vec::is_empty));
}

/// A KIP-848 member that left for a poll timeout sends its leave once its commit before it
/// is through; polled again while that commit is held up, it joins afresh and gets its
/// partitions back (the join of simulator seed 1069's member, made in that state, lacked
/// its owned partitions and was refused: `next_gen::tests`).
#[test]
fn kip848_a_member_polled_again_while_its_leave_waits_for_a_commit_rejoins() {
    let mut w = cluster(4, 400);
    let a = member848(&mut w, |mut c| {
        c.auto_commit_interval = Duration::from_secs(600);
        c.with_auto_commit(true)
    });
    let mut out = BTreeMap::new();
    run(&mut w, &[a], Duration::from_secs(10), &mut out);
    assert_eq!(out[&a].len(), 400);
    // The application stops polling past max.poll.interval.ms (30 s): the member commits,
    // and leaves once that commit is through; the coordinator holds the commit 40 s.
    w.cluster.inject(
        super::Fault::new(super::FaultAction::Delay(Duration::from_secs(40)))
            .on_api(sansa::protocol::ApiKey::OffsetCommit)
            .times(1),
    );
    run(&mut w, &[], Duration::from_secs(35), &mut out);
    assert!(w.clients[a].assignment().is_empty(), "left for the poll timeout");
    // Polled again while the commit is still held: it joins again and gets its partitions
    // back once the coordinator answers.
    run(&mut w, &[a], Duration::from_secs(60), &mut out);
    assert_eq!(w.clients[a].assignment().len(), 4);
}

#[test]
fn a_pattern_subscription_picks_up_topics_created_later() {
    for protocol in [sansa::consumer::GroupProtocol::Classic, sansa::consumer::GroupProtocol::Consumer] {
        let mut w = Worlds::new(FakeClusterConfig { auto_create_topics: false, ..FakeClusterConfig::default() });
        w.cluster.create_topic("metrics.cpu", 2, 1);
        w.cluster.create_topic("orders", 2, 1);
        let config = ConsumerConfig::default()
            .with_group_id("pat")
            .with_auto_offset_reset(OffsetReset::Earliest)
            .with_group_protocol(protocol)
            .with_session_timeout(Duration::from_secs(10), Duration::from_secs(1));
        let a = w.add(|c| c.with_consumer(config).with_metadata_max_age(Duration::from_secs(5)));
        assert!(matches!(
            w.clients[a].subscribe_pattern(w.now, "metrics.("),
            Err(sansa::consumer::ConsumeError::InvalidPattern { .. })
        ));
        w.clients[a].subscribe_pattern(w.now, r"metrics\..*").unwrap();
        let mut out = BTreeMap::new();
        run(&mut w, &[a], Duration::from_secs(10), &mut out);
        let topics: BTreeSet<String> = w.clients[a].assignment().iter().map(|tp| tp.topic.to_string()).collect();
        assert_eq!(topics, BTreeSet::from(["metrics.cpu".to_string()]), "{protocol:?}");
        w.cluster.create_topic("metrics.disk", 3, 1);
        run(&mut w, &[a], Duration::from_secs(20), &mut out);
        assert_eq!(w.clients[a].assignment().len(), 5, "{protocol:?}: the new topic joined");
        assert!(w.clients[a].assignment().iter().all(|tp| tp.topic.as_str() != "orders"));
    }
}

/// A KIP-848 member that unsubscribes or closes sends its leave at once, as Java's member
/// does (a leaving heartbeat goes out without waiting for the interval): half-way through
/// the coordinator's 5 s heartbeat interval, the leave is answered within a round trip.
#[test]
fn kip848_a_member_leaves_at_once() {
    for closing in [false, true] {
        let mut w = cluster(4, 0);
        let a = member848(&mut w, |c| c.with_auto_commit(false));
        let b = member848(&mut w, |c| c.with_auto_commit(false));
        let mut out = BTreeMap::new();
        run(&mut w, &[a, b], Duration::from_secs(20), &mut out);
        assert_partitioned(&w, &[a, b], 4);
        run(&mut w, &[a, b], Duration::from_millis(2500), &mut out);
        let heartbeats = |w: &Worlds| {
            let metrics: BTreeMap<&str, f64> = w.clients[a].consumer_metrics(w.now).into_iter().collect();
            metrics["heartbeat-total"]
        };
        let before = heartbeats(&w);
        let start = w.now;
        if closing {
            w.clients[a].close(w.now);
        } else {
            w.clients[a].unsubscribe(w.now);
        }
        run(&mut w, &[b], Duration::from_millis(200), &mut out);
        assert!(w.now - start < Duration::from_secs(1));
        if closing {
            assert!(w.clients[a].is_closed(), "closed within a round trip of the leave");
        } else {
            assert_eq!(heartbeats(&w), before + 1.0, "the leave answered");
        }
        // b takes over at its next heartbeat.
        run(&mut w, &[b], Duration::from_secs(6), &mut out);
        assert_eq!(w.clients[b].assignment().len(), 4);
    }
}

/// A KIP-848 member whose leave waits for its commit before a revoke keeps its session with
/// plain heartbeats meanwhile, as Java's member does while it prepares to leave: the
/// coordinator does not expire it (45 s) while the commit is retried, and the partitions'
/// next owner starts where it stopped instead of reading them again.
#[test]
fn kip848_a_member_keeps_its_session_while_its_leave_waits_for_a_commit() {
    let mut w = cluster(4, 400);
    let a = committing_member(&mut w, GroupProtocol::Consumer, Duration::from_secs(25), |c| {
        c.with_max_poll_interval(Duration::from_secs(120))
    });
    let b = member848(&mut w, |c| c.with_auto_commit(false));
    let mut out = BTreeMap::new();
    run(&mut w, &[a, b], Duration::from_secs(20), &mut out);
    assert_partitioned(&w, &[a, b], 4);
    assert_eq!(out.values().map(Vec::len).sum::<usize>(), 400);
    let from_a: BTreeSet<TopicPartition> = w.clients[a].assignment().into_iter().collect();
    // a leaves; its commit (two partitions, a use each) is refused twice and goes through
    // at about 50 s.
    w.cluster.inject(super::Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit).times(4));
    w.clients[a].unsubscribe(w.now);
    let start = w.now;
    let mut read_again = Vec::new();
    while w.now < start + Duration::from_secs(80) {
        let mut more = BTreeMap::new();
        run(&mut w, &[b], Duration::from_millis(500), &mut more);
        read_again.extend(
            more.remove(&b)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| from_a.contains(&TopicPartition { topic: r.topic.clone(), partition: r.partition })),
        );
        let committed = w.cluster.committed_offsets("group");
        for tp in w.clients[b].assignment() {
            assert!(
                !from_a.contains(&tp) || committed.contains_key(&(tp.topic.to_string(), tp.partition)),
                "{tp} moved before a's commit, at {:?}",
                w.now - start
            );
        }
    }
    assert_eq!(w.clients[b].assignment().len(), 4, "b took over once a left");
    assert!(read_again.is_empty(), "b read {} of a's records again", read_again.len());
}

/// As Java's close (a synchronous commit, then the leave): a member that closes with
/// auto-commit leaves once its last commit is through, so a commit refused once is retried
/// while the member is still in the group instead of after its leave, refused for good.
#[test]
fn a_closing_member_leaves_once_its_last_commit_is_through() {
    for protocol in [GroupProtocol::Classic, GroupProtocol::Consumer] {
        let mut w = cluster(4, 400);
        let a = committing_member(&mut w, protocol, Duration::from_secs(2), |c| c);
        let mut out = BTreeMap::new();
        run(&mut w, &[a], Duration::from_secs(20), &mut out);
        assert_eq!(out[&a].len(), 400);
        // The close's commit of four partitions is refused once (a use per partition).
        w.cluster
            .inject(super::Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit).times(4));
        w.clients[a].close(w.now);
        run(&mut w, &[], Duration::from_secs(10), &mut out);
        assert!(w.clients[a].is_closed(), "{protocol:?}");
        let committed = w.cluster.committed_offsets("group");
        for p in 0..4 {
            let end = w.cluster.log_end_offset(TOPIC, p).unwrap();
            assert_eq!(committed.get(&(TOPIC.to_string(), p)), Some(&end), "{protocol:?}: partition {p}");
        }
    }
}

/// A classic member fenced (UNKNOWN_MEMBER_ID) while its leave waits for the close's commit
/// is out of the group: it does not join again on its way out, so a member joining after it
/// gets every partition at once instead of waiting for the ghost's session to end.
#[test]
fn a_closing_member_fenced_while_its_leave_waits_does_not_join_again() {
    let mut w = cluster(4, 400);
    let a = committing_member(&mut w, GroupProtocol::Classic, Duration::from_secs(5), |c| {
        c.with_assignors(&["range"]).with_session_timeout(Duration::from_secs(10), Duration::from_secs(1))
    });
    let mut out = BTreeMap::new();
    run(&mut w, &[a], Duration::from_secs(20), &mut out);
    assert_eq!(out[&a].len(), 400);
    // The close's commit is refused once (a use per partition); the next heartbeat finds the
    // member gone.
    w.cluster.inject(super::Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit).times(4));
    w.cluster.inject(super::Fault::error(ErrorCode::UnknownMemberId).on_api(ApiKey::Heartbeat).times(1));
    w.clients[a].close(w.now);
    run(&mut w, &[], Duration::from_secs(8), &mut out);
    assert!(w.clients[a].is_closed());
    let b = member(&mut w, "range", |c| c);
    let start = w.now;
    run(&mut w, &[b], Duration::from_secs(4), &mut out);
    assert_eq!(w.clients[b].assignment().len(), 4, "b alone in the group within {:?}", w.now - start);
}

/// A KIP-848 member whose leave waits for the close's commit keeps heartbeating; when the
/// coordinator raises its epoch meanwhile (the topic grew, and the new partitions are shared
/// out, nobody giving any up), the commit is retried under the new epoch instead of dropped.
#[test]
fn kip848_a_closing_members_commit_follows_its_raised_epoch() {
    let mut w = cluster(4, 400);
    let a = committing_member(&mut w, GroupProtocol::Consumer, Duration::from_secs(12), |c| c);
    let b = member848(&mut w, |c| c.with_auto_commit(false));
    let mut out = BTreeMap::new();
    run(&mut w, &[a, b], Duration::from_secs(20), &mut out);
    assert_partitioned(&w, &[a, b], 4);
    let from_a = w.clients[a].assignment();
    // a closes; its commit is refused once (a use per partition) and retried 12 s later;
    // meanwhile the topic grows.
    w.cluster.inject(super::Fault::error(ErrorCode::CoordinatorLoadInProgress).on_api(ApiKey::OffsetCommit).times(2));
    w.clients[a].close(w.now);
    run(&mut w, &[b], Duration::from_secs(1), &mut out);
    w.cluster.add_partitions(TOPIC, 2, 3);
    run(&mut w, &[b], Duration::from_secs(30), &mut out);
    assert!(w.clients[a].is_closed());
    let committed = w.cluster.committed_offsets("group");
    for tp in &from_a {
        let end = w.cluster.log_end_offset(TOPIC, tp.partition).unwrap();
        assert_eq!(committed.get(&(TOPIC.to_string(), tp.partition)), Some(&end), "{tp}");
    }
}
