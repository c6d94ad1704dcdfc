//! A test world: sansa's sans-IO `Client` wired to the fake cluster in memory, with a virtual
//! clock that jumps to whichever side's next deadline comes first. No network emulation
//! (that is the simulator's job); faults come from the cluster's own rules. Tests and
//! benchmarks use it; so can applications testing their own code against sansa.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sansa::protocol::frame::FrameDecoder;
use sansa::{BrokerAddress, Client, CloseCause, Config, ConnId, Event, Input, Transmit};

use super::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput};

/// Port of broker `id` in the world's addresses.
pub fn port_of(id: i32) -> u16 {
    19_091 + id as u16
}

/// A client and a fake cluster in one process, on a virtual clock.
#[derive(Debug)]
pub struct World {
    /// The client under test.
    pub client: Client,
    /// The cluster it talks to.
    pub cluster: FakeCluster,
    /// The virtual clock.
    pub now: Instant,
    by_address: BTreeMap<BrokerAddress, i32>,
    conns: BTreeMap<ConnId, (FakeConnId, BytesMut)>,
    by_fake: BTreeMap<FakeConnId, ConnId>,
    next_conn: u64,
    /// Every event the client emitted, in order.
    pub events: Vec<Event>,
}

impl World {
    /// A cluster from `cluster` and a client from `config` bootstrapping from broker 1.
    pub fn new(cluster: FakeClusterConfig, config: impl FnOnce(Config) -> Config) -> Self {
        let mut cluster = FakeCluster::new(cluster);
        let mut by_address = BTreeMap::new();
        for id in cluster.broker_ids() {
            cluster.set_address(id, "127.0.0.1", port_of(id));
            by_address.insert(BrokerAddress::new("127.0.0.1", port_of(id)), id);
        }
        let now = Instant::now();
        let config = config(Config::new(&format!("127.0.0.1:{}", port_of(1))).unwrap().with_rng_seed(1));
        config.validate().expect("a valid client configuration");
        let mut client = Client::new(config, now);
        client.set_wall_clock(now, 1_767_225_600_000);
        World {
            client,
            cluster,
            now,
            by_address,
            conns: BTreeMap::new(),
            by_fake: BTreeMap::new(),
            next_conn: 0,
            events: Vec::new(),
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    pub fn pump(&mut self) {
        loop {
            let mut inputs = Vec::new();
            while let Some(t) = self.client.poll_transmit(self.now) {
                match t {
                    Transmit::Open { conn, address } => {
                        let connected = self.by_address.get(&address).is_some_and(|id| {
                            self.next_conn += 1;
                            let fake = FakeConnId(self.next_conn);
                            let ok = self.cluster.handle_connect(self.now, *id, fake).is_ok();
                            if ok {
                                self.conns.insert(conn, (fake, BytesMut::new()));
                                self.by_fake.insert(fake, conn);
                            }
                            ok
                        });
                        inputs.push(if connected {
                            Input::Connected { conn }
                        } else {
                            Input::Closed { conn, cause: CloseCause::Refused }
                        });
                    }
                    Transmit::Send { conn, bytes } => {
                        let Some((fake, inbound)) = self.conns.get_mut(&conn) else { continue };
                        inbound.extend_from_slice(&bytes);
                        let fake = *fake;
                        while let Ok(Some(frame)) = FrameDecoder::default().decode(inbound) {
                            let _ = self.cluster.handle_frame(self.now, fake, frame);
                        }
                    }
                    Transmit::Close { conn } => {
                        if let Some((fake, _)) = self.conns.remove(&conn) {
                            self.by_fake.remove(&fake);
                            self.cluster.handle_disconnect(fake);
                        }
                    }
                    _ => {}
                }
            }
            while let Some(o) = self.cluster.poll_output() {
                match o {
                    FakeOutput::Send { conn, bytes } => {
                        if let Some(c) = self.by_fake.get(&conn) {
                            inputs.push(Input::Received { conn: *c, data: bytes });
                        }
                    }
                    FakeOutput::Close { conn } => {
                        if let Some(c) = self.by_fake.remove(&conn) {
                            self.conns.remove(&c);
                            inputs.push(Input::Closed { conn: c, cause: CloseCause::PeerClosed });
                        }
                    }
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if inputs.is_empty() {
                return;
            }
            for i in inputs {
                self.client.handle_input(self.now, i);
            }
        }
    }

    /// Jumps the clock to the next deadline of either side and runs it; false when neither
    /// has one.
    pub fn step(&mut self) -> bool {
        let next = [self.client.poll_timeout(), self.cluster.poll_timeout()].into_iter().flatten().min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        self.client.handle_timeout(self.now);
        self.cluster.handle_timeout(self.now);
        self.pump();
        true
    }

    /// Runs until `done` holds or `limit` of virtual time passed; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + limit;
        self.pump();
        while !done(self) {
            if self.now > end || !self.step() {
                return done(self);
            }
        }
        true
    }

    /// Stops broker `id` and tells the client its connections to it closed.
    pub fn stop_broker(&mut self, id: i32) {
        self.cluster.stop_broker(id);
        self.pump();
    }
}
