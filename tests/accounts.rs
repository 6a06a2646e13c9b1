//! Accounts with async-nats clients: subjects isolated per account (a wildcard subscriber in
//! one account never sees another's messages, replies or requests), stream exports imported
//! with a prefix, service exports imported under a local subject (the reply comes back, and
//! only to the requester), JetStream per account (own streams, store and `max_streams`; 10039
//! where it is off), and the
//! configuration errors for imports that are not exported, cycles and what is not supported.

mod common;

use std::time::Duration;

use async_nats::ConnectOptions;
use causeway::config::from_conf_text;
use causeway::ServerHandle;
use common::{start, within, TIMEOUT};
use futures::StreamExt;

const CONF: &str = r#"
accounts {
  A: {
    users: [ { user: a, password: a } ]
    exports: [
      { stream: "orders.>", accounts: [B] }
      { service: "svc.echo" }
    ]
  }
  B: {
    users: [ { user: b, password: b } ]
    imports: [
      { stream: { account: A, subject: "orders.>" }, prefix: "from_a" }
      { service: { account: A, subject: "svc.echo" }, to: "a.echo" }
    ]
  }
  C: { users: [ { user: c, password: c } ] }
}
authorization { users: [ { user: g, password: g } ] }
"#;

async fn server(extra: &str, js: Option<&std::path::Path>) -> ServerHandle {
    let mut cfg = common::loopback_conf(&format!("{CONF}\n{extra}"));
    if let Some(dir) = js {
        cfg = cfg.with_jetstream(dir);
    }
    start(cfg).await
}

async fn login(server: &ServerHandle, user: &str) -> async_nats::Client {
    within(
        TIMEOUT,
        "connect",
        ConnectOptions::with_user_and_password(user.into(), user.into())
            .connect(server.client_url()),
    )
    .await
    .expect("connect")
}

/// Everything a subscription received within `wait`.
async fn drain(sub: &mut async_nats::Subscriber, wait: Duration) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(wait, sub.next()).await {
        got.push(m);
    }
    got
}

#[tokio::test]
async fn accounts_are_isolated_except_for_what_is_imported() {
    let server = server("", None).await;
    let (a, b, c, g) = (
        login(&server, "a").await,
        login(&server, "b").await,
        login(&server, "c").await,
        login(&server, "g").await,
    );
    let mut spy_b = b.subscribe(">").await.expect("sub");
    let mut spy_c = c.subscribe(">").await.expect("sub");
    let mut spy_g = g.subscribe(">").await.expect("sub");
    let mut same_a = a.subscribe("news").await.expect("sub");
    for client in [&b, &c, &g] {
        client.flush().await.expect("flush");
    }
    // A's own traffic stays in A: the same subject in other accounts is another subject.
    a.publish("news", "for A".into()).await.expect("pub");
    a.flush().await.expect("flush");
    let got = within(TIMEOUT, "A's own message", same_a.next())
        .await
        .expect("msg");
    assert_eq!(&got.payload[..], b"for A");
    // The exported stream reaches B (and only B) under its prefix.
    a.publish("orders.new", "o1".into()).await.expect("pub");
    a.flush().await.expect("flush");
    let seen_b = drain(&mut spy_b, Duration::from_millis(300)).await;
    let subjects: Vec<&str> = seen_b.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["from_a.orders.new"], "B saw {subjects:?}");
    // A trace-only message crosses no import: B sees nothing of it.
    let mut only = async_nats::HeaderMap::new();
    only.insert("Nats-Trace-Dest", "traces");
    only.insert("Nats-Trace-Only", "true");
    a.publish_with_headers("orders.traced", only, "t".into())
        .await
        .expect("pub");
    a.flush().await.expect("flush");
    assert!(drain(&mut spy_b, Duration::from_millis(300))
        .await
        .is_empty());
    assert!(drain(&mut spy_c, Duration::from_millis(100))
        .await
        .is_empty());
    assert!(drain(&mut spy_g, Duration::from_millis(100))
        .await
        .is_empty());
    // Publishing in B on A's subject reaches nobody in A.
    b.publish("news", "from B".into()).await.expect("pub");
    b.flush().await.expect("flush");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), same_a.next())
            .await
            .is_err()
    );
    // A request in C to a subject A serves finds no responders there (C's wildcard spy
    // leaves first: it would be one).
    spy_c.unsubscribe().await.expect("unsubscribe");
    c.flush().await.expect("flush");
    let mut svc = a.subscribe("svc.echo").await.expect("service");
    a.flush().await.expect("flush");
    let err = c
        .request("svc.echo", "x".into())
        .await
        .expect_err("C reached A");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    assert!(tokio::time::timeout(Duration::from_millis(100), svc.next())
        .await
        .is_err());
}

#[tokio::test]
async fn an_imported_service_answers_only_the_requester() {
    let server = server("", None).await;
    let (a, b, c) = (
        login(&server, "a").await,
        login(&server, "b").await,
        login(&server, "c").await,
    );
    let mut svc = a.subscribe("svc.echo").await.expect("service");
    let responder = a.clone();
    tokio::spawn(async move {
        while let Some(req) = svc.next().await {
            assert!(req.reply.as_deref().is_some_and(|r| r.starts_with("_R_.")));
            let mut body = b"echo: ".to_vec();
            body.extend_from_slice(&req.payload);
            if let Some(reply) = req.reply {
                let _ = responder.publish(reply, body.into()).await;
            }
        }
    });
    a.flush().await.expect("flush");
    let mut spy_a = a.subscribe("_INBOX.>").await.expect("sub");
    let mut spy_c = c.subscribe(">").await.expect("sub");
    c.flush().await.expect("flush");
    for i in 0..5 {
        let answer = within(TIMEOUT, "reply", b.request("a.echo", format!("{i}").into()))
            .await
            .expect("request through the import");
        assert_eq!(answer.payload, format!("echo: {i}").as_bytes());
    }
    // The replies went to B's inbox only.
    assert!(drain(&mut spy_a, Duration::from_millis(200))
        .await
        .is_empty());
    assert!(drain(&mut spy_c, Duration::from_millis(100))
        .await
        .is_empty());
}

#[tokio::test]
async fn a_second_connect_does_not_change_who_the_client_is() {
    let server = server("", None).await;
    let (a, g) = (login(&server, "a").await, login(&server, "g").await);
    let mut in_a = a.subscribe("who").await.expect("sub");
    let mut in_g = g.subscribe("who").await.expect("sub");
    a.flush().await.expect("flush");
    g.flush().await.expect("flush");
    let mut raw = common::RawClient::connect(server.local_addr()).await;
    raw.send_connect(serde_json::json!({"user": "a", "pass": "a"}))
        .await;
    raw.send_connect(serde_json::json!({"user": "g", "pass": "g"}))
        .await;
    raw.send(b"PUB who 2\r\nhi\r\n").await;
    raw.ping_pong().await;
    let got = within(TIMEOUT, "the message in A", in_a.next())
        .await
        .expect("msg");
    assert_eq!(&got.payload[..], b"hi");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), in_g.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_service_import_without_a_responder_answers_503() {
    let server = server("", None).await;
    let b = login(&server, "b").await;
    let err = within(TIMEOUT, "request", b.request("a.echo", "x".into()))
        .await
        .expect_err("an answer with no responder");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn jetstream_serves_the_global_account_and_refuses_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server("", Some(dir.path())).await;
    let g = login(&server, "g").await;
    let js = async_nats::jetstream::new(g);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "G".into(),
        subjects: vec!["g.>".into()],
        ..Default::default()
    })
    .await
    .expect("JetStream in the global account");
    let a = login(&server, "a").await;
    let reply = within(TIMEOUT, "API", a.request("$JS.API.INFO", "".into()))
        .await
        .expect("an answer");
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).expect("json");
    assert_eq!(body["error"]["err_code"], 10039, "{body}");
    assert_eq!(body["error"]["code"], 503, "{body}");
    // A's publishes on the global stream's subjects are not stored.
    a.publish("g.x", "not for G".into()).await.expect("pub");
    a.flush().await.expect("flush");
    let info = js
        .get_stream("G")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(info.state.messages, 0);
}

#[test]
fn import_errors_are_caught_at_load() {
    let bad = [
        (
            r#"accounts { A: {}, B: { imports: [ { stream: { account: A, subject: "x" } } ] } }"#,
            "does not export",
        ),
        (
            r#"accounts { A: { exports: [ { stream: "x.>", accounts: [B] } ] }
                          B: {}, C: { imports: [ { stream: { account: A, subject: "x.>" } } ] } }"#,
            "does not export",
        ),
        (
            r#"accounts { A: { exports: [ { stream: ">" } ], imports: [ { stream: { account: B, subject: ">" } } ] }
                          B: { exports: [ { stream: ">" } ], imports: [ { stream: { account: A, subject: ">" } } ] } }"#,
            "cycle",
        ),
        (
            r#"accounts { B: { imports: [ { service: { account: Z, subject: "x" } } ] } }"#,
            "not defined",
        ),
        (
            r#"accounts { A: { jetstream: enabled } }"#,
            "needs JetStream enabled on the server",
        ),
        (
            r#"accounts { A: { jetstream: { max_ack_pending: 10 } } }"#,
            "accounts.A.jetstream.max_ack_pending is not supported yet",
        ),
        (r#"accounts { "..": {} }"#, "cannot be a path"),
        (
            r#"jetstream {}
               server_name: s1
               accounts { A: { jetstream: enabled } }
               cluster { name: c, port: -1, routes: ["nats://127.0.0.1:4248"] }"#,
            "accounts.A.jetstream (in a cluster) is not supported yet",
        ),
        (
            r#"system_account: NOPE"#,
            "system account \"NOPE\" is not defined",
        ),
        (
            r#"accounts { A: { exports: [ { stream: "x.*" } ] }
                          B: { imports: [ { stream: { account: A, subject: "x.*" }, to: "y" } ] } }"#,
            "must have the wildcards",
        ),
    ];
    for (text, want) in bad {
        let err = from_conf_text(text, None).expect_err(text);
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
}

const JS_CONF: &str = r#"
accounts {
  A: { users: [ { user: a, password: a } ], jetstream: { max_streams: 2 } }
  B: { users: [ { user: b, password: b } ], jetstream: enabled }
  C: { users: [ { user: c, password: c } ] }
}
authorization { users: [ { user: g, password: g } ] }
"#;

async fn js_server(dir: &std::path::Path) -> ServerHandle {
    let text = format!(
        "{JS_CONF}\njetstream {{ store_dir: \"{}\" }}",
        dir.display()
    );
    let cfg = common::loopback_conf(&text);
    start(cfg).await
}

/// A `$JS.API` request's JSON answer.
async fn api(nc: &async_nats::Client, subject: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = within(
        TIMEOUT,
        subject,
        nc.request(subject.to_string(), body.to_string().into()),
    )
    .await
    .expect("API answer");
    serde_json::from_slice(&reply.payload).expect("json")
}

async fn messages(nc: &async_nats::Client, stream: &str) -> u64 {
    let info = api(
        nc,
        &format!("$JS.API.STREAM.INFO.{stream}"),
        serde_json::json!({}),
    )
    .await;
    info["state"]["messages"].as_u64().expect("state")
}

#[tokio::test]
async fn accounts_with_jetstream_have_their_own_streams_store_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = js_server(dir.path()).await;
    let (a, b, c, g) = (
        login(&server, "a").await,
        login(&server, "b").await,
        login(&server, "c").await,
        login(&server, "g").await,
    );
    let orders = serde_json::json!({"name": "ORDERS", "subjects": ["orders.>"]});
    // The same stream name and subjects in two accounts are two streams.
    for nc in [&g, &a] {
        let created = api(nc, "$JS.API.STREAM.CREATE.ORDERS", orders.clone()).await;
        assert!(created.get("error").is_none(), "{created}");
    }
    let (ja, jg) = (
        async_nats::jetstream::new(a.clone()),
        async_nats::jetstream::new(g.clone()),
    );
    for _ in 0..3 {
        ja.publish("orders.new", "a".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    jg.publish("orders.new", "g".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert_eq!(
        (messages(&a, "ORDERS").await, messages(&g, "ORDERS").await),
        (3, 1)
    );

    // A's limit: two streams.
    let second = api(
        &a,
        "$JS.API.STREAM.CREATE.S2",
        serde_json::json!({"name": "S2"}),
    )
    .await;
    assert!(second.get("error").is_none(), "{second}");
    let third = api(
        &a,
        "$JS.API.STREAM.CREATE.S3",
        serde_json::json!({"name": "S3"}),
    )
    .await;
    assert_eq!(third["error"]["err_code"], 10027, "{third}");
    let info = api(&a, "$JS.API.INFO", serde_json::json!({})).await;
    assert_eq!(info["limits"]["max_streams"], 2, "{info}");
    // B's KV bucket; C has no JetStream.
    let kv = async_nats::jetstream::new(b.clone())
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "cfg".into(),
            ..Default::default()
        })
        .await
        .expect("bucket in B");
    kv.put("k", "v1".into()).await.expect("put");
    let refused = api(&c, "$JS.API.INFO", serde_json::json!({})).await;
    assert_eq!(refused["error"]["err_code"], 10039, "{refused}");
    for nc in [a, b, c, g] {
        nc.drain().await.expect("drain");
    }
    server.shutdown().await;

    // Each account's streams come back from its own store.
    let server = js_server(dir.path()).await;
    let (a, b, g) = (
        login(&server, "a").await,
        login(&server, "b").await,
        login(&server, "g").await,
    );
    assert_eq!(
        (messages(&a, "ORDERS").await, messages(&g, "ORDERS").await),
        (3, 1)
    );
    let kv = async_nats::jetstream::new(b)
        .get_key_value("cfg")
        .await
        .expect("bucket after restart");
    let value = kv.get("k").await.expect("get").expect("value");
    assert_eq!(&value[..], b"v1");
    assert!(dir.path().join("accounts").join("A").is_dir());
    server.shutdown().await;
}

/// An account's `limits`: connections open at once, subscriptions and payload per connection,
/// each refused with nats-server's text (the same script against nats-server 2.15.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_limits_match_nats_server() {
    const CONF: &str = r#"
accounts {
  L: { users: [ { user: l, password: l } ]
       limits: { max_connections: 2, max_subscriptions: 2, max_payload: 8 } }
  FREE: { users: [ { user: f, password: f } ] }
}
"#;
    let ours = common::start(common::loopback_conf(CONF)).await;
    let theirs = common::reference::RefServer::start(CONF);
    let login: &[u8] = b"CONNECT {\"user\":\"l\",\"pass\":\"l\",\"verbose\":false}\r\n";
    let free: &[u8] = b"CONNECT {\"user\":\"f\",\"pass\":\"f\",\"verbose\":false}\r\n";
    let steps: &[(usize, &[u8])] = &[
        (0, login),
        (1, login),
        // A third connection of L is one too many; FREE is not limited by L's count.
        (2, login),
        (3, free),
        (0, b"SUB a 1\r\nSUB b 2\r\n"),
        (0, b"SUB c 3\r\n"),
        (0, b"PUB a 8\r\n12345678\r\n"),
        (3, b"PUB big 9\r\n123456789\r\n"),
        (0, b"PUB a 9\r\n123456789\r\n"),
        // With one of L's connections gone, another may log in.
        (4, login),
    ];
    let got =
        common::reference::same_answers("account limits", ours.local_addr(), theirs.addr, steps)
            .await;
    assert_eq!(
        got[2],
        (
            "-ERR 'maximum account active connections exceeded'\r\n".to_string(),
            true
        )
    );
    assert_eq!(got[5].0, "-ERR 'maximum subscriptions exceeded'\r\n");
    assert_eq!(got[7], (String::new(), false), "FREE takes 9 bytes");
    assert_eq!(
        got[8],
        ("-ERR 'Maximum Payload Violation'\r\n".to_string(), true)
    );
    assert_eq!(got[9], (String::new(), false));
    ours.shutdown().await;
}

/// An account's `jetstream { max_consumers }` limits each of its streams (as nats-server
/// applies it): one more is refused with 10026, another stream is not affected, an existing
/// consumer may be created again, a deleted one makes room; the same requests against
/// nats-server 2.15.1 get the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_max_consumers_match_nats_server() {
    const CONF: &str = r#"
jetstream { store_dir: "{store}" }
accounts { L: { users: [ { user: l, password: l } ], jetstream: { max_consumers: 2 } } }
no_auth_user: l
"#;
    let store = tempfile::tempdir().unwrap();
    let ours_conf = CONF.replace("{store}", &store.path().to_string_lossy());
    let ours = common::start(common::loopback_conf(&ours_conf)).await;
    let theirs = common::reference::RefServer::start(CONF);
    let consumer = |name: &str| {
        format!(
            r#"{{"stream_name":"S","config":{{"durable_name":"{name}","ack_policy":"explicit"}}}}"#
        )
    };
    let steps: Vec<(String, String)> = vec![
        (
            "STREAM.CREATE.S".into(),
            r#"{"name":"S","subjects":["s.>"]}"#.into(),
        ),
        (
            "STREAM.CREATE.T".into(),
            r#"{"name":"T","subjects":["t.>"]}"#.into(),
        ),
        ("CONSUMER.CREATE.S.C1".into(), consumer("C1")),
        ("CONSUMER.CREATE.S.C2".into(), consumer("C2")),
        (
            "CONSUMER.CREATE.T.C3".into(),
            consumer("C3").replace("\"S\"", "\"T\""),
        ),
        ("CONSUMER.CREATE.S.C4".into(), consumer("C4")),
        ("CONSUMER.CREATE.S.C1".into(), consumer("C1")),
        ("CONSUMER.DELETE.S.C2".into(), String::new()),
        ("CONSUMER.CREATE.S.C4".into(), consumer("C4")),
    ];
    let mut answers = Vec::new();
    for addr in [ours.local_addr(), theirs.addr] {
        let mut api = common::reference::ApiClient::connect(addr).await;
        let mut got = Vec::new();
        for (subject, body) in &steps {
            let v = api.api(subject, body.as_bytes()).await;
            got.push((v["error"]["err_code"].clone(), v["error"]["code"].clone()));
        }
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1], "causeway vs nats-server 2.15.1");
    assert_eq!(answers[0][5].0, 10026, "{:?}", answers[0]);
    let ok = [0, 1, 2, 3, 4, 6, 7, 8];
    assert!(
        ok.iter().all(|i| answers[0][*i].0.is_null()),
        "{:?}",
        answers[0]
    );
    ours.shutdown().await;
}
