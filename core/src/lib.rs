//! sansa: an Apache Kafka client whose protocol logic is pure and IO-free.
//!
//! This crate is the core: the wire protocol (every Kafka API as typed messages generated from
//! Apache Kafka's own specs, record batches with compression and CRC32C) and the client state
//! machine [`Client`]. The client is a router — connections per broker and [`Role`], version
//! negotiation, backoff, target resolution, in-flight requests and timers — around inner
//! machines (metadata refresh, coordinator lookup, raw requests, version checks) that trade
//! typed requests and responses with it. It never touches a socket, a clock, a thread or the
//! operating system's randomness: runtime adapters (`sansa-tokio`, `sansa-async-std`,
//! `sansa-blocking`, all built on [`driver`]) drive it, and tests drive it with a virtual clock.
//!
//! # The driver loop
//!
//! ```no_run
//! use std::time::Instant;
//! use sansa::{Client, Config, Event, Input, Transmit};
//!
//! let mut client = Client::new(Config::new("127.0.0.1:9092").unwrap(), Instant::now());
//! let id = client.check_version(Instant::now(), sansa::Target::AnyBroker);
//! loop {
//!     let now = Instant::now();
//!     while let Some(t) = client.poll_transmit(now) {
//!         match t {
//!             Transmit::Open { conn, address } => { /* connect, later feed Input::Connected or Input::Closed */ }
//!             Transmit::Send { conn, bytes } => { /* write all bytes to the socket */ }
//!             Transmit::Close { conn } => { /* drop the socket */ }
//!             _ => {}
//!         }
//!     }
//!     let deadline = client.poll_timeout();
//!     while let Some(event) = client.poll_event() {
//!         if let Event::Versions { id: done, result } = event { assert_eq!(done, id); println!("{result:?}"); return; }
//!     }
//!     // Wait for socket readiness, a command, or `deadline`; then, with a fresh `now`:
//!     //   client.handle_input(now, Input::Received { conn, data })   for bytes read
//!     //     (in any split; `driver::ReadBuffer` reads whole frames, which decode without a copy)
//!     //   client.handle_timeout(now)                                 when the deadline passes
//! #   break;
//! }
//! ```

pub mod backoff;
mod buffer_pool;
mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod consumer;
mod coordinator;
pub mod driver;
mod machine;
#[cfg(feature = "plants")]
pub mod plants;
pub mod producer;
pub mod protocol;
pub mod rand;
mod requests;
pub mod security;
pub mod serialization;
mod timer;
mod versions;
mod work;

/// Where tests' virtual clocks start: an arbitrary instant (`Instant` has no other
/// constructor), the same for every test of the binary. Past it, only the tests move time.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_origin() -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

pub use client::{
    BrokerVersions, Client, CloseCause, ConnId, Event, Input, Node, RequestError, RequestId, Response, Role, Target,
    Transmit,
};
pub use config::{BrokerAddress, Config, ConfigError};
pub use connection::LocalClose;
pub use work::{Work, WorkDone};
