//! NATS JWTs minted for tests as `nsc` would: a JSON header naming `ed25519-nkey`, claims,
//! and the issuer's Ed25519 signature of both, base64url without padding; and `.creds` files.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use serde_json::{json, Value};

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A JWT about `sub` with these `nats` claims (and `extra` top-level claims such as `exp`),
/// signed by `issuer`; issued 10 s ago.
pub fn mint(issuer: &KeyPair, sub: &str, nats: Value, extra: Value) -> String {
    let jti = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut claims = json!({
        "jti": jti.to_string(), "iat": now() - 10, "iss": issuer.public_key(),
        "sub": sub, "name": sub, "nats": nats,
    });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let h = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = issuer.sign(format!("{h}.{c}").as_bytes()).expect("sign");
    format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A `.creds` file's text: the user JWT and the user's seed.
pub fn creds(jwt: &str, user: &KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().expect("seed")
    )
}

/// Operator-mode config text: the operator's JWT, the memory resolver, and these accounts
/// (key, JWT) preloaded.
pub fn operator_conf(operator: &KeyPair, accounts: &[(String, String)]) -> String {
    let op = mint(
        operator,
        &operator.public_key(),
        json!({"type": "operator"}),
        json!({}),
    );
    let preload: String = accounts
        .iter()
        .map(|(k, j)| format!("  {k}: \"{j}\"\n"))
        .collect();
    format!("operator: \"{op}\"\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n")
}
