//! The `sticky` and `cooperative-sticky` assignors: as balanced as the subscriptions allow,
//! moving as few partitions as possible away from the members that own them.
//!
//! Both run one algorithm, Java's `AbstractStickyAssignor`, step for step, including the places
//! where its result depends on the order of Java collections (see [`super::java`]):
//!
//! 1. **Claims.** Each member's claimed partitions (from its user data for `sticky`, from its
//!    subscription for `cooperative-sticky`) are checked against the others', members taken in
//!    the leader's `HashMap` order: a claim by a newer generation wins; two claims in the same
//!    generation both lose.
//! 2. **Constrained path** (every member subscribes to the same topics): members keep their claims
//!    up to the quota (`floor` or `ceil` of partitions over members, as many `ceil`s as the
//!    remainder allows, first come first served), then the rest is dealt round-robin to the
//!    members under quota, in member id order.
//! 3. **General path** (subscriptions differ): claims are kept, unassigned partitions go one by
//!    one to the least-loaded subscribed member, then partitions move from loaded members to
//!    lighter ones (preferring to move a partition back to its previous owner, and undoing
//!    earlier moves before making new ones) until no move improves the balance.
//! 4. **Cooperative** only: a partition that changes owner is left out of the new owner's
//!    assignment, so its old owner revokes it first; the next rebalance hands it over (KIP-429).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::protocol::{
    decode_cooperative_generation, decode_sticky_user_data, encode_cooperative_user_data, encode_sticky_user_data,
};
use super::{
    check_members, java, AssignError, Assignment, Assignor, Member, MemberId, PartitionCounts, PreviousAssignment,
    RebalanceProtocol, TopicPartition,
};
use crate::protocol::TopicName;

/// Java's `StickyAssignor` (eager): the previous assignment travels in the user data.
#[derive(Clone, Copy, Debug, Default)]
pub struct StickyAssignor;

/// Java's `CooperativeStickyAssignor`: the previous assignment travels as the subscription's
/// owned partitions, the generation in the subscription (and, for older brokers' sake, the user data).
#[derive(Clone, Copy, Debug, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn subscription_user_data(&self, previous: Option<&PreviousAssignment>) -> Option<Bytes> {
        previous.map(|p| encode_sticky_user_data(&p.partitions, p.generation))
    }

    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[Member],
    ) -> Result<BTreeMap<MemberId, Assignment>, AssignError> {
        assign(partitions, members, false)
    }
}

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn supported_protocols(&self) -> &'static [RebalanceProtocol] {
        &[RebalanceProtocol::Cooperative, RebalanceProtocol::Eager]
    }

    fn subscription_user_data(&self, previous: Option<&PreviousAssignment>) -> Option<Bytes> {
        Some(encode_cooperative_user_data(previous.map_or(-1, |p| p.generation)))
    }

    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[Member],
    ) -> Result<BTreeMap<MemberId, Assignment>, AssignError> {
        assign(partitions, members, true)
    }
}

/// Member indexes (positions in the leader's list) and partitions.
type Idx = usize;
type Tp = TopicPartition;

const NO_GENERATION: i32 = -1;

/// What a member claims: its previous partitions and their generation.
struct Claim {
    partitions: Vec<Tp>,
    generation: Option<i32>,
}

fn claim(member: &Member, cooperative: bool) -> Claim {
    let sub = &member.subscription;
    if cooperative {
        let generation = match (sub.generation_id, &sub.user_data) {
            (Some(g), _) => Some(g),
            (None, None) => None,
            (None, Some(data)) => Some(decode_cooperative_generation(data)),
        };
        Claim { partitions: sub.owned_partitions.clone(), generation }
    } else {
        match &sub.user_data {
            Some(data) if !data.is_empty() => {
                let d = decode_sticky_user_data(data);
                Claim { partitions: d.partitions, generation: d.generation }
            }
            _ => Claim { partitions: Vec::new(), generation: None },
        }
    }
}

/// The input as every step sees it.
struct Group<'a> {
    members: &'a [Member],
    /// Member indexes in the Java leader's `HashMap` iteration order.
    order: Vec<Idx>,
    /// Partition counts of the subscribed topics Java knows (count > 0).
    counts: BTreeMap<TopicName, i32>,
    total: usize,
}

impl Group<'_> {
    fn subscribes(&self, c: Idx, topic: &TopicName) -> bool {
        self.members[c].subscription.topics.contains(topic)
    }

    fn id(&self, c: Idx) -> &str {
        &self.members[c].id.0
    }
}

fn remove_first(list: &mut Vec<Tp>, tp: &Tp) -> bool {
    match list.iter().position(|x| x == tp) {
        Some(i) => {
            list.remove(i);
            true
        }
        None => false,
    }
}

fn assign(
    partitions: &PartitionCounts,
    members: &[Member],
    cooperative: bool,
) -> Result<BTreeMap<MemberId, Assignment>, AssignError> {
    check_members(members)?;
    if members.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut counts = BTreeMap::new();
    for m in members {
        for t in &m.subscription.topics {
            if let Some(n) = partitions.get(t) {
                counts.insert(t.clone(), n as i32);
            }
        }
    }
    let hashes: Vec<i32> = members.iter().map(|m| java::string_hash(&m.id.0)).collect();
    let total = counts.values().map(|n| *n as usize).sum();
    let g = Group { members, order: java::iteration_order(&hashes), counts, total };

    let claims: Vec<Claim> = members.iter().map(|m| claim(m, cooperative)).collect();
    let resolved = resolve_claims(&g, &claims);
    let (mut lists, transferring) = if resolved.all_equal {
        let (lists, transferring) = constrained(&g, resolved)?;
        (lists, Some(transferring))
    } else {
        (General::new(&g, resolved.owned).build(&claims, resolved.max_generation)?, None)
    };
    if cooperative {
        let transferring = match transferring {
            Some(t) => t,
            None => transferring_ownership(&g, &lists),
        };
        for (tp, c) in transferring {
            remove_first(&mut lists[c], &tp);
        }
    }
    Ok(members.iter().zip(&lists).map(|(m, list)| (m.id.clone(), Assignment::from_list(list))).collect())
}

struct Resolved {
    all_equal: bool,
    owned: Vec<Vec<Tp>>,
    claimed_twice: BTreeSet<Tp>,
    max_generation: i32,
}

/// Java's `allSubscriptionsEqual`: whether every member subscribes to the same topics, and each
/// member's surviving claims.
fn resolve_claims(g: &Group<'_>, claims: &[Claim]) -> Resolved {
    let mut all_equal = true;
    let mut first_topics: BTreeSet<&TopicName> = BTreeSet::new();
    let mut owner: BTreeMap<Tp, Idx> = BTreeMap::new();
    let mut owned: Vec<Vec<Tp>> = vec![Vec::new(); g.members.len()];
    let mut claimed_twice = BTreeSet::new();
    let mut max_generation = NO_GENERATION;
    for &c in &g.order {
        let topics = &g.members[c].subscription.topics;
        if first_topics.is_empty() {
            first_topics.extend(topics);
        } else if all_equal && !(topics.len() == first_topics.len() && topics.iter().all(|t| first_topics.contains(t)))
        {
            all_equal = false;
        }
        let generation = claims[c].generation.unwrap_or(NO_GENERATION);
        max_generation = max_generation.max(generation);
        for tp in &claims[c].partitions {
            if !g.counts.contains_key(&tp.topic) {
                continue;
            }
            match owner.get(tp).copied() {
                None => {
                    owned[c].push(tp.clone());
                    owner.insert(tp.clone(), c);
                }
                Some(other) => {
                    // Java compares with the other's *subscription* generation here.
                    let other_generation = g.members[other].subscription.generation_id.unwrap_or(NO_GENERATION);
                    if generation == other_generation {
                        claimed_twice.insert(tp.clone());
                        remove_first(&mut owned[other], tp);
                        owner.insert(tp.clone(), c);
                    } else if generation > other_generation {
                        owned[c].push(tp.clone());
                        remove_first(&mut owned[other], tp);
                        owner.insert(tp.clone(), c);
                    }
                }
            }
        }
    }
    Resolved { all_equal, owned, claimed_twice, max_generation }
}

/// The partitions each member gets, and (cooperative) those handed over from another owner.
type Lists = Vec<Vec<Tp>>;

/// Java's `ConstrainedAssignmentBuilder` (no racks).
fn constrained(g: &Group<'_>, resolved: Resolved) -> Result<(Lists, BTreeMap<Tp, Idx>), AssignError> {
    let n = g.members.len();
    let min_quota = g.total / n;
    let max_quota = g.total.div_ceil(n);
    let expected_over = g.total % n;
    let mut current_over = 0;
    let mut assignment: Lists = vec![Vec::new(); n];
    let mut assigned: Vec<Tp> = Vec::new();
    let mut maybe_revoked: BTreeMap<Tp, Idx> = BTreeMap::new();
    let mut under: Vec<Idx> = Vec::new();
    let mut exact: Vec<Idx> = Vec::new();

    for &c in &g.order {
        let mut owned = resolved.owned[c].clone();
        owned.sort_by(|a, b| a.partition.cmp(&b.partition).then_with(|| java::cmp(&a.topic, &b.topic)));
        for tp in &resolved.claimed_twice {
            remove_first(&mut owned, tp);
        }
        let keep = if owned.len() < min_quota {
            under.push(c);
            owned.len()
        } else if owned.len() >= max_quota && current_over < expected_over {
            current_over += 1;
            if current_over == expected_over {
                exact.clear();
            }
            max_quota
        } else {
            if current_over < expected_over {
                exact.push(c);
            }
            min_quota
        };
        for tp in &owned[keep..] {
            maybe_revoked.insert(tp.clone(), c);
        }
        owned.truncate(keep);
        assigned.extend(owned.iter().cloned());
        assignment[c] = owned;
    }

    let mut topics: Vec<&TopicName> = g.counts.keys().collect();
    topics.sort_by(|a, b| java::cmp(a, b));
    assigned.sort_by(|a, b| java::cmp(&a.topic, &b.topic).then(a.partition.cmp(&b.partition)));
    let all = topics.iter().flat_map(|t| (0..g.counts[*t]).map(|p| Tp { topic: (*t).clone(), partition: p }));
    let unassigned = unassigned_partitions(all, &assigned);

    under.sort_by(|a, b| java::cmp(g.id(*a), g.id(*b)));
    exact.sort_by(|a, b| java::cmp(g.id(*a), g.id(*b)));

    // Round-robin over the members under quota; then members at quota take one more each.
    let mut transferring = BTreeMap::new();
    let mut cursor = 0; // index of the next member `under` yields
    for tp in unassigned {
        let c = if cursor < under.len() {
            cursor += 1;
            under[cursor - 1]
        } else if under.is_empty() && exact.is_empty() {
            return Err(AssignError::Inconsistent("no member left under quota for a partition"));
        } else if under.is_empty() {
            cursor = usize::MAX; // the cursor no longer points into `under`
            exact.remove(0)
        } else {
            cursor = 1;
            under[0]
        };
        assignment[c].push(tp.clone());
        if maybe_revoked.get(&tp).is_some_and(|o| *o != c) || resolved.claimed_twice.contains(&tp) {
            transferring.insert(tp, c);
        }
        let count = assignment[c].len();
        if count == min_quota {
            // Java removes the member its round-robin iterator returned last.
            if cursor == 0 || cursor > under.len() {
                return Err(AssignError::Inconsistent("member reached quota outside the round-robin"));
            }
            under.remove(cursor - 1);
            cursor -= 1;
            exact.push(c);
        } else if count == max_quota {
            current_over += 1;
        }
    }
    if !under.is_empty() && (current_over != expected_over || under.iter().any(|c| assignment[*c].len() != min_quota)) {
        return Err(AssignError::Inconsistent("members left under quota with no partitions to give"));
    }
    Ok((assignment, transferring))
}

/// Java's two-pointer difference of all partitions (in order) and the sorted assigned ones. It
/// only works when every assigned partition is among `all`; like Java's, past a stray one it
/// treats everything after as unassigned.
fn unassigned_partitions(all: impl Iterator<Item = Tp>, sorted_assigned: &[Tp]) -> Vec<Tp> {
    let mut next = sorted_assigned.iter();
    let Some(mut pending) = next.next() else { return all.collect() };
    let mut rest_direct = false;
    let mut out = Vec::new();
    for tp in all {
        if rest_direct || *pending != tp {
            out.push(tp);
        } else {
            match next.next() {
                Some(p) => pending = p,
                None => rest_direct = true,
            }
        }
    }
    out
}

/// Cooperative, general path: partitions some member gains that another member gives up.
fn transferring_ownership(g: &Group<'_>, lists: &Lists) -> BTreeMap<Tp, Idx> {
    let mut added = BTreeMap::new();
    let mut revoked = BTreeSet::new();
    for &c in &g.order {
        let owned = &g.members[c].subscription.owned_partitions;
        for tp in &lists[c] {
            if !owned.contains(tp) {
                added.insert(tp.clone(), c);
            }
        }
        for tp in owned {
            if !lists[c].contains(tp) {
                revoked.insert(tp.clone());
            }
        }
    }
    added.retain(|tp, _| revoked.contains(tp));
    added
}

/// Java's `GeneralAssignmentBuilder` (no racks).
struct General<'a, 'g> {
    g: &'a Group<'g>,
    topic_consumers: BTreeMap<TopicName, Vec<Idx>>,
    consumer_topics: Vec<Vec<TopicName>>,
    /// `None` while a member sits out the balancing (it cannot gain or lose anything).
    current: Vec<Option<Vec<Tp>>>,
    owner: BTreeMap<Tp, Idx>,
    sorted_partitions: Vec<Tp>,
    /// Members by (partition count, id): Java's `TreeSet` with its comparator.
    by_load: BTreeSet<(usize, usize)>,
    /// Rank of each member id in Java string order, and the member of each rank.
    rank: Vec<usize>,
    by_rank: Vec<Idx>,
    revocation_required: bool,
    movements: Movements,
}

const MISSING: AssignError = AssignError::Inconsistent("a partition or member the sticky balance expects is missing");

impl<'a, 'g> General<'a, 'g> {
    fn new(g: &'a Group<'g>, owned: Vec<Vec<Tp>>) -> Self {
        let mut topic_consumers: BTreeMap<TopicName, Vec<Idx>> =
            g.counts.keys().map(|t| (t.clone(), Vec::new())).collect();
        let mut consumer_topics = vec![Vec::new(); g.members.len()];
        for &c in &g.order {
            for t in &g.members[c].subscription.topics {
                if let Some(list) = topic_consumers.get_mut(t) {
                    consumer_topics[c].push(t.clone());
                    list.push(c);
                }
            }
        }
        let mut owner = BTreeMap::new();
        for &c in &g.order {
            for tp in &owned[c] {
                owner.insert(tp.clone(), c);
            }
        }
        let mut topics: Vec<&TopicName> = g.counts.keys().collect();
        topics.sort_by(|a, b| topic_consumers[*a].len().cmp(&topic_consumers[*b].len()).then_with(|| java::cmp(a, b)));
        let sorted_partitions =
            topics.iter().flat_map(|t| (0..g.counts[*t]).map(|p| Tp { topic: (*t).clone(), partition: p })).collect();
        let mut by_rank: Vec<Idx> = (0..g.members.len()).collect();
        by_rank.sort_by(|a, b| java::cmp(g.id(*a), g.id(*b)));
        let mut rank = vec![0; g.members.len()];
        for (r, c) in by_rank.iter().enumerate() {
            rank[*c] = r;
        }
        General {
            g,
            topic_consumers,
            consumer_topics,
            current: owned.into_iter().map(Some).collect(),
            owner,
            sorted_partitions,
            by_load: BTreeSet::new(),
            rank,
            by_rank,
            revocation_required: false,
            movements: Movements::default(),
        }
    }

    fn build(mut self, claims: &[Claim], max_generation: i32) -> Result<Lists, AssignError> {
        let g = self.g;
        // Claims of older generations: where a partition was before, to move it back if it helps.
        let mut previous: BTreeMap<Tp, (Idx, i32)> = BTreeMap::new();
        for &c in &g.order {
            let generation = match claims[c].generation {
                Some(gen) if gen < max_generation => gen,
                None if max_generation > NO_GENERATION => NO_GENERATION,
                _ => continue,
            };
            for tp in &claims[c].partitions {
                match previous.get(tp) {
                    Some((_, older)) if generation <= *older => {}
                    _ => {
                        previous.insert(tp.clone(), (c, generation));
                    }
                }
            }
        }

        // Keep the claims on topics the member still subscribes to.
        let mut assigned = Vec::new();
        for &c in &g.order {
            let list = self.current[c].take().unwrap_or_default();
            let mut kept = Vec::with_capacity(list.len());
            for tp in list {
                if !self.topic_consumers.contains_key(&tp.topic) {
                    self.owner.remove(&tp);
                } else if !g.subscribes(c, &tp.topic) {
                    self.revocation_required = true;
                } else {
                    assigned.push(tp.clone());
                    kept.push(tp);
                }
            }
            self.current[c] = Some(kept);
        }
        let tc = &self.topic_consumers;
        assigned.sort_by(|a, b| {
            tc[&a.topic]
                .len()
                .cmp(&tc[&b.topic].len())
                .then_with(|| java::cmp(&a.topic, &b.topic))
                .then(a.partition.cmp(&b.partition))
        });
        let unassigned = unassigned_partitions(self.sorted_partitions.iter().cloned(), &assigned);

        for c in 0..g.members.len() {
            self.add_load(c)?;
        }
        self.balance(&previous, unassigned)?;
        Ok(self.current.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn len(&self, c: Idx) -> Result<usize, AssignError> {
        self.current[c].as_ref().map(Vec::len).ok_or(MISSING)
    }

    fn add_load(&mut self, c: Idx) -> Result<(), AssignError> {
        let key = (self.len(c)?, self.rank[c]);
        self.by_load.insert(key);
        Ok(())
    }

    fn remove_load(&mut self, c: Idx) -> Result<(), AssignError> {
        let key = (self.len(c)?, self.rank[c]);
        self.by_load.remove(&key);
        Ok(())
    }

    fn least_loaded(&self) -> impl Iterator<Item = Idx> + '_ {
        self.by_load.iter().map(|(_, r)| self.by_rank[*r])
    }

    fn max_assignment(&self, c: Idx) -> usize {
        let topics = &self.consumer_topics[c];
        if topics.len() == self.g.counts.len() {
            self.g.total
        } else {
            topics.iter().map(|t| self.g.counts[t] as usize).sum()
        }
    }

    fn topic_can_move(&self, topic: &TopicName) -> bool {
        self.topic_consumers.get(topic).is_some_and(|c| c.len() >= 2)
    }

    fn member_can_move(&self, c: Idx) -> Result<bool, AssignError> {
        let list = self.current[c].as_ref().ok_or(MISSING)?;
        Ok(list.len() < self.max_assignment(c) || list.iter().any(|tp| self.topic_can_move(&tp.topic)))
    }

    fn balance(&mut self, previous: &BTreeMap<Tp, (Idx, i32)>, mut unassigned: Vec<Tp>) -> Result<(), AssignError> {
        let last = self.least_loaded().last().ok_or(MISSING)?;
        let initializing = self.len(last)? == 0;

        // Each unassigned partition to the least-loaded member subscribed to its topic.
        for tp in &unassigned {
            if self.topic_consumers.get(&tp.topic).is_none_or(Vec::is_empty) {
                continue;
            }
            let Some(c) = self.least_loaded().find(|c| self.consumer_topics[*c].contains(&tp.topic)) else {
                continue;
            };
            self.remove_load(c)?;
            self.current[c].as_mut().ok_or(MISSING)?.push(tp.clone());
            self.owner.insert(tp.clone(), c);
            self.add_load(c)?;
        }

        // Partitions of topics with a single subscriber, and members that can neither gain nor
        // lose anything, sit out.
        let fixed: BTreeSet<Tp> = self
            .topic_consumers
            .iter()
            .filter(|(_, cs)| cs.len() < 2)
            .flat_map(|(t, _)| (0..self.g.counts[t]).map(|p| Tp { topic: t.clone(), partition: p }))
            .collect();
        self.sorted_partitions.retain(|tp| !fixed.contains(tp));
        unassigned.retain(|tp| !fixed.contains(tp));
        let mut sitting_out = Vec::new();
        for c in 0..self.g.members.len() {
            if !self.member_can_move(c)? {
                self.remove_load(c)?;
                sitting_out.push((c, self.current[c].take()));
            }
        }

        let before = (self.current.clone(), self.owner.clone());
        if !self.revocation_required {
            self.reassign_all(&unassigned, previous)?;
        }
        let sorted = std::mem::take(&mut self.sorted_partitions);
        let moved = self.reassign_all(&sorted, previous)?;
        self.sorted_partitions = sorted;
        // Keep the result only if it is better balanced (unless this is a fresh group).
        if !initializing && moved && score(&self.current) >= score(&before.0) {
            (self.current, self.owner) = before;
        }
        for (c, list) in sitting_out {
            self.current[c] = list;
        }
        Ok(())
    }

    /// Java's `performReassignments`: sweep `partitions` until the assignment is balanced or
    /// a sweep moves nothing. Returns whether anything moved.
    fn reassign_all(&mut self, partitions: &[Tp], previous: &BTreeMap<Tp, (Idx, i32)>) -> Result<bool, AssignError> {
        let mut moved = false;
        loop {
            let mut modified = false;
            for tp in partitions {
                if self.is_balanced()? {
                    break;
                }
                let c = *self.owner.get(tp).ok_or(MISSING)?;
                if let Some((prev, _)) = previous.get(tp) {
                    if self.len(c)? > self.len(*prev)? + 1 {
                        self.reassign_to(tp, *prev)?;
                        moved = true;
                        modified = true;
                        continue;
                    }
                }
                let mut lighter = false;
                for other in &self.topic_consumers[&tp.topic] {
                    if self.len(c)? > self.len(*other)? + 1 {
                        lighter = true;
                        break;
                    }
                }
                if lighter {
                    let target = self.least_loaded().find(|o| self.consumer_topics[*o].contains(&tp.topic));
                    self.reassign_to(tp, target.ok_or(MISSING)?)?;
                    moved = true;
                    modified = true;
                }
            }
            if !modified {
                return Ok(moved);
            }
        }
    }

    /// Java's `isBalanced`: loads differ by at most one, or no member could take a partition
    /// from a member with two or more partitions more.
    fn is_balanced(&self) -> Result<bool, AssignError> {
        let (Some(first), Some(last)) = (self.least_loaded().next(), self.least_loaded().last()) else {
            return Err(MISSING);
        };
        let (min, max) = (self.len(first)?, self.len(last)?);
        if min + 1 >= max {
            return Ok(true);
        }
        let mut holder: BTreeMap<&Tp, Idx> = BTreeMap::new();
        for &c in &self.g.order {
            for tp in self.current[c].iter().flatten() {
                holder.insert(tp, c);
            }
        }
        for c in self.least_loaded() {
            let count = self.len(c)?;
            if count == self.max_assignment(c) {
                continue;
            }
            let mine = self.current[c].as_ref().ok_or(MISSING)?;
            for topic in &self.consumer_topics[c] {
                for p in 0..self.g.counts[topic] {
                    let tp = Tp { topic: topic.clone(), partition: p };
                    if !mine.contains(&tp) {
                        let other = *holder.get(&tp).ok_or(MISSING)?;
                        if count + 1 < self.len(other)? {
                            return Ok(false);
                        }
                    }
                }
            }
        }
        Ok(true)
    }

    /// Moves `tp` (or, to undo an earlier move, another partition of its topic) to `to`.
    fn reassign_to(&mut self, tp: &Tp, to: Idx) -> Result<(), AssignError> {
        let from = *self.owner.get(tp).ok_or(MISSING)?;
        let tp = self.movements.partition_to_move(tp, from, to);
        let from = *self.owner.get(&tp).ok_or(MISSING)?;
        self.remove_load(from)?;
        self.remove_load(to)?;
        self.movements.record(&tp, from, to);
        remove_first(self.current[from].as_mut().ok_or(MISSING)?, &tp);
        self.current[to].as_mut().ok_or(MISSING)?.push(tp.clone());
        self.owner.insert(tp, to);
        self.add_load(to)?;
        self.add_load(from)?;
        Ok(())
    }
}

/// Sum of load differences over all pairs of (balancing) members: 0 is perfectly balanced.
fn score(current: &[Option<Vec<Tp>>]) -> usize {
    let loads: Vec<usize> = current.iter().flatten().map(Vec::len).collect();
    let mut sum = 0;
    for (i, a) in loads.iter().enumerate() {
        for b in &loads[i + 1..] {
            sum += a.abs_diff(*b);
        }
    }
    sum
}

/// Java's `PartitionMovements`: where each partition moved during this balance, so a move in
/// the opposite direction undoes an earlier one instead of making a new one.
#[derive(Default)]
struct Movements {
    /// Topic -> (from, to) -> partitions that moved that way.
    by_topic: BTreeMap<TopicName, BTreeMap<(Idx, Idx), JavaHashSet>>,
    by_partition: BTreeMap<Tp, (Idx, Idx)>,
}

impl Movements {
    fn remove(&mut self, tp: &Tp) -> Option<(Idx, Idx)> {
        let pair = self.by_partition.remove(tp)?;
        if let Some(pairs) = self.by_topic.get_mut(&tp.topic) {
            if let Some(set) = pairs.get_mut(&pair) {
                set.remove(tp);
                if set.is_empty() {
                    pairs.remove(&pair);
                }
            }
            if pairs.is_empty() {
                self.by_topic.remove(&tp.topic);
            }
        }
        Some(pair)
    }

    fn add(&mut self, tp: &Tp, pair: (Idx, Idx)) {
        self.by_partition.insert(tp.clone(), pair);
        self.by_topic.entry(tp.topic.clone()).or_default().entry(pair).or_default().insert(tp);
    }

    fn record(&mut self, tp: &Tp, from: Idx, to: Idx) {
        match self.remove(tp) {
            Some((origin, _)) if origin == to => {}
            Some((origin, _)) => self.add(tp, (origin, to)),
            None => self.add(tp, (from, to)),
        }
    }

    fn partition_to_move(&self, tp: &Tp, from: Idx, to: Idx) -> Tp {
        let Some(pairs) = self.by_topic.get(&tp.topic) else { return tp.clone() };
        let from = self.by_partition.get(tp).map_or(from, |(origin, _)| *origin);
        match pairs.get(&(to, from)).and_then(JavaHashSet::first) {
            Some(other) => other.clone(),
            None => tp.clone(),
        }
    }
}

/// A `java.util.HashSet<TopicPartition>` as far as its first element goes: the lowest bucket
/// for the table's current size, the earliest insertion within it.
#[derive(Default)]
struct JavaHashSet {
    items: Vec<(Tp, i32, u64)>,
    capacity: usize,
    inserted: u64,
}

impl JavaHashSet {
    fn insert(&mut self, tp: &Tp) {
        if self.items.iter().any(|(x, _, _)| x == tp) {
            return;
        }
        let hash = java::topic_partition_hash(java::string_hash(&tp.topic), tp.partition);
        self.items.push((tp.clone(), hash, self.inserted));
        self.inserted += 1;
        // A table never shrinks.
        self.capacity = self.capacity.max(java::capacity_for(self.items.len()));
    }

    fn remove(&mut self, tp: &Tp) {
        self.items.retain(|(x, _, _)| x != tp);
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn first(&self) -> Option<&Tp> {
        self.items.iter().min_by_key(|(_, hash, seq)| (java::bucket(*hash, self.capacity), *seq)).map(|(tp, _, _)| tp)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn owning(mut m: Member, generation: i32, owned: &[(&str, i32)]) -> Member {
        m.subscription.owned_partitions = owned.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect();
        m.subscription.generation_id = Some(generation);
        let previous = PreviousAssignment { partitions: m.subscription.owned_partitions.clone(), generation };
        m.subscription.user_data = StickyAssignor.subscription_user_data(Some(&previous));
        m
    }

    fn check_valid(out: &BTreeMap<MemberId, Assignment>, counts: &PartitionCounts, topics: &[&str]) {
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for tp in a.iter() {
                assert!(seen.insert(tp.clone()), "{tp:?} twice");
            }
        }
        let total: u32 = topics.iter().map(|t| counts.get(&TopicName::from(*t)).unwrap()).sum();
        assert_eq!(seen.len() as u32, total);
    }

    #[test]
    fn fresh_group_is_balanced() {
        let c = counts(&[("t0", 3), ("t1", 4)]);
        let members = [member("a", &["t0", "t1"]), member("b", &["t0", "t1"]), member("c", &["t0", "t1"])];
        for assignor in [&StickyAssignor as &dyn Assignor, &CooperativeStickyAssignor] {
            let out = assignor.assign(&c, &members).unwrap();
            check_valid(&out, &c, &["t0", "t1"]);
            let mut loads: Vec<usize> = out.values().map(|a| a.iter().count()).collect();
            loads.sort();
            assert_eq!(loads, [2, 2, 3]);
        }
    }

    #[test]
    fn owners_keep_their_partitions_and_cooperative_revokes_first() {
        let c = counts(&[("t", 4)]);
        let members = [
            owning(member("a", &["t"]), 3, &[("t", 0), ("t", 1), ("t", 2)]),
            owning(member("b", &["t"]), 3, &[("t", 3)]),
            member("new", &["t"]),
        ];
        let eager = StickyAssignor.assign(&c, &members).unwrap();
        check_valid(&eager, &c, &["t"]);
        assert_eq!(flat(&eager["b"]), ["t-3"]);
        assert_eq!(flat(&eager["a"]), ["t-0", "t-1"]);
        assert_eq!(flat(&eager["new"]), ["t-2"]);
        // Cooperative: "new" must wait for "a" to give t-2 up.
        let coop = CooperativeStickyAssignor.assign(&c, &members).unwrap();
        assert_eq!(flat(&coop["a"]), ["t-0", "t-1"]);
        assert!(coop["new"].partitions.is_empty());
    }

    #[test]
    fn newer_generation_wins_a_conflict() {
        let c = counts(&[("t", 2)]);
        let members =
            [owning(member("old", &["t"]), 1, &[("t", 0), ("t", 1)]), owning(member("cur", &["t"]), 2, &[("t", 0)])];
        let out = StickyAssignor.assign(&c, &members).unwrap();
        assert_eq!(flat(&out["cur"]), ["t-0"]);
        assert_eq!(flat(&out["old"]), ["t-1"]);
    }

    #[test]
    fn different_subscriptions_take_the_general_path() {
        let c = counts(&[("t0", 2), ("t1", 4)]);
        let members = [member("a", &["t0"]), member("b", &["t0", "t1"]), member("c", &["t1"])];
        let out = StickyAssignor.assign(&c, &members).unwrap();
        check_valid(&out, &c, &["t0", "t1"]);
        assert_eq!(flat(&out["a"]), ["t0-0", "t0-1"]);
        let loads: Vec<usize> = ["b", "c"].iter().map(|m| out[*m].iter().count()).collect();
        assert_eq!(loads, [2, 2]);
    }

    #[test]
    fn refuses_where_java_throws() {
        // "x" claims partitions of "a" from an older generation but now only reads "u", so it sits
        // the balancing out; moving a partition back to it is where Kafka 4.4.0 throws a
        // NullPointerException (checked against its StickyAssignor).
        let c = counts(&[("a", 4), ("u", 1)]);
        let members = [
            owning(member("x", &["u"]), 1, &[("a", 0), ("a", 1)]),
            owning(member("y", &["a"]), 2, &[("a", 0), ("a", 1), ("a", 2), ("a", 3)]),
            member("z", &["a"]),
        ];
        assert!(matches!(StickyAssignor.assign(&c, &members), Err(AssignError::Inconsistent(_))));
    }

    #[test]
    fn java_hash_set_first_is_bucket_then_insertion() {
        let mut s = JavaHashSet::default();
        for p in [5, 1, 3] {
            s.insert(&TopicPartition::new("t", p));
        }
        let first = s.first().unwrap().partition;
        let bucket = |p| java::bucket(java::topic_partition_hash(java::string_hash("t"), p), 16);
        assert!([5, 1, 3].iter().all(|p| bucket(first) <= bucket(*p)));
        s.remove(&TopicPartition::new("t", first));
        assert_eq!(s.items.len(), 2);
    }
}
