//! The simulator's trace: one compact record per thing that happened, and a stable hash over
//! a canonical byte encoding of it (FNV-1a 64, not `DefaultHasher`, whose output may change
//! between Rust releases). Times are durations since the simulation's origin, never `Instant`s,
//! so the hash does not depend on the real clock.

use std::fmt;
use std::time::Duration;

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        for x in b {
            self.0 = (self.0 ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Feeds an integer, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Feeds a string, length first so that adjacent strings cannot run together.
    pub fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// What happened, from the simulator's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// The workload issued a command; ids and connections are namespaced by client
    /// (`client << 32 | id`).
    Issue { id: u64, what: String },
    /// A command completed; `outcome` is a short summary (`ok` with an error code, or the
    /// error's kind).
    Outcome { id: u64, outcome: String },
    /// `Transmit::Open`.
    Open { conn: u64, address: String },
    /// `Transmit::Send`.
    Send { conn: u64, len: usize },
    /// `Transmit::Close`.
    ClientClose { conn: u64 },
    /// `Input::Connected` given to the client.
    Connected { conn: u64 },
    /// `Input::Closed` given to the client.
    Closed { conn: u64, cause: String },
    /// Bytes delivered to the client.
    ToClient { conn: u64, len: usize },
    /// Bytes delivered to the broker.
    ToServer { conn: u64, len: usize },
    /// The broker learned that the connection is gone.
    ServerGone { conn: u64 },
    /// The broker closed the connection.
    ServerClose { conn: u64 },
    /// `Client::handle_timeout` of one client.
    ClientTimeout { client: usize },
    /// `Client::handle_work_done` of one client: work it handed out is done.
    WorkDone { client: usize },
    /// `FakeCluster::handle_timeout`.
    ClusterTimeout,
    /// A scheduled fault or topology change.
    Fault { what: String },
    /// A producer's batch written to a connection: partition, producer id, epoch, sequence
    /// and the records it carries.
    Batch { conn: u64, what: String },
}

impl TraceEvent {
    fn encode(&self, h: &mut Fnv) {
        match self {
            TraceEvent::Issue { id, what } => {
                h.u64(1);
                h.u64(*id);
                h.str(what);
            }
            TraceEvent::Outcome { id, outcome } => {
                h.u64(2);
                h.u64(*id);
                h.str(outcome);
            }
            TraceEvent::Open { conn, address } => {
                h.u64(3);
                h.u64(*conn);
                h.str(address);
            }
            TraceEvent::Send { conn, len } => {
                h.u64(4);
                h.u64(*conn);
                h.u64(*len as u64);
            }
            TraceEvent::ClientClose { conn } => {
                h.u64(5);
                h.u64(*conn);
            }
            TraceEvent::Connected { conn } => {
                h.u64(6);
                h.u64(*conn);
            }
            TraceEvent::Closed { conn, cause } => {
                h.u64(7);
                h.u64(*conn);
                h.str(cause);
            }
            TraceEvent::ToClient { conn, len } => {
                h.u64(8);
                h.u64(*conn);
                h.u64(*len as u64);
            }
            TraceEvent::ToServer { conn, len } => {
                h.u64(9);
                h.u64(*conn);
                h.u64(*len as u64);
            }
            TraceEvent::ServerGone { conn } => {
                h.u64(10);
                h.u64(*conn);
            }
            TraceEvent::ServerClose { conn } => {
                h.u64(11);
                h.u64(*conn);
            }
            TraceEvent::ClientTimeout { client } => {
                h.u64(12);
                h.u64(*client as u64);
            }
            TraceEvent::WorkDone { client } => {
                h.u64(16);
                h.u64(*client as u64);
            }
            TraceEvent::ClusterTimeout => h.u64(13),
            TraceEvent::Fault { what } => {
                h.u64(14);
                h.str(what);
            }
            TraceEvent::Batch { conn, what } => {
                h.u64(15);
                h.u64(*conn);
                h.str(what);
            }
        }
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Issue { id, what } => write!(f, "issue #{} {what}", Ns(*id)),
            TraceEvent::Outcome { id, outcome } => write!(f, "outcome #{} {outcome}", Ns(*id)),
            TraceEvent::Open { conn, address } => write!(f, "c{} open {address}", Ns(*conn)),
            TraceEvent::Send { conn, len } => write!(f, "c{} send {len}B", Ns(*conn)),
            TraceEvent::ClientClose { conn } => write!(f, "c{} closed by client", Ns(*conn)),
            TraceEvent::Connected { conn } => write!(f, "c{} connected", Ns(*conn)),
            TraceEvent::Closed { conn, cause } => write!(f, "c{} closed: {cause}", Ns(*conn)),
            TraceEvent::ToClient { conn, len } => write!(f, "c{} -> client {len}B", Ns(*conn)),
            TraceEvent::ToServer { conn, len } => write!(f, "c{} -> broker {len}B", Ns(*conn)),
            TraceEvent::ServerGone { conn } => write!(f, "c{} gone at the broker", Ns(*conn)),
            TraceEvent::ServerClose { conn } => write!(f, "c{} closed by the broker", Ns(*conn)),
            TraceEvent::ClientTimeout { client } => write!(f, "client {client} timeout"),
            TraceEvent::WorkDone { client } => write!(f, "client {client} work done"),
            TraceEvent::ClusterTimeout => write!(f, "cluster timeout"),
            TraceEvent::Fault { what } => write!(f, "fault: {what}"),
            TraceEvent::Batch { conn, what } => write!(f, "c{} batch {what}", Ns(*conn)),
        }
    }
}

/// A namespaced id (`client << 32 | id`), shown as `id` for client 0 and `client.id` else.
struct Ns(u64);

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 >> 32 {
            0 => write!(f, "{}", self.0),
            client => write!(f, "{client}.{}", self.0 & 0xffff_ffff),
        }
    }
}

/// Every event with its virtual time, and the running hash.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    events: Vec<(Duration, TraceEvent)>,
    hash: Fnv,
}

impl Trace {
    /// Appends an event at `at` (time since the origin).
    pub fn push(&mut self, at: Duration, event: TraceEvent) {
        self.hash.u64(at.as_nanos() as u64);
        event.encode(&mut self.hash);
        self.events.push((at, event));
    }

    /// The events so far.
    pub fn events(&self) -> &[(Duration, TraceEvent)] {
        &self.events
    }

    /// The stable hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// The last `n` distinct lines of the trace, with their times; runs of one event at one
    /// time (a livelock) are collapsed into a count.
    pub fn tail(&self, n: usize) -> String {
        let mut lines: Vec<(Duration, &TraceEvent, usize)> = Vec::new();
        for (at, e) in self.events.iter().rev() {
            match lines.last_mut() {
                Some((t, last, count)) if *t == *at && *last == e => *count += 1,
                _ => {
                    if lines.len() == n {
                        break;
                    }
                    lines.push((*at, e, 1));
                }
            }
        }
        let mut s = String::new();
        for (at, e, count) in lines.into_iter().rev() {
            s.push_str(&format!("  {:>12.6}s  {e}", at.as_secs_f64()));
            if count > 1 {
                s.push_str(&format!("  (x{count})"));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        let mut h = Fnv::default();
        h.bytes(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv::default();
        h.bytes(b"foobar");
        assert_eq!(h.finish(), 0x8594_4171_f739_67e8);
    }
}
