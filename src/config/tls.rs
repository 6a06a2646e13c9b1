//! The `tls {}` and `websocket {}` blocks: [`TlsConfig`] (certificates, client verification,
//! the handshake order) and [`WebSocketConfig`] (the browser listener), with nats-server's key
//! names, defaults and texts. Keys nats-server knows that causeway does not implement are
//! errors naming them: a file asking for protection must not start without it.

use std::path::PathBuf;
use std::time::Duration;

use super::conf::Value;
use super::load::{
    boolean, duration, file_path, host_port, invalid, map, port, reject, subjects, text,
};
use super::ConfigError;

type Result<T> = std::result::Result<T, ConfigError>;

/// When the TLS handshake happens relative to the server's INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandshakeFirst {
    /// INFO in the clear first, then the client upgrades (the classic NATS order).
    #[default]
    Off,
    /// TLS before anything else (`handshake_first: true`; clients must ask for TLS-first).
    On,
    /// Wait this long for a TLS ClientHello; if none comes, send INFO and upgrade as usual
    /// (`handshake_first: "300ms"` or `"auto"`), so both kinds of client are served.
    Fallback(Duration),
}

/// How long `handshake_first: auto` waits for a ClientHello (nats-server's default).
pub const HANDSHAKE_FIRST_AUTO: Duration = Duration::from_millis(50);

/// A `tls {}` block: the server's certificate and what it asks of its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain presented by the server.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to (system roots if `None`).
    pub ca_file: Option<PathBuf>,
    /// Require and verify a client certificate.
    pub verify: bool,
    /// Also log the client in as the user its certificate names (`verify_and_map`).
    pub map_users: bool,
    /// How long the handshake may take.
    pub timeout: Duration,
    /// Handshake before or after INFO.
    pub handshake_first: HandshakeFirst,
    /// If non-empty, a client certificate's SHA-256 (of its SubjectPublicKeyInfo, lower-case
    /// hex) must be one of these.
    pub pinned_certs: Vec<String>,
    /// Refuse TLS 1.2 (`min_version: "1.3"`).
    pub tls13_only: bool,
}

impl TlsConfig {
    /// A configuration with these files and nats-server's defaults for the rest.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            ca_file: None,
            verify: false,
            map_users: false,
            timeout: Duration::from_secs(2),
            handshake_first: HandshakeFirst::Off,
            pinned_certs: Vec::new(),
            tls13_only: false,
        }
    }

    /// True when clients must present a certificate.
    pub fn verifies_clients(&self) -> bool {
        self.verify || self.map_users
    }
}

/// TLS keys nats-server knows that causeway does not implement.
const UNSUPPORTED_TLS: &[&str] = &[
    "cipher_suites",
    "curve_preferences",
    "insecure",
    "cert_store",
    "cert_match",
    "cert_match_by",
    "cert_match_skip_invalid",
    "ca_certs_match",
    "certs",
    "ocsp_peer",
    "verify_cert_and_check_known_urls",
    "connection_rate_limit",
];

/// Reads a `tls {}` block at `path`.
pub(super) fn tls_block(path: &str, value: &Value) -> Result<TlsConfig> {
    tls_block_with(path, value, true)
}

/// A `tls {}` block of a dialing side (a leaf node remote): its certificate is optional (the
/// hub may not ask for one), `ca_file` names whom to trust (else the system's roots).
pub(super) fn client_tls_block(path: &str, value: &Value) -> Result<TlsConfig> {
    tls_block_with(path, value, false)
}

fn tls_block_with(path: &str, value: &Value, need_cert: bool) -> Result<TlsConfig> {
    let mut cert = None;
    let mut key = None;
    let mut tls = TlsConfig::new("", "");
    for (k, v) in map(path, value)? {
        let kp = format!("{path}.{k}");
        match k.to_ascii_lowercase().as_str() {
            "cert_file" => cert = Some(file_path(&kp, v)?),
            "key_file" => key = Some(file_path(&kp, v)?),
            "ca_file" => tls.ca_file = Some(file_path(&kp, v)?),
            "verify" => tls.verify = boolean(&kp, v)?,
            "verify_and_map" | "map_and_verify" => tls.map_users = boolean(&kp, v)?,
            "timeout" => tls.timeout = duration(&kp, v)?,
            "handshake_first" | "first" | "tls_first" => tls.handshake_first = first(&kp, v)?,
            "pinned_certs" => {
                tls.pinned_certs = subjects(&kp, v)?
                    .into_iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect();
                if let Some(bad) = tls.pinned_certs.iter().find(|h| !is_sha256_hex(h)) {
                    return Err(invalid(
                        &kp,
                        format!("expected SHA-256 hex digests, got '{bad}'"),
                    ));
                }
            }
            "min_version" => {
                tls.tls13_only = match text(&kp, v)?.trim() {
                    "1.2" => false,
                    "1.3" => true,
                    other => {
                        return Err(invalid(&kp, format!("unsupported TLS version \"{other}\"")))
                    }
                }
            }
            lower => reject(&kp, lower, UNSUPPORTED_TLS)?,
        }
    }
    if !need_cert && cert.is_none() && key.is_none() {
        return Ok(tls);
    }
    tls.cert_file = cert.ok_or_else(|| missing_file(path, "cert_file"))?;
    tls.key_file = key.ok_or_else(|| missing_file(path, "key_file"))?;
    Ok(tls)
}

fn missing_file(path: &str, key: &str) -> ConfigError {
    invalid(&format!("{path}.{key}"), "missing certificate or key file")
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `handshake_first`: a boolean, `"auto"`, or how long to wait for a ClientHello.
fn first(key: &str, value: &Value) -> Result<HandshakeFirst> {
    if let Value::String(s) = value {
        match s.to_ascii_lowercase().as_str() {
            "auto" | "auto_fallback" => return Ok(HandshakeFirst::Fallback(HANDSHAKE_FIRST_AUTO)),
            "true" | "yes" | "on" => return Ok(HandshakeFirst::On),
            "false" | "no" | "off" => return Ok(HandshakeFirst::Off),
            _ => return Ok(HandshakeFirst::Fallback(duration(key, value)?)),
        }
    }
    Ok(if boolean(key, value)? {
        HandshakeFirst::On
    } else {
        HandshakeFirst::Off
    })
}

/// A `websocket {}` block: the listener browsers connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketConfig {
    /// Interface to bind.
    pub host: String,
    /// Port; 0 picks an ephemeral port.
    pub port: u16,
    /// Serve plain `ws://` (nats-server requires TLS unless this is set).
    pub no_tls: bool,
    /// Certificates for `wss://`.
    pub tls: Option<TlsConfig>,
    /// `compression: true`: permessage-deflate when the client offers it.
    pub compression: bool,
    /// Only accept upgrades whose `Origin` is this listener's own host and port.
    pub same_origin: bool,
    /// If non-empty, only these origins (`scheme://host[:port]`) may upgrade.
    pub allowed_origins: Vec<String>,
    /// How long the HTTP upgrade (and TLS handshake) may take.
    pub handshake_timeout: Duration,
    /// `authorization { user, password, token, timeout }`: WebSocket clients log in with
    /// these instead of the server's single user or token (the `users` list still applies).
    pub auth: Option<WsAuth>,
    /// The user a WebSocket client that sends no credentials is logged in as.
    pub no_auth_user: Option<String>,
}

/// A `websocket { authorization {} }` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WsAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub timeout: Option<Duration>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_string(),
            port: 0,
            no_tls: false,
            tls: None,
            compression: false,
            same_origin: false,
            allowed_origins: Vec::new(),
            handshake_timeout: Duration::from_secs(2),
            auth: None,
            no_auth_user: None,
        }
    }
}

impl WebSocketConfig {
    /// A plain `ws://` listener on loopback with an ephemeral port.
    pub fn loopback() -> Self {
        Self {
            host: "127.0.0.1".to_string(),
            no_tls: true,
            ..Self::default()
        }
    }
}

/// WebSocket keys nats-server knows that causeway does not implement.
const UNSUPPORTED_WS: &[&str] = &[
    "advertise",
    "jwt_cookie",
    "username_cookie",
    "password_cookie",
    "token_cookie",
    "headers",
];

/// `websocket { authorization { user, password, token, timeout } }` (nats-server's simple
/// form: no users list there).
fn ws_auth(path: &str, value: &Value) -> Result<WsAuth> {
    let mut auth = WsAuth::default();
    for (k, v) in map(path, value)? {
        let kp = format!("{path}.{k}");
        match k.to_ascii_lowercase().as_str() {
            "user" | "username" => auth.user = Some(text(&kp, v)?),
            "pass" | "password" => auth.password = Some(text(&kp, v)?),
            "token" => auth.token = Some(text(&kp, v)?),
            "timeout" => auth.timeout = Some(duration(&kp, v)?),
            lower => reject(&kp, lower, &[])?,
        }
    }
    Ok(auth)
}

/// Reads a `websocket {}` block at `path`.
pub(super) fn websocket_block(path: &str, value: &Value) -> Result<WebSocketConfig> {
    let mut ws = WebSocketConfig::default();
    let mut has_port = false;
    for (k, v) in map(path, value)? {
        let kp = format!("{path}.{k}");
        match k.to_ascii_lowercase().as_str() {
            "host" | "net" => ws.host = text(&kp, v)?,
            "port" => {
                ws.port = port(&kp, v)?;
                has_port = true;
            }
            "listen" => {
                let (host, port) = host_port(&kp, v)?;
                if let Some(host) = host {
                    ws.host = host;
                }
                ws.port = port;
                has_port = true;
            }
            "no_tls" => ws.no_tls = boolean(&kp, v)?,
            "tls" => ws.tls = Some(tls_block(&kp, v)?),
            "compression" => ws.compression = boolean(&kp, v)?,
            "same_origin" => ws.same_origin = boolean(&kp, v)?,
            "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin" | "origins"
            | "origin" => ws.allowed_origins = subjects(&kp, v)?,
            "handshake_timeout" => ws.handshake_timeout = duration(&kp, v)?,
            "authorization" | "authentication" => ws.auth = Some(ws_auth(&kp, v)?),
            "no_auth_user" => ws.no_auth_user = Some(text(&kp, v)?),
            lower => reject(&kp, lower, UNSUPPORTED_WS)?,
        }
    }
    if !has_port {
        return Err(invalid(&format!("{path}.port"), "websocket needs a port"));
    }
    if ws.tls.is_none() && !ws.no_tls {
        return Err(invalid(
            path,
            "websocket requires TLS configuration (or no_tls: true)",
        ));
    }
    Ok(ws)
}
