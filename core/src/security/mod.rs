//! Security settings and the pieces the connection machine uses to authenticate: SASL
//! mechanisms (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER) and their configuration from Java-style
//! properties (`security.protocol`, `sasl.mechanism`, `sasl.jaas.config`).
//!
//! Secrets live in [`Secret`], whose `Debug` prints nothing of them; no error here quotes one.

use std::fmt;
use std::sync::Arc;

mod jaas;
pub mod oauth;
pub mod scram;
pub mod server;
pub(crate) mod tls;

use crate::config::ConfigError;
pub use oauth::{OAuthBearerToken, TokenError, TokenProvider, TokenSource, UnsecuredJws};
pub use scram::ScramHash;
pub use tls::{TlsConfigError, TlsError, TlsOptions, TlsSettings};

/// A password or token: kept out of `Debug` output, errors and logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `security.protocol`: whether connections use TLS, SASL, both or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// Neither (the default).
    #[default]
    Plaintext,
    /// TLS only.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }
}

/// A SASL mechanism sansa speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): the password is sent as is, so use it over TLS.
    Plain,
    /// SCRAM (RFC 5802) with SHA-256 or SHA-512.
    Scram(ScramHash),
    /// OAUTHBEARER (RFC 7628): a bearer token from a [`TokenProvider`].
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's name as brokers list it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(ScramHash::Sha256) => "SCRAM-SHA-256",
            SaslMechanism::Scram(ScramHash::Sha512) => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SASL mechanism with its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SaslConfig {
    /// The mechanism (`sasl.mechanism`).
    pub mechanism: SaslMechanism,
    /// The user name (empty for OAUTHBEARER).
    pub username: String,
    /// The password (empty for OAUTHBEARER).
    pub password: Secret,
    /// Where OAUTHBEARER tokens come from; set exactly for that mechanism.
    pub token_source: Option<TokenSource>,
}

impl SaslConfig {
    /// A user name and password for PLAIN or SCRAM.
    pub fn password(mechanism: SaslMechanism, username: &str, password: &str) -> Self {
        SaslConfig { mechanism, username: username.to_string(), password: Secret::new(password), token_source: None }
    }

    /// OAUTHBEARER with tokens from `source`.
    pub fn oauth_bearer(source: TokenSource) -> Self {
        SaslConfig {
            mechanism: SaslMechanism::OAuthBearer,
            username: String::new(),
            password: Secret::default(),
            token_source: Some(source),
        }
    }
}

/// Everything about how connections are secured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SecurityConfig {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// The SASL settings; set exactly when the protocol uses SASL.
    pub sasl: Option<Arc<SaslConfig>>,
    /// The TLS settings; set exactly when the protocol uses TLS.
    pub tls: Option<TlsSettings>,
}

impl SecurityConfig {
    /// SASL over plain TCP with `mechanism` and these credentials.
    pub fn sasl_plaintext(mechanism: SaslMechanism, username: &str, password: &str) -> Self {
        Self::sasl(SaslConfig::password(mechanism, username, password))
    }

    /// SASL over plain TCP with these settings (add TLS with [`SecurityConfig::with_tls`]).
    pub fn sasl(sasl: SaslConfig) -> Self {
        SecurityConfig { protocol: SecurityProtocol::SaslPlaintext, sasl: Some(Arc::new(sasl)), tls: None }
    }

    /// OAUTHBEARER over plain TCP, with tokens from `provider`.
    pub fn oauth_bearer(provider: impl TokenProvider + 'static) -> Self {
        Self::sasl(SaslConfig::oauth_bearer(TokenSource::new(provider)))
    }

    /// Adds TLS: SASL_PLAINTEXT becomes SASL_SSL, PLAINTEXT becomes SSL.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.protocol = if self.protocol.uses_sasl() { SecurityProtocol::SaslSsl } else { SecurityProtocol::Ssl };
        self.tls = Some(tls);
        self
    }
}

/// Why authentication failed. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The broker does not enable the configured mechanism.
    #[error("the broker does not enable SASL mechanism {mechanism}; it enables {}", enabled.join(", "))]
    MechanismNotEnabled {
        /// The configured mechanism.
        mechanism: SaslMechanism,
        /// The broker's mechanisms.
        enabled: Vec<String>,
    },
    /// The broker refused the credentials (wrong user or password, or a token it does not
    /// accept). Not retried.
    #[error("authentication failed{}", failed_detail(message.as_deref()))]
    Failed {
        /// The broker's explanation, if it gave one.
        message: Option<String>,
    },
    /// The server's SCRAM signature is wrong: it does not know the password, so it is not
    /// the broker it claims to be.
    #[error("the broker's SCRAM signature does not verify: it may be an impostor")]
    ServerSignature,
    /// A SASL message from the broker did not follow its mechanism's rules.
    #[error("malformed SASL exchange: {0}")]
    Malformed(&'static str),
    /// The broker does not speak the requests SASL needs (it advertises no SaslHandshake:
    /// probably a listener without SASL).
    #[error("the broker does not support {0}: is its listener SASL_PLAINTEXT or SASL_SSL?")]
    Unsupported(&'static str),
    /// The broker closed the connection in the middle of a raw-token exchange (brokers
    /// before 1.0, without SaslAuthenticate): such a broker refuses credentials this way,
    /// without a message. Not retried, like [`AuthError::Failed`].
    #[error("the broker closed the connection during SASL authentication: probably a refused login (brokers before 1.0 refuse by hanging up){}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ClosedInRawExchange {
        /// What the broker said before, if anything (OAUTHBEARER's error document).
        detail: Option<String>,
    },
    /// No OAUTHBEARER token could be had from the [`TokenProvider`].
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The broker answered SaslHandshake or SaslAuthenticate with another error.
    #[error("SASL {request} failed: {error}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Refused {
        /// SaslHandshake or SaslAuthenticate.
        request: &'static str,
        /// The broker's error code.
        error: crate::protocol::ErrorCode,
        /// The broker's message, if any.
        message: Option<String>,
    },
}

/// The broker's explanation after "authentication failed", without repeating those words:
/// Kafka's own messages often begin with them.
fn failed_detail(message: Option<&str>) -> String {
    let Some(m) = message.map(str::trim).filter(|m| !m.is_empty()) else { return String::new() };
    const SAID: &str = "authentication failed";
    match m.get(..SAID.len()) {
        Some(head) if head.eq_ignore_ascii_case(SAID) => {
            let rest = &m[SAID.len()..];
            if rest.is_empty() || rest.starts_with([':', ' ', ',', ';']) {
                rest.to_string()
            } else {
                format!(": {m}")
            }
        }
        _ => format!(": {m}"),
    }
}

/// The client half of one SASL exchange, as the connection machine drives it.
#[derive(Debug)]
pub(crate) enum SaslClient {
    /// PLAIN: one message, then the broker's verdict.
    Plain,
    Scram(scram::ScramClient),
    OAuthBearer(oauth::OAuthClient),
}

impl SaslClient {
    /// Starts an exchange; returns the client's first message. `random` supplies the nonce;
    /// `unix_ms` is the wall-clock time, for tokens.
    pub fn start(config: &SaslConfig, random: [u64; 3], unix_ms: i64) -> Result<(Self, Vec<u8>), AuthError> {
        Ok(match config.mechanism {
            SaslMechanism::Plain => {
                // authzid (empty), NUL, authcid, NUL, password.
                let mut msg = Vec::with_capacity(config.username.len() + config.password.0.len() + 2);
                msg.push(0);
                msg.extend_from_slice(config.username.as_bytes());
                msg.push(0);
                msg.extend_from_slice(config.password.0.as_bytes());
                (SaslClient::Plain, msg)
            }
            SaslMechanism::Scram(hash) => {
                use base64::Engine;
                let bytes: Vec<u8> = random.iter().flat_map(|r| r.to_le_bytes()).collect();
                let nonce = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes).replace('/', "-");
                let (c, first) = scram::ScramClient::start(hash, &config.username, config.password.expose(), nonce);
                (SaslClient::Scram(c), first)
            }
            SaslMechanism::OAuthBearer => {
                let source = config
                    .token_source
                    .as_ref()
                    .ok_or(AuthError::Malformed("OAUTHBEARER needs a token provider (SecurityConfig::oauth_bearer)"))?;
                let token = source.token(unix_ms)?;
                (SaslClient::OAuthBearer(oauth::OAuthClient::default()), oauth::client_message(&token))
            }
        })
    }

    /// The broker's answer to our last message (its auth bytes, with no error). `Ok(Some)`:
    /// send this next; `Ok(None)`: authenticated.
    pub fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, AuthError> {
        match self {
            SaslClient::Plain => Ok(None),
            SaslClient::Scram(c) => c.step(server),
            SaslClient::OAuthBearer(c) => c.step(server),
        }
    }

    /// What the broker said during the exchange that explains a failure it then reported
    /// (OAUTHBEARER's error document).
    pub fn failure_detail(&self) -> Option<&str> {
        match self {
            SaslClient::OAuthBearer(c) => c.error(),
            _ => None,
        }
    }
}

/// Reads the security properties; returns false for a key that is not one.
pub(crate) fn set_property(pending: &mut PendingSecurity, key: &str, value: &str) -> Result<bool, ConfigError> {
    let invalid = |reason| ConfigError::InvalidValue { key: key.into(), value: value.into(), reason };
    match key {
        "security.protocol" => {
            pending.protocol = Some(
                SecurityProtocol::parse(value).ok_or(invalid("expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?,
            )
        }
        "sasl.mechanism" => pending.mechanism = Some(value.trim().to_string()),
        // The value holds a password: errors name the key and the problem only.
        "sasl.jaas.config" => {
            let entry = jaas::parse(value).map_err(|e| ConfigError::InvalidValue {
                key: key.into(),
                value: "<redacted>".into(),
                reason: e.0,
            })?;
            pending.jaas = Some(entry);
        }
        // Tokens fetched over HTTP need I/O the core does not do: refused, not ignored.
        "sasl.login.callback.handler.class" | "sasl.oauthbearer.token.endpoint.url"
            if !value.trim().is_empty() && !value.trim().ends_with(".OAuthBearerUnsecuredLoginCallbackHandler") =>
        {
            return Err(ConfigError::Unsupported {
                key: key.into(),
                reason: "tokens are not fetched by sansa; give the unsecured JWS options in sasl.jaas.config, or a TokenProvider in code (SecurityConfig::oauth_bearer)",
            })
        }
        // Empty, or Java's default (the unsecured JWS): what sansa does anyway.
        "sasl.login.callback.handler.class" | "sasl.oauthbearer.token.endpoint.url" => {}
        // librdkafka's names, accepted for convenience.
        "sasl.username" => pending.username = Some(value.to_string()),
        "sasl.password" => pending.password = Some(Secret::new(value)),
        "ssl.truststore.type" | "ssl.keystore.type" => {
            if !value.trim().eq_ignore_ascii_case("PEM") {
                return Err(ConfigError::Unsupported {
                    key: key.into(),
                    reason: "only PEM key and trust stores are read (convert JKS or PKCS12 with openssl or keytool)",
                });
            }
        }
        "ssl.truststore.location" => pending.tls.ca_pem = Some(read_file(key, value)?),
        "ssl.truststore.certificates" => pending.tls.ca_pem = Some(value.as_bytes().to_vec()),
        "ssl.keystore.location" => {
            let pem = read_file(key, value)?;
            pending.tls.key_pem = Some(Secret::new(String::from_utf8_lossy(&pem).into_owned()));
            pending.tls.cert_chain_pem = Some(pem);
        }
        "ssl.keystore.certificate.chain" => pending.tls.cert_chain_pem = Some(value.as_bytes().to_vec()),
        "ssl.keystore.key" => pending.tls.key_pem = Some(Secret::new(value)),
        "ssl.key.password" if !value.is_empty() => {
            return Err(ConfigError::Unsupported {
                key: key.into(),
                reason: "encrypted private keys are not read; give an unencrypted PKCS#8 key",
            })
        }
        // Stores in PEM have no store password; accepted and unused, as Java does.
        "ssl.key.password" | "ssl.keystore.password" | "ssl.truststore.password" => {}
        "ssl.endpoint.identification.algorithm" => match value.trim() {
            "" => pending.verify_hostname = Some(false),
            v if v.eq_ignore_ascii_case("https") => pending.verify_hostname = Some(true),
            _ => return Err(invalid("expected https, or empty to turn host name checks off")),
        },
        _ => return Ok(false),
    }
    Ok(true)
}

/// Security properties read so far; checked together at the end.
#[derive(Debug, Default)]
pub(crate) struct PendingSecurity {
    protocol: Option<SecurityProtocol>,
    mechanism: Option<String>,
    jaas: Option<jaas::JaasEntry>,
    username: Option<String>,
    password: Option<Secret>,
    tls: TlsOptions,
    verify_hostname: Option<bool>,
}

fn read_file(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path.trim()).map_err(|_| ConfigError::InvalidValue {
        key: key.into(),
        value: path.into(),
        reason: "cannot read the file",
    })
}

impl PendingSecurity {
    pub fn finish(mut self) -> Result<SecurityConfig, ConfigError> {
        let protocol = self.protocol.unwrap_or_default();
        let tls = if protocol.uses_tls() {
            self.tls.verify_hostname = self.verify_hostname.unwrap_or(true);
            Some(TlsSettings::new(std::mem::take(&mut self.tls))?)
        } else {
            None
        };
        if !protocol.uses_sasl() {
            return Ok(SecurityConfig { protocol, sasl: None, tls });
        }
        let name = self.mechanism.as_deref().unwrap_or("GSSAPI");
        let mechanism = match name.to_ascii_uppercase().as_str() {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::Scram(ScramHash::Sha256),
            "SCRAM-SHA-512" => SaslMechanism::Scram(ScramHash::Sha512),
            "OAUTHBEARER" => SaslMechanism::OAuthBearer,
            "GSSAPI" => {
                return Err(ConfigError::Unsupported {
                    key: "sasl.mechanism".into(),
                    reason: "GSSAPI (Kerberos) is out of scope; use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (GSSAPI is Java's default when sasl.mechanism is unset)",
                })
            }
            _ => {
                return Err(ConfigError::InvalidValue {
                    key: "sasl.mechanism".into(),
                    value: name.into(),
                    reason: "expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER",
                })
            }
        };
        let missing = |what: &'static str| ConfigError::InvalidValue {
            key: "sasl.jaas.config".into(),
            value: "<redacted>".into(),
            reason: what,
        };
        let (mut username, mut password) = (self.username, self.password);
        if let Some(entry) = self.jaas {
            let module_ok = match mechanism {
                SaslMechanism::Plain => entry.module.ends_with("PlainLoginModule"),
                SaslMechanism::Scram(_) => entry.module.ends_with("ScramLoginModule"),
                SaslMechanism::OAuthBearer => entry.module.ends_with("OAuthBearerLoginModule"),
            };
            if !module_ok {
                return Err(missing("the login module does not match sasl.mechanism"));
            }
            if mechanism == SaslMechanism::OAuthBearer {
                let jws = oauth::UnsecuredJws::from_options(&entry.options).map_err(|e| missing(e.0))?;
                let sasl = SaslConfig::oauth_bearer(TokenSource::new(jws));
                return Ok(SecurityConfig { protocol, sasl: Some(Arc::new(sasl)), tls });
            }
            username = entry.options.get("username").cloned().or(username);
            password = entry.options.get("password").map(Secret::new).or(password);
        }
        if mechanism == SaslMechanism::OAuthBearer {
            return Err(missing("OAUTHBEARER needs OAuthBearerLoginModule with unsecuredLoginStringClaim_sub=\"...\" (or a TokenProvider in code)"));
        }
        let username = username.ok_or(missing("no username (give sasl.jaas.config with username=\"...\")"))?;
        let password = password.ok_or(missing("no password (give sasl.jaas.config with password=\"...\")"))?;
        let sasl = SaslConfig { mechanism, username, password, token_source: None };
        Ok(SecurityConfig { protocol, sasl: Some(Arc::new(sasl)), tls })
    }
}

#[cfg(test)]
mod tests;
