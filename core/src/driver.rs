//! What every runtime adapter shares, minus the I/O: the commands an application handle
//! sends to the driver, and routing each completed [`Event`] back to whoever waits for it.
//!
//! An adapter keeps one [`Dispatcher`] next to the [`Client`], with `W` its own one-shot
//! sender type. On a command it calls [`Dispatcher::submit`]; after draining transmits it
//! calls [`Dispatcher::drain`] and completes each waiter with its [`Outcome`]. No `if` about
//! Kafka is left in the adapter.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::client::{BrokerVersions, Client, Event, RequestError, RequestId, Response, Target};
use crate::cluster::ClusterMetadata;
use crate::protocol::{RequestBody, TopicName};

/// A command from an application handle.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Command {
    /// [`Client::request`].
    Request {
        /// Where to send it.
        target: Target,
        /// The request.
        body: Box<RequestBody>,
        /// A pinned version, or the highest common one.
        version: Option<i16>,
    },
    /// [`Client::refresh_metadata`].
    Metadata {
        /// Topics, or every topic.
        topics: Option<Vec<TopicName>>,
    },
    /// [`Client::check_version`].
    CheckVersion {
        /// Which broker.
        target: Target,
    },
    /// [`Client::close`]: completes once everything in flight finished.
    Close,
}

/// The result a waiter gets.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // moved once, to its waiter
pub enum Outcome {
    /// Answer to [`Command::Request`].
    Response(Result<Response, RequestError>),
    /// Answer to [`Command::Metadata`].
    Metadata(Result<ClusterMetadata, RequestError>),
    /// Answer to [`Command::CheckVersion`].
    Versions(Result<BrokerVersions, RequestError>),
    /// Answer to [`Command::Close`].
    Closed,
}

impl Outcome {
    /// The answer to a [`Command::Request`]; `ClientClosed` for any other outcome.
    pub fn into_response(self) -> Result<Response, RequestError> {
        match self {
            Outcome::Response(r) => r,
            _ => Err(RequestError::ClientClosed),
        }
    }

    /// The answer to a [`Command::Metadata`]; `ClientClosed` for any other outcome.
    pub fn into_metadata(self) -> Result<ClusterMetadata, RequestError> {
        match self {
            Outcome::Metadata(r) => r,
            _ => Err(RequestError::ClientClosed),
        }
    }

    /// The answer to a [`Command::CheckVersion`]; `ClientClosed` for any other outcome.
    pub fn into_versions(self) -> Result<BrokerVersions, RequestError> {
        match self {
            Outcome::Versions(r) => r,
            _ => Err(RequestError::ClientClosed),
        }
    }
}

/// Routes events to waiters of type `W`.
#[derive(Debug)]
pub struct Dispatcher<W> {
    waiters: BTreeMap<RequestId, W>,
    close_waiters: Vec<W>,
    /// Outcomes known without asking the client (closing an already closed client).
    ready: Vec<(W, Outcome)>,
}

impl<W> Default for Dispatcher<W> {
    fn default() -> Self {
        Dispatcher { waiters: BTreeMap::new(), close_waiters: Vec::new(), ready: Vec::new() }
    }
}

impl<W> Dispatcher<W> {
    /// An empty dispatcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `command` to the client; `waiter` will get its outcome from [`Dispatcher::drain`].
    pub fn submit(&mut self, client: &mut Client, now: Instant, command: Command, waiter: W) {
        let id = match command {
            Command::Request { target, body, version } => client.request(now, target, *body, version),
            Command::Metadata { topics } => client.refresh_metadata(now, topics),
            Command::CheckVersion { target } => client.check_version(now, target),
            Command::Close if client.is_closed() => {
                // The client emits `Closed` once; later closers are answered at once.
                self.ready.push((waiter, Outcome::Closed));
                return;
            }
            Command::Close => {
                self.close_waiters.push(waiter);
                client.close(now);
                return;
            }
        };
        self.waiters.insert(id, waiter);
    }

    /// Takes every event from the client and pairs it with its waiter. Events nobody waits for
    /// (the waiter went away) are dropped.
    pub fn drain(&mut self, client: &mut Client) -> Vec<(W, Outcome)> {
        let mut out = std::mem::take(&mut self.ready);
        while let Some(event) = client.poll_event() {
            let (id, outcome) = match event {
                Event::Response { id, result } => (id, Outcome::Response(result)),
                Event::Metadata { id, result } => (id, Outcome::Metadata(result)),
                Event::Versions { id, result } => (id, Outcome::Versions(result)),
                Event::Closed => {
                    out.extend(self.close_waiters.drain(..).map(|w| (w, Outcome::Closed)));
                    continue;
                }
            };
            if let Some(w) = self.waiters.remove(&id) {
                out.push((w, outcome));
            }
        }
        out
    }

    /// Whether anyone still waits for an outcome.
    pub fn is_idle(&self) -> bool {
        self.waiters.is_empty() && self.close_waiters.is_empty() && self.ready.is_empty()
    }
}
