//! System events in the system account (`system_account`), with nats-server's subjects and
//! JSON: `$SYS.ACCOUNT.<acc>.CONNECT` / `DISCONNECT` when a client logs in or leaves,
//! `$SYS.SERVER.<id>.CLIENT.AUTH.ERR` when one is refused, `LAMEDUCK` and `SHUTDOWN`,
//! `$SYS.SERVER.<id>.STATSZ` (250 ms after start, then doubling up to every 10 s, while
//! someone listens), and the `$SYS.REQ.SERVER.PING[.<X>]`, `$SYS.REQ.SERVER.<id>.<X>` and
//! `$SYS.REQ.ACCOUNT.<acc>.<X>` requests, answered from the monitoring endpoints.
//!
//! Requests are answered on a blocking thread (JetStream answers wait on stream tasks), never
//! on the publisher's. Without a system account there are no events (as nats-server, whose
//! `$SYS` has no users unless configured). In a cluster only this server answers: routes carry
//! the global account only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::connz::{self, ConnzOptions};
use super::format::{nanos, timestamp};
use super::process::{cores, rss_bytes};
use super::query::Query;
use super::{Answer, Monitor};
use crate::server::conns::{ConnObserver, ConnSnapshot, UserInfo};
use crate::server::{Client, CloseReason, Message};

/// Requests waiting for the answering thread; past it, requests are dropped (the requester
/// times out, as with a busy nats-server).
const MAX_QUEUED: usize = 1024;
/// The STATSZ heartbeat's first delay and its longest interval.
const STATSZ_FIRST: Duration = Duration::from_millis(250);
const STATSZ_MAX: Duration = Duration::from_secs(10);

/// The system account's publisher and the server identity every event carries.
pub(crate) struct Events {
    monitor: Arc<Monitor>,
    client: Client,
    seq: AtomicU64,
    /// A system account is configured: events are published in it. Without one only
    /// `$SYS.REQ.USER.INFO` is answered.
    system: bool,
}

/// Starts answering `$SYS.REQ.USER.INFO`, and system events if a system account is
/// configured.
pub(crate) fn start(monitor: &Arc<Monitor>) {
    let shared = &monitor.shared;
    let system = shared
        .config
        .system_account
        .as_ref()
        .and_then(|sys| shared.accounts.get(sys));
    let router = system.cloned().unwrap_or_else(|| shared.router.clone());
    let client = Client::in_account(shared.clone(), router);
    let events = Arc::new(Events {
        monitor: monitor.clone(),
        client,
        seq: AtomicU64::new(0),
        system: system.is_some(),
    });
    shared.conns.observe(events.clone());
    if !events.system {
        return;
    }
    let (tx, rx) = mpsc::channel::<Message>(MAX_QUEUED);
    let id = shared.server_id.clone();
    for subject in [
        "$SYS.REQ.SERVER.PING".to_string(),
        "$SYS.REQ.SERVER.PING.*".to_string(),
        format!("$SYS.REQ.SERVER.{id}.*"),
        "$SYS.REQ.ACCOUNT.*.*".to_string(),
    ] {
        let tx = tx.clone();
        let handler = Arc::new(move |m: Message| {
            if m.reply.is_some() && tx.try_send(m).is_err() {
                tracing::warn!("system request dropped: too many queued");
            }
            true
        });
        let _ = events.client.subscribe_internal(&subject, None, handler);
    }
    shared.tasks.spawn(answer_loop(events.clone(), rx));
    shared.tasks.spawn(statsz_loop(events));
}

async fn answer_loop(events: Arc<Events>, mut rx: mpsc::Receiver<Message>) {
    let shutdown = events.monitor.shared.shutdown.clone();
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let ev = events.clone();
        let _ = tokio::task::spawn_blocking(move || ev.answer(&m)).await;
    }
}

async fn statsz_loop(events: Arc<Events>) {
    let shutdown = events.monitor.shared.shutdown.clone();
    let subject = format!("$SYS.SERVER.{}.STATSZ", events.monitor.shared.server_id);
    let mut wait = STATSZ_FIRST;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(STATSZ_MAX);
        if events.client.has_interest(&subject) {
            let ev = events.clone();
            let body = tokio::task::spawn_blocking(move || ev.statsz())
                .await
                .unwrap_or_default();
            events.publish(&subject, &body);
        }
    }
}

/// Which servers a request is for (empty: all).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Filter {
    server_name: String,
    cluster: String,
    host: String,
    tags: Vec<String>,
    domain: String,
    exact_match: bool,
}

impl Events {
    fn publish(&self, subject: &str, body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.client.publish_sync(subject, None, None, &bytes);
    }

    /// The `server` object of every event and reply.
    fn server_info(&self) -> Value {
        let shared = &self.monitor.shared;
        let addr = shared.local_addr();
        let (cluster, _) = shared.cluster_view();
        let mut v = json!({
            "name": shared.server_name,
            "host": addr.ip().to_string(),
            "id": shared.server_id,
            "ver": crate::protocol::info::PROTOCOL_VERSION,
            "jetstream": self.monitor.js.is_some(),
            "flags": u64::from(self.monitor.js.is_some()),
            "seq": self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            "time": timestamp(SystemTime::now()),
        });
        if let Some(c) = cluster {
            v["cluster"] = json!(c);
        }
        v
    }

    /// `{server, statsz}`: what `$SYS.SERVER.<id>.STATSZ` and `PING.STATSZ` carry.
    fn statsz(&self) -> Value {
        let m = &self.monitor;
        let shared = &m.shared;
        let totals = shared.conns.totals();
        let (in_msgs, in_bytes) = shared.stats.in_totals();
        let mut stats = json!({
            "start": timestamp(shared.start_time),
            "mem": rss_bytes(),
            "cores": cores(),
            "cpu": m.cpu.percent(),
            "connections": shared.num_connections(),
            "total_connections": shared.conns.total(),
            "active_accounts": active_accounts(shared),
            "subscriptions": shared.num_subscriptions(),
            "sent": { "msgs": totals.out_msgs, "bytes": totals.out_bytes },
            "sent_to_clients": { "msgs": totals.out_msgs, "bytes": totals.out_bytes },
            "received": { "msgs": in_msgs, "bytes": in_bytes },
            "received_from_clients": { "msgs": in_msgs, "bytes": in_bytes },
            "slow_consumers": totals.slow_consumers,
        });
        if totals.stale_connections > 0 {
            stats["stale_connections"] = json!(totals.stale_connections);
        }
        stats["active_servers"] = json!(m.cluster.as_ref().map_or(0, |c| c.num_routes()) + 1);
        if m.js.is_some() {
            let mut js = m.jetstream_block();
            if let Some(config) = js["config"].as_object_mut() {
                config.remove("store_dir"); // not told to other servers
            }
            stats["jetstream"] = js;
        }
        json!({ "server": self.server_info(), "statsz": stats })
    }

    /// Answers one request (on a blocking thread).
    fn answer(&self, m: &Message) {
        let Some(reply) = &m.reply else { return };
        let body: Value = if m.payload.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&m.payload) {
                Ok(v) => v,
                Err(e) => {
                    return self.publish(reply, &self.envelope_error(400, &e.to_string()));
                }
            }
        };
        let tokens: Vec<&str> = m.subject.split('.').collect();
        let answer = match tokens.as_slice() {
            ["$SYS", "REQ", "SERVER", "PING"] => Some(self.server_request("STATSZ", &body, true)),
            ["$SYS", "REQ", "SERVER", "PING", what] => Some(self.server_request(what, &body, true)),
            ["$SYS", "REQ", "SERVER", _id, what] => Some(self.by_id(what, &body)),
            ["$SYS", "REQ", "ACCOUNT", acc, what] => self.account_request(acc, what, &body),
            _ => None,
        };
        if let Some(v) = answer.flatten() {
            self.publish(reply, &v);
        }
    }

    /// A request to every server (`filtered`: `None` when the body's filter leaves this one
    /// out), or to this one by id.
    fn server_request(&self, what: &str, body: &Value, filtered: bool) -> Option<Value> {
        let filter: Filter = serde_json::from_value(body.clone()).unwrap_or_default();
        if filtered && !self.selected(&filter) {
            return None;
        }
        let m = &self.monitor;
        let data = match what {
            "IDZ" => {
                let s = &m.shared;
                return Some(json!({
                    "name": s.server_name,
                    "host": s.local_addr().ip().to_string(),
                    "id": s.server_id,
                }));
            }
            "STATSZ" => return Some(self.statsz()),
            "VARZ" => Ok(m.varz()),
            "CONNZ" => serde_json::from_value::<ConnzOptions>(body.clone())
                .map_err(|e| e.to_string())
                .and_then(|o| connz::connz(&m.shared, &o))
                .and_then(|c| serde_json::to_value(c).map_err(|e| e.to_string())),
            "SUBSZ" => m.subsz(&options(
                body,
                &[("subscriptions", "subs"), ("account", "acc")],
            )),
            "JSZ" => m.jsz(&options(body, &[("account", "acc")])),
            "ACCOUNTZ" => m.accountz(&options(body, &[("account", "acc")])),
            "ROUTEZ" => Ok(m.routez()),
            "GATEWAYZ" => Ok(m.gatewayz()),
            "LEAFZ" => Ok(m.leafz()),
            "HEALTHZ" => match m.healthz(&options(body, &[])) {
                Answer::Health(status, mut v) => {
                    v["status_code"] = json!(status.as_u16());
                    Ok(v)
                }
                _ => Err("health check failed".to_string()),
            },
            other => Err(format!("{other} is not supported by this server")),
        };
        Some(match data {
            Ok(data) => json!({ "server": self.server_info(), "data": data }),
            Err(text) => self.envelope_error(400, &text),
        })
    }

    /// A request to this server by id: the ping requests, and `KICK` (close a client).
    fn by_id(&self, what: &str, body: &Value) -> Option<Value> {
        if what != "KICK" {
            return self.server_request(what, body, false);
        }
        let cid = body["cid"].as_u64().unwrap_or(0);
        match self.monitor.shared.conns.get(cid) {
            Some(meta) => {
                meta.out.close(CloseReason::Kicked);
                Some(json!({ "server": self.server_info() }))
            }
            None => Some(self.envelope_error(404, &format!("client {cid} not found"))),
        }
    }

    /// `$SYS.REQ.ACCOUNT.<acc>.CONNZ|SUBSZ`: the ping requests narrowed to one account.
    fn account_request(&self, acc: &str, what: &str, body: &Value) -> Option<Option<Value>> {
        let mut body = body.clone();
        if !body.is_object() {
            body = json!({});
        }
        match what {
            "CONNZ" => body["acc"] = json!(acc),
            "SUBSZ" => {
                body["account"] = json!(acc);
                body["subscriptions"] = json!(true);
            }
            _ => return None,
        }
        Some(self.server_request(what, &body, false))
    }

    fn envelope_error(&self, code: u16, text: &str) -> Value {
        json!({
            "server": self.server_info(),
            "error": { "code": code, "description": text },
        })
    }

    /// Whether a request's filter includes this server.
    fn selected(&self, f: &Filter) -> bool {
        let shared = &self.monitor.shared;
        let like = |want: &str, have: &str| {
            want.is_empty()
                || if f.exact_match {
                    want == have
                } else {
                    have.contains(want)
                }
        };
        let (cluster, _) = shared.cluster_view();
        let host = shared.local_addr().ip().to_string();
        like(&f.server_name, &shared.server_name)
            && like(&f.cluster, cluster.as_deref().unwrap_or_default())
            && like(&f.host, &host)
            && f.tags.is_empty()
            && f.domain.is_empty()
    }

    /// The `client` object of connect and disconnect events.
    fn client_info(&self, c: &ConnSnapshot) -> Value {
        let shared = &self.monitor.shared;
        let mut v = json!({
            "start": timestamp(c.start),
            "host": c.peer.ip().to_string(),
            "id": c.cid,
            "acc": c.identity.account,
            "name_tag": c.identity.account,
            "kind": c.kind.as_str(),
            "client_type": c.conn_type,
        });
        let fields = [
            ("user", &c.identity.user),
            ("name", &c.identity.name),
            ("lang", &c.identity.lang),
            ("ver", &c.identity.version),
        ];
        for (key, value) in fields {
            if let Some(text) = value.as_deref().filter(|t| !t.is_empty()) {
                v[key] = json!(text);
            }
        }
        if let Some(rtt) = c.rtt {
            v["rtt"] = json!(nanos(rtt));
        }
        if let Some(stop) = c.stop {
            v["stop"] = json!(timestamp(stop));
        }
        if let (Some(cluster), _) = shared.cluster_view() {
            v["cluster"] = json!(cluster);
        }
        v
    }

    /// A `client_disconnect` event (a close, or a refused login) on `subject`, if someone
    /// listens: what the client sent and received, and why it ended.
    fn disconnect_event(&self, subject: &str, c: &ConnSnapshot) {
        if !self.client.has_interest(subject) {
            return;
        }
        let mut v = self.event("client_disconnect", c);
        v["sent"] = json!({ "msgs": c.in_msgs, "bytes": c.in_bytes });
        v["received"] = json!({ "msgs": c.out_msgs, "bytes": c.out_bytes });
        v["reason"] = json!(c.reason.map_or("", |r| r.as_str()));
        self.publish(subject, &v);
    }

    fn event(&self, kind: &str, c: &ConnSnapshot) -> Value {
        json!({
            "type": format!("io.nats.server.advisory.v1.{kind}"),
            "id": nuid::next().to_string(),
            "timestamp": timestamp(SystemTime::now()),
            "server": self.server_info(),
            "client": self.client_info(c),
        })
    }
}

impl ConnObserver for Events {
    fn server_info(&self) -> Option<Value> {
        Some(Events::server_info(self))
    }

    fn user_info(&self, who: &UserInfo) -> Option<Vec<u8>> {
        let mut data = json!({
            "user": who.user,
            "account": who.account,
            "account_name": who.account,
        });
        if let Some(p) = &who.permissions {
            data["permissions"] = p.clone();
        }
        if let Some(left) = who.expires {
            data["expires"] = json!(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX));
        }
        let body = json!({ "server": self.server_info(), "data": data });
        serde_json::to_vec(&body).ok()
    }

    fn auth_failed(&self, c: &ConnSnapshot) {
        if !self.system {
            return;
        }
        let subject = format!(
            "$SYS.SERVER.{}.CLIENT.AUTH.ERR",
            self.monitor.shared.server_id
        );
        self.disconnect_event(&subject, c);
    }

    fn stopping(&self, lame_duck: bool) {
        if !self.system {
            return;
        }
        let what = if lame_duck { "LAMEDUCK" } else { "SHUTDOWN" };
        let subject = format!("$SYS.SERVER.{}.{what}", self.monitor.shared.server_id);
        if self.client.has_interest(&subject) {
            self.publish(&subject, &self.server_info());
        }
    }

    fn connected(&self, c: &ConnSnapshot) {
        if !self.system {
            return;
        }
        let subject = format!("$SYS.ACCOUNT.{}.CONNECT", c.identity.account);
        if self.client.has_interest(&subject) {
            self.publish(&subject, &self.event("client_connect", c));
        }
    }

    fn disconnected(&self, c: &ConnSnapshot) {
        if !self.system {
            return;
        }
        let subject = format!("$SYS.ACCOUNT.{}.DISCONNECT", c.identity.account);
        self.disconnect_event(&subject, c);
    }
}

/// A system request's JSON options as query parameters (renaming keys as `renames` says).
fn options(body: &Value, renames: &[(&str, &str)]) -> Query {
    let mut pairs = Vec::new();
    if let Some(map) = body.as_object() {
        for (k, v) in map {
            let key = renames
                .iter()
                .find(|(from, _)| from == k)
                .map_or(k.as_str(), |(_, to)| to);
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            pairs.push((key.to_string(), text));
        }
    }
    Query::from_pairs(pairs)
}

/// Accounts with at least one client connected.
fn active_accounts(shared: &crate::server::Shared) -> usize {
    let mut accounts: Vec<String> = shared
        .conns
        .open()
        .iter()
        .map(|m| m.snapshot(false).identity.account)
        .collect();
    accounts.sort();
    accounts.dedup();
    accounts.len()
}
