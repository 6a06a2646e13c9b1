//! The WebSocket listener browsers connect to (`websocket {}`): optional TLS (`wss://`), the
//! HTTP upgrade with its origin checks (`same_origin`, `allowed_origins`) and timeout, then the
//! ordinary client protocol carried in binary frames, compressed (permessage-deflate) when
//! `compression` is on and the browser offers it. The HTTP exchange runs on hyper, the frames
//! on yawc. [`WsStream`] makes a WebSocket a [`Transport`]: the reader sees the frames'
//! payloads as one byte stream, the writer sends each flush as one binary frame. Pings are
//! answered by yawc; a close frame ends the stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::convert::Infallible;

use bytes::{Buf, Bytes};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use yawc::frame::{Frame, OpCode};
use yawc::{HttpStream, WebSocket};

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
    /// The server's `max_payload` (frames may carry a few messages).
    max_payload: usize,
}

impl WsListener {
    /// Binds the listener and loads its certificates (errors name the address or file).
    pub async fn bind(cfg: &WebSocketConfig, max_payload: usize) -> Result<Self, crate::Error> {
        let tls = cfg.tls.as_ref().map(TlsServer::new).transpose()?;
        let listener = super::bind(&cfg.host, cfg.port).await?;
        Ok(Self {
            listener,
            tls,
            cfg: cfg.clone(),
            max_payload,
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
        self: &Arc<Self>,
        shared: Arc<Shared>,
        stream: S,
        peer: SocketAddr,
        cid: u64,
        ids: Option<Vec<String>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The HTTP exchange runs on hyper; its one upgrade request hands the upgraded
        // stream's future over here.
        let (tx, rx) = tokio::sync::oneshot::channel::<yawc::UpgradeFut>();
        let tx = std::sync::Mutex::new(Some(tx));
        let this = self.clone();
        let svc = service_fn(move |mut req: hyper::Request<Incoming>| {
            let (resp, upgrade) = this.answer(&mut req);
            if let Some(fut) = upgrade {
                if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = tx.send(fut);
                }
            }
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.cfg.handshake_timeout)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let http = tokio::spawn(conn);
        let handshake = tokio::time::timeout(self.cfg.handshake_timeout, async {
            let fut = rx.await.ok()?;
            fut.await.ok()
        });
        let shutdown = shared.shutdown.clone();
        let upgraded = tokio::select! {
            _ = shutdown.cancelled() => None,
            r = handshake => r.ok().flatten(),
        };
        let Some(ws) = upgraded else {
            http.abort();
            tracing::debug!(%peer, "websocket handshake refused, failed or timed out");
            return;
        };
        let hello = Accepted::websocket().with_identities(ids);
        client::serve(shared, WsStream(ws), peer, cid, hello).await
    }

    /// The answer to one HTTP request: 403 for an origin the configuration does not allow
    /// (as nats-server; a request without `Origin`, not a browser, is let through), 400 for
    /// anything but a WebSocket upgrade, else 101 and the upgrade, with permessage-deflate
    /// agreed when `compression` is on and the client offers it.
    fn answer(
        &self,
        req: &mut hyper::Request<Incoming>,
    ) -> (hyper::Response<Empty<Bytes>>, Option<yawc::UpgradeFut>) {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = |code: StatusCode| {
            let mut resp = hyper::Response::new(Empty::new());
            *resp.status_mut() = code;
            (resp, None)
        };
        if let Some(origin) = header("origin") {
            let host = header("host").unwrap_or_default();
            if !origin_allowed(&self.cfg, &origin, &host, self.tls.is_some()) {
                return status(StatusCode::FORBIDDEN);
            }
        }
        match yawc::WebSocket::upgrade_with_options(req, self.options()) {
            Ok((resp, fut)) => (resp, Some(fut)),
            Err(e) => {
                tracing::debug!("not a websocket upgrade: {e}");
                status(StatusCode::BAD_REQUEST)
            }
        }
    }

    /// Frames up to twice the largest message (a client may send a few in one frame), and
    /// compression when configured.
    fn options(&self) -> yawc::Options {
        let frame = 2 * self.max_payload + 64 * 1024;
        let options = yawc::Options::default().with_limits(frame, 2 * frame);
        if self.cfg.compression {
            options.with_balanced_compression()
        } else {
            options
        }
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
pub(crate) struct WsStream(WebSocket<HttpStream>);

impl Transport for WsStream {
    type Reader = WsReader;
    type Writer = WsWriter;

    fn split(self) -> (WsReader, WsWriter) {
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
pub(crate) struct WsReader {
    frames: SplitStream<WebSocket<HttpStream>>,
    pending: Bytes,
}

impl AsyncRead for WsReader {
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
            // The stream ends on a close frame or a protocol error (yawc answered it).
            let frame = match Pin::new(&mut self.frames).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(frame)) => frame,
            };
            match frame.opcode() {
                OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                    self.pending = frame.into_payload();
                }
                OpCode::Close => return Poll::Ready(Ok(())),
                OpCode::Ping | OpCode::Pong => {}
            }
        }
    }
}

/// The write half: each flush of the outbound buffer becomes one binary frame.
pub(crate) struct WsWriter(SplitSink<WebSocket<HttpStream>, Frame>);

impl TransportWriter for WsWriter {
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0
            .send(Frame::binary(Bytes::copy_from_slice(data)))
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
