//! Command-line flags, mirroring nats-server's: parsing ([`Args`]), rewriting nats-server's
//! single-dash long flags (`-js`, `-sd=DIR`, `-DV`, `-port`) into a form clap understands
//! ([`normalize_args`]), and layering the flags over the config file ([`Args::into_config`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::load::{parse_duration, parse_port, parse_sync_policy};
use super::{conf, from_file, Config, ConfigError, SyncPolicy, TlsConfig};

/// The server's command-line flags. Every setting is optional: absent flags leave the
/// config file's (or the default) value alone.
#[derive(Debug, Clone, Default, PartialEq, Parser)]
#[command(
    name = "causeway",
    about = "A NATS-compatible message broker",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Args {
    /// Interface to listen on for client connections.
    #[arg(short = 'a', long = "addr", visible_alias = "net", value_name = "HOST")]
    pub addr: Option<String>,
    /// Client port (-1 picks a random free port).
    #[arg(short = 'p', long = "port", value_name = "PORT", allow_negative_numbers = true,
          value_parser = port_arg)]
    pub port: Option<u16>,
    /// Server name.
    #[arg(
        short = 'n',
        long = "name",
        visible_alias = "server_name",
        value_name = "NAME"
    )]
    pub name: Option<String>,
    /// Configuration file (nats-server syntax).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP monitoring port (-1 picks a random free port).
    #[arg(short = 'm', long = "http_port", value_name = "PORT", allow_negative_numbers = true,
          value_parser = port_arg)]
    pub http_port: Option<u16>,
    /// User required for connections.
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Password required for connections.
    #[arg(long = "pass", value_name = "PASSWORD")]
    pub pass: Option<String>,
    /// Authorization token required for connections.
    #[arg(long = "auth", value_name = "TOKEN")]
    pub auth: Option<String>,
    /// Enable JetStream (also `-js`).
    #[arg(long = "jetstream", visible_alias = "js")]
    pub jetstream: bool,
    /// JetStream storage directory (also `-sd`).
    #[arg(long = "store_dir", visible_alias = "sd", value_name = "DIR")]
    pub store_dir: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(short = 'l', long = "log", alias = "log_file", value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// PID file.
    #[arg(short = 'P', long = "pid", alias = "pid_file", value_name = "FILE")]
    pub pid: Option<PathBuf>,
    /// Enable debug logging.
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Enable protocol trace logging.
    #[arg(short = 'V', long = "trace")]
    pub trace: bool,
    /// Maximum message payload, e.g. 1MB.
    #[arg(long = "max_payload", value_name = "SIZE", value_parser = size_arg)]
    pub max_payload: Option<usize>,
    /// Interval between server PINGs, e.g. 2m.
    #[arg(long = "ping_interval", value_name = "DURATION", value_parser = duration_arg)]
    pub ping_interval: Option<Duration>,
    /// JetStream disk sync policy: always, never, or an interval such as 1s.
    #[arg(long = "sync", value_name = "always|never|DURATION", value_parser = sync_arg)]
    pub sync: Option<SyncPolicy>,
    /// Cluster (route) listener URL, e.g. nats://0.0.0.0:6222 (port -1 picks a random one).
    #[arg(long = "cluster", visible_alias = "cluster_listen", value_name = "URL",
          value_parser = cluster_arg)]
    pub cluster: Option<(Option<String>, u16)>,
    /// Cluster name.
    #[arg(long = "cluster_name", value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Routes to dial, comma separated (nats-route://host:port,...).
    #[arg(long = "routes", value_name = "URLS")]
    pub routes: Option<String>,
    /// host:port other servers dial to reach this one.
    #[arg(long = "cluster_advertise", value_name = "HOST:PORT")]
    pub cluster_advertise: Option<String>,
    /// Do not advertise this server's client URL to the cluster.
    #[arg(long = "no_advertise")]
    pub no_advertise: bool,
    /// Require TLS from clients (needs --tlscert and --tlskey).
    #[arg(long = "tls")]
    pub tls: bool,
    /// Server certificate file (PEM).
    #[arg(long = "tlscert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the server certificate (PEM).
    #[arg(long = "tlskey", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require TLS and verify client certificates.
    #[arg(long = "tlsverify")]
    pub tls_verify: bool,
    /// CA certificates client certificates must chain to (PEM).
    #[arg(long = "tlscacert", value_name = "FILE")]
    pub tls_ca_cert: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Send a signal to a running server and exit: `stop`, `quit`, `reopen`, `reload`, `ldm`
    /// or `term`, optionally `=<pid or pid file>` (`-sl`).
    #[arg(long = "signal", value_name = "SIGNAL[=PID]")]
    pub signal: Option<String>,
}

/// Long flag names nats-server accepts with a single dash: (name, canonical, takes a value).
const LONG_FLAGS: &[(&str, &str, bool)] = &[
    ("js", "jetstream", false),
    ("sl", "signal", true),
    ("signal", "signal", true),
    ("jetstream", "jetstream", false),
    ("sd", "store_dir", true),
    ("store_dir", "store_dir", true),
    ("addr", "addr", true),
    ("net", "net", true),
    ("port", "port", true),
    ("name", "name", true),
    ("server_name", "server_name", true),
    ("config", "config", true),
    ("http_port", "http_port", true),
    ("user", "user", true),
    ("pass", "pass", true),
    ("auth", "auth", true),
    ("log", "log", true),
    ("log_file", "log_file", true),
    ("pid", "pid", true),
    ("pid_file", "pid_file", true),
    ("debug", "debug", false),
    ("trace", "trace", false),
    ("max_payload", "max_payload", true),
    ("ping_interval", "ping_interval", true),
    ("sync", "sync", true),
    ("cluster", "cluster", true),
    ("cluster_listen", "cluster_listen", true),
    ("cluster_name", "cluster_name", true),
    ("routes", "routes", true),
    ("cluster_advertise", "cluster_advertise", true),
    ("no_advertise", "no_advertise", false),
    ("tls", "tls", false),
    ("tlscert", "tlscert", true),
    ("tlskey", "tlskey", true),
    ("tlsverify", "tlsverify", false),
    ("tlscacert", "tlscacert", true),
    ("version", "version", false),
    ("help", "help", false),
];

/// Short flags that take their value from the next argument.
const SHORT_VALUE_FLAGS: &[&str] = &["-a", "-p", "-n", "-c", "-m", "-l", "-P"];

/// Rewrites nats-server style arguments into clap's conventions: `-js` → `--jetstream`,
/// `-sd DIR`/`-sd=DIR` → `--store_dir ...`, `-DV`/`-VD` → `-D -V`, and any other
/// single-dash long flag (`-port 4222`, `-user x`) → its `--` form. Flag values, the program
/// name, unknown arguments and everything after `--` are left alone.
pub fn normalize_args(raw: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = raw.into_iter();
    out.extend(iter.next());
    let mut value_expected = false;
    let mut verbatim = false;
    for arg in iter {
        if verbatim || value_expected {
            value_expected = false;
            out.push(arg);
            continue;
        }
        if arg == "--" {
            verbatim = true;
            out.push(arg);
            continue;
        }
        if arg == "-DV" || arg == "-VD" {
            out.push("-D".to_string());
            out.push("-V".to_string());
            continue;
        }
        let long = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .and_then(|rest| {
                let (name, value) = match rest.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (rest, None),
                };
                let (_, canonical, takes_value) = LONG_FLAGS.iter().find(|f| f.0 == name)?;
                Some((canonical, *takes_value, value))
            });
        match long {
            Some((canonical, takes_value, value)) => {
                value_expected = takes_value && value.is_none();
                out.push(match value {
                    Some(v) => format!("--{canonical}={v}"),
                    None => format!("--{canonical}"),
                });
            }
            None => {
                value_expected = SHORT_VALUE_FLAGS.contains(&arg.as_str());
                out.push(arg);
            }
        }
    }
    out
}

impl Args {
    /// Parses the process's command line (after [`normalize_args`]).
    pub fn parse_from_env() -> Result<Args, clap::Error> {
        Self::parse_args(std::env::args_os().map(|a| a.to_string_lossy().into_owned()))
    }

    /// Parses an argument vector whose first element is the program name.
    pub fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Args, clap::Error> {
        Self::try_parse_from(normalize_args(raw))
    }

    /// Builds the configuration: the `-c` file (or the defaults), with the flags on top.
    /// As with nats-server, JetStream is on only when asked (`-js`, or a `jetstream` block).
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut cfg = match &self.config {
            Some(path) => from_file(path)?,
            None => Config::default(),
        };
        self.apply_tls(&mut cfg)?;
        if let Some(addr) = self.addr {
            cfg.host = addr;
        }
        if let Some(port) = self.port {
            cfg.port = port;
        }
        if let Some(name) = self.name {
            cfg.server_name = Some(name);
        }
        if let Some(port) = self.http_port {
            cfg.http_port = Some(port);
        }
        if let Some(user) = self.user {
            cfg.auth.user = Some(user);
        }
        if let Some(pass) = self.pass {
            cfg.auth.password = Some(pass);
        }
        if let Some(token) = self.auth {
            cfg.auth.token = Some(token);
        }
        if self.jetstream {
            cfg.jetstream.enabled = true;
        }
        if let Some(dir) = self.store_dir {
            cfg.jetstream.store_dir = dir;
        }
        if let Some(sync) = self.sync {
            cfg.jetstream.sync = sync;
        }
        if let Some(log) = self.log {
            cfg.log_file = Some(log);
        }
        if let Some(pid) = self.pid {
            cfg.pid_file = Some(pid);
        }
        cfg.debug |= self.debug;
        cfg.trace |= self.trace;
        if let Some(max_payload) = self.max_payload {
            cfg.max_payload = max_payload;
        }
        if let Some(interval) = self.ping_interval {
            cfg.ping_interval = interval;
        }
        if let Some((host, port)) = self.cluster {
            let cluster = cfg.cluster.get_or_insert_with(Default::default);
            if let Some(host) = host {
                cluster.host = host;
            }
            cluster.port = port;
        }
        let needs_cluster = |flag: &str| ConfigError::Invalid {
            key: flag.to_string(),
            msg: "needs a cluster listener (--cluster or a cluster block)".to_string(),
        };
        if let Some(name) = self.cluster_name {
            let cluster = cfg
                .cluster
                .as_mut()
                .ok_or_else(|| needs_cluster("cluster_name"))?;
            cluster.name = Some(name).filter(|n| !n.is_empty());
        }
        if let Some(routes) = self.routes {
            let cluster = cfg
                .cluster
                .as_mut()
                .ok_or_else(|| needs_cluster("routes"))?;
            cluster.routes = routes
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(adv) = self.cluster_advertise {
            let cluster = cfg
                .cluster
                .as_mut()
                .ok_or_else(|| needs_cluster("cluster_advertise"))?;
            cluster.advertise = Some(adv);
        }
        if self.no_advertise {
            let cluster = cfg
                .cluster
                .as_mut()
                .ok_or_else(|| needs_cluster("no_advertise"))?;
            cluster.no_advertise = true;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The TLS flags, over the file's `tls {}` block. Any of them turns TLS on: a flag naming
    /// a certificate must never leave the server serving plaintext.
    fn apply_tls(&self, cfg: &mut Config) -> Result<(), ConfigError> {
        let any = self.tls
            || self.tls_verify
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_ca_cert.is_some();
        if !any {
            return Ok(());
        }
        let mut tls = cfg.tls.take().unwrap_or_else(|| TlsConfig::new("", ""));
        if let Some(cert) = &self.tls_cert {
            tls.cert_file = cert.clone();
        }
        if let Some(key) = &self.tls_key {
            tls.key_file = key.clone();
        }
        if let Some(ca) = &self.tls_ca_cert {
            tls.ca_file = Some(ca.clone());
        }
        tls.verify |= self.tls_verify;
        let missing = |key: &str, what: &str| ConfigError::Invalid {
            key: key.to_string(),
            msg: format!("TLS Server {what} must be present and valid"),
        };
        if tls.cert_file.as_os_str().is_empty() {
            return Err(missing("tlscert", "certificate"));
        }
        if tls.key_file.as_os_str().is_empty() {
            return Err(missing("tlskey", "private key"));
        }
        cfg.tls = Some(tls);
        Ok(())
    }
}

fn port_arg(s: &str) -> Result<u16, String> {
    parse_port(s).ok_or_else(|| format!("invalid port '{s}' (0-65535, or -1 for random)"))
}

/// `nats://host:port`, `nats-route://host:port` or `host:port`; port -1 picks a random one.
fn cluster_arg(s: &str) -> Result<(Option<String>, u16), String> {
    let rest = ["nats-route://", "nats://", "route://"]
        .iter()
        .find_map(|p| s.trim().strip_prefix(p))
        .unwrap_or(s.trim());
    super::load::split_host_port(rest.trim_end_matches('/'))
        .ok_or_else(|| format!("invalid cluster URL '{s}' (e.g. nats://0.0.0.0:6222)"))
}

fn size_arg(s: &str) -> Result<usize, String> {
    conf::parse_size(s)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("invalid size '{s}' (e.g. 1048576, 1MB, 64KiB)"))
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .or_else(|| s.trim().parse::<u64>().ok().map(Duration::from_secs))
        .ok_or_else(|| format!("invalid duration '{s}' (e.g. 2m, 30s, 500ms)"))
}

fn sync_arg(s: &str) -> Result<SyncPolicy, String> {
    parse_sync_policy(s)
        .ok_or_else(|| format!("invalid sync policy '{s}' (always, never, or e.g. 1s)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, clap::Error> {
        Args::parse_args(list.iter().map(|s| s.to_string()))
    }

    fn ok(list: &[&str]) -> Args {
        match args(list) {
            Ok(a) => a,
            Err(e) => panic!("{list:?}: {e}"),
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn normalizes_nats_server_spellings() {
        let got = normalize_args(strings(&[
            "causeway",
            "-js",
            "-sd=/tmp/x",
            "-DV",
            "-VD",
            "-sd",
            "-js",
            "-port",
            "-1",
            "--",
            "-js",
        ]));
        let want = [
            "causeway",
            "--jetstream",
            "--store_dir=/tmp/x",
            "-D",
            "-V",
            "-D",
            "-V",
            "--store_dir",
            "-js",
            "--port",
            "-1",
            "--",
            "-js",
        ];
        assert_eq!(got, want);
        // Values of short flags and unknown arguments are untouched.
        let got = normalize_args(strings(&["x", "-n", "-js", "-p", "4222", "-D", "--user=u"]));
        assert_eq!(got, ["x", "-n", "-js", "-p", "4222", "-D", "--user=u"]);
        let got = normalize_args(strings(&["x", "é", "js", "-", "-x", "--js", "-sd="]));
        assert_eq!(
            got,
            ["x", "é", "js", "-", "-x", "--jetstream", "--store_dir="]
        );
    }

    #[test]
    fn representative_argv() {
        let a = ok(&["causeway", "-p", "-1", "-js", "-sd=/tmp/x", "-DV"]);
        assert_eq!(a.port, Some(0));
        assert!(a.jetstream && a.debug && a.trace);
        assert_eq!(a.store_dir, Some(PathBuf::from("/tmp/x")));
        let cfg = a.into_config().unwrap();
        assert_eq!(cfg.port, 0);
        assert!(cfg.jetstream.enabled && cfg.debug && cfg.trace);
        assert_eq!(cfg.jetstream.store_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn long_and_short_forms() {
        let a = ok(&[
            "causeway",
            "-a",
            "::1",
            "--port=4333",
            "-n",
            "srv",
            "-m",
            "8222",
            "-l",
            "/tmp/l",
            "-P",
            "/tmp/p",
            "--max_payload",
            "2MB",
            "--ping_interval",
            "30s",
            "--sync",
            "1s",
        ]);
        assert_eq!(a.addr.as_deref(), Some("::1"));
        assert_eq!(a.port, Some(4333));
        assert_eq!(a.name.as_deref(), Some("srv"));
        assert_eq!(a.http_port, Some(8222));
        let cfg = a.into_config().unwrap();
        assert_eq!(cfg.host, "::1");
        assert_eq!(cfg.server_name.as_deref(), Some("srv"));
        assert_eq!(cfg.http_port, Some(8222));
        assert_eq!(cfg.log_file, Some(PathBuf::from("/tmp/l")));
        assert_eq!(cfg.pid_file, Some(PathBuf::from("/tmp/p")));
        assert_eq!(cfg.max_payload, 2 << 20);
        assert_eq!(cfg.ping_interval, Duration::from_secs(30));
        assert_eq!(
            cfg.jetstream.sync,
            SyncPolicy::Interval(Duration::from_secs(1))
        );
        let a = ok(&[
            "x",
            "--addr",
            "0.0.0.0",
            "--server_name",
            "s",
            "--net",
            "h",
            "-p=5",
        ]);
        assert_eq!(
            (a.addr.as_deref(), a.name.as_deref(), a.port),
            (Some("h"), Some("s"), Some(5))
        );
        let a = ok(&[
            "x", "-port", "6", "-name", "g", "-config", "/f", "--js", "--sd", "/d",
        ]);
        assert_eq!((a.port, a.name.as_deref()), (Some(6), Some("g")));
        assert_eq!(a.config, Some(PathBuf::from("/f")));
        assert!(a.jetstream);
        assert_eq!(a.store_dir, Some(PathBuf::from("/d")));
        assert_eq!(ok(&["x", "--sync", "never"]).sync, Some(SyncPolicy::Never));
    }

    #[test]
    fn user_and_token() {
        let cfg = ok(&["causeway", "--user", "a", "--pass", "b"])
            .into_config()
            .unwrap();
        assert_eq!(cfg.auth.user.as_deref(), Some("a"));
        assert_eq!(cfg.auth.password.as_deref(), Some("b"));
        assert!(cfg.auth.required());
        let cfg = ok(&["causeway", "-auth", "tok"]).into_config().unwrap();
        assert_eq!(cfg.auth.token.as_deref(), Some("tok"));
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            &["x", "-p", "70000"][..],
            &["x", "-p", "abc"],
            &["x", "-p", "-2"],
            &["x", "-m", "nope"],
            &["x", "--max_payload", "lots"],
            &["x", "--max_payload", "0"],
            &["x", "--sync", "sometimes"],
            &["x", "--ping_interval", "soon"],
            &["x", "--no-such-flag"],
            &["x", "-p"],
        ] {
            assert!(args(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn cluster_flags() {
        let cfg = ok(&[
            "causeway",
            "-cluster",
            "nats://127.0.0.1:-1",
            "--cluster_name",
            "east",
            "-routes",
            "nats-route://10.0.0.2:6222, nats://10.0.0.3:6222",
            "--cluster_advertise",
            "east1:6222",
            "--no_advertise",
            "-n",
            "n1",
        ])
        .into_config()
        .unwrap();
        let c = cfg.cluster.expect("cluster");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 0));
        assert_eq!(c.name.as_deref(), Some("east"));
        assert_eq!(
            c.routes,
            ["nats-route://10.0.0.2:6222", "nats://10.0.0.3:6222"]
        );
        assert_eq!(c.advertise.as_deref(), Some("east1:6222"));
        assert!(c.no_advertise);
        assert_eq!(cfg.server_name.as_deref(), Some("n1"));
        let c = ok(&["x", "--cluster_listen", "nats-route://0.0.0.0:6333"])
            .into_config()
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 6333));
        // Cluster flags need a cluster listener; JetStream and a cluster refuse to start.
        for bad in [
            &["x", "--routes", "nats://h:1"][..],
            &["x", "--cluster_name", "c"],
            &["x", "--cluster", "nats://127.0.0.1:6222", "-js"],
            &[
                "x",
                "--cluster",
                "nats://127.0.0.1:6222",
                "--routes",
                "nats://nohost",
            ],
        ] {
            assert!(ok(bad).into_config().is_err(), "{bad:?}");
        }
        assert!(args(&["x", "--cluster", "nats://h:port"]).is_err());
    }

    #[test]
    fn tls_flags() {
        let cfg = ok(&[
            "x",
            "-tlsverify",
            "-tlscert",
            "s.pem",
            "--tlskey=s.key",
            "-tlscacert",
            "ca.pem",
        ])
        .into_config()
        .unwrap();
        let tls = cfg.tls.expect("tls");
        assert_eq!(tls.cert_file, PathBuf::from("s.pem"));
        assert_eq!(tls.key_file, PathBuf::from("s.key"));
        assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
        assert!(tls.verify);
        // A certificate flag alone turns TLS on; TLS without both files refuses to start.
        assert!(ok(&["x", "--tlscert", "c", "--tlskey", "k"])
            .into_config()
            .unwrap()
            .tls
            .is_some());
        for bad in [
            &["x", "--tls"][..],
            &["x", "--tls", "--tlscert", "c"],
            &["x", "--tlskey", "k"],
        ] {
            let e = ok(bad).into_config().expect_err("started without files");
            assert!(
                e.to_string().contains("must be present and valid"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn version_flag_is_a_plain_bool() {
        assert!(ok(&["causeway", "--version"]).version);
        assert!(ok(&["causeway", "-version"]).version);
        assert!(ok(&["causeway", "-v"]).version);
        assert!(!ok(&["causeway"]).version);
    }

    #[test]
    fn binary_defaults_are_nats_servers() {
        // nats-server: all interfaces, port 4222, JetStream only when asked.
        let cfg = ok(&["causeway"]).into_config().unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!((cfg.host.as_str(), cfg.port), ("0.0.0.0", 4222));
        assert!(!cfg.jetstream.enabled);
        let cfg = ok(&["causeway", "-js"]).into_config().unwrap();
        assert!(cfg.jetstream.enabled);
        assert_eq!(cfg.jetstream.store_dir, PathBuf::from("./data"));
        // -a moves the monitoring listener too, unless the config names its own host.
        let cfg = ok(&["causeway", "-a", "10.1.2.3", "-m", "8222"])
            .into_config()
            .unwrap();
        assert_eq!(cfg.monitor_host(), "10.1.2.3");
    }

    #[test]
    fn config_file_then_flags() {
        let dir = std::env::temp_dir().join(format!("causeway-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.conf");
        std::fs::write(&file, "port: 5000\nserver_name: fromfile\ndebug: true\n").unwrap();
        let path = file.to_string_lossy().into_owned();

        let cfg = ok(&["causeway", "-c", &path, "-p", "6000"])
            .into_config()
            .unwrap();
        assert_eq!(cfg.port, 6000);
        assert_eq!(cfg.server_name.as_deref(), Some("fromfile"));
        assert!(cfg.debug);
        // A config file without a jetstream block leaves JetStream off...
        assert!(!cfg.jetstream.enabled);
        // ...unless -js asks for it.
        let cfg = ok(&["causeway", "-c", &path, "-js"]).into_config().unwrap();
        assert!(cfg.jetstream.enabled);

        let missing = ok(&["causeway", "-c", "/nonexistent/causeway.conf"]).into_config();
        assert!(
            matches!(missing, Err(ConfigError::Io { .. })),
            "{missing:?}"
        );
        std::fs::write(&file, "port: [\n").unwrap();
        let err = ok(&["causeway", "-c", &path]).into_config().unwrap_err();
        assert!(err.to_string().contains("Parse error"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
