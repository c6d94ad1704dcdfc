//! A deterministic simulator: sansa's sans-IO [`sansa::Client`]s against the in-memory
//! [`crate::fake_cluster::FakeCluster`], over an emulated network ([`netem`]) with a virtual
//! clock, one seeded random stream per component, scheduled faults, a record-level history,
//! and invariants checked after every run.
//!
//! - [`netem`]: per-connection byte streams with latency, chunked slow delivery, drops and
//!   partitions.
//! - [`harness`]: [`Sim`], with one to many clients (each its own connection namespace),
//!   [`Sim::step`], [`Sim::drive`], [`Sim::drive_bounded`], probes; the online checks
//!   (reconnect backoff bounds, no sends on dead connections).
//! - [`history`]: every record produced (sent, acked, failed) by raw Produce requests or
//!   through the producer machine (`Client::send` and its delivery reports, with each
//!   producer's buffer use), consumed, and what the cluster stored.
//! - [`invariants`]: the [`Invariant`] trait and the [`Registry`] machines add theirs to.
//! - [`scenario`]: a [`Scenario`] from a seed (raw requests, producers with their own
//!   settings sending and flushing, faults aimed at Produce), [`run_seed`], convergence,
//!   liveness probes, the producers' recovery and the scripted episodes aimed at the plants.
//! - [`consumers`]: group members (both protocols, the classic assignors, both isolation
//!   levels) that join, leave, stall and crash under the faults, transactions beside the
//!   producers, the calm episode at the end, and the consumer's invariants.
//! - [`security`]: seeds whose brokers listen with TLS, SASL or both (handshakes under the
//!   faults, logins cut off midway), and the login episodes: a wrong password, a hang-up
//!   mid-login, an impostor broker forging SCRAM's server signature.
//! - [`plants`]: the `--plants` runner.
//! - [`trace`]: the event trace and its stable hash.
//!
//! Nothing reads the real clock except one origin `Instant` per run, and only durations since
//! it reach the trace, so a seed replays to the same trace hash. The `sim` binary runs seeds:
//! `cargo run --release -p sansa-conformance --bin sim -- --seeds 0..500`.

pub mod consumers;
pub mod harness;
pub mod history;
pub mod invariants;
pub mod netem;
pub mod plants;
pub mod scenario;
pub mod security;
pub mod trace;

pub use harness::{
    Action, ClientConfig, CmdId, Keying, RequestRecord, SendWork, Sim, SimConfig, SimError, SimSecurity, Violation,
    Work,
};
pub use history::{History, RecordId, SendEntry, SendKey};
pub use invariants::{Invariant, Registry, World};
pub use netem::{DropKind, LinkProfile, Netem};
pub use scenario::{run_planted, run_scenario, run_seed, RunReport, Scenario};
pub use trace::{Trace, TraceEvent};
