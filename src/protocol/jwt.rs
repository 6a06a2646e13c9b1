//! NATS JWTs (decentralised auth): `header.claims.signature`, base64url without padding, the
//! header naming `ed25519-nkey`, the signature an Ed25519 signature of `header.claims` by the
//! nkey in `iss`. [`decode`] checks the form and the signature; what the claims mean
//! (operator, account, user) is for the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

/// Why a JWT was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed JWT")]
    Malformed,
    /// The header names another algorithm.
    #[error("unsupported JWT algorithm")]
    Algorithm,
    /// `iss` is not a public nkey, or did not sign this token.
    #[error("JWT signature does not verify")]
    Signature,
}

/// The claims of a NATS JWT that the server reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// Who signed it (a public nkey).
    pub iss: String,
    /// Whom it is about (a public nkey).
    pub sub: String,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: i64,
    /// Expires at, Unix seconds (absent or 0: never).
    #[serde(default)]
    pub exp: Option<i64>,
    /// Not valid before, Unix seconds.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The NATS-specific claims (`type`, permissions, limits, ...).
    #[serde(default)]
    pub nats: serde_json::Value,
}

impl Claims {
    /// `nats.type`: `operator`, `account` or `user`.
    pub fn kind(&self) -> &str {
        self.nats.get("type").and_then(|t| t.as_str()).unwrap_or("")
    }

    /// True if `now` (Unix seconds) is past `exp` or before `nbf`.
    pub fn expired(&self, now: i64) -> bool {
        self.exp.is_some_and(|e| e > 0 && now >= e) || self.nbf.is_some_and(|n| n > 0 && now < n)
    }

    /// `nats.signing_keys`: plain keys, or objects with a `key` (scoped keys).
    pub fn signing_keys(&self) -> Vec<String> {
        let Some(keys) = self.nats.get("signing_keys").and_then(|k| k.as_array()) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| k.as_str().or_else(|| k.get("key").and_then(|v| v.as_str())))
            .map(str::to_string)
            .collect()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Decodes `token` and checks that the nkey in `iss` signed it.
pub fn decode(token: &str) -> Result<Claims, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let b64 = |p: &str| URL_SAFE_NO_PAD.decode(p.trim_end_matches('='));
    let header: Header = b64(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if !header.alg.eq_ignore_ascii_case("ed25519-nkey")
        && !header.alg.eq_ignore_ascii_case("ed25519")
    {
        return Err(JwtError::Algorithm);
    }
    let claims: Claims = b64(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let sig = b64(s).map_err(|_| JwtError::Malformed)?;
    let signed = &token.trim()[..h.len() + 1 + c.len()];
    let issuer = nkeys::KeyPair::from_public_key(&claims.iss).map_err(|_| JwtError::Signature)?;
    issuer
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mint(kp: &nkeys::KeyPair, claims: serde_json::Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = kp.sign(format!("{h}.{c}").as_bytes()).expect("sign");
        format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn a_signed_token_decodes_and_a_forged_one_does_not() {
        let op = nkeys::KeyPair::new_operator();
        let claims = serde_json::json!({
            "iss": op.public_key(), "sub": op.public_key(), "iat": 1, "exp": 100,
            "nats": {"type": "operator", "signing_keys": ["OX", {"key": "OY"}]}
        });
        let token = mint(&op, claims.clone());
        let c = decode(&token).expect("decodes");
        assert_eq!((c.kind(), c.iat), ("operator", 1));
        assert_eq!(c.signing_keys(), ["OX", "OY"]);
        assert!(c.expired(100) && !c.expired(99));
        let other = nkeys::KeyPair::new_operator();
        assert_eq!(
            decode(&mint(&other, claims)).err(),
            Some(JwtError::Signature)
        );
        assert_eq!(decode("a.b").err(), Some(JwtError::Malformed));
    }
}
