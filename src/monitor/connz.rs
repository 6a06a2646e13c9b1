//! `/connz` (and `$SYS.REQ.SERVER.PING.CONNZ`): the open client connections, or the ring of
//! recently closed ones, with nats-server's fields, sort orders, paging and filters.

use std::cmp::Reverse;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::format::{timestamp, uptime};
use super::query::{Query, QueryError};
use crate::config::go_duration;
use crate::server::conns::ConnSnapshot;
use crate::server::Shared;

/// nats-server's default page size.
pub(crate) const DEFAULT_LIMIT: usize = 1024;

/// Which connections are listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ConnState {
    #[default]
    Open,
    Closed,
    All,
}

/// What a `/connz` request asks for (query parameters, or a system request's JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConnzOptions {
    pub sort: String,
    #[serde(rename = "auth")]
    pub username: bool,
    pub subscriptions: bool,
    pub subscriptions_detail: bool,
    pub offset: i64,
    pub limit: i64,
    pub cid: u64,
    #[serde(deserialize_with = "state_from_int")]
    pub state: ConnState,
    pub user: String,
    #[serde(rename = "acc")]
    pub account: String,
}

/// A system request says `state` as a number (0 open, 1 closed, 2 all).
fn state_from_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ConnState, D::Error> {
    Ok(match i64::deserialize(d)? {
        1 => ConnState::Closed,
        2 => ConnState::All,
        _ => ConnState::Open,
    })
}

impl ConnzOptions {
    /// Reads the HTTP query parameters, with nats-server's 400 texts for bad values.
    pub fn from_query(q: &Query) -> Result<Self, QueryError> {
        let subs = q.get("subs").unwrap_or_default();
        let detail = subs.eq_ignore_ascii_case("detail");
        let state = match q.get("state").map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("open") => ConnState::Open,
            Some("closed") => ConnState::Closed,
            Some("any" | "all") => ConnState::All,
            Some(_) => {
                let raw = q.get("state").unwrap_or_default();
                return Err(QueryError(format!("Error decoding state for {raw}")));
            }
        };
        Ok(Self {
            sort: q.get("sort").unwrap_or_default().to_string(),
            username: q.bool("auth")?,
            subscriptions: !detail && q.bool("subs")?,
            subscriptions_detail: detail,
            offset: q.int("offset")?,
            limit: q.int("limit")?,
            cid: q.uint("cid")?,
            state,
            user: q.get("user").unwrap_or_default().to_string(),
            account: q.get("acc").unwrap_or_default().to_string(),
        })
    }
}

/// The `/connz` answer.
#[derive(Debug, Serialize)]
pub(crate) struct Connz {
    server_id: String,
    now: String,
    num_connections: usize,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Vec<ConnInfo>,
}

/// One connection in `/connz`.
#[derive(Debug, Serialize)]
struct ConnInfo {
    cid: u64,
    kind: &'static str,
    #[serde(rename = "type")]
    conn_type: &'static str,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    rtt: String,
    uptime: String,
    idle: String,
    pending_bytes: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cipher_suite: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_first: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<String>,
    /// With `auth`: the account's name (its JWT name in operator mode on nats-server).
    #[serde(skip_serializing_if = "Option::is_none")]
    name_tag: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list_detail: Vec<SubDetail>,
}

/// One subscription in `subscriptions_list_detail` (and `/subsz`).
#[derive(Debug, Serialize)]
pub(crate) struct SubDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The account's name (its JWT name in operator mode on nats-server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_tag: Option<String>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a sort option orders connections.
enum SortKey {
    Cid,
    Subs,
    Pending,
    OutMsgs,
    InMsgs,
    OutBytes,
    InBytes,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

fn sort_key(opt: &str, state: ConnState) -> Result<SortKey, String> {
    let key = match opt {
        "" | "cid" | "start" => SortKey::Cid,
        "subs" => SortKey::Subs,
        "pending" => SortKey::Pending,
        "msgs_to" => SortKey::OutMsgs,
        "msgs_from" => SortKey::InMsgs,
        "bytes_to" => SortKey::OutBytes,
        "bytes_from" => SortKey::InBytes,
        "last" => SortKey::Last,
        "idle" => SortKey::Idle,
        "uptime" => SortKey::Uptime,
        "stop" => SortKey::Stop,
        "reason" => SortKey::Reason,
        "rtt" => SortKey::Rtt,
        other => return Err(format!("invalid sorting option: {other}")),
    };
    let closed_only = match key {
        SortKey::Stop => "stop",
        SortKey::Reason => "reason",
        _ => return Ok(key),
    };
    if state != ConnState::Closed {
        return Err(format!(
            "sort by {closed_only} only valid on closed connections"
        ));
    }
    Ok(key)
}

fn sort(conns: &mut [ConnSnapshot], key: &SortKey) {
    let age = |c: &ConnSnapshot| c.stop.unwrap_or_else(SystemTime::now);
    match key {
        SortKey::Cid => conns.sort_by_key(|c| c.cid),
        SortKey::Subs => conns.sort_by_key(|c| Reverse(c.num_subs)),
        SortKey::Pending => conns.sort_by_key(|c| Reverse(c.pending_bytes)),
        SortKey::OutMsgs => conns.sort_by_key(|c| Reverse(c.out_msgs)),
        SortKey::InMsgs => conns.sort_by_key(|c| Reverse(c.in_msgs)),
        SortKey::OutBytes => conns.sort_by_key(|c| Reverse(c.out_bytes)),
        SortKey::InBytes => conns.sort_by_key(|c| Reverse(c.in_bytes)),
        // Most recent activity first; idle is the same order reversed.
        SortKey::Last => conns.sort_by_key(|c| Reverse(c.last_activity)),
        SortKey::Idle => conns.sort_by_key(|c| c.last_activity),
        SortKey::Uptime => {
            conns.sort_by_key(|c| age(c).duration_since(c.start).unwrap_or_default())
        }
        SortKey::Stop => conns.sort_by_key(|c| Reverse(c.stop)),
        SortKey::Reason => conns.sort_by_key(|c| c.reason.map(|r| r.as_str())),
        SortKey::Rtt => conns.sort_by_key(|c| Reverse(c.rtt)),
    }
}

/// Builds the answer; `Err` carries nats-server's text for a bad option.
pub(crate) fn connz(shared: &Shared, opts: &ConnzOptions) -> Result<Connz, String> {
    let key = sort_key(&opts.sort, opts.state)?;
    let offset = opts.offset.max(0) as usize;
    let mut limit = if opts.limit <= 0 {
        DEFAULT_LIMIT
    } else {
        opts.limit as usize
    };
    if opts.cid > 0 {
        limit = 1;
    }
    let with_subs = opts.subscriptions || opts.subscriptions_detail;
    let mut conns = Vec::new();
    if opts.state != ConnState::Closed {
        for meta in shared.conns.open() {
            if opts.cid == 0 || meta.out.cid == opts.cid {
                meta.request_rtt();
                conns.push(meta.snapshot(with_subs));
            }
        }
    }
    // A connection asked for by id is looked for among the closed ones if it is not open.
    let found_open = opts.cid > 0 && !conns.is_empty();
    if opts.state != ConnState::Open && !found_open {
        conns.extend(
            shared
                .conns
                .closed()
                .into_iter()
                .filter(|c| opts.cid == 0 || c.cid == opts.cid),
        );
    }
    conns.retain(|c| {
        (opts.account.is_empty() || c.identity.account == opts.account)
            && (opts.user.is_empty() || c.identity.user.as_deref() == Some(opts.user.as_str()))
    });
    let total = conns.len();
    sort(&mut conns, &key);
    let now = SystemTime::now();
    let page: Vec<ConnInfo> = conns
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| conn_info(c, now, opts))
        .collect();
    Ok(Connz {
        server_id: shared.server_id.clone(),
        now: timestamp(now),
        num_connections: page.len(),
        total,
        offset,
        limit,
        connections: page,
    })
}

fn conn_info(c: &ConnSnapshot, now: SystemTime, opts: &ConnzOptions) -> ConnInfo {
    let end = c.stop.unwrap_or(now);
    let since = |t: SystemTime| uptime(end.duration_since(t).unwrap_or_default());
    let tls = c.tls.as_ref();
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let (mut list, mut detail) = (Vec::new(), Vec::new());
    if opts.subscriptions_detail {
        detail = c
            .subs
            .iter()
            .map(|s| SubDetail {
                account: None,
                account_tag: None,
                subject: s.subject.clone(),
                qgroup: s.queue.clone(),
                sid: s.sid.clone(),
                msgs: s.msgs,
                max: s.max,
                cid: c.cid,
            })
            .collect();
    } else if opts.subscriptions {
        list = c.subs.iter().map(|s| s.subject.clone()).collect();
    }
    let account = &c.identity.account;
    ConnInfo {
        cid: c.cid,
        kind: c.kind.as_str(),
        conn_type: c.conn_type,
        ip: c.peer.ip().to_string(),
        port: c.peer.port(),
        start: timestamp(c.start),
        last_activity: timestamp(c.last_activity),
        stop: c.stop.map(timestamp),
        reason: c.reason.map(|r| r.as_str()),
        rtt: go_duration(shown_rtt(c.rtt.unwrap_or_default())),
        uptime: since(c.start),
        idle: since(c.last_activity),
        pending_bytes: c.pending_bytes,
        in_msgs: c.in_msgs,
        out_msgs: c.out_msgs,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        subscriptions: c.num_subs,
        name: nonempty(&c.identity.name),
        lang: nonempty(&c.identity.lang),
        version: nonempty(&c.identity.version),
        tls_version: tls.map(|t| t.version.clone()),
        tls_cipher_suite: tls.map(|t| t.cipher.clone()),
        tls_first: tls.is_some_and(|t| t.first),
        authorized_user: opts.username.then(|| c.identity.user.clone()).flatten(),
        account: (opts.username && account != "$G").then(|| account.clone()),
        subscriptions_list: list,
        name_tag: opts.username.then(|| account.clone()),
        subscriptions_list_detail: detail,
    }
}

/// nats-server shows a round trip under a millisecond to the microsecond.
fn shown_rtt(rtt: Duration) -> Duration {
    if rtt > Duration::from_micros(1) && rtt < Duration::from_millis(1) {
        Duration::from_micros(rtt.as_micros() as u64)
    } else {
        rtt
    }
}
