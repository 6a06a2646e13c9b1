//! One client connection: the reader task that parses what the client sends and acts on it
//! (CONNECT, PUB/HPUB, SUB, UNSUB, PING/PONG), plus keep-alive and the auth deadline.
//!
//! The reader routes every publish itself, appending frames straight into subscribers' outbound
//! buffers; the matching writer task ([`super::outbound::writer`]) owns the socket's write half.
//! Both are generic over the [`Transport`] the connection runs on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use rustc_hash::FxHashMap;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::Instrument;

use super::auth::{Authenticated, Identity, Perms, Responses};
use super::conns::{self, ConnMeta, TlsDetail};
use super::deliver::{deliver, deliver_traced, Dirty, Origin, Publish};
use super::kind::ConnKind;
use super::outbound::{writer, CloseReason, Outbound};
use super::sublist::{MatchCache, MatchResult, Router, Sink, Subscription};
use super::trace;
use super::transport::Transport;
use super::Shared;
use crate::protocol::encode;
use crate::protocol::info::ConnectOptions;
use crate::protocol::parser::{self, ClientOp, Limits, ParseError, Parsed};
use crate::protocol::subject;

const READ_BUF: usize = 64 * 1024;

/// What the listener learnt about a connection before the client protocol starts on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accepted {
    /// INFO was already written (in the clear, before a TLS upgrade).
    info_sent: bool,
    /// With `verify_and_map`: the names the client certificate offers.
    identities: Option<Vec<String>>,
    /// A browser connection (`allowed_connection_types` calls it `WEBSOCKET`).
    websocket: bool,
    /// The challenge INFO carried for nkey users (made with INFO).
    nonce: Option<String>,
    /// The TLS session, if the client upgraded.
    tls: Option<TlsDetail>,
}

impl Accepted {
    /// A plain client connection: INFO still to send, no certificate identities.
    pub fn plain() -> Self {
        Self::default()
    }

    /// A WebSocket client connection.
    pub fn websocket() -> Self {
        Self {
            websocket: true,
            ..Self::default()
        }
    }

    /// Writes this connection's INFO (with a nonce, if nkey users exist) into `buf`.
    pub fn write_info(
        &mut self,
        shared: &Shared,
        cid: u64,
        peer: &SocketAddr,
        buf: &mut bytes::BytesMut,
    ) {
        self.nonce = shared.auth_for(self.websocket).new_nonce();
        let info = shared.info_json(cid, peer, self.websocket, self.nonce.as_deref());
        encode::write_info(buf, &info);
    }

    /// INFO has already gone out (written by [`Accepted::write_info`]).
    pub fn info_sent(mut self) -> Self {
        self.info_sent = true;
        self
    }

    /// What authentication needs to know of the connection.
    fn identity(&self) -> Identity<'_> {
        Identity {
            certificate: self.identities.as_deref(),
            conn_type: if self.websocket {
                "WEBSOCKET"
            } else {
                "STANDARD"
            },
            nonce: self.nonce.as_deref(),
        }
    }

    /// The TLS session the connection runs over.
    pub fn with_tls(mut self, tls: TlsDetail) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The certificate identities `verify_and_map` logs the client in by.
    pub fn with_identities(mut self, ids: Option<Vec<String>>) -> Self {
        self.identities = ids;
        self
    }
}

/// Serves one accepted client connection until it closes. Its kind is always
/// [`ConnKind::Client`]: this is the client protocol, whatever the transport.
pub(crate) async fn serve<T: Transport>(
    shared: Arc<Shared>,
    stream: T,
    peer: SocketAddr,
    cid: u64,
    mut accepted: Accepted,
) {
    let out = Outbound::new(cid, ConnKind::Client, shared.config.max_pending);
    let meta = ConnMeta::new(out.clone(), peer, accepted.websocket, accepted.tls.clone());
    let span = tracing::debug_span!("conn", cid, kind = %out.kind, %peer);
    async move {
        let (rd, wr) = stream.split();
        shared.conns.insert(&meta);
        shared
            .tasks
            .spawn(writer(out.clone(), wr, shared.config.write_deadline));
        if !accepted.info_sent {
            let mut info = bytes::BytesMut::new();
            accepted.write_info(&shared, cid, &peer, &mut info);
            out.send(|b| b.extend_from_slice(&info));
        }
        tracing::debug!("{} connection created", out.kind);
        if shared.shutdown.is_cancelled() {
            // Registered after the stop closed the others (it was still handshaking).
            out.close(CloseReason::ServerShutdown);
        }
        let mut conn = Conn::new(shared.clone(), meta, accepted);
        let reason = conn.run(rd).await;
        conn.flush_stats();
        out.close(reason);
        // The closed ring keeps the connection as it was, subscriptions included.
        shared.conns.remove(cid);
        conn.cleanup();
        tracing::debug!(?reason, "{} connection closed", out.kind);
    }
    .instrument(span)
    .await
}

/// The subject a client asks the server who it is on.
const USER_INFO: &[u8] = b"$SYS.REQ.USER.INFO";

/// Per-connection state owned by the reader task.
struct Conn {
    shared: Arc<Shared>,
    /// The subjects of this client's account (set by CONNECT; the global account before).
    router: Arc<Router>,
    out: Arc<Outbound>,
    /// What the registry shows of this connection (its subscriptions live there).
    meta: Arc<ConnMeta>,
    /// What the listener learnt (certificate identities, transport kind).
    accepted: Accepted,
    /// When the client's credentials expire (a user JWT's `exp`).
    expires: Option<tokio::time::Instant>,
    opts: ConnectOptions,
    connected: bool,
    perms: Option<Arc<Perms>>,
    /// Reply subjects this client may answer (`allow_responses`).
    responses: Option<Arc<Responses>>,
    pub_perm_cache: FxHashMap<Box<[u8]>, bool>,
    cache: MatchCache,
    /// Matches against other servers' interest (made at the first publish in a cluster).
    remote_cache: Option<Box<MatchCache>>,
    dirty: Dirty,
    pings_out: u32,
    last_read: Instant,
    in_msgs: u64,
    in_bytes: u64,
    /// What the parser allows (the account's `max_payload` once logged in).
    limits: Limits,
    /// Subscriptions this connection may hold (0: no limit; the account's when lower).
    max_subs: usize,
}

/// What processing one operation asks of the connection.
enum Next {
    Continue,
    Close(CloseReason),
    /// CONNECT needs a slow (bcrypt) credential check, done off the async workers.
    Authenticate(Box<ConnectOptions>),
}

impl Conn {
    fn new(shared: Arc<Shared>, meta: Arc<ConnMeta>, accepted: Accepted) -> Self {
        let limits = Limits {
            max_control_line: shared.config.max_control_line,
            max_payload: shared.config.max_payload,
        };
        let max_subs = shared.config.max_subs;
        Self {
            router: shared.router.clone(),
            shared,
            out: meta.out.clone(),
            meta,
            accepted,
            expires: None,
            opts: ConnectOptions::default(),
            connected: false,
            perms: None,
            responses: None,
            pub_perm_cache: FxHashMap::default(),
            cache: MatchCache::default(),
            remote_cache: None,
            dirty: Dirty::default(),
            pings_out: 0,
            last_read: Instant::now(),
            in_msgs: 0,
            in_bytes: 0,
            limits,
            max_subs,
        }
    }

    async fn run<R: AsyncRead + Unpin>(&mut self, mut rd: R) -> CloseReason {
        let cfg = &self.shared.config;
        // A browser's listener may set its own (`websocket { authorization { timeout } }`).
        let auth_timeout = self.auth().timeout().unwrap_or(cfg.auth_timeout);
        let auth_deadline = tokio::time::sleep(auth_timeout);
        tokio::pin!(auth_deadline);
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + first_ping(cfg.ping_interval),
            cfg.ping_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancel = self.out.cancel.clone();
        let mut reloads = self.shared.watch_reloads();
        let mut buf = BytesMut::with_capacity(READ_BUF);
        loop {
            // Credentials that expire (a user JWT) re-arm the auth timer for that moment; a
            // client busy enough that the timer never gets polled is caught here.
            if let Some(at) = self.expires.filter(|_| self.connected) {
                if at <= tokio::time::Instant::now() {
                    self.err("User Authentication Expired");
                    return CloseReason::AuthExpired;
                }
                if auth_deadline.deadline() != at {
                    auth_deadline.as_mut().reset(at);
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_BUF);
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    return self.out.closed().unwrap_or(CloseReason::ServerShutdown);
                }
                r = rd.read_buf(&mut buf) => {
                    match r {
                        Ok(0) | Err(_) => return CloseReason::ClientClosed,
                        Ok(_) => {}
                    }
                    self.last_read = Instant::now();
                    let mut pos = 0;
                    let mut holds = Vec::new();
                    let closed = loop {
                        // Only around the synchronous part: the scope is the thread's.
                        let scope = super::backpressure::Scope::enter();
                        let limits = self.limits;
                        let (consumed, next) = self.process(&buf[pos..], &limits);
                        holds.append(&mut scope.take());
                        pos += consumed;
                        match next {
                            Next::Continue => break None,
                            Next::Close(reason) => break Some(reason),
                            Next::Authenticate(opts) => {
                                let shared = self.shared.clone();
                                let checked = opts.clone();
                                let acc = self.accepted.clone();
                                let who = tokio::task::spawn_blocking(move || shared.auth_for(acc.websocket).check(&checked, &acc.identity()))
                                    .await
                                    .ok()
                                    .flatten();
                                if let Next::Close(reason) = self.finish_connect(*opts, who) {
                                    break Some(reason);
                                }
                            }
                        }
                    };
                    buf.advance(pos);
                    self.dirty.flush();
                    self.flush_stats();
                    if let Some(reason) = closed {
                        return reason;
                    }
                    // A subscriber that took a message past its bound (a full stream) holds
                    // this publisher until it has room: nothing more is read meanwhile.
                    for hold in holds {
                        tokio::select! {
                            biased;
                            _ = cancel.cancelled() => {
                                return self.out.closed().unwrap_or(CloseReason::ServerShutdown);
                            }
                            _ = hold => {}
                        }
                    }
                    if let Some(need) = next_need(&buf, &self.limits) {
                        if need > buf.capacity() {
                            buf.reserve(need - buf.len());
                        }
                    }
                }
                _ = &mut auth_deadline, if self.expires.is_some() || (!self.connected && self.auth().required()) => {
                    if self.connected {
                        self.err("User Authentication Expired");
                        return CloseReason::AuthExpired;
                    }
                    self.err("Authentication Timeout");
                    return CloseReason::AuthTimeout;
                }
                Ok(()) = reloads.changed(), if self.connected => {
                    let shared = self.shared.clone();
                    let (opts, acc) = (self.opts.clone(), self.accepted.clone());
                    // A bcrypt check is slow: off the async workers, as at CONNECT.
                    let who = tokio::task::spawn_blocking(move || shared.auth_for(acc.websocket).check(&opts, &acc.identity()))
                        .await
                        .ok()
                        .flatten();
                    if let Some(reason) = self.reauthorize(who) {
                        return reason;
                    }
                    self.dirty.flush();
                }
                _ = ping.tick() => {
                    // A busy client needs no keep-alive, but a PING still measures its round
                    // trip once (monitoring shows it).
                    let busy = self.last_read.elapsed() < self.shared.config.ping_interval;
                    if busy && self.connected && self.meta.has_rtt() {
                        continue;
                    }
                    if self.pings_out + 1 > self.shared.config.ping_max {
                        self.err("Stale Connection");
                        return CloseReason::StaleConnection;
                    }
                    self.pings_out += 1;
                    self.meta.ping_sent();
                    self.out.send(|b| b.extend_from_slice(encode::PING));
                }
            }
        }
    }

    /// Processes every complete operation in `buf`; returns bytes consumed.
    fn process(&mut self, buf: &[u8], limits: &Limits) -> (usize, Next) {
        let mut pos = 0;
        while pos < buf.len() {
            match parser::parse(&buf[pos..], limits) {
                Ok(Parsed::Op(op, n)) => {
                    pos += n;
                    match self.handle(op) {
                        Next::Continue => {}
                        next => return (pos, next),
                    }
                }
                Ok(Parsed::Incomplete(_)) => break,
                Err(e) => {
                    tracing::debug!("protocol error: {e:?}");
                    self.err(&e.to_string());
                    let reason = match e {
                        ParseError::MaxPayload => CloseReason::MaxPayload,
                        ParseError::MaxControlLine => CloseReason::MaxControlLine,
                        ParseError::UnknownOp | ParseError::BadArgs(_) => CloseReason::ParseError,
                    };
                    return (pos, Next::Close(reason));
                }
            }
        }
        (pos, Next::Continue)
    }

    fn handle(&mut self, op: ClientOp<'_>) -> Next {
        if !self.connected && self.auth().required() && !matches!(op, ClientOp::Connect(_)) {
            self.err("Authorization Violation");
            return Next::Close(CloseReason::AuthFailure);
        }
        match op {
            ClientOp::Pub {
                subject,
                reply,
                headers,
                payload,
            } => self.on_pub(subject, reply, headers, payload),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.on_sub(subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.on_unsub(sid, max),
            ClientOp::Ping => {
                self.out.send(|b| b.extend_from_slice(encode::PONG));
                Next::Continue
            }
            ClientOp::Pong => {
                self.pings_out = 0;
                self.meta.pong();
                Next::Continue
            }
            ClientOp::Connect(json) => self.on_connect(json),
            ClientOp::Ignored => Next::Continue,
        }
    }

    /// The authorization this connection logs in by.
    fn auth(&self) -> Arc<super::auth::Authenticator> {
        self.shared.auth_for(self.accepted.websocket)
    }

    fn on_connect(&mut self, json: &[u8]) -> Next {
        let Some(opts) = parse_connect(json) else {
            return Next::Close(CloseReason::ProtocolViolation);
        };
        if opts.protocol.is_some_and(|p| !(0..=1).contains(&p)) {
            self.err("invalid client protocol");
            return Next::Close(CloseReason::BadProtocolVersion);
        }
        if opts.no_responders && !opts.headers {
            self.err("no responders requires headers support");
            return Next::Close(CloseReason::NoRespondersRequiresHeaders);
        }
        if self.connected {
            // Who the client is (user, account, permissions) is settled by its first CONNECT;
            // a later one only changes its options.
            self.out.headers.store(opts.headers, Ordering::Relaxed);
            self.opts = opts;
            self.ok();
            return Next::Continue;
        }
        if self.auth().is_slow() {
            return Next::Authenticate(Box::new(opts));
        }
        let who = self.auth().check(&opts, &self.accepted.identity());
        self.finish_connect(opts, who)
    }

    fn finish_connect(&mut self, opts: ConnectOptions, who: Option<Authenticated>) -> Next {
        let Some(who) = who else {
            tracing::warn!(user = ?opts.user, "Authorization Violation");
            self.meta.set_claimed(conns::Identity {
                name: opts.name.clone(),
                lang: opts.lang.clone(),
                version: opts.version.clone(),
                user: opts.user.clone().or_else(|| opts.nkey.clone()),
                account: "$G".into(),
            });
            self.err("Authorization Violation");
            return Next::Close(CloseReason::AuthFailure);
        };
        self.set_perms(who.perms);
        self.expires = who.expires.map(|at| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            tokio::time::Instant::now() + std::time::Duration::from_secs((at - now).max(0) as u64)
        });
        let router = who.account.as_deref().map(|a| self.shared.accounts.get(a));
        if let Some(None) = router {
            // An account with no subject space must not land the client in the global one.
            tracing::error!(account = ?who.account, "no such account");
            self.err("Authorization Violation");
            return Next::Close(CloseReason::AuthFailure);
        }
        if let Some(Some(router)) = router {
            // Nothing can be subscribed before an authenticating CONNECT, and match caches
            // know one router only.
            self.router = router.clone();
            self.cache = MatchCache::default();
            self.remote_cache = None;
        }
        let account = who.account.clone().unwrap_or_else(|| "$G".into());
        let limits = self
            .shared
            .config
            .accounts
            .iter()
            .find(|a| a.name == account)
            .map(|a| a.limits.clone())
            .unwrap_or_default();
        if !self.shared.conns.join(&account, limits.max_connections) {
            self.err("maximum account active connections exceeded");
            return Next::Close(CloseReason::MaxAccountConnections);
        }
        if let Some(max) = limits.max_payload {
            self.limits.max_payload = self.limits.max_payload.min(max);
        }
        if let Some(max) = limits.max_subscriptions {
            self.max_subs = match self.max_subs {
                0 => max,
                server => server.min(max),
            };
        }
        self.pub_perm_cache.clear();
        tracing::debug!(name = ?opts.name, lang = ?opts.lang, version = ?opts.version, user = ?who.user, "CONNECT");
        self.meta.set_identity(conns::Identity {
            name: opts.name.clone(),
            lang: opts.lang.clone(),
            version: opts.version.clone(),
            user: who.user.clone(),
            account,
        });
        self.shared.conns.connected(&self.meta);
        self.out.headers.store(opts.headers, Ordering::Relaxed);
        self.opts = opts;
        self.connected = true;
        self.ok();
        Next::Continue
    }

    /// Takes the user's permissions (and a fresh `allow_responses` table for them).
    fn set_perms(&mut self, perms: Option<Arc<Perms>>) {
        self.responses = perms.as_ref().and_then(|p| p.responses).map(Responses::new);
        self.perms = perms;
        self.pub_perm_cache.clear();
    }

    /// After a config reload: logs the client out if it may no longer log in (or would land
    /// in another account), else applies its new permissions, dropping the subscriptions
    /// they no longer allow with nats-server's `-ERR`.
    fn reauthorize(&mut self, who: Option<Authenticated>) -> Option<CloseReason> {
        let Some(who) = who else {
            tracing::warn!(user = ?self.opts.user, "Authorization Violation after reload");
            self.err("Authorization Violation");
            return Some(CloseReason::AuthFailure);
        };
        let router = match who.account.as_deref() {
            Some(a) => self.shared.accounts.get(a).cloned(),
            None => Some(self.shared.router.clone()),
        };
        if !router.is_some_and(|r| Arc::ptr_eq(&r, &self.router)) {
            return Some(CloseReason::ClientClosed);
        }
        self.set_perms(who.perms);
        let subs: Vec<_> = conns::lock(&self.meta.subs).drain().collect();
        for (sid, old) in subs {
            self.router.remove(&old);
            let queue = old.queue.as_deref().map(String::from_utf8_lossy);
            let subject = String::from_utf8_lossy(&old.subject);
            let allowed = self
                .perms
                .as_ref()
                .is_none_or(|p| p.can_subscribe(&subject, queue.as_deref()));
            if !allowed {
                let sid_text = String::from_utf8_lossy(&sid);
                let text = match &queue {
                    Some(q) => format!("Permissions Violation for Subscription to \"{subject}\" using queue \"{q}\" (sid \"{sid_text}\")"),
                    None => format!("Permissions Violation for Subscription to \"{subject}\" (sid \"{sid_text}\")"),
                };
                tracing::info!("Removed sub {subject:?} (sid {sid_text:?}) - not authorized");
                self.err(&text);
                continue;
            }
            // The delivery deny list and the responses table are the new permissions'.
            let sub = Arc::new(Subscription {
                subject: old.subject.clone(),
                queue: old.queue.clone(),
                sid: old.sid.clone(),
                client_id: old.client_id,
                sink: Sink::Conn(self.out.clone()),
                max: AtomicU64::new(old.max.load(Ordering::Relaxed)),
                delivered: AtomicU64::new(old.delivered.load(Ordering::Relaxed)),
                removed: Default::default(),
                deny: self
                    .perms
                    .as_ref()
                    .and_then(|p| p.delivery_deny(queue.as_deref())),
                responses: self.responses.clone(),
            });
            conns::lock(&self.meta.subs).insert(sid, sub.clone());
            self.router.insert(sub);
        }
        self.cache = MatchCache::default();
        self.remote_cache = None;
        None
    }

    fn on_pub(
        &mut self,
        subj: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Next {
        self.in_msgs += 1;
        self.in_bytes += (payload.len() + headers.map_or(0, <[u8]>::len)) as u64;
        if self.opts.pedantic && !subject::is_valid_literal_subject(subj) {
            // nats-server reports it and still routes it (a wildcard token matches literally).
            self.err("Invalid Publish Subject");
        }
        let accepted = match headers {
            Some(h) if trace::mentioned(h) => self.on_traced_pub(subj, reply, h, payload),
            _ => self.plain_pub(subj, reply, headers, payload),
        };
        if accepted {
            self.ok();
        }
        Next::Continue
    }

    /// A publish: checked against the publish permissions, then routed; false if refused.
    #[inline]
    fn plain_pub(
        &mut self,
        subj: &[u8],
        reply: Option<&[u8]>,
        hdrs: Option<&[u8]>,
        data: &[u8],
    ) -> bool {
        if !self.may_publish(subj) {
            self.publish_violation(subj);
            return false;
        }
        let msg = Publish {
            subject: subj,
            reply,
            headers: hdrs,
            payload: data,
            routed_by: None,
        };
        self.route_pub(&msg, None);
        true
    }

    /// Sends (and logs) the publish permission error for `subj`; returns its text.
    fn publish_violation(&mut self, subj: &[u8]) -> String {
        let text = format!(
            "Permissions Violation for Publish to \"{}\"",
            String::from_utf8_lossy(subj)
        );
        tracing::warn!("{text}");
        self.err(&text);
        text
    }

    /// A publish whose headers mention message tracing: traced when they ask for it to a
    /// subject this client may publish to (a trace-only message to a bad one is dropped);
    /// false if refused or dropped.
    #[cold]
    #[inline(never)]
    fn on_traced_pub(
        &mut self,
        subj: &[u8],
        reply: Option<&[u8]>,
        hdrs: &[u8],
        data: &[u8],
    ) -> bool {
        let Some(req) = trace::request(hdrs) else {
            return self.plain_pub(subj, reply, Some(hdrs), data);
        };
        if !subject::is_valid_literal_subject(req.dest.as_bytes()) {
            return !req.only && self.plain_pub(subj, reply, Some(hdrs), data);
        }
        if !self.may_publish(req.dest.as_bytes()) {
            self.publish_violation(req.dest.as_bytes());
            return false;
        }
        let identity = self.meta.identity();
        let mut ingress = serde_json::json!({
            "kind": 0, "cid": self.out.cid, "acc": identity.account,
            "subj": String::from_utf8_lossy(subj),
        });
        if let Some(name) = identity.name.filter(|n| !n.is_empty()) {
            ingress["name"] = serde_json::json!(name);
        }
        let size = hdrs.len() + data.len();
        let t = trace::Trace::start(&self.shared, self.router.clone(), req, ingress, size);
        let allowed = self.may_publish(subj);
        if allowed {
            let msg = Publish {
                subject: subj,
                reply,
                headers: Some(hdrs),
                payload: data,
                routed_by: None,
            };
            self.route_pub(&msg, Some(&t));
        } else {
            let text = self.publish_violation(subj);
            t.ingress_error(&text);
        }
        t.done();
        allowed
    }

    /// Delivers a publish (recording each delivery in `trace`, if traced); answers a request
    /// that reached no one.
    #[inline]
    fn route_pub(&mut self, msg: &Publish<'_>, trace: Option<&Arc<trace::Trace>>) {
        let matches = self.cache.get(&self.router, msg.subject);
        let origin = Origin {
            cid: self.out.cid,
            echo: self.opts.echo,
        };
        // A subject with an empty token matches no subscription on nats-server: never
        // delivered, never stored (a request still gets its no-responders status).
        let n = if subject::has_empty_token(msg.subject) {
            0
        } else {
            let local = match trace {
                None => deliver(&self.router, &matches, msg, origin, &mut self.dirty),
                Some(t) => deliver_traced(&self.router, &matches, msg, origin, &mut self.dirty, t),
            };
            // The one cost of clustering on a single server: this branch. (A trace-only
            // message stays here: the other servers would deliver it.)
            if self.shared.remote.is_none() || trace.is_some_and(|t| t.only()) {
                local
            } else {
                local + self.forward_to_routes(&matches, msg)
            }
        };
        if let (0, Some(reply)) = (n, msg.reply) {
            if msg.subject == USER_INFO {
                self.user_info(reply);
            } else if self.opts.no_responders && self.opts.headers {
                self.no_responders(msg.subject, reply);
            }
        }
    }

    /// Forwards a publish to the routes whose peers have matching interest (in a cluster);
    /// kept out of line so that a single server's publish path stays as it was.
    #[cold]
    #[inline(never)]
    fn forward_to_routes(&mut self, local: &MatchResult, msg: &Publish<'_>) -> usize {
        let Some(remote) = &self.shared.remote else {
            return 0;
        };
        let cache = self.remote_cache.get_or_insert_with(Box::default);
        let account = self.router.account();
        remote.forward(account, Some(cache), local, msg, &mut self.dirty)
    }

    /// Answers `$SYS.REQ.USER.INFO` (nothing subscribes to it; the server answers who asked).
    fn user_info(&mut self, reply: &[u8]) {
        let identity = self.meta.identity();
        let who = conns::UserInfo {
            user: identity.user.unwrap_or_default(),
            account: identity.account,
            permissions: self.perms.as_ref().map(|p| p.public_json()),
            expires: self
                .expires
                .map(|at| at.saturating_duration_since(tokio::time::Instant::now())),
        };
        let Some(body) = self.shared.conns.user_info(&who) else {
            return;
        };
        // Only to the asker's own subscription: a reply subject is the client's choice, and the
        // answer must not reach (or publish into) anything else.
        self.answer_own(reply, None, &body);
    }

    /// Sends the 503 status (naming the request's subject in `Nats-Subject`, as nats-server)
    /// to this client's own subscription that matches the reply subject.
    fn no_responders(&mut self, subj: &[u8], reply: &[u8]) {
        let mut hdr = Vec::with_capacity(40 + subj.len());
        hdr.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
        hdr.extend_from_slice(subj);
        hdr.extend_from_slice(b"\r\n\r\n");
        self.answer_own(reply, Some(&hdr), &[]);
    }

    /// Writes a message from the server to this client's own subscription matching `reply`
    /// (none: nothing is sent).
    fn answer_own(&mut self, reply: &[u8], headers: Option<&[u8]>, payload: &[u8]) {
        let matches = self.cache.get(&self.router, reply);
        let mine = matches
            .psubs
            .iter()
            .chain(matches.qsubs.iter().flatten())
            .find(|s| s.client_id == self.out.cid);
        if let Some(sub) = mine {
            self.out
                .send(|b| encode::write_msg(b, reply, &sub.sid, None, headers, payload));
        }
    }

    fn may_publish(&mut self, subj: &[u8]) -> bool {
        let Some(perms) = &self.perms else {
            return true;
        };
        let ok = match self.pub_perm_cache.get(subj) {
            Some(&ok) => ok,
            None => {
                let ok = perms.can_publish(&String::from_utf8_lossy(subj));
                if self.pub_perm_cache.len() > 4096 {
                    self.pub_perm_cache.clear();
                }
                self.pub_perm_cache.insert(subj.into(), ok);
                ok
            }
        };
        ok || self.responses.as_ref().is_some_and(|r| r.take(subj))
    }

    fn on_sub(&mut self, subj: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> Next {
        if !subject::is_valid_subject(subj) || !queue.is_none_or(subject::is_valid_queue) {
            self.err("Invalid Subject");
            return Next::Continue;
        }
        let queue_name = queue.map(String::from_utf8_lossy);
        if let Some(perms) = &self.perms {
            if !perms.can_subscribe(&String::from_utf8_lossy(subj), queue_name.as_deref()) {
                let mut text = format!(
                    "Permissions Violation for Subscription to \"{}\"",
                    String::from_utf8_lossy(subj)
                );
                if let Some(q) = &queue_name {
                    text.push_str(&format!(" using queue \"{q}\""));
                }
                tracing::warn!("{text}");
                self.err(&text);
                return Next::Continue;
            }
        }
        let mut subs = conns::lock(&self.meta.subs);
        if subs.contains_key(sid) {
            // nats-server ignores a duplicate sid.
            self.ok();
            return Next::Continue;
        }
        let max_subs = self.max_subs;
        if max_subs > 0 && subs.len() >= max_subs {
            self.err("maximum subscriptions exceeded");
            return Next::Continue;
        }
        let sub = Arc::new(Subscription {
            subject: subj.into(),
            queue: queue.map(Into::into),
            sid: sid.into(),
            client_id: self.out.cid,
            sink: Sink::Conn(self.out.clone()),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            removed: Default::default(),
            deny: self
                .perms
                .as_ref()
                .and_then(|p| p.delivery_deny(queue_name.as_deref())),
            responses: self.responses.clone(),
        });
        subs.insert(sid.into(), sub.clone());
        drop(subs);
        self.router.insert(sub);
        self.ok();
        Next::Continue
    }

    fn on_unsub(&mut self, sid: &[u8], max: Option<u64>) -> Next {
        let mut subs = conns::lock(&self.meta.subs);
        if let Some(sub) = subs.get(sid) {
            match max {
                Some(max) if max > 0 && sub.delivered.load(Ordering::Relaxed) < max => {
                    sub.max.store(max, Ordering::Relaxed);
                }
                _ => {
                    if let Some(sub) = subs.remove(sid) {
                        drop(subs);
                        self.router.remove(&sub);
                    }
                }
            }
        }
        self.ok();
        Next::Continue
    }

    fn ok(&self) {
        if self.opts.verbose {
            self.out.send(|b| b.extend_from_slice(encode::OK));
        }
    }

    fn err(&self, text: &str) {
        self.out.send(|b| encode::write_err(b, text));
    }

    fn flush_stats(&mut self) {
        if self.in_msgs > 0 {
            self.meta.add_in(self.in_msgs, self.in_bytes);
            self.shared
                .stats
                .in_msgs
                .fetch_add(self.in_msgs, Ordering::Relaxed);
            self.shared
                .stats
                .in_bytes
                .fetch_add(self.in_bytes, Ordering::Relaxed);
            self.in_msgs = 0;
            self.in_bytes = 0;
        }
    }

    fn cleanup(&mut self) {
        let subs: Vec<_> = conns::lock(&self.meta.subs).drain().collect();
        for (_, sub) in subs {
            self.router.remove(&sub);
        }
        self.flush_stats();
    }
}

/// When the first keep-alive PING goes: as nats-server, early (at most 2 s, plus up to a
/// fifth at random so that clients connected together do not ping together), which also
/// measures the client's round trip.
fn first_ping(interval: std::time::Duration) -> std::time::Duration {
    use rand::Rng;
    let d = interval.min(std::time::Duration::from_secs(2));
    let jitter = rand::rng().random_range(0..=d.as_millis() as u64 / 5);
    d + std::time::Duration::from_millis(jitter)
}

/// CONNECT's JSON as nats-server reads it: invalid UTF-8 inside strings is replaced (Go's
/// decoder does that) and `null` is all defaults; anything else malformed closes the connection without an `-ERR`.
fn parse_connect(json: &[u8]) -> Option<ConnectOptions> {
    if json == b"null" {
        return Some(ConnectOptions::default());
    }
    if json.first() != Some(&b'{') {
        // serde would read a struct from an array; Go's decoder refuses anything but an object.
        return None;
    }
    let parsed = match std::str::from_utf8(json) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_str(&String::from_utf8_lossy(json)),
    };
    parsed
        .map_err(|e| tracing::debug!("malformed CONNECT: {e}"))
        .ok()
}

/// How many bytes the frame at the front of `buf` needs in total, if it is incomplete.
fn next_need(buf: &[u8], limits: &Limits) -> Option<usize> {
    match parser::parse(buf, limits) {
        Ok(Parsed::Incomplete(n)) => Some(n),
        Ok(Parsed::Op(..))
        | Err(
            ParseError::MaxControlLine
            | ParseError::MaxPayload
            | ParseError::UnknownOp
            | ParseError::BadArgs(_),
        ) => None,
    }
}
