//! TLS settings, built into a rustls client configuration when the properties are read (so
//! the connection machine never touches a file), and the errors a handshake can end in.
//!
//! The crypto provider is *ring*: it builds with the C compiler every Rust toolchain setup
//! already has, where aws-lc-rs may need cmake and more on a fresh machine.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Secret;

/// TLS settings, ready to open connections with.
#[derive(Clone)]
pub struct TlsSettings {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The clock `config` reads.
    pub(crate) clock: Arc<InputClock>,
    verify_hostname: bool,
    mutual: bool,
    custom_ca: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("verify_hostname", &self.verify_hostname)
            .field("client_certificate", &self.mutual)
            .field("custom_ca", &self.custom_ca)
            .finish()
    }
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsSettings {}

/// Where trusted CA certificates come from, and the client's own certificate.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// CA certificates in PEM; `None`: the operating system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain in PEM, for mutual TLS.
    pub cert_chain_pem: Option<Vec<u8>>,
    /// The client's private key in PEM (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub key_pem: Option<Secret>,
    /// Check that the broker's certificate names the host connected to (Java's default).
    pub verify_hostname: bool,
}

impl Default for TlsOptions {
    /// The system's roots, no client certificate, host names checked.
    fn default() -> Self {
        TlsOptions { ca_pem: None, cert_chain_pem: None, key_pem: None, verify_hostname: true }
    }
}

/// Why TLS settings could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No CA certificate found in the PEM given.
    #[error("no CA certificate in the PEM data")]
    NoCaCertificate,
    /// A CA certificate was refused.
    #[error("a CA certificate is invalid: {0}")]
    BadCaCertificate(String),
    /// The system's roots could not be loaded.
    #[error("no system CA certificates found: {0}")]
    NoSystemRoots(String),
    /// The client certificate or key could not be read.
    #[error("client certificate or key: {0}")]
    BadClientCertificate(String),
}

impl TlsSettings {
    /// Builds the rustls configuration. Loading the system's roots reads files: call it when
    /// configuring, not on a hot path.
    ///
    /// The randomness is the operating system's (ring's default provider): keys must not be
    /// predictable. Time is the core's: each connection tells rustls the wall clock the
    /// driver set ([`crate::Client::set_wall_clock`]) advanced by the core's `now`.
    pub fn new(options: TlsOptions) -> Result<Self, TlsConfigError> {
        Self::with_crypto(options, Arc::new(rustls::crypto::ring::default_provider()))
    }

    /// Like [`TlsSettings::new`], with the randomness and key exchange of `provider`: a
    /// simulator passes seeded ones, so that a TLS session replays byte for byte. Anything
    /// else should use [`TlsSettings::new`].
    pub fn with_crypto(
        options: TlsOptions,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, TlsConfigError> {
        let clock = Arc::new(InputClock::default());
        let mut roots = RootCertStore::empty();
        let custom_ca = options.ca_pem.is_some();
        match &options.ca_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TlsConfigError::BadCaCertificate(e.to_string()))?;
                    roots.add(cert).map_err(|e| TlsConfigError::BadCaCertificate(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(TlsConfigError::NoCaCertificate);
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found.errors.first().map_or_else(|| "none installed".to_string(), |e| e.to_string());
                    return Err(TlsConfigError::NoSystemRoots(why));
                }
            }
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsConfigError::BadCaCertificate(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> =
            if options.verify_hostname { verifier } else { Arc::new(AnyHostName(verifier)) };
        let builder = rustls::ClientConfig::builder_with_details(provider, clock.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::BadCaCertificate(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let bad = |e: String| TlsConfigError::BadClientCertificate(e);
        let mutual = options.cert_chain_pem.is_some();
        let config = match (options.cert_chain_pem, options.key_pem) {
            (Some(chain), Some(key)) => {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&chain).collect::<Result<_, _>>().map_err(|e| bad(e.to_string()))?;
                if certs.is_empty() {
                    return Err(bad("no certificate in the key store".into()));
                }
                // The key's bytes never reach an error message.
                let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                    .map_err(|_| bad("no readable unencrypted private key in the key store".into()))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| bad(e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(bad("a client certificate needs both the chain and the key".into())),
        };
        Ok(TlsSettings { config: Arc::new(config), clock, verify_hostname: options.verify_hostname, mutual, custom_ca })
    }
}

/// The wall clock rustls reads (certificate validity, session ticket ages), in milliseconds
/// since the Unix epoch. A connection sets it from the core's inputs just before it hands
/// rustls work, so the core never reads the system clock and a simulated session sees
/// virtual time. Connections sharing settings in different threads may interleave their
/// writes: each writes the same wall clock give or take the gap between their inputs.
#[derive(Debug, Default)]
pub(crate) struct InputClock(AtomicI64);

impl InputClock {
    pub(crate) fn set(&self, unix_ms: i64) {
        self.0.store(unix_ms, Ordering::Relaxed);
    }
}

impl rustls::time_provider::TimeProvider for InputClock {
    fn current_time(&self) -> Option<UnixTime> {
        let ms = u64::try_from(self.0.load(Ordering::Relaxed)).ok()?;
        Some(UnixTime::since_unix_epoch(Duration::from_millis(ms)))
    }
}

/// Checks the chain but not the host name (`ssl.endpoint.identification.algorithm=` empty).
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Why a TLS session failed, with the reason named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The broker's certificate was refused.
    #[error("the broker's certificate is not trusted: {0}")]
    UntrustedCertificate(String),
    /// The broker ended the handshake with an alert (often: it wants a client certificate,
    /// or refused ours).
    #[error("the broker refused the TLS handshake: {0}")]
    Alert(String),
    /// What arrived is not TLS: most likely a plaintext port (security.protocol says SSL).
    #[error("the broker does not speak TLS on this port (a PLAINTEXT or SASL_PLAINTEXT listener?)")]
    NotTls,
    /// The broker hung up during the TLS handshake, after it had answered.
    #[error("the broker closed the connection during the TLS handshake (did it refuse our certificate?)")]
    ClosedInHandshake,
    /// The broker hung up on the TLS hello without a byte in answer, as Kafka does on a
    /// PLAINTEXT or SASL_PLAINTEXT listener (it reads the hello as an oversized request).
    #[error("the broker hung up on the TLS hello without answering: this port probably expects PLAINTEXT or SASL_PLAINTEXT (security.protocol)")]
    HungUpOnHello,
    /// Any other TLS failure.
    #[error("TLS failed: {0}")]
    Other(String),
}

impl TlsError {
    pub(crate) fn from_rustls(e: rustls::Error) -> Self {
        match e {
            rustls::Error::InvalidCertificate(c) => TlsError::UntrustedCertificate(match c {
                CertificateError::UnknownIssuer => {
                    "signed by an unknown certificate authority (ssl.truststore.*)".to_string()
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "it does not name the host connected to (ssl.endpoint.identification.algorithm)".to_string()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => "it has expired".to_string(),
                other => format!("{other:?}"),
            }),
            rustls::Error::AlertReceived(a) => TlsError::Alert(format!("{a:?}")),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => TlsError::NotTls,
            other => TlsError::Other(other.to_string()),
        }
    }
}
