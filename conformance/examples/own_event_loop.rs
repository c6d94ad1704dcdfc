//! Your own event loop: `sansa::Client` driven by a hand-written mio readiness loop, no async
//! runtime. Against a fake cluster on 127.0.0.1 it checks the version, reads metadata, produces
//! a record batch and fetches it back.
//! Run: `cargo run -p sansa-conformance --example own_event_loop`

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::ToSocketAddrs;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use sansa::protocol::messages::fetch::request::{FetchPartition, FetchTopic};
use sansa::protocol::messages::produce::request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use sansa::protocol::messages::FetchRequest;
use sansa::protocol::records::{decode_batches, BatchParams, DecodeOptions, RecordBatchEncoder};
use sansa::protocol::{ErrorCode, RequestBody, ResponseBody, TopicName};
use sansa::{BrokerAddress, Client, CloseCause, Config, ConnId, Event, Input, Response, Target, Transmit};
use sansa_conformance::{fake_cluster::FakeClusterConfig, fake_server::FakeServer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The event loop: the client, the sockets it asked for, and the OS readiness queue.
struct Driver {
    client: Client,
    sockets: BTreeMap<ConnId, Socket>,
    poll: Poll,
}

/// One TCP connection, and the bytes the OS could not take yet.
struct Socket {
    stream: TcpStream,
    connected: bool,
    unsent: BytesMut,
}

impl Driver {
    /// Runs the loop until the client completes something: `main`'s one outstanding command.
    fn next_event(&mut self) -> Result<Event> {
        let mut ready = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            while let Some(transmit) = self.client.poll_transmit(now) {
                self.apply(now, transmit);
            }
            let deadline = self.client.poll_timeout();
            if let Some(event) = self.client.poll_event() {
                return Ok(event);
            }
            self.poll.poll(&mut ready, deadline.map(|d| d.saturating_duration_since(now)))?;
            let now = Instant::now();
            for event in &ready {
                self.exchange(now, ConnId(event.token().0 as u64));
            }
            if deadline.is_some_and(|d| d <= now) {
                self.client.handle_timeout(now);
            }
        }
    }

    /// Carries out one socket operation the client asked for.
    fn apply(&mut self, now: Instant, transmit: Transmit) {
        match transmit {
            Transmit::Open { conn, address } => {
                self.open(conn, &address).unwrap_or_else(|e| self.closed(now, conn, CloseCause::from(&e)))
            }
            Transmit::Send { conn, bytes } => {
                let Some(socket) = self.sockets.get_mut(&conn) else { return };
                socket.unsent.extend_from_slice(&bytes);
                self.exchange(now, conn);
            }
            Transmit::Close { conn } => drop(self.sockets.remove(&conn)),
            _ => {}
        }
    }

    /// A non-blocking connect: the socket turns writable once it is connected, or has failed.
    fn open(&mut self, conn: ConnId, address: &BrokerAddress) -> io::Result<()> {
        let addr = (address.host.as_str(), address.port).to_socket_addrs()?.next().ok_or(ErrorKind::NotFound)?;
        let mut stream = TcpStream::connect(addr)?;
        self.poll.registry().register(&mut stream, Token(conn.0 as usize), Interest::READABLE | Interest::WRITABLE)?;
        self.sockets.insert(conn, Socket { stream, connected: false, unsent: BytesMut::new() });
        Ok(())
    }

    /// Finishes connecting, then writes and reads until "would block" (mio reports edges).
    fn exchange(&mut self, now: Instant, conn: ConnId) {
        let Some(socket) = self.sockets.get_mut(&conn) else { return };
        if !socket.connected {
            match socket.stream.take_error().and_then(|e| e.map_or_else(|| socket.stream.peer_addr(), Err)) {
                Ok(_) => socket.connected = true,
                Err(e) if e.kind() == ErrorKind::NotConnected => return, // still connecting
                Err(e) => return self.closed(now, conn, CloseCause::from(&e)),
            }
            self.client.handle_input(now, Input::Connected { conn });
        }
        let Some(socket) = self.sockets.get_mut(&conn) else { return };
        let mut received = Vec::new();
        // `read_to_end` keeps what it read when it stops at "would block"; `Ok` means end of stream.
        let outcome = match write_buffered(socket).and_then(|()| socket.stream.read_to_end(&mut received)) {
            Ok(_) => Err(io::Error::from(ErrorKind::UnexpectedEof)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        };
        if !received.is_empty() {
            self.client.handle_input(now, Input::Received { conn, data: received.into() });
        }
        if let Err(e) = outcome {
            self.closed(now, conn, CloseCause::from(&e));
        }
    }

    fn closed(&mut self, now: Instant, conn: ConnId, cause: CloseCause) {
        self.sockets.remove(&conn);
        self.client.handle_input(now, Input::Closed { conn, cause });
    }

    /// Sends `body` at the highest version both sides speak, and waits for the answer.
    fn request(&mut self, target: Target, body: impl Into<RequestBody>) -> Result<ResponseBody> {
        self.client.request(Instant::now(), target, body.into(), None);
        match self.next_event()? {
            Event::Response { result: Ok(Response { body: Some(body), .. }), .. } => Ok(body),
            other => Err(format!("unexpected outcome: {other:?}").into()),
        }
    }
}

/// Writes until the buffer is empty or the socket is full; the rest waits for a writable edge.
fn write_buffered(socket: &mut Socket) -> io::Result<()> {
    while !socket.unsent.is_empty() {
        match socket.stream.write(&socket.unsent) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => drop(socket.unsent.split_to(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    // A fake Kafka cluster on loopback, serving until main returns.
    let fake = FakeServer::start(FakeClusterConfig::default(), "127.0.0.1", None)?;
    let bootstrap = fake.bootstrap().to_string();
    let client = Client::new(Config::new(&bootstrap)?.with_client_id("own-event-loop"), Instant::now());
    let mut driver = Driver { client, sockets: BTreeMap::new(), poll: Poll::new()? };

    driver.client.check_version(Instant::now(), Target::AnyBroker);
    let Event::Versions { result, .. } = driver.next_event()? else { unreachable!("one command at a time") };
    println!("check-version: {} at {bootstrap}", result?.release);

    let name = TopicName::from("own-event-loop");
    fake.with_cluster(|cluster| cluster.create_topic(&name.to_string(), 1, 3));
    driver.client.refresh_metadata(Instant::now(), Some(vec![name.clone()]));
    let Event::Metadata { result, .. } = driver.next_event()? else { unreachable!("one command at a time") };
    let metadata = result?;
    let topic = metadata.topic(&name.to_string()).ok_or("the new topic is missing from metadata")?;
    let (topic_id, leader) = (topic.id, topic.partitions.first().and_then(|p| p.leader).ok_or("no leader")?);
    println!("metadata: {} brokers; created topic {name}, led by broker {leader}", metadata.brokers.len());

    let values = ["written", "by", "a", "hand-written", "event", "loop"];
    let mut records = BytesMut::new();
    let mut encoder = RecordBatchEncoder::new();
    let mut batch = encoder.begin(&mut records, BatchParams::new())?;
    for value in values {
        batch.append(0, None, Some(value.as_bytes()), &[])?; // timestamp 0 is valid and keeps this short
    }
    batch.finish()?;
    // Name and id both: the encoder writes whichever the negotiated version carries.
    let partition = PartitionProduceData::default().with_index(0).with_records(Some(records.freeze()));
    let data = TopicProduceData::default().with_name(name.clone()).with_topic_id(topic_id);
    let data = vec![data.with_partition_data(vec![partition])];
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(data);
    let ResponseBody::Produce(produced) = driver.request(Target::Broker(leader), produce)? else { unreachable!() };
    let answer = produced.responses.first().and_then(|t| t.partition_responses.first());
    let base_offset = answer.filter(|p| p.error_code == ErrorCode::None).ok_or(format!("{answer:?}"))?.base_offset;
    println!("produced {} records at offset {base_offset}", values.len());

    let partition = FetchPartition::default().with_fetch_offset(base_offset).with_partition_max_bytes(1 << 20);
    let topic = FetchTopic::default().with_topic(name.clone()).with_topic_id(topic_id).with_partitions(vec![partition]);
    let fetch = FetchRequest::default().with_topics(vec![topic]);
    let ResponseBody::Fetch(fetched) = driver.request(Target::Broker(leader), fetch)? else { unreachable!() };
    let answer = fetched.responses.first().and_then(|t| t.partitions.first());
    let records = answer.filter(|p| p.error_code == ErrorCode::None).ok_or(format!("{answer:?}"))?.records.clone();
    let mut read_back = Vec::new();
    for batch in decode_batches(records.unwrap_or_default(), &DecodeOptions::new()) {
        read_back.extend(batch?.into_records().into_iter().filter_map(|r| r.value));
    }
    if read_back != values.map(str::as_bytes) {
        return Err(format!("fetched {read_back:?}, produced {values:?}").into());
    }
    println!("fetched the {} records back: values match", read_back.len());

    driver.client.close(Instant::now());
    let Event::Closed = driver.next_event()? else { unreachable!("one command at a time") };
    println!("closed every connection");
    Ok(())
}
