//! Compression handed to another thread (see [`crate::work`]). The batch waits meanwhile,
//! and so does every batch behind it in its partition: order and sequence numbers are
//! decided when it leaves, as before.

use std::cell::RefCell;
use std::fmt;

use bytes::BytesMut;

use super::BatchKey;
use crate::buffer_pool::BufferPool;
use crate::protocol::records::{BatchParams, Compression, OpenBatch, RecordBatchEncoder, RecordsEncodeError};

/// A batch to compress, without producer state (written when it leaves).
pub(crate) struct Seal {
    pub(crate) key: BatchKey,
    pub(super) open: OpenBatch,
    pub(super) compression: Compression,
    pub(super) pool: BufferPool<BytesMut>,
}

/// A compressed batch, or why it could not be.
pub(crate) struct Sealed {
    pub(super) key: BatchKey,
    pub(super) result: Result<BytesMut, String>,
}

thread_local! {
    /// Codec contexts per thread: a zstd context is megabytes, set up once per thread.
    static ENCODER: RefCell<RecordBatchEncoder> = RefCell::new(RecordBatchEncoder::new());
}

impl Seal {
    /// Compresses the batch on this thread.
    pub(crate) fn run(self) -> Sealed {
        let Seal { key, open, compression, pool } = self;
        let params = BatchParams::new().compression(compression).producer(-1, -1, -1);
        let result = ENCODER.with(|encoder| open.seal_in_pool(params, &mut encoder.borrow_mut(), &pool));
        Sealed { key, result: result.map_err(|e: RecordsEncodeError| e.to_string()) }
    }
}

impl Sealed {
    /// The batch's compression failed with `message`.
    pub(crate) fn failed(key: BatchKey, message: &str) -> Sealed {
        Sealed { key, result: Err(format!("compressing the batch: {message}")) }
    }
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seal")
            .field("batch", &self.key)
            .field("bytes", &self.open.uncompressed_size())
            .field("compression", &self.compression)
            .finish()
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = self.result.as_ref().map(BytesMut::len);
        f.debug_struct("Sealed").field("batch", &self.key).field("result", &result).finish()
    }
}
