//! Drives the [`sansa`] Kafka client core on [`async_io`]: the same code runs under
//! async-std and smol (and any executor whose tasks may block on `async-io`'s reactor).
//!
//! This crate does not pick an executor, so it cannot spawn tasks itself.
//! [`KafkaClient::connect`] returns the handle together with a [`Driver`]: a
//! `Future<Output = ()> + Send + 'static` that owns the core [`sansa::Client`] and every
//! connection. **Spawn it on your executor** (`async_std::task::spawn(driver)` or
//! `smol::spawn(driver).detach()`); until it runs, calls on the handle wait. The driver
//! finishes after [`KafkaClient::close`] or once every handle is dropped; later calls return
//! [`RequestError::ClientClosed`].
//!
//! # Quickstart
//!
//! ```no_run
//! use sansa::protocol::messages::MetadataRequest;
//! use sansa::Target;
//! use sansa_async_std::KafkaClient;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async_std::task::block_on(async {
//!     let (client, driver) = KafkaClient::from_properties([("bootstrap.servers", "localhost:9092")])?;
//!     async_std::task::spawn(driver); // with smol: smol::spawn(driver).detach();
//!
//!     let versions = client.check_version(Target::AnyBroker).await?;
//!     println!("connected to {}", versions.release);
//!     let cluster = client.metadata(None).await?;
//!     println!("{} brokers", cluster.brokers.len());
//!     let response = client.request(Target::AnyBroker, MetadataRequest::default().with_topics(Some(vec![]))).await?;
//!     println!("answered by {}", response.node);
//!     client.close().await;
//!     Ok(())
//! })
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::{Async, Timer};
use futures_lite::{AsyncWrite, Stream};
use sansa::cluster::ClusterMetadata;
use sansa::driver::{self, Dispatcher, Handle, ReadBuffer, WriteQueue, DEFAULT_INTAKE_CAPACITY};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{
    BrokerAddress, BrokerVersions, CloseCause, Config, ConfigError, ConnId, Input, RequestError, Response, Target,
    Transmit,
};
use sansa_socket::LowWaterMark;

/// A handle to a Kafka client run by its [`Driver`]. Clone it freely; every clone talks to
/// the same connections. When the last clone is dropped the client closes, letting requests
/// in flight finish first.
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
    /// Creates the client and its [`Driver`], which the caller must spawn; no I/O happens
    /// until the first command. Errors only for a config that [`Config::validate`] refuses.
    pub fn connect(config: Config) -> Result<(KafkaClient, Driver), ConfigError> {
        let (handle, mut dispatcher) = driver::start(config, Instant::now(), DEFAULT_INTAKE_CAPACITY)?;
        dispatcher.set_wall_clock(Instant::now(), unix_ms());
        // Compression and decompression run on threads of the client's own,
        // started as work comes, one per spare core at most.
        dispatcher.offload_to_threads(driver::spare_cores(), |jobs| {
            std::thread::Builder::new().name("sansa-work".into()).spawn(move || jobs.run()).is_ok()
        });
        let handle = handle.with_timer(driver::Timer {
            now: Instant::now,
            sleep: Some(std::sync::Arc::new(|d| {
                Box::pin(async move {
                    Timer::after(d).await;
                })
            })),
        });
        let driver = Driver {
            dispatcher,
            conns: HashMap::new(),
            deadline: None,
            timer: Timer::never(),
            timer_at: None,
            done: false,
        };
        Ok((KafkaClient { handle }, driver))
    }

    /// [`KafkaClient::connect`] with a configuration from Java-style properties.
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(KafkaClient, Driver), ConfigError> {
        Self::connect(Config::from_properties(props)?)
    }

    /// Sends `body` to `target` at the highest version both sides support.
    pub async fn request(&self, target: Target, body: impl Into<RequestBody>) -> Result<Response, RequestError> {
        self.handle.request(target, body.into(), None).await
    }

    /// Sends `body` to `target` at `version`.
    pub async fn request_version(
        &self,
        target: Target,
        body: impl Into<RequestBody>,
        version: i16,
    ) -> Result<Response, RequestError> {
        self.handle.request(target, body.into(), Some(version)).await
    }

    /// Fetches metadata for `topics` (every topic when `None`).
    pub async fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        self.handle.metadata(topics).await
    }

    /// Connects to `target` and reports its API versions and the Kafka release they indicate.
    pub async fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        self.handle.check_version(target).await
    }

    /// Lets in-flight requests finish or time out, then closes every connection. Later calls
    /// on any clone return [`RequestError::ClientClosed`].
    pub async fn close(&self) {
        self.handle.close().await;
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<Async<TcpStream>, CloseCause>> + Send>>;

/// The driver's side of one connection.
struct Conn {
    /// Set until the socket is connected.
    connecting: Option<Connecting>,
    stream: Option<Async<TcpStream>>,
    /// Bytes not yet written, in order.
    out: WriteQueue,
    /// Bytes read and not yet handed to the client.
    read: ReadBuffer,
    low_water: LowWaterMark,
    /// The last read found the socket empty and the reactor will wake the driver when it is
    /// not: until then a read would only fail with WouldBlock. The driver is polled for every
    /// command too (each consumer poll), and trying each socket then was nine tenths of the
    /// reads a consumer made.
    drained: bool,
}

/// Steps of work done per [`Driver::poll`] before yielding to other tasks.
const STEPS_PER_POLL: usize = 64;
/// Reads per connection per step, so one busy socket cannot starve the rest.
const READS_PER_STEP: usize = 16;

/// The task that owns the client and every connection; spawn it on your executor. It
/// multiplexes the command channel, all sockets and one timer itself, so it needs no other
/// tasks. It completes once the client is closed and no one waits for an answer.
#[must_use = "the driver does nothing unless spawned"]
pub struct Driver {
    dispatcher: Dispatcher,
    conns: HashMap<ConnId, Conn>,
    /// The client's `poll_timeout` after the last call.
    deadline: Option<Instant>,
    timer: Timer,
    /// What `timer` is armed for; `None` when unarmed or already fired.
    timer_at: Option<Instant>,
    done: bool,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("connections", &self.conns.len())
            .field("deadline", &self.deadline)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for _ in 0..STEPS_PER_POLL {
            if this.done || this.dispatcher.is_finished() {
                this.finish();
                return Poll::Ready(());
            }
            if !this.step(cx) {
                // Every source returned Pending, so each has our waker.
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Driver {
    /// Polls every source once and feeds what is ready to the client. Returns whether
    /// anything happened.
    fn step(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        if let Poll::Ready(intake) = self.dispatcher.poll_intake(cx) {
            let now = Instant::now();
            self.dispatcher.handle_intake(now, intake);
            self.after(now);
            progressed = true;
        }

        let mut inputs = Vec::new();
        self.conns.retain(|&id, conn| poll_conn(id, conn, cx, &mut inputs));
        for input in inputs {
            let now = Instant::now();
            self.dispatcher.handle_input(now, input);
            self.after(now);
            progressed = true;
        }

        if let Some(d) = self.deadline {
            if self.timer_at != Some(d) {
                self.timer.set_at(d);
                self.timer_at = Some(d);
            }
            // Also checked directly: a busy driver may never let the timer fire.
            let fired = matches!(Pin::new(&mut self.timer).poll_next(cx), Poll::Ready(Some(_)));
            let now = Instant::now();
            if fired || now >= d {
                self.timer_at = None;
                self.dispatcher.handle_timeout(now);
                self.after(now);
                progressed = true;
            }
        }
        progressed
    }

    /// Drains the client's outputs after a command, input or timeout, in the order the core
    /// asks for: transmits, the next deadline, then completed commands.
    fn after(&mut self, now: Instant) {
        while let Some(t) = self.dispatcher.poll_transmit(now) {
            self.apply(t);
        }
        self.deadline = self.dispatcher.poll_timeout();
        self.dispatcher.deliver();
    }

    fn apply(&mut self, t: Transmit) {
        match t {
            Transmit::Open { conn, address } => {
                let conn_state = Conn {
                    connecting: Some(Box::pin(open(address))),
                    stream: None,
                    out: WriteQueue::new(),
                    read: ReadBuffer::new(),
                    low_water: LowWaterMark::new(),
                    drained: false,
                };
                self.conns.insert(conn, conn_state);
            }
            Transmit::Send { conn, bytes } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.out.push(bytes);
                }
            }
            // Dropping the socket (or the connect future) closes it.
            Transmit::Close { conn } => drop(self.conns.remove(&conn)),
            _ => {}
        }
    }

    /// Drops every socket, and every command still queued so that its caller sees
    /// `ClientClosed` at once.
    fn finish(&mut self) {
        self.done = true;
        self.conns.clear();
        self.dispatcher.close_intake();
    }
}

/// Advances one connection as far as it goes without blocking, pushing what happened onto
/// `inputs`. Returns false once the connection is gone (after reporting why).
fn poll_conn(id: ConnId, conn: &mut Conn, cx: &mut Context<'_>, inputs: &mut Vec<Input>) -> bool {
    let closed = |inputs: &mut Vec<Input>, cause| {
        inputs.push(Input::Closed { conn: id, cause });
        false
    };
    if let Some(connecting) = &mut conn.connecting {
        match connecting.as_mut().poll(cx) {
            Poll::Pending => return true,
            Poll::Ready(Err(cause)) => return closed(inputs, cause),
            Poll::Ready(Ok(stream)) => {
                conn.connecting = None;
                conn.stream = Some(stream);
                inputs.push(Input::Connected { conn: id });
            }
        }
    }
    let Some(stream) = &mut conn.stream else { return true };
    while !conn.out.is_empty() {
        match Pin::new(&mut *stream).poll_write_vectored(cx, &conn.out.slices()) {
            Poll::Ready(Ok(0)) => return closed(inputs, CloseCause::Io("the socket accepted no bytes".into())),
            Poll::Ready(Ok(n)) => conn.out.advance(n),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return closed(inputs, CloseCause::from(&e)),
            Poll::Pending => break,
        }
    }
    if conn.drained {
        match stream.poll_readable(cx) {
            Poll::Ready(Ok(())) => conn.drained = false,
            Poll::Ready(Err(e)) => return closed(inputs, CloseCause::from(&e)),
            Poll::Pending => return true,
        }
    }
    for _ in 0..READS_PER_STEP {
        // Through std's Read on the socket itself, as `Async::poll_read` does, so that large
        // frames are read into memory not zeroed first (`ReadBuffer::read_from`).
        let (data, end) = loop {
            conn.low_water.update(stream.get_ref(), &conn.read);
            if let Some(read) = conn.read.read_from(stream.get_ref()) {
                break read;
            }
            match stream.poll_readable(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => break (None, Some(CloseCause::from(&e))),
                Poll::Pending => {
                    conn.drained = true;
                    return true;
                }
            }
        };
        inputs.extend(data.map(|data| Input::Received { conn: id, data }));
        if let Some(cause) = end {
            return closed(inputs, cause);
        }
    }
    // More may be waiting, and no waker was registered for it.
    cx.waker().wake_by_ref();
    true
}

/// Resolves the host off the reactor thread and tries each address in turn.
async fn open(address: BrokerAddress) -> Result<Async<TcpStream>, CloseCause> {
    let BrokerAddress { host, port } = address;
    let lookup = host.clone();
    let addrs: Vec<SocketAddr> =
        blocking::unblock(move || (lookup.as_str(), port).to_socket_addrs().map(Iterator::collect))
            .await
            .unwrap_or_default();
    let mut last = CloseCause::UnknownHost(host);
    for addr in addrs {
        match Async::<TcpStream>::connect(addr).await {
            Ok(s) => return s.get_ref().set_nodelay(true).map(|()| s).map_err(|e| CloseCause::from(&e)),
            Err(e) => last = CloseCause::from(&e),
        }
    }
    Err(last)
}

/// Milliseconds since the Unix epoch, for the producer's record timestamps.
fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
