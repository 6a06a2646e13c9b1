//! Turns a parsed config file (a [`Value`] tree from `conf`) into a [`Config`]: key names and
//! their aliases, value checking, durations, sizes, host/port pairs, and the `authorization`
//! and `jetstream` blocks. Key names are matched case-insensitively, like nats-server;
//! unknown keys are ignored with a warning, known keys with bad values are errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

use super::conf::{self, Value};
use super::{
    Config, ConfigError, JetStreamConfig, Permissions, SubjectPermission, SyncPolicy, User,
};

type Result<T> = std::result::Result<T, ConfigError>;

/// Parses nats-server config text and applies it on top of [`Config::default()`].
///
/// `base_dir` is where relative `include` paths are resolved.
pub fn from_conf_text(text: &str, base_dir: Option<&Path>) -> Result<Config> {
    let top = conf::parse(text, base_dir)?;
    let mut cfg = Config::default();
    apply(&mut cfg, &top)?;
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

/// Applies the keys of a parsed top-level map to `cfg`, in the order they were written.
pub(crate) fn apply(cfg: &mut Config, top: &Value) -> Result<()> {
    let entries = map("<top level>", top)?;
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
                    cfg.http_host = host;
                }
                cfg.http_port = Some(port);
            }
            "http_port" | "monitor_port" => cfg.http_port = Some(port(key, value)?),
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
            "ports_file_dir" => cfg.ports_file_dir = Some(file_path(key, value)?),
            "authorization" => apply_authorization(cfg, key, value)?,
            "jetstream" => apply_jetstream(&mut cfg.jetstream, key, value)?,
            _ => warn!(key, "ignoring unsupported configuration key"),
        }
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
            "users" => cfg.auth.users = users(&kp, value)?,
            _ => warn!(key = kp, "ignoring unsupported authorization key"),
        }
    }
    if !cfg.auth.users.is_empty() {
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

fn users(path: &str, value: &Value) -> Result<Vec<User>> {
    let Value::Array(items) = value else {
        return Err(wrong_type(path, "an array of users", value));
    };
    let mut users = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let up = format!("{path}[{i}]");
        let mut user = User::default();
        let (mut named, mut nkey) = (false, false);
        for (key, value) in map(&up, item)? {
            let kp = format!("{up}.{key}");
            match key.to_ascii_lowercase().as_str() {
                "user" | "username" => {
                    user.user = text(&kp, value)?;
                    named = true;
                }
                "password" | "pass" => user.password = text(&kp, value)?,
                "permissions" | "permission" => user.permissions = Some(permissions(&kp, value)?),
                "nkey" => nkey = true,
                _ => warn!(key = kp, "ignoring unsupported user key"),
            }
        }
        if !named {
            if nkey {
                warn!(key = up, "nkey users are not supported; skipping");
                continue;
            }
            return Err(invalid(&format!("{up}.user"), "missing user name"));
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
            _ => warn!(key = kp, "ignoring unsupported permission key"),
        }
    }
    Ok(perms)
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
                    _ => warn!(key = kp, "ignoring unsupported permission key"),
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

fn subjects(path: &str, value: &Value) -> Result<Vec<String>> {
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

fn apply_jetstream(js: &mut JetStreamConfig, path: &str, value: &Value) -> Result<()> {
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
                    "store_dir" | "storedir" => js.store_dir = file_path(&kp, value)?,
                    "max_mem" | "max_memory_store" | "max_mem_store" => {
                        js.max_memory = limit(&kp, value)?;
                    }
                    "max_file" | "max_file_store" => js.max_file = limit(&kp, value)?,
                    "sync" | "sync_interval" => js.sync = sync_policy(&kp, value)?,
                    _ => warn!(key = kp, "ignoring unsupported jetstream key"),
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

fn invalid(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        msg: msg.into(),
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> ConfigError {
    invalid(key, format!("expected {expected}, got {}", got.type_name()))
}

fn map<'a>(key: &str, value: &'a Value) -> Result<&'a [(String, Value)]> {
    value
        .as_map()
        .ok_or_else(|| wrong_type(key, "a map", value))
}

/// A string; numbers are accepted and turned back into text (`token: 12345`).
fn text(key: &str, value: &Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        other => Err(wrong_type(key, "a string", other)),
    }
}

fn file_path(key: &str, value: &Value) -> Result<PathBuf> {
    let p = text(key, value)?;
    if p.is_empty() {
        return Err(invalid(key, "path must not be empty"));
    }
    Ok(PathBuf::from(p))
}

fn boolean(key: &str, value: &Value) -> Result<bool> {
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
fn limit(key: &str, value: &Value) -> Result<i64> {
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

fn port(key: &str, value: &Value) -> Result<u16> {
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

fn host_port(key: &str, value: &Value) -> Result<(Option<String>, u16)> {
    match value {
        Value::Int(_) => Ok((None, port(key, value)?)),
        Value::String(s) => split_host_port(s)
            .ok_or_else(|| invalid(key, format!("expected 'host:port' or a port, got '{s}'"))),
        other => Err(wrong_type(key, "'host:port' or a port", other)),
    }
}

/// A duration: a Go-style string (`"2m"`), or a number of seconds (integer or float).
fn duration(key: &str, value: &Value) -> Result<Duration> {
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
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        match from_conf_text(text, None) {
            Ok(cfg) => cfg,
            Err(e) => panic!("load failed: {e}\n{text}"),
        }
    }

    /// The key named by an `Invalid` error.
    fn bad_key(text: &str) -> String {
        match from_conf_text(text, None) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid-value error, got {other:?}"),
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("0", Duration::ZERO),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("100ms", Duration::from_millis(100)),
            ("1.5s", Duration::from_millis(1500)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("250ns", Duration::from_nanos(250)),
            (".5s", Duration::from_millis(500)),
            ("+3s", Duration::from_secs(3)),
            ("1h0m0.25s", Duration::from_millis(3_600_250)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
        for bad in ["", "5", "-1s", "1x", "s", "1.s.", "1..5s", "ms10", "1 s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_when_empty() {
        assert_eq!(load("# nothing\n"), Config::default());
    }

    #[test]
    fn listen_keys() {
        let cfg = load("host: 127.0.0.1\nport: 4333");
        assert_eq!((cfg.host.as_str(), cfg.port), ("127.0.0.1", 4333));
        let cfg = load("net: '::1'\nport: -1");
        assert_eq!((cfg.host.as_str(), cfg.port), ("::1", 0));
        let cfg = load("listen: 10.0.0.1:5222");
        assert_eq!((cfg.host.as_str(), cfg.port), ("10.0.0.1", 5222));
        let cfg = load("host: h\nlisten: \":6222\"");
        assert_eq!((cfg.host.as_str(), cfg.port), ("h", 6222));
        let cfg = load("listen: 7222");
        assert_eq!(cfg.port, 7222);
        let cfg = load("listen: \"[::1]:4222\"");
        assert_eq!((cfg.host.as_str(), cfg.port), ("::1", 4222));
        let cfg = load("LISTEN: localhost:1\nPort: 2");
        assert_eq!((cfg.host.as_str(), cfg.port), ("localhost", 2));
        assert_eq!(bad_key("port: 70000"), "port");
        assert_eq!(bad_key("port: abc"), "port");
        assert_eq!(bad_key("port: true"), "port");
        assert_eq!(bad_key("listen: \"host:x\""), "listen");
        assert_eq!(bad_key("host: [1]"), "host");
    }

    #[test]
    fn name_and_monitoring() {
        let cfg = load("server_name: alpha\nhttp: 127.0.0.1:8222");
        assert_eq!(cfg.server_name.as_deref(), Some("alpha"));
        assert_eq!(
            (cfg.http_host.as_str(), cfg.http_port),
            ("127.0.0.1", Some(8222))
        );
        assert_eq!(load("name: beta").server_name.as_deref(), Some("beta"));
        assert_eq!(load("monitor: 9000").http_port, Some(9000));
        assert_eq!(load("http_port: 8223").http_port, Some(8223));
        assert_eq!(load("http_port: -1").http_port, Some(0));
        assert_eq!(bad_key("http: {}"), "http");
        assert_eq!(bad_key("http_port: 99999"), "http_port");
    }

    #[test]
    fn limits() {
        let cfg = load(
            "max_payload: 2MB\nmax_control_line: \"8KB\"\nmax_pending: 128MiB\n\
             max_connections: 100\nmax_subscriptions: 10\nping_max: 5",
        );
        assert_eq!(cfg.max_payload, 2 << 20);
        assert_eq!(cfg.max_control_line, 8 << 10);
        assert_eq!(cfg.max_pending, 128 << 20);
        assert_eq!(cfg.max_connections, 100);
        assert_eq!(cfg.max_subs, 10);
        assert_eq!(cfg.ping_max, 5);
        let cfg = load("max_conn: 7\nmax_subs: 8\nmax_payload: 1000");
        assert_eq!(
            (cfg.max_connections, cfg.max_subs, cfg.max_payload),
            (7, 8, 1000)
        );
        assert_eq!(bad_key("max_payload: 0"), "max_payload");
        assert_eq!(bad_key("max_payload: -5"), "max_payload");
        assert_eq!(bad_key("max_payload: \"lots\""), "max_payload");
        assert_eq!(bad_key("max_connections: -1"), "max_connections");
        assert_eq!(bad_key("ping_max: 1.5"), "ping_max");
    }

    #[test]
    fn timing() {
        let cfg = load(
            "ping_interval: \"30s\"\nwrite_deadline: \"2s\"\nlame_duck_duration: \"1m\"\n\
             lame_duck_grace_period: 5",
        );
        assert_eq!(cfg.ping_interval, Duration::from_secs(30));
        assert_eq!(cfg.write_deadline, Duration::from_secs(2));
        assert_eq!(cfg.lame_duck_duration, Duration::from_secs(60));
        assert_eq!(cfg.lame_duck_grace_period, Duration::from_secs(5));
        // Bare integers are seconds; unquoted `100ms` lexes as a string.
        assert_eq!(
            load("ping_interval: 20").ping_interval,
            Duration::from_secs(20)
        );
        assert_eq!(
            load("write_deadline: 100ms").write_deadline,
            Duration::from_millis(100)
        );
        assert_eq!(
            load("write_deadline: 0.5").write_deadline,
            Duration::from_millis(500)
        );
        assert_eq!(bad_key("ping_interval: \"soon\""), "ping_interval");
        assert_eq!(bad_key("ping_interval: -3"), "ping_interval");
    }

    #[test]
    fn logging_and_files() {
        let cfg = load(
            "debug: true\ntrace: on\nlog_file: /tmp/c.log\npid_file: \"/tmp/c.pid\"\n\
             ports_file_dir: /tmp",
        );
        assert!(cfg.debug && cfg.trace);
        assert_eq!(cfg.log_file, Some(PathBuf::from("/tmp/c.log")));
        assert_eq!(cfg.pid_file, Some(PathBuf::from("/tmp/c.pid")));
        assert_eq!(cfg.ports_file_dir, Some(PathBuf::from("/tmp")));
        assert!(!load("debug: \"false\"").debug);
        assert_eq!(bad_key("debug: 1"), "debug");
        assert_eq!(bad_key("trace: maybe"), "trace");
        assert_eq!(bad_key("log_file: \"\""), "log_file");
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let cfg = load("cluster { name: c }\nserver_tags: [a]\nTOKEN: x\nport: 1\nnonsense: {}");
        assert_eq!(cfg.port, 1);
    }

    #[test]
    fn single_user_and_token() {
        let cfg = load("authorization {\n  user: alice\n  password: s3cret\n  timeout: 1.5\n}");
        assert_eq!(cfg.auth.user.as_deref(), Some("alice"));
        assert_eq!(cfg.auth.password.as_deref(), Some("s3cret"));
        assert_eq!(cfg.auth.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(cfg.auth_timeout, Duration::from_millis(1500));
        assert!(cfg.auth.required());
        let cfg = load("authorization: { username = bob, pass = 'x' }");
        assert_eq!(cfg.auth.user.as_deref(), Some("bob"));
        assert_eq!(cfg.auth.password.as_deref(), Some("x"));
        let cfg = load("TOK: abc\nauthorization { token: $TOK, timeout: \"3s\" }");
        assert_eq!(cfg.auth.token.as_deref(), Some("abc"));
        assert_eq!(cfg.auth.timeout, Some(Duration::from_secs(3)));
        let cfg = load("authorization { token: 12345 }");
        assert_eq!(cfg.auth.token.as_deref(), Some("12345"));
        assert_eq!(bad_key("authorization: 5"), "authorization");
        assert_eq!(bad_key("authorization { user: [x] }"), "authorization.user");
        assert_eq!(
            bad_key("authorization { timeout: never }"),
            "authorization.timeout"
        );
    }

    #[test]
    fn users_and_permissions() {
        let text = r#"
authorization {
  users: [
    { user: admin, password: "$2a$11$abc" }
    { username: pub, pass: p, permissions: { publish: "orders.>", subscribe: ["_INBOX.>", "x"] } }
    { user: mixed, password: m, permission {
        publish { allow: ["a.*"], deny: "a.secret" }
        subscribe { deny: [">"] }
        allow_responses: true
    } }
  ]
}"#;
        let cfg = load(text);
        let users = &cfg.auth.users;
        assert_eq!(users.len(), 3);
        assert_eq!(users[0].user, "admin");
        assert_eq!(users[0].password, "$2a$11$abc");
        assert_eq!(users[0].permissions, None);
        let p1 = users[1].permissions.as_ref().unwrap();
        assert_eq!(p1.publish.as_ref().unwrap().allow, ["orders.>"]);
        assert_eq!(p1.subscribe.as_ref().unwrap().allow, ["_INBOX.>", "x"]);
        assert!(p1.subscribe.as_ref().unwrap().deny.is_empty());
        let p2 = users[2].permissions.as_ref().unwrap();
        assert_eq!(
            p2.publish,
            Some(SubjectPermission {
                allow: vec!["a.*".into()],
                deny: vec!["a.secret".into()]
            })
        );
        assert_eq!(p2.subscribe.as_ref().unwrap().deny, [">"]);
        assert!(cfg.auth.required());
    }

    #[test]
    fn bad_users_name_the_path() {
        let key = bad_key(
            "authorization { users: [ {user: a, password: b}, {user: c, password: [1]} ] }",
        );
        assert_eq!(key, "authorization.users[1].password");
        let key = bad_key("authorization { users: [ {password: b} ] }");
        assert_eq!(key, "authorization.users[0].user");
        let key = bad_key("authorization { users: [ 5 ] }");
        assert_eq!(key, "authorization.users[0]");
        let key = bad_key("authorization { users: { user: a } }");
        assert_eq!(key, "authorization.users");
        let key = bad_key("authorization { users: [ {user: a, permissions: {publish: [1]}} ] }");
        assert_eq!(key, "authorization.users[0].permissions.publish[0]");
        let key = bad_key(
            "authorization { users: [ {user: a, permissions: {subscribe: {deny: true}}} ] }",
        );
        assert_eq!(key, "authorization.users[0].permissions.subscribe.deny");
        let key = bad_key("authorization { token: t, users: [ {user: a} ] }");
        assert_eq!(key, "authorization");
        // nkey-only users are skipped with a warning.
        let cfg = load("authorization { users: [ {nkey: UABC}, {user: a, password: b} ] }");
        assert_eq!(cfg.auth.users.len(), 1);
    }

    #[test]
    fn jetstream_forms() {
        assert!(load("jetstream: enabled").jetstream.enabled);
        assert!(load("jetstream: true").jetstream.enabled);
        assert!(load("jetstream {}").jetstream.enabled);
        assert!(!load("jetstream: disabled").jetstream.enabled);
        assert!(!load("jetstream: false").jetstream.enabled);
        assert!(!load("jetstream { enabled: false }").jetstream.enabled);
        assert_eq!(bad_key("jetstream: sometimes"), "jetstream");
        assert_eq!(bad_key("jetstream: 1"), "jetstream");
    }

    #[test]
    fn jetstream_block() {
        let cfg = load(
            "jetstream {\n  store_dir: /var/lib/causeway\n  max_mem: 1G\n  max_file_store: 10GiB\n\
             \x20 sync: always\n  domain: hub\n}",
        );
        let js = &cfg.jetstream;
        assert!(js.enabled);
        assert_eq!(js.store_dir, PathBuf::from("/var/lib/causeway"));
        assert_eq!(js.max_memory, 1_000_000_000);
        assert_eq!(js.max_file, 10 << 30);
        assert_eq!(js.sync, SyncPolicy::Always);
        let js =
            load("jetstream { max_memory_store: -1, max_file: \"1MB\", sync_interval: \"2m\" }")
                .jetstream;
        assert_eq!((js.max_memory, js.max_file), (-1, 1 << 20));
        assert_eq!(js.sync, SyncPolicy::Interval(Duration::from_secs(120)));
        let js = load("jetstream { max_mem_store: 64MiB, sync: never }").jetstream;
        assert_eq!((js.max_memory, js.sync), (64 << 20, SyncPolicy::Never));
        assert_eq!(
            load("jetstream { sync: 5 }").jetstream.sync,
            SyncPolicy::Interval(Duration::from_secs(5))
        );
        assert_eq!(bad_key("jetstream { sync: \"0s\" }"), "jetstream.sync");
        assert_eq!(bad_key("jetstream { sync: sometimes }"), "jetstream.sync");
        assert_eq!(bad_key("jetstream { max_mem: -2 }"), "jetstream.max_mem");
        assert_eq!(
            bad_key("jetstream { store_dir: {} }"),
            "jetstream.store_dir"
        );
    }

    #[test]
    fn sync_policy_strings() {
        assert_eq!(parse_sync_policy("ALWAYS"), Some(SyncPolicy::Always));
        assert_eq!(parse_sync_policy("never"), Some(SyncPolicy::Never));
        assert_eq!(
            parse_sync_policy("100ms"),
            Some(SyncPolicy::Interval(Duration::from_millis(100)))
        );
        assert_eq!(parse_sync_policy("0"), None);
        assert_eq!(parse_sync_policy("often"), None);
    }

    #[test]
    fn host_port_strings() {
        assert_eq!(split_host_port("a:1"), Some((Some("a".into()), 1)));
        assert_eq!(split_host_port(":2"), Some((None, 2)));
        assert_eq!(split_host_port("3"), Some((None, 3)));
        assert_eq!(split_host_port("[::]:4"), Some((Some("::".into()), 4)));
        assert_eq!(split_host_port("h:-1"), Some((Some("h".into()), 0)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("h:65536"), None);
    }

    #[test]
    fn files_and_includes() {
        let dir = std::env::temp_dir().join(format!("causeway-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("users.conf"),
            "users: [ {user: u, password: p} ]\n",
        )
        .unwrap();
        let main = dir.join("server.conf");
        std::fs::write(
            &main,
            "port: 4999\nauthorization {\n  include users.conf\n}\n",
        )
        .unwrap();
        let cfg = from_file(&main).unwrap();
        assert_eq!(cfg.port, 4999);
        assert_eq!(cfg.auth.users[0].user, "u");
        let err = from_file(&dir.join("missing.conf")).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
        std::fs::write(&main, "port: 4999\nbroken: [\n").unwrap();
        let err = from_file(&main).unwrap_err().to_string();
        assert!(err.contains("Parse error"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
