//! Core NATS over routes: three in-process servers on random 127.0.0.1 ports (and one test
//! with the real binary three times), driven by async-nats clients. Covers forwarding with
//! wildcards and headers, queue groups (one copy cluster-wide, local members preferred),
//! request/reply and no-responders across nodes, interest removal, discovery from one seed
//! route, restarts, `connect_urls` in client INFO, a stuck route peer, and config errors.
//!
//! Interest crosses routes asynchronously, as on nats-server: [`propagated`] waits until a
//! probe subscription made after the others is seen from the publishing servers (interest
//! of one connection reaches a peer in order), so no test sleeps on a guess.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use causeway::config::ClusterConfig;
use causeway::{Config, Server, ServerHandle};
use common::child::ChildServer;
use common::{assert_no_msg, free_port, nats_client, next_msg, start, within, RawClient, TIMEOUT};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn node_config(cluster_port: u16, routes: &[String]) -> Config {
    let mut cluster = ClusterConfig::loopback("core").with_routes(routes.iter().cloned());
    cluster.port = cluster_port;
    Config::loopback().with_cluster(cluster)
}

fn route_url(server: &ServerHandle) -> String {
    format!(
        "nats-route://{}",
        server.cluster_addr().expect("cluster listener")
    )
}

/// Waits (bounded) until every server has a route to each of the others.
async fn full_mesh(servers: &[&ServerHandle]) {
    let want = servers.len() - 1;
    let deadline = Instant::now() + TIMEOUT;
    while servers.iter().any(|s| s.num_routes() != want) {
        let counts: Vec<usize> = servers.iter().map(|s| s.num_routes()).collect();
        assert!(Instant::now() < deadline, "no full mesh: routes {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three servers: A with no routes, B and C with one seed route to A (so B and C find each
/// other through gossip).
async fn three() -> (ServerHandle, ServerHandle, ServerHandle) {
    let a = start(node_config(0, &[])).await;
    let seed = [route_url(&a)];
    let b = start(node_config(0, &seed)).await;
    let c = start(node_config(0, &seed)).await;
    full_mesh(&[&a, &b, &c]).await;
    (a, b, c)
}

/// Waits until the interest `subscriber` registered so far is known where `publishers` are:
/// a probe subscription made after it must receive a publish from each of them.
async fn propagated(subscriber: &async_nats::Client, publishers: &[&async_nats::Client]) {
    let subject = subscriber.new_inbox();
    let mut probe = subscriber.subscribe(subject.clone()).await.expect("probe");
    subscriber.flush().await.expect("flush");
    for publisher in publishers {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            publisher
                .publish(subject.clone(), Bytes::from_static(b"probe"))
                .await
                .expect("publish probe");
            publisher.flush().await.expect("flush");
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), probe.next()).await
            {
                break;
            }
            assert!(Instant::now() < deadline, "interest never propagated");
        }
    }
}

#[tokio::test]
async fn a_node_given_one_seed_route_finds_the_whole_mesh() {
    let (a, b, c) = three().await;
    // B and C only know A, yet talk directly (a message takes one hop at most).
    let (cb, cc) = (nats_client(&b).await, nats_client(&c).await);
    let mut sub = cb.subscribe("mesh.x").await.unwrap();
    propagated(&cb, &[&cc]).await;
    cc.publish("mesh.x", "direct".into()).await.unwrap();
    assert_eq!(next_msg(&mut sub).await.payload, "direct");
    for s in [&a, &b, &c] {
        assert_eq!(s.num_routes(), 2);
    }
}

#[tokio::test]
async fn messages_published_on_one_node_reach_subscribers_on_the_others() {
    let (a, b, c) = three().await;
    let (ca, cb, cc) = (
        nats_client(&a).await,
        nats_client(&b).await,
        nats_client(&c).await,
    );
    let mut on_b = cb.subscribe("orders.*").await.unwrap();
    let mut on_c = cc.subscribe("orders.>").await.unwrap();
    let mut exact_c = cc.subscribe("orders.new").await.unwrap();
    propagated(&cb, &[&ca]).await;
    propagated(&cc, &[&ca]).await;

    ca.publish("orders.new", "one".into()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("X-Trace", "t1");
    ca.publish_with_headers("orders.new.eu", headers, "two".into())
        .await
        .unwrap();
    ca.flush().await.unwrap();

    assert_eq!(next_msg(&mut on_b).await.payload, "one");
    let first = next_msg(&mut on_c).await;
    assert_eq!(first.payload, "one");
    let second = next_msg(&mut on_c).await;
    assert_eq!(
        (second.subject.as_str(), &second.payload[..]),
        ("orders.new.eu", &b"two"[..])
    );
    let trace = second.headers.as_ref().and_then(|h| h.get("X-Trace"));
    assert_eq!(trace.map(|v| v.as_str()), Some("t1"));
    // C has two matching subscriptions: each gets its copy, from one routed message.
    assert_eq!(next_msg(&mut exact_c).await.payload, "one");
    // "orders.*" does not match "orders.new.eu", and nothing arrives twice.
    assert_no_msg(&mut on_b, Duration::from_millis(200)).await;
    assert_no_msg(&mut on_c, Duration::from_millis(50)).await;
    assert_no_msg(&mut exact_c, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn echo_false_and_max_payload_hold_across_routes() {
    let (a, b, _c) = three().await;
    let no_echo = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(a.client_url())
        .await
        .unwrap();
    let cb = nats_client(&b).await;
    let mut own = no_echo.subscribe("echo.x").await.unwrap();
    let mut remote = cb.subscribe("echo.x").await.unwrap();
    propagated(&cb, &[&no_echo]).await;
    no_echo.publish("echo.x", "hi".into()).await.unwrap();
    assert_eq!(next_msg(&mut remote).await.payload, "hi");
    assert_no_msg(&mut own, Duration::from_millis(200)).await;
    // Too large for A: refused at the publisher, nothing crosses.
    let big = Bytes::from(vec![7u8; 2 * 1024 * 1024]);
    assert!(no_echo.publish("echo.x", big).await.is_err());
    assert_no_msg(&mut remote, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn permissions_hold_across_routes() {
    let conf = "authorization { users: [ {user: u, password: p, permissions: { \
                publish: { deny: \"blocked.>\" }, subscribe: { deny: \"orders.secret\" } } } ] }";
    let node = |routes: &[String]| {
        let mut cfg = causeway::config::from_conf_text(conf, None).expect("conf");
        let base = node_config(0, routes);
        (cfg.host, cfg.port, cfg.cluster) = (base.host, base.port, base.cluster);
        cfg
    };
    let a = start(node(&[])).await;
    let b = start(node(&[route_url(&a)])).await;
    full_mesh(&[&a, &b]).await;
    let login = || async_nats::ConnectOptions::with_user_and_password("u".into(), "p".into());
    let ca = login().connect(a.client_url()).await.unwrap();
    let cb = login().connect(b.client_url()).await.unwrap();
    // B's subscriber may not receive orders.secret, even through a wildcard and a route.
    let mut orders = cb.subscribe("orders.*").await.unwrap();
    let mut blocked = cb.subscribe("blocked.x").await.unwrap();
    propagated(&cb, &[&ca]).await;
    ca.publish("orders.secret", "no".into()).await.unwrap();
    ca.publish("blocked.x", "no".into()).await.unwrap();
    ca.publish("orders.open", "yes".into()).await.unwrap();
    let got = next_msg(&mut orders).await;
    assert_eq!(
        (got.subject.as_str(), &got.payload[..]),
        ("orders.open", &b"yes"[..])
    );
    assert_no_msg(&mut orders, Duration::from_millis(200)).await;
    assert_no_msg(&mut blocked, Duration::from_millis(10)).await;
}

#[tokio::test]
async fn a_queue_group_gets_one_copy_cluster_wide_and_prefers_local_members() {
    let (a, b, c) = three().await;
    let (ca, cb, cc) = (
        nats_client(&a).await,
        nats_client(&b).await,
        nats_client(&c).await,
    );
    let mut qa = ca.queue_subscribe("work", "workers".into()).await.unwrap();
    let mut qb = cb.queue_subscribe("work", "workers".into()).await.unwrap();
    let mut qc = cc.queue_subscribe("work", "workers".into()).await.unwrap();
    propagated(&cb, &[&ca]).await;
    propagated(&cc, &[&ca]).await;

    // A local member exists: it gets every message.
    for i in 0..50 {
        ca.publish("work", i.to_string().into()).await.unwrap();
    }
    ca.flush().await.unwrap();
    for _ in 0..50 {
        next_msg(&mut qa).await;
    }
    assert_no_msg(&mut qb, Duration::from_millis(200)).await;
    assert_no_msg(&mut qc, Duration::from_millis(10)).await;

    // No local member: every message goes to exactly one remote member.
    qa.unsubscribe().await.unwrap();
    propagated(&ca, &[&ca]).await; // A's own UNSUB is processed
    let n = 200;
    for i in 0..n {
        ca.publish("work", i.to_string().into()).await.unwrap();
    }
    ca.flush().await.unwrap();
    let mut seen = HashSet::new();
    let mut per_node = [0usize; 2];
    let deadline = Instant::now() + TIMEOUT;
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} arrived",
            seen.len()
        );
        tokio::select! {
            Some(m) = qb.next() => { per_node[0] += 1; assert!(seen.insert(m.payload), "duplicate"); }
            Some(m) = qc.next() => { per_node[1] += 1; assert!(seen.insert(m.payload), "duplicate"); }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    assert_no_msg(&mut qb, Duration::from_millis(200)).await;
    assert_no_msg(&mut qc, Duration::from_millis(10)).await;
    assert_eq!(per_node.iter().sum::<usize>(), n);
    assert!(
        per_node.iter().all(|&k| k > 0),
        "both remote members should get some: {per_node:?}"
    );
}

#[tokio::test]
async fn request_reply_crosses_nodes_and_no_responders_needs_nobody_anywhere() {
    let (a, b, c) = three().await;
    let (ca, cb, cc) = (
        nats_client(&a).await,
        nats_client(&b).await,
        nats_client(&c).await,
    );
    let mut service = cb.subscribe("svc.echo").await.unwrap();
    let responder = cb.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    propagated(&cb, &[&cc, &ca]).await;
    let reply = within(TIMEOUT, "reply", cc.request("svc.echo", "ping".into()))
        .await
        .expect("request across nodes");
    assert_eq!(reply.payload, "ping");

    // Nobody anywhere: a 503 at once, not a timeout.
    let started = Instant::now();
    let err = within(TIMEOUT, "no responders", ca.request("svc.none", "x".into()))
        .await
        .expect_err("nobody listens");
    assert_eq!(
        err.kind(),
        async_nats::client::RequestErrorKind::NoResponders,
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // The in-process client of another node sees the remote responder too.
    let reply = within(
        TIMEOUT,
        "in-process request",
        a.client().request("svc.echo", "inproc".into()),
    )
    .await
    .expect("in-process request across nodes");
    assert_eq!(reply.payload, "inproc");
}

/// Requests `subject` from `client` until it gets no-responders (bounded).
async fn until_no_responders(client: &async_nats::Client, subject: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            client.request(subject.to_string(), "x".into()),
        )
        .await;
        if let Ok(Err(e)) = &r {
            if e.kind() == async_nats::client::RequestErrorKind::NoResponders {
                return;
            }
        }
        assert!(Instant::now() < deadline, "interest never went away: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unsubscribing_or_losing_a_node_removes_its_interest() {
    let (a, b, c) = three().await;
    let (ca, cb, cc) = (
        nats_client(&a).await,
        nats_client(&b).await,
        nats_client(&c).await,
    );
    let mut sub = cb.subscribe("gone.x").await.unwrap();
    propagated(&cb, &[&ca]).await;
    // With interest on B, a request from A is forwarded: no 503 (it times out instead).
    let r =
        tokio::time::timeout(Duration::from_millis(300), ca.request("gone.x", "x".into())).await;
    assert!(r.is_err(), "forwarded, so no immediate answer: {r:?}");
    next_msg(&mut sub).await;
    sub.unsubscribe().await.unwrap();
    until_no_responders(&ca, "gone.x").await;

    // A node that goes away takes its interest with it.
    let _on_c = cc.subscribe("lost.x").await.unwrap();
    propagated(&cc, &[&ca]).await;
    drop(cc);
    c.shutdown().await;
    until_no_responders(&ca, "lost.x").await;
    assert_eq!(a.num_routes(), 1);
    assert_eq!(b.num_routes(), 1);
}

#[tokio::test]
async fn restarted_nodes_rejoin_and_traffic_resumes() {
    let seed_port = free_port();
    let a = start(node_config(seed_port, &[])).await;
    let seed = [format!("nats-route://127.0.0.1:{seed_port}")];
    let b = start(node_config(0, &seed)).await;
    let c = start(node_config(0, &seed)).await;
    full_mesh(&[&a, &b, &c]).await;

    // A node with one seed route restarts: it finds both others again.
    let b_port = b.cluster_addr().unwrap().port();
    b.shutdown().await;
    let b = start(node_config(b_port, &seed)).await;
    full_mesh(&[&a, &b, &c]).await;

    // The seed itself restarts on its port: B and C dial it again.
    a.shutdown().await;
    let a = start(node_config(seed_port, &[])).await;
    full_mesh(&[&a, &b, &c]).await;

    let (ca, cb, cc) = (
        nats_client(&a).await,
        nats_client(&b).await,
        nats_client(&c).await,
    );
    let mut on_a = ca.subscribe("back.>").await.unwrap();
    let mut on_c = cc.subscribe("back.>").await.unwrap();
    propagated(&ca, &[&cb]).await;
    propagated(&cc, &[&cb]).await;
    cb.publish("back.again", "hello".into()).await.unwrap();
    assert_eq!(next_msg(&mut on_a).await.payload, "hello");
    assert_eq!(next_msg(&mut on_c).await.payload, "hello");
}

/// Reads `client`'s INFO lines (servers send one as the cluster changes; async-nats keeps
/// only the first) until one's `connect_urls` satisfy `ok`.
async fn info_until(client: &mut RawClient, what: &str, ok: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "{what}: no such INFO");
        let line = within(TIMEOUT, what, client.read_line()).await;
        let Some(json) = line.strip_prefix("INFO ") else {
            continue;
        };
        let info: serde_json::Value = serde_json::from_str(json).expect("INFO JSON");
        let urls: Vec<String> = info["connect_urls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if ok(&urls) {
            return;
        }
    }
}

#[tokio::test]
async fn clients_learn_the_other_nodes_client_urls() {
    let a = start(node_config(0, &[])).await;
    let seed = [route_url(&a)];
    let b = start(node_config(0, &seed)).await;
    full_mesh(&[&a, &b]).await;
    let ca = nats_client(&a).await;
    let info = ca.server_info();
    assert_eq!(info.cluster.as_deref(), Some("core"));
    let b_url = b.local_addr().to_string();
    assert!(info.connect_urls.contains(&b_url), "{info:?}");

    // A node joins, then leaves: a connected client is told both times.
    let mut raw = RawClient::connect_ready(a.local_addr()).await;
    let c = start(node_config(0, &seed)).await;
    full_mesh(&[&a, &b, &c]).await;
    let c_url = c.local_addr().to_string();
    info_until(&mut raw, "C joined", |u| {
        u.contains(&c_url) && u.contains(&b_url)
    })
    .await;
    c.shutdown().await;
    info_until(&mut raw, "C left", |u| {
        !u.contains(&c_url) && u.contains(&b_url)
    })
    .await;

    // no_advertise keeps a node's client URL out of the others' INFO.
    let mut quiet = ClusterConfig::loopback("core").with_routes(seed.iter().cloned());
    quiet.no_advertise = true;
    let d = start(Config::loopback().with_cluster(quiet)).await;
    full_mesh(&[&a, &b, &d]).await;
    let fresh = nats_client(&b).await;
    assert!(!fresh
        .server_info()
        .connect_urls
        .contains(&d.local_addr().to_string()));
}

#[tokio::test]
async fn a_route_peer_that_stops_reading_is_cut() {
    let mut cfg = node_config(0, &[]);
    cfg.max_pending = 256 * 1024;
    cfg.write_deadline = Duration::from_millis(500);
    let a = start(cfg).await;
    // A fake peer: handshakes, asks for everything, then never reads.
    let mut peer = tokio::net::TcpStream::connect(a.cluster_addr().unwrap())
        .await
        .unwrap();
    let id = "NFAKEPEER";
    let hello = format!(
        "CONNECT {{\"server_id\":\"{id}\",\"cluster\":\"core\",\"token\":1}}\r\n\
         INFO {{\"server_id\":\"{id}\",\"cluster\":\"core\"}}\r\nRS+ $G >\r\n"
    );
    peer.write_all(hello.as_bytes()).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while a.num_routes() != 1 {
        assert!(Instant::now() < deadline, "fake route never registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ca = nats_client(&a).await;
    let chunk = Bytes::from(vec![1u8; 64 * 1024]);
    let deadline = Instant::now() + TIMEOUT;
    while a.num_routes() != 0 {
        assert!(Instant::now() < deadline, "a stuck route was never cut");
        for _ in 0..16 {
            ca.publish("flood", chunk.clone()).await.unwrap();
        }
        ca.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The server is fine and its clients too.
    let mut sub = ca.subscribe("still.ok").await.unwrap();
    ca.publish("still.ok", "yes".into()).await.unwrap();
    assert_eq!(next_msg(&mut sub).await.payload, "yes");
    // Garbage on the route port closes that connection only.
    let mut junk = tokio::net::TcpStream::connect(a.cluster_addr().unwrap())
        .await
        .unwrap();
    junk.write_all(b"RMSG $G\r\n\xff\xfe garbage\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(TIMEOUT, junk.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "garbage did not close the route connection");
    assert_eq!(a.num_routes(), 0);
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let with_js = Config::loopback()
        .with_cluster(ClusterConfig::loopback("core"))
        .with_jetstream(std::env::temp_dir().join("causeway-cluster-js-refused"));
    let err = Server::start(with_js).await.err().expect("refused");
    assert!(
        err.to_string()
            .contains("jetstream cluster requires `server_name` to be set"),
        "{err}"
    );
    for (text, want) in [
        (
            "cluster { port: -1, tls { cert_file: a } }",
            "cluster.tls.key_file",
        ),
        (
            "cluster { port: -1, pool_size: 3 }",
            "cluster.pool_size is not supported yet",
        ),
        (
            "cluster { port: -1, bogus: 1 }",
            "unknown field \"cluster.bogus\"",
        ),
        (
            "server_name: a\ncluster { port: -1 }\njetstream { store_dir: /tmp/x }",
            "jetstream cluster requires `cluster.name` to be set",
        ),
        (
            "cluster { routes: [\"nats-route://nohost\"] }",
            "cluster.routes[0]",
        ),
    ] {
        let err = causeway::config::from_conf_text(text, None).expect_err(text);
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
}

#[tokio::test]
async fn the_binary_forms_a_cluster_from_nats_server_flags() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for port in &ports {
        // Every node gets the same routes list, itself included (a common deployment).
        let cluster = format!("nats://127.0.0.1:{port}");
        let mut child = ChildServer::spawn_args(
            BIN,
            &[
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "--cluster",
                &cluster,
                "--cluster_name",
                "bin",
                "--routes",
                &routes,
            ],
        );
        addrs.push(child.wait_ready().await);
        children.push(child);
    }
    let first = within(
        TIMEOUT,
        "connect",
        async_nats::connect(addrs[0].to_string()),
    )
    .await
    .unwrap();
    let last = within(
        TIMEOUT,
        "connect",
        async_nats::connect(addrs[2].to_string()),
    )
    .await
    .unwrap();
    let mut sub = last.subscribe("bin.hello").await.unwrap();
    propagated(&last, &[&first]).await;
    // While the three nodes settle which of two simultaneous routes to keep, a message sent on
    // the one being dropped is lost (core NATS is at most once): publish until one crosses.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        first.publish("bin.hello", "crossed".into()).await.unwrap();
        first.flush().await.unwrap();
        match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            Ok(Some(m)) => {
                assert_eq!(m.payload, "crossed");
                break;
            }
            _ => assert!(Instant::now() < deadline, "no message crossed the routes"),
        }
    }
    for child in &mut children {
        child.terminate().await;
    }
}
