//! The consumer's metrics, under the Java consumer's names (groups
//! `consumer-fetch-manager-metrics`, `consumer-coordinator-metrics`, `consumer-metrics`),
//! from the injected clock, windowed like the producer's (two 30-second samples; totals from
//! the start).
//!
//! | name | meaning |
//! |---|---|
//! | `records-consumed-total`, `records-consumed-rate` | records handed to the application |
//! | `bytes-consumed-total`, `bytes-consumed-rate` | their key and value bytes |
//! | `fetch-total`, `fetch-rate` | Fetch requests answered |
//! | `fetch-latency-avg`, `fetch-latency-max` | ms from sending a Fetch to its answer |
//! | `fetch-size-avg`, `fetch-size-max` | record bytes in one Fetch answer |
//! | `records-per-request-avg` | records handed out per Fetch answered |
//! | `fetch-throttle-time-avg`, `fetch-throttle-time-max` | ms brokers asked the consumer to wait |
//! | `records-lag-max` | the largest lag (high watermark minus position) seen at a fetch |
//! | `commit-total`, `commit-rate`, `commit-latency-avg`, `commit-latency-max` | offset commits |
//! | `rebalance-total`, `rebalance-rate-per-hour`, `rebalance-latency-avg`, `rebalance-latency-max` | group rebalances the member went through, from joining to its assignment |
//! | `last-rebalance-seconds-ago` | since the last completed rebalance (-1 before any) |
//! | `heartbeat-total`, `heartbeat-rate`, `last-heartbeat-seconds-ago` | group heartbeats answered |
//! | `assigned-partitions` | partitions the consumer reads now |
//! | `last-poll-seconds-ago`, `time-between-poll-avg`, `time-between-poll-max` | the application's polls |
//! | `buffered-bytes` | fetched bytes waiting to be polled (sansa's own) |

use std::time::{Duration, Instant};

use crate::producer::metrics::Stat;

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    consumed: Stat,
    bytes: Stat,
    fetches: Stat,
    fetch_latency: Stat,
    fetch_size: Stat,
    throttle: Stat,
    lag: Stat,
    commits: Stat,
    commit_latency: Stat,
    rebalances: Stat,
    rebalance_latency: Stat,
    heartbeats: Stat,
    between_polls: Stat,
    last_poll: Option<Instant>,
    last_rebalance: Option<Instant>,
    last_heartbeat: Option<Instant>,
}

impl Metrics {
    pub fn new(now: Instant) -> Self {
        let s = Stat::new(now);
        Metrics {
            consumed: s,
            bytes: s,
            fetches: s,
            fetch_latency: s,
            fetch_size: s,
            throttle: s,
            lag: s,
            commits: s,
            commit_latency: s,
            rebalances: s,
            rebalance_latency: s,
            heartbeats: s,
            between_polls: s,
            last_poll: None,
            last_rebalance: None,
            last_heartbeat: None,
        }
    }

    pub fn polled(&mut self, now: Instant, records: usize, bytes: usize) {
        if let Some(last) = self.last_poll {
            self.between_polls.record(now, ms(now.saturating_duration_since(last)));
        }
        self.last_poll = Some(now);
        if records > 0 {
            self.consumed.record(now, records as f64);
            self.bytes.record(now, bytes as f64);
        }
    }

    pub fn fetched(&mut self, now: Instant, latency: Duration, bytes: usize, throttle_ms: i32, max_lag: Option<i64>) {
        self.fetches.record(now, 1.0);
        self.fetch_latency.record(now, ms(latency));
        self.fetch_size.record(now, bytes as f64);
        self.throttle.record(now, f64::from(throttle_ms.max(0)));
        if let Some(lag) = max_lag {
            self.lag.record(now, lag.max(0) as f64);
        }
    }

    pub fn committed(&mut self, now: Instant, latency: Duration) {
        self.commits.record(now, 1.0);
        self.commit_latency.record(now, ms(latency));
    }

    pub fn rebalanced(&mut self, now: Instant, latency: Duration) {
        self.rebalances.record(now, 1.0);
        self.rebalance_latency.record(now, ms(latency));
        self.last_rebalance = Some(now);
    }

    pub fn heartbeat(&mut self, now: Instant) {
        self.heartbeats.record(now, 1.0);
        self.last_heartbeat = Some(now);
    }

    /// Every metric by Java name; the partition count and buffer come from the consumer.
    pub fn snapshot(&self, now: Instant, assigned: usize, buffered: usize) -> Vec<(&'static str, f64)> {
        let ago = |t: Option<Instant>| t.map_or(-1.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let fetches = self.fetches.total_count;
        let per_request = if fetches == 0 { f64::NAN } else { self.consumed.total_sum / fetches as f64 };
        vec![
            ("records-consumed-total", self.consumed.total_sum),
            ("records-consumed-rate", self.consumed.rate(now)),
            ("bytes-consumed-total", self.bytes.total_sum),
            ("bytes-consumed-rate", self.bytes.rate(now)),
            ("fetch-total", fetches as f64),
            ("fetch-rate", self.fetches.rate(now)),
            ("fetch-latency-avg", self.fetch_latency.avg(now)),
            ("fetch-latency-max", self.fetch_latency.max(now)),
            ("fetch-size-avg", self.fetch_size.avg(now)),
            ("fetch-size-max", self.fetch_size.max(now)),
            ("records-per-request-avg", per_request),
            ("fetch-throttle-time-avg", self.throttle.avg(now)),
            ("fetch-throttle-time-max", self.throttle.max(now)),
            ("records-lag-max", self.lag.max(now)),
            ("commit-total", self.commits.total_count as f64),
            ("commit-rate", self.commits.rate(now)),
            ("commit-latency-avg", self.commit_latency.avg(now)),
            ("commit-latency-max", self.commit_latency.max(now)),
            ("rebalance-total", self.rebalances.total_count as f64),
            ("rebalance-rate-per-hour", self.rebalances.rate(now) * 3600.0),
            ("rebalance-latency-avg", self.rebalance_latency.avg(now)),
            ("rebalance-latency-max", self.rebalance_latency.max(now)),
            ("last-rebalance-seconds-ago", ago(self.last_rebalance)),
            ("heartbeat-total", self.heartbeats.total_count as f64),
            ("heartbeat-rate", self.heartbeats.rate(now)),
            ("last-heartbeat-seconds-ago", ago(self.last_heartbeat)),
            ("assigned-partitions", assigned as f64),
            ("last-poll-seconds-ago", ago(self.last_poll)),
            ("time-between-poll-avg", self.between_polls.avg(now)),
            ("time-between-poll-max", self.between_polls.max(now)),
            ("buffered-bytes", buffered as f64),
        ]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
