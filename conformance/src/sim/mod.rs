//! A deterministic simulator: sansa's sans-IO [`sansa::Client`] against the in-memory
//! [`crate::fake_cluster::FakeCluster`], over an emulated network ([`netem`]) with a virtual
//! clock, one seeded random stream per component, scheduled faults, and invariants checked
//! after every run.
//!
//! - [`netem`]: per-connection byte streams with latency, chunked slow delivery, drops and
//!   partitions.
//! - [`harness`]: [`Sim`], with [`Sim::step`], [`Sim::drive`] and [`Sim::drive_bounded`]; the
//!   online invariants (reconnect backoff bounds, no sends on dead connections).
//! - [`scenario`]: a [`Scenario`] from a seed, [`run_seed`], and the after-run invariants
//!   (exactly one outcome per command, outcomes within the request timeout, metadata
//!   convergence after the faults end).
//! - [`trace`]: the event trace and its stable hash.
//!
//! Nothing reads the real clock except one origin `Instant` per run, and only durations since
//! it reach the trace, so a seed replays to the same trace hash. The `sim` binary runs seeds:
//! `cargo run --release -p sansa-conformance --bin sim -- --seeds 0..500`.

pub mod harness;
pub mod netem;
pub mod scenario;
pub mod trace;

pub use harness::{Action, RequestRecord, Sim, SimConfig, SimError, Violation, Work};
pub use netem::{DropKind, LinkProfile, Netem};
pub use scenario::{run_scenario, run_seed, RunReport, Scenario};
pub use trace::{Trace, TraceEvent};
