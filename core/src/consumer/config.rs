//! Consumer settings, by Java property name or typed builder, with the Java client's
//! defaults.

use std::time::Duration;

use crate::config::ConfigError;
use crate::protocol::GroupId;

/// Where a partition without a valid position starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end offset: only records produced from now on.
    #[default]
    Latest,
    /// No automatic reset: polling reports [`crate::consumer::ConsumeError::NoOffset`].
    None,
}

/// How the consumer takes part in a group (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// JoinGroup / SyncGroup / Heartbeat, with the assignment computed by the group's leader.
    #[default]
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat, with the assignment computed by the coordinator.
    Consumer,
}

/// Which records a fetch may return (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// Everything up to the high watermark, aborted transactions included.
    #[default]
    ReadUncommitted,
    /// Up to the last stable offset, without records of aborted transactions.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value a Fetch or ListOffsets request carries.
    pub fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// The consumer's settings. Defaults are the Java client's, except
/// [`ConsumerConfig::fetch_buffer_memory`], which Java does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// The group whose committed offsets this consumer reads and writes (`group.id`).
    pub group_id: Option<GroupId>,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// Bytes a fetch waits for at the broker (`fetch.min.bytes`).
    pub fetch_min_bytes: i32,
    /// How long a fetch waits at the broker for `fetch_min_bytes` (`fetch.max.wait.ms`).
    pub fetch_max_wait: Duration,
    /// Most bytes one fetch response carries (`fetch.max.bytes`); a first batch larger than
    /// it still comes, so the consumer never stalls on it.
    pub fetch_max_bytes: i32,
    /// Most bytes per partition in one fetch (`max.partition.fetch.bytes`).
    pub max_partition_fetch_bytes: i32,
    /// Most records one poll returns (`max.poll.records`).
    pub max_poll_records: usize,
    /// `isolation.level`.
    pub isolation_level: IsolationLevel,
    /// Verify record batch checksums (`check.crcs`).
    pub check_crcs: bool,
    /// Ask brokers to create subscribed or assigned topics that do not exist
    /// (`allow.auto.create.topics`; the broker's `auto.create.topics.enable` must allow it).
    pub allow_auto_create_topics: bool,
    /// The consumer's rack, for fetching from the nearest replica (`client.rack`).
    pub client_rack: Option<String>,
    /// Most bytes of fetched records held for the application before it polls them
    /// (`fetch.buffer.memory`, sansa's own setting): no fetch is sent while this is
    /// reached, and a fetch asks for no more than the room left (a single batch larger than
    /// the room still comes, as brokers always return a first batch whole). Within it, the
    /// consumer reads about one answer per broker ahead of the application. It counts the
    /// bytes as fetched: with decompression handed to other threads
    /// ([`crate::Client::offload_work`]), the fetched data of up to four partitions (each
    /// at most about `max.partition.fetch.bytes`) is also held decompressed ahead of the
    /// application, and data a seek dropped while it was out until its decoding ends.
    pub fetch_buffer_memory: usize,
    /// How long operations that wait on the cluster (committed offsets, offset lookups) may
    /// take (`default.api.timeout.ms`).
    pub default_api_timeout: Duration,
    /// Commit positions every `auto_commit_interval` (`enable.auto.commit`); only with a
    /// group.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// A member the coordinator does not hear from for this long leaves the group
    /// (`session.timeout.ms`).
    pub session_timeout: Duration,
    /// How often a member heartbeats (`heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// A member whose application does not poll for this long leaves the group
    /// (`max.poll.interval.ms`); it is also the rebalance timeout.
    pub max_poll_interval: Duration,
    /// Static membership (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// Assignors by protocol name, preferred first (`partition.assignment.strategy`; Java
    /// class names are accepted too). Classic groups only.
    pub assignors: Vec<String>,
    /// `group.protocol`.
    pub group_protocol: GroupProtocol,
    /// The coordinator's assignor a KIP-848 member asks for (`group.remote.assignor`:
    /// `uniform` or `range`); the coordinator's default when `None`.
    pub group_remote_assignor: Option<String>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            max_poll_records: 500,
            isolation_level: IsolationLevel::ReadUncommitted,
            check_crcs: true,
            allow_auto_create_topics: true,
            client_rack: None,
            fetch_buffer_memory: 64 * 1024 * 1024,
            default_api_timeout: Duration::from_secs(60),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            group_instance_id: None,
            assignors: vec!["range".into(), "cooperative-sticky".into()],
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
        }
    }
}

impl ConsumerConfig {
    /// Sets [`ConsumerConfig::group_id`].
    pub fn with_group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(GroupId(group.into().into()));
        self
    }

    /// Sets [`ConsumerConfig::auto_offset_reset`].
    pub fn with_auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Sets [`ConsumerConfig::isolation_level`].
    pub fn with_isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation_level = level;
        self
    }

    /// Sets [`ConsumerConfig::max_poll_records`].
    pub fn with_max_poll_records(mut self, n: usize) -> Self {
        self.max_poll_records = n;
        self
    }

    /// Sets [`ConsumerConfig::fetch_max_wait`].
    pub fn with_fetch_max_wait(mut self, wait: Duration) -> Self {
        self.fetch_max_wait = wait;
        self
    }

    /// Sets [`ConsumerConfig::fetch_buffer_memory`].
    pub fn with_fetch_buffer_memory(mut self, bytes: usize) -> Self {
        self.fetch_buffer_memory = bytes;
        self
    }

    /// Sets [`ConsumerConfig::max_partition_fetch_bytes`].
    pub fn with_max_partition_fetch_bytes(mut self, bytes: i32) -> Self {
        self.max_partition_fetch_bytes = bytes;
        self
    }

    /// Sets [`ConsumerConfig::assignors`] by protocol name.
    pub fn with_assignors(mut self, names: &[&str]) -> Self {
        self.assignors = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets [`ConsumerConfig::group_protocol`].
    pub fn with_group_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.group_protocol = protocol;
        self
    }

    /// Sets [`ConsumerConfig::group_instance_id`].
    pub fn with_group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// Sets [`ConsumerConfig::session_timeout`] and [`ConsumerConfig::heartbeat_interval`].
    pub fn with_session_timeout(mut self, session: Duration, heartbeat: Duration) -> Self {
        self.session_timeout = session;
        self.heartbeat_interval = heartbeat;
        self
    }

    /// Sets [`ConsumerConfig::max_poll_interval`].
    pub fn with_max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// Sets [`ConsumerConfig::enable_auto_commit`].
    pub fn with_auto_commit(mut self, enable: bool) -> Self {
        self.enable_auto_commit = enable;
        self
    }

    /// Checks values the builder cannot check on its own.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, reason: &'static str| ConfigError::InvalidValue {
            key: key.into(),
            value,
            reason,
        };
        if self.max_poll_records == 0 {
            return Err(bad("max.poll.records", "0".into(), "must be at least 1"));
        }
        if self.fetch_max_bytes < 0 {
            return Err(bad("fetch.max.bytes", self.fetch_max_bytes.to_string(), "must not be negative"));
        }
        if self.max_partition_fetch_bytes <= 0 {
            return Err(bad(
                "max.partition.fetch.bytes",
                self.max_partition_fetch_bytes.to_string(),
                "must be positive",
            ));
        }
        if self.fetch_min_bytes < 0 {
            return Err(bad("fetch.min.bytes", self.fetch_min_bytes.to_string(), "must not be negative"));
        }
        if self.fetch_buffer_memory == 0 {
            return Err(bad("fetch.buffer.memory", "0".into(), "must be positive"));
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(bad(
                "heartbeat.interval.ms",
                format!("{:?}", self.heartbeat_interval),
                "must be lower than session.timeout.ms",
            ));
        }
        for name in &self.assignors {
            if crate::consumer::group::assignor::builtin(name).is_none() {
                return Err(bad(
                    "partition.assignment.strategy",
                    name.clone(),
                    "not a known assignor (range, roundrobin, sticky, cooperative-sticky)",
                ));
            }
        }
        if self.assignors.is_empty() {
            return Err(bad("partition.assignment.strategy", String::new(), "needs at least one assignor"));
        }
        if self.group_id.as_ref().is_some_and(|g| g.0.as_str().is_empty()) {
            return Err(bad("group.id", String::new(), "must not be empty"));
        }
        Ok(())
    }

    /// Applies one Java property; `Ok(false)` when the key is not a consumer setting.
    pub(crate) fn set_property(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let v = value.trim();
        let invalid = |reason: &'static str| ConfigError::InvalidValue { key: key.into(), value: value.into(), reason };
        let ms = |s: &str| s.parse::<u64>().map(Duration::from_millis).map_err(|_| invalid("expected milliseconds"));
        let bytes = |s: &str| s.parse::<i32>().map_err(|_| invalid("expected a number of bytes"));
        let flag = |s: &str| s.parse::<bool>().map_err(|_| invalid("expected true or false"));
        match key {
            "group.id" => self.group_id = (!v.is_empty()).then(|| GroupId(v.to_string().into())),
            "auto.offset.reset" => {
                self.auto_offset_reset = match v {
                    "earliest" => OffsetReset::Earliest,
                    "latest" => OffsetReset::Latest,
                    "none" => OffsetReset::None,
                    _ => return Err(invalid("expected earliest, latest or none")),
                }
            }
            "fetch.min.bytes" => self.fetch_min_bytes = bytes(v)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = ms(v)?,
            "fetch.max.bytes" => self.fetch_max_bytes = bytes(v)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = bytes(v)?,
            "max.poll.records" => {
                self.max_poll_records = v.parse().map_err(|_| invalid("expected a positive number"))?
            }
            "isolation.level" => {
                self.isolation_level = match v {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => return Err(invalid("expected read_uncommitted or read_committed")),
                }
            }
            "check.crcs" => self.check_crcs = flag(v)?,
            "allow.auto.create.topics" => self.allow_auto_create_topics = flag(v)?,
            "client.rack" => self.client_rack = (!v.is_empty()).then(|| v.to_string()),
            "fetch.buffer.memory" => {
                self.fetch_buffer_memory = v.parse().map_err(|_| invalid("expected a number of bytes"))?
            }
            "default.api.timeout.ms" => self.default_api_timeout = ms(v)?,
            "enable.auto.commit" => self.enable_auto_commit = flag(v)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = ms(v)?,
            "session.timeout.ms" => self.session_timeout = ms(v)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = ms(v)?,
            "max.poll.interval.ms" => self.max_poll_interval = ms(v)?,
            "group.instance.id" => self.group_instance_id = (!v.is_empty()).then(|| v.to_string()),
            "partition.assignment.strategy" => {
                self.assignors = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| match s {
                        "org.apache.kafka.clients.consumer.RangeAssignor" => "range".to_string(),
                        "org.apache.kafka.clients.consumer.RoundRobinAssignor" => "roundrobin".to_string(),
                        "org.apache.kafka.clients.consumer.StickyAssignor" => "sticky".to_string(),
                        "org.apache.kafka.clients.consumer.CooperativeStickyAssignor" => {
                            "cooperative-sticky".to_string()
                        }
                        other => other.to_string(),
                    })
                    .collect()
            }
            "group.protocol" => {
                self.group_protocol = match v.to_ascii_lowercase().as_str() {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    _ => return Err(invalid("expected classic or consumer")),
                }
            }
            "group.remote.assignor" => self.group_remote_assignor = (!v.is_empty()).then(|| v.to_string()),
            // Deserializers are the typed consumer's business, not the core's.
            "key.deserializer" | "value.deserializer" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }
}
