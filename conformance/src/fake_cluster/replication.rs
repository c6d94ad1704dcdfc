//! Replication: followers that copy the leader's log some time after it is appended, an ISR,
//! a high watermark, leader elections that truncate, and the leader epochs of the log.
//!
//! Only the leader's log is stored. Every replica's log is a prefix of it (elections truncate
//! to the new leader's log end, which keeps that true), so a follower is just its log end
//! offset. With [`Replication::Instant`] (the default) no state is kept: every replica holds
//! what the leader holds, the ISR is the live replicas and the high watermark is the log end.
//!
//! With [`Replication::Lagging`], at each input the cluster sees (a frame, a timeout):
//! - what the leader appended becomes copyable `delay` later; live followers copy it then,
//!   unless paused ([`FakeCluster::pause_replication`]);
//! - a follower behind the leader's log end whose last catch-up is `lag_time_max` old leaves
//!   the ISR (Kafka's `replica.lag.time.max.ms`); a stopped broker leaves it at once (the
//!   controller fences it), except the last member, which stays as Kafka keeps it;
//! - a live follower whose log end reaches the high watermark and the start of the current
//!   leader epoch rejoins;
//! - the high watermark rises to the least log end over the ISR, never falls except by
//!   truncation.
//!
//! Elections are clean (an ISR member) unless `unclean.leader.election.enable` (topic config,
//! else [`Replication::Lagging`]'s `unclean_election`) allows a live out-of-sync replica when
//! no ISR member is live; the ISR is then the new leader alone. The new leader's log end is
//! the log end of all: longer replicas are truncated, records acked with acks=1 included.
//! Simplified: a follower that keeps replicating stays in sync however long the delay;
//! producer state is rebuilt from the surviving batches on truncation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::produce::{BatchMeta, DEDUP_WINDOW};
use super::{fetch, produce, FakeCluster, Partition};

/// How followers keep up with their leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Replication {
    /// Every replica holds the leader's log at once: the high watermark is the log end, the
    /// ISR is the live replicas, and leader changes lose nothing.
    #[default]
    Instant,
    /// Followers copy the leader's log `delay` after each append; see the module docs.
    Lagging {
        /// How long after an append the live followers hold it.
        delay: Duration,
        /// How long a follower may stay behind before it leaves the ISR
        /// (`replica.lag.time.max.ms`, 30 s in Kafka).
        lag_time_max: Duration,
        /// Whether an out-of-sync replica may be elected when no ISR member is live, for
        /// topics without an `unclean.leader.election.enable` override.
        unclean_election: bool,
    },
}

impl Replication {
    /// Lagging followers with `delay`, Kafka's 30 s lag limit and clean elections only.
    pub fn lagging(delay: Duration) -> Replication {
        Replication::Lagging { delay, lag_time_max: Duration::from_secs(30), unclean_election: false }
    }
}

/// A partition's replication state in [`Replication::Lagging`] mode.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaSet {
    delay: Duration,
    lag_time_max: Duration,
    /// Log end offsets of the replicas other than the current leader (whose log end is the
    /// partition's `next_offset`).
    leo: BTreeMap<i32, i64>,
    pub(crate) isr: BTreeSet<i32>,
    pub(crate) high_watermark: i64,
    /// When each follower was last known caught up; missing until the next input after an
    /// election.
    caught_up: BTreeMap<i32, Instant>,
    /// Leader log ends and the instant from which followers may copy up to them.
    pending: VecDeque<(Instant, i64)>,
    /// The leader log end already in `pending`.
    scheduled: i64,
    /// What followers may copy now: the leader's log end `delay` ago.
    copyable: i64,
}

impl ReplicaSet {
    /// The state of a new, empty partition led by `leader`; `None` for instant replication.
    pub(crate) fn new(
        replication: Replication,
        replicas: &[i32],
        leader: i32,
        live: impl Fn(i32) -> bool,
    ) -> Option<ReplicaSet> {
        let Replication::Lagging { delay, lag_time_max, .. } = replication else { return None };
        // Every replica of an empty log is in sync; the down ones are fenced out, but as the
        // controller never empties an ISR, a partition created with all its replicas down
        // keeps them all and is led by the first to come back.
        let mut isr: BTreeSet<i32> = replicas.iter().copied().filter(|r| live(*r)).collect();
        if isr.is_empty() {
            isr = replicas.iter().copied().collect();
        }
        Some(ReplicaSet {
            delay,
            lag_time_max,
            leo: replicas.iter().filter(|r| **r != leader).map(|r| (*r, 0)).collect(),
            isr,
            high_watermark: 0,
            caught_up: BTreeMap::new(),
            pending: VecDeque::new(),
            scheduled: 0,
            copyable: 0,
        })
    }
}

impl Partition {
    /// The high watermark: what consumers may read.
    pub(crate) fn high_watermark(&self) -> i64 {
        self.repl.as_ref().map_or(self.next_offset, |r| r.high_watermark)
    }

    /// The log end offset of replica `broker`.
    pub(crate) fn replica_log_end(&self, broker: i32) -> i64 {
        match &self.repl {
            Some(r) if broker != self.leader => r.leo.get(&broker).copied().unwrap_or(0),
            _ => self.next_offset,
        }
    }

    /// The in-sync replicas, in replica order.
    pub(crate) fn in_sync(&self, live: &BTreeSet<i32>) -> Vec<i32> {
        let member = |r: &i32| match &self.repl {
            Some(s) => s.isr.contains(r),
            None => live.contains(r),
        };
        self.replicas.iter().copied().filter(member).collect()
    }

    /// The leader epochs of the log with their start offsets, oldest first: Kafka's leader
    /// epoch cache, rebuilt from the stored batches plus the current epoch from the log end
    /// when nothing was written in it yet.
    pub(crate) fn epoch_starts(&self) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = Vec::new();
        for b in &self.batches {
            let epoch = batch_epoch(&b.bytes);
            if out.last().is_none_or(|(e, _)| epoch > *e) {
                out.push((epoch, b.base_offset.max(self.log_start_offset)));
            }
        }
        if self.leader != -1 && out.last().is_none_or(|(e, _)| self.leader_epoch > *e) {
            out.push((self.leader_epoch, self.next_offset));
        }
        out
    }

    /// Makes `new` the leader (-1: none) with a new leader epoch. Every replica's log is cut
    /// to the new leader's log end.
    pub(crate) fn set_leader(&mut self, new: i32) {
        let old = self.leader;
        if let Some(r) = &mut self.repl {
            if old != -1 {
                r.leo.insert(old, self.next_offset);
            }
        }
        self.leader = new;
        self.leader_epoch += 1;
        if new == -1 {
            return;
        }
        let Some(r) = &mut self.repl else { return };
        let end = r.leo.get(&new).copied().unwrap_or(0).min(self.next_offset);
        r.leo.remove(&new);
        for leo in r.leo.values_mut() {
            *leo = (*leo).min(end);
        }
        r.high_watermark = r.high_watermark.min(end);
        r.copyable = r.copyable.min(end);
        // Copies scheduled from the old leader are dropped with `pending`: what was not yet
        // copyable is scheduled again from the new one.
        r.scheduled = r.copyable;
        r.pending.clear();
        r.caught_up.clear();
        if end < self.next_offset {
            self.truncate(end);
        }
    }

    /// Drops the log from `end` on, with what the producer state and the aborted
    /// transactions knew of it.
    fn truncate(&mut self, end: i64) {
        self.batches.retain(|b| b.next_offset <= end);
        self.next_offset = end;
        self.log_start_offset = self.log_start_offset.min(end);
        self.aborted.retain(|a| a.last_offset < end);
        let affected: Vec<i64> = self
            .producers
            .iter()
            .filter(|(_, e)| e.batches.iter().any(|b| b.base_offset >= end) || e.txn_first_offset >= Some(end))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in affected {
            let metas = producer_batches(self, pid);
            let Some(entry) = self.producers.get_mut(&pid) else { continue };
            if entry.txn_first_offset >= Some(end) {
                entry.txn_first_offset = None;
            }
            match metas.last() {
                Some((epoch, _)) => {
                    entry.epoch = *epoch;
                    entry.batches = metas.iter().filter(|(e, _)| e == epoch).map(|(_, m)| *m).collect();
                }
                None => entry.batches.clear(),
            }
            if entry.batches.is_empty() && entry.txn_first_offset.is_none() {
                self.producers.remove(&pid);
            }
        }
    }
}

/// The partition leader epoch of a stored batch.
pub(crate) fn batch_epoch(bytes: &[u8]) -> i32 {
    bytes.get(12..16).map_or(-1, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The last data batches of producer `pid` in the log, with their producer epochs.
fn producer_batches(p: &Partition, pid: i64) -> Vec<(i16, BatchMeta)> {
    let mut out: VecDeque<(i16, BatchMeta)> = VecDeque::new();
    for b in &p.batches {
        let h = &b.bytes;
        let Some(head) = h.get(..61) else { continue };
        let control = i16::from_be_bytes([head[21], head[22]]) & 0x20 != 0;
        let producer = i64::from_be_bytes(head[43..51].try_into().unwrap_or([0xff; 8]));
        if control || producer != pid {
            continue;
        }
        let epoch = i16::from_be_bytes([head[51], head[52]]);
        let first_seq = i32::from_be_bytes([head[53], head[54], head[55], head[56]]);
        let delta = i32::from_be_bytes([head[23], head[24], head[25], head[26]]);
        out.push_back((
            epoch,
            BatchMeta {
                first_seq,
                last_seq: first_seq.wrapping_add(delta),
                base_offset: b.base_offset,
                last_offset: b.next_offset - 1,
                timestamp: b.max_timestamp,
            },
        ));
        if out.len() > DEDUP_WINDOW {
            out.pop_front();
        }
    }
    out.into()
}

impl FakeCluster {
    /// The high watermark of a partition (the log end with [`Replication::Instant`]).
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partition(topic, partition).map(Partition::high_watermark)
    }

    /// Each replica's log end offset, by broker id (the leader's is the log end). With
    /// [`Replication::Instant`] every replica, live or not, holds the whole log.
    pub fn replica_log_end_offsets(&self, topic: &str, partition: i32) -> Option<BTreeMap<i32, i64>> {
        let p = self.partition(topic, partition)?;
        Some(p.replicas.iter().map(|r| (*r, p.replica_log_end(*r))).collect())
    }

    /// The in-sync replicas of a partition, in replica order.
    pub fn isr(&self, topic: &str, partition: i32) -> Option<Vec<i32>> {
        let live = self.live_broker_ids().into_iter().collect();
        self.partition(topic, partition).map(|p| p.in_sync(&live))
    }

    /// Broker `broker` stops copying from its leaders (a stuck replica fetcher): its
    /// partitions fall behind and, after `lag_time_max`, out of the ISR. No effect with
    /// [`Replication::Instant`].
    pub fn pause_replication(&mut self, broker: i32) {
        self.paused_followers.insert(broker);
    }

    /// Undoes [`FakeCluster::pause_replication`].
    pub fn resume_replication(&mut self, broker: i32) {
        self.paused_followers.remove(&broker);
    }

    /// Whether an out-of-sync replica may lead `topic`.
    fn unclean_allowed(&self, topic: &str) -> bool {
        let cluster_wide = matches!(self.config.replication, Replication::Lagging { unclean_election: true, .. });
        // Only an override counts: the cluster-wide setting stands in for the broker default.
        match self.topics.get(topic).and_then(|t| t.configs.get("unclean.leader.election.enable")) {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => cluster_wide,
        }
    }

    /// Elects leaders after broker `stopped` went down (`Some`) or to offline partitions
    /// after a broker came back (`None`), then wakes what waits on leaders.
    pub(crate) fn elect_leaders(&mut self, stopped: Option<i32>) {
        let live: BTreeSet<i32> = self.live_broker_ids().into_iter().collect();
        let names: Vec<String> = self.topics.keys().cloned().collect();
        for name in names {
            let unclean = self.unclean_allowed(&name);
            let Some(topic) = self.topics.get_mut(&name) else { continue };
            for p in &mut topic.partitions {
                if let (Some(id), Some(r)) = (stopped, &mut p.repl) {
                    // The controller fences a stopped broker out of the ISR, but never
                    // empties it.
                    if r.isr.len() > 1 {
                        r.isr.remove(&id);
                    }
                }
                let needs_leader = match stopped {
                    Some(id) => p.leader == id,
                    None => p.leader == -1,
                };
                if needs_leader {
                    let next = choose_leader(p, &live, unclean);
                    if next != p.leader {
                        p.set_leader(next);
                    }
                }
            }
        }
        fetch::wake(self);
        produce::wake(self);
    }

    /// Checks and performs a leadership move to `to`; see [`FakeCluster::move_leader`].
    pub(crate) fn move_leader_to(&mut self, topic: &str, partition: i32, to: i32) -> Result<(), String> {
        let up = self.is_up(to);
        let unclean = self.unclean_allowed(topic);
        let p = self.partition_mut(topic, partition).ok_or_else(|| format!("no partition {topic}-{partition}"))?;
        if !p.replicas.contains(&to) {
            return Err(format!("broker {to} does not replicate {topic}-{partition}"));
        }
        if !up {
            return Err(format!("broker {to} is down"));
        }
        if p.leader == to {
            return Ok(());
        }
        let offline = p.leader == -1;
        if let Some(r) = &mut p.repl {
            if !r.isr.contains(&to) {
                if !(offline && unclean) {
                    return Err(format!("broker {to} is not in sync for {topic}-{partition}"));
                }
                r.isr = BTreeSet::from([to]);
            }
        }
        p.set_leader(to);
        fetch::wake(self);
        produce::wake(self);
        Ok(())
    }
}

/// The replica to lead `p` now: with instant replication the first live replica; else the
/// first live ISR member, or with `unclean` the first live replica (then alone in the ISR).
/// -1 when none may.
fn choose_leader(p: &mut Partition, live: &BTreeSet<i32>, unclean: bool) -> i32 {
    let Some(r) = &mut p.repl else {
        return p.replicas.iter().copied().find(|x| live.contains(x)).unwrap_or(-1);
    };
    if let Some(next) = p.replicas.iter().copied().find(|x| live.contains(x) && r.isr.contains(x)) {
        return next;
    }
    match p.replicas.iter().copied().find(|x| live.contains(x)).filter(|_| unclean) {
        Some(next) => {
            r.isr = BTreeSet::from([next]);
            next
        }
        None => -1,
    }
}

/// Moves replication forward to `now` (Lagging mode only): schedules new appends, lets
/// followers copy what is due, updates the ISR and the high watermark, and answers the
/// fetches and acks=all produces that were waiting for it.
pub(crate) fn settle(cluster: &mut FakeCluster, now: Instant) {
    if cluster.config.replication == Replication::Instant {
        return;
    }
    let live: BTreeSet<i32> = cluster.live_broker_ids().into_iter().collect();
    let paused = &cluster.paused_followers;
    let mut moved = false;
    for topic in cluster.topics.values_mut() {
        for p in &mut topic.partitions {
            let (leader, end) = (p.leader, p.next_offset);
            if leader == -1 {
                continue;
            }
            // Only needed (and a walk over the log) when some follower is out of the ISR.
            let out_of_sync = p.repl.as_ref().is_some_and(|r| r.leo.keys().any(|f| !r.isr.contains(f)));
            let epoch_start = if out_of_sync { p.epoch_starts().last().map_or(0, |(_, s)| *s) } else { 0 };
            let Some(r) = &mut p.repl else { continue };
            if r.scheduled < end {
                r.pending.push_back((now + r.delay, end));
                r.scheduled = end;
            }
            while let Some((due, offset)) = r.pending.front().copied() {
                if due > now {
                    break;
                }
                r.pending.pop_front();
                r.copyable = r.copyable.max(offset.min(end));
            }
            for (f, leo) in r.leo.iter_mut() {
                if live.contains(f) && !paused.contains(f) {
                    *leo = (*leo).max(r.copyable);
                    r.caught_up.insert(*f, now);
                } else {
                    r.caught_up.entry(*f).or_insert(now);
                }
            }
            let lagging: Vec<i32> = r
                .leo
                .iter()
                .filter(|(f, leo)| {
                    r.isr.contains(f)
                        && **leo < end
                        && r.caught_up.get(f).is_some_and(|t| now.saturating_duration_since(*t) >= r.lag_time_max)
                })
                .map(|(f, _)| *f)
                .collect();
            for f in lagging {
                r.isr.remove(&f);
            }
            r.isr.insert(leader);
            let hw = r.isr.iter().map(|m| if *m == leader { end } else { r.leo.get(m).copied().unwrap_or(0) }).min();
            let hw = hw.unwrap_or(end).max(r.high_watermark);
            for (f, leo) in &r.leo {
                if live.contains(f) && !paused.contains(f) && *leo >= hw && *leo >= epoch_start {
                    r.isr.insert(*f);
                }
            }
            if hw != r.high_watermark {
                r.high_watermark = hw;
                moved = true;
            }
        }
    }
    if moved {
        fetch::wake(cluster);
        produce::wake(cluster);
    }
}

/// When [`settle`] has something to do next: a pending copy, or a lagging follower's exit
/// from the ISR.
pub(crate) fn poll_timeout(cluster: &FakeCluster) -> Option<Instant> {
    if cluster.config.replication == Replication::Instant {
        return None;
    }
    let mut next: Option<Instant> = None;
    let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
    for p in cluster.topics.values().flat_map(|t| &t.partitions) {
        let Some(r) = &p.repl else { continue };
        if p.leader == -1 {
            continue;
        }
        if let Some((due, _)) = r.pending.front() {
            consider(*due);
        }
        for (f, leo) in &r.leo {
            if r.isr.contains(f) && *leo < p.next_offset {
                if let Some(t) = r.caught_up.get(f) {
                    consider(*t + r.lag_time_max);
                }
            }
        }
    }
    next
}
