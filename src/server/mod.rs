//! The broker core: the client listener, client connections, subject routing and delivery. It
//! knows nothing of JetStream or monitoring: the `node` module composes them around it.
//!
//! Layout: [`client`] reads and acts on one connection, [`outbound`] buffers and writes what it
//! is sent, [`transport`] is the byte stream both run over (TCP today), `kind` says what the
//! peer is ([`ConnKind`]), [`sublist`] routes subjects to subscriptions and reports interest
//! changes, [`deliver`] fans one message out, [`auth`] checks credentials and permissions,
//! [`inproc`] is the socket-less client, `message` the owned message type they share, and
//! `remote` the core's side of cluster routes: other servers' interest, forwarding a local
//! publish to them, and local-only delivery of what a route brings (the API the cluster
//! layer uses; this module never imports it).

mod accounts;
mod auth;
mod auth_jwt;
pub mod backpressure;
mod client;
pub(crate) mod conns;
mod deliver;
pub mod inproc;
mod kind;
mod leaf;
mod message;
mod outbound;
mod remote;
mod sublist;
mod tls;
pub(crate) mod trace;
mod transport;
mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng;
use rustc_hash::FxHashMap;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::protocol::encode;
use crate::protocol::info::{ServerInfo, PROTOCOL_VERSION};
use crate::Error;
pub(crate) use auth::secret_matches;
pub use inproc::{Client, ClientError, Subscriber};
pub use kind::ConnKind;
pub(crate) use leaf::{LeafError, LeafLink, LeafPeer};
pub use message::Message;
pub use outbound::CloseReason;
pub(crate) use outbound::{writer, Outbound};
pub(crate) use remote::{Remote, RouteLink};
use sublist::Router;
pub(crate) use sublist::{InternalHandler, Subscription};
pub(crate) use tls::{TlsClient, TlsServer};
pub(crate) use transport::Transport;

/// Server-wide counters, read by monitoring.
#[derive(Default)]
pub(crate) struct Stats {
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
}

impl Stats {
    /// Messages and bytes clients have published.
    pub fn in_totals(&self) -> (u64, u64) {
        (
            self.in_msgs.load(Ordering::Relaxed),
            self.in_bytes.load(Ordering::Relaxed),
        )
    }
}

/// The cluster as clients see it in INFO.
#[derive(Default, Clone, PartialEq, Eq)]
struct ClusterView {
    name: Option<String>,
    connect_urls: Vec<String>,
}

/// State shared by every task of one server.
pub(crate) struct Shared {
    pub config: Config,
    pub server_id: String,
    pub server_name: String,
    /// The global account's subjects (`$G`: JetStream, routes, users outside `accounts {}`).
    pub router: Arc<Router>,
    /// The subjects of each account of `accounts {}`, by name.
    pub accounts: FxHashMap<String, Arc<Router>>,
    /// Who may log in and with which permissions; replaced by a config reload.
    auth: arc_swap::ArcSwap<auth::Authenticator>,
    /// WebSocket clients' authorization, when the `websocket` block overrides it.
    ws_auth: Option<arc_swap::ArcSwap<auth::Authenticator>>,
    /// Moves on every reload of the authorization: each client checks itself again.
    reloads: tokio::sync::watch::Sender<u64>,
    /// When the configuration in force was loaded (start, or the last reload).
    config_loaded: Mutex<SystemTime>,
    pub stats: Stats,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub start_time: SystemTime,
    /// Other servers' interest: `Some` exactly when a cluster is configured, so that the
    /// publish path of a single server pays one branch for routes.
    pub remote: Option<Arc<Remote>>,
    /// The client listener's TLS, when configured.
    tls: Option<Arc<tls::TlsServer>>,
    /// What clients are told of the cluster (INFO `cluster`, `connect_urls`).
    cluster_view: Mutex<ClusterView>,
    /// Open client connections and recently closed ones.
    pub conns: conns::Registry,
    /// Live leaf node connections (`/leafz`).
    pub leafs: leaf::Registry,
    next_cid: AtomicU64,
    lame_duck: AtomicBool,
    addr: SocketAddr,
    /// The WebSocket listener's address, when there is one.
    ws_addr: Option<SocketAddr>,
}

impl Shared {
    pub fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of open client connections.
    pub fn num_connections(&self) -> usize {
        self.conns.len()
    }

    /// The outbound side of every open client connection.
    fn client_outs(&self) -> Vec<Arc<Outbound>> {
        self.conns
            .open()
            .into_iter()
            .map(|m| m.out.clone())
            .collect()
    }

    /// Number of subscriptions.
    pub fn num_subscriptions(&self) -> usize {
        self.router.count() + self.accounts.values().map(|r| r.count()).sum::<usize>()
    }

    fn auth_timeout(&self) -> Duration {
        self.auth().timeout().unwrap_or(self.config.auth_timeout)
    }

    /// The authorization in force.
    pub(crate) fn auth(&self) -> Arc<auth::Authenticator> {
        self.auth.load_full()
    }

    /// The authorization a connection logs in by: the WebSocket listener's override for a
    /// browser, else the server's.
    pub(crate) fn auth_for(&self, websocket: bool) -> Arc<auth::Authenticator> {
        match (&self.ws_auth, websocket) {
            (Some(ws), true) => ws.load_full(),
            _ => self.auth(),
        }
    }

    /// Replaces the authorization (a config reload): new logins use it at once, and every
    /// connected client is checked again (logged out if it no longer may log in, its
    /// permissions replaced otherwise).
    pub(crate) fn reload_auth(&self, cfg: &Config) {
        let trust = self.config.trust.as_ref();
        self.auth
            .store(Arc::new(auth::Authenticator::new(&cfg.auth, trust)));
        if let (Some(ws), Some(ws_cfg)) = (&self.ws_auth, cfg.websocket_auth()) {
            ws.store(Arc::new(auth::Authenticator::new(&ws_cfg, trust)));
        }
        self.reloads.send_modify(|n| *n += 1);
    }

    /// When the configuration in force was loaded (`/varz` `config_load_time`).
    pub(crate) fn config_loaded(&self) -> SystemTime {
        *self.config_loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a successful reload.
    pub(crate) fn mark_reloaded(&self) {
        *self.config_loaded.lock().unwrap_or_else(|e| e.into_inner()) = SystemTime::now();
    }

    /// Notified when the authorization is reloaded.
    pub(crate) fn watch_reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// The auth timeout in seconds (how `/varz` shows it).
    pub fn auth_timeout_secs(&self) -> f64 {
        self.auth_timeout().as_secs_f64()
    }

    /// Sets what clients are told of the cluster; when it changed, every connected client
    /// gets an INFO with it (nats-server's async INFO on cluster changes).
    pub(crate) fn set_cluster_view(&self, name: Option<String>, connect_urls: Vec<String>) {
        let view = ClusterView { name, connect_urls };
        {
            let mut cur = self.cluster_view.lock().unwrap_or_else(|e| e.into_inner());
            if *cur == view {
                return;
            }
            *cur = view;
        }
        let info = serde_json::to_string(&self.base_info()).unwrap_or_default();
        let clients = self.client_outs();
        for out in clients {
            out.send(|b| encode::write_info(b, &info));
        }
    }

    /// The cluster name and client `connect_urls` clients are told (empty without a cluster).
    pub(crate) fn cluster_view(&self) -> (Option<String>, Vec<String>) {
        let view = self
            .cluster_view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (view.name, view.connect_urls)
    }

    fn base_info(&self) -> ServerInfo {
        let view = self
            .cluster_view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        ServerInfo {
            cluster: view.name,
            connect_urls: view.connect_urls,
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: PROTOCOL_VERSION.to_string(),
            go: format!("causeway {}", env!("CARGO_PKG_VERSION")),
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            headers: true,
            max_payload: self.config.max_payload,
            proto: 1,
            auth_required: self.auth().credentials_required(),
            jetstream: self.config.jetstream.enabled,
            tls_required: self.tls.is_some() && !self.config.allow_non_tls,
            tls_available: self.tls.is_some() && self.config.allow_non_tls,
            tls_verify: self
                .tls
                .as_ref()
                .is_some_and(|t| t.config().verifies_clients()),
            ldm: self.lame_duck.load(Ordering::Relaxed),
            api_lvl: crate::protocol::info::API_LEVEL,
            ..ServerInfo::default()
        }
    }

    /// The INFO JSON for one client refused at once (no nonce: it will not authenticate).
    fn info_for(&self, cid: u64, peer: &SocketAddr) -> String {
        self.info_json(cid, peer, false, None)
    }

    /// The INFO JSON for one client; over WebSocket, the client listener's TLS settings do
    /// not apply (the browser's transport is already what the WebSocket listener requires).
    fn info_json(
        &self,
        cid: u64,
        peer: &SocketAddr,
        websocket: bool,
        nonce: Option<&str>,
    ) -> String {
        let mut info = ServerInfo {
            client_id: Some(cid),
            client_ip: Some(peer.ip().to_string()),
            nonce: nonce.map(str::to_string),
            ..self.base_info()
        };
        if websocket {
            info.tls_required = false;
            info.tls_available = false;
            info.tls_verify = false;
            info.auth_required = self.auth_for(true).credentials_required();
        }
        serde_json::to_string(&info).unwrap_or_default()
    }
}

/// A server whose client listener is bound but not yet accepting: what the node starts its
/// other parts (JetStream, monitoring) against before it serves.
pub(crate) struct Bound {
    /// The server's shared state.
    pub shared: Arc<Shared>,
    listener: TcpListener,
    websocket: Option<websocket::WsListener>,
}

/// Binds the client listener and builds the server's state (nothing is accepted yet).
pub(crate) async fn bind_server(config: Config) -> Result<Bound, Error> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let tls = config.tls.as_ref().map(tls::TlsServer::new).transpose()?;
    let listener = bind(&config.host, config.port).await?;
    let addr = listener.local_addr()?;
    let websocket = match &config.websocket {
        Some(ws) => Some(websocket::WsListener::bind(ws, config.max_payload).await?),
        None => None,
    };
    let ws_addr = websocket.as_ref().map(|w| w.local_addr()).transpose()?;
    let server_id = new_server_id();
    let shared = Arc::new(Shared {
        server_name: config
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone()),
        server_id,
        router: Arc::default(),
        accounts: accounts::routers(&config),
        auth: arc_swap::ArcSwap::from_pointee(auth::Authenticator::new(
            &config.auth,
            config.trust.as_ref(),
        )),
        ws_auth: config.websocket_auth().map(|cfg| {
            arc_swap::ArcSwap::from_pointee(auth::Authenticator::new(&cfg, config.trust.as_ref()))
        }),
        reloads: tokio::sync::watch::channel(0).0,
        config_loaded: Mutex::new(SystemTime::now()),
        stats: Stats::default(),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        start_time: SystemTime::now(),
        remote: config.cluster.is_some().then(|| {
            let accounts = accounts::routers(&config);
            Arc::new(Remote::new(accounts.keys().map(String::as_str)))
        }),
        tls,
        cluster_view: Mutex::default(),
        conns: conns::Registry::new(config.max_closed_clients),
        leafs: leaf::Registry::default(),
        next_cid: AtomicU64::new(1),
        lame_duck: AtomicBool::new(false),
        addr,
        ws_addr,
        config,
    });
    Ok(Bound {
        shared,
        listener,
        websocket,
    })
}

impl Bound {
    /// Starts accepting clients.
    pub fn serve(self) -> Arc<Shared> {
        tracing::info!("Listening for client connections on {}", self.shared.addr);
        if self.shared.tls.is_some() {
            tracing::info!("TLS required for client connections");
        }
        self.shared
            .tasks
            .spawn(accept_loop(self.shared.clone(), self.listener));
        if let Some(ws) = self.websocket {
            self.shared.tasks.spawn(ws.run(self.shared.clone()));
        }
        accounts::bridge(&self.shared);
        self.shared
    }
}

impl Shared {
    /// The client listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket listener's address, if one is configured.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// First half of a stop: stop accepting, announce lame duck (INFO `ldm`), wait `grace`,
    /// then close the clients spread over `spread`.
    pub(crate) async fn close_clients(&self, grace: Duration, spread: Duration) {
        tracing::info!("Entering lame duck mode, stop accepting new clients");
        let lame_duck = !grace.is_zero() || !spread.is_zero();
        if lame_duck {
            self.conns.stopping(true);
        }
        self.lame_duck.store(true, Ordering::Relaxed);
        self.shutdown.cancel();
        let clients = self.client_outs();
        let info = serde_json::to_string(&self.base_info()).unwrap_or_default();
        for out in &clients {
            out.send(|b| encode::write_info(b, &info));
        }
        if !grace.is_zero() {
            tokio::time::sleep(grace).await;
        }
        self.conns.stopping(false);
        let pause = if clients.is_empty() {
            Duration::ZERO
        } else {
            spread.saturating_sub(grace) / clients.len() as u32
        };
        for out in &clients {
            out.close(CloseReason::ServerShutdown);
            if !pause.is_zero() {
                tokio::time::sleep(pause.min(Duration::from_secs(1))).await;
            }
        }
    }

    /// Second half of a stop: wait (bounded) for every connection task to end.
    pub(crate) async fn finish(&self) {
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10s");
        }
        tracing::info!("Server Exiting..");
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let each = shared.clone();
    accept_each(shared, listener, "client", move |stream, peer, _| {
        let shared = &each;
        let cid = shared.next_cid();
        if shared.num_connections() >= shared.config.max_connections {
            tracing::warn!(%peer, "maximum connections exceeded");
            shared
                .tasks
                .spawn(reject(shared.clone(), stream, peer, cid));
            return;
        }
        match &shared.tls {
            Some(tls) => {
                shared
                    .tasks
                    .spawn(tls::serve(shared.clone(), tls.clone(), stream, peer, cid))
            }
            None => shared.tasks.spawn(client::serve(
                shared.clone(),
                stream,
                peer,
                cid,
                client::Accepted::plain(),
            )),
        };
    })
    .await;
}

/// Tells a client over the connection limit why it is refused, then closes.
async fn reject(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, cid: u64) {
    use tokio::io::AsyncWriteExt;
    let mut buf = bytes::BytesMut::new();
    encode::write_info(&mut buf, &shared.info_for(cid, &peer));
    encode::write_err(&mut buf, "maximum connections exceeded");
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&buf).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Binds a TCP listener, naming the address in the error.
pub(crate) async fn bind(host: &str, port: u16) -> Result<TcpListener, Error> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Accepts connections on a server listener (routes, leaf nodes) until the server stops,
/// handing each with its peer and local addresses to `serve` (which spawns what runs it).
pub(crate) async fn accept_each(
    shared: Arc<Shared>,
    listener: TcpListener,
    what: &'static str,
    mut serve: impl FnMut(TcpStream, SocketAddr, SocketAddr),
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("{what} accept error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Ok(local) = stream.local_addr() {
            serve(stream, peer, local);
        }
    }
}

fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 0..55 {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}
