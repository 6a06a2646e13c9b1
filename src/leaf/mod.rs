//! Leaf node connections (nats-server's leaf node protocol, so either end may be a stock
//! nats-server): a listener leaf servers connect to, this server being their hub, and the
//! `remotes` this server connects to as a leaf, re-dialled after every loss. Each connection
//! is bound to one account and shares that account's subjects with its peer through a
//! [`LeafLink`](crate::server::LeafLink): interest both ways, messages where there is
//! interest. An edge server keeps serving its own clients (and its own JetStream, in a domain
//! of its own) while its uplink is down; a stream on either side copies from the other with
//! a source whose `external.api` is the other's `$JS.<domain>.API`.
//!
//! Layout: [`conn`] runs one connection (handshake, then interest, messages, keep-alive);
//! this file starts the listener and the dialers and holds what they share.

mod conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::LeafConfig;
use crate::server::Shared;
use crate::Error;

/// The leaf node layer of one server.
#[derive(Clone)]
pub(crate) struct Leafnodes {
    inner: Arc<Inner>,
}

/// What the listener and the dialers share.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    config: LeafConfig,
    /// This server's loop detection subject (`$LDS.<id>`), subscribed in each bound account.
    lds: String,
    /// The leaf listener's address.
    listen: Option<SocketAddr>,
    /// The listener's TLS (leaves upgrade after the INFO that asks for it).
    tls: Option<Arc<crate::server::TlsServer>>,
}

impl Leafnodes {
    /// Subscribes the loop detection subject, binds the listener (if any) and starts dialing
    /// the remotes; the tasks end with the server.
    pub(crate) async fn start(shared: Arc<Shared>, config: LeafConfig) -> Result<Leafnodes, Error> {
        let lds = format!("$LDS.{}", nuid::next());
        let mut accounts: Vec<String> = config.remotes.iter().map(account_of).collect();
        accounts.extend(
            config
                .auth
                .iter()
                .map(|a| a.account.clone().unwrap_or("$G".into())),
        );
        if config.listen.is_some() {
            accounts.push("$G".into());
        }
        accounts.sort();
        accounts.dedup();
        for account in &accounts {
            let router = match account.as_str() {
                "$G" => shared.router.clone(),
                a => match shared.accounts.get(a) {
                    Some(r) => r.clone(),
                    None => continue,
                },
            };
            let client = crate::server::Client::in_account(shared.clone(), router);
            // Kept for the server's life: the subscription stays in the account's router.
            let _ = client.subscribe_internal(&lds, None, Arc::new(|_| true));
        }
        let listener = match &config.listen {
            Some((host, port)) => {
                let l = crate::server::bind(host, *port).await?;
                tracing::info!("Listening for leafnode connections on {}", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        let tls = match &config.tls {
            Some(t) => Some(crate::server::TlsServer::new(t)?),
            None => None,
        };
        let inner = Arc::new(Inner {
            tls,
            listen: listener.as_ref().and_then(|l| l.local_addr().ok()),
            shared: shared.clone(),
            config,
            lds,
        });
        if let Some(l) = listener {
            shared.tasks.spawn(accept_loop(inner.clone(), l));
        }
        for remote in inner.config.remotes.clone() {
            // A remote's own TLS settings (a `tls://` URL or a hub asking for TLS without them
            // trust the system's roots).
            let tls = match &remote.tls {
                Some(t) => Some(crate::server::TlsClient::new(t)?),
                None => None,
            };
            shared.tasks.spawn(dial_loop(inner.clone(), remote, tls));
        }
        Ok(Leafnodes { inner })
    }

    /// The leaf listener's address, if there is one.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.listen
    }
}

/// The account a remote's connection is bound to.
fn account_of(r: &crate::config::LeafRemote) -> String {
    r.account.clone().unwrap_or_else(|| "$G".to_string())
}

/// Accepts leaf connections until the server stops.
async fn accept_loop(inner: Arc<Inner>, listener: tokio::net::TcpListener) {
    let shared = inner.shared.clone();
    crate::server::accept_each(shared, listener, "leafnode", |stream, peer, local| {
        let inner2 = inner.clone();
        inner.shared.tasks.spawn(async move {
            let end = conn::accept(inner2, stream, peer, local).await;
            tracing::debug!(%peer, "leafnode connection ended: {end}");
        });
    })
    .await;
}

/// Connects to a remote's URLs in turn, forever (until the server stops), waiting the
/// configured delay (30 s after a loop or a permission violation) between attempts.
async fn dial_loop(
    inner: Arc<Inner>,
    remote: crate::config::LeafRemote,
    tls: Option<Arc<crate::server::TlsClient>>,
) {
    let shutdown = inner.shared.shutdown.clone();
    let account = account_of(&remote);
    for url in remote.urls.iter().cycle() {
        if shutdown.is_cancelled() {
            return;
        }
        let Some((host, port, user, password)) = crate::config::parse_leaf_url(url) else {
            return;
        };
        let dialed = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect((host.as_str(), port))) => r,
        };
        let mut wait = inner.config.reconnect;
        match dialed {
            Ok(Ok(stream)) => {
                let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
                    continue;
                };
                let side = conn::Side::Dialed {
                    account: account.clone(),
                    user,
                    password,
                };
                let wants_tls = remote.tls.is_some() || url.starts_with("tls://");
                let tls = (tls.clone(), host.clone(), wants_tls);
                let end = conn::dial(inner.clone(), stream, (peer, local), side, tls).await;
                tracing::info!(%peer, "leafnode connection ended: {end}");
                if end.delays() {
                    wait = Duration::from_secs(30);
                }
            }
            Ok(Err(e)) => tracing::debug!(%host, port, "leafnode dial failed: {e}"),
            Err(_) => tracing::debug!(%host, port, "leafnode dial timed out"),
        }
        let jitter = Duration::from_millis(rand::random_range(0..100));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait + jitter) => {}
        }
    }
}
