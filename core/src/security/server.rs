//! The broker's side of SASL, pure: SaslHandshake and SaslAuthenticate bodies in, bodies out.
//! For test servers (the conformance crate's fake cluster) and for checking the client
//! against an independent implementation; an application has no use for it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::scram::{ScramCredential, ScramServer};
use super::{ScramHash, Secret};
use crate::protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use crate::protocol::{ErrorCode, StrBytes};

/// Users a test server accepts, with what each mechanism needs to check them.
#[derive(Debug, Clone, Default)]
pub struct SaslUsers {
    plain: BTreeMap<String, Secret>,
    scram: BTreeMap<(String, bool), ScramCredential>,
    /// Mechanisms the server enables, by name.
    pub mechanisms: Vec<String>,
    /// Session lifetime reported to clients (KIP-368), if any.
    pub session_lifetime: Option<Duration>,
}

impl SaslUsers {
    /// No users, and PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (unsecured tokens:
    /// any principal, as Kafka's default validator) enabled.
    pub fn new() -> Self {
        SaslUsers {
            mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into(), "SCRAM-SHA-512".into(), "OAUTHBEARER".into()],
            ..SaslUsers::default()
        }
    }

    /// Adds a user for every mechanism. The SCRAM salt derives from the name (tests need
    /// no randomness here), with Kafka's minimum of 4096 iterations.
    pub fn with_user(mut self, name: &str, password: &str) -> Self {
        self.plain.insert(name.to_string(), Secret::new(password));
        let salt = format!("salt-of-{name}");
        for (hash, is512) in [(ScramHash::Sha256, false), (ScramHash::Sha512, true)] {
            let cred = ScramCredential::new(hash, password, salt.as_bytes(), super::scram::MIN_ITERATIONS);
            self.scram.insert((name.to_string(), is512), cred);
        }
        self
    }

    /// Sets [`SaslUsers::mechanisms`].
    pub fn with_mechanisms(mut self, names: &[&str]) -> Self {
        self.mechanisms = names.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// One connection's authentication, server side. After a success, a new SaslHandshake
/// starts a re-authentication (KIP-368): same mechanism, same principal.
#[derive(Debug, Default)]
pub struct SaslSession {
    state: Session,
    /// The mechanism of the first handshake, which a re-authentication must keep.
    mechanism: Option<String>,
    /// The principal of the last success, during a re-authentication (which must keep it).
    previous: Option<String>,
    authentications: u32,
}

#[derive(Debug, Default)]
enum Session {
    #[default]
    AwaitingHandshake,
    Plain,
    Scram(ScramServer, bool),
    OAuthBearer,
    /// The token was refused and the error document sent; the client's 0x01 is expected.
    OAuthRefused,
    Authenticated(String),
    Failed,
}

impl SaslSession {
    /// A connection that has not authenticated.
    pub fn new() -> Self {
        SaslSession::default()
    }

    /// The authenticated user, once authentication succeeded.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            Session::Authenticated(u) => Some(u),
            _ => None,
        }
    }

    /// How many exchanges succeeded on this connection (re-authentications count).
    pub fn authentications(&self) -> u32 {
        self.authentications
    }

    /// Whether a re-authentication is under way (requests other than SASL must not come).
    pub fn reauthenticating(&self) -> bool {
        self.previous.is_some() && !matches!(self.state, Session::Authenticated(_))
    }

    /// Answers SaslHandshake: accepts an enabled mechanism, or lists the enabled ones.
    pub fn handshake(&mut self, users: &SaslUsers, req: &SaslHandshakeRequest) -> SaslHandshakeResponse {
        let wanted = req.mechanism.as_str();
        let enabled = users.mechanisms.iter().any(|m| m == wanted);
        let mut resp = SaslHandshakeResponse::default()
            .with_mechanisms(users.mechanisms.iter().map(|m| StrBytes::from(m.as_str())).collect());
        let fresh = matches!(self.state, Session::AwaitingHandshake);
        let renewal = matches!(self.state, Session::Authenticated(_));
        let same_mechanism = !renewal || self.mechanism.as_deref() == Some(wanted);
        if !enabled || !(fresh || renewal) || !same_mechanism {
            resp.error_code = if enabled { ErrorCode::IllegalSaslState } else { ErrorCode::UnsupportedSaslMechanism };
            self.state = Session::Failed;
            return resp;
        }
        if let Session::Authenticated(user) = &self.state {
            self.previous = Some(user.clone());
        }
        self.mechanism = Some(wanted.to_string());
        self.state = match wanted {
            "PLAIN" => Session::Plain,
            "SCRAM-SHA-256" => Session::Scram(ScramServer::new(ScramHash::Sha256), false),
            "SCRAM-SHA-512" => Session::Scram(ScramServer::new(ScramHash::Sha512), true),
            "OAUTHBEARER" => Session::OAuthBearer,
            _ => {
                resp.error_code = ErrorCode::UnsupportedSaslMechanism;
                Session::Failed
            }
        };
        resp
    }

    /// Answers SaslAuthenticate. `nonce` is fresh server randomness for SCRAM.
    pub fn authenticate(
        &mut self,
        users: &SaslUsers,
        req: &SaslAuthenticateRequest,
        nonce: &str,
    ) -> SaslAuthenticateResponse {
        let mut resp = SaslAuthenticateResponse::default();
        let fail = |resp: &mut SaslAuthenticateResponse, code, msg: &str| {
            resp.error_code = code;
            resp.error_message = Some(StrBytes::from(msg));
        };
        match std::mem::replace(&mut self.state, Session::Failed) {
            Session::Plain => {
                let mut parts = req.auth_bytes.split(|b| *b == 0);
                let (_authzid, user, pw) = (parts.next(), parts.next(), parts.next());
                let ok = match (user.map(std::str::from_utf8), pw) {
                    (Some(Ok(user)), Some(pw)) => users.plain.get(user).is_some_and(|p| p.expose().as_bytes() == pw),
                    _ => false,
                };
                if ok {
                    let user = std::str::from_utf8(user.unwrap_or_default()).unwrap_or_default().to_string();
                    self.state = Session::Authenticated(user);
                    resp.session_lifetime_ms = lifetime(users);
                } else {
                    fail(
                        &mut resp,
                        ErrorCode::SaslAuthenticationFailed,
                        "Authentication failed: Invalid username or password",
                    );
                }
            }
            Session::Scram(mut server, is512) => {
                let lookup = |u: &str| users.scram.get(&(u.to_string(), is512)).cloned();
                match server.step(&req.auth_bytes, lookup, nonce) {
                    Ok((reply, None)) => {
                        resp.auth_bytes = Bytes::from(reply);
                        self.state = Session::Scram(server, is512);
                    }
                    Ok((reply, Some(user))) => {
                        resp.auth_bytes = Bytes::from(reply);
                        resp.session_lifetime_ms = lifetime(users);
                        self.state = Session::Authenticated(user);
                    }
                    Err(_) => fail(
                        &mut resp,
                        ErrorCode::SaslAuthenticationFailed,
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM",
                    ),
                }
            }
            Session::OAuthBearer => match unsecured_principal(&req.auth_bytes) {
                Some(user) => {
                    resp.session_lifetime_ms = lifetime(users);
                    self.state = Session::Authenticated(user);
                }
                None => {
                    // RFC 7628: the error document goes back as a challenge, without an error
                    // code; the client acknowledges it and only then is the exchange failed.
                    resp.auth_bytes = Bytes::from_static(br#"{"status":"invalid_token"}"#);
                    self.state = Session::OAuthRefused;
                }
            },
            Session::OAuthRefused => {
                fail(&mut resp, ErrorCode::SaslAuthenticationFailed, "Authentication failed: invalid_token")
            }
            Session::AwaitingHandshake | Session::Authenticated(_) | Session::Failed => {
                fail(&mut resp, ErrorCode::IllegalSaslState, "SaslAuthenticate out of turn")
            }
        }
        if let Session::Authenticated(user) = &self.state {
            if self.previous.as_ref().is_some_and(|before| before != user) {
                resp.session_lifetime_ms = 0;
                resp.auth_bytes = Bytes::new();
                fail(&mut resp, ErrorCode::SaslAuthenticationFailed, "re-authentication changed the principal");
                self.state = Session::Failed;
            } else {
                self.authentications += 1;
            }
        }
        resp
    }
}

/// The principal of an unsecured JWS in an OAUTHBEARER client message (`n,,` 0x01
/// `auth=Bearer <token>` 0x01 ... 0x01 0x01), if the message and token are well formed: header
/// `{"alg":"none"}`, claims with a `sub` string and an `exp` number, an empty signature.
fn unsecured_principal(message: &[u8]) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine;
    let text = std::str::from_utf8(message).ok()?;
    let rest = text.strip_prefix("n,")?;
    let (_authzid, rest) = rest.split_once(",\x01")?;
    let rest = rest.strip_suffix("\x01\x01")?;
    let token = rest.split('\x01').find_map(|kv| kv.strip_prefix("auth=Bearer "))?;
    let mut parts = token.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !signature.is_empty() {
        return None;
    }
    let header = String::from_utf8(B64URL.decode(header).ok()?).ok()?;
    let claims = String::from_utf8(B64URL.decode(claims).ok()?).ok()?;
    if header.replace(' ', "") != r#"{"alg":"none"}"# {
        return None;
    }
    let exp = claims.split_once(r#""exp":"#)?.1;
    exp.split([',', '}']).next()?.trim().parse::<f64>().ok()?;
    // Enough of JSON for the tokens tests make: the sub string up to its closing quote.
    let sub = claims.split_once(r#""sub":""#)?.1.split('"').next()?;
    (!sub.is_empty()).then(|| sub.to_string())
}

fn lifetime(users: &SaslUsers) -> i64 {
    users.session_lifetime.map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}
