//! JSON bodies of `INFO` (server to client) and `CONNECT` (client to server).

use serde::{Deserialize, Serialize};

/// The protocol feature level causeway implements, reported as `version` so that clients and
/// harnesses enable the features they may use.
pub const PROTOCOL_VERSION: &str = "2.12.0";

/// The JetStream API level that version implements (nats-server 2.12's: counters, atomic
/// batches, message schedules and async persistence are level 2), reported as INFO `api_lvl`
/// and in `$JS.API` statistics.
pub const API_LEVEL: u32 = 2;

/// The `INFO` message. Field names are nats-server's.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ServerInfo {
    /// Unique id of this server instance.
    pub server_id: String,
    /// Human-readable name.
    pub server_name: String,
    /// NATS feature level (see [`PROTOCOL_VERSION`]).
    pub version: String,
    /// Implementation language/runtime, as nats-server's `go` field.
    pub go: String,
    /// Listener host.
    pub host: String,
    /// Listener port.
    pub port: u16,
    /// Headers supported.
    pub headers: bool,
    /// Maximum payload.
    pub max_payload: usize,
    /// Protocol version (1).
    pub proto: u8,
    /// Id of this client connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<u64>,
    /// Address of the client as seen by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Authentication required.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// JetStream enabled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    /// Clients must upgrade to TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// Clients must present a certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// Clients may upgrade to TLS (`allow_non_tls`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_available: bool,
    /// Name of the cluster this server belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Other URLs clients may connect to (cluster members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// Lame-duck mode: the server is going away, reconnect elsewhere.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    /// A per-connection challenge an nkey user signs (present when nkey users exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The JetStream API level ([`API_LEVEL`]).
    #[serde(default)]
    pub api_lvl: u32,
}

fn yes() -> bool {
    true
}

/// A boolean where `null` keeps the default `true` (Go's decoder leaves the field alone).
fn null_true<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// A boolean where `null` keeps the default `false`.
fn null_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// The `CONNECT` options a client sends. Omitted `verbose`, `pedantic` and `echo` default to
/// true, as in nats-server.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectOptions {
    /// Reply `+OK` to every accepted operation.
    #[serde(default = "yes", deserialize_with = "null_true")]
    pub verbose: bool,
    /// Strict subject checking on publish.
    #[serde(default = "yes", deserialize_with = "null_true")]
    pub pedantic: bool,
    /// Deliver the client's own publications to its own subscriptions.
    #[serde(default = "yes", deserialize_with = "null_true")]
    pub echo: bool,
    /// Client understands HMSG.
    #[serde(default, deserialize_with = "null_false")]
    pub headers: bool,
    /// Client wants 503 status messages when a request reaches nobody.
    #[serde(default, deserialize_with = "null_false")]
    pub no_responders: bool,
    /// Client name.
    #[serde(default)]
    pub name: Option<String>,
    /// Client language.
    #[serde(default)]
    pub lang: Option<String>,
    /// Client version.
    #[serde(default)]
    pub version: Option<String>,
    /// Protocol level.
    #[serde(default)]
    pub protocol: Option<i64>,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
    /// Password.
    #[serde(default)]
    pub pass: Option<String>,
    /// Token.
    #[serde(default)]
    pub auth_token: Option<String>,
    /// Public nkey of an nkey user.
    #[serde(default)]
    pub nkey: Option<String>,
    /// The INFO nonce signed with the nkey's seed (base64 URL encoding, unpadded).
    #[serde(default)]
    pub sig: Option<String>,
    /// User JWT (not supported yet, as `nkey`).
    #[serde(default)]
    pub jwt: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            protocol: None,
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
            jwt: None,
        }
    }
}
