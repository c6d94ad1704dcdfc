//! The application's side: typed methods, written once for every runtime, that put a command
//! on the bounded intake and wait for its outcome.

use async_channel::Sender;

use super::outcome::{reply, DriverGone, Reply};
use super::{Command, Msg};
use crate::client::{BrokerVersions, RequestError, Response, Target};
use crate::cluster::ClusterMetadata;
use crate::protocol::{RequestBody, TopicName};

impl From<DriverGone> for RequestError {
    fn from(_: DriverGone) -> Self {
        RequestError::ClientClosed
    }
}

/// A handle on one driven [`Client`](crate::Client): cheap to clone, `Send + Sync`, usable
/// from any task or thread. Runtime crates wrap it; each method comes in an `async` form and a
/// `_blocking` form. Past the intake's bound a command waits (async) or blocks (blocking) until
/// the driver takes one. Once the driver is gone every method reports
/// [`RequestError::ClientClosed`]. When the last clone is dropped the driver closes the client,
/// letting requests in flight finish first.
#[derive(Debug, Clone)]
pub struct Handle {
    intake: Sender<Msg>,
}

impl Handle {
    pub(super) fn new(intake: Sender<Msg>) -> Handle {
        Handle { intake }
    }

    /// Sends `body` to `target`, at `version` or else the highest version both sides support,
    /// and waits for the answer.
    pub async fn request(
        &self,
        target: Target,
        body: RequestBody,
        version: Option<i16>,
    ) -> Result<Response, RequestError> {
        let (command, answer) = request(target, body, version);
        self.submit(command).await;
        answer.recv().await?
    }

    /// [`Handle::request`], blocking the thread.
    pub fn request_blocking(
        &self,
        target: Target,
        body: RequestBody,
        version: Option<i16>,
    ) -> Result<Response, RequestError> {
        self.send_request_blocking(target, body, version).recv_blocking()?
    }

    /// Submits a request, blocking only while the intake is full, and returns its pending
    /// answer: one thread can pipeline many requests this way.
    pub fn send_request_blocking(
        &self,
        target: Target,
        body: RequestBody,
        version: Option<i16>,
    ) -> Reply<Result<Response, RequestError>> {
        let (command, answer) = request(target, body, version);
        self.submit_blocking(command);
        answer
    }

    /// Fetches metadata for `topics` (every topic when `None`); named topics are kept fresh.
    pub async fn metadata(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        let (reply, answer) = reply();
        self.submit(Command::Metadata { topics, reply }).await;
        answer.recv().await?
    }

    /// [`Handle::metadata`], blocking the thread.
    pub fn metadata_blocking(&self, topics: Option<Vec<TopicName>>) -> Result<ClusterMetadata, RequestError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Metadata { topics, reply });
        answer.recv_blocking()?
    }

    /// Connects to `target` and reports the API versions it advertises and the Kafka release
    /// they indicate.
    pub async fn check_version(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        let (reply, answer) = reply();
        self.submit(Command::CheckVersion { target, reply }).await;
        answer.recv().await?
    }

    /// [`Handle::check_version`], blocking the thread.
    pub fn check_version_blocking(&self, target: Target) -> Result<BrokerVersions, RequestError> {
        let (reply, answer) = reply();
        self.submit_blocking(Command::CheckVersion { target, reply });
        answer.recv_blocking()?
    }

    /// Lets in-flight requests finish or time out, then closes every connection; returns when
    /// that is done (at once when already closed). Later calls on any clone return
    /// [`RequestError::ClientClosed`].
    pub async fn close(&self) {
        let (reply, answer) = reply();
        self.submit(Command::Close { reply }).await;
        // A driver that went away has closed everything too.
        let _ = answer.recv().await;
    }

    /// [`Handle::close`], blocking the thread.
    pub fn close_blocking(&self) {
        let (reply, answer) = reply();
        self.submit_blocking(Command::Close { reply });
        let _ = answer.recv_blocking();
    }

    /// Puts `command` on the intake, waiting while it is full. When the driver is gone the
    /// command is dropped with its replier, so its answer reports [`DriverGone`].
    async fn submit(&self, command: Command) {
        let _ = self.intake.send(Msg::Command(command)).await;
    }

    /// [`Handle::submit`], blocking the thread.
    fn submit_blocking(&self, command: Command) {
        let _ = self.intake.send_blocking(Msg::Command(command));
    }
}

fn request(
    target: Target,
    body: RequestBody,
    version: Option<i16>,
) -> (Command, Reply<Result<Response, RequestError>>) {
    let (reply, answer) = reply();
    (Command::Request { target, body: Box::new(body), version, reply }, answer)
}
