//! SASL OAUTHBEARER (RFC 7628) as Kafka speaks it (KIP-255): the client sends a bearer token
//! in one message; the broker answers with nothing (accepted) or with an error document, which
//! the client acknowledges with a single `0x01` before the broker fails the exchange.
//!
//! Tokens come from a [`TokenProvider`] the application supplies, or from the unsecured JWS
//! Kafka accepts for tests (`unsecuredLogin*` options of `OAuthBearerLoginModule`, as Java's
//! default login callback handler reads them).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use super::{AuthError, Secret};

/// RFC 7628's separator between the parts of a client message.
const KVSEP: u8 = 0x01;

/// A bearer token with what the client needs to know about it. The token itself is a
/// [`Secret`]: no `Debug` output or error shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthBearerToken {
    value: Secret,
    principal: String,
    expires_unix_ms: i64,
    extensions: BTreeMap<String, String>,
}

impl fmt::Debug for OAuthBearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearerToken")
            .field("principal", &self.principal)
            .field("expires_unix_ms", &self.expires_unix_ms)
            .field("extensions", &self.extensions.keys())
            .finish_non_exhaustive()
    }
}

impl OAuthBearerToken {
    /// A token (the compact JWS or opaque string the broker validates), the principal it
    /// names, and when it expires, in milliseconds since the Unix epoch.
    pub fn new(value: impl Into<String>, principal: impl Into<String>, expires_unix_ms: i64) -> Self {
        OAuthBearerToken {
            value: Secret::new(value),
            principal: principal.into(),
            expires_unix_ms,
            extensions: BTreeMap::new(),
        }
    }

    /// Adds a SASL extension (KIP-342), sent beside the token. Names are ASCII letters; values
    /// printable ASCII.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.insert(name.into(), value.into());
        self
    }

    /// The token itself, for the one place that sends it.
    pub fn value(&self) -> &Secret {
        &self.value
    }

    /// The principal the token names.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// When the token expires, in milliseconds since the Unix epoch.
    pub fn expires_unix_ms(&self) -> i64 {
        self.expires_unix_ms
    }

    /// The SASL extensions sent with the token, by name.
    pub fn extensions(&self) -> &BTreeMap<String, String> {
        &self.extensions
    }
}

/// Why no token could be had. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The provider has no token yet (say, its first fetch is still under way). The
    /// connection closes and is retried after the reconnect backoff.
    #[error("no OAuth token available yet: {0}")]
    Unavailable(String),
    /// The provider cannot make a token with its settings; retrying cannot help.
    #[error("the OAuth token provider failed: {0}")]
    Failed(String),
}

/// Supplies OAUTHBEARER tokens.
///
/// The connection machine calls [`TokenProvider::token`] synchronously, each time a
/// connection authenticates or re-authenticates, from inside the sans-IO core: it must
/// return at once and never block, sleep or wait for I/O. To fetch tokens over the network,
/// let the application do that on its own task or thread and store the newest token in
/// shared state (an `Arc<Mutex<..>>`, refreshed well before expiry); the provider then only
/// reads it, answering [`TokenError::Unavailable`] until the first fetch lands.
pub trait TokenProvider: Send + Sync {
    /// A token valid at `unix_ms` (milliseconds since the Unix epoch, from the client's
    /// clock as the driver set it, never read here).
    fn token(&self, unix_ms: i64) -> Result<OAuthBearerToken, TokenError>;
}

/// A shared [`TokenProvider`], as the configuration holds it.
#[derive(Clone)]
pub struct TokenSource(Arc<dyn TokenProvider>);

impl TokenSource {
    /// Wraps a provider.
    pub fn new(provider: impl TokenProvider + 'static) -> Self {
        TokenSource(Arc::new(provider))
    }

    /// Asks the provider for a token and checks it is usable at `unix_ms`.
    pub(crate) fn token(&self, unix_ms: i64) -> Result<OAuthBearerToken, AuthError> {
        let token = self.0.token(unix_ms).map_err(AuthError::Token)?;
        if token.expires_unix_ms <= unix_ms {
            return Err(AuthError::Token(TokenError::Unavailable(format!(
                "the provider's token for {} expired {} ms ago",
                token.principal,
                unix_ms.saturating_sub(token.expires_unix_ms)
            ))));
        }
        Ok(token)
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource(..)")
    }
}

impl PartialEq for TokenSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TokenSource {}

/// RFC 7628's client-first message: `n,,` then `auth=Bearer <token>`, the extensions, and an
/// empty part, each ended by 0x01.
pub(crate) fn client_message(token: &OAuthBearerToken) -> Vec<u8> {
    let mut msg = Vec::with_capacity(token.value.expose().len() + 32);
    msg.extend_from_slice(b"n,,");
    msg.push(KVSEP);
    msg.extend_from_slice(b"auth=Bearer ");
    msg.extend_from_slice(token.value.expose().as_bytes());
    for (k, v) in &token.extensions {
        msg.push(KVSEP);
        msg.extend_from_slice(k.as_bytes());
        msg.push(b'=');
        msg.extend_from_slice(v.as_bytes());
    }
    msg.push(KVSEP);
    msg.push(KVSEP);
    msg
}

/// The client half of one exchange.
#[derive(Debug, Default)]
pub(crate) struct OAuthClient {
    /// The broker's error document, once it sent one.
    error: Option<String>,
}

impl OAuthClient {
    /// The broker's answer: empty when it accepted the token; an error document otherwise,
    /// which RFC 7628 has the client acknowledge with 0x01 so the broker can end the exchange.
    pub fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, AuthError> {
        if let Some(error) = &self.error {
            // The broker must fail the exchange after our acknowledgement, not go on.
            return Err(AuthError::Failed { message: Some(format!("OAUTHBEARER: {error}")) });
        }
        if server.is_empty() {
            return Ok(None);
        }
        self.error = Some(String::from_utf8_lossy(server).into_owned());
        Ok(Some(vec![KVSEP]))
    }

    /// What the broker said was wrong with the token, if it said.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

// ---- the unsecured JWS ----------------------------------------------------------------------

/// The unsecured JWS (`{"alg":"none"}`, no signature) that Kafka's brokers accept when their
/// OAUTHBEARER listener keeps the default, unsecured validator: for tests and development.
/// Built from `OAuthBearerLoginModule` options as Java's default login callback handler reads
/// them:
///
/// - `unsecuredLoginStringClaim_<name>="value"`, `unsecuredLoginNumberClaim_<name>="1.5"`,
///   `unsecuredLoginListClaim_<name>="|a|b"` (the first character separates the items);
/// - `unsecuredLoginPrincipalClaimName` (default `sub`), which must be one of the string claims;
/// - `unsecuredLoginScopeClaimName` (default `scope`);
/// - `unsecuredLoginLifetimeSeconds` (default 3600);
/// - `unsecuredLoginExtension_<name>="value"`: SASL extensions.
///
/// `iat` and `exp` come from the time each token is made (the client's clock), and may not be
/// set as claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsecuredJws {
    principal: String,
    lifetime_ms: i64,
    /// Claim name to its JSON value, written in name order.
    claims: BTreeMap<String, String>,
    extensions: BTreeMap<String, String>,
}

/// Why `unsecuredLogin*` options were refused; names the option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnsecuredError(pub &'static str);

const PREFIX: &str = "unsecuredLogin";

impl UnsecuredJws {
    /// A token source for `principal` (as the `sub` claim), each token living `lifetime_secs`.
    pub fn new(principal: &str, lifetime_secs: i64) -> Self {
        UnsecuredJws {
            principal: principal.to_string(),
            lifetime_ms: lifetime_secs.saturating_mul(1000),
            claims: BTreeMap::from([("sub".to_string(), json_string(principal))]),
            extensions: BTreeMap::new(),
        }
    }

    /// Reads the login module's options.
    pub(crate) fn from_options(options: &BTreeMap<String, String>) -> Result<Self, UnsecuredError> {
        let option = |name: &str| options.get(&format!("{PREFIX}{name}")).map(|v| v.trim()).filter(|v| !v.is_empty());
        let principal_claim = option("PrincipalClaimName").unwrap_or("sub");
        let scope_claim = option("ScopeClaimName").unwrap_or("scope");
        let lifetime_secs: i64 = match option("LifetimeSeconds") {
            None => 3600,
            Some(v) => v.parse().map_err(|_| UnsecuredError("unsecuredLoginLifetimeSeconds is not an integer"))?,
        };
        if lifetime_secs <= 0 {
            return Err(UnsecuredError("unsecuredLoginLifetimeSeconds must be positive"));
        }
        let mut principal = None;
        let mut claims = BTreeMap::new();
        let mut extensions = BTreeMap::new();
        for (key, value) in options {
            let Some(rest) = key.strip_prefix(PREFIX) else { continue };
            let (kind, name) = match rest.split_once('_') {
                Some((kind, name)) if !name.is_empty() => (kind, name),
                _ => continue,
            };
            if matches!(kind, "StringClaim" | "NumberClaim" | "ListClaim") && matches!(name, "iat" | "exp") {
                return Err(UnsecuredError(
                    "the iat and exp claims are set from the clock, not by unsecuredLogin*Claim_",
                ));
            }
            match kind {
                "StringClaim" => {
                    if name == principal_claim {
                        principal = Some(value.clone());
                    }
                    if name == scope_claim && value.trim().is_empty() {
                        return Err(UnsecuredError("the scope claim is empty"));
                    }
                    claims.insert(name.to_string(), json_string(value));
                }
                "NumberClaim" => {
                    let n: f64 = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|n: &f64| n.is_finite())
                        .ok_or(UnsecuredError("an unsecuredLoginNumberClaim_ value is not a number"))?;
                    claims.insert(name.to_string(), format!("{n}"));
                }
                "ListClaim" => {
                    claims.insert(name.to_string(), json_list(value));
                }
                "Extension" => {
                    if name == "auth" || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
                        return Err(UnsecuredError(
                            "an unsecuredLoginExtension_ name is not ASCII letters (or is auth)",
                        ));
                    }
                    if value.is_empty() || !value.bytes().all(|b| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b))
                    {
                        return Err(UnsecuredError(
                            "an unsecuredLoginExtension_ value is empty or not printable ASCII",
                        ));
                    }
                    extensions.insert(name.to_string(), value.clone());
                }
                _ => {}
            }
        }
        let principal = principal
            .filter(|p| !p.trim().is_empty())
            .ok_or(UnsecuredError("no principal: give unsecuredLoginStringClaim_sub=\"name\" (or the claim unsecuredLoginPrincipalClaimName names)"))?;
        Ok(UnsecuredJws { principal, lifetime_ms: lifetime_secs.saturating_mul(1000), claims, extensions })
    }

    /// The token for a login at `unix_ms`.
    pub fn make(&self, unix_ms: i64) -> OAuthBearerToken {
        let expires = unix_ms.saturating_add(self.lifetime_ms);
        let header = r#"{"alg":"none"}"#;
        let mut claims = format!("{{\"exp\":{},\"iat\":{}", seconds(expires), seconds(unix_ms));
        for (name, value) in &self.claims {
            claims.push(',');
            claims.push_str(&json_string(name));
            claims.push(':');
            claims.push_str(value);
        }
        claims.push('}');
        let value = format!("{}.{}.", B64URL.encode(header), B64URL.encode(claims));
        let mut token = OAuthBearerToken::new(value, self.principal.clone(), expires);
        token.extensions = self.extensions.clone();
        token
    }
}

impl TokenProvider for UnsecuredJws {
    fn token(&self, unix_ms: i64) -> Result<OAuthBearerToken, TokenError> {
        Ok(self.make(unix_ms))
    }
}

/// Seconds since the epoch with the milliseconds as a fraction, as JWT's NumericDate allows.
fn seconds(unix_ms: i64) -> String {
    let (s, ms) = (unix_ms.div_euclid(1000), unix_ms.rem_euclid(1000));
    if ms == 0 {
        s.to_string()
    } else {
        format!("{s}.{ms:03}")
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list option: its first character separates the items (`"|a|b"` is `["a","b"]`).
fn json_list(value: &str) -> String {
    let mut chars = value.chars();
    let Some(sep) = chars.next() else { return "[]".into() };
    let rest = chars.as_str();
    if rest.is_empty() {
        return "[]".into();
    }
    let items: Vec<String> = rest.split(sep).map(json_string).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn decode_part(part: &str) -> String {
        String::from_utf8(B64URL.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn unsecured_token_has_kafkas_shape() {
        let jws = UnsecuredJws::from_options(&options(&[
            ("unsecuredLoginStringClaim_sub", "alice"),
            ("unsecuredLoginListClaim_scope", "|read|write"),
            ("unsecuredLoginNumberClaim_level", "3"),
            ("unsecuredLoginLifetimeSeconds", "60"),
            ("unsecuredLoginExtension_traceId", "abc"),
        ]))
        .unwrap();
        let token = jws.make(1_700_000_000_250);
        assert_eq!(token.principal(), "alice");
        assert_eq!(token.expires_unix_ms(), 1_700_000_060_250);
        let parts: Vec<&str> = token.value().expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "", "an unsecured JWS has an empty signature");
        assert!(!token.value().expose().contains('='), "base64url without padding");
        assert_eq!(decode_part(parts[0]), r#"{"alg":"none"}"#);
        assert_eq!(
            decode_part(parts[1]),
            r#"{"exp":1700000060.250,"iat":1700000000.250,"level":3,"scope":["read","write"],"sub":"alice"}"#
        );
        let msg = client_message(&token);
        let expected = format!("n,,\x01auth=Bearer {}\x01traceId=abc\x01\x01", token.value().expose());
        assert_eq!(msg, expected.as_bytes());
        assert!(!format!("{token:?}").contains(parts[1]));
    }

    #[test]
    fn bad_options_name_the_option() {
        let bad = [
            (
                vec![("unsecuredLoginStringClaim_sub", "a"), ("unsecuredLoginLifetimeSeconds", "soon")],
                "LifetimeSeconds",
            ),
            (vec![("unsecuredLoginStringClaim_sub", "a"), ("unsecuredLoginNumberClaim_n", "x")], "NumberClaim"),
            (vec![("unsecuredLoginStringClaim_sub", "a"), ("unsecuredLoginStringClaim_exp", "1")], "exp"),
            (vec![("unsecuredLoginStringClaim_user", "a")], "principal"),
            (vec![("unsecuredLoginStringClaim_sub", "a"), ("unsecuredLoginExtension_a1", "v")], "Extension"),
        ];
        for (opts, word) in bad {
            let e = UnsecuredJws::from_options(&options(&opts)).unwrap_err();
            assert!(e.0.contains(word), "{opts:?}: {}", e.0);
        }
        let other = UnsecuredJws::from_options(&options(&[
            ("unsecuredLoginStringClaim_user", "bob"),
            ("unsecuredLoginPrincipalClaimName", "user"),
        ]))
        .unwrap();
        assert_eq!(other.make(0).principal(), "bob");
    }

    #[test]
    fn the_client_acknowledges_a_server_error_then_fails() {
        let mut c = OAuthClient::default();
        assert_eq!(c.step(b"").unwrap(), None);
        let mut c = OAuthClient::default();
        assert_eq!(c.step(br#"{"status":"invalid_token"}"#).unwrap(), Some(vec![1]));
        assert_eq!(c.error(), Some(r#"{"status":"invalid_token"}"#));
        assert!(matches!(c.step(b""), Err(AuthError::Failed { .. })));
    }
}
