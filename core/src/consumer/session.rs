//! Fetch sessions (KIP-227), the client's half: which partitions a fetch names, and which
//! it tells the broker to forget.
//!
//! | session | on | next |
//! |---|---|---|
//! | none | a fetch (v7+) | full fetch with id 0, epoch 0: asks for a session |
//! | none | a fetch before v7 | full fetch without a session (epoch -1) |
//! | requested | an answer with an id | open, next epoch 1 |
//! | requested | an answer with id 0 | none: the broker keeps no session for us |
//! | open | a fetch | incremental: only partitions new or changed, and those to forget |
//! | open | an answer | open, epoch + 1 (wrapping to 1, never 0) |
//! | any | a session error, a failed fetch, a reconnect | none |
//!
//! A partition in an open session stays fetched at the offset the client last named, so the
//! consumer names a partition again whenever its position moved, and forgets those it is
//! not fetching now (paused, data waiting for the application, no position).

use std::collections::BTreeMap;

use super::record::TopicPartition;

/// What a fetch asks of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchSpec {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub leader_epoch: i32,
}

/// One broker's session as the client sees it.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Session id, 0 when there is none.
    id: i32,
    /// Epoch of the next request: 0 asks for a new session, -1 means none at all.
    epoch: i32,
    /// What the broker holds for each partition in the session.
    partitions: BTreeMap<TopicPartition, FetchSpec>,
    /// The request in flight asked for a session (epoch 0).
    requested: bool,
}

/// A fetch request's partition lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub session_id: i32,
    pub epoch: i32,
    /// Partitions to name in the request.
    pub send: Vec<(TopicPartition, FetchSpec)>,
    /// Partitions the broker should drop from the session.
    pub forget: Vec<TopicPartition>,
}

impl Session {
    /// The request for `wanted` (every partition to fetch now), and the session's view
    /// updated as if the broker took it. `sessions` is false for brokers older than Fetch v7.
    pub fn plan(&mut self, wanted: &BTreeMap<TopicPartition, FetchSpec>, sessions: bool) -> Plan {
        if !sessions {
            *self = Session::default();
            return Plan {
                session_id: 0,
                epoch: -1,
                send: wanted.iter().map(|(tp, s)| (tp.clone(), *s)).collect(),
                forget: Vec::new(),
            };
        }
        if self.id == 0 {
            self.requested = true;
            self.partitions = wanted.clone();
            return Plan {
                session_id: 0,
                epoch: 0,
                send: wanted.iter().map(|(tp, s)| (tp.clone(), *s)).collect(),
                forget: Vec::new(),
            };
        }
        let send = wanted
            .iter()
            .filter(|(tp, spec)| self.partitions.get(*tp) != Some(spec))
            .map(|(tp, s)| (tp.clone(), *s))
            .collect();
        let forget = self.partitions.keys().filter(|tp| !wanted.contains_key(*tp)).cloned().collect();
        self.partitions = wanted.clone();
        Plan { session_id: self.id, epoch: self.epoch, send, forget }
    }

    /// The broker answered the planned request with `session_id`.
    pub fn answered(&mut self, session_id: i32) {
        if self.requested {
            self.requested = false;
            if session_id == 0 {
                self.partitions.clear();
                return;
            }
            self.id = session_id;
            self.epoch = 1;
        } else if self.id != 0 {
            self.epoch = if self.epoch == i32::MAX { 1 } else { self.epoch + 1 };
        }
    }

    /// Forgets the session: the next fetch is a full one.
    pub fn reset(&mut self) {
        *self = Session::default();
    }

    /// Whether the session is open (an incremental fetch comes next).
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.id != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(offset: i64) -> FetchSpec {
        FetchSpec { fetch_offset: offset, max_bytes: 100, leader_epoch: 0 }
    }

    fn wanted(items: &[(i32, i64)]) -> BTreeMap<TopicPartition, FetchSpec> {
        items.iter().map(|&(p, o)| (TopicPartition::new("t", p), spec(o))).collect()
    }

    #[test]
    fn a_session_opens_then_sends_only_changes() {
        let mut s = Session::default();
        let first = s.plan(&wanted(&[(0, 5), (1, 7)]), true);
        assert_eq!((first.session_id, first.epoch, first.send.len()), (0, 0, 2));
        s.answered(42);
        assert!(s.is_open());
        // Partition 0 moved, 1 did not, 2 is new.
        let next = s.plan(&wanted(&[(0, 9), (1, 7), (2, 0)]), true);
        assert_eq!((next.session_id, next.epoch), (42, 1));
        let sent: Vec<i32> = next.send.iter().map(|(tp, _)| tp.partition).collect();
        assert_eq!(sent, vec![0, 2]);
        assert!(next.forget.is_empty());
        s.answered(42);
        // Partition 1 is no longer fetched: forgotten.
        let third = s.plan(&wanted(&[(0, 9), (2, 0)]), true);
        assert_eq!(third.epoch, 2);
        assert!(third.send.is_empty());
        assert_eq!(third.forget, vec![TopicPartition::new("t", 1)]);
    }

    #[test]
    fn a_declined_or_reset_session_goes_back_to_full_fetches() {
        let mut s = Session::default();
        s.plan(&wanted(&[(0, 5)]), true);
        s.answered(0);
        assert!(!s.is_open());
        let again = s.plan(&wanted(&[(0, 5)]), true);
        assert_eq!((again.epoch, again.send.len()), (0, 1));
        s.answered(7);
        s.reset();
        let full = s.plan(&wanted(&[(0, 6)]), true);
        assert_eq!((full.session_id, full.epoch), (0, 0));
        let old = s.plan(&wanted(&[(0, 6)]), false);
        assert_eq!((old.session_id, old.epoch, old.send.len()), (0, -1, 1));
    }
}
