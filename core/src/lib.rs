//! sansa: an Apache Kafka client whose protocol logic is pure and IO-free.
//!
//! This crate is the core: the wire protocol (every Kafka API as typed messages generated from
//! Apache Kafka's own specs, record batches with compression and CRC32C) and, in time, the
//! client state machines. Runtime adapters drive it on tokio, async-std/smol, or std sockets.

pub mod protocol;
