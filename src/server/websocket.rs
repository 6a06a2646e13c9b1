//! The WebSocket listener browsers connect to (`websocket {}`): optional TLS (`wss://`), the
//! HTTP upgrade with its origin checks (`same_origin`, `allowed_origins`) and timeout, then the
//! ordinary client protocol carried in binary frames. [`WsStream`] makes a WebSocket a
//! [`Transport`]: the reader sees the frames' payloads as one byte stream, the writer sends
//! each flush as one binary frame. Pings are answered by tungstenite; a close frame ends the
//! stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::client::{self, Accepted};
use super::tls::TlsServer;
use super::transport::{Transport, TransportWriter};
use super::Shared;
use crate::config::WebSocketConfig;

/// A bound WebSocket listener.
pub(crate) struct WsListener {
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    cfg: WebSocketConfig,
}

impl WsListener {
    /// Binds the listener and loads its certificates (errors name the address or file).
    pub async fn bind(cfg: &WebSocketConfig) -> Result<Self, crate::Error> {
        let tls = cfg.tls.as_ref().map(TlsServer::new).transpose()?;
        let listener = super::bind(&cfg.host, cfg.port).await?;
        Ok(Self {
            listener,
            tls,
            cfg: cfg.clone(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts browsers until the server shuts down.
    pub async fn run(self, shared: Arc<Shared>) {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!("Listening for websocket clients on {scheme}://{addr}");
        }
        let this = Arc::new(self);
        loop {
            let accepted = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                r = this.listener.accept() => r,
            };
            let Ok((stream, peer)) = accepted else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            if shared.num_connections() >= shared.config.max_connections {
                tracing::warn!(%peer, "maximum connections exceeded");
                continue;
            }
            let cid = shared.next_cid();
            shared
                .tasks
                .spawn(this.clone().serve(shared.clone(), stream, peer, cid));
        }
    }

    /// Serves one browser connection: TLS, the upgrade, then the client protocol. A server
    /// shutting down drops connections still in their handshakes.
    async fn serve(
        self: Arc<Self>,
        shared: Arc<Shared>,
        stream: TcpStream,
        peer: SocketAddr,
        cid: u64,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return self.upgrade(shared, stream, peer, cid, None).await;
        };
        let shutdown = shared.shutdown.clone();
        let handshake = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tls.handshake(stream) => r,
        };
        match handshake {
            Ok((stream, ids)) => self.upgrade(shared, stream, peer, cid, ids).await,
            Err(e) => tracing::debug!(%peer, "websocket TLS handshake error: {e}"),
        }
    }

    async fn upgrade<S>(
        &self,
        shared: Arc<Shared>,
        stream: S,
        peer: SocketAddr,
        cid: u64,
        ids: Option<Vec<String>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The error type is tungstenite's (an HTTP response), not ours to shrink.
        #[allow(clippy::result_large_err)]
        let check = |req: &Request, resp: Response| self.check_origin(req, resp);
        let handshake = tokio::time::timeout(
            self.cfg.handshake_timeout,
            tokio_tungstenite::accept_hdr_async(stream, check),
        );
        let shutdown = shared.shutdown.clone();
        let upgraded = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = handshake => r,
        };
        match upgraded {
            Ok(Ok(ws)) => {
                let hello = Accepted::websocket().with_identities(ids);
                client::serve(shared, WsStream(ws), peer, cid, hello).await
            }
            Ok(Err(e)) => tracing::debug!(%peer, "websocket handshake error: {e}"),
            Err(_) => tracing::debug!(%peer, "websocket handshake timeout"),
        }
    }

    /// Refuses an upgrade whose `Origin` the configuration does not allow (403, as
    /// nats-server). A request without `Origin` (not a browser) is let through. The error
    /// type is tungstenite's callback's (an HTTP response).
    #[allow(clippy::result_large_err)]
    fn check_origin(&self, req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
        let Some(origin) = req.headers().get("origin").and_then(|o| o.to_str().ok()) else {
            return Ok(resp);
        };
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if origin_allowed(&self.cfg, origin, host, self.tls.is_some()) {
            return Ok(resp);
        }
        let mut refused = ErrorResponse::new(Some("origin not allowed".to_string()));
        *refused.status_mut() = StatusCode::FORBIDDEN;
        Err(refused)
    }
}

/// Does the configuration let a page from `origin` upgrade a request sent to `host`?
fn origin_allowed(cfg: &WebSocketConfig, origin: &str, host: &str, tls: bool) -> bool {
    let Some(o) = Origin::parse(origin) else {
        return cfg.allowed_origins.is_empty() && !cfg.same_origin;
    };
    if cfg.same_origin {
        let default_port = if tls { 443 } else { 80 };
        let (h, p) = match host.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(default_port)),
            None => (host, default_port),
        };
        if !o.host.eq_ignore_ascii_case(h) || o.port != p {
            return false;
        }
    }
    cfg.allowed_origins.is_empty()
        || cfg
            .allowed_origins
            .iter()
            .filter_map(|a| Origin::parse(a))
            .any(|a| a == o)
}

/// `scheme://host[:port]` with the scheme's default port filled in.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(s: &str) -> Option<Self> {
        let (scheme, rest) = s.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let hostport = rest.split('/').next()?;
        let default = match scheme.as_str() {
            "https" | "wss" => 443,
            _ => 80,
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                (h.to_string(), p.parse().ok()?)
            }
            _ => (hostport.to_string(), default),
        };
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A WebSocket connection carrying the client protocol.
pub(crate) struct WsStream<S>(WebSocketStream<S>);

impl<S> Transport for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Reader = WsReader<S>;
    type Writer = WsWriter<S>;

    fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let (sink, stream) = self.0.split();
        (
            WsReader {
                frames: stream,
                pending: Bytes::new(),
            },
            WsWriter(sink),
        )
    }
}

/// The read half: frame payloads as a byte stream.
pub(crate) struct WsReader<S> {
    frames: SplitStream<WebSocketStream<S>>,
    pending: Bytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsReader<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            let frame = match Pin::new(&mut self.frames).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(frame)) => frame.map_err(io::Error::other)?,
            };
            match frame {
                Message::Binary(data) => self.pending = data,
                Message::Text(text) => self.pending = Bytes::from(text),
                Message::Close(_) => return Poll::Ready(Ok(())),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

/// The write half: each flush of the outbound buffer becomes one binary frame.
pub(crate) struct WsWriter<S>(SplitSink<WebSocketStream<S>, Message>);

impl<S> TransportWriter for WsWriter<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0
            .send(Message::Binary(Bytes::copy_from_slice(data)))
            .await
            .map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(same_origin: bool, allowed: &[&str]) -> WebSocketConfig {
        WebSocketConfig {
            same_origin,
            allowed_origins: allowed.iter().map(|s| s.to_string()).collect(),
            ..WebSocketConfig::loopback()
        }
    }

    #[test]
    fn origins_are_checked_as_configured() {
        let open = cfg(false, &[]);
        assert!(origin_allowed(
            &open,
            "http://anywhere:1",
            "127.0.0.1:8080",
            false
        ));
        let same = cfg(true, &[]);
        assert!(origin_allowed(
            &same,
            "http://127.0.0.1:8080",
            "127.0.0.1:8080",
            false
        ));
        assert!(!origin_allowed(
            &same,
            "http://127.0.0.1:9000",
            "127.0.0.1:8080",
            false
        ));
        assert!(origin_allowed(
            &same,
            "https://example.com",
            "example.com",
            true
        ));
        let listed = cfg(false, &["http://app.local:3000", "https://app.local"]);
        assert!(origin_allowed(
            &listed,
            "http://app.local:3000",
            "x:1",
            false
        ));
        assert!(origin_allowed(
            &listed,
            "https://APP.local:443",
            "x:1",
            false
        ));
        assert!(!origin_allowed(&listed, "http://app.local", "x:1", false));
        assert!(!origin_allowed(
            &listed,
            "http://evil.local:3000",
            "x:1",
            false
        ));
    }
}
