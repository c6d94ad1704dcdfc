//! Router throughput: small requests (Metadata for no topics) through `sansa::Client` and a
//! one-broker `FakeCluster` in one thread, bytes moved by hand between them (no sockets), on a
//! virtual clock that the loop advances by one microsecond per turn. Up to
//! `max.in.flight.requests.per.connection` requests are outstanding at any time.
//!
//! Also counts the client's heap allocations per request (the fake cluster's are not
//! counted): encoding the request, framing, the in-flight bookkeeping and decoding the answer.
//!
//! - `cargo bench -p sansa-conformance --bench requests`: criterion's requests/s, plus the
//!   allocations per request, printed once.
//! - `SANSA_BENCH_MILLION=1 cargo bench -p sansa-conformance --bench requests`: exactly
//!   1,000,000 requests once; prints requests/s and allocations per request (the figures
//!   quoted before and after a change to the router).
//! - add `-- --test` for a quick smoke run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput};
use sansa::protocol::frame::FrameDecoder;
use sansa::protocol::messages::MetadataRequest;
use sansa::protocol::RequestBody;
use sansa::{Client, CloseCause, Config, ConnId, Event, Input, Target, Transmit};
use sansa_conformance::fake_cluster::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput};

/// Requests kept outstanding: the client's default `max.in.flight.requests.per.connection`,
/// so every request is pipelined on the one connection and none waits in the client's queue.
const OUTSTANDING: usize = 5;

// ---- counting allocator -----------------------------------------------------------------

/// Forwards to the system allocator, counting allocations made while [`counted`] runs.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// A global allocator is unsafe by definition; this one only forwards to `System`.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` (a call into the client) with allocation counting on.
fn counted<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

// ---- client and fake cluster, wired together in memory ----------------------------------

/// One client and one fake broker. The client's connection ids double as the cluster's.
struct Bench {
    client: Client,
    cluster: FakeCluster,
    decoder: FrameDecoder,
    /// Client-to-broker bytes not yet forming a whole frame, per connection.
    inbound: BTreeMap<ConnId, BytesMut>,
    origin: Instant,
    micros: u64,
    body: RequestBody,
}

impl Bench {
    fn new() -> Self {
        let mut cluster = FakeCluster::new(FakeClusterConfig {
            brokers: 1,
            auto_create_topics: false,
            ..FakeClusterConfig::default()
        });
        cluster.set_address(1, "broker-1", 9092);
        let config = Config::new("broker-1:9092")
            .expect("address parses")
            .with_rng_seed(1)
            .with_max_in_flight_per_connection(OUTSTANDING)
            .with_request_timeout(Duration::from_secs(30));
        // The one real clock reading: every virtual instant is an offset from it.
        let origin = Instant::now();
        Bench {
            client: Client::new(config, origin),
            cluster,
            decoder: FrameDecoder::new(64 << 20),
            inbound: BTreeMap::new(),
            origin,
            micros: 0,
            body: MetadataRequest::default().with_topics(Some(vec![])).into(),
        }
    }

    fn now(&self) -> Instant {
        self.origin + Duration::from_micros(self.micros)
    }

    /// Sends `total` requests, keeping [`OUTSTANDING`] in flight, and waits for every answer.
    fn run(&mut self, total: u64) {
        let (mut issued, mut completed) = (0u64, 0u64);
        while completed < total {
            let now = self.now();
            while issued < total && issued - completed < OUTSTANDING as u64 {
                let body = self.body.clone();
                counted(|| self.client.request(now, Target::AnyBroker, body, None));
                issued += 1;
            }
            while let Some(transmit) = counted(|| self.client.poll_transmit(now)) {
                self.deliver_to_cluster(now, transmit);
            }
            while let Some(output) = self.cluster.poll_output() {
                self.deliver_to_client(now, output);
            }
            while let Some(event) = counted(|| self.client.poll_event()) {
                match event {
                    Event::Response { result: Ok(_), .. } => completed += 1,
                    other => panic!("a request failed: {other:?}"),
                }
            }
            if counted(|| self.client.poll_timeout()).is_some_and(|t| t <= now) {
                counted(|| self.client.handle_timeout(now));
            }
            if self.cluster.poll_timeout().is_some_and(|t| t <= now) {
                self.cluster.handle_timeout(now);
            }
            self.micros += 1;
        }
    }

    fn deliver_to_cluster(&mut self, now: Instant, transmit: Transmit) {
        match transmit {
            Transmit::Open { conn, .. } => {
                self.cluster.handle_connect(now, 1, FakeConnId(conn.0)).expect("broker 1 is up");
                counted(|| self.client.handle_input(now, Input::Connected { conn }));
            }
            Transmit::Send { conn, bytes } => {
                let buf = self.inbound.entry(conn).or_default();
                buf.extend_from_slice(&bytes);
                while let Some(frame) = self.decoder.decode(buf).expect("the client sends Kafka frames") {
                    self.cluster.handle_frame(now, FakeConnId(conn.0), frame).expect("the fake broker answers");
                }
            }
            Transmit::Close { conn } => {
                self.inbound.remove(&conn);
                self.cluster.handle_disconnect(FakeConnId(conn.0));
            }
            other => panic!("unexpected transmit {other:?}"),
        }
    }

    fn deliver_to_client(&mut self, now: Instant, output: FakeOutput) {
        let input = match output {
            FakeOutput::Send { conn, bytes } => Input::Received { conn: ConnId(conn.0), data: bytes },
            FakeOutput::Close { conn } => Input::Closed { conn: ConnId(conn.0), cause: CloseCause::PeerClosed },
        };
        counted(|| self.client.handle_input(now, input));
    }
}

/// Runs `total` requests on a fresh client (connection setup included) and returns the
/// wall time and the client's allocations.
fn measure(total: u64) -> (Duration, u64) {
    let mut bench = Bench::new();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    bench.run(total);
    (started.elapsed(), ALLOCATIONS.load(Ordering::Relaxed) - before)
}

fn report(total: u64) {
    let (elapsed, allocations) = measure(total);
    println!(
        "{total} requests in {:.3} s: {:.0} requests/s, {:.2} client allocations per request",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        allocations as f64 / total as f64
    );
}

fn main() {
    if std::env::var_os("SANSA_BENCH_MILLION").is_some() {
        report(1_000_000);
        return;
    }
    // Criterion's `--test` runs each benchmark once; keep the printed figure as quick.
    let smoke = std::env::args().any(|a| a == "--test");
    report(if smoke { 1_000 } else { 100_000 });

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("requests");
    group.throughput(Throughput::Elements(1));
    group.bench_function("metadata_pipelined", |b| {
        // Each sample gets a fresh client; the connection setup is noise next to `iters` requests.
        b.iter_custom(|iters| measure(iters).0);
    });
    group.finish();
    criterion.final_summary();
}
