//! A causeway node: the composition root that starts the broker core ([`crate::server`]),
//! JetStream (when enabled) and HTTP monitoring around it, and stops them in order. The core
//! knows nothing of the other two; JetStream plugs into routing through an in-process client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::jetstream::{JetStream, MetaSetup};
use crate::monitor::Monitor;
use crate::server::{bind_server, Client, Shared};
use crate::Error;

/// Entry point for running a causeway server, standalone or embedded.
///
/// ```no_run
/// # async fn demo() -> Result<(), causeway::Error> {
/// let server = causeway::Server::start(causeway::Config::loopback()).await?;
/// println!("clients connect to {}", server.client_url());
/// let client = server.client();
/// let mut sub = client.subscribe("greet.*").await?;
/// client.publish("greet.joe", "hello".into()).await?;
/// let msg = sub.next().await;
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Server;

impl Server {
    /// Binds the listener, restores JetStream (off the caller's runtime thread), starts
    /// monitoring, and serves on the caller's tokio runtime.
    pub async fn start(config: Config) -> Result<ServerHandle, Error> {
        config.validate()?;
        let bound = bind_server(config).await?;
        let shared = bound.shared.clone();
        let jetstream = if shared.config.jetstream.enabled {
            let (cfg, client, name) = (
                shared.config.jetstream.clone(),
                Client::new(shared.clone()),
                shared.server_name.clone(),
            );
            let setup = shared.config.cluster.as_ref().map(|c| MetaSetup {
                cluster: c.name.clone().unwrap_or_default(),
                expected: c.expected_size(),
            });
            let started =
                tokio::task::spawn_blocking(move || JetStream::start(cfg, client, name, setup))
                    .await
                    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
            Some(started)
        } else {
            None
        };
        let account_streams = start_account_jetstreams(&shared, jetstream.is_some()).await?;
        let cluster = match shared.config.cluster.clone() {
            Some(cfg) => Some(Cluster::start(shared.clone(), cfg).await?),
            None => None,
        };
        let leafnodes = match shared.config.leafnodes.clone() {
            Some(cfg) => Some(crate::leaf::Leafnodes::start(shared.clone(), cfg).await?),
            None => None,
        };
        let (js, cl) = (jetstream.clone(), cluster.clone());
        let (monitor_addr, monitor) = match shared.config.http_port {
            Some(port) => {
                let (addr, monitor) = crate::monitor::start(shared.clone(), js, cl, port).await?;
                (Some(addr), monitor)
            }
            None => (None, Monitor::new(shared.clone(), js, cl, None)),
        };
        crate::monitor::events::start(&monitor);
        let shared = bound.serve();
        tracing::info!("Server is ready");
        Ok(ServerHandle {
            addr: shared.local_addr(),
            config: std::sync::Mutex::new(shared.config.clone()),
            shared,
            monitor_addr,
            jetstream,
            account_streams,
            cluster,
            leafnodes,
        })
    }
}

/// JetStream for each account of `accounts {}` that has it: an instance of its own (store
/// under `<store_dir>/accounts/<name>`, the account's limits) serving `$JS.API` in that
/// account. The other accounts get 10039 from `$JS.API` while the server runs JetStream.
async fn start_account_jetstreams(
    shared: &Arc<Shared>,
    enabled: bool,
) -> Result<Vec<Arc<JetStream>>, Error> {
    let mut started = Vec::new();
    if !enabled {
        return Ok(started);
    }
    for account in &shared.config.accounts {
        let Some(router) = shared.accounts.get(&account.name) else {
            continue;
        };
        let client = Client::in_account(shared.clone(), router.clone());
        let Some(cfg) = shared.config.account_jetstream(account) else {
            crate::jetstream::refuse_account(client);
            continue;
        };
        tracing::info!(account = %account.name, "Starting JetStream for account");
        let name = shared.server_name.clone();
        let js = tokio::task::spawn_blocking(move || JetStream::start(cfg, client, name, None))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        started.push(js);
    }
    if let Some(sys) = &shared.config.system_account {
        if let Some(router) = shared
            .accounts
            .get(sys)
            .filter(|_| !shared.config.accounts.iter().any(|a| &a.name == sys))
        {
            crate::jetstream::refuse_account(Client::in_account(shared.clone(), router.clone()));
        }
    }
    Ok(started)
}

/// A running server. Dropping the handle leaves the server running until the runtime stops;
/// call [`ServerHandle::shutdown`] for an orderly stop.
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    monitor_addr: Option<SocketAddr>,
    jetstream: Option<Arc<JetStream>>,
    /// JetStream of the accounts of `accounts {}` that have it.
    account_streams: Vec<Arc<JetStream>>,
    cluster: Option<Cluster>,
    leafnodes: Option<crate::leaf::Leafnodes>,
    /// The configuration in force (the last one reloaded).
    config: std::sync::Mutex<crate::Config>,
}

impl ServerHandle {
    /// Applies a newly read configuration (SIGHUP): the authorization changes at once for new
    /// logins and every connected client, which is logged out if it may no longer log in and
    /// loses the subscriptions its new permissions refuse. Returns what changed (logging
    /// changes are the embedding program's to apply), or nats-server's error for a change that
    /// needs a restart, in which case nothing changes.
    pub fn reload(&self, new: crate::Config) -> Result<Vec<String>, Error> {
        let mut current = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let changes = crate::config::reload::plan(&current, &new)?;
        if current.auth != new.auth {
            self.shared.reload_auth(&new);
        }
        for change in &changes {
            tracing::info!("Reloaded: {change}");
        }
        self.shared.mark_reloaded();
        *current = new;
        Ok(changes)
    }

    /// Address of the client listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://host:port` for clients (`tls://` when the listener requires TLS).
    pub fn client_url(&self) -> String {
        let cfg = &self.shared.config;
        let scheme = if cfg.tls.is_some() && !cfg.allow_non_tls {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// `ws://host:port` (or `wss://`) for browsers, if a WebSocket listener is configured.
    pub fn websocket_url(&self) -> Option<String> {
        let ws = self.shared.config.websocket.as_ref()?;
        let scheme = if ws.tls.is_some() { "wss" } else { "ws" };
        Some(format!("{scheme}://{}", self.shared.websocket_addr()?))
    }

    /// Address of the HTTP monitoring listener, if enabled.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.monitor_addr
    }

    /// Address of the route listener, if a cluster is configured.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster.as_ref().map(Cluster::local_addr)
    }

    /// Address of the leaf node listener, if one is configured.
    pub fn leafnode_addr(&self) -> Option<SocketAddr> {
        self.leafnodes
            .as_ref()
            .and_then(crate::leaf::Leafnodes::local_addr)
    }

    /// Number of live routes to other servers of the cluster.
    pub fn num_routes(&self) -> usize {
        self.cluster.as_ref().map_or(0, Cluster::num_routes)
    }

    /// The server's unique id (new at every start, as nats-server's).
    pub fn server_id(&self) -> &str {
        &self.shared.server_id
    }

    /// The node's persistent identity, kept in the JetStream store directory (`None` without
    /// JetStream): the same store is the same node across restarts.
    pub fn node_id(&self) -> Option<&str> {
        self.jetstream.as_deref().map(JetStream::node_id)
    }

    /// An in-process client that needs no socket.
    pub fn client(&self) -> Client {
        Client::new(self.shared.clone())
    }

    /// Number of open client connections.
    pub fn num_connections(&self) -> usize {
        self.shared.num_connections()
    }

    /// Resolves when shutdown has been requested (by [`ServerHandle::shutdown`] or lame duck).
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await
    }

    /// Graceful shutdown: stop accepting, tell clients (INFO with `ldm`), flush what is queued
    /// to them, close every connection, let every stream sync, and wait for the tasks to end.
    pub async fn shutdown(self) {
        self.stop(Duration::ZERO, Duration::ZERO).await;
    }

    /// Lame-duck mode: stop accepting, announce `ldm` to clients so they move elsewhere, wait
    /// the grace period, then close clients spread over the lame-duck duration.
    pub async fn lame_duck(self) {
        let cfg = &self.shared.config;
        let (grace, spread) = (cfg.lame_duck_grace_period, cfg.lame_duck_duration);
        self.stop(grace, spread).await;
    }

    async fn stop(self, grace: Duration, spread: Duration) {
        self.shared.close_clients(grace, spread).await;
        let all = self.jetstream.into_iter().chain(self.account_streams);
        for js in all {
            // Stream threads sync and persist before they exit.
            let _ = tokio::task::spawn_blocking(move || js.shutdown()).await;
        }
        self.shared.finish().await;
    }
}
