//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: no channel
//! binding (`n,,`), at least 4096 iterations, the server nonce extending the client's. Both
//! sides are here: the client in the connection machine, the server for the fake cluster and
//! the tests that check the client against it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};

use super::AuthError;

/// Kafka's (and Java's client's) lower bound on the iteration count.
pub(crate) const MIN_ITERATIONS: u32 = 4096;

/// The hash behind a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    // ring's hashes, already linked for TLS: plain functions over assembly kernels, so the key
    // derivation is as fast in a debug build as in a release one.
    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        };
        digest::digest(algorithm, data).as_ref().to_vec()
    }

    /// RFC 5802's Hi(): PBKDF2 with this hash's HMAC. Zero iterations count as one.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let (algorithm, len) = match self {
            ScramHash::Sha256 => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
            ScramHash::Sha512 => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
        };
        let mut out = vec![0; len];
        let iterations = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(algorithm, iterations, salt, password, &mut out);
        out
    }
}

/// What a server stores for a user: never the password itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Derives the stored credential from a password, as Kafka's `kafka-storage --add-scram` does.
    pub fn new(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.hi(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }
}

/// RFC 5802's saslname: `=` and `,` escaped.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_name(name: &str) -> String {
    name.replace("=2C", ",").replace("=3D", "=")
}

/// `k=v` attributes of a SCRAM message, in order.
fn attributes(msg: &str) -> impl Iterator<Item = (u8, &str)> {
    msg.split(',').filter_map(|a| {
        let (k, v) = a.split_once('=')?;
        (k.len() == 1).then(|| (k.as_bytes()[0], v))
    })
}

fn attribute(msg: &str, key: u8) -> Option<&str> {
    attributes(msg).find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Compares without an early exit, so timing says nothing about where keys differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client side, one exchange per instance.
pub(crate) struct ScramClient {
    hash: ScramHash,
    state: ClientState,
}

enum ClientState {
    /// client-first sent.
    First {
        bare: String,
        nonce: String,
        password: String,
    },
    /// client-final sent; the server's signature is expected.
    Final {
        server_signature: Vec<u8>,
    },
    Done,
}

// Holds the password and derived keys: print nothing of them.
impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient").field("hash", &self.hash).finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange; returns the client-first message. `nonce` must be fresh randomness
    /// in printable form (no commas).
    pub fn start(hash: ScramHash, username: &str, password: &str, nonce: String) -> (Self, Vec<u8>) {
        let bare = format!("n={},r={}", escape_name(username), nonce);
        let first = format!("n,,{bare}").into_bytes();
        (ScramClient { hash, state: ClientState::First { bare, nonce, password: password.to_string() } }, first)
    }

    /// Answers the server's message. `Ok(Some(..))`: send it; `Ok(None)`: authenticated
    /// (the server's signature checked).
    pub fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, AuthError> {
        let server = std::str::from_utf8(server).map_err(|_| AuthError::Malformed("SCRAM message is not UTF-8"))?;
        match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::First { bare, nonce, password } => {
                if let Some(e) = attribute(server, b'e') {
                    return Err(AuthError::Failed { message: Some(format!("SCRAM: {e}")) });
                }
                let r = attribute(server, b'r').ok_or(AuthError::Malformed("server-first has no nonce"))?;
                if !r.starts_with(&nonce) || r.len() == nonce.len() {
                    return Err(AuthError::Malformed("server nonce does not extend the client nonce"));
                }
                let salt = attribute(server, b's')
                    .and_then(|s| B64.decode(s).ok())
                    .ok_or(AuthError::Malformed("server-first has no valid salt"))?;
                let iterations: u32 = attribute(server, b'i')
                    .and_then(|i| i.parse().ok())
                    .ok_or(AuthError::Malformed("server-first has no valid iteration count"))?;
                if iterations < MIN_ITERATIONS {
                    return Err(AuthError::Malformed("server asked for fewer than 4096 SCRAM iterations"));
                }
                let without_proof = format!("c={},r={r}", B64.encode("n,,"));
                let auth_message = format!("{bare},{server},{without_proof}");
                let h = self.hash;
                let salted = h.hi(password.as_bytes(), &salt, iterations);
                let client_key = h.hmac(&salted, b"Client Key");
                let signature = h.hmac(&h.hash(&client_key), auth_message.as_bytes());
                let proof = xor(&client_key, &signature);
                let server_signature = h.hmac(&h.hmac(&salted, b"Server Key"), auth_message.as_bytes());
                self.state = ClientState::Final { server_signature };
                Ok(Some(format!("{without_proof},p={}", B64.encode(proof)).into_bytes()))
            }
            ClientState::Final { server_signature } => {
                if let Some(e) = attribute(server, b'e') {
                    return Err(AuthError::Failed { message: Some(format!("SCRAM: {e}")) });
                }
                let v = attribute(server, b'v')
                    .and_then(|v| B64.decode(v).ok())
                    .ok_or(AuthError::Malformed("server-final has no verifier"))?;
                if !same(&v, &server_signature) && !planted_trust() {
                    return Err(AuthError::ServerSignature);
                }
                Ok(None)
            }
            ClientState::Done => Err(AuthError::Malformed("SCRAM message after the exchange ended")),
        }
    }
}

/// Plant `ScramSkipsServerSignature`: the broker's signature is taken on trust.
#[cfg(feature = "plants")]
fn planted_trust() -> bool {
    crate::plants::armed_on_thread(crate::plants::Plant::ScramSkipsServerSignature)
}

#[cfg(not(feature = "plants"))]
fn planted_trust() -> bool {
    false
}

/// The server side of one exchange (for the fake cluster and tests).
pub struct ScramServer {
    hash: ScramHash,
    state: ServerState,
}

enum ServerState {
    Start,
    First { user: String, credential: ScramCredential, auth_prefix: String, nonce: String },
    Done,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramServer").field("hash", &self.hash).finish_non_exhaustive()
    }
}

/// Why a server refused a SCRAM exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramServerError {
    /// The message did not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Unknown user or wrong proof (not told apart, as Kafka does not).
    #[error("invalid credentials")]
    InvalidCredentials,
}

impl ScramServer {
    /// A server waiting for client-first.
    pub fn new(hash: ScramHash) -> Self {
        ScramServer { hash, state: ServerState::Start }
    }

    /// Answers a client message. `lookup` finds a user's credential; `nonce` is the server's
    /// part of the nonce. Returns the reply and, on the final step, the user name.
    pub fn step(
        &mut self,
        client: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        nonce: &str,
    ) -> Result<(Vec<u8>, Option<String>), ScramServerError> {
        let client = std::str::from_utf8(client).map_err(|_| ScramServerError::Malformed("not UTF-8"))?;
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Start => {
                let bare =
                    client.strip_prefix("n,,").ok_or(ScramServerError::Malformed("expected the gs2 header n,,"))?;
                let user =
                    attribute(bare, b'n').map(unescape_name).ok_or(ScramServerError::Malformed("no user name"))?;
                let client_nonce = attribute(bare, b'r').ok_or(ScramServerError::Malformed("no nonce"))?;
                let credential = lookup(&user).ok_or(ScramServerError::InvalidCredentials)?;
                let nonce = format!("{client_nonce}{nonce}");
                let first = format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
                let auth_prefix = format!("{bare},{first}");
                self.state = ServerState::First { user, credential, auth_prefix, nonce };
                Ok((first.into_bytes(), None))
            }
            ServerState::First { user, credential, auth_prefix, nonce } => {
                let (without_proof, proof) =
                    client.rsplit_once(",p=").ok_or(ScramServerError::Malformed("no client proof"))?;
                if attribute(without_proof, b'r') != Some(nonce.as_str()) {
                    return Err(ScramServerError::Malformed("nonce changed"));
                }
                if attribute(without_proof, b'c') != Some(&B64.encode("n,,")) {
                    return Err(ScramServerError::Malformed("unexpected channel binding"));
                }
                let proof = B64.decode(proof).map_err(|_| ScramServerError::Malformed("proof is not base64"))?;
                let auth_message = format!("{auth_prefix},{without_proof}");
                let h = self.hash;
                let signature = h.hmac(&credential.stored_key, auth_message.as_bytes());
                let client_key = xor(&proof, &signature);
                if proof.len() != signature.len() || !same(&h.hash(&client_key), &credential.stored_key) {
                    return Err(ScramServerError::InvalidCredentials);
                }
                let server_signature = h.hmac(&credential.server_key, auth_message.as_bytes());
                Ok((format!("v={}", B64.encode(server_signature)).into_bytes(), Some(user)))
            }
            ServerState::Done => Err(ScramServerError::Malformed("message after the exchange ended")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(hash: ScramHash, stored_pw: &str, client_pw: &str) -> Result<(), AuthError> {
        let cred = ScramCredential::new(hash, stored_pw, b"salty", 4096);
        let (mut c, first) = ScramClient::start(hash, "al,ice=", client_pw, "cnonce".into());
        let mut s = ScramServer::new(hash);
        let (sf, _) = s.step(&first, |u| (u == "al,ice=").then(|| cred.clone()), "snonce").unwrap();
        let cf = c.step(&sf)?.unwrap();
        match s.step(&cf, |_| None, "") {
            Ok((fin, user)) => {
                assert_eq!(user.as_deref(), Some("al,ice="));
                assert_eq!(c.step(&fin)?, None);
                Ok(())
            }
            Err(ScramServerError::InvalidCredentials) => Err(AuthError::Failed { message: None }),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn client_and_server_agree() {
        for h in [ScramHash::Sha256, ScramHash::Sha512] {
            run(h, "pw", "pw").unwrap();
            assert!(matches!(run(h, "pw", "wrong"), Err(AuthError::Failed { .. })));
        }
    }

    /// RFC 7677's SCRAM-SHA-256 example.
    #[test]
    fn rfc7677_vector() {
        let (mut c, first) = ScramClient::start(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = c.step(server_first).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(c.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap(), None);
    }

    #[test]
    fn a_forged_server_signature_is_refused() {
        let (mut c, _) = ScramClient::start(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO".into());
        c.step(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").unwrap();
        assert_eq!(c.step(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), Err(AuthError::ServerSignature));
        let (mut c, _) = ScramClient::start(ScramHash::Sha256, "user", "pencil", "abc".into());
        assert!(c.step(b"r=xyz123,s=AAAA,i=4096").is_err(), "nonce must extend ours");
        let (mut c, _) = ScramClient::start(ScramHash::Sha256, "user", "pencil", "abc".into());
        assert!(c.step(b"r=abc123,s=AAAA,i=10").is_err(), "too few iterations");
    }
}
