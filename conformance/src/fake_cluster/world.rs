//! A test world: sansa's sans-IO `Client` wired to the fake cluster in memory, with a virtual
//! clock that jumps to whichever side's next deadline comes first. No network emulation
//! (that is the simulator's job); faults come from the cluster's own rules. Tests and
//! benchmarks use it; so can applications testing their own code against sansa.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sansa::driver::Dispatcher;
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
    net: Net,
    /// Every event the client emitted, in order.
    pub events: Vec<Event>,
}

/// What the in-memory network drives: a client, or a driver's dispatcher around one.
trait Endpoint {
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;
    fn handle_input(&mut self, now: Instant, input: Input);
    /// The next event for the test to see; a dispatcher delivers its own and shows none.
    fn poll_event(&mut self) -> Option<Event>;
}

impl Endpoint for Client {
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        Client::poll_transmit(self, now)
    }
    fn handle_input(&mut self, now: Instant, input: Input) {
        Client::handle_input(self, now, input);
    }
    fn poll_event(&mut self) -> Option<Event> {
        Client::poll_event(self)
    }
}

impl Endpoint for Dispatcher {
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        Dispatcher::poll_transmit(self, now)
    }
    fn handle_input(&mut self, now: Instant, input: Input) {
        Dispatcher::handle_input(self, now, input);
    }
    fn poll_event(&mut self) -> Option<Event> {
        self.deliver();
        None
    }
}

/// The in-memory wiring between clients and the cluster: connections by (client, id).
#[derive(Debug, Default)]
struct Net {
    by_address: BTreeMap<BrokerAddress, i32>,
    conns: BTreeMap<(usize, ConnId), (FakeConnId, BytesMut)>,
    by_fake: BTreeMap<FakeConnId, (usize, ConnId)>,
    next_conn: u64,
}

impl Net {
    fn new(cluster: &mut FakeCluster) -> Net {
        let mut net = Net::default();
        for id in cluster.broker_ids() {
            cluster.set_address(id, "127.0.0.1", port_of(id));
            net.by_address.insert(BrokerAddress::new("127.0.0.1", port_of(id)), id);
        }
        net
    }

    /// Moves bytes both ways until no side has anything to say.
    fn pump(
        &mut self,
        now: Instant,
        cluster: &mut FakeCluster,
        clients: &mut [&mut dyn Endpoint],
        events: &mut [&mut Vec<Event>],
    ) {
        loop {
            let mut inputs: Vec<(usize, Input)> = Vec::new();
            for (i, client) in clients.iter_mut().enumerate() {
                while let Some(t) = client.poll_transmit(now) {
                    match t {
                        Transmit::Open { conn, address } => {
                            let connected = self.by_address.get(&address).is_some_and(|id| {
                                self.next_conn += 1;
                                let fake = FakeConnId(self.next_conn);
                                let ok = cluster.handle_connect(now, *id, fake).is_ok();
                                if ok {
                                    self.conns.insert((i, conn), (fake, BytesMut::new()));
                                    self.by_fake.insert(fake, (i, conn));
                                }
                                ok
                            });
                            inputs.push((
                                i,
                                if connected {
                                    Input::Connected { conn }
                                } else {
                                    Input::Closed { conn, cause: CloseCause::Refused }
                                },
                            ));
                        }
                        Transmit::Send { conn, bytes } => {
                            let Some((fake, inbound)) = self.conns.get_mut(&(i, conn)) else { continue };
                            inbound.extend_from_slice(&bytes);
                            let fake = *fake;
                            while let Ok(Some(frame)) = FrameDecoder::default().decode(inbound) {
                                let _ = cluster.handle_frame(now, fake, frame);
                            }
                        }
                        Transmit::Close { conn } => {
                            if let Some((fake, _)) = self.conns.remove(&(i, conn)) {
                                self.by_fake.remove(&fake);
                                cluster.handle_disconnect(fake);
                            }
                        }
                        _ => {}
                    }
                }
            }
            while let Some(o) = cluster.poll_output() {
                match o {
                    FakeOutput::Send { conn, bytes } => {
                        if let Some((i, c)) = self.by_fake.get(&conn) {
                            inputs.push((*i, Input::Received { conn: *c, data: bytes }));
                        }
                    }
                    FakeOutput::Close { conn } => {
                        if let Some((i, c)) = self.by_fake.remove(&conn) {
                            self.conns.remove(&(i, c));
                            inputs.push((i, Input::Closed { conn: c, cause: CloseCause::PeerClosed }));
                        }
                    }
                }
            }
            for (client, events) in clients.iter_mut().zip(events.iter_mut()) {
                while let Some(e) = client.poll_event() {
                    events.push(e);
                }
            }
            if inputs.is_empty() {
                return;
            }
            for (i, input) in inputs {
                clients[i].handle_input(now, input);
            }
        }
    }
}

fn client_config(config: impl FnOnce(Config) -> Config, seed: u64) -> Config {
    let config = config(Config::new(&format!("127.0.0.1:{}", port_of(1))).unwrap().with_rng_seed(seed));
    config.validate().expect("a valid client configuration");
    config
}

/// Wall-clock time the world's clients start from (2026-01-01).
const WALL_CLOCK_START_MS: i64 = 1_767_225_600_000;

impl World {
    /// A cluster from `cluster` and a client from `config` bootstrapping from broker 1.
    pub fn new(cluster: FakeClusterConfig, config: impl FnOnce(Config) -> Config) -> Self {
        let mut cluster = FakeCluster::new(cluster);
        let net = Net::new(&mut cluster);
        let now = Instant::now();
        let mut client = Client::new(client_config(config, 1), now);
        client.set_wall_clock(now, WALL_CLOCK_START_MS);
        World { client, cluster, now, net, events: Vec::new() }
    }

    /// Moves bytes both ways until neither side has anything to say.
    pub fn pump(&mut self) {
        self.net.pump(self.now, &mut self.cluster, &mut [&mut self.client], &mut [&mut self.events]);
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

/// Several clients and one fake cluster, on a virtual clock: for consumer groups.
#[derive(Debug)]
pub struct Worlds {
    /// The clients, by index.
    pub clients: Vec<Client>,
    /// Each client's events, in order.
    pub events: Vec<Vec<Event>>,
    /// The cluster they share.
    pub cluster: FakeCluster,
    /// The virtual clock.
    pub now: Instant,
    net: Net,
}

impl Worlds {
    /// A cluster from `cluster`, no clients yet.
    pub fn new(cluster: FakeClusterConfig) -> Self {
        let mut cluster = FakeCluster::new(cluster);
        let net = Net::new(&mut cluster);
        Worlds { clients: Vec::new(), events: Vec::new(), cluster, now: Instant::now(), net }
    }

    /// Adds a client; returns its index.
    pub fn add(&mut self, config: impl FnOnce(Config) -> Config) -> usize {
        let i = self.clients.len();
        let mut client = Client::new(client_config(config, i as u64 + 1), self.now);
        client.set_wall_clock(self.now, WALL_CLOCK_START_MS);
        self.clients.push(client);
        self.events.push(Vec::new());
        i
    }

    /// Removes client `i` without telling anyone (a crash): its connections go quiet, and
    /// the cluster sees them close.
    pub fn crash(&mut self, i: usize) {
        let dead: Vec<(usize, ConnId)> = self.net.conns.keys().filter(|(c, _)| *c == i).copied().collect();
        for key in dead {
            if let Some((fake, _)) = self.net.conns.remove(&key) {
                self.net.by_fake.remove(&fake);
                self.cluster.handle_disconnect(fake);
            }
        }
        self.clients[i] = Client::new(client_config(|c| c, 1000 + i as u64), self.now);
    }

    /// Moves bytes both ways until nobody has anything to say.
    pub fn pump(&mut self) {
        let mut clients: Vec<&mut dyn Endpoint> = self.clients.iter_mut().map(|c| c as &mut dyn Endpoint).collect();
        let mut events: Vec<&mut Vec<Event>> = self.events.iter_mut().collect();
        self.net.pump(self.now, &mut self.cluster, &mut clients, &mut events);
    }

    /// Jumps the clock to the next deadline of anyone and runs it; false when nobody has one.
    pub fn step(&mut self) -> bool {
        let next = self.clients.iter().filter_map(Client::poll_timeout).chain(self.cluster.poll_timeout()).min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        for c in &mut self.clients {
            c.handle_timeout(self.now);
        }
        self.cluster.handle_timeout(self.now);
        self.pump();
        true
    }
}

/// A driver's [`Dispatcher`] (the adapters' shared part, intake and all) and a fake cluster
/// in one thread, on a virtual clock: the adapter boundary tested without sockets.
pub struct DispatcherWorld {
    /// The dispatcher under test.
    pub dispatcher: Dispatcher,
    /// Its handle, for the application's side (`None` once the test dropped it).
    pub handle: Option<sansa::driver::Handle>,
    /// The cluster it talks to.
    pub cluster: FakeCluster,
    /// The virtual clock.
    pub now: Instant,
    net: Net,
}

impl DispatcherWorld {
    /// A cluster from `cluster` and a dispatcher for a client from `config`.
    pub fn new(cluster: FakeClusterConfig, config: impl FnOnce(Config) -> Config) -> Self {
        let mut cluster = FakeCluster::new(cluster);
        let net = Net::new(&mut cluster);
        let now = Instant::now();
        let (handle, mut dispatcher) =
            sansa::driver::start(client_config(config, 1), now, sansa::driver::DEFAULT_INTAKE_CAPACITY)
                .expect("a valid configuration");
        dispatcher.set_wall_clock(now, WALL_CLOCK_START_MS);
        DispatcherWorld { dispatcher, handle: Some(handle), cluster, now, net }
    }

    /// Feeds the dispatcher what its intake holds, then moves bytes both ways until neither
    /// side has anything to say.
    pub fn pump(&mut self) {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while let std::task::Poll::Ready(intake) = self.dispatcher.poll_intake(&mut cx) {
            self.dispatcher.handle_intake(self.now, intake);
        }
        self.net.pump(self.now, &mut self.cluster, &mut [&mut self.dispatcher], &mut [&mut Vec::new()]);
    }

    /// The next deadline of either side.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.dispatcher.poll_timeout(), self.cluster.poll_timeout()].into_iter().flatten().min()
    }

    /// Jumps the clock to the next deadline of either side and runs it; false when neither
    /// has one.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_deadline() else { return false };
        self.now = self.now.max(next);
        self.dispatcher.handle_timeout(self.now);
        self.cluster.handle_timeout(self.now);
        self.pump();
        true
    }
}

impl std::fmt::Debug for DispatcherWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherWorld").field("dispatcher", &self.dispatcher).finish_non_exhaustive()
    }
}
