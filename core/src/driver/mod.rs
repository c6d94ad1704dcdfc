//! The adapter boundary: everything a runtime adapter shares, minus sockets, timers and
//! spawning (the system calls the runtimes share are in the `sansa-socket` crate). No executor, no clock, no thread
//! lives here; this module only moves commands and outcomes between application handles and
//! the driver loop that owns the [`Client`].
//!
//! [`start`] validates the configuration once for every runtime and splits a client into a
//! [`Handle`] (typed methods, `async` and `_blocking`, behind a bounded intake) and a
//! [`Dispatcher`] (the driver's side: it owns the client, takes commands off the intake and
//! routes each finished event to the handle that waits for it). Outcomes travel through the
//! primitives of [`outcome`]: one-shot replies, multi-stage outcomes, bounded item streams and
//! acknowledgements back to the driver.
//!
//! An adapter's driver loop, with the runtime's own waiting in the middle:
//!
//! ```no_run
//! use std::time::Instant;
//! use sansa::driver::{self, DEFAULT_INTAKE_CAPACITY};
//! use sansa::{Config, Target};
//!
//! let (handle, mut dispatcher) =
//!     driver::start(Config::new("127.0.0.1:9092").unwrap(), Instant::now(), DEFAULT_INTAKE_CAPACITY).unwrap();
//! // Application tasks or threads call `handle.check_version(Target::AnyBroker).await`, ...
//! # let _ = (&handle, Target::AnyBroker);
//! loop {
//!     let now = Instant::now();
//!     while let Some(t) = dispatcher.poll_transmit(now) { /* open, write, close sockets */ }
//!     let deadline = dispatcher.poll_timeout();
//!     dispatcher.deliver(); // completes waiting handles; never blocks
//!     if dispatcher.is_finished() { break; }
//!     // Wait for: socket input -> dispatcher.handle_input(now, input)
//!     //           the intake (dispatcher.recv_intake().await or poll_intake) -> handle_intake(now, intake)
//!     //           `deadline` -> dispatcher.handle_timeout(now)
//! #   break;
//! }
//! ```
//!
//! [`Client`]: crate::Client

mod callback;
mod consumer;
mod dispatcher;
mod handle;
pub mod outcome;
mod producer;
mod read_buffer;
mod typed;
mod write_queue;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub use consumer::{RebalanceEvent, Records};
pub use dispatcher::{Dispatcher, Intake};
pub use handle::{Handle, Sending};
pub use producer::{DeliveryFuture, DeliveryWait, Sleeper, Timer};
pub use read_buffer::ReadBuffer;
pub use typed::TypedProducer;
pub use write_queue::{Outbox, WriteQueue, MAX_GATHER};

use crate::client::{BrokerVersions, Client, RequestError, Response, Target};
use crate::cluster::ClusterMetadata;
use crate::config::{Config, ConfigError};
use crate::protocol::{RequestBody, TopicName};
use outcome::Replier;

/// Commands the intake holds unless an adapter asks for another bound: enough to keep many
/// requests pipelined, small enough that a stalled driver pushes back on its callers.
pub const DEFAULT_INTAKE_CAPACITY: usize = 1024;

/// Validates `config`, gives it an OS-seeded [`Config::rng_seed`] when it has none, and
/// creates the client with its handle and dispatcher. The intake holds at most
/// `intake_capacity` commands (at least one). Call it once per client, from the adapter's
/// constructor; no I/O happens until the dispatcher's first transmit is applied.
pub fn start(mut config: Config, now: Instant, intake_capacity: usize) -> Result<(Handle, Dispatcher), ConfigError> {
    config.validate()?;
    if config.rng_seed.is_none() {
        // The one place that draws randomness from the OS; the seed makes every later draw
        // reproducible.
        config.rng_seed = Some(RandomState::new().build_hasher().finish());
    }
    let (tx, rx) = async_channel::bounded(intake_capacity.max(1));
    let gate =
        Arc::new(producer::BufferGate::new(config.producer.buffer_memory, config.producer.max_block, intake_capacity));
    let returned = consumer::Returned::default();
    let dispatcher =
        Dispatcher::new(Client::new(config, now), rx, tx.downgrade(), Arc::clone(&gate), Arc::clone(&returned));
    Ok((Handle::new(tx, gate, returned), dispatcher))
}

/// Threads worth giving the client's offloaded work ([`Dispatcher::offload_with`]): the
/// cores besides the driver's own (none on one core, where handing work to another thread
/// only costs).
pub fn spare_cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get().saturating_sub(1))
}

/// A driver that can take a command on the thread of the `_blocking` call that made it,
/// when nothing else is driving it at that moment ([`Handle::with_inline`]).
pub trait InlineDriver: Send + Sync {
    /// Feeds `intake` to the dispatcher on this thread, with every command queued on the
    /// intake before it first, and returns `None`; or gives `intake` back, untouched, when
    /// the dispatcher is busy on another thread or gone: the handle then queues it.
    fn run_inline(&self, intake: Intake) -> Option<Intake>;
}

/// What travels on the intake.
enum Msg {
    Command(Command),
    /// From [`outcome::Nudge`]: look again at what is held back. The flag lets the next nudge
    /// through once this one is taken.
    Nudge(Arc<AtomicBool>),
    /// The send lane ([`producer::SendLane`]) was empty and has a send now.
    Sends,
    /// A [`Job`] is done.
    Done(crate::WorkDone),
}

/// The client's CPU-bound work (a batch to compress, fetched data to decompress), for a
/// thread of the adapter's choosing ([`Dispatcher::offload_with`]): [`Job::run`] does it and
/// hands the result back to the dispatcher through its intake.
pub struct Job {
    /// Taken by `run`; a job dropped unrun (an executor shutting down) runs as it drops, or
    /// its batch would wait for a result that never comes.
    work: Option<crate::Work>,
    intake: async_channel::Sender<Msg>,
}

impl Job {
    fn new(work: crate::Work, intake: async_channel::Sender<Msg>) -> Job {
        Job { work: Some(work), intake }
    }

    /// The work, for the driver to do itself.
    fn into_work(mut self) -> Option<crate::Work> {
        self.work.take()
    }

    /// Runs the work on this thread (milliseconds: it may compress or decompress a
    /// megabyte), then queues the result for the dispatcher, waiting for room on its intake
    /// if need be.
    pub fn run(mut self) {
        if let Some(work) = self.work.take() {
            // A closed intake means the driver ended: nothing waits for the batch any more.
            let _ = self.intake.send_blocking(Msg::Done(work.run()));
        }
    }
}

impl Drop for Job {
    /// An executor shutting down may drop a job on the driver's own thread: the result
    /// then only goes back if the intake has room, never waiting on it.
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            let _ = self.intake.try_send(Msg::Done(work.run()));
        }
    }
}

/// The jobs of [`Dispatcher::offload_to_threads`], for a thread the adapter starts.
#[derive(Clone, Debug)]
pub struct JobQueue(async_channel::Receiver<Job>);

impl JobQueue {
    /// Runs the jobs as they come, on this thread, until the dispatcher is gone and no job
    /// is left.
    pub fn run(self) {
        while let Ok(job) = self.0.recv_blocking() {
            job.run();
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Job").field(&self.work).finish()
    }
}

/// A command from a [`Handle`], carrying the replier for its outcome.
#[allow(clippy::large_enum_variant)] // moved once, from a handle to the dispatcher
enum Command {
    Request {
        target: Target,
        body: Box<RequestBody>,
        version: Option<i16>,
        reply: Replier<Result<Response, RequestError>>,
    },
    Metadata {
        topics: Option<Vec<TopicName>>,
        reply: Replier<Result<ClusterMetadata, RequestError>>,
    },
    CheckVersion {
        target: Target,
        reply: Replier<Result<BrokerVersions, RequestError>>,
    },
    /// Answers once every record sent before it has its outcome.
    Flush {
        reply: Replier<()>,
    },
    /// The producer's metrics by Java name.
    Metrics {
        reply: Replier<std::collections::BTreeMap<String, f64>>,
    },
    /// A consumer command.
    Consumer(consumer::ConsumerCommand),
    /// Completes once everything in flight finished; records still undelivered after
    /// `timeout` fail.
    Close {
        reply: Replier<()>,
        timeout: Option<std::time::Duration>,
    },
}

#[cfg(test)]
mod tests;
