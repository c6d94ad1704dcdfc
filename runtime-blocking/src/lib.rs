//! Drives the [`sansa`] Kafka client core with `std::net` and threads: no async runtime.
//!
//! [`KafkaClient::connect`] starts one driver thread that runs the core [`sansa::Client`];
//! every connection gets a reader thread and a writer thread (the driver writes itself while
//! the socket takes its bytes at once; the writer thread takes what would block). A blocking
//! call made while the driver thread sleeps runs the client on the calling thread instead of
//! waking it: a consumer's poll is then answered, and its records decoded, where they are
//! read. Handles are cheap to clone and can be used from any number of threads at once; each
//! call blocks the calling thread.
//! [`KafkaClient::send`] submits a request without waiting, so one thread can pipeline many.
//!
//! # Quickstart
//!
//! ```no_run
//! use sansa::protocol::messages::MetadataRequest;
//! use sansa::Target;
//! use sansa_blocking::KafkaClient;
//!
//! let client = KafkaClient::from_properties([("bootstrap.servers", "localhost:9092")])?;
//! let versions = client.check_version(Target::AnyBroker)?;
//! println!("connected to {}", versions.release);
//! let cluster = client.metadata(None)?;
//! println!("{} brokers", cluster.brokers.len());
//!
//! // Submit many requests first, then wait for each: they are pipelined.
//! let pending: Vec<_> =
//!     (0..100).map(|_| client.submit(Target::AnyBroker, MetadataRequest::default().with_topics(Some(vec![])))).collect();
//! for p in pending {
//!     let response = p.wait()?;
//!     println!("answered by {}", response.node);
//! }
//! client.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use futures_lite::Stream;
use sansa::cluster::ClusterMetadata;
use sansa::driver::outcome::Reply;
use sansa::driver::{
    self, DeliveryFuture, Dispatcher, Handle, InlineDriver, Intake, Outbox, ReadBuffer, WriteQueue,
    DEFAULT_INTAKE_CAPACITY,
};
use sansa::producer::{ProduceError, ProducerRecord};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{
    BrokerAddress, BrokerVersions, CloseCause, Config, ConfigError, ConnId, Input, RequestError, Response, Target,
    Transmit,
};

/// Inputs queued from connection threads to the driver; bounded so a driver that falls
/// behind stops the sockets from reading instead of buffering without limit.
const INPUT_QUEUE: usize = 256;

/// A handle to a Kafka client driven by a background thread. Clone it freely; every clone
/// talks to the same connections. When the last clone is dropped the client closes, letting
/// requests in flight (including [`PendingResponse`]s) finish first.
#[derive(Debug, Clone)]
pub struct KafkaClient {
    handle: Handle,
}

/// Every command of the shared handle (`sansa::driver::Handle`), so a machine the core gains
/// reaches applications without a change here.
impl std::ops::Deref for KafkaClient {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl KafkaClient {
    /// Starts the driver; no I/O happens until the first command. Errors only for a config
    /// that [`Config::validate`] refuses.
    pub fn connect(config: Config) -> Result<KafkaClient, ConfigError> {
        let (handle, mut dispatcher) = driver::start(config, Instant::now(), DEFAULT_INTAKE_CAPACITY)?;
        dispatcher.set_wall_clock(Instant::now(), unix_ms());
        // Compression and decompression run on threads of the client's own, started
        // as work comes, one per spare core at most, beside the driver thread.
        dispatcher.offload_to_threads(driver::spare_cores(), |jobs| {
            std::thread::Builder::new().name("sansa-work".into()).spawn(move || jobs.run()).is_ok()
        });
        // The blocking methods wait with a deadline on this clock; there is no async sleep here.
        let handle = handle.with_timer(driver::Timer { now: Instant::now, sleep: None });
        let shared = Shared::new(dispatcher);
        let on_thread = Arc::clone(&shared);
        match thread::Builder::new().name("sansa-driver".into()).spawn(move || drive(&on_thread)) {
            Ok(started) => {
                let _ = shared.thread.set(started.thread().clone());
                Ok(KafkaClient { handle: handle.with_inline(shared) })
            }
            // The dispatcher is dropped with `shared`: every call reports ClientClosed.
            Err(_) => Ok(KafkaClient { handle }),
        }
    }

    /// [`KafkaClient::connect`] with a configuration from Java-style properties.
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<KafkaClient, ConfigError> {
        Self::connect(Config::from_properties(props)?)
    }

    /// Sends `body` to `target` at the highest version both sides support and waits for the
    /// answer.
    pub fn request(&self, target: Target, body: impl Into<RequestBody>) -> Result<Response, RequestError> {
        self.handle.request_blocking(target, body.into(), None)
    }

    /// Sends `body` to `target` at `version` and waits for the answer.
    pub fn request_version(
        &self,
        target: Target,
        body: impl Into<RequestBody>,
        version: i16,
    ) -> Result<Response, RequestError> {
        self.handle.request_blocking(target, body.into(), Some(version))
    }

    /// Submits a request, blocking only while the driver's intake is full;
    /// [`PendingResponse::wait`] gets the answer.
    pub fn submit(&self, target: Target, body: impl Into<RequestBody>) -> PendingResponse {
        PendingResponse { reply: self.handle.send_request_blocking(target, body.into(), None) }
    }

    /// Fetches metadata for `topics` (every topic when `None`).
    pub fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        self.handle.metadata_blocking(topics)
    }

    /// Connects to `target` and reports its API versions and the Kafka release they indicate.
    pub fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        self.handle.check_version_blocking(target)
    }

    /// Produces a record: returns once it is in the producer's buffer (blocking up to
    /// `max.block.ms` while `buffer.memory` is full) with its delivery's future;
    /// [`DeliveryFuture::wait`] gets the outcome, like kafka-python's `future.get()`.
    pub fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        self.handle.send_blocking(record)
    }

    /// Sends every buffered record now and returns once each record sent before the call
    /// has its outcome.
    pub fn flush(&self) {
        self.handle.flush_blocking();
    }

    /// Lets in-flight requests finish or time out, then closes every connection. Later calls
    /// on any clone return [`RequestError::ClientClosed`].
    pub fn close(&self) {
        self.handle.close_blocking();
    }

    /// [`KafkaClient::close`], giving up after `timeout`: undelivered records then fail with
    /// [`ProduceError::Closed`].
    pub fn close_within(&self, timeout: Duration) {
        self.handle.close_within_blocking(timeout);
    }
}

/// A request submitted with [`KafkaClient::submit`] whose answer has not been collected yet.
#[derive(Debug)]
pub struct PendingResponse {
    reply: Reply<Result<Response, RequestError>>,
}

impl PendingResponse {
    /// Blocks until the answer arrives (at the latest when the request times out).
    pub fn wait(self) -> Result<Response, RequestError> {
        self.reply.recv_blocking()?
    }

    /// Waits at most `timeout`; `None` if the answer has not arrived by then. Once this
    /// returned `Some`, the answer has been taken: do not wait again.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<Response, RequestError>> {
        let answer = block_on_until(Some(Instant::now() + timeout), self.reply.recv())?;
        Some(answer.map_err(RequestError::from).and_then(|r| r))
    }
}

/// Runs `future` on this thread until it completes or `deadline` passes.
fn block_on_until<F: Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        // Parking may end early (an unpark from an earlier wake); polling again is harmless.
        match deadline {
            None => thread::park(),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => thread::park_timeout(left),
                _ => return None,
            },
        }
    }
}

/// The driver's side of one connection.
#[derive(Debug)]
struct Conn {
    /// Bytes handed out in this pass of the driver, written together at its end.
    unsent: WriteQueue,
    /// Bytes on their way, written by the driver or the connection's writer thread.
    outbox: Arc<Outbox>,
    socket: Arc<Mutex<Socket>>,
}

/// Shared with the connection thread so that a close can interrupt its blocking reads.
#[derive(Debug, Default)]
struct Socket {
    closed: bool,
    stream: Option<Arc<TcpStream>>,
}

impl Conn {
    /// Writes the pass's bytes (see [`Outbox::send`]).
    fn flush(&mut self) -> std::io::Result<()> {
        let stream = self.socket.lock().unwrap_or_else(|e| e.into_inner()).stream.clone();
        let write_now =
            stream.as_deref().map(|s| |slices: &[std::io::IoSlice<'_>]| sansa_socket::send_nonblocking(s, slices));
        self.outbox.send(write_now, &mut self.unsent)
    }

    fn close(self) {
        let mut s = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        s.closed = true;
        if let Some(stream) = s.stream.take() {
            // Wakes the reader (and a writer stuck on a full socket); they then exit.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// However it goes, a connection's writer thread ends with it.
impl Drop for Conn {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

/// The driver's state, run by its own thread, or by an application thread that makes a
/// blocking call while the driver thread sleeps ([`InlineDriver`]).
struct Driver {
    dispatcher: Dispatcher,
    conns: HashMap<ConnId, Conn>,
    inputs: Pin<Box<Receiver<Input>>>,
    inputs_tx: Sender<Input>,
    /// When the sleeping driver thread wakes by itself (`None`: only when woken).
    wakes_at: Option<Instant>,
}

/// The driver between its thread and the handles; `None` once the driver thread ended.
struct Shared {
    driver: Mutex<Option<Driver>>,
    /// Set while the driver thread waits for the mutex: an application thread that keeps
    /// calling could otherwise take it again and again ahead of the driver's inputs.
    driver_waiting: AtomicBool,
    /// The driver thread, which every waker wakes.
    thread: OnceLock<Thread>,
}

impl Shared {
    fn new(dispatcher: Dispatcher) -> Arc<Shared> {
        let (inputs_tx, inputs) = async_channel::bounded(INPUT_QUEUE);
        let driver = Driver { dispatcher, conns: HashMap::new(), inputs: Box::pin(inputs), inputs_tx, wakes_at: None };
        Arc::new(Shared {
            driver: Mutex::new(Some(driver)),
            driver_waiting: AtomicBool::new(false),
            thread: OnceLock::new(),
        })
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl Driver {
    /// Carries out transmits.
    fn transmit(&mut self, now: Instant) {
        // Until every write went out or was handed over: a connection that failed to write is
        // closed, and what the client sends instead (elsewhere) goes out in this pass too.
        loop {
            while let Some(t) = self.dispatcher.poll_transmit(now) {
                if let Some(failed) = apply(t, &mut self.conns, &self.inputs_tx) {
                    self.dispatcher.handle_input(now, failed);
                }
            }
            let failed: Vec<(ConnId, CloseCause)> = (self.conns.iter_mut())
                .filter(|(_, c)| !c.unsent.is_empty())
                .filter_map(|(&id, c)| c.flush().err().map(|e| (id, CloseCause::from(&e))))
                .collect();
            if failed.is_empty() {
                return;
            }
            for (conn, cause) in failed {
                if let Some(closed) = self.conns.remove(&conn) {
                    closed.close();
                }
                self.dispatcher.handle_input(now, Input::Closed { conn, cause });
            }
        }
    }

    /// Handles everything ready (intake, socket inputs, an expired deadline) until nothing
    /// is, leaving `cx`'s waker registered with both sources; returns the next deadline.
    fn run(&mut self, cx: &mut Context<'_>) -> Option<Instant> {
        loop {
            let now = Instant::now();
            self.transmit(now);
            self.dispatcher.deliver();
            let deadline = self.dispatcher.poll_timeout();
            if self.dispatcher.is_finished() {
                return deadline;
            }
            // Both sources are polled on each round, so a busy intake cannot starve the sockets.
            let mut busy = false;
            if let Poll::Ready(intake) = self.dispatcher.poll_intake(cx) {
                self.dispatcher.handle_intake(now, intake);
                busy = true;
            }
            if let Poll::Ready(input) = self.inputs.as_mut().poll_next(cx) {
                if let Some(input) = input.filter(|i| accept(i, &mut self.conns)) {
                    self.dispatcher.handle_input(now, input);
                }
                busy = true;
            }
            if deadline.is_some_and(|d| now >= d) {
                self.dispatcher.handle_timeout(now);
                busy = true;
            }
            if !busy {
                return deadline;
            }
        }
    }
}

/// Ends the driver when its thread ends, by returning or by a panic (in an application's
/// callback): handles that outlive it find it gone, and their calls report ClientClosed
/// instead of waiting on an intake nobody reads.
struct EndsWithThread<'a>(&'a Shared);

impl Drop for EndsWithThread<'_> {
    fn drop(&mut self) {
        let ended = self.0.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut driver) = ended {
            // Connections first, as a finished driver does; then the outcomes left fail.
            for conn in std::mem::take(&mut driver.conns).into_values() {
                conn.close();
            }
        }
    }
}

fn drive(shared: &Shared) {
    let _ends = EndsWithThread(shared);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        shared.driver_waiting.store(true, Ordering::Release);
        let mut guard = shared.driver.lock().unwrap_or_else(|e| e.into_inner());
        shared.driver_waiting.store(false, Ordering::Release);
        let Some(driver) = guard.as_mut() else { return };
        let deadline = driver.run(&mut cx);
        if driver.dispatcher.is_finished() {
            return;
        }
        driver.wakes_at = deadline;
        drop(guard);
        // A wake between the unlock and here makes the park return at once.
        match deadline {
            None => thread::park(),
            Some(d) => {
                if let Some(left) = d.checked_duration_since(Instant::now()) {
                    thread::park_timeout(left);
                }
            }
        }
    }
}

impl InlineDriver for Shared {
    /// The calling thread runs the command when the driver thread is not running (it sleeps
    /// between inputs): a blocking poll then answers without a wake-up on either side, and
    /// the records it decodes are read by the thread that decoded them.
    fn run_inline(&self, intake: Intake) -> Option<Intake> {
        let Some(thread) = self.thread.get() else { return Some(intake) };
        // The driver thread has work (it is woken for it): it goes first.
        if self.driver_waiting.load(Ordering::Acquire) {
            return Some(intake);
        }
        let Ok(mut guard) = self.driver.try_lock() else { return Some(intake) };
        let Some(driver) = guard.as_mut() else { return Some(intake) };
        let now = Instant::now();
        if let Err(queued) = driver.dispatcher.handle_inline(now, intake) {
            return Some(queued);
        }
        driver.transmit(now);
        let wake = driver.dispatcher.finish_inline(driver.wakes_at);
        drop(guard);
        if wake {
            thread.unpark();
        }
        None
    }
}

/// Drops inputs from connections already closed; forgets a connection that reports closing.
fn accept(input: &Input, conns: &mut HashMap<ConnId, Conn>) -> bool {
    match input {
        Input::Connected { conn } | Input::Received { conn, .. } => conns.contains_key(conn),
        Input::Closed { conn, .. } => conns.remove(conn).map(Conn::close).is_some(),
        _ => true,
    }
}

/// Carries out one transmit. A connection whose thread cannot start is reported closed by
/// the return value: the driver thread must not wait on its own full input queue.
fn apply(t: Transmit, conns: &mut HashMap<ConnId, Conn>, inputs: &Sender<Input>) -> Option<Input> {
    match t {
        Transmit::Open { conn, address } => {
            let outbox = Arc::new(Outbox::default());
            let socket = Arc::new(Mutex::new(Socket::default()));
            let (shared, tx, writes) = (socket.clone(), inputs.clone(), outbox.clone());
            let spawned = thread::Builder::new()
                .name(format!("sansa-conn-{}", conn.0))
                .spawn(move || connection(conn, &address, &tx, writes, &shared));
            match spawned {
                Ok(_) => drop(conns.insert(conn, Conn { unsent: WriteQueue::new(), outbox, socket })),
                Err(e) => return Some(Input::Closed { conn, cause: CloseCause::Io(e.to_string()) }),
            }
        }
        Transmit::Send { conn, bytes } => {
            if let Some(c) = conns.get_mut(&conn) {
                c.unsent.push(bytes);
            }
        }
        Transmit::Close { conn } => {
            if let Some(c) = conns.remove(&conn) {
                c.close();
            }
        }
        _ => {}
    }
    None
}

/// One connection's thread: connect, start the writer, then read until the socket closes.
fn connection(conn: ConnId, address: &BrokerAddress, tx: &Sender<Input>, outbox: Arc<Outbox>, socket: &Mutex<Socket>) {
    let closed = |cause| {
        let _ = tx.send_blocking(Input::Closed { conn, cause });
    };
    let stream = match open(address) {
        Ok(s) => Arc::new(s),
        Err(cause) => return closed(cause),
    };
    {
        let mut s = socket.lock().unwrap_or_else(|e| e.into_inner());
        if s.closed {
            return; // closed while connecting: dropping the stream closes it
        }
        s.stream = Some(stream.clone());
    }
    let (w_stream, w_tx) = (stream.clone(), tx.clone());
    let spawned = thread::Builder::new()
        .name(format!("sansa-write-{}", conn.0))
        .spawn(move || write_loop(conn, &w_stream, &w_tx, &outbox));
    if let Err(e) = spawned {
        let _ = stream.shutdown(Shutdown::Both);
        return closed(CloseCause::Io(e.to_string()));
    }
    if tx.send_blocking(Input::Connected { conn }).is_err() {
        return;
    }
    let (mut buf, mut low_water) = (ReadBuffer::new(), sansa_socket::LowWaterMark::new());
    loop {
        // A large frame is read once the kernel holds a good part of it (on Linux, where the
        // socket's low-water mark is kept); see `LowWaterMark::read_blocking`.
        let Some((data, end)) = low_water.read_blocking(&stream, &mut buf) else { continue };
        if let Some(data) = data {
            if tx.send_blocking(Input::Received { conn, data }).is_err() {
                return; // driver gone
            }
        }
        if let Some(cause) = end {
            return closed(cause);
        }
    }
}

fn write_loop(conn: ConnId, stream: &TcpStream, tx: &Sender<Input>, outbox: &Outbox) {
    // Ends when the driver closes the connection, or at a failed write, which closes it.
    if let Err(e) = outbox.write_until_closed(stream) {
        let _ = tx.send_blocking(Input::Closed { conn, cause: CloseCause::from(&e) });
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Resolves the host and tries each address in turn.
fn open(address: &BrokerAddress) -> Result<TcpStream, CloseCause> {
    let addrs: Vec<SocketAddr> = match (address.host.as_str(), address.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => Vec::new(),
    };
    let mut last = CloseCause::UnknownHost(address.host.clone());
    for addr in addrs {
        match TcpStream::connect(addr) {
            Ok(s) => {
                return match s.set_nodelay(true) {
                    Ok(()) => Ok(s),
                    Err(e) => Err(CloseCause::from(&e)),
                }
            }
            Err(e) => last = CloseCause::from(&e),
        }
    }
    Err(last)
}

/// Milliseconds since the Unix epoch, for the producer's record timestamps.
fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose driver thread never starts: calls made inline drive it, or the test.
    fn without_driver_thread() -> (Handle, Arc<Shared>) {
        let config = Config::new("127.0.0.1:9").unwrap();
        let (handle, dispatcher) = driver::start(config, Instant::now(), DEFAULT_INTAKE_CAPACITY).unwrap();
        let shared = Shared::new(dispatcher);
        // Wakes meant for the driver thread reach this test's thread, harmlessly.
        shared.thread.set(thread::current()).unwrap();
        let inline = handle.with_inline(shared.clone());
        (inline, shared)
    }

    /// Runs the driver once on this thread, as its own thread would.
    fn run_driver(shared: &Shared) {
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        shared.driver.lock().unwrap().as_mut().unwrap().run(&mut Context::from_waker(&waker));
    }

    #[test]
    fn a_blocking_call_queues_while_the_driver_runs_or_waits_to() {
        let (handle, shared) = without_driver_thread();
        for driver_waits in [false, true] {
            // The driver runs elsewhere (holds the mutex), or waits for it.
            let running = (!driver_waits).then(|| shared.driver.lock().unwrap());
            shared.driver_waiting.store(driver_waits, Ordering::Release);
            let (tx, rx) = std::sync::mpsc::channel();
            let caller = handle.clone();
            thread::spawn(move || tx.send(caller.metrics_blocking()));
            thread::sleep(Duration::from_millis(100));
            assert!(rx.try_recv().is_err(), "queued, not run");
            shared.driver_waiting.store(false, Ordering::Release);
            drop(running);
            run_driver(&shared);
            let metrics = rx.recv_timeout(Duration::from_secs(5)).expect("answered by the driver's run");
            assert!(metrics.contains_key("record-send-total"));
        }
    }
}
