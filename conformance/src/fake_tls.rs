//! TLS for the fake cluster's listeners: the server half of a TLS session driven in memory
//! (rustls, ring provider), applied by whoever carries a connection's bytes — the loopback
//! [`crate::fake_server`], the simulator, tests — around the plaintext frames the
//! [`crate::fake_cluster::FakeCluster`] reads and writes.
//!
//! The test CA and broker certificate in `conformance/testdata/` name the simulator's hosts
//! (`broker-N`, `bootstrap-N`) and loopback, so clients keep host-name checks on.

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sansa::security::{TlsOptions, TlsSettings};

/// The test CA's certificate, in PEM.
pub const TEST_CA_PEM: &[u8] = include_bytes!("../testdata/ca.pem");
const BROKER_PEM: &[u8] = include_bytes!("../testdata/broker.pem");
const BROKER_KEY: &[u8] = include_bytes!("../testdata/broker.key");

/// A server configuration with the test broker certificate (built once, shared).
pub fn test_server_config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG.get_or_init(test_server_config_fresh).clone()
}

/// A new server configuration with the test broker certificate, with its own session cache
/// (so that a simulated run resumes only its own sessions).
pub fn test_server_config_fresh() -> Arc<rustls::ServerConfig> {
    with_test_certificate(rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    )))
}

/// Finishes a server configuration: default protocol versions, the test broker certificate.
fn with_test_certificate(
    builder: rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVersions>,
) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(BROKER_PEM).collect::<Result<_, _>>().expect("test certificate");
    let key = PrivateKeyDer::from_pem_slice(BROKER_KEY).expect("test key");
    let config = builder
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the test key matches its certificate");
    Arc::new(config)
}

/// Client TLS settings trusting the test CA, host names checked (built once, shared).
pub fn test_client_tls() -> TlsSettings {
    static SETTINGS: OnceLock<TlsSettings> = OnceLock::new();
    SETTINGS.get_or_init(test_client_tls_fresh).clone()
}

/// New client TLS settings trusting the test CA, with their own session cache.
pub fn test_client_tls_fresh() -> TlsSettings {
    let options = TlsOptions { ca_pem: Some(TEST_CA_PEM.to_vec()), ..TlsOptions::default() };
    TlsSettings::new(options).expect("the test CA parses")
}

/// The server side of one TLS connection.
#[derive(Debug)]
pub struct ServerTls {
    conn: rustls::ServerConnection,
    /// Ciphertext written so far, for callers that locate a response in the stream.
    written: u64,
}

impl ServerTls {
    /// A session waiting for the ClientHello.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        // A valid configuration always starts a session.
        let mut conn = rustls::ServerConnection::new(config).expect("a server session starts");
        conn.set_buffer_limit(None);
        ServerTls { conn, written: 0 }
    }

    /// Feeds bytes from the client; returns the plaintext they carried. An error ends the
    /// session: send [`ServerTls::take_output`] (the alert), then close.
    pub fn receive(&mut self, mut data: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let mut plain = Vec::new();
        while !data.is_empty() {
            if self.conn.read_tls(&mut data).is_err() {
                return Err(rustls::Error::General("TLS input buffer overflow".into()));
            }
            self.conn.process_new_packets()?;
            let mut buf = [0u8; 16 * 1024];
            loop {
                match self.conn.reader().read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => plain.extend_from_slice(&buf[..n]),
                }
            }
        }
        Ok(plain)
    }

    /// Queues plaintext to send (buffered by rustls until the handshake is done).
    pub fn send(&mut self, plain: &[u8]) {
        // Without a buffer limit, rustls takes everything.
        let _ = self.conn.writer().write_all(plain);
    }

    /// TLS bytes to write to the client, if any.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut out) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        self.written += out.len() as u64;
        (!out.is_empty()).then_some(out)
    }

    /// Ciphertext bytes handed out by [`ServerTls::take_output`] so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// TLS that replays: randomness and key exchange from the simulator instead of the operating
/// system, for both ends of every simulated TLS connection, and the wall clock for the
/// server's end (the client's reads the wall clock the simulator gives the client).
///
/// One stream per thread ([`replay::reset`] at the start of a run; a run is one thread and
/// draws in a fixed order, so its draws are a function of its seed): HMAC-SHA256 of a
/// counter under a key derived from the seed. X25519 key shares are made from drawn bytes
/// (ring cannot be handed a random source for its own ephemeral keys, so the key is generated
/// through ring's fixed-bytes test source), and the test certificate is Ed25519, whose
/// signatures need no randomness. The clock is whatever [`replay::set_time`] said last.
/// Only X25519 is offered. Never for real connections: the stream is predictable from the seed.
pub mod replay {
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;
    use std::time::Duration;

    use ring::agreement;
    use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SecureRandom, SharedSecret, SupportedKxGroup};
    use rustls::pki_types::UnixTime;
    use rustls::time_provider::TimeProvider;
    use rustls::NamedGroup;

    struct Stream {
        key: ring::hmac::Key,
        counter: u64,
        block: Vec<u8>,
    }

    thread_local! {
        static STREAM: RefCell<Option<Stream>> = const { RefCell::new(None) };
        static NOW_MS: Cell<i64> = const { Cell::new(0) };
    }

    /// Starts this thread's stream from `seed`.
    pub fn reset(seed: u64) {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed.to_be_bytes());
        STREAM.with(|s| *s.borrow_mut() = Some(Stream { key, counter: 0, block: Vec::new() }));
    }

    /// The wall-clock time TLS sees on this thread, in milliseconds since the epoch.
    pub fn set_time(unix_ms: i64) {
        NOW_MS.with(|n| n.set(unix_ms));
    }

    fn draw(out: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        STREAM.with(|s| {
            let mut s = s.borrow_mut();
            let s = s.as_mut().ok_or(rustls::crypto::GetRandomFailed)?;
            for byte in out.iter_mut() {
                if s.block.is_empty() {
                    s.counter += 1;
                    let tag = ring::hmac::sign(&s.key, &s.counter.to_be_bytes());
                    s.block = tag.as_ref().iter().rev().copied().collect();
                }
                *byte = s.block.pop().unwrap_or_default();
            }
            Ok(())
        })
    }

    #[derive(Debug)]
    struct Drawn;

    impl SecureRandom for Drawn {
        fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
            draw(buf)
        }
    }

    #[derive(Debug)]
    struct VirtualClock;

    impl TimeProvider for VirtualClock {
        fn current_time(&self) -> Option<UnixTime> {
            let ms = NOW_MS.with(Cell::get);
            Some(UnixTime::since_unix_epoch(Duration::from_millis(u64::try_from(ms).ok()?)))
        }
    }

    #[derive(Debug)]
    struct DrawnX25519;

    struct Share {
        private: agreement::EphemeralPrivateKey,
        public: agreement::PublicKey,
    }

    impl SupportedKxGroup for DrawnX25519 {
        fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
            let mut bytes = [0u8; 32];
            draw(&mut bytes)?;
            #[allow(deprecated)] // ring's only way to make an X25519 key from chosen bytes
            let source = ring::test::rand::FixedSliceRandom { bytes: &bytes };
            let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &source)
                .map_err(|_| rustls::crypto::GetRandomFailed)?;
            let public = private.compute_public_key().map_err(|_| rustls::crypto::GetRandomFailed)?;
            Ok(Box::new(Share { private, public }))
        }

        fn name(&self) -> NamedGroup {
            NamedGroup::X25519
        }
    }

    impl ActiveKeyExchange for Share {
        fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
            let invalid = || rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::InvalidKeyShare);
            if peer.len() != 32 {
                return Err(invalid());
            }
            let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer);
            agreement::agree_ephemeral(self.private, &peer, |s| SharedSecret::from(s)).map_err(|_| invalid())
        }

        fn pub_key(&self) -> &[u8] {
            self.public.as_ref()
        }

        fn group(&self) -> NamedGroup {
            NamedGroup::X25519
        }
    }

    static DRAWN_X25519: DrawnX25519 = DrawnX25519;

    /// ring's provider with drawn randomness and X25519 only.
    pub fn provider() -> Arc<CryptoProvider> {
        let mut p = rustls::crypto::ring::default_provider();
        p.secure_random = &Drawn;
        p.kx_groups = vec![&DRAWN_X25519];
        Arc::new(p)
    }

    /// The clock of [`set_time`].
    pub fn clock() -> Arc<dyn TimeProvider> {
        Arc::new(VirtualClock)
    }
}

/// A server configuration with the test certificate whose randomness, key exchange and
/// clock come from [`replay`], with its own session cache.
pub fn replayable_server_config() -> Arc<rustls::ServerConfig> {
    with_test_certificate(rustls::ServerConfig::builder_with_details(replay::provider(), replay::clock()))
}

/// Client settings trusting the test CA whose randomness and key exchange come from
/// [`replay`], with their own session cache.
pub fn replayable_client_tls() -> TlsSettings {
    let options = TlsOptions { ca_pem: Some(TEST_CA_PEM.to_vec()), ..TlsOptions::default() };
    TlsSettings::with_crypto(options, replay::provider()).expect("the test CA parses")
}
