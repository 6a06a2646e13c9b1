//! The JSON bodies of the route handshake: the `INFO` each server sends at connect and again
//! whenever its routes change (its identity, where it is dialed, its client URLs and the
//! servers it has routes to, which is how a server given one seed route finds the others),
//! and the `CONNECT` the dialing side sends first (identity, credentials, tie-breaker).

use serde::{Deserialize, Serialize};

/// A server this one has a route to, as gossiped in [`RouteInfo::peers`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerUrl {
    /// The peer's server id.
    pub id: String,
    /// Where it is dialed (`nats-route://host:port`).
    pub url: String,
}

/// A route's `INFO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RouteInfo {
    /// The sender's server id (new at every start).
    pub server_id: String,
    /// The sender's server name.
    #[serde(default)]
    pub server_name: String,
    /// The sender's configured cluster name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Where the sender accepts routes.
    #[serde(default)]
    pub route_url: String,
    /// The sender's client URLs (`host:port`), empty with `no_advertise`.
    #[serde(default)]
    pub connect_urls: Vec<String>,
    /// The servers the sender has routes to.
    #[serde(default)]
    pub peers: Vec<PeerUrl>,
    /// The sender requires credentials in `CONNECT`.
    #[serde(default)]
    pub auth_required: bool,
    /// The sender's protocol level.
    #[serde(default)]
    pub version: String,
}

/// A route's `CONNECT`, sent by the dialing side before its `INFO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RouteConnect {
    /// The dialer's server id.
    pub server_id: String,
    /// The dialer's server name.
    #[serde(default)]
    pub name: String,
    /// The dialer's configured cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// User, when the acceptor requires credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Random per connection: orders two routes dialed by the same server, so that both ends
    /// keep the same one.
    #[serde(default)]
    pub token: u64,
}
