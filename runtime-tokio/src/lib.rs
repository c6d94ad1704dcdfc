//! Drives the [`sansa`] Kafka client core on tokio.
//!
//! [`KafkaClient::connect`] spawns one driver task that owns the sans-IO [`sansa::Client`];
//! every socket is a task of its own. The handle is cheap to clone and can be used from any
//! task; the driver stops once [`KafkaClient::close`] finishes or every handle is dropped.
//!
//! # Quickstart
//!
//! ```no_run
//! use sansa::protocol::messages::MetadataRequest;
//! use sansa::Target;
//! use sansa_tokio::KafkaClient;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = KafkaClient::from_properties([("bootstrap.servers", "127.0.0.1:9092")])?;
//!     let versions = client.check_version(Target::AnyBroker).await?;
//!     println!("talking to {}", versions.release);
//!     let cluster = client.metadata(None).await?;
//!     println!("{} brokers", cluster.brokers.len());
//!     let response = client.request(Target::AnyBroker, MetadataRequest::default()).await?;
//!     println!("{:?}", response.body);
//!     client.close().await;
//!     Ok(())
//! }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansa::cluster::ClusterMetadata;
use sansa::driver::{self, Dispatcher, Handle, ReadBuffer, WriteQueue, DEFAULT_INTAKE_CAPACITY};
use sansa::protocol::{RequestBody, TopicName};
use sansa::{
    BrokerAddress, BrokerVersions, CloseCause, Config, ConfigError, ConnId, Input, RequestError, Response, Target,
    Transmit,
};
use sansa_socket::LowWaterMark;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Inputs queued from connections to the driver; bounded so a driver that falls behind stops
/// the sockets from reading instead of buffering without limit.
const INPUT_QUEUE: usize = 256;
/// How long a closed connection may take to write what was queued before the close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A handle to a Kafka client running on tokio. Clones share one driver task.
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
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn connect(config: Config) -> Result<KafkaClient, ConfigError> {
        let (handle, mut dispatcher) = driver::start(config, Instant::now(), DEFAULT_INTAKE_CAPACITY)?;
        dispatcher.set_wall_clock(Instant::now(), unix_ms());
        // Compression and decompression run on threads of the client's own, started as work
        // comes, one per spare core at most: tokio's blocking pool would run them on
        // whichever of its threads is free, each with its codec contexts cold.
        dispatcher.offload_to_threads(driver::spare_cores(), |jobs| {
            std::thread::Builder::new().name("sansa-work".into()).spawn(move || jobs.run()).is_ok()
        });
        let handle = handle.with_timer(driver::Timer {
            now: Instant::now,
            sleep: Some(Arc::new(|d| Box::pin(tokio::time::sleep(d)))),
        });
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let driver = Driver { dispatcher, conns: HashMap::new(), input_tx };
        tokio::spawn(driver.run(input_rx));
        Ok(KafkaClient { handle })
    }

    /// Starts a client from Java-style properties (`bootstrap.servers`, `request.timeout.ms`, ...).
    pub fn from_properties<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<KafkaClient, ConfigError> {
        KafkaClient::connect(Config::from_properties(props)?)
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

    /// Fetches metadata for `topics` (every topic when `None`); named topics are kept fresh.
    pub async fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        self.handle.metadata(topics).await
    }

    /// Reports the API versions `target` advertises and the Kafka release they indicate.
    pub async fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        self.handle.check_version(target).await
    }

    /// Lets in-flight requests finish or time out, then closes every connection.
    pub async fn close(&self) {
        self.handle.close().await;
    }
}

/// Milliseconds since the Unix epoch, for the producer's record timestamps.
fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The driver's side of one connection task.
struct Conn {
    writes: mpsc::UnboundedSender<Bytes>,
    task: JoinHandle<()>,
}

/// Owns the dispatcher (and so the client); the only place it is touched.
struct Driver {
    dispatcher: Dispatcher,
    conns: HashMap<ConnId, Conn>,
    input_tx: mpsc::Sender<Input>,
}

impl Driver {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        loop {
            let now = Instant::now();
            while let Some(t) = self.dispatcher.poll_transmit(now) {
                self.apply(t);
            }
            let deadline = self.dispatcher.poll_timeout();
            self.dispatcher.deliver();
            if self.dispatcher.is_finished() {
                break;
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(input) = inputs.recv() => self.handle_input(input),
                intake = self.dispatcher.recv_intake() => self.dispatcher.handle_intake(Instant::now(), intake),
                () = sleep => self.dispatcher.handle_timeout(Instant::now()),
            }
        }
        for (_, conn) in self.conns.drain() {
            conn.task.abort();
        }
    }

    fn handle_input(&mut self, input: Input) {
        let conn = match &input {
            Input::Connected { conn } | Input::Received { conn, .. } | Input::Closed { conn, .. } => *conn,
            _ => return,
        };
        // Late events from a connection the client already closed mean nothing.
        if !self.conns.contains_key(&conn) {
            return;
        }
        if matches!(input, Input::Closed { .. }) {
            self.conns.remove(&conn);
        }
        self.dispatcher.handle_input(Instant::now(), input);
    }

    fn apply(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::Open { conn, address } => {
                let (writes, write_rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(connection(conn, address, write_rx, self.input_tx.clone()));
                self.conns.insert(conn, Conn { writes, task });
            }
            Transmit::Send { conn, bytes } => {
                if let Some(c) = self.conns.get(&conn) {
                    // Fails only when the task ended; its Closed input is already queued.
                    let _ = c.writes.send(bytes);
                }
            }
            Transmit::Close { conn } => {
                if let Some(Conn { writes, mut task }) = self.conns.remove(&conn) {
                    // Dropping the sender lets the task write what is queued (a produce with
                    // acks=0 counts as done once handed over) and end; a peer that stopped
                    // reading gets a grace period.
                    drop(writes);
                    tokio::spawn(async move {
                        if tokio::time::timeout(CLOSE_GRACE, &mut task).await.is_err() {
                            task.abort();
                        }
                    });
                }
            }
            _ => {}
        }
    }
}

/// One connection: connects, then reads and writes concurrently (a broker that cannot send
/// may stop reading) until either side fails or the driver drops `writes`.
async fn connection(
    conn: ConnId,
    address: BrokerAddress,
    writes: mpsc::UnboundedReceiver<Bytes>,
    inputs: mpsc::Sender<Input>,
) {
    let stream = match open(&address).await {
        Ok(s) => s,
        Err(cause) => {
            let _ = inputs.send(Input::Closed { conn, cause }).await;
            return;
        }
    };
    if inputs.send(Input::Connected { conn }).await.is_err() {
        return;
    }
    let (reader, writer) = stream.into_split();
    let cause = tokio::select! {
        cause = read_loop(conn, reader, &inputs) => cause,
        result = write_loop(writer, writes) => match result {
            Ok(()) => return, // closed by the driver
            Err(cause) => cause,
        },
    };
    let _ = inputs.send(Input::Closed { conn, cause }).await;
}

async fn open(address: &BrokerAddress) -> Result<TcpStream, CloseCause> {
    let unknown = || CloseCause::UnknownHost(address.host.clone());
    let addrs = tokio::net::lookup_host((address.host.as_str(), address.port)).await.map_err(|_| unknown())?;
    let mut last = unknown();
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Requests are whole frames written at once; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = CloseCause::from(&e),
        }
    }
    Err(last)
}

async fn read_loop(conn: ConnId, mut reader: OwnedReadHalf, inputs: &mpsc::Sender<Input>) -> CloseCause {
    let mut buf = ReadBuffer::new();
    let mut low_water = LowWaterMark::new();
    loop {
        low_water.update(reader.as_ref(), &buf);
        // Into spare capacity: tokio reads into memory nobody zeroed first.
        let read = reader.read_buf(&mut buf.spare()).await;
        let (data, end) = buf.finish_read(read);
        if let Some(data) = data {
            if inputs.send(Input::Received { conn, data }).await.is_err() {
                // The driver is gone; nobody cares why this ends.
                return CloseCause::Local(sansa::LocalClose::DriverStopped);
            }
        }
        if let Some(cause) = end {
            return cause;
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, mut writes: mpsc::UnboundedReceiver<Bytes>) -> Result<(), CloseCause> {
    let mut queue = WriteQueue::new();
    while let Some(bytes) = writes.recv().await {
        queue.push(bytes);
        while !queue.is_empty() {
            queue.gather(|| writes.try_recv().ok());
            let written = writer.write_vectored(&queue.slices()).await.map_err(|e| CloseCause::from(&e))?;
            if written == 0 {
                return Err(CloseCause::Io("the socket accepted no bytes".into()));
            }
            queue.advance(written);
        }
    }
    Ok(())
}
