//! The `leafnodes {}` block: a listener leaf servers connect to (this server is their hub),
//! and `remotes` this server connects to as a leaf. nats-server's keys; those causeway does
//! not implement (TLS, WebSocket and credentials on remotes, compression) are errors naming
//! the key.

use std::time::Duration;

use super::conf::Value;
use super::load::{boolean, duration, host_port, invalid, map, port, reject, text, wrong_type};
use super::{Config, ConfigError};

type Result<T> = std::result::Result<T, ConfigError>;

/// nats-server's leaf node port.
pub const DEFAULT_LEAF_PORT: u16 = 7422;

/// Leaf node settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafConfig {
    /// Listen for leaf servers (`listen`, `port`); `None`: this server only solicits.
    pub listen: Option<(String, u16)>,
    /// `host:port` leaf servers are told to reconnect to, instead of the listener's.
    pub advertise: Option<String>,
    /// Do not tell leaf servers of this server's URL.
    pub no_advertise: bool,
    /// Who may connect to the listener, and the account they are bound to.
    pub auth: Option<LeafAuth>,
    /// TLS on the listener: the hub's INFO asks for it and the leaf upgrades.
    pub tls: Option<super::TlsConfig>,
    /// Delay between attempts to reconnect a remote.
    pub reconnect: Duration,
    /// Hubs this server connects to as a leaf.
    pub remotes: Vec<LeafRemote>,
}

impl Default for LeafConfig {
    fn default() -> Self {
        Self {
            listen: None,
            advertise: None,
            no_advertise: false,
            auth: None,
            tls: None,
            reconnect: Duration::from_secs(1),
            remotes: Vec::new(),
        }
    }
}

/// `leafnodes.authorization`: one user (`user`, `password`, `account`) or a list of them
/// (`users`), and the account each one's connections are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafAuth {
    pub user: String,
    pub password: String,
    /// The account leaf connections share (default `$G`).
    pub account: Option<String>,
    /// More users, each with its own account.
    pub users: Vec<LeafUser>,
    /// How long a connecting leaf has to authenticate (default 2 s).
    pub timeout: Option<Duration>,
}

/// One of `leafnodes.authorization.users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafUser {
    pub user: String,
    pub password: String,
    /// Its connections' account (default `$G`).
    pub account: Option<String>,
}

impl LeafAuth {
    /// Every user that may log in: (user, password or bcrypt hash, account (default `$G`)).
    pub fn logins(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        let one = (!self.user.is_empty()).then_some((
            self.user.as_str(),
            self.password.as_str(),
            self.account.as_deref().unwrap_or("$G"),
        ));
        let more = self.users.iter().map(|u| {
            let account = u.account.as_deref().unwrap_or("$G");
            (u.user.as_str(), u.password.as_str(), account)
        });
        one.into_iter().chain(more)
    }

    /// Every account a user names.
    pub fn accounts(&self) -> impl Iterator<Item = &Option<String>> {
        std::iter::once(&self.account).chain(self.users.iter().map(|u| &u.account))
    }
}

/// One `leafnodes.remotes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRemote {
    /// `nats-leaf://[user:pass@]host[:port]` URLs (`nats://` too), tried in turn.
    pub urls: Vec<String>,
    /// The local account the connection is bound to (default `$G`).
    pub account: Option<String>,
    /// TLS to the hub (also used, with the system's roots, for a `tls://` URL or a hub that
    /// asks for it).
    pub tls: Option<super::TlsConfig>,
}

/// Keys of `leafnodes` nats-server knows that causeway does not implement.
const UNSUPPORTED: &[&str] = &[
    "compression",
    "min_version",
    "isolate_leafnode_interest",
    "isolate",
    "write_deadline",
    "write_timeout",
    "dial_timeout",
    "proxy_protocol",
];

/// Keys of a remote nats-server knows that causeway does not implement.
const UNSUPPORTED_REMOTE: &[&str] = &[
    "credentials",
    "creds",
    "nkey",
    "seed",
    "hub",
    "deny_imports",
    "deny_import",
    "deny_exports",
    "deny_export",
    "ws_compression",
    "ws_no_masking",
    "compression",
    "proxy",
    "request_isolation",
    "isolate_leafnode_interest",
    "jetstream_cluster_migrate",
    "first_info_timeout",
    "dial_timeout",
    "no_randomize",
    "ignore_discovered_servers",
    "disabled",
];

/// Applies `leafnodes { ... }`.
pub(super) fn apply_leafnodes(cfg: &mut Config, path: &str, value: &Value) -> Result<()> {
    let leaf = cfg.leafnodes.get_or_insert_with(Default::default);
    let mut host = None;
    let mut port_set = None;
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "host" | "net" => host = Some(text(&kp, value)?),
            "port" => port_set = Some(port(&kp, value)?),
            "listen" => {
                let (h, p) = host_port(&kp, value)?;
                host = h.or(host);
                port_set = Some(p);
            }
            "advertise" | "leafnode_advertise" => leaf.advertise = Some(text(&kp, value)?),
            "no_advertise" => leaf.no_advertise = boolean(&kp, value)?,
            "reconnect" | "reconnect_delay" | "reconnect_interval" => {
                leaf.reconnect = duration(&kp, value)?;
            }
            "authorization" => leaf.auth = Some(leaf_auth(&kp, value)?),
            "tls" => leaf.tls = Some(leaf_tls(&kp, value, true)?),
            "remotes" => {
                let Value::Array(items) = value else {
                    return Err(wrong_type(&kp, "a list of remotes", value));
                };
                for (i, item) in items.iter().enumerate() {
                    leaf.remotes.push(remote(&format!("{kp}[{i}]"), item)?);
                }
            }
            lower => reject(&kp, lower, UNSUPPORTED)?,
        }
    }
    if host.is_some() || port_set.is_some() {
        let p = port_set.unwrap_or(DEFAULT_LEAF_PORT);
        leaf.listen = Some((host.unwrap_or_else(|| "0.0.0.0".to_string()), p));
    }
    Ok(())
}

fn leaf_auth(path: &str, value: &Value) -> Result<LeafAuth> {
    let mut auth = LeafAuth {
        user: String::new(),
        password: String::new(),
        account: None,
        users: Vec::new(),
        timeout: None,
    };
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "user" | "username" => auth.user = text(&kp, value)?,
            "password" | "pass" => auth.password = text(&kp, value)?,
            "account" => auth.account = Some(text(&kp, value)?),
            "timeout" => auth.timeout = Some(duration(&kp, value)?),
            "users" => {
                let Value::Array(items) = value else {
                    return Err(wrong_type(&kp, "a list of users", value));
                };
                for (i, item) in items.iter().enumerate() {
                    auth.users.push(leaf_user(&format!("{kp}[{i}]"), item)?);
                }
            }
            lower => reject(&kp, lower, &["nkey", "proxy_required"])?,
        }
    }
    if auth.user.is_empty() && auth.users.is_empty() {
        return Err(invalid(&format!("{path}.user"), "missing user name"));
    }
    Ok(auth)
}

fn leaf_user(path: &str, value: &Value) -> Result<LeafUser> {
    let mut u = LeafUser {
        user: String::new(),
        password: String::new(),
        account: None,
    };
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "user" | "username" => u.user = text(&kp, value)?,
            "password" | "pass" => u.password = text(&kp, value)?,
            "account" => u.account = Some(text(&kp, value)?),
            lower => reject(&kp, lower, &["nkey", "proxy_required"])?,
        }
    }
    if u.user.is_empty() {
        return Err(invalid(&format!("{path}.user"), "missing user name"));
    }
    Ok(u)
}

fn remote(path: &str, value: &Value) -> Result<LeafRemote> {
    let mut remote = LeafRemote {
        urls: Vec::new(),
        account: None,
        tls: None,
    };
    for (key, value) in map(path, value)? {
        let kp = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "url" => remote.urls.push(leaf_url(&kp, &text(&kp, value)?)?),
            "urls" => {
                let Value::Array(items) = value else {
                    return Err(wrong_type(&kp, "a list of URLs", value));
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{kp}[{i}]");
                    remote.urls.push(leaf_url(&ip, &text(&ip, item)?)?);
                }
            }
            "account" | "local" => remote.account = Some(text(&kp, value)?),
            "tls" => remote.tls = Some(leaf_tls(&kp, value, false)?),
            "disabled" if !boolean(&kp, value)? => {}
            lower => reject(&kp, lower, UNSUPPORTED_REMOTE)?,
        }
    }
    if remote.urls.is_empty() {
        return Err(invalid(&format!("{path}.url"), "a remote needs a url"));
    }
    Ok(remote)
}

/// A leaf connection's `tls {}`: the listener's needs a certificate, a remote's need not;
/// TLS before INFO (`handshake_first`) is not implemented.
fn leaf_tls(path: &str, value: &Value, listener: bool) -> Result<super::TlsConfig> {
    let tls = if listener {
        super::tls::tls_block(path, value)?
    } else {
        super::tls::client_tls_block(path, value)?
    };
    if tls.handshake_first != super::HandshakeFirst::Off {
        return Err(ConfigError::Unsupported {
            key: format!("{path}.handshake_first"),
        });
    }
    if tls.map_users {
        return Err(ConfigError::Unsupported {
            key: format!("{path}.verify_and_map"),
        });
    }
    Ok(tls)
}

/// A remote's URL: `nats-leaf://`, `nats://` or `tls://` over TCP (`ws://`, `wss://` are not
/// implemented).
fn leaf_url(key: &str, url: &str) -> Result<String> {
    match parse_leaf_url(url) {
        Some(_) => Ok(url.to_string()),
        None if url.contains("://") && !url.starts_with("nats") => Err(ConfigError::Unsupported {
            key: format!("{key} ({url})"),
        }),
        None => Err(invalid(
            key,
            format!("expected nats-leaf://host:port, got '{url}'"),
        )),
    }
}

/// A leaf URL's parts: (host, port, user, password); the port defaults to 7422.
pub fn parse_leaf_url(url: &str) -> Option<(String, u16, Option<String>, Option<String>)> {
    let rest = url
        .strip_prefix("nats-leaf://")
        .or_else(|| url.strip_prefix("nats://"))
        .or_else(|| url.strip_prefix("tls://"))
        .unwrap_or(url);
    if rest.contains("://") || rest.is_empty() {
        return None;
    }
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (hostport, DEFAULT_LEAF_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    let (user, pass) = match creds.map(|c| c.split_once(':').unwrap_or((c, ""))) {
        Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
        None => (None, None),
    };
    Some((host.to_string(), port, user, pass))
}

#[cfg(test)]
mod tests {
    use super::parse_leaf_url;

    #[test]
    fn leaf_urls() {
        let p = |u| parse_leaf_url(u);
        assert_eq!(
            p("nats-leaf://h:7000"),
            Some(("h".into(), 7000, None, None))
        );
        assert_eq!(
            p("nats://u:pw@127.0.0.1"),
            Some((
                "127.0.0.1".into(),
                7422,
                Some("u".into()),
                Some("pw".into())
            ))
        );
        assert_eq!(p("tls://h:1"), Some(("h".into(), 1, None, None)));
        assert_eq!(p("ws://h:1"), None);
        assert_eq!(p("nats-leaf://"), None);
    }
}
