//! A network emulator for the simulator: one ordered byte stream each way per connection,
//! with latency drawn from a seeded distribution, slow delivery (a write arrives as several
//! chunks spread over time, order kept per direction), connection drops (either side, or a
//! reset), and partitions between the client and a broker (connects go unanswered or
//! unreachable, bytes in flight are lost and the connection dies a little later).
//!
//! The emulator only schedules: [`Netem::pop_due`] hands out what arrives next and the
//! simulator applies it to the client or the cluster. Connections are named by the client's
//! [`ConnId`]; the cluster sees the same number as its `FakeConnId`. Times are durations since
//! the simulation's origin.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sansa::rand::Rng;
use sansa::{CloseCause, ConnId};

/// How a link behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkProfile {
    /// One-way latency floor.
    pub base: Duration,
    /// Uniform jitter on top of `base`, in `0..jitter`.
    pub jitter: Duration,
    /// One delivery in `spike_one_in` gets an extra delay of up to `spike` (0: never).
    pub spike_one_in: u64,
    /// The largest latency spike.
    pub spike: Duration,
    /// Split each write into up to this many chunks (1: whole writes).
    pub max_chunks: usize,
    /// Extra gap, in `0..chunk_gap`, before each chunk after the first.
    pub chunk_gap: Duration,
}

impl Default for LinkProfile {
    fn default() -> Self {
        LinkProfile {
            base: Duration::from_micros(200),
            jitter: Duration::from_micros(300),
            spike_one_in: 0,
            spike: Duration::ZERO,
            max_chunks: 1,
            chunk_gap: Duration::ZERO,
        }
    }
}

impl LinkProfile {
    /// A profile drawn from `rng`: sometimes fast, sometimes slow and choppy.
    pub fn random(rng: &mut Rng) -> Self {
        let ms = |rng: &mut Rng, max: u64| Duration::from_micros(rng.below(max * 1000 + 1));
        let base = ms(rng, 5);
        let jitter = ms(rng, 10);
        let (spike_one_in, spike) =
            if rng.below(2) == 0 { (0, Duration::ZERO) } else { (8 + rng.below(32), ms(rng, 500)) };
        let (max_chunks, chunk_gap) =
            if rng.below(2) == 0 { (1, Duration::ZERO) } else { (2 + rng.below(7) as usize, ms(rng, 20)) };
        LinkProfile { base, jitter, spike_one_in, spike, max_chunks, chunk_gap }
    }

    /// The longest one delivery can take: every delay at its largest, every chunk apart.
    pub fn worst_latency(&self) -> Duration {
        let gaps = u32::try_from(self.max_chunks.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base + self.jitter + self.spike + self.chunk_gap * gaps
    }

    /// This profile with its delays scaled down, in proportion, so that no delivery takes
    /// longer than `limit`.
    pub fn capped(self, limit: Duration) -> Self {
        let worst = self.worst_latency();
        if worst <= limit {
            return self;
        }
        // Whole nanoseconds, rounded down: the same on every machine and toolchain (a
        // profile is in the trace), and never over the limit.
        let scale = |d: Duration| {
            Duration::from_nanos(u64::try_from(d.as_nanos() * limit.as_nanos() / worst.as_nanos()).unwrap_or(u64::MAX))
        };
        LinkProfile {
            base: scale(self.base),
            jitter: scale(self.jitter),
            spike: scale(self.spike),
            chunk_gap: scale(self.chunk_gap),
            ..self
        }
    }

    fn latency(&self, rng: &mut Rng) -> Duration {
        let mut d = self.base + nanos_below(rng, self.jitter);
        if self.spike_one_in > 0 && rng.below(self.spike_one_in) == 0 {
            d += nanos_below(rng, self.spike);
        }
        d
    }
}

fn nanos_below(rng: &mut Rng, d: Duration) -> Duration {
    Duration::from_nanos(rng.below(d.as_nanos() as u64))
}

/// How a connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// The broker closes it: the client reads what was already sent, then end of stream.
    BrokerClose,
    /// A reset: bytes in flight are lost both ways and both sides learn it soon.
    Reset,
}

/// Something arriving, for the simulator to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// The TCP handshake to `broker` completed on the client's side (the broker may have
    /// gone down meanwhile: then it is refused).
    ConnectDone { conn: ConnId, broker: i32 },
    /// Connecting failed quickly (no such host, no route).
    ConnectFailed { conn: ConnId, cause: CloseCause },
    /// Bytes reach the broker.
    ToServer { conn: ConnId, bytes: Bytes },
    /// Bytes reach the client.
    ToClient { conn: ConnId, bytes: Bytes },
    /// The broker's close reaches the client, after everything it sent before.
    ServerFin { conn: ConnId },
    /// The client's close reaches the broker, after everything it sent before.
    ClientFin { conn: ConnId },
    /// The connection dies on both sides (a partition or a reset).
    Die { conn: ConnId, cause: CloseCause },
}

/// One connection as the network sees it.
#[derive(Debug)]
pub struct Link {
    /// The broker at the far end, if the address resolved.
    pub broker: Option<i32>,
    /// The client still has this connection (no `Close` from it, no `Closed` to it).
    pub client_open: bool,
    /// The broker has accepted it and not forgotten it.
    pub server_open: bool,
    /// The client was told it is connected.
    pub connected: bool,
    /// Lost to a partition or reset: nothing more is delivered; a `Die` is on its way.
    pub doomed: bool,
    last_to_server: Duration,
    last_to_client: Duration,
    /// Bytes received by the broker, not yet a whole frame.
    pub server_buf: BytesMut,
}

/// The network between the client and the brokers.
#[derive(Debug)]
pub struct Netem {
    rng: Rng,
    /// Profile of every link without an override.
    pub default_profile: LinkProfile,
    overrides: BTreeMap<i32, LinkProfile>,
    partitioned: BTreeSet<i32>,
    links: BTreeMap<ConnId, Link>,
    queue: BTreeMap<(Duration, u64), NetEvent>,
    seq: u64,
}

impl Netem {
    /// A network with its own random stream.
    pub fn new(seed: u64, profile: LinkProfile) -> Self {
        Netem {
            rng: Rng::new(seed),
            default_profile: profile,
            overrides: BTreeMap::new(),
            partitioned: BTreeSet::new(),
            links: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
        }
    }

    fn profile(&self, broker: Option<i32>) -> LinkProfile {
        broker.and_then(|b| self.overrides.get(&b).copied()).unwrap_or(self.default_profile)
    }

    /// Gives the links to `broker` their own profile (`None`: back to the default).
    pub fn set_profile(&mut self, broker: i32, profile: Option<LinkProfile>) {
        match profile {
            Some(p) => self.overrides.insert(broker, p),
            None => self.overrides.remove(&broker),
        };
    }

    /// Drops every per-broker profile.
    pub fn clear_profiles(&mut self) {
        self.overrides.clear();
    }

    fn schedule(&mut self, at: Duration, e: NetEvent) {
        self.seq += 1;
        self.queue.insert((at, self.seq), e);
    }

    /// When the next event arrives.
    pub fn next_time(&self) -> Option<Duration> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Whether anything is in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next event due at or before `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<NetEvent> {
        let (&(t, seq), _) = self.queue.iter().next()?;
        if t > now {
            return None;
        }
        self.queue.remove(&(t, seq))
    }

    /// A connection.
    pub fn link(&self, conn: ConnId) -> Option<&Link> {
        self.links.get(&conn)
    }

    /// A connection, to update.
    pub fn link_mut(&mut self, conn: ConnId) -> Option<&mut Link> {
        self.links.get_mut(&conn)
    }

    /// Connections the client still holds, ascending.
    pub fn client_conns(&self) -> Vec<ConnId> {
        self.links.iter().filter(|(_, l)| l.client_open).map(|(c, _)| *c).collect()
    }

    /// Whether the client and `broker` cannot reach each other.
    pub fn is_partitioned(&self, broker: i32) -> bool {
        self.partitioned.contains(&broker)
    }

    /// The brokers currently cut off.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitioned.iter().copied().collect()
    }

    /// `Transmit::Open` to `broker` (`None`: the address does not resolve).
    pub fn open(&mut self, now: Duration, conn: ConnId, broker: Option<i32>, host: &str) {
        let profile = self.profile(broker);
        self.links.insert(
            conn,
            Link {
                broker,
                client_open: true,
                server_open: false,
                connected: false,
                doomed: false,
                last_to_server: now,
                last_to_client: now,
                server_buf: BytesMut::new(),
            },
        );
        let Some(broker) = broker else {
            let at = now + profile.latency(&mut self.rng);
            self.schedule(at, NetEvent::ConnectFailed { conn, cause: CloseCause::UnknownHost(host.to_string()) });
            return;
        };
        if self.partitioned.contains(&broker) {
            // Either an ICMP unreachable comes back, or the SYN vanishes and the client's
            // connection setup timeout has to notice.
            if self.rng.below(3) == 0 {
                let at = now + profile.latency(&mut self.rng);
                self.schedule(at, NetEvent::ConnectFailed { conn, cause: CloseCause::Io("no route to host".into()) });
            }
            return;
        }
        let rtt = profile.latency(&mut self.rng) + profile.latency(&mut self.rng);
        self.schedule(now + rtt, NetEvent::ConnectDone { conn, broker });
    }

    /// Writes from the client (`to_server`) or the broker, cut into chunks as the profile says.
    pub fn send(&mut self, now: Duration, conn: ConnId, bytes: Bytes, to_server: bool) {
        let Some(link) = self.links.get(&conn) else { return };
        if link.doomed || (to_server && !link.server_open) || (!to_server && !link.client_open) {
            return;
        }
        let broker = link.broker;
        let profile = self.profile(broker);
        let chunks = split(&mut self.rng, bytes, profile.max_chunks);
        let mut at = now + profile.latency(&mut self.rng);
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 {
                at += nanos_below(&mut self.rng, profile.chunk_gap);
            }
            let Some(link) = self.links.get_mut(&conn) else { return };
            let last = if to_server { &mut link.last_to_server } else { &mut link.last_to_client };
            at = at.max(*last);
            *last = at;
            let e = if to_server {
                NetEvent::ToServer { conn, bytes: chunk }
            } else {
                NetEvent::ToClient { conn, bytes: chunk }
            };
            self.schedule(at, e);
        }
    }

    /// `Transmit::Close` from the client: the broker learns it after the bytes already sent.
    pub fn client_close(&mut self, now: Duration, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else { return };
        link.client_open = false;
        if link.server_open && !link.doomed {
            let at = link.last_to_server.max(now) + Duration::from_micros(1);
            link.last_to_server = at;
            self.schedule(at, NetEvent::ClientFin { conn });
        }
    }

    /// The broker closed `conn` (it has already forgotten it): the client reads the bytes in
    /// flight, then the close.
    pub fn server_close(&mut self, now: Duration, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else { return };
        link.server_open = false;
        if link.client_open && !link.doomed {
            let at = link.last_to_client.max(now) + Duration::from_micros(1);
            link.last_to_client = at;
            self.schedule(at, NetEvent::ServerFin { conn });
        }
    }

    /// Drops `conn`.
    pub fn drop_conn(&mut self, now: Duration, conn: ConnId, kind: DropKind) -> bool {
        let Some(link) = self.links.get_mut(&conn) else { return false };
        if link.doomed || !link.client_open {
            return false;
        }
        match kind {
            DropKind::BrokerClose => {
                // The simulator tells the cluster; this is the network's half.
                self.server_close(now, conn);
            }
            DropKind::Reset => {
                link.doomed = true;
                let broker = link.broker;
                let profile = self.profile(broker);
                let at = now + profile.latency(&mut self.rng);
                self.schedule(at, NetEvent::Die { conn, cause: CloseCause::PeerClosed });
            }
        }
        true
    }

    /// Cuts the client off from `broker`: open connections lose what is in flight and die
    /// after a while (as TCP gives up retransmitting); new connects go unanswered.
    pub fn partition(&mut self, now: Duration, broker: i32) {
        if !self.partitioned.insert(broker) {
            return;
        }
        let doomed: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| l.broker == Some(broker) && l.connected && !l.doomed && (l.client_open || l.server_open))
            .map(|(c, _)| *c)
            .collect();
        for conn in doomed {
            if let Some(l) = self.links.get_mut(&conn) {
                l.doomed = true;
            }
            let at = now + Duration::from_millis(500 + self.rng.below(5_500));
            self.schedule(at, NetEvent::Die { conn, cause: CloseCause::Io("connection timed out".into()) });
        }
    }

    /// The faults are over: connections a partition or a reset doomed die now instead of
    /// later, so that nothing sent after the faults goes down with them. They lost bytes in
    /// flight, so they could not carry on.
    pub fn kill_doomed(&mut self, now: Duration) {
        let doomed: Vec<ConnId> =
            self.links.iter().filter(|(_, l)| l.doomed && (l.client_open || l.server_open)).map(|(c, _)| *c).collect();
        for conn in doomed {
            self.schedule(now, NetEvent::Die { conn, cause: CloseCause::Io("connection timed out".into()) });
        }
    }

    /// Restores the link to `broker`.
    pub fn heal(&mut self, broker: i32) {
        self.partitioned.remove(&broker);
    }

    /// A value in `0..n` from the network's random stream.
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }
}

/// Cuts `bytes` into at most `max` non-empty chunks at random points.
fn split(rng: &mut Rng, bytes: Bytes, max: usize) -> Vec<Bytes> {
    if max <= 1 || bytes.len() <= 1 {
        return vec![bytes];
    }
    let n = 1 + rng.below(max.min(bytes.len()) as u64) as usize;
    let mut cuts: BTreeSet<usize> = BTreeSet::new();
    while cuts.len() < n - 1 {
        cuts.insert(1 + rng.below(bytes.len() as u64 - 1) as usize);
    }
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
        out.push(bytes.slice(start..c));
        start = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_profile_never_takes_longer_than_its_cap() {
        let ms = Duration::from_millis;
        let slow = LinkProfile {
            base: ms(200),
            jitter: ms(300),
            spike_one_in: 4,
            spike: ms(2_000),
            max_chunks: 8,
            chunk_gap: ms(100),
        };
        assert_eq!(slow.worst_latency(), ms(3_200));
        let capped = slow.capped(ms(800));
        assert!(capped.worst_latency() <= ms(800), "{capped:?}");
        assert_eq!(capped.base, ms(50), "scaled in proportion");
        assert_eq!((capped.spike_one_in, capped.max_chunks), (4, 8), "as often, as choppy");
        assert_eq!(LinkProfile::default().capped(ms(1)), LinkProfile::default());
    }

    #[test]
    fn chunks_keep_order_and_bytes() {
        let mut rng = Rng::new(3);
        let data = Bytes::from((0..200u8).collect::<Vec<_>>());
        for _ in 0..50 {
            let parts = split(&mut rng, data.clone(), 6);
            assert!(!parts.is_empty() && parts.len() <= 6);
            assert!(parts.iter().all(|p| !p.is_empty()));
            assert_eq!(parts.concat(), data.to_vec());
        }
    }

    #[test]
    fn deliveries_keep_order_per_direction() {
        let profile = LinkProfile {
            jitter: Duration::from_millis(50),
            max_chunks: 5,
            chunk_gap: Duration::from_millis(5),
            ..LinkProfile::default()
        };
        let mut net = Netem::new(9, profile);
        let conn = ConnId(1);
        net.open(Duration::ZERO, conn, Some(1), "h");
        net.link_mut(conn).unwrap().server_open = true;
        net.link_mut(conn).unwrap().connected = true;
        let _ = net.pop_due(Duration::from_secs(1));
        for i in 0..20u8 {
            net.send(Duration::from_millis(u64::from(i)), conn, Bytes::from(vec![i; 30]), true);
        }
        let mut got = Vec::new();
        while let Some(e) = net.pop_due(Duration::from_secs(10)) {
            if let NetEvent::ToServer { bytes, .. } = e {
                got.extend_from_slice(&bytes);
            }
        }
        let want: Vec<u8> = (0..20u8).flat_map(|i| vec![i; 30]).collect();
        assert_eq!(got, want);
    }
}
