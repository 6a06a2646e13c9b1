//! The route listener: accepts connections from other servers of the cluster and runs each
//! as a route ([`super::conn`]) until it closes or the server stops.

use std::sync::Arc;
use tokio::net::TcpListener;

use super::conn::{self, RouteEnd, Side};
use super::Inner;

/// Accepts routes until the server stops.
pub(super) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let shared = inner.shared.clone();
    crate::server::accept_each(shared, listener, "route", |stream, peer, local| {
        let inner2 = inner.clone();
        inner.shared.tasks.spawn(async move {
            let end = match &inner2.tls {
                None => conn::run(inner2.clone(), stream, peer, local, Side::Accepted).await,
                Some((tls, _)) => {
                    let shutdown = inner2.shared.shutdown.clone();
                    let handshake = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = tls.handshake(stream) => r,
                    };
                    match handshake {
                        Ok((stream, _)) => {
                            conn::run(inner2.clone(), stream, peer, local, Side::Accepted).await
                        }
                        Err(e) => {
                            tracing::warn!(%peer, "route TLS handshake error: {e}");
                            return;
                        }
                    }
                }
            };
            match end {
                RouteEnd::Failed(e) => tracing::debug!(%peer, "accepted route failed: {e}"),
                RouteEnd::Rejected(e) => tracing::debug!(%peer, "accepted route refused: {e}"),
                RouteEnd::Closed { .. } => {}
            }
        });
    })
    .await;
}
