//! Compression handed to another thread. Compressing a batch is most of what a producer
//! with zstd spends, and on the driver's thread it caps the producer at one core; a driver
//! that opts in ([`crate::Client::offload_work`]) takes each batch's compression as a
//! [`Work`] from [`crate::Client::poll_work`], runs it wherever it likes and hands the
//! [`WorkDone`] back. The batch waits meanwhile, and so does every batch behind it in its
//! partition: order and sequence numbers are decided when it leaves, as before.

use std::cell::RefCell;
use std::fmt;
use std::panic::AssertUnwindSafe;

use bytes::BytesMut;

use super::BatchKey;
use crate::buffer_pool::BufferPool;
use crate::protocol::records::{BatchParams, Compression, OpenBatch, RecordBatchEncoder, RecordsEncodeError};

/// A piece of CPU-bound work the client hands out: run it on any thread with
/// [`Work::run`] and give the result to [`crate::Client::handle_work_done`].
pub struct Work(pub(super) Seal);

/// A batch to compress, without producer state (written when it leaves).
pub(super) struct Seal {
    pub(super) key: BatchKey,
    pub(super) open: OpenBatch,
    pub(super) compression: Compression,
    pub(super) pool: BufferPool<BytesMut>,
}

/// The outcome of a [`Work`], for [`crate::Client::handle_work_done`].
pub struct WorkDone(pub(super) Sealed);

pub(super) struct Sealed {
    pub(super) key: BatchKey,
    pub(super) result: Result<BytesMut, String>,
}

thread_local! {
    /// Codec contexts per thread: a zstd context is megabytes, set up once per thread.
    static ENCODER: RefCell<RecordBatchEncoder> = RefCell::new(RecordBatchEncoder::new());
}

impl Work {
    /// Does the work on this thread (it may take milliseconds: a batch's compression). A
    /// panic in it comes back as the batch's error, so a driver counting its jobs out
    /// always gets this one back.
    pub fn run(self) -> WorkDone {
        let Seal { key, open, compression, pool } = self.0;
        let params = BatchParams::new().compression(compression).producer(-1, -1, -1);
        let seal =
            AssertUnwindSafe(|| ENCODER.with(|encoder| open.seal_in_pool(params, &mut encoder.borrow_mut(), &pool)));
        let result = match std::panic::catch_unwind(seal) {
            Ok(sealed) => sealed.map_err(|e: RecordsEncodeError| e.to_string()),
            Err(_) => Err("compressing the batch panicked".to_string()),
        };
        WorkDone(Sealed { key, result })
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Work")
            .field("batch", &self.0.key)
            .field("bytes", &self.0.open.uncompressed_size())
            .field("compression", &self.0.compression)
            .finish()
    }
}

impl fmt::Debug for WorkDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = self.0.result.as_ref().map(BytesMut::len);
        f.debug_struct("WorkDone").field("batch", &self.0.key).field("result", &result).finish()
    }
}
