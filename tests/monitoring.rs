//! HTTP monitoring against nats-server 2.15.1 run in the same test: the same clients, streams
//! and consumers on both, then every endpoint's JSON compared field by field (names and JSON
//! types), `/connz` sorting, paging and the closed ring, nats-server's 400 texts, and
//! `/metrics` read with a Prometheus text parser.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use common::reference::RefServer;
use common::{free_port, loopback_conf, monitor_get, monitor_json, start, sync, within, TIMEOUT};
use serde_json::Value;

/// The JSON type of a value, as the comparison sees it.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where `ours` differs from `theirs` in field names or types (recursively; an array by the
/// fields its elements have). Paths in `skip` (`varz.gomemlimit`, `connz.connections[].stalls`) are
/// fields one side has and the other does not, each with its reason at the call.
fn shape_diff(ours: &Value, theirs: &Value, path: &str, skip: &[&str], out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                if skipped(skip, &p) {
                    continue;
                }
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => shape_diff(x, y, &p, skip, out),
                    (None, Some(y)) => out.push(format!("{p}: missing (nats-server: {y})")),
                    (Some(x), None) => out.push(format!("{p}: extra ({x})")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (union(a), union(b)) {
                shape_diff(&x, &y, &format!("{path}[]"), skip, out);
            }
        }
        (a, b) if kind(a) != kind(b) => out.push(format!(
            "{path}: {} (nats-server: {} {b})",
            kind(a),
            kind(b)
        )),
        _ => {}
    }
}

/// Whether `path` is one of `skip` (`*.rest` stands for any first token).
fn skipped(skip: &[&str], path: &str) -> bool {
    let rest = path.split_once('.').map_or("", |(_, r)| r);
    skip.iter()
        .any(|s| *s == path || s.strip_prefix("*.") == Some(rest))
}

/// An array's elements as one: for objects, every field any element has (the first value
/// seen); otherwise the first element.
fn union(items: &[Value]) -> Option<Value> {
    let first = items.first()?;
    if !first.is_object() {
        return Some(first.clone());
    }
    let mut all = serde_json::Map::new();
    for item in items.iter().filter_map(Value::as_object) {
        for (k, v) in item {
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Some(Value::Object(all))
}

fn assert_same_shape(what: &str, ours: &Value, theirs: &Value, skip: &[&str]) {
    let mut diff = Vec::new();
    shape_diff(ours, theirs, what, skip, &mut diff);
    assert!(
        diff.is_empty(),
        "{what} differs from nats-server 2.15.1:\n{}\nours: {ours:#}\ntheirs: {theirs:#}",
        diff.join("\n")
    );
}

/// The same traffic on a server: two named clients, subscriptions (one queue), publishes, a
/// stream with two messages and a durable pull consumer. Returns the clients (kept open).
async fn traffic(url: &str) -> Vec<async_nats::Client> {
    let mut clients = Vec::new();
    for name in ["alpha", "beta"] {
        let c = within(
            TIMEOUT,
            "connect",
            async_nats::ConnectOptions::new().name(name).connect(url),
        )
        .await
        .expect("connect");
        clients.push(c);
    }
    let _a = clients[0].subscribe("orders.>").await.unwrap();
    let _b = clients[1]
        .queue_subscribe("work", "workers".into())
        .await
        .unwrap();
    std::mem::forget((_a, _b)); // the subscriptions stay for the endpoints to list
    for i in 0..3 {
        clients[1]
            .publish(format!("orders.{i}"), "x".into())
            .await
            .unwrap();
    }
    sync(&clients[1]).await;
    let js = jetstream::new(clients[0].clone());
    let stream = stream_with(&js, "ORDERS", "shop", 2).await;
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("C".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    clients
}

/// Creates stream `name` on `subject.>` and stores `n` messages published to `subject.x`,
/// each acknowledged.
async fn stream_with(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
    n: usize,
) -> jetstream::stream::Stream {
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{subject}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..n {
        js.publish(format!("{subject}.x"), "m".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    stream
}

/// A nats-server 2.15.1 with JetStream and monitoring on `port`.
fn reference(extra: &str) -> (RefServer, SocketAddr) {
    let http = free_port();
    let conf = format!(
        "http: \"127.0.0.1:{http}\"\njetstream {{ store_dir: \"{{store}}\", sync_interval: always }}\n{extra}"
    );
    (RefServer::start(&conf), ([127, 0, 0, 1], http).into())
}

/// Fields nats-server has and causeway does not show, or shows where nats-server leaves them
/// out, each for a reason the README's status table states.
const NOT_SHOWN: &[&str] = &[
    // Go runtime and build details with no Rust counterpart.
    "varz.git_commit",
    "varz.gomemlimit",
    // Reload is not implemented: the config is never reloaded, and not digested.
    "varz.config_digest",
    // Not measured: disk I/O waits, stalls of fast producers, sublist cache statistics.
    "varz.disk_io_wait_stats",
    "subsz.num_cache",
    "subsz.num_inserts",
    "subsz.num_removes",
    "subsz.num_matches",
    "subsz.cache_hit_rate",
    "subsz.max_fanout",
    "subsz.avg_fanout",
    // nats-server's per-server JetStream limits block and its `ha_assets` accounting of
    // Raft groups; causeway shows `max_memory`/`max_storage` under `config`.
    "jsz.limits",
    "varz.jetstream.limits",
    "varz.jetstream.stats.ha_assets",
    "jsz.ha_assets",
    // nats-server's internal feature flags, and its strict JSON mode (a Go decoder setting).
    "varz.feature_flags",
    "varz.jetstream.config.strict",
    "jsz.config.strict",
    // causeway syncs before every ack (`sync: always`) and has no background interval then.
    "varz.jetstream.config.sync_interval",
    "jsz.config.sync_interval",
    // nats-server always has a `$SYS` account; causeway has one when `system_account` says.
    "varz.system_account",
    "accountz.system_account",
    // Server-wide counts nats-server repeats (as 0) in each account's detail.
    "jsz.account_details[].accounts",
    "jsz.account_details[].ha_assets",
    // Consumers are shown as the `CONSUMER.INFO` API answers them (with the leader), and
    // without nats-server's `_nats.req.level` metadata (API levels are not tracked).
    "jsz.account_details[].stream_detail[].consumer_detail[].cluster",
    "jsz.account_details[].stream_detail[].consumer_detail[].config.metadata",
    // causeway's stream info carries fields of its own beyond nats-server's (compared by the
    // JetStream tests, not here).
    "jsz.account_details[].stream_detail[].config",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_have_nats_server_shapes() {
    let store = tempfile::tempdir().unwrap();
    let mut cfg = loopback_conf("jetstream { sync_interval: always }\n");
    cfg.jetstream.store_dir = store.path().to_path_buf();
    cfg.http_port = Some(0);
    let ours = start(cfg).await;
    let (_reference, theirs) = reference("");
    let ours_http = ours.monitor_addr().expect("monitoring");
    let theirs_url = format!("nats://{}", _reference.addr);
    let _a = traffic(&ours.client_url()).await;
    let _b = traffic(&theirs_url).await;
    let endpoints = [
        ("varz", "/varz"),
        ("connz", "/connz?subs=detail&auth=true"),
        ("subsz", "/subsz?subs=true"),
        (
            "jsz",
            "/jsz?accounts=true&streams=true&consumers=true&config=true",
        ),
        ("healthz", "/healthz"),
        ("accountz", "/accountz"),
        ("routez", "/routez"),
        ("gatewayz", "/gatewayz"),
        ("leafz", "/leafz"),
    ];
    for (name, path) in endpoints {
        let a = monitor_json(ours_http, path).await;
        let b = monitor_json(theirs, path).await;
        assert_same_shape(name, &a, &b, NOT_SHOWN);
    }
    ours.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connz_sorts_pages_filters_and_remembers_closed_connections() {
    let mut cfg = loopback_conf(
        "authorization { users: [{user: ann, password: a}, {user: bob, password: b}] }\n",
    );
    cfg.http_port = Some(0);
    let server = start(cfg).await;
    let http = server.monitor_addr().unwrap();
    let url = server.client_url();
    let connect = |user: &'static str, pass: &'static str, name: &'static str| {
        let url = url.clone();
        async move {
            async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
                .name(name)
                .connect(url)
                .await
                .expect("connect")
        }
    };
    let quiet = connect("ann", "a", "quiet").await;
    let busy = connect("bob", "b", "busy").await;
    let _sub = busy.subscribe("a.b").await.unwrap();
    for _ in 0..5 {
        busy.publish("x", "12345".into()).await.unwrap();
    }
    sync(&busy).await;
    sync(&quiet).await;

    let all = monitor_json(http, "/connz?sort=msgs_from&auth=true&subs=true").await;
    assert_eq!(all["total"], 2, "{all:#}");
    let conns = all["connections"].as_array().unwrap();
    assert_eq!(conns[0]["name"], "busy", "most messages in first: {all:#}");
    assert_eq!(conns[0]["authorized_user"], "bob");
    assert!(conns[0]["in_msgs"].as_u64().unwrap() >= 5);
    assert!(conns[0]["in_bytes"].as_u64().unwrap() >= 25);
    assert!(conns[0]["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "a.b"));
    assert_eq!(conns[1]["name"], "quiet");
    assert_eq!(conns[0]["lang"], "rust");

    let page = monitor_json(http, "/connz?sort=msgs_from&limit=1&offset=1").await;
    assert_eq!(page["num_connections"], 1);
    assert_eq!(page["total"], 2);
    assert_eq!(page["connections"][0]["name"], "quiet");
    assert!(page["connections"][0].get("authorized_user").is_none());

    let cid = conns[1]["cid"].as_u64().unwrap();
    let one = monitor_json(http, &format!("/connz?cid={cid}")).await;
    assert_eq!(one["connections"][0]["cid"], cid);
    assert_eq!(one["limit"], 1);
    let by_user = monitor_json(http, "/connz?auth=1&user=ann").await;
    assert_eq!(by_user["total"], 1);
    assert_eq!(by_user["connections"][0]["name"], "quiet");

    drop(quiet);
    let closed = poll(http, "/connz?state=closed", |v| v["total"] == 1).await;
    let gone = &closed["connections"][0];
    assert_eq!(gone["cid"], cid);
    assert_eq!(gone["reason"], "Client Closed");
    assert!(gone["stop"].is_string());
    let open = monitor_json(http, "/connz").await;
    assert_eq!(open["total"], 1);
    let any = monitor_json(http, "/connz?state=all").await;
    assert_eq!(any["total"], 2);
    let by_reason = monitor_json(http, "/connz?state=closed&sort=reason").await;
    assert_eq!(by_reason["total"], 1);
    server.shutdown().await;
}

/// Polls `path` until `done` holds (bounded).
async fn poll(http: SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let v = monitor_json(http, path).await;
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_nats_server_texts() {
    let mut cfg = loopback_conf("");
    cfg.http_port = Some(0);
    let ours = start(cfg).await;
    let ours_http = ours.monitor_addr().unwrap();
    let (_reference, theirs) = reference("");
    for path in [
        "/connz?sort=bogus",
        "/connz?sort=stop",
        "/connz?sort=reason&state=open",
        "/connz?state=sideways",
        "/connz?auth=maybe",
        "/connz?limit=ten",
        "/connz?cid=-1",
        "/subsz?test=a.*",
        "/nothing-here",
    ] {
        let a = monitor_get(ours_http, path).await;
        let b = monitor_get(theirs, path).await;
        assert_eq!(a, b, "{path}: causeway vs nats-server 2.15.1");
    }
    ours.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let store = tempfile::tempdir().unwrap();
    let mut cfg = loopback_conf("jetstream {}\n");
    cfg.jetstream.store_dir = store.path().to_path_buf();
    cfg.http_port = Some(0);
    let server = start(cfg).await;
    let http = server.monitor_addr().unwrap();
    let client = common::nats_client(&server).await;
    let js = jetstream::new(client.clone());
    stream_with(&js, "M", "m", 5)
        .await
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("P".into()),
            ..Default::default()
        })
        .await
        .unwrap();

    let (status, text) = monitor_get(http, "/metrics").await;
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let found = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
        match found.map(|s| &s.value) {
            Some(prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v)) => *v,
            Some(prometheus_parse::Value::Untyped(v)) => *v,
            other => panic!("{name} {labels:?}: {other:?}\n{text}"),
        }
    };
    assert_eq!(value("nats_server_connections", &[]), 1.0);
    assert!(value("nats_server_in_msgs_total", &[]) >= 5.0);
    let stream = [("stream", "M")];
    assert_eq!(value("nats_jetstream_stream_messages", &stream), 5.0);
    assert_eq!(value("nats_jetstream_stream_first_seq", &stream), 1.0);
    assert_eq!(value("nats_jetstream_stream_last_seq", &stream), 5.0);
    assert!(value("nats_jetstream_stream_bytes", &stream) > 25.0);
    let consumer = [("stream", "M"), ("consumer", "P")];
    assert_eq!(value("nats_jetstream_consumer_num_pending", &consumer), 5.0);
    assert_eq!(
        value("nats_jetstream_consumer_num_ack_pending", &consumer),
        0.0
    );
    let syncs = scrape
        .samples
        .iter()
        .find(|s| s.metric == "nats_jetstream_fsync_seconds")
        .map(|s| s.value.clone());
    match syncs {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let count = buckets.last().map_or(0.0, |b| b.count);
            assert!(
                count >= 5.0,
                "one fsync per acknowledged publish at least: {text}"
            );
        }
        other => panic!("no fsync histogram: {other:?}\n{text}"),
    }
    server.shutdown().await;
}

/// Accounts with a system account, the same on both servers.
const SYSTEM: &str = "accounts {\n  SYS: { users: [{user: sys, password: sys}] }\n  APP: { users: [{user: app, password: app}] }\n}\nsystem_account: SYS\n";

async fn login(url: &str, user: &str, name: &str) -> async_nats::Client {
    let opts =
        async_nats::ConnectOptions::with_user_and_password(user.into(), user.into()).name(name);
    within(TIMEOUT, "connect", opts.connect(url))
        .await
        .expect("connect")
}

/// The next message on `sub` as JSON (bounded).
async fn next_json(sub: &mut async_nats::Subscriber, what: &str) -> Value {
    use futures::StreamExt;
    let msg = within(Duration::from_secs(15), what, sub.next())
        .await
        .expect("subscription open");
    serde_json::from_slice(&msg.payload).expect("JSON event")
}

async fn request_json(c: &async_nats::Client, subject: &str, body: &str) -> Value {
    let reply = within(
        TIMEOUT,
        subject,
        c.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).expect("JSON reply")
}

/// What one server sends for the scenario of [`system_events_match_nats_server`]: the
/// connect and disconnect events of a client of APP, the disconnect of a kicked one, and the
/// answers to the ping requests.
async fn system_story(url: &str) -> Vec<(&'static str, Value)> {
    let sys = login(url, "sys", "watcher").await;
    let mut connects = sys.subscribe("$SYS.ACCOUNT.APP.CONNECT").await.unwrap();
    let mut disconnects = sys.subscribe("$SYS.ACCOUNT.APP.DISCONNECT").await.unwrap();
    let mut statsz = sys.subscribe("$SYS.SERVER.*.STATSZ").await.unwrap();
    let mut auth_errors = sys
        .subscribe("$SYS.SERVER.*.CLIENT.AUTH.ERR")
        .await
        .unwrap();
    sync(&sys).await;
    let app = login(url, "app", "edge-1").await;
    for _ in 0..3 {
        app.publish("telemetry", "12345".into()).await.unwrap();
    }
    sync(&app).await;
    let mut out = vec![("connect", next_json(&mut connects, "connect event").await)];
    drop(app);
    out.push((
        "disconnect",
        next_json(&mut disconnects, "disconnect event").await,
    ));
    out.push(("statsz", next_json(&mut statsz, "STATSZ heartbeat").await));
    for what in [
        "STATSZ", "IDZ", "VARZ", "CONNZ", "SUBSZ", "JSZ", "HEALTHZ", "ACCOUNTZ",
    ] {
        let v = request_json(&sys, &format!("$SYS.REQ.SERVER.PING.{what}"), "").await;
        out.push((what, v));
    }
    let id = out[0].1["server"]["id"].as_str().unwrap().to_string();
    let kicked = login(url, "app", "kicked").await;
    let connz = request_json(&sys, "$SYS.REQ.ACCOUNT.APP.CONNZ", "").await;
    let cid = connz["data"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kicked")
        .map(|c| c["cid"].clone())
        .unwrap_or_else(|| panic!("the client in APP's CONNZ: {connz:#}"));
    let _ = next_json(&mut connects, "connect of the client to kick").await;
    out.push(("account connz", connz));
    let kick = request_json(
        &sys,
        &format!("$SYS.REQ.SERVER.{id}.KICK"),
        &format!("{{\"cid\":{cid}}}"),
    )
    .await;
    out.push(("kick", kick));
    out.push((
        "kicked",
        next_json(&mut disconnects, "disconnect of the kicked client").await,
    ));
    drop(kicked);
    let refused = async_nats::ConnectOptions::with_user_and_password("app".into(), "wrong".into())
        .max_reconnects(Some(0))
        .connect(url)
        .await;
    assert!(refused.is_err(), "a wrong password is refused");
    out.push((
        "auth error",
        next_json(&mut auth_errors, "auth error event").await,
    ));
    out
}

/// Fields of system events and replies that differ for a stated reason.
const EVENTS_NOT_SHOWN: &[&str] = &[
    // Go runtime details, nats-server's feature flags.
    "*.server.feature_flags",
    // Shown once measured: each server pings a new client at its own moment.
    "*.client.rtt",
    "STATSZ.statsz.gomaxprocs",
    "statsz.statsz.gomaxprocs",
    "VARZ.data.gomemlimit",
    "VARZ.data.git_commit",
    "VARZ.data.feature_flags",
    "VARZ.data.config_digest",
    "VARZ.data.disk_io_wait_stats",
    // As in the HTTP comparison: JetStream limits, API counters, strict mode, intervals.
    "*.statsz.jetstream.limits",
    "*.statsz.jetstream.stats.ha_assets",
    "*.statsz.jetstream.config.strict",
    "*.statsz.jetstream.config.sync_interval",
    "VARZ.data.jetstream.limits",
    "VARZ.data.jetstream.stats.ha_assets",
    "VARZ.data.jetstream.config.strict",
    "VARZ.data.jetstream.config.sync_interval",
    "JSZ.data.ha_assets",
    "JSZ.data.limits",
    "JSZ.data.config.strict",
    "JSZ.data.config.sync_interval",
    // Not measured (see the HTTP comparison).
    "SUBSZ.data.num_cache",
    "SUBSZ.data.num_inserts",
    "SUBSZ.data.num_removes",
    "SUBSZ.data.num_matches",
    "SUBSZ.data.cache_hit_rate",
    "SUBSZ.data.max_fanout",
    "SUBSZ.data.avg_fanout",
    // nats-server's own service imports and internal accounts, listed as accounts.
    "ACCOUNTZ.data.accounts",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_events_match_nats_server() {
    let store = tempfile::tempdir().unwrap();
    let mut cfg = loopback_conf(&format!("jetstream {{ sync_interval: always }}\n{SYSTEM}"));
    cfg.jetstream.store_dir = store.path().to_path_buf();
    let ours = start(cfg).await;
    let (reference, _) = reference(SYSTEM);
    let mine = system_story(&ours.client_url()).await;
    let theirs = system_story(&format!("nats://{}", reference.addr)).await;
    for ((what, a), (_, b)) in mine.iter().zip(&theirs) {
        assert_same_shape(what, a, b, EVENTS_NOT_SHOWN);
    }
    let get = |what: &str| &mine.iter().find(|(w, _)| *w == what).unwrap().1;
    let connect = get("connect");
    assert_eq!(connect["type"], "io.nats.server.advisory.v1.client_connect");
    assert_eq!(connect["client"]["acc"], "APP");
    assert_eq!(connect["client"]["user"], "app");
    assert_eq!(connect["client"]["name"], "edge-1");
    let gone = get("disconnect");
    assert_eq!(gone["type"], "io.nats.server.advisory.v1.client_disconnect");
    assert_eq!(gone["reason"], "Client Closed");
    assert!(gone["sent"]["msgs"].as_u64().unwrap() >= 3, "{gone:#}");
    assert_eq!(get("kicked")["reason"], "Kicked");
    assert_eq!(get("auth error")["reason"], "Authentication Failure");
    assert!(get("statsz")["statsz"]["connections"].as_u64().unwrap() >= 1);
    assert!(get("kick").get("error").is_none());
    ours.shutdown().await;
}

/// Stream and consumer lifecycle on one server; returns the advisories seen (subject, JSON)
/// and `/jsz`'s API counters.
async fn lifecycle(url: &str, http: SocketAddr) -> (Vec<(String, Value)>, Value) {
    use futures::StreamExt;
    let client = within(TIMEOUT, "connect", async_nats::connect(url))
        .await
        .unwrap();
    let mut streams = client
        .subscribe("$JS.EVENT.ADVISORY.STREAM.>")
        .await
        .unwrap();
    let mut consumers = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.>")
        .await
        .unwrap();
    sync(&client).await;
    let js = jetstream::new(client.clone());
    let mut cfg = jetstream::stream::Config {
        name: "LIFE".into(),
        subjects: vec!["life.>".into()],
        ..Default::default()
    };
    js.create_stream(cfg.clone()).await.unwrap();
    cfg.max_messages = 10;
    js.update_stream(cfg).await.unwrap();
    let stream = js.get_stream("LIFE").await.unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("D".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    stream.delete_consumer("D").await.unwrap();
    assert!(js.get_stream("NOPE").await.is_err());
    js.delete_stream("LIFE").await.unwrap();
    let mut seen = Vec::new();
    for (sub, n) in [(&mut streams, 3), (&mut consumers, 2)] {
        for _ in 0..n {
            let m = within(TIMEOUT, "an advisory", sub.next()).await.unwrap();
            seen.push((
                m.subject.to_string(),
                serde_json::from_slice(&m.payload).unwrap(),
            ));
        }
    }
    let jsz = monitor_json(http, "/jsz").await;
    (seen, jsz["api"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_advisories_and_api_counts_match_nats_server() {
    let store = tempfile::tempdir().unwrap();
    let mut cfg = loopback_conf("jetstream { sync_interval: always }\n");
    cfg.jetstream.store_dir = store.path().to_path_buf();
    cfg.http_port = Some(0);
    let ours = start(cfg).await;
    let (reference, theirs_http) = reference("");
    let (mine, my_api) = lifecycle(&ours.client_url(), ours.monitor_addr().unwrap()).await;
    let url = format!("nats://{}", reference.addr);
    let (theirs, their_api) = lifecycle(&url, theirs_http).await;
    let subjects = |v: &[(String, Value)]| v.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
    assert_eq!(subjects(&mine), subjects(&theirs));
    for ((subject, a), (_, b)) in mine.iter().zip(&theirs) {
        assert_same_shape(subject, a, b, &["*.domain"]);
        assert_eq!(a["action"], b["action"], "{subject}");
    }
    assert_eq!(my_api["total"], their_api["total"], "API requests counted");
    assert_eq!(my_api["errors"], their_api["errors"], "API errors counted");
    ours.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_passes_through_republish_and_deliveries() {
    use futures::StreamExt;
    let store = tempfile::tempdir().unwrap();
    let mut cfg = loopback_conf("jetstream {}\n");
    cfg.jetstream.store_dir = store.path().to_path_buf();
    let server = start(cfg).await;
    let client = common::nats_client(&server).await;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "T".into(),
        subjects: vec!["traced.>".into()],
        republish: Some(jetstream::stream::Republish {
            source: ">".into(),
            destination: "copy.>".into(),
            headers_only: false,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut copies = client.subscribe("copy.>").await.unwrap();
    sync(&client).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", parent);
    headers.insert("tracestate", "vendor=opaque");
    js.publish_with_headers("traced.a", headers, "work".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let copy = within(TIMEOUT, "the republished copy", copies.next())
        .await
        .unwrap();
    let h = copy.headers.expect("headers on the copy");
    assert_eq!(h.get("traceparent").map(|v| v.as_str()), Some(parent));
    assert_eq!(
        h.get("tracestate").map(|v| v.as_str()),
        Some("vendor=opaque")
    );
    let consumer = js
        .get_stream("T")
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let delivered = within(TIMEOUT, "a delivery", batch.next())
        .await
        .unwrap()
        .unwrap();
    let h = delivered.headers.clone().expect("headers on the delivery");
    assert_eq!(h.get("traceparent").map(|v| v.as_str()), Some(parent));
    server.shutdown().await;
}

/// A consumer sampling every ack: one message acked, one naked. Returns the ack metric and
/// the nak advisory.
async fn ack_story(url: &str) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let client = within(TIMEOUT, "connect", async_nats::connect(url))
        .await
        .unwrap();
    let mut metrics = client
        .subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.>")
        .await
        .unwrap();
    let mut naks = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.>")
        .await
        .unwrap();
    sync(&client).await;
    let js = jetstream::new(client.clone());
    let stream = stream_with(&js, "ACKS", "acks", 2).await;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("S".into()),
            sample_frequency: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(2).messages().await.unwrap();
    let first = within(TIMEOUT, "first", batch.next())
        .await
        .unwrap()
        .unwrap();
    first.double_ack().await.unwrap();
    let second = within(TIMEOUT, "second", batch.next())
        .await
        .unwrap()
        .unwrap();
    second
        .ack_with(jetstream::AckKind::Nak(None))
        .await
        .unwrap();
    let mut out = Vec::new();
    for sub in [&mut metrics, &mut naks] {
        let m = within(TIMEOUT, "an event", sub.next()).await.unwrap();
        out.push((
            m.subject.to_string(),
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_metrics_and_nak_advisories_match_nats_server() {
    let store = tempfile::tempdir().unwrap();
    let mut cfg = loopback_conf("jetstream { sync_interval: always }\n");
    cfg.jetstream.store_dir = store.path().to_path_buf();
    let ours = start(cfg).await;
    let (reference, _) = reference("");
    let mine = ack_story(&ours.client_url()).await;
    let theirs = ack_story(&format!("nats://{}", reference.addr)).await;
    for ((subject, a), (their_subject, b)) in mine.iter().zip(&theirs) {
        assert_eq!(subject, their_subject);
        assert_same_shape(subject, a, b, &[]);
        assert_eq!(a["type"], b["type"]);
        assert_eq!(a["stream_seq"], b["stream_seq"], "{subject}");
    }
    assert!(mine[0].1["ack_time"].as_i64().unwrap() > 0);
    ours.shutdown().await;
}
