//! JetStream on a three-server cluster (in one process, 127.0.0.1 ports, real async-nats
//! clients): the meta group forms from the configured routes, streams are placed across the
//! servers, every `$JS.API` request works from any server, catalogue errors come from the meta
//! leader, and a restarted cluster has its streams and messages back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, stream};
use causeway::config::ClusterConfig;
use causeway::{Config, ServerHandle};
use common::{free_port, nats_client, start, TIMEOUT};
use futures::StreamExt;
use serde_json::Value;

const NAMES: [&str; 3] = ["n1", "n2", "n3"];

fn node_config(i: usize, ports: &[u16; 3], dir: &Path) -> Config {
    let routes = ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}"));
    let mut cluster = ClusterConfig::loopback("js").with_routes(routes);
    cluster.port = ports[i];
    let mut config = Config::loopback()
        .with_cluster(cluster)
        .with_jetstream(dir.join(NAMES[i]));
    config.server_name = Some(NAMES[i].to_string());
    config
}

async fn cluster(ports: &[u16; 3], dir: &Path) -> Vec<ServerHandle> {
    let mut servers = Vec::new();
    for i in 0..3 {
        servers.push(start(node_config(i, ports, dir)).await);
    }
    servers
}

/// A JetStream context on `server`, once the meta group answers there.
async fn ready(server: &ServerHandle) -> jetstream::Context {
    let js = jetstream::new(nats_client(server).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    while js.query_account().await.is_err() {
        assert!(Instant::now() < deadline, "the meta group never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    js
}

async fn raw_request(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let reply = tokio::time::timeout(
        TIMEOUT,
        client.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .expect("answered in time")
    .expect("request");
    serde_json::from_slice(&reply.payload).expect("json")
}

fn stream_config(name: &str) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_are_placed_across_servers_and_served_from_any() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let servers = cluster(&ports, dir.path()).await;
    let js: Vec<jetstream::Context> = futures::future::join_all(servers.iter().map(ready)).await;

    // Three streams, each created through a different server, land on three servers.
    let mut hosts = Vec::new();
    for (i, name) in ["ORDERS", "EVENTS", "AUDIT"].into_iter().enumerate() {
        let mut s = js[i].create_stream(stream_config(name)).await.unwrap();
        let info = s.info().await.unwrap();
        hosts.push(
            info.cluster
                .clone()
                .and_then(|c| c.leader)
                .unwrap_or_default(),
        );
    }
    hosts.sort();
    assert_eq!(hosts, NAMES.to_vec(), "one stream per server");

    // Publish through every server into every stream; each ack is the stream's next sequence.
    for round in 0..3u64 {
        for (i, subject) in ["orders.new", "events.x", "audit.y"]
            .into_iter()
            .enumerate()
        {
            let ack = js[(i + round as usize) % 3]
                .publish(subject, format!("m{round}").into())
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(ack.sequence, round + 1, "{subject}");
        }
    }

    // Read through a server that may not host the stream: info, a consumer, a get.
    for c in &js {
        let mut s = c.get_stream("ORDERS").await.unwrap();
        assert_eq!(s.info().await.unwrap().state.messages, 3);
    }
    let s = js[2].get_stream("EVENTS").await.unwrap();
    let consumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.fetch().max_messages(3).messages().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = msgs.next().await {
        let m = m.unwrap();
        got.push(String::from_utf8_lossy(&m.payload).to_string());
        m.ack().await.unwrap();
    }
    assert_eq!(got, ["m0", "m1", "m2"]);
    let raw = s.get_raw_message(2).await.unwrap();
    assert_eq!(&raw.payload[..], b"m1");

    // Names and list from any server see all three; a KV bucket works across servers.
    let client = nats_client(&servers[1]).await;
    let names = raw_request(&client, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(names["total"], 3, "{names}");
    let list = raw_request(&client, "$JS.API.STREAM.LIST", "").await;
    let counts: Vec<u64> = list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"]["messages"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [3, 3, 3], "{list}");
    let bucket = js[0]
        .create_key_value(kv::Config {
            bucket: "cfg".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    bucket.put("k", "v1".into()).await.unwrap();
    let other = js[2].get_key_value("cfg").await.unwrap();
    assert_eq!(other.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));

    // Delete through a third server: gone everywhere.
    js[1].delete_stream("AUDIT").await.unwrap();
    for c in &js {
        assert!(c.get_stream("AUDIT").await.is_err());
    }
    let names = raw_request(&client, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(names["total"], 3, "ORDERS, EVENTS and the bucket: {names}");

    // Restart every server on the same directories: the streams and messages are back.
    for s in servers {
        s.shutdown().await;
    }
    let servers = cluster(&ports, dir.path()).await;
    let js = ready(&servers[1]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = match js.get_stream("ORDERS").await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).ok(),
            Err(_) => None,
        };
        if got == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "ORDERS not back: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(js.get_stream("AUDIT").await.is_err());
    let ack = js.publish("orders.more", "m3".into()).await.unwrap();
    assert_eq!(ack.await.unwrap().sequence, 4);
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_meta_leader_answers_catalogue_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let servers = cluster(&ports, dir.path()).await;
    let js = ready(&servers[2]).await;
    js.create_stream(stream_config("A")).await.unwrap();
    let client = nats_client(&servers[0]).await;
    let cases = [
        (
            "$JS.API.STREAM.CREATE.B",
            r#"{"name":"B","subjects":["a.x"]}"#,
            10065,
        ),
        (
            "$JS.API.STREAM.CREATE.A",
            r#"{"name":"A","subjects":["other"]}"#,
            10058,
        ),
        (
            "$JS.API.STREAM.CREATE.C",
            r#"{"name":"C","subjects":["c"],"num_replicas":5}"#,
            10023,
        ),
        (
            "$JS.API.STREAM.CREATE.C",
            r#"{"name":"C","subjects":["c"],"num_replicas":3,"allow_atomic":true}"#,
            10012,
        ),
        (
            "$JS.API.STREAM.CREATE.C",
            r#"{"name":"C","subjects":["c"],"placement":{"tags":["ssd"]}}"#,
            10005,
        ),
        ("$JS.API.STREAM.INFO.NOPE", "", 10059),
        ("$JS.API.STREAM.DELETE.NOPE", "", 10059),
        (
            "$JS.API.STREAM.UPDATE.NOPE",
            r#"{"name":"NOPE","subjects":["n"]}"#,
            10059,
        ),
    ];
    for (subject, body, err_code) in cases {
        let v = raw_request(&client, subject, body).await;
        assert_eq!(v["error"]["err_code"], err_code, "{subject}: {v}");
    }
    // An update through the meta leader reaches the server hosting the stream.
    let mut cfg = stream_config("A");
    cfg.max_messages = 5;
    let info = js.update_stream(cfg).await.unwrap();
    assert_eq!(info.config.max_messages, 5);
    for s in servers {
        s.shutdown().await;
    }
}

/// The server leading `stream`'s group, as stream info (answered by the leader) says.
async fn stream_leader(js: &jetstream::Context, stream: &str) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await {
            if let Ok(info) = s.info().await {
                let leader = info.cluster.clone().and_then(|c| c.leader);
                if let Some(leader) = leader {
                    return (leader, info.state.messages);
                }
            }
        }
        assert!(Instant::now() < deadline, "{stream} has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Shuts down the server named `name`: its index, and a JetStream context on one still up.
async fn take_down(
    servers: &mut [Option<ServerHandle>],
    name: &str,
) -> (usize, jetstream::Context) {
    let i = NAMES.iter().position(|n| *n == name).unwrap();
    servers[i].take().unwrap().shutdown().await;
    (i, ready(servers.iter().flatten().next().unwrap()).await)
}

/// A durable pull consumer `name` with explicit acks and a 2 s ack wait.
async fn durable(js: &jetstream::Context, stream: &str, name: &str) {
    let s = js.get_stream(stream).await.unwrap();
    s.create_consumer(consumer::pull::Config {
        durable_name: Some(name.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Publishes with headers; the acknowledged sequence.
async fn publish_with(
    js: &jetstream::Context,
    subject: &str,
    pairs: &[(&str, &str)],
    body: &str,
) -> u64 {
    let mut headers = async_nats::HeaderMap::new();
    for (k, v) in pairs {
        headers.insert(*k, *v);
    }
    let ack = js.publish_with_headers(subject.to_string(), headers, body.to_string().into());
    ack.await.unwrap().await.unwrap().sequence
}

/// Publishes `range` as `k.<i>` until each is acknowledged (a leader change on the way
/// means retries; the acked sequence must be the message's own).
async fn publish_all(js: &jetstream::Context, range: std::ops::Range<u64>) {
    for i in range {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let last;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("m{i}").as_str());
            let sent = js
                .publish_with_headers(format!("k.{i}"), headers, format!("{i}").into())
                .await;
            match sent {
                Ok(ack) => match ack.await {
                    Ok(ack) => {
                        assert_eq!(ack.sequence, i + 1, "message {i}");
                        break;
                    }
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            assert!(
                Instant::now() < deadline,
                "message {i} never acknowledged: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Three servers and an R3 stream `name` on `k.>`: the servers (each can be taken down)
/// and a JetStream context on the first.
async fn with_r3_stream(
    ports: &[u16; 3],
    dir: &Path,
    name: &str,
) -> (Vec<Option<ServerHandle>>, jetstream::Context) {
    with_r3_stream_as(ports, dir, name, |_| ()).await
}

/// [`with_r3_stream`] with the stream's configuration changed by `tweak` first.
async fn with_r3_stream_as(
    ports: &[u16; 3],
    dir: &Path,
    name: &str,
    tweak: impl FnOnce(&mut stream::Config),
) -> (Vec<Option<ServerHandle>>, jetstream::Context) {
    let servers: Vec<Option<ServerHandle>> =
        cluster(ports, dir).await.into_iter().map(Some).collect();
    let js = ready(servers[0].as_ref().unwrap()).await;
    let mut cfg = stream_config(name);
    cfg.subjects = vec!["k.>".into()];
    cfg.num_replicas = 3;
    tweak(&mut cfg);
    js.create_stream(cfg).await.unwrap();
    (servers, js)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replicated_stream_survives_its_leaders_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (mut servers, js) = with_r3_stream(&ports, dir.path(), "R3").await;
    publish_all(&js, 0..50).await;
    let (first, n) = stream_leader(&js, "R3").await;
    assert_eq!(n, 50);
    let client = nats_client(servers[1].as_ref().unwrap()).await;
    let info = raw_request(&client, "$JS.API.STREAM.INFO.R3", "").await;
    assert_eq!(info["cluster"]["name"], "js", "{info}");
    assert_eq!(info["cluster"]["leader"], first.as_str(), "{info}");
    let replicas = info["cluster"]["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 2, "{info}");
    assert!(
        replicas.iter().all(|r| r["name"] != first.as_str()),
        "{info}"
    );

    // The leader goes away: another takes over with every acknowledged message.
    let (i, js) = take_down(&mut servers, &first).await;
    publish_all(&js, 50..80).await;
    let (second, n) = stream_leader(&js, "R3").await;
    assert_ne!(second, first);
    assert_eq!(n, 80);

    // The first comes back and catches up; a message delete and a purge go through the
    // group; then the second leader goes away.
    servers[i] = Some(start(node_config(i, &ports, dir.path())).await);
    let j = NAMES.iter().position(|n| *n == second).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = nats_client(servers[i].as_ref().unwrap()).await;
    let del = raw_request(&client, "$JS.API.STREAM.MSG.DELETE.R3", r#"{"seq":3}"#).await;
    assert_eq!(del["success"], true, "{del}");
    let again = raw_request(&client, "$JS.API.STREAM.MSG.DELETE.R3", r#"{"seq":3}"#).await;
    assert_eq!(again["error"]["err_code"], 10057, "{again}");
    let purge = raw_request(&client, "$JS.API.STREAM.PURGE.R3", r#"{"filter":"k.5"}"#).await;
    assert_eq!(purge["purged"], 1, "{purge}");
    servers[j].take().unwrap().shutdown().await;
    let js = ready(servers[i].as_ref().unwrap()).await;
    publish_all(&js, 80..90).await;
    let (_, n) = stream_leader(&js, "R3").await;
    assert_eq!(n, 88, "90 published, one deleted, one purged");
    let s = js.get_stream("R3").await.unwrap();
    for seq in [1, 50, 51, 80, 81, 90] {
        let m = s.get_raw_message(seq).await.unwrap();
        assert_eq!(m.payload, format!("{}", seq - 1).as_bytes(), "seq {seq}");
    }
    for seq in [3, 6] {
        let gone = s.get_raw_message(seq).await.map(|_| ()).unwrap_err();
        assert!(
            gone.to_string().contains("no message found"),
            "seq {seq}: {gone}"
        );
    }
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

/// Fetches from durable `name` on `js` until `want` stream sequences were seen (bounded),
/// acking each with an AckSync; returns them in arrival order.
async fn fetch_until(js: &jetstream::Context, stream: &str, name: &str, want: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.len() < want {
        assert!(Instant::now() < deadline, "only {seen:?} delivered");
        let Ok(s) = js.get_stream(stream).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let Ok(c) = s.get_consumer::<consumer::pull::Config>(name).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let batch = c
            .fetch()
            .max_messages(want - seen.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let Ok(mut msgs) = batch else { continue };
        while let Some(Ok(m)) = msgs.next().await {
            let seq = m.info().expect("a JetStream message").stream_sequence;
            if m.double_ack().await.is_ok() {
                seen.push(seq);
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replicated_streams_consumers_and_acks_survive_failover() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (mut servers, js) = with_r3_stream(&ports, dir.path(), "RC").await;
    publish_all(&js, 0..20).await;
    durable(&js, "RC", "D").await;
    let s = js.get_stream("RC").await.unwrap();

    // Six messages acknowledged (AckSync: confirmed once committed), four handed out and
    // left pending.
    assert_eq!(
        fetch_until(&js, "RC", "D", 6).await,
        (1..=6).collect::<Vec<_>>()
    );
    let c = s.get_consumer::<consumer::pull::Config>("D").await.unwrap();
    let mut pending = c.fetch().max_messages(4).messages().await.unwrap();
    let mut held = Vec::new();
    while let Some(Ok(m)) = pending.next().await {
        held.push(m.info().unwrap().stream_sequence);
    }
    assert_eq!(held, [7, 8, 9, 10]);

    // The leader goes away: the consumer is there on the new one, with the acks.
    let (first, _) = stream_leader(&js, "RC").await;
    let i = NAMES.iter().position(|n| *n == first).unwrap();
    servers[i].take().unwrap().shutdown().await;
    let other = servers.iter().flatten().next().unwrap();
    let js = ready(other).await;
    let client = nats_client(other).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = loop {
        let v = raw_request(&client, "$JS.API.CONSUMER.INFO.RC.D", "").await;
        if v.get("error").is_none() {
            break v;
        }
        assert!(Instant::now() < deadline, "consumer never back: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(info["ack_floor"]["stream_seq"], 6, "{info}");
    assert_ne!(info["cluster"]["leader"], first.as_str(), "{info}");

    // The rest is delivered (the four held again once their ack wait passes), and nothing
    // acknowledged comes back.
    let mut rest = fetch_until(&js, "RC", "D", 14).await;
    rest.sort_unstable();
    assert_eq!(rest, (7..=20).collect::<Vec<_>>());
    let info = raw_request(&client, "$JS.API.CONSUMER.INFO.RC.D", "").await;
    assert_eq!(info["ack_floor"]["stream_seq"], 20, "{info}");
    assert_eq!(info["num_ack_pending"], 0, "{info}");
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

/// The stream's message count on its leader, once it answers.
async fn message_count(js: &jetstream::Context, stream: &str) -> u64 {
    stream_leader(js, stream).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_streams_expire_through_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (mut servers, js) = with_r3_stream_as(&ports, dir.path(), "RA", |cfg| {
        cfg.max_age = Duration::from_secs(4);
        cfg.allow_message_ttl = true;
    })
    .await;
    publish_all(&js, 0..1).await;
    assert_eq!(
        publish_with(&js, "k.ttl", &[("Nats-TTL", "1s")], "short").await,
        2
    );

    // The TTL'd message goes first; then max_age takes the other.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = message_count(&js, "RA").await;
    while n > 1 {
        assert!(Instant::now() < deadline, "TTL never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = message_count(&js, "RA").await;
    }
    let s = js.get_stream("RA").await.unwrap();
    if n == 1 {
        assert!(
            s.get_raw_message(1).await.is_ok(),
            "the TTL'd one went first"
        );
    }
    while message_count(&js, "RA").await > 0 {
        assert!(Instant::now() < deadline, "max_age never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every replica applied it: the next leader has none either.
    let (leader, _) = stream_leader(&js, "RA").await;
    let (i, js) = take_down(&mut servers, &leader).await;
    let (next, n) = stream_leader(&js, "RA").await;
    assert_ne!(next, leader);
    assert_eq!(n, 0);

    // A config update goes through the group too (a new subject, no max_age), kept by the
    // next leader.
    let mut cfg = js
        .get_stream("RA")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    cfg.subjects.push("x.>".into());
    cfg.max_age = Duration::ZERO;
    let info = js.update_stream(cfg).await.unwrap();
    assert_eq!(info.config.subjects, ["k.>", "x.>"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ack = loop {
        match js.publish("x.1", "new".into()).await {
            Ok(ack) => match ack.await {
                Ok(ack) => break ack,
                Err(e) => assert!(Instant::now() < deadline, "x.1: {e}"),
            },
            Err(e) => assert!(Instant::now() < deadline, "x.1: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ack.sequence, 3);
    servers[i] = Some(start(node_config(i, &ports, dir.path())).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let j = NAMES.iter().position(|n| *n == next).unwrap();
    servers[j].take().unwrap().shutdown().await;
    let js = ready(servers[i].as_ref().unwrap()).await;
    let (third, n) = stream_leader(&js, "RA").await;
    assert_ne!(third, next);
    assert_eq!(n, 1);
    let mut s = js.get_stream("RA").await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(info.config.subjects, ["k.>", "x.>"]);
    assert_eq!(info.config.max_age, Duration::ZERO);
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

/// The meta leader's name as `/jsz` on `server` reports it (once one is known).
async fn meta_leader(server: &ServerHandle) -> String {
    let addr = server.monitor_addr().expect("monitoring on");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jsz = common::monitor_json(addr, "/jsz").await;
        let leader = jsz["meta_cluster"]["leader"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !leader.is_empty() {
            return leader;
        }
        assert!(Instant::now() < deadline, "no meta leader: {jsz}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `stream`'s leader until it is not `old`.
async fn leader_other_than(js: &jetstream::Context, stream: &str, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (leader, _) = stream_leader(js, stream).await;
        if leader != old {
            return leader;
        }
        assert!(Instant::now() < deadline, "{stream} still led by {old}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_step_down_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut servers = Vec::new();
    for i in 0..3 {
        let mut config = node_config(i, &ports, dir.path());
        config.http_port = Some(0);
        servers.push(start(config).await);
    }
    let js = ready(&servers[0]).await;
    let mut cfg = stream_config("SD");
    cfg.subjects = vec!["k.>".into()];
    cfg.num_replicas = 3;
    js.create_stream(cfg).await.unwrap();
    publish_all(&js, 0..10).await;
    let s = js.get_stream("SD").await.unwrap();
    s.create_consumer(consumer::pull::Config {
        durable_name: Some("D".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(fetch_until(&js, "SD", "D", 4).await, [1, 2, 3, 4]);
    let client = nats_client(&servers[1]).await;

    // The stream's leader hands on: another leads, with every message, and takes publishes.
    let (first, _) = stream_leader(&js, "SD").await;
    let t0 = Instant::now();
    let r = raw_request(&client, "$JS.API.STREAM.LEADER.STEPDOWN.SD", "").await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(
        r["type"],
        "io.nats.jetstream.api.v1.stream_leader_stepdown_response"
    );
    let second = leader_other_than(&js, "SD", &first).await;
    eprintln!("stream stepdown {first} -> {second} in {:?}", t0.elapsed());
    publish_all(&js, 10..15).await;
    assert_eq!(stream_leader(&js, "SD").await.1, 15);
    // The new leader's /metrics say it leads, and list the other two replicas' lag.
    let at = NAMES
        .iter()
        .position(|n| *n == second)
        .expect("a known leader");
    let http = servers[at].monitor_addr().unwrap();
    let (_, text) = common::monitor_get(http, "/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |metric: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.get("stream") == Some("SD"))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(sample("nats_jetstream_stream_raft_leader"), [1.0], "{text}");
    assert_eq!(sample("nats_jetstream_stream_messages"), [15.0], "{text}");
    let lags = sample("nats_jetstream_stream_replica_lag");
    assert_eq!(lags.len(), 2, "{text}");
    assert!(lags.iter().all(|l| (0.0..1000.0).contains(l)), "{text}");

    // A consumer stepdown moves the stream's leadership (its consumers are served there);
    // the consumer keeps its acks and goes on from them.
    let r = raw_request(&client, "$JS.API.CONSUMER.LEADER.STEPDOWN.SD.D", "").await;
    assert_eq!(r["success"], true, "{r}");
    let third = leader_other_than(&js, "SD", &second).await;
    let info = raw_request(&client, "$JS.API.CONSUMER.INFO.SD.D", "").await;
    assert_eq!(info["ack_floor"]["stream_seq"], 4, "{info}");
    assert_eq!(info["cluster"]["leader"], third.as_str(), "{info}");
    assert_eq!(
        fetch_until(&js, "SD", "D", 11).await,
        (5..=15).collect::<Vec<_>>()
    );

    // A stepdown naming the next leader: that server leads next, each in turn.
    let mut leader = third;
    for _ in 0..3 {
        let at = NAMES
            .iter()
            .position(|n| *n == leader)
            .expect("a known leader");
        let want = NAMES[(at + 1) % 3];
        let body = format!(r#"{{"placement":{{"preferred":"{want}"}}}}"#);
        let r = raw_request(&client, "$JS.API.STREAM.LEADER.STEPDOWN.SD", &body).await;
        assert_eq!(r["success"], true, "{r}");
        let next = leader_other_than(&js, "SD", &leader).await;
        assert_eq!(next, want, "asked {want} to lead after {leader}");
        leader = next;
    }
    publish_all(&js, 15..16).await;

    // Errors: unknown stream or consumer, a preference that cannot be met, a peer removal.
    let r = raw_request(&client, "$JS.API.CONSUMER.LEADER.STEPDOWN.SD.NOPE", "").await;
    assert_eq!(r["error"]["err_code"], 10014, "{r}");
    let r = raw_request(&client, "$JS.API.STREAM.LEADER.STEPDOWN.NOPE", "").await;
    assert_eq!(r["error"]["err_code"], 10059, "{r}");
    for (preferred, text) in [
        (
            leader.as_str(),
            format!("preferred server {leader:?} is already leader"),
        ),
        ("n9", "preferred server \"n9\" not known".to_string()),
    ] {
        let body = format!(r#"{{"placement":{{"preferred":"{preferred}"}}}}"#);
        let r = raw_request(&client, "$JS.API.STREAM.LEADER.STEPDOWN.SD", &body).await;
        assert_eq!(r["error"]["err_code"], 10005, "{r}");
        assert_eq!(r["error"]["description"], text.as_str(), "{r}");
    }
    let r = raw_request(&client, "$JS.API.STREAM.PEER.REMOVE.SD", r#"{"peer":"n9"}"#).await;
    assert_eq!(r["error"]["err_code"], 10040, "{r}");

    // The meta leader hands on; the catalogue still answers (a stream is created after).
    let meta_first = meta_leader(&servers[0]).await;
    let r = raw_request(&client, "$JS.API.META.LEADER.STEPDOWN", "").await;
    assert_eq!(r["success"], true, "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while meta_leader(&servers[2]).await == meta_first {
        assert!(Instant::now() < deadline, "meta still led by {meta_first}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let js2 = ready(&servers[2]).await;
    js2.create_stream(stream_config("AFTER")).await.unwrap();
    // And toward a named server.
    let meta_now = meta_leader(&servers[2]).await;
    let want = NAMES
        .iter()
        .find(|n| **n != meta_now)
        .expect("another server");
    let body = format!(r#"{{"placement":{{"preferred":"{want}"}}}}"#);
    let r = raw_request(&client, "$JS.API.META.LEADER.STEPDOWN", &body).await;
    assert_eq!(r["success"], true, "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while meta_leader(&servers[2]).await != *want {
        assert!(Instant::now() < deadline, "meta not led by {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in servers {
        s.shutdown().await;
    }
}

/// Reads `key` from `store` until it is `want` (a read may be refused while a leader
/// settles); bounded.
async fn get_until(store: &kv::Store, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = store.get(key).await;
        if let Ok(Some(v)) = &got {
            if v.as_ref() == want.as_bytes() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{key}: {got:?}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_replicated_bucket_quiesces_and_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut servers: Vec<Option<ServerHandle>> = cluster(&ports, dir.path())
        .await
        .into_iter()
        .map(Some)
        .collect();
    let js = ready(servers[0].as_ref().unwrap()).await;
    let store = js
        .create_key_value(kv::Config {
            bucket: "Q".into(),
            num_replicas: 3,
            history: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    store.put("k", "v1".into()).await.unwrap();

    // Idle past the quiesce delay: the first read wakes the group (the leader waits for a
    // fresh quorum acknowledgement, then answers), and so does a write.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(store.get("k").await.unwrap().unwrap().as_ref(), b"v1");
    assert_eq!(store.put("k", "v2".into()).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(store.update("k", "v3".into(), 2).await.unwrap(), 3);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stale = store.update("k", "nope".into(), 2).await;
    assert!(stale.is_err(), "a stale revision is refused: {stale:?}");

    // The quiesced leader goes away: another server leads and serves everything acked.
    let (leader, _) = stream_leader(&js, "KV_Q").await;
    let (_, js) = take_down(&mut servers, &leader).await;
    let store = js.get_key_value("Q").await.unwrap();
    get_until(&store, "k", "v3").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.put("k", "v4".into()).await.is_err() {
        assert!(Instant::now() < deadline, "no put after the leader left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    get_until(&store, "k", "v4").await;
    let history = store.history("k").await.unwrap();
    let values: Vec<Vec<u8>> = history
        .filter_map(|e| async move { e.ok().map(|e| e.value.to_vec()) })
        .collect()
        .await;
    assert_eq!(
        values,
        [
            b"v1".to_vec(),
            b"v2".to_vec(),
            b"v3".to_vec(),
            b"v4".to_vec()
        ]
    );
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

/// The size of `node`'s Raft log for the (only) replicated stream's group and whether the
/// group has a snapshot there.
fn stream_group_files(dir: &Path, node: &str) -> (u64, bool) {
    let raft = dir.join(node).join("jetstream").join("raft");
    let group = std::fs::read_dir(&raft)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('S'))
        })
        .expect("a stream group");
    let log = std::fs::metadata(group.join("raft-log")).map_or(0, |m| m.len());
    (log, group.join("raft-snapshot").exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_replica_catches_up_from_a_snapshot_once_the_log_is_compacted() {
    const N: u64 = 2600;
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (mut servers, js) =
        with_r3_stream_as(&ports, dir.path(), "SN", |cfg| cfg.max_messages = 20).await;
    publish_all(&js, 0..5).await;

    // A follower goes away; 2,600 messages of 8 KiB later (about 21 MiB through the log, a
    // stream of 160 KiB) the log is compacted under a snapshot (1,000 entries kept below it).
    let (leader, _) = stream_leader(&js, "SN").await;
    let lagging = (0..3).find(|i| NAMES[*i] != leader && *i != 0).unwrap();
    servers[lagging].take().unwrap().shutdown().await;
    let body = vec![b'x'; 8 << 10];
    let publish = |from: u64, to: u64| {
        let (js, body) = (js.clone(), body.clone());
        async move {
            for i in from..to {
                let mut payload = format!("{i}:").into_bytes();
                payload.extend_from_slice(&body);
                let ack = js.publish(format!("k.{i}"), payload.into()).await.unwrap();
                assert_eq!(ack.await.unwrap().sequence, i + 1);
            }
        }
    };
    publish(5, N).await;
    // When the snapshots fall depends on the machine's pace (the policy looks every 5 s):
    // publishing goes on, 200 at a time, until the log has been compacted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = N;
    loop {
        let (log, snap) = stream_group_files(dir.path(), &leader);
        if snap && log < 16 << 20 {
            eprintln!("leader's log compacted to {log} bytes under a snapshot after {n}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no compaction: log {log} B, snapshot {snap}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        if n < 3 * N {
            publish(n, n + 200).await;
            n += 200;
        }
    }

    // The follower comes back: its log ends below the purge, so it installs the snapshot.
    // It is made the leader (stepdowns) and must serve exactly the stream.
    servers[lagging] = Some(start(node_config(lagging, &ports, dir.path())).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stream_group_files(dir.path(), NAMES[lagging]).1 {
        assert!(
            Instant::now() < deadline,
            "{} installed no snapshot",
            NAMES[lagging]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let client = nats_client(servers[0].as_ref().unwrap()).await;
    // Stepdowns naming it as the next leader (a replica that has not yet received the new
    // term's first entry cannot win: then another round).
    let body = format!(r#"{{"placement":{{"preferred":"{}"}}}}"#, NAMES[lagging]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut leaders = Vec::new();
    loop {
        let (now, _) = stream_leader(&js, "SN").await;
        if now == NAMES[lagging] {
            break;
        }
        leaders.push(now);
        assert!(
            Instant::now() < deadline,
            "{} never led; leaders after each stepdown: {leaders:?}",
            NAMES[lagging]
        );
        let _ = raw_request(&client, "$JS.API.STREAM.LEADER.STEPDOWN.SN", &body).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{} led after {} stepdowns", NAMES[lagging], leaders.len());
    let check = |js: jetstream::Context, last: u64| async move {
        let (_, messages) = stream_leader(&js, "SN").await;
        assert_eq!(messages, 20);
        let mut s = js.get_stream("SN").await.unwrap();
        let info = s.info().await.unwrap();
        assert_eq!(info.state.last_sequence, last);
        assert_eq!(info.state.first_sequence, last - 19);
        // A leader that just took over refuses reads until it settles (and during an
        // election nobody answers): retried.
        let deadline = Instant::now() + Duration::from_secs(30);
        let m = loop {
            match s.get_raw_message(last).await {
                Ok(m) => break m,
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let want = format!("{}", last - 1);
        assert!(
            m.payload.starts_with(want.as_bytes()),
            "seq {last}: {:?}",
            String::from_utf8_lossy(&m.payload[..m.payload.len().min(16)])
        );
    };
    check(js.clone(), n).await;
    publish_all(&js, n..n + 1).await;

    // The whole cluster restarts: each replica restores its own snapshot, then its log.
    for s in servers.iter_mut() {
        s.take().unwrap().shutdown().await;
    }
    let servers = cluster(&ports, dir.path()).await;
    let js = ready(&servers[1]).await;
    stream_leader(&js, "SN").await;
    check(js.clone(), n + 1).await;
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replicated_streams_schedule_fires_once_through_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (servers, js) = with_r3_stream_as(&ports, dir.path(), "RS", |cfg| {
        cfg.allow_message_schedules = true;
    })
    .await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // A trace-only publish is checked, never stored (whichever server the client is on).
    let client = nats_client(servers[0].as_ref().unwrap()).await;
    let mut traced = async_nats::HeaderMap::new();
    traced.insert("Nats-Trace-Dest", "trace.dest");
    traced.insert("Nats-Trace-Only", "true");
    client
        .publish_with_headers("k.traced", traced, "x".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let at = format!("@at {at}");
    let pairs = [
        ("Nats-Schedule", at.as_str()),
        ("Nats-Schedule-Target", "k.out"),
    ];
    assert_eq!(publish_with(&js, "k.sched", &pairs, "fired").await, 1);
    // The fired message is appended once and the schedule message purged, on every replica:
    // a stream of one message whose last sequence is 2.
    let deadline = Instant::now() + Duration::from_secs(15);
    let s = loop {
        let mut s = js.get_stream("RS").await.unwrap();
        let st = s.info().await.unwrap().state.clone();
        if st.last_sequence >= 2 && st.messages == 1 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule never fired: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = s.clone().info().await.unwrap().state.clone();
    assert_eq!((st.messages, st.last_sequence), (1, 2), "{st:?}");
    let m = s.get_last_raw_message_by_subject("k.out").await.unwrap();
    assert_eq!(&m.payload[..], b"fired");
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

/// The stream's message count once it is `want` (on whichever server leads it).
async fn count_becomes(js: &jetstream::Context, stream: &str, want: u64) {
    count_becomes_within(js, stream, want, Duration::from_secs(20)).await;
}

/// [`count_becomes`] with its own time limit.
async fn count_becomes_within(js: &jetstream::Context, stream: &str, want: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let n = message_count(js, stream).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{stream} holds {n}, not {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_work_queue_and_interest_streams_retire_through_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (mut servers, js) = with_r3_stream_as(&ports, dir.path(), "RW", |cfg| {
        cfg.retention = stream::RetentionPolicy::WorkQueue;
    })
    .await;
    let mut interest = stream_config("RI");
    interest.subjects = vec!["i.>".into()];
    interest.num_replicas = 3;
    interest.retention = stream::RetentionPolicy::Interest;
    js.create_stream(interest).await.unwrap();
    // No consumer: the interest stream keeps nothing (its sequence moves on).
    let ack = js.publish("i.1", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 1);
    count_becomes(&js, "RI", 0).await;

    publish_all(&js, 0..20).await;
    durable(&js, "RW", "W").await;
    // Ten taken and acknowledged (AckSync: committed): the queue holds the other ten.
    assert_eq!(
        fetch_until(&js, "RW", "W", 10).await,
        (1..=10).collect::<Vec<_>>()
    );
    count_becomes(&js, "RW", 10).await;

    // Every replica retired them: the next leader holds ten and hands out only the rest.
    let (first, _) = stream_leader(&js, "RW").await;
    let (_, js) = take_down(&mut servers, &first).await;
    let (next, n) = stream_leader(&js, "RW").await;
    assert_ne!(next, first);
    assert_eq!(n, 10);
    let mut rest = fetch_until(&js, "RW", "W", 10).await;
    rest.sort_unstable();
    assert_eq!(rest, (11..=20).collect::<Vec<_>>());
    count_becomes(&js, "RW", 0).await;
    count_becomes(&js, "RI", 0).await;
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_streams_mark_expired_subjects_and_republish_once() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (mut servers, js) = with_r3_stream_as(&ports, dir.path(), "RM", |cfg| {
        cfg.allow_message_ttl = true;
        cfg.subject_delete_marker_ttl = Some(Duration::from_secs(60));
        cfg.republish = Some(stream::Republish {
            source: "k.>".into(),
            destination: "rp.>".into(),
            headers_only: false,
        });
    })
    .await;
    let client = nats_client(servers[0].as_ref().unwrap()).await;
    let mut copies = client.subscribe("rp.>").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(
        publish_with(&js, "k.a", &[("Nats-TTL", "1s")], "short").await,
        1
    );
    // Republished once, by the leader, when committed.
    let copy = tokio::time::timeout(TIMEOUT, copies.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copy.subject.as_str(), "rp.a");
    let h = copy.headers.clone().unwrap();
    assert_eq!(h.get("Nats-Stream").map(|v| v.as_str()), Some("RM"));
    assert_eq!(h.get("Nats-Sequence").map(|v| v.as_str()), Some("1"));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), copies.next())
            .await
            .is_err(),
        "republished twice"
    );
    // The TTL expires through the group and leaves a delete marker on every replica.
    let deadline = Instant::now() + Duration::from_secs(20);
    let marker = loop {
        let s = js.get_stream("RM").await.unwrap();
        if let Ok(m) = s.get_last_raw_message_by_subject("k.a").await {
            if m.sequence == 2 {
                break m;
            }
        }
        assert!(Instant::now() < deadline, "no delete marker");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let h = marker.headers;
    assert_eq!(
        h.get("Nats-Marker-Reason").map(|v| v.as_str()),
        Some("MaxAge")
    );
    let (first, n) = stream_leader(&js, "RM").await;
    assert_eq!(n, 1);
    let (_, js) = take_down(&mut servers, &first).await;
    let (next, n) = stream_leader(&js, "RM").await;
    assert_ne!(next, first);
    assert_eq!(n, 1);
    let s = js.get_stream("RM").await.unwrap();
    assert_eq!(
        s.get_last_raw_message_by_subject("k.a")
            .await
            .unwrap()
            .sequence,
        2
    );
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_streams_are_placed_on_servers_that_are_up() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut servers: Vec<Option<ServerHandle>> = cluster(&ports, dir.path())
        .await
        .into_iter()
        .map(Some)
        .collect();
    let js = ready(servers[0].as_ref().unwrap()).await;
    let client = nats_client(servers[0].as_ref().unwrap()).await;
    servers[2].take().unwrap().shutdown().await;
    // Its beacons stop; a meta leader among the other two (if n3 led) places what follows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..4 {
        let name = format!("P{i}");
        let body = format!(r#"{{"name":"{name}","subjects":["p{i}"]}}"#);
        let deadline = Instant::now() + Duration::from_secs(20);
        let info = loop {
            let v = raw_request(&client, &format!("$JS.API.STREAM.CREATE.{name}"), &body).await;
            if v.get("error").is_none() {
                break v;
            }
            assert!(Instant::now() < deadline, "{name} never created: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_ne!(info["cluster"]["leader"], "n3", "{info}");
        let ack = js.publish(format!("p{i}"), "x".into()).await.unwrap();
        assert_eq!(ack.await.unwrap().sequence, 1);
    }
    // Three replicas need three servers up.
    let body = r#"{"name":"R","subjects":["r"],"num_replicas":3}"#;
    let v = raw_request(&client, "$JS.API.STREAM.CREATE.R", body).await;
    assert_eq!(v["error"]["err_code"], 10023, "{v}");
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

/// The names of a stream's other replicas, as its leader's info lists them, once it has
/// `want` of them and all are current.
async fn replicas_become(js: &jetstream::Context, stream: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await {
            if let Ok(info) = s.info().await {
                let replicas = info.cluster.clone().map(|c| c.replicas).unwrap_or_default();
                if replicas.len() == want && replicas.iter().all(|r| r.current) {
                    return replicas.iter().map(|r| r.name.clone()).collect();
                }
            }
        }
        if Instant::now() >= deadline {
            let info = js
                .get_stream(stream)
                .await
                .map(|s| s.cached_info().cluster.clone());
            panic!("{stream} never had {want} current replicas: {info:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_peer_is_replaced_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (servers, js) = with_r3_stream_as(&ports, dir.path(), "R2", |cfg| {
        cfg.num_replicas = 2;
    })
    .await;
    publish_all(&js, 0..10).await;
    let client = nats_client(servers[0].as_ref().unwrap()).await;
    let (leader, _) = stream_leader(&js, "R2").await;
    let follower = replicas_become(&js, "R2", 1).await.remove(0);
    let spare = NAMES
        .iter()
        .find(|n| **n != leader && **n != follower)
        .unwrap()
        .to_string();

    // The follower leaves; the spare server takes its place and catches up.
    let body = format!(r#"{{"peer":"{follower}"}}"#);
    let r = raw_request(&client, "$JS.API.STREAM.PEER.REMOVE.R2", &body).await;
    assert_eq!(r["success"], true, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while replicas_become(&js, "R2", 1).await != std::slice::from_ref(&spare) {
        assert!(
            Instant::now() < deadline,
            "{spare} never replaced {follower}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It has everything: led by it, the stream holds the ten and takes more.
    let body = format!(r#"{{"placement":{{"preferred":"{spare}"}}}}"#);
    let r = raw_request(&client, "$JS.API.STREAM.LEADER.STEPDOWN.R2", &body).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(leader_other_than(&js, "R2", &leader).await, spare);
    assert_eq!(message_count(&js, "R2").await, 10);
    publish_all(&js, 10..12).await;

    // A removed leader hands on and leaves; the spare takes its place.
    let mut cfg = stream_config("RL");
    cfg.subjects = vec!["x.>".into()];
    cfg.num_replicas = 2;
    js.create_stream(cfg).await.unwrap();
    let ack = js.publish("x.1", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 1);
    let (first, _) = stream_leader(&js, "RL").await;
    let body = format!(r#"{{"peer":"{first}"}}"#);
    let r = raw_request(&client, "$JS.API.STREAM.PEER.REMOVE.RL", &body).await;
    assert_eq!(r["success"], true, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (now, n) = stream_leader(&js, "RL").await;
        let others = replicas_become(&js, "RL", 1).await;
        if now != first && !others.contains(&first) {
            assert_eq!(n, 1);
            break;
        }
        assert!(Instant::now() < deadline, "{first} still serves RL");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ack = js.publish("x.2", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 2);
    let r = raw_request(&client, "$JS.API.STREAM.PEER.REMOVE.RL", &body).await;
    assert_eq!(r["error"]["err_code"], 10040, "{r}");

    // Without a server to spare, as on nats-server: 10075.
    let mut cfg = stream_config("R3");
    cfg.subjects = vec!["y.>".into()];
    cfg.num_replicas = 3;
    js.create_stream(cfg).await.unwrap();
    let r = raw_request(&client, "$JS.API.STREAM.PEER.REMOVE.R3", r#"{"peer":"n1"}"#).await;
    assert_eq!(r["error"]["err_code"], 10075, "{r}");
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}

/// Waits until `stream` holds `want` messages; their payloads in sequence order (for a
/// source: sorted, two links interleave as they please).
async fn copied(js: &jetstream::Context, stream: &str, want: u64) -> Vec<(u64, String)> {
    count_becomes_within(js, stream, want, Duration::from_secs(30)).await;
    let s = js.get_stream(stream).await.unwrap();
    let last = s.cached_info().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push((seq, String::from_utf8_lossy(&m.payload).to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_mirrors_and_sources_copy_through_leader_changes() {
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let (mut servers, js) = with_r3_stream(&ports, dir.path(), "O").await;
    let mut mirror = stream::Config {
        name: "M".into(),
        mirror: Some(stream::Source {
            name: "O".into(),
            ..Default::default()
        }),
        num_replicas: 3,
        ..Default::default()
    };
    js.create_stream(mirror.clone()).await.unwrap();
    js.create_stream(stream::Config {
        name: "S".into(),
        subjects: vec!["own.>".into()],
        sources: Some(vec![stream::Source {
            name: "O".into(),
            ..Default::default()
        }]),
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    publish_all(&js, 0..40).await;
    let want: Vec<(u64, String)> = (1..=40).map(|i| (i, format!("{}", i - 1))).collect();
    assert_eq!(
        copied(&js, "M", 40).await,
        want,
        "mirrored through its group"
    );
    assert_eq!(copied(&js, "S", 40).await.len(), 40);

    // The mirror's leader goes away: the new one resumes the copy where the group has it.
    let (leader, _) = stream_leader(&js, "M").await;
    let (i, js) = take_down(&mut servers, &leader).await;
    publish_all(&js, 40..70).await;
    let want: Vec<(u64, String)> = (1..=70).map(|i| (i, format!("{}", i - 1))).collect();
    assert_eq!(
        copied(&js, "M", 70).await,
        want,
        "mirrored after the leader left"
    );
    let mut sourced: Vec<String> = copied(&js, "S", 70)
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    sourced.sort_by_key(|p| p.parse::<u64>().unwrap_or(u64::MAX));
    let all: Vec<String> = (0..70).map(|i| i.to_string()).collect();
    assert_eq!(sourced, all, "each origin message sourced once");
    let info = raw_request(&js.client(), "$JS.API.STREAM.INFO.M", "").await;
    assert_eq!(info["mirror"]["name"], "O", "{info}");
    assert_eq!(info["mirror"]["lag"], 0, "{info}");

    // The configuration of a mirror cannot change.
    mirror.mirror.as_mut().unwrap().filter_subject = Some("k.1".into());
    let refused = js.update_stream(mirror).await.unwrap_err();
    assert!(refused.to_string().contains("10055"), "{refused}");
    servers[i] = Some(start(node_config(i, &ports, dir.path())).await);
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
}
