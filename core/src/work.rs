//! CPU-bound work a client hands to other threads. Compressing the producer's gzip and zstd
//! batches, and decompressing the consumer's fetched gzip and zstd data, is most of what a
//! client with those codecs spends; on the driver's thread it caps the client at one core.
//! A driver that opts in ([`crate::Client::offload_work`]) takes each piece as a [`Work`]
//! from [`crate::Client::poll_work`], runs it wherever it likes and hands the [`WorkDone`]
//! back with [`crate::Client::handle_work_done`].

use std::fmt;

use crate::consumer::fetched::{Decode, Decoded};
use crate::producer::offload::{Seal, Sealed};

/// A piece of CPU-bound work the client hands out: run it on any thread with
/// [`Work::run`] and give the result to [`crate::Client::handle_work_done`].
pub struct Work(pub(crate) Kind);

pub(crate) enum Kind {
    /// A producer batch to compress.
    Seal(Seal),
    /// A partition's fetched data to decode.
    Decode(Decode),
}

/// The outcome of a [`Work`], for [`crate::Client::handle_work_done`].
pub struct WorkDone(pub(crate) Done);

pub(crate) enum Done {
    Sealed(Sealed),
    Decoded(Decoded),
}

impl Work {
    /// Does the work on this thread (it may take milliseconds: a megabyte compressed or
    /// decompressed). A panic in it comes back as the work's error, so a driver counting
    /// its jobs out always gets this one back.
    pub fn run(self) -> WorkDone {
        WorkDone(match self.0 {
            Kind::Seal(seal) => Done::Sealed(seal.run()),
            Kind::Decode(decode) => Done::Decoded(decode.run()),
        })
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Seal(seal) => seal.fmt(f),
            Kind::Decode(decode) => decode.fmt(f),
        }
    }
}

impl fmt::Debug for WorkDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Done::Sealed(sealed) => sealed.fmt(f),
            Done::Decoded(decoded) => decoded.fmt(f),
        }
    }
}
