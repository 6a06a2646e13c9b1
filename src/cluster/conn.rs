//! One route connection, dialed or accepted: the handshake (CONNECT from the dialer, INFO
//! both ways, credentials and cluster name checked, registered as the route to its peer),
//! then the reader loop: the peer's interest and messages go to the server core through a
//! [`RouteLink`], `INFO` updates to the registry, and PING/PONG keep it alive. What we send
//! goes through the route's [`Outbound`] and its writer task, so a peer that stops reading is
//! cut at `max_pending` or `write_deadline`, never buffered without bound.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::Instrument;

use super::info::{RouteConnect, RouteInfo};
use super::peers::{Reject, RouteKey};
use super::Inner;
use crate::protocol::encode;
use crate::protocol::parser::ParseError;
use crate::protocol::route::{self, RouteLimits, RouteOp, RouteParsed};
use crate::server::{writer, CloseReason, ConnKind, Outbound, RouteLink, Transport};

const READ_BUF: usize = 64 * 1024;
/// Routes carry other servers' subjects, reply subjects and queue lists in one line.
const ROUTE_MAX_CONTROL_LINE: usize = 64 * 1024;
/// Upper bound of a routed message; what exceeds this server's `max_payload` is dropped.
const ROUTE_MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// Time a route has to complete its handshake (unless `cluster.authorization.timeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which end of the route this server is.
pub(crate) enum Side {
    /// We accepted it: the peer must send CONNECT.
    Accepted,
    /// We dialed it, with this tie-breaker and these credentials (from the route URL, else
    /// `cluster.authorization`).
    Dialed {
        token: u64,
        user: Option<String>,
        password: Option<String>,
    },
}

/// Why a route never became live.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// No handshake in time.
    #[error("route handshake timed out")]
    Timeout,
    /// The connection closed first.
    #[error("route closed during the handshake")]
    Closed,
    /// The peer broke the protocol.
    #[error("route protocol error: {0}")]
    Protocol(#[from] ParseError),
    /// Malformed CONNECT or INFO JSON.
    #[error("malformed route {what}: {source}")]
    Json {
        /// CONNECT or INFO.
        what: &'static str,
        /// The decoder's complaint.
        source: serde_json::Error,
    },
    /// Wrong or missing credentials.
    #[error("route authorization violation")]
    Auth,
    /// The peer sent an -ERR.
    #[error("peer refused the route: {0}")]
    Refused(String),
    /// An operation that needs a live route.
    #[error("{0} before the route handshake completed")]
    Early(&'static str),
}

/// How a route ended.
pub(crate) enum RouteEnd {
    /// It never completed its handshake.
    Failed(HandshakeError),
    /// It completed its handshake and was refused.
    Rejected(Reject),
    /// It was live, then closed.
    Closed {
        /// The peer's server id.
        #[allow(dead_code)]
        peer_id: String,
    },
}

enum Phase {
    Handshake {
        connect: Option<RouteConnect>,
        info: Option<RouteInfo>,
    },
    Live {
        peer_id: String,
        link: RouteLink,
    },
}

struct RouteConn {
    inner: Arc<Inner>,
    out: Arc<Outbound>,
    side: Side,
    local_ip: IpAddr,
    phase: Phase,
    pings_out: u32,
    last_read: Instant,
}

/// Runs one route over `stream` until it closes; `peer` and `local` are its addresses.
pub(crate) async fn run<T: Transport>(
    inner: Arc<Inner>,
    stream: T,
    peer: SocketAddr,
    local: SocketAddr,
    side: Side,
) -> RouteEnd {
    let shared = inner.shared.clone();
    let cid = shared.next_cid();
    let span = tracing::info_span!("route", cid, %peer, remote = tracing::field::Empty);
    async move {
        let out = Outbound::new(cid, ConnKind::Route, shared.config.max_pending);
        let (rd, wr) = stream.split();
        shared
            .tasks
            .spawn(writer(out.clone(), wr, shared.config.write_deadline));
        if let Side::Dialed {
            token,
            user,
            password,
        } = &side
        {
            let auth = inner.config.auth.as_ref();
            let connect = RouteConnect {
                server_id: shared.server_id.clone(),
                name: shared.server_name.clone(),
                cluster: inner.config.name.clone(),
                user: user.clone().or_else(|| auth.map(|a| a.user.clone())),
                pass: password
                    .clone()
                    .or_else(|| auth.map(|a| a.password.clone())),
                token: *token,
            };
            let json = serde_json::to_string(&connect).unwrap_or_default();
            out.send(|b| {
                b.extend_from_slice(b"CONNECT ");
                b.extend_from_slice(json.as_bytes());
                b.extend_from_slice(b"\r\n");
            });
        }
        let info = inner.info_json(local.ip());
        out.send(|b| encode::write_info(b, &info));
        let mut conn = RouteConn {
            inner,
            out: out.clone(),
            side,
            local_ip: local.ip(),
            phase: Phase::Handshake {
                connect: None,
                info: None,
            },
            pings_out: 0,
            last_read: Instant::now(),
        };
        let end = conn.read_loop(rd).await;
        conn.finish(&end);
        end
    }
    .instrument(span)
    .await
}

impl RouteConn {
    fn live(&self) -> bool {
        matches!(self.phase, Phase::Live { .. })
    }

    /// How the route ends now, given what went wrong before it was live.
    fn end(&self, before_live: HandshakeError) -> RouteEnd {
        match &self.phase {
            Phase::Live { peer_id, .. } => RouteEnd::Closed {
                peer_id: peer_id.clone(),
            },
            Phase::Handshake { .. } => RouteEnd::Failed(before_live),
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(&mut self, mut rd: R) -> RouteEnd {
        let limits = RouteLimits {
            max_control_line: ROUTE_MAX_CONTROL_LINE,
            max_payload: ROUTE_MAX_PAYLOAD,
        };
        let cfg = &self.inner.shared.config;
        let (ping_interval, ping_max) = (cfg.ping_interval, cfg.ping_max);
        let timeout = self
            .inner
            .config
            .auth
            .as_ref()
            .and_then(|a| a.timeout)
            .unwrap_or(HANDSHAKE_TIMEOUT);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
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
                _ = shutdown.cancelled() => return self.end(HandshakeError::Closed),
                _ = cancel.cancelled() => return self.end(HandshakeError::Closed),
                r = rd.read_buf(&mut buf) => {
                    if matches!(r, Ok(0) | Err(_)) {
                        return self.end(HandshakeError::Closed);
                    }
                    self.last_read = Instant::now();
                    let mut pos = 0;
                    let ended = loop {
                        match route::parse(&buf[pos..], &limits) {
                            Ok(RouteParsed::Op(op, n)) => {
                                pos += n;
                                if let Err(end) = self.handle(op) {
                                    break Some(end);
                                }
                            }
                            Ok(RouteParsed::Incomplete(_)) => break None,
                            Err(e) => {
                                tracing::warn!("route protocol error: {e:?}");
                                self.out.send(|b| encode::write_err(b, &e.to_string()));
                                break Some(self.end(e.into()));
                            }
                        }
                    };
                    buf.advance(pos);
                    if let Phase::Live { link, .. } = &mut self.phase {
                        link.flush();
                    }
                    if let Some(end) = ended {
                        return end;
                    }
                }
                _ = &mut deadline, if !self.live() => {
                    return RouteEnd::Failed(HandshakeError::Timeout);
                }
                _ = ping.tick(), if self.live() => {
                    if self.last_read.elapsed() < ping_interval {
                        continue;
                    }
                    if self.pings_out + 1 > ping_max {
                        tracing::warn!("Stale route connection, closing");
                        return self.end(HandshakeError::Timeout);
                    }
                    self.pings_out += 1;
                    self.out.send(|b| b.extend_from_slice(encode::PING));
                }
            }
        }
    }

    /// Acts on one operation; `Err` ends the route.
    fn handle(&mut self, op: RouteOp<'_>) -> Result<(), RouteEnd> {
        match op {
            RouteOp::Ping => self.out.send(|b| b.extend_from_slice(encode::PONG)),
            RouteOp::Pong => self.pings_out = 0,
            RouteOp::Ok => {}
            RouteOp::Err(text) => {
                let text = String::from_utf8_lossy(text).into_owned();
                tracing::warn!("route error from peer: {text}");
                return Err(self.end(HandshakeError::Refused(text)));
            }
            RouteOp::Connect(json) => return self.on_connect(json),
            RouteOp::Info(json) => return self.on_info(json),
            RouteOp::Sub {
                account,
                subject,
                queue,
            } => return self.on_interest(account, subject, queue, true),
            RouteOp::Unsub {
                account,
                subject,
                queue,
            } => return self.on_interest(account, subject, queue, false),
            RouteOp::Msg {
                account,
                subject,
                reply,
                queues,
                headers,
                payload,
            } => {
                let Phase::Live { link, .. } = &mut self.phase else {
                    return Err(self.end(HandshakeError::Early("RMSG")));
                };
                link.deliver(account, subject, reply, headers, payload, queues);
            }
            RouteOp::Delivery {
                to,
                subject,
                reply,
                headers,
                payload,
            } => {
                let Phase::Live { link, .. } = &mut self.phase else {
                    return Err(self.end(HandshakeError::Early("RMSGD")));
                };
                let global = crate::protocol::route::GLOBAL_ACCOUNT;
                link.deliver_to(global, to, subject, reply, headers, payload, b"");
            }
        }
        Ok(())
    }

    fn on_connect(&mut self, json: &[u8]) -> Result<(), RouteEnd> {
        match &self.phase {
            Phase::Live { .. } => return Ok(()), // nothing to change on a live route
            Phase::Handshake { connect, .. } => {
                if !matches!(self.side, Side::Accepted) || connect.is_some() {
                    return Err(RouteEnd::Failed(HandshakeError::Early(
                        "unexpected CONNECT",
                    )));
                }
            }
        }
        let parsed: RouteConnect =
            serde_json::from_slice(json).map_err(|source| self.bad_json("CONNECT", source))?;
        if let Some(auth) = &self.inner.config.auth {
            let ok = parsed.user.as_deref() == Some(auth.user.as_str())
                && parsed
                    .pass
                    .as_deref()
                    .is_some_and(|p| crate::server::secret_matches(&auth.password, p));
            if !ok {
                tracing::warn!(user = ?parsed.user, "route Authorization Violation");
                self.out
                    .send(|b| encode::write_err(b, "Authorization Violation"));
                return Err(RouteEnd::Failed(HandshakeError::Auth));
            }
        }
        if let Phase::Handshake { connect, .. } = &mut self.phase {
            *connect = Some(parsed);
        }
        self.try_go_live()
    }

    fn on_interest(
        &mut self,
        account: &[u8],
        subject: &[u8],
        queue: Option<&[u8]>,
        present: bool,
    ) -> Result<(), RouteEnd> {
        let Phase::Live { link, .. } = &mut self.phase else {
            return Err(self.end(HandshakeError::Early("RS+/RS-")));
        };
        if let Err(e) = link.interest(account, subject, queue, present) {
            tracing::debug!(
                subject = %String::from_utf8_lossy(subject),
                "ignored route interest: {e}"
            );
        }
        Ok(())
    }

    fn on_info(&mut self, json: &[u8]) -> Result<(), RouteEnd> {
        let parsed: RouteInfo =
            serde_json::from_slice(json).map_err(|source| self.bad_json("INFO", source))?;
        match &mut self.phase {
            Phase::Handshake { info, .. } => {
                *info = Some(parsed);
                self.try_go_live()
            }
            Phase::Live { peer_id, .. } => {
                if parsed.server_id != *peer_id {
                    tracing::warn!(new = %parsed.server_id, "route peer changed its id");
                    return Err(self.end(HandshakeError::Early("a new server id")));
                }
                self.inner.update_info(self.out.cid, parsed);
                Ok(())
            }
        }
    }

    fn bad_json(&self, what: &'static str, source: serde_json::Error) -> RouteEnd {
        tracing::warn!("malformed route {what}: {source}");
        self.end(HandshakeError::Json { what, source })
    }

    /// Registers the route once the handshake has everything it needs.
    fn try_go_live(&mut self) -> Result<(), RouteEnd> {
        let Phase::Handshake { connect, info } = &mut self.phase else {
            return Ok(());
        };
        let key: RouteKey = match (&self.side, connect.as_ref(), info.as_ref()) {
            (Side::Dialed { token, .. }, _, Some(_)) => {
                (self.inner.shared.server_id.clone(), *token)
            }
            (Side::Accepted, Some(c), Some(i)) => {
                if c.server_id != i.server_id {
                    return Err(RouteEnd::Failed(HandshakeError::Early(
                        "INFO of another server than CONNECT",
                    )));
                }
                (c.server_id.clone(), c.token)
            }
            _ => return Ok(()),
        };
        let Some(info) = info.take() else {
            return Ok(());
        };
        let peer_id = info.server_id.clone();
        let name = info.server_name.clone();
        if let Err(reject) = self
            .inner
            .register(self.out.cid, &self.out, key, info, self.local_ip)
        {
            match &reject {
                Reject::SelfRoute | Reject::Duplicate(_) => {
                    tracing::debug!("route not kept: {reject}");
                }
                Reject::ClusterName { .. } => {
                    tracing::warn!("route refused: {reject}");
                    self.out
                        .send(|b| encode::write_err(b, "Cluster Name Mismatch"));
                }
            }
            return Err(RouteEnd::Rejected(reject));
        }
        let Some(link) = RouteLink::attach(self.inner.shared.clone(), self.out.clone()) else {
            self.inner.unregister(&peer_id, self.out.cid);
            return Err(RouteEnd::Failed(HandshakeError::Closed));
        };
        tracing::Span::current().record("remote", peer_id.as_str());
        tracing::info!(remote_name = %name, "Route connection created");
        self.phase = Phase::Live { peer_id, link };
        Ok(())
    }

    /// Unregisters a live route and closes the connection.
    fn finish(&mut self, end: &RouteEnd) {
        let reason = match end {
            RouteEnd::Rejected(Reject::Duplicate(_)) => CloseReason::DuplicateRoute,
            RouteEnd::Failed(HandshakeError::Protocol(_)) => CloseReason::ProtocolViolation,
            RouteEnd::Failed(HandshakeError::Auth) => CloseReason::AuthFailure,
            _ => self.out.closed().unwrap_or(CloseReason::ClientClosed),
        };
        let phase = std::mem::replace(
            &mut self.phase,
            Phase::Handshake {
                connect: None,
                info: None,
            },
        );
        if let Phase::Live { peer_id, link } = phase {
            // The peer's interest goes before the registry says the route is gone.
            drop(link);
            self.inner.unregister(&peer_id, self.out.cid);
            tracing::info!(?reason, "Route connection closed");
        }
        self.out.close(reason);
    }
}
