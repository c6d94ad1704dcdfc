//! Runs the tests under both executors the crate supports.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use sansa::{Config, ConfigError};
use sansa_async_std::KafkaClient;

/// An executor to run the client under.
#[derive(Debug, Clone, Copy)]
pub enum Exec {
    AsyncStd,
    Smol,
}

impl Exec {
    pub fn block_on<F: Future>(self, f: F) -> F::Output {
        match self {
            Exec::AsyncStd => async_std::task::block_on(f),
            Exec::Smol => smol::block_on(f),
        }
    }

    /// Spawns `f` and returns a future for its end (dropping it detaches or cancels).
    #[allow(dead_code)] // not every test file waits on a task
    pub fn spawn<F>(self, f: F) -> Pin<Box<dyn Future<Output = F::Output> + Send>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Exec::AsyncStd => Box::pin(async_std::task::spawn(f)),
            Exec::Smol => Box::pin(smol::spawn(f)),
        }
    }

    /// Connects and spawns the driver, detached.
    pub fn connect(self, config: Config) -> Result<KafkaClient, ConfigError> {
        let (client, driver) = KafkaClient::connect(config)?;
        match self {
            Exec::AsyncStd => drop(async_std::task::spawn(driver)),
            Exec::Smol => smol::spawn(driver).detach(),
        }
        Ok(client)
    }
}

/// Polls every future together, so each submits its request before any answer is awaited.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outputs.iter_mut().map(|o| o.take().expect("every future finished")).collect())
        }
    })
    .await
}
