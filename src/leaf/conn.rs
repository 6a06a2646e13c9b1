//! One leaf node connection, accepted (we are the hub) or dialed (we are the leaf): the
//! handshake (the hub's INFO, the leaf's CONNECT with its credentials), then the reader loop:
//! the peer's interest and messages go to the server core through a [`LeafLink`], PING/PONG
//! keep it alive. What we send goes through the connection's [`Outbound`] and its writer
//! task, so a peer that stops reading is cut at `max_pending` or `write_deadline`.
//!
//! No compression is offered (the hub's INFO has no `compression`, the leaf sends no INFO),
//! which a stock nats-server takes as "not supported" and speaks plain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::Instrument;

use super::Inner;
use crate::protocol::encode;
use crate::protocol::leaf::{self, LeafOp, LeafParsed};
use crate::protocol::route::RouteLimits;
use crate::server::{
    writer, CloseReason, ConnKind, LeafError, LeafLink, LeafPeer, Outbound, Transport,
};

const READ_BUF: usize = 64 * 1024;
const MAX_CONTROL_LINE: usize = 64 * 1024;
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// Time the peer has to complete the handshake (the hub's INFO, the leaf's CONNECT).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// The first PING after the handshake (then every `ping_interval`).
const FIRST_PING: Duration = Duration::from_secs(1);

/// Which end of the connection this server is.
pub(super) enum Side {
    /// We accepted it: we are the hub, the peer must send CONNECT.
    Accepted,
    /// We dialed it as a leaf bound to `account`, with these credentials (from the URL).
    Dialed {
        account: String,
        user: Option<String>,
        password: Option<String>,
    },
}

/// How a connection ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum End {
    #[error("handshake timed out")]
    Timeout,
    #[error("closed")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("authorization violation")]
    Auth,
    #[error("the peer refused it: {0}")]
    Refused(String),
    #[error("{0}")]
    Loop(LeafError),
    #[error("stale connection")]
    Stale,
}

impl End {
    /// Whether the next attempt waits 30 s (a loop or a refusal, as nats-server waits).
    pub(super) fn delays(&self) -> bool {
        match self {
            End::Loop(_) => true,
            End::Refused(text) => {
                text.contains("Loop detected") || text.contains("Permissions Violation")
            }
            _ => false,
        }
    }
}

/// The hub's INFO (what we send as the hub, and read as the leaf).
#[derive(Serialize, Deserialize, Default)]
struct HubInfo {
    #[serde(default)]
    server_id: String,
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    proto: i32,
    #[serde(default)]
    headers: bool,
    #[serde(default)]
    auth_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    tls_required: bool,
    #[serde(default)]
    max_payload: usize,
    #[serde(default)]
    client_id: u64,
    /// Always sent (a stock leaf refuses a hub without it); `null` is taken as none.
    #[serde(default)]
    leafnode_urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(default)]
    jetstream: bool,
}

/// The leaf's CONNECT.
#[derive(Serialize, Deserialize, Default)]
struct LeafConnect {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_token: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    server_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default)]
    headers: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    remote_account: String,
    #[serde(default)]
    protocol: i32,
    /// Set by a client that dialed the leaf port by mistake.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    lang: String,
}

struct LeafConn {
    inner: Arc<Inner>,
    out: Arc<Outbound>,
    side: Side,
    peer: SocketAddr,
    link: Option<LeafLink>,
    pings_out: u32,
    last_read: Instant,
}

/// Runs an accepted leaf connection (we are the hub): our INFO, then, if the listener has
/// TLS, the leaf's handshake, then the connection until it closes.
pub(super) async fn accept(
    inner: Arc<Inner>,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> End {
    use tokio::io::AsyncWriteExt;
    let cid = inner.shared.next_cid();
    let mut info = bytes::BytesMut::new();
    encode::write_info(&mut info, &hub_info(&inner, cid, local));
    if stream.write_all(&info).await.is_err() {
        return End::Closed;
    }
    let Some(tls) = inner.tls.clone() else {
        return run(inner, stream, (cid, peer), Side::Accepted, None).await;
    };
    match tls.handshake(stream).await {
        Ok((stream, _)) => run(inner, stream, (cid, peer), Side::Accepted, None).await,
        Err(e) => {
            tracing::warn!(%peer, "leafnode TLS handshake error: {e}");
            End::Protocol(format!("TLS handshake: {e}"))
        }
    }
}

/// Runs a dialed leaf connection (we are the leaf): reads the hub's INFO, upgrades to TLS
/// when either side asks for it (`tls`: the client, the hub's host name, whether the remote
/// asks), then runs the connection until it closes.
pub(super) async fn dial(
    inner: Arc<Inner>,
    mut stream: tokio::net::TcpStream,
    (peer, _local): (SocketAddr, SocketAddr),
    side: Side,
    (tls, host, wants_tls): (Option<Arc<crate::server::TlsClient>>, String, bool),
) -> End {
    let cid = inner.shared.next_cid();
    let info = match read_info(&mut stream).await {
        Ok(info) => info,
        Err(end) => return end,
    };
    let required = serde_json::from_slice::<HubInfo>(&info).is_ok_and(|i| i.tls_required);
    if !(required || wants_tls) {
        return run(inner, stream, (cid, peer), side, Some(info)).await;
    }
    let tls = match tls {
        Some(t) => t,
        None => match crate::server::TlsClient::new(&crate::config::TlsConfig::new("", "")) {
            Ok(t) => t,
            Err(e) => return End::Protocol(format!("TLS: {e}")),
        },
    };
    match tls.connect(&host, stream).await {
        Ok(stream) => run(inner, stream, (cid, peer), side, Some(info)).await,
        Err(e) => {
            tracing::warn!(%peer, "leafnode TLS handshake error: {e}");
            End::Protocol(format!("TLS handshake: {e}"))
        }
    }
}

/// The hub's INFO line, read before anything else (it says whether to upgrade to TLS).
async fn read_info(stream: &mut tokio::net::TcpStream) -> Result<Vec<u8>, End> {
    let mut line = Vec::with_capacity(1024);
    let read = async {
        let mut byte = [0u8; 1];
        while line.last() != Some(&b'\n') {
            if line.len() > MAX_CONTROL_LINE || stream.read_exact(&mut byte).await.is_err() {
                return Err(End::Closed);
            }
            line.push(byte[0]);
        }
        Ok(())
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, read)
        .await
        .map_err(|_| End::Timeout)??;
    let text = String::from_utf8_lossy(&line);
    let json = text
        .trim()
        .strip_prefix("INFO")
        .ok_or_else(|| End::Protocol(format!("expected INFO, got {:?}", text.trim())))?;
    Ok(json.trim().as_bytes().to_vec())
}

/// Runs one leaf connection over `stream` until it closes; a dialed one starts from the
/// hub's INFO (`info`), read already.
async fn run<T: Transport>(
    inner: Arc<Inner>,
    stream: T,
    (cid, peer): (u64, SocketAddr),
    side: Side,
    info: Option<Vec<u8>>,
) -> End {
    let shared = inner.shared.clone();
    let span = tracing::info_span!("leafnode", cid, %peer);
    async move {
        let out = Outbound::new(cid, ConnKind::Leaf, shared.config.max_pending);
        let (rd, wr) = stream.split();
        shared
            .tasks
            .spawn(writer(out.clone(), wr, shared.config.write_deadline));
        let mut conn = LeafConn {
            inner,
            out: out.clone(),
            side,
            peer,
            link: None,
            pings_out: 0,
            last_read: Instant::now(),
        };
        let first = match &info {
            Some(json) => conn.on_info(json).err(),
            None => None,
        };
        let end = match first {
            Some(end) => end,
            None => conn.read_loop(rd).await,
        };
        if let End::Loop(e) = &end {
            out.send(|b| encode::write_err(b, &e.to_string()));
        }
        if conn.link.take().is_some() {
            tracing::info!("Leafnode connection closed: {end}");
        }
        out.close(match end {
            End::Auth => CloseReason::AuthFailure,
            End::Protocol(_) => CloseReason::ProtocolViolation,
            _ => CloseReason::ClientClosed,
        });
        end
    }
    .instrument(span)
    .await
}

/// The INFO a hub sends a leaf that connects.
fn hub_info(inner: &Inner, cid: u64, local: SocketAddr) -> String {
    let shared = &inner.shared;
    let listen = inner.listen.unwrap_or(local);
    let url = match &inner.config.advertise {
        Some(a) => a.clone(),
        None if listen.ip().is_unspecified() => {
            SocketAddr::new(local.ip(), listen.port()).to_string()
        }
        None => listen.to_string(),
    };
    let info = HubInfo {
        server_id: shared.server_id.clone(),
        server_name: shared.server_name.clone(),
        version: crate::protocol::info::PROTOCOL_VERSION.to_string(),
        proto: 1,
        headers: true,
        auth_required: inner.config.auth.is_some(),
        tls_required: inner.tls.is_some(),
        max_payload: shared.config.max_payload,
        client_id: cid,
        leafnode_urls: Some(if inner.config.no_advertise {
            Vec::new()
        } else {
            vec![url]
        }),
        domain: shared.config.jetstream.domain.clone(),
        jetstream: shared.config.jetstream.enabled,
    };
    serde_json::to_string(&info).unwrap_or_default()
}

impl LeafConn {
    async fn read_loop<R: AsyncRead + Unpin>(&mut self, mut rd: R) -> End {
        let limits = RouteLimits {
            max_control_line: MAX_CONTROL_LINE,
            max_payload: MAX_PAYLOAD,
        };
        let cfg = &self.inner.shared.config;
        let (ping_interval, ping_max) = (cfg.ping_interval, cfg.ping_max);
        let timeout = match &self.side {
            Side::Accepted => self.inner.config.auth.as_ref().and_then(|a| a.timeout),
            Side::Dialed { .. } => None,
        };
        let deadline = tokio::time::sleep(timeout.unwrap_or(HANDSHAKE_TIMEOUT));
        tokio::pin!(deadline);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + FIRST_PING, ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.inner.shared.shutdown.clone();
        let cancel = self.out.cancel.clone();
        let mut buf = BytesMut::with_capacity(READ_BUF);
        loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_BUF);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Closed,
                _ = cancel.cancelled() => return End::Closed,
                r = rd.read_buf(&mut buf) => {
                    if matches!(r, Ok(0) | Err(_)) {
                        return End::Closed;
                    }
                    self.last_read = Instant::now();
                    let mut pos = 0;
                    let ended = loop {
                        match leaf::parse(&buf[pos..], &limits) {
                            Ok(LeafParsed::Op(op, n)) => {
                                pos += n;
                                if let Err(end) = self.handle(op) {
                                    break Some(end);
                                }
                            }
                            Ok(LeafParsed::Incomplete(_)) => break None,
                            Err(e) => {
                                tracing::warn!("leafnode protocol error: {e:?}");
                                self.out.send(|b| encode::write_err(b, &e.to_string()));
                                break Some(End::Protocol(e.to_string()));
                            }
                        }
                    };
                    buf.advance(pos);
                    if let Some(link) = &mut self.link {
                        link.flush();
                    }
                    if let Some(end) = ended {
                        return end;
                    }
                }
                _ = &mut deadline, if self.link.is_none() => return End::Timeout,
                _ = ping.tick(), if self.link.is_some() => {
                    if self.pings_out + 1 > ping_max && self.last_read.elapsed() >= ping_interval {
                        tracing::warn!("Stale leafnode connection, closing");
                        return End::Stale;
                    }
                    self.pings_out += 1;
                    self.out.send(|b| b.extend_from_slice(encode::PING));
                }
            }
        }
    }

    /// Acts on one operation; `Err` ends the connection.
    fn handle(&mut self, op: LeafOp<'_>) -> Result<(), End> {
        match op {
            LeafOp::Ping => self.out.send(|b| b.extend_from_slice(encode::PONG)),
            LeafOp::Pong => self.pings_out = 0,
            LeafOp::Ok => {}
            LeafOp::Err(text) => {
                let text = String::from_utf8_lossy(text).into_owned();
                tracing::warn!("leafnode error from peer: {text}");
                return Err(End::Refused(text));
            }
            LeafOp::Info(json) => return self.on_info(json),
            LeafOp::Connect(json) => return self.on_connect(json),
            LeafOp::Sub { subject, queue } => {
                return self.on_interest(subject, queue.map(|(q, _)| q), true)
            }
            LeafOp::Unsub { subject, queue } => return self.on_interest(subject, queue, false),
            LeafOp::Msg {
                subject,
                reply,
                queues,
                headers,
                payload,
            } => {
                let Some(link) = &mut self.link else {
                    return Err(End::Protocol("LMSG before the handshake".into()));
                };
                link.deliver(subject, reply, headers, payload, queues);
            }
        }
        Ok(())
    }

    fn on_interest(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        present: bool,
    ) -> Result<(), End> {
        let Some(link) = &mut self.link else {
            return Err(End::Protocol("LS+ before the handshake".into()));
        };
        match link.interest(subject, queue, present) {
            Ok(()) => Ok(()),
            Err(LeafError::InvalidInterest) => {
                tracing::debug!(subject = %String::from_utf8_lossy(subject), "ignored leaf interest");
                Ok(())
            }
            Err(e @ LeafError::Loop(_)) => {
                tracing::error!("{e}");
                Err(End::Loop(e))
            }
        }
    }

    /// As the leaf: the hub's INFO starts the handshake (later ones change nothing here).
    fn on_info(&mut self, json: &[u8]) -> Result<(), End> {
        let Side::Dialed {
            account,
            user,
            password,
        } = &self.side
        else {
            return Ok(()); // a leaf sends INFO only to negotiate compression, never offered
        };
        if self.link.is_some() {
            return Ok(());
        }
        let info: HubInfo = serde_json::from_slice(json)
            .map_err(|e| End::Protocol(format!("malformed INFO: {e}")))?;
        let shared = &self.inner.shared;
        let connect = LeafConnect {
            version: crate::protocol::info::PROTOCOL_VERSION.to_string(),
            user: user.clone(),
            pass: password.clone(),
            server_id: shared.server_id.clone(),
            name: shared.server_name.clone(),
            headers: true,
            domain: shared.config.jetstream.domain.clone(),
            remote_account: account.clone(),
            protocol: 1,
            ..Default::default()
        };
        let json = serde_json::to_string(&connect).unwrap_or_default();
        self.out.send(|b| {
            b.extend_from_slice(b"CONNECT ");
            b.extend_from_slice(json.as_bytes());
            b.extend_from_slice(b"\r\n");
        });
        let hub = if info.server_name.is_empty() {
            info.server_id
        } else {
            info.server_name
        };
        self.go_live(&account.clone(), &hub)
    }

    /// As the hub: the leaf's CONNECT, checked against `leafnodes.authorization`.
    fn on_connect(&mut self, json: &[u8]) -> Result<(), End> {
        if !matches!(self.side, Side::Accepted) || self.link.is_some() {
            return Err(End::Protocol("unexpected CONNECT".into()));
        }
        let connect: LeafConnect = serde_json::from_slice(json)
            .map_err(|e| End::Protocol(format!("malformed CONNECT: {e}")))?;
        if !connect.lang.is_empty() {
            self.out
                .send(|b| encode::write_err(b, "attempted to connect to leaf node port"));
            return Err(End::Protocol("a client on the leafnode port".into()));
        }
        let account = match &self.inner.config.auth {
            None => "$G".to_string(),
            Some(auth) => {
                let pass = connect.pass.as_deref().or(connect.auth_token.as_deref());
                let user = connect.user.as_deref();
                let login = auth.logins().find(|(u, p, _)| {
                    user == Some(*u)
                        && pass.is_some_and(|given| crate::server::secret_matches(p, given))
                });
                let Some((_, _, account)) = login else {
                    tracing::warn!(user = ?connect.user, "leafnode Authorization Violation");
                    self.out
                        .send(|b| encode::write_err(b, "Authorization Violation"));
                    return Err(End::Auth);
                };
                account.to_string()
            }
        };
        let name = if connect.name.is_empty() {
            connect.server_id
        } else {
            connect.name
        };
        self.go_live(&account, &name)
    }

    /// Binds the connection to `account`: interest flows both ways from now on.
    fn go_live(&mut self, account: &str, peer: &str) -> Result<(), End> {
        let shared = self.inner.shared.clone();
        let lds = self.inner.lds.clone();
        let who = LeafPeer {
            name: peer.to_string(),
            addr: self.peer,
            hub: matches!(self.side, Side::Dialed { .. }),
        };
        let Some(link) = LeafLink::attach(shared, account, self.out.clone(), lds, who) else {
            return Err(End::Protocol(format!("unknown account {account}")));
        };
        tracing::info!(remote = %peer, %account, "Leafnode connection created");
        self.link = Some(link);
        Ok(())
    }
}
