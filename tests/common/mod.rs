//! Shared helpers for the integration tests: starting an embedded server, async-nats helpers,
//! bounded waits, and (in `raw.rs`) a raw TCP client that speaks the NATS text protocol with
//! MSG/HMSG frame parsing. `js.rs` has the JetStream helpers (embedded server on a temporary
//! store, raw `$JS.API` requests, err_code assertions), `child.rs` runs the binary as a child
//! process (kill -9, captured log), `reference.rs` runs nats-server 2.15.1 beside it for
//! answers compared live.
//!
//! Every wait in here is bounded by [`TIMEOUT`] (or an explicit duration) so that a broken
//! server makes a test fail instead of hanging it.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use causeway::{Config, Server, ServerHandle};

pub mod certs;
pub mod child;
pub mod js;
pub mod jwt;
pub mod kv;
pub mod proxy;
mod raw;
pub mod reference;
pub mod suites;
#[allow(unused_imports)] // not every test crate uses all of these
pub use raw::{parse_msgs, RawClient, RawMsg};

/// Upper bound for any single wait in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `fut` with a bound of `dur`, panicking with `what` if it takes longer.
pub async fn within<T>(dur: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(dur, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {dur:?} waiting for {what}"),
    }
}

/// Starts an embedded server with `config`, panicking on error.
pub async fn start(config: Config) -> ServerHandle {
    within(TIMEOUT, "server start", Server::start(config))
        .await
        .expect("server failed to start")
}

/// A config from nats-server config `text`, on loopback with an ephemeral port.
pub fn loopback_conf(text: &str) -> Config {
    let mut cfg = causeway::config::from_conf_text(text, None).expect("config");
    cfg.host = "127.0.0.1".into();
    cfg.port = 0;
    cfg
}

/// Starts an embedded server with [`Config::loopback`].
pub async fn start_default() -> ServerHandle {
    start(Config::loopback()).await
}

/// Connects an async-nats client to `server`, bounded by [`TIMEOUT`].
pub async fn nats_client(server: &ServerHandle) -> async_nats::Client {
    within(
        TIMEOUT,
        "async-nats connect",
        async_nats::connect(server.client_url()),
    )
    .await
    .expect("async-nats failed to connect")
}

/// Waits until the server has processed everything `client` sent so far (subscriptions
/// included). async-nats's `flush` only writes out the client's buffer and does not wait for
/// the server, but a connection's operations are handled in order: once a message the client
/// publishes to a fresh subject it subscribed to comes back, everything before it is in place.
/// Needs echo (the default).
pub async fn sync(client: &async_nats::Client) {
    let subject = client.new_inbox();
    let mut probe = client.subscribe(subject.clone()).await.expect("subscribe");
    client
        .publish(subject, bytes::Bytes::from_static(b"sync"))
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    next_msg(&mut probe).await;
}

/// Receives the next message of an async-nats subscriber, bounded by [`TIMEOUT`].
pub async fn next_msg(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    use futures::StreamExt;
    within(
        TIMEOUT,
        "a message on an async-nats subscription",
        sub.next(),
    )
    .await
    .expect("subscription ended unexpectedly")
}

/// Asserts that an async-nats subscriber receives nothing within `dur`.
pub async fn assert_no_msg(sub: &mut async_nats::Subscriber, dur: Duration) {
    use futures::StreamExt;
    if let Ok(Some(m)) = tokio::time::timeout(dur, sub.next()).await {
        panic!("unexpected message on {}: {:?}", m.subject, m.payload);
    }
}

/// `n` bytes of a repeating, position-dependent pattern (so corruption or reordering shows).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Position of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Picks a currently free loopback port (bind to port 0 and release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local_addr")
        .port()
}

/// Connects with `opts` and returns the client plus a channel of its connection events
/// (server errors such as permission violations, disconnects, ...).
pub async fn connect_with_events(
    opts: async_nats::ConnectOptions,
    url: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = within(
        TIMEOUT,
        "connect",
        opts.event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(url),
    )
    .await
    .expect("connect");
    (client, rx)
}

/// GETs `path` from a server's HTTP monitoring port and parses the JSON body (bounded by
/// [`TIMEOUT`]).
pub async fn monitor_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = monitor_get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// `GET path` from a monitoring listener: the status code and the body.
pub async fn monitor_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("monitor connect");
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("monitor write");
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.expect("monitor read");
        body
    };
    let raw = within(TIMEOUT, "monitor GET", get).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status");
    (status, body.to_string())
}
