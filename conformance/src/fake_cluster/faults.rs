//! Fault injection: rules that make the next N matching requests fail, stall, hang up, be
//! throttled, or be applied with their answer lost. Rules are kept in insertion order; the first matching rule with uses left wins.

use std::time::Duration;

use sansa::protocol::{ApiKey, ErrorCode};

/// What a matching request gets instead of a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Answer with this error code: the top-level one for APIs that have it (without doing the
    /// work), otherwise in every matching topic or partition.
    Error(ErrorCode),
    /// Handle the request only after this long; the connection answers nothing else meanwhile.
    Delay(Duration),
    /// Close the connection instead of answering.
    Disconnect,
    /// Read the request and never answer it; the connection answers nothing after it.
    Swallow,
    /// Handle the request (append the records, store the commit, join the group...), then
    /// drop its answer; the connection answers nothing after it, as with `Swallow`. The
    /// client's retry of work already done is the classic source of duplicates.
    LoseResponse,
    /// Handle the request, then close the connection instead of answering.
    ApplyThenDisconnect,
    /// Answer normally with `throttle_time_ms` set to this long (KIP-219).
    Throttle(Duration),
}

/// One fault rule: which requests it applies to and what they get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub(crate) api: Option<ApiKey>,
    pub(crate) broker: Option<i32>,
    pub(crate) topic: Option<String>,
    pub(crate) partition: Option<i32>,
    pub(crate) action: FaultAction,
    /// Uses left; `None` for a rule that never runs out.
    pub(crate) remaining: Option<u32>,
    /// Matching requests still to let pass before the rule applies (request-wide rules).
    pub(crate) skip: u32,
}

impl Fault {
    /// A rule applying `action` to every request, once, until narrowed with the `on_*`
    /// methods and [`Fault::times`].
    pub fn new(action: FaultAction) -> Fault {
        Fault { api: None, broker: None, topic: None, partition: None, action, remaining: Some(1), skip: 0 }
    }

    /// Shorthand for [`FaultAction::Error`].
    pub fn error(code: ErrorCode) -> Fault {
        Fault::new(FaultAction::Error(code))
    }

    /// Only requests of this API.
    pub fn on_api(mut self, api: ApiKey) -> Fault {
        self.api = Some(api);
        self
    }

    /// Only requests received by this broker.
    pub fn on_broker(mut self, broker: i32) -> Fault {
        self.broker = Some(broker);
        self
    }

    /// Only this topic's entries in a request (an `Error` then applies per topic or partition).
    pub fn on_topic(mut self, topic: &str) -> Fault {
        self.topic = Some(topic.to_string());
        self
    }

    /// Only this partition of the topic given with [`Fault::on_topic`].
    pub fn on_partition(mut self, topic: &str, partition: i32) -> Fault {
        self.topic = Some(topic.to_string());
        self.partition = Some(partition);
        self
    }

    /// Apply to the next `n` matching requests (or topics/partitions), then expire.
    pub fn times(mut self, n: u32) -> Fault {
        self.remaining = Some(n);
        self
    }

    /// Let the next `n` matching requests pass first. For request-wide rules (those without
    /// a topic filter, applied to a whole request); per-entry `Error` rules ignore it.
    pub fn after(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }

    /// Never expire.
    pub fn always(mut self) -> Fault {
        self.remaining = None;
        self
    }

    fn matches_request(&self, api: ApiKey, broker: i32) -> bool {
        self.api.is_none_or(|a| a == api) && self.broker.is_none_or(|b| b == broker)
    }
}

/// The rule set of a cluster.
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults {
    rules: Vec<Fault>,
}

impl Faults {
    pub(crate) fn push(&mut self, fault: Fault) {
        self.rules.push(fault);
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The request-wide fault for a request: a rule without a topic filter. `Error` rules are
    /// only taken when `top_level_error` (the API has a top-level error code and is not one
    /// whose errors live per topic or partition); the others are taken for any API.
    pub(crate) fn take_request_fault(
        &mut self,
        api: ApiKey,
        broker: i32,
        top_level_error: bool,
    ) -> Option<FaultAction> {
        let mut found = None;
        for (i, r) in self.rules.iter_mut().enumerate() {
            let applies = r.topic.is_none()
                && r.matches_request(api, broker)
                && (top_level_error || !matches!(r.action, FaultAction::Error(_)));
            if !applies {
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                continue;
            }
            found = Some(i);
            break;
        }
        Some(self.consume(found?))
    }

    /// The injected error for one topic (partition `None`) or partition of a request, if any:
    /// `Error` rules whose filters match, including rules without a topic filter.
    pub(crate) fn take_partition_error(
        &mut self,
        api: ApiKey,
        broker: i32,
        topic: &str,
        partition: Option<i32>,
    ) -> Option<ErrorCode> {
        let i = self.rules.iter().position(|r| {
            matches!(r.action, FaultAction::Error(_))
                && r.matches_request(api, broker)
                && r.topic.as_deref().is_none_or(|t| t == topic)
                && (r.partition.is_none() || r.partition == partition)
        })?;
        match self.consume(i) {
            FaultAction::Error(code) => Some(code),
            _ => None,
        }
    }

    fn consume(&mut self, i: usize) -> FaultAction {
        let action = self.rules[i].action.clone();
        if let Some(n) = &mut self.rules[i].remaining {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.rules.remove(i);
            }
        }
        action
    }
}
