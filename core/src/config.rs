//! Client configuration: a typed builder, and Java-style properties (`bootstrap.servers`,
//! `request.timeout.ms`, ...) so that settings carry over from the Java client. Defaults are
//! the Java client's.

use std::fmt;
use std::time::Duration;

use crate::backoff::Backoff;

/// A broker address as configured or advertised: a host name or IP literal, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerAddress {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerAddress {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        BrokerAddress { host: host.into(), port }
    }

    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::InvalidAddress(s.to_string());
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
            (host, rest.strip_prefix(':').ok_or_else(bad)?)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        if host.is_empty() || host.contains(' ') {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(BrokerAddress { host: host.to_string(), port })
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A configuration mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No bootstrap address was given.
    #[error("no bootstrap servers configured (bootstrap.servers)")]
    NoBootstrapServers,
    /// An address that is not `host:port`.
    #[error("invalid broker address {0:?}: expected host:port")]
    InvalidAddress(String),
    /// A property whose value does not parse or is out of range.
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// Property name.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// TLS settings that could not be built.
    #[error(transparent)]
    Tls(#[from] crate::security::TlsConfigError),
    /// A setting for something sansa does not do (yet); refused rather than ignored.
    #[error("{key} is not supported: {reason}")]
    Unsupported {
        /// Property name.
        key: String,
        /// Why.
        reason: &'static str,
    },
}

/// Configuration of the core client: connections, metadata and requests.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to bootstrap from (`bootstrap.servers`); any of them may be down.
    pub bootstrap_servers: Vec<BrokerAddress>,
    /// Sent with every request (`client.id`).
    pub client_id: String,
    /// How long a request may take, from submission to response (`request.timeout.ms`).
    pub request_timeout: Duration,
    /// How long a TCP connection may take to open (`socket.connection.setup.timeout.ms`).
    pub connection_setup_timeout: Duration,
    /// Backoff between reconnects to one broker (`reconnect.backoff.ms`, `reconnect.backoff.max.ms`).
    pub reconnect_backoff: Backoff,
    /// Backoff between retries of internal requests such as metadata (`retry.backoff.ms`,
    /// `retry.backoff.max.ms`).
    pub retry_backoff: Backoff,
    /// Idle connections are closed after this long (`connections.max.idle.ms`).
    pub connections_max_idle: Duration,
    /// Metadata is refreshed at least this often (`metadata.max.age.ms`).
    pub metadata_max_age: Duration,
    /// Requests sent on one connection before their responses arrive
    /// (`max.in.flight.requests.per.connection`).
    pub max_in_flight_per_connection: usize,
    /// Largest response frame accepted.
    pub max_frame_size: usize,
    /// Reported to brokers in ApiVersions (`client.software.name`).
    pub client_software_name: String,
    /// Reported to brokers in ApiVersions (`client.software.version`).
    pub client_software_version: String,
    /// Seed of the core's random choices (jitter, broker picks). When `None`, drivers draw
    /// one from the operating system; simulations pin it.
    pub rng_seed: Option<u64>,
    /// The producer's settings.
    pub producer: crate::producer::ProducerConfig,
    /// The consumer's settings.
    pub consumer: crate::consumer::ConsumerConfig,
    /// TLS and SASL (`security.protocol`, `sasl.*`).
    pub security: crate::security::SecurityConfig,
    /// Properties given to [`Config::from_properties`] that this configuration does not use
    /// (producer or consumer settings, typos); the Java client warns about these.
    pub unused_properties: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bootstrap_servers: Vec::new(),
            client_id: "sansa".into(),
            request_timeout: Duration::from_millis(30_000),
            connection_setup_timeout: Duration::from_millis(10_000),
            reconnect_backoff: Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(1000) },
            retry_backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(1000) },
            connections_max_idle: Duration::from_millis(540_000),
            metadata_max_age: Duration::from_millis(300_000),
            max_in_flight_per_connection: 5,
            max_frame_size: crate::protocol::DEFAULT_MAX_FRAME_SIZE,
            client_software_name: "sansa".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
            rng_seed: None,
            producer: crate::producer::ProducerConfig::default(),
            consumer: crate::consumer::ConsumerConfig::default(),
            security: crate::security::SecurityConfig::default(),
            unused_properties: Vec::new(),
        }
    }
}

fn parse_ms(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let ms: u64 = value.trim().parse().map_err(|_| ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason: "expected a non-negative number of milliseconds",
    })?;
    Ok(Duration::from_millis(ms))
}

fn parse_positive(key: &str, value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::InvalidValue {
            key: key.into(),
            value: value.into(),
            reason: "expected a positive integer",
        }),
    }
}

impl Config {
    /// A configuration with Java-client defaults and the given bootstrap servers
    /// (comma-separated `host:port` list).
    pub fn new(bootstrap_servers: &str) -> Result<Self, ConfigError> {
        Config::default().with_bootstrap_servers(bootstrap_servers)
    }

    /// Sets the bootstrap servers from a comma-separated `host:port` list.
    pub fn with_bootstrap_servers(mut self, list: &str) -> Result<Self, ConfigError> {
        let servers: Vec<BrokerAddress> =
            list.split(',').filter(|s| !s.trim().is_empty()).map(BrokerAddress::parse).collect::<Result<_, _>>()?;
        if servers.is_empty() {
            return Err(ConfigError::NoBootstrapServers);
        }
        self.bootstrap_servers = servers;
        Ok(self)
    }

    /// Sets [`Config::client_id`].
    pub fn with_client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Sets [`Config::request_timeout`].
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Sets [`Config::connection_setup_timeout`].
    pub fn with_connection_setup_timeout(mut self, t: Duration) -> Self {
        self.connection_setup_timeout = t;
        self
    }

    /// Sets [`Config::reconnect_backoff`].
    pub fn with_reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_backoff = Backoff { initial, max };
        self
    }

    /// Sets [`Config::retry_backoff`].
    pub fn with_retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_backoff = Backoff { initial, max };
        self
    }

    /// Sets [`Config::connections_max_idle`].
    pub fn with_connections_max_idle(mut self, t: Duration) -> Self {
        self.connections_max_idle = t;
        self
    }

    /// Sets [`Config::metadata_max_age`].
    pub fn with_metadata_max_age(mut self, t: Duration) -> Self {
        self.metadata_max_age = t;
        self
    }

    /// Sets [`Config::max_in_flight_per_connection`].
    pub fn with_max_in_flight_per_connection(mut self, n: usize) -> Self {
        self.max_in_flight_per_connection = n.max(1);
        self
    }

    /// Sets [`Config::rng_seed`].
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Checks what the builder methods cannot: a configuration assembled field by field may
    /// lack bootstrap servers or hold zero where a positive value is needed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::NoBootstrapServers);
        }
        let positive = |key: &str, value: String, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::InvalidValue { key: key.into(), value, reason: "must be greater than zero" })
            }
        };
        positive(
            "max.in.flight.requests.per.connection",
            self.max_in_flight_per_connection.to_string(),
            self.max_in_flight_per_connection > 0,
        )?;
        positive("request.timeout.ms", format!("{:?}", self.request_timeout), !self.request_timeout.is_zero())?;
        positive("max frame size", self.max_frame_size.to_string(), self.max_frame_size > 0)?;
        self.producer.validate(self.max_in_flight_per_connection, self.request_timeout)?;
        self.consumer.validate()
    }

    /// Sets [`Config::consumer`].
    pub fn with_consumer(mut self, consumer: crate::consumer::ConsumerConfig) -> Self {
        self.consumer = consumer;
        self
    }

    /// Sets [`Config::security`].
    pub fn with_security(mut self, security: crate::security::SecurityConfig) -> Self {
        self.security = security;
        self
    }

    /// Sets [`Config::producer`].
    pub fn with_producer(mut self, producer: crate::producer::ProducerConfig) -> Self {
        self.producer = producer;
        self
    }

    /// Builds a configuration from Java-style properties. Keys this configuration does not
    /// use are kept in [`Config::unused_properties`]; malformed values are errors.
    pub fn from_properties<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        let mut have_bootstrap = false;
        let (mut reconnect_max, mut retry_max) = (None, None);
        let mut levels = crate::producer::Levels::default();
        let mut security = crate::security::PendingSecurity::default();
        for (key, value) in props {
            match key {
                "bootstrap.servers" => {
                    c = c.with_bootstrap_servers(value)?;
                    have_bootstrap = true;
                }
                "client.id" => c.client_id = value.to_string(),
                "request.timeout.ms" => c.request_timeout = parse_ms(key, value)?,
                "socket.connection.setup.timeout.ms" => c.connection_setup_timeout = parse_ms(key, value)?,
                "reconnect.backoff.ms" => c.reconnect_backoff.initial = parse_ms(key, value)?,
                "reconnect.backoff.max.ms" => reconnect_max = Some(parse_ms(key, value)?),
                "retry.backoff.ms" => c.retry_backoff.initial = parse_ms(key, value)?,
                "retry.backoff.max.ms" => retry_max = Some(parse_ms(key, value)?),
                "connections.max.idle.ms" => c.connections_max_idle = parse_ms(key, value)?,
                "metadata.max.age.ms" => c.metadata_max_age = parse_ms(key, value)?,
                "max.in.flight.requests.per.connection" => c.max_in_flight_per_connection = parse_positive(key, value)?,
                "client.software.name" => c.client_software_name = value.to_string(),
                "client.software.version" => c.client_software_version = value.to_string(),
                other if crate::security::set_property(&mut security, other, value)? => {}
                other => {
                    let producer = c.producer.set_property(other, value, &mut levels)?;
                    let consumer = c.consumer.set_property(other, value)?;
                    if !producer && !consumer {
                        c.unused_properties.push(other.to_string());
                    }
                }
            }
        }
        if let Some(m) = reconnect_max {
            c.reconnect_backoff.max = m;
        }
        if let Some(m) = retry_max {
            c.retry_backoff.max = m;
        }
        levels.apply(&mut c.producer);
        c.security = security.finish()?;
        if !have_bootstrap {
            return Err(ConfigError::NoBootstrapServers);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(BrokerAddress::parse("localhost:9092").unwrap(), BrokerAddress::new("localhost", 9092));
        assert_eq!(BrokerAddress::parse("[::1]:9092").unwrap().to_string(), "[::1]:9092");
        for bad in ["localhost", "h:0", "h:99999", ":9092", "[::1]9092", "a b:1"] {
            assert!(BrokerAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn java_properties_map_onto_the_config() {
        let c = Config::from_properties([
            ("bootstrap.servers", "a:1, b:2"),
            ("client.id", "app"),
            ("request.timeout.ms", "1500"),
            ("reconnect.backoff.max.ms", "2000"),
            ("linger.ms", "7"),
            ("fetch.min.bytes", "5"),
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers.len(), 2);
        assert_eq!(c.client_id, "app");
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.reconnect_backoff.max, Duration::from_millis(2000));
        assert_eq!(c.producer.linger, Duration::from_millis(7));
        assert_eq!(c.consumer.fetch_min_bytes, 5);
        assert!(c.unused_properties.is_empty());
        assert!(matches!(
            Config::from_properties([("bootstrap.servers", "a:1"), ("request.timeout.ms", "soon")]),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert_eq!(Config::from_properties([("client.id", "x")]), Err(ConfigError::NoBootstrapServers));
        assert_eq!(Config::default().validate(), Err(ConfigError::NoBootstrapServers));
        assert!(Config::new("a:1").unwrap().validate().is_ok());
        assert!(Config::new("a:1").unwrap().with_request_timeout(Duration::ZERO).validate().is_err());
    }
}
