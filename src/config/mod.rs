//! Server configuration: the [`Config`] struct with nats-server's defaults, the nats-server
//! config-file syntax (`conf`), and the command-line flags (`cli`) that fill it.
//!
//! Precedence follows nats-server: defaults, then the config file, then command-line flags.

mod accounts;
pub mod cli;
pub mod conf;
mod duration;
mod leaf;
mod load;
mod operator;
pub mod reload;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

pub use accounts::{
    AccountConfig, AccountJetStream, AccountLimits, Export, Import, ShareKind, GLOBAL_ACCOUNT,
};
pub use duration::go_duration;
pub use leaf::{parse_leaf_url, LeafAuth, LeafConfig, LeafRemote, LeafUser, DEFAULT_LEAF_PORT};
pub use load::{from_conf_text, from_file, parse_duration};
pub use operator::{JwtAccount, Trust};
pub use tls::{HandshakeFirst, TlsConfig, WebSocketConfig, WsAuth, HANDSHAKE_FIRST_AUTO};

/// A parsed route URL: where to dial and the credentials it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUrl {
    /// `host:port` to dial.
    pub addr: String,
    /// User from the URL.
    pub user: Option<String>,
    /// Password from the URL.
    pub password: Option<String>,
}

/// Parses `nats-route://[user:pass@]host:port` (also `nats://`, or a bare `host:port`).
pub fn parse_route_url(url: &str) -> Option<RouteUrl> {
    let url = url.trim();
    let rest = ["nats-route://", "nats://", "route://"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
        .unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let (user, password) = match creds {
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(c.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = load::split_host_port(hostport)?;
    let host = host?;
    if port == 0 || host.contains('/') {
        return None;
    }
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some(RouteUrl {
        addr,
        user,
        password,
    })
}

/// Default client port.
pub const DEFAULT_PORT: u16 = 4222;
/// Default HTTP monitoring port when `-m` is given without a value in the config.
pub const DEFAULT_HTTP_PORT: u16 = 8222;
/// Default maximum payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Default maximum control line: 4 KiB.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// Default per-connection outbound pending limit: 64 MiB.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
/// Default cluster (route) port.
pub const DEFAULT_CLUSTER_PORT: u16 = 6222;
/// Default maximum concurrent client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;

/// Errors raised while reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("error opening config file {path}: {source}")]
    Io {
        /// The path that failed.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not valid nats-server config syntax.
    #[error("Parse error on line {line}: {msg}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A key nats-server does not know either (a typo, or a key of a newer server).
    #[error("unknown field \"{key}\"")]
    Unknown {
        /// The key, as a dotted path for nested blocks.
        key: String,
    },
    /// A key nats-server knows that causeway does not implement yet. Starting without it could
    /// serve plaintext or unauthenticated what the file asked to protect, so it is an error.
    #[error("{key} is not supported yet")]
    Unsupported {
        /// The key, as a dotted path for nested blocks.
        key: String,
    },
    /// JetStream in a cluster lacks what it needs (nats-server's texts).
    #[error("{0}")]
    ClusterJetStream(&'static str),
    /// A reload asked for a change that needs a restart (nats-server's text).
    #[error("{0}")]
    Reload(String),
    /// A key holds a value of the wrong kind or out of range.
    #[error("invalid value for '{key}': {msg}")]
    Invalid {
        /// The offending key (dotted path for nested blocks).
        key: String,
        /// What is wrong.
        msg: String,
    },
}

/// A publish or subscribe permission: subjects allowed and denied (wildcards permitted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectPermission {
    /// If non-empty, only subjects matching one of these are permitted.
    pub allow: Vec<String>,
    /// Subjects matching any of these are refused, even if allowed.
    pub deny: Vec<String>,
}

/// `allow_responses`: the user may publish to the reply subject of a message it received,
/// at most `max` times and within `expires` of the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Replies allowed per received reply subject (nats-server's default: 1).
    pub max: usize,
    /// How long after the delivery a reply is allowed (nats-server's default: 2 minutes).
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        Self {
            max: 1,
            expires: Duration::from_secs(120),
        }
    }
}

/// Per-user permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Who may publish where.
    pub publish: Option<SubjectPermission>,
    /// Who may subscribe where. An entry may name a queue group after a space
    /// (`"work.> workers"`): it then applies to subscriptions in that group only.
    pub subscribe: Option<SubjectPermission>,
    /// Replies to received requests; when set, publishing is otherwise limited to the
    /// `publish.allow` list (nothing, if there is none).
    pub allow_responses: Option<ResponsePermission>,
}

/// One entry of `authorization { users: [...] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// User name (empty for an nkey user).
    pub user: String,
    /// Public nkey (`U...`) of an nkey user, who proves it by signing the INFO nonce.
    pub nkey: Option<String>,
    /// Password, plain text or a bcrypt hash (`$2a$...`, `$2b$...`).
    pub password: String,
    /// Optional permissions; `None` means the `default_permissions` (or everything).
    pub permissions: Option<Permissions>,
    /// The account of `accounts {}` the user belongs to; `None`: the global account.
    pub account: Option<String>,
    /// `allowed_connection_types`; `None` allows every kind causeway serves. A list without
    /// `STANDARD` keeps the user off plain client connections.
    pub allowed_connection_types: Option<Vec<String>>,
}

/// Client authentication settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Single user name (`--user` / `authorization { user }`).
    pub user: Option<String>,
    /// Single user password, plain or bcrypt.
    pub password: Option<String>,
    /// Token (`--auth` / `authorization { token }`), plain or bcrypt.
    pub token: Option<String>,
    /// Multiple users with permissions.
    pub users: Vec<User>,
    /// How long a client has to send CONNECT when auth is required.
    pub timeout: Option<Duration>,
    /// Permissions of users in `users` that have none of their own.
    pub default_permissions: Option<Permissions>,
    /// The user (from `users`) a client that sends no credentials is logged in as.
    pub no_auth_user: Option<String>,
}

impl AuthConfig {
    /// True when any form of authentication is configured.
    pub fn required(&self) -> bool {
        self.user.is_some() || self.token.is_some() || !self.users.is_empty()
    }

    /// True when clients must send credentials (no `no_auth_user` to fall back on); INFO's
    /// `auth_required`.
    pub fn credentials_required(&self) -> bool {
        self.required() && self.no_auth_user.is_none()
    }
}

/// How stored data is synced to disk before a publish is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// fdatasync before every acknowledgement (group commit shares one sync).
    #[default]
    Always,
    /// Sync in the background at this interval; acks may precede the sync.
    Interval(Duration),
    /// Never sync explicitly; leave it to the OS.
    Never,
}

/// JetStream settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// Whether JetStream is enabled.
    pub enabled: bool,
    /// Where streams are stored.
    pub store_dir: PathBuf,
    /// Durability policy for file streams.
    pub sync: SyncPolicy,
    /// Memory storage limit in bytes (-1 = unlimited).
    pub max_memory: i64,
    /// File storage limit in bytes (-1 = unlimited).
    pub max_file: i64,
    /// Most streams (-1 = unlimited); an account's `jetstream { max_streams }`.
    pub max_streams: i64,
    /// Most consumers over all streams (-1 = unlimited); an account's
    /// `jetstream { max_consumers }`.
    pub max_consumers: i64,
    /// `domain`: the API also answers on `$JS.<domain>.API.>`, and pub acks and account info
    /// name it.
    pub domain: Option<String>,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            store_dir: PathBuf::from("./data"),
            sync: SyncPolicy::Always,
            max_memory: -1,
            max_file: -1,
            max_streams: -1,
            max_consumers: -1,
            domain: None,
        }
    }
}

/// Credentials routes must present (`cluster { authorization { user, password, timeout } }`);
/// outbound routes send them too, unless their URL carries its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteAuth {
    /// User name.
    pub user: String,
    /// Password (plain text or bcrypt).
    pub password: String,
    /// How long an accepted route has to send CONNECT.
    pub timeout: Option<Duration>,
}

/// Cluster settings: the route listener and the routes to dial (nats-server's `cluster` block
/// and `--cluster`, `--routes`, ... flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Cluster name; every route must carry the same. `None`: take the first peer's.
    pub name: Option<String>,
    /// Interface of the route listener.
    pub host: String,
    /// Route port; 0 picks an ephemeral port.
    pub port: u16,
    /// Route URLs to dial (`nats-route://host:port` or `nats://host:port`, credentials allowed).
    pub routes: Vec<String>,
    /// `host:port` other servers should dial to reach this one, instead of the listener's.
    pub advertise: Option<String>,
    /// Do not advertise this server's client URL to the cluster (so not to clients either).
    pub no_advertise: bool,
    /// How many times a route learnt from a peer (not configured) is retried before it is
    /// given up; configured routes are retried forever.
    pub connect_retries: u32,
    /// Route authentication.
    pub auth: Option<RouteAuth>,
    /// TLS on every route, both ways (TLS first: routes join causeway servers only). The
    /// certificate is presented when dialing too, and the listener always requires one.
    pub tls: Option<TlsConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: None,
            host: "0.0.0.0".to_string(),
            port: DEFAULT_CLUSTER_PORT,
            routes: Vec::new(),
            advertise: None,
            no_advertise: false,
            connect_retries: 0,
            auth: None,
            tls: None,
        }
    }
}

impl ClusterConfig {
    /// A cluster on loopback with an ephemeral route port: `ClusterConfig::loopback("c1")`.
    pub fn loopback(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            host: "127.0.0.1".to_string(),
            port: 0,
            ..Self::default()
        }
    }

    /// How many servers the cluster has by this configuration: the distinct routes that do
    /// not lead back to this server (same port on a local or this listener's interface), plus
    /// this server. A clustered JetStream forms its meta group once it has heard that many.
    pub fn expected_size(&self) -> usize {
        let local = |host: &str| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host == self.host
                || host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
        };
        let mut others: Vec<String> = self
            .routes
            .iter()
            .filter_map(|r| parse_route_url(r))
            .filter(|r| match r.addr.rsplit_once(':') {
                Some((host, port)) => !(port == self.port.to_string() && local(host)),
                None => true,
            })
            .map(|r| r.addr)
            .collect();
        others.sort();
        others.dedup();
        others.len() + 1
    }

    /// Adds routes to dial.
    pub fn with_routes<S: Into<String>>(mut self, routes: impl IntoIterator<Item = S>) -> Self {
        self.routes.extend(routes.into_iter().map(Into::into));
        self
    }
}

/// Everything the server needs to start. Defaults match nats-server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Interface to bind the client listener to.
    pub host: String,
    /// Client port; 0 picks an ephemeral port.
    pub port: u16,
    /// Server name reported in INFO (defaults to the server id).
    pub server_name: Option<String>,
    /// HTTP monitoring port; `None` disables monitoring, `Some(0)` picks an ephemeral port.
    pub http_port: Option<u16>,
    /// Interface for the monitoring listener; `None` uses `host`, as nats-server does.
    pub http_host: Option<String>,
    /// Maximum message payload in bytes.
    pub max_payload: usize,
    /// Maximum protocol control line in bytes.
    pub max_control_line: usize,
    /// Maximum outbound bytes buffered for one client before it is cut off as a slow consumer.
    pub max_pending: usize,
    /// Maximum time one flush to a client may take before it is cut off as a slow consumer.
    pub write_deadline: Duration,
    /// Maximum concurrent client connections.
    pub max_connections: usize,
    /// Maximum subscriptions per connection (0 = unlimited).
    pub max_subs: usize,
    /// Interval between server PINGs to each client.
    pub ping_interval: Duration,
    /// Outstanding PINGs allowed before the client is declared stale.
    pub ping_max: u32,
    /// Time a client has to authenticate when auth is required.
    pub auth_timeout: Duration,
    /// How long lame-duck mode spreads client closes over.
    pub lame_duck_duration: Duration,
    /// Grace period before lame-duck mode starts closing clients.
    pub lame_duck_grace_period: Duration,
    /// Authentication.
    pub auth: AuthConfig,
    /// JetStream.
    pub jetstream: JetStreamConfig,
    /// Cluster routes; `None` runs a single server.
    pub cluster: Option<ClusterConfig>,
    /// Leaf node connections (a listener for leaf servers, remotes to connect to as a leaf).
    pub leafnodes: Option<LeafConfig>,
    /// TLS on the client listener (`tls {}` / `--tls...`); `None` serves plain TCP.
    pub tls: Option<TlsConfig>,
    /// With `tls`, still accept clients that do not upgrade (INFO `tls_available`).
    pub allow_non_tls: bool,
    /// The WebSocket listener for browsers; `None`: none.
    pub websocket: Option<WebSocketConfig>,
    /// `accounts {}`: isolated subject spaces with their users, exports and imports.
    pub accounts: Vec<AccountConfig>,
    /// `system_account`: where system events are published and `$SYS.REQ` answered.
    pub system_account: Option<String>,
    /// Operator mode: trusted operators and their accounts (users bring JWTs).
    pub trust: Option<Trust>,
    /// Log file (`-l`); `None` logs to stderr.
    pub log_file: Option<PathBuf>,
    /// Debug logging (`-D`).
    pub debug: bool,
    /// Trace logging (`-V`).
    pub trace: bool,
    /// PID file (`-P`).
    pub pid_file: Option<PathBuf>,
    /// Directory where a `<name>_<pid>.ports` file is written.
    pub ports_file_dir: Option<PathBuf>,
    /// `logfile_size_limit`: the log file is rotated when it grows past this many bytes
    /// (0: never).
    pub log_size_limit: u64,
    /// `logfile_max_num`: rotated log files kept (0: all).
    pub log_max_files: usize,
    /// `max_closed_clients`: closed connections `/connz?state=closed` remembers.
    pub max_closed_clients: usize,
    /// What loading the configuration found worth a warning (keys ignored as harmless);
    /// [`crate::Server::start`] logs them.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_string(),
            port: DEFAULT_PORT,
            server_name: None,
            http_port: None,
            http_host: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_pending: DEFAULT_MAX_PENDING,
            write_deadline: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subs: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            auth_timeout: Duration::from_secs(2),
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            auth: AuthConfig::default(),
            jetstream: JetStreamConfig::default(),
            cluster: None,
            leafnodes: None,
            tls: None,
            allow_non_tls: false,
            websocket: None,
            accounts: Vec::new(),
            system_account: None,
            trust: None,
            log_file: None,
            debug: false,
            trace: false,
            pid_file: None,
            ports_file_dir: None,
            log_size_limit: 0,
            log_max_files: 0,
            max_closed_clients: 10_000,
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// A configuration for tests and embedding: loopback, ephemeral port, no monitoring.
    pub fn loopback() -> Self {
        Self {
            host: "127.0.0.1".to_string(),
            port: 0,
            ..Self::default()
        }
    }

    /// Turns JetStream on, with its data under `store_dir`:
    /// `Config::loopback().with_jetstream("./data")`.
    pub fn with_jetstream(mut self, store_dir: impl Into<PathBuf>) -> Self {
        self.jetstream.enabled = true;
        self.jetstream.store_dir = store_dir.into();
        self
    }

    /// Joins a cluster: `Config::loopback().with_cluster(ClusterConfig::loopback("c1"))`.
    pub fn with_cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Leaf node connections: `Config::loopback().with_leafnodes(LeafConfig { .. })`.
    pub fn with_leafnodes(mut self, leafnodes: LeafConfig) -> Self {
        self.leafnodes = Some(leafnodes);
        self
    }

    /// Checks settings that only conflict in combination (each key was checked as it was
    /// read): JetStream in a cluster needs a server name, a cluster name and routes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_leafnodes()?;
        if let (Some(cluster), true) = (&self.cluster, self.jetstream.enabled) {
            if self.server_name.as_deref().unwrap_or("").is_empty() {
                return Err(ConfigError::ClusterJetStream(
                    "jetstream cluster requires `server_name` to be set",
                ));
            }
            if cluster.name.as_deref().unwrap_or("").is_empty() {
                return Err(ConfigError::ClusterJetStream(
                    "jetstream cluster requires `cluster.name` to be set",
                ));
            }
            if cluster.routes.is_empty() {
                return Err(ConfigError::ClusterJetStream(
                    "JetStream cluster requires configured routes or solicited leafnode for the system account",
                ));
            }
        }
        if let (Some(a), Some(_)) = (
            self.accounts.iter().find(|a| a.jetstream.is_some()),
            &self.cluster,
        ) {
            // A cluster's JetStream (its meta group, placement) serves the global account.
            return Err(ConfigError::Unsupported {
                key: format!("accounts.{}.jetstream (in a cluster)", a.name),
            });
        }
        if let Some(trust) = &self.trust {
            if !self.accounts.is_empty() || self.auth.required() {
                return Err(ConfigError::Invalid {
                    key: "operator".to_string(),
                    msg: "operator mode cannot be combined with accounts or authorization"
                        .to_string(),
                });
            }
            if let Some(sys) = &self.system_account {
                if !trust.accounts.iter().any(|a| &a.key == sys) {
                    return Err(ConfigError::Invalid {
                        key: "system_account".to_string(),
                        msg: format!("system account \"{sys}\" is not in resolver_preload"),
                    });
                }
            }
        } else {
            accounts::validate(&self.accounts, self.system_account.as_deref(), &self.auth)?;
        }
        if let Some(a) = self.accounts.iter().find(|a| a.jetstream.is_some()) {
            if !self.jetstream.enabled {
                return Err(ConfigError::Invalid {
                    key: format!("accounts.{}.jetstream", a.name),
                    msg: "needs JetStream enabled on the server (-js or a jetstream block)"
                        .to_string(),
                });
            }
        }
        if let Some(cluster) = &self.cluster {
            for (i, url) in cluster.routes.iter().enumerate() {
                if parse_route_url(url).is_none() {
                    return Err(ConfigError::Invalid {
                        key: format!("cluster.routes[{i}]"),
                        msg: format!("expected nats-route://host:port, got '{url}'"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The JetStream settings of an account of `accounts {}` with `jetstream` on: its store
    /// under `<store_dir>/accounts/<name>`, the server's sync policy, the account's limits.
    pub fn account_jetstream(&self, account: &AccountConfig) -> Option<JetStreamConfig> {
        let limits = account.jetstream.as_ref()?;
        Some(JetStreamConfig {
            enabled: true,
            store_dir: self
                .jetstream
                .store_dir
                .join("accounts")
                .join(&account.name),
            sync: self.jetstream.sync,
            max_memory: limits.max_memory,
            max_file: limits.max_file,
            max_streams: limits.max_streams,
            max_consumers: limits.max_consumers,
            domain: None,
        })
    }

    /// What WebSocket clients log in with when the `websocket` block overrides the
    /// authorization (its `authorization` or `no_auth_user`): its user, password, token and
    /// timeout instead of the server's, the server's users list, and its `no_auth_user`.
    pub fn websocket_auth(&self) -> Option<AuthConfig> {
        let ws = self.websocket.as_ref()?;
        if ws.auth.is_none() && ws.no_auth_user.is_none() {
            return None;
        }
        let over = ws.auth.clone().unwrap_or_default();
        Some(AuthConfig {
            user: over.user,
            password: over.password,
            token: over.token,
            timeout: over.timeout.or(self.auth.timeout),
            no_auth_user: ws.no_auth_user.clone(),
            ..self.auth.clone()
        })
    }

    /// The interface the monitoring listener binds: `http_host`, else `host`.
    pub fn monitor_host(&self) -> &str {
        self.http_host.as_deref().unwrap_or(&self.host)
    }
}

impl Config {
    /// Leaf connections are bound to accounts that exist.
    fn validate_leafnodes(&self) -> Result<(), ConfigError> {
        let Some(leaf) = &self.leafnodes else {
            return Ok(());
        };
        // nats-server logs a leaf without its own authorization in as a client user; causeway
        // does not, so a listener that would then admit anyone is refused.
        let clients_log_in = self.auth.required() || self.trust.is_some();
        if leaf.listen.is_some() && leaf.auth.is_none() && clients_log_in {
            return Err(ConfigError::Invalid {
                key: "leafnodes.authorization".to_string(),
                msg: "required when clients must authenticate (leaf nodes are not logged in as client users)".to_string(),
            });
        }
        let auth = leaf
            .auth
            .iter()
            .flat_map(LeafAuth::accounts)
            .map(|a| ("leafnodes.authorization", a));
        let remotes = leaf
            .remotes
            .iter()
            .map(|r| ("leafnodes.remotes", &r.account));
        for (key, account) in auth.chain(remotes) {
            let Some(name) = account.as_deref().filter(|a| *a != "$G") else {
                continue;
            };
            if !self.accounts.iter().any(|a| a.name == name) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.account"),
                    msg: format!("account \"{name}\" is not defined"),
                });
            }
        }
        Ok(())
    }
}
