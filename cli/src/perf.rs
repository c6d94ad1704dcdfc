//! `sansa perf produce`: Kafka's kafka-producer-perf-test (`ProducerPerformance`) for sansa,
//! with its flags, payloads, throttling, latency sampling and output lines, so
//! conformance/bench/compare reads sansa like Kafka's own tool, franz-perf and rdkafka-perf.
//!
//! - Payload: `SplittableRandom(0).nextInt(26) + 65` per byte, the stream drawn once into an
//!   8 MiB pool that records take consecutive slices of (see `Payloads`); the pool and the
//!   topic's name are static, so records share them without reference counts.
//! - Latency: whole milliseconds from the send call (before any wait for buffer room) to the
//!   delivery callback; every record counts in the average and maximum, one in
//!   `num_records / min(num_records, 500000)` is kept for the percentiles.
//! - Throttling: Kafka's `ThroughputThrottler`, sleeping once ahead of the target rate.
//! - Output: a progress line every 5 s, the final line, then `cpu:` from /proc/self/stat.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sansa::driver::Handle;
use sansa::producer::{ProduceError, ProducerRecord};
use sansa::protocol::TopicName;

use crate::props::{self, Props};
use crate::Failure;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum PerfCommand {
    /// Kafka's kafka-producer-perf-test, with its flags and output lines.
    Produce(PerfProduceArgs),
    /// Kafka's kafka-consumer-perf-test, with its flags; prints records/s and CPU.
    Consume(crate::perf_consume::PerfConsumeArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct PerfProduceArgs {
    /// Topic to produce to.
    #[arg(long)]
    topic: String,
    /// Records to send.
    #[arg(long = "num-records", value_parser = clap::value_parser!(u64).range(1..))]
    num_records: u64,
    /// Bytes of each record's value.
    #[arg(long = "record-size", value_parser = clap::value_parser!(u32).range(1..))]
    record_size: u32,
    /// At most this many records per second on average; -1 for no limit.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_throughput)]
    throughput: f64,
    /// Producer properties, `name=value`, several after one flag.
    #[arg(long = "producer-props", alias = "command-property", value_name = "NAME=VALUE", num_args = 1.., value_parser = parse_word)]
    producer_props: Vec<(String, String)>,
    /// A Java properties file of producer settings (overridden by --producer-props).
    #[arg(long = "producer.config", alias = "command-config", value_name = "FILE")]
    producer_config: Option<PathBuf>,
    /// Bootstrap servers; overrides bootstrap.servers from the other flags.
    #[arg(long = "bootstrap-server", value_name = "HOST:PORT,...")]
    bootstrap_server: Option<String>,
    /// Which sansa driver runs the producer (sansa's own flag, not Kafka's).
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
    /// After the final line, print the producer's metrics (Java's names), one per line.
    #[arg(long = "print-metrics")]
    print_metrics: bool,
}

/// The drivers `perf produce` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Runtime {
    /// sansa-tokio, the sending loop and the driver on one current-thread runtime.
    Tokio,
    /// sansa-async-std under smol, the driver spawned on smol's executor.
    Smol,
    /// sansa-blocking: the sending loop on this thread, the driver on its own.
    Blocking,
}

fn parse_word(s: &str) -> Result<(String, String), String> {
    props::parse_word(s).map_err(|e| e.to_string())
}

fn parse_throughput(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_nan() => Err("not a number".into()),
        // Kafka's throttler waits forever at 0; refusing is kinder.
        Ok(0.0) => Err("0 would never send; give a positive rate, or -1 for no limit".into()),
        Ok(t) => Ok(t),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// The properties ProducerPerformance would hand its producer: the file, then
/// `--producer-props`, then `--bootstrap-server`, later ones winning, and its client id
/// unless one was given.
fn properties(
    file: Option<(&str, &str)>,
    words: &[(String, String)],
    bootstrap: Option<&str>,
) -> Result<Props, Failure> {
    let mut all = Props::new();
    if let Some((path, text)) = file {
        let pairs = props::parse_properties(text).map_err(|e| Failure::Usage(format!("{path}: {e}")))?;
        all.extend(pairs);
    }
    all.extend(words.iter().cloned());
    if let Some(b) = bootstrap {
        all.insert("bootstrap.servers".into(), b.into());
    }
    all.entry("client.id".into()).or_insert_with(|| "perf-producer-client".into());
    Ok(all)
}

// ---- payload ---------------------------------------------------------------------------------

/// `java.util.SplittableRandom` (SplitMix64) as the JDK computes `nextInt(bound)`: the
/// generator of ProducerPerformance's payloads, seeded with 0.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    seed: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { seed }
    }

    fn next_int(&mut self) -> i32 {
        self.seed = self.seed.wrapping_add(Self::GAMMA);
        Self::mix32(self.seed)
    }

    fn mix32(z: u64) -> i32 {
        let z = (z ^ (z >> 33)).wrapping_mul(0x62a9_d9ed_7997_05f5);
        ((z ^ (z >> 28)).wrapping_mul(0xcb24_d0a5_c88c_35b3) >> 32) as i32
    }

    /// A value in `[0, bound)` for a positive `bound`, drawn exactly as the JDK draws it
    /// (rejection sampling with Java's wrapping int arithmetic).
    pub(crate) fn next_int_bounded(&mut self, bound: i32) -> i32 {
        let m = bound - 1;
        let r = self.next_int();
        if bound & m == 0 {
            return r & m;
        }
        let mut u = ((r as u32) >> 1) as i32;
        loop {
            let r = u % bound;
            if u.wrapping_add(m).wrapping_sub(r) >= 0 {
                return r;
            }
            u = ((self.next_int() as u32) >> 1) as i32;
        }
    }

    /// Fills `payload` with upper-case letters, `nextInt(26) + 65` per byte: the JDK's
    /// stream, drawn without its rejection loop except in the rare case (about one draw in
    /// 10^8) where the JDK would reject, so that the generator costs the client's CPU figure
    /// as little as possible.
    pub(crate) fn fill_payload(&mut self, payload: &mut [u8]) {
        // `u = nextInt() >>> 1` is rejected when its block of 26 runs past i32::MAX.
        const ACCEPTED_BELOW: u32 = (1 << 31) - (1 << 31) % 26;
        let mut seed = self.seed;
        for b in payload {
            seed = seed.wrapping_add(Self::GAMMA);
            let u = (Self::mix32(seed) as u32) >> 1;
            if u < ACCEPTED_BELOW {
                *b = (u % 26) as u8 + 65;
            } else {
                self.seed = seed.wrapping_sub(Self::GAMMA);
                *b = (self.next_int_bounded(26) + 65) as u8;
                seed = self.seed;
            }
        }
        self.seed = seed;
    }
}

// ---- throttling ------------------------------------------------------------------------------

/// `--print-metrics`: as Java's tool prints them, name and value aligned, sorted by name.
pub(crate) fn metrics_table(metrics: &std::collections::BTreeMap<String, f64>) -> String {
    let names: Vec<String> = metrics.keys().map(|k| format!("producer-metrics:{k}")).collect();
    let width = names.iter().map(String::len).max().unwrap_or(0).max("Metric Name".len());
    let mut out = format!("\n{:<width$} {}\n", "Metric Name", "Value");
    for (name, value) in names.iter().zip(metrics.values()) {
        out.push_str(&format!("{name:<width$} : {value:.3}\n"));
    }
    out
}

/// Kafka's `ThroughputThrottler`, with time passed in: after each send, ask
/// [`Throttler::should_throttle`]; if so, [`Throttler::throttle`] adds one record's share of
/// sleep to a deficit and says how long to sleep once the deficit reaches 2 ms.
///
/// One difference: time since the start counts in nanoseconds, not whole milliseconds. Java's
/// first send waits for metadata, so its first millisecond passes before the throttler looks;
/// sansa's sends return at once, and a millisecond clock would let the first millisecond's
/// worth of records (hundreds) out unthrottled.
#[derive(Debug, Clone)]
pub(crate) struct Throttler {
    /// Records per second; negative: no limit.
    target: f64,
    sleep_time_ns: u64,
    deficit_ns: u64,
}

const MIN_SLEEP_NS: u64 = 2_000_000;

impl Throttler {
    pub(crate) fn new(target: f64) -> Self {
        let sleep_time_ns = if target > 0.0 { (1e9 / target) as u64 } else { u64::MAX };
        Throttler { target, sleep_time_ns, deficit_ns: 0 }
    }

    /// Whether `amount_so_far` records, `elapsed` after the start, run ahead of the target.
    pub(crate) fn should_throttle(&self, amount_so_far: u64, elapsed: Duration) -> bool {
        if self.target < 0.0 {
            return false;
        }
        let elapsed_sec = elapsed.as_secs_f64();
        elapsed_sec > 0.0 && amount_so_far as f64 / elapsed_sec > self.target
    }

    /// How long to sleep now, if the accumulated deficit is worth a sleep; the deficit is then
    /// cleared (Kafka sleeps at least that long and starts again from zero).
    pub(crate) fn throttle(&mut self) -> Option<Duration> {
        self.deficit_ns = self.deficit_ns.saturating_add(self.sleep_time_ns);
        if self.deficit_ns < MIN_SLEEP_NS {
            return None;
        }
        let sleep = Duration::from_nanos(self.deficit_ns);
        self.deficit_ns = 0;
        Some(sleep)
    }
}

// ---- statistics ------------------------------------------------------------------------------

const REPORTING_INTERVAL: Duration = Duration::from_secs(5);
/// Latency samples kept at most, as in ProducerPerformance.
const MAX_SAMPLES: u64 = 500_000;
/// Delivery errors printed as they happen; the rest are counted.
const PRINTED_ERRORS: u64 = 10;

/// ProducerPerformance's statistics: totals, a 5 s progress window, sampled latencies.
#[derive(Debug)]
pub(crate) struct Stats {
    start: Instant,
    latencies: Vec<i32>,
    sampling: u64,
    iteration: u64,
    count: u64,
    bytes: u64,
    total_latency: u64,
    max_latency: i32,
    window_start: Instant,
    window_count: u64,
    window_bytes: u64,
    window_total_latency: u64,
    window_max_latency: i32,
    errors: u64,
}

impl Stats {
    pub(crate) fn new(num_records: u64, now: Instant) -> Stats {
        let num_records = num_records.max(1);
        let sampling = num_records / num_records.min(MAX_SAMPLES);
        Stats {
            start: now,
            latencies: Vec::with_capacity((num_records / sampling + 1) as usize),
            sampling,
            iteration: 0,
            count: 0,
            bytes: 0,
            total_latency: 0,
            max_latency: 0,
            window_start: now,
            window_count: 0,
            window_bytes: 0,
            window_total_latency: 0,
            window_max_latency: 0,
            errors: 0,
        }
    }

    /// Counts one delivered record; returns the progress line when a window closes.
    pub(crate) fn record(&mut self, latency: i32, bytes: u64, now: Instant) -> Option<String> {
        self.count += 1;
        self.bytes += bytes;
        self.total_latency += latency.max(0) as u64;
        self.max_latency = self.max_latency.max(latency);
        self.window_count += 1;
        self.window_bytes += bytes;
        self.window_total_latency += latency.max(0) as u64;
        self.window_max_latency = self.window_max_latency.max(latency);
        if self.iteration.is_multiple_of(self.sampling) {
            self.latencies.push(latency);
        }
        self.iteration += 1;
        if now.saturating_duration_since(self.window_start) < REPORTING_INTERVAL {
            return None;
        }
        let line = self.window_line(now);
        self.window_start = now;
        self.window_count = 0;
        self.window_bytes = 0;
        self.window_total_latency = 0;
        self.window_max_latency = 0;
        Some(line)
    }

    /// Counts a failed record; true for the first few, whose errors are worth printing.
    pub(crate) fn error(&mut self) -> bool {
        self.errors += 1;
        self.errors <= PRINTED_ERRORS
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors
    }

    fn window_line(&self, now: Instant) -> String {
        let ms = now.saturating_duration_since(self.window_start).as_millis().max(1) as f64;
        format!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            self.window_count,
            1000.0 * self.window_count as f64 / ms,
            1000.0 * self.window_bytes as f64 / ms / (1024.0 * 1024.0),
            self.window_total_latency as f64 / self.window_count.max(1) as f64,
            f64::from(self.window_max_latency)
        )
    }

    /// The final line, over the whole run up to `now`.
    pub(crate) fn total_line(&mut self, now: Instant) -> String {
        let ms = now.saturating_duration_since(self.start).as_millis().max(1) as f64;
        self.latencies.sort_unstable();
        let p = percentiles(&self.latencies, &[0.5, 0.95, 0.99, 0.999]);
        format!(
            "{} records sent, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, \
             {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
            self.count,
            1000.0 * self.count as f64 / ms,
            1000.0 * self.bytes as f64 / ms / (1024.0 * 1024.0),
            self.total_latency as f64 / self.count.max(1) as f64,
            f64::from(self.max_latency),
            p[0],
            p[1],
            p[2],
            p[3]
        )
    }
}

/// Runs `work` on a sansa-async-std client whose driver shares this thread (a smol local
/// executor), then closes the client. On smol's global executor the driver ran on a thread of
/// its own, and each batch of sends, each poll and each answer took a cross-thread wake-up.
pub(crate) fn on_smol<T>(
    config: sansa::Config,
    work: impl AsyncFnOnce(&sansa_async_std::KafkaClient) -> T,
) -> Result<T, Failure> {
    let local = smol::LocalExecutor::new();
    smol::block_on(local.run(async {
        let (client, driver) =
            sansa_async_std::KafkaClient::connect(config).map_err(|e| Failure::Usage(e.to_string()))?;
        local.spawn(driver).detach();
        let out = work(&client).await;
        client.close().await;
        Ok(out)
    }))
}

/// ProducerPerformance's percentiles of sorted samples: the sample at index `p * n`
/// (truncated, capped at the last); 0 without samples.
pub(crate) fn percentiles(sorted: &[i32], ps: &[f64]) -> Vec<i32> {
    let n = sorted.len();
    ps.iter().map(|p| if n == 0 { 0 } else { sorted[((p * n as f64) as usize).min(n - 1)] }).collect()
}

// ---- CPU time --------------------------------------------------------------------------------

/// Clock ticks per second of /proc's CPU times: `getconf CLK_TCK`, else Linux's usual 100.
pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User and system seconds of this process (every thread) from /proc/self/stat, without
/// libc (the workspace forbids `unsafe`, which getrusage would need).
pub(crate) fn cpu_seconds(ticks: f64) -> Option<(f64, f64)> {
    parse_stat_times(&std::fs::read_to_string("/proc/self/stat").ok()?, ticks)
}

/// utime and stime, fields 14 and 15 of a /proc/PID/stat line; the command name before them
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_times(stat: &str, ticks: f64) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user / ticks, system / ticks))
}

// ---- the run ---------------------------------------------------------------------------------

/// Bytes of the payload stream drawn ahead (see [`Payloads`]).
const PAYLOAD_POOL: usize = 8 << 20;

/// ProducerPerformance's payloads without their cost per record: the JDK stream is drawn once
/// into a pool, and record `i` gets the `i`-th slice of it, wrapping to the start once the
/// pool runs out. The first 8 MiB of values are byte for byte the JDK's; after that they
/// repeat, but never within a batch (batches hold at most a few MiB), so compression sees
/// what it would see with fresh bytes. The pool lives for the rest of the process (one per
/// run), so a slice of it is a pointer and a length, as franz-perf's slices of its pool are:
/// no reference count raised by the sending thread and lowered, on the blocking and smol
/// drivers, by the driver's thread, for every record.
struct Payloads {
    pool: bytes::Bytes,
    per_pool: u64,
    size: usize,
}

impl Payloads {
    fn new(size: usize) -> Payloads {
        let per_pool = (PAYLOAD_POOL / size).max(1);
        let mut pool = vec![0u8; per_pool * size];
        SplitMix64::new(0).fill_payload(&mut pool);
        let pool: &'static [u8] = Box::leak(pool.into_boxed_slice());
        Payloads { pool: bytes::Bytes::from_static(pool), per_pool: per_pool as u64, size }
    }

    fn get(&self, record: u64) -> bytes::Bytes {
        let start = (record % self.per_pool) as usize * self.size;
        self.pool.slice(start..start + self.size)
    }
}

fn lock(s: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `perf produce` on a runtime of its own.
pub(crate) fn run(command: PerfCommand) -> Result<(), Failure> {
    let args = match command {
        PerfCommand::Produce(args) => args,
        PerfCommand::Consume(args) => return crate::perf_consume::run(args),
    };
    let ticks = clock_ticks();
    let file = match &args.producer_config {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?,
        )),
        None => None,
    };
    let all = properties(
        file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
        &args.producer_props,
        args.bootstrap_server.as_deref(),
    )?;
    let config = props::client_config(&all)?;
    // One thread for the sending loop and the driver: measured faster on 2 cores beside a local
    // broker than a driver thread of its own, and cheaper in CPU.
    let failed = match args.runtime {
        Runtime::Tokio => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Failed(format!("could not start the runtime: {e}")))?;
            let failed = runtime.block_on(async {
                let client = sansa_tokio::KafkaClient::connect(config).map_err(|e| Failure::Usage(e.to_string()))?;
                let failed = produce(&args, &client, |d| tokio::time::sleep(d)).await;
                client.close().await;
                Ok::<_, Failure>(failed)
            })?;
            drop(runtime);
            failed
        }
        Runtime::Smol => on_smol(config, async |client| {
            produce(&args, client, |d| async move {
                smol::Timer::after(d).await;
            })
            .await
        })?,
        Runtime::Blocking => {
            let client = sansa_blocking::KafkaClient::connect(config).map_err(|e| Failure::Usage(e.to_string()))?;
            // The blocking handle's methods block; the loop is the same, polled to completion
            // on this thread with sleeps as plain waits.
            let failed = smol::block_on(produce_blocking(&args, &client));
            client.close();
            failed
        }
    };
    if let Some((user, system)) = cpu_seconds(ticks) {
        println!(
            "cpu: {user:.2} s user, {system:.2} s system, {:.2} s per million records",
            (user + system) * 1e6 / args.num_records as f64
        );
    }
    if failed > 0 {
        return Err(Failure::Failed(format!("{failed} of {} records failed", args.num_records)));
    }
    Ok(())
}

/// The sending loop on the blocking driver: every send blocks while the buffer is full.
async fn produce_blocking(args: &PerfProduceArgs, client: &sansa_blocking::KafkaClient) -> u64 {
    produce(args, client, |d| async move { std::thread::sleep(d) }).await
}

/// The sending loop on any driver's handle; returns how many records failed.
async fn produce<F: std::future::Future<Output = ()>>(
    args: &PerfProduceArgs,
    client: &Handle,
    sleep_for: impl Fn(Duration) -> F,
) -> u64 {
    // Static, for the reason `Payloads` is: each record's copy of the name is then free (the
    // client's own copy for batches and deliveries is this one).
    let topic = TopicName::from(args.topic.as_str()).interned();
    let size = args.record_size as usize;
    let bytes = u64::from(args.record_size);
    let mut throttler = Throttler::new(args.throughput);
    let start = Instant::now();
    // Latencies in whole milliseconds, as differences of millisecond clock readings (Java's
    // currentTimeMillis), not rounded durations.
    let ms_since_start = move |t: Instant| t.saturating_duration_since(start).as_millis() as u64;
    // Leaked, one per run, so that a callback holds a plain reference instead of a counted one.
    let stats: &'static Mutex<Stats> = Box::leak(Box::new(Mutex::new(Stats::new(args.num_records, start))));
    let payloads = Payloads::new(size);
    for i in 0..args.num_records {
        let record = ProducerRecord {
            topic: topic.clone(),
            partition: None,
            key: None,
            value: Some(payloads.get(i)),
            headers: Vec::new(),
            timestamp: None,
        };
        let send_start = Instant::now();
        let sent_ms = ms_since_start(send_start);
        let callback = move |result: Result<_, ProduceError>| {
            let now = Instant::now();
            let mut stats = lock(stats);
            match result {
                Ok(_) => {
                    let latency = ms_since_start(now).saturating_sub(sent_ms);
                    if let Some(line) = stats.record(i32::try_from(latency).unwrap_or(i32::MAX), bytes, now) {
                        println!("{line}");
                    }
                }
                Err(e) => {
                    if stats.error() {
                        eprintln!("error: delivery failed: {e}");
                    }
                }
            }
        };
        let sent = if args.runtime == Runtime::Blocking {
            client.send_with_callback_blocking(record, callback)
        } else {
            client.send_with_callback(record, callback).await
        };
        if let Err(e) = sent {
            if lock(stats).error() {
                eprintln!("error: send failed: {e}");
            }
        }
        if throttler.should_throttle(i, send_start - start) {
            if let Some(sleep) = throttler.throttle() {
                sleep_for(sleep).await;
            }
        }
    }
    // As ProducerPerformance closes its producer before the final line: every outcome is in.
    if args.runtime == Runtime::Blocking {
        client.flush_blocking();
    } else {
        client.flush().await;
    }
    let failed = {
        let mut stats = lock(stats);
        println!("{}", stats.total_line(Instant::now()));
        let unaccounted = args.num_records.saturating_sub(stats.count + stats.errors());
        stats.errors() + unaccounted
    };
    if args.print_metrics {
        let metrics =
            if args.runtime == Runtime::Blocking { client.metrics_blocking() } else { client.metrics().await };
        print!("{}", metrics_table(&metrics));
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 64 payload bytes of Kafka's ProducerPerformance: new SplittableRandom(0),
    /// nextInt(26) + 65 per byte; the same expectation as franz-perf's and rdkafka-perf's tests.
    #[test]
    fn payload_matches_java() {
        let mut r = SplitMix64::new(0);
        let mut b = [0u8; 64];
        r.fill_payload(&mut b);
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            "YQHHNEBSEPDNSEIFGAMSUJXKOLTXSPLGHDIOYZJFNIDSPWHZMKVJAXDBZFCOXYKY"
        );
    }

    #[test]
    fn payloads_continue_the_stream_record_after_record() {
        // Two 32-byte records are the first 64 bytes of the stream, so each record's bytes are fresh.
        let mut r = SplitMix64::new(0);
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        r.fill_payload(&mut a);
        r.fill_payload(&mut b);
        assert_eq!(&a, b"YQHHNEBSEPDNSEIFGAMSUJXKOLTXSPLG");
        assert_eq!(&b, b"HDIOYZJFNIDSPWHZMKVJAXDBZFCOXYKY");
    }

    #[test]
    fn the_fast_fill_draws_what_next_int_draws() {
        for seed in [0, 1, 42, u64::MAX] {
            let (mut fast, mut slow) = (SplitMix64::new(seed), SplitMix64::new(seed));
            let mut b = vec![0u8; 100_000];
            fast.fill_payload(&mut b);
            assert!(b.iter().all(|&c| c == (slow.next_int_bounded(26) + 65) as u8));
            assert_eq!(fast.next_int(), slow.next_int(), "the stream goes on in step");
        }
    }

    #[test]
    fn payloads_follow_the_stream_then_wrap() {
        let p = Payloads::new(32);
        assert_eq!(&p.get(0)[..], b"YQHHNEBSEPDNSEIFGAMSUJXKOLTXSPLG");
        assert_eq!(&p.get(1)[..], b"HDIOYZJFNIDSPWHZMKVJAXDBZFCOXYKY");
        assert_eq!(p.get(p.per_pool), p.get(0));
        assert_eq!(Payloads::new(PAYLOAD_POOL * 2).get(7).len(), PAYLOAD_POOL * 2);
    }

    #[test]
    fn bounded_ints_stay_in_bounds() {
        let mut r = SplitMix64::new(42);
        for bound in [1, 2, 7, 26, 64, 1000, i32::MAX] {
            for _ in 0..1000 {
                let v = r.next_int_bounded(bound);
                assert!((0..bound).contains(&v), "{v} of {bound}");
            }
        }
    }

    /// Runs `records` sends of `cost` each at `rate`, sleeping as the throttler says; returns
    /// the virtual time they took.
    fn paced(rate: f64, records: u64, cost: Duration) -> Duration {
        let mut now = Duration::ZERO;
        let mut t = Throttler::new(rate);
        for i in 0..records {
            if t.should_throttle(i, now) {
                if let Some(sleep) = t.throttle() {
                    now += sleep;
                }
            }
            now += cost;
        }
        now
    }

    #[test]
    fn the_throttler_paces_sends_to_the_target_rate() {
        // The first record goes at once; each later one ahead of schedule adds 1/rate of sleep,
        // paid in sleeps of 2 ms or more, so n records take (n - 1) / rate, give or take one sleep.
        for (rate, records, cost_us) in [
            (1000.0, 5000, 10),
            (100.0, 300, 10),
            (10_000.0, 50_000, 5),
            (2.5, 10, 100),
            (100_000.0, 100_000, 1),
            (333.0, 1000, 1),
        ] {
            let took = paced(rate, records, Duration::from_micros(cost_us)).as_secs_f64();
            let want = (records - 1) as f64 / rate;
            assert!((took - want).abs() <= 0.003 + want * 0.001, "{rate}/s x {records}: {took} s, want {want} s");
        }
        // Sends slower than the target are never held back.
        assert_eq!(paced(100.0, 50, Duration::from_millis(20)), Duration::from_millis(1000));
        assert_eq!(paced(-1.0, 1000, Duration::from_micros(1)), Duration::from_millis(1));
    }

    #[test]
    fn the_throttler_sleeps_in_steps_of_at_least_2_ms() {
        let mut t = Throttler::new(10_000.0);
        // 100 µs per record: a sleep every 20 records.
        let sleeps: Vec<Option<Duration>> = (0..40).map(|_| t.throttle()).collect();
        assert_eq!(sleeps.iter().filter(|s| s.is_some()).count(), 2);
        assert_eq!(sleeps[19], Some(Duration::from_millis(2)));
        assert_eq!(sleeps[39], Some(Duration::from_millis(2)));
        // A slow rate sleeps after every record.
        let mut t = Throttler::new(10.0);
        assert_eq!(t.throttle(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn the_throttler_holds_back_only_when_ahead() {
        let t = Throttler::new(100.0);
        let s = Duration::from_secs;
        assert!(!t.should_throttle(50, Duration::ZERO), "no time has passed: never throttled");
        assert!(t.should_throttle(1, Duration::from_micros(1)), "1 record in 1 µs is ahead of 100/s");
        assert!(t.should_throttle(101, s(1)), "101 records in 1 s is ahead of 100/s");
        assert!(!t.should_throttle(100, s(1)), "on schedule");
        assert!(!t.should_throttle(50, s(1)), "behind");
        assert!(!Throttler::new(-1.0).should_throttle(1_000_000, Duration::from_nanos(1)), "-1: no limit");
    }

    #[test]
    fn percentiles_take_the_sample_at_p_times_n() {
        let v: Vec<i32> = (1..=1000).collect();
        assert_eq!(percentiles(&v, &[0.5, 0.95, 0.99, 0.999]), vec![501, 951, 991, 1000]);
        assert_eq!(percentiles(&[7], &[0.5, 0.999]), vec![7, 7]);
        assert_eq!(percentiles(&[1, 2], &[0.5, 0.95]), vec![2, 2]);
        assert_eq!(percentiles(&[], &[0.5]), vec![0]);
    }

    #[test]
    fn latencies_are_sampled_one_in_n_past_500000_records() {
        let t0 = Instant::now();
        let mut s = Stats::new(1_500_000, t0);
        assert_eq!(s.sampling, 3);
        for i in 0..9 {
            assert_eq!(s.record(i, 100, t0), None);
        }
        assert_eq!(s.latencies, vec![0, 3, 6]);
        assert_eq!((s.count, s.bytes, s.total_latency, s.max_latency), (9, 900, 36, 8));
        assert_eq!(Stats::new(10, t0).sampling, 1);
    }

    #[test]
    fn lines_read_like_kafka_producer_perf_test() {
        let t0 = Instant::now();
        let mut s = Stats::new(4, t0);
        assert_eq!(s.record(10, 1024 * 1024, t0 + Duration::from_millis(1000)), None);
        assert_eq!(s.record(30, 1024 * 1024, t0 + Duration::from_millis(1000)), None);
        let line = s.record(20, 1024 * 1024, t0 + Duration::from_millis(5000));
        assert_eq!(
            line.as_deref(),
            Some("3 records sent, 0.6 records/sec (0.60 MB/sec), 20.0 ms avg latency, 30.0 ms max latency.")
        );
        assert_eq!(s.record(4, 1024 * 1024, t0 + Duration::from_millis(6000)), None, "a new window");
        assert_eq!(
            s.total_line(t0 + Duration::from_millis(8000)),
            "4 records sent, 0.500000 records/sec (0.50 MB/sec), 16.00 ms avg latency, 30.00 ms max latency, \
             20 ms 50th, 30 ms 95th, 30 ms 99th, 30 ms 99.9th."
        );
    }

    #[test]
    fn metrics_print_as_a_sorted_aligned_table() {
        let metrics = [("record-send-total".to_string(), 3.0), ("batch-size-avg".to_string(), 1234.5)].into();
        let table = metrics_table(&metrics);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "");
        assert!(lines[1].starts_with("Metric Name "), "{table}");
        assert_eq!(lines[2], "producer-metrics:batch-size-avg    : 1234.500");
        assert_eq!(lines[3], "producer-metrics:record-send-total : 3.000");
    }

    #[test]
    fn cpu_times_come_from_proc_stat() {
        let line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 3 0 100 200 300";
        assert_eq!(parse_stat_times(line, 100.0), Some((2.5, 0.75)));
        assert_eq!(parse_stat_times("garbage", 100.0), None);
        assert!(cpu_seconds(100.0).is_some(), "/proc/self/stat readable");
    }

    #[test]
    fn properties_take_file_then_flags_then_bootstrap() {
        let words = vec![("acks".to_string(), "1".to_string()), ("bootstrap.servers".into(), "b:2".into())];
        let p = properties(Some(("f", "acks=all\nlinger.ms=7\nbootstrap.servers=a:1")), &words, None).unwrap();
        assert_eq!(p.get("acks").map(String::as_str), Some("1"));
        assert_eq!(p.get("linger.ms").map(String::as_str), Some("7"));
        assert_eq!(p.get("bootstrap.servers").map(String::as_str), Some("b:2"));
        assert_eq!(p.get("client.id").map(String::as_str), Some("perf-producer-client"));
        let p = properties(None, &words, Some("c:3")).unwrap();
        assert_eq!(p.get("bootstrap.servers").map(String::as_str), Some("c:3"));
        let p = properties(Some(("f", "client.id=mine")), &[], None).unwrap();
        assert_eq!(p.get("client.id").map(String::as_str), Some("mine"));
        assert!(
            matches!(properties(Some(("f", "a=\\u00")), &[], None), Err(Failure::Usage(m)) if m.starts_with("f: line 1"))
        );
    }

    #[test]
    fn throughput_flag() {
        assert_eq!(parse_throughput("-1"), Ok(-1.0));
        assert_eq!(parse_throughput("2.5"), Ok(2.5));
        assert!(parse_throughput("0").is_err());
        assert!(parse_throughput("fast").is_err());
        assert!(parse_throughput("NaN").is_err());
    }
}
