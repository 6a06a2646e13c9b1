//! The `accounts {}` block and `system_account`: named accounts, each an isolated subject
//! space with its own users, and the streams and services one account exports and another
//! imports (with `prefix` or `to` subject mapping). Imports are checked at load: the account
//! exists, exports a covering subject of the same kind to the importer, and no imports form a
//! cycle. An account may have JetStream of its own (`jetstream: enabled` or limits). What
//! causeway does not implement for accounts (`limits`, mappings, latency tracking,
//! `max_consumers`) is an error naming the key.

use std::collections::HashSet;

use super::conf::Value;
use super::load::{boolean, invalid, limit, map, reject, subjects, text, users, wrong_type};
use super::{AuthConfig, ConfigError};
use crate::protocol::subject;

type Result<T> = std::result::Result<T, ConfigError>;

/// The global account's name: users outside `accounts {}` and JetStream live there.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// What an export or import carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareKind {
    /// Messages published in the exporter flow to the importer.
    Stream,
    /// Requests published in the importer reach the exporter's responders; replies come back.
    Service,
}

/// One export of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Stream or service.
    pub kind: ShareKind,
    /// Subject pattern in the exporting account.
    pub subject: String,
    /// Accounts allowed to import it; empty: any account.
    pub accounts: Vec<String>,
}

/// One import of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Stream or service.
    pub kind: ShareKind,
    /// The exporting account.
    pub account: String,
    /// Subject pattern in the exporting account.
    pub subject: String,
    /// Subject pattern in the importing account: where a stream's messages land, or what
    /// the importer's clients publish requests to. Same wildcards as `subject`.
    pub local: String,
}

/// An account's `jetstream` setting: `enabled`, or its limits (-1: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountJetStream {
    /// Memory storage limit in bytes.
    pub max_memory: i64,
    /// File storage limit in bytes.
    pub max_file: i64,
    /// Most streams.
    pub max_streams: i64,
    /// Most consumers, over all its streams.
    pub max_consumers: i64,
}

impl Default for AccountJetStream {
    fn default() -> Self {
        Self {
            max_memory: -1,
            max_file: -1,
            max_streams: -1,
            max_consumers: -1,
        }
    }
}

/// An account of `accounts {}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountConfig {
    /// Its name.
    pub name: String,
    /// JetStream for this account (its own streams, store and limits); `None`: off.
    pub jetstream: Option<AccountJetStream>,
    /// What it offers other accounts.
    pub exports: Vec<Export>,
    /// What it takes from other accounts.
    pub imports: Vec<Import>,
    /// `limits { max_connections, max_subscriptions, max_payload }`.
    pub limits: AccountLimits,
}

/// An account's `limits {}` (`None`: the server's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountLimits {
    /// Connections of the account open at once, on this server.
    pub max_connections: Option<usize>,
    /// Subscriptions per connection of the account.
    pub max_subscriptions: Option<usize>,
    /// Largest message a connection of the account may publish.
    pub max_payload: Option<usize>,
}

/// Account keys nats-server knows that causeway does not implement.
const UNSUPPORTED_ACCOUNT: &[&str] = &[
    "mappings",
    "maps",
    "nkey",
    "default_permissions",
    "msg_trace",
    "trace_dest",
];

/// Reads `accounts {}`: the accounts, and their users appended to `auth.users`.
pub(super) fn accounts_block(
    path: &str,
    value: &Value,
    auth: &mut AuthConfig,
) -> Result<Vec<AccountConfig>> {
    let mut out = Vec::new();
    for (name, body) in map(path, value)? {
        let ap = format!("{path}.{name}");
        if name == GLOBAL_ACCOUNT {
            return Err(invalid(&ap, "$G is the global account's reserved name"));
        }
        // The name becomes a directory of the JetStream store.
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(invalid(&ap, "an account name cannot be a path"));
        }
        let mut account = AccountConfig {
            name: name.clone(),
            ..AccountConfig::default()
        };
        for (key, v) in map(&ap, body)? {
            let kp = format!("{ap}.{key}");
            match key.to_ascii_lowercase().as_str() {
                "users" => {
                    for mut user in users(&kp, v)? {
                        user.account = Some(name.clone());
                        auth.users.push(user);
                    }
                }
                "exports" => account.exports = list(&kp, v, export)?,
                "jetstream" | "js" => account.jetstream = account_jetstream(&kp, v)?,
                "imports" => account.imports = list(&kp, v, import)?,
                "limits" => account.limits = account_limits(&kp, v)?,
                lower => reject(&kp, lower, UNSUPPORTED_ACCOUNT)?,
            }
        }
        out.push(account);
    }
    Ok(out)
}

/// `limits { max_connections, max_subscriptions, max_payload, max_leafnodes }` (negative:
/// no limit; leaf nodes never connect, so their limit is moot).
fn account_limits(path: &str, value: &Value) -> Result<AccountLimits> {
    let mut limits = AccountLimits::default();
    for (key, v) in map(path, value)? {
        let kp = format!("{path}.{key}");
        let n = || -> Result<Option<usize>> {
            let n = limit(&kp, v)?;
            Ok(usize::try_from(n).ok())
        };
        match key.to_ascii_lowercase().as_str() {
            "max_connections" | "max_conn" => limits.max_connections = n()?,
            "max_subscriptions" | "max_subs" => limits.max_subscriptions = n()?,
            "max_payload" | "max_pay" => limits.max_payload = n()?,
            "max_leafnodes" | "max_leafs" => {
                n()?;
            }
            lower => reject(&kp, lower, &[])?,
        }
    }
    Ok(limits)
}

/// `jetstream: enabled | disabled | true | false | { max_memory, max_file, max_streams,
/// max_consumers }`.
fn account_jetstream(path: &str, value: &Value) -> Result<Option<AccountJetStream>> {
    if let Value::Map(entries) = value {
        let mut js = AccountJetStream::default();
        for (key, v) in entries {
            let kp = format!("{path}.{key}");
            match key.to_ascii_lowercase().as_str() {
                "max_memory" | "max_mem" | "mem" | "memory" => js.max_memory = limit(&kp, v)?,
                "max_file" | "max_store" | "max_disk" | "store" | "disk" => {
                    js.max_file = limit(&kp, v)?
                }
                "max_streams" | "streams" => js.max_streams = limit(&kp, v)?,
                "max_consumers" | "consumers" => js.max_consumers = limit(&kp, v)?,
                lower => reject(
                    &kp,
                    lower,
                    &[
                        "max_ack_pending",
                        "max_bytes_required",
                        "memory_max_stream_bytes",
                        "store_max_stream_bytes",
                        "cluster_traffic",
                        "tiers",
                    ],
                )?,
            }
        }
        return Ok(Some(js));
    }
    let on = match value {
        Value::String(s) if s.eq_ignore_ascii_case("enabled") => true,
        Value::String(s) if s.eq_ignore_ascii_case("disabled") => false,
        other => boolean(path, other)?,
    };
    Ok(on.then(AccountJetStream::default))
}

fn list<T>(path: &str, value: &Value, one: fn(&str, &Value) -> Result<T>) -> Result<Vec<T>> {
    let Value::Array(items) = value else {
        return Err(wrong_type(path, "a list", value));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| one(&format!("{path}[{i}]"), v))
        .collect()
}

fn checked_subject(path: &str, s: String) -> Result<String> {
    if subject::is_valid_subject(s.as_bytes()) {
        Ok(s)
    } else {
        Err(invalid(path, format!("invalid subject \"{s}\"")))
    }
}

fn export(path: &str, value: &Value) -> Result<Export> {
    let mut kind = None;
    let mut accounts = Vec::new();
    for (key, v) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "stream" => kind = Some((ShareKind::Stream, checked_subject(&kp, text(&kp, v)?)?)),
            "service" => kind = Some((ShareKind::Service, checked_subject(&kp, text(&kp, v)?)?)),
            "accounts" => accounts = subjects(&kp, v)?,
            "response" | "response_type" => {
                if !text(&kp, v)?.eq_ignore_ascii_case("singleton") {
                    return Err(ConfigError::Unsupported { key: kp });
                }
            }
            lower => reject(
                &kp,
                lower,
                &[
                    "latency",
                    "response_threshold",
                    "threshold",
                    "allow_trace",
                    "account_token_position",
                ],
            )?,
        }
    }
    let (kind, subject) =
        kind.ok_or_else(|| invalid(path, "an export needs a stream or a service"))?;
    Ok(Export {
        kind,
        subject,
        accounts,
    })
}

fn import(path: &str, value: &Value) -> Result<Import> {
    let mut source = None;
    let mut prefix = None;
    let mut to = None;
    for (key, v) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "stream" => source = Some((ShareKind::Stream, import_source(&kp, v)?)),
            "service" => source = Some((ShareKind::Service, import_source(&kp, v)?)),
            "prefix" => prefix = Some(text(&kp, v)?),
            "to" | "local_subject" => to = Some(checked_subject(&kp, text(&kp, v)?)?),
            lower => reject(&kp, lower, &["share", "allow_trace"])?,
        }
    }
    let (kind, (account, subject)) =
        source.ok_or_else(|| invalid(path, "an import needs a stream or a service"))?;
    if prefix.is_some() && kind == ShareKind::Service {
        return Err(invalid(
            &format!("{path}.prefix"),
            "a service import takes `to`, not a prefix",
        ));
    }
    let local = match (prefix, to) {
        (Some(_), Some(_)) => return Err(invalid(path, "use either `prefix` or `to`")),
        (Some(p), None) => checked_subject(&format!("{path}.prefix"), format!("{p}.{subject}"))?,
        (None, Some(t)) => t,
        (None, None) => subject.clone(),
    };
    if wildcards(&local) != wildcards(&subject) {
        return Err(invalid(
            path,
            format!("\"{local}\" must have the wildcards of \"{subject}\""),
        ));
    }
    Ok(Import {
        kind,
        account,
        subject,
        local,
    })
}

/// The wildcard tokens of a pattern, in order (`*`, `*`, `>`).
fn wildcards(s: &str) -> Vec<&str> {
    s.split('.').filter(|t| *t == "*" || *t == ">").collect()
}

/// `{ account: A, subject: "x.>" }`.
fn import_source(path: &str, value: &Value) -> Result<(String, String)> {
    let mut account = None;
    let mut subj = None;
    for (key, v) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "account" => account = Some(text(&kp, v)?),
            "subject" => subj = Some(checked_subject(&kp, text(&kp, v)?)?),
            lower => reject(&kp, lower, &[])?,
        }
    }
    match (account, subj) {
        (Some(a), Some(s)) => Ok((a, s)),
        _ => Err(invalid(path, "needs an account and a subject")),
    }
}

/// An import as a path of messages: from (account, subjects) to (account, subjects).
type Edge<'a> = ((&'a String, &'a String), (&'a String, &'a String));

/// An account on a loop of imports whose subjects overlap (a message on it would circle
/// forever), if there is one.
fn cycle<'a>(edges: &[Edge<'a>]) -> Option<&'a str> {
    let next = |i: usize| {
        let ((_, _), (to_acc, to_subj)) = edges[i];
        (0..edges.len()).filter(move |&j| {
            let ((from_acc, from_subj), _) = edges[j];
            from_acc == to_acc && subject::overlaps(to_subj, from_subj)
        })
    };
    for (start, edge) in edges.iter().enumerate() {
        let mut stack: Vec<usize> = next(start).collect();
        let mut seen = HashSet::new();
        while let Some(at) = stack.pop() {
            if at == start {
                return Some(edge.0 .0);
            }
            if seen.insert(at) {
                stack.extend(next(at));
            }
        }
    }
    None
}

/// Checks every import against the exporter's exports, that no imports with overlapping
/// subjects form a loop (a message would circle forever), and that no user name is defined
/// twice.
pub(super) fn validate(
    accounts: &[AccountConfig],
    system: Option<&str>,
    auth: &AuthConfig,
) -> Result<()> {
    let mut seen = HashSet::new();
    for u in &auth.users {
        let name = u.nkey.as_deref().unwrap_or(&u.user);
        if !seen.insert(name) {
            return Err(invalid(
                "authorization",
                format!("Duplicate user \"{name}\""),
            ));
        }
    }
    if auth.token.is_some() && auth.users.iter().any(|u| u.account.is_some()) {
        return Err(invalid(
            "authorization.token",
            "can not have a token and users in accounts",
        ));
    }
    let names: HashSet<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    if let Some(sys) = system {
        if sys != "$SYS" && !names.contains(sys) {
            return Err(invalid(
                "system_account",
                format!("system account \"{sys}\" is not defined"),
            ));
        }
    }
    // Each import is an edge a message can travel: (account, subjects) → (account, subjects).
    let mut edges: Vec<Edge<'_>> = Vec::new();
    for acc in accounts {
        for (i, imp) in acc.imports.iter().enumerate() {
            let path = format!("accounts.{}.imports[{i}]", acc.name);
            let Some(exporter) = accounts.iter().find(|a| a.name == imp.account) else {
                return Err(invalid(
                    &path,
                    format!("account \"{}\" is not defined", imp.account),
                ));
            };
            if exporter.name == acc.name {
                return Err(invalid(&path, "an account cannot import from itself"));
            }
            let allowed = exporter.exports.iter().any(|e| {
                e.kind == imp.kind
                    && subject::covers(&e.subject, &imp.subject)
                    && (e.accounts.is_empty() || e.accounts.contains(&acc.name))
            });
            if !allowed {
                return Err(invalid(
                    &path,
                    format!(
                        "account \"{}\" does not export \"{}\" to \"{}\"",
                        imp.account, imp.subject, acc.name
                    ),
                ));
            }
            // A stream's messages go exporter → importer, a service's requests importer →
            // exporter.
            edges.push(match imp.kind {
                ShareKind::Stream => ((&exporter.name, &imp.subject), (&acc.name, &imp.local)),
                ShareKind::Service => ((&acc.name, &imp.local), (&exporter.name, &imp.subject)),
            });
        }
    }
    if let Some(account) = cycle(&edges) {
        return Err(invalid(
            "accounts",
            format!("imports form a cycle through \"{account}\""),
        ));
    }
    Ok(())
}
