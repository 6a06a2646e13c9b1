//! Turns a parsed config file (a [`Value`] tree from `conf`) into a [`Config`]: key names and
//! their aliases, value checking, durations, sizes, host/port pairs, and the `authorization`
//! and `jetstream` blocks. Key names are matched case-insensitively, like nats-server. An
//! unknown key is an error naming it (as nats-server); a key nats-server knows but causeway
//! does not implement yet is an error too ("<key> is not supported yet"), unless ignoring it is
//! harmless, which warns; known keys with bad values are errors.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::conf::{self, Value};
use super::{
    AuthConfig, Config, ConfigError, Permissions, ResponsePermission, SubjectPermission,
    SyncPolicy, User,
};

type Result<T> = std::result::Result<T, ConfigError>;

/// Parses nats-server config text and applies it on top of [`Config::default()`].
///
/// `base_dir` is where relative `include` paths are resolved.
pub fn from_conf_text(text: &str, base_dir: Option<&Path>) -> Result<Config> {
    let (top, used) = conf::parse_tracking(text, base_dir)?;
    let mut cfg = Config::default();
    apply(&mut cfg, &top, &used)?;
    check_no_auth_user(&cfg.auth)?;
    if let Some(ws_auth) = cfg.websocket_auth() {
        check_no_auth_user(&ws_auth)?;
        // The listener's single user or token would shadow the users list (nats-server's
        // start-up errors).
        if !cfg.auth.users.is_empty() {
            let clash = |what: &str| {
                invalid(
                    "websocket.authorization",
                    format!("websocket authentication {what} not compatible with presence of users/nkeys"),
                )
            };
            if ws_auth.user.is_some() {
                return Err(clash("username"));
            }
            if ws_auth.token.is_some() {
                return Err(clash("token"));
            }
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Reads and parses a config file (includes are relative to its directory).
pub fn from_file(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_conf_text(&text, path.parent())
}

/// Top-level keys of nats-server that causeway does not implement yet: a file that sets them
/// asks for protection (TLS, accounts, other listeners) that would silently be missing.
const UNSUPPORTED_TOP: &[&str] = &[
    "trusted",
    "gateway",
    "mqtt",
    "resolver_tls",
    "resolver_pinned_accounts",
    "trusted_keys",
    "nkey",
    "https",
    "https_port",
    "http_base_path",
    "http_tls",
    "ocsp",
    "ocsp_cache",
    "no_sys_acc",
    "mappings",
    "accounts_mappings",
    "default_js_domain",
];

/// Top-level keys that change nothing causeway would do differently for a client's safety or
/// data: accepted with a warning.
const HARMLESS_TOP: &[&str] = &[
    "server_tags",
    "server_metadata",
    "logtime",
    "logtime_utc",
    "max_traced_msg_len",
    "trace_verbose",
    "syslog",
    "remote_syslog",
    "connect_error_reports",
    "reconnect_error_reports",
    "disable_sublist_cache",
    "no_fast_producer_stall",
    "prof_port",
    "prof_block_rate",
    "client_advertise",
    "max_subscription_tokens",
    "no_header_support",
];

/// Applies the keys of a parsed top-level map to `cfg`, in the order they were written.
/// Top-level keys in `variables` (referenced as `$NAME`) need not be configuration keys.
pub(crate) fn apply(cfg: &mut Config, top: &Value, variables: &HashSet<String>) -> Result<()> {
    let entries = map("<top level>", top)?;
    let mut preload = Vec::new();
    for (key, value) in entries {
        let key = key.as_str();
        match key.to_ascii_lowercase().as_str() {
            "host" | "net" => cfg.host = text(key, value)?,
            "port" => cfg.port = port(key, value)?,
            "listen" => {
                let (host, port) = host_port(key, value)?;
                if let Some(host) = host {
                    cfg.host = host;
                }
                cfg.port = port;
            }
            "server_name" | "name" => cfg.server_name = Some(text(key, value)?),
            "http" | "monitor" => {
                let (host, port) = host_port(key, value)?;
                if let Some(host) = host {
                    cfg.http_host = Some(host);
                }
                cfg.http_port = Some(port);
            }
            "http_port" | "monitor_port" => cfg.http_port = Some(port(key, value)?),
            "http_host" => cfg.http_host = Some(text(key, value)?),
            "max_payload" => cfg.max_payload = positive_size(key, value)?,
            "max_control_line" => cfg.max_control_line = positive_size(key, value)?,
            "max_pending" => cfg.max_pending = positive_size(key, value)?,
            "write_deadline" => cfg.write_deadline = duration(key, value)?,
            "max_connections" | "max_conn" => cfg.max_connections = count(key, value)?,
            "max_subscriptions" | "max_subs" => cfg.max_subs = count(key, value)?,
            "ping_interval" => cfg.ping_interval = duration(key, value)?,
            "ping_max" => cfg.ping_max = count(key, value)?,
            "lame_duck_duration" => cfg.lame_duck_duration = duration(key, value)?,
            "lame_duck_grace_period" => cfg.lame_duck_grace_period = duration(key, value)?,
            "debug" => cfg.debug = boolean(key, value)?,
            "trace" => cfg.trace = boolean(key, value)?,
            "log_file" | "logfile" => cfg.log_file = Some(file_path(key, value)?),
            "pid_file" | "pidfile" => cfg.pid_file = Some(file_path(key, value)?),
            "logfile_size_limit" | "log_size_limit" => {
                cfg.log_size_limit = size(key, value)?.max(0) as u64;
            }
            "logfile_max_num" | "log_max_num" => cfg.log_max_files = count(key, value)?,
            "max_closed_clients" => cfg.max_closed_clients = count(key, value)?,
            "ports_file_dir" => cfg.ports_file_dir = Some(file_path(key, value)?),
            "authorization" => apply_authorization(cfg, key, value)?,
            "no_auth_user" => cfg.auth.no_auth_user = Some(text(key, value)?),
            "jetstream" => apply_jetstream(cfg, key, value)?,
            "cluster" => apply_cluster(cfg, key, value)?,
            "leafnodes" | "leaf" => super::leaf::apply_leafnodes(cfg, key, value)?,
            "tls" => cfg.tls = Some(super::tls::tls_block(key, value)?),
            "accounts" => {
                cfg.accounts = super::accounts::accounts_block(key, value, &mut cfg.auth)?;
            }
            "system_account" | "system" => cfg.system_account = Some(text(key, value)?),
            "operator" | "operators" => {
                let trust = cfg.trust.get_or_insert_with(Default::default);
                super::operator::operators(key, value, trust)?;
            }
            "resolver" => super::operator::resolver(key, value)?,
            "resolver_preload" => preload = super::operator::preload(key, value)?,
            "allow_non_tls" => cfg.allow_non_tls = boolean(key, value)?,
            "websocket" | "ws" => cfg.websocket = Some(super::tls::websocket_block(key, value)?),
            _ if variables.contains(key) => {}
            lower => other_key(key, lower, UNSUPPORTED_TOP, HARMLESS_TOP, &mut cfg.warnings)?,
        }
    }
    match cfg.trust.as_mut() {
        Some(trust) => super::operator::accounts(&preload, trust)?,
        None if !preload.is_empty() => {
            return Err(invalid("resolver_preload", "needs a trusted operator"));
        }
        None => {}
    }
    Ok(())
}

/// A key no arm of a block's match took: harmless (a warning in `warnings`), or else an error
/// (see [`reject`]).
fn other_key(
    path: &str,
    lower: &str,
    unsupported: &[&str],
    harmless: &[&str],
    warnings: &mut Vec<String>,
) -> Result<()> {
    if harmless.contains(&lower) {
        warnings.push(format!("{path} is not implemented; ignored"));
        return Ok(());
    }
    reject(path, lower, unsupported)
}

/// A key no arm of a block's match took: not supported yet, or unknown (as nats-server).
pub(super) fn reject(path: &str, lower: &str, unsupported: &[&str]) -> Result<()> {
    let key = path.to_string();
    Err(if unsupported.contains(&lower) {
        ConfigError::Unsupported { key }
    } else {
        ConfigError::Unknown { key }
    })
}

/// `no_auth_user` must name a user of the users list (nats-server's start-up errors).
fn check_no_auth_user(auth: &AuthConfig) -> Result<()> {
    let Some(name) = &auth.no_auth_user else {
        return Ok(());
    };
    if auth.users.is_empty() {
        return Err(invalid(
            "no_auth_user",
            format!("no_auth_user: \"{name}\" present, but users/nkeys are not defined"),
        ));
    }
    if !auth
        .users
        .iter()
        .any(|u| &u.user == name || u.nkey.as_ref() == Some(name))
    {
        return Err(invalid(
            "no_auth_user",
            format!(
                "no_auth_user: \"{name}\" not present as user or nkey in authorization block or account configuration"
            ),
        ));
    }
    Ok(())
}

fn apply_authorization(cfg: &mut Config, path: &str, value: &Value) -> Result<()> {
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "user" | "username" => cfg.auth.user = Some(text(&kp, value)?),
            "password" | "pass" => cfg.auth.password = Some(text(&kp, value)?),
            "token" => cfg.auth.token = Some(text(&kp, value)?),
            "timeout" => {
                let timeout = duration(&kp, value)?;
                cfg.auth.timeout = Some(timeout);
                cfg.auth_timeout = timeout;
            }
            "users" => cfg.auth.users.extend(users(&kp, value)?),
            "default_permissions" | "default_permission" => {
                cfg.auth.default_permissions = Some(permissions(&kp, value)?);
            }
            lower => reject(&kp, lower, &["nkeys", "auth_callout", "accounts"])?,
        }
    }
    if cfg.auth.users.iter().any(|u| u.account.is_none()) {
        if cfg.auth.token.is_some() {
            return Err(invalid(path, "can not have a token and a users array"));
        }
        if cfg.auth.user.is_some() {
            return Err(invalid(
                path,
                "can not have a single user/pass and a users array",
            ));
        }
    }
    Ok(())
}

pub(super) fn users(path: &str, value: &Value) -> Result<Vec<User>> {
    let Value::Array(items) = value else {
        return Err(wrong_type(path, "an array of users", value));
    };
    let mut users = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let up = format!("{path}[{i}]");
        let mut user = User::default();
        let mut named = false;
        for (key, value) in map(&up, item)? {
            let kp = format!("{up}.{key}");
            match key.to_ascii_lowercase().as_str() {
                "user" | "username" => {
                    user.user = text(&kp, value)?;
                    named = true;
                }
                "password" | "pass" => user.password = text(&kp, value)?,
                "nkey" => {
                    let key = text(&kp, value)?;
                    if !is_user_nkey(&key) {
                        return Err(invalid(&kp, "Not a valid public nkey for a user"));
                    }
                    user.nkey = Some(key);
                    named = true;
                }
                "permissions" | "permission" => user.permissions = Some(permissions(&kp, value)?),
                "allowed_connection_types" | "connection_types" | "clients" => {
                    user.allowed_connection_types = Some(
                        subjects(&kp, value)?
                            .into_iter()
                            .map(|t| t.to_ascii_uppercase())
                            .collect(),
                    );
                }
                // An nkey user, or a user of an account, cannot be honoured yet: skipping
                // it would leave the server open to clients the file meant to keep out.
                lower => reject(&kp, lower, &["account", "proxy_required"])?,
            }
        }
        if !named {
            return Err(invalid(&format!("{up}.user"), "missing user name"));
        }
        if user.nkey.is_some() && (!user.user.is_empty() || !user.password.is_empty()) {
            return Err(invalid(&up, "an nkey user has no user name or password"));
        }
        users.push(user);
    }
    Ok(users)
}

fn permissions(path: &str, value: &Value) -> Result<Permissions> {
    let mut perms = Permissions::default();
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "publish" | "pub" => perms.publish = Some(subject_permission(&kp, value)?),
            "subscribe" | "sub" => perms.subscribe = Some(subject_permission(&kp, value)?),
            "allow_responses" | "allow_response" => {
                perms.allow_responses = response_permission(&kp, value)?;
            }
            lower => reject(&kp, lower, &[])?,
        }
    }
    Ok(perms)
}

/// `allow_responses: true | false | { max: N, expires: "1s" }`.
fn response_permission(path: &str, value: &Value) -> Result<Option<ResponsePermission>> {
    let mut rp = ResponsePermission::default();
    match value {
        Value::Bool(false) => return Ok(None),
        Value::Bool(true) => {}
        Value::Map(entries) => {
            for (key, value) in entries {
                let kp = format!("{path}.{key}");
                match key.to_ascii_lowercase().as_str() {
                    "max" | "max_msgs" | "max_messages" | "max_responses" => {
                        rp.max = count(&kp, value)?;
                        if rp.max == 0 {
                            rp.max = ResponsePermission::default().max;
                        }
                    }
                    "expires" | "expiration" | "ttl" => {
                        rp.expires = duration(&kp, value)?;
                        if rp.expires.is_zero() {
                            rp.expires = ResponsePermission::default().expires;
                        }
                    }
                    lower => reject(&kp, lower, &[])?,
                }
            }
        }
        other => return Err(wrong_type(path, "a boolean or a {max, expires} map", other)),
    }
    Ok(Some(rp))
}

/// `"subj"`, `["a", "b"]` (both meaning allow) or `{ allow: ..., deny: ... }`.
fn subject_permission(path: &str, value: &Value) -> Result<SubjectPermission> {
    let mut perm = SubjectPermission::default();
    match value {
        Value::String(_) | Value::Array(_) => perm.allow = subjects(path, value)?,
        Value::Map(entries) => {
            for (key, value) in entries {
                let kp = format!("{path}.{key}");
                match key.to_ascii_lowercase().as_str() {
                    "allow" => perm.allow = subjects(&kp, value)?,
                    "deny" => perm.deny = subjects(&kp, value)?,
                    lower => reject(&kp, lower, &[])?,
                }
            }
        }
        other => {
            return Err(wrong_type(
                path,
                "a subject, a list or an allow/deny map",
                other,
            ))
        }
    }
    Ok(perm)
}

/// A public user nkey: `U...`, valid base32 with its checksum.
fn is_user_nkey(key: &str) -> bool {
    key.starts_with('U') && nkeys::KeyPair::from_public_key(key).is_ok()
}

pub(super) fn subjects(path: &str, value: &Value) -> Result<Vec<String>> {
    let one = |path: &str, v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Value::String(_) => Err(invalid(path, "subject must not be empty")),
        other => Err(wrong_type(path, "a subject string", other)),
    };
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| one(&format!("{path}[{i}]"), v))
            .collect(),
        other => Ok(vec![one(path, other)?]),
    }
}

/// Cluster keys nats-server knows that causeway does not implement yet: TLS and route
/// permissions would protect what causeway would otherwise send in the clear or unfiltered;
/// pooling, compression and pinned accounts change the wire.
const UNSUPPORTED_CLUSTER: &[&str] = &[
    "pool_size",
    "compression",
    "accounts",
    "pinned_accounts",
    "permissions",
    "import",
    "export",
];

fn apply_cluster(cfg: &mut Config, path: &str, value: &Value) -> Result<()> {
    let cluster = cfg.cluster.get_or_insert_with(Default::default);
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "name" => cluster.name = Some(text(&kp, value)?).filter(|n| !n.is_empty()),
            "host" | "net" => cluster.host = text(&kp, value)?,
            "port" => cluster.port = port(&kp, value)?,
            "listen" => {
                let (host, port) = host_port(&kp, value)?;
                if let Some(host) = host {
                    cluster.host = host;
                }
                cluster.port = port;
            }
            "routes" => {
                let Value::Array(items) = value else {
                    return Err(wrong_type(&kp, "a list of route URLs", value));
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{kp}[{i}]");
                    let url = text(&ip, item)?;
                    if super::parse_route_url(&url).is_none() {
                        return Err(invalid(
                            &ip,
                            format!("expected nats-route://host:port, got '{url}'"),
                        ));
                    }
                    cluster.routes.push(url);
                }
            }
            "advertise" | "cluster_advertise" => {
                let adv = text(&kp, value)?;
                if split_host_port(&adv).is_none_or(|(h, _)| h.is_none()) {
                    return Err(invalid(&kp, format!("expected host:port, got '{adv}'")));
                }
                cluster.advertise = Some(adv);
            }
            "no_advertise" => cluster.no_advertise = boolean(&kp, value)?,
            "connect_retries" => cluster.connect_retries = count(&kp, value)?,
            "authorization" => cluster.auth = Some(route_auth(&kp, value)?),
            "tls" => {
                let tls = super::tls::tls_block(&kp, value)?;
                if tls.map_users {
                    // Routes are servers, not users: nothing to map a certificate to.
                    return Err(ConfigError::Unsupported {
                        key: format!("{kp}.verify_and_map"),
                    });
                }
                cluster.tls = Some(tls);
            }
            lower => reject(&kp, lower, UNSUPPORTED_CLUSTER)?,
        }
    }
    Ok(())
}

fn route_auth(path: &str, value: &Value) -> Result<super::RouteAuth> {
    let mut auth = super::RouteAuth::default();
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "user" | "username" => auth.user = text(&kp, value)?,
            "password" | "pass" => auth.password = text(&kp, value)?,
            "timeout" => auth.timeout = Some(duration(&kp, value)?),
            lower => reject(&kp, lower, &["token", "users", "nkeys", "auth_callout"])?,
        }
    }
    if auth.user.is_empty() {
        return Err(invalid(&format!("{path}.user"), "missing user name"));
    }
    Ok(auth)
}

/// JetStream keys nats-server knows that causeway does not implement yet (encryption,
/// account-level limits, cluster placement).
const UNSUPPORTED_JS: &[&str] = &[
    "key",
    "ek",
    "encryption_key",
    "prev_key",
    "prev_ek",
    "prev_encryption_key",
    "cipher",
    "tpm",
    "limits",
    "unique_tag",
];

/// JetStream tuning keys with no effect on what causeway stores or acknowledges.
const HARMLESS_JS: &[&str] = &[
    "strict",
    "max_buffered_msgs",
    "max_buffered_size",
    "request_queue_limit",
    "max_outstanding_catchup",
    "max_catchup",
    "max_ha_assets",
    "extension_hint",
    "compress_ok",
];

fn apply_jetstream(cfg: &mut Config, path: &str, value: &Value) -> Result<()> {
    let js = &mut cfg.jetstream;
    match value {
        Value::Bool(b) => js.enabled = *b,
        Value::String(s) => {
            js.enabled = match s.to_ascii_lowercase().as_str() {
                "enabled" | "enable" | "true" | "yes" | "on" => true,
                "disabled" | "disable" | "false" | "no" | "off" => false,
                _ => {
                    return Err(invalid(
                        path,
                        format!("expected enabled or disabled, got '{s}'"),
                    ))
                }
            }
        }
        Value::Map(entries) => {
            js.enabled = true;
            for (key, value) in entries {
                let kp = format!("{path}.{key}");
                match key.to_ascii_lowercase().as_str() {
                    "enabled" | "enable" => js.enabled = boolean(&kp, value)?,
                    "store_dir" | "storedir" | "store" => js.store_dir = file_path(&kp, value)?,
                    "max_mem" | "max_memory_store" | "max_mem_store" => {
                        js.max_memory = limit(&kp, value)?;
                    }
                    "max_file" | "max_file_store" => js.max_file = limit(&kp, value)?,
                    "sync" | "sync_interval" => js.sync = sync_policy(&kp, value)?,
                    "domain" => {
                        let d = text(&kp, value)?;
                        // It becomes a subject token (`$JS.<domain>.API`).
                        if d.is_empty()
                            || d.contains(['.', '*', '>'])
                            || d.contains(char::is_whitespace)
                        {
                            return Err(invalid(&kp, format!("invalid domain name: \"{d}\"")));
                        }
                        js.domain = Some(d);
                    }
                    lower => other_key(&kp, lower, UNSUPPORTED_JS, HARMLESS_JS, &mut cfg.warnings)?,
                }
            }
        }
        other => {
            return Err(wrong_type(
                path,
                "enabled, disabled, a boolean or a map",
                other,
            ))
        }
    }
    Ok(())
}

fn sync_policy(key: &str, value: &Value) -> Result<SyncPolicy> {
    let parsed = match value {
        Value::String(s) => parse_sync_policy(s),
        Value::Int(n) if *n > 0 => u64::try_from(*n)
            .ok()
            .map(|n| SyncPolicy::Interval(Duration::from_secs(n))),
        _ => None,
    };
    parsed.ok_or_else(|| invalid(key, "expected always, never or a positive duration"))
}

/// `always`, `never`, or a positive Go-style duration (an interval).
pub(crate) fn parse_sync_policy(s: &str) -> Option<SyncPolicy> {
    match s.trim().to_ascii_lowercase().as_str() {
        "always" => Some(SyncPolicy::Always),
        "never" => Some(SyncPolicy::Never),
        other => parse_duration(other)
            .filter(|d| !d.is_zero())
            .map(SyncPolicy::Interval),
    }
}

/// Parses a Go-style duration: one or more `<number><unit>` parts, units `ns`, `us` (`µs`),
/// `ms`, `s`, `m`, `h`, numbers optionally fractional: `"2m"`, `"1h30m"`, `"1.5s"`, `"100ms"`.
/// A bare `"0"` is zero. Negative or malformed durations give `None`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let s = s.trim();
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (int_part, after) = rest.split_at(digits(rest));
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(frac) => frac.split_at(digits(frac)),
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            _ => return None,
        };
        if !int_part.is_empty() {
            let whole: u128 = int_part.parse().ok()?;
            total = total.checked_add(whole.checked_mul(unit_nanos)?)?;
        }
        if !frac_part.is_empty() {
            let frac_part = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = frac_part.parse().ok()?;
            let scale = 10u128.pow(u32::try_from(frac_part.len()).ok()?);
            total = total.checked_add(frac * unit_nanos / scale)?;
        }
        rest = after;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).ok()?;
    let nanos = u32::try_from(total % NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, nanos))
}

/// A port number; `-1` means "pick a random free port" and becomes 0.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    match s.trim().parse::<i64>().ok()? {
        -1 => Some(0),
        n => u16::try_from(n).ok(),
    }
}

/// `"host:port"`, `":port"`, `"[v6]:port"` or `"port"`; the host is `None` when absent.
pub(crate) fn split_host_port(s: &str) -> Option<(Option<String>, u16)> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once("]:")?
    } else if s.matches(':').count() == 1 {
        s.split_once(':')?
    } else {
        ("", s)
    };
    let port = parse_port(port)?;
    Some(((!host.is_empty()).then(|| host.to_string()), port))
}

// ---- typed accessors: each names the offending key on error ----

pub(super) fn invalid(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        msg: msg.into(),
    }
}

pub(super) fn wrong_type(key: &str, expected: &str, got: &Value) -> ConfigError {
    invalid(key, format!("expected {expected}, got {}", got.type_name()))
}

pub(super) fn map<'a>(key: &str, value: &'a Value) -> Result<&'a [(String, Value)]> {
    value
        .as_map()
        .ok_or_else(|| wrong_type(key, "a map", value))
}

/// A string; numbers are accepted and turned back into text (`token: 12345`).
pub(super) fn text(key: &str, value: &Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        other => Err(wrong_type(key, "a string", other)),
    }
}

pub(super) fn file_path(key: &str, value: &Value) -> Result<PathBuf> {
    let p = text(key, value)?;
    if p.is_empty() {
        return Err(invalid(key, "path must not be empty"));
    }
    Ok(PathBuf::from(p))
}

pub(super) fn boolean(key: &str, value: &Value) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            _ => Err(invalid(key, format!("expected a boolean, got '{s}'"))),
        },
        other => Err(wrong_type(key, "a boolean", other)),
    }
}

/// An integer, optionally with a size suffix; strings such as `"1MB"` are accepted too.
fn size(key: &str, value: &Value) -> Result<i64> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::String(s) => {
            conf::parse_size(s).ok_or_else(|| invalid(key, format!("expected a size, got '{s}'")))
        }
        other => Err(wrong_type(key, "an integer or size", other)),
    }
}

fn positive_size(key: &str, value: &Value) -> Result<usize> {
    let n = size(key, value)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| invalid(key, format!("must be positive, got {n}")))
}

/// A storage limit: a non-negative size, or -1 for unlimited.
pub(super) fn limit(key: &str, value: &Value) -> Result<i64> {
    match size(key, value)? {
        n if n >= -1 => Ok(n),
        n => Err(invalid(
            key,
            format!("must be -1 (unlimited) or a size, got {n}"),
        )),
    }
}

fn count<T: TryFrom<i64>>(key: &str, value: &Value) -> Result<T> {
    let n = size(key, value)?;
    T::try_from(n).map_err(|_| invalid(key, format!("out of range: {n}")))
}

pub(super) fn port(key: &str, value: &Value) -> Result<u16> {
    let n = match value {
        Value::Int(n) => *n,
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| invalid(key, format!("expected a port number, got '{s}'")))?,
        other => return Err(wrong_type(key, "a port number", other)),
    };
    parse_port(&n.to_string()).ok_or_else(|| invalid(key, format!("port out of range: {n}")))
}

pub(super) fn host_port(key: &str, value: &Value) -> Result<(Option<String>, u16)> {
    match value {
        Value::Int(_) => Ok((None, port(key, value)?)),
        Value::String(s) => split_host_port(s)
            .ok_or_else(|| invalid(key, format!("expected 'host:port' or a port, got '{s}'"))),
        other => Err(wrong_type(key, "'host:port' or a port", other)),
    }
}

/// A duration: a Go-style string (`"2m"`), or a number of seconds (integer or float).
pub(super) fn duration(key: &str, value: &Value) -> Result<Duration> {
    let bad = || {
        invalid(
            key,
            "expected a duration such as \"2s\" or a number of seconds",
        )
    };
    match value {
        Value::Int(n) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| bad()),
        Value::Float(f) => Duration::try_from_secs_f64(*f).map_err(|_| bad()),
        Value::String(s) => parse_duration(s)
            .or_else(|| {
                let secs: f64 = s.trim().parse().ok()?;
                Duration::try_from_secs_f64(secs).ok()
            })
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
