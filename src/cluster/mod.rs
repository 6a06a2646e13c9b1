//! Clustering, first layer: routes between the servers of one cluster for core NATS
//! messaging (no JetStream yet). Each pair of servers keeps one route, a TCP connection
//! (through the server's [`Transport`](crate::server::Transport) and outbound buffer, so it has a
//! client's write-side limits) on which each side tells the other its subscription interest
//! and forwards the messages that match it.
//!
//! Layout: [`listener`] accepts routes, [`dial`] dials configured routes (forever, with
//! bounded exponential backoff and jitter) and routes learnt from peers, [`conn`] runs one
//! route (handshake, then interest, messages and keep-alive), [`peers`] is the registry of
//! live routes (one per peer, gossip, client `connect_urls`), [`info`] the handshake JSON.
//!
//! ## The route protocol (see [`crate::protocol::route`] for the frames)
//! 1. The dialer sends `CONNECT {server_id, name, cluster, user, pass, token}` then `INFO`;
//!    the acceptor sends `INFO` at once and checks the credentials (`cluster.authorization`).
//!    `INFO` carries the server id and name, the configured cluster name (two different
//!    names refuse the route), the route URL, client URLs and the ids and URLs of the
//!    sender's other routes.
//! 2. A route to a server already connected is resolved the same way at both ends: the
//!    route whose (dialer's id, CONNECT token) is smaller is kept. A route to oneself (a
//!    routes list shared by every node) is dropped and never dialed again.
//! 3. Each side then sends `RS+ $G <subject> [<queue> 1]` for every (subject, queue) with
//!    local subscriptions, and `RS+`/`RS-` as the first subscription of a pair comes or the
//!    last goes (synchronously, so interest precedes the messages that need it).
//! 4. A message published locally goes, after local delivery, as `RMSG`/`HRMSG` to each
//!    route with matching interest, once per route, naming the queue groups that peer should
//!    serve (only groups with no member on the publishing server). A server delivers what a
//!    route brings to local subscribers only, never to another route: one hop in a full mesh.
//! 5. `INFO` is sent again whenever a server's routes change; a server that learns of a
//!    server it has no route to dials it, so a server given one seed route finds them all.
//!    Clients get an async `INFO` with the new `connect_urls`.
//! 6. `PING`/`PONG` keep the route alive (`ping_interval`, `ping_max`); a peer that does not
//!    read is cut at `max_pending` / `write_deadline` like a client.
//!
//! Raft traffic can ride on this later as ordinary messages on internal subjects (as
//! nats-server's `$NRG.>`): nothing here is specific to what the messages carry.

mod conn;
mod dial;
mod info;
mod listener;
mod peers;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::config::ClusterConfig;
use crate::server::{Shared, TlsClient, TlsServer};
use crate::Error;
use peers::Peers;

/// The cluster layer of one server: its route listener, dials and live routes.
#[derive(Clone)]
pub(crate) struct Cluster {
    inner: Arc<Inner>,
}

/// State shared by the cluster's tasks.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    config: ClusterConfig,
    /// The route listener's address.
    listen: SocketAddr,
    peers: Peers,
    /// Route TLS: the accepting and the dialing side.
    tls: Option<(Arc<TlsServer>, Arc<TlsClient>)>,
}

impl Cluster {
    /// Binds the route listener and starts accepting and dialing routes; the tasks end with
    /// the server (its shutdown token).
    pub(crate) async fn start(
        shared: Arc<Shared>,
        config: ClusterConfig,
    ) -> Result<Cluster, Error> {
        let tls = match &config.tls {
            Some(t) => {
                // Routes always verify each other's certificates (as nats-server does).
                let accept = crate::config::TlsConfig {
                    verify: true,
                    ..t.clone()
                };
                Some((TlsServer::new(&accept)?, TlsClient::new(t)?))
            }
            None => None,
        };
        let listener = crate::server::bind(&config.host, config.port).await?;
        let listen = listener.local_addr()?;
        tracing::info!("Listening for route connections on {listen}");
        if tls.is_some() {
            tracing::info!("TLS required for route connections");
        }
        let inner = Arc::new(Inner {
            tls,
            peers: Peers::new(),
            shared: shared.clone(),
            config,
            listen,
        });
        inner.publish_view();
        shared
            .tasks
            .spawn(listener::accept_loop(inner.clone(), listener));
        for url in inner.config.routes.clone() {
            shared.tasks.spawn(dial::explicit(inner.clone(), url));
        }
        Ok(Cluster { inner })
    }

    /// The route listener's address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// Number of live routes.
    pub(crate) fn num_routes(&self) -> usize {
        self.inner.peers.len()
    }

    /// The live routes.
    pub(crate) fn routes(&self) -> Vec<peers::RouteSummary> {
        self.inner.peers.summaries()
    }
}

impl Inner {
    fn my_id(&self) -> &str {
        &self.shared.server_id
    }

    /// Where other servers dial this one, as seen from a route whose local address is
    /// `local_ip`.
    fn route_url(&self, local_ip: IpAddr) -> String {
        match &self.config.advertise {
            Some(adv) => format!("nats-route://{adv}"),
            None => format!("nats-route://{}", reachable(self.listen, local_ip)),
        }
    }

    /// This server's client URL (`host:port`, as nats-server's `connect_urls`), as seen from a
    /// route whose local address is `local_ip`; `None` with `no_advertise`.
    fn client_url(&self, local_ip: Option<IpAddr>) -> Option<String> {
        if self.config.no_advertise {
            return None;
        }
        let addr = self.shared.local_addr();
        match local_ip {
            Some(ip) => Some(reachable(addr, ip).to_string()),
            None if !addr.ip().is_unspecified() => Some(addr.to_string()),
            None => None,
        }
    }
}

/// `addr`, with an unspecified IP (0.0.0.0, ::) replaced by `local_ip`.
fn reachable(addr: SocketAddr, local_ip: IpAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(local_ip, addr.port())
    } else {
        addr
    }
}
