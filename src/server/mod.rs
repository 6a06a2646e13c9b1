//! The broker core: listeners, client connections, subject routing and delivery, and the
//! embeddable [`Server`] with its [`ServerHandle`].
//!
//! Layout: [`client`] reads and acts on one connection, [`outbound`] buffers and writes what it
//! is sent, [`sublist`] routes subjects to subscriptions, [`deliver`] fans one message out,
//! [`auth`] checks credentials and permissions, [`inproc`] is the socket-less client.

mod auth;
mod client;
mod deliver;
pub mod inproc;
mod outbound;
mod sublist;

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
pub use inproc::{Client, ClientError, Message, Subscriber};
pub use outbound::CloseReason;
use outbound::Outbound;
use sublist::Router;
pub(crate) use sublist::{InternalHandler, Subscription};

/// Server-wide counters, read by monitoring.
#[derive(Default)]
pub(crate) struct Stats {
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub total_connections: AtomicU64,
}

/// State shared by every task of one server.
pub(crate) struct Shared {
    pub config: Config,
    pub server_id: String,
    pub server_name: String,
    pub router: Router,
    pub auth: auth::Authenticator,
    pub stats: Stats,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub start_time: SystemTime,
    clients: Mutex<FxHashMap<u64, Arc<Outbound>>>,
    next_cid: AtomicU64,
    lame_duck: AtomicBool,
    addr: SocketAddr,
    jetstream: Mutex<Option<Arc<crate::jetstream::JetStream>>>,
}

impl Shared {
    pub fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed)
    }

    fn register(&self, out: &Arc<Outbound>) {
        self.lock_clients().insert(out.cid, out.clone());
        self.stats.total_connections.fetch_add(1, Ordering::Relaxed);
    }

    fn unregister(&self, cid: u64) {
        self.lock_clients().remove(&cid);
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, FxHashMap<u64, Arc<Outbound>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of open client connections.
    pub fn num_connections(&self) -> usize {
        self.lock_clients().len()
    }

    /// Number of JetStream streams.
    pub fn num_streams(&self) -> usize {
        self.jetstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |js| js.num_streams())
    }

    /// Number of subscriptions.
    pub fn num_subscriptions(&self) -> usize {
        self.router.count()
    }

    fn auth_timeout(&self) -> Duration {
        self.config.auth.timeout.unwrap_or(self.config.auth_timeout)
    }

    fn base_info(&self) -> ServerInfo {
        ServerInfo {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: PROTOCOL_VERSION.to_string(),
            go: format!("causeway {}", env!("CARGO_PKG_VERSION")),
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            headers: true,
            max_payload: self.config.max_payload,
            proto: 1,
            auth_required: self.auth.credentials_required(),
            jetstream: self.config.jetstream.enabled,
            ldm: self.lame_duck.load(Ordering::Relaxed),
            ..ServerInfo::default()
        }
    }

    /// The INFO JSON for one client.
    fn info_for(&self, cid: u64, peer: &SocketAddr) -> String {
        let info = ServerInfo {
            client_id: Some(cid),
            client_ip: Some(peer.ip().to_string()),
            ..self.base_info()
        };
        serde_json::to_string(&info).unwrap_or_default()
    }
}

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
    /// Binds the listener and starts serving on the caller's tokio runtime.
    pub async fn start(config: Config) -> Result<ServerHandle, Error> {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let listener = bind(&config.host, config.port).await?;
        let addr = listener.local_addr()?;
        let server_id = new_server_id();
        let shared = Arc::new(Shared {
            server_name: config
                .server_name
                .clone()
                .unwrap_or_else(|| server_id.clone()),
            server_id,
            router: Router::default(),
            auth: auth::Authenticator::new(&config.auth),
            stats: Stats::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            start_time: SystemTime::now(),
            clients: Mutex::default(),
            next_cid: AtomicU64::new(1),
            lame_duck: AtomicBool::new(false),
            addr,
            config,
            jetstream: Mutex::new(None),
        });
        if shared.config.jetstream.enabled {
            let js = crate::jetstream::JetStream::start(
                shared.config.jetstream.clone(),
                Client::new(shared.clone()),
                shared.server_name.clone(),
            )?;
            *shared.jetstream.lock().unwrap_or_else(|e| e.into_inner()) = Some(js);
        }
        tracing::info!("Listening for client connections on {addr}");
        let monitor_addr = match shared.config.http_port {
            Some(port) => Some(crate::monitor::start(shared.clone(), port).await?),
            None => None,
        };
        shared.tasks.spawn(accept_loop(shared.clone(), listener));
        tracing::info!("Server is ready");
        Ok(ServerHandle {
            shared,
            addr,
            monitor_addr,
        })
    }
}

/// A running server. Dropping the handle leaves the server running until the runtime stops;
/// call [`ServerHandle::shutdown`] for an orderly stop.
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    monitor_addr: Option<SocketAddr>,
}

impl ServerHandle {
    /// Address of the client listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://host:port` for clients.
    pub fn client_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Address of the HTTP monitoring listener, if enabled.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.monitor_addr
    }

    /// The server's unique id.
    pub fn server_id(&self) -> &str {
        &self.shared.server_id
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
    /// to them, close every connection and wait for the tasks to finish.
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
        let shared = &self.shared;
        tracing::info!("Entering lame duck mode, stop accepting new clients");
        shared.lame_duck.store(true, Ordering::Relaxed);
        shared.shutdown.cancel();
        let clients: Vec<Arc<Outbound>> = shared.lock_clients().values().cloned().collect();
        let info = serde_json::to_string(&shared.base_info()).unwrap_or_default();
        for out in &clients {
            out.send(|b| encode::write_info(b, &info));
        }
        if !grace.is_zero() {
            tokio::time::sleep(grace).await;
        }
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
        let js = shared
            .jetstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(js) = js {
            // Stream threads sync and persist before they exit.
            let _ = tokio::task::spawn_blocking(move || js.shutdown()).await;
        }
        shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10s");
        }
        tracing::info!("Server Exiting..");
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let cid = shared.next_cid();
        if shared.num_connections() >= shared.config.max_connections {
            tracing::warn!(%peer, "maximum connections exceeded");
            shared
                .tasks
                .spawn(reject(shared.clone(), stream, peer, cid));
            continue;
        }
        shared
            .tasks
            .spawn(client::serve(shared.clone(), stream, peer, cid));
    }
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
