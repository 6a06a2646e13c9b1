//! Outbound routes. A configured route is dialed for as long as the server runs: after a
//! failed dial or a closed route it waits (exponential backoff with jitter, 100 ms doubling
//! up to 2 s) and dials again; while the peer is reached through a route it dialed itself,
//! the dialer waits for that route to go. A route learnt from a peer's gossip gets
//! `connect_retries` attempts (at least 3) in a row.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpStream;

use super::conn::{self, RouteEnd, Side};
use super::peers::Reject;
use super::Inner;
use crate::config::parse_route_url;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Exponential backoff with ±25% jitter, bounded by [`BACKOFF_MAX`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(rand::rng().random_range(0.75..1.25))
    }
}

/// What one dial did.
enum Outcome {
    /// The route ran and closed, or was replaced: dial again soon.
    Ran,
    /// Never a route: back off.
    Failed,
    /// The peer is reached through another route: wait for it to go.
    Duplicate(String),
    /// The URL is this server: never dial it again.
    Myself,
}

async fn dial_once(inner: &Arc<Inner>, url: &str) -> Outcome {
    let Some(target) = parse_route_url(url) else {
        tracing::error!(%url, "invalid route URL");
        return Outcome::Myself;
    };
    let stream = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&target.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%url, "error trying to connect to route: {e}");
            return Outcome::Failed;
        }
        Err(_) => {
            tracing::debug!(%url, "timed out connecting to route");
            return Outcome::Failed;
        }
    };
    let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return Outcome::Failed;
    };
    let side = Side::Dialed {
        token: rand::rng().random(),
        user: target.user,
        password: target.password,
    };
    let end = match &inner.tls {
        None => conn::run(inner.clone(), stream, peer, local, side).await,
        Some((_, tls)) => {
            let host = target.addr.rsplit_once(':').map_or("", |(h, _)| h);
            match tls.connect(host, stream).await {
                Ok(stream) => conn::run(inner.clone(), stream, peer, local, side).await,
                Err(e) => {
                    tracing::warn!(%url, "route TLS handshake error: {e}");
                    return Outcome::Failed;
                }
            }
        }
    };
    match end {
        RouteEnd::Closed { .. } => Outcome::Ran,
        RouteEnd::Rejected(Reject::SelfRoute) => Outcome::Myself,
        RouteEnd::Rejected(Reject::Duplicate(id)) => Outcome::Duplicate(id),
        RouteEnd::Rejected(e) => {
            tracing::warn!(%url, "route refused: {e}");
            Outcome::Failed
        }
        RouteEnd::Failed(e) => {
            tracing::debug!(%url, "route handshake failed: {e}");
            Outcome::Failed
        }
    }
}

/// Sleeps `d`; false if the server stopped meanwhile.
async fn pause(inner: &Inner, d: Duration) -> bool {
    tokio::select! {
        _ = inner.shared.shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Waits until no route to server `id` is live; false if the server stopped meanwhile.
async fn wait_gone(inner: &Inner, id: &str) -> bool {
    let mut changes = inner.peers.subscribe();
    while inner.peers.is_connected(id) {
        tokio::select! {
            _ = inner.shared.shutdown.cancelled() => return false,
            r = changes.changed() => if r.is_err() { return false },
        }
    }
    true
}

/// Dials a configured route for as long as the server runs.
pub(super) async fn explicit(inner: Arc<Inner>, url: String) {
    let mut backoff = Backoff::new();
    let mut failures = 0u32;
    while !inner.shared.shutdown.is_cancelled() {
        let wait = match dial_once(&inner, &url).await {
            Outcome::Myself => {
                tracing::debug!(%url, "route to self, not dialed again");
                return;
            }
            Outcome::Ran => {
                failures = 0;
                backoff.reset();
                backoff.step()
            }
            Outcome::Duplicate(id) => {
                if !wait_gone(&inner, &id).await {
                    return;
                }
                backoff.reset();
                backoff.step()
            }
            Outcome::Failed => {
                failures += 1;
                // nats-server's cadence for reporting connect errors: the first, then rarely.
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::info!(%url, attempts = failures, "waiting for route");
                }
                backoff.step()
            }
        };
        if !pause(&inner, wait).await {
            return;
        }
    }
}

/// Dials a route learnt from a peer (server `id` at `url`) until it is reached through some
/// route, or the attempts in a row are used up.
pub(super) async fn implicit(inner: Arc<Inner>, url: String, id: String) {
    let attempts = inner.config.connect_retries.max(2) + 1;
    let mut backoff = Backoff::new();
    let mut failures = 0;
    while !inner.shared.shutdown.is_cancelled() && failures < attempts {
        match dial_once(&inner, &url).await {
            Outcome::Myself => break,
            // Reached (and later lost, or reached the other way): the peer's own dials and
            // gossip take it from here; a dropped route is dialed again below.
            Outcome::Ran => {
                failures = 0;
                backoff.reset();
            }
            Outcome::Duplicate(_) => break,
            Outcome::Failed => failures += 1,
        }
        if inner.peers.is_connected(&id) {
            break;
        }
        if !pause(&inner, backoff.step()).await {
            break;
        }
    }
    inner.peers.stop_dialing(&id);
}
