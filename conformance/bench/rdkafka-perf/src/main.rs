//! rdkafka-perf: librdkafka's producer driven like Kafka's ProducerPerformance
//! (kafka-producer-perf-test), for conformance/bench/compare.
//!
//! Same command line (--topic, --num-records, --record-size, --throughput, --producer-props,
//! --producer.config, --bootstrap-server), same payloads (A-Z bytes from a SplitMix64 generator
//! seeded with 0, the algorithm of java.util.SplittableRandom, so the bytes equal the Java
//! tool's; drawn once into an 8 MiB pool that record `i` takes the `i`-th slice of, as
//! `sansa perf produce` does, so that no client's CPU carries a draw per byte), same latency (from the send call to the delivery
//! callback, whole milliseconds, sampled into at most 500,000 slots), same final line, then a
//! `cpu:` line from getrusage.
//!
//! `rdkafka-perf consume ...` is the consumer's mode (src/consume.rs).
//!
//! The producer properties go to librdkafka unchanged (it takes the Java names acks,
//! linger.ms, compression.type, batch.size, enable.idempotence, ...).

mod consume;

use std::collections::BTreeMap;
use std::process::exit;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

const USAGE: &str = "usage: rdkafka-perf --topic TOPIC --num-records N \
(--record-size BYTES) --throughput RECORDS_PER_SEC|-1 \
[--producer-props K=V ...] [--producer.config FILE] [--bootstrap-server HOST:PORT,...]";

fn die(msg: &str) -> ! {
    eprintln!("rdkafka-perf: {msg}\n{USAGE}");
    exit(2)
}

struct Args {
    topic: String,
    num_records: u64,
    record_size: usize,
    throughput: f64,
    props: BTreeMap<String, String>,
}

/// `k=v` lines of a Java properties file (comments and blank lines skipped).
fn read_props_file(path: &str, into: &mut BTreeMap<String, String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        match line.split_once(['=', ':']) {
            Some((k, v)) => into.insert(k.trim().to_string(), v.trim().to_string()),
            None => die(&format!("{path}: not a key=value line: {line}")),
        };
    }
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut topic, mut num, mut size, mut tput) = (None, None, None, None);
    let (mut cli_props, mut config_file, mut bootstrap) = (Vec::new(), None, None);
    let mut i = 0;
    let value = |i: usize| -> &String { argv.get(i + 1).unwrap_or_else(|| die(&format!("{} needs a value", argv[i]))) };
    while i < argv.len() {
        match argv[i].as_str() {
            "--topic" => topic = Some(value(i).clone()),
            "--num-records" => num = Some(value(i).parse::<u64>().unwrap_or_else(|_| die("bad --num-records"))),
            "--record-size" => size = Some(value(i).parse::<usize>().unwrap_or_else(|_| die("bad --record-size"))),
            "--throughput" => tput = Some(value(i).parse::<f64>().unwrap_or_else(|_| die("bad --throughput"))),
            "--producer.config" | "--command-config" => config_file = Some(value(i).clone()),
            "--bootstrap-server" => bootstrap = Some(value(i).clone()),
            "--producer-props" | "--command-property" => {
                // one or more K=V words, up to the next --flag
                let start = i + 1;
                while i + 1 < argv.len() && !argv[i + 1].starts_with("--") {
                    cli_props.push(argv[i + 1].clone());
                    i += 1;
                }
                if i + 1 == start {
                    die(&format!("{} needs K=V", argv[start - 1]));
                }
                i += 1;
                continue;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => die(&format!("unknown argument '{other}'")),
        }
        i += 2;
    }
    // Precedence as in ProducerPerformance: config file < --producer-props < --bootstrap-server.
    let mut props = BTreeMap::new();
    if let Some(f) = &config_file {
        read_props_file(f, &mut props);
    }
    for p in &cli_props {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.contains('=') => props.insert(k.to_string(), v.to_string()),
            _ => die(&format!("invalid property: {p}")),
        };
    }
    if let Some(b) = bootstrap {
        props.insert("bootstrap.servers".into(), b);
    }
    props.entry("client.id".into()).or_insert_with(|| "perf-producer-client".into());
    if !props.contains_key("bootstrap.servers") {
        die("no bootstrap.servers (give --bootstrap-server or --producer-props bootstrap.servers=...)");
    }
    let args = Args {
        topic: topic.unwrap_or_else(|| die("--topic is required")),
        num_records: num.unwrap_or_else(|| die("--num-records is required")),
        record_size: size.unwrap_or_else(|| die("--record-size is required")),
        throughput: tput.unwrap_or_else(|| die("--throughput is required")),
        props,
    };
    if args.num_records == 0 || args.record_size == 0 {
        die("--num-records and --record-size must be greater than zero");
    }
    args
}

/// java.util.SplittableRandom (SplitMix64): nextInt(bound) as the JDK computes it.
struct SplitMix64 {
    seed: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    fn next_int(&mut self) -> i32 {
        self.seed = self.seed.wrapping_add(Self::GAMMA);
        let mut z = self.seed;
        z = (z ^ (z >> 33)).wrapping_mul(0x62a9_d9ed_7997_05f5);
        ((z ^ (z >> 28)).wrapping_mul(0xcb24_d0a5_c88c_35b3) >> 32) as i32
    }
    fn next_int_bounded(&mut self, bound: i32) -> i32 {
        let m = bound - 1;
        let mut r = self.next_int();
        if bound & m == 0 {
            return r & m;
        }
        let mut u = ((r as u32) >> 1) as i32;
        loop {
            r = u % bound;
            if u.wrapping_add(m).wrapping_sub(r) >= 0 {
                return r;
            }
            u = ((self.next_int() as u32) >> 1) as i32;
        }
    }
}

/// ProducerPerformance's statistics: totals, a 5 s progress window, sampled latencies.
struct Stats {
    start: Instant,
    latencies: Vec<i32>,
    sampling: u64,
    iteration: u64,
    count: u64,
    bytes: u64,
    max_latency: i32,
    total_latency: u64,
    window_start: Instant,
    window_count: u64,
    window_bytes: u64,
    window_max_latency: i32,
    window_total_latency: u64,
    errors: u64,
}

const REPORTING_INTERVAL: Duration = Duration::from_millis(5000);

impl Stats {
    fn new(num_records: u64, now: Instant) -> Stats {
        let sampling = num_records / num_records.min(500_000);
        Stats {
            start: now,
            latencies: Vec::with_capacity((num_records / sampling + 1) as usize),
            sampling,
            iteration: 0,
            count: 0,
            bytes: 0,
            max_latency: 0,
            total_latency: 0,
            window_start: now,
            window_count: 0,
            window_bytes: 0,
            window_max_latency: 0,
            window_total_latency: 0,
            errors: 0,
        }
    }

    fn record(&mut self, latency: i32, bytes: u64, now: Instant) {
        self.count += 1;
        self.bytes += bytes;
        self.total_latency += latency as u64;
        self.max_latency = self.max_latency.max(latency);
        self.window_count += 1;
        self.window_bytes += bytes;
        self.window_total_latency += latency as u64;
        self.window_max_latency = self.window_max_latency.max(latency);
        if self.iteration.is_multiple_of(self.sampling) {
            self.latencies.push(latency);
        }
        self.iteration += 1;
        if now - self.window_start >= REPORTING_INTERVAL {
            self.print_window(now);
            self.window_start = now;
            self.window_count = 0;
            self.window_bytes = 0;
            self.window_max_latency = 0;
            self.window_total_latency = 0;
        }
    }

    fn print_window(&self, now: Instant) {
        let ms = (now - self.window_start).as_millis().max(1) as f64;
        println!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            self.window_count,
            1000.0 * self.window_count as f64 / ms,
            1000.0 * self.window_bytes as f64 / ms / (1024.0 * 1024.0),
            self.window_total_latency as f64 / self.window_count.max(1) as f64,
            self.window_max_latency as f64
        );
    }

    fn print_total(&mut self) {
        let ms = self.start.elapsed().as_millis().max(1) as f64;
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let pct = |p: f64| if n == 0 { 0 } else { self.latencies[((p * n as f64) as usize).min(n - 1)] };
        println!(
            "{} records sent, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, \
             {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
            self.count,
            1000.0 * self.count as f64 / ms,
            1000.0 * self.bytes as f64 / ms / (1024.0 * 1024.0),
            self.total_latency as f64 / self.count.max(1) as f64,
            self.max_latency as f64,
            pct(0.5),
            pct(0.95),
            pct(0.99),
            pct(0.999)
        );
    }
}

/// Delivery callbacks run on the thread that calls poll (this program's only thread), so the
/// mutex is never contended; ClientContext must be Sync, hence no RefCell.
struct PerfContext {
    epoch: Instant,
    record_size: u64,
    stats: Mutex<Stats>,
}

impl ClientContext for PerfContext {
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("rdkafka-perf: librdkafka error: {error}: {reason}");
    }
}

impl ProducerContext for PerfContext {
    /// The send time, in milliseconds since `epoch`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ms: usize) {
        let now = Instant::now();
        let mut stats = self.stats.lock().unwrap();
        match result {
            Ok(_) => {
                let latency = (now - self.epoch).as_millis() as usize - sent_ms;
                stats.record(latency as i32, self.record_size, now);
            }
            Err((e, _)) => {
                if stats.errors < 10 {
                    eprintln!("rdkafka-perf: delivery failed: {e}");
                }
                stats.errors += 1;
            }
        }
    }
}

fn cpu_seconds() -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("consume") {
        consume::main(&argv[1..]);
        return;
    }
    let args = parse_args();
    let mut config = ClientConfig::new();
    for (k, v) in &args.props {
        config.set(k, v);
    }
    let epoch = Instant::now();
    let context = PerfContext {
        epoch,
        record_size: args.record_size as u64,
        stats: Mutex::new(Stats::new(args.num_records, epoch)),
    };
    let producer: BaseProducer<PerfContext> =
        config.create_with_context(context).unwrap_or_else(|e| die(&format!("cannot create the producer: {e}")));
    let ms_since = |t: Instant| (t - epoch).as_millis() as usize;

    let payloads = Payloads::new(args.record_size);
    let start = Instant::now();
    producer.context().stats.lock().unwrap().start = start;
    for i in 0..args.num_records {
        let payload = payloads.get(i as u64);
        let send_start = Instant::now();
        let mut record =
            BaseRecord::<(), [u8], usize>::with_opaque_to(&args.topic, ms_since(send_start)).payload(payload);
        // librdkafka refuses (QueueFull) instead of blocking as Java's send does: serve delivery
        // reports until there is room, keeping the first attempt's time as the send time.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    eprintln!("rdkafka-perf: send failed: {e}");
                    exit(1);
                }
            }
        }
        producer.poll(Duration::ZERO);
        if args.throughput > 0.0 {
            // at most `throughput` records per second on average since the start
            let due = start + Duration::from_secs_f64((i + 1) as f64 / args.throughput);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    // Like KafkaProducer.close(): wait for every delivery report, then shut the client down.
    while producer.in_flight_count() > 0 {
        producer.poll(Duration::from_millis(1));
    }
    let (stats_errors, mut stats) = {
        let ctx = producer.context();
        let mut guard = ctx.stats.lock().unwrap();
        let taken = std::mem::replace(&mut *guard, Stats::new(1, epoch));
        (taken.errors, taken)
    };
    drop(producer);
    stats.print_total();
    let (user, system) = cpu_seconds();
    println!(
        "cpu: {:.2} s user, {:.2} s system, {:.2} s per million records",
        user,
        system,
        (user + system) * 1e6 / args.num_records as f64
    );
    if stats_errors > 0 {
        eprintln!("rdkafka-perf: {stats_errors} records failed");
        exit(1);
    }
}

/// Bytes drawn into the pool once; the same size as `sansa perf produce`'s.
const PAYLOAD_POOL: usize = 8 << 20;

/// ProducerPerformance's payload stream drawn once: record `i` gets the `i`-th slice of the
/// pool, wrapping when it runs out (no batch is large enough to hold a repeat).
struct Payloads {
    pool: Vec<u8>,
    per_pool: u64,
    size: usize,
}

impl Payloads {
    fn new(size: usize) -> Payloads {
        let per_pool = (PAYLOAD_POOL / size.max(1)).max(1);
        let mut random = SplitMix64 { seed: 0 };
        let pool = (0..per_pool * size).map(|_| (random.next_int_bounded(26) + 65) as u8).collect();
        Payloads { pool, per_pool: per_pool as u64, size }
    }

    fn get(&self, record: u64) -> &[u8] {
        let start = (record % self.per_pool) as usize * self.size;
        &self.pool[start..start + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::{Payloads, SplitMix64};

    /// The first 64 payload bytes of Kafka's ProducerPerformance: new SplittableRandom(0),
    /// nextInt(26) + 65 per byte (printed by a three-line Java program on JDK 17).
    #[test]
    fn payload_matches_java() {
        let mut r = SplitMix64 { seed: 0 };
        let s: String = (0..64).map(|_| (r.next_int_bounded(26) + 65) as u8 as char).collect();
        assert_eq!(s, "YQHHNEBSEPDNSEIFGAMSUJXKOLTXSPLGHDIOYZJFNIDSPWHZMKVJAXDBZFCOXYKY");
    }

    /// The pool continues the generator's stream from one record to the next and wraps.
    #[test]
    fn payloads_continue_the_stream_and_wrap() {
        let p = Payloads::new(1000);
        assert_eq!(&p.get(0)[..8], b"YQHHNEBS");
        let mut r = SplitMix64 { seed: 0 };
        let stream: Vec<u8> = (0..2000).map(|_| (r.next_int_bounded(26) + 65) as u8).collect();
        assert_eq!(p.get(1), &stream[1000..]);
        assert_eq!(p.get(p.per_pool), p.get(0));
    }
}
