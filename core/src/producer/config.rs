//! Producer settings, by Java property name or typed builder, with the Java client's
//! defaults (Kafka 4: idempotence on, acks=all, linger 5 ms).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::partitioner::Partitioner;
use crate::config::ConfigError;
use crate::protocol::records::{Compression, CompressionType};

/// How many replicas must have a record before the broker acknowledges it (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acks {
    /// `acks=0`: the broker never answers; a record counts as delivered once written to
    /// the socket, with no offset.
    None,
    /// `acks=1`: the partition leader has it.
    Leader,
    /// `acks=all` (`-1`): every in-sync replica has it.
    All,
}

impl Acks {
    /// The value the Produce request carries.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Which partition unkeyed records (and, with `partitioner.ignore.keys`, all records) go to.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum PartitionerChoice {
    /// Keys hash with murmur2 as in the Java client; unkeyed records stick to a partition
    /// until a batch's worth went there (KIP-794), favouring partitions with short queues
    /// when adaptive partitioning is on.
    #[default]
    Default,
    /// Each record goes to the next available partition in turn
    /// (`org.apache.kafka.clients.producer.RoundRobinPartitioner`).
    RoundRobin,
    /// The application's own; `None` from it falls back to the default.
    Custom(Arc<dyn Partitioner>),
}

impl fmt::Debug for PartitionerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionerChoice::Default => f.write_str("Default"),
            PartitionerChoice::RoundRobin => f.write_str("RoundRobin"),
            PartitionerChoice::Custom(p) => f.debug_tuple("Custom").field(p).finish(),
        }
    }
}

impl PartialEq for PartitionerChoice {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PartitionerChoice::Default, PartitionerChoice::Default) => true,
            (PartitionerChoice::RoundRobin, PartitionerChoice::RoundRobin) => true,
            (PartitionerChoice::Custom(a), PartitionerChoice::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Producer configuration. Time-outs for requests and retry backoff are the client's
/// ([`crate::Config::request_timeout`], [`crate::Config::retry_backoff`]), as in Java where
/// they are shared settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// `acks` (default all).
    pub acks: Acks,
    /// `enable.idempotence`: `None` means the default, on unless another setting conflicts
    /// (acks other than all, retries 0, more than 5 requests in flight), as in Java.
    pub enable_idempotence: Option<bool>,
    /// `retries` (default effectively unbounded; the delivery timeout bounds retrying).
    pub retries: u32,
    /// `batch.size`: bytes a partition's batch grows to before it is sent (16384).
    pub batch_size: usize,
    /// `linger.ms`: how long a batch that is not full waits for more records (5 ms).
    pub linger: Duration,
    /// `buffer.memory`: bytes of records held at most, waiting or in flight (32 MiB).
    pub buffer_memory: usize,
    /// `max.block.ms`: how long a send may wait for metadata or buffer space (60 s).
    pub max_block: Duration,
    /// `max.request.size`: the largest record (and produce request) accepted (1 MiB).
    pub max_request_size: usize,
    /// `compression.type` with `compression.<codec>.level`.
    pub compression: Compression,
    /// `delivery.timeout.ms`: from send to success or failure, retries included (120 s).
    pub delivery_timeout: Duration,
    /// `partitioner.class` (as a choice).
    pub partitioner: PartitionerChoice,
    /// `partitioner.adaptive.partitioning.enable` (true).
    pub adaptive_partitioning: bool,
    /// `partitioner.availability.timeout.ms`: a partition whose leader has not taken a
    /// batch for this long gets no new unkeyed records (0: never excluded).
    pub partition_availability_timeout: Duration,
    /// `partitioner.ignore.keys`: keyed records are spread like unkeyed ones.
    pub ignore_keys: bool,
    /// `allow.auto.create.topics`: metadata requests for a topic the producer sends to let a
    /// broker that allows it create the topic (true, as the Java producer always asks).
    pub allow_auto_create_topics: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            enable_idempotence: None,
            retries: i32::MAX as u32,
            batch_size: 16_384,
            linger: Duration::from_millis(5),
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            max_request_size: 1024 * 1024,
            compression: Compression::None,
            delivery_timeout: Duration::from_secs(120),
            partitioner: PartitionerChoice::Default,
            adaptive_partitioning: true,
            partition_availability_timeout: Duration::ZERO,
            ignore_keys: false,
            allow_auto_create_topics: true,
        }
    }
}

/// Bounds Java puts on the sequence window of an idempotent producer.
pub(crate) const MAX_IN_FLIGHT_WITH_IDEMPOTENCE: usize = 5;

impl ProducerConfig {
    /// Whether this configuration produces idempotently, given the client's
    /// `max.in.flight.requests.per.connection`.
    pub fn idempotent(&self, max_in_flight: usize) -> bool {
        self.enable_idempotence.unwrap_or_else(|| self.idempotence_conflict(max_in_flight).is_none())
    }

    fn idempotence_conflict(&self, max_in_flight: usize) -> Option<(&'static str, String, &'static str)> {
        if self.acks != Acks::All {
            let v = if self.acks == Acks::None { "0" } else { "1" };
            return Some(("acks", v.into(), "idempotence needs acks=all"));
        }
        if self.retries == 0 {
            return Some(("retries", "0".into(), "idempotence needs retries"));
        }
        if max_in_flight > MAX_IN_FLIGHT_WITH_IDEMPOTENCE {
            return Some((
                "max.in.flight.requests.per.connection",
                max_in_flight.to_string(),
                "idempotence allows at most 5 requests in flight",
            ));
        }
        None
    }

    /// Refuses what Java refuses at construction: idempotence asked for explicitly next to a
    /// setting that contradicts it, zero sizes, and a delivery timeout shorter than linger
    /// plus the request timeout.
    pub fn validate(&self, max_in_flight: usize, request_timeout: Duration) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, reason: &'static str| ConfigError::InvalidValue {
            key: key.into(),
            value,
            reason,
        };
        if self.enable_idempotence == Some(true) {
            if let Some((key, value, reason)) = self.idempotence_conflict(max_in_flight) {
                return Err(bad(key, value, reason));
            }
        }
        if self.batch_size == 0 {
            return Err(bad("batch.size", "0".into(), "must be greater than zero"));
        }
        if self.buffer_memory == 0 {
            return Err(bad("buffer.memory", "0".into(), "must be greater than zero"));
        }
        if self.max_request_size == 0 {
            return Err(bad("max.request.size", "0".into(), "must be greater than zero"));
        }
        if self.delivery_timeout < self.linger + request_timeout {
            return Err(bad(
                "delivery.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
                "must be at least linger.ms + request.timeout.ms",
            ));
        }
        self.compression.validate().map_err(|_| {
            let level = match self.compression {
                Compression::Gzip { level } | Compression::Lz4 { level } | Compression::Zstd { level } => level,
                _ => 0,
            };
            bad(
                &format!("compression.{}.level", self.compression.codec().name()),
                level.to_string(),
                "out of the codec's range",
            )
        })
    }

    /// Applies one Java property; `Ok(false)` when the key is not a producer setting.
    pub(crate) fn set_property(&mut self, key: &str, value: &str, levels: &mut Levels) -> Result<bool, ConfigError> {
        let v = value.trim();
        let invalid = |reason: &'static str| ConfigError::InvalidValue { key: key.into(), value: value.into(), reason };
        let ms = |s: &str| s.parse::<u64>().map(Duration::from_millis).map_err(|_| invalid("expected milliseconds"));
        let size = |s: &str| s.parse::<usize>().map_err(|_| invalid("expected a number of bytes"));
        match key {
            "acks" => {
                self.acks = match v {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(invalid("expected 0, 1, all or -1")),
                }
            }
            "enable.idempotence" => {
                self.enable_idempotence = Some(match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("expected true or false")),
                })
            }
            "retries" => {
                let n: i64 = v.parse().map_err(|_| invalid("expected a number"))?;
                self.retries = n.clamp(0, i64::from(i32::MAX)) as u32;
            }
            "batch.size" => self.batch_size = size(v)?,
            "linger.ms" => self.linger = ms(v)?,
            "buffer.memory" => self.buffer_memory = size(v)?,
            "max.block.ms" => self.max_block = ms(v)?,
            "max.request.size" => self.max_request_size = size(v)?,
            "delivery.timeout.ms" => self.delivery_timeout = ms(v)?,
            "compression.type" => {
                let codec: CompressionType = v.parse().map_err(|_| invalid("expected none, gzip, snappy, lz4 or zstd"))?;
                levels.codec = Some(codec);
            }
            "compression.gzip.level" => levels.gzip = Some(v.parse().map_err(|_| invalid("expected a level"))?),
            "compression.lz4.level" => levels.lz4 = Some(v.parse().map_err(|_| invalid("expected a level"))?),
            "compression.zstd.level" => levels.zstd = Some(v.parse().map_err(|_| invalid("expected a level"))?),
            "partitioner.class" => {
                self.partitioner = match v {
                    "" | "org.apache.kafka.clients.producer.internals.DefaultPartitioner" => PartitionerChoice::Default,
                    "org.apache.kafka.clients.producer.RoundRobinPartitioner" | "round_robin" => {
                        PartitionerChoice::RoundRobin
                    }
                    _ => return Err(invalid("only the default and RoundRobinPartitioner are known by name; give a custom partitioner through the typed builder")),
                }
            }
            "partitioner.adaptive.partitioning.enable" => {
                self.adaptive_partitioning = v.parse().map_err(|_| invalid("expected true or false"))?
            }
            "partitioner.availability.timeout.ms" => self.partition_availability_timeout = ms(v)?,
            "partitioner.ignore.keys" => self.ignore_keys = v.parse().map_err(|_| invalid("expected true or false"))?,
            "allow.auto.create.topics" => {
                self.allow_auto_create_topics = v.parse().map_err(|_| invalid("expected true or false"))?
            }
            "transactional.id" | "transaction.timeout.ms" => {
                return Err(ConfigError::Unsupported { key: key.into(), reason: "transactions are not supported yet" })
            }
            // Serializers are the typed producer's business, not the core's.
            "key.serializer" | "value.serializer" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `compression.type` and the per-codec levels, which may come in any order.
#[derive(Debug, Default)]
pub(crate) struct Levels {
    codec: Option<CompressionType>,
    gzip: Option<i32>,
    lz4: Option<i32>,
    zstd: Option<i32>,
}

impl Levels {
    /// The compression these settings name, once every property was read.
    pub(crate) fn apply(self, config: &mut ProducerConfig) {
        let Some(codec) = self.codec else { return };
        config.compression = match codec {
            CompressionType::Gzip => Compression::Gzip { level: self.gzip.unwrap_or(Compression::GZIP_DEFAULT_LEVEL) },
            CompressionType::Lz4 => Compression::Lz4 { level: self.lz4.unwrap_or(Compression::LZ4_DEFAULT_LEVEL) },
            CompressionType::Zstd => Compression::Zstd { level: self.zstd.unwrap_or(Compression::ZSTD_DEFAULT_LEVEL) },
            other => Compression::from_type(other),
        };
    }
}
