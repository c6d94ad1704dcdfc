//! OAUTHBEARER (RFC 7628) on the fake cluster, with the unsecured JSON Web Tokens Kafka's
//! default validator accepts: header `{"alg":"none"}`, an empty signature, a `sub` claim
//! naming the user and an `exp` claim (seconds since the epoch) still in the future.
//!
//! A refused token is answered the way Kafka answers it: an error document
//! (`{"status":"invalid_token"}`) as a challenge, which the client acknowledges with a
//! lone `0x01`; then the failure.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use bytes::Bytes;

/// One OAUTHBEARER exchange, server side.
#[derive(Debug, Default)]
pub(crate) struct OAuthLogin {
    /// Why the token was refused, once the error document went out.
    refused: Option<String>,
}

/// What the exchange does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send these bytes back (the error document).
    Challenge(Bytes),
    /// The token is good: `user` is in for at most `life` (until the token expires).
    Authenticated { user: String, life: Duration },
}

impl OAuthLogin {
    /// Handles the client's message at wall-clock time `wall_ms`. `Err`: the exchange failed,
    /// with Kafka's message.
    pub(crate) fn step(&mut self, message: &[u8], wall_ms: i64) -> Result<Step, String> {
        if let Some(why) = self.refused.take() {
            // The client's acknowledgement of the error document.
            return Err(format!("Authentication failed: {why}"));
        }
        match validate(message, wall_ms) {
            Ok((user, life)) => Ok(Step::Authenticated { user, life }),
            Err(why) => {
                self.refused = Some(why.to_string());
                Ok(Step::Challenge(Bytes::from_static(br#"{"status":"invalid_token"}"#)))
            }
        }
    }
}

/// The token's user and how long it stays valid.
fn validate(message: &[u8], wall_ms: i64) -> Result<(String, Duration), &'static str> {
    let text = std::str::from_utf8(message).map_err(|_| "the message is not UTF-8")?;
    // gs2 header ("n,," or "n,a=user,"), then key=value pairs each ended by 0x01.
    let (gs2, pairs) = text.split_once('\u{1}').ok_or("no key/value pairs after the GS2 header")?;
    if !gs2.starts_with("n,") {
        return Err("unexpected GS2 header");
    }
    let auth =
        pairs.split('\u{1}').find_map(|kv| kv.strip_prefix("auth=")).ok_or("no auth value in the client's message")?;
    let token = auth.strip_prefix("Bearer ").ok_or("the auth value is not a bearer token")?;
    let mut parts = token.split('.');
    let (header, payload, signature) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => return Err("the token is not header.payload.signature"),
    };
    if !signature.is_empty() {
        return Err("an unsecured token has an empty signature");
    }
    let json = |part: &str| -> Result<serde_json::Value, &'static str> {
        let bytes = B64URL.decode(part.trim_end_matches('=')).map_err(|_| "a token part is not base64url")?;
        serde_json::from_slice(&bytes).map_err(|_| "a token part is not JSON")
    };
    if json(header)?.get("alg").and_then(|a| a.as_str()) != Some("none") {
        return Err("the token's alg is not none");
    }
    let claims = json(payload)?;
    let user = claims.get("sub").and_then(|s| s.as_str()).filter(|s| !s.is_empty()).ok_or("no sub claim")?;
    let exp = claims.get("exp").and_then(|e| e.as_f64()).ok_or("no exp claim")?;
    let exp_ms = (exp * 1000.0) as i64;
    if exp_ms <= wall_ms {
        return Err("the token has expired");
    }
    Ok((user.to_string(), Duration::from_millis((exp_ms - wall_ms) as u64)))
}

/// An unsecured token for `user` expiring at `exp_s` (seconds since the epoch), and the
/// client's first message carrying it: for tests.
pub fn unsecured_token(user: &str, exp_s: i64) -> String {
    let header = B64URL.encode(br#"{"alg":"none"}"#);
    let payload = B64URL.encode(serde_json::json!({ "sub": user, "exp": exp_s, "iat": exp_s - 3600 }).to_string());
    format!("{header}.{payload}.")
}

/// The client's OAUTHBEARER first message for `token`.
pub fn client_first(token: &str) -> Vec<u8> {
    format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_767_225_600_000;

    #[test]
    fn a_live_token_logs_its_subject_in() {
        let token = unsecured_token("alice", NOW_MS / 1000 + 60);
        match OAuthLogin::default().step(&client_first(&token), NOW_MS).unwrap() {
            Step::Authenticated { user, life } => {
                assert_eq!(user, "alice");
                assert_eq!(life, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_expired_or_signed_token_gets_the_error_document_then_fails() {
        let expired = unsecured_token("alice", NOW_MS / 1000 - 1);
        let signed = format!("{}sig", unsecured_token("alice", NOW_MS / 1000 + 60));
        for token in [expired, signed, "garbage".to_string()] {
            let mut login = OAuthLogin::default();
            match login.step(&client_first(&token), NOW_MS).unwrap() {
                Step::Challenge(b) => assert_eq!(&b[..], br#"{"status":"invalid_token"}"#),
                other => panic!("{other:?}"),
            }
            let err = login.step(b"\x01", NOW_MS).unwrap_err();
            assert!(err.starts_with("Authentication failed"), "{err}");
        }
    }
}
