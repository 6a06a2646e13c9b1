//! The registry of client connections that monitoring and system events read: each open
//! connection's [`ConnMeta`] (who it is, its counters, its subscriptions) and a bounded ring of
//! recently closed ones, both as plain [`ConnSnapshot`]s. The core knows nothing of how they
//! are shown; an optional [`ConnObserver`] hears of logins and closes (system events).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use super::kind::ConnKind;
use super::outbound::{CloseReason, Outbound};
use super::sublist::Subscription;

/// The TLS session a client connection runs over.
#[derive(Debug, Clone, Default)]
pub struct TlsDetail {
    /// `1.2` or `1.3`.
    pub version: String,
    /// The IANA name of the cipher suite.
    pub cipher: String,
    /// The handshake came before INFO.
    pub first: bool,
}

/// What a client said of itself and who it logged in as (set by its CONNECT).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    /// The user name (or nkey, or JWT subject) it authenticated as.
    pub user: Option<String>,
    /// Its account (`$G` outside `accounts {}`).
    pub account: String,
}

/// One subscription as monitoring shows it.
#[derive(Debug, Clone)]
pub struct SubSnapshot {
    pub subject: String,
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    pub max: u64,
}

/// One connection at one moment (open, or closed with its reason).
#[derive(Debug, Clone)]
pub struct ConnSnapshot {
    pub cid: u64,
    pub kind: ConnKind,
    /// `nats` or `websocket`.
    pub conn_type: &'static str,
    pub peer: SocketAddr,
    pub start: SystemTime,
    pub last_activity: SystemTime,
    pub stop: Option<SystemTime>,
    pub reason: Option<CloseReason>,
    pub rtt: Option<Duration>,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub tls: Option<TlsDetail>,
    pub identity: Identity,
    pub num_subs: usize,
    /// The subscriptions themselves, when asked for.
    pub subs: Vec<SubSnapshot>,
}

/// The live side of one client connection, shared by its reader task and the registry.
pub(crate) struct ConnMeta {
    pub out: Arc<Outbound>,
    conn_type: &'static str,
    peer: SocketAddr,
    start: SystemTime,
    tls: Option<TlsDetail>,
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    /// Unix time in nanoseconds of the last message in or out.
    last_activity: AtomicU64,
    rtt_nanos: AtomicU64,
    /// When the PING that measures the round trip went out.
    rtt_ping: Mutex<Option<Instant>>,
    identity: Mutex<Identity>,
    /// CONNECT was accepted (only such connections are announced).
    logged_in: AtomicBool,
    /// The connection's subscriptions by sid (the reader task owns changes to them).
    pub subs: Mutex<FxHashMap<Box<[u8]>, Arc<Subscription>>>,
}

/// Locks, ignoring poisoning (the data are counters and lists, valid after any panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl ConnMeta {
    pub fn new(
        out: Arc<Outbound>,
        peer: SocketAddr,
        websocket: bool,
        tls: Option<TlsDetail>,
    ) -> Arc<Self> {
        let start = SystemTime::now();
        Arc::new(Self {
            out,
            conn_type: if websocket { "websocket" } else { "nats" },
            peer,
            start,
            tls,
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            last_activity: AtomicU64::new(unix_nanos(start)),
            rtt_nanos: AtomicU64::new(0),
            rtt_ping: Mutex::new(None),
            identity: Mutex::new(Identity {
                account: "$G".into(),
                ..Identity::default()
            }),
            logged_in: AtomicBool::new(false),
            subs: Mutex::default(),
        })
    }

    /// Records who the client is once its CONNECT is accepted.
    pub fn set_identity(&self, identity: Identity) {
        *lock(&self.identity) = identity;
        self.logged_in.store(true, Ordering::Relaxed);
    }

    /// Records who a refused CONNECT claimed to be (for the auth error event).
    pub fn set_claimed(&self, identity: Identity) {
        *lock(&self.identity) = identity;
    }

    /// Who the client logged in as.
    pub fn identity(&self) -> Identity {
        lock(&self.identity).clone()
    }

    /// The client's CONNECT was accepted.
    pub fn logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Relaxed)
    }

    /// Sends a PING to measure the round trip of a client that has none yet, once it has
    /// had its first PONG (a client library, not a telnet session).
    pub fn request_rtt(&self) {
        let named = lock(&self.identity).lang.is_some();
        if named && !self.has_rtt() && lock(&self.rtt_ping).is_none() {
            self.ping_sent();
            self.out
                .send(|b| b.extend_from_slice(crate::protocol::encode::PING));
        }
    }

    /// Adds what one read batch brought in.
    pub fn add_in(&self, msgs: u64, bytes: u64) {
        self.in_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.touch();
    }

    /// The connection just did something.
    pub fn touch(&self) {
        self.last_activity
            .store(unix_nanos(SystemTime::now()), Ordering::Relaxed);
    }

    /// Notes that a PING went out; the matching PONG measures the round trip.
    pub fn ping_sent(&self) {
        lock(&self.rtt_ping).get_or_insert_with(Instant::now);
    }

    /// A PONG came back.
    pub fn pong(&self) {
        if let Some(at) = lock(&self.rtt_ping).take() {
            let rtt = at.elapsed().as_nanos().max(1) as u64;
            self.rtt_nanos.store(rtt, Ordering::Relaxed);
        }
    }

    /// Whether the round trip was measured yet.
    pub fn has_rtt(&self) -> bool {
        self.rtt_nanos.load(Ordering::Relaxed) > 0
    }

    /// The connection as it is now (`stop`/`reason` set when it has closed).
    pub fn snapshot(&self, with_subs: bool) -> ConnSnapshot {
        let subs = lock(&self.subs);
        let num_subs = subs.len();
        let list = if with_subs {
            subs.values().map(|s| sub_snapshot(s)).collect()
        } else {
            Vec::new()
        };
        drop(subs);
        let rtt = self.rtt_nanos.load(Ordering::Relaxed);
        let last = self.last_activity.load(Ordering::Relaxed);
        let reason = self.out.closed();
        ConnSnapshot {
            cid: self.out.cid,
            kind: self.out.kind,
            conn_type: self.conn_type,
            peer: self.peer,
            start: self.start,
            last_activity: UNIX_EPOCH + Duration::from_nanos(last),
            stop: reason.map(|_| SystemTime::now()),
            reason,
            rtt: (rtt > 0).then(|| Duration::from_nanos(rtt)),
            pending_bytes: self.out.pending(),
            in_msgs: self.in_msgs.load(Ordering::Relaxed),
            in_bytes: self.in_bytes.load(Ordering::Relaxed),
            out_msgs: self.out.out_msgs.load(Ordering::Relaxed),
            out_bytes: self.out.out_bytes.load(Ordering::Relaxed),
            tls: self.tls.clone(),
            identity: lock(&self.identity).clone(),
            num_subs,
            subs: list,
        }
    }
}

fn sub_snapshot(s: &Subscription) -> SubSnapshot {
    SubSnapshot {
        subject: String::from_utf8_lossy(&s.subject).into_owned(),
        queue: s
            .queue
            .as_deref()
            .map(|q| String::from_utf8_lossy(q).into_owned()),
        sid: String::from_utf8_lossy(&s.sid).into_owned(),
        msgs: s.delivered.load(Ordering::Relaxed),
        max: s.max.load(Ordering::Relaxed),
    }
}

/// Hears of clients logging in and of connections closing (system events).
pub(crate) trait ConnObserver: Send + Sync {
    /// A client's CONNECT was accepted.
    fn connected(&self, conn: &ConnSnapshot);
    /// A logged-in client's connection closed.
    fn disconnected(&self, conn: &ConnSnapshot);
    /// A connection was refused for bad credentials.
    fn auth_failed(&self, conn: &ConnSnapshot);
    /// The server is stopping (`lame_duck`: entering lame duck mode first).
    fn stopping(&self, lame_duck: bool);
    /// The answer to a client's `$SYS.REQ.USER.INFO` (None: the request goes unanswered).
    fn user_info(&self, _who: &UserInfo) -> Option<Vec<u8>> {
        None
    }
    /// The `server` object events carry (message trace events too).
    fn server_info(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Who a client is, as `$SYS.REQ.USER.INFO` tells it.
#[derive(Debug, Clone)]
pub(crate) struct UserInfo {
    pub user: String,
    pub account: String,
    /// Its permissions as JSON, if it has any.
    pub permissions: Option<serde_json::Value>,
    /// How long until its credentials expire.
    pub expires: Option<std::time::Duration>,
}

/// Every open client connection, and the most recently closed ones.
#[derive(Default)]
pub(crate) struct Registry {
    /// How many closed connections the ring keeps (`max_closed_clients`).
    max_closed: usize,
    open: Mutex<FxHashMap<u64, Arc<ConnMeta>>>,
    closed: Mutex<VecDeque<ConnSnapshot>>,
    total: AtomicU64,
    /// What closed connections were sent (open ones count their own).
    retired_out_msgs: AtomicU64,
    retired_out_bytes: AtomicU64,
    slow_consumers: AtomicU64,
    stale_connections: AtomicU64,
    /// Logged-in connections per account (its `max_connections`).
    per_account: Mutex<FxHashMap<String, usize>>,
    observer: OnceLock<Arc<dyn ConnObserver>>,
}

/// Server-wide totals over open and closed client connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
}

impl Registry {
    /// A registry that remembers `max_closed` closed connections.
    pub fn new(max_closed: usize) -> Self {
        Self {
            max_closed,
            ..Self::default()
        }
    }

    pub fn insert(&self, meta: &Arc<ConnMeta>) {
        lock(&self.open).insert(meta.out.cid, meta.clone());
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a login into `account`, unless `limit` connections of it are open already.
    pub fn join(&self, account: &str, limit: Option<usize>) -> bool {
        let mut counts = lock(&self.per_account);
        let n = counts.entry(account.to_string()).or_default();
        if limit.is_some_and(|max| *n >= max) {
            return false;
        }
        *n += 1;
        true
    }

    /// A client logged in: tells the observer.
    pub fn connected(&self, meta: &ConnMeta) {
        if let Some(obs) = self.observer.get() {
            obs.connected(&meta.snapshot(false));
        }
    }

    /// The `server` object of events, from the observer.
    pub fn server_info(&self) -> Option<serde_json::Value> {
        self.observer.get()?.server_info()
    }

    /// The observer's answer to `$SYS.REQ.USER.INFO` from `who`.
    pub fn user_info(&self, who: &UserInfo) -> Option<Vec<u8>> {
        self.observer.get()?.user_info(who)
    }

    /// Moves a closed connection to the ring of closed ones.
    pub fn remove(&self, cid: u64) {
        let Some(meta) = lock(&self.open).remove(&cid) else {
            return;
        };
        let snap = meta.snapshot(true);
        self.retired_out_msgs
            .fetch_add(snap.out_msgs, Ordering::Relaxed);
        self.retired_out_bytes
            .fetch_add(snap.out_bytes, Ordering::Relaxed);
        match snap.reason {
            Some(
                CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline,
            ) => {
                self.slow_consumers.fetch_add(1, Ordering::Relaxed);
            }
            Some(CloseReason::StaleConnection) => {
                self.stale_connections.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if meta.logged_in() {
            if let Some(n) = lock(&self.per_account).get_mut(&snap.identity.account) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(obs) = self.observer.get() {
            if meta.logged_in() {
                obs.disconnected(&snap);
            } else if snap.reason == Some(CloseReason::AuthFailure) {
                obs.auth_failed(&snap);
            }
        }
        let mut closed = lock(&self.closed);
        while closed.len() >= self.max_closed.max(1) {
            closed.pop_front();
        }
        if self.max_closed > 0 {
            closed.push_back(snap);
        }
    }

    /// The open connections.
    pub fn open(&self) -> Vec<Arc<ConnMeta>> {
        lock(&self.open).values().cloned().collect()
    }

    /// One open connection.
    pub fn get(&self, cid: u64) -> Option<Arc<ConnMeta>> {
        lock(&self.open).get(&cid).cloned()
    }

    /// The recently closed connections, oldest first.
    pub fn closed(&self) -> Vec<ConnSnapshot> {
        lock(&self.closed).iter().cloned().collect()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Messages and bytes sent to clients, slow consumers and stale connections, since start.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            out_msgs: self.retired_out_msgs.load(Ordering::Relaxed),
            out_bytes: self.retired_out_bytes.load(Ordering::Relaxed),
            slow_consumers: self.slow_consumers.load(Ordering::Relaxed),
            stale_connections: self.stale_connections.load(Ordering::Relaxed),
        };
        for meta in lock(&self.open).values() {
            t.out_msgs += meta.out.out_msgs.load(Ordering::Relaxed);
            t.out_bytes += meta.out.out_bytes.load(Ordering::Relaxed);
        }
        t
    }

    /// How many connections were ever registered.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The server is stopping: tells the observer.
    pub fn stopping(&self, lame_duck: bool) {
        if let Some(obs) = self.observer.get() {
            obs.stopping(lame_duck);
        }
    }

    /// Sets who hears of logins and closes (once; later calls are ignored).
    pub fn observe(&self, observer: Arc<dyn ConnObserver>) {
        let _ = self.observer.set(observer);
    }
}
