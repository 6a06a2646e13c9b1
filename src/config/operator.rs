//! Decentralised auth (operator mode): `operator` (a JWT or a file holding one), `resolver:
//! MEMORY` and `resolver_preload { <account key>: <account JWT> }`. Every JWT is decoded and
//! its signature checked at load: the operator's by itself, each account's by the operator or
//! one of its signing keys. Account claims causeway does not implement (imports, exports,
//! limits, JetStream, default permissions, mappings) are errors naming the claim.

use std::collections::HashMap;

use super::conf::Value;
use super::load::{invalid, map, text};
use super::ConfigError;
use crate::protocol::jwt::{self, Claims};

type Result<T> = std::result::Result<T, ConfigError>;

/// The trusted operators and the accounts they signed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trust {
    /// Keys allowed to sign accounts: the operators' and their signing keys.
    pub signers: Vec<String>,
    /// Accounts by public key.
    pub accounts: Vec<JwtAccount>,
}

/// An account from `resolver_preload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAccount {
    /// Its public key (the account's name in operator mode).
    pub key: String,
    /// Keys that may sign its users besides its own.
    pub signing_keys: Vec<String>,
    /// User key (or `*`) → users of that key issued at or before this time are revoked.
    pub revocations: HashMap<String, i64>,
    /// When the account JWT expires (Unix seconds; 0: never).
    pub expires: i64,
}

/// Reads `operator` (a string or a list: JWTs or files holding them) into `trust`.
pub(super) fn operators(key: &str, value: &Value, trust: &mut Trust) -> Result<()> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for (i, item) in items.into_iter().enumerate() {
        let kp = format!("{key}[{i}]");
        let raw = text(&kp, item)?;
        let token = if raw.split('.').count() == 3 {
            raw
        } else {
            std::fs::read_to_string(&raw).map_err(|source| ConfigError::Io {
                path: raw.clone(),
                source,
            })?
        };
        let claims = decode(&kp, &token, "operator")?;
        if claims.iss != claims.sub {
            return Err(invalid(&kp, "an operator JWT must be self-signed"));
        }
        trust.signers.push(claims.sub.clone());
        trust.signers.extend(claims.signing_keys());
    }
    Ok(())
}

/// `resolver`: only `MEMORY` (accounts from `resolver_preload`).
pub(super) fn resolver(key: &str, value: &Value) -> Result<()> {
    match value {
        Value::String(s) if s.eq_ignore_ascii_case("memory") => Ok(()),
        _ => Err(ConfigError::Unsupported {
            key: format!("{key} (other than MEMORY)"),
        }),
    }
}

/// `resolver_preload`: account JWTs by account key, checked once the operators are known.
pub(super) fn preload(key: &str, value: &Value) -> Result<Vec<(String, String)>> {
    map(key, value)?
        .iter()
        .map(|(k, v)| Ok((k.clone(), text(&format!("{key}.{k}"), v)?)))
        .collect()
}

fn decode(key: &str, token: &str, kind: &str) -> Result<Claims> {
    let claims = jwt::decode(token).map_err(|e| invalid(key, e.to_string()))?;
    if claims.kind() != kind {
        return Err(invalid(
            key,
            format!("expected an {kind} JWT, got \"{}\"", claims.kind()),
        ));
    }
    Ok(claims)
}

/// Checks the preloaded account JWTs against the operators and adds them to `trust`.
pub(super) fn accounts(preload: &[(String, String)], trust: &mut Trust) -> Result<()> {
    for (key, token) in preload {
        let kp = format!("resolver_preload.{key}");
        let claims = decode(&kp, token, "account")?;
        if &claims.sub != key {
            return Err(invalid(&kp, "the JWT is about another account"));
        }
        if !trust.signers.contains(&claims.iss) {
            return Err(invalid(&kp, "not signed by a trusted operator"));
        }
        refuse_unimplemented(&kp, &claims.nats)?;
        let scoped = claims.nats["signing_keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| !k.is_string()));
        if scoped {
            // A scoped key's template would limit the users it signs: not applied here.
            return Err(ConfigError::Unsupported {
                key: format!("{kp}.signing_keys (scoped)"),
            });
        }
        let mut revocations = HashMap::new();
        if let Some(r) = claims.nats.get("revocations").and_then(|r| r.as_object()) {
            for (user, at) in r {
                let at = at
                    .as_i64()
                    .ok_or_else(|| invalid(&format!("{kp}.revocations.{user}"), "not a time"))?;
                revocations.insert(user.clone(), at);
            }
        }
        trust.accounts.push(JwtAccount {
            key: key.clone(),
            signing_keys: claims.signing_keys(),
            revocations,
            expires: claims.exp.unwrap_or(0),
        });
    }
    Ok(())
}

/// Account claims that would change what the server must do, and that causeway does not do.
fn refuse_unimplemented(key: &str, nats: &serde_json::Value) -> Result<()> {
    let unsupported = |claim: &str| ConfigError::Unsupported {
        key: format!("{key}.{claim}"),
    };
    for claim in ["imports", "exports", "mappings"] {
        let present = nats.get(claim).is_some_and(|v| match v {
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            serde_json::Value::Null => false,
            _ => true,
        });
        if present {
            return Err(unsupported(claim));
        }
    }
    if let Some(perms) = nats.get("default_permissions") {
        let set =
            |side: &str, list: &str| perms[side][list].as_array().is_some_and(|a| !a.is_empty());
        let resp = !perms["resp"].is_null();
        if resp
            || set("pub", "allow")
            || set("pub", "deny")
            || set("sub", "allow")
            || set("sub", "deny")
        {
            return Err(unsupported("default_permissions"));
        }
    }
    if let Some(limits) = nats.get("limits").and_then(|l| l.as_object()) {
        for (name, v) in limits {
            let jetstream = matches!(
                name.as_str(),
                "mem_storage"
                    | "disk_storage"
                    | "streams"
                    | "consumer"
                    | "max_ack_pending"
                    | "mem_max_stream_bytes"
                    | "disk_max_stream_bytes"
                    | "max_bytes_required"
            );
            let storage = matches!(name.as_str(), "mem_storage" | "disk_storage");
            let unlimited = match v {
                // Storage above 0 (or -1) turns JetStream on for the account: not done here.
                serde_json::Value::Number(n) if storage => n.as_i64() == Some(0),
                serde_json::Value::Number(n) => {
                    n.as_i64() == Some(-1) || (jetstream && n.as_i64() == Some(0))
                }
                serde_json::Value::Bool(b) if name == "wildcards" => *b,
                serde_json::Value::Bool(b) => !b,
                serde_json::Value::Null => true,
                _ => name == "tiered_limits" && v.as_object().is_some_and(|o| o.is_empty()),
            };
            if !unlimited {
                return Err(unsupported(&format!("limits.{name}")));
            }
        }
    }
    Ok(())
}
