//! JetStream helpers: an embedded server with JetStream on a temporary store directory, raw
//! `$JS.API` requests answered as JSON, publishing with headers and reading the pub ack, error
//! assertions, and bounded polling.
//!
//! Raw requests go through the core async-nats client so the tests see exactly what the server
//! sent (response `type`, `error.err_code`), independent of how the jetstream module decodes it.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use causeway::{Config, ServerHandle};
use futures::StreamExt;
use serde_json::Value;

use super::{within, TIMEOUT};

/// A loopback config with JetStream on `dir`.
pub fn js_config(dir: &Path) -> Config {
    let mut cfg = Config::loopback();
    cfg.jetstream.enabled = true;
    cfg.jetstream.store_dir = dir.to_path_buf();
    cfg
}

/// An embedded JetStream server on a temporary directory, with a connected client.
pub struct JsEnv {
    pub server: ServerHandle,
    pub nc: Client,
    pub js: jetstream::Context,
    pub dir: tempfile::TempDir,
}

impl JsEnv {
    /// Starts a server on a fresh temporary store directory.
    pub async fn new() -> JsEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::on(dir).await
    }

    /// Starts a server on an existing store directory.
    pub async fn on(dir: tempfile::TempDir) -> JsEnv {
        let server = super::start(js_config(dir.path())).await;
        let nc = connect(&server.client_url()).await;
        let js = jetstream::new(nc.clone());
        JsEnv {
            server,
            nc,
            js,
            dir,
        }
    }

    /// Graceful shutdown, then a new server on the same store directory.
    pub async fn restart(self) -> JsEnv {
        let JsEnv {
            server, nc, dir, ..
        } = self;
        drop(nc);
        within(TIMEOUT, "server shutdown", server.shutdown()).await;
        Self::on(dir).await
    }

    /// Graceful shutdown; returns the store directory.
    pub async fn stop(self) -> tempfile::TempDir {
        within(TIMEOUT, "server shutdown", self.server.shutdown()).await;
        self.dir
    }

    /// `$JS.API.<subject>` with a raw body, answered as JSON.
    pub async fn api(&self, subject: &str, body: impl Into<Bytes>) -> Value {
        api(&self.nc, subject, body).await
    }

    /// `$JS.API.<subject>` with a JSON body; panics on an error response.
    pub async fn api_ok(&self, subject: &str, body: Value) -> Value {
        let v = self.api(subject, body.to_string()).await;
        assert!(v.get("error").is_none(), "$JS.API.{subject} failed: {v}");
        v
    }

    /// Creates a stream from a JSON config; panics on error.
    pub async fn stream(&self, config: Value) -> Value {
        let name = config["name"].as_str().expect("stream name").to_string();
        let v = self.api_ok(&format!("STREAM.CREATE.{name}"), config).await;
        assert_type(&v, "stream_create");
        v
    }

    /// Publishes through a request and returns the pub ack JSON.
    pub async fn publish(&self, subject: &str, payload: impl Into<Bytes>) -> Value {
        publish(&self.nc, subject, &[], payload).await
    }

    /// Publishes with headers through a request and returns the pub ack JSON.
    pub async fn publish_h(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: impl Into<Bytes>,
    ) -> Value {
        publish(&self.nc, subject, headers, payload).await
    }

    /// Stream info JSON (panics on error).
    pub async fn info(&self, stream: &str) -> Value {
        let v = self.api(&format!("STREAM.INFO.{stream}"), "").await;
        assert!(v.get("error").is_none(), "stream info failed: {v}");
        v
    }

    /// Consumer info JSON (panics on error).
    pub async fn consumer_info(&self, stream: &str, consumer: &str) -> Value {
        let v = self
            .api(&format!("CONSUMER.INFO.{stream}.{consumer}"), "")
            .await;
        assert!(v.get("error").is_none(), "consumer info failed: {v}");
        v
    }

    /// `STREAM.MSG.GET` by sequence: the raw response (message or error).
    pub async fn msg_get(&self, stream: &str, seq: u64) -> Value {
        self.api(
            &format!("STREAM.MSG.GET.{stream}"),
            serde_json::json!({ "seq": seq }).to_string(),
        )
        .await
    }
}

/// Connects a client that does not reconnect behind the test's back.
pub async fn connect(url: &str) -> Client {
    within(
        TIMEOUT,
        "async-nats connect",
        async_nats::ConnectOptions::new()
            .max_reconnects(Some(1))
            .connect(url),
    )
    .await
    .expect("async-nats failed to connect")
}

/// A request with optional headers, bounded by [`TIMEOUT`]; panics if nothing answers.
pub async fn request(
    nc: &Client,
    subject: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> async_nats::Message {
    try_request(nc, subject, headers, body)
        .await
        .unwrap_or_else(|e| panic!("request to {subject} failed: {e}"))
}

/// Like [`request`], returning the client error instead of panicking.
pub async fn try_request(
    nc: &Client,
    subject: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let mut req = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(TIMEOUT));
    if !headers.is_empty() {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, *v);
        }
        req = req.headers(h);
    }
    within(
        TIMEOUT + Duration::from_secs(1),
        subject,
        nc.send_request(subject.to_string(), req),
    )
    .await
}

/// Publishes `body` to `subject` with a fresh inbox as reply subject and returns the first
/// message that arrives there. Unlike a client request this does not match replies by subject,
/// so it works for pull requests, whose deliveries carry the stream message's subject.
pub async fn first_reply(
    nc: &Client,
    subject: &str,
    body: impl Into<Bytes>,
) -> async_nats::Message {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.expect("subscribe");
    nc.publish_with_reply(subject.to_string(), inbox, body.into())
        .await
        .expect("publish");
    super::next_msg(&mut sub).await
}

/// Parses a reply payload as JSON, panicking with the text if it is not.
pub fn json(m: &async_nats::Message) -> Value {
    serde_json::from_slice(&m.payload).unwrap_or_else(|e| {
        panic!(
            "reply on {} is not JSON ({e}): {:?}",
            m.subject,
            String::from_utf8_lossy(&m.payload)
        )
    })
}

/// `$JS.API.<subject>` with a raw body, answered as JSON.
pub async fn api(nc: &Client, subject: &str, body: impl Into<Bytes>) -> Value {
    json(&request(nc, &format!("$JS.API.{subject}"), &[], body).await)
}

/// Publishes through a request and returns the pub ack JSON.
pub async fn publish(
    nc: &Client,
    subject: &str,
    headers: &[(&str, &str)],
    payload: impl Into<Bytes>,
) -> Value {
    json(&request(nc, subject, headers, payload).await)
}

/// The `error.err_code` of a response, if it is an error.
pub fn err_code(v: &Value) -> Option<u64> {
    v.get("error").map(|e| {
        e["err_code"]
            .as_u64()
            .unwrap_or_else(|| panic!("error without err_code: {v}"))
    })
}

/// Asserts that `v` is an error response with `err_code` (and an HTTP-like `code`).
pub fn assert_err(v: &Value, code: u64) {
    assert_eq!(err_code(v), Some(code), "expected err_code {code}, got {v}");
    assert!(
        v["error"]["code"].as_u64().is_some_and(|c| c >= 400),
        "error without an HTTP-like code: {v}"
    );
    assert!(
        v["error"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "error without description: {v}"
    );
}

/// Asserts the response `type` is `io.nats.jetstream.api.v1.<kind>_response`.
pub fn assert_type(v: &Value, kind: &str) {
    assert_eq!(
        v["type"].as_str(),
        Some(format!("io.nats.jetstream.api.v1.{kind}_response").as_str()),
        "wrong response type: {v}"
    );
}

/// Asserts a pub ack for `stream` with sequence `seq` (not a duplicate).
pub fn assert_ack(v: &Value, stream: &str, seq: u64) {
    assert!(v.get("error").is_none(), "publish failed: {v}");
    assert_eq!(v["stream"], stream, "pub ack: {v}");
    assert_eq!(v["seq"], seq, "pub ack: {v}");
    assert!(
        v.get("duplicate").is_none_or(|d| d == false),
        "unexpected duplicate: {v}"
    );
}

/// Decodes the base64 `data` of a `STREAM.MSG.GET` response (empty if absent).
pub fn msg_data(v: &Value) -> Vec<u8> {
    use base64::Engine;
    match v["message"]["data"].as_str() {
        Some(d) => base64::engine::general_purpose::STANDARD
            .decode(d)
            .expect("data is not base64"),
        None => Vec::new(),
    }
}

/// Polls `check` every 25 ms until it returns true, panicking after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Fetches up to `n` messages from a pull consumer (one request, no_wait), bounded.
pub async fn fetch(
    consumer: &jetstream::consumer::PullConsumer,
    n: usize,
) -> Vec<jetstream::Message> {
    let mut batch = within(
        TIMEOUT,
        "fetch request",
        consumer.fetch().max_messages(n).messages(),
    )
    .await
    .expect("fetch failed");
    let mut out = Vec::new();
    within(TIMEOUT, "fetched messages", async {
        while let Some(m) = batch.next().await {
            out.push(m.expect("fetch error"));
        }
    })
    .await;
    out
}

/// Waits for `n` messages from a pull request that waits up to `expires` (batch), bounded.
pub async fn batch(
    consumer: &jetstream::consumer::PullConsumer,
    n: usize,
    expires: Duration,
) -> Vec<jetstream::Message> {
    let mut batch = within(
        TIMEOUT,
        "batch request",
        consumer.batch().max_messages(n).expires(expires).messages(),
    )
    .await
    .expect("batch failed");
    let mut out = Vec::new();
    within(expires + TIMEOUT, "batched messages", async {
        while let Some(m) = batch.next().await {
            out.push(m.expect("batch error"));
        }
    })
    .await;
    out
}

/// The payloads of `msgs` as strings.
pub fn payloads(msgs: &[jetstream::Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// The stream sequence of a delivered message (from its ack subject).
pub fn stream_seq(m: &jetstream::Message) -> u64 {
    m.info().expect("message info").stream_sequence
}

/// The delivery count of a delivered message (from its ack subject).
pub fn delivered(m: &jetstream::Message) -> i64 {
    m.info().expect("message info").delivered
}

/// Runs `scenario` on causeway (an embedded JetStream server) and on nats-server 2.15.1, and
/// asserts both observed the same, listing every observation that differs; returns causeway's.
pub async fn same_observations<F, Fut>(what: &str, scenario: F) -> Vec<String>
where
    F: Fn(std::net::SocketAddr) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let env = JsEnv::new().await;
    let theirs = super::reference::RefServer::jetstream();
    let ours = scenario(env.server.local_addr()).await;
    let reference = scenario(theirs.addr).await;
    let differ: Vec<String> = ours
        .iter()
        .zip(&reference)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("observation {i}:\n  causeway:    {a}\n  nats-server: {b}"))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: causeway vs nats-server 2.15.1\n{}",
        differ.join("\n")
    );
    assert_eq!(
        ours.len(),
        reference.len(),
        "{what}: {ours:?} vs {reference:?}"
    );
    env.stop().await;
    ours
}
