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
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(BROKER_PEM).collect::<Result<_, _>>().expect("test certificate");
    let key = PrivateKeyDer::from_pem_slice(BROKER_KEY).expect("test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
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
