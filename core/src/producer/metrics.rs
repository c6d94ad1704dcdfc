//! The producer's metrics, under the Java producer's names (group `producer-metrics`), from
//! the injected clock. Rates, averages and maxima cover the last two 30-second samples, as
//! Java's defaults (`metrics.sample.window.ms` 30000, `metrics.num.samples` 2) do; totals
//! count from the start.
//!
//! | name | meaning |
//! |---|---|
//! | `record-send-total`, `record-send-rate` | records handed to a broker (first attempts) |
//! | `record-retry-total`, `record-retry-rate` | records sent again after a retriable failure |
//! | `record-error-total`, `record-error-rate` | records that failed for good |
//! | `record-size-avg`, `record-size-max` | bytes a record takes in the buffer |
//! | `record-queue-time-avg`, `record-queue-time-max` | ms from a batch's first record to its sending |
//! | `batch-size-avg`, `batch-size-max` | bytes of a batch as sent (after compression) |
//! | `compression-rate-avg` | sent size over uncompressed size of a batch |
//! | `records-per-request-avg` | records in one Produce request |
//! | `request-total`, `request-rate`, `response-total`, `response-rate` | Produce requests and their answers |
//! | `request-latency-avg`, `request-latency-max` | ms from sending a Produce request to its answer |
//! | `produce-throttle-time-avg`, `produce-throttle-time-max` | ms brokers asked the producer to wait |
//! | `outgoing-byte-total`, `outgoing-byte-rate` | record batch bytes sent |
//! | `requests-in-flight` | Produce requests awaiting an answer |
//! | `buffer-total-bytes`, `buffer-available-bytes` | `buffer.memory`, and what of it is free |
//! | `bufferpool-wait-time-ns-total` | time sends waited for buffer room (the handle adds it) |

use std::time::{Duration, Instant};

/// Length of one sample.
const SAMPLE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    /// `start` + [`SAMPLE`]: kept so that each record costs one comparison of instants.
    ends: Instant,
    count: u64,
    sum: f64,
    max: f64,
}

impl Sample {
    fn new(start: Instant) -> Self {
        Sample { start, ends: start + SAMPLE, count: 0, sum: 0.0, max: f64::NAN }
    }
}

/// One measured quantity: a total, and two windowed samples for rate, average and maximum.
/// The consumer's metrics use it too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) total_count: u64,
    pub(crate) total_sum: f64,
    current: Sample,
    previous: Option<Sample>,
}

impl Stat {
    pub(crate) fn new(now: Instant) -> Self {
        Stat { total_count: 0, total_sum: 0.0, current: Sample::new(now), previous: None }
    }

    fn roll(&mut self, now: Instant) {
        if now >= self.current.ends {
            let fresh = Sample::new(now);
            // A gap longer than a sample leaves nothing of the old one in the window.
            self.previous = (now.saturating_duration_since(self.current.start) < 2 * SAMPLE).then_some(self.current);
            self.current = fresh;
        }
    }

    pub(crate) fn record(&mut self, now: Instant, value: f64) {
        self.roll(now);
        self.total_count += 1;
        self.total_sum += value;
        self.current.count += 1;
        self.current.sum += value;
        self.current.max = if self.current.max.is_nan() { value } else { self.current.max.max(value) };
    }

    fn window(&self, now: Instant) -> (Vec<Sample>, Duration) {
        let mut s = self.clone_rolled(now);
        let samples: Vec<Sample> = s.previous.take().into_iter().chain(std::iter::once(s.current)).collect();
        let span = now.saturating_duration_since(samples[0].start).max(Duration::from_secs(1));
        (samples, span)
    }

    fn clone_rolled(&self, now: Instant) -> Stat {
        let mut s = *self;
        s.roll(now);
        s
    }

    /// Sum of values per second over the window (Java's `Rate` of a sum).
    pub(crate) fn rate(&self, now: Instant) -> f64 {
        let (samples, span) = self.window(now);
        samples.iter().map(|s| s.sum).sum::<f64>() / span.as_secs_f64()
    }

    pub(crate) fn avg(&self, now: Instant) -> f64 {
        let (samples, _) = self.window(now);
        let count: u64 = samples.iter().map(|s| s.count).sum();
        if count == 0 {
            return f64::NAN;
        }
        samples.iter().map(|s| s.sum).sum::<f64>() / count as f64
    }

    pub(crate) fn max(&self, now: Instant) -> f64 {
        let (samples, _) = self.window(now);
        samples.iter().map(|s| s.max).filter(|m| !m.is_nan()).fold(f64::NAN, f64::max)
    }
}

/// What the producer records as it works.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    sent: Stat,
    retried: Stat,
    errors: Stat,
    record_size: Stat,
    queue_time: Stat,
    batch_size: Stat,
    compression: Stat,
    records_per_request: Stat,
    requests: Stat,
    responses: Stat,
    latency: Stat,
    throttle: Stat,
    outgoing: Stat,
}

impl Metrics {
    pub fn new(now: Instant) -> Self {
        let s = Stat::new(now);
        Metrics {
            sent: s,
            retried: s,
            errors: s,
            record_size: s,
            queue_time: s,
            batch_size: s,
            compression: s,
            records_per_request: s,
            requests: s,
            responses: s,
            latency: s,
            throttle: s,
            outgoing: s,
        }
    }

    pub fn record_appended(&mut self, now: Instant, size: usize) {
        self.record_size.record(now, size as f64);
    }

    /// A batch leaves: its records, its size as sent and before compression, its age.
    pub fn batch_sent(
        &mut self,
        now: Instant,
        records: usize,
        sent: usize,
        uncompressed: usize,
        age: Duration,
        retry: bool,
    ) {
        let stat = if retry { &mut self.retried } else { &mut self.sent };
        stat.record(now, records as f64);
        self.batch_size.record(now, sent as f64);
        if uncompressed > 0 {
            self.compression.record(now, sent as f64 / uncompressed as f64);
        }
        self.queue_time.record(now, age.as_secs_f64() * 1000.0);
        self.outgoing.record(now, sent as f64);
    }

    pub fn request_sent(&mut self, now: Instant, records: usize) {
        self.requests.record(now, 1.0);
        self.records_per_request.record(now, records as f64);
    }

    pub fn response(&mut self, now: Instant, latency: Duration, throttle_ms: i32) {
        self.responses.record(now, 1.0);
        self.latency.record(now, latency.as_secs_f64() * 1000.0);
        self.throttle.record(now, f64::from(throttle_ms.max(0)));
    }

    pub fn failed(&mut self, now: Instant, records: usize) {
        self.errors.record(now, records as f64);
    }

    /// Every metric, by Java name. `in_flight`, `buffer` and `buffered` come from the
    /// producer's state.
    pub fn snapshot(&self, now: Instant, in_flight: usize, buffer: usize, buffered: usize) -> Vec<(&'static str, f64)> {
        vec![
            ("record-send-total", self.sent.total_sum),
            ("record-send-rate", self.sent.rate(now)),
            ("record-retry-total", self.retried.total_sum),
            ("record-retry-rate", self.retried.rate(now)),
            ("record-error-total", self.errors.total_sum),
            ("record-error-rate", self.errors.rate(now)),
            ("record-size-avg", self.record_size.avg(now)),
            ("record-size-max", self.record_size.max(now)),
            ("record-queue-time-avg", self.queue_time.avg(now)),
            ("record-queue-time-max", self.queue_time.max(now)),
            ("batch-size-avg", self.batch_size.avg(now)),
            ("batch-size-max", self.batch_size.max(now)),
            ("compression-rate-avg", self.compression.avg(now)),
            ("records-per-request-avg", self.records_per_request.avg(now)),
            ("request-total", self.requests.total_count as f64),
            ("request-rate", self.requests.rate(now)),
            ("response-total", self.responses.total_count as f64),
            ("response-rate", self.responses.rate(now)),
            ("request-latency-avg", self.latency.avg(now)),
            ("request-latency-max", self.latency.max(now)),
            ("produce-throttle-time-avg", self.throttle.avg(now)),
            ("produce-throttle-time-max", self.throttle.max(now)),
            ("outgoing-byte-total", self.outgoing.total_sum),
            ("outgoing-byte-rate", self.outgoing.rate(now)),
            ("requests-in-flight", in_flight as f64),
            ("buffer-total-bytes", buffer as f64),
            ("buffer-available-bytes", buffer.saturating_sub(buffered) as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_averages_and_maxima_cover_two_samples() {
        let t0 = crate::test_origin();
        let mut s = Stat::new(t0);
        for i in 0..10 {
            s.record(t0 + Duration::from_secs(i), 100.0);
        }
        let at = t0 + Duration::from_secs(10);
        assert!((s.rate(at) - 100.0).abs() < 1e-9, "1000 over 10 s");
        assert_eq!(s.avg(at), 100.0);
        s.record(t0 + Duration::from_secs(40), 400.0);
        let at = t0 + Duration::from_secs(50);
        assert_eq!(s.max(at), 400.0);
        assert!((s.avg(at) - 1400.0 / 11.0).abs() < 1e-9);
        // Two samples later the early values have left the window; totals stay.
        let late = t0 + Duration::from_secs(200);
        assert!(s.avg(late).is_nan());
        assert_eq!(s.total_sum, 1400.0);
        assert_eq!(s.rate(late), 0.0);
    }
}
