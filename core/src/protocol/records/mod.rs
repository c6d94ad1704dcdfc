//! Record batches: RecordBatch v2, legacy MessageSet v0/v1, compression and checksums.
