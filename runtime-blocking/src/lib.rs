//! Drives the [`sansa`] Kafka client core with `std::net` and threads: no async runtime.
//!
//! [`KafkaClient::connect`] starts one driver thread that owns the core [`sansa::Client`];
//! every connection gets a reader thread and a writer thread. Handles are cheap to clone and
//! can be used from any number of threads at once; each call blocks the calling thread.
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
//!     (0..100).map(|_| client.send(Target::AnyBroker, MetadataRequest::default().with_topics(Some(vec![])))).collect();
//! for p in pending {
//!     let response = p.wait()?;
//!     println!("answered by {}", response.node);
//! }
//! client.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansa::cluster::ClusterMetadata;
use sansa::driver::{Command, Dispatcher, Outcome};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{
    BrokerAddress, BrokerVersions, Client, CloseCause, Config, ConfigError, ConnId, Input, RequestError, Response,
    Target, Transmit,
};

/// A one-shot reply channel from the driver to one caller.
type Waiter = SyncSender<Outcome>;

/// Everything the driver thread waits for, on one channel.
enum Msg {
    Command(Command, Waiter),
    Input(Input),
    /// The last [`KafkaClient`] clone was dropped.
    HandlesGone,
}

/// A handle to a Kafka client driven by a background thread. Clone it freely; every clone
/// talks to the same connections. When the last clone is dropped the client closes, letting
/// requests in flight (including [`PendingResponse`]s) finish first.
#[derive(Debug, Clone)]
pub struct KafkaClient {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    tx: Sender<Msg>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::HandlesGone);
    }
}

impl KafkaClient {
    /// Starts the driver; no I/O happens until the first command. Errors only for bad config.
    pub fn connect(mut config: Config) -> Result<KafkaClient, ConfigError> {
        if config.bootstrap_servers.is_empty() {
            return Err(ConfigError::NoBootstrapServers);
        }
        if config.rng_seed.is_none() {
            config.rng_seed = Some(RandomState::new().build_hasher().finish());
        }
        let (tx, rx) = mpsc::channel();
        let client = Client::new(config, Instant::now());
        let inputs = tx.clone();
        // If the thread cannot start, `rx` is dropped and every call reports ClientClosed.
        let _ = thread::Builder::new().name("sansa-driver".into()).spawn(move || drive(client, rx, inputs));
        Ok(KafkaClient { handle: Arc::new(Handle { tx }) })
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
        self.send(target, body).wait()
    }

    /// Sends `body` to `target` at `version` and waits for the answer.
    pub fn request_version(
        &self,
        target: Target,
        body: impl Into<RequestBody>,
        version: i16,
    ) -> Result<Response, RequestError> {
        self.submit(Command::Request { target, body: Box::new(body.into()), version: Some(version) }).wait()
    }

    /// Submits a request without waiting; [`PendingResponse::wait`] gets the answer.
    pub fn send(&self, target: Target, body: impl Into<RequestBody>) -> PendingResponse {
        self.submit(Command::Request { target, body: Box::new(body.into()), version: None })
    }

    /// Fetches metadata for `topics` (every topic when `None`).
    pub fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        self.submit(Command::Metadata { topics })
            .outcome()
            .map_or(Err(RequestError::ClientClosed), Outcome::into_metadata)
    }

    /// Connects to `target` and reports its API versions and the Kafka release they indicate.
    pub fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        self.submit(Command::CheckVersion { target })
            .outcome()
            .map_or(Err(RequestError::ClientClosed), Outcome::into_versions)
    }

    /// Lets in-flight requests finish or time out, then closes every connection. Later calls
    /// on any clone return [`RequestError::ClientClosed`].
    pub fn close(&self) {
        let _ = self.submit(Command::Close).outcome();
    }

    fn submit(&self, command: Command) -> PendingResponse {
        let (waiter, rx) = mpsc::sync_channel(1);
        // On failure the waiter is dropped with the message, so `rx` reports the driver gone.
        let _ = self.handle.tx.send(Msg::Command(command, waiter));
        PendingResponse { rx }
    }
}

/// A request submitted with [`KafkaClient::send`] whose answer has not been collected yet.
#[derive(Debug)]
pub struct PendingResponse {
    rx: Receiver<Outcome>,
}

impl PendingResponse {
    /// Blocks until the answer arrives (at the latest when the request times out).
    pub fn wait(self) -> Result<Response, RequestError> {
        response(self.outcome())
    }

    /// Waits at most `timeout`; `None` if the answer has not arrived by then. Once this
    /// returned `Some`, the answer has been taken: do not wait again.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<Response, RequestError>> {
        match self.rx.recv_timeout(timeout) {
            Ok(o) => Some(response(Some(o))),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(RequestError::ClientClosed)),
        }
    }

    fn outcome(self) -> Option<Outcome> {
        self.rx.recv().ok()
    }
}

fn response(outcome: Option<Outcome>) -> Result<Response, RequestError> {
    outcome.map_or(Err(RequestError::ClientClosed), Outcome::into_response)
}

/// The driver's side of one connection.
#[derive(Debug)]
struct Conn {
    /// Bytes for the writer thread.
    writer: Sender<Bytes>,
    socket: Arc<Mutex<Socket>>,
}

/// Shared with the connection thread so that a close can interrupt its blocking reads.
#[derive(Debug, Default)]
struct Socket {
    closed: bool,
    stream: Option<Arc<TcpStream>>,
}

impl Conn {
    fn close(self) {
        let mut s = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        s.closed = true;
        if let Some(stream) = s.stream.take() {
            // Wakes the reader (and a writer stuck on a full socket); they then exit.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn drive(mut client: Client, rx: Receiver<Msg>, inputs: Sender<Msg>) {
    let mut dispatcher = Dispatcher::<Waiter>::new();
    let mut conns: HashMap<ConnId, Conn> = HashMap::new();
    loop {
        let now = Instant::now();
        while let Some(t) = client.poll_transmit(now) {
            apply(t, &mut conns, &inputs);
        }
        let deadline = client.poll_timeout();
        for (waiter, outcome) in dispatcher.drain(&mut client) {
            let _ = waiter.send(outcome);
        }
        if client.is_closed() && dispatcher.is_idle() {
            break;
        }
        let msg = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        let now = Instant::now();
        match msg {
            Some(Msg::Command(command, waiter)) => dispatcher.submit(&mut client, now, command, waiter),
            Some(Msg::Input(input)) if accept(&input, &mut conns) => client.handle_input(now, input),
            Some(Msg::HandlesGone) => client.close(now),
            Some(Msg::Input(_)) | None => {}
        }
        // Also on a busy channel, which may never let recv_timeout time out.
        if deadline.is_some_and(|d| now >= d) {
            client.handle_timeout(now);
        }
    }
    for conn in conns.into_values() {
        conn.close();
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

fn apply(t: Transmit, conns: &mut HashMap<ConnId, Conn>, inputs: &Sender<Msg>) {
    match t {
        Transmit::Open { conn, address } => {
            let (writer, bytes) = mpsc::channel();
            let socket = Arc::new(Mutex::new(Socket::default()));
            let (shared, tx) = (socket.clone(), inputs.clone());
            let spawned = thread::Builder::new()
                .name(format!("sansa-conn-{}", conn.0))
                .spawn(move || connection(conn, &address, &tx, bytes, &shared));
            match spawned {
                Ok(_) => {
                    conns.insert(conn, Conn { writer, socket });
                }
                Err(e) => {
                    let _ = inputs.send(Msg::Input(Input::Closed { conn, cause: CloseCause::Io(e.to_string()) }));
                }
            }
        }
        Transmit::Send { conn, bytes } => {
            if let Some(c) = conns.get(&conn) {
                let _ = c.writer.send(bytes);
            }
        }
        Transmit::Close { conn } => {
            if let Some(c) = conns.remove(&conn) {
                c.close();
            }
        }
        _ => {}
    }
}

/// One connection's thread: connect, start the writer, then read until the socket closes.
fn connection(conn: ConnId, address: &BrokerAddress, tx: &Sender<Msg>, bytes: Receiver<Bytes>, socket: &Mutex<Socket>) {
    let closed = |cause| {
        let _ = tx.send(Msg::Input(Input::Closed { conn, cause }));
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
        .spawn(move || write_loop(conn, &w_stream, &w_tx, bytes));
    if let Err(e) = spawned {
        let _ = stream.shutdown(Shutdown::Both);
        return closed(CloseCause::Io(e.to_string()));
    }
    if tx.send(Msg::Input(Input::Connected { conn })).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return closed(CloseCause::PeerClosed),
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                if tx.send(Msg::Input(Input::Received { conn, data })).is_err() {
                    return; // driver gone
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return closed(CloseCause::from(&e)),
        }
    }
}

fn write_loop(conn: ConnId, stream: &TcpStream, tx: &Sender<Msg>, bytes: Receiver<Bytes>) {
    // Ends when the driver drops the sender (the connection closed).
    for chunk in bytes {
        let mut w = stream;
        if let Err(e) = w.write_all(&chunk) {
            let _ = tx.send(Msg::Input(Input::Closed { conn, cause: CloseCause::from(&e) }));
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
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
