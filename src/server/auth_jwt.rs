//! Operator-mode authentication: a client's CONNECT carries a user JWT (and, unless it is a
//! bearer token, `sig`, the INFO nonce signed with the user's nkey). The user JWT must be
//! signed by a preloaded account (or one of its signing keys, naming it in `issuer_account`),
//! be within its validity, not be revoked by the account, and the account JWT must not have
//! expired. Its `pub`/`sub`/`resp` permissions and `allowed_connection_types` apply. User
//! claims causeway does not enforce (`src`, `times`, limits) refuse the login rather than be
//! ignored.

use std::sync::Arc;
use std::time::Duration;

use super::auth::{nkey_signed, Authenticated, Identity, Perms};
use crate::config::{Permissions, ResponsePermission, SubjectPermission, Trust};
use crate::protocol::info::ConnectOptions;
use crate::protocol::jwt;

/// Checks a CONNECT in operator mode; `None` is an Authorization Violation.
pub(super) fn check(
    trust: &Trust,
    opts: &ConnectOptions,
    id: &Identity<'_>,
) -> Option<Authenticated> {
    let token = opts.jwt.as_deref()?;
    let user = jwt::decode(token)
        .inspect_err(|e| tracing::warn!("user JWT refused: {e}"))
        .ok()?;
    if user.kind() != "user" || !user.sub.starts_with('U') {
        return None;
    }
    let account_key = user
        .nats
        .get("issuer_account")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .unwrap_or(&user.iss);
    let account = trust.accounts.iter().find(|a| a.key == account_key)?;
    if user.iss != account.key && !account.signing_keys.contains(&user.iss) {
        tracing::warn!(user = %user.sub, "user JWT not signed by its account");
        return None;
    }
    let now = now_secs();
    if user.expired(now) || (account.expires > 0 && now >= account.expires) {
        tracing::warn!(user = %user.sub, "User Authentication Expired");
        return None;
    }
    let revoked = [user.sub.as_str(), "*"]
        .iter()
        .filter_map(|k| account.revocations.get(*k))
        .any(|&at| user.iat <= at);
    if revoked {
        tracing::warn!(user = %user.sub, "user JWT revoked");
        return None;
    }
    let bearer = user.nats["bearer_token"].as_bool().unwrap_or(false);
    if !bearer && !nkey_signed(&user.sub, id.nonce?, opts.sig.as_deref()?) {
        return None;
    }
    if !allowed_type(&user.nats, id.conn_type) || unenforced(&user.nats) {
        return None;
    }
    Some(Authenticated {
        perms: permissions(&user.nats).map(|p| Arc::new(Perms::new(&p))),
        user: Some(user.sub.clone()),
        account: Some(account.key.clone()),
        // The session ends when the user's or the account's JWT does.
        expires: [user.exp.unwrap_or(0), account.expires]
            .into_iter()
            .filter(|&e| e > 0)
            .min(),
    })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn allowed_type(nats: &serde_json::Value, conn_type: &str) -> bool {
    match nats["allowed_connection_types"].as_array() {
        Some(types) if !types.is_empty() => types.iter().any(|t| {
            t.as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(conn_type))
        }),
        _ => true,
    }
}

/// User claims that restrict the user in ways causeway does not enforce: refusing the login
/// is the safe answer.
fn unenforced(nats: &serde_json::Value) -> bool {
    let set = |k: &str| match &nats[k] {
        serde_json::Value::Null => false,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Number(n) => n.as_i64() != Some(-1),
        _ => true,
    };
    let refused = ["src", "times", "subs", "data", "payload"]
        .into_iter()
        .find(|k| set(k));
    if let Some(claim) = refused {
        tracing::warn!("user JWT claim \"{claim}\" is not supported yet: login refused");
    }
    refused.is_some()
}

/// `pub`, `sub` and `resp` as permissions; `None` when the user has none.
fn permissions(nats: &serde_json::Value) -> Option<Permissions> {
    let side = |k: &str| {
        let list = |l: &str| -> Vec<String> {
            nats[k][l]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let p = SubjectPermission {
            allow: list("allow"),
            deny: list("deny"),
        };
        (!p.allow.is_empty() || !p.deny.is_empty()).then_some(p)
    };
    let responses = nats["resp"].as_object().map(|r| ResponsePermission {
        max: r
            .get("max")
            .and_then(|m| m.as_u64())
            .filter(|&m| m > 0)
            .map_or(1, |m| m as usize),
        expires: r
            .get("ttl")
            .and_then(|t| t.as_u64())
            .filter(|&t| t > 0)
            .map_or(Duration::from_secs(120), Duration::from_nanos),
    });
    let perms = Permissions {
        publish: side("pub"),
        subscribe: side("sub"),
        allow_responses: responses,
    };
    (perms != Permissions::default()).then_some(perms)
}
