//! What a connection's peer is to this server. Every connection records its [`ConnKind`] (in
//! its outbound state and its tracing span). The client listener's connections are always
//! [`ConnKind::Client`]; the cluster layer's route connections are [`ConnKind::Route`];
//! gateways and leaf nodes get their own listeners and protocol handlers later.

use std::fmt;

/// The kind of peer on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnKind {
    /// An application speaking the client protocol.
    Client,
    /// Another server of the same cluster.
    Route,
    /// A server of another cluster (super-cluster gateway).
    Gateway,
    /// A leaf node server.
    Leaf,
}

impl ConnKind {
    /// The name nats-server gives this kind in its logs and `/connz` (`"Client"`, `"Router"`,
    /// `"Gateway"`, `"Leafnode"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnKind::Client => "Client",
            ConnKind::Route => "Router",
            ConnKind::Gateway => "Gateway",
            ConnKind::Leaf => "Leafnode",
        }
    }
}

impl fmt::Display for ConnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_nats_server() {
        let names: Vec<String> = [
            ConnKind::Client,
            ConnKind::Route,
            ConnKind::Gateway,
            ConnKind::Leaf,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(names, ["Client", "Router", "Gateway", "Leafnode"]);
    }
}
