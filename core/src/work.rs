//! CPU-bound work a client hands to other threads. Compressing the producer's gzip and zstd
//! batches, and decompressing the consumer's fetched gzip and zstd data, is most of what a
//! client with those codecs spends; on the driver's thread it caps the client at one core.
//! A driver that opts in ([`crate::Client::offload_work`]) takes each piece as a [`Work`]
//! from [`crate::Client::poll_work`], runs it wherever it likes and hands the [`WorkDone`]
//! back with [`crate::Client::handle_work_done`].

use std::fmt;
use std::panic::AssertUnwindSafe;

use crate::consumer::fetched::{Decode, Decoded};
use crate::producer::offload::{Seal, Sealed};
use crate::protocol::records::CompressionType;

/// Whether compressing or decompressing with `codec` is worth the trip to another thread:
/// gzip and zstd. lz4 and snappy run at a gigabyte per second or more, less than the trip
/// costs (measured with lz4 compression: no faster, and more CPU).
pub(crate) fn worth_offloading(codec: CompressionType) -> bool {
    matches!(codec, CompressionType::Gzip | CompressionType::Zstd)
}

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
            Kind::Seal(seal) => {
                let key = seal.key;
                Done::Sealed(guarded(|| seal.run(), |message| Sealed::failed(key, message)))
            }
            Kind::Decode(decode) => {
                let key = decode.key;
                Done::Decoded(guarded(|| decode.run(), |message| Decoded::failed(key, message)))
            }
        })
    }
}

/// `work`'s result, or `panicked`'s if it panics.
fn guarded<T>(work: impl FnOnce() -> T, panicked: impl FnOnce(&str) -> T) -> T {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| panicked("the work panicked"))
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

#[cfg(test)]
mod tests {
    use super::guarded;

    #[test]
    fn a_panic_in_work_comes_back_as_its_failure() {
        assert_eq!(guarded(|| 7, |_| 0), 7);
        let failed = guarded(|| -> String { panic!("codec bug") }, |message| format!("failed: {message}"));
        assert_eq!(failed, "failed: the work panicked");
    }
}
