//! Leaf node connections with real servers on 127.0.0.1: a stock nats-server 2.15.1 leaf
//! connected to a causeway hub and a causeway leaf connected to a nats-server hub (messages
//! both ways, request/reply, queue groups served by local members first, JetStream
//! deliveries across), and a causeway edge with its own JetStream domain that keeps taking
//! publishes while its uplink is down and whose stream the hub sources, everything once.

mod common;

use std::time::{Duration, Instant};

use async_nats::Client;
use causeway::config::{LeafConfig, LeafRemote};
use causeway::{Config, ServerHandle};
use common::reference::RefServer;
use common::{free_port, start};
use futures::StreamExt;
use serde_json::{json, Value};

/// A message on `subject` from `from` reaches `sub` (published again until it does: interest
/// crosses the leaf connection a moment after the subscription).
async fn crosses(from: &Client, sub: &mut async_nats::Subscriber, subject: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        from.publish(subject.to_string(), "probe".into())
            .await
            .expect("publish");
        from.flush().await.expect("flush");
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            return m.subject.to_string();
        }
        assert!(Instant::now() < deadline, "{subject} never crossed");
    }
}

/// Drains whatever `sub` still holds (probes that crossed twice).
async fn drain(sub: &mut async_nats::Subscriber) {
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {}
}

async fn connect(url: &str) -> Client {
    common::js::connect(url).await
}

/// Messages, requests and queue groups across a leaf connection between `hub` and `leaf`
/// (client URLs), whichever server is which.
async fn core_messaging(hub: &str, leaf: &str) {
    let (h, l) = (connect(hub).await, connect(leaf).await);
    // Both ways.
    let mut on_hub = h.subscribe("up.>").await.expect("sub");
    assert_eq!(crosses(&l, &mut on_hub, "up.x").await, "up.x");
    let mut on_leaf = l.subscribe("down.>").await.expect("sub");
    assert_eq!(crosses(&h, &mut on_leaf, "down.y").await, "down.y");
    drain(&mut on_hub).await;
    drain(&mut on_leaf).await;
    for i in 0..20 {
        l.publish(format!("up.{i}"), format!("{i}").into())
            .await
            .expect("pub");
    }
    l.flush().await.expect("flush");
    for i in 0..20 {
        let m = tokio::time::timeout(Duration::from_secs(5), on_hub.next())
            .await
            .expect("in time")
            .expect("message");
        assert_eq!(m.subject.as_str(), format!("up.{i}"), "in order, once");
    }
    // Request/reply, both ways.
    let mut svc = l.subscribe("svc.leaf").await.expect("sub");
    let responder = l.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, "from leaf".into()).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match tokio::time::timeout(
            Duration::from_millis(500),
            h.request("svc.leaf", "q".into()),
        )
        .await
        {
            Ok(Ok(m)) => break m,
            _ => assert!(Instant::now() < deadline, "no answer across the leaf"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer.payload, "from leaf");
    // A queue group with members on both sides: a publish on the hub goes to the hub's own
    // members only; one on the leaf (which has none) to one hub member, once.
    let q1 = h.queue_subscribe("work", "g".into()).await.expect("q1");
    let q2 = h.queue_subscribe("work", "g".into()).await.expect("q2");
    let mut lq = l.queue_subscribe("work", "g".into()).await.expect("lq");
    let mut probe = h.subscribe("work").await.expect("probe");
    crosses(&l, &mut probe, "work").await;
    drop(probe);
    let (mut q1, mut q2) = (q1, q2);
    drain(&mut q1).await;
    drain(&mut q2).await;
    drain(&mut lq).await;
    for _ in 0..30 {
        h.publish("work", "job".into()).await.expect("pub");
    }
    h.flush().await.expect("flush");
    let mut hub_got = 0;
    for q in [&mut q1, &mut q2] {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), q.next()).await {
            hub_got += 1;
        }
    }
    let leaf_got = tokio::time::timeout(Duration::from_millis(300), lq.next())
        .await
        .is_ok();
    assert_eq!((hub_got, leaf_got), (30, false), "local members first");
}

fn hub_config(leaf_port: u16) -> Config {
    Config::loopback().with_leafnodes(LeafConfig {
        listen: Some(("127.0.0.1".into(), leaf_port)),
        ..Default::default()
    })
}

fn leaf_config(hub_leaf_port: u16) -> Config {
    Config::loopback().with_leafnodes(LeafConfig {
        remotes: vec![LeafRemote {
            urls: vec![format!("nats-leaf://127.0.0.1:{hub_leaf_port}")],
            account: None,
            tls: None,
        }],
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_leaf_works_with_a_causeway_hub() {
    let port = free_port();
    let hub = start(hub_config(port)).await;
    let leaf = RefServer::start(&format!(
        "leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{port}\" }} ] }}\n"
    ));
    core_messaging(&hub.client_url(), &format!("nats://{}", leaf.addr)).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_causeway_leaf_works_with_a_nats_server_hub() {
    let port = free_port();
    let hub = RefServer::start(&format!("leafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"));
    let leaf = start(leaf_config(port)).await;
    core_messaging(&format!("nats://{}", hub.addr), &leaf.client_url()).await;
    leaf.shutdown().await;
}

/// A JetStream server in `domain` with store `dir`.
fn with_js(cfg: Config, dir: &std::path::Path, domain: &str) -> Config {
    let mut cfg = cfg.with_jetstream(dir);
    cfg.jetstream.domain = Some(domain.into());
    cfg
}

async fn api(nc: &Client, subject: &str, body: Value) -> Value {
    common::js::api(nc, subject, body.to_string()).await
}

async fn count(nc: &Client, stream: &str) -> u64 {
    api(nc, &format!("STREAM.INFO.{stream}"), json!({})).await["state"]["messages"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_keeps_taking_publishes_offline_and_the_hub_sources_them_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let edge = start(with_js(leaf_config(port), &dir.path().join("edge"), "edge")).await;
    let e = connect(&edge.client_url()).await;
    let v = api(
        &e,
        "STREAM.CREATE.EDGE",
        json!({"name": "EDGE", "subjects": ["edge.>"]}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    // The uplink is down (no hub yet): the edge takes publishes all the same.
    let js = async_nats::jetstream::new(e.clone());
    let mut acks = Vec::new();
    for i in 0..10_000u32 {
        acks.push(
            js.publish(format!("edge.{}", i % 10), i.to_string().into())
                .await
                .expect("pub"),
        );
        if acks.len() == 1000 {
            for a in acks.drain(..) {
                a.await.expect("ack");
            }
        }
    }
    for a in acks.drain(..) {
        a.await.expect("ack");
    }
    let hub_cfg = with_js(hub_config(port), &dir.path().join("hub"), "hub");
    let mut hub: ServerHandle = start(hub_cfg).await;
    let h = connect(&hub.client_url()).await;
    let cfg = json!({"name": "HUB", "sources": [{"name": "EDGE", "external": {"api": "$JS.edge.API", "deliver": ""}}]});
    let v = api(&h, "STREAM.CREATE.HUB", cfg).await;
    assert!(v.get("error").is_none(), "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&h, "HUB").await < 10_000 {
        assert!(
            Instant::now() < deadline,
            "the hub has {} of 10000",
            count(&h, "HUB").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The hub goes away, the edge goes on, the hub comes back: the rest, once.
    let hub_dir = tempfile::TempDir::new().expect("tempdir");
    let _ = hub_dir;
    hub.shutdown().await;
    for i in 10_000..10_500u32 {
        js.publish(format!("edge.{}", i % 10), i.to_string().into())
            .await
            .expect("pub")
            .await
            .expect("ack");
    }
    hub = start(with_js(hub_config(port), &dir.path().join("hub"), "hub")).await;
    let h = connect(&hub.client_url()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&h, "HUB").await < 10_500 {
        assert!(
            Instant::now() < deadline,
            "the hub has {} of 10500",
            count(&h, "HUB").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&h, "HUB").await, 10_500, "nothing twice");
    let s = async_nats::jetstream::new(h.clone())
        .get_stream("HUB")
        .await
        .expect("HUB");
    let mut seen = std::collections::BTreeSet::new();
    for seq in 1..=10_500u64 {
        let m = s.get_raw_message(seq).await.expect("message");
        seen.insert(String::from_utf8_lossy(&m.payload).to_string());
    }
    assert_eq!(seen.len(), 10_500, "every edge message once");
    hub.shutdown().await;
    edge.shutdown().await;
}

/// The fields of `/leafz`'s first leaf at `http`, once one is there.
async fn leafz_fields(http: std::net::SocketAddr) -> (Vec<String>, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = common::monitor_json(http, "/leafz").await;
        if let Some(leaf) = v["leafs"].get(0).and_then(Value::as_object) {
            let mut keys: Vec<String> = leaf
                .keys()
                .filter(|k| !["rtt", "proxy", "is_isolated"].contains(&k.as_str()))
                .cloned()
                .collect();
            keys.sort();
            return (keys, v);
        }
        assert!(Instant::now() < deadline, "no leaf in /leafz: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leafz_lists_leaf_connections_as_nats_server_does() {
    // A nats-server hub with a causeway leaf, and a causeway hub with a nats-server leaf.
    let (p1, p2, http) = (free_port(), free_port(), free_port());
    let _theirs = RefServer::start(&format!(
        "http: \"127.0.0.1:{http}\"\nleafnodes {{ listen: \"127.0.0.1:{p1}\" }}\n"
    ));
    let leaf = start(leaf_config(p1)).await;
    let mut cfg = hub_config(p2);
    cfg.http_port = Some(0);
    let hub = start(cfg).await;
    let _their_leaf = RefServer::start(&format!(
        "leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{p2}\" }} ] }}\n"
    ));
    let (want, _) = leafz_fields(([127, 0, 0, 1], http).into()).await;
    let (got, ours) = leafz_fields(hub.monitor_addr().expect("monitor")).await;
    assert_eq!(got, want, "{ours}");
    assert_eq!(ours["leafnodes"], 1, "{ours}");
    assert_eq!(ours["leafs"][0]["is_spoke"], false, "{ours}");
    assert!(
        ours["leafs"][0]["subscriptions"].as_u64() > Some(0),
        "{ours}"
    );
    leaf.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_of_one_cluster_server_reaches_the_others() {
    use causeway::config::ClusterConfig;
    let ports = [free_port(), free_port(), free_port()];
    let leaf_port = free_port();
    let mut servers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let routes = ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}"));
        let mut cluster = ClusterConfig::loopback("hub").with_routes(routes);
        cluster.port = *port;
        let mut cfg = Config::loopback().with_cluster(cluster);
        cfg.server_name = Some(format!("n{i}"));
        if i == 0 {
            cfg = cfg.with_leafnodes(LeafConfig {
                listen: Some(("127.0.0.1".into(), leaf_port)),
                ..Default::default()
            });
        }
        servers.push(start(cfg).await);
    }
    let leaf = RefServer::start(&format!(
        "leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ] }}\n"
    ));
    let l = connect(&format!("nats://{}", leaf.addr)).await;
    let far = connect(&servers[2].client_url()).await;
    let mut on_far = far.subscribe("up.>").await.expect("sub");
    assert_eq!(crosses(&l, &mut on_far, "up.far").await, "up.far");
    let mut on_leaf = l.subscribe("down.>").await.expect("sub");
    let other = connect(&servers[1].client_url()).await;
    assert_eq!(crosses(&other, &mut on_leaf, "down.x").await, "down.x");
    // A request from the far server answered on the leaf.
    let mut svc = l.subscribe("svc").await.expect("svc");
    let responder = l.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, "pong".into()).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(
            Duration::from_millis(500),
            far.request("svc", "ping".into()),
        )
        .await
        {
            Ok(Ok(m)) => {
                assert_eq!(m.payload, "pong");
                break;
            }
            _ => assert!(Instant::now() < deadline, "no answer from the leaf"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_connections_upgrade_to_tls_both_ways_with_nats_server() {
    use causeway::config::TlsConfig;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = common::certs::Ca::new(dir.path(), "leaf");
    let pair = ca.server_and_client("hub");
    let (cert, key, ca_file) = (
        pair.cert.display().to_string(),
        pair.key.display().to_string(),
        ca.cert.display().to_string(),
    );
    // A causeway hub with TLS (verifying the leaf's certificate), a stock leaf.
    let port = free_port();
    let mut tls = TlsConfig::new(&pair.cert, &pair.key);
    tls.ca_file = Some(ca.cert.clone());
    tls.verify = true;
    let hub = start(Config::loopback().with_leafnodes(LeafConfig {
        listen: Some(("127.0.0.1".into(), port)),
        tls: Some(tls),
        ..Default::default()
    }))
    .await;
    let leaf = RefServer::start(&format!(
        "leafnodes {{ remotes: [ {{ url: \"tls://127.0.0.1:{port}\", tls {{ cert_file: \"{cert}\", key_file: \"{key}\", ca_file: \"{ca_file}\" }} }} ] }}\n"
    ));
    let (h, l) = (
        connect(&hub.client_url()).await,
        connect(&format!("nats://{}", leaf.addr)).await,
    );
    let mut on_hub = h.subscribe("secure.>").await.expect("sub");
    assert_eq!(crosses(&l, &mut on_hub, "secure.up").await, "secure.up");
    hub.shutdown().await;
    // A stock hub with TLS, a causeway leaf trusting its CA.
    let port = free_port();
    let theirs = RefServer::start(&format!(
        "leafnodes {{ listen: \"127.0.0.1:{port}\", tls {{ cert_file: \"{cert}\", key_file: \"{key}\" }} }}\n"
    ));
    let mut remote_tls = TlsConfig::new("", "");
    remote_tls.ca_file = Some(ca.cert.clone());
    let ours = start(Config::loopback().with_leafnodes(LeafConfig {
        remotes: vec![LeafRemote {
            urls: vec![format!("nats-leaf://127.0.0.1:{port}")],
            account: None,
            tls: Some(remote_tls),
        }],
        ..Default::default()
    }))
    .await;
    let (h, l) = (
        connect(&format!("nats://{}", theirs.addr)).await,
        connect(&ours.client_url()).await,
    );
    let mut on_leaf = l.subscribe("secure.>").await.expect("sub");
    assert_eq!(
        crosses(&h, &mut on_leaf, "secure.down").await,
        "secure.down"
    );
    ours.shutdown().await;
}

/// Waits until `stream` on `nc` holds `want` messages.
async fn holds(nc: &Client, stream: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(nc, stream).await < want {
        if Instant::now() >= deadline {
            let info = api(nc, &format!("STREAM.INFO.{stream}"), json!({})).await;
            panic!(
                "{stream} holds {} of {want}: {}",
                count(nc, stream).await,
                info["sources"]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stream `EDGE` on the edge (client URL `edge`, domain `edge`) with 200 messages, sourced
/// by a stream `HUB` on the hub (client URL `hub`) through `$JS.edge.API`: all of them.
async fn hub_sources_edge(hub: &str, edge: &str) {
    let e = connect(edge).await;
    let cfg = json!({"name": "EDGE", "subjects": ["edge.>"]});
    let v = api(&e, "STREAM.CREATE.EDGE", cfg).await;
    assert!(v.get("error").is_none(), "{v}");
    let js = async_nats::jetstream::new(e.clone());
    for i in 0..200u32 {
        let ack = js.publish(format!("edge.{i}"), i.to_string().into());
        ack.await.expect("pub").await.expect("ack");
    }
    let h = connect(hub).await;
    let cfg = json!({"name": "HUB", "sources": [{"name": "EDGE", "external": {"api": "$JS.edge.API", "deliver": ""}}]});
    let v = api(&h, "STREAM.CREATE.HUB", cfg).await;
    assert!(v.get("error").is_none(), "{v}");
    holds(&h, "HUB", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_source_across_a_leaf_connection_with_nats_server_at_either_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A stock hub in domain `hub` sources a stream of a causeway edge in domain `edge`.
    let port = free_port();
    let theirs = RefServer::start(&format!(
        "jetstream {{ store_dir: \"{{store}}\", domain: hub }}\nleafnodes {{ listen: \"127.0.0.1:{port}\" }}\n"
    ));
    let edge = start(with_js(leaf_config(port), &dir.path().join("edge"), "edge")).await;
    hub_sources_edge(&format!("nats://{}", theirs.addr), &edge.client_url()).await;
    edge.shutdown().await;
    // A causeway hub in domain `hub` sources a stream of a stock edge in domain `edge`.
    let port = free_port();
    let hub = start(with_js(hub_config(port), &dir.path().join("hub"), "hub")).await;
    let their_edge = RefServer::start(&format!(
        "jetstream {{ store_dir: \"{{store}}\", domain: edge }}\nleafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{port}\" }} ] }}\n"
    ));
    hub_sources_edge(&hub.client_url(), &format!("nats://{}", their_edge.addr)).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_user_is_bound_to_its_account() {
    let port = free_port();
    let text = format!(
        "accounts {{ A: {{ users: [ {{ user: a, password: pa }} ] }}, B: {{ users: [ {{ user: b, password: pb }} ] }} }}\n\
         leafnodes {{ listen: \"127.0.0.1:{port}\", authorization {{ users: [ {{ user: leaf, password: secret, account: A }} ] }} }}\n"
    );
    let mut cfg = common::loopback_conf(&text);
    cfg.http_port = Some(0);
    let hub = start(cfg).await;
    let login = |u: &str, p: &str| {
        async_nats::ConnectOptions::with_user_and_password(u.into(), p.into())
            .connect(hub.client_url())
    };
    let (a, b) = (
        login("a", "pa").await.expect("a"),
        login("b", "pb").await.expect("b"),
    );
    // A leaf with the wrong password never gets in; the right one is bound to account A.
    let _stranger = RefServer::start(&format!(
        "leafnodes {{ remotes: [ {{ url: \"nats-leaf://leaf:wrong@127.0.0.1:{port}\" }} ] }}\n"
    ));
    let leaf = RefServer::start(&format!(
        "leafnodes {{ remotes: [ {{ url: \"nats-leaf://leaf:secret@127.0.0.1:{port}\" }} ] }}\n"
    ));
    let l = connect(&format!("nats://{}", leaf.addr)).await;
    let mut in_a = a.subscribe("edge.>").await.expect("sub");
    let mut in_b = b.subscribe("edge.>").await.expect("sub");
    assert_eq!(crosses(&l, &mut in_a, "edge.x").await, "edge.x");
    let other = tokio::time::timeout(Duration::from_millis(500), in_b.next()).await;
    assert!(other.is_err(), "account B saw the leaf's message");
    let (_, leafz) = leafz_fields(hub.monitor_addr().expect("monitor")).await;
    assert_eq!(
        leafz["leafnodes"], 1,
        "only the leaf with the password: {leafz}"
    );
    assert_eq!(leafz["leafs"][0]["account"], "A", "{leafz}");
    hub.shutdown().await;
}
