//! The WebSocket listener with real clients: async-nats over `ws://` and `wss://`, the nats.js
//! client from Node (`tests/node/ws_suite.mjs`) and from headless Chromium
//! (`tests/node/browser_suite.mjs`): pub/sub, request/reply, JetStream publish with acks and
//! KV put/get/watch (the browser with permessage-deflate). Also: origins the configuration
//! does not allow are refused with 403, compression is negotiated as on nats-server, and the
//! listener's own authorization.

mod common;

use std::path::Path;
use std::time::Duration;

use async_nats::ConnectOptions;
use causeway::config::{TlsConfig, WebSocketConfig};
use causeway::Config;
use common::certs::Ca;
use common::js::js_config;
use common::suites::{ensure_node_modules, run_suite};
use common::{start, within, TIMEOUT};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_ws(cfg: Config, ws: WebSocketConfig) -> Config {
    Config {
        websocket: Some(ws),
        ..cfg
    }
}

/// Pub/sub, request/reply and a JetStream publish over one async-nats connection.
async fn exercise(nc: &async_nats::Client) {
    let mut sub = nc.subscribe("ws.>").await.expect("subscribe");
    let mut svc = nc.subscribe("svc.echo").await.expect("service");
    let replier = nc.clone();
    tokio::spawn(async move {
        while let Some(req) = svc.next().await {
            if let Some(reply) = req.reply {
                let _ = replier.publish(reply, req.payload).await;
            }
        }
    });
    let big = vec![7u8; 200_000];
    nc.publish("ws.big", big.clone().into())
        .await
        .expect("publish");
    let got = within(TIMEOUT, "message", sub.next()).await.expect("msg");
    assert_eq!(got.payload.len(), big.len());
    let answer = within(TIMEOUT, "reply", nc.request("svc.echo", "ping".into()))
        .await
        .expect("request");
    assert_eq!(&answer.payload[..], b"ping");
    let js = async_nats::jetstream::new(nc.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "WS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .expect("create stream");
    for i in 1..=5u64 {
        let ack = js
            .publish("orders.new", "o".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        assert_eq!(ack.sequence, i);
    }
}

#[tokio::test]
async fn async_nats_over_ws_and_wss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(with_ws(js_config(dir.path()), WebSocketConfig::loopback())).await;
    let url = server.websocket_url().expect("ws url");
    assert!(url.starts_with("ws://"), "{url}");
    let nc = within(TIMEOUT, "ws connect", async_nats::connect(&url))
        .await
        .expect("ws connect");
    exercise(&nc).await;
    server.shutdown().await;

    let certs = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(certs.path(), "ws");
    let pair = ca.server("ws-server");
    let ws = WebSocketConfig {
        no_tls: false,
        tls: Some(TlsConfig::new(&pair.cert, &pair.key)),
        ..WebSocketConfig::loopback()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(with_ws(js_config(dir.path()), ws)).await;
    let url = server.websocket_url().expect("wss url");
    assert!(url.starts_with("wss://"), "{url}");
    let opts = ConnectOptions::new().add_root_certificates(ca.cert.clone());
    let nc = within(TIMEOUT, "wss connect", opts.connect(&url))
        .await
        .expect("wss connect");
    exercise(&nc).await;
    server.shutdown().await;
}

/// Sends an upgrade request with `origin`; the status line of the answer.
async fn upgrade_status(addr: std::net::SocketAddr, origin: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = within(TIMEOUT, "upgrade answer", tcp.read(&mut buf))
        .await
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn origins_are_checked() {
    let ws = WebSocketConfig {
        same_origin: true,
        ..WebSocketConfig::loopback()
    };
    let server = start(with_ws(Config::loopback(), ws)).await;
    let addr = server
        .websocket_url()
        .and_then(|u| u.strip_prefix("ws://").map(str::to_string))
        .expect("ws addr")
        .parse()
        .expect("addr");
    let same = format!("http://{addr}");
    assert!(upgrade_status(addr, &same).await.contains("101"));
    assert!(upgrade_status(addr, "http://evil.example:80")
        .await
        .contains("403"));
    server.shutdown().await;

    let ws = WebSocketConfig {
        allowed_origins: vec!["https://app.example".into()],
        ..WebSocketConfig::loopback()
    };
    let server = start(with_ws(Config::loopback(), ws)).await;
    let addr = server.websocket_url().expect("url")[5..]
        .parse()
        .expect("addr");
    assert!(upgrade_status(addr, "https://app.example")
        .await
        .contains("101"));
    assert!(upgrade_status(addr, "http://app.example")
        .await
        .contains("403"));
    server.shutdown().await;
}

/// nats.js from Node and from headless Chromium against one server: the browser test the
/// issue asks for. Chromium must be installed (`.ci/run` installs Debian's package).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_from_node_and_a_browser() {
    let node_dir = tokio::task::spawn_blocking(ensure_node_modules)
        .await
        .expect("npm setup panicked");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(with_ws(js_config(dir.path()), WebSocketConfig::loopback())).await;
    let url = server.websocket_url().expect("ws url");
    run_suite(
        Path::new("node"),
        &["--experimental-websocket", "ws_suite.mjs", &url],
        &node_dir,
        Duration::from_secs(120),
        "websocket checks passed",
    )
    .await;
    server.shutdown().await;
    // The browser against a listener with `compression: true`: Chromium offers
    // permessage-deflate, so every frame both ways is compressed.
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = WebSocketConfig {
        compression: true,
        ..WebSocketConfig::loopback()
    };
    let server = start(with_ws(js_config(dir.path()), ws)).await;
    let url = server.websocket_url().expect("ws url");
    run_suite(
        Path::new("node"),
        &["browser_suite.mjs", &url],
        &node_dir,
        Duration::from_secs(150),
        "browser checks passed",
    )
    .await;
    server.shutdown().await;
}

/// The extensions header of the answer to an upgrade that offers permessage-deflate.
async fn offered_deflate(addr: std::net::SocketAddr) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 2048];
    let n = within(TIMEOUT, "upgrade answer", tcp.read(&mut buf))
        .await
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    text.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-extensions:")
        })
        .map(str::to_string)
}

/// `compression: true` agrees to permessage-deflate when a client offers it, and the listener
/// without it does not, as nats-server 2.15.1 (asked the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_negotiated_like_nats_server() {
    for compression in [true, false] {
        let ws = WebSocketConfig {
            compression,
            ..WebSocketConfig::loopback()
        };
        let ours = start(with_ws(Config::loopback(), ws)).await;
        let addr = ours.websocket_url().expect("url")[5..]
            .parse()
            .expect("addr");
        let port = common::free_port();
        let theirs = common::reference::RefServer::start(&format!(
            "websocket {{ listen: \"127.0.0.1:{port}\", no_tls: true, compression: {compression} }}\n"
        ));
        let mine = offered_deflate(addr).await;
        let reference = offered_deflate(([127, 0, 0, 1], port).into()).await;
        let deflate = |h: &Option<String>| {
            h.as_deref()
                .is_some_and(|h| h.contains("permessage-deflate"))
        };
        assert_eq!(deflate(&mine), compression, "{mine:?}");
        assert_eq!(
            deflate(&mine),
            deflate(&reference),
            "{mine:?} vs nats-server {reference:?}"
        );
        drop(theirs);
        ours.shutdown().await;
    }
}

/// Users and `allowed_connection_types` hold over WebSocket as over TCP: a browser-only user
/// connects over ws and not over TCP, a TCP-only user the other way round, and bad
/// credentials are refused.
#[tokio::test]
async fn websocket_clients_authenticate_like_the_others() {
    let cfg = common::loopback_conf(
        r#"authorization { users: [
             { user: web, password: w, allowed_connection_types: ["WEBSOCKET"] }
             { user: app, password: a, allowed_connection_types: ["STANDARD"] }
           ] }"#,
    );
    let server = start(with_ws(cfg, WebSocketConfig::loopback())).await;
    let (ws, tcp) = (server.websocket_url().expect("ws url"), server.client_url());
    let connect = |user: &str, pass: &str, url: String| {
        let opts = ConnectOptions::with_user_and_password(user.into(), pass.into())
            .connection_timeout(Duration::from_secs(3));
        async move { within(TIMEOUT, "connect", opts.connect(url)).await }
    };
    let web = connect("web", "w", ws.clone()).await.expect("web over ws");
    web.publish("hello", "from a browser user".into())
        .await
        .expect("publish");
    web.flush().await.expect("flush");
    assert!(
        connect("web", "w", tcp.clone()).await.is_err(),
        "web over TCP"
    );
    assert!(
        connect("app", "a", ws.clone()).await.is_err(),
        "app over ws"
    );
    assert!(
        connect("web", "wrong", ws.clone()).await.is_err(),
        "bad password"
    );
    connect("app", "a", tcp).await.expect("app over TCP");
    server.shutdown().await;
}

/// `websocket { authorization {...}, no_auth_user }` override how browsers log in, as on
/// nats-server 2.15.1 (the same logins tried on both): the listener's user replaces the
/// server's single user for browsers only; with a users list, `no_auth_user` logs in a browser
/// that sends nothing; a listener user beside a users list is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_authorization_overrides_like_nats_server() {
    let single = |ws_port: u16| {
        format!(
            "authorization {{ user: app, password: a }}\nwebsocket {{ listen: \"127.0.0.1:{ws_port}\", no_tls: true, authorization {{ user: browser, password: b }} }}\n"
        )
    };
    let list = |ws_port: u16| {
        format!(
            "authorization {{ users: [ {{ user: alice, password: a }}, {{ user: anon, password: x }} ] }}\nwebsocket {{ listen: \"127.0.0.1:{ws_port}\", no_tls: true, no_auth_user: anon }}\n"
        )
    };
    // (what, credentials, over WebSocket, logs in)
    type Attempt<'a> = (&'a str, Option<(&'a str, &'a str)>, bool, bool);
    type Case<'a> = (&'a dyn Fn(u16) -> String, Vec<Attempt<'a>>);
    let cases: [Case; 2] = [
        (
            &single,
            vec![
                ("browser, listener user", Some(("browser", "b")), true, true),
                ("browser, server user", Some(("app", "a")), true, false),
                ("browser, nothing", None, true, false),
                ("TCP, server user", Some(("app", "a")), false, true),
                ("TCP, listener user", Some(("browser", "b")), false, false),
            ],
        ),
        (
            &list,
            vec![
                ("browser, users-list user", Some(("alice", "a")), true, true),
                ("browser, nothing (no_auth_user)", None, true, true),
                (
                    "browser, wrong password",
                    Some(("alice", "nope")),
                    true,
                    false,
                ),
                ("TCP, nothing", None, false, false),
                ("TCP, users-list user", Some(("alice", "a")), false, true),
            ],
        ),
    ];
    let try_login = |url: String, creds: Option<(&str, &str)>| {
        let opts = match creds {
            Some((u, p)) => ConnectOptions::with_user_and_password(u.into(), p.into()),
            None => ConnectOptions::new(),
        }
        .connection_timeout(Duration::from_secs(2))
        .max_reconnects(Some(0));
        async move { within(TIMEOUT, "connect", opts.connect(url)).await.is_ok() }
    };
    for (conf, attempts) in cases {
        let ours = start(common::loopback_conf(&conf(0))).await;
        let ws_port = common::free_port();
        let theirs = common::reference::RefServer::start(&conf(ws_port));
        let ours_ws = ours.websocket_url().expect("ws url");
        let theirs_ws = format!("ws://127.0.0.1:{ws_port}");
        for (what, creds, over_ws, want) in attempts {
            let (a, b) = if over_ws {
                (ours_ws.clone(), theirs_ws.clone())
            } else {
                (ours.client_url(), format!("nats://{}", theirs.addr))
            };
            let (mine, reference) = (try_login(a, creds).await, try_login(b, creds).await);
            assert_eq!(mine, reference, "{what}: causeway vs nats-server 2.15.1");
            assert_eq!(mine, want, "{what}");
        }
        ours.shutdown().await;
    }
    let clash = "authorization { users: [ { user: alice, password: a } ] }\nwebsocket { port: 8080, no_tls: true, authorization { user: b, password: b } }\n";
    let err = causeway::config::from_conf_text(clash, None).unwrap_err();
    assert!(
        err.to_string().contains(
            "websocket authentication username not compatible with presence of users/nkeys"
        ),
        "{err}"
    );
}
