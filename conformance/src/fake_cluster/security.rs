//! SASL on the fake cluster's listener, enforced per connection as Kafka enforces it:
//!
//! - before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are taken;
//!   any other request closes the connection;
//! - a refused login is answered, then the connection is closed;
//! - with a session lifetime (KIP-368, Kafka's `connections.max.reauth.ms`), the lifetime is
//!   told in SaslAuthenticate, and a connection whose session has expired is closed at its
//!   next request unless that request starts a re-authentication (SaslHandshake); a
//!   re-authentication must log the same user in.
//!
//! With [`crate::fake_cluster::FakeClusterConfig::legacy_sasl`] the listener is one of Kafka
//! 0.10-0.11: SaslHandshake v0 only and no SaslAuthenticate. Whatever is advertised, a
//! SaslHandshake v0 makes the rest of the exchange raw, as on Kafka: each frame that follows
//! is a bare token, answered with a bare token (an empty one when PLAIN or OAUTHBEARER
//! succeed), and a refused login is a hang-up without an answer. Such a session has no
//! lifetime: a client that cannot re-authenticate is not held to one.
//!
//! PLAIN and SCRAM run on sansa's pure server side ([`sansa::security::server`]); OAUTHBEARER
//! with Kafka's unsecured tokens is in `oauth.rs`. TLS is a byte transform the carriers apply
//! ([`crate::fake_tls`]), not a concern of the cluster.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use sansa::protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use sansa::protocol::{ApiKey, ErrorCode, StrBytes};
use sansa::security::server::SaslSession;

use super::oauth::OAuthLogin;
use super::{FakeCluster, FakeConnId, FakeOutput};

/// One connection's authentication.
#[derive(Debug, Default)]
pub(crate) enum ConnAuth {
    /// The listener has no SASL.
    #[default]
    Open,
    /// Not authenticated yet; `login` once SaslHandshake chose a mechanism.
    Pending { login: Option<Login> },
    /// After SaslHandshake v0: every frame is the next raw token of `login`.
    Raw { login: Login },
    /// Authenticated as `user` until `expires` (when there is a session lifetime);
    /// `reauth` while a re-authentication is under way.
    Done { user: String, expires: Option<Instant>, reauth: Option<Login> },
    /// A login was refused: the connection closes once the answer is out.
    Failed,
}

/// A mechanism's exchange under way.
#[derive(Debug)]
pub(crate) enum Login {
    Sasl(SaslSession),
    OAuth(OAuthLogin),
}

/// What the listener does with a request before handling it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Pass,
    /// Kafka closes the connection without an answer.
    Close,
    /// The same, because the session expired.
    Expired,
}

impl ConnAuth {
    /// A new connection's state on a listener with (`sasl`) or without SASL.
    pub(crate) fn new(sasl: bool) -> Self {
        if sasl {
            ConnAuth::Pending { login: None }
        } else {
            ConnAuth::Open
        }
    }

    /// Whether the request may go on.
    pub(crate) fn gate(&self, now: Instant, api: ApiKey) -> Gate {
        let sasl_api = matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        match self {
            ConnAuth::Open => Gate::Pass,
            ConnAuth::Pending { .. } if sasl_api || api == ApiKey::ApiVersions => Gate::Pass,
            // Raw tokens never reach the gate: they are not requests.
            ConnAuth::Pending { .. } | ConnAuth::Raw { .. } | ConnAuth::Failed => Gate::Close,
            ConnAuth::Done { reauth: Some(_), .. } => Gate::Pass,
            ConnAuth::Done { expires: Some(t), .. } if *t <= now && api != ApiKey::SaslHandshake => Gate::Expired,
            ConnAuth::Done { .. } => Gate::Pass,
        }
    }

    /// The authenticated user, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            ConnAuth::Done { user, .. } => Some(user),
            _ => None,
        }
    }
}

/// The SASL APIs are advertised only by a listener with SASL.
pub(crate) const SASL_APIS: [ApiKey; 2] = [ApiKey::SaslHandshake, ApiKey::SaslAuthenticate];

impl FakeCluster {
    /// Makes the SCRAM exchange end with a wrong server signature (`true`), as an impostor
    /// that does not know the users' keys would: a client must refuse it.
    pub fn set_forged_scram_signature(&mut self, on: bool) {
        self.forge_scram_signature = on;
    }

    /// Connections on which a forged SCRAM signature was sent and a request other than SASL
    /// came after it: clients that did not check the broker's signature.
    pub fn trusted_forgeries(&self) -> u64 {
        self.trusted_forgeries
    }

    /// Connections closed because a request arrived after their session expired (a client that
    /// did not re-authenticate in time). A request that arrived in time but was read after the
    /// expiry, behind one the broker held (an injected delay), closes its connection as Kafka
    /// does without counting here: the client renews only with nothing in flight.
    pub fn expired_sessions_closed(&self) -> u64 {
        self.expired_sessions_closed
    }

    /// The user authenticated on `conn`, if any.
    pub fn authenticated_user(&self, conn: FakeConnId) -> Option<&str> {
        self.conns.get(&conn).and_then(|c| c.auth.user())
    }

    /// Whether frames on `conn` are raw SASL tokens rather than requests.
    pub(crate) fn expects_raw_token(&self, conn: FakeConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| matches!(c.auth, ConnAuth::Raw { .. }))
    }

    /// Answers SaslHandshake (at `version`) on `conn`.
    pub(crate) fn sasl_handshake(
        &mut self,
        conn: FakeConnId,
        version: i16,
        req: &SaslHandshakeRequest,
    ) -> SaslHandshakeResponse {
        let users = self.config.sasl.clone().unwrap_or_default();
        let Some(c) = self.conns.get_mut(&conn) else { return SaslHandshakeResponse::default() };
        let wanted = req.mechanism.as_str();
        let login = if wanted == "OAUTHBEARER" && users.mechanisms.iter().any(|m| m == wanted) {
            let mechanisms = users.mechanisms.iter().map(|m| StrBytes::from(m.as_str())).collect();
            (Some(Login::OAuth(OAuthLogin::default())), SaslHandshakeResponse::default().with_mechanisms(mechanisms))
        } else {
            let mut session = SaslSession::new();
            let resp = session.handshake(&users, req);
            ((resp.error_code == ErrorCode::None).then_some(Login::Sasl(session)), resp)
        };
        let (login, resp) = login;
        match (&mut c.auth, login) {
            (ConnAuth::Pending { login: slot @ None }, Some(l)) => *slot = Some(l),
            (ConnAuth::Done { reauth: slot @ None, .. }, Some(l)) => *slot = Some(l),
            (_, None) => c.auth = ConnAuth::Failed,
            // A second handshake in one exchange.
            (_, Some(_)) => {
                c.auth = ConnAuth::Failed;
                return resp.with_error_code(ErrorCode::IllegalSaslState);
            }
        }
        if version == 0 {
            match std::mem::take(&mut c.auth) {
                ConnAuth::Pending { login: Some(login) } => c.auth = ConnAuth::Raw { login },
                // Renewal needs SaslAuthenticate (KIP-368): a v0 handshake cannot start one.
                ConnAuth::Done { .. } => {
                    c.auth = ConnAuth::Failed;
                    return resp.with_error_code(ErrorCode::IllegalSaslState);
                }
                other => c.auth = other,
            }
        }
        resp
    }

    /// A raw token on `conn` (after SaslHandshake v0): the exchange's next step, answered
    /// with a bare token. A refusal closes the connection without a word, as Kafka did
    /// before SaslAuthenticate existed to carry one.
    pub(crate) fn sasl_raw_token(&mut self, now: Instant, conn: FakeConnId, token: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let ConnAuth::Raw { login } = std::mem::take(&mut c.auth) else { return };
        // The same steps as SaslAuthenticate, wrapped and unwrapped here.
        c.auth = ConnAuth::Pending { login: Some(login) };
        let resp = self.sasl_authenticate(now, conn, &SaslAuthenticateRequest::default().with_auth_bytes(token));
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let refused = resp.error_code != ErrorCode::None;
        match std::mem::take(&mut c.auth) {
            ConnAuth::Pending { login: Some(login) } if !refused => c.auth = ConnAuth::Raw { login },
            // No lifetime: a 0.10 broker has no KIP-368, and the client could not renew.
            ConnAuth::Done { user, .. } if !refused => c.auth = ConnAuth::Done { user, expires: None, reauth: None },
            _ => return self.close(conn),
        }
        let mut bytes = BytesMut::with_capacity(4 + resp.auth_bytes.len());
        bytes.put_u32(resp.auth_bytes.len() as u32);
        bytes.put_slice(&resp.auth_bytes);
        self.outputs.push_back(FakeOutput::Send { conn, bytes: bytes.freeze() });
    }

    /// Answers SaslAuthenticate on `conn`.
    pub(crate) fn sasl_authenticate(
        &mut self,
        now: Instant,
        conn: FakeConnId,
        req: &SaslAuthenticateRequest,
    ) -> SaslAuthenticateResponse {
        let users = self.config.sasl.clone().unwrap_or_default();
        let wall_ms = self.wall_clock_ms(now);
        self.sasl_nonces += 1;
        let nonce: String = super::id_bytes(self.sasl_nonces, SASL_NONCES).iter().map(|b| format!("{b:02x}")).collect();
        let forge = self.forge_scram_signature;
        let Some(c) = self.conns.get_mut(&conn) else { return SaslAuthenticateResponse::default() };
        let (login, reauth_of) = match &mut c.auth {
            ConnAuth::Pending { login } => (login.take(), None),
            ConnAuth::Done { user, reauth, .. } => (reauth.take(), Some(user.clone())),
            ConnAuth::Open | ConnAuth::Raw { .. } | ConnAuth::Failed => (None, None),
        };
        let refuse = |code, msg: &str| {
            SaslAuthenticateResponse::default().with_error_code(code).with_error_message(Some(StrBytes::from(msg)))
        };
        let Some(login) = login else {
            c.auth = ConnAuth::Failed;
            return refuse(ErrorCode::IllegalSaslState, "SaslAuthenticate before SaslHandshake");
        };
        // (the answer, the user once authenticated, the exchange when it goes on, the
        // longest the session may last by the credential itself)
        let (mut resp, user, next, credential_life) = match login {
            Login::Sasl(mut session) => {
                let mut resp = session.authenticate(&users, req, &nonce);
                let user = session.user().map(str::to_string);
                if forge && user.is_some() && resp.auth_bytes.starts_with(b"v=") {
                    resp.auth_bytes = Bytes::from_static(FORGED_SIGNATURE);
                    c.forged = true;
                }
                let next = (user.is_none() && resp.error_code == ErrorCode::None).then_some(Login::Sasl(session));
                (resp, user, next, None)
            }
            Login::OAuth(mut login) => match login.step(&req.auth_bytes, wall_ms) {
                Ok(super::oauth::Step::Challenge(bytes)) => {
                    (SaslAuthenticateResponse::default().with_auth_bytes(bytes), None, Some(Login::OAuth(login)), None)
                }
                Ok(super::oauth::Step::Authenticated { user, life }) => {
                    (SaslAuthenticateResponse::default(), Some(user), None, Some(life))
                }
                Err(why) => (refuse(ErrorCode::SaslAuthenticationFailed, &why), None, None, None),
            },
        };
        if let (Some(new), Some(old)) = (&user, &reauth_of) {
            if new != old {
                c.auth = ConnAuth::Failed;
                return refuse(
                    ErrorCode::SaslAuthenticationFailed,
                    "Cannot change principals during re-authentication",
                );
            }
        }
        match (user, next) {
            (Some(user), _) => {
                // Kafka bounds a session only with connections.max.reauth.ms set, then also by
                // the token's expiry.
                let life = users.session_lifetime.map(|a| credential_life.map_or(a, |b| a.min(b)));
                resp.session_lifetime_ms = life.map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64);
                c.auth = ConnAuth::Done { user, expires: life.map(|d| now + d), reauth: None };
            }
            (None, Some(next)) => match &mut c.auth {
                ConnAuth::Pending { login } => *login = Some(next),
                ConnAuth::Done { reauth, .. } => *reauth = Some(next),
                _ => {}
            },
            (None, None) => c.auth = ConnAuth::Failed,
        }
        resp
    }
}

/// A well-formed SCRAM server-final whose signature no client computes.
const FORGED_SIGNATURE: &[u8] = b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Stream of [`super::id_bytes`] behind SCRAM server nonces.
const SASL_NONCES: u64 = 0xbb67_ae85_84ca_a73b;
