//! Data-plane and admin APIs through real frames: produce with idempotence, transactions,
//! fetch waiting and sessions, ListOffsets, DeleteRecords, CreatePartitions, DescribeConfigs.
